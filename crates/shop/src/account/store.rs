//! SQL for accounts, sessions, refresh tokens and the revocation log. Every function
//! that changes what a token opens writes its `revocations` row in the same
//! transaction and returns it, for the caller to announce after the commit.

use sqlx::{Any, AnyConnection, Executor, FromRow};

use super::revocations::{Change, Kind};
use super::{AccountError, Status, User};
use crate::clock::from_millis;
use crate::db::is_unique_violation;
use crate::ids::{SessionId, UserId};

#[derive(FromRow)]
struct UserRow {
    id: i64,
    name: String,
    email: Option<String>,
    status: String,
    created_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = sqlx::Error;

    fn try_from(r: UserRow) -> Result<User, sqlx::Error> {
        Ok(User {
            id: UserId(r.id),
            name: r.name,
            email: r.email,
            status: Status::try_from(r.status.as_str())?,
            created_at: from_millis(r.created_at),
        })
    }
}

const USER_COLUMNS: &str = "id, name, email, status, created_at";

/// An email as given and its key (lowercased), from [`super::validate_email`].
pub type Email = (String, String);

fn email_taken(e: sqlx::Error) -> AccountError {
    if is_unique_violation(&e) {
        AccountError::EmailTaken
    } else {
        AccountError::Db(e)
    }
}

/// Inserts a user with a zero balance.
pub async fn create_user(
    conn: &mut AnyConnection,
    name: &str,
    email: Option<&Email>,
    password_hash: Option<&str>,
    now_ms: i64,
) -> Result<User, AccountError> {
    let row: UserRow = sqlx::query_as(&format!(
        "insert into users (name, balance, created_at, email, email_key, password_hash)
         values ($1, 0, $2, $3, $4, $5) returning {USER_COLUMNS}"
    ))
    .bind(name)
    .bind(now_ms)
    .bind(email.map(|e| e.0.as_str()))
    .bind(email.map(|e| e.1.as_str()))
    .bind(password_hash)
    .fetch_one(conn)
    .await
    .map_err(email_taken)?;
    Ok(row.try_into()?)
}

pub async fn user(ex: impl Executor<'_, Database = Any>, id: UserId) -> Result<User, AccountError> {
    let row: Option<UserRow> =
        sqlx::query_as(&format!("select {USER_COLUMNS} from users where id = $1"))
            .bind(id.0)
            .fetch_optional(ex)
            .await?;
    Ok(row.ok_or(AccountError::UserNotFound(id))?.try_into()?)
}

/// What `PATCH /users/{userId}` changes.
pub struct Patch {
    pub name: Option<String>,
    pub email: Option<Email>,
    pub password_hash: Option<String>,
}

/// Applies `patch`. An account has an email and a password, or neither.
pub async fn update_user(
    conn: &mut AnyConnection,
    id: UserId,
    patch: Patch,
) -> Result<User, AccountError> {
    let current: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("select email, password_hash from users where id = $1")
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await?;
    let (email, hash) = current.ok_or(AccountError::UserNotFound(id))?;
    let has_email = email.is_some() || patch.email.is_some();
    let has_password = hash.is_some() || patch.password_hash.is_some();
    if has_email != has_password {
        return Err(AccountError::Incomplete(
            "an account has both an email and a password, or neither",
        ));
    }
    let row: UserRow = sqlx::query_as(&format!(
        "update users set name = coalesce($2, name), email = coalesce($3, email),
             email_key = coalesce($4, email_key), password_hash = coalesce($5, password_hash)
         where id = $1 returning {USER_COLUMNS}"
    ))
    .bind(id.0)
    .bind(patch.name)
    .bind(patch.email.as_ref().map(|e| e.0.as_str()))
    .bind(patch.email.as_ref().map(|e| e.1.as_str()))
    .bind(patch.password_hash)
    .fetch_one(&mut *conn)
    .await
    .map_err(email_taken)?;
    Ok(row.try_into()?)
}

