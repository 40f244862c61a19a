//! The one error type handlers answer with: the contract's JSON shape
//! `{"code": "...", "message": "..."}` with a stable machine-readable code.
//! Domain errors convert into it with `From`. The cause of a 5xx is logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Declares [`ErrorCode`]: each code with the one status it answers and an example
/// message (the OpenAPI document shows it).
macro_rules! error_codes {
    ($($variant:ident = $code:literal, $status:ident, $example:literal;)*) => {
        /// Every stable machine-readable code an error answers. Each code has one
        /// status, so an answer's status follows from its code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }

            /// A message such an answer may carry.
            pub fn example(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $example,)*
                }
            }
        }
    };
}

error_codes! {
    InvalidRequest = "INVALID_REQUEST", BAD_REQUEST, "amount must be between 1 and 1000000";
    Unauthenticated = "UNAUTHENTICATED", UNAUTHORIZED, "a valid bearer token is required";
    InvalidCredentials = "INVALID_CREDENTIALS", UNAUTHORIZED, "wrong email or password";
    Forbidden = "FORBIDDEN", FORBIDDEN, "this token does not belong to the user concerned";
    UserSuspended = "USER_SUSPENDED", FORBIDDEN, "this user is suspended";
    NotFound = "NOT_FOUND", NOT_FOUND, "no such route";
    UserNotFound = "USER_NOT_FOUND", NOT_FOUND, "user 1 not found";
    ProductNotFound = "PRODUCT_NOT_FOUND", NOT_FOUND, "product 1 not found";
    VariantNotFound = "VARIANT_NOT_FOUND", NOT_FOUND, "variant 7 not found";
    CouponNotFound = "COUPON_NOT_FOUND", NOT_FOUND, "coupon 1 not found";
    UserCouponNotFound = "USER_COUPON_NOT_FOUND", NOT_FOUND, "user coupon 1 not found";
    OrderNotFound = "ORDER_NOT_FOUND", NOT_FOUND, "order 1 not found";
    EventNotFound = "EVENT_NOT_FOUND", NOT_FOUND, "no undelivered event with this id";
    MethodNotAllowed = "METHOD_NOT_ALLOWED", METHOD_NOT_ALLOWED, "method not allowed on this route";
    IdempotencyKeyInProgress = "IDEMPOTENCY_KEY_IN_PROGRESS", CONFLICT, "a request with this Idempotency-Key is still in flight";
    BalanceLimitExceeded = "BALANCE_LIMIT_EXCEEDED", CONFLICT, "the balance may not exceed 100000000";
    DailyChargeLimitExceeded = "DAILY_CHARGE_LIMIT_EXCEEDED", CONFLICT, "charges today may not exceed 2000000";
    InsufficientBalance = "INSUFFICIENT_BALANCE", CONFLICT, "the balance is less than the amount to pay";
    InsufficientStock = "INSUFFICIENT_STOCK", CONFLICT, "variant 1 has 0 in stock, 2 requested";
    ProductNotAvailable = "PRODUCT_NOT_AVAILABLE", CONFLICT, "product 1 is not available";
    CartEmpty = "CART_EMPTY", CONFLICT, "the cart is empty";
    CartFull = "CART_FULL", CONFLICT, "a cart holds at most 50 lines";
    CouponNotUsable = "COUPON_NOT_USABLE", CONFLICT, "user coupon 1 cannot be used: already used";
    OrderNotPayable = "ORDER_NOT_PAYABLE", CONFLICT, "order 1 is PAID, not PENDING";
    OrderNotCancellable = "ORDER_NOT_CANCELLABLE", CONFLICT, "order 1 is EXPIRED and cannot be cancelled";
    OrderStatusConflict = "ORDER_STATUS_CONFLICT", CONFLICT, "order 1 is PENDING";
    EmailTaken = "EMAIL_TAKEN", CONFLICT, "this email is already registered";
    CouponSoldOut = "COUPON_SOLD_OUT", CONFLICT, "the coupon is sold out";
    CouponAlreadyIssued = "COUPON_ALREADY_ISSUED", CONFLICT, "the user already holds this coupon";
    CouponNotInIssuePeriod = "COUPON_NOT_IN_ISSUE_PERIOD", CONFLICT, "the coupon is not being issued now";
    CouponInactive = "COUPON_INACTIVE", CONFLICT, "the coupon is inactive";
    CouponQuantityBelowIssued = "COUPON_QUANTITY_BELOW_ISSUED", CONFLICT, "120 are already issued";
    StockBelowZero = "STOCK_BELOW_ZERO", CONFLICT, "stock would go below zero";
    VariantExists = "VARIANT_EXISTS", CONFLICT, "the product already has a variant with these options";
    SkuExists = "SKU_EXISTS", CONFLICT, "a variant with this SKU exists";
    PayloadTooLarge = "PAYLOAD_TOO_LARGE", PAYLOAD_TOO_LARGE, "request body is too large";
    UnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE", UNSUPPORTED_MEDIA_TYPE, "expected a JSON body with Content-Type: application/json";
    IdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED", UNPROCESSABLE_ENTITY, "this Idempotency-Key was used for a different request";
    RateLimited = "RATE_LIMITED", TOO_MANY_REQUESTS, "too many requests; retry after the time in Retry-After";
    Internal = "INTERNAL", INTERNAL_SERVER_ERROR, "internal error";
    Overloaded = "OVERLOADED", SERVICE_UNAVAILABLE, "the server is at its limit of requests in flight; retry";
    Timeout = "TIMEOUT", SERVICE_UNAVAILABLE, "the request took too long";
    Unavailable = "UNAVAILABLE", SERVICE_UNAVAILABLE, "the service is overloaded, retry later";
    OutcomeUnknown = "OUTCOME_UNKNOWN", GATEWAY_TIMEOUT, "the outcome of this request is not known yet; send it again with the same Idempotency-Key to learn it";
}

