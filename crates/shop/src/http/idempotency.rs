//! `Idempotency-Key` on mutations. The first request with a key claims it (a row in
//! `idempotency_keys`, committed before the work starts); the answer is stored when it
//! is not a 5xx. A repeat with the same fingerprint (method, path, body bytes) replays
//! the stored answer without doing the work again; with another fingerprint it is
//! refused with 422 `IDEMPOTENCY_KEY_REUSED`; while the first is in flight, 409
//! `IDEMPOTENCY_KEY_IN_PROGRESS`. Keys are scoped to the caller and kept 24 hours or
//! more.
//!
//! A successful mutation records its answer in its own transaction
//! ([`Idempotency::commit_json`]), so "the work is done" and "the answer is stored" are
//! one atomic fact: a timeout, a dropped connection or a crash after the commit can
//! never make a retry do the work twice. Refusals change nothing, so their answers are
//! stored afterwards. A claim whose request was abandoned before its commit is
//! released at once (or, after a crash, taken over after [`IN_FLIGHT_LEASE`]).

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, FromRow};

use crate::app::AppState;
use crate::clock::to_millis;
use crate::db::Tx;
use crate::error::{ApiError, ApiResult};

/// The claim of the request in progress (placed in the request's extensions by the
/// middleware).
#[derive(Debug, Clone)]
struct Claim {
    scope: String,
    key: String,
}

/// Handlers that mutate take this and finish with [`Idempotency::commit_json`] (or,
/// inside a group-commit job, [`Idempotency::answer`]).
#[derive(Clone)]
pub struct Idempotency(Option<Claim>);

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Idempotency(parts.extensions.get::<Claim>().cloned()))
    }
}

impl Idempotency {
    /// Inside a group-commit job: serializes the answer and stores it under the
    /// request's key in the job's transaction. If the claim is gone (its request was
    /// abandoned and released before the job ran), the job fails and changes nothing,
    /// so a retry can never find the work done without its answer.
    pub async fn answer<T: Serialize>(
        &self,
        conn: &mut AnyConnection,
        status: StatusCode,
        value: &T,
        products: Vec<crate::ids::ProductId>,
    ) -> crate::batch::JobResult {
        let body = serde_json::to_vec(value).map_err(ApiError::internal)?;
        if let Some(claim) = &self.0
            && record(conn, &claim.scope, &claim.key, status, &body).await? == 0
        {
            return Err(ApiError::conflict(
                "IDEMPOTENCY_KEY_IN_PROGRESS",
                "the request with this Idempotency-Key was abandoned; send it again",
            ));
        }
        Ok(crate::batch::Done {
            status,
            body,
            products,
        })
    }

    /// Outside group commit: stores the answer in `tx` (as [`Idempotency::answer`]),
    /// commits, and returns the answer.
    pub async fn commit_json<T: Serialize>(
        &self,
        mut tx: Tx,
        status: StatusCode,
        value: &T,
    ) -> ApiResult<Response> {
        let done = self.answer(&mut tx, status, value, Vec::new()).await?;
        tx.commit().await?;
        Ok(respond(done))
    }
}

/// The answer of a committed job.
pub fn respond(done: crate::batch::Done) -> Response {
    let mut res = (
        done.status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        done.body,
    )
        .into_response();
    res.extensions_mut().insert(AnswerStored);
    res
}

/// Marks a response whose answer is already stored under its key (in the
/// transaction that did the work), so the middleware need not store it again.
#[derive(Clone, Copy)]
struct AnswerStored;

/// Marks the claim DONE with its answer (a no-op when already DONE). Returns the
/// rows changed.
async fn record(
    conn: &mut AnyConnection,
    scope: &str,
    key: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "update idempotency_keys set state = 'DONE', status_code = $1, body = $2
         where scope = $3 and idem_key = $4 and state = 'IN_PROGRESS'",
    )
    .bind(i64::from(status.as_u16()))
    .bind(String::from_utf8_lossy(body).into_owned())
    .bind(scope)
    .bind(key)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done)
}

/// Releases the claim if the middleware is dropped before it finishes (a timeout or
/// a client that went away): the work either committed, and with it the answer
/// (then the release deletes nothing), or it rolled back and may run again.
struct ReleaseOnDrop {
    state: Option<(AppState, String, String)>,
}

impl ReleaseOnDrop {
    fn disarm(&mut self) {
        self.state = None;
    }
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if let Some((state, scope, key)) = self.state.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move { forget(&state, &scope, &key).await });
        }
    }
}

pub const HEADER: &str = "idempotency-key";
/// How long a claim may stay in flight before another request may take it over
/// (longer than the request timeout).
pub const IN_FLIGHT_LEASE: TimeDelta = TimeDelta::seconds(120);
/// How long keys are kept.
pub const RETENTION: TimeDelta = TimeDelta::hours(25);

/// Whether `key` is 1..=128 printable ASCII characters.
pub fn valid_key(key: &[u8]) -> bool {
    (1..=128).contains(&key.len()) && key.iter().all(|b| (0x20..=0x7e).contains(b))
}

