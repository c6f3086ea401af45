//! HTTP routes: the device API (CBOR, `protocol` messages) and the operator API (JSON).

mod device;
mod operator;

use crate::db::DbPool;
use actix_web::web;
use artifact::TrustRoot;
use std::path::PathBuf;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub data: PathBuf,
    pub root: TrustRoot,
    /// Operator token (admin) until tokens with roles come.
    pub admin_token: String,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/device/checkin", web::post().to(device::check_in))
        .route("/api/device/chunk", web::post().to(device::chunk))
        .route(
            "/api/device/artifacts/{id}",
            web::get().to(device::artifact_range),
        )
        .route("/api/device/reports", web::post().to(device::report))
        .route("/api/devices", web::post().to(operator::enroll))
        .route("/api/devices", web::get().to(operator::devices))
        .route(
            "/api/devices/{id}/reports",
            web::get().to(operator::reports),
        )
        .route("/api/artifacts", web::post().to(operator::upload))
        .route("/api/artifacts", web::get().to(operator::artifacts))
        .route("/api/assignments", web::post().to(operator::assign));
}

/// The bearer token of a request.
fn bearer(req: &actix_web::HttpRequest) -> Option<&str> {
    req.headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Runs blocking database work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::error::ApiError> + Send + 'static,
) -> Result<T, crate::error::ApiError> {
    web::block(f)
        .await
        .map_err(|e| crate::error::ApiError::Internal(e.to_string()))?
}
