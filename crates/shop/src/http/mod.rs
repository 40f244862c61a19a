//! Shared HTTP pieces: extractors that answer malformed input with the contract's
//! error shape (never axum's plain-text rejections), paging, idempotency.

pub mod idempotency;
pub mod limits;
pub mod server;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorCode};

/// A JSON body. Wrong content type → 415 `UNSUPPORTED_MEDIA_TYPE`; too large → 413
/// `PAYLOAD_TOO_LARGE`; anything but an object at the top, bad JSON, wrong types,
/// floats where integers belong, overflow, unknown fields → 400 `INVALID_REQUEST`.
///
/// The top must be an object because serde also reads a struct from a sequence of its
/// fields in order: without the check, `[100]` would be a charge of 100 won.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large()
            } else {
                ApiError::invalid(format!("could not read the body: {rejection}"))
            }
        })?;
        if !is_object(&bytes) {
            return Err(ApiError::invalid("the body must be a JSON object"));
        }
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
    }
}

/// Whether a JSON text is an object at the top (its first character past JSON's
/// whitespace is `{`); the parser checks the rest.
fn is_object(json: &[u8]) -> bool {
    json.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|b| *b == b'{')
}

/// A positive 64-bit id taken from the path. Anything else → 400 `INVALID_REQUEST`.
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: From<i64>> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::invalid(format!("invalid path: {e}")))?;
        parse_id(&raw).map(|id| PathId(T::from(id)))
    }
}

/// The named parameters of a path with several (`/users/{userId}/coupons/{id}`).
/// A malformed path → 400 `INVALID_REQUEST`.
pub struct PathIds(std::collections::HashMap<String, String>);

impl PathIds {
    /// The positive 64-bit id in parameter `name`; anything else → 400.
    pub fn get<T: From<i64>>(&self, name: &str) -> Result<T, ApiError> {
        let raw = self
            .0
            .get(name)
            .ok_or_else(|| ApiError::invalid(format!("the path has no `{name}`")))?;
        parse_id(raw).map(T::from)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<std::collections::HashMap<String, String>>::from_request_parts(
            parts, state,
        )
        .await
        .map(|p| PathIds(p.0))
        .map_err(|e| ApiError::invalid(format!("invalid path: {e}")))
    }
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::invalid(format!(
            "`{raw}` is not a valid id (a positive 64-bit integer)"
        ))),
    }
}

/// `?limit=` (1..=100, default 20) and `?cursor=` (opaque).
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub limit: i64,
    /// Items strictly after this key in the list's order.
    pub after: Option<i64>,
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PagingParams {
    /// Page size, 1..=100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page (URL-safe base64).
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

pub const DEFAULT_PAGE: i64 = 20;
pub const MAX_PAGE: i64 = 100;

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let params: PagingParams = serde_urlencoded_query(parts)?;
        let limit = match params.limit.as_deref() {
            None => DEFAULT_PAGE,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => return Err(ApiError::invalid(format!("limit must be 1..={MAX_PAGE}"))),
            },
        };
        let after = match params.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(decode_cursor(c)?),
        };
        Ok(Paging { limit, after })
    }
}

/// A query string parsed into `T`; malformed → 400 `INVALID_REQUEST`.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        serde_urlencoded_query(parts).map(Query)
    }
}

/// Parses the query string into `T`, refusing malformed ones with a 400.
fn serde_urlencoded_query<T: DeserializeOwned>(parts: &Parts) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::invalid(format!("invalid query: {e}")))
}

/// For an optional body field that may be left out but not sent as `null`
/// (`#[serde(default, deserialize_with = "crate::http::non_null")]`): `null` is 400.
pub fn non_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// For an optional body field where `null` means something (clear it): left out is
/// `None`, `null` is `Some(None)` (`#[serde(default, deserialize_with = ...)]`).
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

pub fn encode_cursor(key: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("k{key}"))
}

fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix('k').and_then(|n| n.parse::<i64>().ok()))
        .ok_or_else(|| ApiError::invalid("invalid cursor"))
}

/// A page of a list: `{"items": [...], "nextCursor": "..." | null}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `?cursor=` to get the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in list order; `key` gives
    /// the keyset value of an item.
    pub fn from_rows(rows: Vec<T>, paging: Paging, key: impl Fn(&T) -> i64) -> Self {
        Self::from_mapped_rows(rows, paging, key, |item| item)
    }

    /// As [`Page::from_rows`], for rows whose keyset value is not part of the item
    /// shown: `key` reads it from the row, `map` turns a row into an item.
    pub fn from_mapped_rows<R>(
        mut rows: Vec<R>,
        paging: Paging,
        key: impl Fn(&R) -> i64,
        map: impl FnMut(R) -> T,
    ) -> Self {
        let limit = paging.limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| encode_cursor(key(last)))
        } else {
            None
        };
        Page {
            items: rows.into_iter().map(map).collect(),
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_garbage_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        assert!(decode_cursor("not a cursor!").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("x1")).is_err());
    }

    #[test]
    fn only_an_object_is_a_body() {
        for good in ["{}", " \n\t{\"a\":1}", "\r\n{"] {
            assert!(is_object(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "",
            " ",
            "[100]",
            " [1]",
            "100",
            "null",
            "true",
            "\"x\"",
            "\u{feff}{}",
        ] {
            assert!(!is_object(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn ids_must_be_positive_i64() {
        assert_eq!(parse_id("7").unwrap(), 7);
        for bad in ["0", "-1", "1.5", "abc", "99999999999999999999", ""] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
    }
}
