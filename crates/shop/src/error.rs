//! The one error type handlers answer with: the contract's JSON shape
//! `{"code": "...", "message": "..."}` with a stable machine-readable code.
//! Domain errors convert into it with `From`. The cause of a 5xx is logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `INSUFFICIENT_BALANCE`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to put in `Retry-After`.
    pub retry_after: Option<u64>,
    /// A deadlock or serialization failure: the transaction may simply run again.
    pub retry: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            retry: false,
        }
    }

    /// 400 `INVALID_REQUEST`: malformed or out-of-range input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409: a business rule refuses the request.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 500: a real fault. The cause is logged here and never sent to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error",
        )
    }

    /// 503 with `Retry-After: 1`: overloaded or colliding, not broken; nothing was
    /// applied, and the same request may simply be sent again.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after = Some(1);
        e
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "request body is too large",
        )
    }
}

impl From<&crate::batch::Refused> for ApiError {
    fn from(refused: &crate::batch::Refused) -> Self {
        use crate::batch::Refused;
        // The writer never produces the domain errors' database variants.
        match refused {
            Refused::Order(e) => crate::order::refusal(e),
            Refused::Balance(e) => crate::balance::refusal(e),
            Refused::Coupon(e) => crate::coupon::refusal(e),
            Refused::Product(e) => crate::product::refusal(e),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut => {
                tracing::warn!("database pool timed out");
                ApiError::unavailable("UNAVAILABLE", "the service is overloaded, retry later")
            }
            // A statement cancelled by SHOP_DB_STATEMENT_TIMEOUT_MS: the database is
            // overloaded, not broken (the transaction is rolled back, nothing applied).
            sqlx::Error::Database(e) if e.code().as_deref() == Some("57014") => {
                tracing::warn!("a statement ran past the statement timeout");
                ApiError::unavailable("UNAVAILABLE", "the database is overloaded, retry later")
            }
            sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("40P01" | "40001")) => {
                let mut err = ApiError::unavailable(
                    "UNAVAILABLE",
                    "the request collided with another one; retry",
                );
                err.retry = true;
                err
            }
            other => ApiError::internal(other),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message,
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
