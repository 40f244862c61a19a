//! Who is asking, and may they.
//!
//! - A user's tokens carry what they stand for under an HMAC-SHA256 with a key kept in
//!   the database (`server_secrets`, made once by the first instance to start, or
//!   `SHOP_TOKEN_SECRET`), so every instance checks them without a lookup:
//!   - `<userId>.<sig>`: the API token of version 0, from `POST /api/v1/users`;
//!   - `<userId>.a<version>.<sig>`: an API token from `POST /users/{userId}/token`;
//!   - `<userId>.s<sessionId>.<expiresAt unix seconds>.<sig>`: a session's access token.
//!
//!   What revokes them (a newer API-token version, an ended session, a suspension) is
//!   looked up in the in-process [`Revocations`] view, never in the database.
//! - The admin token is `SHOP_ADMIN_TOKEN`; on the embedded default, when unset, one is
//!   generated at first start, stored beside the database (mode 0600) and printed once.
//!   Only its SHA-256 is kept in memory.
//!
//! Both are compared in constant time, and neither is ever logged.
//!
//! The [`authenticate`] middleware runs before anything looks a resource up: it puts
//! the [`Caller`] in the request's extensions. The admin router has one layer,
//! [`admin_only`], that refuses everyone but the admin (401 without a valid token, 403
//! with a user's). Handlers of the other protected routes take
//! [`OwnUser`] (for `/users/{userId}/...`) or [`Authenticated`] and call
//! [`Caller::require_user`] once they know whose resource it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use chrono::{DateTime, Utc};

use crate::account::revocations::Revocations;
use crate::app::AppState;
use crate::db::Db;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{SessionId, UserId};

/// The keys that tokens are checked against. Cheap to clone.
#[derive(Clone)]
pub struct Auth(Arc<Keys>);

struct Keys {
    signing: Vec<u8>,
    admin_sha256: [u8; 32],
    revoked: Arc<Revocations>,
}

/// The session whose access token came with the request (in the request's
/// extensions, beside the [`Caller`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentSession(pub SessionId);

/// What a user token stands for, once its signature is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claims {
    Api { version: i64 },
    Access { session: SessionId, expires: i64 },
}

/// Who sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No `Authorization` header.
    Anonymous,
    /// A header that is not a valid token.
    Invalid,
    User(UserId),
    /// A valid, unrevoked token of a suspended user: 403 `USER_SUSPENDED` wherever a
    /// token is needed; public routes treat it as anonymous.
    Suspended(UserId),
    Admin,
}

impl Caller {
    /// The scope that idempotency keys live in.
    pub fn scope(self) -> String {
        match self {
            Caller::Anonymous | Caller::Invalid | Caller::Suspended(_) => "anonymous".to_string(),
            Caller::User(u) => format!("user:{u}"),
            Caller::Admin => "admin".to_string(),
        }
    }

    /// 401 unless a valid token came with the request.
    pub fn require_authenticated(self) -> Result<Caller, ApiError> {
        match self {
            Caller::Anonymous => Err(unauthenticated("this route needs a bearer token")),
            Caller::Invalid => Err(unauthenticated("the bearer token is not valid")),
            Caller::Suspended(_) => Err(crate::account::suspended()),
            Caller::User(_) | Caller::Admin => Ok(self),
        }
    }

    /// The user asking: 401 without a valid token, 403 for the admin (whose token opens
    /// admin routes only).
    pub fn user(self) -> Result<UserId, ApiError> {
        match self.require_authenticated()? {
            Caller::User(u) => Ok(u),
            _ => Err(ApiError::new(
                ErrorCode::Forbidden,
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
                ErrorCode::Forbidden,
                "this token does not belong to the user concerned",
            )),
        }
    }
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, message)
}

const SIGNING_KEY: &str = "token_signing_key";

impl Auth {
    /// Loads the signing key (from `secret`, or the database, creating it there once)
    /// and the admin token (see [`admin_token`]).
    /// The view of revoked tokens is loaded by the caller (see [`Revocations::poll`]).
    pub async fn load(
        db: &Db,
        secret: Option<&str>,
        admin_token: &str,
        revoked: Arc<Revocations>,
    ) -> anyhow::Result<Auth> {
        let signing = match secret {
            Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
            _ => shared_signing_key(db).await?,
        };
        Ok(Auth(Arc::new(Keys {
            signing,
            admin_sha256: Sha256::digest(admin_token.as_bytes()).into(),
            revoked,
        })))
    }

