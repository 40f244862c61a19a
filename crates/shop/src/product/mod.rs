//! Products: content, status, options and variants. Variants hold the stock: what can
//! still be ordered now, on hand minus what open orders hold. Stock moves only in the
//! write path ([`crate::batch`]), never below zero; a product's `stock` is the sum of
//! its variants', its `price` their lowest.

pub mod routes;
pub mod store;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
use crate::ids::{ProductId, VariantId};
use crate::money::Won;

/// Whether a product is on sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProductStatus {
    /// Listed and orderable.
    Active,
    /// Off the public list and the ranking, not orderable; its detail still answers.
    Inactive,
}

impl ProductStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Active => "ACTIVE",
            ProductStatus::Inactive => "INACTIVE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(ProductStatus::Active),
            "INACTIVE" => Some(ProductStatus::Inactive),
            _ => None,
        }
    }
}

/// A picture of a product; the first of a product's is its main image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// `https://...`, `http://...` or a path on this server (`/static/...`).
    #[schema(example = "/static/img/tshirt.svg")]
    pub url: String,
    /// What the picture shows, for who cannot see it.
    #[serde(default)]
    #[schema(example = "a white T-shirt")]
    pub alt: String,
}

/// An option a product comes in, with its values in the order shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductOption {
    #[schema(example = "size")]
    pub name: String,
    #[schema(example = json!(["S", "M", "L"]))]
    pub values: Vec<String>,
}

/// One value of each of its product's options, by option name.
pub type OptionValues = BTreeMap<String, String>;

/// A sellable version of a product, with its own price and stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    pub id: VariantId,
    #[schema(required = true)]
    pub sku: Option<String>,
    /// `{}` for the default variant of a product without options.
    #[schema(value_type = Object, example = json!({"size": "M", "colour": "white"}))]
    pub options: OptionValues,
    pub price: Won,
    /// Quantity that can be ordered now.
    pub stock: i64,
    pub sold_out: bool,
}

/// A product: its content, status, options and variants. `price` is its lowest
/// variant price, `stock` the sum of its variants' stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 6, "name": "Classic T-shirt", "description": "Soft combed-cotton tee with a relaxed fit.", "status": "ACTIVE", "price": 29000, "stock": 38, "soldOut": false, "images": [{"url": "/static/img/tshirt.svg", "alt": "a plain crew-neck T-shirt"}], "options": [{"name": "size", "values": ["M", "L"]}, {"name": "colour", "values": ["black"]}], "variants": [{"id": 9, "sku": "TS-M-BLACK", "options": {"colour": "black", "size": "M"}, "price": 29000, "stock": 18, "soldOut": false}, {"id": 11, "sku": "TS-L-BLACK", "options": {"colour": "black", "size": "L"}, "price": 31000, "stock": 0, "soldOut": true}], "createdAt": "2026-12-04T09:30:00.000Z", "updatedAt": "2026-12-04T09:30:00.000Z"}))]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub description: String,
    pub status: ProductStatus,
    pub price: Won,
    /// Quantity that can be ordered now, over all variants.
    pub stock: i64,
    pub sold_out: bool,
    pub images: Vec<Image>,
    pub options: Vec<ProductOption>,
    pub variants: Vec<Variant>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A product as lists show it: no variants or options, the main image only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 6, "name": "Classic T-shirt", "description": "Soft combed-cotton tee with a relaxed fit.", "status": "ACTIVE", "price": 29000, "stock": 98, "soldOut": false, "image": "/static/img/tshirt.svg", "createdAt": "2026-12-04T09:30:00.000Z", "updatedAt": "2026-12-04T09:30:00.000Z"}))]
