//! Who is asking, and may they.
//!
//! - A user's token is `<userId>.<signature>`: an HMAC-SHA256 of the user id under a
//!   key kept in the database (`server_secrets`, made once by the first instance to
//!   start, or `SHOP_TOKEN_SECRET`), so every instance checks it without a lookup.
//!   `POST /api/v1/users` hands it out.
//! - The admin token is `SHOP_ADMIN_TOKEN`; on the embedded default, when unset, one is
//!   generated at first start, stored beside the database (mode 0600) and printed once.
//!   Only its SHA-256 is kept in memory.
//!
//! Both are compared in constant time, and neither is ever logged.
//!
//! The [`authenticate`] middleware runs before anything looks a resource up: it puts
//! the [`Caller`] in the request's extensions and refuses admin routes to everyone
//! but the admin (401 without a valid token, 403 with a user's). Handlers then take
//! [`OwnUser`] (for `/users/{userId}/...`) or [`Authenticated`] and call
//! [`Caller::require_user`] once they know whose resource it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::db::Db;
use crate::error::ApiError;
use crate::ids::UserId;

/// The keys that tokens are checked against. Cheap to clone.
#[derive(Clone)]
pub struct Auth(Arc<Keys>);

struct Keys {
    signing: Vec<u8>,
    admin_sha256: [u8; 32],
}

/// Who sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No `Authorization` header.
    Anonymous,
    /// A header that is not a valid token.
    Invalid,
    User(UserId),
    Admin,
}

impl Caller {
    /// The scope that idempotency keys live in.
    pub fn scope(self) -> String {
        match self {
            Caller::Anonymous | Caller::Invalid => "anonymous".to_string(),
            Caller::User(u) => format!("user:{u}"),
            Caller::Admin => "admin".to_string(),
        }
    }

    /// 401 unless a valid token came with the request.
    pub fn require_authenticated(self) -> Result<Caller, ApiError> {
        match self {
            Caller::Anonymous => Err(unauthenticated("this route needs a bearer token")),
            Caller::Invalid => Err(unauthenticated("the bearer token is not valid")),
            Caller::User(_) | Caller::Admin => Ok(self),
        }
    }

    /// The user asking: 401 without a valid token, 403 for the admin (whose token opens
    /// admin routes only).
    pub fn user(self) -> Result<UserId, ApiError> {
        match self.require_authenticated()? {
            Caller::User(u) => Ok(u),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "this route needs a user's token",
            )),
        }
    }

    /// The caller must be `user`: 401 without a valid token, 403 with anyone else's
    /// (the admin's included: the admin token opens admin routes only).
    pub fn require_user(self, user: UserId) -> Result<(), ApiError> {
        match self.require_authenticated()? {
            Caller::User(u) if u == user => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "this token does not belong to the user concerned",
            )),
        }
    }
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
}

const SIGNING_KEY: &str = "token_signing_key";

impl Auth {
    /// Loads the signing key (from `secret`, or the database, creating it there once)
    /// and the admin token (see [`admin_token`]).
    pub async fn load(db: &Db, secret: Option<&str>, admin_token: &str) -> anyhow::Result<Auth> {
        let signing = match secret {
            Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
            _ => shared_signing_key(db).await?,
        };
        Ok(Auth(Arc::new(Keys {
            signing,
            admin_sha256: Sha256::digest(admin_token.as_bytes()).into(),
        })))
    }

    fn mac(&self, user: UserId) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0.signing).expect("HMAC takes any key length");
        mac.update(format!("shop-user-token:v1:{user}").as_bytes());
        mac
    }

    /// The bearer token of `user`.
    pub fn token_for(&self, user: UserId) -> String {
        let sig = self.mac(user).finalize().into_bytes();
        format!("{user}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Who presents `token`.
    pub fn caller(&self, token: &str) -> Caller {
        let admin: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if bool::from(admin.ct_eq(&self.0.admin_sha256)) {
            return Caller::Admin;
        }
        let Some((id, sig)) = token.split_once('.') else {
            return Caller::Invalid;
        };
        let (Some(id), Ok(sig)) = (canonical_id(id), URL_SAFE_NO_PAD.decode(sig)) else {
            return Caller::Invalid;
        };
        match self.mac(UserId(id)).verify_slice(&sig) {
            Ok(()) => Caller::User(UserId(id)),
            Err(_) => Caller::Invalid,
        }
    }

    fn caller_of(&self, parts: &Parts) -> Caller {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Caller::Anonymous;
        };
        let Some(token) = value.to_str().ok().and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        }) else {
            return Caller::Invalid;
        };
        self.caller(token)
    }
}

/// A user id written the one way [`Auth::token_for`] writes it: digits without a
/// sign or leading zeros (`6`, never `+6` or `06`), positive. One user, one token.
fn canonical_id(text: &str) -> Option<i64> {
    let id = text.parse::<i64>().ok().filter(|id| *id > 0)?;
    (id.to_string() == text).then_some(id)
}

/// One random key per database, shared by every instance that uses it.
async fn shared_signing_key(db: &Db) -> anyhow::Result<Vec<u8>> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "insert into server_secrets (name, value) values ($1, $2) on conflict (name) do nothing",
    )
    .bind(SIGNING_KEY)
    .bind(hex::encode(random_bytes()?))
    .execute(&mut *tx)
    .await?;
    let (value,): (String,) = sqlx::query_as("select value from server_secrets where name = $1")
        .bind(SIGNING_KEY)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(hex::decode(value)?)
}

