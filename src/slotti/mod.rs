//! The Slotti boundary: an HTTP client (its `[slotti]` section is the config's) for its two
//! APIs, the booking page's `booking/{tili}/api/v2/` (services, resources, free times, new
//! bookings) and the account's `api/v1/` (bookings, customers, webhooks). Slotti's wire types
//! stay in the private `wire` module; callers get the types below.
//!
//! Like [`crate::tampuuri`], this is a client and a wire format only: what is done with
//! visits (booking, telling Tampuuri, reconciling, processing webhook deliveries) is
//! [`crate::engine::visits`]'s, the delivery of a queued booking is the relay's (`crate::engine::push`), and
//! the webhook receiver is the listener's (`crate::faces::webhook`). Nothing here imports the store.
//!
//! The client calls through the shared exchange ([`crate::remote`]), with the Tampuuri
//! client's standard: a timeout on every request, the per-host throttle, reads retried with the
//! one backoff rule ([`crate::domain::backoff`]) on 5xx, 429 (honouring `Retry-After` up to
//! `[slotti] max_retry_after_secs`; a longer one ends the call with the error),
//! timeouts and connection errors, up to `[tampuuri.retry] max_attempts`; a write (a booking, a
//! webhook registration or deletion) is resent only when it surely did not reach Slotti (it
//! never connected, or a 429). Any other failure of a write is [`SlottiError::InDoubt`]: the
//! caller looks (`GET bookings`, `GET webhooks`) before sending it again. No redirect is
//! followed, bodies are read up to `[tampuuri] max_response_bytes`, an unreadable answer is an
//! error naming its endpoint and quoting Slotti's words. Calls are metered per endpoint into
//! `api_calls` under [`METER_ACCOUNT`] (shown by `status`; Slotti is not billed by `cost`);
//! requests that never connected are counted apart ([`Client::take_unreached`]).
//!
//! Authentication: the seed's "Autentikointi" covers Slotti's interfaces: HTTP Basic with the API
//! key as the user name and no password. It is sent on both APIs (both live on `base_url`'s
//! origin, so the key never goes anywhere else); `api/v1/` requires it. The key never appears
//! in an error: a body excerpt that quotes it has it replaced by `***`.
//!
//! Assumed, since the seed is silent: a taken slot is refused with 409, or with 400/422 whose
//! body says so (`taken`, `not available`, `varattu`, `ei vapaa`…): [`SlottiError::SlotTaken`].
//! The answer to `POST bookings/` is read as a booking object when it is one; any other 2xx
//! body means "booked, guid unknown".

mod wire;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, Utc};
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::config::SlottiConfig;
pub use crate::remote::CallCounts;
use crate::remote::{
    Body, Exchange, Failure, Kind, Meter, Profile, Reply, Request, scrub, server_words,
};

/// Webhook deliveries' payloads, read into this module's types.
pub use wire::{parse_deleted_guid, parse_event_booking};

/// The `account` of Slotti's calls in `api_calls`; no `[[accounts]]` entry may have this name
/// when `[slotti]` is set (the loader refuses it).
pub const METER_ACCOUNT: &str = crate::config::keys::slotti::METER_ACCOUNT;

/// The zone visits are read in: `[slotti] timezone`, else Europe/Helsinki (its default).
pub fn zone(config: &Config) -> chrono_tz::Tz {
    config
        .slotti
        .as_ref()
        .map_or(chrono_tz::Europe::Helsinki, |s| s.timezone)
}

/// `GET customers` returns at most this many per page (the seed's default and maximum).
pub const MAX_CUSTOMERS_LIMIT: u32 = 20;

/// The webhook topics `slotti webhook register` asks for.
pub const TOPICS: [&str; 3] = ["booking.created", "booking.modified", "booking.deleted"];

