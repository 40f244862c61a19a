//! The in-process layer in front of Redis and the database, for the reads a flash
//! sale repeats thousands of times a second:
//!
//! - product details, kept as the JSON bytes answered, for at most
//!   `SHOP_PRODUCT_CACHE_MS`. A change made by this instance drops its copy at once;
//!   one made by another instance arrives through Redis pub/sub (see
//!   [`crate::cache::Cache::forget_products`]), and the age limit bounds what a lost
//!   message can cost.
//! - coupon refusals the database has made: already issued to a user (permanent: an
//!   issued coupon is never taken back), sold out and inactive (until the admin raises
//!   the total or re-activates the coupon: [`LocalCache::forget_coupon`], on every
//!   instance through Redis pub/sub, see [`crate::cache::Cache::forget_coupon`]). A
//!   refusal is learnt only if the coupon's epoch did not move since the request began,
//!   so a refusal decided before an edit is never kept after it. For a sold-out coupon,
//!   the complete list of its holders (read once per epoch), so that a keyed request
//!   can tell "sold out" from "the repeat of a winner".

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use quick_cache::sync::Cache;

use crate::cache::Gate;
use crate::ids::{CouponId, ProductId, UserId};

const EPOCH_SHARDS: usize = 1024;

pub struct LocalCache {
    products: Cache<ProductId, (Instant, Bytes)>,
    /// Bumped on every change of a product in the shard, so a read that raced with a
    /// change does not put back what it read before the change.
    epochs: Box<[AtomicU64]>,
    ttl: Duration,
    sold_out: Cache<CouponId, ()>,
    inactive: Cache<CouponId, ()>,
    issued: Cache<(CouponId, UserId), ()>,
    /// Holders of a sold-out coupon, per (coupon, epoch of its shard).
    holders: Cache<(CouponId, u64), Holders>,
    /// Bumped when a coupon's refusals are forgotten (as `epochs`, for coupons).
    coupon_epochs: Box<[AtomicU64]>,
}

/// The holders of a sold-out coupon; `None` when there are more than [`MAX_HOLDERS`].
pub type Holders = Option<Arc<HashSet<UserId>>>;

/// Most holders of one coupon kept in memory.
pub const MAX_HOLDERS: usize = 1_000_000;

