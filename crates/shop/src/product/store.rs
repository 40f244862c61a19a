//! SQL for products and their variants. Stock moves only in the write path
//! ([`crate::batch`]); what is here reads products and makes the admin's changes to
//! their content, status, variants and prices.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sqlx::{Any, AnyConnection, Executor, FromRow};

use super::{
    Image, OptionValues, Product, ProductError, ProductOption, ProductRow, ProductStatus,
    ProductSummary, Variant,
};
use crate::clock::from_millis;
use crate::db::{Backend, is_unique_violation};
use crate::ids::{ProductId, VariantId};
use crate::money::Won;

#[derive(FromRow)]
struct ProductRecord {
    id: i64,
    name: String,
    description: String,
    status: String,
    options: String,
    images: String,
    created_at: i64,
    updated_at: i64,
}

const PRODUCT_COLUMNS: &str =
    "p.id, p.name, p.description, p.status, p.options, p.images, p.created_at, p.updated_at";

use crate::db::corrupt;

impl TryFrom<ProductRecord> for ProductRow {
    type Error = sqlx::Error;

    fn try_from(r: ProductRecord) -> Result<Self, sqlx::Error> {
        Ok(ProductRow {
            id: ProductId(r.id),
            name: r.name,
            description: r.description,
            status: ProductStatus::parse(&r.status)
                .ok_or_else(|| corrupt("an unknown product status", &r.status))?,
            options: serde_json::from_str(&r.options)
                .map_err(|e| corrupt("a product's options", e))?,
            images: serde_json::from_str(&r.images)
                .map_err(|e| corrupt("a product's images", e))?,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        })
    }
}

#[derive(FromRow)]
struct VariantRecord {
    id: i64,
    product_id: i64,
    sku: Option<String>,
    options: String,
    price: i64,
    stock: i64,
}

impl TryFrom<VariantRecord> for Variant {
    type Error = sqlx::Error;

    fn try_from(r: VariantRecord) -> Result<Self, sqlx::Error> {
        Ok(Variant {
            id: VariantId(r.id),
            sku: r.sku,
            options: serde_json::from_str(&r.options)
                .map_err(|e| corrupt("a variant's options", e))?,
            price: Won(r.price),
            stock: r.stock,
            sold_out: r.stock == 0,
        })
    }
}

/// A product with all its variants.
pub async fn get(conn: &mut AnyConnection, id: ProductId) -> Result<Product, ProductError> {
    let row: Option<ProductRecord> = sqlx::query_as(&format!(
        "select {PRODUCT_COLUMNS} from products p where p.id = $1"
    ))
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?;
    let row = ProductRow::try_from(row.ok_or(ProductError::NotFound(id))?)?;
    let variants: Vec<VariantRecord> = sqlx::query_as(
        "select id, product_id, sku, options, price, stock from variants
         where product_id = $1 order by id",
    )
    .bind(id.0)
    .fetch_all(&mut *conn)
    .await?;
    let variants = variants
        .into_iter()
        .map(Variant::try_from)
        .collect::<Result<_, _>>()?;
    Ok(Product::assemble(row, variants))
}

/// The product of a variant.
pub async fn product_of(
    ex: impl Executor<'_, Database = Any>,
    variant: VariantId,
) -> Result<ProductId, ProductError> {
    let row: Option<(i64,)> = sqlx::query_as("select product_id from variants where id = $1")
        .bind(variant.0)
        .fetch_optional(ex)
        .await?;
    row.map(|(p,)| ProductId(p))
        .ok_or(ProductError::VariantNotFound(variant))
}

/// How a list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Newest first (the default).
    Newest,
    /// Cheapest first.
    PriceAsc,
    /// Dearest first.
    PriceDesc,
    /// By name.
    Name,
}

/// Where a page of a list starts: after this product, in the list's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Id(i64),
    Price(i64, i64),
    Name(String, i64),
}