/// Route templates, as metered in `api_calls`.
pub mod endpoint {
    pub const SERVICES: &str = "GET booking/services";
    pub const RESOURCES: &str = "GET booking/resources";
    pub const AVAILABILITY: &str = "POST booking/bookings/serviceavailability";
    pub const BOOK: &str = "POST booking/bookings";
    pub const BOOKINGS: &str = "GET api/bookings";
    pub const CUSTOMERS: &str = "GET api/customers";
    pub const WEBHOOK_CREATE: &str = "POST api/webhooks";
    pub const WEBHOOKS: &str = "GET api/webhooks";
    pub const WEBHOOK_DELETE: &str = "DELETE api/webhooks/{guid}";
}

/// A service Slotti offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub guid: String,
    /// The Finnish name (else the first translation's).
    pub name: String,
    pub duration_minutes: Option<u32>,
    /// The resources that provide it.
    pub provider_guids: Vec<String>,
    pub only_bookable_by_phone: bool,
}

/// A resource (a technician).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    pub guid: String,
    pub id: i64,
    pub name: String,
}

/// A free time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    pub resource_guid: String,
    pub resource_id: i64,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
}

/// A booking as `GET bookings` has it (customer data is left in `raw` only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Booking {
    pub guid: String,
    pub resource_guid: Option<String>,
    pub created: Option<String>,
    pub modified: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub info: Option<String>,
    pub private_notes: Option<String>,
    pub service_guids: Vec<String>,
    /// The booking object as Slotti sent it.
    pub raw: Value,
}

/// The resident a booking is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// `fi` unless said otherwise.
    pub language: String,
}

/// A new booking: a free time ([`Slot`]) of one resource, for one resident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingRequest {
    pub resource_id: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub customer: Contact,
    /// What whoever reads the calendar sees (it carries the correlation marker).
    pub info: Option<String>,
    pub service_guid: String,
    pub duration_minutes: u32,
    pub any_provider: bool,
}

/// A customer of `GET customers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub guid: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// One page of `GET customers`: how many match in all, and this page's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerPage {
    pub count: u64,
    pub items: Vec<Customer>,
}

/// A registered webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    pub guid: String,
    #[serde(rename = "deliveryUrl")]
    pub delivery_url: String,
    pub topics: Vec<String>,
}

/// A webhook to register.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub delivery_url: reqwest::Url,
    pub topics: Vec<String>,
    /// For `X-Slotti-Digest`.
    pub secret: Option<SecretString>,
    pub auth_user: Option<String>,
    pub auth_password: Option<SecretString>,
}

/// What went wrong with a Slotti call, as the caller branches on it: transient (try later),
/// in doubt (a write that may have reached Slotti: look before resending) or permanent.
/// Messages name the endpoint and quote at most a short excerpt of Slotti's answer; never the
/// API key.
#[derive(Debug, thiserror::Error)]
pub enum SlottiError {
    #[error(
        "Slotti: {endpoint}: the API key was refused (HTTP {status}): {message}; check [slotti] api_key"
    )]
    Auth {
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    /// A 429 on every attempt, or one asking a wait beyond `[slotti] max_retry_after_secs`.
    #[error(
        "Slotti: {endpoint}: rate limited (HTTP 429{}): {message}",
        crate::tampuuri::wait_asked(retry_after)
    )]
    RateLimited {
        endpoint: &'static str,
        retry_after: Option<Duration>,
        message: String,
    },
    /// A read that failed on Slotti's side on every attempt.
    #[error("Slotti: {endpoint}: Slotti failed (HTTP {status}): {message}")]
    Server {
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    /// It never connected: nothing reached Slotti.
    #[error("Slotti: {endpoint}: cannot reach Slotti: {detail}")]
    Unreachable {
        endpoint: &'static str,
        detail: String,
    },
    /// A read sent whose answer never came whole (a timeout, a lost connection).
    #[error("Slotti: {endpoint}: no answer: {detail}")]
    NoAnswer {
        endpoint: &'static str,
        detail: String,
    },
    /// A write that may have reached Slotti (a timeout or lost connection after sending, a 5xx,
    /// a redirect): look before sending it again.
    #[error("Slotti: {endpoint}: the outcome is unknown (it may have reached Slotti): {detail}")]
    InDoubt {
        endpoint: &'static str,
        /// The HTTP status, when one came back.
        status: Option<u16>,
        detail: String,
    },
    /// The booking's time is no longer free: ask for availability again.
    #[error("Slotti: {endpoint}: the time is not free any more (HTTP {status}): {message}")]
    SlotTaken {
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    #[error("Slotti: {endpoint}: Slotti rejected the request (HTTP {status}): {message}")]
    Rejected {
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    /// A 404; `detail` names the URL, quotes Slotti, and on the booking page names
    /// `[slotti] booking_account`.
    #[error("Slotti: {endpoint}: not found (HTTP 404) at {detail}")]
    NotFound {
        endpoint: &'static str,
        detail: String,
    },
    #[error(
        "Slotti: {endpoint}: Slotti answered HTTP {status}, a redirect to {location}; not followed (requests go to [slotti] base_url only: check it)"
    )]
    Redirect {
        endpoint: &'static str,
        status: u16,
        location: String,
    },
    #[error("Slotti: {endpoint}: unreadable response: {detail}")]
    Malformed {
        endpoint: &'static str,
        detail: String,
    },
    #[error(
        "Slotti: {endpoint}: the response is larger than [tampuuri] max_response_bytes = {limit}; not read further"
    )]
    TooLarge { endpoint: &'static str, limit: u64 },
    /// The request cannot be made (a bad argument, a key HTTP cannot carry); nothing was sent.
    #[error("Slotti: {endpoint}: {detail}; nothing was sent")]
    Invalid {
        endpoint: &'static str,
        detail: String,
    },
}

