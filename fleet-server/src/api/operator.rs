//! The operator API (JSON): enrolment, devices, artifact upload (verified against the trust
//! root), assignments, rollouts, tokens and the audit log. Viewers read; operators act; admins
//! also manage tokens. Every action is in the audit log.

use super::{AppState, blocking};
use crate::auth::{self, Principal, Role};
use crate::error::ApiError;
use crate::rollout::lifecycle::{self, Action};
use crate::rollout::records;
use crate::rollout::request::NewRollout;
use crate::rollout::view as rollout_view;
use crate::{audit, store};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use std::sync::Arc;

/// Refuses an address (or everyone) locked out by failed sign-ins, before any token is read.
pub(crate) fn throttled(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    match state.throttle.check(req.peer_addr().map(|a| a.ip())) {
        Some(retry_after_s) => Err(ApiError::Throttled { retry_after_s }),
        None => Ok(()),
    }
}

/// Notes a failed sign-in or token: counted by the throttle, logged, and in the audit log.
pub(crate) async fn failed(
    state: &Arc<AppState>,
    req: &HttpRequest,
    action: &'static str,
    detail: &'static str,
) {
    let ip = req.peer_addr().map(|a| a.ip());
    state.throttle.fail(ip);
    let address = ip.map(|a| a.to_string()).unwrap_or_default();
    crate::log::warn(
        action,
        &[("address", address.clone()), ("detail", detail.into())],
    );
    let s = state.clone();
    let written = blocking(move || {
        crate::audit::record_failure(&mut *s.pool.get()?, action, &address, detail)
    })
    .await;
    if let Err(e) = written {
        crate::log::warn("audit_failed", &[("error", e.to_string())]);
    }
}

/// The principal of a request (bearer token, or the dashboard's session), if its role is at
/// least `need`. Bearer tokens are throttled: see `throttle`.
pub async fn authorize(
    state: &Arc<AppState>,
    req: &HttpRequest,
    need: Role,
) -> Result<Principal, ApiError> {
    let credential = super::operator_credential(req).ok_or(ApiError::Unauthorized)?;
    let is_bearer = matches!(credential, super::Credential::Bearer(_));
    if is_bearer {
        throttled(state, req)?;
    }
    let safe = req.method() == actix_web::http::Method::GET;
    let s = state.clone();
    let who = blocking(move || {
        let state = s;
        let mut conn = state.pool.get()?;
        match credential {
            super::Credential::Bearer(token) => auth::lookup(&mut conn, &token),
            super::Credential::Session { id, csrf } => {
                let (who, expected) = auth::session(&mut conn, &id)?;
                // A cookie rides along on any request the browser makes, a forged cross-site
                // one included; the CSRF token only comes from a page of this origin.
                if !safe && csrf.as_deref() != Some(expected.as_str()) {
                    return Err(ApiError::Csrf);
                }
                Ok(who)
            }
        }
    })
    .await;
    if is_bearer && matches!(who, Err(ApiError::Unauthorized)) {
        failed(state, req, "auth.token_failure", "unknown bearer token").await;
    }
    let who = who?;
    if who.role < need {
        return Err(ApiError::Forbidden);
    }
    Ok(who)
}

/// A read, for viewers and above: `f` runs off the async threads with a connection, and what it
/// returns is the JSON answer.
async fn read<T: serde::Serialize + Send + 'static>(
    state: web::Data<AppState>,
    req: &HttpRequest,
    f: impl FnOnce(&AppState, &mut crate::db::AnyConnection) -> Result<T, ApiError> + Send + 'static,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    authorize(&state, req, Role::Viewer).await?;
    let out = blocking(move || {
        let mut conn = state.pool.get()?;
        f(&state, &mut conn)
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Runs an operator action and records it in the audit log, in one place.
async fn act<T: Send + 'static>(
    state: Arc<AppState>,
    who: Principal,
    action: &'static str,
    target: String,
    f: impl FnOnce(&mut crate::db::AnyConnection, &Principal) -> Result<(T, String), ApiError>
    + Send
    + 'static,
) -> Result<T, ApiError> {
    blocking(move || {
        let mut conn = state.pool.get()?;
        let (out, detail) = f(&mut conn, &who)?;
        audit::record(&mut conn, &who, action, &target, &detail)?;
        crate::log::info(
            "operator_action",
            &[
                ("actor", who.name.clone()),
                ("action", action.into()),
                ("target", target),
            ],
        );
        Ok(out)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enroll {
    id: String,
    board: String,
    #[serde(default)]
    tags: Vec<String>,
}

fn valid_name(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

pub async fn enroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Enroll>,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let who = authorize(&state, &req, Role::Operator).await?;
    let e = body.into_inner();
    if !valid_name(&e.id, protocol::MAX_DEVICE_ID) {
        return Err(ApiError::Invalid(
            "invalid_device_id",
            format!("device id {:?}: 1-64 of [A-Za-z0-9._:-]", e.id),
        ));
    }
    if let Some(t) = e.tags.iter().find(|t| !valid_name(t, 64)) {
        return Err(ApiError::Invalid(
            "invalid_tag",
            format!("tag {t:?}: 1-64 of [A-Za-z0-9._:-]"),
        ));
    }
    let target = e.id.clone();
    let (id, credential) = act(state, who, "device.enroll", target, move |conn, _| {
        let credential = store::new_credential()?;
        if !store::enroll(conn, &e.id, &e.board, &e.tags.join(","), &credential)? {
            return Err(ApiError::Conflict("device"));
        }
        let detail = format!("board {} tags {}", e.board, e.tags.join(","));
        Ok(((e.id, credential), detail))
    })
    .await?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "id": id, "credential": credential })))
}

