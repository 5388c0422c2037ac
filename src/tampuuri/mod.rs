//! The Tampuuri API boundary: an HTTP client per account that sends the six auth headers,
//! throttles, retries what is safe to retry, meters every call, and turns responses into
//! [`crate::model`] types. Wire types never leave this module.
//!
//! Every call is billed and loads the property manager's own system, so the client is frugal:
//! reads are retried with exponential backoff and jitter on 5xx, 429 (honouring `Retry-After`),
//! timeouts and connection errors, up to a bounded number of attempts; other 4xx are never
//! retried. Writes (state changes, creates) are retried only when the request surely was not
//! applied (it never connected, or Tampuuri answered 429); any other failure of a write is
//! returned as [`ApiError::OutcomeUnknown`] or [`ApiError::Server`] for the caller to resolve.

pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::action::{Action, Attachment};
use crate::config::{AccountConfig, Config, RetryConfig};
use crate::model::Ticket;
pub use wire::Page;

/// Route templates, as metered in the store and counted by the simulator.
pub mod endpoint {
    pub const SELAA: &str = "POST ilmoitukset/selaa";
    pub const GET: &str = "GET ilmoitukset/{id}";
    pub const VASTAANOTA: &str = "POST ilmoitukset/{id}/vastaanota";
    pub const ODOTUKSEEN: &str = "POST ilmoitukset/{id}/odotukseen";
    pub const KUITTAA: &str = "POST ilmoitukset/{id}/kuittaatehdyksi";
    pub const BASE64: &str = "POST ilmoitukset/base64";
}

/// What went wrong with a call, as the caller needs to branch on it. Messages name the account
/// and the endpoint, and never carry a secret.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "account {account}: Tampuuri refused the credentials (HTTP {status}): check the API key, username and password of this account"
    )]
    Auth { account: String, status: u16 },
    #[error("account {account}: {endpoint}: rate limited by Tampuuri (HTTP 429) on every attempt")]
    RateLimited {
        account: String,
        endpoint: &'static str,
        retry_after: Option<Duration>,
    },
    #[error("account {account}: {endpoint}: Tampuuri failed (HTTP {status}): {message}")]
    Server {
        account: String,
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    #[error("account {account}: {endpoint}: cannot reach Tampuuri: {detail}")]
    Unreachable {
        account: String,
        endpoint: &'static str,
        detail: String,
    },
    #[error(
        "account {account}: {endpoint}: the outcome is unknown (timeout or connection lost after sending): {detail}"
    )]
    OutcomeUnknown {
        account: String,
        endpoint: &'static str,
        detail: String,
    },
    #[error(
        "account {account}: {endpoint}: Tampuuri rejected the request (HTTP {status}): {message}"
    )]
    Rejected {
        account: String,
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    #[error("account {account}: {endpoint}: not found (HTTP 404)")]
    NotFound {
        account: String,
        endpoint: &'static str,
    },
    #[error("account {account}: {endpoint}: unreadable response: {detail}")]
    Malformed {
        account: String,
        endpoint: &'static str,
        detail: String,
    },
}

impl ApiError {
    /// Whether trying again later may succeed (a permanent rejection or bad credentials won't).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. }
                | ApiError::Server { .. }
                | ApiError::Unreachable { .. }
                | ApiError::OutcomeUnknown { .. }
                | ApiError::Malformed { .. }
        )
    }
}

/// Whether a call may be repeated blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A read: any transient failure is retried.
    Read,
    /// A change: retried only when it surely was not applied.
    Write,
}

/// Shared by all accounts' clients: one connection pool and one throttle per API host.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    throttles: Arc<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>>,
    max_rps: f64,
    retry: RetryConfig,
    software_version: String,
}

impl Api {
    /// Builds the shared HTTP client from `[tampuuri]`.
    pub fn new(config: &Config) -> anyhow::Result<Api> {
        if !config.unread_secrets.is_empty() {
            anyhow::bail!(
                "{}: the config was loaded without its secrets ({}), so it cannot call Tampuuri",
                config.source.display(),
                config.unread_secrets.join(", ")
            );
        }
        let http = reqwest::Client::builder()
            .timeout(config.tampuuri.timeout)
            .connect_timeout(config.tampuuri.timeout.min(Duration::from_secs(10)))
            .user_agent(config.tampuuri.software_version.clone())
            .build()?;
        Ok(Api {
            http,
            throttles: Default::default(),
            max_rps: config.tampuuri.max_requests_per_second,
            retry: config.tampuuri.retry.clone(),
            software_version: config.tampuuri.software_version.clone(),
        })
    }