impl SlottiError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SlottiError::RateLimited { .. }
                | SlottiError::Server { .. }
                | SlottiError::Unreachable { .. }
                | SlottiError::NoAnswer { .. }
                | SlottiError::InDoubt { .. }
                | SlottiError::Malformed { .. }
        )
    }

    /// Whether a write may have reached Slotti: look before resending it.
    pub fn in_doubt(&self) -> bool {
        matches!(self, SlottiError::InDoubt { .. })
    }
}

/// A Slotti client for one `[slotti]` section, on the shared exchange.
pub struct Client {
    exchange: Exchange,
    profile: Arc<Profile>,
    /// `base_url` + `booking/{tili}/api/v2/`.
    booking: reqwest::Url,
    /// `[slotti] booking_account`, named by a 404 on the booking page.
    booking_account: String,
    /// `base_url` + `api/v1/`.
    api: reqwest::Url,
    /// `Authorization: Basic base64(key + ":")`, or why the key cannot be sent.
    auth: Result<HeaderValue, String>,
    /// What never appears in an error text: the key and its Basic form.
    hidden: Vec<String>,
    meter: Meter,
}

impl Client {
    /// A client for `config.slotti` on `exchange`, with `[tampuuri]`'s timeout, retry and
    /// body cap and `[slotti] max_retry_after_secs`. Refuses a config loaded without its
    /// secrets.
    pub fn new(
        config: &Config,
        slotti: &SlottiConfig,
        exchange: &Exchange,
    ) -> anyhow::Result<Client> {
        if let Some(key) = config
            .unread_secrets
            .iter()
            .find(|k| k.starts_with("slotti."))
        {
            anyhow::bail!(
                "{}: the config was loaded without its secrets ({key}), so it cannot call Slotti",
                config.source.display()
            );
        }
        let booking = slotti
            .base_url
            .join(&format!("booking/{}/api/v2/", slotti.booking_account))?;
        let api = slotti.base_url.join("api/v1/")?;
        let key = slotti.api_key.expose_secret();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
        let auth = HeaderValue::from_str(&format!("Basic {basic}"))
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| {
                "[slotti] api_key holds a character an HTTP header cannot carry".to_owned()
            });
        let hidden = [key.to_owned(), basic]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let profile = Profile {
            remote: "Slotti",
            cap_key: "[slotti] max_retry_after_secs",
            max_retry_after: slotti.max_retry_after,
            ..Profile::tampuuri(config)
        };
        Ok(Client {
            exchange: exchange.clone(),
            profile: Arc::new(profile),
            booking,
            booking_account: slotti.booking_account.clone(),
            api,
            auth,
            hidden,
            meter: Meter::new(METER_ACCOUNT),
        })
    }

    /// Slotti's calls, until they are recorded in the store ([`Meter::record`]) under
    /// [`METER_ACCOUNT`].
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Calls sent and not yet recorded.
    pub fn unrecorded_calls(&self) -> u64 {
        self.meter.unrecorded()
    }

    /// Requests that never reached Slotti since the last call of this: never metered.
    pub fn take_unreached(&self) -> u64 {
        self.meter.take_unreached()
    }

    /// `GET services`.
    pub async fn services(&self) -> Result<Vec<Service>, SlottiError> {
        let url = self.url(endpoint::SERVICES, &self.booking, "services")?;
        self.call(
            endpoint::SERVICES,
            Method::GET,
            url,
            None,
            Kind::Read,
            wire::parse_services,
        )
        .await
    }

    /// `GET resources`.
    pub async fn resources(&self) -> Result<Vec<Resource>, SlottiError> {
        let url = self.url(endpoint::RESOURCES, &self.booking, "resources")?;
        self.call(
            endpoint::RESOURCES,
            Method::GET,
            url,
            None,
            Kind::Read,
            wire::parse_resources,
        )
        .await
    }

    /// `POST bookings/serviceavailability`: the free times of `service_guid` (lasting
    /// `duration_minutes`) between `start` and `end`, of one resource or of any; sorted by start.
    pub async fn availability(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        service_guid: &str,
        duration_minutes: u32,
        resource_id: Option<i64>,
    ) -> Result<Vec<Slot>, SlottiError> {
        let e = endpoint::AVAILABILITY;
        if end <= start {
            return Err(SlottiError::Invalid {
                endpoint: e,
                detail: format!("the range ends ({end}) before it starts ({start})"),
            });
        }
        let url = self.url(e, &self.booking, "bookings/serviceavailability")?;
        let body = wire::availability_body(start, end, service_guid, duration_minutes, resource_id);
        // A query: asking twice changes nothing.
        self.call(
            e,
            Method::POST,
            url,
            Some(&body),
            Kind::Read,
            wire::parse_availability,
        )
        .await
    }

    /// `POST bookings/`: books a free time. `Ok(Some)` with the booking when the answer is one,
    /// `Ok(None)` when Slotti accepted it with another answer (look its guid up in
    /// [`Client::bookings`]). Never resent unless it surely did not reach Slotti; a time taken
    /// meanwhile is [`SlottiError::SlotTaken`].
    pub async fn book(&self, request: &BookingRequest) -> Result<Option<Booking>, SlottiError> {
        let e = endpoint::BOOK;
        let url = self.url(e, &self.booking, "bookings/")?;
        let body = wire::booking_body(request);
        self.call(e, Method::POST, url, Some(&body), Kind::Write, |b| {
            Ok(wire::parse_booked(b))
        })
        .await
    }

    /// `GET bookings?from&to` over any range: windows of at most [`MAX_WINDOW_DAYS`] days,
    /// merged, each guid once (the last window's copy), sorted by start.
    pub async fn bookings(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Booking>, SlottiError> {
        let e = endpoint::BOOKINGS;
        let mut all: Vec<Booking> = Vec::new();
        for (a, b) in windows(from, to, MAX_WINDOW_DAYS) {
            let mut url = self.url(e, &self.api, "bookings/")?;
            url.query_pairs_mut()
                .append_pair("from", &wire::format_time(a))
                .append_pair("to", &wire::format_time(b));
            let got = self
                .call(e, Method::GET, url, None, Kind::Read, wire::parse_bookings)
                .await?;
            all.extend(got);
        }
        let mut seen = HashSet::new();
        let mut out: Vec<Booking> = all
            .into_iter()
            .rev()
            .filter(|b| seen.insert(b.guid.clone()))
            .collect();
        out.sort_by(|a, b| (a.start, &a.guid).cmp(&(b.start, &b.guid)));
        Ok(out)
    }

    /// `GET customers?searchTerm&limit&offset`; `limit` is 1 to [`MAX_CUSTOMERS_LIMIT`].
    pub async fn customers(
        &self,
        search: &str,
        limit: u32,
        offset: u64,
    ) -> Result<CustomerPage, SlottiError> {
        let e = endpoint::CUSTOMERS;
        if !(1..=MAX_CUSTOMERS_LIMIT).contains(&limit) {
            return Err(SlottiError::Invalid {
                endpoint: e,
                detail: format!("limit {limit} must be from 1 to {MAX_CUSTOMERS_LIMIT}"),
            });
        }
        let mut url = self.url(e, &self.api, "customers")?;
        url.query_pairs_mut()
            .append_pair("searchTerm", search)
            .append_pair("limit", &limit.to_string())
            .append_pair("offset", &offset.to_string());
        self.call(e, Method::GET, url, None, Kind::Read, wire::parse_customers)
            .await
    }

    /// `POST webhooks/`: registers a webhook, answers its id.
    pub async fn register_webhook(&self, w: &NewWebhook) -> Result<String, SlottiError> {
        let e = endpoint::WEBHOOK_CREATE;
        let url = self.url(e, &self.api, "webhooks/")?;
        let body = wire::webhook_body(w);
        self.call(
            e,
            Method::POST,
            url,
            Some(&body),
            Kind::Write,
            wire::parse_webhook_id,
        )
        .await
    }

    /// `GET webhooks`.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>, SlottiError> {
        let e = endpoint::WEBHOOKS;
        let url = self.url(e, &self.api, "webhooks")?;
        self.call(e, Method::GET, url, None, Kind::Read, wire::parse_webhooks)
            .await
    }

    /// `DELETE webhooks/{guid}`; a guid Slotti does not know is [`SlottiError::NotFound`].
    pub async fn delete_webhook(&self, guid: &str) -> Result<(), SlottiError> {
        let e = endpoint::WEBHOOK_DELETE;
        if guid.is_empty() || !guid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(SlottiError::Invalid {
                endpoint: e,
                detail: format!("{guid:?} is not a webhook guid (letters, digits and -)"),
            });
        }
        let url = self.url(e, &self.api, &format!("webhooks/{guid}"))?;
        self.call(e, Method::DELETE, url, None, Kind::Write, |_| Ok(()))
            .await
    }

    fn url(
        &self,
        endpoint: &'static str,
        base: &reqwest::Url,
        path: &str,
    ) -> Result<reqwest::Url, SlottiError> {
        base.join(path).map_err(|e| SlottiError::Invalid {
            endpoint,
            detail: format!("bad URL: {e}"),
        })
    }

    /// One call through the exchange: its retry loop, with [`classify`] deciding what each
    /// answer means.
    async fn call<T>(
        &self,
        endpoint: &'static str,
        method: Method,
        url: reqwest::Url,
        body: Option<&Value>,
        kind: Kind,
        parse: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, SlottiError> {
        let auth = self
            .auth
            .clone()
            .map_err(|detail| SlottiError::Invalid { endpoint, detail })?;
        // A 404 on the booking page means no such page: its account is named.
        let hint = url.as_str().starts_with(self.booking.as_str()).then(|| {
            format!(
                "check [slotti] booking_account = \"{}\": Slotti has no booking page {}",
                self.booking_account, self.booking
            )
        });
        let call = Call {
            endpoint,
            kind,
            max_response_bytes: self.profile.max_response_bytes,
            hidden: &self.hidden,
            url: url.to_string(),
            hint,
        };
        let mut request = Request::new(endpoint, method, url, &self.hidden);
        if let Some(b) = body {
            request = request.json(b);
        }
        request.headers.insert(reqwest::header::AUTHORIZATION, auth);
        self.exchange
            .call(&self.profile, &self.meter, &request, |reply| {
                classify(&call, reply, &parse)
            })
            .await
    }
}

