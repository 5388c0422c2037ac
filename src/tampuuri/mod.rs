//! The Tampuuri API boundary: a client per account that sends the six auth headers and turns
//! responses into [`crate::domain::model`] types. Wire types never leave this module. Sending,
//! throttling, retrying, the `Retry-After` cap, the body cap and metering are the shared
//! exchange's ([`crate::remote`]); this module decides what an answer means.
//!
//! Every call is billed and loads the property manager's own system, so the client is frugal:
//! reads are retried with exponential backoff and jitter on 5xx, 429 (honouring `Retry-After`
//! up to `[tampuuri] max_retry_after_secs`; a longer one fails the call for this cycle),
//! timeouts and connection errors, up to a bounded number of attempts; other 4xx are never
//! retried. Writes (state changes, creates) are retried only when the request surely was not
//! applied (it never connected, or Tampuuri answered 429); any other failure of a write is
//! returned as [`ApiError::OutcomeUnknown`] or [`ApiError::Server`] for the caller to resolve.
//! What an answer means is decided in one pure function, `classify`. An error quotes what
//! Tampuuri said (escaped, cut short, without the account's secrets) beside our hint.
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

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use crate::config::{AccountConfig, Config};
use crate::domain::action::{Action, Attachment, NewTicket};
use crate::domain::model::Ticket;
pub use crate::remote::CallCounts;
use crate::remote::{Body, Exchange, Failure, Kind, Meter, Profile, Reply, Request, server_words};
pub use wire::{
    Notification, PERSONAL_FIELDS, Page, RESERVED_FILTER_KEYS, StateAs, TicketShape, TotalAt,
    changed_fields, parse_notifications, reference_assignee,
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
    /// A 401 or 403: one of the six headers is wrong. Tampuuri's message says which, at times.
    #[error(
        "account {account}: Tampuuri refused the credentials (HTTP {status}): {message}; check what this account sends: customer_name (X-AsiakasNimi), the account name, its `name` (X-TiliNimi), username (X-Kayttajatunnus), api_key (X-TampuuriAvain) and password (X-Salasana)"
    )]
    Auth {
        account: String,
        status: u16,
        message: String,
    },
    /// A 429 on every attempt, or one asking a wait beyond `[tampuuri] max_retry_after_secs`.
    #[error(
        "account {account}: {endpoint}: rate limited by Tampuuri (HTTP 429{}): {message}",
        wait_asked(retry_after)
    )]
    RateLimited {
        account: String,
        endpoint: &'static str,
        retry_after: Option<Duration>,
        message: String,
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
    /// A 404; `detail` names the URL and quotes Tampuuri.
    #[error("account {account}: {endpoint}: not found (HTTP 404) at {detail}")]
    NotFound {
        account: String,
        endpoint: &'static str,
        detail: String,
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

/// `, Retry-After N s` when a 429 asked a wait.
pub(crate) fn wait_asked(retry_after: &Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |d| format!(", Retry-After {} s", d.as_secs()))
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

/// Installs rustls' `ring` crypto provider (see [`crate::remote::install_tls_provider`]).
pub use crate::remote::install_tls_provider;

/// Shared by all accounts' clients: the exchange (one connection pool per origin, one throttle
/// per API host) and how Tampuuri is called.
#[derive(Clone)]
pub struct Api {
    exchange: Exchange,
    profile: Arc<Profile>,
    software_version: String,
}

impl Api {
    /// The API of `config`, on an exchange of its own (a command's; the daemon's
    /// [`Api::on`] shares one).
    pub fn new(config: &Config) -> anyhow::Result<Api> {
        Api::on(config, Exchange::new(config)?)
    }

    /// The API of `config` on `exchange`. Refuses a config loaded without its secrets.
    pub fn on(config: &Config, exchange: Exchange) -> anyhow::Result<Api> {
        if !config.unread_secrets.is_empty() {
            anyhow::bail!(
                "{}: the config was loaded without its secrets ({}), so it cannot call Tampuuri",
                config.source.display(),
                config.unread_secrets.join(", ")
            );
        }
        Ok(Api {
            exchange,
            profile: Arc::new(Profile::tampuuri(config)),
            software_version: config.tampuuri.software_version.clone(),
        })
    }

    /// The exchange this API calls through, for the other remotes (Slotti) to share.
    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// A client for one account; accounts on the same host share its throttle and pool.
    pub fn client(&self, account: &AccountConfig) -> anyhow::Result<Client> {
        let base = reqwest::Url::parse(&account.base_url)?;
        // A value HTTP cannot carry (a newline in a password file) fails this account's calls,
        // not the building of every account's client.
        let headers = account_headers(account, &self.software_version);
        let hidden = [
            account.api_key.expose_secret(),
            account.password.expose_secret(),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
        Ok(Client {
            exchange: self.exchange.clone(),
            profile: self.profile.clone(),
            account: account.name.clone(),
            base,
            headers,
            hidden,
            meter: Meter::new(account.name.clone()),
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

/// The API as seen by one account.
pub struct Client {
    exchange: Exchange,
    profile: Arc<Profile>,
    account: String,
    base: reqwest::Url,
    /// The six headers, or why they cannot be sent.
    headers: Result<HeaderMap, String>,
    /// The key and the password: never in what an error quotes.
    hidden: Vec<String>,
    meter: Meter,
}

impl Client {
    pub fn account(&self) -> &str {
        &self.account
    }

    /// This account's calls, until they are recorded in the store ([`Meter::record`]).
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Calls sent and not yet recorded, for a report that has no store to meter them in.
    pub fn unrecorded_calls(&self) -> u64 {
        self.meter.unrecorded()
    }

    /// Requests that never reached Tampuuri (connection refused, DNS, TLS handshake, proxy)
    /// since the last call of this: not API calls, so never metered.
    pub fn take_unreached(&self) -> u64 {
        self.meter.take_unreached()
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
            // The relay hands a booking to `push::slotti`; it never reaches Tampuuri.
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

    /// One call through the exchange: its retry loop, with [`classify`] deciding what each
    /// answer means.
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
        // Credentials HTTP cannot carry: nothing is sent.
        let headers = self
            .headers
            .clone()
            .map_err(|detail| ApiError::Credentials {
                account: self.account.clone(),
                detail,
            })?;
        let mut request = Request::new(endpoint, method, url.clone(), &self.hidden);
        if let Some(b) = body {
            request = request.json(b);
        }
        request.headers.extend(headers);
        let call = Call {
            account: &self.account,
            endpoint,
            kind,
            max_response_bytes: self.profile.max_response_bytes,
            url: url.as_str(),
        };
        self.exchange
            .call(&self.profile, &self.meter, &request, |reply| {
                classify(&call, reply, &parse)
            })
            .await
    }
}

/// Who calls what, as [`classify`] needs it.
struct Call<'a> {
    account: &'a str,
    endpoint: &'static str,
    kind: Kind,
    max_response_bytes: u64,
    /// Named by a 404.
    url: &'a str,
}

/// `error` on a `call`, retried when it is transient and the call a read, or a write that
/// certainly had no effect (`not_applied`: it never connected, or Tampuuri refused it before
/// acting on it).
fn failure(call: &Call<'_>, error: ApiError, not_applied: bool) -> Failure<ApiError> {
    Failure {
        retry: error.is_transient() && (call.kind == Kind::Read || not_applied),
        error,
        retry_after: None,
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
) -> Result<T, Failure<ApiError>> {
    let (account, endpoint) = (call.account.to_owned(), call.endpoint);
    let fail = |error, not_applied| failure(call, error, not_applied);
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
/// with the server's own words from its body.
fn refusal(
    call: &Call<'_>,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Failure<ApiError> {
    let (account, endpoint) = (call.account.to_owned(), call.endpoint);
    let message = server_words(body);
    let code = status.as_u16();
    let (error, not_applied) = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
            ApiError::Auth {
                account,
                status: code,
                message,
            },
            true,
        ),
        StatusCode::TOO_MANY_REQUESTS => {
            let error = ApiError::RateLimited {
                account,
                endpoint,
                retry_after,
                message,
            };
            return Failure {
                retry_after,
                ..failure(call, error, true)
            };
        }
        StatusCode::NOT_FOUND => {
            // The list is the first call of every sync and check: a 404 there is the address.
            let hint = if endpoint == endpoint::SELAA {
                "; check [tampuuri] base_url (or the account's): Tampuuri's API is under /v10/api/, as in https://api.tampuuri.fi/v10/api/"
            } else {
                ""
            };
            let detail = format!("{}: {message}{hint}", call.url);
            (
                ApiError::NotFound {
                    account,
                    endpoint,
                    detail,
                },
                true,
            )
        }
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
    failure(call, error, not_applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::Answer;

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
            url: "http://tampuuri.example/v10/api/ilmoitukset/base64",
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
    fn a_refusal_quotes_the_server_and_names_every_header_that_could_be_wrong() {
        let said = "Virheellinen avain, tili, käyttäjätunnus tai salasana";
        let auth = decided(Kind::Read, answer(403, said)).1.unwrap();
        for part in [
            said,
            "HTTP 403",
            "customer_name (X-AsiakasNimi)",
            "account name",
            "X-TiliNimi",
            "username (X-Kayttajatunnus)",
            "api_key (X-TampuuriAvain)",
            "password (X-Salasana)",
        ] {
            assert!(auth.contains(part), "{part:?} not in {auth}");
        }
        let json = decided(
            Kind::Read,
            answer(401, r#"{"Message": "Otsake X-AsiakasNimi puuttuu"}"#),
        );
        assert!(json.1.unwrap().contains(": Otsake X-AsiakasNimi puuttuu;"));
        // A control character in the server's words reaches no terminal raw.
        let hostile = decided(Kind::Read, answer(400, "bad\x1b[2Jthing"))
            .1
            .unwrap();
        assert!(hostile.contains("bad\\x1b[2Jthing"), "{hostile}");
    }

    #[test]
    fn a_404_on_the_list_names_the_url_and_the_v10_api_suffix() {
        let url = "http://tampuuri.example/ilmoitukset/selaa";
        let call = |endpoint| Call {
            account: "acme",
            endpoint,
            kind: Kind::Read,
            max_response_bytes: 1000,
            url,
        };
        let said = r#"{"Message": "No HTTP resource was found"}"#;
        let list = classify(&call(endpoint::SELAA), answer(404, said), |_| Ok(()))
            .unwrap_err()
            .error
            .to_string();
        for part in [url, "No HTTP resource was found", "base_url", "/v10/api/"] {
            assert!(list.contains(part), "{part:?} not in {list}");
        }
        let write = classify(&call(endpoint::VASTAANOTA), answer(404, said), |_| Ok(()))
            .unwrap_err()
            .error
            .to_string();
        assert!(
            write.contains(url) && !write.contains("/v10/api/"),
            "{write}"
        );
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
}
