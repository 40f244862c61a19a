//! Coupon management: the public and admin lists, the admin's edits (status, totals,
//! issue period), product coupons, a user coupon's use and history, and totals moved
//! while a rush runs on three instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::{Method, StatusCode};
use rstest::rstest;
use serde_json::{Value, json};

use crate::helpers::{Answer, Backend, TestApp, race, spawn_app, start_instance};

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or("")
}

fn now(app: &TestApp) -> DateTime<Utc> {
    shop::clock::Clock::now(&*app.clock)
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

async fn patch_coupon(app: &TestApp, coupon: i64, body: Value) -> Answer {
    app.patch(&format!("/api/v1/admin/coupons/{coupon}"), body)
        .await
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn the_public_list_shows_what_can_be_issued_now_and_the_admin_sees_all(
    #[case] backend: Backend,
) {
    let app = spawn_app(backend).await;
    let kim = app.create_user("kim").await;
    let open = app.create_coupon(json!({"name": "open"})).await;
    let stopped = app.create_coupon(json!({"name": "stopped"})).await;
    let (s, b) = patch_coupon(&app, stopped, json!({"status": "INACTIVE"})).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("INACTIVE"))
    );
    let gone = app.create_coupon(json!({"totalQuantity": 1})).await;
    app.issued(gone, kim).await;
    let t = now(&app);
    let later = app
        .create_coupon(json!({"issueStartsAt": (t + TimeDelta::hours(1)).to_rfc3339()}))
        .await;
    let closing = app
        .create_coupon(json!({"issueEndsAt": (t + TimeDelta::minutes(1)).to_rfc3339()}))
        .await;
    let (s, page) = app.get("/api/v1/coupons").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(ids(&page), [closing, open]);
    assert_eq!(page["nextCursor"], Value::Null);
    app.clock.advance(TimeDelta::minutes(2));
    let (_, page) = app.get("/api/v1/coupons").await;
    assert_eq!(ids(&page), [open]);
    app.clock.advance(TimeDelta::hours(1));
    let (_, page) = app.get("/api/v1/coupons").await;
    assert_eq!(ids(&page), [later, open]);

    // The admin sees every one, newest first, a page at a time.
    let (s, first) = app.get("/api/v1/admin/coupons?limit=3").await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(ids(&first), [closing, later, gone]);
    assert_eq!(first["items"][2]["issuedQuantity"], 1);
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, rest) = app
        .get(&format!("/api/v1/admin/coupons?limit=3&cursor={cursor}"))
        .await;
    assert_eq!(ids(&rest), [stopped, open]);
    assert_eq!(rest["nextCursor"], Value::Null);
    for bad in ["limit=0", "limit=101", "limit=x", "cursor=nope"] {
        for path in ["/api/v1/coupons", "/api/v1/admin/coupons"] {
            let (s, b) = app.get(&format!("{path}?{bad}")).await;
            assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "INVALID_REQUEST"));
        }
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn the_admin_edits_a_coupon_but_never_below_what_is_issued(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now(&app);
    let coupon = app
        .create_coupon(json!({"totalQuantity": 5,
            "issueStartsAt": (t - TimeDelta::hours(1)).to_rfc3339()}))
        .await;
    for i in 0..3 {
        let user = app.create_user(&format!("u{i}")).await;
        app.issued(coupon, user).await;
    }
    let ends = t + TimeDelta::days(1);
    let (s, c) = patch_coupon(
        &app,
        coupon,
        json!({"name": "renamed", "totalQuantity": 3, "issueEndsAt": ends.to_rfc3339()}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["name"], "renamed");
    assert_eq!(
        (c["totalQuantity"].as_i64(), c["issuedQuantity"].as_i64()),
        (Some(3), Some(3))
    );
    let at: DateTime<Utc> = c["issueEndsAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        at.timestamp_millis(),
        ends.timestamp_millis(),
        "kept to the millisecond"
    );
    let (_, read) = app.get(&format!("/api/v1/coupons/{coupon}")).await;
    assert_eq!(read, c, "the answer is the coupon as stored");

    let before = app.get(&format!("/api/v1/coupons/{coupon}")).await.1;
    let (s, b) = patch_coupon(&app, coupon, json!({"totalQuantity": 2})).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "COUPON_QUANTITY_BELOW_ISSUED")
    );
    // Refused input: 400, and nothing changes (not even the fields that were fine).
    for bad in [
        json!({"totalQuantity": 0}),
        json!({"totalQuantity": 100_000_001}),
        json!({"totalQuantity": "5"}),
        json!({"name": "x", "totalQuantity": -1}),
        json!({"name": null}),
        json!({"name": ""}),
        json!({"status": "PAUSED"}),
        json!({"status": null}),
        json!({"discountValue": 5}),
        json!({"name": "x", "issueEndsAt": (t - TimeDelta::hours(2)).to_rfc3339()}),
        json!({"issueEndsAt": "tomorrow"}),
    ] {
        let (s, b) = patch_coupon(&app, coupon, bad.clone()).await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            "{bad}"
        );
    }
    assert_eq!(
        app.get(&format!("/api/v1/coupons/{coupon}")).await.1,
        before
    );
    let (s, b) = patch_coupon(&app, 999_999, json!({"name": "x"})).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "COUPON_NOT_FOUND"));

    // `null` reopens the issue period for good; raising makes room again.
    let (s, c) = patch_coupon(
        &app,
        coupon,
        json!({"issueEndsAt": null, "totalQuantity": 4}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["issueEndsAt"], Value::Null);
    let late = app.create_user("late").await;
    app.clock.advance(TimeDelta::days(2));
    assert_eq!(app.issue(coupon, late).await.0, StatusCode::CREATED);

    // An edit with a key is done once and replayed.
    let path = format!("/api/v1/admin/coupons/{coupon}");
    let mut answers = Vec::new();
    for _ in 0..2 {
        let res = app
            .request(
                Method::PATCH,
                &path,
                Some(br#"{"totalQuantity": 10}"#.to_vec()),
            )
            .await
            .header("content-type", "application/json")
            .header("Idempotency-Key", "raise-to-10")
            .send()
            .await
            .unwrap();
        answers.push((
            res.status(),
            res.headers().contains_key("idempotent-replayed"),
        ));
    }
    assert_eq!(answers, [(StatusCode::OK, false), (StatusCode::OK, true)]);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn an_inactive_coupon_is_not_issued_but_issued_ones_stay_usable(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let kim = app.user_with_balance("kim", 100_000).await;
    let lee = app.create_user("lee").await;
    let park = app.create_user("park").await;
    let p = app.create_product("cup", 10_000, 10).await;
    let coupon = app.create_coupon(json!({"totalQuantity": 2})).await;
    let uc = app.issued(coupon, kim).await;
    assert_eq!(
        patch_coupon(&app, coupon, json!({"status": "INACTIVE"}))
            .await
            .0,
        StatusCode::OK
    );
    // Twice: the second answer comes from the gates, which learnt the first.
    for _ in 0..2 {
        let (s, b) = app.issue(coupon, lee).await;
        assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "COUPON_INACTIVE"));
    }
    let (s, b) = app
        .post_with_key(
            &format!("/api/v1/coupons/{coupon}/issue"),
            json!({"userId": lee}),
            "k1",
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "COUPON_INACTIVE"));
    let (s, order) = app.order(kim, &[(p, 1)], Some(uc), true).await;
    assert_eq!(s, StatusCode::CREATED, "{order}");
    assert_eq!(order["discountAmount"], 1000);

    // Active again: the gates forgot. Then sold out, raised, and issued again.
    assert_eq!(
        patch_coupon(&app, coupon, json!({"status": "ACTIVE"}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(app.issue(coupon, lee).await.0, StatusCode::CREATED);
    for _ in 0..2 {
        let (s, b) = app.issue(coupon, park).await;
        assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "COUPON_SOLD_OUT"));
    }
    assert_eq!(
        patch_coupon(&app, coupon, json!({"totalQuantity": 3}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(app.issue(coupon, park).await.0, StatusCode::CREATED);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_product_coupon_discounts_only_that_products_lines(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let kim = app.user_with_balance("kim", 100_000).await;
    let pen = app.create_product("pen", 10_000, 10).await;
    let cup = app.create_product("cup", 5_000, 10).await;
    let (s, b) = app
        .post(
            "/api/v1/admin/coupons",
            json!({"name": "pens", "discountType": "RATE", "discountValue": 10,
                   "totalQuantity": 5, "productId": 999_999}),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND"));
    assert_eq!(app.scalar("select count(*) from coupons").await, 0);
    let coupon = app
        .create_coupon(
            json!({"discountType": "RATE", "discountValue": 10, "productId": pen,
            "minOrderAmount": 12_000}),
        )
        .await;
    let (_, c) = app.get(&format!("/api/v1/coupons/{coupon}")).await;
    assert_eq!(c["productId"], pen);
    let uc = app.issued(coupon, kim).await;

    // No pen line: not usable. Under the minimum (on the order's total): not usable.
    for items in [&[(cup, 3)][..], &[(pen, 1)][..]] {
        let (s, b) = app.order(kim, items, Some(uc), false).await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::CONFLICT, "COUPON_NOT_USABLE"),
            "{items:?}"
        );
    }
    // 10% of the pen lines only (2 × 10,000 in two lines), not of the cup's.
    let (s, order) = app
        .order(kim, &[(pen, 1), (cup, 1), (pen, 1)], Some(uc), false)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{order}");
    assert_eq!(order["totalAmount"], 25_000);
    assert_eq!(order["discountAmount"], 2_000);
    assert_eq!(order["finalAmount"], 23_000);
    let (_, list) = app.get(&format!("/api/v1/users/{kim}/coupons")).await;
    let mine = &list["items"][0];
    assert_eq!(mine["status"], "USED");
    assert_eq!(mine["orderId"], order["id"]);
    assert_eq!(mine["usedAt"], order["createdAt"]);
    assert_eq!(mine["productId"], pen);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_user_coupon_tells_its_history(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let kim = app.user_with_balance("kim", 100_000).await;
    let lee = app.create_user("lee").await;
    let p = app.create_product("cup", 10_000, 10).await;
    let coupon = app.create_coupon(json!({"validDays": 1})).await;
    let (s, issued) = app.issue(coupon, kim).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        (issued["usedAt"].clone(), issued["orderId"].clone()),
        (Value::Null, Value::Null)
    );
    let uc = issued["id"].as_i64().unwrap();
    let lees = app.issued(coupon, lee).await;
    let path = format!("/api/v1/users/{kim}/coupons/{uc}/history");

    app.clock.advance(TimeDelta::minutes(1));
    let (_, first) = app.order(kim, &[(p, 1)], Some(uc), false).await;
    app.clock.advance(TimeDelta::minutes(1));
    app.cancel(first["id"].as_i64().unwrap()).await;
    app.clock.advance(TimeDelta::minutes(1));
    let (_, paid) = app.order(kim, &[(p, 1)], Some(uc), true).await;
    app.clock.advance(TimeDelta::minutes(1));
    let (s, _) = app.cancel(paid["id"].as_i64().unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = app.get(&format!("/api/v1/users/{kim}/coupons")).await;
    assert_eq!(list["items"][0]["status"], "AVAILABLE");
    assert_eq!(
        (
            list["items"][0]["usedAt"].clone(),
            list["items"][0]["orderId"].clone()
        ),
        (Value::Null, Value::Null)
    );

    let (s, h) = app.get(&path).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let steps = |h: &Value| -> Vec<(String, Value)> {
        h.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_string(),
                    e["orderId"].clone(),
                )
            })
            .collect()
    };
    let (o1, o2) = (first["id"].clone(), paid["id"].clone());
    let expected = vec![
        ("ISSUED".to_string(), Value::Null),
        ("USED".into(), o1.clone()),
        ("RESTORED".into(), o1),
        ("USED".into(), o2.clone()),
        ("RESTORED".into(), o2),
    ];
    assert_eq!(steps(&h), expected);
    let at: Vec<DateTime<Utc>> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "oldest first: {at:?}");
    assert_eq!(h[0]["at"], issued["issuedAt"]);

    // Its validity passes unused: EXPIRED, at its expiry.
    app.clock.advance(TimeDelta::days(1));
    let (_, h) = app.get(&path).await;
    let mut with_expiry = expected.clone();
    with_expiry.push(("EXPIRED".into(), Value::Null));
    assert_eq!(steps(&h), with_expiry);
    assert_eq!(h[5]["at"], issued["expiresAt"]);

    // Someone else's coupon, or none: 404 alike.
    for other in [lees, 999_999] {
        let (s, b) = app
            .get(&format!("/api/v1/users/{kim}/coupons/{other}/history"))
            .await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::NOT_FOUND, "USER_COUPON_NOT_FOUND")
        );
    }
    let (s, _) = app
        .get(&format!("/api/v1/users/{kim}/coupons/abc/history"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// Three instances on one PostgreSQL and Redis; while users rush a coupon, the admin
/// lowers its total to what is issued, then raises it by 40 while a second rush runs.
/// The issued count is never above the total in force, and exactly the raised total is
/// issued (every instance forgot "sold out").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn totals_lowered_and_raised_during_a_rush_on_three_instances() {
    let app = Arc::new(spawn_app(Backend::Postgres).await);
    let instances = Arc::new(vec![
        start_instance(&app, &[]).await,
        start_instance(&app, &[]).await,
        start_instance(&app, &[]).await,
    ]);
    let coupon = app.create_coupon(json!({"totalQuantity": 150})).await;
    let mut users = Vec::new();
    for i in 0..643 {
        users.push(app.create_user(&format!("u{i}")).await);
    }
    let users = Arc::new(users);
    let over = "select count(*) from coupons where issued_quantity > total_quantity";
    // Watches the database the whole time.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (app, watching) = (app.clone(), watching.clone());
        tokio::spawn(async move {
            let mut looks = 0;
            while watching.load(Ordering::Relaxed) {
                assert_eq!(app.scalar(over).await, 0, "issued above the total");
                looks += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            looks
        })
    };
    let send = {
        let (app, instances) = (app.clone(), instances.clone());
        move |i: usize, method: Method, path: String, body: Value| {
            let (app, instances) = (app.clone(), instances.clone());
            async move {
                let base = instances[i % 3].base.clone();
                let bytes = serde_json::to_vec(&body).unwrap();
                let res = app
                    .request_to(&base, method, &path, Some(bytes))
                    .await
                    .header("content-type", "application/json")
                    .send()
                    .await
                    .expect("request");
                let status = res.status();
                (status, res.json::<Value>().await.unwrap_or(Value::Null))
            }
        }
    };
    let issue_path = format!("/api/v1/coupons/{coupon}/issue");
    let admin_path = format!("/api/v1/admin/coupons/{coupon}");

    // Rush 1: 300 users; meanwhile the admin closes the coupon at what is issued.
    let closer = {
        let (app, send, admin_path) = (app.clone(), send.clone(), admin_path.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            for attempt in 0.. {
                let (_, c) = app.get(&format!("/api/v1/coupons/{coupon}")).await;
                let issued = c["issuedQuantity"].as_i64().unwrap().max(1);
                let (s, b) = send(
                    attempt,
                    Method::PATCH,
                    admin_path.clone(),
                    json!({"totalQuantity": issued}),
                )
                .await;
                match s {
                    StatusCode::OK => return b["totalQuantity"].as_i64().unwrap(),
                    StatusCode::CONFLICT => assert_eq!(code(&b), "COUPON_QUANTITY_BELOW_ISSUED"),
                    other => panic!("{other} {b}"),
                }
            }
            unreachable!()
        })
    };
    let first = race(300, |i| {
        let (send, users, path) = (send.clone(), users.clone(), issue_path.clone());
        async move { send(i, Method::POST, path, json!({"userId": users[i]})).await }
    })
    .await;
    let closed_at = closer.await.unwrap();
    let won = first
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count() as i64;
    for (s, b) in &first {
        assert!(
            *s == StatusCode::CREATED || code(b) == "COUPON_SOLD_OUT",
            "{s} {b}"
        );
    }
    let issued = format!("select issued_quantity from coupons where id = {coupon}");
    let total = format!("select total_quantity from coupons where id = {coupon}");
    let held = format!("select count(*) from user_coupons where coupon_id = {coupon}");
    assert_eq!(app.scalar(&issued).await, won);
    assert_eq!(app.scalar(&held).await, won);
    let in_force = app.scalar(&total).await;
    assert_eq!(in_force, closed_at, "the lowered total stays");
    assert_eq!(won, in_force, "the rush took what the total left");

    // Rush 2: 300 fresh users, the coupon sold out at first (every instance learns
    // it), raised by 40 while they rush; then fresh users keep coming until it is full
    // again (an instance may refuse for a moment until the news reaches it).
    let raised = in_force + 40;
    let raiser = {
        let (send, admin_path) = (send.clone(), admin_path.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let (s, b) = send(
                1,
                Method::PATCH,
                admin_path,
                json!({"totalQuantity": raised}),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        })
    };
    let mut next = 300;
    let mut rounds = 0;
    let mut second = Vec::new();
    let raise_done = async {
        raiser.await.unwrap();
    };
    let rush = race(150, |i| {
        let (send, users, path) = (send.clone(), users.clone(), issue_path.clone());
        async move { send(i, Method::POST, path, json!({"userId": users[300 + i]})).await }
    });
    let (answers, ()) = tokio::join!(rush, raise_done);
    second.extend(answers);
    next += 150;
    while app.scalar(&issued).await < raised && next + 30 <= 640 {
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let from = next;
        let answers = race(30, |i| {
            let (send, users, path) = (send.clone(), users.clone(), issue_path.clone());
            async move { send(i, Method::POST, path, json!({"userId": users[from + i]})).await }
        })
        .await;
        second.extend(answers);
        next += 30;
    }
    watching.store(false, Ordering::Relaxed);
    assert!(watcher.await.unwrap() > 0);
    for (s, b) in &second {
        assert!(
            *s == StatusCode::CREATED || code(b) == "COUPON_SOLD_OUT",
            "{s} {b}"
        );
    }
    let won_again = second
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count() as i64;
    assert_eq!(
        won + won_again,
        raised,
        "exactly the raised total ({rounds} late rounds)"
    );
    assert_eq!(app.scalar(&issued).await, raised);
    assert_eq!(app.scalar(&held).await, raised);
    assert_eq!(app.scalar(&total).await, raised);
    // Every instance now refuses: sold out again.
    for i in 0..3 {
        let (s, b) = send(
            i,
            Method::POST,
            issue_path.clone(),
            json!({"userId": users[640 + i]}),
        )
        .await;
        assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "COUPON_SOLD_OUT"));
    }
    app.check_invariants().await;
}
