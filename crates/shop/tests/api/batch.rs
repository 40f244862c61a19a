//! The write path itself, below HTTP: a batch decided in memory gives the same answers
//! and leaves the same rows as its jobs run one at a time; a job that makes the bulk
//! write fail does not fail the others.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use rstest::rstest;
use serde_json::{Value, json};
use shop::batch::{Claim, Job, Outcome, Rules, StockTarget, Work};
use shop::coupon::store::NewCoupon;
use shop::db::Db;
use shop::ids::{CouponId, OrderId, ProductId, UserCouponId, UserId, VariantId};
use shop::money::{DiscountType, Won};
use shop::order::{Line, OrderRules, PlaceOrder};
use shop::product::store::{NewProduct, NewVariant};

use crate::helpers::{Backend, TestDatabase};

fn rules() -> Rules {
    Rules {
        order: OrderRules {
            max_items: 50,
            max_quantity: 1000,
            ttl: TimeDelta::minutes(5),
        },
        max_balance: Won(60_000),
        max_daily_charge: Won(80_000),
        timezone: chrono_tz::Asia::Seoul,
    }
}

fn one_variant(name: &str, price: i64, stock: i64) -> NewProduct {
    NewProduct {
        name: name.into(),
        description: String::new(),
        images: Vec::new(),
        options: Vec::new(),
        variants: vec![NewVariant {
            options: Default::default(),
            price: Won(price),
            stock,
            sku: None,
        }],
    }
}

/// Product 4: a shirt in sizes S and M (variants 4 and 5), a unit each.
fn shirt() -> NewProduct {
    let variant = |size: &str| NewVariant {
        options: [("size".to_string(), size.to_string())].into(),
        price: Won(5_000),
        stock: 1,
        sku: None,
    };
    NewProduct {
        name: "shirt".into(),
        description: String::new(),
        images: Vec::new(),
        options: vec![shop::product::ProductOption {
            name: "size".into(),
            values: vec!["S".into(), "M".into()],
        }],
        variants: vec![variant("S"), variant("M")],
    }
}

