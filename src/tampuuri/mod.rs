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
//! What an answer means is decided in one pure function, `classify`; `Client::exchange` is the
//! mechanism (send, read the bounded body, meter) and `Client::call` the retry loop.
//!
//! Hostile or broken answers stay bounded: no redirect is followed (the credentials go to
//! `base_url` only; a 3xx to a read is an error naming its `Location`, to a write an unknown
//! outcome, since a server may act on a POST before redirecting), a body larger than
//! `[tampuuri] max_response_bytes` is not read past the cap, and a ticket fetched by id must be
//! that ticket. A request that never reached Tampuuri (refused, DNS, TLS, proxy) is not metered
//! as a call: it is counted apart ([`Client::take_unreached`]).
//!
//! Callers speak the model's terms: list the open tickets of a [`Query`] from an offset
//! ([`Client::list_open`]), get one ticket ([`Client::get_ticket`]), deliver an [`Action`]
//! ([`Client::push`], [`Client::create_ticket`]). Request bodies are built, and Tampuuri's field
//! names known, only in the private `wire` module; what other modules need of them (the
//! webhook payload, the reserved filter keys, the personal-data fields, the shape of a ticket
//! for the first-contact report) is offered here.

mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use crate::action::{Action, Attachment, NewTicket};
use crate::backoff::Backoff;
use crate::config::{AccountConfig, Config, RetryConfig};
use crate::model::Ticket;
use crate::store::Handle;
use crate::time;
pub use wire::{
    Notification, PERSONAL_FIELDS, Page, RESERVED_FILTER_KEYS, STATE_FIELD, StateAs, TicketShape,
    TotalAt, parse_notifications, reference_assignee,
};

/// Which open tickets to list: those assigned to `assignee_id` in `states` (one state or a
/// list, as the account's `state_filter` asks), `limit` a page, narrowed by the account's
/// extra filter fields.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub assignee_id: i64,
    pub states: &'a [String],
    pub limit: u32,
    pub extra_filter: &'a Map<String, Value>,
}

impl<'a> Query<'a> {
    /// The account's own tickets (its `contractor_id`) in `states`, `limit` a page.
    pub fn of(account: &'a AccountConfig, states: &'a [String], limit: u32) -> Query<'a> {
        Query {
            assignee_id: account.contractor_id,
            states,
            limit,
            extra_filter: &account.extra_filter,
        }
    }
}

/// How a ticket arrived (its state's form, its dates, the fields the mirror does not read),
/// for the first-contact report; `None` if its raw JSON is not an object.
pub fn ticket_shape(t: &Ticket) -> Option<TicketShape> {
    wire::ticket_shape(&t.raw_json)
}

/// A selaa response body as a [`Page`], for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn parse_page(body: &[u8]) -> Result<Page, String> {
    wire::parse_page(body)
}

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
    /// Whether Tampuuri acted on it cannot be told from the answer: a write so answered is
    /// checked against Tampuuri before it is sent again.
    #[error("account {account}: {endpoint}: the outcome is unknown: {detail}")]
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
    /// A read answered with a redirect, which is never followed.
    #[error(
        "account {account}: {endpoint}: Tampuuri answered HTTP {status}, a redirect to {location}; not followed (requests go to base_url only: check it)"
    )]
    Redirect {
        account: String,
        endpoint: &'static str,
        status: u16,
        location: String,
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
    #[error(
        "account {account}: {endpoint}: the response is larger than [tampuuri] max_response_bytes = {limit}; not read further"
    )]
    TooLarge {
        account: String,
        endpoint: &'static str,
        limit: u64,
    },
    /// A credential of this account cannot be sent in an HTTP header; nothing was sent.
    #[error("account {account}: {detail}; nothing was sent")]
    Credentials { account: String, detail: String },
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

/// Installs rustls' `ring` crypto provider as the process default. reqwest is built without a
/// provider of its own (to keep aws-lc, a large C build, out of the tree), and panics when it
/// builds a client while none is installed, even for plain `http://`. Call it before building
/// any `reqwest::Client`; [`Api::new`] does. Idempotent: a provider installed earlier is kept.
pub fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An error means another thread installed one in between, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Shared by all accounts' clients: one connection pool and one throttle per API host.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    throttles: Arc<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>>,
    max_rps: f64,
    retry: RetryConfig,
    software_version: String,
    max_response_bytes: u64,
}

