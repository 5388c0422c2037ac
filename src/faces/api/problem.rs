//! Errors as RFC 9457 problems (`application/problem+json`), and the query-parameter helpers
//! that answer with them.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::*;

/// An RFC 9457 problem: the JSON body of every error answer (`application/problem+json`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What is wrong, naming the parameter, ticket or token.
    pub detail: String,
    /// With 410 from `changes`: the oldest `seq` still in the feed (resume with `after` one
    /// below it, after reading the tickets again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_seq: Option<i64>,
    /// Sent as the `Retry-After` header (seconds), not in the body.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            oldest_seq: None,
            retry_after: None,
        }
    }

    pub(super) fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    pub(super) fn internal(e: anyhow::Error) -> Problem {
        tracing::error!(error = format!("{e:#}"), "An API request failed.");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store could not answer; see the service's log",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    q.map(|Query(t)| t)
        .map_err(|e| Problem::bad_request(format!("bad query parameters: {}", e.body_text())))
}

pub(super) fn limit(given: Option<u32>) -> Result<u32, Problem> {
    match given.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(Problem::bad_request(format!(
            "limit {n} is out of range: give 1 to {MAX_LIMIT}"
        ))),
    }
}