/// Who calls what, as [`classify`] needs it.
struct Call<'a> {
    endpoint: &'static str,
    kind: Kind,
    max_response_bytes: u64,
    /// Never quoted in an error.
    hidden: &'a [String],
    /// Named by a 404.
    url: String,
    /// What a 404 adds (on the booking page: its account).
    hint: Option<String>,
}

/// The decision about one request: its value, or which [`SlottiError`] it is and whether it
/// may be tried again. Pure, so that every kind of answer is checked in a table.
///
/// A read retries every transient failure. A write retries only what surely did not reach
/// Slotti (it never connected; a 429, refused before acting); a lost answer, a 5xx or a
/// redirect to a write is [`SlottiError::InDoubt`].
fn classify<T>(
    call: &Call<'_>,
    reply: Reply,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, Failure<SlottiError>> {
    let endpoint = call.endpoint;
    let write = call.kind == Kind::Write;
    let fail = |error: SlottiError, retry: bool| Failure {
        retry,
        error,
        retry_after: None,
    };
    let answer = match reply {
        Reply::Unreached(detail) => {
            return Err(fail(SlottiError::Unreachable { endpoint, detail }, true));
        }
        Reply::Lost(detail) => {
            let detail = format!("timeout or connection lost after sending: {detail}");
            return Err(if write {
                fail(
                    SlottiError::InDoubt {
                        endpoint,
                        status: None,
                        detail,
                    },
                    false,
                )
            } else {
                fail(SlottiError::NoAnswer { endpoint, detail }, true)
            });
        }
        Reply::Answer(a) => a,
    };
    let status = answer.status;
    let code = status.as_u16();
    if status.is_redirection() {
        let location = answer
            .location
            .unwrap_or_else(|| "(no Location)".to_owned());
        let error = if write {
            SlottiError::InDoubt {
                endpoint,
                status: Some(code),
                detail: format!(
                    "HTTP {code}, a redirect to {location}, not followed; whether Slotti acted first cannot be told"
                ),
            }
        } else {
            SlottiError::Redirect {
                endpoint,
                status: code,
                location,
            }
        };
        return Err(fail(error, false));
    }
    let bytes = match answer.body {
        Body::Whole(b) => b,
        Body::Truncated(b) if !status.is_success() => b,
        Body::Truncated(_) => {
            let limit = call.max_response_bytes;
            // A write's effect happened; only its answer is too large to read.
            return Err(fail(SlottiError::TooLarge { endpoint, limit }, false));
        }
    };
    if status.is_success() {
        return parse(&bytes).map_err(|detail| {
            let detail = scrub(&detail, call.hidden);
            if write {
                // Slotti took it; what it made cannot be read: look before doing it again.
                let detail = format!(
                    "Slotti accepted it (HTTP {code}), but its answer is unreadable: {detail}"
                );
                fail(
                    SlottiError::InDoubt {
                        endpoint,
                        status: Some(code),
                        detail,
                    },
                    false,
                )
            } else {
                fail(SlottiError::Malformed { endpoint, detail }, true)
            }
        });
    }
    Err(refusal(call, status, answer.retry_after, &bytes))
}

/// What an error status means, with Slotti's own words from its body.
fn refusal(
    call: &Call<'_>,
    status: StatusCode,
    retry_after: Option<Duration>,
    bytes: &[u8],
) -> Failure<SlottiError> {
    let (endpoint, code) = (call.endpoint, status.as_u16());
    let write = call.kind == Kind::Write;
    let message = scrub(&server_words(bytes), call.hidden);
    let (error, retry) = match status {
        // A refusal of the key may quote a key (not necessarily ours, so not scrubbed): its
        // body is not shown.
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
            SlottiError::Auth {
                endpoint,
                status: code,
                message: "(Slotti's answer to a refused key is not quoted)".to_owned(),
            },
            false,
        ),
        StatusCode::TOO_MANY_REQUESTS => {
            let error = SlottiError::RateLimited {
                endpoint,
                retry_after,
                message,
            };
            return Failure {
                error,
                retry: true,
                retry_after,
            };
        }
        StatusCode::NOT_FOUND => {
            let hint = call
                .hint
                .as_ref()
                .map_or_else(String::new, |h| format!("; {h}"));
            let detail = format!("{}: {message}{hint}", call.url);
            (SlottiError::NotFound { endpoint, detail }, false)
        }
        StatusCode::CONFLICT if endpoint == endpoint::BOOK => (
            SlottiError::SlotTaken {
                endpoint,
                status: code,
                message,
            },
            false,
        ),
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
            if endpoint == endpoint::BOOK && says_taken(&message) =>
        {
            (
                SlottiError::SlotTaken {
                    endpoint,
                    status: code,
                    message,
                },
                false,
            )
        }
        s if s.is_server_error() && write => (
            SlottiError::InDoubt {
                endpoint,
                status: Some(code),
                detail: format!("HTTP {code}: {message}"),
            },
            false,
        ),
        s if s.is_server_error() => (
            SlottiError::Server {
                endpoint,
                status: code,
                message,
            },
            true,
        ),
        _ => (
            SlottiError::Rejected {
                endpoint,
                status: code,
                message,
            },
            false,
        ),
    };
    Failure {
        error,
        retry,
        retry_after: None,
    }
}

