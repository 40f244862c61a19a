//! Schemathesis against the server's own OpenAPI document, in every phase and with
//! every check but two (see [`CHECKS`]): no request it makes may get a 5xx, every
//! answer must be one the document gives (status code, content type, headers, body
//! schema), and a request the document forbids must be refused. It runs twice, as
//! the admin on the admin routes and as a user on the others, so that the protected
//! routes are exercised past authentication too.
//!
//! The tool comes from PyPI: `.ci/run` installs it into `.ci/venv`. By hand:
//! `python3 -m venv .ci/venv && .ci/venv/bin/pip install 'schemathesis==4.32.5'`,
//! or point `SHOP_SCHEMATHESIS` at a `schemathesis` binary. A missing tool fails the
//! test. `SHOP_SCHEMATHESIS_SEED` replays another seed (the default is fixed so CI is
//! reproducible); `SHOP_SCHEMATHESIS_EXAMPLES` changes the examples per operation and
//! `SHOP_SCHEMATHESIS_CHECKS` the checks (`all` shows what the two left out find).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app};

/// The version `.ci/run` installs.
const PINNED: &str = "4.32.5";

/// The checks that must hold for every request (the names schemathesis 4 uses):
/// every one but two, which are left out for these reasons.
/// - `positive_data_acceptance` (a request the document allows must succeed): JSON
///   Schema cannot say what the server refuses on purpose. An integer written `5588.0`
///   is an integer to JSON Schema but 400 here (floats are refused, see errors.rs);
///   rules across fields (a product with options names its price in its variants,
///   a variant names one value of each option) and across requests (a reused
///   `Idempotency-Key` is 422, a cursor is only one the server made) are beyond it.
/// - `missing_required_header`: the token goes with `--header`, which schemathesis
///   puts back on the request it meant to send without one; tests/api/auth.rs
///   checks every route without a token (and `ignored_auth` runs here).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance,negative_data_rejection,\
unsupported_method,allow_header_conformance,use_after_free,ensure_resource_availability,\
ignored_auth,object_level_authorization";

/// Every phase: the document's examples, the coverage of its bounds and enums,
/// fuzzing, and stateful sequences that follow its links.
const PHASES: &str = "examples,coverage,fuzzing,stateful";

/// Examples per operation and phase: enough to reach every route's refusals and
/// successes, few enough that both runs finish in well under a minute in a debug build.
const EXAMPLES: &str = "25";

const SEED: &str = "20261122";

/// A run that takes longer than this is killed and fails the test.
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn install_hint() -> String {
    format!(
        "schemathesis is not installed. Install it as CI does (from the workspace root):\n  \
         python3 -m venv .ci/venv && .ci/venv/bin/pip install 'schemathesis=={PINNED}'\n\
         or set SHOP_SCHEMATHESIS to the path of a schemathesis binary."
    )
}

/// `SHOP_SCHEMATHESIS`, else `.ci/venv/bin/schemathesis`, else `schemathesis` on PATH.
fn schemathesis() -> PathBuf {
    if let Some(set) = std::env::var_os("SHOP_SCHEMATHESIS").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(set);
        assert!(
            path.is_file(),
            "SHOP_SCHEMATHESIS={} is not a file.\n{}",
            path.display(),
            install_hint()
        );
        return path;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/venv/bin/schemathesis");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("schemathesis"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{}", install_hint()))
}

/// Values that name things that exist, mixed into the generated ones (half the
/// time), so that requests reach the handlers' logic rather than stopping at 404.
fn config(user: i64, products: &[i64], coupon: i64, user_coupon: i64, orders: &[i64]) -> String {
    let list = |ids: &[i64]| {
        ids.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
[dictionaries.users]
values = [{user}]
[dictionaries.products]
values = [{products}]
[dictionaries.coupons]
values = [{coupon}]
[dictionaries.user_coupons]
values = [{user_coupon}]
[dictionaries.orders]
values = [{orders}]

[parameters]
"path.userId" = {{ dictionary = "users", probability = 0.5 }}
"body.userId" = {{ dictionary = "users", probability = 0.5 }}
"path.productId" = {{ dictionary = "products", probability = 0.5 }}
"body.items[*].productId" = {{ dictionary = "products", probability = 0.5 }}
"path.couponId" = {{ dictionary = "coupons", probability = 0.5 }}
"body.userCouponId" = {{ dictionary = "user_coupons", probability = 0.5 }}
"path.orderId" = {{ dictionary = "orders", probability = 0.5 }}
"#,
        products = list(products),
        orders = list(orders),
    )
}

