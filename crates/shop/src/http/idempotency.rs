//! `Idempotency-Key` on mutations. Keys are scoped to the authenticated caller (the
//! user, or the admin); the request's fingerprint is its method, path and body bytes.
//!
//! - Authentication comes first: a handler claims its key with
//!   [`Idempotency::claim`] only after the caller was admitted, so a request refused
//!   with 401 or 403 never has its key looked at or stored. Anonymous callers' keys
//!   are ignored: they have no scope of their own that a stranger could not share.
//! - A key is a row of the same commit as the work it answers: batched jobs carry it
//!   into the writer ([`crate::batch`]); other writes use [`transact`]. The same key
//!   with the same fingerprint replays the first answer; with another, 422
//!   `IDEMPOTENCY_KEY_REUSED`.
//! - While a request with a key is in flight on this instance, a repeat answers 409
//!   `IDEMPOTENCY_KEY_IN_PROGRESS` at once ([`InFlight`]). On PostgreSQL a repeat sent
//!   to another instance waits for the first commit and is replayed.
//! - Final refusals that wrote nothing (400, `COUPON_SOLD_OUT`,
//!   `COUPON_ALREADY_ISSUED` answered from memory) are recomputed on replay.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use crate::app::AppState;
use crate::auth::Caller;
use crate::batch::{Answer, Claim, Decision, Job, Outcome, Render, Work};
use crate::clock::to_millis;
use crate::error::{ApiError, ErrorCode};

pub const HEADER: &str = "idempotency-key";
/// How long keys are kept.
pub const RETENTION: TimeDelta = TimeDelta::hours(25);

/// Whether `key` is 1..=128 printable ASCII characters.
pub fn valid_key(key: &[u8]) -> bool {
    (1..=128).contains(&key.len()) && key.iter().all(|b| (0x20..=0x7e).contains(b))
}

fn is_mutation(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    )
}

/// Set once a request's write has been handed over for commit: from then on, its
/// answer is its outcome (see [`crate::app`]'s deadline).
#[derive(Debug, Clone, Default)]
pub struct WriteStarted(Arc<AtomicBool>);

impl WriteStarted {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The fingerprint of a keyed mutation (hex SHA-256 of method, path and body).
#[derive(Debug, Clone)]
struct Fingerprint(String);

/// Hashes the body of mutations that carry a key (nothing is looked up or stored
/// before the handler claims the key, once the caller is admitted). A request an
/// admitted caller sent malformed (400) spends its key like any other answer, so
/// that the key cannot then be used for another request.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !is_mutation(req.method()) || !req.headers().contains_key(HEADER) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, state.config.max_body_bytes).await else {
        return ApiError::payload_too_large().into_response();
    };
    let mut h = Sha256::new();
    h.update(parts.method.as_str());
    h.update(b"\n");
    h.update(parts.uri.path());
    h.update(b"\n");
    h.update(&bytes);
    let fingerprint = hex::encode(h.finalize());
    parts.extensions.insert(Fingerprint(fingerprint.clone()));
    let caller = parts.extensions.get::<Caller>().copied();
    let key = parts.headers.get(HEADER).cloned();
    let res = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if res.status() != StatusCode::BAD_REQUEST || res.extensions().get::<KeyAnswered>().is_some() {
        return res;
    }
    let (Some(key), Some(scope)) = (key, caller.and_then(scope_of)) else {
        return res;
    };
    if !valid_key(key.as_bytes()) {
        return res;
    }
    let claim = Claim {
        scope,
        key: String::from_utf8_lossy(key.as_bytes()).into_owned(),
        fingerprint,
    };
    match spend_on_refusal(&state, claim, res).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