impl Api {
    /// Builds the shared HTTP client from `[tampuuri]`. It follows no redirect: reqwest strips
    /// only `Authorization` on a cross-host hop, and our credentials are other headers.
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` are honoured (reqwest's default).
    pub fn new(config: &Config) -> anyhow::Result<Api> {
        if !config.unread_secrets.is_empty() {
            anyhow::bail!(
                "{}: the config was loaded without its secrets ({}), so it cannot call Tampuuri",
                config.source.display(),
                config.unread_secrets.join(", ")
            );
        }
        install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(config.tampuuri.timeout)
            .connect_timeout(config.tampuuri.timeout.min(Duration::from_secs(10)))
            .user_agent(config.tampuuri.software_version.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Api {
            http,
            throttles: Default::default(),
            max_rps: config.tampuuri.max_requests_per_second,
            retry: config.tampuuri.retry.clone(),
            software_version: config.tampuuri.software_version.clone(),
            max_response_bytes: config.tampuuri.max_response_bytes,
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
        // A value HTTP cannot carry (a newline in a password file) fails this account's calls,
        // not the building of every account's client.
        let headers = account_headers(account, &self.software_version);
        Ok(Client {
            http: self.http.clone(),
            account: account.name.clone(),
            base,
            headers,
            throttle,
            retry: self.retry.clone(),
            max_response_bytes: self.max_response_bytes,
            meter: Default::default(),
            unreached: Default::default(),
        })
    }
}

/// The six headers of one account, or what keeps one of them from being sent (never the value).
fn account_headers(account: &AccountConfig, software_version: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    let values: [(&'static str, &str, &str, bool); 6] = [
        (
            "x-tampuuriavain",
            "api_key",
            account.api_key.expose_secret(),
            true,
        ),
        (
            "x-asiakasnimi",
            "customer_name",
            &account.customer_name,
            false,
        ),
        (
            "x-ohjelmistoversio",
            "software_version",
            software_version,
            false,
        ),
        ("x-tilinimi", "name", &account.name, false),
        ("x-kayttajatunnus", "username", &account.username, false),
        (
            "x-salasana",
            "password",
            account.password.expose_secret(),
            true,
        ),
    ];
    for (name, key, value, sensitive) in values {
        let mut v = HeaderValue::from_str(value).map_err(|_| {
            format!(
                "the {key} holds a character an HTTP header cannot carry (a control character such as a newline?)"
            )
        })?;
        v.set_sensitive(sensitive);
        headers.insert(HeaderName::from_static(name), v);
    }
    Ok(headers)
}

/// Calls made, by endpoint template.
pub type CallCounts = BTreeMap<&'static str, u64>;

/// The API as seen by one account.
pub struct Client {
    http: reqwest::Client,
    account: String,
    base: reqwest::Url,
    /// The six headers, or why they cannot be sent.
    headers: Result<HeaderMap, String>,
    throttle: Option<Arc<DefaultDirectRateLimiter>>,
    retry: RetryConfig,
    max_response_bytes: u64,
    meter: Arc<Mutex<CallCounts>>,
    /// Requests that never reached Tampuuri (no connection): not billed, not in `meter`.
    unreached: Arc<AtomicU64>,
}

impl Client {
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Meters the calls sent since they were last recorded (retries included: each one is
    /// billed) into the store's `api_calls`, by endpoint, on today's Helsinki day, and answers
    /// how many there were. This is the only way calls leave the client's meter. If the store
    /// cannot take them they stay counted here, for the next time, and the error is returned.
    pub async fn record_calls(&self, store: &Handle) -> anyhow::Result<u64> {
        let calls = std::mem::take(&mut *self.meter());
        if calls.is_empty() {
            return Ok(0);
        }
        let n = calls.values().sum();
        let (name, day, kept) = (
            self.account.clone(),
            time::local_day(time::now()),
            calls.clone(),
        );
        if let Err(e) = store
            .call(move |s| s.record_calls(&name, &day, calls.iter().map(|(e, n)| (*e, *n))))
            .await
        {
            let mut meter = self.meter();
            for (endpoint, k) in kept {
                *meter.entry(endpoint).or_default() += k;
            }
            return Err(e.context(format!(
                "account {}: cannot meter {n} API call(s) in the store",
                self.account
            )));
        }
        Ok(n)
    }

    /// Calls sent and not yet recorded (see [`Client::record_calls`]), for a report that has
    /// no store to meter them in.
    pub fn unrecorded_calls(&self) -> u64 {
        self.meter().values().sum()
    }

    fn meter(&self) -> std::sync::MutexGuard<'_, CallCounts> {
        self.meter.lock().expect("meter poisoned")
    }

    /// Requests that never reached Tampuuri (connection refused, DNS, TLS handshake, proxy)
    /// since the last call of this: not API calls, so never metered.
    pub fn take_unreached(&self) -> u64 {
        self.unreached.swap(0, Ordering::Relaxed)
    }

    /// One page of the open tickets of `query`, from `offset` (`POST ilmoitukset/selaa`).
    pub async fn list_open(&self, query: &Query<'_>, offset: u64) -> Result<Page, ApiError> {
        let body = wire::selaa_body(
            query.assignee_id,
            query.states,
            offset,
            query.limit,
            query.extra_filter,
        );
        self.call(
            endpoint::SELAA,
            Method::POST,
            "ilmoitukset/selaa",
            Some(&body),
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
                let t = wire::parse_ticket(std::str::from_utf8(b).map_err(|e| e.to_string())?)?;
                // Applying another ticket's answer to this one would be worse than failing.
                if t.id != id {
                    return Err(format!(
                        "asked for ticket {id}, the answer is ticket {}; not applied",
                        t.id
                    ));
                }
                Ok(t)
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
    async fn transition(
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

    /// `POST ilmoitukset/base64`: creates a ticket (its details carrying the marker) with its
    /// attachments, answers its new id.
    pub async fn create_ticket(
        &self,
        ticket: &NewTicket,
        attachments: &[Attachment],
    ) -> Result<i64, ApiError> {
        let body = wire::create_body(ticket, attachments);
        self.call(
            endpoint::BASE64,
            Method::POST,
            "ilmoitukset/base64",
            Some(&body),
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
                return self.create_ticket(t, attachments).await.map(Some);
            }
            // The relay hands a booking to `slotti::relay`; it never reaches Tampuuri.
            Action::Book(_) => {
                return Err(ApiError::Rejected {
                    account: self.account.clone(),
                    endpoint: "-",
                    status: 0,
                    message: "a visit booking is delivered to Slotti, not to Tampuuri".into(),
                });
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

    /// One call: attempts until one succeeds or [`classify`] says its failure is final, at most
    /// `[tampuuri.retry] max_attempts` times, waiting the backoff delay (or `Retry-After`, when
    /// longer) in between.
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
        let call = Call {
            account: &self.account,
            endpoint,
            kind,
            max_response_bytes: self.max_response_bytes,
        };
        let delays = Backoff::jittered(self.retry.initial_delay, self.retry.max_delay);
        let mut attempt = 1;
        loop {
            let failure = match self
                .exchange(endpoint, method.clone(), url.clone(), body)
                .await
                .and_then(|reply| classify(&call, reply, &parse))
            {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            if !failure.retry || attempt >= self.retry.max_attempts {
                return Err(failure.error);
            }
            let delay = delays.delay(attempt);
            let delay = delay.max(failure.retry_after.unwrap_or_default());
            tracing::warn!(account = %self.account, endpoint, attempt, delay_ms = delay.as_millis() as u64, error = %failure.error, "Retrying a Tampuuri call.");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Sends one request and reads what comes back (a body up to its cap), metering it as a
    /// call unless it never connected. `Err` only when the account's credentials cannot be
    /// sent: then nothing is.
    async fn exchange(
        &self,
        endpoint: &'static str,
        method: Method,
        url: reqwest::Url,
        body: Option<&Value>,
    ) -> Result<Reply, Failure> {
        let headers = match &self.headers {
            Ok(h) => h.clone(),
            Err(detail) => {
                return Err(Failure {
                    error: ApiError::Credentials {
                        account: self.account.clone(),
                        detail: detail.clone(),
                    },
                    retry: false,
                    retry_after: None,
                });
            }
        };
        if let Some(t) = &self.throttle {
            t.until_ready().await;
        }
        let mut req = self.http.request(method, url).headers(headers);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            // A request that never connected reached nothing: it is not an API call.
            Err(e) if e.is_connect() => {
                self.unreached.fetch_add(1, Ordering::Relaxed);
                return Ok(Reply::Unreached(error_chain(e)));
            }
            Err(e) => {
                *self.meter().entry(endpoint).or_default() += 1;
                return Ok(Reply::Lost(error_chain(e)));
            }
        };
        *self.meter().entry(endpoint).or_default() += 1;
        let status = resp.status();
        let header = |name| resp.headers().get(name);
        let location = header(reqwest::header::LOCATION).map(show_header);
        let retry_after = header(reqwest::header::RETRY_AFTER).and_then(parse_retry_after);
        let body = if status.is_redirection() {
            // A redirect is judged by its status and Location alone.
            Body::Whole(Vec::new())
        } else {
            // An error answer is read for its message only, so a smaller cap does.
            let cap = if status.is_success() {
                self.max_response_bytes
            } else {
                self.max_response_bytes.min(ERROR_BODY_BYTES)
            };
            match read_body(resp, cap).await {
                Ok(b) => b,
                Err(e) => return Ok(Reply::Lost(error_chain(e))),
            }
        };
        Ok(Reply::Answer(Answer {
            status,
            location,
            retry_after,
            body,
        }))
    }
}

/// Who calls what, as [`classify`] needs it.
struct Call<'a> {
    account: &'a str,
    endpoint: &'static str,
    kind: Kind,
    max_response_bytes: u64,
}

/// What one request came to, as [`Client::exchange`] saw it.
enum Reply {
    /// It never connected (refused, DNS, TLS handshake, proxy): nothing reached Tampuuri.
    Unreached(String),
    /// It was sent, but no whole answer came back (a timeout, a lost connection, a body cut
    /// off): Tampuuri may have acted on it.
    Lost(String),
    /// An HTTP answer.
    Answer(Answer),
}

/// An HTTP answer, its body read up to its cap (a redirect's body is not read).
struct Answer {
    status: StatusCode,
    /// The `Location` header, as printable text.
    location: Option<String>,
    retry_after: Option<Duration>,
    body: Body,
}

/// One attempt's failure, and whether to try again.
#[derive(Debug)]
struct Failure {
    error: ApiError,
    /// Try again: a transient failure of a read, or of a write that surely was not applied
    /// (it never connected, or Tampuuri refused it before acting on it: a 429).
    retry: bool,
    /// Not before this (a 429's `Retry-After`).
    retry_after: Option<Duration>,
}

impl Failure {
    /// `error` on a `call`; `not_applied` when the request certainly had no effect (it never
    /// connected, or Tampuuri refused it before acting on it).
    fn new(call: &Call<'_>, error: ApiError, not_applied: bool) -> Failure {
        Failure {
            retry: error.is_transient() && (call.kind == Kind::Read || not_applied),
            error,
            retry_after: None,
        }
    }
}

/// The decision about one request: its value, or which [`ApiError`] it is and whether it may
/// be tried again. Pure (the mechanism is [`Client::exchange`]), so that every status class
/// is checked in a table.
///
/// A redirect is never followed (the credentials go to base_url's origin only). For a read it
/// is [`ApiError::Redirect`], final; for a write it is [`ApiError::OutcomeUnknown`]: a server
/// may act on a POST and then answer with a redirect (303 See Other), so the caller must check
/// Tampuuri before sending it again.
fn classify<T>(
    call: &Call<'_>,
    reply: Reply,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, Failure> {
    let (account, endpoint) = (call.account.to_owned(), call.endpoint);
    let fail = |error, not_applied| Failure::new(call, error, not_applied);
    let answer = match reply {
        Reply::Unreached(detail) => {
            let error = ApiError::Unreachable {
                account,
                endpoint,
                detail,
            };
            return Err(fail(error, true));
        }
        Reply::Lost(detail) => {
            let error = ApiError::OutcomeUnknown {
                account,
                endpoint,
                detail: format!("timeout or connection lost after sending: {detail}"),
            };
            return Err(fail(error, false));
        }
        Reply::Answer(a) => a,
    };
    let status = answer.status;
    if status.is_redirection() {
        let location = answer
            .location
            .unwrap_or_else(|| "(no Location)".to_owned());
        let status = status.as_u16();
        return Err(match call.kind {
            Kind::Read => {
                let error = ApiError::Redirect {
                    account,
                    endpoint,
                    status,
                    location,
                };
                fail(error, true)
            }
            Kind::Write => {
                let error = ApiError::OutcomeUnknown {
                    account,
                    endpoint,
                    detail: format!(
                        "HTTP {status}, a redirect to {location}, not followed (requests go to base_url only: check it); whether Tampuuri applied it first cannot be told"
                    ),
                };
                fail(error, false)
            }
        });
    }
    match (status.is_success(), answer.body) {
        (true, Body::Whole(bytes)) => parse(&bytes).map_err(|detail| {
            let error = ApiError::Malformed {
                account,
                endpoint,
                detail,
            };
            fail(error, false)
        }),
        (true, Body::Truncated(_)) => {
            let error = ApiError::TooLarge {
                account,
                endpoint,
                limit: call.max_response_bytes,
            };
            Err(fail(error, false))
        }
        (false, Body::Whole(bytes) | Body::Truncated(bytes)) => {
            Err(refusal(call, status, answer.retry_after, &bytes))
        }
    }
}

/// What an error status (4xx, 5xx, or any other that is neither success nor redirect) means,
/// with the message of its body.
fn refusal(
    call: &Call<'_>,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Failure {
    let (account, endpoint) = (call.account.to_owned(), call.endpoint);
    let message = wire::error_message(body);
    let code = status.as_u16();
    let (error, not_applied) = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
            ApiError::Auth {
                account,
                status: code,
            },
            true,
        ),
        StatusCode::TOO_MANY_REQUESTS => {
            let error = ApiError::RateLimited {
                account,
                endpoint,
                retry_after,
            };
            return Failure {
                retry_after,
                ..Failure::new(call, error, true)
            };
        }
        StatusCode::NOT_FOUND => (ApiError::NotFound { account, endpoint }, true),
        s if s.is_server_error() => (
            ApiError::Server {
                account,
                endpoint,
                status: code,
                message,
            },
            false,
        ),
        _ => (
            ApiError::Rejected {
                account,
                endpoint,
                status: code,
                message,
            },
            true,
        ),
    };
    Failure::new(call, error, not_applied)
}

/// How much of an error answer is read for its message.
pub(crate) const ERROR_BODY_BYTES: u64 = 64 * 1024;

/// A response body read up to a cap.
pub(crate) enum Body {
    Whole(Vec<u8>),
    /// The body is longer than the cap (by its `Content-Length`, or as it streamed); what was
    /// read up to the cap.
    Truncated(Vec<u8>),
}

/// Reads a body chunk by chunk, never holding more than `cap` bytes of it; a declared
/// `Content-Length` over the cap is refused before reading.
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    cap: u64,
) -> Result<Body, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > cap) {
        return Ok(Body::Truncated(Vec::new()));
    }
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp.chunk().await? {
        let room = cap.saturating_sub(out.len() as u64) as usize;
        if chunk.len() > room {
            out.extend_from_slice(&chunk[..room]);
            return Ok(Body::Truncated(out));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Body::Whole(out))
}

/// A header value from the server as printable text, bounded in length.
pub(crate) fn show_header(v: &HeaderValue) -> String {
    let text = String::from_utf8_lossy(v.as_bytes());
    let mut out: String = text
        .chars()
        .take(200)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// `Retry-After` as seconds or as an HTTP date.
pub(crate) fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(s).ok()?;
    (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// A reqwest error with its whole cause chain ("error sending request: client error
/// (Connect): tcp connect error: Connection refused (os error 111)"), without the URL.
pub(crate) fn error_chain(e: reqwest::Error) -> String {
    let timed_out = e.is_timeout();
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        // Some errors repeat their source's text in their own.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    if timed_out && !out.contains("timed out") {
        out.push_str(" (timed out)");
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

    /// An HTTP answer with a whole body.
    fn answer(status: u16, body: &str) -> Reply {
        Reply::Answer(Answer {
            status: StatusCode::from_u16(status).unwrap(),
            location: None,
            retry_after: None,
            body: Body::Whole(body.as_bytes().to_vec()),
        })
    }

    fn with_location(status: u16, location: &str) -> Reply {
        let Reply::Answer(a) = answer(status, "") else {
            unreachable!()
        };
        Reply::Answer(Answer {
            location: Some(location.into()),
            ..a
        })
    }

    /// What [`classify`] decided, in one line: `Ok(value)`, or the error's variant with
    /// `retry` and `Retry-After` in seconds.
    fn decided(kind: Kind, reply: Reply) -> (String, Option<String>) {
        let call = Call {
            account: "acme",
            endpoint: endpoint::BASE64,
            kind,
            max_response_bytes: 1000,
        };
        let parse = |b: &[u8]| -> Result<i64, String> {
            let v: Value = serde_json::from_slice(b).map_err(|e| e.to_string())?;
            v.get("Id").and_then(Value::as_i64).ok_or("no Id".into())
        };
        match classify(&call, reply, parse) {
            Ok(v) => (format!("Ok({v})"), None),
            Err(f) => {
                let debug = format!("{:?}", f.error);
                let variant = debug.split([' ', '{']).next().unwrap_or_default();
                let line = format!(
                    "{variant} retry={} after={:?}",
                    f.retry,
                    f.retry_after.map(|d| d.as_secs())
                );
                (line, Some(f.error.to_string()))
            }
        }
    }

    #[test]
    fn every_kind_of_answer_is_classified_for_reads_and_writes() {
        fn rate_limited(after: Option<u64>) -> Reply {
            let Reply::Answer(a) = answer(429, r#"{"Message": "liikaa"}"#) else {
                unreachable!()
            };
            Reply::Answer(Answer {
                retry_after: after.map(Duration::from_secs),
                ..a
            })
        }
        fn truncated() -> Reply {
            Reply::Answer(Answer {
                status: StatusCode::OK,
                location: None,
                retry_after: None,
                body: Body::Truncated(b"{\"Id\": 1".to_vec()),
            })
        }
        /// What came back, how a read ends, how a write ends.
        type Row = (&'static str, fn() -> Reply, &'static str, &'static str);
        let table: Vec<Row> = vec![
            ("200 good", || answer(200, r#"{"Id": 7}"#), "Ok(7)", "Ok(7)"),
            (
                "200 malformed",
                || answer(200, r#"{"Id": "#),
                "Malformed retry=true after=None",
                "Malformed retry=false after=None",
            ),
            (
                "201 without the expected field",
                || answer(201, "{}"),
                "Malformed retry=true after=None",
                "Malformed retry=false after=None",
            ),
            (
                "301 redirect",
                || with_location(301, "http://elsewhere.example/x"),
                "Redirect retry=false after=None",
                "OutcomeUnknown retry=false after=None",
            ),
            (
                "303 redirect",
                || with_location(303, "http://elsewhere.example/x"),
                "Redirect retry=false after=None",
                "OutcomeUnknown retry=false after=None",
            ),
            (
                "307 without Location",
                || answer(307, ""),
                "Redirect retry=false after=None",
                "OutcomeUnknown retry=false after=None",
            ),
            (
                "400",
                || answer(400, r#"{"Message": "Tila ei salli"}"#),
                "Rejected retry=false after=None",
                "Rejected retry=false after=None",
            ),
            (
                "401",
                || answer(401, ""),
                "Auth retry=false after=None",
                "Auth retry=false after=None",
            ),
            (
                "403",
                || answer(403, "Virheellinen avain"),
                "Auth retry=false after=None",
                "Auth retry=false after=None",
            ),
            (
                "404",
                || answer(404, ""),
                "NotFound retry=false after=None",
                "NotFound retry=false after=None",
            ),
            (
                "409",
                || answer(409, r#"{"message": "ristiriita"}"#),
                "Rejected retry=false after=None",
                "Rejected retry=false after=None",
            ),
            (
                "422",
                || answer(422, "{}"),
                "Rejected retry=false after=None",
                "Rejected retry=false after=None",
            ),
            (
                "429 with Retry-After",
                || rate_limited(Some(3)),
                "RateLimited retry=true after=Some(3)",
                "RateLimited retry=true after=Some(3)",
            ),
            (
                "429 without Retry-After",
                || rate_limited(None),
                "RateLimited retry=true after=None",
                "RateLimited retry=true after=None",
            ),
            (
                "500",
                || answer(500, r#"{"Message": "kaatui"}"#),
                "Server retry=true after=None",
                "Server retry=false after=None",
            ),
            (
                "503",
                || answer(503, ""),
                "Server retry=true after=None",
                "Server retry=false after=None",
            ),
            (
                "200 over max_response_bytes",
                truncated,
                "TooLarge retry=false after=None",
                "TooLarge retry=false after=None",
            ),
            (
                "never connected",
                || Reply::Unreached("connection refused".into()),
                "Unreachable retry=true after=None",
                "Unreachable retry=true after=None",
            ),
            (
                "sent, answer lost",
                || Reply::Lost("operation timed out".into()),
                "OutcomeUnknown retry=true after=None",
                "OutcomeUnknown retry=false after=None",
            ),
        ];
        for (what, reply, read, write) in table {
            assert_eq!(decided(Kind::Read, reply()).0, read, "{what}, as a read");
            assert_eq!(decided(Kind::Write, reply()).0, write, "{what}, as a write");
        }
    }

    #[test]
    fn an_answers_message_names_the_account_the_endpoint_and_what_the_server_said() {
        let msg = |kind, reply| decided(kind, reply).1.unwrap();
        let read = msg(Kind::Read, with_location(307, "http://elsewhere.example/x"));
        assert!(
            read.contains("acme")
                && read.contains("HTTP 307, a redirect to http://elsewhere.example/x")
                && read.contains("base_url"),
            "{read}"
        );
        let write = msg(
            Kind::Write,
            with_location(303, "http://elsewhere.example/x"),
        );
        assert!(
            write.contains("the outcome is unknown")
                && write.contains("HTTP 303, a redirect to http://elsewhere.example/x")
                && write.contains("not followed"),
            "{write}"
        );
        assert!(msg(Kind::Read, answer(307, "")).contains("(no Location)"));
        let rejected = msg(Kind::Write, answer(409, r#"{"Message": "Tila ei salli"}"#));
        assert!(
            rejected.contains("HTTP 409") && rejected.contains("Tila ei salli"),
            "{rejected}"
        );
        let server = msg(Kind::Read, answer(502, "bad gateway"));
        assert!(
            server.contains("HTTP 502") && server.contains("bad gateway"),
            "{server}"
        );
        let lost = msg(Kind::Write, Reply::Lost("operation timed out".into()));
        assert!(
            lost.contains("timeout or connection lost after sending: operation timed out"),
            "{lost}"
        );
        let large = msg(
            Kind::Read,
            Reply::Answer(Answer {
                status: StatusCode::OK,
                location: None,
                retry_after: None,
                body: Body::Truncated(Vec::new()),
            }),
        );
        assert!(large.contains("max_response_bytes = 1000"), "{large}");
    }

    #[test]
    fn the_ring_provider_is_installed_once_and_builds_an_https_client() {
        install_tls_provider();
        install_tls_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("a provider");
        assert!(!provider.cipher_suites.is_empty());
        let http = reqwest::Client::builder().build().expect("client builds");
        let req = http.get("https://tampuuri.example/api/").build().unwrap();
        assert_eq!(req.url().scheme(), "https");
    }
}
