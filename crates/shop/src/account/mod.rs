//! Accounts and sessions: a user's profile (name, optional email and password,
//! status), login sessions with short-lived access tokens and rotating refresh
//! tokens, new API tokens, and suspension by the admin.
//!
//! Invariants kept here:
//! - emails are unique regardless of case (`users.email_key`, a unique index);
//! - passwords are kept only as Argon2id PHC strings, hashed off the async runtime;
//! - a refresh token is kept only as its SHA-256 and works once; presented again, it
//!   ends its session (a theft signal);
//! - every change that makes tokens stop working is a row of `revocations`, written in
//!   the same commit as the change, which every instance follows (see
//!   [`revocations`]): checking a token never reads the database.

pub mod revocations;
pub mod routes;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
use crate::ids::UserId;

/// Whether a user's tokens open anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Active,
    /// Every token of the user answers 403 `USER_SUSPENDED`.
    Suspended,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Suspended => "SUSPENDED",
        }
    }
}

impl TryFrom<&str> for Status {
    type Error = sqlx::Error;

    /// A status as the database stores it; anything else is a fault (a logged 500).
    fn try_from(s: &str) -> Result<Status, sqlx::Error> {
        match s {
            "ACTIVE" => Ok(Status::Active),
            "SUSPENDED" => Ok(Status::Suspended),
            other => Err(sqlx::Error::Decode(
                format!("unknown user status `{other}`").into(),
            )),
        }
    }
}

/// A user as the API answers it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 4, "name": "choi", "email": "choi@example.com", "status": "ACTIVE", "createdAt": "2026-12-04T09:30:00.000Z"}))]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    pub name: String,
    #[schema(required = true)]
    pub email: Option<String>,
    pub status: Status,
    pub created_at: DateTime<Utc>,
}

/// A new user and the bearer token that acts as them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 4, "name": "choi", "email": "choi@example.com", "status": "ACTIVE", "createdAt": "2026-12-04T09:30:00.000Z", "token": "4.Rrk9jRqtaslYGwhhp-ajA5nGLebfP50AZLoNK1ex5yE"}))]
#[serde(rename_all = "camelCase")]
pub struct CreatedUser {
    #[serde(flatten)]
    pub user: User,
    /// `Authorization: Bearer <token>` for this user's routes, orders and coupon issues.
    pub token: String,
}

/// A new API token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"token": "4.a1.kQchob7glf4OdgQnCoFbybI1CillwlRO-VQYhXY3h0g"}))]
pub struct ApiToken {
    /// The user's bearer token; every earlier API token of the user stops working.
    pub token: String,
}

/// A session's tokens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"userId": 4, "accessToken": "4.s1.1796428747.CbE5T_gFKggayvvDv7nty9AIG0Og0xtxmF__UtKW1nc", "accessExpiresAt": "2026-12-04T09:45:00Z", "refreshToken": "F0H9uWBRxtl3BqYLcvxEjO2g9hZZC_wror3TklseToI", "refreshExpiresAt": "2027-01-03T09:30:00Z"}))]
#[serde(rename_all = "camelCase")]
pub struct SessionTokens {
    pub user_id: UserId,
    /// A bearer token that works like the API token until `accessExpiresAt`.
    pub access_token: String,
    pub access_expires_at: DateTime<Utc>,
    /// Trade it once at `POST /api/v1/sessions/refresh` for a new pair.
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
}

/// Why an account request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("user {0} not found")]
    UserNotFound(UserId),
    #[error("this email is already taken")]
    EmailTaken,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("the refresh token is not valid")]
    InvalidRefreshToken,
    #[error("this user is suspended")]
    Suspended,
    #[error("{0}")]
    Incomplete(&'static str),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            e @ AccountError::UserNotFound(_) => {
                ApiError::new(ErrorCode::UserNotFound, e.to_string())
            }
            e @ AccountError::EmailTaken => ApiError::new(ErrorCode::EmailTaken, e.to_string()),
            e @ (AccountError::InvalidCredentials | AccountError::InvalidRefreshToken) => {
                ApiError::new(ErrorCode::InvalidCredentials, e.to_string())
            }
            AccountError::Suspended => suspended(),
            e @ AccountError::Incomplete(_) => ApiError::invalid(e.to_string()),
            AccountError::Db(e) => e.into(),
        }
    }
}