/// The user with this email key, their password hash, and their status.
pub async fn credentials(
    ex: impl Executor<'_, Database = Any>,
    email_key: &str,
) -> Result<Option<(UserId, Option<String>, Status)>, sqlx::Error> {
    let row: Option<(i64, Option<String>, String)> =
        sqlx::query_as("select id, password_hash, status from users where email_key = $1")
            .bind(email_key)
            .fetch_optional(ex)
            .await?;
    row.map(|(id, hash, status)| Ok((UserId(id), hash, Status::try_from(status.as_str())?)))
        .transpose()
}

/// Writes a row of the revocation log.
async fn log(
    conn: &mut AnyConnection,
    user: UserId,
    kind: Kind,
    value: i64,
    now_ms: i64,
) -> Result<Change, sqlx::Error> {
    let (id,): (i64,) = sqlx::query_as(
        "insert into revocations (user_id, kind, value, at) values ($1, $2, $3, $4) returning id",
    )
    .bind(user.0)
    .bind(kind.as_str())
    .bind(value)
    .bind(now_ms)
    .fetch_one(conn)
    .await?;
    Ok(Change {
        id,
        user,
        kind,
        value,
    })
}

/// Starts a session of `user` with its first refresh token.
pub async fn start_session(
    conn: &mut AnyConnection,
    user: UserId,
    refresh_sha256: &str,
    refresh_expires_ms: i64,
    now_ms: i64,
) -> Result<SessionId, sqlx::Error> {
    let (id,): (i64,) =
        sqlx::query_as("insert into sessions (user_id, created_at) values ($1, $2) returning id")
            .bind(user.0)
            .bind(now_ms)
            .fetch_one(&mut *conn)
            .await?;
    add_refresh_token(conn, SessionId(id), refresh_sha256, refresh_expires_ms).await?;
    Ok(SessionId(id))
}

