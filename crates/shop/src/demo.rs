//! Demo data for a newcomer: a few users with balances, products with descriptions and
//! pictures (one in sizes and colours), and an open coupon. Seeded only into an empty
//! database, by default only the embedded one, through the same write path as
//! everything else.

use crate::app::AppState;
use crate::batch::{Done, Job, Outcome, Work};
use crate::clock::to_millis;
use crate::coupon::store::NewCoupon;
use crate::db::Backend;
use crate::ids::UserId;
use crate::money::{DiscountType, Won};
use crate::product::store::{NewProduct, NewVariant};
use crate::product::{Image, OptionValues, ProductOption};

/// One-variant products: (name, description, picture, price, stock).
const PRODUCTS: [(&str, &str, &str, i64, i64); 5] = [
    (
        "Ceramic mug",
        "A 350 ml stoneware mug, glazed inside and out. Dishwasher safe.",
        "mug",
        12_900,
        200,
    ),
    (
        "Canvas tote",
        "Heavy cotton canvas with an inside pocket; carries a laptop and lunch.",
        "tote",
        19_900,
        150,
    ),
    (
        "Baseball cap",
        "Six-panel cotton twill cap with an adjustable strap.",
        "cap",
        25_000,
        120,
    ),
    (
        "Running sneakers",
        "Light mesh runners with a cushioned sole, for the road or the gym.",
        "sneakers",
        89_000,
        60,
    ),
    (
        "Hooded sweatshirt",
        "Brushed fleece hoodie with a kangaroo pocket.",
        "hoodie",
        59_000,
        80,
    ),
];

fn picture(name: &str, alt: &str) -> Vec<Image> {
    vec![Image {
        url: format!("/static/img/{name}.svg"),
        alt: alt.to_string(),
    }]
}

/// The T-shirt: three sizes in two colours, each its own stock (large black sold out).
fn tshirt() -> NewProduct {
    let sizes = ["S", "M", "L"];
    let colours = ["white", "black"];
    let mut variants = Vec::new();
    for size in sizes {
        for colour in colours {
            let options: OptionValues = [
                ("size".to_string(), size.to_string()),
                ("colour".to_string(), colour.to_string()),
            ]
            .into();
            variants.push(NewVariant {
                options,
                price: Won(if size == "L" { 31_000 } else { 29_000 }),
                stock: if (size, colour) == ("L", "black") {
                    0
                } else {
                    20
                },
                sku: Some(format!("TS-{size}-{}", colour.to_uppercase())),
            });
        }
    }
    NewProduct {
        name: "Classic T-shirt".into(),
        description: "Soft combed-cotton tee with a relaxed fit.".into(),
        images: picture("tshirt", "a plain crew-neck T-shirt"),
        options: vec![
            ProductOption {
                name: "size".into(),
                values: sizes.map(String::from).to_vec(),
            },
            ProductOption {
                name: "colour".into(),
                values: colours.map(String::from).to_vec(),
            },
        ],
        variants,
    }
}

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
    let now_ms = to_millis(state.clock.now());
    let users = state
        .writer
        .transact::<_, sqlx::Error>(Box::new(move |tx| {
            Box::pin(async move {
                let mut users = Vec::new();
                for name in ["kim", "lee", "park"] {
                    users.push(
                        crate::account::store::create_user(tx, name, None, None, now_ms)
                            .await
                            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?
                            .id,
                    );
                }
                for (name, description, image, price, stock) in PRODUCTS {
                    let product = NewProduct {
                        name: name.into(),
                        description: description.into(),
                        images: picture(image, name),
                        options: Vec::new(),
                        variants: vec![NewVariant {
                            options: OptionValues::new(),
                            price: Won(price),
                            stock,
                            sku: None,
                        }],
                    };
                    crate::product::store::create(tx, &product, now_ms)
                        .await
                        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                }
                crate::product::store::create(tx, &tshirt(), now_ms)
                    .await
                    .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                crate::coupon::store::create(
                    tx,
                    &NewCoupon {
                        name: "Welcome 10% off".into(),
                        discount_type: DiscountType::Rate,
                        discount_value: 10,
                        total_quantity: 100,
                        min_order_amount: Won(30_000),
                        issue_starts_at: None,
                        issue_ends_at: None,
                        valid_days: 30,
                        product_id: None,
                    },
                    now_ms,
                )
                .await?;
                Ok(users)
            })
        }))
        .await?;
    for user in &users {
        let charge = Work::Charge {
            user: *user,
            amount: Won(500_000),
        };
        let job = Job {
            work: charge,
            key: None,
        };
        match state.writer.submit(job, None).await {
            Outcome::Decided {
                decision: Ok(Done::Balance(_)),
                ..
            } => {}
            other => anyhow::bail!("seeding a demo balance failed: {other:?}"),
        }
    }
    tracing::info!(
        "seeded demo data: users 1-3 (kim, lee, park) with 500,000 won each, products 1-6 \
         (6: a T-shirt in sizes and colours), coupon 1 (10% off)"
    );
    // The demo users' tokens, once, to the terminal only (never through the logs).
    for id in 1..=3 {
        let token = state.auth.token_for(UserId(id));
        eprintln!("shop: demo user {id}: Authorization: Bearer {token}");
    }
    Ok(())
}
