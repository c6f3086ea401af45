//! Request bodies read within a bound and a read timeout, after the request's credential was
//! checked: into memory for the device API's small messages, to a file for uploads. Nothing an
//! unauthenticated client sends is read past actix's own small socket buffer.

use crate::error::ApiError;
use actix_web::web::{self, BytesMut};
use futures_util::StreamExt as _;
use std::io::Write as _;
use std::time::Duration;

/// The largest body of the device API: a device message travels in one `protocol::link` frame
/// on a serial link (the gateway relays frames as they are), so none is longer than a frame's
/// payload.
pub const MAX_DEVICE_BODY: usize = protocol::link::MAX_PAYLOAD;

/// How much of a refused request's body is read and thrown away before the answer, so that a
/// client sending a small body gets the answer instead of a reset connection (closing a socket
/// with unread bytes resets it, and the answer with it). Longer bodies are cut off.
pub const DRAIN_REFUSED: usize = 64 * 1024;

/// Reads and discards the body, up to `limit` bytes (`None`: all of it), within the read
/// timeout; `error` is then the answer.
pub async fn refuse(
    mut payload: web::Payload,
    limit: Option<u64>,
    timeout: Duration,
    error: ApiError,
) -> ApiError {
    let mut read = 0u64;
    while limit.is_none_or(|l| read <= l) {
        match next_piece(&mut payload, timeout).await {
            Ok(Some(p)) => read += p.len() as u64,
            Ok(None) | Err(_) => break,
        }
    }
    error
}

/// The declared length, when there is one that is a number.
fn declared_len(req: &actix_web::HttpRequest) -> Option<u64> {
    req.headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Refuses a body whose declared length is over `limit` before a byte of it is read.
pub fn check_declared(
    req: &actix_web::HttpRequest,
    what: &'static str,
    limit: u64,
) -> Result<(), ApiError> {
    match declared_len(req) {
        Some(n) if n > limit => Err(ApiError::TooLarge { what, limit }),
        _ => Ok(()),
    }
}

/// The next piece of the body; a client silent for `timeout` is cut off.
async fn next_piece(
    payload: &mut web::Payload,
    timeout: Duration,
) -> Result<Option<web::Bytes>, ApiError> {
    match actix_web::rt::time::timeout(timeout, payload.next()).await {
        Err(_) => Err(ApiError::ReadTimeout(timeout.as_secs())),
        Ok(None) => Ok(None),
        Ok(Some(Ok(b))) => Ok(Some(b)),
        Ok(Some(Err(e))) => Err(ApiError::Malformed("bad_body", e.to_string())),
    }
}

/// The whole body, at most `limit` bytes.
pub async fn read(
    req: &actix_web::HttpRequest,
    mut payload: web::Payload,
    what: &'static str,
    limit: usize,
    timeout: Duration,
) -> Result<web::Bytes, ApiError> {
    let too_large = ApiError::TooLarge {
        what,
        limit: limit as u64,
    };
    let drain = Some(DRAIN_REFUSED as u64);
    if check_declared(req, what, limit as u64).is_err() {
        return Err(refuse(payload, drain, timeout, too_large).await);
    }
    let mut body = BytesMut::new();
    while let Some(piece) = next_piece(&mut payload, timeout).await? {
        if body.len() + piece.len() > limit {
            return Err(refuse(payload, drain, timeout, too_large).await);
        }
        body.extend_from_slice(&piece);
    }
    Ok(body.freeze())
}

/// Streams the body into `file` (a temporary file the caller owns), at most `limit` bytes;
/// returns its length. Writes happen off the async threads. For authenticated operators only:
/// a body over the limit is read to its end (and thrown away) so that their client gets the
/// 413.
pub async fn to_file(
    req: &actix_web::HttpRequest,
    mut payload: web::Payload,
    file: std::fs::File,
    what: &'static str,
    limit: u64,
    timeout: Duration,
) -> Result<u64, ApiError> {
    if let Err(e) = check_declared(req, what, limit) {
        return Err(refuse(payload, None, timeout, e).await);
    }
    let mut file = std::io::BufWriter::with_capacity(256 * 1024, file);
    let mut len = 0u64;
    let mut pending = BytesMut::new();
    loop {
        let piece = next_piece(&mut payload, timeout).await?;
        let end = piece.is_none();
        if let Some(p) = piece {
            len += p.len() as u64;
            if len > limit {
                let e = ApiError::TooLarge { what, limit };
                return Err(refuse(payload, None, timeout, e).await);
            }
            pending.extend_from_slice(&p);
        }
        // Batches of 256 KiB keep the thread-pool round trips few and the memory small.
        if pending.len() >= 256 * 1024 || (end && !pending.is_empty()) {
            let batch = pending.split().freeze();
            file = super::api::blocking(move || {
                file.write_all(&batch)?;
                Ok(file)
            })
            .await?;
        }
        if end {
            break;
        }
    }
    super::api::blocking(move || {
        let f = file
            .into_inner()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        f.sync_all()?;
        Ok(())
    })
    .await?;
    Ok(len)
}