impl After {
    /// The opaque cursor of the page after `p` in a list sorted by `sort`.
    pub fn cursor(sort: Sort, p: &ProductSummary) -> String {
        let raw = match sort {
            Sort::Newest => format!("i{}", p.id),
            Sort::PriceAsc | Sort::PriceDesc => format!("p{}:{}", p.price.0, p.id),
            Sort::Name => format!("n{}:{}", p.id, p.name),
        };
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Reads a cursor of a list sorted by `sort`; `None` when it is not one.
    pub fn parse(sort: Sort, cursor: &str) -> Option<After> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
        let (kind, rest) = raw.split_at_checked(1)?;
        match (sort, kind) {
            (Sort::Newest, "i") => rest.parse().ok().map(After::Id),
            (Sort::PriceAsc | Sort::PriceDesc, "p") => {
                let (price, id) = rest.split_once(':')?;
                Some(After::Price(price.parse().ok()?, id.parse().ok()?))
            }
            (Sort::Name, "n") => {
                let (id, name) = rest.split_once(':')?;
                Some(After::Name(name.to_string(), id.parse().ok()?))
            }
            _ => None,
        }
    }
}

/// What a list asks for.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Only products of this status (the public list: ACTIVE).
    pub status: Option<ProductStatus>,
    /// Names containing this, case-insensitive.
    pub q: Option<String>,
    pub sort: Sort,
    pub after: Option<After>,
    pub limit: i64,
}

#[derive(FromRow)]
struct SummaryRecord {
    id: i64,
    name: String,
    description: String,
    status: String,
    price: i64,
    images: String,
    created_at: i64,
    updated_at: i64,
    stock: i64,
}

/// `text` as a LIKE pattern matching it anywhere (with `\` escaping `%`, `_`, `\`).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Below this many matching names, a SQLite search starts from the trigram index.
const FEW_MATCHES: i64 = 10_000;

/// Whether at most [`FEW_MATCHES`] product names contain the FTS5 `phrase` (counted
/// from the trigram index, stopping past the threshold: a few milliseconds at most).
async fn few_matches(pool: &sqlx::Pool<Any>, phrase: &str) -> Result<bool, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as(
        "select count(*) from (select rowid from products_search
         where products_search match $1 limit $2)",
    )
    .bind(phrase)
    .bind(FEW_MATCHES + 1)
    .fetch_one(pool)
    .await?;
    Ok(n <= FEW_MATCHES)
}

/// A page of products (`limit + 1` rows, for the page builder).
pub async fn list(
    pool: &sqlx::Pool<Any>,
    backend: Backend,
    query: &ListQuery,
) -> Result<Vec<ProductSummary>, ProductError> {
    let mut conditions = Vec::new();
    let mut source = String::from("products p");
    // The statement's parameters, numbered in the order they are added.
    enum P {
        T(String),
        I(i64),
    }
    let mut params: Vec<P> = Vec::new();
    let mut param = |p: P| {
        params.push(p);
        format!("${}", params.len())
    };
    if let Some(status) = query.status {
        conditions.push(format!(
            "p.status = {}",
            param(P::T(status.as_str().into()))
        ));
    }
    if let Some(q) = query.q.as_deref().filter(|q| !q.is_empty()) {
        // Three or more characters are answered from the trigram index: on SQLite as
        // an FTS5 phrase (a LIKE with ESCAPE would not use the index), on PostgreSQL
        // as a LIKE that pg_trgm's index answers.
        let phrase = format!("\"{}\"", q.replace('"', "\"\""));
        if backend == Backend::Sqlite
            && q.chars().count() >= 3
            && few_matches(pool, &phrase).await?
        {
            // Few names match: the trigram index finds them, the page is sorted from them.
            source = format!(
                "(select rowid as id from products_search where products_search match {})
                 s cross join products p on p.id = s.id",
                param(P::T(phrase))
            );
        } else {
            // Many match (or too few characters for trigrams): walking the sort order's
            // index finds a page of them after a few rows.
            let pattern = param(P::T(contains_pattern(q)));
            conditions.push(format!("lower(p.name) like {pattern} escape '\\'"));
        }
    }
    let order = match query.sort {
        Sort::Newest => "p.id desc",
        Sort::PriceAsc => "p.price asc, p.id asc",
        Sort::PriceDesc => "p.price desc, p.id desc",
        Sort::Name => "p.name asc, p.id asc",
    };
    match &query.after {
        None => {}
        Some(After::Id(id)) => conditions.push(format!("p.id < {}", param(P::I(*id)))),
        Some(After::Price(price, id)) => {
            let (cmp, price, id) = (
                if query.sort == Sort::PriceAsc {
                    ">"
                } else {
                    "<"
                },
                param(P::I(*price)),
                param(P::I(*id)),
            );
            conditions.push(format!(
                "(p.price {cmp} {price} or (p.price = {price} and p.id {cmp} {id}))"
            ));
        }
        Some(After::Name(name, id)) => {
            let (name, id) = (param(P::T(name.clone())), param(P::I(*id)));
            conditions.push(format!(
                "(p.name > {name} or (p.name = {name} and p.id > {id}))"
            ));
        }
    }
    let limit = param(P::I(query.limit + 1));
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("where {}", conditions.join(" and "))
    };
    let sql = format!(
        "select p.id, p.name, p.description, p.status, p.price, p.images, p.created_at,
                p.updated_at,
                (select cast(coalesce(sum(v.stock), 0) as bigint) from variants v where v.product_id = p.id)
                    as stock
         from {source} {filter} order by {order} limit {limit}"
    );
    let mut q = sqlx::query_as::<_, SummaryRecord>(&sql);
    for p in params {
        q = match p {
            P::T(t) => q.bind(t),
            P::I(i) => q.bind(i),
        };
    }
    let rows = q.fetch_all(pool).await?;
    rows.into_iter()
        .map(|r| {
            let images: Vec<Image> =
                serde_json::from_str(&r.images).map_err(|e| corrupt("a product's images", e))?;
            Ok(ProductSummary {
                id: ProductId(r.id),
                name: r.name,
                description: r.description,
                status: ProductStatus::parse(&r.status)
                    .ok_or_else(|| corrupt("an unknown product status", &r.status))?,
                price: Won(r.price),
                stock: r.stock,
                sold_out: r.stock == 0,
                image: images.into_iter().next().map(|i| i.url),
                created_at: from_millis(r.created_at),
                updated_at: from_millis(r.updated_at),
            })
        })
        .collect()
}

