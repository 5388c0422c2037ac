//! Reading a request body field by field, so a refusal names the field (`params.start`,
//! `customerLink.customer.firstName`) as a person would look for it.

use axum::body::Bytes;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Refusal;
use super::calendar;

pub(super) fn bad(text: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, text)
}

/// The body as JSON.
pub(super) fn json(body: &Bytes) -> Result<Value, Refusal> {
    serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))
}

/// The field at a dotted `path` of `v`, `None` when missing or null.
pub(super) fn opt<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, key| v.get(key))
        .filter(|v| !v.is_null())
}

/// The field at `path`, which must be there.
pub(super) fn req<'a>(v: &'a Value, path: &str) -> Result<&'a Value, Refusal> {
    opt(v, path).ok_or_else(|| bad(format!("missing field {path}")))
}

/// A time field (ISO 8601).
pub(super) fn time(v: &Value, path: &str) -> Result<DateTime<Utc>, Refusal> {
    let raw = req(v, path)?;
    raw.as_str()
        .and_then(calendar::parse_time)
        .ok_or_else(|| bad(format!("{path} is not an ISO 8601 time: {raw}")))
}

/// An optional string field.
pub(super) fn opt_str(v: &Value, path: &str) -> Result<Option<String>, Refusal> {
    match opt(v, path) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(format!("{path} must be a string, not {other}"))),
    }
}

/// A string field that must be there and not be empty.
pub(super) fn text(v: &Value, path: &str) -> Result<String, Refusal> {
    match opt_str(v, path)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(bad(format!("missing field {path}"))),
    }
}

/// An optional integer field.
pub(super) fn opt_int(v: &Value, path: &str) -> Result<Option<i64>, Refusal> {
    match opt(v, path) {
        None => Ok(None),
        Some(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad(format!("{path} must be an integer, not {n}"))),
    }
}

/// An optional boolean field.
pub(super) fn opt_bool(v: &Value, path: &str) -> Result<Option<bool>, Refusal> {
    match opt(v, path) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad(format!("{path} must be true or false, not {other}"))),
    }
}
