//! The one exchange for every outgoing HTTP call: Tampuuri, Slotti and the subscribers of
//! outgoing events. The remote modules ([`crate::tampuuri`], [`crate::slotti`]) build requests
//! from their wire types and decide what an answer means; everything else about a call is
//! here, once:
//!
//! - one `reqwest::Client`, and so one connection pool, per origin, built when the exchange is
//!   (at start-up, for every configured origin) and shared by every clone of it; this is the
//!   only place in the crate that builds HTTP clients. The daemon keeps one exchange for its
//!   whole life: a reload hands it the new config ([`Exchange::reconfigure`]: the throttle's
//!   quota, the user agent, the pools of new origins) and keeps every pool;
//! - the throttle: governor's keyed limiter, one quota (`[tampuuri] max_requests_per_second`)
//!   per host, for the remotes whose [`Profile`] asks for it;
//! - the request timeout, the connect timeout, the response-size cap and the redirect policy
//!   (none is followed: the credentials are headers reqwest would carry to another host);
//! - one retry loop ([`Exchange::call`]) with one `Retry-After` rule: a delay asked by the
//!   remote is waited when it is at most the remote's `max_retry_after_secs` (default 30 s);
//!   a longer one ends the call with the remote's error, so that a cycle is never stalled and
//!   the account backs off like after any transient failure;
//! - metering ([`Meter`]), unreached requests included, counted apart;
//! - secret scrubbing: an error answer's body has every secret of its request replaced by
//!   `***` before the remote module reads it.
//!
//! What an answer means is decided by the caller's pure `decide` function, which turns a
//! [`Reply`] into a value or a [`Failure`]: the remote's own error and whether it may be tried
//! again.

mod meter;
mod reply;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, Url};

use crate::config::{Config, RetryConfig};
use crate::domain::backoff::Backoff;
pub use meter::{CallCounts, Meter};
pub use reply::{
    Answer, Body, ERROR_BODY_BYTES, MESSAGE_CHARS, Reply, parse_retry_after, scrub, server_words,
};
use reply::{error_chain, read_body, show_header};

/// Installs rustls' `ring` crypto provider as the process default. reqwest is built without a
/// provider of its own (to keep aws-lc, a large C build, out of the tree), and panics when it
/// builds a client while none is installed, even for plain `http://`. [`Exchange::new`] calls
/// it. Idempotent: a provider installed earlier is kept.
pub fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An error means another thread installed one in between, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Whether a call may be repeated blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A read: any transient failure is retried.
    Read,
    /// A change: retried only when it surely was not applied.
    Write,
}

/// One attempt's failure, as the caller's `decide` judged it, and whether to try again.
#[derive(Debug)]
pub struct Failure<E> {
    pub error: E,
    /// Try again: a transient failure of a read, or of a write that surely was not applied.
    pub retry: bool,
    /// Not before this (a 429's `Retry-After`).
    pub retry_after: Option<Duration>,
}

/// How one remote is called: its timeouts, retries, `Retry-After` cap and body cap.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The remote's name in logs ("Tampuuri", "Slotti", "a subscriber").
    pub remote: &'static str,
    /// The config key of its `Retry-After` cap, for the log (`[tampuuri] max_retry_after_secs`).
    pub cap_key: &'static str,
    /// The whole request, answer included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryConfig,
    /// The longest `Retry-After` waited; a longer one ends the call.
    pub max_retry_after: Duration,
    /// The most of a successful answer read.
    pub max_response_bytes: u64,
    /// Whether the per-host throttle applies.
    pub throttled: bool,
}

impl Profile {
    /// Tampuuri's, from `[tampuuri]`.
    pub fn tampuuri(config: &Config) -> Profile {
        let t = &config.tampuuri;
        Profile {
            remote: "Tampuuri",
            cap_key: "[tampuuri] max_retry_after_secs",
            timeout: t.timeout,
            connect_timeout: t.timeout.min(Duration::from_secs(10)),
            retry: t.retry.clone(),
            max_retry_after: t.max_retry_after,
            max_response_bytes: t.max_response_bytes,
            throttled: true,
        }
    }
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The route template, as metered (`POST ilmoitukset/selaa`).
    pub endpoint: &'static str,
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    /// What never appears in what the remote module reads of an error answer.
    pub hidden: &'a [String],
}

impl<'a> Request<'a> {
    /// A request without a body.
    pub fn new(endpoint: &'static str, method: Method, url: Url, hidden: &'a [String]) -> Self {
        Request {
            endpoint,
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            hidden,
        }
    }

