//! Loading: the file, then its sections in a fixed order (store, tampuuri, sync, push,
//! schedule, service and metrics, privacy, retention, pricing, webhook, api subscribers, api,
//! board, accounts, slotti), one function of the one [`Reader`] each (the faces' and Slotti's
//! in `sections/`). Every problem is recorded by its key and loading goes on, so one run of `check-config`
//! lists them all; a section with a bad value goes on with that key's default.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use toml::{Table, Value};

use super::keys;
use super::reader::Reader;
use super::secrets::readable_by_others;
use super::types::*;
use crate::domain::cost::{Package, default_pricing};

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
        let mut r = Reader::new(path, read_secrets);
        let store = r.store(&mut root, &base_dir);
        let (tampuuri, globals) = r.tampuuri(&mut root);
        let sync = r.sync(&mut root);
        let push = r.push(&mut root);
        let schedule = r.schedule(&mut root);
        let service = r.service(&mut root, &schedule.poll);
        let privacy = r.privacy(&mut root);
        let retention = r.retention(&mut root);
        let pricing = r.pricing(&mut root);
        let webhook = r.webhook(&mut root, schedule.timezone);
        let subscribers = r.subscribers(&mut root);
        let api = r.api(&mut root);
        let board = r.board(&mut root, api.as_ref().is_some_and(|a| a.listen.is_some()));
        let accounts = r.accounts(&mut root, &globals);
        let slotti = r.slotti(
            &mut root,
            webhook.as_ref().map(|w| w.path.as_str()),
            schedule.timezone,
        );
        if let Some(s) = &slotti {
            let names: Vec<String> = accounts.iter().map(|a| a.name.clone()).collect();
            for (key, message) in super::sections::slotti::unknown_accounts(s, &names) {
                r.error(&key, &message);
            }
            // Slotti's calls are metered under this name in `api_calls`.
            let meter = keys::slotti::METER_ACCOUNT;
            if let Some(i) = names.iter().position(|n| n == meter) {
                r.error(
                    &format!("accounts[{i}].name"),
                    &format!(
                        "{meter:?} is the name Slotti's API calls are metered under: rename this account"
                    ),
                );
            }
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
                store,
                tampuuri,
                sync,
                push,
                schedule,
                service,
                privacy,
                retention,
                pricing,
                webhook,
                subscribers,
                api,
                slotti,
                board,
                accounts,
                unread_secrets: r.unread,
            },
            warnings: r.warnings,
            account_errors: r.account_errors,
            inline_secrets: r.inline,
        })
    }
}

/// The `[tampuuri]` values an account falls back on when it does not set its own.
struct Globals {
    base_url: Option<String>,
    api_key: Option<SecretString>,
    customer_name: Option<String>,
}

/// What an account's entry yields before it is known to be complete.
struct AccountParts {
    name: Option<String>,
    username: Option<String>,
    password: Option<SecretString>,
    contractor_id: Option<i64>,
    customer: Option<String>,
    billed: bool,
    api_key: Option<SecretString>,
    customer_name: Option<String>,
    base_url: Option<String>,
    states: Vec<String>,
    state_filter: StateFilter,
    extra_filter: serde_json::Map<String, serde_json::Value>,
}

impl AccountParts {
    /// The account, when every required value is there (each missing one was reported).
    fn complete(self) -> Option<AccountConfig> {
        let name = self.name?;
        Some(AccountConfig {
            customer: self.customer.unwrap_or_else(|| name.clone()),
            billed: self.billed,
            username: self.username?,
            password: self.password?,
            contractor_id: self.contractor_id?,
            api_key: self.api_key?,
            customer_name: self.customer_name?,
            base_url: self.base_url?,
            name,
            states: self.states,
            state_filter: self.state_filter,
            extra_filter: self.extra_filter,
        })
    }
}

impl Reader {
    /// `[store]`
    fn store(&mut self, root: &mut Table, base_dir: &Path) -> StoreConfig {
        use keys::store::*;
        let mut t = self.table(root, "", SECTION).unwrap_or_default();
        let path = base_dir.join(self.text(&mut t, SECTION, &PATH));
        self.finish(t, SECTION);
        StoreConfig { path }
    }

