//! The OpenAPI document, served at `/api-docs/openapi.json` and shown at `/docs`.
//!
//! Its paths come from the routes themselves (see [`crate::app::openapi`]): each
//! handler's `#[utoipa::path]` is its route, its entry here and its security
//! requirement (`bearer` for a user's token, `admin` for the admin token, none on
//! public routes). [`finish`] then adds what every route shares.

use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi};

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
    // Schemas that only query parameters name (bodies' schemas are collected from the
    // routes themselves).
    components(schemas(crate::outbox::routes::EventFilter, crate::product::store::Sort)),
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

/// The document of `paths` (the routes' own entries) with what every route shares.
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    Guarantees.modify(&mut doc);
    doc
}

/// Adds what every route shares but its own annotation does not repeat: the two
/// security schemes, 401 and 403 on the routes whose annotation asks for one, the `Idempotency-Key` header
/// of every mutation, and the answers any route may give (429 rate limited, 503
/// overloaded, 413/415 for bodies, 409/422 for idempotency keys).
struct Guarantees;

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
        .or_insert_with(|| match status {
            // Refusals that pass: they say when to come back.
            "429" | "503" => retry_after(description),
            _ => error(description),
        });
}

/// An error answer with its `Retry-After` header (whole seconds).
fn retry_after(description: &str) -> RefOr<utoipa::openapi::Response> {
    let header = utoipa::openapi::header::HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .description(Some("seconds to wait before trying again"))
        .build();
    ResponseBuilder::new()
        .description(description)
        .header("Retry-After", header)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

impl Modify for Guarantees {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "a user's API token or a session's access token, of the user concerned",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("the admin token (`SHOP_ADMIN_TOKEN`)"))
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                (false, item.get.as_mut()),
                (true, item.post.as_mut()),
                (true, item.patch.as_mut()),
                (true, item.put.as_mut()),
                (true, item.delete.as_mut()),
            ];
            for (mutation, op) in ops {
                let Some(op) = op else { continue };
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    ensure(op, "401", "UNAUTHENTICATED: no valid bearer token");
                    ensure(
                        op,
                        "403",
                        "FORBIDDEN: the token is not the one this route needs; \
                         USER_SUSPENDED: the token's user is suspended",
                    );
                }
                // Routes whose answer holds a token do not look at the key (their
                // annotation says so): the document must not offer one.
                let ignores_key = op
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get("x-idempotency-key"))
                    .is_some_and(|v| v == "ignored");
                if mutation && !ignores_key {
                    set_idempotency_key(op);
                    ensure(
                        op,
                        "422",
                        "IDEMPOTENCY_KEY_REUSED: the key came with another request",
                    );
                }
                if mutation {
                    ensure(
                        op,
                        "409",
                        "IDEMPOTENCY_KEY_IN_PROGRESS, or a business rule refuses",
                    );
                    ensure(op, "413", "PAYLOAD_TOO_LARGE");
                    ensure(op, "415", "UNSUPPORTED_MEDIA_TYPE: the body must be JSON");
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

#[cfg(test)]
mod tests {
    use utoipa::openapi::path::Operation;

    fn operations(doc: &utoipa::openapi::OpenApi) -> Vec<(String, &Operation)> {
        let mut out = Vec::new();
        for (path, item) in &doc.paths.paths {
            for op in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                out.push((path.clone(), op));
            }
        }
        out
    }

    /// The admin router's routes, and only they, ask for the admin token.
    #[test]
    fn admin_routes_and_only_they_ask_for_the_admin_token() {
        let doc = crate::app::openapi();
        let ops = operations(&doc);
        assert!(ops.len() > 40, "{}", ops.len());
        for (path, op) in ops {
            let schemes: Vec<String> = op
                .security
                .iter()
                .flatten()
                .map(|s| serde_json::to_value(s).unwrap().to_string())
                .collect();
            let admin = path.starts_with(&format!("{}/", crate::app::ADMIN));
            if admin {
                assert_eq!(schemes, [r#"{"admin":[]}"#], "{path}");
            } else {
                assert!(
                    schemes.is_empty() || schemes == [r#"{"bearer":[]}"#],
                    "{path}: {schemes:?}"
                );
            }
        }
    }
}
