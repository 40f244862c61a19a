//! The browser front ends: the storefront at `/` and the admin console at `/admin`.
//!
//! Plain HTML, ES modules and CSS from `crates/shop/web/` (no bundler, nothing to build),
//! embedded in release builds; debug builds read that folder at run time, so the pages
//! can be edited without recompiling. Both pages are clients of the public HTTP API
//! only: this module serves files and nothing else. Every answer carries a
//! Content-Security-Policy without inline scripts or styles, `nosniff` and no referrer,
//! so data rendered by the pages can never run as code.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::{ApiError, ErrorCode};

#[derive(rust_embed::RustEmbed)]
#[folder = "web/"]
struct Assets;

/// Scripts, styles and everything else only from this origin; no inline code, no
/// framing, no plugins; API calls only to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// `/`, `/admin` and the files under `/static/`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(storefront))
        .route("/admin", get(admin))
        .route("/admin/", get(admin))
        .route("/static/{*path}", get(asset))
}

async fn storefront(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn admin(headers: HeaderMap) -> Response {
    serve("admin.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // Only plain relative names under static/: no `..`, no absolute or empty segments.
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.contains('\\'))
    {
        return missing();
    }
    serve(&format!("static/{path}"), &headers)
}

fn missing() -> Response {
    with_security_headers(ApiError::new(ErrorCode::NotFound, "no such file").into_response())
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return missing();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let (content_type, cache) = kind(path);
    let not_modified = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            file.data.into_owned(),
        )
            .into_response()
    };
    let headers = res.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    with_security_headers(res)
}

/// The content type and caching of a file, by its extension. Pages, scripts and styles
/// are revalidated on every load (`no-cache` with an ETag: a cheap 304), because their
/// names carry no version and a page must never run with the scripts of another
/// release; pictures may be kept for a day.
fn kind(path: &str) -> (&'static str, &'static str) {
    const REVALIDATE: &str = "no-cache";
    const DAY: &str = "public, max-age=86400";
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => ("text/html; charset=utf-8", REVALIDATE),
        Some("js" | "mjs") => ("text/javascript; charset=utf-8", REVALIDATE),
        Some("css") => ("text/css; charset=utf-8", REVALIDATE),
        Some("json") => ("application/json", REVALIDATE),
        Some("svg") => ("image/svg+xml", DAY),
        Some("png") => ("image/png", DAY),
        Some("ico") => ("image/x-icon", DAY),
        Some("woff2") => ("font/woff2", DAY),
        Some("txt") => ("text/plain; charset=utf-8", REVALIDATE),
        _ => ("application/octet-stream", REVALIDATE),
    }
}

fn with_security_headers(mut res: Response) -> Response {
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(kind("index.html").0, "text/html; charset=utf-8");
        assert_eq!(
            kind("static/js/shop/app.js").0,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(kind("static/css/site.css").0, "text/css; charset=utf-8");
        assert_eq!(
            kind("static/img/mug.svg"),
            ("image/svg+xml", "public, max-age=86400")
        );
        assert_eq!(kind("static/LICENSE").0, "application/octet-stream");
    }

    #[test]
    fn the_policy_allows_no_inline_script() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
    }
}
