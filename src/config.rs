//! Configuration: the TOML file, validated in full before anything runs.
//!
//! Loading walks the parsed TOML by hand instead of deriving `Deserialize`, so that *every*
//! problem is reported at once with the key that causes it (`accounts[1].contractor_id: …`),
//! rather than serde's first error. Secrets are read from the file, from a file named by
//! `*_file` (relative names resolve in `$CREDENTIALS_DIRECTORY` when systemd set it), or from an
//! environment variable named by `*_env`, and are held as [`SecretString`]s, which never print.
//! Commands that never call Tampuuri load the file with [`Config::load_without_secrets`]: they
//! do not need (and may not be allowed to read) the credentials.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use toml::{Table, Value};

/// The path used when neither `--config` nor `$HUOLTOSYNC_CONFIG` names one.
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
    /// `[api]`, when present: the HTTP API (`src/api/`).
    pub api: Option<crate::api::config::ApiConfig>,
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
    /// Connections served at once; at the cap the oldest idle one is closed for a new one.
    pub max_connections: usize,
    /// A ticket's events are processed once none arrived for it for this long…
    pub debounce: Duration,
    /// …or once its oldest pending event waited this long.
    pub debounce_max: Duration,
    /// The full poll runs on this schedule instead of `[schedule] poll` (a reconciliation).
    pub reconcile: crate::schedule::Schedule,
    /// Actions that mean "refetch this ticket"; empty: every action starting with `Ilmoitus`.
    pub actions: Vec<String>,
    /// Extra: how much the webhook add-on costs a customer per month, for `cost`.
    pub addon_eur: f64,
}

/// The largest `[webhook] max_body_bytes`: a delivery is a few notifications, and the listener
/// buffers bodies (within a fixed memory budget) before it can check their digest.
pub const MAX_WEBHOOK_BODY: usize = 4 << 20;

/// Why `path` cannot be the listener's `[webhook] path`: it must be `/` and one or more
/// non-empty segments of plain URL characters (no `*`, `{`, `}`, `:`, spaces, `?` or `#`). One
/// trailing `/` is ignored.
pub fn check_webhook_path(path: &str) -> Result<(), &'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("must start with /");
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err("must name at least one segment after /, like /tampuuri/webhook");
    }
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Err("must not contain an empty segment (//)");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()+,;=@%".contains(&b))
        {
            return Err(
                "may contain only letters, digits and -._~!$&'()+,;=@% between slashes (no *, {, }, :, spaces, ? or #)",
            );
        }
    }
    Ok(())
}

/// `[schedule]`: when the daemon polls, in `timezone` (see [`crate::schedule`]).
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    pub poll: crate::schedule::Schedule,
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

/// One Tampuuri API package (`[[pricing]]`): monthly fee, included calls, price per extra call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Package {
    pub name: String,
    pub monthly_eur: f64,
    pub included_calls: u64,
    pub extra_call_eur: f64,
}

impl Package {
    /// The month's price for `calls` calls.
    pub fn price(&self, calls: u64) -> f64 {
        self.monthly_eur + calls.saturating_sub(self.included_calls) as f64 * self.extra_call_eur
    }
}