/// A variant to create.
#[derive(Debug, Clone)]
pub struct NewVariant {
    pub options: OptionValues,
    pub price: Won,
    pub stock: i64,
    pub sku: Option<String>,
}

/// A product to create (validated by the caller: its variants name its options).
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub images: Vec<Image>,
    pub options: Vec<ProductOption>,
    pub variants: Vec<NewVariant>,
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("JSON of plain values")
}

/// A refusal for a unique index a variant broke, or the error as it is.
fn variant_conflict(e: sqlx::Error) -> ProductError {
    if !is_unique_violation(&e) {
        return e.into();
    }
    let sku = matches!(&e, sqlx::Error::Database(d) if d.message().contains("sku"));
    if sku {
        ProductError::SkuExists
    } else {
        ProductError::VariantExists
    }
}

async fn insert_variant(
    conn: &mut AnyConnection,
    product: ProductId,
    v: &NewVariant,
    now_ms: i64,
) -> Result<VariantId, ProductError> {
    let (id,): (i64,) = sqlx::query_as(
        "insert into variants (product_id, sku, options, price, stock, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $6) returning id",
    )
    .bind(product.0)
    .bind(v.sku.as_deref())
    .bind(json(&v.options))
    .bind(v.price.0)
    .bind(v.stock)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await
    .map_err(variant_conflict)?;
    // Every unit of stock an admin adds is an adjustment, so stock can be checked
    // against what orders hold.
    sqlx::query(
        "insert into stock_adjustments (product_id, variant_id, delta, created_at)
         values ($1, $2, $3, $4)",
    )
    .bind(product.0)
    .bind(id)
    .bind(v.stock)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(VariantId(id))
}

/// Keeps a product's price the lowest of its variants'.
async fn reprice(
    conn: &mut AnyConnection,
    product: ProductId,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update products set updated_at = $2,
             price = (select min(v.price) from variants v where v.product_id = products.id)
         where id = $1",
    )
    .bind(product.0)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn create(
    conn: &mut AnyConnection,
    p: &NewProduct,
    now_ms: i64,
) -> Result<Product, ProductError> {
    let price = p
        .variants
        .iter()
        .map(|v| v.price)
        .min()
        .unwrap_or(Won::ZERO);
    let (id,): (i64,) = sqlx::query_as(
        "insert into products (name, description, status, options, images, price, created_at,
             updated_at)
         values ($1, $2, 'ACTIVE', $3, $4, $5, $6, $6) returning id",
    )
    .bind(&p.name)
    .bind(&p.description)
    .bind(json(&p.options))
    .bind(json(&p.images))
    .bind(price.0)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    let id = ProductId(id);
    for v in &p.variants {
        insert_variant(&mut *conn, id, v, now_ms).await?;
    }
    get(conn, id).await
}