/// Stores a 400 under its key, unless the key was used before: then 422 for another
/// request, or the first answer.
async fn spend_on_refusal(
    state: &AppState,
    claim: Claim,
    res: Response,
) -> Result<Response, ApiError> {
    let (parts, body) = res.into_parts();
    let body = to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::internal(format!("reading an answer: {e}")))?;
    let now = to_millis(state.clock.now());
    let refusal = String::from_utf8_lossy(&body).into_owned();
    let ours = claim.fingerprint.clone();
    let (fingerprint, status, first): (String, i64, String) = state
        .writer
        .transact::<_, sqlx::Error>(Box::new(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "insert into idempotency_keys
                         (scope, idem_key, fingerprint, state, status_code, body, created_at)
                     values ($1, $2, $3, 'DONE', 400, $4, $5)
                     on conflict (scope, idem_key) do nothing",
                )
                .bind(&claim.scope)
                .bind(&claim.key)
                .bind(&claim.fingerprint)
                .bind(refusal)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query_as(
                    "select fingerprint, status_code, body from idempotency_keys
                     where scope = $1 and idem_key = $2",
                )
                .bind(&claim.scope)
                .bind(&claim.key)
                .fetch_one(&mut *tx)
                .await
            })
        }))
        .await?;
    Ok(if fingerprint != ours {
        reused().into_response()
    } else if status == 400 && first.as_bytes() == body.as_ref() {
        Response::from_parts(parts, Body::from(body))
    } else {
        replayed(Answer {
            status: u16::try_from(status).unwrap_or(500),
            body: first.into(),
        })
    })
}

/// The scope of a caller's keys; none for anonymous callers.
fn scope_of(caller: Caller) -> Option<String> {
    match caller {
        Caller::User(u) => Some(format!("user:{u}")),
        Caller::Admin => Some("admin".to_string()),
        Caller::Anonymous | Caller::Invalid | Caller::Suspended(_) => None,
    }
}

/// Marks a response whose key was answered in the write's own commit.
#[derive(Clone, Copy)]
struct KeyAnswered;

/// What a mutation's handler knows about its key before it claims it.
pub struct Idempotency {
    key: Option<HeaderValue>,
    fingerprint: Option<String>,
    started: WriteStarted,
    in_flight: Arc<InFlight>,
}

impl FromRequestParts<AppState> for Idempotency {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Idempotency {
            key: parts.headers.get(HEADER).cloned(),
            fingerprint: parts.extensions.get::<Fingerprint>().map(|f| f.0.clone()),
            started: parts
                .extensions
                .get::<WriteStarted>()
                .cloned()
                .unwrap_or_default(),
            in_flight: state.in_flight.clone(),
        })
    }
}

/// A key claimed by this instance for a request in flight.
pub struct Held {
    claim: Claim,
    _guard: InFlightGuard,
}

impl Idempotency {
    /// Claims the request's key for `caller`, once the caller was admitted: `None`
    /// without a key or for an anonymous caller; 400 for a malformed key; 409
    /// `IDEMPOTENCY_KEY_IN_PROGRESS` while a request with it is in flight here (422
    /// when that request is another one).
    pub fn claim(&self, caller: Caller) -> Result<Option<Held>, ApiError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let Some(scope) = scope_of(caller) else {
            return Ok(None);
        };
        if !valid_key(key.as_bytes()) {
            return Err(ApiError::invalid(
                "Idempotency-Key must be 1..=128 printable ASCII characters",
            ));
        }
        let claim = Claim {
            scope,
            key: String::from_utf8_lossy(key.as_bytes()).into_owned(),
            fingerprint: self.fingerprint.clone().unwrap_or_default(),
        };
        let guard = self.in_flight.enter(&claim)?;
        Ok(Some(Held {
            claim,
            _guard: guard,
        }))
    }

    /// Marks the write as handed over for commit.
    pub fn started(&self) -> &WriteStarted {
        &self.started
    }
}

/// Keys in flight on this instance, with their fingerprints.
#[derive(Default)]
pub struct InFlight {
    shards: [Mutex<HashMap<(String, String), String>>; 16],
}

impl InFlight {
    fn shard(&self, scope: &str, key: &str) -> &Mutex<HashMap<(String, String), String>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (scope, key).hash(&mut h);
        &self.shards[(h.finish() % 16) as usize]
    }

    fn enter(self: &Arc<Self>, claim: &Claim) -> Result<InFlightGuard, ApiError> {
        let mut map = self
            .shard(&claim.scope, &claim.key)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let id = (claim.scope.clone(), claim.key.clone());
        if let Some(fingerprint) = map.get(&id) {
            return Err(if *fingerprint == claim.fingerprint {
                in_progress()
            } else {
                reused()
            });
        }
        map.insert(id.clone(), claim.fingerprint.clone());
        Ok(InFlightGuard {
            set: self.clone(),
            id,
        })
    }
}