#[serde(rename_all = "camelCase")]
pub struct ProductSummary {
    pub id: ProductId,
    pub name: String,
    pub description: String,
    pub status: ProductStatus,
    pub price: Won,
    pub stock: i64,
    pub sold_out: bool,
    /// The main image's URL.
    #[schema(required = true)]
    pub image: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A product's own row (without its variants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRow {
    pub id: ProductId,
    pub name: String,
    pub description: String,
    pub status: ProductStatus,
    pub options: Vec<ProductOption>,
    pub images: Vec<Image>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    /// A product from its row and its variants (in id order).
    pub fn assemble(row: ProductRow, variants: Vec<Variant>) -> Product {
        let price = variants.iter().map(|v| v.price).min().unwrap_or(Won::ZERO);
        let stock = variants.iter().map(|v| v.stock).sum();
        Product {
            id: row.id,
            name: row.name,
            description: row.description,
            status: row.status,
            price,
            stock,
            sold_out: stock == 0,
            images: row.images,
            options: row.options,
            variants,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Largest price of one unit, in won.
pub const MAX_PRICE: i64 = 1_000_000_000;
/// Largest stock of one product.
pub const MAX_STOCK: i64 = 1_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error("product {0} not found")]
    NotFound(ProductId),
    #[error("variant {0} not found")]
    VariantNotFound(VariantId),
    #[error("stock would go below zero")]
    StockBelowZero,
    #[error("stock would exceed {MAX_STOCK}")]
    StockTooHigh,
    #[error("product {0} has several variants: name the variant")]
    SeveralVariants(ProductId),
    #[error("the product already has a variant with these options")]
    VariantExists,
    #[error("another variant has this SKU")]
    SkuExists,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<ProductError> for ApiError {
    fn from(err: ProductError) -> Self {
        match err {
            ProductError::Db(e) => e.into(),
            other => refusal(&other),
        }
    }
}

/// The answer to a refused product request.
pub fn refusal(err: &ProductError) -> ApiError {
    match err {
        e @ ProductError::NotFound(_) => ApiError::new(ErrorCode::ProductNotFound, e.to_string()),
        e @ ProductError::StockBelowZero => ApiError::new(ErrorCode::StockBelowZero, e.to_string()),
        e @ ProductError::StockTooHigh => ApiError::invalid(e.to_string()),
        e @ ProductError::VariantNotFound(_) => {
            ApiError::new(ErrorCode::VariantNotFound, e.to_string())
        }
        e @ ProductError::SeveralVariants(_) => ApiError::invalid(e.to_string()),
        e @ ProductError::VariantExists => ApiError::new(ErrorCode::VariantExists, e.to_string()),
        e @ ProductError::SkuExists => ApiError::new(ErrorCode::SkuExists, e.to_string()),
        ProductError::Invalid(msg) => ApiError::invalid(msg.clone()),
        ProductError::Db(e) => ApiError::internal(e),
    }
}

/// A product's (or coupon's) name: 1..=200 characters after trimming, none of them a
/// control, bidirectional-override or invisible character.
pub fn validate_name(name: &str) -> Result<String, ApiError> {
    crate::text::visible_name(name, 200).map_err(ApiError::invalid)
}

/// A price: 1..=1,000,000,000 won (a price is positive).
pub fn validate_price(price: i64) -> Result<Won, ApiError> {
    if !(1..=MAX_PRICE).contains(&price) {
        return Err(ApiError::invalid(format!(
            "price must be 1..={MAX_PRICE} won"
        )));
    }
    Ok(Won(price))
}

/// Most images of one product.
pub const MAX_IMAGES: usize = 10;
/// Most options of one product, and values of one option.
pub const MAX_OPTIONS: usize = 5;
pub const MAX_OPTION_VALUES: usize = 20;
/// Most variants of one product.
pub const MAX_VARIANTS: usize = 100;

/// A description: at most 5,000 characters; line breaks and tabs allowed, nothing
/// hidden.
pub fn validate_description(text: &str) -> Result<String, ApiError> {
    let hidden = text
        .chars()
        .any(|c| c != '\n' && c != '\t' && crate::text::is_hidden(c));
    if text.chars().count() > 5_000 || hidden {
        return Err(ApiError::invalid(
            "description must be at most 5,000 characters, without hidden characters",
        ));
    }
    Ok(text.trim().to_string())
}

/// Images: at most [`MAX_IMAGES`], each an `http(s)://` URL or a path on this server
/// (`/...`), with a short text for who cannot see it.
pub fn validate_images(images: Vec<Image>) -> Result<Vec<Image>, ApiError> {
    if images.len() > MAX_IMAGES {
        return Err(ApiError::invalid(format!(
            "a product has at most {MAX_IMAGES} images"
        )));
    }
    images
        .into_iter()
        .map(|image| {
            let url = image.url.trim();
            let absolute = url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            let local = url.starts_with('/') && !url.starts_with("//");
            if !(absolute || local) || url.len() > 2_048 || url.chars().any(char::is_whitespace) {
                return Err(ApiError::invalid(format!(
                    "image url `{url}` is not an http(s) URL or a path on this server"
                )));
            }
            let alt = image.alt.trim();
            if alt.chars().count() > 200 || alt.chars().any(crate::text::is_hidden) {
                return Err(ApiError::invalid(
                    "an image's alt text is at most 200 characters, nothing hidden",
                ));
            }
            Ok(Image {
                url: url.to_string(),
                alt: alt.to_string(),
            })
        })
        .collect()
}

fn option_text(what: &str, text: &str) -> Result<String, ApiError> {
    crate::text::visible_name(text, 50).map_err(|_| {
        ApiError::invalid(format!(
            "{what} must be 1..=50 characters without hidden characters"
        ))
    })
}

/// Options: at most [`MAX_OPTIONS`], names distinct, each with 1..=[`MAX_OPTION_VALUES`]
/// distinct values.
pub fn validate_options(options: Vec<ProductOption>) -> Result<Vec<ProductOption>, ApiError> {
    if options.len() > MAX_OPTIONS {
        return Err(ApiError::invalid(format!(
            "a product has at most {MAX_OPTIONS} options"
        )));
    }
    let mut names = std::collections::BTreeSet::new();
    options
        .into_iter()
        .map(|o| {
            let name = option_text("an option's name", &o.name)?;
            if !names.insert(name.clone()) {
                return Err(ApiError::invalid(format!("option `{name}` is given twice")));
            }
            if o.values.is_empty() || o.values.len() > MAX_OPTION_VALUES {
                return Err(ApiError::invalid(format!(
                    "option `{name}` has 1..={MAX_OPTION_VALUES} values"
                )));
            }
            let mut seen = std::collections::BTreeSet::new();
            let values = o
                .values
                .iter()
                .map(|v| {
                    let v = option_text("an option's value", v)?;
                    if !seen.insert(v.clone()) {
                        return Err(ApiError::invalid(format!(
                            "option `{name}` lists `{v}` twice"
                        )));
                    }
                    Ok(v)
                })
                .collect::<Result<_, _>>()?;
            Ok(ProductOption { name, values })
        })
        .collect()
}

/// A variant's options: exactly one of the values of each of the product's options.
pub fn validate_variant_options(
    product: &[ProductOption],
    options: OptionValues,
) -> Result<OptionValues, ApiError> {
    if options.len() != product.len() {
        return Err(ApiError::invalid(
            "a variant names exactly one value of each of the product's options",
        ));
    }
    for (name, value) in &options {
        let Some(option) = product.iter().find(|o| &o.name == name) else {
            return Err(ApiError::invalid(format!(
                "the product has no option `{name}`"
            )));
        };
        if !option.values.contains(value) {
            return Err(ApiError::invalid(format!(
                "option `{name}` has no value `{value}`"
            )));
        }
    }
    Ok(options)
}

/// A SKU: 1..=64 letters, digits, `-`, `_` or `.`.
pub fn validate_sku(sku: &str) -> Result<String, ApiError> {
    let ok = (1..=64).contains(&sku.len())
        && sku
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(ApiError::invalid(
            "sku must be 1..=64 letters, digits, `-`, `_` or `.`",
        ));
    }
    Ok(sku.to_string())
}

/// A stock to start a variant with: 0..=[`MAX_STOCK`].
pub fn validate_stock(stock: i64) -> Result<i64, ApiError> {
    if !(0..=MAX_STOCK).contains(&stock) {
        return Err(ApiError::invalid(format!("stock must be 0..={MAX_STOCK}")));
    }
    Ok(stock)
}