/// Tampuuri's packages as the seed lists them.
pub fn default_pricing() -> Vec<Package> {
    let p = |name: &str, monthly_eur, included_calls, extra_call_eur| Package {
        name: name.into(),
        monthly_eur,
        included_calls,
        extra_call_eur,
    };
    vec![
        p("Standard", 0.0, 2_000, 0.011),
        p("Normal", 240.0, 40_000, 0.009),
        p("Business", 400.0, 100_000, 0.007),
    ]
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
    /// Reads and validates the file at `path`, with every secret it names.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        Self::load_with(path, true)
    }

    /// Reads and validates the file at `path` without reading the secrets kept in files or
    /// environment variables, for the commands that never call Tampuuri (`tasks`, `status`,
    /// `cost`, `purge`, `outbox`, `task` without `--now`). Those secrets are listed in
    /// [`Config::unread_secrets`]; everything else is validated as [`Config::load`] does.
    pub fn load_without_secrets(path: &Path) -> Result<Loaded, ConfigError> {
        Self::load_with(path, false)
    }

    fn load_with(path: &Path, read_secrets: bool) -> Result<Loaded, ConfigError> {
        let fail = |message: String| ConfigError {
            path: path.to_owned(),
            errors: vec![Issue {
                key: String::new(),
                message,
            }],
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read the file: {e}")))?;
        let table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| fail(format!("not valid TOML: {e}")))?;
        let mut loaded = Self::from_table_with(table, path, read_secrets)?;
        if !loaded.inline_secrets.is_empty()
            && let Some(w) = readable_by_others(path, &loaded.inline_secrets)
        {
            loaded.warnings.push(w);
        }
        Ok(loaded)
    }

    /// Validates an already parsed TOML table; `path` names it in messages and anchors
    /// relative paths.
    pub fn from_table(root: Table, path: &Path) -> Result<Loaded, ConfigError> {
        Self::from_table_with(root, path, true)
    }

    fn from_table_with(
        mut root: Table,
        path: &Path,
        read_secrets: bool,
    ) -> Result<Loaded, ConfigError> {
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut r = Reader {
            errors: Vec::new(),
            warnings: Vec::new(),
            account_errors: Vec::new(),
            base_dir: base_dir.clone(),
            read_secrets,
            unread: Vec::new(),
            inline: Vec::new(),
        };

        let mut store_t = r.table(&mut root, "", "store").unwrap_or_default();
        let store_path = r
            .string(&mut store_t, "store", "path")
            .map(|p| base_dir.join(p))
            .unwrap_or_else(|| PathBuf::from("/var/lib/huoltosync/huoltosync.db"));
        r.finish(store_t, "store");

        let mut t = r.table(&mut root, "", "tampuuri").unwrap_or_default();
        let global_url = r.url(&mut t, "tampuuri", "base_url");
        let global_key = r.header_secret(&mut t, "tampuuri", "api_key", false);
        let global_customer = r.string(&mut t, "tampuuri", "customer_name");
        let software_version = r
            .string(&mut t, "tampuuri", "software_version")
            .unwrap_or_else(|| format!("huoltosync/{}", env!("CARGO_PKG_VERSION")));
        let page_size = r
            .int_in(&mut t, "tampuuri", "page_size", 1, MAX_PAGE_SIZE as i64)
            .unwrap_or(250) as u32;
        let timeout_secs = r
            .int_in(&mut t, "tampuuri", "timeout_secs", 1, 3600)
            .unwrap_or(30);
        let max_rps = r
            .float_in(&mut t, "tampuuri", "max_requests_per_second", 0.0, 1000.0)
            .unwrap_or(5.0);
        let max_response_bytes = r
            .int_in(&mut t, "tampuuri", "max_response_bytes", 1024, 1 << 30)
            .unwrap_or(16 << 20) as u64;
        let mut rt = r.table(&mut t, "tampuuri", "retry").unwrap_or_default();
        let retry = RetryConfig {
            max_attempts: r
                .int_in(&mut rt, "tampuuri.retry", "max_attempts", 1, 20)
                .unwrap_or(5) as u32,
            initial_delay: Duration::from_millis(
                r.int_in(&mut rt, "tampuuri.retry", "initial_delay_ms", 1, 600_000)
                    .unwrap_or(500) as u64,
            ),
            max_delay: Duration::from_millis(
                r.int_in(&mut rt, "tampuuri.retry", "max_delay_ms", 1, 3_600_000)
                    .unwrap_or(30_000) as u64,
            ),
        };
        r.finish(rt, "tampuuri.retry");
        r.finish(t, "tampuuri");

        let mut st = r.table(&mut root, "", "sync").unwrap_or_default();
        let sync = SyncConfig {
            max_resweeps: r
                .int_in(&mut st, "sync", "max_resweeps", 0, 10)
                .unwrap_or(2) as u32,
            account_concurrency: r
                .int_in(&mut st, "sync", "account_concurrency", 1, 64)
                .unwrap_or(4) as usize,
            pages_in_flight: r
                .int_in(&mut st, "sync", "pages_in_flight", 1, 8)
                .unwrap_or(2) as usize,
            max_pages: r
                .int_in(&mut st, "sync", "max_pages", 1, 1_000_000)
                .unwrap_or(2000) as u32,
            account_deadline: Duration::from_secs(
                r.int_in(&mut st, "sync", "account_deadline_secs", 1, 86_400)
                    .unwrap_or(600) as u64,
            ),
        };
        r.finish(st, "sync");

        let mut pt = r.table(&mut root, "", "push").unwrap_or_default();
        let push = PushConfig {
            concurrency: r.int_in(&mut pt, "push", "concurrency", 1, 32).unwrap_or(4) as usize,
            retry_initial: Duration::from_millis(
                r.int_in(&mut pt, "push", "retry_initial_ms", 1, 3_600_000)
                    .unwrap_or(2_000) as u64,
            ),
            retry_max: Duration::from_millis(
                r.int_in(&mut pt, "push", "retry_max_ms", 1, 86_400_000)
                    .unwrap_or(300_000) as u64,
            ),
            deadline: Duration::from_secs(
                r.int_in(&mut pt, "push", "deadline_hours", 1, 24 * 30)
                    .unwrap_or(24) as u64
                    * 3600,
            ),
            linger: Duration::from_secs(
                r.int_in(&mut pt, "push", "linger_secs", 0, 3600)
                    .unwrap_or(30) as u64,
            ),
            max_attachment_bytes: r
                .int_in(&mut pt, "push", "max_attachment_bytes", 1, 1 << 30)
                .unwrap_or(10_000_000) as u64,
            require_followups_done: r
                .boolean(&mut pt, "push", "require_followups_done")
                .unwrap_or(true),
        };
        r.finish(pt, "push");

        let mut sc = r.table(&mut root, "", "schedule").unwrap_or_default();
        let timezone = match r.string(&mut sc, "schedule", "timezone") {
            None => crate::schedule::DEFAULT_ZONE,
            Some(name) => crate::schedule::parse_zone(&name).unwrap_or_else(|e| {
                r.error("schedule.timezone", &e);
                crate::schedule::DEFAULT_ZONE
            }),
        };
        let poll_expr = r
            .string(&mut sc, "schedule", "poll")
            .unwrap_or_else(|| "0 */15 * * * *".into());
        let poll = match crate::schedule::Schedule::parse(&poll_expr, timezone) {
            Ok(s) => s,
            Err(e) => {
                r.error("schedule.poll", &e);
                crate::schedule::Schedule::parse("0 */15 * * * *", timezone)
                    .expect("the default schedule is valid")
            }
        };
        let schedule = ScheduleConfig {
            jitter: Duration::from_secs(
                r.int_in(&mut sc, "schedule", "jitter_secs", 0, 3600)
                    .unwrap_or(0) as u64,
            ),
            backoff_initial: Duration::from_secs(
                r.int_in(&mut sc, "schedule", "backoff_initial_secs", 1, 86_400)
                    .unwrap_or(60) as u64,
            ),
            backoff_max: Duration::from_secs(
                r.int_in(&mut sc, "schedule", "backoff_max_secs", 1, 7 * 86_400)
                    .unwrap_or(3600) as u64,
            ),
            poll,
            timezone,
        };
        r.finish(sc, "schedule");

        let mut sv = r.table(&mut root, "", "service").unwrap_or_default();
        let default_stale = schedule
            .poll
            .longest_gap(chrono::Utc::now())
            .num_seconds()
            .max(1)
            * 3;
        let mut service = ServiceConfig {
            shutdown_grace: Duration::from_secs(
                r.int_in(&mut sv, "service", "shutdown_grace_secs", 0, 3600)
                    .unwrap_or(20) as u64,
            ),
            push_check: Duration::from_millis(
                r.int_in(&mut sv, "service", "push_check_ms", 100, 600_000)
                    .unwrap_or(2000) as u64,
            ),
            stale_after: Duration::from_secs(
                r.int_in(&mut sv, "service", "stale_after_secs", 1, 90 * 86_400)
                    .unwrap_or(default_stale) as u64,
            ),
            metrics_listen: None,
        };
        r.finish(sv, "service");
        let mut mt = r.table(&mut root, "", "metrics").unwrap_or_default();
        if let Some(listen) = r.string(&mut mt, "metrics", "listen") {
            match listen.parse::<std::net::SocketAddr>() {
                Ok(a) => service.metrics_listen = Some(a),
                Err(e) => r.error(
                    "metrics.listen",
                    &format!("{listen:?} is not an address like 127.0.0.1:9187: {e}"),
                ),
            }
        }
        r.finish(mt, "metrics");

        let mut pv = r.table(&mut root, "", "privacy").unwrap_or_default();
        let privacy = PrivacyConfig {
            retain_days: r
                .int_in(&mut pv, "privacy", "retain_days", 1, 3650)
                .unwrap_or(90) as u32,
        };
        r.finish(pv, "privacy");
        let mut rt = r.table(&mut root, "", "retention").unwrap_or_default();
        let retention = RetentionConfig {
            sync_runs_days: r
                .int_in(&mut rt, "retention", "sync_runs_days", 1, 3650)
                .unwrap_or(400) as u32,
            api_calls_days: r
                .int_in(&mut rt, "retention", "api_calls_days", 1, 3650)
                .unwrap_or(400) as u32,
            outbox_days: r
                .int_in(&mut rt, "retention", "outbox_days", 1, 3650)
                .unwrap_or(400) as u32,
            webhook_events_days: r
                .int_in(&mut rt, "retention", "webhook_events_days", 1, 3650)
                .unwrap_or(400) as u32,
        };
        r.finish(rt, "retention");
        let pricing = r.pricing(&mut root);
        let webhook = r.webhook(&mut root, schedule.timezone);
        let mut api_found = crate::api::config::Found::default();
        let api =
            crate::api::config::read(root.remove("api"), &base_dir, read_secrets, &mut api_found);
        r.errors.extend(api_found.errors);
        r.inline.extend(api_found.inline);
        r.unread.extend(api_found.unread);

        let mut accounts = Vec::new();
        match root.remove("accounts") {
            None => r.error(
                "accounts",
                "no [[accounts]] entry: add one per Tampuuri account",
            ),
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    r.error(
                        "accounts",
                        "no [[accounts]] entry: add one per Tampuuri account",
                    );
                }
                let mut names = HashSet::new();
                for (i, item) in items.into_iter().enumerate() {
                    let key = format!("accounts[{i}]");
                    let Value::Table(mut a) = item else {
                        r.error(&key, "must be a table ([[accounts]])");
                        continue;
                    };
                    let name = r.required_string(&mut a, &key, "name");
                    if let Some(n) = &name
                        && !names.insert(n.clone())
                    {
                        r.error(
                            &format!("{key}.name"),
                            &format!("duplicate account name {n:?}"),
                        );
                    }
                    let username = r.required_string(&mut a, &key, "username");
                    let password = r.header_secret(&mut a, &key, "password", true);
                    if password.is_none() {
                        r.missing_secret(&key, "password");
                    }
                    let contractor_id = r.int_in(&mut a, &key, "contractor_id", 1, i64::MAX);
                    let customer = r.string(&mut a, &key, "customer");
                    let billed = r.boolean(&mut a, &key, "billed").unwrap_or(true);
                    if contractor_id.is_none() && !r.has_error(&format!("{key}.contractor_id")) {
                        r.error(
                            &format!("{key}.contractor_id"),
                            "missing: our työnsuorittaja party id in this account",
                        );
                    }
                    let api_key = r
                        .header_secret(&mut a, &key, "api_key", true)
                        .or_else(|| global_key.clone());
                    if api_key.is_none()
                        && !r.has_error(&format!("{key}.api_key"))
                        && !r
                            .errors
                            .iter()
                            .any(|i| i.key.starts_with("tampuuri.api_key"))
                    {
                        r.error(&format!("{key}.api_key"), "missing: set tampuuri.api_key (or api_key_file / api_key_env), or this account's api_key");
                    }
                    let customer_name = r
                        .string(&mut a, &key, "customer_name")
                        .or_else(|| global_customer.clone());
                    if customer_name.is_none() {
                        r.error(
                            &format!("{key}.customer_name"),
                            "missing: set tampuuri.customer_name or this account's customer_name",
                        );
                    }
                    let url = r
                        .url(&mut a, &key, "base_url")
                        .or_else(|| global_url.clone());
                    if url.is_none()
                        && !r.has_error(&format!("{key}.base_url"))
                        && !r.has_error("tampuuri.base_url")
                    {
                        r.error(
                            &format!("{key}.base_url"),
                            "missing: set tampuuri.base_url or this account's base_url",
                        );
                    }
                    let states = r.states(&mut a, &key);
                    let state_filter = match r.string(&mut a, &key, "state_filter").as_deref() {
                        None | Some("list") => StateFilter::List,
                        Some("per_state") => StateFilter::PerState,
                        Some(other) => {
                            r.error(
                                &format!("{key}.state_filter"),
                                &format!("{other:?} is not one of \"list\", \"per_state\""),
                            );
                            StateFilter::List
                        }
                    };
                    let extra_filter = r.extra_filter(&mut a, &key);
                    r.finish(a, &key);
                    if let (
                        Some(name),
                        Some(username),
                        Some(password),
                        Some(contractor_id),
                        Some(api_key),
                        Some(customer_name),
                        Some(base_url),
                    ) = (
                        name,
                        username,
                        password,
                        contractor_id,
                        api_key,
                        customer_name,
                        url,
                    ) {
                        accounts.push(AccountConfig {
                            customer: customer.unwrap_or_else(|| name.clone()),
                            billed,
                            name,
                            username,
                            password,
                            contractor_id,
                            api_key,
                            customer_name,
                            base_url,
                            states,
                            state_filter,
                            extra_filter,
                        });
                    }
                }
            }
            Some(_) => r.error("accounts", "must be an array of tables ([[accounts]])"),
        }
        r.finish(root, "");

        if !r.errors.is_empty() {
            return Err(ConfigError {
                path: path.to_owned(),
                errors: r.errors,
            });
        }
        Ok(Loaded {
            config: Config {
                source: path.to_owned(),
                store: StoreConfig { path: store_path },
                tampuuri: TampuuriConfig {
                    software_version,
                    page_size,
                    timeout: Duration::from_secs(timeout_secs as u64),
                    max_requests_per_second: max_rps,
                    retry,
                    max_response_bytes,
                },
                sync,
                push,
                schedule,
                service,
                privacy,
                retention,
                pricing,
                webhook,
                api,
                accounts,
                unread_secrets: r.unread,
            },
            warnings: r.warnings,
            account_errors: r.account_errors,
            inline_secrets: r.inline,
        })
    }

    /// The account with this name.
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

