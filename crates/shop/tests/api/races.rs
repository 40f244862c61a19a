//! tests: races
//!
//! Concurrency: many requests fired at once (behind a barrier), then the outcome is
//! read from the database, not only from the answers, and every invariant is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::json;

use rstest::rstest;

use crate::helpers::{Answer, Backend, TestApp, race, spawn_app};

/// `"201"` for a success, `"409 COUPON_SOLD_OUT"` for a refusal.
fn outcome(a: &Answer) -> String {
    match a.1["code"].as_str() {
        Some(code) if !a.0.is_success() => format!("{} {code}", a.0.as_u16()),
        _ => a.0.as_u16().to_string(),
    }
}

/// How many answers had each outcome.
fn tally(answers: &[Answer]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in answers {
        *out.entry(outcome(a)).or_insert(0) += 1;
    }
    out
}

fn expect(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), *n))
        .collect()
}

fn id_of(a: &Answer) -> i64 {
    a.1["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {} {}", a.0, a.1))
}

async fn app(backend: Backend) -> Arc<TestApp> {
    Arc::new(spawn_app(backend).await)
}

/// Places a PENDING order and returns its id.
async fn pending(app: &TestApp, user: i64, items: &[(i64, i64)], coupon: Option<i64>) -> i64 {
    let a = app.order(user, items, coupon, false).await;
    assert_eq!(a.0, StatusCode::CREATED, "{}", a.1);
    assert_eq!(a.1["status"], "PENDING");
    id_of(&a)
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_charges_of_one_user_are_all_applied(#[case] backend: Backend) {
    let app = app(backend).await;
    let user = app.create_user("charger").await;

    let answers = race(100, |_| {
        let app = app.clone();
        async move { app.charge(user, 1_000).await }
    })
    .await;

    assert_eq!(tally(&answers), expect(&[("200", 100)]));
    // Each charge saw a distinct balance after it: they were applied one at a time.
    let afters: BTreeSet<i64> = answers
        .iter()
        .map(|a| a.1["balance"].as_i64().unwrap())
        .collect();
    let want: BTreeSet<i64> = (1..=100).map(|k| k * 1_000).collect();
    assert_eq!(afters, want);

    assert_eq!(
        app.scalar(&format!("select balance from users where id = {user}"))
            .await,
        100_000
    );
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from balance_ledger where user_id = {user} and kind = 'CHARGE' and amount = 1000"
        ))
        .await,
        100
    );
    assert_eq!(app.scalar("select count(*) from balance_ledger").await, 100);
    assert_eq!(app.balance(user).await, 100_000);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_buyers_for_ten_units_pay_at_once(#[case] backend: Backend) {
    let app = app(backend).await;
    let product = app.create_product("flash", 10_000, 10).await;
    let mut users = Vec::new();
    for i in 0..30 {
        users.push(app.user_with_balance(&format!("buyer{i}"), 10_000).await);
    }
    let users = Arc::new(users);

    let answers = race(30, |i| {
        let app = app.clone();
        let users = users.clone();
        async move { app.order(users[i], &[(product, 1)], None, true).await }
    })
    .await;

    assert_eq!(
        tally(&answers),
        expect(&[("201", 10), ("409 INSUFFICIENT_STOCK", 20)])
    );
    for a in answers.iter().filter(|a| a.0 == StatusCode::CREATED) {
        assert_eq!(a.1["status"], "PAID", "{}", a.1);
    }

    assert_eq!(
        app.scalar("select count(*) from orders where status = 'PAID'")
            .await,
        10
    );
    // The refused ones left nothing behind: no order, no item, no payment.
    assert_eq!(app.scalar("select count(*) from orders").await, 10);
    assert_eq!(app.scalar("select count(*) from order_items").await, 10);
    assert_eq!(
        app.scalar("select count(*) from balance_ledger where kind = 'PAYMENT'")
            .await,
        10
    );
    assert_eq!(
        app.scalar(&format!(
            "select cast(sum(stock) as bigint) from variants where product_id = {product}"
        ))
        .await,
        0
    );
    assert_eq!(app.stock(product).await, 0);
    // Exactly the ten winners were debited.
    assert_eq!(
        app.scalar("select count(*) from users where balance = 0")
            .await,
        10
    );
    assert_eq!(
        app.scalar("select count(*) from users where balance = 10000")
            .await,
        20
    );
    for (i, a) in answers.iter().enumerate() {
        let want = if a.0 == StatusCode::CREATED {
            0
        } else {
            10_000
        };
        assert_eq!(app.balance(users[i]).await, want, "buyer {i}: {}", a.1);
    }
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_users_rush_fifty_coupons(#[case] backend: Backend) {
    let app = app(backend).await;
    let coupon = app.create_coupon(json!({ "totalQuantity": 50 })).await;
    let mut users = Vec::new();
    for i in 0..200 {
        users.push(app.create_user(&format!("rusher{i}")).await);
    }
    let users = Arc::new(users);

    let answers = race(200, |i| {
        let app = app.clone();
        let users = users.clone();
        async move { app.issue(coupon, users[i]).await }
    })
    .await;

    assert_eq!(
        tally(&answers),
        expect(&[("201", 50), ("409 COUPON_SOLD_OUT", 150)])
    );
    assert_eq!(
        app.scalar(&format!(
            "select issued_quantity from coupons where id = {coupon}"
        ))
        .await,
        50
    );
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from user_coupons where coupon_id = {coupon}"
        ))
        .await,
        50
    );
    // The rows belong to exactly the users who were answered 201.
    let winners: Vec<String> = answers
        .iter()
        .enumerate()
        .filter(|(_, a)| a.0 == StatusCode::CREATED)
        .map(|(i, a)| {
            assert_eq!(a.1["userId"], users[i], "{}", a.1);
            assert_eq!(a.1["status"], "AVAILABLE", "{}", a.1);
            users[i].to_string()
        })
        .collect();
    assert_eq!(
        app.scalar(&format!(
            "select count(distinct user_id) from user_coupons where coupon_id = {coupon} and user_id in ({})",
            winners.join(",")
        ))
        .await,
        50
    );
    let (s, b) = app.get(&format!("/api/v1/coupons/{coupon}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["issuedQuantity"], 50);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_user_issuing_one_coupon_twenty_times_gets_it_once(#[case] backend: Backend) {
    let app = app(backend).await;
    let coupon = app.create_coupon(json!({ "totalQuantity": 100 })).await;
    let user = app.create_user("greedy").await;

    let answers = race(20, |_| {
        let app = app.clone();
        async move { app.issue(coupon, user).await }
    })
    .await;

    assert_eq!(
        tally(&answers),
        expect(&[("201", 1), ("409 COUPON_ALREADY_ISSUED", 19)])
    );
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from user_coupons where coupon_id = {coupon} and user_id = {user}"
        ))
        .await,
        1
    );
    assert_eq!(
        app.scalar(&format!(
            "select issued_quantity from coupons where id = {coupon}"
        ))
        .await,
        1
    );
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_payments_of_one_order_pay_it_once(#[case] backend: Backend) {
    let app = app(backend).await;
    let product = app.create_product("single", 10_000, 5).await;
    let user = app.user_with_balance("payer", 100_000).await;
    let order = pending(&app, user, &[(product, 1)], None).await;

    let answers = race(10, |_| {
        let app = app.clone();
        async move { app.pay(order).await }
    })
    .await;

    assert_eq!(
        tally(&answers),
        expect(&[("200", 1), ("409 ORDER_NOT_PAYABLE", 9)])
    );
    let winner = answers.iter().find(|a| a.0 == StatusCode::OK).unwrap();
    assert_eq!(winner.1["status"], "PAID");

    assert_eq!(app.ledger_entries(order, "PAYMENT").await, 1);
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from balance_ledger where user_id = {user} and kind = 'PAYMENT'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from orders where id = {order} and status = 'PAID'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.scalar(&format!("select balance from users where id = {user}"))
            .await,
        90_000
    );
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from outbox_events where order_id = {order} and event_type = 'order.paid'"
        ))
        .await,
        1
    );
    assert_eq!(app.stock(product).await, 4);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paying_ten_orders_with_balance_for_three(#[case] backend: Backend) {
    let app = app(backend).await;
    let product = app.create_product("thing", 10_000, 100).await;
    let user = app.user_with_balance("short", 30_000).await;
    let mut orders = Vec::new();
    for _ in 0..10 {
        orders.push(pending(&app, user, &[(product, 1)], None).await);
    }
    let orders = Arc::new(orders);

    let answers = race(10, |i| {
        let app = app.clone();
        let orders = orders.clone();
        async move { app.pay(orders[i]).await }
    })
    .await;

    assert_eq!(
        tally(&answers),
        expect(&[("200", 3), ("409 INSUFFICIENT_BALANCE", 7)])
    );
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from orders where user_id = {user} and status = 'PAID'"
        ))
        .await,
        3
    );
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from orders where user_id = {user} and status = 'PENDING'"
        ))
        .await,
        7
    );
    // Each answer matches its order's state in the database.
    for (i, a) in answers.iter().enumerate() {
        let want = if a.0 == StatusCode::OK {
            "PAID"
        } else {
            "PENDING"
        };
        assert_eq!(
            app.scalar(&format!(
                "select count(*) from orders where id = {} and status = '{want}'",
                orders[i]
            ))
            .await,
            1,
            "order {} answered {}",
            orders[i],
            a.1
        );
    }
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from balance_ledger where user_id = {user} and kind = 'PAYMENT'"
        ))
        .await,
        3
    );
    assert_eq!(
        app.scalar(&format!("select balance from users where id = {user}"))
            .await,
        0
    );
    // The refused orders still hold their stock.
    assert_eq!(app.stock(product).await, 90);

    // A refused order can be paid after a charge.
    let refused = answers
        .iter()
        .position(|a| a.0 != StatusCode::OK)
        .map(|i| orders[i])
        .unwrap();
    let (s, b) = app.charge(user, 10_000).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app.pay(refused).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(app.balance(user).await, 0);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_racing_payment_ends_consistent(#[case] backend: Backend) {
    const ROUNDS: usize = 20;
    let app = app(backend).await;
    let product = app.create_product("contested", 10_000, 50).await;
    let user = app.user_with_balance("undecided", 1_000_000).await;
    let mut orders = Vec::new();
    let mut user_coupons = Vec::new();
    for i in 0..ROUNDS {
        let coupon = app
            .create_coupon(json!({ "name": format!("c{i}"), "totalQuantity": 1 }))
            .await;
        let uc = app.issued(coupon, user).await;
        user_coupons.push(uc);
        orders.push(pending(&app, user, &[(product, 2)], Some(uc)).await);
    }
    assert_eq!(app.stock(product).await, 50 - 2 * ROUNDS as i64);
    let orders = Arc::new(orders);

    // Even tasks pay, odd tasks cancel; each pair shares an order.
    let answers = race(2 * ROUNDS, |i| {
        let app = app.clone();
        let order = orders[i / 2];
        async move {
            if i % 2 == 0 {
                app.pay(order).await
            } else {
                app.cancel(order).await
            }
        }
    })
    .await;

    let mut paid_then_cancelled = 0;
    for round in 0..ROUNDS {
        let order = orders[round];
        let (pay, cancel) = (&answers[2 * round], &answers[2 * round + 1]);
        let status = app.order_status(order).await;
        let payments = app.ledger_entries(order, "PAYMENT").await;
        let refunds = app.ledger_entries(order, "REFUND").await;
        let was_paid = app
            .scalar(&format!(
                "select count(*) from orders where id = {order} and paid_at is not null"
            ))
            .await;
        let ctx = format!(
            "order {order}: pay {} {}, cancel {} {}, status {status}, payments {payments}, refunds {refunds}",
            pay.0, pay.1, cancel.0, cancel.1
        );
        match (outcome(pay).as_str(), outcome(cancel).as_str()) {
            // The cancel came first: never paid.
            ("409 ORDER_NOT_PAYABLE", "200") => {
                assert_eq!(status, "CANCELLED", "{ctx}");
                assert_eq!((payments, refunds, was_paid), (0, 0, 0), "{ctx}");
            }
            // The payment came first, the cancel refunded it.
            ("200", "200") => {
                assert_eq!(status, "CANCELLED", "{ctx}");
                assert_eq!((payments, refunds, was_paid), (1, 1, 1), "{ctx}");
                paid_then_cancelled += 1;
            }
            // Cancelling a PENDING or a PAID order is always allowed.
            _ => panic!("unexpected answers: {ctx}"),
        }
        // Either way the coupon came back (it has not expired).
        assert_eq!(
            app.scalar(&format!(
                "select count(*) from user_coupons where id = {} and order_id is null",
                user_coupons[round]
            ))
            .await,
            1,
            "{ctx}"
        );
    }
    eprintln!("cancel vs pay: {paid_then_cancelled} of {ROUNDS} paid first");

    // All stock is back: no order holds any.
    assert_eq!(
        app.scalar(&format!(
            "select cast(sum(stock) as bigint) from variants where product_id = {product}"
        ))
        .await,
        50
    );
    assert_eq!(
        app.scalar("select count(*) from orders where status in ('PENDING', 'PAID')")
            .await,
        0
    );
    // Balance = charged - final amounts of the orders that are PAID now.
    let paid_now = app
        .scalar("select coalesce(cast(sum(final_amount) as bigint), 0) from orders where status = 'PAID'")
        .await;
    assert_eq!(app.balance(user).await, 1_000_000 - paid_now);
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from outbox_events where event_type = 'order.paid' and order_id in ({})",
            orders.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        ))
        .await,
        paid_then_cancelled
    );
    app.check_invariants().await;
}

