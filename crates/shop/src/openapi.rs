//! The OpenAPI document, served at `/api-docs/openapi.json` and shown at `/docs`.

use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::{account, balance, cart, coupon, order, outbox, product, ranking};

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
limit answer 413 `PAYLOAD_TOO_LARGE`.\n\n\
Authentication: `POST /api/v1/users` answers the user's API token; `POST /api/v1/sessions` \
(email and password) answers a session's access token (15 minutes by default) and a \
refresh token (30 days, used once). User routes (`/api/v1/users/{userId}/...`), order \
routes and coupon issue need `Authorization: Bearer <token>` (either kind) of the user \
concerned (401 `UNAUTHENTICATED` without a valid token, 403 `FORBIDDEN` with someone \
else's, the admin's included, 403 `USER_SUSPENDED` with a suspended user's); admin routes \
need the admin token (`SHOP_ADMIN_TOKEN`). Both are checked before the resource is looked \
up, without a database read: revocations (a new API token, a logout, a reused refresh \
token, a suspension) take effect at once on the instance that made them and within about \
2 seconds on every other instance (Redis pub/sub where configured, and a poll of the \
database every second). Answers holding a token are never stored under an \
`Idempotency-Key`, so those operations are not deduplicated by one. \
Rate limits (off by default) answer 429 `RATE_LIMITED` with `Retry-After`; a server at its \
limit of requests in flight answers 503 `OVERLOADED` with `Retry-After`."
    ),
    modifiers(&Guarantees),
    paths(
        account::routes::create_user,
        account::routes::get_user,
        account::routes::update_user,
        account::routes::new_token,
        account::routes::login,
        account::routes::refresh,
        account::routes::logout,
        account::routes::set_status,
        balance::routes::get_balance,
        balance::routes::charge,
        balance::routes::history,
        product::routes::list,
        product::routes::detail,
        product::routes::admin_list,
        product::routes::add_variant,
        product::routes::update_variant,
        product::routes::adjust_variant_stock,
        ranking::popular,
        product::routes::create,
        product::routes::update,
        product::routes::adjust_stock,
        coupon::routes::create,
        coupon::routes::detail,
        coupon::routes::issue,
        coupon::routes::list_for_user,
        coupon::routes::list_open,
        coupon::routes::admin_list,
        coupon::routes::update,
        coupon::routes::history,
        order::routes::place,
        order::routes::detail,
        order::routes::pay,
        order::routes::cancel,
        order::routes::list_for_user,
        order::routes::payments,
        order::routes::admin_list,
        order::routes::ship,
        order::routes::deliver,
        cart::routes::detail,
        cart::routes::set_line,
        cart::routes::remove_line,
        cart::routes::clear,
        cart::routes::checkout,
        outbox::routes::list,
        outbox::routes::retry_all,
        outbox::routes::retry_one,
    ),
    tags(
        (name = "users", description = "users, balance and ledger"),
        (name = "sessions", description = "login sessions: access and refresh tokens"),
        (name = "products", description = "products and the top-products ranking"),
        (name = "coupons", description = "first-come-first-served coupons"),
        (name = "orders", description = "orders and payment"),
        (name = "cart", description = "a user's cart and its checkout"),
        (name = "admin", description = "catalogue and coupon administration"),
    )
)]
pub struct ApiDoc;

/// Adds what every route shares but its own annotation does not repeat: the bearer
/// security scheme with 401 and 403 on protected routes, the `Idempotency-Key` header
/// of every mutation, and the answers any route may give (429 rate limited, 503
/// overloaded, 413/415 for bodies, 409/422 for idempotency keys).
struct Guarantees;

/// Whether `path` needs a token (see [`crate::auth`]).
fn protected(path: &str) -> bool {
    path.starts_with("/api/v1/admin/")
        || path.starts_with("/api/v1/users/")
        || path.starts_with("/api/v1/orders")
        || path.ends_with("/issue")
        || path == "/api/v1/sessions/current"
}

fn error(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

/// The `Idempotency-Key` header: 1..=128 printable ASCII characters (anything else
/// answers 400). HTTP drops a value's leading and trailing spaces, so a key neither
/// starts nor ends with one.
fn idempotency_key() -> Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Replay-safe retries: 1..=128 printable ASCII characters, scoped to the caller",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(128))
                .pattern(Some("^[!-~]([ -~]*[!-~])?$")),
        ))
        .build()
}

/// Puts the one `Idempotency-Key` header in place of any the annotation declared.
fn set_idempotency_key(op: &mut Operation) {
    let params = op.parameters.get_or_insert_with(Vec::new);
    params.retain(|p| {
        !(p.parameter_in == ParameterIn::Header && p.name.eq_ignore_ascii_case("Idempotency-Key"))
    });
    params.push(idempotency_key());
}

fn ensure(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| error(description));
}

impl Modify for Guarantees {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                (false, item.get.as_mut()),
                (true, item.post.as_mut()),
                (true, item.patch.as_mut()),
                (true, item.put.as_mut()),
                (true, item.delete.as_mut()),
            ];
            for (mutation, op) in ops {
                let Some(op) = op else { continue };
                if protected(path) {
                    op.security = Some(vec![SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    )]);
                    ensure(op, "401", "UNAUTHENTICATED: no valid bearer token");
                    ensure(
                        op,
                        "403",
                        "FORBIDDEN: the token is not the one this route needs; \
                         USER_SUSPENDED: the token's user is suspended",
                    );
                }
                if mutation {
                    set_idempotency_key(op);
                    ensure(
                        op,
                        "409",
                        "IDEMPOTENCY_KEY_IN_PROGRESS, or a business rule refuses",
                    );
                    ensure(op, "413", "PAYLOAD_TOO_LARGE");
                    ensure(op, "415", "UNSUPPORTED_MEDIA_TYPE: the body must be JSON");
                    ensure(
                        op,
                        "422",
                        "IDEMPOTENCY_KEY_REUSED: the key came with another request",
                    );
                    ensure(
                        op,
                        "504",
                        "OUTCOME_UNKNOWN: the write was accepted but its outcome is not known \
                         yet; a retry with the same Idempotency-Key tells it",
                    );
                }
                ensure(op, "400", "INVALID_REQUEST");
                ensure(op, "429", "RATE_LIMITED (see Retry-After)");
                ensure(
                    op,
                    "503",
                    "OVERLOADED, TIMEOUT or UNAVAILABLE (see Retry-After)",
                );
            }
        }
    }
}