impl std::str::FromStr for ErrorCode {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or(())
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"code": "INSUFFICIENT_BALANCE", "message": "the balance is less than the amount to pay"}))]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `INSUFFICIENT_BALANCE` (each operation's
    /// answers list the codes it may give).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Seconds to put in `Retry-After`.
    pub retry_after: Option<u64>,
    /// A deadlock or serialization failure: the transaction may simply run again.
    pub retry: bool,
}

impl ApiError {
    /// An answer with `code` and the status that code has.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: code.status(),
            code,
            message: message.into(),
            retry_after: None,
            retry: false,
        }
    }

    /// 400 `INVALID_REQUEST`: malformed or out-of-range input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// 500: a real fault. The cause is logged here and never sent to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// 503 with `Retry-After: 1`: overloaded or colliding, not broken; nothing was
    /// applied, and the same request may simply be sent again.
    pub fn unavailable(code: ErrorCode, message: impl Into<String>) -> Self {
        debug_assert_eq!(code.status(), StatusCode::SERVICE_UNAVAILABLE);
        let mut e = Self::new(code, message);
        e.retry_after = Some(1);
        e
    }

    pub fn payload_too_large() -> Self {
        Self::new(ErrorCode::PayloadTooLarge, "request body is too large")
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
                ApiError::unavailable(
                    ErrorCode::Unavailable,
                    "the service is overloaded, retry later",
                )
            }
            // A statement cancelled by SHOP_DB_STATEMENT_TIMEOUT_MS: the database is
            // overloaded, not broken (the transaction is rolled back, nothing applied).
            sqlx::Error::Database(e) if e.code().as_deref() == Some("57014") => {
                tracing::warn!("a statement ran past the statement timeout");
                ApiError::unavailable(
                    ErrorCode::Unavailable,
                    "the database is overloaded, retry later",
                )
            }
            sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("40P01" | "40001")) => {
                let mut err = ApiError::unavailable(
                    ErrorCode::Unavailable,
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
