//! The in-process view of revoked credentials, so that checking a token never reads
//! the database: per user the lowest API-token version that still works, the
//! suspended users, and the sessions that ended.
//!
//! Every change is a row of `revocations`, written in the commit that makes it. The
//! instance that commits applies it to its own view at once and publishes it on
//! Redis (`<prefix>revocations`) where configured; every instance also polls the
//! table every [`POLL`] (so PostgreSQL without Redis, or with Redis down, converges
//! too). **Staleness:** another instance refuses a revoked token within about
//! [`STALENESS_SECS`] seconds at most (one poll and its query), usually within
//! milliseconds with Redis; the instance that made the change refuses it at once.
//!
//! Rows are applied in id order, and a user's status only by a newer row than the one
//! that set it, so a late repeat cannot undo a later change. On PostgreSQL ids are
//! taken before commit, so a row may become visible after rows with higher ids: the
//! poller keeps reading from below such a gap until it is filled or [`GAP_PATIENCE`]
//! has passed (a rolled-back insert leaves a gap for good).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use sqlx::{Any, Executor};

use crate::ids::{SessionId, UserId};

/// How often every instance reads new rows of `revocations`.
pub const POLL: Duration = Duration::from_secs(1);
/// The documented bound on how stale another instance's view may be, in seconds.
pub const STALENESS_SECS: u64 = 2;
/// How long the poller waits for a missing id before it gives up on it.
const GAP_PATIENCE: Duration = Duration::from_secs(60);

/// What a row of `revocations` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `value`: the lowest API-token version of the user that still works.
    ApiTokens,
    /// `value`: 1 suspended, 0 active.
    Status,
    /// `value`: a session that ended.
    Session,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ApiTokens => "API_TOKENS",
            Kind::Status => "STATUS",
            Kind::Session => "SESSION",
        }
    }
}

impl TryFrom<&str> for Kind {
    type Error = sqlx::Error;

    fn try_from(s: &str) -> Result<Kind, sqlx::Error> {
        match s {
            "API_TOKENS" => Ok(Kind::ApiTokens),
            "STATUS" => Ok(Kind::Status),
            "SESSION" => Ok(Kind::Session),
            other => Err(sqlx::Error::Decode(
                format!("unknown revocation kind `{other}`").into(),
            )),
        }
    }
}

/// One row of `revocations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub id: i64,
    pub user: UserId,
    pub kind: Kind,
    pub value: i64,
}

impl Change {
    /// The text published on Redis: `id user KIND value`.
    pub fn to_message(self) -> String {
        format!(
            "{} {} {} {}",
            self.id,
            self.user,
            self.kind.as_str(),
            self.value
        )
    }

    pub fn from_message(text: &str) -> Option<Change> {
        let mut parts = text.split(' ');
        let change = Change {
            id: parts.next()?.parse().ok()?,
            user: UserId(parts.next()?.parse().ok()?),
            kind: Kind::try_from(parts.next()?).ok()?,
            value: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(change)
    }
}

/// The view. Reads take a shared lock for a hash lookup or two.
pub struct Revocations {
    view: RwLock<View>,
    /// How long an ended session is remembered (its access tokens expire by then).
    remember: Duration,
    poll: std::sync::Mutex<Poll>,
}

#[derive(Default)]
struct View {
    api_min: HashMap<UserId, i64>,
    /// Suspended or not, and the row that said so.
    status: HashMap<UserId, (bool, i64)>,
    /// Ended sessions, and when this instance learnt it.
    ended: HashMap<SessionId, Instant>,
    last_prune: Option<Instant>,
}

/// Where the poller reads from.
#[derive(Default)]
struct Poll {
    /// Every id up to here was seen (or given up on).
    floor: i64,
    /// The first missing id above the floor and since when it has been missing.
    gap: Option<(i64, Instant)>,
}

impl Revocations {
    /// An empty view; ended sessions are remembered for `access_ttl` plus a minute.
    pub fn new(access_ttl: Duration) -> Revocations {
        Revocations {
            view: RwLock::default(),
            remember: access_ttl + Duration::from_secs(60),
            poll: Default::default(),
        }
    }

    /// Whether an API token of `version` still works for `user`.
    pub fn api_version_ok(&self, user: UserId, version: i64) -> bool {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        version >= view.api_min.get(&user).copied().unwrap_or(0)
    }

    pub fn session_ended(&self, session: SessionId) -> bool {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        view.ended.contains_key(&session)
    }

    pub fn is_suspended(&self, user: UserId) -> bool {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        view.status.get(&user).is_some_and(|(s, _)| *s)
    }

