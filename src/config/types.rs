//! The validated configuration: what the rest of the crate reads. Every value here has been
//! checked by the loader (`load.rs`); the defaults and bounds of the keys are in `keys.rs`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::keys;
use crate::domain::cost::Package;

/// The config file when neither `--config` nor `$HUOLTOSYNC_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/huoltosync/config.toml";
/// The states that make a ticket "ours and unfinished" unless an account says otherwise.
pub const DEFAULT_OPEN_STATES: [&str; 3] = ["Avoin", "Vastaanotettu", "Odottaa"];
/// Tampuuri's maximum page size.
pub const MAX_PAGE_SIZE: u32 = 250;

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    pub store: StoreConfig,
    pub tampuuri: TampuuriConfig,
    pub sync: SyncConfig,
    pub push: PushConfig,
    pub schedule: ScheduleConfig,
    pub service: ServiceConfig,
    pub privacy: PrivacyConfig,
    pub retention: RetentionConfig,
    pub pricing: Vec<Package>,
    /// `[webhook]`, when `listen` is set.
    pub webhook: Option<WebhookConfig>,
    /// `[[api.subscribers]]`: where the signed outgoing events go.
    pub subscribers: Vec<super::SubscriberConfig>,
    /// `[api]`, when present: the HTTP API (`src/faces/api/`).
    pub api: Option<super::ApiConfig>,
    /// `[slotti]`, when present: the Slotti calendar visits are booked in.
    pub slotti: Option<super::SlottiConfig>,
    /// `[board]`: the web board (`src/faces/board/`); disabled without the section.
    pub board: super::BoardConfig,
    pub accounts: Vec<AccountConfig>,
    /// The `*_file` and `*_env` secret keys left unread by [`Config::load_without_secrets`];
    /// empty when the config was loaded with its secrets. [`crate::tampuuri::Api::new`]
    /// refuses a config that has any.
    pub unread_secrets: Vec<String>,
}

/// `[webhook]`: the listener for Tampuuri's event deliveries.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub listen: std::net::SocketAddr,
    /// The URL path (default `/tampuuri/webhook`); with a path token, the token is its last segment.
    pub path: String,
    pub path_token: Option<SecretString>,
    pub basic_username: Option<String>,
    pub basic_password: Option<SecretString>,
    pub hmac_secret: Option<SecretString>,
    /// The header carrying the HMAC-SHA256 digest of the raw body.
    pub hmac_header: String,
    /// At most [`MAX_WEBHOOK_BODY`].
    pub max_body_bytes: usize,
    /// Connections served at once; at the cap an idle one, or one still waiting for its body,
    /// is closed for a new one.
    pub max_connections: usize,
    /// Connections served at once from one address (its share of `max_connections`).
    pub max_connections_per_address: usize,
    /// A ticket's events are processed once none arrived for it for this long…
    pub debounce: Duration,
    /// …or once its oldest pending event waited this long.
    pub debounce_max: Duration,
    /// The full poll runs on this schedule instead of `[schedule] poll` (a reconciliation).
    pub reconcile: crate::service::schedule::Schedule,
    /// Actions that mean "refetch this ticket"; empty: every action starting with `Ilmoitus`.
    pub actions: Vec<String>,
    /// Fetches of tickets the mirror does not hold, per account in any minute (default 60);
    /// beyond it, one reconciliation sweep of the account replaces them.
    pub max_fetches_per_minute: u32,
    /// Extra: how much the webhook add-on costs a customer per month, for `cost`.
    pub addon_eur: f64,
}

/// The largest `[webhook] max_body_bytes`: a delivery is a few notifications, and the listener
/// buffers bodies (within a fixed memory budget) before it can check their digest.
pub const MAX_WEBHOOK_BODY: usize = 4 << 20;

/// `[schedule]`: when the daemon polls, in `timezone` (see [`crate::service::schedule`]).
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    pub poll: crate::service::schedule::Schedule,
    /// The zone of every schedule in the config (`[schedule] timezone`, default Europe/Helsinki).
    pub timezone: chrono_tz::Tz,
    /// Each account's poll starts after a random delay up to this.
    pub jitter: Duration,
    /// A failing account is skipped for this long after its first failure, doubling…
    pub backoff_initial: Duration,
    /// …up to this; a success resets it.
    pub backoff_max: Duration,
}

/// `[service]`: the daemon's own behaviour.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// On SIGTERM, how long an in-flight cycle may take to finish.
    pub shutdown_grace: Duration,
    /// How often the daemon looks for queued actions to push.
    pub push_check: Duration,
    /// `status` fails when an account's last success is older than this.
    pub stale_after: Duration,
    /// Prometheus metrics listener (`[metrics] listen`).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `[privacy]`
#[derive(Debug, Clone)]
pub struct PrivacyConfig {
    /// Personal data of tickets that left the open set longer ago than this is erased.
    pub retain_days: u32,
}