    /// `[tampuuri]` and `[tampuuri.retry]`, and the values accounts fall back on.
    fn tampuuri(&mut self, root: &mut Table) -> (TampuuriConfig, Globals) {
        use keys::tampuuri::*;
        let mut t = self.table(root, "", SECTION).unwrap_or_default();
        let globals = Globals {
            base_url: self.url(&mut t, SECTION, "base_url"),
            api_key: self.header_secret(&mut t, SECTION, "api_key", false),
            customer_name: self.string(&mut t, SECTION, "customer_name"),
        };
        let software_version = self.text(&mut t, SECTION, &SOFTWARE_VERSION);
        let page_size = self.int(&mut t, SECTION, &PAGE_SIZE) as u32;
        let timeout_secs = self.int(&mut t, SECTION, &TIMEOUT_SECS);
        let max_rps = self.float(&mut t, SECTION, &MAX_REQUESTS_PER_SECOND);
        let max_response_bytes = self.int(&mut t, SECTION, &MAX_RESPONSE_BYTES) as u64;
        let max_retry_after = self.int(&mut t, SECTION, &MAX_RETRY_AFTER_SECS) as u64;
        let retry = self.retry(&mut t);
        self.finish(t, SECTION);
        let config = TampuuriConfig {
            software_version,
            page_size,
            timeout: Duration::from_secs(timeout_secs as u64),
            max_requests_per_second: max_rps,
            retry,
            max_response_bytes,
            max_retry_after: Duration::from_secs(max_retry_after),
        };
        (config, globals)
    }

    /// `[tampuuri.retry]`
    fn retry(&mut self, tampuuri: &mut Table) -> RetryConfig {
        use keys::tampuuri::retry::*;
        let mut t = self
            .table(tampuuri, keys::tampuuri::SECTION, "retry")
            .unwrap_or_default();
        let retry = RetryConfig {
            max_attempts: self.int(&mut t, SECTION, &MAX_ATTEMPTS) as u32,
            initial_delay: ms(self.int(&mut t, SECTION, &INITIAL_DELAY_MS)),
            max_delay: ms(self.int(&mut t, SECTION, &MAX_DELAY_MS)),
        };
        self.finish(t, SECTION);
        retry
    }

    /// `[sync]`
    fn sync(&mut self, root: &mut Table) -> SyncConfig {
        use keys::sync::*;
        let mut t = self.table(root, "", SECTION).unwrap_or_default();
        let sync = SyncConfig {
            max_resweeps: self.int(&mut t, SECTION, &MAX_RESWEEPS) as u32,
            account_concurrency: self.int(&mut t, SECTION, &ACCOUNT_CONCURRENCY) as usize,
            pages_in_flight: self.int(&mut t, SECTION, &PAGES_IN_FLIGHT) as usize,
            max_pages: self.int(&mut t, SECTION, &MAX_PAGES) as u32,
            account_deadline: secs(self.int(&mut t, SECTION, &ACCOUNT_DEADLINE_SECS)),
        };
        self.finish(t, SECTION);
        sync
    }

    /// `[push]`
    fn push(&mut self, root: &mut Table) -> PushConfig {
        use keys::push::*;
        let mut t = self.table(root, "", SECTION).unwrap_or_default();
        let push = PushConfig {
            concurrency: self.int(&mut t, SECTION, &CONCURRENCY) as usize,
            retry_initial: ms(self.int(&mut t, SECTION, &RETRY_INITIAL_MS)),
            retry_max: ms(self.int(&mut t, SECTION, &RETRY_MAX_MS)),
            deadline: secs(self.int(&mut t, SECTION, &DEADLINE_HOURS) * 3600),
            linger: secs(self.int(&mut t, SECTION, &LINGER_SECS)),
            max_attachment_bytes: self.int(&mut t, SECTION, &MAX_ATTACHMENT_BYTES) as u64,
            require_followups_done: self.flag(&mut t, SECTION, &REQUIRE_FOLLOWUPS_DONE),
        };
        self.finish(t, SECTION);
        push
    }