#[derive(FromRow)]
struct Stored {
    fingerprint: String,
    state: String,
    status_code: Option<i64>,
    body: Option<String>,
    created_at: i64,
}

pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match run(state, req, next).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

async fn run(state: AppState, req: Request, next: Next) -> Result<Response, ApiError> {
    if !matches!(
        *req.method(),
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    ) {
        return Ok(next.run(req).await);
    }
    let Some(key) = req.headers().get(HEADER) else {
        return Ok(next.run(req).await);
    };
    if !valid_key(key.as_bytes()) {
        return Err(ApiError::invalid(
            "Idempotency-Key must be 1..=128 printable ASCII characters",
        ));
    }
    let key = String::from_utf8_lossy(key.as_bytes()).into_owned();
    let scope = caller_scope(&req);
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| ApiError::payload_too_large())?;
    let fingerprint = {
        let mut h = Sha256::new();
        h.update(parts.method.as_str());
        h.update(b"\n");
        h.update(parts.uri.path());
        h.update(b"\n");
        h.update(&bytes);
        hex::encode(h.finalize())
    };

    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let claimed = sqlx::query(
        "insert into idempotency_keys (scope, idem_key, fingerprint, state, created_at)
         values ($1, $2, $3, 'IN_PROGRESS', $4) on conflict (scope, idem_key) do nothing",
    )
    .bind(&scope)
    .bind(&key)
    .bind(&fingerprint)
    .bind(to_millis(now))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        let stored: Stored = sqlx::query_as(
            "select fingerprint, state, status_code, body, created_at from idempotency_keys
             where scope = $1 and idem_key = $2",
        )
        .bind(&scope)
        .bind(&key)
        .fetch_one(&mut *tx)
        .await?;
        if stored.fingerprint != fingerprint {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used for a different request",
            ));
        }
        if stored.state == "DONE" {
            return Ok(replay(stored));
        }
        let stale = stored.created_at < to_millis(now - IN_FLIGHT_LEASE);
        if !stale {
            return Err(ApiError::conflict(
                "IDEMPOTENCY_KEY_IN_PROGRESS",
                "a request with this Idempotency-Key is still in progress",
            ));
        }
        tracing::warn!("taking over a stale idempotency claim");
        sqlx::query(
            "update idempotency_keys set created_at = $1 where scope = $2 and idem_key = $3",
        )
        .bind(to_millis(now))
        .bind(&scope)
        .bind(&key)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;

    let mut guard = ReleaseOnDrop {
        state: Some((state.clone(), scope.clone(), key.clone())),
    };
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(Claim {
        scope: scope.clone(),
        key: key.clone(),
    });
    let res = next.run(req).await;
    guard.disarm();
    let (res_parts, res_body) = res.into_parts();
    let body = match to_bytes(res_body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            forget(&state, &scope, &key).await;
            return Err(ApiError::internal(format!("reading the response: {e}")));
        }
    };
    let status = res_parts.status;
    let outcome = if res_parts.extensions.get::<AnswerStored>().is_some() {
        // The handler stored it in its own transaction.
        Ok(())
    } else if status.is_server_error() {
        // Not stored: a retry may run the request again.
        forget(&state, &scope, &key).await;
        Ok(())
    } else {
        store_answer(&state, &scope, &key, status, &body).await
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "could not store an idempotent answer");
    }
    Ok(Response::from_parts(res_parts, Body::from(body)))
}

async fn store_answer(
    state: &AppState,
    scope: &str,
    key: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    let mut tx = state.db.begin().await?;
    record(&mut tx, scope, key, status, body).await?;
    tx.commit().await
}

async fn forget(state: &AppState, scope: &str, key: &str) {
    let result = async {
        let mut tx = state.db.begin().await?;
        sqlx::query("delete from idempotency_keys where scope = $1 and idem_key = $2 and state = 'IN_PROGRESS'")
            .bind(scope)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "could not release an idempotency claim");
    }
}

fn replay(stored: Stored) -> Response {
    let status = stored
        .status_code
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut res = (status, stored.body.unwrap_or_default()).into_response();
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    res
}

/// Keys live in the scope of who is asking (set by [`crate::auth::authenticate`]).
fn caller_scope(req: &Request) -> String {
    req.extensions()
        .get::<crate::auth::Caller>()
        .copied()
        .unwrap_or(crate::auth::Caller::Anonymous)
        .scope()
}

/// Deletes keys older than [`RETENTION`]. Returns how many.
pub async fn purge_expired(
    db: &crate::db::Db,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let n = sqlx::query("delete from idempotency_keys where created_at < $1")
        .bind(to_millis(now - RETENTION))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_1_to_128_printable_ascii() {
        assert!(super::valid_key(b"a"));
        assert!(super::valid_key(&[b'x'; 128]));
        assert!(!super::valid_key(b""));
        assert!(!super::valid_key(&[b'x'; 129]));
        assert!(!super::valid_key(b"tab\there"));
        assert!(!super::valid_key("한글".as_bytes()));
    }
}