    /// A client for one account; accounts on the same host share its throttle.
    pub fn client(&self, account: &AccountConfig) -> anyhow::Result<Client> {
        let base = reqwest::Url::parse(&account.base_url)?;
        let host = base.host_str().unwrap_or_default().to_owned();
        let throttle = (self.max_rps > 0.0).then(|| {
            let mut map = self.throttles.lock().expect("throttle map poisoned");
            map.entry(host)
                .or_insert_with(|| {
                    let period = Duration::from_secs_f64(1.0 / self.max_rps);
                    let quota = Quota::with_period(period).expect("a positive period");
                    Arc::new(RateLimiter::direct(quota))
                })
                .clone()
        });
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: &str, sensitive: bool| -> anyhow::Result<()> {
            let mut v = HeaderValue::from_str(value).map_err(|_| {
                anyhow::anyhow!(
                    "account {}: the value for header {name} has characters HTTP cannot carry",
                    account.name
                )
            })?;
            v.set_sensitive(sensitive);
            headers.insert(HeaderName::from_static(name), v);
            Ok(())
        };
        put("x-tampuuriavain", account.api_key.expose_secret(), true)?;
        put("x-asiakasnimi", &account.customer_name, false)?;
        put("x-ohjelmistoversio", &self.software_version, false)?;
        put("x-tilinimi", &account.name, false)?;
        put("x-kayttajatunnus", &account.username, false)?;
        put("x-salasana", account.password.expose_secret(), true)?;
        Ok(Client {
            http: self.http.clone(),
            account: account.name.clone(),
            base,
            headers,
            throttle,
            retry: self.retry.clone(),
            meter: Default::default(),
        })
    }
}

/// Calls made, by endpoint template.
pub type CallCounts = BTreeMap<&'static str, u64>;

/// The API as seen by one account.
pub struct Client {
    http: reqwest::Client,
    account: String,
    base: reqwest::Url,
    headers: HeaderMap,
    throttle: Option<Arc<DefaultDirectRateLimiter>>,
    retry: RetryConfig,
    meter: Arc<Mutex<CallCounts>>,
}

/// One attempt's failure, before it is decided whether to try again.
struct Failure {
    error: ApiError,
    /// The request certainly had no effect (no connection, or 429).
    not_applied: bool,
    retry_after: Option<Duration>,
}

