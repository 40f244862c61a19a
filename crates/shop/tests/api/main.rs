//! Black-box HTTP tests against the real router, a real server and a fresh SQLite
//! database per test. One binary, a file per domain.

mod helpers;

mod auth;
mod balance;
mod coupons;
mod crash;
mod errors;
mod events;
mod idempotency;
mod limits;
mod model;
mod ops;
mod orders;
mod outbox;
mod products;
mod races;
mod ranking;
mod scale;
mod schema;
mod web;