/// Whether a refusal's text says the time is not free (the seed documents no error codes).
fn says_taken(message: &str) -> bool {
    let m = message.to_lowercase();
    [
        "taken",
        "not available",
        "unavailable",
        "not free",
        "already booked",
        "already reserved",
        "overlap",
        "conflict",
        "varattu",
        "ei vapaa",
        "ei ole vapaa",
        "päällekkäi",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// The top-level fields of a Slotti booking that hold personal data (the customer, and the
/// free text that names the resident's address), removed from a visit's stored booking when the
/// purge erases its customer data.
pub const BOOKING_PERSONAL_FIELDS: [&str; 3] = ["customerLinks", "info", "privateNotes"];

/// Slotti's longest `GET bookings` range, in days.
pub const MAX_WINDOW_DAYS: u32 = 30;

/// `[from, to)` split into consecutive windows of at most `max_days` days (at least one day
/// each), in order; empty when `from` is not before `to`.
pub fn windows(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max_days: u32,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let step = chrono::Duration::days(max_days.max(1).into());
    let mut out = Vec::new();
    let mut start = from;
    while start < to {
        let end = (start + step).min(to);
        out.push((start, end));
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::Answer;

    fn answer(status: u16, body: &str) -> Reply {
        Reply::Answer(Answer {
            status: StatusCode::from_u16(status).unwrap(),
            location: None,
            retry_after: None,
            body: Body::Whole(body.as_bytes().to_vec()),
        })
    }

    /// The variant and whether it is retried, for `endpoint` as `kind`.
    fn decided(endpoint: &'static str, kind: Kind, reply: Reply) -> String {
        let hidden = ["sekret-key".to_owned()];
        let call = Call {
            endpoint,
            kind,
            max_response_bytes: 1000,
            hidden: &hidden,
            url: "http://slotti.example/api/v1/x".into(),
            hint: None,
        };
        let parse = |b: &[u8]| -> Result<i64, String> {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| "not a number".to_owned())
        };
        match classify(&call, reply, parse) {
            Ok(v) => format!("Ok({v})"),
            Err(f) => {
                let debug = format!("{:?}", f.error);
                let variant = debug
                    .split([' ', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                format!("{variant} retry={}", f.retry)
            }
        }
    }

    #[test]
    fn every_kind_of_answer_is_classified_for_reads_and_writes() {
        use endpoint::{BOOK, BOOKINGS, WEBHOOK_CREATE};
        let redirect = || {
            Reply::Answer(Answer {
                status: StatusCode::SEE_OTHER,
                location: Some("http://elsewhere/".into()),
                retry_after: None,
                body: Body::Whole(Vec::new()),
            })
        };
        type Row = (&'static str, &'static str, fn() -> Reply, &'static str);
        let table: Vec<Row> = vec![
            ("read 200", BOOKINGS, || answer(200, "7"), "Ok(7)"),
            (
                "read 200 malformed",
                BOOKINGS,
                || answer(200, "x"),
                "Malformed retry=true",
            ),
            (
                "write 200 malformed",
                WEBHOOK_CREATE,
                || answer(200, "x"),
                "InDoubt retry=false",
            ),
            (
                "read 503",
                BOOKINGS,
                || answer(503, ""),
                "Server retry=true",
            ),
            ("write 503", BOOK, || answer(503, ""), "InDoubt retry=false"),
            (
                "read 429",
                BOOKINGS,
                || answer(429, ""),
                "RateLimited retry=true",
            ),
            (
                "write 429",
                BOOK,
                || answer(429, ""),
                "RateLimited retry=true",
            ),
            ("read 401", BOOKINGS, || answer(401, ""), "Auth retry=false"),
            (
                "read 404",
                BOOKINGS,
                || answer(404, ""),
                "NotFound retry=false",
            ),
            (
                "book 409",
                BOOK,
                || answer(409, "{}"),
                "SlotTaken retry=false",
            ),
            (
                "book 422 taken",
                BOOK,
                || answer(422, r#"{"error": "Time is not available"}"#),
                "SlotTaken retry=false",
            ),
            (
                "book 400 varattu",
                BOOK,
                || answer(400, "Aika on jo varattu"),
                "SlotTaken retry=false",
            ),
            (
                "book 400 other",
                BOOK,
                || answer(400, r#"{"error": "email required"}"#),
                "Rejected retry=false",
            ),
            (
                "webhook 409",
                WEBHOOK_CREATE,
                || answer(409, "exists"),
                "Rejected retry=false",
            ),
            ("read redirect", BOOKINGS, redirect, "Redirect retry=false"),
            ("write redirect", BOOK, redirect, "InDoubt retry=false"),
            (
                "read unreached",
                BOOKINGS,
                || Reply::Unreached("refused".into()),
                "Unreachable retry=true",
            ),
            (
                "write unreached",
                BOOK,
                || Reply::Unreached("refused".into()),
                "Unreachable retry=true",
            ),
            (
                "read lost",
                BOOKINGS,
                || Reply::Lost("reset".into()),
                "NoAnswer retry=true",
            ),
            (
                "write lost",
                BOOK,
                || Reply::Lost("reset".into()),
                "InDoubt retry=false",
            ),
        ];
        for (what, endpoint, reply, want) in table {
            let kind = if [BOOK, WEBHOOK_CREATE].contains(&endpoint) {
                Kind::Write
            } else {
                Kind::Read
            };
            assert_eq!(decided(endpoint, kind, reply()), want, "{what}");
        }
    }

    #[test]
    fn an_error_quotes_a_short_excerpt_and_never_the_key() {
        let hidden = ["sekret-key".to_owned()];
        let call = Call {
            endpoint: endpoint::BOOK,
            kind: Kind::Write,
            max_response_bytes: 1000,
            hidden: &hidden,
            url: "http://slotti.example/api/v1/x".into(),
            hint: None,
        };
        let long = format!("bad key sekret-key {}", "x".repeat(500));
        let e = classify(&call, answer(400, &long), |_| Ok(()))
            .unwrap_err()
            .error;
        let text = e.to_string();
        assert!(
            text.contains("HTTP 400") && text.contains("bad key ***"),
            "{text}"
        );
        assert!(
            !text.contains("sekret-key") && text.chars().count() < 320,
            "{text}"
        );
    }

    #[test]
    fn ranges_split_into_windows_of_at_most_thirty_days() {
        let from = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let day = chrono::Duration::days(1);
        for (days, want) in [(0, 0), (1, 1), (30, 1), (31, 2), (75, 3), (90, 3), (91, 4)] {
            let w = windows(from, from + day * days, MAX_WINDOW_DAYS);
            assert_eq!(w.len(), want, "{days} days");
            // Consecutive, covering the range, none over 30 days.
            let mut at = from;
            for (s, e) in &w {
                assert_eq!(*s, at);
                assert!(*e > *s && *e - *s <= day * 30, "{s}..{e}");
                at = *e;
            }
            assert_eq!(at, from + day * days.max(0));
        }
        // A range that is not a whole number of days ends where it ends.
        let w = windows(from, from + chrono::Duration::hours(36), 1);
        assert_eq!(
            w,
            vec![
                (from, from + day),
                (from + day, from + chrono::Duration::hours(36))
            ]
        );
        assert!(windows(from + day, from, 30).is_empty());
    }
}