    /// `[schedule]`: the zone first, since the poll schedule is read in it.
    fn schedule(&mut self, root: &mut Table) -> ScheduleConfig {
        use crate::service::schedule::{DEFAULT_ZONE, Schedule, parse_zone};
        use keys::schedule::*;
        let mut t = self.table(root, "", SECTION).unwrap_or_default();
        let timezone = match self.string(&mut t, SECTION, TIMEZONE) {
            None => DEFAULT_ZONE,
            Some(name) => parse_zone(&name).unwrap_or_else(|e| {
                self.error(&format!("{SECTION}.{TIMEZONE}"), &e);
                DEFAULT_ZONE
            }),
        };
        let poll_expr = self.text(&mut t, SECTION, &POLL);
        let poll = Schedule::parse(&poll_expr, timezone).unwrap_or_else(|e| {
            self.error(&format!("{SECTION}.{}", POLL.name), &e);
            Schedule::parse(POLL.default, timezone).expect("the default schedule is valid")
        });
        let schedule = ScheduleConfig {
            jitter: secs(self.int(&mut t, SECTION, &JITTER_SECS)),
            backoff_initial: secs(self.int(&mut t, SECTION, &BACKOFF_INITIAL_SECS)),
            backoff_max: secs(self.int(&mut t, SECTION, &BACKOFF_MAX_SECS)),
            poll,
            timezone,
        };
        self.finish(t, SECTION);
        schedule
    }

    /// `[service]` and `[metrics]`; `status` calls an account stale after a few of `poll`'s
    /// longest gaps unless `stale_after_secs` says otherwise.
    fn service(
        &mut self,
        root: &mut Table,
        poll: &crate::service::schedule::Schedule,
    ) -> ServiceConfig {
        use keys::service::*;
        let mut t = self.table(root, "", SECTION).unwrap_or_default();
        let default_stale =
            poll.longest_gap(chrono::Utc::now()).num_seconds().max(1) * STALE_AFTER_POLL_GAPS;
        let mut service = ServiceConfig {
            shutdown_grace: secs(self.int(&mut t, SECTION, &SHUTDOWN_GRACE_SECS)),
            push_check: ms(self.int(&mut t, SECTION, &PUSH_CHECK_MS)),
            stale_after: secs(
                self.int_range(&mut t, SECTION, &STALE_AFTER_SECS)
                    .unwrap_or(default_stale),
            ),
            metrics_listen: None,
        };
        self.finish(t, SECTION);
        service.metrics_listen = self.metrics(root);
        service
    }

