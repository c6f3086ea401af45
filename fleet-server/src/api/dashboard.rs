//! The dashboard: sign-in with an operator token (a session cookie, HttpOnly and SameSite, and a
//! CSRF token for actions), and the page and its assets from `web/`, embedded in the binary.

use super::{AppState, SESSION_COOKIE, blocking};
use crate::auth;
use crate::error::ApiError;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

const INDEX: &str = include_str!("../../../web/index.html");
const LOGIN: &str = include_str!("../../../web/login.html");
const APP_JS: &str = include_str!("../../../web/app.js");
const STYLE: &str = include_str!("../../../web/style.css");

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/login", web::get().to(login_page))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/session", web::get().to(session))
        .route("/static/app.js", web::get().to(app_js))
        .route("/static/style.css", web::get().to(style));
}

/// Pages are not framed by other sites and load nothing from elsewhere.
fn page(body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ))
        .insert_header(("x-frame-options", "DENY"))
        .body(body)
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("location", to))
        .finish()
}

async fn session_of(
    state: &web::Data<AppState>,
    req: &HttpRequest,
) -> Option<(auth::Principal, String)> {
    let id = req.cookie(SESSION_COOKIE)?.value().to_owned();
    let state = state.clone().into_inner();
    blocking(move || auth::session(&mut *state.pool.get()?, &id))
        .await
        .ok()
}

async fn index(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match session_of(&state, &req).await {
        Some(_) => page(INDEX),
        None => see_other("/login"),
    }
}

async fn login_page() -> HttpResponse {
    page(LOGIN)
}

#[derive(Debug, Deserialize)]
struct Login {
    token: String,
}

/// Signs in; failed sign-ins are throttled per address and overall (429 with `Retry-After`,
/// before the token is looked at) and written to the audit log.
async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<Login>,
) -> HttpResponse {
    let token = form.into_inner().token;
    let state = state.into_inner();
    if let Err(e) = super::operator::throttled(&state, &req) {
        return actix_web::ResponseError::error_response(&e);
    }
    let s = state.clone();
    let opened = blocking(move || {
        let state = s;
        let mut conn = state.pool.get()?;
        let who = auth::lookup(&mut conn, token.trim())?;
        let (id, _) = auth::open_session(&mut conn, &who)?;
        crate::audit::record(&mut conn, &who, "session.open", "dashboard", "")?;
        Ok(id)
    })
    .await;
    match opened {
        Ok(id) => {
            let cookie = Cookie::build(SESSION_COOKIE, id)
                .path("/")
                .http_only(true)
                .same_site(SameSite::Strict)
                .max_age(actix_web::cookie::time::Duration::milliseconds(
                    auth::SESSION_MS,
                ))
                .finish();
            HttpResponse::SeeOther()
                .insert_header(("location", "/"))
                .cookie(cookie)
                .finish()
        }
        Err(ApiError::Unauthorized) => {
            super::operator::failed(&state, &req, "auth.sign_in_failure", "unknown token").await;
            see_other("/login?failed")
        }
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}

async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let who = super::operator::authorize(&state, &req, auth::Role::Viewer).await?;
    if let Some(c) = req.cookie(SESSION_COOKIE) {
        let id = c.value().to_owned();
        blocking(move || {
            let mut conn = state.pool.get()?;
            auth::close_session(&mut conn, &id)?;
            crate::audit::record(&mut conn, &who, "session.close", "dashboard", "")
        })
        .await?;
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

/// Who is signed in, and the CSRF token the page sends with every action.
async fn session(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (who, csrf) = session_of(&state, &req)
        .await
        .ok_or(ApiError::Unauthorized)?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(serde_json::json!({ "name": who.name, "role": who.role, "csrf": csrf })))
}

async fn app_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(APP_JS)
}

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(STYLE)
}
