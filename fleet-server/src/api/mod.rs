//! HTTP routes: the device API (CBOR, `protocol` messages), the operator API (JSON, described
//! by `openapi.json`), and operations (`/healthz`, `/metrics`).

mod dashboard;
mod device;
pub mod operator;
pub mod views;

use crate::db::DbPool;
use crate::metrics::Metrics;
use actix_web::{HttpRequest, HttpResponse, web};
use artifact::TrustRoot;
use std::path::PathBuf;
use std::sync::Arc;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub data: PathBuf,
    pub root: TrustRoot,
    pub metrics: Arc<Metrics>,
    pub checkins: Arc<crate::checkins::Checkins>,
    pub credentials: Arc<crate::credentials::Credentials>,
    /// How long an idle device waits before its next check-in.
    pub poll_s: u32,
    /// Failed operator credentials, per address and overall.
    pub throttle: Arc<crate::throttle::Throttle>,
    /// The largest bundle an operator may upload, in bytes.
    pub max_upload: u64,
    /// How long a client may leave its body unsent before it is cut off.
    pub read_timeout: std::time::Duration,
    /// Long-poll check-ins waiting for a command, by device.
    pub waiters: Arc<crate::waiters::Waiters>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

/// The operator API's routes (method, path), as `openapi.json` documents them; a test keeps
/// the two equal.
pub const OPERATOR_ROUTES: &[(&str, &str)] = &[
    ("post", "/api/devices"),
    ("get", "/api/devices"),
    ("get", "/api/devices/{id}"),
    ("get", "/api/devices/{id}/reports"),
    ("post", "/api/artifacts"),
    ("get", "/api/artifacts"),
    ("get", "/api/artifacts/{id}"),
    ("post", "/api/assignments"),
    ("post", "/api/rollouts"),
    ("get", "/api/rollouts"),
    ("get", "/api/rollouts/{id}"),
    ("post", "/api/rollouts/{id}/{action}"),
    ("post", "/api/tokens"),
    ("get", "/api/whoami"),
    ("get", "/api/audit"),
];

/// The OpenAPI document of the operator API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/device/checkin", web::post().to(device::check_in))
        .route("/api/device/chunk", web::post().to(device::chunk))
        .route(
            "/api/device/artifacts/{id}",
            web::get().to(device::artifact_range),
        )
        .route(
            "/api/device/artifacts/{id}/streams/{stream}",
            web::get().to(device::stream_range),
        )
        .route("/api/device/reports", web::post().to(device::report))
        .route("/api/devices", web::post().to(operator::enroll))
        .route("/api/devices", web::get().to(operator::devices))
        .route("/api/devices/{id}", web::get().to(operator::device))
        .route(
            "/api/devices/{id}/reports",
            web::get().to(operator::reports),
        )
        .route("/api/artifacts", web::post().to(operator::upload))
        .route("/api/artifacts", web::get().to(operator::artifacts))
        .route("/api/artifacts/{id}", web::get().to(operator::artifact))
        .route("/api/assignments", web::post().to(operator::assign))
        .route("/api/rollouts", web::post().to(operator::create_rollout))
        .route("/api/rollouts", web::get().to(operator::list_rollouts))
        .route("/api/rollouts/{id}", web::get().to(operator::rollout))
        .route(
            "/api/rollouts/{id}/{action}",
            web::post().to(operator::rollout_action),
        )
        .route("/api/tokens", web::post().to(operator::create_token))
        .route("/api/whoami", web::get().to(operator::whoami))
        .route("/api/audit", web::get().to(operator::audit_log))
        .route("/api/openapi.json", web::get().to(openapi))
        .route("/healthz", web::get().to(healthz))
        .configure(dashboard::configure)
        .route("/metrics", web::get().to(metrics));
}

/// A connection with a gateway's client certificate is served the device API only: a gateway
/// speaks for its devices, never as an operator (nor is a page shown to it).
pub async fn gateway_device_api_only(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<actix_web::body::BoxBody>,
) -> Result<actix_web::dev::ServiceResponse, actix_web::Error> {
    let gateway = req.conn_data::<crate::tls::PeerGateway>().cloned();
    match gateway {
        Some(g) if !req.path().starts_with("/api/device/") => {
            let reason = format!(
                "a gateway's client certificate ({}) is for the device API only, not {}",
                device::names(&g),
                req.path()
            );
            crate::log::warn(
                "gateway_refused",
                &[
                    (
                        "peer",
                        req.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
                    ),
                    ("reason", reason.clone()),
                ],
            );
            Ok(req.error_response(crate::error::ApiError::Gateway("device_api_only", reason)))
        }
        _ => next.call(req).await,
    }
}

/// The bearer token of a request.
fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "fleet_session";

/// How an operator's request is authenticated.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `Authorization: Bearer TOKEN` (fleetctl, scripts): not sent by browsers on their own.
    Bearer(String),
    /// The dashboard's session cookie, with the CSRF header the page sent (if any).
    Session { id: String, csrf: Option<String> },
}

pub fn operator_credential(req: &HttpRequest) -> Option<Credential> {
    if let Some(t) = bearer(req) {
        return Some(Credential::Bearer(t.to_owned()));
    }
    let id = req.cookie(SESSION_COOKIE)?.value().to_owned();
    let csrf = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Some(Credential::Session { id, csrf })
}

/// Runs blocking database work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::error::ApiError> + Send + 'static,
) -> Result<T, crate::error::ApiError> {
    web::block(f)
        .await
        .map_err(|e| crate::error::ApiError::Internal(e.to_string()))?
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

/// Healthy when the database answers.
async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let state = state.into_inner();
    let ok = blocking(move || {
        use diesel::RunQueryDsl;
        let mut conn = state.pool.get()?;
        diesel::sql_query("SELECT 1").execute(&mut *conn)?;
        Ok(())
    })
    .await;
    match ok {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ok" })),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "unavailable", "error": e.to_string() })),
    }
}

async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, crate::error::ApiError> {
    let state = state.into_inner();
    let text = blocking(move || {
        let mut conn = state.pool.get()?;
        state
            .metrics
            .render(&mut conn, crate::store::now_ms(), &state.waiters)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}