    /// `[metrics]`
    fn metrics(&mut self, root: &mut Table) -> Option<std::net::SocketAddr> {
        use keys::metrics::*;
        let mut t = self.table(root, "", SECTION).unwrap_or_default();
        let listen = self.string(&mut t, SECTION, LISTEN).and_then(|listen| {
            listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| {
                    self.error(
                        &format!("{SECTION}.{LISTEN}"),
                        &format!("{listen:?} is not an address like 127.0.0.1:9187: {e}"),
                    )
                })
                .ok()
        });
        self.finish(t, SECTION);
        listen
    }

    /// `[privacy]`
    fn privacy(&mut self, root: &mut Table) -> PrivacyConfig {
        use keys::privacy::*;
        let mut t = self.table(root, "", SECTION).unwrap_or_default();
        let privacy = PrivacyConfig {
            retain_days: self.int(&mut t, SECTION, &RETAIN_DAYS) as u32,
        };
        self.finish(t, SECTION);
        privacy
    }

    /// `[retention]`
    fn retention(&mut self, root: &mut Table) -> RetentionConfig {
        use keys::retention::*;
        let mut t = self.table(root, "", SECTION).unwrap_or_default();
        let retention = RetentionConfig {
            sync_runs_days: self.int(&mut t, SECTION, &SYNC_RUNS_DAYS) as u32,
            api_calls_days: self.int(&mut t, SECTION, &API_CALLS_DAYS) as u32,
            outbox_days: self.int(&mut t, SECTION, &OUTBOX_DAYS) as u32,
            webhook_events_days: self.int(&mut t, SECTION, &WEBHOOK_EVENTS_DAYS) as u32,
        };
        self.finish(t, SECTION);
        retention
    }

    /// `[[pricing]]` entries, or the seed's three packages.
    fn pricing(&mut self, root: &mut Table) -> Vec<Package> {
        use keys::pricing::*;
        let Some(v) = root.remove(SECTION) else {
            return default_pricing();
        };
        let Value::Array(items) = v else {
            self.error(SECTION, "must be an array of tables ([[pricing]])");
            return default_pricing();
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let key = format!("{SECTION}[{i}]");
            let Value::Table(mut t) = item else {
                self.error(&key, "must be a table");
                continue;
            };
            let name = self.required_string(&mut t, &key, "name");
            let monthly = self.float_range(&mut t, &key, &MONTHLY_EUR);
            let included = self.int_range(&mut t, &key, &INCLUDED_CALLS);
            let extra = self.float_range(&mut t, &key, &EXTRA_CALL_EUR);
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

    /// `[webhook]`: `None` unless `listen` is set; then at least one authentication is required.
    fn webhook(&mut self, root: &mut Table, zone: chrono_tz::Tz) -> Option<WebhookConfig> {
        use keys::webhook::*;
        let mut t = self.table(root, "", SECTION)?;
        let p = SECTION;
        let listen = self.string(&mut t, p, "listen");
        let path = self.text(&mut t, p, &PATH);
        if let Err(why) = check_webhook_path(&path) {
            self.error("webhook.path", &format!("{path:?} {why}"));
        }
        let auth = self.webhook_auth(&mut t);
        let hmac_header = self.text(&mut t, p, &HMAC_HEADER);
        let max_body_bytes = self.int(&mut t, p, &MAX_BODY_BYTES) as usize;
        let max_connections = self.int(&mut t, p, &MAX_CONNECTIONS) as usize;
        let max_connections_per_address =
            self.int(&mut t, p, &MAX_CONNECTIONS_PER_ADDRESS) as usize;
        let debounce_ms = self.int(&mut t, p, &DEBOUNCE_MS) as u64;
        let debounce_max_ms = self.int(&mut t, p, &DEBOUNCE_MAX_MS) as u64;
        if debounce_max_ms < debounce_ms {
            self.error(
                "webhook.debounce_max_ms",
                &format!("{debounce_max_ms} is below debounce_ms ({debounce_ms})"),
            );
        }
        let reconcile_expr = self.text(&mut t, p, &RECONCILE);
        let reconcile = crate::service::schedule::Schedule::parse(&reconcile_expr, zone)
            .map_err(|e| self.error("webhook.reconcile", &e))
            .ok();
        let actions = self.webhook_actions(&mut t);
        let max_fetches_per_minute = self.int(&mut t, p, &MAX_FETCHES_PER_MINUTE) as u32;
        let addon_eur = self.float(&mut t, p, &ADDON_EUR);
        self.finish(t, SECTION);
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
        let (path_token, basic_username, basic_password, hmac_secret) = auth;
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
            max_connections_per_address,
            debounce: Duration::from_millis(debounce_ms),
            debounce_max: Duration::from_millis(debounce_max_ms),
            reconcile: reconcile?,
            actions,
            max_fetches_per_minute,
            addon_eur,
        })
    }

    /// The listener's authentications: path token, Basic username and password, HMAC secret.
    #[allow(clippy::type_complexity)]
    fn webhook_auth(
        &mut self,
        t: &mut Table,
    ) -> (
        Option<SecretString>,
        Option<String>,
        Option<SecretString>,
        Option<SecretString>,
    ) {
        let p = keys::webhook::SECTION;
        let path_token = self.secret(t, p, "path_token");
        let basic_username = self.string(t, p, "basic_username");
        let basic_password = self.secret(t, p, "basic_password");
        if basic_username.is_some() != basic_password.is_some() {
            self.error(
                "webhook.basic_username",
                "give both basic_username and basic_password (or neither)",
            );
        }
        let hmac_secret = self.secret(t, p, "hmac_secret");
        (path_token, basic_username, basic_password, hmac_secret)
    }

    /// `[webhook] actions`: empty means every action starting with `Ilmoitus`.
    fn webhook_actions(&mut self, t: &mut Table) -> Vec<String> {
        match t.remove("actions") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(_) => {
                self.error("webhook.actions", "must be a list of action names");
                Vec::new()
            }
        }
    }

    /// `[[accounts]]`: at least one, names unique; an incomplete entry is reported and left out.
    fn accounts(&mut self, root: &mut Table, globals: &Globals) -> Vec<AccountConfig> {
        const NONE: &str = "no [[accounts]] entry: add one per Tampuuri account";
        let section = keys::accounts::SECTION;
        let items = match root.remove(section) {
            None => {
                self.error(section, NONE);
                return Vec::new();
            }
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.error(section, "must be an array of tables ([[accounts]])");
                return Vec::new();
            }
        };
        if items.is_empty() {
            self.error(section, NONE);
        }
        let mut names = HashSet::new();
        let mut accounts = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let key = format!("{section}[{i}]");
            let Value::Table(mut a) = item else {
                self.error(&key, "must be a table ([[accounts]])");
                continue;
            };
            let parts = self.account(&mut a, &key, &mut names, globals);
            self.finish(a, &key);
            accounts.extend(parts.complete());
        }
        accounts
    }

    /// One `[[accounts]]` entry (`key` is `accounts[i]`), its own values first, then the
    /// `[tampuuri]` fallbacks.
    fn account(
        &mut self,
        a: &mut Table,
        key: &str,
        names: &mut HashSet<String>,
        globals: &Globals,
    ) -> AccountParts {
        use keys::accounts::*;
        let name = self.required_string(a, key, "name");
        if let Some(n) = &name
            && !names.insert(n.clone())
        {
            self.error(
                &format!("{key}.name"),
                &format!("duplicate account name {n:?}"),
            );
        }
        let username = self.required_string(a, key, "username");
        let password = self.header_secret(a, key, "password", true);
        if password.is_none() {
            self.missing_secret(key, "password");
        }
        let contractor_id = self.int_range(a, key, &CONTRACTOR_ID);
        let customer = self.string(a, key, "customer");
        let billed = self.flag(a, key, &BILLED);
        if contractor_id.is_none() && !self.has_error(&format!("{key}.contractor_id")) {
            self.error(
                &format!("{key}.contractor_id"),
                "missing: our työnsuorittaja party id in this account",
            );
        }
        let (api_key, customer_name, base_url) = self.account_endpoint(a, key, globals);
        let states = self.states(a, key);
        let state_filter = self.state_filter(a, key);
        let extra_filter = self.extra_filter(a, key);
        AccountParts {
            name,
            username,
            password,
            contractor_id,
            customer,
            billed,
            api_key,
            customer_name,
            base_url,
            states,
            state_filter,
            extra_filter,
        }
    }

    /// An account's API key, customer name and base URL: its own, or `[tampuuri]`'s.
    fn account_endpoint(
        &mut self,
        a: &mut Table,
        key: &str,
        globals: &Globals,
    ) -> (Option<SecretString>, Option<String>, Option<String>) {
        let api_key = self
            .header_secret(a, key, "api_key", true)
            .or_else(|| globals.api_key.clone());
        if api_key.is_none()
            && !self.has_error(&format!("{key}.api_key"))
            && !self
                .errors
                .iter()
                .any(|i| i.key.starts_with("tampuuri.api_key"))
        {
            self.error(&format!("{key}.api_key"), "missing: set tampuuri.api_key (or api_key_file / api_key_env), or this account's api_key");
        }
        let customer_name = self
            .string(a, key, "customer_name")
            .or_else(|| globals.customer_name.clone());
        if customer_name.is_none() {
            self.error(
                &format!("{key}.customer_name"),
                "missing: set tampuuri.customer_name or this account's customer_name",
            );
        }
        let url = self
            .url(a, key, "base_url")
            .or_else(|| globals.base_url.clone());
        if url.is_none()
            && !self.has_error(&format!("{key}.base_url"))
            && !self.has_error("tampuuri.base_url")
        {
            self.error(
                &format!("{key}.base_url"),
                "missing: set tampuuri.base_url or this account's base_url",
            );
        }
        (api_key, customer_name, url)
    }

    /// An account's `state_filter`: `"list"` (the default) or `"per_state"`.
    fn state_filter(&mut self, a: &mut Table, key: &str) -> StateFilter {
        let k = keys::accounts::STATE_FILTER;
        match self.text(a, key, &k).as_str() {
            "list" => StateFilter::List,
            "per_state" => StateFilter::PerState,
            other => {
                self.error(
                    &format!("{key}.{}", k.name),
                    &format!("{other:?} is not one of \"list\", \"per_state\""),
                );
                StateFilter::List
            }
        }
    }
}

fn ms(n: i64) -> Duration {
    Duration::from_millis(n as u64)
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(n as u64)
}
