//! shop: an e-commerce backend with a prepaid balance, products with stock,
//! first-come-first-served coupons, orders paid from the balance, a top-products
//! ranking and an outbox that delivers paid orders to a data platform.
//!
//! Invariants kept here (see `shared/API.md`): stock never below zero, coupons never
//! over-issued, balance never below zero and equal to its ledger, every paid order has
//! one payment entry and one `order.paid` event.

pub mod account; // sign-up, profile, login sessions, API tokens, suspension
pub mod app; // AppState, router, server and background workers
pub mod auth; // bearer tokens: who is asking, and may they
pub mod balance; // users, balance charge and ledger
pub mod batch; // the write path: batches decided in memory, written in bulk
pub mod cache; // Redis: optional shared cache and coupon gate
pub mod cart; // a user's cart and checkout
pub mod clock; // injected time source
pub mod config; // settings from flags and environment
pub mod consumer; // the reference data-platform consumer (exactly once in effect)
pub mod coupon; // first-come-first-served coupons
pub mod db; // the database backend (SQLite or PostgreSQL) and its pools
pub mod demo; // demo data for a fresh embedded database
pub mod error; // ApiError: the contract's error shape
pub mod http; // shared extractors and middleware
pub mod ids; // id newtypes
pub mod invariants; // the contract's invariants as SQL checks
pub mod local_cache; // in-process copies of hot reads and permanent coupon refusals
pub mod money; // Won and discount arithmetic
pub mod openapi; // the OpenAPI document
pub mod ops; // operator commands: migrate, migrate --status, backup
pub mod order; // orders: place, pay, cancel, expire
pub mod outbox; // data-platform events and their delivery
pub mod product; // products and stock
pub mod ranking; // top products of the last days
pub mod retry; // the retry schedule: exponential backoff with jitter
pub mod telemetry; // logs and metrics
pub mod text; // names people see: no hidden or direction-changing characters
pub mod web; // the storefront and admin console pages (static files)
