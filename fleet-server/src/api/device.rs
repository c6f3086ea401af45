//! The device API: check-in, chunks (POST of a ChunkRequest, or GET with Range), reports.
//! Bodies are `protocol` messages; answers are server frames, as on a serial link. The
//! credential (a header) is checked before a byte of the body is read, and the body is read up
//! to the largest device message only.

use super::{AppState, bearer, blocking};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::rollout::devices::{self as rollouts, DeviceCommand};
use crate::store;
use crate::tls::PeerGateway;
use actix_web::{HttpRequest, HttpResponse, web};
use protocol::{Chunk, ChunkRequest, Command, ServerFrame};

/// Who a device request says it comes from: the credential, and the gateway named by the
/// connection's verified client certificate (taken out of the request first: the request
/// itself stays on its worker thread).
#[derive(Debug)]
struct Caller {
    credential: Option<String>,
    gateway: Option<PeerGateway>,
    peer: String,
}

/// The device a credential belongs to, if it may speak from this connection: a device bound
/// to a gateway (`gateway:NAME`) only through that gateway's certificate, and a gateway's
/// certificate only for the devices bound to it.
fn authenticate(state: &AppState, caller: &Caller) -> Result<String, ApiError> {
    let found = match &caller.credential {
        Some(c) => state.credentials.device(&mut *state.pool.get()?, c),
        None => Err(ApiError::Unauthorized),
    };
    let known = match found {
        Ok(k) => k,
        Err(e) => {
            Metrics::add(&state.metrics.device_auth_failures, 1);
            return Err(e);
        }
    };
    let refusal = match (&known.gateway, &caller.gateway) {
        (None, None) => return Ok(known.device),
        (Some(bound), Some(peer)) if peer.names(bound) => return Ok(known.device),
        (Some(bound), None) => (
            "gateway_required",
            format!(
                "device {} is bound to gateway {bound}: it speaks only through that gateway's certificate",
                known.device
            ),
        ),
        (bound, Some(peer)) => {
            let mut conn = state.pool.get()?;
            let mut enrolled = false;
            for name in &peer.0 {
                enrolled |= store::gateway_enrolled(&mut conn, name)?;
            }
            if !enrolled {
                (
                    "unknown_gateway",
                    format!(
                        "client certificate of an unknown gateway ({}): no device is bound to it",
                        names(peer)
                    ),
                )
            } else {
                (
                    "wrong_gateway",
                    format!(
                        "gateway {} does not speak for device {} (bound to {})",
                        names(peer),
                        known.device,
                        bound.as_deref().unwrap_or("no gateway")
                    ),
                )
            }
        }
    };
    Metrics::add(&state.metrics.device_auth_failures, 1);
    crate::log::warn(
        "gateway_refused",
        &[
            ("peer", caller.peer.clone()),
            ("device", known.device),
            ("reason", refusal.1.clone()),
        ],
    );
    Err(ApiError::Gateway(refusal.0, refusal.1))
}

/// A certificate's names for a message.
pub(crate) fn names(peer: &PeerGateway) -> String {
    if peer.0.is_empty() {
        "a certificate without DNS names".into()
    } else {
        peer.0.join(", ")
    }
}

fn caller(req: &HttpRequest) -> Caller {
    Caller {
        credential: bearer(req).map(str::to_owned),
        gateway: req.conn_data::<PeerGateway>().cloned(),
        peer: req.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
    }
}