/// Walks a TOML table, taking the keys it knows and recording every problem with its key path.
struct Reader {
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
    account_errors: Vec<Issue>,
    base_dir: PathBuf,
    /// false: `*_file` and `*_env` secrets are not read, only noted in `unread`.
    read_secrets: bool,
    unread: Vec<String>,
    /// Secrets given inline, by key.
    inline: Vec<String>,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    v.type_str()
}

impl Reader {
    fn error(&mut self, key: &str, message: &str) {
        self.errors.push(Issue {
            key: key.to_owned(),
            message: message.to_owned(),
        });
    }

    fn warn(&mut self, key: &str, message: &str) {
        self.warnings.push(Issue {
            key: key.to_owned(),
            message: message.to_owned(),
        });
    }

    fn has_error(&self, key: &str) -> bool {
        self.errors.iter().any(|i| i.key == key)
    }

    /// Reports the keys nobody took as unknown.
    fn finish(&mut self, rest: Table, prefix: &str) {
        for key in rest.keys() {
            self.error(&join(prefix, key), "unknown key");
        }
    }

    fn table(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<Table> {
        match t.remove(key)? {
            Value::Table(x) => Some(x),
            other => {
                self.error(
                    &join(prefix, key),
                    &format!("must be a table, not a {}", type_name(&other)),
                );
                None
            }
        }
    }

    fn string(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<String> {
        match t.remove(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s),
            Value::String(_) => {
                self.error(&join(prefix, key), "must not be empty");
                None
            }
            other => {
                self.error(
                    &join(prefix, key),
                    &format!("must be a string, not a {}", type_name(&other)),
                );
                None
            }
        }
    }

    fn required_string(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<String> {
        let full = join(prefix, key);
        let v = self.string(t, prefix, key);
        if v.is_none() && !self.has_error(&full) {
            self.error(&full, "missing");
        }
        v
    }

    fn int_in(
        &mut self,
        t: &mut Table,
        prefix: &str,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let full = join(prefix, key);
        match t.remove(key)? {
            Value::Integer(n) if (min..=max).contains(&n) => Some(n),
            Value::Integer(n) if max == i64::MAX => {
                self.error(
                    &full,
                    &format!("{n} is out of range: must be at least {min}"),
                );
                None
            }
            Value::Integer(n) => {
                self.error(
                    &full,
                    &format!("{n} is out of range: must be from {min} to {max}"),
                );
                None
            }
            other => {
                self.error(
                    &full,
                    &format!("must be an integer, not a {}", type_name(&other)),
                );
                None
            }
        }
    }

    /// `[webhook]`: `None` unless `listen` is set; then at least one authentication is required.
    fn webhook(&mut self, root: &mut Table, zone: chrono_tz::Tz) -> Option<WebhookConfig> {
        let mut t = self.table(root, "", "webhook")?;
        let p = "webhook";
        let listen = self.string(&mut t, p, "listen");
        let path = self
            .string(&mut t, p, "path")
            .unwrap_or_else(|| "/tampuuri/webhook".into());
        if let Err(why) = check_webhook_path(&path) {
            self.error("webhook.path", &format!("{path:?} {why}"));
        }
        let path_token = self.secret(&mut t, p, "path_token");
        let basic_username = self.string(&mut t, p, "basic_username");
        let basic_password = self.secret(&mut t, p, "basic_password");
        if basic_username.is_some() != basic_password.is_some() {
            self.error(
                "webhook.basic_username",
                "give both basic_username and basic_password (or neither)",
            );
        }
        let hmac_secret = self.secret(&mut t, p, "hmac_secret");
        let hmac_header = self
            .string(&mut t, p, "hmac_header")
            .unwrap_or_else(|| "X-Huoltosync-Digest".into());
        let max_body_bytes = self
            .int_in(&mut t, p, "max_body_bytes", 1024, MAX_WEBHOOK_BODY as i64)
            .unwrap_or(256 * 1024) as usize;
        let max_connections = self
            .int_in(&mut t, p, "max_connections", 1, 10_000)
            .unwrap_or(256) as usize;
        let debounce_ms = self
            .int_in(&mut t, p, "debounce_ms", 0, 60_000)
            .unwrap_or(200) as u64;
        let debounce_max_ms = self
            .int_in(&mut t, p, "debounce_max_ms", 0, 3_600_000)
            .unwrap_or(5_000) as u64;
        if debounce_max_ms < debounce_ms {
            self.error(
                "webhook.debounce_max_ms",
                &format!("{debounce_max_ms} is below debounce_ms ({debounce_ms})"),
            );
        }
        let reconcile_expr = self
            .string(&mut t, p, "reconcile")
            .unwrap_or_else(|| "0 0 * * * *".into());
        let reconcile = crate::schedule::Schedule::parse(&reconcile_expr, zone)
            .map_err(|e| self.error("webhook.reconcile", &e))
            .ok();
        let actions = match t.remove("actions") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(_) => {
                self.error("webhook.actions", "must be a list of action names");
                Vec::new()
            }
        };
        let addon_eur = self
            .float_in(&mut t, p, "addon_eur", 0.0, 1e6)
            .unwrap_or(500.0);
        self.finish(t, "webhook");
        let listen = match listen?.parse::<std::net::SocketAddr>() {
            Ok(a) => a,
            Err(e) => {
                self.error(
                    "webhook.listen",
                    &format!("not an address like 127.0.0.1:8787: {e}"),
                );
                return None;
            }
        };
        if path_token.is_none() && basic_password.is_none() && hmac_secret.is_none() {
            self.error("webhook", "a listener needs at least one of path_token, basic_username + basic_password, hmac_secret");
        }
        Some(WebhookConfig {
            listen,
            path: path.trim_end_matches('/').to_owned(),
            path_token,
            basic_username,
            basic_password,
            hmac_secret,
            hmac_header,
            max_body_bytes,
            max_connections,
            debounce: Duration::from_millis(debounce_ms),
            debounce_max: Duration::from_millis(debounce_max_ms),
            reconcile: reconcile?,
            actions,
            addon_eur,
        })
    }

    /// `[[pricing]]` entries, or the seed's three packages.
    fn pricing(&mut self, root: &mut Table) -> Vec<Package> {
        let Some(v) = root.remove("pricing") else {
            return default_pricing();
        };
        let Value::Array(items) = v else {
            self.error("pricing", "must be an array of tables ([[pricing]])");
            return default_pricing();
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let key = format!("pricing[{i}]");
            let Value::Table(mut t) = item else {
                self.error(&key, "must be a table");
                continue;
            };
            let name = self.required_string(&mut t, &key, "name");
            let monthly = self.float_in(&mut t, &key, "monthly_eur", 0.0, 1e6);
            let included = self.int_in(&mut t, &key, "included_calls", 0, i64::MAX);
            let extra = self.float_in(&mut t, &key, "extra_call_eur", 0.0, 100.0);
            self.finish(t, &key);
            match (name, monthly, included, extra) {
                (Some(name), Some(monthly_eur), Some(included_calls), Some(extra_call_eur)) => out
                    .push(Package {
                        name,
                        monthly_eur,
                        included_calls: included_calls as u64,
                        extra_call_eur,
                    }),
                _ => self.error(
                    &key,
                    "needs name, monthly_eur, included_calls and extra_call_eur",
                ),
            }
        }
        out
    }

    fn boolean(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<bool> {
        match t.remove(key)? {
            Value::Boolean(b) => Some(b),
            other => {
                self.error(
                    &join(prefix, key),
                    &format!("must be true or false, not a {}", type_name(&other)),
                );
                None
            }
        }
    }

    fn float_in(
        &mut self,
        t: &mut Table,
        prefix: &str,
        key: &str,
        min: f64,
        max: f64,
    ) -> Option<f64> {
        let full = join(prefix, key);
        let v = match t.remove(key)? {
            Value::Integer(n) => n as f64,
            Value::Float(x) => x,
            other => {
                self.error(
                    &full,
                    &format!("must be a number, not a {}", type_name(&other)),
                );
                return None;
            }
        };
        if !(min..=max).contains(&v) {
            self.error(
                &full,
                &format!("{v} is out of range: must be from {min} to {max}"),
            );
            return None;
        }
        Some(v)
    }

    /// A base URL: http or https, normalised to end in `/`.
    fn url(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<String> {
        let raw = self.string(t, prefix, key)?;
        match reqwest::Url::parse(&raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                let mut s = u.to_string();
                if !s.ends_with('/') {
                    s.push('/');
                }
                Some(s)
            }
            Ok(_) => {
                self.error(
                    &join(prefix, key),
                    &format!("{raw:?} must be an http:// or https:// URL"),
                );
                None
            }
            Err(e) => {
                self.error(&join(prefix, key), &format!("{raw:?} is not a URL: {e}"));
                None
            }
        }
    }

    /// A secret given as `key`, `key_file` or `key_env` (exactly one).
    fn secret(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<SecretString> {
        let file_key = format!("{key}_file");
        let env_key = format!("{key}_env");
        let inline = self.string(t, prefix, key);
        let file = self.string(t, prefix, &file_key);
        let env = self.string(t, prefix, &env_key);
        let given = [inline.is_some(), file.is_some(), env.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if given > 1 {
            self.error(
                &join(prefix, key),
                &format!("give only one of {key}, {file_key}, {env_key}"),
            );
            return None;
        }
        if let Some(s) = inline {
            self.inline.push(join(prefix, key));
            return Some(SecretString::from(s));
        }
        if !self.read_secrets
            && let Some(unread) = file
                .as_ref()
                .map(|_| &file_key)
                .or(env.as_ref().map(|_| &env_key))
        {
            // Never sent anywhere: `Api::new` refuses a config with unread secrets.
            self.unread.push(join(prefix, unread));
            return Some(SecretString::from(String::new()));
        }
        if let Some(f) = file {
            let path = self.credential_path(&f);
            return match std::fs::read_to_string(&path) {
                Ok(s) if !s.trim().is_empty() => Some(SecretString::from(
                    s.trim_end_matches(['\n', '\r']).to_owned(),
                )),
                Ok(_) => {
                    self.error(
                        &join(prefix, &file_key),
                        &format!("{} is empty", path.display()),
                    );
                    None
                }
                Err(e) => {
                    self.error(
                        &join(prefix, &file_key),
                        &format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            };
        }
        if let Some(var) = env {
            return match std::env::var(&var) {
                Ok(s) if !s.is_empty() => Some(SecretString::from(s)),
                _ => {
                    self.error(
                        &join(prefix, &env_key),
                        &format!("environment variable {var} is not set"),
                    );
                    None
                }
            };
        }
        None
    }

    /// A secret sent as an HTTP header (`api_key`, `password`): one with a character a header
    /// cannot carry is reported by the key it came from, never by its value. An account's own
    /// secret (`account_level`) spoils only that account.
    fn header_secret(
        &mut self,
        t: &mut Table,
        prefix: &str,
        key: &str,
        account_level: bool,
    ) -> Option<SecretString> {
        let given = [key.to_owned(), format!("{key}_file"), format!("{key}_env")]
            .into_iter()
            .find(|k| t.contains_key(k))
            .map(|k| join(prefix, &k))?;
        let secret = self.secret(t, prefix, key)?;
        if reqwest::header::HeaderValue::from_str(secrecy::ExposeSecret::expose_secret(&secret))
            .is_err()
        {
            let issue = Issue {
                key: given,
                message: "holds a character an HTTP header cannot carry (a control character such as a newline inside the value); it cannot be sent to Tampuuri".into(),
            };
            if account_level {
                self.account_errors.push(issue);
            } else {
                self.errors.push(issue);
                return None;
            }
        }
        Some(secret)
    }

    fn missing_secret(&mut self, prefix: &str, key: &str) {
        let full = join(prefix, key);
        if !self.errors.iter().any(|i| i.key.starts_with(&full)) {
            self.error(
                &full,
                &format!("missing: give {key}, {key}_file or {key}_env"),
            );
        }
    }

    /// `*_file` names: absolute as given; relative ones in `$CREDENTIALS_DIRECTORY` (systemd's
    /// `LoadCredential=`) when it is set, else beside the config file.
    fn credential_path(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            return p.to_owned();
        }
        match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => Path::new(&dir).join(p),
            None => self.base_dir.join(p),
        }
    }

    fn states(&mut self, t: &mut Table, prefix: &str) -> Vec<String> {
        let default = || DEFAULT_OPEN_STATES.iter().map(|s| s.to_string()).collect();
        let full = join(prefix, "states");
        match t.remove("states") {
            None => default(),
            Some(Value::Array(items)) if !items.is_empty() => {
                let mut out = Vec::new();
                for v in items {
                    match v {
                        Value::String(s) if !s.trim().is_empty() => {
                            let state = crate::model::TicketState::from_name(&s);
                            if state.is_finished() {
                                self.warn(&full, &format!("{s:?} is a finished state: such tickets will be mirrored as open"));
                            } else if matches!(state, crate::model::TicketState::Other(_)) {
                                self.warn(
                                    &full,
                                    &format!("{s:?} is not a state this version knows"),
                                );
                            }
                            out.push(state.name().to_owned());
                        }
                        other => self.error(&full, &format!("must hold state names, not {other}")),
                    }
                }
                out
            }
            Some(_) => {
                self.error(&full, "must be a non-empty list of state names, e.g. [\"Avoin\", \"Vastaanotettu\", \"Odottaa\"]");
                default()
            }
        }
    }

    fn extra_filter(
        &mut self,
        t: &mut Table,
        prefix: &str,
    ) -> serde_json::Map<String, serde_json::Value> {
        let full = join(prefix, "extra_filter");
        let Some(table) = self.table(t, prefix, "extra_filter") else {
            return Default::default();
        };
        let mut out = serde_json::Map::new();
        for (k, v) in table {
            if crate::tampuuri::RESERVED_FILTER_KEYS
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&k))
            {
                self.error(
                    &format!("{full}.{k}"),
                    "is set by huoltosync itself and cannot be overridden here",
                );
                continue;
            }
            match serde_json::to_value(&v) {
                Ok(j) => {
                    out.insert(k, j);
                }
                Err(e) => self.error(
                    &format!("{full}.{k}"),
                    &format!("cannot be sent as JSON: {e}"),
                ),
            }
        }
        out
    }
}

#[cfg(unix)]
fn readable_by_others(path: &Path, keys: &[String]) -> Option<Issue> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    inline_secret_warning(path, mode, keys)
}

/// The warning for a config file holding secrets inline (`keys`, as the loader read them),
/// when its `mode` lets every user on the machine read it. Owner and group access are the
/// service's own (`root:huoltosync 0640`). Names the keys, never the values.
fn inline_secret_warning(path: &Path, mode: u32, keys: &[String]) -> Option<Issue> {
    (mode & 0o004 != 0).then(|| Issue {
        key: String::new(),
        message: format!(
            "{} holds secrets inline ({}) and is readable by others (every user; mode {:o}): `chmod o-rwx` it (the service reads it as its owner or group, e.g. root:huoltosync 0640), or move each to a *_file",
            path.display(),
            keys.join(", "),
            mode & 0o777
        ),
    })
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path, _: &[String]) -> Option<Issue> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str) -> Result<Loaded, ConfigError> {
        Config::from_table(
            toml.parse().unwrap(),
            Path::new("/etc/huoltosync/config.toml"),
        )
    }

    const MINIMAL: &str = r#"
        [tampuuri]
        base_url = "http://127.0.0.1:1/v10/api"
        api_key = "k"
        customer_name = "C"
        [[accounts]]
        name = "a"
        username = "u"
        password = "p"
        contractor_id = 4711
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = check(MINIMAL).unwrap().config;
        let a = &c.accounts[0];
        assert_eq!(a.base_url, "http://127.0.0.1:1/v10/api/");
        assert_eq!(a.states, DEFAULT_OPEN_STATES);
        assert_eq!(a.state_filter, StateFilter::List);
        assert_eq!(c.tampuuri.page_size, 250);
        assert_eq!(c.tampuuri.max_requests_per_second, 5.0);
        assert!(c.tampuuri.software_version.starts_with("huoltosync/"));
        assert_eq!(c.store.path, Path::new("/var/lib/huoltosync/huoltosync.db"));
    }

    #[test]
    fn an_inline_secret_is_worth_a_warning_only_when_every_user_can_read_it() {
        let path = Path::new("/etc/huoltosync/config.toml");
        let keys = ["webhook.basic_password".to_owned()];
        for private in [0o600, 0o640, 0o660, 0o750] {
            assert!(
                inline_secret_warning(path, private, &keys).is_none(),
                "{private:o}"
            );
        }
        let w = inline_secret_warning(path, 0o100644, &keys)
            .unwrap()
            .message;
        assert!(w.contains("mode 644") && w.contains("chmod o-rwx"), "{w}");
        assert!(w.contains("(webhook.basic_password)"), "{w}");
        assert!(!w.contains("chmod 600"), "{w}");
    }

    #[test]
    fn secrets_never_print() {
        let c = check(MINIMAL).unwrap().config;
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("\"p\"") && !shown.contains("\"k\""),
            "{shown}"
        );
    }
}