pub async fn devices(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    read(state, &req, |state, conn| {
        let mut list = store::list_devices(conn)?;
        state.checkins.overlay(&mut list);
        Ok(super::views::devices(conn, list)?)
    })
    .await
}

pub async fn device(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    read(state, &req, move |state, conn| {
        let mut d = [store::device(conn, &id)?.ok_or(ApiError::NotFound("device"))?];
        state.checkins.overlay(&mut d);
        let [d] = super::views::devices(conn, d.into())?
            .try_into()
            .map_err(|_| ApiError::NotFound("device"))?;
        Ok(d)
    })
    .await
}

pub async fn reports(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    read(state, &req, move |_, conn| {
        Ok(store::reports_of(conn, &id)?)
    })
    .await
}

/// A file in DATA/uploads that is removed when dropped (an upload refused or stored).
struct Upload(std::path::PathBuf);

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Uploads a bundle: the operator authenticated first, then the body streamed to a file
/// (at most the configured maximum), verified against the fleet's trust root before anything
/// is stored.
pub async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let timeout = state.read_timeout;
    let drain = Some(crate::body::DRAIN_REFUSED as u64);
    let who = match authorize(&state, &req, Role::Operator).await {
        Ok(who) => who,
        Err(e) => return Err(crate::body::refuse(payload, drain, timeout, e).await),
    };
    let dir = state.data.join("uploads");
    let (upload, file) = blocking(move || {
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.part", auth::new_token()?));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((Upload(path), file))
    })
    .await?;
    crate::body::to_file(
        &req,
        payload,
        file,
        "bundle",
        state.max_upload,
        state.read_timeout,
    )
    .await?;
    let data = state.data.clone();
    let root = state.root.clone();
    let stored = act(
        state,
        who,
        "artifact.upload",
        String::new(),
        move |conn, _| {
            let body = std::fs::read(&upload.0)?;
            drop(upload);
            let verified = artifact::bundle::open(&body, &root)
                .map_err(|e| ApiError::Invalid(e.code(), e.to_string()))?;
            // A release for a board no layout of this fleet describes cannot be meant for it.
            if let Some(b) = verified
                .verified
                .manifest
                .boards
                .iter()
                .find(|b| layout::board(b).is_none())
            {
                let known: Vec<&str> = layout::BOARDS.iter().map(|l| l.board).collect();
                return Err(ApiError::Invalid(
                    "wrong_board",
                    format!(
                        "board {b:?} is not a board of this fleet ({})",
                        known.join(", ")
                    ),
                ));
            }
            let m = &verified.verified.manifest;
            let primary = m.primary().ok_or_else(|| {
                ApiError::Invalid("inconsistent_components", "no component".into())
            })?;
            let payload: Vec<u8> = verified
                .payloads
                .iter()
                .flat_map(|p| p.iter().copied())
                .collect();
            let payload_sha256 = store::write_payload(&data, &payload)?;
            let a = store::insert_artifact(
                conn,
                &store::NewArtifact {
                    kind: primary.kind,
                    name: primary.name,
                    version: primary.version.to_string(),
                    security_counter: m.security_counter,
                    boards: m.boards.join(","),
                    // Re-encoded from the decoded envelope: the signed body is the same bytes.
                    envelope: verified.verified.envelope.to_vec(),
                    payload_sha256,
                    payload_len: payload.len(),
                },
            )?;
            // Its streams: compressed, and deltas from the releases devices may run now. They
            // only save bytes: a release whose streams could not be made is still stored, and
            // offered as its plain payloads.
            let made = crate::streams::make_for(conn, &data, &a, &payload).unwrap_or_else(|e| {
                crate::log::warn(
                    "streams_not_made",
                    &[("artifact", a.id.to_string()), ("reason", e.to_string())],
                );
                Vec::new()
            });
            let detail = format!(
                "{} {} {} ({} bytes, sha256 {}; streams: {})",
                a.kind,
                a.name,
                a.version,
                a.payload_len,
                a.payload_sha256,
                made.iter()
                    .map(|s| match s.base_artifact_id {
                        Some(b) => format!("delta from {b} {} bytes", s.len),
                        None => format!("compressed {} bytes", s.len),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok((a, detail))
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(stored))
}

pub async fn artifacts(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    read(state, &req, |_, conn| Ok(store::list_artifacts(conn)?)).await
}

pub async fn artifact(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    read(state, &req, move |state, conn| {
        super::views::artifact_detail(conn, &state.root, id)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    device_id: String,
    artifact_id: i64,
}

pub async fn assign(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Assign>,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let who = authorize(&state, &req, Role::Operator).await?;
    let a = body.into_inner();
    act(
        state,
        who,
        "assignment.set",
        a.device_id.clone(),
        move |conn, _| {
            store::device(conn, &a.device_id)?.ok_or(ApiError::NotFound("device"))?;
            store::artifact(conn, a.artifact_id)?.ok_or(ApiError::NotFound("artifact"))?;
            store::assign(conn, &a.device_id, a.artifact_id)?;
            Ok(((), format!("artifact {}", a.artifact_id)))
        },
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The answer to rollout creation: the rollout, and for a model how many of the selected
/// devices cannot run its runtime ABI or are of unknown ABI (`null` for firmware).
#[derive(Debug, serde::Serialize)]
struct Created {
    #[serde(flatten)]
    rollout: rollout_view::RolloutView,
    compatibility: Option<crate::rollout::compat::Compatibility>,
}

pub async fn create_rollout(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewRollout>,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let who = authorize(&state, &req, Role::Operator).await?;
    let new = body.into_inner();
    let checkins = state.checkins.clone();
    let waiters = state.waiters.clone();
    let view = act(
        state,
        who,
        "rollout.create",
        String::new(),
        move |conn, who| {
            // The plan records what each device runs now: write the latest check-ins first.
            checkins.flush(conn)?;
            let (id, compatibility) = lifecycle::create(conn, &new, &who.name)?;
            // Its first stage is committed: its devices waiting in long-poll hear it now.
            records::wake_devices(conn, &waiters, id)?;
            let detail = format!(
                "rollout {id}: artifact {} stages {}",
                new.artifact_id,
                new.stages.join(",")
            );
            let rollout = rollout_view::view(conn, id, true)?;
            Ok((
                Created {
                    rollout,
                    compatibility,
                },
                detail,
            ))
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(view))
}

pub async fn list_rollouts(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    read(state, &req, |_, conn| Ok(rollout_view::list(conn)?)).await
}

pub async fn rollout(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    read(state, &req, move |_, conn| {
        Ok(rollout_view::view(conn, id, true)?)
    })
    .await
}

/// `POST /api/rollouts/{id}/{pause|resume|abort|rollback}`.
pub async fn rollout_action(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let who = authorize(&state, &req, Role::Operator).await?;
    let (id, action) = path.into_inner();
    let action = Action::parse(&action).ok_or(ApiError::NotFound("action"))?;
    let audited: &'static str = match action {
        Action::Pause => "rollout.pause",
        Action::Resume => "rollout.resume",
        Action::Abort => "rollout.abort",
        Action::Rollback => "rollout.rollback",
    };
    let waiters = state.waiters.clone();
    let view = act(state, who, audited, id.to_string(), move |conn, who| {
        lifecycle::operator_action(conn, id, action, &who.name)?;
        // A rollback sends devices back now (the other waiters decide again and go on waiting).
        records::wake_devices(conn, &waiters, id)?;
        Ok((rollout_view::view(conn, id, true)?, String::new()))
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    role: Role,
}

pub async fn create_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewToken>,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let who = authorize(&state, &req, Role::Admin).await?;
    let t = body.into_inner();
    if !valid_name(&t.name, 64) {
        return Err(ApiError::Invalid(
            "invalid_name",
            format!("token name {:?}: 1-64 of [A-Za-z0-9._:-]", t.name),
        ));
    }
    let name = t.name.clone();
    let token = act(state, who, "token.create", name, move |conn, _| {
        Ok((
            auth::create(conn, &t.name, t.role)?,
            t.role.as_str().to_owned(),
        ))
    })
    .await?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "token": token })))
}

pub async fn whoami(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let who = authorize(&state.into_inner(), &req, Role::Viewer).await?;
    Ok(HttpResponse::Ok().json(who))
}

pub async fn audit_log(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    read(state, &req, |_, conn| audit::recent(conn, 500)).await
}