/// Removes its key from [`InFlight`] when dropped: once the request's outcome is
/// known (it travels with the job into the writer, so a client that goes away does
/// not release it early).
struct InFlightGuard {
    set: Arc<InFlight>,
    id: (String, String),
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.set
            .shard(&self.id.0, &self.id.1)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

fn in_progress() -> ApiError {
    ApiError::new(
        ErrorCode::IdempotencyKeyInProgress,
        "a request with this Idempotency-Key is still in progress",
    )
}

fn reused() -> ApiError {
    ApiError::new(
        ErrorCode::IdempotencyKeyReused,
        "this Idempotency-Key was used for a different request",
    )
}

// ---- answers ----

/// Renders a decision: success with `OK` and the value, a refusal with its error.
pub fn render<const OK: u16>(decision: &Decision) -> Answer {
    match decision {
        Ok(done) => Answer {
            status: OK,
            body: Bytes::from(serde_json::to_vec(done).expect("answers serialize")),
        },
        Err(refused) => error_answer(&ApiError::from(refused)),
    }
}

fn error_answer(e: &ApiError) -> Answer {
    Answer {
        status: e.status.as_u16(),
        body: Bytes::from(
            serde_json::to_vec(&crate::error::ErrorBody {
                code: e.code.to_string(),
                message: e.message.clone(),
            })
            .expect("errors serialize"),
        ),
    }
}

fn json_response(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        answer.body,
    )
        .into_response();
    res.extensions_mut().insert(KeyAnswered);
    res
}

fn replayed(answer: Answer) -> Response {
    let mut res = json_response(answer);
    res.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    res
}

/// 504 `OUTCOME_UNKNOWN`: the work may or may not have happened; a retry with the
/// same key tells which. No `Retry-After`: it is not an invitation to send again
/// without a key.
pub fn outcome_unknown() -> ApiError {
    ApiError::new(
        ErrorCode::OutcomeUnknown,
        "the outcome of this request is not known yet; send it again with the same \
         Idempotency-Key to learn it",
    )
}

/// The response to a batched job's outcome.
pub fn respond(outcome: Outcome, render: Render) -> Response {
    match outcome {
        Outcome::Decided {
            decision, answer, ..
        } => json_response(answer.unwrap_or_else(|| render(&decision))),
        Outcome::Replayed(answer) => replayed(answer),
        Outcome::KeyReused => reused().into_response(),
        Outcome::RolledBack { transient: true } => ApiError::unavailable(
            ErrorCode::Unavailable,
            "the write could not be made now; nothing was applied, retry",
        )
        .into_response(),
        Outcome::RolledBack { transient: false } => {
            ApiError::internal("a batched write failed").into_response()
        }
        Outcome::Unknown => outcome_unknown().into_response(),
    }
}

impl AppState {
    /// Runs `work` in the write path with the request's key, and answers it.
    pub async fn write(
        &self,
        idem: &Idempotency,
        held: Option<Held>,
        work: Work,
        render: Render,
    ) -> (Option<Decision>, Response) {
        let (key, hold) = match held {
            Some(h) => (
                Some((h.claim, render)),
                Some(Box::new(h._guard) as Box<dyn Send>),
            ),
            None => (None, None),
        };
        idem.started().mark();
        let outcome = self.writer.submit(Job { work, key }, hold).await;
        match outcome {
            Outcome::Decided {
                decision,
                answer,
                touched,
            } => {
                self.products_changed(touched).await;
                let res = json_response(answer.unwrap_or_else(|| render(&decision)));
                (Some(decision), res)
            }
            other => (None, respond(other, render)),
        }
    }
}

// ---- writes outside the batch ----

/// The work of a write outside the batch: runs in the transaction it is given.
pub type TxWork<T> = crate::batch::TxWork<T, ApiError>;

/// Why a keyed write outside the batch did not commit.
enum KeyedError {
    Api(ApiError),
    /// Another instance stored an answer under the key first (its commit came between
    /// our read of the key and our insert of it).
    Taken,
}

impl From<sqlx::Error> for KeyedError {
    fn from(e: sqlx::Error) -> Self {
        KeyedError::Api(e.into())
    }
}

impl From<ApiError> for KeyedError {
    fn from(e: ApiError) -> Self {
        KeyedError::Api(e)
    }
}

/// What a keyed write outside the batch answered: the value when it did the work,
/// and the answer (a replay when the key was used before).
type Keyed<T> = (Option<T>, Response);

