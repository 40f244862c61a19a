//! The OpenAPI document, served at `/api-docs/openapi.json` and shown at `/docs`.

use utoipa::OpenApi;

use crate::{balance, coupon, order, outbox, product, ranking};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shop",
        description = "E-commerce backend: prepaid balance, products with stock, \
first-come-first-served coupons, orders paid from the balance, top products.\n\n\
Every error answers `{\"code\", \"message\"}` with a stable code. Mutations accept an \
`Idempotency-Key` header (1..=128 printable ASCII): a repeat with the same method, path \
and body replays the first answer; with another body it answers 422 \
`IDEMPOTENCY_KEY_REUSED`; while the first is in flight, 409 `IDEMPOTENCY_KEY_IN_PROGRESS`. \
Bodies must be `application/json` (else 415 `UNSUPPORTED_MEDIA_TYPE`); unknown fields, \
wrong types, floats and out-of-range values answer 400 `INVALID_REQUEST`; bodies over the \
limit answer 413 `PAYLOAD_TOO_LARGE`."
    ),
    paths(
        balance::routes::create_user,
        balance::routes::get_balance,
        balance::routes::charge,
        balance::routes::history,
        product::routes::list,
        product::routes::detail,
        ranking::popular,
        product::routes::create,
        product::routes::update,
        product::routes::adjust_stock,
        coupon::routes::create,
        coupon::routes::detail,
        coupon::routes::issue,
        coupon::routes::list_for_user,
        order::routes::place,
        order::routes::detail,
        order::routes::pay,
        order::routes::cancel,
        order::routes::list_for_user,
        outbox::routes::list,
        outbox::routes::retry_all,
        outbox::routes::retry_one,
    ),
    tags(
        (name = "users", description = "users, balance and ledger"),
        (name = "products", description = "products and the top-products ranking"),
        (name = "coupons", description = "first-come-first-served coupons"),
        (name = "orders", description = "orders and payment"),
        (name = "admin", description = "catalogue and coupon administration"),
    )
)]
pub struct ApiDoc;