impl Client {
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Calls sent since the last [`Client::take_calls`], by endpoint (retries included: each
    /// one is billed).
    pub fn take_calls(&self) -> CallCounts {
        std::mem::take(&mut *self.meter.lock().expect("meter poisoned"))
    }

    /// `POST ilmoitukset/selaa` with this body.
    pub async fn selaa(&self, body: &Value) -> Result<Page, ApiError> {
        self.call(
            endpoint::SELAA,
            Method::POST,
            "ilmoitukset/selaa",
            Some(body),
            Kind::Read,
            wire::parse_page,
        )
        .await
    }

    /// `GET ilmoitukset/{id}`; `None` when Tampuuri says it does not exist.
    pub async fn get_ticket(&self, id: i64) -> Result<Option<Ticket>, ApiError> {
        let path = format!("ilmoitukset/{id}");
        match self
            .call(endpoint::GET, Method::GET, &path, None, Kind::Read, |b| {
                wire::parse_ticket(std::str::from_utf8(b).map_err(|e| e.to_string())?)
            })
            .await
        {
            Ok(t) => Ok(Some(t)),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A workflow transition, `POST ilmoitukset/{id}/{action}` (`vastaanota`, `odotukseen`,
    /// `kuittaatehdyksi`).
    pub async fn transition(
        &self,
        endpoint: &'static str,
        id: i64,
        action: &str,
        body: &Value,
    ) -> Result<(), ApiError> {
        let path = format!("ilmoitukset/{id}/{action}");
        self.call(
            endpoint,
            Method::POST,
            &path,
            Some(body),
            Kind::Write,
            |_| Ok(()),
        )
        .await
    }

    /// `POST ilmoitukset/base64`: creates a ticket, answers its new id.
    pub async fn create_ticket(&self, body: &Value) -> Result<i64, ApiError> {
        self.call(
            endpoint::BASE64,
            Method::POST,
            "ilmoitukset/base64",
            Some(body),
            Kind::Write,
            |b| {
                let v: Value =
                    serde_json::from_slice(b).map_err(|e| format!("invalid JSON: {e}"))?;
                v.get("Id")
                    .or_else(|| v.get("id"))
                    .and_then(Value::as_i64)
                    .ok_or_else(|| "the answer has no Id".to_owned())
            },
        )
        .await
    }

    /// Delivers one action: a transition answers `None`, a create the new ticket's id.
    pub async fn push(
        &self,
        ticket_id: Option<i64>,
        action: &Action,
        attachments: &[Attachment],
    ) -> Result<Option<i64>, ApiError> {
        let (endpoint, segment) = match action {
            Action::Accept { .. } => (endpoint::VASTAANOTA, "vastaanota"),
            Action::Hold { .. } => (endpoint::ODOTUKSEEN, "odotukseen"),
            Action::Done { .. } => (endpoint::KUITTAA, "kuittaatehdyksi"),
            Action::Create(t) => {
                return self
                    .create_ticket(&wire::create_body(t, attachments))
                    .await
                    .map(Some);
            }
        };
        let id = ticket_id.ok_or_else(|| ApiError::Rejected {
            account: self.account.clone(),
            endpoint,
            status: 0,
            message: "no ticket id for a transition".into(),
        })?;
        self.transition(endpoint, id, segment, &wire::transition_body(action))
            .await
            .map(|()| None)
    }

    async fn call<T>(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        kind: Kind,
        parse: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, ApiError> {
        let url = self.base.join(path).map_err(|e| ApiError::Unreachable {
            account: self.account.clone(),
            endpoint,
            detail: format!("bad URL: {e}"),
        })?;
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.retry.initial_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(self.retry.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
            .build();
        let mut attempt = 1;
        loop {
            let failure = match self
                .attempt(endpoint, method.clone(), url.clone(), body, &parse)
                .await
            {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            let retryable =
                failure.error.is_transient() && (kind == Kind::Read || failure.not_applied);
            let Some(delay) = retryable.then(|| delays.next()).flatten() else {
                return Err(failure.error);
            };
            let delay = delay.max(failure.retry_after.unwrap_or_default());
            tracing::warn!(account = %self.account, endpoint, attempt, delay_ms = delay.as_millis() as u64, error = %failure.error, "Retrying a Tampuuri call.");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt<T>(
        &self,
        endpoint: &'static str,
        method: Method,
        url: reqwest::Url,
        body: Option<&Value>,
        parse: &impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, Failure> {
        if let Some(t) = &self.throttle {
            t.until_ready().await;
        }
        *self
            .meter
            .lock()
            .expect("meter poisoned")
            .entry(endpoint)
            .or_default() += 1;
        let account = || self.account.clone();
        let mut req = self.http.request(method, url).headers(self.headers.clone());
        if let Some(b) = body {
            req = req.json(b);
        }
        let fail = |error, not_applied| Failure {
            error,
            not_applied,
            retry_after: None,
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Err(fail(
                    ApiError::Unreachable {
                        account: account(),
                        endpoint,
                        detail: e.without_url().to_string(),
                    },
                    true,
                ));
            }
            Err(e) => {
                return Err(fail(
                    ApiError::OutcomeUnknown {
                        account: account(),
                        endpoint,
                        detail: error_chain(&e),
                    },
                    false,
                ));
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(parse_retry_after);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Err(fail(
                    ApiError::OutcomeUnknown {
                        account: account(),
                        endpoint,
                        detail: error_chain(&e),
                    },
                    false,
                ));
            }
        };
        if status.is_success() {
            return parse(&bytes).map_err(|detail| {
                fail(
                    ApiError::Malformed {
                        account: account(),
                        endpoint,
                        detail,
                    },
                    false,
                )
            });
        }
        let message = wire::error_message(&bytes);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => fail(
                ApiError::Auth {
                    account: account(),
                    status: status.as_u16(),
                },
                true,
            ),
            StatusCode::TOO_MANY_REQUESTS => Failure {
                error: ApiError::RateLimited {
                    account: account(),
                    endpoint,
                    retry_after,
                },
                not_applied: true,
                retry_after,
            },
            StatusCode::NOT_FOUND => fail(
                ApiError::NotFound {
                    account: account(),
                    endpoint,
                },
                true,
            ),
            s if s.is_server_error() => fail(
                ApiError::Server {
                    account: account(),
                    endpoint,
                    status: s.as_u16(),
                    message,
                },
                false,
            ),
            s => fail(
                ApiError::Rejected {
                    account: account(),
                    endpoint,
                    status: s.as_u16(),
                    message,
                },
                true,
            ),
        })
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(s).ok()?;
    (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// A reqwest error with its causes, without the URL's query (there are no secrets in our URLs,
/// but the message stays short).
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("3")),
            Some(Duration::from_secs(3))
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = parse_retry_after(&HeaderValue::from_str(&later).unwrap()).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }
}
