//! Every answer of every in-process test server is checked against the OpenAPI
//! document the server serves: its status must be one the operation's entry gives,
//! and an error's `code` one of the codes that entry lists for that status. So every
//! test of the suite, each refusal it provokes included, also tests the document;
//! a code a route can answer but does not declare fails the test that provoked it.
//!
//! Requests outside the document (static files, health, metrics, unknown routes,
//! a method a path does not have) are not checked here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

/// What each answer broke, in the order seen.
pub type Violations = Arc<Mutex<Vec<String>>>;

/// One operation of the document: its method, its path template's segments (`None`
/// for a parameter) and, per status it gives, the codes of an error answer.
struct Operation {
    method: String,
    segments: Vec<Option<String>>,
    answers: BTreeMap<u16, BTreeSet<String>>,
}

impl Operation {
    fn matches(&self, method: &str, segments: &[&str]) -> bool {
        self.method.eq_ignore_ascii_case(method)
            && self.segments.len() == segments.len()
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(template, s)| template.as_deref().is_none_or(|t| t == *s))
    }

    fn parameters(&self) -> usize {
        self.segments.iter().filter(|s| s.is_none()).count()
    }
}

static DOCUMENT: LazyLock<Vec<Operation>> = LazyLock::new(|| {
    let doc = serde_json::to_value(shop::app::openapi()).expect("the document serializes");
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let segments = path
                .split('/')
                .map(|s| (!s.starts_with('{')).then(|| s.to_string()))
                .collect();
            let answers = op["responses"]
                .as_object()
                .expect("responses")
                .iter()
                .map(|(status, answer)| {
                    let codes = answer["content"]["application/json"]["schema"]["allOf"][1]
                        ["properties"]["code"]["enum"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.as_str().map(String::from))
                        .collect();
                    (status.parse().expect("numeric statuses"), codes)
                })
                .collect();
            ops.push(Operation {
                method: method.clone(),
                segments,
                answers,
            });
        }
    }
    ops
});

/// The operation a request is for: of the templates that match, the most literal
/// (`/products/popular` before `/products/{productId}`).
fn operation(method: &str, path: &str) -> Option<&'static Operation> {
    let segments: Vec<&str> = path.split('/').collect();
    DOCUMENT
        .iter()
        .filter(|op| op.matches(method, &segments))
        .min_by_key(|op| op.parameters())
}

/// `router` with every answer checked; what breaks the document goes to `violations`.
pub fn wrap(router: axum::Router, violations: Violations) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| check(violations.clone(), req, next),
    ))
}

async fn check(violations: Violations, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let res = next.run(req).await;
    let Some(op) = operation(&method, &path) else {
        return res;
    };
    let status = res.status().as_u16();
    let at = format!("{method} {path}");
    let Some(codes) = op.answers.get(&status) else {
        violations.lock().unwrap().push(format!(
            "{at} answered {status}, a status its entry does not give"
        ));
        return res;
    };
    if status < 400 {
        return res;
    }
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let code = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["code"].as_str().map(String::from));
    match code {
        Some(code) if codes.contains(&code) => {}
        Some(code) => violations.lock().unwrap().push(format!(
            "{at} answered {status} {code}, a code its entry does not list for {status} \
             (it lists {codes:?})"
        )),
        None => violations.lock().unwrap().push(format!(
            "{at} answered {status} without the error shape: {}",
            String::from_utf8_lossy(&bytes)
        )),
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Fails the test (from `TestApp`'s drop) if any answer broke the document, unless it
/// is failing already.
pub fn assert_none(violations: &Violations) {
    if std::thread::panicking() {
        return;
    }
    let seen = std::mem::take(&mut *violations.lock().unwrap());
    let distinct: BTreeSet<String> = seen.into_iter().collect();
    assert!(
        distinct.is_empty(),
        "answers the OpenAPI document does not give (declare them in the route's \
         #[utoipa::path], or fix the route):\n{}",
        distinct.into_iter().collect::<Vec<_>>().join("\n")
    );
}