/// A database with 3 users, 4 products (the last in two sizes) and 3 coupons (the last
/// limited to the shirt), some coupons issued, carts, and two PENDING orders placed
/// long enough ago to be due for expiry at `now`.
async fn seeded(backend: Backend, now: DateTime<Utc>) -> (TestDatabase, Db) {
    let test_db = TestDatabase::new(backend).await;
    // A generous statement timeout: a statement cancelled on a busy machine would make
    // its batch run again, and a retried batch reserves new ids on PostgreSQL.
    let db = Db::connect(&test_db.url, 4, std::time::Duration::from_secs(120))
        .await
        .expect("database");
    let earlier = now - TimeDelta::minutes(10);
    let at = shop::clock::to_millis(earlier);
    db.transact(move |tx| {
        Box::pin(async move {
            for name in ["kim", "lee", "park"] {
                shop::account::store::create_user(tx, name, None, None, at)
                    .await
                    .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            }
            for (name, price, stock) in [("pen", 3_000, 5), ("cup", 7_000, 3), ("bag", 20_000, 2)] {
                shop::product::store::create(tx, &one_variant(name, price, stock), at)
                    .await
                    .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            }
            shop::product::store::create(tx, &shirt(), at)
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            for (kind, value, total, min, product) in [
                (DiscountType::Fixed, 5_000, 2, 0, None),
                (DiscountType::Rate, 15, 3, 10_000, None),
                (DiscountType::Fixed, 1_000, 3, 0, Some(ProductId(4))),
            ] {
                let coupon = NewCoupon {
                    name: "c".into(),
                    discount_type: kind,
                    discount_value: value,
                    total_quantity: total,
                    min_order_amount: Won(min),
                    issue_starts_at: None,
                    issue_ends_at: None,
                    valid_days: 30,
                    product_id: product,
                };
                shop::coupon::store::create(tx, &coupon, at).await?;
            }
            // Carts: user 1's holds the pen and the M shirt, user 2's two cups.
            for user in [1, 2] {
                sqlx::query("insert into carts (user_id, updated_at) values ($1, $2)")
                    .bind(user)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
            for (user, variant, quantity) in [(1, 1, 1), (1, 5, 1), (2, 2, 2)] {
                sqlx::query(
                    "insert into cart_items (user_id, variant_id, quantity, added_at)
                     values ($1, $2, $3, $4)",
                )
                .bind(user)
                .bind(variant)
                .bind(quantity)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
    .expect("seed");
    let setup: Vec<Work> = vec![
        Work::Charge {
            user: UserId(1),
            amount: Won(20_000),
        },
        Work::Charge {
            user: UserId(2),
            amount: Won(50_000),
        },
        Work::Issue {
            coupon: CouponId(1),
            user: UserId(1),
        },
        Work::Issue {
            coupon: CouponId(2),
            user: UserId(2),
        },
        Work::Place(place(1, &[(1, 1)], None, false)),
        Work::Place(place(2, &[(2, 1), (1, 1)], Some(2), false)),
    ];
    for work in setup {
        let job = Job { work, key: None };
        let outcome = shop::batch::run(&db, &rules(), earlier, &[&job]).await;
        assert!(
            matches!(
                &outcome[0],
                Outcome::Decided {
                    decision: Ok(_),
                    ..
                }
            ),
            "{outcome:?}"
        );
    }
    (test_db, db)
}

fn place(user: i64, items: &[(i64, i64)], coupon: Option<i64>, pay: bool) -> PlaceOrder {
    PlaceOrder {
        user: UserId(user),
        lines: items
            .iter()
            .map(|&(p, q)| Line {
                product: ProductId(p),
                variant: None,
                quantity: q,
            })
            .collect(),
        user_coupon: coupon.map(UserCouponId),
        pay,
    }
}

/// A job as a property test draws it: work, and maybe a key from a small pool (so
/// that replays and reused keys happen).
#[derive(Debug, Clone)]
struct Drawn {
    work: Work,
    key: Option<u8>,
}

fn work() -> impl Strategy<Value = Work> {
    // Users 1..=3 exist, 4 does not; products 1..=4 (4 in two variants, 4 and 5) and 5
    // does not; orders 1..=2 exist before.
    let user = 1i64..=4;
    let line = (1i64..=5, prop::option::of(1i64..=6), 1i64..=3).prop_map(|(p, v, q)| Line {
        product: ProductId(p),
        variant: v.map(VariantId),
        quantity: q,
    });
    prop_oneof![
        4 => (user.clone(), prop::collection::vec(line, 1..=3),
              prop::option::of(1i64..=6), any::<bool>())
            .prop_map(|(u, lines, c, pay)| Work::Place(PlaceOrder {
                user: UserId(u),
                lines,
                user_coupon: c.map(UserCouponId),
                pay,
            })),
        1 => (user.clone(), prop::option::of(1i64..=6), any::<bool>())
            .prop_map(|(u, c, pay)| Work::Checkout { user: UserId(u), user_coupon: c.map(UserCouponId), pay }),
        2 => (1i64..=9, user.clone()).prop_map(|(o, u)| Work::Pay { order: OrderId(o), caller: UserId(u) }),
        2 => (1i64..=9, user.clone()).prop_map(|(o, u)| Work::Cancel { order: OrderId(o), caller: UserId(u) }),
        1 => (1i64..=9).prop_map(|o| Work::Ship { order: OrderId(o), tracking: Some("T-1".into()) }),
        1 => (1i64..=9).prop_map(|o| Work::Deliver { order: OrderId(o) }),
        2 => (user.clone(), prop::sample::select(vec![1i64, 5_000, 30_000, 59_999]))
            .prop_map(|(u, a)| Work::Charge { user: UserId(u), amount: Won(a) }),
        2 => (1i64..=4, user).prop_map(|(c, u)| Work::Issue { coupon: CouponId(c), user: UserId(u) }),
        1 => (1i64..=5, prop::sample::select(vec![-4i64, -1, 1, 3]))
            .prop_map(|(p, d)| Work::AdjustStock { target: StockTarget::Product(ProductId(p)), delta: d }),
        1 => (1i64..=6, prop::sample::select(vec![-1i64, 2]))
            .prop_map(|(v, d)| Work::AdjustStock { target: StockTarget::Variant(VariantId(v)), delta: d }),
        1 => Just(Work::ExpireDue { limit: 200 }),
    ]
}

fn drawn() -> impl Strategy<Value = Drawn> {
    (work(), prop::option::of(0u8..4)).prop_map(|(work, key)| Drawn { work, key })
}

fn job(d: &Drawn) -> Job {
    let key = d.key.map(|k| {
        (
            Claim {
                scope: "user:1".into(),
                key: format!("k{k}"),
                // The same work is the same request.
                fingerprint: format!("{:?}", d.work),
            },
            shop::http::idempotency::render::<200> as shop::batch::Render,
        )
    });
    Job {
        work: d.work.clone(),
        key,
    }
}

/// An outcome as a client would see it.
fn seen(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Decided {
            decision, answer, ..
        } => {
            let answer = answer
                .clone()
                .unwrap_or_else(|| shop::http::idempotency::render::<200>(decision));
            json!({"status": answer.status, "body": serde_json::from_slice::<Value>(&answer.body).unwrap()})
        }
        Outcome::Replayed(answer) => {
            json!({"replayed": answer.status, "body": serde_json::from_slice::<Value>(&answer.body).unwrap()})
        }
        other => json!(format!("{other:?}")),
    }
}

/// Every row the write path writes (event ids and payloads' ids aside: they are new
/// UUIDs each time).
async fn rows(db: &Db) -> Value {
    let tables = [
        "select id, balance, charge_day, charged_today from users order by id",
        "select id, name, price, updated_at from products order by id",
        "select id, product_id, price, stock, updated_at from variants order by id",
        "select id, issued_quantity from coupons order by id",
        "select id, coupon_id, user_id, issued_at, expires_at, order_id, used_at from user_coupons order by id",
        "select id, user_id, status, user_coupon_id, total_amount, discount_amount, final_amount, \
           created_at, paid_at, expires_at, cancelled_at, shipped_at, delivered_at, tracking_number \
           from orders order by id",
        "select id, order_id, product_id, variant_id, name, options, unit_price, quantity, amount \
           from order_items order by id",
        "select id, user_id, kind, amount, balance_before, balance_after, order_id, created_at \
           from balance_ledger order by id",
        "select id, order_id, status, amount, failure_code, at from payments order by id",
        "select id, user_coupon_id, action, order_id, at from coupon_history order by id",
        "select user_id, variant_id, quantity from cart_items order by user_id, variant_id",
        "select user_id, updated_at from carts order by user_id",
        "select seq, event_type, order_id, created_at from outbox_events order by seq",
        "select hour, product_id, quantity, amount from product_sales_hourly order by hour, product_id",
        "select id, product_id, variant_id, delta, created_at from stock_adjustments order by id",
        "select scope, idem_key, fingerprint, status_code, body from idempotency_keys order by scope, idem_key",
    ];
    let mut out = Vec::new();
    for sql in tables {
        let got: Vec<sqlx::any::AnyRow> = sqlx::query(sql).fetch_all(db.read()).await.unwrap();
        let table: Vec<Value> = got
            .iter()
            .map(|row| {
                use sqlx::{Column, Row};
                Value::Array(
                    row.columns()
                        .iter()
                        .map(|c| {
                            let i = c.ordinal();
                            row.try_get::<Option<i64>, _>(i)
                                .map(|v| json!(v))
                                .or_else(|_| row.try_get::<Option<String>, _>(i).map(|v| json!(v)))
                                .unwrap()
                        })
                        .collect(),
                )
            })
            .collect();
        out.push(json!({ sql: table }));
    }
    Value::Array(out)
}

async fn compare_batch_with_one_at_a_time(backend: Backend, drawn: &[Drawn]) -> Result<(), String> {
    let now = Utc::now();
    let (_keep_a, batched) = seeded(backend, now).await;
    let (_keep_b, single) = seeded(backend, now).await;
    let jobs: Vec<Job> = drawn.iter().map(job).collect();
    let refs: Vec<&Job> = jobs.iter().collect();
    let together = shop::batch::run(&batched, &rules(), now, &refs).await;
    let mut alone = Vec::new();
    for job in &refs {
        alone.extend(shop::batch::run(&single, &rules(), now, &[job]).await);
    }
    let mut trace = String::new();
    for (i, (a, b)) in together.iter().zip(&alone).enumerate() {
        let (a, b) = (seen(a), seen(b));
        let _ = writeln!(trace, "  #{i} {:?} -> {a}", drawn[i]);
        if a != b {
            return Err(format!("job #{i}: batched {a}, alone {b}\n{trace}"));
        }
    }
    let (a, b) = (rows(&batched).await, rows(&single).await);
    if a != b {
        return Err(format!(
            "the rows differ:\nbatched {a}\nalone   {b}\n{trace}"
        ));
    }
    for (what, n) in shop::invariants::violations(&batched).await.unwrap() {
        if n != 0 {
            return Err(format!("invariant broken: {what}\n{trace}"));
        }
    }
    batched.close().await;
    single.close().await;
    Ok(())
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
fn a_batch_decided_in_memory_equals_its_jobs_one_at_a_time(#[case] backend: Backend) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = ProptestConfig {
        // Each case makes two databases: fewer on PostgreSQL, where that is slower.
        cases: std::env::var("SHOP_BATCH_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(match backend {
                Backend::Sqlite => 48,
                Backend::Postgres => 16,
            }),
        failure_persistence: None,
        max_shrink_iters: 300,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(drawn(), 1..=40), |drawn| {
        rt.block_on(compare_batch_with_one_at_a_time(backend, &drawn))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_job_that_makes_the_bulk_write_fail_fails_alone(#[case] backend: Backend) {
    let now = Utc::now();
    let (_keep, db) = seeded(backend, now).await;
    // The database refuses any order of user 3: the batch's one insert of orders fails.
    let trigger = match backend {
        Backend::Sqlite => vec![
            "create trigger refuse_user_3 before insert on orders when new.user_id = 3
             begin select raise(abort, 'orders of user 3 are refused'); end",
        ],
        Backend::Postgres => vec![
            "create function refuse_user_3() returns trigger language plpgsql as $$
             begin if new.user_id = 3 then raise exception 'orders of user 3 are refused'; end if;
             return new; end $$",
            "create trigger refuse_user_3 before insert on orders for each row execute function refuse_user_3()",
        ],
    };
    for sql in trigger {
        sqlx::query(sql).execute(db.read()).await.unwrap();
    }
    let works = vec![
        Work::Charge {
            user: UserId(3),
            amount: Won(40_000),
        },
        Work::Place(place(1, &[(1, 1)], None, true)),
        Work::Place(place(3, &[(1, 1)], None, false)),
        Work::Charge {
            user: UserId(2),
            amount: Won(1_000),
        },
        Work::Issue {
            coupon: CouponId(1),
            user: UserId(3),
        },
        Work::Place(place(2, &[(2, 1)], None, true)),
        Work::Charge {
            user: UserId(1),
            amount: Won(100),
        },
    ];
    let jobs: Vec<Job> = works
        .into_iter()
        .map(|work| Job { work, key: None })
        .collect();
    let refs: Vec<&Job> = jobs.iter().collect();
    let outcomes = shop::batch::run(&db, &rules(), now, &refs).await;
    for (i, outcome) in outcomes.iter().enumerate() {
        if i == 2 {
            assert!(
                matches!(outcome, Outcome::RolledBack { transient: false }),
                "the poisoned job fails: {outcome:?}"
            );
        } else {
            assert!(
                matches!(
                    outcome,
                    Outcome::Decided {
                        decision: Ok(_),
                        ..
                    }
                ),
                "job {i} succeeds: {outcome:?}"
            );
        }
    }
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(db.read()).await.unwrap();
            n
        }
    };
    assert_eq!(
        count("select count(*) from orders where user_id = 3").await,
        0
    );
    assert_eq!(count("select count(*) from orders").await, 4);
    assert_eq!(
        count("select balance from users where id = 3").await,
        40_000
    );
    assert_eq!(
        count("select count(*) from user_coupons where user_id = 3").await,
        1
    );
    for (what, n) in shop::invariants::violations(&db).await.unwrap() {
        assert_eq!(n, 0, "invariant broken: {what}");
    }
}
