//! The browser pages: how they are served (plain HTTP), and what they do in headless
//! Chromium. The browser tests are the Node scripts in `e2e/` (playwright-core driving
//! Debian's Chromium, axe-core for accessibility), run here against a real server on
//! a fresh database. A missing Node, `e2e/node_modules` or Chromium fails these tests:
//! `.ci/run` installs them.
//!
//! The pages are backend-agnostic clients of the HTTP API, so they run on SQLite only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, free_port, spawn_app, spawn_app_with};

/// The storefront's first page must weigh less than this, transferred.
const FIRST_PAGE_BUDGET: usize = 150 * 1024;

/// The demo product pictures (the catalog's demo data points at them).
const DEMO_IMAGES: &[&str] = &[
    "tshirt.svg",
    "mug.svg",
    "sneakers.svg",
    "hoodie.svg",
    "cap.svg",
    "tote.svg",
];

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e")
}

async fn fetch(app: &TestApp, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    let res = app.client.get(app.url(path)).send().await.expect("GET");
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.bytes().await.expect("body").to_vec())
}

fn header(headers: &HeaderMap, name: impl header::AsHeaderName) -> &str {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

#[tokio::test]
async fn pages_are_served_with_a_strict_policy_and_their_content_types() {
    let app = spawn_app(Backend::Sqlite).await;
    for (path, marker) in [
        ("/", "/static/js/shop/main.js"),
        ("/admin", "/static/js/admin/main.js"),
        ("/admin/", "/static/js/admin/main.js"),
    ] {
        let (status, headers, body) = fetch(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            header(&headers, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert!(String::from_utf8(body).unwrap().contains(marker), "{path}");
        let csp = header(&headers, header::CONTENT_SECURITY_POLICY);
        for directive in [
            "default-src 'self'",
            "script-src 'self';",
            "style-src 'self';",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp} lacks {directive}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header(&headers, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header(&headers, header::REFERRER_POLICY), "no-referrer");
        assert_eq!(header(&headers, header::CACHE_CONTROL), "no-cache");
    }
    for (path, content_type) in [
        ("/static/js/shop/main.js", "text/javascript; charset=utf-8"),
        (
            "/static/js/admin/metrics.js",
            "text/javascript; charset=utf-8",
        ),
        ("/static/css/site.css", "text/css; charset=utf-8"),
        ("/static/img/favicon.svg", "image/svg+xml"),
    ] {
        let (status, headers, _) = fetch(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            header(&headers, header::CONTENT_TYPE),
            content_type,
            "{path}"
        );
        assert_eq!(header(&headers, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    }
    // the API and Swagger UI are where they were
    assert_eq!(fetch(&app, "/api/v1/products").await.0, StatusCode::OK);
    assert_eq!(fetch(&app, "/docs/").await.0, StatusCode::OK);
}

#[tokio::test]
async fn unknown_files_are_404_and_known_ones_revalidate_with_their_etag() {
    let app = spawn_app(Backend::Sqlite).await;
    for path in [
        "/static/nope.js",
        "/static/js/",
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/js/%2e%2e/%2e%2e/index.html",
        "/static/..%2f..%2fCargo.toml",
        "/static/index.html",
        "/index.html",
    ] {
        let (status, _, _) = fetch(&app, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, headers, _) = fetch(&app, "/static/nope.js").await;
    assert_eq!(header(&headers, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    let (status, headers, _) = fetch(&app, "/static/js/lib/api.js").await;
    assert_eq!(status, StatusCode::OK);
    let etag = header(&headers, header::ETAG).to_string();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let res = app
        .client
        .get(app.url("/static/js/lib/api.js"))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(res.bytes().await.unwrap().is_empty());
    let res = app
        .client
        .get(app.url("/static/js/lib/api.js"))
        .header(header::IF_NONE_MATCH, "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_demo_product_images_are_served() {
    let app = spawn_app(Backend::Sqlite).await;
    for name in DEMO_IMAGES {
        let (status, headers, body) = fetch(&app, &format!("/static/img/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(header(&headers, header::CONTENT_TYPE), "image/svg+xml");
        assert!(body.starts_with(b"<svg"), "{name}");
        assert!(body.len() < 4096, "{name} is {} bytes", body.len());
    }
}

/// Files under `web/` with one of `extensions`, and their text.
fn web_files(extensions: &[&str]) -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, extensions: &[&str], out: &mut BTreeMap<PathBuf, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, extensions, out);
            } else if extensions
                .iter()
                .any(|e| path.extension().is_some_and(|x| x == *e))
            {
                out.insert(path.clone(), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&web_dir(), extensions, &mut out);
    out
}

/// The static guard behind the XSS browser test: no markup in the pages can run code
/// of its own, and no script turns text into HTML.
#[test]
fn no_inline_code_and_no_html_from_strings() {
    let html = web_files(&["html", "svg"]);
    assert!(html.len() >= 2 + DEMO_IMAGES.len());
    for (path, text) in &html {
        let lower = text.to_lowercase();
        for (i, _) in lower.match_indices("<script") {
            let tag = &lower[i..i + lower[i..].find('>').unwrap()];
            assert!(tag.contains(" src="), "{}: inline <script>", path.display());
        }
        assert!(!lower.contains("<style"), "{}: <style>", path.display());
        assert!(!lower.contains(" style="), "{}: style=", path.display());
        assert!(!lower.contains("javascript:"), "{}", path.display());
        for (i, _) in lower.match_indices(" on") {
            let word: String = lower[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            assert!(
                !(lower[i + 1 + word.len()..].starts_with('=') && word.len() > 2),
                "{}: event attribute {word}",
                path.display()
            );
        }
    }
    let scripts = web_files(&["js"]);
    assert!(scripts.len() > 10);
    for (path, text) in &scripts {
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "createContextualFragment",
            "setAttribute('on",
        ] {
            assert!(!text.contains(banned), "{}: uses {banned}", path.display());
        }
    }
}

/// `a/b/../c` → `a/c`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The modules the script at `url` imports, as absolute paths: static (`from '...'`,
/// `import '...'`) and dynamic (`import('...')`).
fn imports(url: &str, js: &str) -> (Vec<String>, Vec<String>) {
    let dir = &url[..url.rfind('/').unwrap()];
    let resolve = |m: String| normalize(&format!("{dir}/{m}"));
    let quoted = |rest: &str| -> Option<String> {
        let q = rest.chars().next()?;
        if q != '\'' && q != '"' {
            return None;
        }
        rest[1..].find(q).map(|end| rest[1..1 + end].to_string())
    };
    let (mut fixed, mut dynamic) = (Vec::new(), Vec::new());
    for line in js.lines() {
        let line = line.trim();
        if line.starts_with("//") || line.starts_with('*') {
            continue;
        }
        if line.starts_with("import ") || line.starts_with("export ") {
            if let Some(i) = line.find(" from ") {
                fixed.extend(quoted(&line[i + 6..]));
            } else if let Some(rest) = line.strip_prefix("import ") {
                fixed.extend(quoted(rest));
            }
        }
        for (i, _) in line.match_indices("import(") {
            dynamic.extend(quoted(&line[i + 7..]));
        }
    }
    (
        fixed.into_iter().map(resolve).collect(),
        dynamic.into_iter().map(resolve).collect(),
    )
}

/// The URLs an HTML page loads at once: stylesheets, icons, preloads and scripts.
fn page_assets(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            let url = &rest[..rest.find('"').unwrap()];
            if url.starts_with("/static/") {
                out.push(url.to_string());
            }
        }
    }
    out
}

/// Every file a page loads at first paint (its static import graph) with its size in
/// bytes (body and headers), and the modules it may load later (dynamic imports).
/// Each must answer 200.
async fn first_paint(app: &TestApp, page: &str) -> (BTreeMap<String, usize>, BTreeSet<String>) {
    let (status, headers, body) = fetch(app, page).await;
    assert_eq!(status, StatusCode::OK);
    let mut sizes = BTreeMap::new();
    sizes.insert(page.to_string(), body.len() + header_bytes(&headers));
    let mut queue = page_assets(&String::from_utf8(body).unwrap());
    let mut later = BTreeSet::new();
    while let Some(url) = queue.pop() {
        if sizes.contains_key(&url) {
            continue;
        }
        let (status, headers, body) = fetch(app, &url).await;
        assert_eq!(status, StatusCode::OK, "{page} loads {url}");
        sizes.insert(url.clone(), body.len() + header_bytes(&headers));
        if url.ends_with(".js") {
            let (fixed, dynamic) = imports(&url, &String::from_utf8(body).unwrap());
            queue.extend(fixed);
            later.extend(dynamic);
        }
    }
    (sizes, later)
}

/// Every module reachable from `modules`, statically or dynamically: each must answer 200.
async fn all_modules_exist(app: &TestApp, modules: BTreeSet<String>) -> usize {
    let mut seen = BTreeSet::new();
    let mut queue: Vec<String> = modules.into_iter().collect();
    while let Some(url) = queue.pop() {
        if !seen.insert(url.clone()) {
            continue;
        }
        let (status, _, body) = fetch(app, &url).await;
        assert_eq!(status, StatusCode::OK, "{url}");
        let (fixed, dynamic) = imports(&url, &String::from_utf8(body).unwrap());
        queue.extend(fixed.into_iter().chain(dynamic));
    }
    seen.len()
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

#[tokio::test]
async fn the_storefronts_first_page_is_light_and_every_module_exists() {
    let app = spawn_app(Backend::Sqlite).await;
    let (sizes, later) = first_paint(&app, "/").await;
    let total: usize = sizes.values().sum();
    println!(
        "storefront first paint, files only: {total} bytes in {} files",
        sizes.len()
    );
    assert!(
        sizes.contains_key("/static/js/shop/views/home.js"),
        "{sizes:?}"
    );
    assert!(!sizes.keys().any(|u| u.contains("/admin/")), "{sizes:?}");
    assert!(total < FIRST_PAGE_BUDGET, "{total} bytes: {sizes:#?}");
    // every view the routers may load exists, with everything it imports
    assert!(all_modules_exist(&app, later).await >= 7);
    let (admin, later) = first_paint(&app, "/admin").await;
    assert!(admin.contains_key("/static/js/admin/main.js"), "{admin:?}");
    assert!(all_modules_exist(&app, later).await >= 6);
}

/// Runs `node --test` on `files` in `e2e/` with `envs`, failing with its output when it
/// fails; a missing Node, `node_modules` or Chromium is a failure.
async fn node_test(files: &[&str], envs: &[(&str, String)]) {
    let dir = e2e_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir()
            && dir.join("node_modules/axe-core").is_dir(),
        "{}/node_modules is missing: run `npm ci` there (.ci/run does)",
        dir.display()
    );
    let chromium =
        std::env::var("SHOP_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is missing at {chromium}: apt-get install chromium (.ci/run does), or set SHOP_TEST_CHROMIUM"
    );
    let node = std::env::var("SHOP_TEST_NODE").unwrap_or_else(|_| "node".into());
    let run = tokio::process::Command::new(&node)
        .args(["--test", "--test-reporter=spec"])
        .args(files)
        .current_dir(&dir)
        .env("SHOP_TEST_CHROMIUM", &chromium)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser tests took more than 5 minutes")
        .unwrap_or_else(|e| panic!("cannot run `{node}` (Node.js 20 or later is needed): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node --test {files:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Node answers success for an empty run: make sure tests ran and none was skipped.
    assert!(!stdout.contains("ℹ tests 0"), "no test ran:\n{stdout}");
    assert!(
        stdout.contains("ℹ skipped 0"),
        "a test was skipped:\n{stdout}"
    );
    assert!(stdout.contains("ℹ fail 0"), "{stdout}");
    println!("{stdout}");
}

fn e2e_env(app: &TestApp) -> Vec<(&'static str, String)> {
    vec![
        ("SHOP_E2E_BASE", app.base.clone()),
        ("SHOP_E2E_ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_in_chromium() {
    let app = spawn_app(Backend::Sqlite).await;
    node_test(&["tests/storefront.test.mjs"], &e2e_env(&app)).await;
    app.check_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_in_chromium() {
    // The data platform is a closed port until the test opens it, and an event parks
    // after one failed delivery: the console shows it and retries it.
    let webhook = free_port();
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.data_platform_url = Some(format!("http://127.0.0.1:{webhook}/events"));
        c.outbox_max_attempts = 1;
    })
    .await;
    let mut env = e2e_env(&app);
    env.push(("SHOP_E2E_WEBHOOK_PORT", webhook.to_string()));
    node_test(&["tests/admin.test.mjs"], &env).await;
    app.check_invariants().await;
}

/// The front end's pure parts (the Prometheus parser, p99 from buckets, the messages
/// of both languages) under Node's test runner, without a browser.
#[tokio::test]
async fn front_end_unit_tests() {
    node_test(&["unit/metrics.test.mjs", "unit/messages.test.mjs"], &[]).await;
}