/// Schemathesis draws `Idempotency-Key`s from a small space ("0", "A", ...), so most
/// mutations would replay an earlier answer or be refused as a reused key. Three
/// calls in four get a key of their own (the generated one with a unique suffix), the
/// rest keep the generated key so replays and reuse are still exercised; invalid keys
/// are left as they are.
const HOOKS: &str = r#"
import itertools
import re

import schemathesis

_calls = itertools.count()
_VALID = re.compile(r"[!-~]([ -~]*[!-~])?")


@schemathesis.hook
def before_call(context, case, **kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() != "idempotency-key":
            continue
        key, n = headers[name], next(_calls)
        if isinstance(key, str) and len(key) <= 100 and _VALID.fullmatch(key) and n % 4:
            headers[name] = f"{key}.{n}"
"#;

/// Runs schemathesis against `app`'s document with `token`; panics with its output
/// unless it exits 0.
async fn run(app: &TestApp, tool: &Path, who: &str, token: &str, filter: [&str; 2]) {
    let seed = std::env::var("SHOP_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.into());
    let examples = std::env::var("SHOP_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| EXAMPLES.into());
    let checks = std::env::var("SHOP_SCHEMATHESIS_CHECKS").unwrap_or_else(|_| CHECKS.into());
    let mut command = tokio::process::Command::new(tool);
    command
        .arg("--config-file")
        .arg(app.dir.path().join("schemathesis.toml"))
        .arg("--no-color")
        .arg("run")
        .arg(format!("{}/api-docs/openapi.json", app.base))
        .args(["--checks", &checks])
        .args(["--phases", PHASES])
        .args(["--max-examples", &examples])
        .args(["--seed", &seed])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "20"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(filter)
        .current_dir(app.dir.path())
        .env(
            "SCHEMATHESIS_HOOKS",
            app.dir.path().join("schemathesis_hooks.py"),
        )
        .env("PYTHONUNBUFFERED", "1")
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(RUN_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis as {who} ran over {RUN_LIMIT:?}"))
        .unwrap_or_else(|e| {
            panic!(
                "could not start {}: {e}\n{}",
                tool.display(),
                install_hint()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis as {who} found failures ({}; seed {seed}):\n{text}",
        output.status
    );
    // Shown by the test runner only on failure, or with --no-capture.
    eprintln!(
        "schemathesis as {who}: passed in {:.1?}\n{text}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_openapi_document() {
    let tool = schemathesis();
    let app = spawn_app(Backend::Sqlite).await;

    // A world to find: a user with money, products, a coupon issued to the user, and
    // orders in each state.
    let user = app.user_with_balance("buyer", 5_000_000).await;
    let cheap = app.create_product("pencil", 500, 1_000_000).await;
    let dear = app.create_product("laptop", 2_000_000, 100).await;
    let coupon = app
        .create_coupon(json!({"totalQuantity": 1_000, "minOrderAmount": 0}))
        .await;
    let user_coupon = app.issued(coupon, user).await;
    let mut orders = Vec::new();
    for pay in [false, true, true] {
        let (s, b) = app.order(user, &[(cheap, 2)], None, pay).await;
        assert_eq!(s, 201, "{b}");
        orders.push(b["id"].as_i64().unwrap());
    }
    let (s, b) = app.cancel(orders[2]).await;
    assert_eq!(s, 200, "{b}");

    std::fs::write(
        app.dir.path().join("schemathesis.toml"),
        config(user, &[cheap, dear], coupon, user_coupon, &orders),
    )
    .unwrap();
    std::fs::write(app.dir.path().join("schemathesis_hooks.py"), HOOKS).unwrap();

    // Each caller on the routes it may use (the 401/403 matrix is tests/api/auth.rs's):
    // the admin on admin routes, the user on everything else.
    let admin_routes = "^/api/v1/admin/";
    run(
        &app,
        &tool,
        "the admin",
        &app.admin_token,
        ["--include-path-regex", admin_routes],
    )
    .await;
    run(
        &app,
        &tool,
        "a user",
        &app.user_token(user),
        ["--exclude-path-regex", admin_routes],
    )
    .await;
    app.check_invariants().await;
}

/// What clients and Swagger's Try-it-out need from the document: one operationId per
/// operation (generators name methods after them, deep links open them), an example
/// and a lower bound on every path parameter (else Try-it-out sends
/// 9007199254740991 as an id), an example on every request body and every answer,
/// and on every error answer the codes it may carry, as an enum, each with an
/// example. (That the server answers no other code is checked on every answer of
/// every test: see `conformance`.) Optional query parameters and the
/// `Idempotency-Key` header have no example on purpose: Try-it-out sends an example
/// with every request, and a made-up cursor answers 400, one fixed key 422.
#[tokio::test]
async fn the_document_names_each_operation_once_and_gives_examples() {
    let app = spawn_app(Backend::Sqlite).await;
    let (s, doc) = app.get("/api-docs/openapi.json").await;
    assert_eq!(s, 200, "{doc}");
    let schemas = &doc["components"]["schemas"];
    let component = |schema: &'_ serde_json::Value| -> serde_json::Value {
        schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .map_or(schema.clone(), |name| schemas[name].clone())
    };
    let has = |v: &serde_json::Value| !v["example"].is_null() || !v["examples"].is_null();
    let mut ids = std::collections::BTreeMap::new();
    let mut codes_used = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{} {path}", method.to_uppercase());
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            if id.is_empty() {
                problems.push(format!("{at}: no operationId"));
            } else if let Some(first) = ids.insert(id.clone(), at.clone()) {
                problems.push(format!("{at}: operationId {id} is also {first}'s"));
            }
            let params = op["parameters"].as_array().into_iter().flatten();
            for p in params.filter(|p| p["in"] == "path") {
                let name = &p["name"];
                let schema = &p["schema"];
                if p["example"].is_null() && schema["example"].is_null() {
                    problems.push(format!("{at}: path parameter {name} has no example"));
                }
                if schema["type"] == "integer" && schema["minimum"].is_null() {
                    problems.push(format!("{at}: path parameter {name} has no minimum"));
                }
            }
            if let Some(body) = op.get("requestBody") {
                let media = &body["content"]["application/json"];
                if !has(media) && !has(&component(&media["schema"])) {
                    problems.push(format!("{at}: the request body has no example"));
                }
            }
            for must in ["400", "429", "500", "503"] {
                if op["responses"].get(must).is_none() {
                    problems.push(format!("{at}: no {must} answer"));
                }
            }
            for (status, answer) in op["responses"].as_object().unwrap() {
                let Some(content) = answer["content"].as_object() else {
                    continue;
                };
                for (media_type, media) in content {
                    if !has(media) {
                        problems.push(format!(
                            "{at}: the {status} answer ({media_type}) has no example"
                        ));
                    }
                }
                if !status.starts_with(['4', '5']) {
                    continue;
                }
                let media = &answer["content"]["application/json"];
                let all_of = &media["schema"]["allOf"];
                let codes: Vec<&str> = all_of[1]["properties"]["code"]["enum"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str())
                    .collect();
                if all_of[0]["$ref"] != "#/components/schemas/ErrorBody" || codes.is_empty() {
                    problems.push(format!(
                        "{at}: the {status} answer lists no codes: {answer}"
                    ));
                }
                for code in codes {
                    codes_used.insert(code.to_string());
                    if media["examples"][code]["value"]["code"] != code {
                        problems.push(format!(
                            "{at}: the {status} answer has no example of {code}"
                        ));
                    }
                    let declared = code
                        .parse::<shop::error::ErrorCode>()
                        .map(|c| c.status().as_u16());
                    if declared.map(|s| s.to_string()).as_deref() != Ok(status.as_str()) {
                        problems.push(format!(
                            "{at}: the {status} answer lists {code} ({declared:?})"
                        ));
                    }
                }
            }
        }
    }
    // Every code some operation answers is in the document; the two left answer
    // requests no operation takes (an unknown route, a method a route lacks).
    let unlisted: Vec<&str> = shop::error::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !codes_used.contains(*c))
        .collect();
    assert_eq!(unlisted, ["NOT_FOUND", "METHOD_NOT_ALLOWED"]);
    assert!(ids.len() > 40, "{ids:?}");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Checks every example of the document against its schema with the `jsonschema`
/// package (JSON Schema 2020-12, formats included) that openapi-spec-validator
/// brings: component examples, parameter examples, request bodies, answers (each
/// error code's), and headers. Prints what does not fit and exits 1.
const EXAMPLES_FIT: &str = r#"
import json, sys
from jsonschema import Draft202012Validator

doc = json.load(open(sys.argv[1]))
components = doc["components"]
problems = []
checked = 0

def check(at, schema, value):
    global checked
    checked += 1
    root = dict(schema, components=components)
    validator = Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for e in validator.iter_errors(value):
        problems.append(f"{at}: {e.message} (at {list(e.absolute_path)})")

def media(at, m):
    schema = m.get("schema", {})
    if "example" in m:
        check(at, schema, m["example"])
    for name, example in m.get("examples", {}).items():
        check(f"{at}, example {name}", schema, example["value"])

for name, schema in components["schemas"].items():
    if "example" in schema:
        check(f"schema {name}", schema, schema["example"])
for path, item in doc["paths"].items():
    for method, op in item.items():
        at = f"{method.upper()} {path}"
        for p in op.get("parameters", []):
            if "example" in p:
                check(f"{at} parameter {p['name']}", p["schema"], p["example"])
        for m in op.get("requestBody", {}).get("content", {}).values():
            media(f"{at} request body", m)
        for status, answer in op["responses"].items():
            for m in answer.get("content", {}).values():
                media(f"{at} {status}", m)
            for name, h in answer.get("headers", {}).items():
                if "example" in h:
                    check(f"{at} {status} header {name}", h["schema"], h["example"])

print(f"{checked} examples checked")
print("\n".join(problems))
sys.exit(1 if problems or checked < 100 else 0)
"#;

/// Every example the document gives is a value of its schema, so what Swagger's
/// Try-it-out sends and what a reader copies is what the server reads and answers.
#[tokio::test]
async fn every_example_in_the_document_fits_its_schema() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/venv/bin/python");
    assert!(
        python.is_file(),
        "the .ci/venv Python is missing ({}); install it as CI does:\n  \
         python3 -m venv .ci/venv && .ci/venv/bin/pip install 'openapi-spec-validator=={VALIDATOR_PINNED}'",
        python.display()
    );
    let (ok, text) = run_on_the_document(python, &["-c", EXAMPLES_FIT]).await;
    assert!(ok, "{text}");
    eprintln!("{text}");
}

/// Runs `tool` with `args` and the path of the served document, on a fresh server;
/// answers whether it succeeded, and its output.
async fn run_on_the_document(tool: PathBuf, args: &[&str]) -> (bool, String) {
    let app = spawn_app(Backend::Sqlite).await;
    let (s, doc) = app.get("/api-docs/openapi.json").await;
    assert_eq!(s, 200, "{doc}");
    let file = app.dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = std::process::Command::new(&tool)
        .args(args)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The version of openapi-spec-validator (PyPI) that `.ci/run` installs beside
/// schemathesis.
const VALIDATOR_PINNED: &str = "0.9.0";

/// The document is valid OpenAPI 3.1 by an independent validator
/// (openapi-spec-validator from PyPI: structure, and every `$ref` resolves), so client
/// generators can read it. `SHOP_OPENAPI_SPEC_VALIDATOR` points at another binary.
#[tokio::test]
async fn the_document_is_valid_openapi() {
    let tool = std::env::var_os("SHOP_OPENAPI_SPEC_VALIDATOR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/venv/bin/openapi-spec-validator")
        });
    assert!(
        tool.is_file(),
        "openapi-spec-validator is not installed ({}). Install it as CI does:\n  \
         .ci/venv/bin/pip install 'openapi-spec-validator=={VALIDATOR_PINNED}'",
        tool.display()
    );
    let (ok, text) = run_on_the_document(tool, &[]).await;
    let short: String = text.chars().take(2_000).collect();
    assert!(ok, "the document is not valid OpenAPI:\n{short}");
    assert!(text.contains("OK"), "{short}");
}