async fn add_refresh_token(
    conn: &mut AnyConnection,
    session: SessionId,
    sha256: &str,
    expires_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into refresh_tokens (token_sha256, session_id, expires_at) values ($1, $2, $3)",
    )
    .bind(sha256)
    .bind(session.0)
    .bind(expires_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// What became of a refresh token.
pub enum Refreshed {
    /// Spent; `next` (its successor) is stored.
    Rotated { user: UserId, session: SessionId },
    /// It had been spent before: its session is ended (the change, when this call
    /// ended it).
    Reused(Option<Change>),
}

#[derive(FromRow)]
struct RefreshRow {
    session_id: i64,
    expires_at: i64,
    used_at: Option<i64>,
    user_id: i64,
    ended_at: Option<i64>,
    status: String,
}

/// Spends the refresh token whose SHA-256 is `sha256`, storing `next` in its place.
/// Unknown, expired or of an ended session: `InvalidRefreshToken`, nothing written. Of
/// a suspended user: `Suspended`, nothing written.
pub async fn refresh(
    conn: &mut AnyConnection,
    sha256: &str,
    next_sha256: &str,
    next_expires_ms: i64,
    now_ms: i64,
) -> Result<Refreshed, AccountError> {
    let row: Option<RefreshRow> = sqlx::query_as(
        "select r.session_id, r.expires_at, r.used_at, s.user_id, s.ended_at, u.status
         from refresh_tokens r join sessions s on s.id = r.session_id
         join users u on u.id = s.user_id
         where r.token_sha256 = $1",
    )
    .bind(sha256)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(RefreshRow {
        session_id: session,
        expires_at: expires,
        used_at: used,
        user_id: user,
        ended_at: ended,
        status,
    }) = row
    else {
        return Err(AccountError::InvalidRefreshToken);
    };
    let (session, user) = (SessionId(session), UserId(user));
    if ended.is_some() || expires <= now_ms {
        return Err(AccountError::InvalidRefreshToken);
    }
    if used.is_some() {
        return Ok(Refreshed::Reused(
            end_session(conn, user, session, now_ms).await?,
        ));
    }
    if Status::try_from(status.as_str())? == Status::Suspended {
        return Err(AccountError::Suspended);
    }
    // Guarded: of two refreshes racing with one token, one spends it; the other is a
    // reuse.
    let spent = sqlx::query(
        "update refresh_tokens set used_at = $2 where token_sha256 = $1 and used_at is null",
    )
    .bind(sha256)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    if spent.rows_affected() == 0 {
        return Ok(Refreshed::Reused(
            end_session(conn, user, session, now_ms).await?,
        ));
    }
    add_refresh_token(conn, session, next_sha256, next_expires_ms).await?;
    Ok(Refreshed::Rotated { user, session })
}

/// Ends `session` of `user`: its tokens stop working. `None` when it had ended already.
pub async fn end_session(
    conn: &mut AnyConnection,
    user: UserId,
    session: SessionId,
    now_ms: i64,
) -> Result<Option<Change>, sqlx::Error> {
    let ended = sqlx::query(
        "update sessions set ended_at = $3 where id = $1 and user_id = $2 and ended_at is null",
    )
    .bind(session.0)
    .bind(user.0)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    if ended.rows_affected() == 0 {
        return Ok(None);
    }
    Ok(Some(
        log(conn, user, Kind::Session, session.0, now_ms).await?,
    ))
}

/// Ends every open session of `user` but `keep` (the caller's own, when a session's
/// access token asked): what a password change does, so that whoever knew the old
/// password is signed out everywhere else. One revocation per ended session.
pub async fn end_other_sessions(
    conn: &mut AnyConnection,
    user: UserId,
    keep: Option<SessionId>,
    now_ms: i64,
) -> Result<Vec<Change>, sqlx::Error> {
    let ended: Vec<(i64,)> = sqlx::query_as(
        "update sessions set ended_at = $3
         where user_id = $1 and ended_at is null and id <> $2 returning id",
    )
    .bind(user.0)
    .bind(keep.map_or(0, |s| s.0))
    .bind(now_ms)
    .fetch_all(&mut *conn)
    .await?;
    let mut changes = Vec::with_capacity(ended.len());
    for (session,) in ended {
        changes.push(log(conn, user, Kind::Session, session, now_ms).await?);
    }
    Ok(changes)
}

/// Deletes the rows of `revocations` written before `before_ms` that no view needs
/// any more: ended sessions (their access tokens have expired by then, and a refresh
/// reads the session itself) and API-token versions and statuses that a newer row of
/// the same user says more than. What is left gives a fresh view the same answers.
/// Returns how many rows went.
pub async fn prune_revocations(
    conn: &mut AnyConnection,
    before_ms: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "delete from revocations where at < $1 and (kind = 'SESSION' or exists (
             select 1 from revocations newer where newer.user_id = revocations.user_id
                 and newer.kind = revocations.kind and newer.id > revocations.id))",
    )
    .bind(before_ms)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Raises the user's API-token version: tokens of lower versions stop working.
/// Returns the new version.
pub async fn next_api_token(
    conn: &mut AnyConnection,
    user: UserId,
    now_ms: i64,
) -> Result<(i64, Change), AccountError> {
    let row: Option<(i64,)> = sqlx::query_as(
        "update users set api_token_version = api_token_version + 1 where id = $1
         returning api_token_version",
    )
    .bind(user.0)
    .fetch_optional(&mut *conn)
    .await?;
    let (version,) = row.ok_or(AccountError::UserNotFound(user))?;
    let change = log(conn, user, Kind::ApiTokens, version, now_ms).await?;
    Ok((version, change))
}

/// Sets the user's status. The change is logged only when the status changed.
pub async fn set_status(
    conn: &mut AnyConnection,
    user: UserId,
    status: Status,
    now_ms: i64,
) -> Result<(User, Option<Change>), AccountError> {
    let changed = sqlx::query("update users set status = $2 where id = $1 and status <> $2")
        .bind(user.0)
        .bind(status.as_str())
        .execute(&mut *conn)
        .await?;
    let current = self::user(&mut *conn, user).await?;
    if changed.rows_affected() == 0 {
        return Ok((current, None));
    }
    let value = i64::from(status == Status::Suspended);
    let change = log(conn, user, Kind::Status, value, now_ms).await?;
    Ok((current, Some(change)))
}