/// The device of the request's credential, then its body (a device message, bounded).
async fn authenticated_body(
    state: &std::sync::Arc<AppState>,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(String, web::Bytes), ApiError> {
    let caller = caller(req);
    let s = state.clone();
    let device = match blocking(move || authenticate(&s, &caller)).await {
        Ok(d) => d,
        Err(e) => {
            let limit = Some(crate::body::DRAIN_REFUSED as u64);
            return Err(crate::body::refuse(payload, limit, state.read_timeout, e).await);
        }
    };
    let body = crate::body::read(
        req,
        payload,
        "device message",
        crate::body::MAX_DEVICE_BODY,
        state.read_timeout,
    )
    .await?;
    Ok((device, body))
}

fn frame(f: &ServerFrame<'_>, room: usize) -> Result<HttpResponse, ApiError> {
    let mut buf = vec![0u8; room];
    let n = f.encode(&mut buf)?;
    buf.truncate(n);
    Ok(HttpResponse::Ok()
        .content_type("application/cbor")
        .body(buf))
}

/// A check-in: noted, then answered with the device's command. A long-poll one
/// (`wait_ms`) that would be answered idle waits instead, without a thread or a database
/// connection, until a change wakes its device (`waiters.rs`) and it has a command, or its wait
/// passes (bounded by the poll interval and `MAX_WAIT_MS`); then it answers exactly what a
/// check-in answers at that moment.
pub async fn check_in(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let (device, body) = authenticated_body(&state, &req, payload).await?;
    // The wait asked for, bounded here whatever the client asks (a body that does not decode
    // is refused by the first decision).
    let wait_ms = protocol::decode::<protocol::CheckIn>(&body)
        .ok()
        .and_then(|c| c.wait_ms)
        .unwrap_or(0)
        .min(state.poll_s.saturating_mul(1_000))
        .min(crate::waiters::MAX_WAIT_MS);
    if wait_ms == 0 {
        let answer = decide(&state, &device, &body, true).await?;
        return command_frame(answer, state.poll_s);
    }
    // Registered before the first decision: a change committed while it is made still wakes.
    let watch = state.waiters.watch(&device);
    let mut woken = std::pin::pin!(watch.notify().notified());
    woken.as_mut().enable();
    let mut answer = decide(&state, &device, &body, true).await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms.into());
    while answer.is_none() {
        let passed = tokio::time::timeout_at(deadline, woken.as_mut())
            .await
            .is_err();
        woken.set(watch.notify().notified());
        woken.as_mut().enable();
        answer = decide(&state, &device, &body, false).await?;
        if passed {
            break;
        }
    }
    command_frame(answer, state.poll_s)
}

/// The command for the device of check-in `body`, on a blocking thread with one connection
/// for the decision only; the `first` decision also notes the check-in.
async fn decide(
    state: &std::sync::Arc<AppState>,
    device: &str,
    body: &web::Bytes,
    first: bool,
) -> Result<Option<DeviceCommand>, ApiError> {
    let (s, d, b) = (state.clone(), device.to_owned(), body.clone());
    blocking(move || {
        let c: protocol::CheckIn = protocol::decode(&b)?;
        if c.device_id != d {
            return Err(ApiError::Forbidden);
        }
        if first {
            s.checkins.record(&c);
            Metrics::add(&s.metrics.checkins, 1);
        }
        let mut conn = s.pool.get()?;
        Ok(rollouts::command_for(&mut conn, &d, &c)?)
    })
    .await
}

/// The server frame of a device's command (`None`: idle until the next poll).
fn command_frame(answer: Option<DeviceCommand>, poll_s: u32) -> Result<HttpResponse, ApiError> {
    match answer {
        Some(DeviceCommand::Revert(component)) => {
            frame(&ServerFrame::Command(Command::Revert { component }), 64)
        }
        Some(DeviceCommand::Update(a, stream)) => {
            let url = format!("/api/device/artifacts/{}", a.id);
            frame(
                &ServerFrame::Command(Command::Update {
                    release: a.id as u64,
                    envelope: &a.envelope,
                    url: &url,
                    stream: stream.as_ref().map(crate::streams::Stream::offer),
                }),
                a.envelope.len() + 512,
            )
        }
        None => frame(
            &ServerFrame::Command(Command::Idle {
                poll_after_s: poll_s,
            }),
            64,
        ),
    }
}

/// The bytes a device may fetch of release `release`: its payload (`stream` None) or one of
/// its streams, only if the release is the one assigned to the device (403 otherwise, and for a
/// stream that is unknown or another release's).
fn assigned_bytes(
    state: &AppState,
    device: &str,
    release: i64,
    stream: Option<i64>,
) -> Result<Vec<u8>, ApiError> {
    let mut conn = state.pool.get()?;
    let a = match store::assignment(&mut conn, device)? {
        Some(a) if a.id == release => a,
        _ => return Err(ApiError::Forbidden),
    };
    match stream {
        None => Ok(std::fs::read(store::payload_path(
            &state.data,
            &a.payload_sha256,
        ))?),
        Some(id) => {
            crate::streams::of_release(&mut conn, &state.data, a.id, id)?.ok_or(ApiError::Forbidden)
        }
    }
}

/// Counts bytes served to a device for its release (the rollout view's `bytes_sent`).
fn count_sent(state: &AppState, device: &str, release: i64, n: usize) -> Result<(), ApiError> {
    let mut conn = state.pool.get()?;
    crate::rollout::records::add_bytes_sent(&mut conn, device, release, n as u64)?;
    Ok(())
}