    /// With `value` as its JSON body.
    pub fn json(mut self, value: &serde_json::Value) -> Self {
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // Serializing a `Value` cannot fail: its map keys are strings.
        self.body = Some(serde_json::to_vec(value).unwrap_or_default());
        self
    }
}

/// The shared exchange; clones share the pools, the throttle and the settings a reload changes.
#[derive(Clone)]
pub struct Exchange {
    inner: Arc<Inner>,
}

struct Inner {
    /// What the config in force says; replaced by [`Exchange::reconfigure`].
    settings: Mutex<Settings>,
    /// One client per origin (`scheme://host:port`) and connect timeout, kept across reloads.
    clients: Mutex<HashMap<(String, Duration), reqwest::Client>>,
}

/// The config's part of the exchange: the user agent and the per-host throttle.
#[derive(Clone)]
struct Settings {
    user_agent: String,
    /// `[tampuuri] max_requests_per_second`, of which `throttle` is made.
    rps: f64,
    throttle: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl Settings {
    /// The settings of `config`; the throttle of `old` is kept while its quota is unchanged,
    /// so a reload does not reset what the hosts have been sent.
    fn of(config: &Config, old: Option<&Settings>) -> Settings {
        let rps = config.tampuuri.max_requests_per_second;
        let throttle = match old {
            Some(o) if o.rps == rps => o.throttle.clone(),
            _ => (rps > 0.0)
                .then(|| Quota::with_period(Duration::from_secs_f64(1.0 / rps)))
                .flatten()
                .map(|q| Arc::new(RateLimiter::keyed(q))),
        };
        Settings {
            user_agent: config.tampuuri.software_version.clone(),
            rps,
            throttle,
        }
    }
}

impl Exchange {
    /// The exchange of `config`: a client for every origin it names (each account's
    /// `base_url`, `[slotti] base_url`, every subscriber), and the per-host throttle of
    /// `[tampuuri] max_requests_per_second` (0: none).
    pub fn new(config: &Config) -> anyhow::Result<Exchange> {
        install_tls_provider();
        let exchange = Exchange {
            inner: Arc::new(Inner {
                settings: Mutex::new(Settings::of(config, None)),
                clients: Mutex::default(),
            }),
        };
        exchange.prepare(config)?;
        Ok(exchange)
    }

    /// Puts a reloaded `config` in force: a client for every origin it names that has none
    /// yet, its user agent, and its throttle quota (the running throttle is kept when the
    /// quota did not change). Every pool is kept. Nothing changes when a client cannot be
    /// built.
    pub fn reconfigure(&self, config: &Config) -> anyhow::Result<()> {
        self.prepare(config)?;
        let mut settings = self.settings_lock();
        let next = Settings::of(config, Some(&settings));
        *settings = next;
        Ok(())
    }

    /// Builds the clients of every origin `config` names.
    fn prepare(&self, config: &Config) -> anyhow::Result<()> {
        let tampuuri = Profile::tampuuri(config).connect_timeout;
        for account in &config.accounts {
            // A base_url that is no URL fails that account's client, not the exchange.
            if let Ok(url) = Url::parse(&account.base_url) {
                self.client(&url, tampuuri)?;
            }
        }
        if let Some(s) = &config.slotti {
            self.client(&s.base_url, tampuuri)?;
        }
        for s in &config.subscribers {
            self.client(&s.url, crate::faces::outgoing::CONNECT_TIMEOUT)?;
        }
        Ok(())
    }

