//! The API's one error type: each variant maps to one status and a stable machine code, and
//! every answer has the shape `{"error": code, "message": sentence}`. Internal errors are
//! logged with an incident id; the client gets the id, never the text.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown credential")]
    Unauthorized,
    #[error("not allowed")]
    Forbidden,
    /// A session-authenticated action without the session's CSRF token.
    #[error("missing or wrong CSRF token")]
    Csrf,
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Bad input: a stable code (`bad_signature`, `malformed`...) and a sentence.
    #[error("{1}")]
    Invalid(&'static str, String),
    /// A body, path or query that does not parse at all (400, as before it reaches a handler).
    #[error("{1}")]
    Malformed(&'static str, String),
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A body over its route's bound (the device API's largest message, the upload maximum).
    #[error("{what} over {limit} bytes")]
    TooLarge { what: &'static str, limit: u64 },
    /// A client that stopped sending its body for longer than the read timeout.
    #[error("no body bytes for {0} s")]
    ReadTimeout(u64),
    /// Too many failed sign-ins or tokens from this address, or from everyone (429).
    #[error("too many failed sign-ins; retry after {retry_after_s} s")]
    Throttled { retry_after_s: u64 },
    /// A gateway's client certificate where it may not speak, or a device bound to a gateway
    /// without it (403): a stable code and a sentence.
    #[error("{1}")]
    Gateway(&'static str, String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::Csrf => "csrf",
            ApiError::NotFound(_) => "not_found",
            ApiError::Invalid(code, _) | ApiError::Malformed(code, _) => code,
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::ReadTimeout(_) => "read_timeout",
            ApiError::Throttled { .. } => "throttled",
            ApiError::Gateway(code, _) => code,
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::Csrf | ApiError::Gateway(..) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Invalid(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Malformed(..) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::ReadTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            let incident = incident_id();
            crate::log::warn(
                "internal_error",
                &[("incident", incident.clone()), ("error", e.clone())],
            );
            return HttpResponse::build(self.status_code()).json(serde_json::json!({
                "error": self.code(),
                "message": format!("internal error (incident {incident} in the server's log)"),
                "incident": incident,
            }));
        }
        let mut answer = HttpResponse::build(self.status_code());
        if let ApiError::Throttled { retry_after_s } = self {
            answer.insert_header(("retry-after", retry_after_s.to_string()));
        }
        if matches!(self, ApiError::TooLarge { .. } | ApiError::ReadTimeout(_)) {
            // The rest of the body is not read: the connection cannot carry another request.
            answer.insert_header(("connection", "close"));
        }
        answer.json(serde_json::json!({ "error": self.code(), "message": self.to_string() }))
    }
}

/// A short id that ties a client's answer to the log line with the cause.
fn incident_id() -> String {
    let mut raw = [0u8; 6];
    if getrandom::getrandom(&mut raw).is_err() {
        raw = (crate::store::now_ms() as u64).to_le_bytes()[..6]
            .try_into()
            .unwrap_or_default();
    }
    hex::encode(raw)
}

impl From<crate::rollout::Error> for ApiError {
    fn from(e: crate::rollout::Error) -> Self {
        use crate::rollout::Error;
        match e {
            Error::NotFound(what) => ApiError::NotFound(what),
            Error::Invalid { code, message } => ApiError::Invalid(code, message),
            other @ (Error::Corrupt { .. } | Error::CorruptArtifact { .. } | Error::Db(_)) => {
                ApiError::Internal(other.to_string())
            }
        }
    }
}

/// The answer to a request body, path or query that does not parse (actix's extractors would
/// answer in plain text): the API's own shape, with what was wrong.
pub fn malformed(what: &'static str, e: impl std::fmt::Display) -> actix_web::Error {
    ApiError::Malformed(what, e.to_string()).into()
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => ApiError::NotFound("record"),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for ApiError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<protocol::Error> for ApiError {
    fn from(e: protocol::Error) -> Self {
        ApiError::Invalid("bad_message", e.to_string())
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}