/// Changes to a product's content, status or (one-variant products only) price.
#[derive(Debug, Clone, Default)]
pub struct ProductChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub images: Option<Vec<Image>>,
    pub status: Option<ProductStatus>,
    pub price: Option<Won>,
}

pub async fn update(
    conn: &mut AnyConnection,
    id: ProductId,
    c: &ProductChanges,
    now_ms: i64,
) -> Result<Product, ProductError> {
    // Take the variants' row locks first, as the write path does (variants, then
    // products): an order decided after this change commits sees it, one decided
    // before commits first.
    let variants: Vec<(i64,)> = sqlx::query_as(
        "update variants set updated_at = updated_at where product_id = $1 returning id",
    )
    .bind(id.0)
    .fetch_all(&mut *conn)
    .await?;
    if variants.is_empty() {
        return Err(ProductError::NotFound(id));
    }
    if let Some(price) = c.price {
        let [(variant,)] = variants.as_slice() else {
            return Err(ProductError::SeveralVariants(id));
        };
        sqlx::query("update variants set price = $1, updated_at = $2 where id = $3")
            .bind(price.0)
            .bind(now_ms)
            .bind(variant)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "update products set name = coalesce($1, name), description = coalesce($2, description),
             images = coalesce($3, images), status = coalesce($4, status), updated_at = $5
         where id = $6",
    )
    .bind(c.name.as_deref())
    .bind(c.description.as_deref())
    .bind(c.images.as_ref().map(json))
    .bind(c.status.map(ProductStatus::as_str))
    .bind(now_ms)
    .bind(id.0)
    .execute(&mut *conn)
    .await?;
    reprice(&mut *conn, id, now_ms).await?;
    get(conn, id).await
}

/// Adds a variant (its options checked against the product's by the caller, given
/// the product as it is).
pub async fn add_variant(
    conn: &mut AnyConnection,
    id: ProductId,
    v: &NewVariant,
    now_ms: i64,
) -> Result<Product, ProductError> {
    insert_variant(&mut *conn, id, v, now_ms).await?;
    reprice(&mut *conn, id, now_ms).await?;
    get(conn, id).await
}

/// Changes a variant's price or SKU; answers its product.
pub async fn update_variant(
    conn: &mut AnyConnection,
    id: VariantId,
    price: Option<Won>,
    sku: Option<&str>,
    now_ms: i64,
) -> Result<Product, ProductError> {
    let product: Option<(i64,)> = sqlx::query_as(
        "update variants set price = coalesce($1, price), sku = coalesce($2, sku), updated_at = $3
         where id = $4 returning product_id",
    )
    .bind(price.map(|p| p.0))
    .bind(sku)
    .bind(now_ms)
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(variant_conflict)?;
    let (product,) = product.ok_or(ProductError::VariantNotFound(id))?;
    let product = ProductId(product);
    reprice(&mut *conn, product, now_ms).await?;
    get(conn, product).await
}

/// Variants by id, with their products (for carts shown at current prices).
pub async fn variants_of(
    ex: impl Executor<'_, Database = Any>,
    backend: Backend,
    ids: &[VariantId],
) -> Result<HashMap<VariantId, (ProductId, Variant)>, ProductError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<[i64; 1]> = ids.iter().map(|v| [v.0]).collect();
    let records: Vec<VariantRecord> = sqlx::query_as(&crate::batch::sql::sql(
        backend,
        "select id, product_id, sku, options, price, stock from variants
         where id in (select cast(j.value ->> 0 as bigint) from {rows})",
    ))
    .bind(json(&rows))
    .fetch_all(ex)
    .await?;
    records
        .into_iter()
        .map(|r| {
            let product = ProductId(r.product_id);
            let v = Variant::try_from(r)?;
            Ok((v.id, (product, v)))
        })
        .collect()
}
