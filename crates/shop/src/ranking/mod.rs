//! Top products (ACTIVE ones) by quantity in paid orders (PAID, SHIPPED, DELIVERED)
//! paid within the last days (72 hours by default), ties broken by lower product id.
//! Sales (units and won) are rolled up per product and hour of payment by the write
//! path in the paying (and refunding) commit, so the ranking is computed exactly from
//! a few thousand rows, and served from a short cache (`SHOP_POPULAR_CACHE_SECS`, at most 10 s): in process,
//! and shared through Redis when configured, so a rush of reads costs one query per
//! window and key across all instances. A copy written at time t was computed at or
//! after t, and both caches keep it at most the TTL: never staler than allowed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::clock::to_millis;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::Query;
use crate::ids::ProductId;
use crate::money::Won;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PopularProduct {
    /// 1-based.
    pub rank: i64,
    pub product_id: ProductId,
    pub name: String,
    pub price: Won,
    pub sold_quantity: i64,
    /// The won of the lines counted: unit price times quantity, before discounts.
    pub sales_amount: Won,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"items": [{"rank": 1, "productId": 6, "name": "Classic T-shirt", "price": 29000, "soldQuantity": 2, "salesAmount": 58000}, {"rank": 2, "productId": 2, "name": "Canvas tote", "price": 19900, "soldQuantity": 1, "salesAmount": 19900}]}))]
pub struct Popular {
    pub items: Vec<PopularProduct>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PopularParams {
    /// Window in days, 1..=30 (default 3).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 30)]
    pub days: Option<String>,
    /// How many, 1..=100 (default 5).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

type Key = (i64, i64);
type Entries = HashMap<Key, (Instant, Arc<Popular>)>;

/// The cache of computed rankings.
#[derive(Clone, Default)]
pub struct RankingCache {
    entries: Arc<Mutex<Entries>>,
}

impl RankingCache {
    fn get(&self, key: Key, ttl: Duration) -> Option<Arc<Popular>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, v)| v.clone())
    }

    /// Keeps `value`, computed `age` ago (its age counts against the TTL).
    fn put(&self, key: Key, value: Arc<Popular>, age: Duration) {
        let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(key, (at, value));
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(popular))
}

fn parse_range(raw: Option<&str>, default: i64, max: i64, name: &str) -> Result<i64, ApiError> {
    match raw {
        None => Ok(default),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(format!("{name} must be 1..={max}"))),
        },
    }
}

#[derive(FromRow)]
struct Row {
    product_id: i64,
    name: String,
    price: i64,
    sold: i64,
    amount: i64,
}

use crate::batch::rules::HOUR_MS;

/// Computes the ranking now, exactly: whole hours from the rollup, and the part of
/// the oldest hour that lies inside the window from the orders themselves.
pub async fn compute(state: &AppState, days: i64, limit: i64) -> Result<Popular, sqlx::Error> {
    let since = to_millis(state.clock.now() - TimeDelta::days(days));
    // The first whole hour in the window; [since, first_hour) is the partial edge.
    let first_hour = since.div_euclid(HOUR_MS) + i64::from(since.rem_euclid(HOUR_MS) != 0);
    let rows: Vec<Row> = sqlx::query_as(
        "select t.product_id, p.name, p.price, t.sold, t.amount
         from (
             select product_id, cast(sum(quantity) as bigint) as sold,
                    cast(sum(amount) as bigint) as amount from (
                 select product_id, quantity, amount from product_sales_hourly where hour >= $1
                 union all
                 select i.product_id, i.quantity, i.amount
                 from orders o join order_items i on i.order_id = o.id
                 where o.status in ('PAID', 'SHIPPED', 'DELIVERED')
                   and o.paid_at >= $2 and o.paid_at < $3
             ) sales
             group by product_id
         ) t
         join products p on p.id = t.product_id
         where t.sold > 0 and p.status = 'ACTIVE'
         order by t.sold desc, t.product_id asc
         limit $4",
    )
    .bind(first_hour)
    .bind(since)
    .bind(first_hour * HOUR_MS)
    .bind(limit)
    .fetch_all(state.db.read())
    .await?;
    Ok(Popular {
        items: rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| PopularProduct {
                rank: i as i64 + 1,
                product_id: ProductId(r.product_id),
                name: r.name,
                price: Won(r.price),
                sold_quantity: r.sold,
                sales_amount: Won(r.amount),
            })
            .collect(),
    })
}

/// Top products by quantity paid in the last `days` (default 3 days = 72 hours).
/// At most `SHOP_POPULAR_CACHE_SECS` (default 5, never above 10) seconds stale.
#[utoipa::path(get, path = "/api/v1/products/popular", operation_id = "popular_products", tag = "products", params(PopularParams),
    responses((status = 200, body = Popular), (status = 400, body = ErrorBody)))]
pub async fn popular(
    State(state): State<AppState>,
    Query(params): Query<PopularParams>,
) -> ApiResult<axum::Json<Arc<Popular>>> {
    let days = parse_range(params.days.as_deref(), 3, 30, "days")?;
    let limit = parse_range(params.limit.as_deref(), 5, 100, "limit")?;
    let ttl = state.config.popular_cache_ttl();
    if let Some(hit) = state.ranking.get((days, limit), ttl) {
        return Ok(axum::Json(hit));
    }
    // Another instance may have computed it within the window (shared through Redis).
    if let Some((shared, age)) = state.cache.popular(days, limit).await
        && age < ttl
    {
        let shared = Arc::new(shared);
        state.ranking.put((days, limit), shared.clone(), age);
        return Ok(axum::Json(shared));
    }
    let fresh = Arc::new(compute(&state, days, limit).await?);
    state.cache.put_popular(days, limit, &fresh, ttl).await;
    state
        .ranking
        .put((days, limit), fresh.clone(), Duration::ZERO);
    Ok(axum::Json(fresh))
}
