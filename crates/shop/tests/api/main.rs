//! Black-box HTTP tests against the real router, a real server and a fresh SQLite
//! database per test. One binary, a file per domain.

mod conformance;
mod helpers;

mod accounts;
mod auth;
mod balance;
mod batch;
mod cart;
mod catalog;
mod connections;
mod coupon_admin;
mod coupons;
mod crash;
mod errors;
mod events;
mod fulfilment;
mod hardening;
mod idempotency;
mod limits;
mod migration;
mod model;
mod ops;
mod orders;
mod outbox;
mod process;
mod products;
mod races;
mod ranking;
mod scale;
mod schema;
mod truth;
mod web;
