//! The API's one error type: each variant maps to one status and a stable machine code.

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
    #[error("{0} already exists")]
    Conflict(&'static str),
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
            ApiError::Invalid(code, _) => code,
            ApiError::Conflict(_) => "conflict",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::Csrf => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Invalid(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            crate::log::warn("internal_error", &[("error", e.clone())]);
        }
        HttpResponse::build(self.status_code())
            .json(serde_json::json!({ "error": self.code(), "message": self.to_string() }))
    }
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