impl LocalCache {
    pub fn new(product_ttl: Duration) -> Self {
        LocalCache {
            products: Cache::new(100_000),
            epochs: (0..EPOCH_SHARDS).map(|_| AtomicU64::new(0)).collect(),
            ttl: product_ttl,
            sold_out: Cache::new(10_000),
            inactive: Cache::new(10_000),
            issued: Cache::new(1_000_000),
            holders: Cache::new(64),
            coupon_epochs: (0..EPOCH_SHARDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn epoch_of(&self, id: ProductId) -> &AtomicU64 {
        &self.epochs[(id.0 as u64 % EPOCH_SHARDS as u64) as usize]
    }

    /// The product's JSON, if a fresh enough copy is here.
    pub fn product(&self, id: ProductId) -> Option<Bytes> {
        let (at, bytes) = self.products.get(&id)?;
        (at.elapsed() < self.ttl).then_some(bytes)
    }

    /// Take before reading a product from further away; pass to [`Self::put_product`].
    pub fn product_epoch(&self, id: ProductId) -> u64 {
        self.epoch_of(id).load(Ordering::Acquire)
    }

    /// Keeps `bytes` unless the product changed since `epoch` was taken.
    pub fn put_product(&self, id: ProductId, epoch: u64, bytes: Bytes) {
        if self.ttl.is_zero() || self.product_epoch(id) != epoch {
            return;
        }
        self.products.insert(id, (Instant::now(), bytes));
        // A change between the check and the insert: drop what was just put back.
        if self.product_epoch(id) != epoch {
            self.products.remove(&id);
        }
    }

    pub fn forget_products(&self, ids: impl IntoIterator<Item = ProductId>) {
        for id in ids {
            self.epoch_of(id).fetch_add(1, Ordering::AcqRel);
            self.products.remove(&id);
        }
    }

    /// After a gap in the news from other instances: forget every product copy.
    pub fn forget_all_products(&self) {
        for epoch in self.epochs.iter() {
            epoch.fetch_add(1, Ordering::AcqRel);
        }
        self.products.clear();
    }

    fn coupon_epoch_of(&self, id: CouponId) -> &AtomicU64 {
        &self.coupon_epochs[(id.0 as u64 % EPOCH_SHARDS as u64) as usize]
    }

    /// Take when a coupon request begins; pass to [`Self::coupon_decided`].
    pub fn coupon_epoch(&self, id: CouponId) -> u64 {
        self.coupon_epoch_of(id).load(Ordering::Acquire)
    }

    /// Refusals already made for this coupon and user.
    pub fn coupon_gate(&self, coupon: CouponId, user: UserId) -> Gate {
        if self.issued.get(&(coupon, user)).is_some() {
            Gate::AlreadyIssued
        } else if self.inactive.get(&coupon).is_some() {
            Gate::Inactive
        } else if self.sold_out.get(&coupon).is_some() {
            Gate::SoldOut
        } else {
            Gate::Pass
        }
    }

    /// The holders of the sold-out `coupon`, read with `load` once per instance and
    /// epoch (concurrent callers wait for the one read).
    pub async fn sold_out_holders<E>(
        &self,
        coupon: CouponId,
        epoch: u64,
        load: impl Future<Output = Result<Holders, E>>,
    ) -> Result<Holders, E> {
        self.holders
            .get_or_insert_async(&(coupon, epoch), load)
            .await
    }

    /// Remembers a refusal the database made for a request that began at `epoch`: a
    /// sold-out or inactive verdict only if the coupon was not edited since.
    pub fn coupon_decided(&self, coupon: CouponId, user: UserId, verdict: Gate, epoch: u64) {
        let flags = match verdict {
            Gate::Pass => return,
            Gate::AlreadyIssued => return self.issued.insert((coupon, user), ()),
            Gate::SoldOut => &self.sold_out,
            Gate::Inactive => &self.inactive,
        };
        if self.coupon_epoch(coupon) != epoch {
            return;
        }
        flags.insert(coupon, ());
        // An edit between the check and the insert: drop what was just learnt.
        if self.coupon_epoch(coupon) != epoch {
            flags.remove(&coupon);
        }
    }

    /// The admin changed `coupon` (raised its total, re-activated it): forget that it
    /// was sold out or inactive.
    pub fn forget_coupon(&self, coupon: CouponId) {
        self.coupon_epoch_of(coupon).fetch_add(1, Ordering::AcqRel);
        self.sold_out.remove(&coupon);
        self.inactive.remove(&coupon);
    }

    /// After a gap in the news from other instances: forget every coupon's sold-out and
    /// inactive verdicts (issued ones stay true).
    pub fn forget_all_coupons(&self) {
        for epoch in self.coupon_epochs.iter() {
            epoch.fetch_add(1, Ordering::AcqRel);
        }
        self.sold_out.clear();
        self.inactive.clear();
        self.holders.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_raced_with_a_change_is_not_kept() {
        let cache = LocalCache::new(Duration::from_secs(60));
        let p = ProductId(7);
        let before = cache.product_epoch(p);
        cache.forget_products([p]); // the change commits while the read is under way
        cache.put_product(p, before, Bytes::from_static(b"old"));
        assert_eq!(cache.product(p), None);
        let now = cache.product_epoch(p);
        cache.put_product(p, now, Bytes::from_static(b"new"));
        assert_eq!(cache.product(p).as_deref(), Some(&b"new"[..]));
        cache.forget_all_products();
        assert_eq!(cache.product(p), None);
    }

    #[test]
    fn copies_age_out_and_a_zero_age_keeps_nothing() {
        let cache = LocalCache::new(Duration::from_millis(30));
        let p = ProductId(1);
        cache.put_product(p, cache.product_epoch(p), Bytes::from_static(b"x"));
        assert!(cache.product(p).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.product(p), None);
        let off = LocalCache::new(Duration::ZERO);
        off.put_product(p, off.product_epoch(p), Bytes::from_static(b"x"));
        assert_eq!(off.product(p), None);
    }

    #[test]
    fn coupon_refusals_are_remembered() {
        let cache = LocalCache::new(Duration::from_secs(1));
        let (c, u, v) = (CouponId(1), UserId(1), UserId(2));
        let e = cache.coupon_epoch(c);
        assert_eq!(cache.coupon_gate(c, u), Gate::Pass);
        cache.coupon_decided(c, u, Gate::AlreadyIssued, e);
        assert_eq!(cache.coupon_gate(c, u), Gate::AlreadyIssued);
        assert_eq!(cache.coupon_gate(c, v), Gate::Pass);
        cache.coupon_decided(c, v, Gate::SoldOut, e);
        assert_eq!(cache.coupon_gate(c, v), Gate::SoldOut);
        assert_eq!(cache.coupon_gate(c, u), Gate::AlreadyIssued);
        assert_eq!(cache.coupon_gate(CouponId(2), v), Gate::Pass);
    }

    #[test]
    fn an_edit_forgets_sold_out_and_inactive_and_outlives_refusals_decided_before_it() {
        let cache = LocalCache::new(Duration::from_secs(1));
        let (c, u, v) = (CouponId(1), UserId(1), UserId(2));
        let before = cache.coupon_epoch(c);
        cache.coupon_decided(c, u, Gate::AlreadyIssued, before);
        cache.coupon_decided(c, v, Gate::SoldOut, before);
        cache.forget_coupon(c);
        assert_eq!(cache.coupon_gate(c, v), Gate::Pass);
        assert_eq!(cache.coupon_gate(c, u), Gate::AlreadyIssued, "issued stays");
        // A refusal decided before the edit, learnt after it, is not kept.
        cache.coupon_decided(c, v, Gate::Inactive, before);
        assert_eq!(cache.coupon_gate(c, v), Gate::Pass);
        let now = cache.coupon_epoch(c);
        cache.coupon_decided(c, v, Gate::Inactive, now);
        assert_eq!(cache.coupon_gate(c, v), Gate::Inactive);
        cache.forget_all_coupons();
        assert_eq!(cache.coupon_gate(c, v), Gate::Pass);
    }
}