/// 403 `USER_SUSPENDED`.
pub fn suspended() -> ApiError {
    ApiError::new(ErrorCode::UserSuspended, "this user is suspended")
}

/// A user's name: 1..=100 characters after trimming, none of them a control,
/// bidirectional-override or invisible character (see [`crate::text::is_hidden`]).
pub fn validate_name(name: &str) -> Result<String, ApiError> {
    crate::text::visible_name(name, 100).map_err(ApiError::invalid)
}

/// An email: at most 254 characters, `local@domain` with a dot in the domain, no
/// spaces or control characters. Returns it trimmed, and its key (lowercased) that
/// uniqueness is decided on.
pub fn validate_email(email: &str) -> Result<(String, String), ApiError> {
    let email = email.trim();
    let bad =
        || ApiError::invalid("email must look like name@example.com (at most 254 characters)");
    if email.is_empty() || email.chars().count() > 254 {
        return Err(bad());
    }
    if email
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || crate::text::is_hidden(c))
    {
        return Err(bad());
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.contains('@')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || !domain.contains('.')
    {
        return Err(bad());
    }
    Ok((email.to_string(), email.to_lowercase()))
}

/// A password: 8..=128 characters.
pub fn validate_password(password: &str) -> Result<(), ApiError> {
    if (8..=128).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(ApiError::invalid("password must be 8..=128 characters"))
    }
}

/// The Argon2id PHC string of `password` (with the crate's default cost), computed
/// off the async runtime: it is deliberately slow.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(ApiError::internal)?
}

fn hash_now(password: &str) -> Result<String, ApiError> {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(ApiError::internal)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

/// Whether `password` matches `hash` (off the async runtime). Without a hash (an
/// unknown email, or an account without a password) it checks against a dummy hash
/// of the same cost, so that the answer takes about as long either way, and is false.
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        use argon2::PasswordVerifier;
        use argon2::password_hash::PasswordHash;
        let (phc, real) = match &hash {
            Some(h) => (h.as_str(), true),
            None => (dummy_hash()?, false),
        };
        let parsed = PasswordHash::new(phc)
            .map_err(|e| ApiError::internal(format!("a stored password hash is malformed: {e}")))?;
        let ok = argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && real)
    })
    .await
    .map_err(ApiError::internal)?
}

/// A hash of a random password, made once: what unknown emails are checked against.
fn dummy_hash() -> Result<&'static str, ApiError> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let hash = hash_now(&hex::encode(random))?;
    Ok(DUMMY.get_or_init(|| hash))
}

/// A new refresh token (32 random bytes, URL-safe base64) and its SHA-256 (hex), the
/// only form in which it is stored.
pub fn new_refresh_token() -> Result<(String, String), ApiError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let sha = refresh_token_sha256(&token);
    Ok((token, sha))
}

/// The stored form of a refresh token.
pub fn refresh_token_sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_keyed_lowercase() {
        let (email, key) = validate_email("  Kim@Example.COM ").unwrap();
        assert_eq!(
            (email.as_str(), key.as_str()),
            ("Kim@Example.COM", "kim@example.com")
        );
        for bad in [
            "",
            "kim",
            "kim@",
            "@example.com",
            "kim@example",
            "kim@.com",
            "k im@example.com",
            "kim@example.com.",
            "a@b@c.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_are_8_to_128_characters() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"가".repeat(128)).is_ok());
        assert!(validate_password(&"x".repeat(129)).is_err());
    }

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            verify_password("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify_password("wrong horse".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(!verify_password("correct horse".into(), None).await.unwrap());
    }

    #[test]
    fn statuses_decode_or_fail() {
        assert_eq!(Status::try_from("SUSPENDED").unwrap(), Status::Suspended);
        assert!(Status::try_from("BANNED").is_err());
    }
}