/// A chunk of the assigned release's payload, or of one of its streams (`ChunkRequest::stream`,
/// answered with the same `stream`).
pub async fn chunk(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let metrics = state.metrics.clone();
    let (device, body) = authenticated_body(&state, &req, payload).await?;
    let (r, bytes, start, end) = blocking(move || {
        let r: ChunkRequest = protocol::decode(&body)?;
        let stream = r.stream.map(|s| i64::try_from(s).unwrap_or(-1));
        let release = i64::try_from(r.release).map_err(|_| ApiError::Forbidden)?;
        let bytes = assigned_bytes(&state, &device, release, stream)?;
        let start = (r.offset as usize).min(bytes.len());
        let end = (start + r.len as usize).min(bytes.len());
        count_sent(&state, &device, release, end - start)?;
        Ok((r, bytes, start, end))
    })
    .await?;
    Metrics::add(&metrics.chunks, 1);
    Metrics::add(&metrics.chunk_bytes, (end - start) as u64);
    frame(
        &ServerFrame::Chunk(Chunk {
            release: r.release,
            offset: r.offset,
            data: &bytes[start..end],
            stream: r.stream,
        }),
        end - start + 64,
    )
}

/// `GET` of a release's payload with an optional `Range: bytes=a-b` (gateways cache whole
/// artifacts this way).
pub async fn artifact_range(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    serve_range(state, req, path.into_inner(), None).await
}

/// `GET` of one of a release's streams, whole or with a `Range`, under the same rule as the
/// payload (gateways cache streams this way).
pub async fn stream_range(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (id, stream) = path.into_inner();
    serve_range(state, req, id, Some(stream)).await
}

async fn serve_range(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: i64,
    stream: Option<i64>,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let caller = caller(&req);
    let (payload, range) = blocking(move || {
        let device = authenticate(&state, &caller)?;
        let payload = assigned_bytes(&state, &device, id, stream)?;
        let range = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
            None => Ok(None),
            Some(spec) => parse_range(spec, payload.len()).map(Some),
        }?;
        let served = match range {
            None => payload.len(),
            Some(Some((start, end))) => end + 1 - start,
            Some(None) => 0,
        };
        count_sent(&state, &device, id, served)?;
        Ok((payload, range))
    })
    .await?;
    match range {
        None => Ok(HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(payload)),
        Some(None) => Ok(HttpResponse::RangeNotSatisfiable()
            .insert_header(("content-range", format!("bytes */{}", payload.len())))
            .finish()),
        Some(Some((start, end))) => Ok(HttpResponse::PartialContent()
            .insert_header((
                "content-range",
                format!("bytes {start}-{end}/{}", payload.len()),
            ))
            .content_type("application/octet-stream")
            .body(payload[start..=end].to_vec())),
    }
}

/// The range `a-b` or `a-` of `len` bytes: inclusive bounds, or None when it is not
/// satisfiable; an unparsable one is refused.
fn parse_range(spec: &str, len: usize) -> Result<Option<(usize, usize)>, ApiError> {
    let bad = || ApiError::Invalid("bad_range", spec.to_owned());
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let start: usize = a.parse().map_err(|_| bad())?;
    let end: usize = if b.is_empty() {
        match len.checked_sub(1) {
            Some(e) => e,
            None => return Ok(None),
        }
    } else {
        b.parse().map_err(|_| bad())?
    };
    Ok((start <= end && end < len).then_some((start, end)))
}

pub async fn report(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let (device, body) = authenticated_body(&state, &req, payload).await?;
    let seq = blocking(move || {
        let r: protocol::Report = protocol::decode(&body)?;
        if r.device_id != device {
            return Err(ApiError::Forbidden);
        }
        let mut conn = state.pool.get()?;
        // The report and what it changes in its rollout land together, or neither does.
        let new = crate::db::write_tx(&mut conn, |conn| {
            let new = store::insert_report(conn, &r)?;
            if new {
                rollouts::on_report(conn, &r)?;
            }
            Ok::<_, ApiError>(new)
        })?;
        if new {
            // What it changed (a confirmation after a halt sends the device back) is committed.
            state.waiters.wake([r.device_id]);
        }
        Metrics::add(
            if new {
                &state.metrics.reports
            } else {
                &state.metrics.duplicate_reports
            },
            1,
        );
        Ok(r.seq)
    })
    .await?;
    frame(&ServerFrame::ReportAck { seq }, 16)
}