    /// The view of revoked tokens that [`Auth::caller`] consults.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.0.revoked
    }

    fn mac(&self, user: UserId, claims: Claims) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0.signing).expect("HMAC takes any key length");
        let message = match claims {
            Claims::Api { version: 0 } => format!("shop-user-token:v1:{user}"),
            Claims::Api { version } => format!("shop-user-token:v2:api:{user}:{version}"),
            Claims::Access { session, expires } => {
                format!("shop-user-token:v2:access:{user}:{session}:{expires}")
            }
        };
        mac.update(message.as_bytes());
        mac
    }

    fn sign(&self, user: UserId, claims: Claims) -> String {
        let sig = URL_SAFE_NO_PAD.encode(self.mac(user, claims).finalize().into_bytes());
        match claims {
            Claims::Api { version: 0 } => format!("{user}.{sig}"),
            Claims::Api { version } => format!("{user}.a{version}.{sig}"),
            Claims::Access { session, expires } => format!("{user}.s{session}.{expires}.{sig}"),
        }
    }

    /// The API token of `user` of version 0 (the one `POST /api/v1/users` answers).
    pub fn token_for(&self, user: UserId) -> String {
        self.api_token(user, 0)
    }

    /// The API token of `user` of `version`.
    pub fn api_token(&self, user: UserId, version: i64) -> String {
        self.sign(user, Claims::Api { version })
    }

    /// A session's access token, working until `expires`.
    pub fn access_token(&self, user: UserId, session: SessionId, expires: DateTime<Utc>) -> String {
        self.sign(
            user,
            Claims::Access {
                session,
                expires: expires.timestamp(),
            },
        )
    }

    /// Who presents `token` at `now`.
    pub fn caller(&self, token: &str, now: DateTime<Utc>) -> Caller {
        self.identify(token, now).0
    }

    /// Who presents `token` at `now`, and the session of an access token.
    fn identify(&self, token: &str, now: DateTime<Utc>) -> (Caller, Option<SessionId>) {
        let admin: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if bool::from(admin.ct_eq(&self.0.admin_sha256)) {
            return (Caller::Admin, None);
        }
        let Some((user, claims)) = self.verified(token) else {
            return (Caller::Invalid, None);
        };
        let revoked = &self.0.revoked;
        let (valid, session) = match claims {
            Claims::Api { version } => (revoked.api_version_ok(user, version), None),
            Claims::Access { session, expires } => (
                now.timestamp() < expires && !revoked.session_ended(session),
                Some(session),
            ),
        };
        if !valid {
            (Caller::Invalid, None)
        } else if revoked.is_suspended(user) {
            (Caller::Suspended(user), None)
        } else {
            (Caller::User(user), session)
        }
    }

    /// The user and claims of a token whose form and signature are right.
    fn verified(&self, token: &str) -> Option<(UserId, Claims)> {
        let parts: Vec<&str> = token.split('.').collect();
        let (id, claims, sig) = match parts.as_slice() {
            [id, sig] => (id, Claims::Api { version: 0 }, sig),
            [id, version, sig] => {
                let version = canonical_id(version.strip_prefix('a')?)?;
                (id, Claims::Api { version }, sig)
            }
            [id, session, expires, sig] => {
                let session = SessionId(canonical_id(session.strip_prefix('s')?)?);
                let expires = canonical_id(expires)?;
                (id, Claims::Access { session, expires }, sig)
            }
            _ => return None,
        };
        let user = UserId(canonical_id(id)?);
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        self.mac(user, claims).verify_slice(&sig).ok()?;
        Some((user, claims))
    }

    fn caller_of(&self, parts: &Parts, now: DateTime<Utc>) -> (Caller, Option<SessionId>) {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return (Caller::Anonymous, None);
        };
        let Some(token) = value.to_str().ok().and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        }) else {
            return (Caller::Invalid, None);
        };
        self.identify(token, now)
    }
}

/// A number written the one way [`Auth::sign`] writes it: digits without a sign or
/// leading zeros (`6`, never `+6` or `06`), positive. One claim, one token.
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