/// Places `n` PENDING orders, each of 1 unit with its own coupon, for one user.
/// Returns (product, user, orders, user coupons).
async fn expiry_fixture(app: &TestApp, n: usize) -> (i64, i64, Vec<i64>, Vec<i64>) {
    let product = app.create_product("perishable", 10_000, 20).await;
    let user = app.user_with_balance("late", 1_000_000).await;
    let mut orders = Vec::new();
    let mut ucs = Vec::new();
    for i in 0..n {
        let coupon = app
            .create_coupon(json!({ "name": format!("e{i}"), "totalQuantity": 1 }))
            .await;
        let uc = app.issued(coupon, user).await;
        ucs.push(uc);
        orders.push(pending(app, user, &[(product, 1)], Some(uc)).await);
    }
    (product, user, orders, ucs)
}

/// Fires a payment of every order and `expiries` expiry passes at once. Returns the
/// payment answers and the expiry passes' counts.
async fn pay_racing_expiry(
    app: &Arc<TestApp>,
    orders: &[i64],
    expiries: usize,
) -> (Vec<Answer>, Vec<usize>) {
    let orders = Arc::new(orders.to_vec());
    let n = orders.len();
    let results = race(n + expiries, |i| {
        let app = app.clone();
        let orders = orders.clone();
        async move {
            if i < n {
                Ok(app.pay(orders[i]).await)
            } else {
                Err(app.expire_now().await)
            }
        }
    })
    .await;
    let mut pays = Vec::new();
    let mut passes = Vec::new();
    for r in results {
        match r {
            Ok(a) => pays.push(a),
            Err(k) => passes.push(k),
        }
    }
    (pays, passes)
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_racing_expiry_past_the_ttl_is_refused(#[case] backend: Backend) {
    const N: usize = 10;
    let app = app(backend).await;
    let (product, user, orders, ucs) = expiry_fixture(&app, N).await;
    assert_eq!(app.stock(product).await, 20 - N as i64);

    app.clock.advance(TimeDelta::minutes(6));
    let (pays, passes) = pay_racing_expiry(&app, &orders, 2).await;

    // An order past its expiry cannot be paid, whether or not the expiry ran first.
    assert_eq!(tally(&pays), expect(&[("409 ORDER_NOT_PAYABLE", N)]));
    assert!(passes.iter().sum::<usize>() <= N, "{passes:?}");

    let list = orders
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from orders where id in ({list}) and status = 'EXPIRED'"
        ))
        .await,
        N as i64
    );
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from orders where id in ({list}) and paid_at is not null"
        ))
        .await,
        0
    );
    assert_eq!(
        app.scalar("select count(*) from balance_ledger where kind = 'PAYMENT'")
            .await,
        0
    );
    assert_eq!(
        app.scalar("select count(*) from outbox_events where event_type = 'order.paid'")
            .await,
        0
    );
    assert_eq!(
        app.scalar(&format!(
            "select cast(sum(stock) as bigint) from variants where product_id = {product}"
        ))
        .await,
        20
    );
    let ucs_list = ucs.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from user_coupons where id in ({ucs_list}) and order_id is null"
        ))
        .await,
        N as i64
    );
    assert_eq!(app.balance(user).await, 1_000_000);
    for order in &orders {
        assert_eq!(app.order_status(*order).await, "EXPIRED");
    }
    // The released coupons are usable again.
    let (s, b) = app.order(user, &[(product, 1)], Some(ucs[0]), true).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_racing_expiry_within_the_ttl_succeeds(#[case] backend: Backend) {
    const N: usize = 10;
    let app = app(backend).await;
    let (product, user, orders, ucs) = expiry_fixture(&app, N).await;

    let (pays, passes) = pay_racing_expiry(&app, &orders, 2).await;

    assert_eq!(tally(&pays), expect(&[("200", N)]));
    assert_eq!(passes, vec![0, 0]);
    let list = orders
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from orders where id in ({list}) and status = 'PAID'"
        ))
        .await,
        N as i64
    );
    assert_eq!(
        app.scalar("select count(*) from balance_ledger where kind = 'PAYMENT'")
            .await,
        N as i64
    );
    assert_eq!(
        app.scalar(&format!(
            "select cast(sum(stock) as bigint) from variants where product_id = {product}"
        ))
        .await,
        20 - N as i64
    );
    let ucs_list = ucs.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from user_coupons uc join orders o on o.id = uc.order_id
             where uc.id in ({ucs_list}) and o.user_coupon_id = uc.id"
        ))
        .await,
        N as i64
    );
    let paid_total = app
        .scalar("select cast(sum(final_amount) as bigint) from orders where status = 'PAID'")
        .await;
    assert_eq!(paid_total, N as i64 * 9_000);
    assert_eq!(app.balance(user).await, 1_000_000 - paid_total);

    // A later pass, past the TTL, leaves PAID orders alone.
    app.clock.advance(TimeDelta::minutes(6));
    assert_eq!(app.expire_now().await, 0);
    assert_eq!(
        app.scalar("select count(*) from orders where status = 'PAID'")
            .await,
        N as i64
    );
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_coupon_in_ten_simultaneous_orders_is_used_once(#[case] backend: Backend) {
    let app = app(backend).await;
    let product = app.create_product("popular", 10_000, 100).await;
    let user = app.user_with_balance("sly", 1_000_000).await;
    let coupon = app.create_coupon(json!({ "totalQuantity": 10 })).await;
    let uc = app.issued(coupon, user).await;

    let answers = race(10, |_| {
        let app = app.clone();
        async move { app.order(user, &[(product, 2)], Some(uc), false).await }
    })
    .await;

    assert_eq!(
        tally(&answers),
        expect(&[("201", 1), ("409 COUPON_NOT_USABLE", 9)])
    );
    let winner = id_of(answers.iter().find(|a| a.0 == StatusCode::CREATED).unwrap());

    assert_eq!(app.scalar("select count(*) from orders").await, 1);
    assert_eq!(app.scalar("select count(*) from order_items").await, 1);
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from orders where id = {winner} and user_coupon_id = {uc} and status = 'PENDING'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.scalar(&format!(
            "select order_id from user_coupons where id = {uc}"
        ))
        .await,
        winner
    );
    // Only the winner holds stock.
    assert_eq!(
        app.scalar(&format!(
            "select cast(sum(stock) as bigint) from variants where product_id = {product}"
        ))
        .await,
        98
    );
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_storm_keeps_every_invariant(#[case] backend: Backend) {
    const USERS: usize = 60;
    const STOCK: i64 = 30;
    const COUPONS: i64 = 20;
    let app = app(backend).await;
    let product = app.create_product("storm", 10_000, STOCK).await;
    let coupon = app
        .create_coupon(json!({ "totalQuantity": COUPONS, "discountValue": 1000 }))
        .await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(app.user_with_balance(&format!("storm{i}"), 20_000).await);
    }
    let users = Arc::new(users);

    // Every third user places a PENDING order and cancels it; the others try for the
    // coupon and buy with it if they got it, without it otherwise.
    let results = race(USERS, |i| {
        let app = app.clone();
        let user = users[i];
        async move {
            if i % 3 == 0 {
                let placed = app.order(user, &[(product, 1)], None, false).await;
                let cancelled = if placed.0 == StatusCode::CREATED {
                    Some(app.cancel(id_of(&placed)).await)
                } else {
                    None
                };
                (None, placed, cancelled)
            } else {
                let issued = app.issue(coupon, user).await;
                let uc = (issued.0 == StatusCode::CREATED).then(|| id_of(&issued));
                let bought = app.order(user, &[(product, 1)], uc, true).await;
                (Some(issued), bought, None)
            }
        }
    })
    .await;

    let mut issued = 0;
    let mut paid = 0;
    let mut paid_with_coupon = 0;
    for (i, (issue, order, cancel)) in results.iter().enumerate() {
        match issue {
            Some(issue) => {
                match outcome(issue).as_str() {
                    "201" => issued += 1,
                    "409 COUPON_SOLD_OUT" => {}
                    other => panic!("issue for user {i}: {other} {}", issue.1),
                }
                match outcome(order).as_str() {
                    "201" => {
                        assert_eq!(order.1["status"], "PAID", "{}", order.1);
                        paid += 1;
                        if issue.0 == StatusCode::CREATED {
                            assert_eq!(order.1["finalAmount"], 9_000, "{}", order.1);
                            paid_with_coupon += 1;
                        } else {
                            assert_eq!(order.1["finalAmount"], 10_000, "{}", order.1);
                        }
                    }
                    "409 INSUFFICIENT_STOCK" => {}
                    other => panic!("order for user {i}: {other} {}", order.1),
                }
            }
            None => match (outcome(order).as_str(), cancel) {
                ("201", Some(c)) => assert_eq!(outcome(c), "200", "{}", c.1),
                ("409 INSUFFICIENT_STOCK", None) => {}
                (other, _) => panic!("pending order for user {i}: {other} {}", order.1),
            },
        }
    }
    eprintln!("storm: {issued} coupons issued, {paid} paid ({paid_with_coupon} with a coupon)");

    assert_eq!(issued, COUPONS);
    // The cancellers hold at most 20 units at any time, so at least 10 buyers win.
    assert!((STOCK - 20..=STOCK).contains(&paid), "{paid} paid");
    assert_eq!(
        app.scalar(&format!(
            "select issued_quantity from coupons where id = {coupon}"
        ))
        .await,
        COUPONS
    );
    assert_eq!(
        app.scalar("select count(*) from orders where status = 'PAID'")
            .await,
        paid
    );
    assert_eq!(
        app.scalar("select count(*) from orders where status = 'PENDING'")
            .await,
        0
    );
    assert_eq!(
        app.scalar("select count(*) from user_coupons where order_id is not null")
            .await,
        paid_with_coupon
    );
    assert_eq!(
        app.scalar(&format!(
            "select cast(sum(stock) as bigint) from variants where product_id = {product}"
        ))
        .await,
        STOCK - paid
    );
    let paid_total = app
        .scalar("select coalesce(cast(sum(final_amount) as bigint), 0) from orders where status = 'PAID'")
        .await;
    assert_eq!(paid_total, paid * 10_000 - paid_with_coupon * 1_000);
    assert_eq!(
        app.scalar("select cast(sum(balance) as bigint) from users")
            .await,
        USERS as i64 * 20_000 - paid_total
    );
    app.check_invariants().await;
}