/// `[retention]`: how long bookkeeping rows are kept, in days.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    pub sync_runs_days: u32,
    pub api_calls_days: u32,
    pub outbox_days: u32,
    pub webhook_events_days: u32,
}

/// `[store]`
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The SQLite file; a relative path is relative to the config file's folder.
    pub path: PathBuf,
}

/// `[tampuuri]`: how to reach the API and how hard we may use it.
#[derive(Debug, Clone)]
pub struct TampuuriConfig {
    pub software_version: String,
    pub page_size: u32,
    pub timeout: Duration,
    /// Client-side throttle per API host; 0 turns it off.
    pub max_requests_per_second: f64,
    pub retry: RetryConfig,
    /// A response body larger than this fails its call instead of being read whole.
    pub max_response_bytes: u64,
    /// The longest `Retry-After` a call waits (`max_retry_after_secs`).
    pub max_retry_after: Duration,
}

/// `[tampuuri.retry]`: bounded exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

/// `[sync]`
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// How many more full sweeps to make when the list moved while we paged through it.
    pub max_resweeps: u32,
    /// How many accounts sync at the same time.
    pub account_concurrency: usize,
    /// Page requests of one sweep under way at once (after the first page told the total).
    pub pages_in_flight: usize,
    /// Most pages one sweep may take; a sweep that needs more (or whose Total implies more)
    /// fails at once.
    pub max_pages: u32,
    /// Wall-clock time one account's sync may spend calling Tampuuri before it gives up.
    pub account_deadline: Duration,
}

/// `[push]`: how queued actions are delivered.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Tickets pushed at the same time (one ticket's actions always go one by one, in order).
    pub concurrency: usize,
    /// Backoff between attempts of one action: from this…
    pub retry_initial: Duration,
    /// …doubling up to this.
    pub retry_max: Duration,
    /// Transient failures are retried this long after the action was queued, then it is
    /// dead-lettered.
    pub deadline: Duration,
    /// How long one push pass waits for an action whose retry falls due soon.
    pub linger: Duration,
    /// Largest attachment accepted by `task new --attach`.
    pub max_attachment_bytes: u64,
    /// `task done` refuses a parent whose follow-ups are not Tehty or Valmis.
    pub require_followups_done: bool,
}

/// How the open states are asked for in `ilmoitukset/selaa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// One sweep with `"Tila": [all states]` (cheaper; assumed to be supported).
    List,
    /// One sweep per state with `"Tila": "<state>"` (the documented single value).
    PerState,
}

/// One `[[accounts]]` entry, with the global defaults already applied.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// The Tampuuri account (`X-TiliNimi`); also our key for it in the store.
    pub name: String,
    pub username: String,
    pub password: SecretString,
    /// Our työnsuorittaja party id in this account.
    pub contractor_id: i64,
    /// The Tampuuri customer (property manager's contract) whose API package pays for this
    /// account's calls; default: the account name.
    pub customer: String,
    /// `false` for test accounts, whose calls are not billed.
    pub billed: bool,
    pub api_key: SecretString,
    pub customer_name: String,
    /// Base URL, always ending in `/`.
    pub base_url: String,
    pub states: Vec<String>,
    pub state_filter: StateFilter,
    /// Extra fields merged into every selaa body.
    pub extra_filter: serde_json::Map<String, serde_json::Value>,
}

/// One problem found in a config file, tied to the key that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// A config file that cannot be used: every problem found in it.
#[derive(Debug, thiserror::Error)]
#[error("invalid config {}:\n{}", path.display(), list(errors))]
pub struct ConfigError {
    pub path: PathBuf,
    pub errors: Vec<Issue>,
}

fn list(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A loaded config and the warnings found on the way (valid, but worth an operator's look).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Issue>,
    /// Problems that leave one account unusable but the others runnable (a password file with
    /// a newline inside): `check-config` fails on them; a run fails that account alone.
    pub account_errors: Vec<Issue>,
    /// The keys of the secrets given inline (`webhook.basic_password`), never their values.
    pub inline_secrets: Vec<String>,
}

impl Config {
    /// The account with this name.
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

impl Config {
    /// The reconciliation schedule that `cost` weighs polling against: `[webhook] reconcile`,
    /// or its default when no listener is configured.
    pub fn reconcile_schedule(&self) -> crate::service::schedule::Schedule {
        match &self.webhook {
            Some(w) => w.reconcile.clone(),
            None => crate::service::schedule::Schedule::parse(
                keys::webhook::RECONCILE.default,
                self.schedule.timezone,
            )
            .expect("the default reconcile schedule is valid"),
        }
    }

    /// The webhook add-on's monthly price per customer: `[webhook] addon_eur`, or its default.
    pub fn webhook_addon_eur(&self) -> f64 {
        self.webhook
            .as_ref()
            .map_or(keys::webhook::ADDON_EUR.default, |w| w.addon_eur)
    }
}
