//! Demo data for a newcomer: a few users with balances, products and an open coupon.
//! Seeded only into an empty database, by default only the embedded one.

use crate::app::AppState;
use crate::balance::{self, LedgerKind};
use crate::clock::to_millis;
use crate::coupon::store::NewCoupon;
use crate::db::Backend;
use crate::money::{DiscountType, Won};

pub async fn seed_if_wanted(state: &AppState) -> anyhow::Result<()> {
    let (users,): (i64,) = sqlx::query_as("select count(*) from users")
        .fetch_one(state.db.read())
        .await?;
    let (products,): (i64,) = sqlx::query_as("select count(*) from products")
        .fetch_one(state.db.read())
        .await?;
    let empty = users == 0 && products == 0;
    let wanted = state
        .config
        .demo_data
        .unwrap_or(state.db.backend == Backend::Sqlite);
    if !(wanted && empty) {
        return Ok(());
    }
    let now = state.clock.now();
    let now_ms = to_millis(now);
    let mut tx = state.db.begin().await?;
    for name in ["kim", "lee", "park"] {
        let user = balance::store::create_user(&mut tx, name, now_ms).await?;
        balance::store::credit(
            &mut tx,
            user.id,
            Won(500_000),
            None,
            LedgerKind::Charge,
            None,
            now_ms,
        )
        .await?;
    }
    for (name, price, stock) in [
        ("Mechanical keyboard", 89_000, 100),
        ("Wireless mouse", 29_000, 200),
        ("27-inch monitor", 329_000, 30),
        ("USB-C hub", 45_000, 150),
        ("Laptop stand", 39_000, 80),
    ] {
        crate::product::store::create(&mut tx, name, Won(price), stock, now_ms).await?;
    }
    crate::coupon::store::create(
        &mut tx,
        &NewCoupon {
            name: "Welcome 10% off".into(),
            discount_type: DiscountType::Rate,
            discount_value: 10,
            total_quantity: 100,
            min_order_amount: Won(30_000),
            issue_starts_at: None,
            issue_ends_at: None,
            valid_days: 30,
        },
        now_ms,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        "seeded demo data: users 1-3 (kim, lee, park) with 500,000 won each, products 1-5, coupon 1 (10% off)"
    );
    // The demo users' tokens, once, to the terminal only (never through the logs).
    for id in 1..=3 {
        let token = state.auth.token_for(crate::ids::UserId(id));
        eprintln!("shop: demo user {id}: Authorization: Bearer {token}");
    }
    Ok(())
}
