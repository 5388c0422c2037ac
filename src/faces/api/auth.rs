//! Authentication: the bearer token of a request, checked in constant time against every
//! configured token, and the caller's scope.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::*;
use crate::config::{ApiConfig, Scope};

/// The caller of a request, as authenticated: the token's name and scope.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
}

impl Caller {
    /// `Ok` when the caller's token has `scope`; else a 403 problem. Endpoints that queue work
    /// call this with [`Scope::Write`].
    pub fn require(&self, scope: Scope) -> Result<(), Problem> {
        if self.scope >= scope {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the token {:?} has the read scope; this endpoint needs a write token",
                    self.name
                ),
            ))
        }
    }
}

/// The bearer token of `headers`, if any (the scheme name is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Finds the token among the configured ones, comparing with each in constant time.
fn caller(api: &ApiConfig, given: &str) -> Option<Caller> {
    let mut found = None;
    for t in &api.tokens {
        let same: bool = given
            .as_bytes()
            .ct_eq(t.token.expose_secret().as_bytes())
            .into();
        if same && found.is_none() {
            found = Some(Caller {
                name: t.name.clone(),
                scope: t.scope,
            });
        }
    }
    found
}

pub(super) async fn authenticate(
    State(st): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(given) = bearer(req.headers()) else {
        metrics::counter!("huoltosync_api_rejected_total").increment(1);
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "missing credentials: send Authorization: Bearer <token>",
        )
        .into_response();
    };
    let Some(caller) = caller(&st.api, given) else {
        metrics::counter!("huoltosync_api_rejected_total").increment(1);
        return Problem::new(StatusCode::UNAUTHORIZED, "the bearer token is not valid")
            .into_response();
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_token_may_not_write() {
        let read = Caller {
            name: "viewer".into(),
            scope: Scope::Read,
        };
        let write = Caller {
            name: "erp".into(),
            scope: Scope::Write,
        };
        assert!(read.require(Scope::Read).is_ok());
        let p = read.require(Scope::Write).unwrap_err();
        assert_eq!(p.status, 403);
        assert!(p.detail.contains("viewer"), "{}", p.detail);
        assert!(write.require(Scope::Write).is_ok());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bEaReR  abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
