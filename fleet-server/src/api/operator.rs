//! The operator API (JSON): enrolment, devices, artifact upload (verified against the trust
//! root), assignments. Every call needs the operator token.

use super::{AppState, bearer, blocking};
use crate::error::ApiError;
use crate::store;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

fn operator(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    match bearer(req) {
        Some(t) if t == state.admin_token => Ok(()),
        Some(_) => Err(ApiError::Forbidden),
        None => Err(ApiError::Unauthorized),
    }
}

#[derive(Debug, Deserialize)]
pub struct Enroll {
    id: String,
    board: String,
    #[serde(default)]
    tags: Vec<String>,
}

pub async fn enroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Enroll>,
) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    let e = body.into_inner();
    let valid = (1..=protocol::MAX_DEVICE_ID).contains(&e.id.len())
        && e.id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if !valid {
        return Err(ApiError::Invalid(
            "invalid_device_id",
            format!("device id {:?}: 1-64 of [A-Za-z0-9._:-]", e.id),
        ));
    }
    let state = state.into_inner();
    let (id, credential) = blocking(move || {
        let mut conn = state.pool.get()?;
        let credential = store::enroll(&mut conn, &e.id, &e.board, &e.tags.join(","))?;
        Ok((e.id, credential))
    })
    .await?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "id": id, "credential": credential })))
}

pub async fn devices(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    let state = state.into_inner();
    let list = blocking(move || store::list_devices(&mut *state.pool.get()?)).await?;
    Ok(HttpResponse::Ok().json(list))
}

pub async fn reports(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    let state = state.into_inner();
    let id = path.into_inner();
    let list = blocking(move || store::reports_of(&mut *state.pool.get()?, &id)).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Uploads a bundle: verified against the fleet's trust root before anything is stored.
pub async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    let state = state.into_inner();
    let stored = blocking(move || {
        let verified = artifact::bundle::open(&body, &state.root)
            .map_err(|e| ApiError::Invalid(e.code(), e.to_string()))?;
        store::insert_artifact(&mut *state.pool.get()?, &state.data, &verified)
    })
    .await?;
    Ok(HttpResponse::Created().json(stored))
}

pub async fn artifacts(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    let state = state.into_inner();
    let list = blocking(move || store::list_artifacts(&mut *state.pool.get()?)).await?;
    Ok(HttpResponse::Ok().json(list))
}

#[derive(Debug, Deserialize)]
pub struct Assign {
    device_id: String,
    artifact_id: i64,
}

pub async fn assign(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Assign>,
) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    let a = body.into_inner();
    let state = state.into_inner();
    blocking(move || store::assign(&mut *state.pool.get()?, &a.device_id, a.artifact_id)).await?;
    Ok(HttpResponse::NoContent().finish())
}