/// Puts the [`Caller`] (and the [`CurrentSession`] of an access token) in the
/// request's extensions. It refuses nothing: each route decides, the admin routes
/// through [`admin_only`].
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let (caller, session) = state.auth.caller_of(&parts, state.clock.now());
    parts.extensions.insert(caller);
    if let Some(session) = session {
        parts.extensions.insert(CurrentSession(session));
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The one layer of the admin router (`/api/v1/admin/...`, see
/// [`crate::app::router`]): only the admin gets past it, before the body or the
/// resource is looked at (401 without a valid token, 403 with a user's, 403
/// `USER_SUSPENDED` with a suspended user's). Runs after [`authenticate`].
pub async fn admin_only(req: Request, next: Next) -> Response {
    let caller = req
        .extensions()
        .get::<Caller>()
        .copied()
        .unwrap_or(Caller::Anonymous);
    if caller == Caller::Admin {
        return next.run(req).await;
    }
    match caller.require_authenticated() {
        Err(e) => e,
        Ok(_) => ApiError::new(ErrorCode::Forbidden, "admin routes need the admin token"),
    }
    .into_response()
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
            revoked: Arc::new(Revocations::new(std::time::Duration::from_secs(900))),
        }))
    }

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    #[test]
    fn a_user_token_names_its_user_and_nothing_else() {
        let auth = auth();
        let token = auth.token_for(UserId(7));
        assert_eq!(auth.caller(&token, now()), Caller::User(UserId(7)));
        // The signature of user 7 does not open user 8.
        let forged = token.replacen("7.", "8.", 1);
        assert_eq!(auth.caller(&forged, now()), Caller::Invalid);
        for bad in ["", "7", "7.", ".abc", "x.y", "-7.abc", "0.abc", "admin"] {
            assert_eq!(auth.caller(bad, now()), Caller::Invalid, "{bad}");
        }
        // The id part is canonical: the signature of 7 does not make `+7` or `07` valid.
        let sig = token.split_once('.').unwrap().1;
        for odd in ["+7", "07", "007", " 7", "7 "] {
            assert_eq!(
                auth.caller(&format!("{odd}.{sig}"), now()),
                Caller::Invalid,
                "{odd}"
            );
        }
        assert_eq!(auth.caller("admin-secret", now()), Caller::Admin);
        // Another key makes other tokens.
        let other = Auth(Arc::new(Keys {
            signing: b"other".to_vec(),
            admin_sha256: [0; 32],
            revoked: auth.0.revoked.clone(),
        }));
        assert_eq!(other.caller(&token, now()), Caller::Invalid);
    }

    #[test]
    fn versioned_and_session_tokens_are_checked_against_the_revocations() {
        use crate::account::revocations::{Change, Kind};
        let auth = auth();
        let me = UserId(7);
        let v0 = auth.token_for(me);
        let v1 = auth.api_token(me, 1);
        assert!(v1.starts_with("7.a1."));
        assert_eq!(auth.caller(&v1, now()), Caller::User(me));
        // The signature of version 1 does not make version 2, nor another user's.
        assert_eq!(
            auth.caller(&v1.replacen(".a1.", ".a2.", 1), now()),
            Caller::Invalid
        );
        assert_eq!(
            auth.caller(&v1.replacen("7.", "8.", 1), now()),
            Caller::Invalid
        );
        let expires = now() + chrono::TimeDelta::minutes(15);
        let access = auth.access_token(me, SessionId(3), expires);
        assert_eq!(
            auth.identify(&access, now()),
            (Caller::User(me), Some(SessionId(3)))
        );
        // Expired, or with its expiry moved: refused.
        assert_eq!(auth.caller(&access, expires), Caller::Invalid);
        let exp = expires.timestamp();
        let moved = access.replacen(&format!(".{exp}."), &format!(".{}.", exp + 60), 1);
        assert_eq!(auth.caller(&moved, now()), Caller::Invalid);
        let change = |id, kind, value| Change {
            id,
            user: me,
            kind,
            value,
        };
        let revoked = auth.revocations();
        revoked.apply(change(1, Kind::ApiTokens, 1));
        assert_eq!(auth.caller(&v0, now()), Caller::Invalid);
        assert_eq!(auth.caller(&v1, now()), Caller::User(me));
        revoked.apply(change(2, Kind::Status, 1));
        assert_eq!(auth.caller(&v1, now()), Caller::Suspended(me));
        assert_eq!(auth.caller(&access, now()), Caller::Suspended(me));
        revoked.apply(change(3, Kind::Status, 0));
        revoked.apply(change(4, Kind::Session, 3));
        assert_eq!(auth.caller(&access, now()), Caller::Invalid);
        assert_eq!(auth.caller(&v1, now()), Caller::User(me));
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