fn random_bytes() -> anyhow::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    Ok(bytes)
}

/// Where the embedded default keeps a generated admin token: beside the database.
pub fn admin_token_path(sqlite_path: &Path) -> PathBuf {
    let mut name = sqlite_path.as_os_str().to_owned();
    name.push(".admin-token");
    PathBuf::from(name)
}

/// The admin token: `configured` when set; otherwise, on the embedded default, the
/// one stored beside the database, generated (and printed once) at first start.
/// PostgreSQL deployments must set it: instances would otherwise disagree.
pub fn admin_token(configured: Option<&str>, sqlite_path: Option<&Path>) -> anyhow::Result<String> {
    if let Some(token) = configured.filter(|t| !t.is_empty()) {
        return Ok(token.to_string());
    }
    let Some(db_path) = sqlite_path else {
        anyhow::bail!("SHOP_ADMIN_TOKEN must be set when the database is PostgreSQL");
    };
    let path = admin_token_path(db_path);
    if let Ok(stored) = std::fs::read_to_string(&path) {
        let stored = stored.trim();
        if !stored.is_empty() {
            return Ok(stored.to_string());
        }
    }
    let token = URL_SAFE_NO_PAD.encode(random_bytes()?);
    write_private(&path, &token)?;
    // Printed once, to the terminal only: never through the log pipeline.
    eprintln!(
        "shop: generated the admin token (stored in {}):\n  {token}",
        path.display()
    );
    Ok(token)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("could not create {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Puts the [`Caller`] in the request's extensions; admin routes admit only the admin.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let caller = state.auth.caller_of(&parts);
    if parts.uri.path().starts_with("/api/v1/admin/") && caller != Caller::Admin {
        let refusal = match caller.require_authenticated() {
            Err(e) => e,
            Ok(_) => ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "admin routes need the admin token",
            ),
        };
        return refusal.into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

fn caller_in(parts: &Parts) -> Caller {
    parts
        .extensions
        .get::<Caller>()
        .copied()
        .unwrap_or(Caller::Anonymous)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(caller_in(parts))
    }
}

/// A caller with a valid token (401 otherwise), whose ownership of the resource the
/// handler checks once it knows the owner.
pub struct Authenticated(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        caller_in(parts).require_authenticated().map(Authenticated)
    }
}

/// The `{userId}` of a `/users/{userId}/...` route, presented by that user's token:
/// 401 without a valid token, then 400 for a malformed id, then 403 for anyone else.
pub struct OwnUser(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for OwnUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = caller_in(parts).require_authenticated()?;
        let user: UserId = crate::http::PathIds::from_request_parts(parts, state)
            .await?
            .get("userId")?;
        caller.require_user(user)?;
        Ok(OwnUser(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth(Arc::new(Keys {
            signing: b"k".to_vec(),
            admin_sha256: Sha256::digest(b"admin-secret").into(),
        }))
    }

    #[test]
    fn a_user_token_names_its_user_and_nothing_else() {
        let auth = auth();
        let token = auth.token_for(UserId(7));
        assert_eq!(auth.caller(&token), Caller::User(UserId(7)));
        // The signature of user 7 does not open user 8.
        let forged = token.replacen("7.", "8.", 1);
        assert_eq!(auth.caller(&forged), Caller::Invalid);
        for bad in ["", "7", "7.", ".abc", "x.y", "-7.abc", "0.abc", "admin"] {
            assert_eq!(auth.caller(bad), Caller::Invalid, "{bad}");
        }
        // The id part is canonical: the signature of 7 does not make `+7` or `07` valid.
        let sig = token.split_once('.').unwrap().1;
        for odd in ["+7", "07", "007", " 7", "7 "] {
            assert_eq!(
                auth.caller(&format!("{odd}.{sig}")),
                Caller::Invalid,
                "{odd}"
            );
        }
        assert_eq!(auth.caller("admin-secret"), Caller::Admin);
        // Another key makes other tokens.
        let other = Auth(Arc::new(Keys {
            signing: b"other".to_vec(),
            admin_sha256: [0; 32],
        }));
        assert_eq!(other.caller(&token), Caller::Invalid);
    }

    #[test]
    fn ownership_is_401_then_403() {
        let me = UserId(1);
        assert_eq!(Caller::Anonymous.require_user(me).unwrap_err().status, 401);
        assert_eq!(Caller::Invalid.require_user(me).unwrap_err().status, 401);
        assert_eq!(
            Caller::User(UserId(2)).require_user(me).unwrap_err().status,
            403
        );
        assert_eq!(Caller::Admin.require_user(me).unwrap_err().status, 403);
        assert!(Caller::User(me).require_user(me).is_ok());
    }

    #[test]
    fn a_generated_admin_token_is_stored_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("shop.db");
        let first = admin_token(None, Some(&db)).unwrap();
        assert!(first.len() >= 40);
        assert_eq!(admin_token(None, Some(&db)).unwrap(), first);
        assert_eq!(admin_token(Some("set"), Some(&db)).unwrap(), "set");
        assert!(admin_token(None, None).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(admin_token_path(&db))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