    fn settings_lock(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.inner
            .settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The pooled client of `url`'s origin; built on first use, then shared.
    fn client(&self, url: &Url, connect_timeout: Duration) -> anyhow::Result<reqwest::Client> {
        let key = (url.origin().ascii_serialization(), connect_timeout);
        let mut clients = self.inner.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        // `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` are honoured (reqwest's
        // default). No redirect is followed: reqwest strips only `Authorization` on a
        // cross-host hop, and Tampuuri's credentials are other headers.
        // The user agent is each request's (the config in force), not the client's.
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// How many pooled clients (origins) the exchange holds: one per origin, however many
    /// calls, passes and remote clients use it.
    pub fn pools(&self) -> usize {
        self.inner
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// One call: attempts until `decide` accepts an answer or says its failure is final, at
    /// most `retry.max_attempts` times, waiting the backoff delay (or the remote's
    /// `Retry-After`, when longer) in between. A `Retry-After` over the profile's cap ends the
    /// call with that failure's error: the caller tries again another cycle.
    pub async fn call<T, E: std::fmt::Display>(
        &self,
        profile: &Profile,
        meter: &Meter,
        request: &Request<'_>,
        mut decide: impl FnMut(Reply) -> Result<T, Failure<E>>,
    ) -> Result<T, E> {
        let retry = &profile.retry;
        let delays = Backoff::jittered(retry.initial_delay, retry.max_delay);
        let mut attempt = 1;
        loop {
            let reply = self.send(profile, Some(meter), request).await;
            let failure = match decide(reply) {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            if !failure.retry || attempt >= retry.max_attempts {
                return Err(failure.error);
            }
            let asked = failure.retry_after.unwrap_or_default();
            if asked > profile.max_retry_after {
                tracing::warn!(account = meter.account(), endpoint = request.endpoint, retry_after_secs = asked.as_secs(), cap_secs = profile.max_retry_after.as_secs(), error = %failure.error, "{} asked to wait longer than {}; not waiting: the call fails for this cycle.", profile.remote, profile.cap_key);
                return Err(failure.error);
            }
            let delay = delays.delay(attempt).max(asked);
            tracing::warn!(account = meter.account(), endpoint = request.endpoint, attempt, delay_ms = delay.as_millis() as u64, error = %failure.error, "Retrying a call to {}.", profile.remote);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Sends one request and reads what comes back (a body up to its cap), metering it as a
    /// call unless it never connected (then it is counted as unreached).
    pub async fn send(
        &self,
        profile: &Profile,
        meter: Option<&Meter>,
        request: &Request<'_>,
    ) -> Reply {
        let unreached = |detail: String| {
            if let Some(m) = meter {
                m.count_unreached();
            }
            Reply::Unreached(scrub(&detail, request.hidden))
        };
        let client = match self.client(&request.url, profile.connect_timeout) {
            Ok(c) => c,
            Err(e) => return unreached(format!("cannot build an HTTP client: {e:#}")),
        };
        let Settings {
            user_agent,
            throttle,
            ..
        } = self.settings_lock().clone();
        if let (true, Some(t)) = (profile.throttled, &throttle) {
            t.until_key_ready(&request.url.host_str().unwrap_or_default().to_owned())
                .await;
        }
        let mut req = client
            .request(request.method.clone(), request.url.clone())
            .headers(request.headers.clone())
            .timeout(profile.timeout);
        if let (false, Ok(ua)) = (
            request.headers.contains_key(USER_AGENT),
            HeaderValue::from_str(&user_agent),
        ) {
            req = req.header(USER_AGENT, ua);
        }
        if let Some(b) = &request.body {
            req = req.body(b.clone());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            // A request that never connected reached nothing: it is not a call.
            Err(e) if e.is_connect() => return unreached(error_chain(e)),
            Err(e) => {
                if let Some(m) = meter {
                    m.count(request.endpoint);
                }
                return Reply::Lost(scrub(&error_chain(e), request.hidden));
            }
        };
        if let Some(m) = meter {
            m.count(request.endpoint);
        }
        answer(profile, request, resp).await
    }
}

/// An HTTP response as a [`Reply`]: its status, `Location`, `Retry-After` and body (a
/// redirect's is not read; an error's is read up to [`ERROR_BODY_BYTES`] and scrubbed).
async fn answer(profile: &Profile, request: &Request<'_>, resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let header = |name| resp.headers().get(name);
    let location = header(reqwest::header::LOCATION).map(show_header);
    let retry_after = header(reqwest::header::RETRY_AFTER).and_then(parse_retry_after);
    let body = if status.is_redirection() {
        // A redirect is judged by its status and Location alone.
        Body::Whole(Vec::new())
    } else if status.is_success() {
        match read_body(resp, profile.max_response_bytes).await {
            Ok(b) => b,
            Err(e) => return Reply::Lost(scrub(&error_chain(e), request.hidden)),
        }
    } else {
        // An error answer is read for its message only, so a smaller cap does.
        let cap = profile.max_response_bytes.min(ERROR_BODY_BYTES);
        let scrubbed =
            |b: Vec<u8>| scrub(&String::from_utf8_lossy(&b), request.hidden).into_bytes();
        match read_body(resp, cap).await {
            Ok(Body::Whole(b)) => Body::Whole(scrubbed(b)),
            Ok(Body::Truncated(b)) => Body::Truncated(scrubbed(b)),
            Err(e) => return Reply::Lost(scrub(&error_chain(e), request.hidden)),
        }
    };
    Reply::Answer(Answer {
        status,
        location,
        retry_after,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_provider_is_installed_once_and_builds_an_https_client() {
        install_tls_provider();
        install_tls_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("a provider");
        assert!(!provider.cipher_suites.is_empty());
    }
}
