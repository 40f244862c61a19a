//! The OpenAPI document, served at `/api-docs/openapi.json` and shown at `/docs`.
//!
//! Its paths come from the routes themselves (see [`crate::app::openapi`]): each
//! handler's `#[utoipa::path]` is its route, its entry here and its security
//! requirement (`bearer` for a user's token, `admin` for the admin token, none on
//! public routes). [`finish`] then adds what every route shares.

use serde_json::{Value, json};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorCode;

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

/// The document of `paths` (the routes' own entries) with what every route shares
/// (see [`Guarantees`]) and, on every answer, what a client needs to read it: each
/// error answer's `code` as an enum with an example per code, and an example of every
/// success body (see [`complete_answers`]).
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    Guarantees.modify(&mut doc);
    let mut json = serde_json::to_value(&doc).expect("the document serializes");
    let problems = complete_answers(&mut json);
    // The document is fixed at build time: any test that starts a server finds these.
    assert!(
        problems.is_empty(),
        "the OpenAPI document is incomplete:\n{}",
        problems.join("\n")
    );
    serde_json::from_value(json).expect("the completed document reads back")
}

/// Adds what every route shares but its own annotation does not repeat: the two
/// security schemes and the `Idempotency-Key` header of every mutation whose answer
/// may be stored under one.
struct Guarantees;

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
        // No example: Swagger's Try-it-out sends an optional parameter's example, and
        // one fixed key sent with every request would answer 422 to the second.
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
            let mutations = [
                item.post.as_mut(),
                item.patch.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
            ];
            for op in mutations.into_iter().flatten() {
                // Routes whose answer holds a token do not look at the key (their
                // annotation says so): the document must not offer one.
                let ignores_key = op
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get("x-idempotency-key"))
                    .is_some_and(|v| v == "ignored");
                if !ignores_key {
                    set_idempotency_key(op);
                }
            }
        }
    }
}

/// What an operation is, as far as the answers every route may give go.
struct Facts {
    /// Needs a user's token.
    user: bool,
    /// Needs the admin token.
    admin: bool,
    /// POST, PUT, PATCH or DELETE.
    mutation: bool,
    /// Takes an `Idempotency-Key`.
    keyed: bool,
    /// Has a JSON request body.
    body: bool,
}

impl Facts {
    fn of(method: &str, op: &Value) -> Facts {
        let schemes = |name: &str| {
            op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get(name).is_some()))
        };
        Facts {
            user: schemes("bearer"),
            admin: schemes("admin"),
            mutation: matches!(method, "post" | "put" | "patch" | "delete"),
            keyed: op["parameters"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["in"] == "header" && p["name"] == "Idempotency-Key")
            }),
            body: op.get("requestBody").is_some(),
        }
    }

    /// The codes any such operation may answer with `status`, whatever it does:
    /// authentication, body and key handling, limits, deadlines and faults.
    fn shared_codes(&self, status: u16) -> (&'static str, Vec<ErrorCode>) {
        use ErrorCode::*;
        match status {
            400 => (
                "the request is malformed or out of range; nothing changed",
                vec![InvalidRequest],
            ),
            401 if self.user || self.admin => ("no valid bearer token", vec![Unauthenticated]),
            403 if self.user || self.admin => (
                "the token is not the one this route needs, or its user is suspended",
                vec![Forbidden, UserSuspended],
            ),
            409 if self.keyed => (
                "a request with the same Idempotency-Key is still in flight",
                vec![IdempotencyKeyInProgress],
            ),
            413 if self.mutation => ("the body is too large", vec![PayloadTooLarge]),
            415 if self.body => ("the body must be JSON", vec![UnsupportedMediaType]),
            422 if self.keyed => (
                "the Idempotency-Key came with another request",
                vec![IdempotencyKeyReused],
            ),
            429 => (
                "rate limited: send again after Retry-After",
                vec![RateLimited],
            ),
            500 => (
                "a fault of the server: the cause is logged, never sent",
                vec![Internal],
            ),
            503 => (
                "overloaded, or past the deadline before the write was handed over: \
                 nothing was applied; send again after Retry-After",
                vec![Overloaded, Timeout, Unavailable],
            ),
            504 if self.mutation => (
                "the write was accepted but its outcome is not known yet; a retry with the \
                 same Idempotency-Key tells it",
                vec![OutcomeUnknown],
            ),
            _ => ("", Vec::new()),
        }
    }
}

/// Every error status an operation's answers are checked for.
const ERROR_STATUSES: [u16; 12] = [400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503, 504];

/// The codes an answer's description names (`CODE` or `CODE: why, OTHER_CODE`).
/// A word that looks like a code but is none, or a code of another status, is a
/// problem: the document must not promise what the server never answers.
fn named_codes(
    description: &str,
    status: u16,
    at: &str,
    problems: &mut Vec<String>,
) -> Vec<ErrorCode> {
    let mut codes = Vec::new();
    for word in
        description.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
    {
        if word.len() < 2 || !word.starts_with(|c: char| c.is_ascii_uppercase()) {
            continue;
        }
        match word.parse::<ErrorCode>() {
            Ok(code) if code.status().as_u16() == status => codes.push(code),
            Ok(code) => problems.push(format!(
                "{at}: the {status} answer names {code}, which answers {}",
                code.status().as_u16()
            )),
            Err(()) if word.contains('_') => problems.push(format!(
                "{at}: the {status} answer names {word}, which is no code"
            )),
            Err(()) => {}
        }
    }
    codes
}