    /// Applies `change` (idempotent; an older status row never undoes a newer one).
    pub fn apply(&self, change: Change) {
        let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
        match change.kind {
            Kind::ApiTokens => {
                let min = view.api_min.entry(change.user).or_insert(0);
                *min = (*min).max(change.value);
            }
            Kind::Status => {
                let suspended = change.value != 0;
                let entry = view.status.entry(change.user).or_insert((false, 0));
                if change.id >= entry.1 {
                    *entry = (suspended, change.id);
                }
            }
            Kind::Session => {
                view.ended
                    .entry(SessionId(change.value))
                    .or_insert_with(Instant::now);
            }
        }
        let now = Instant::now();
        if view
            .last_prune
            .is_none_or(|at| now.duration_since(at) > Duration::from_secs(60))
        {
            let remember = self.remember;
            view.ended
                .retain(|_, learnt| now.duration_since(*learnt) < remember);
            view.last_prune = Some(now);
        }
    }

    /// Reads the rows past the floor and applies them. Returns how many were read.
    pub async fn poll(&self, ex: impl Executor<'_, Database = Any>) -> Result<usize, sqlx::Error> {
        let floor = self.poll.lock().unwrap_or_else(|e| e.into_inner()).floor;
        let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(
            "select id, user_id, kind, value from revocations where id > $1 order by id",
        )
        .bind(floor)
        .fetch_all(ex)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for (id, user, kind, value) in &rows {
            let change = Change {
                id: *id,
                user: UserId(*user),
                kind: Kind::try_from(kind.as_str())?,
                value: *value,
            };
            self.apply(change);
            ids.push(*id);
        }
        self.advance(&ids, Instant::now());
        Ok(rows.len())
    }

    /// Moves the floor past the ids read: up to the first missing one, or past it
    /// once it has been missing longer than [`GAP_PATIENCE`].
    fn advance(&self, ids: &[i64], now: Instant) {
        let mut poll = self.poll.lock().unwrap_or_else(|e| e.into_inner());
        let Some(&last) = ids.last() else { return };
        let mut contiguous = poll.floor;
        for &id in ids {
            if id == contiguous + 1 {
                contiguous = id;
            } else {
                break;
            }
        }
        if contiguous == last {
            poll.floor = last;
            poll.gap = None;
            return;
        }
        let missing = contiguous + 1;
        let since = match poll.gap {
            Some((id, since)) if id == missing => since,
            _ => now,
        };
        if now.duration_since(since) > GAP_PATIENCE {
            tracing::debug!(missing, "gave up waiting for a revocation id");
            poll.floor = last;
            poll.gap = None;
        } else {
            poll.floor = contiguous;
            poll.gap = Some((missing, since));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: i64, kind: Kind, value: i64) -> Change {
        Change {
            id,
            user: UserId(7),
            kind,
            value,
        }
    }

    #[test]
    fn changes_apply_once_and_in_order() {
        let r = Revocations::new(Duration::from_secs(900));
        assert!(r.api_version_ok(UserId(7), 0));
        r.apply(change(1, Kind::ApiTokens, 2));
        r.apply(change(1, Kind::ApiTokens, 1)); // an older one changes nothing
        assert!(!r.api_version_ok(UserId(7), 1));
        assert!(r.api_version_ok(UserId(7), 2));
        r.apply(change(3, Kind::Status, 1));
        r.apply(change(4, Kind::Status, 0));
        r.apply(change(3, Kind::Status, 1)); // a late repeat does not re-suspend
        assert!(!r.is_suspended(UserId(7)));
        r.apply(change(5, Kind::Session, 42));
        assert!(r.session_ended(SessionId(42)));
        assert!(!r.session_ended(SessionId(43)));
    }

    #[test]
    fn messages_round_trip() {
        let c = change(9, Kind::Session, 12);
        assert_eq!(Change::from_message(&c.to_message()), Some(c));
        for bad in [
            "",
            "1 2 STATUS",
            "1 2 NOPE 3",
            "a 2 STATUS 1",
            "1 2 STATUS 1 5",
        ] {
            assert_eq!(Change::from_message(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_floor_waits_below_a_gap_then_gives_up() {
        let r = Revocations::new(Duration::from_secs(900));
        let t0 = Instant::now();
        r.advance(&[1, 2, 4, 5], t0);
        assert_eq!(r.poll.lock().unwrap().floor, 2);
        r.advance(&[4, 5], t0 + Duration::from_secs(30));
        assert_eq!(r.poll.lock().unwrap().floor, 2);
        r.advance(&[3, 4, 5, 6], t0 + Duration::from_secs(31));
        assert_eq!(r.poll.lock().unwrap().floor, 6);
        r.advance(&[8], t0 + Duration::from_secs(40));
        assert_eq!(r.poll.lock().unwrap().floor, 6);
        r.advance(&[8], t0 + Duration::from_secs(101));
        assert_eq!(r.poll.lock().unwrap().floor, 8);
    }
}
