//! The one error type of every handler: a status and a message, answered as
//! `{"error": "..."}`, with `Retry-After` or `WWW-Authenticate` when the caller can act on them.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    message: String,
    retry_after_secs: Option<u64>,
    challenge: Option<&'static str>,
}

impl AppError {
    /// `status` with `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
            retry_after_secs: None,
            challenge: None,
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::NOT_FOUND, message)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401 asking for a bearer token.
    pub fn unauthorized(message: impl Into<String>) -> AppError {
        AppError {
            challenge: Some("Bearer"),
            ..AppError::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    /// 500 for a failure of the store or a task. Only admin routes answer with it, so the
    /// message (the error chain) is shown to the operator; it is logged too.
    pub fn internal(error: anyhow::Error) -> AppError {
        tracing::error!("admin request failed: {error:#}");
        AppError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"))
    }

    /// Adds `Retry-After: secs`: the caller should come back.
    pub fn retry_after(mut self, secs: u64) -> AppError {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<anyhow::Error> for AppError {
    fn from(error: anyhow::Error) -> AppError {
        AppError::internal(error)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}