/// An error answer: `ErrorBody` with `code` narrowed to `codes`, an example of each.
fn error_answer(
    description: &str,
    status: u16,
    codes: &[ErrorCode],
    headers: Option<Value>,
) -> Value {
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    let examples: serde_json::Map<String, Value> = codes
        .iter()
        .map(|c| {
            let value = json!({"code": c.as_str(), "message": c.example()});
            (
                c.as_str().to_string(),
                json!({"summary": c.as_str(), "value": value}),
            )
        })
        .collect();
    let mut answer = json!({
        "description": description,
        "content": {"application/json": {
            "schema": {"allOf": [
                {"$ref": "#/components/schemas/ErrorBody"},
                {"type": "object", "properties": {"code": {"type": "string", "enum": names}}},
            ]},
            "examples": examples,
        }},
    });
    let mut headers = headers.unwrap_or_else(|| json!({}));
    if matches!(status, 429 | 503) {
        headers["Retry-After"] = json!({
            "description": "seconds to wait before trying again",
            "schema": {"type": "integer", "minimum": 0},
            "example": 1,
        });
    }
    if headers.as_object().is_some_and(|h| !h.is_empty()) {
        answer["headers"] = headers;
    }
    answer
}

/// An example of a value of `schema`, from the examples of the types it is made of:
/// a type's own example, a list of one item, an object of its properties' examples,
/// `null` where allowed. `None` where a part has none.
fn example_of(schema: &Value, schemas: &Value, depth: usize) -> Option<Value> {
    if depth > 16 {
        return None;
    }
    if let Some(example) = schema.get("example") {
        return Some(example.clone());
    }
    if let Some(name) = schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        return example_of(&schemas[name], schemas, depth + 1);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let null_in_one_of = schema["oneOf"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["type"] == "null"));
    if types.contains(&"null") || null_in_one_of {
        return Some(Value::Null);
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return Some(first.clone());
    }
    if types.contains(&"array") {
        return Some(json!([example_of(&schema["items"], schemas, depth + 1)?]));
    }
    let properties = schema["properties"].as_object()?;
    let mut object = serde_json::Map::new();
    for (name, property) in properties {
        object.insert(name.clone(), example_of(property, schemas, depth + 1)?);
    }
    Some(Value::Object(object))
}

/// Completes every operation's answers (see [`finish`]) and says what could not be.
fn complete_answers(doc: &mut Value) -> Vec<String> {
    let schemas = doc["components"]["schemas"].clone();
    let mut problems = Vec::new();
    let Some(paths) = doc["paths"].as_object_mut() else {
        return vec!["the document has no paths".into()];
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let at = format!("{} {path}", method.to_uppercase());
            let facts = Facts::of(method, op);
            let answers = op["responses"]
                .as_object_mut()
                .expect("operations have responses");
            for status in ERROR_STATUSES {
                let (shared_description, mut codes) = facts.shared_codes(status);
                let own = answers.get(&status.to_string());
                let own_description = own
                    .and_then(|a| a["description"].as_str())
                    .filter(|d| !d.is_empty());
                let mut description = shared_description.to_string();
                if let Some(own) = own_description {
                    let named = named_codes(own, status, &at, &mut problems);
                    codes.retain(|c| !named.contains(c));
                    description = if codes.is_empty() {
                        own.to_string()
                    } else {
                        let shared: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
                        format!("{own}; or {}: {shared_description}", shared.join(", "))
                    };
                    codes.splice(0..0, named);
                }
                if own.is_none() && codes.is_empty() {
                    continue;
                }
                if codes.is_empty() {
                    problems.push(format!("{at}: the {status} answer names no code"));
                    continue;
                }
                let headers = own.and_then(|a| a.get("headers")).cloned();
                answers.insert(
                    status.to_string(),
                    error_answer(&description, status, &codes, headers),
                );
            }
            // Error answers got their examples above.
            let successes = answers
                .iter_mut()
                .filter(|(s, _)| !s.starts_with(['4', '5']));
            for (status, answer) in successes {
                if answer["description"].as_str().is_none_or(str::is_empty) {
                    let reason = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                        .and_then(|s| s.canonical_reason());
                    answer["description"] = json!(reason.unwrap_or("success"));
                }
                let Some(content) = answer.get_mut("content").and_then(Value::as_object_mut) else {
                    continue;
                };
                for (media_type, media) in content.iter_mut() {
                    if media.get("example").is_some() || media.get("examples").is_some() {
                        continue;
                    }
                    match example_of(&media["schema"], &schemas, 0) {
                        Some(example) => media["example"] = example,
                        None => problems.push(format!(
                            "{at}: the {status} answer ({media_type}) has no example; give \
                             its type #[schema(example = ...)]"
                        )),
                    }
                }
            }
        }
    }
    problems
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
