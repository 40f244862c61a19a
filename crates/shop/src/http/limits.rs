//! Rate limits (per client address and per authenticated user, both off by default)
//! with `governor`'s keyed GCRA limiters, and the answer to a request beyond the
//! in-flight limit. Refusals are 429 `RATE_LIMITED` / 503 `OVERLOADED` with
//! `Retry-After`, in the contract's error shape.

use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::ids::UserId;

/// The configured limiters; `None` where a limit is off.
#[derive(Clone, Default)]
pub struct RateLimits {
    per_client: Option<Arc<Keyed<IpAddr>>>,
    per_user: Option<Arc<Keyed<UserId>>>,
}

struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(per_second: u32) -> Option<Arc<Self>> {
        let rate = NonZeroU32::new(per_second)?;
        Some(Arc::new(Keyed {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate)),
            checks: AtomicU64::new(0),
        }))
    }

    /// `Err(seconds to wait)` when `key` is over its rate.
    fn check(&self, key: &K) -> Result<(), u64> {
        // Forget idle keys now and then, so a flood of addresses cannot grow the map
        // without bound.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// Login attempts per email (lowercased), per minute, on this instance.
#[derive(Clone)]
pub struct LoginLimit(Arc<Keyed<String>>);

impl LoginLimit {
    pub fn new(per_minute: u32) -> Self {
        let rate = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        LoginLimit(Arc::new(Keyed {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(rate)),
            checks: AtomicU64::new(0),
        }))
    }

    /// 429 `RATE_LIMITED` (with `Retry-After`) when `email` is over its rate.
    pub fn check(&self, email: &str) -> Result<(), ApiError> {
        self.0.check(&email.to_string()).map_err(rate_limited)
    }
}

fn rate_limited(wait: u64) -> ApiError {
    let mut e = ApiError::new(
        ErrorCode::RateLimited,
        "too many requests; retry after the time in Retry-After",
    );
    e.retry_after = Some(wait.max(1));
    e
}

impl RateLimits {
    pub fn new(per_client: Option<u32>, per_user: Option<u32>) -> Self {
        RateLimits {
            per_client: per_client.and_then(Keyed::new),
            per_user: per_user.and_then(Keyed::new),
        }
    }

    fn check(&self, client: Option<IpAddr>, caller: Caller) -> Result<(), ApiError> {
        let client = match (&self.per_client, client) {
            (Some(limit), Some(ip)) => limit.check(&ip),
            _ => Ok(()),
        };
        let user = match (&self.per_user, caller) {
            (Some(limit), Caller::User(user)) => limit.check(&user),
            _ => Ok(()),
        };
        client.and(user).map_err(rate_limited)
    }
}

/// Refuses a request over its client's or its user's rate (runs after
/// [`crate::auth::authenticate`], which names the user).
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let caller = req
        .extensions()
        .get::<Caller>()
        .copied()
        .unwrap_or(Caller::Anonymous);
    match state.rate_limits.check(client, caller) {
        Ok(()) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// The answer when [`crate::config::Config::max_in_flight`] requests are already being
/// served.
pub fn overloaded() -> Response {
    ApiError::unavailable(
        ErrorCode::Overloaded,
        "the server is at its limit of requests in flight; retry shortly",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_over_its_rate_is_told_when_to_retry() {
        let limits = RateLimits::new(Some(2), None);
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        let other = Some(IpAddr::from([127, 0, 0, 2]));
        assert!(limits.check(ip, Caller::Anonymous).is_ok());
        assert!(limits.check(ip, Caller::Anonymous).is_ok());
        let refused = limits.check(ip, Caller::Anonymous).unwrap_err();
        assert_eq!(refused.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert_eq!(refused.retry_after, Some(1));
        // Another address has its own budget.
        assert!(limits.check(other, Caller::Anonymous).is_ok());
    }

    #[test]
    fn logins_are_limited_per_email() {
        let limit = LoginLimit::new(2);
        assert!(limit.check("kim@example.com").is_ok());
        assert!(limit.check("kim@example.com").is_ok());
        let refused = limit.check("kim@example.com").unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.retry_after.unwrap() >= 1);
        assert!(limit.check("lee@example.com").is_ok());
    }

    #[test]
    fn users_are_limited_apart_and_limits_are_off_by_default() {
        let limits = RateLimits::new(None, Some(1));
        let (a, b) = (Caller::User(UserId(1)), Caller::User(UserId(2)));
        assert!(limits.check(None, a).is_ok());
        assert!(limits.check(None, a).is_err());
        assert!(limits.check(None, b).is_ok());
        // Anonymous callers have no user budget.
        assert!(limits.check(None, Caller::Anonymous).is_ok());
        let off = RateLimits::default();
        for _ in 0..1000 {
            assert!(off.check(Some(IpAddr::from([127, 0, 0, 1])), a).is_ok());
        }
    }
}