/// Runs `work` in a transaction of its own in the writer, with the request's key in
/// the same commit: a repeat of the key replays the stored answer; success answers
/// `status` and the value. Running in the writer, it cannot be cancelled halfway by a
/// client that goes away.
pub async fn transact<T: Serialize + Send + 'static>(
    state: &AppState,
    idem: &Idempotency,
    held: Option<Held>,
    status: StatusCode,
    work: TxWork<T>,
) -> Result<Keyed<T>, ApiError> {
    let now_ms = to_millis(state.clock.now());
    let claim = held.as_ref().map(|h| h.claim.clone());
    idem.started().mark();
    let result = state
        .writer
        .transact::<_, KeyedError>(Box::new(move |tx| {
            Box::pin(async move {
                let done = keyed(tx, claim.as_ref(), status, now_ms, work).await;
                // The key stays in flight until its outcome is known.
                drop(held);
                done
            })
        }))
        .await;
    match result {
        Ok(done) => Ok(done),
        Err(KeyedError::Api(e)) => Err(e),
        Err(KeyedError::Taken) => Err(in_progress()),
    }
}

async fn keyed<T: Serialize>(
    tx: &mut AnyConnection,
    claim: Option<&Claim>,
    status: StatusCode,
    now_ms: i64,
    work: TxWork<T>,
) -> Result<Keyed<T>, KeyedError> {
    if let Some(claim) = claim
        && let Some(res) = stored_answer(&mut *tx, claim).await?
    {
        return Ok((None, res));
    }
    let Some(claim) = claim else {
        let value = work(&mut *tx).await?;
        let body = serde_json::to_vec(&value).map_err(ApiError::internal)?;
        let answer = Answer {
            status: status.as_u16(),
            body: body.into(),
        };
        return Ok((Some(value), json_response(answer)));
    };
    sqlx::query("savepoint work").execute(&mut *tx).await?;
    let (value, answer) = match work(&mut *tx).await {
        Ok(value) => {
            let body = serde_json::to_vec(&value).map_err(ApiError::internal)?;
            let answer = Answer {
                status: status.as_u16(),
                body: body.into(),
            };
            (Some(value), answer)
        }
        Err(e) if e.status.is_server_error() => return Err(e.into()),
        Err(refusal) => {
            sqlx::query("rollback to savepoint work")
                .execute(&mut *tx)
                .await?;
            (None, error_answer(&refusal))
        }
    };
    let stored = sqlx::query(
        "insert into idempotency_keys (scope, idem_key, fingerprint, state, status_code, body, created_at)
         values ($1, $2, $3, 'DONE', $4, $5, $6) on conflict (scope, idem_key) do nothing",
    )
    .bind(&claim.scope)
    .bind(&claim.key)
    .bind(&claim.fingerprint)
    .bind(i64::from(answer.status))
    .bind(String::from_utf8_lossy(&answer.body).into_owned())
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    if stored.rows_affected() == 0 {
        // Another instance answered the key first: this work must not commit.
        return Err(KeyedError::Taken);
    }
    Ok((value, json_response(answer)))
}

/// The answer stored under `claim`'s key: a replay, or 422 for another request.
async fn stored_answer(
    conn: &mut AnyConnection,
    claim: &Claim,
) -> Result<Option<Response>, ApiError> {
    let row: Option<(String, i64, String)> = sqlx::query_as(
        "select fingerprint, status_code, body from idempotency_keys where scope = $1 and idem_key = $2",
    )
    .bind(&claim.scope)
    .bind(&claim.key)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(fingerprint, status, body)| {
        if fingerprint == claim.fingerprint {
            replayed(Answer {
                status: u16::try_from(status).unwrap_or(500),
                body: body.into(),
            })
        } else {
            reused().into_response()
        }
    }))
}

/// Deletes keys older than [`RETENTION`] (in the writer). Returns how many.
pub async fn purge_expired(
    writer: &crate::batch::Writer,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64, sqlx::Error> {
    let before = to_millis(now - RETENTION);
    writer
        .transact(Box::new(move |tx| {
            Box::pin(async move {
                let done = sqlx::query("delete from idempotency_keys where created_at < $1")
                    .bind(before)
                    .execute(tx)
                    .await?;
                Ok(done.rows_affected())
            })
        }))
        .await
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
