//! The Tampuuri simulator: the *assumed* API of `tampuuri-api.md` on loopback, with state in
//! memory, for tests, benchmarks and the demo. It never talks to the real Tampuuri.
//!
//! It checks the six headers (403 on a wrong key or password), enforces `Limit ≤ 250`, the
//! state machine and the follow-up rule, counts every API call by route template, logs every
//! change the API applied (the ground truth for "exactly once"), and injects faults on demand
//! through `POST /_sim/faults`. A dropped connection is made by unwinding the connection's task
//! with a private panic payload (silenced by a panic hook), which closes the socket without an
//! answer, exactly what a caller sees when a network path dies.

mod data;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use data::CONTRACTOR_ID;

/// Credentials every simulated account accepts.
pub const API_KEY: &str = "sim-key";
pub const CUSTOMER: &str = "Simulaattori Oy";
pub const USERNAME: &str = "huolto";
pub const PASSWORD: &str = "sim-password";

const STATES: [&str; 5] = ["Avoin", "Vastaanotettu", "Odottaa", "Tehty", "Valmis"];

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Open tickets for us in each account.
    pub tickets: u64,
    /// Accounts `sim-1` … `sim-K`.
    pub accounts: u32,
    pub seed: u64,
    pub latency_ms: u64,
    /// Where to deliver webhook notifications, if anywhere.
    pub webhook: Option<WebhookTarget>,
}

/// Webhook deliveries: a notification batch for every ticket created or changing state.
#[derive(Debug, Clone, Default)]
pub struct WebhookTarget {
    pub url: String,
    /// Signs the body with HMAC-SHA256 (`sha256=<hex>`), as the listener expects by default.
    pub secret: Option<String>,
    /// The digest header (default `X-Huoltosync-Digest`).
    pub header: String,
    /// HTTP Basic credentials.
    pub basic: Option<(String, String)>,
    /// The share of deliveries dropped entirely (never sent).
    pub drop_rate: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            webhook: None,
            tickets: 20,
            accounts: 1,
            seed: 1,
            latency_ms: 0,
        }
    }
}

/// A party (person or company) as the simulator keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Party {
    #[serde(default)]
    pub nimi: Option<String>,
    #[serde(default)]
    pub puhelin: Option<String>,
    #[serde(default)]
    pub sahkoposti: Option<String>,
}

/// One ticket as the simulator keeps it (the state by name).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct SimTicket {
    pub id: i64,
    pub tila: String,
    pub otsikko: String,
    pub tyotehtavan_kuvaus: String,
    #[serde(default)]
    pub tyotehtavan_lisatiedot: Option<String>,
    #[serde(default)]
    pub tyonsuorittaja_id: Option<i64>,
    #[serde(default)]
    pub kustannuspaikka_id: Option<i64>,
    #[serde(default)]
    pub tila_id: Option<i64>,
    #[serde(default)]
    pub huone_id: Option<i64>,
    #[serde(default)]
    pub parent_id: Option<i64>,
    #[serde(default)]
    pub kiireellisyys: Option<String>,
    #[serde(default)]
    pub sisaanpaasy: Option<String>,
    #[serde(default)]
    pub vikaluokka: Option<String>,
    #[serde(default)]
    pub suoritusaika_aikaisintaan: Option<String>,
    #[serde(default)]
    pub suoritusaika_viimeistaan: Option<String>,
    /// The address: a field real responses carry that the spec does not list.
    #[serde(default)]
    pub kohde: Option<String>,
    #[serde(default)]
    pub ilmoittaja: Option<Party>,
    pub luotu: String,
    pub muokattu: String,
    /// Attachments received: name, type, description and size (the bytes are not kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub liitteet: Vec<Value>,
    /// Anything else set through the admin API.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Faults to inject. Rates are probabilities per API call; `*_next` counters hit the next n
/// calls for certain (deterministic tests).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Faults {
    pub latency_ms: u64,
    pub error_rate: f64,
    pub error_next: u32,
    pub rate_limit_rate: f64,
    pub rate_limit_next: u32,
    pub retry_after_secs: u64,
    pub drop_rate: f64,
    pub drop_next: u32,
    pub drop_after_apply_rate: f64,
    pub drop_after_apply_next: u32,
    pub malformed_rate: f64,
    pub malformed_next: u32,
    pub extra_fields: bool,
    pub int_states: bool,
    pub meta_envelope: bool,
    /// Every API call from this one on (counting all calls received, from 1) answers 500;
    /// 0 turns it off. Makes a sweep fail part-way.
    pub error_from_call: u64,
    /// Faults other than latency hit only this account's calls.
    pub only_account: Option<String>,
    /// At the second page of the next sweep (`drift_sweeps` sweeps in a row): `true`/`"insert"` adds a ticket at
    /// the end, `"remove"` finishes the first listed ticket, `"swap"` does both (the total stays
    /// the same, so offset paging skips one ticket).
    pub drift: Drift,
    /// How many sweeps in a row the drift hits, one change per sweep (default 1).
    pub drift_sweeps: u32,
    /// The next n API calls answer 400 with a message (a permanent rejection).
    pub reject_next: u32,
    /// A change is applied, then the answer waits this long: the window in which a caller
    /// that dies has changed Tampuuri without knowing it.
    pub latency_after_apply_ms: u64,
    /// selaa serves at most this many tickets a page, whatever `Limit` asks, and echoes this
    /// `Limit` in the envelope; 0 turns it off.
    pub page_cap: u32,
    /// selaa's envelope carries no `Total` (nor `metadata.total`).
    pub no_total: bool,
    /// selaa ignores `TyonsuorittajaId` and `Tila`: every ticket of the account is listed, other
    /// contractors' and finished ones too (a server that does not filter as asked).
    pub ignore_filter: bool,
    /// selaa ignores `Offset`: every page is the first one (a list that never ends).
    pub ignore_offset: bool,
    /// selaa reports this `Total` instead of the true one; 0 turns it off.
    pub lie_total: u64,
    /// selaa refuses `Tila` given as a list (400): the server takes one state at a time.
    pub no_state_list: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            error_rate: 0.0,
            error_next: 0,
            rate_limit_rate: 0.0,
            rate_limit_next: 0,
            retry_after_secs: 1,
            drop_rate: 0.0,
            drop_next: 0,
            drop_after_apply_rate: 0.0,
            drop_after_apply_next: 0,
            malformed_rate: 0.0,
            malformed_next: 0,
            extra_fields: false,
            int_states: false,
            meta_envelope: false,
            error_from_call: 0,
            only_account: None,
            drift: Drift::Off,
            drift_sweeps: 1,
            reject_next: 0,
            latency_after_apply_ms: 0,
            page_cap: 0,
            no_total: false,
            ignore_filter: false,
            ignore_offset: false,
            lie_total: 0,
            no_state_list: false,
        }
    }
}

/// A one-shot change of the list between two page requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Value", into = "Value")]
pub enum Drift {
    Off,
    Insert,
    Remove,
    Swap,
}

impl From<Value> for Drift {
    fn from(v: Value) -> Self {
        match v.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("insert") => Drift::Insert,
            Some("remove") => Drift::Remove,
            Some("swap") => Drift::Swap,
            _ if v == Value::Bool(true) => Drift::Insert,
            _ => Drift::Off,
        }
    }
}

impl From<Drift> for Value {
    fn from(d: Drift) -> Value {
        match d {
            Drift::Off => Value::Bool(false),
            Drift::Insert => "insert".into(),
            Drift::Remove => "remove".into(),
            Drift::Swap => "swap".into(),
        }
    }
}

/// One change the API applied.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    pub seq: u64,
    pub account: String,
    pub ticket_id: i64,
    /// `vastaanota`, `odotukseen`, `kuittaatehdyksi` or `create`.
    pub action: String,
    pub body: Value,
}

#[derive(Debug)]
struct Account {
    tickets: BTreeMap<i64, SimTicket>,
    next_id: i64,
}

#[derive(Debug)]
struct Inner {
    accounts: BTreeMap<String, Account>,
    calls: BTreeMap<String, u64>,
    total_calls: u64,
    in_flight: u64,
    max_in_flight: u64,
    log: Vec<LogEntry>,
    faults: Faults,
    webhook: Option<WebhookTarget>,
    /// Webhook deliveries dropped on purpose, and made (successfully answered).
    webhooks_dropped: u64,
    webhooks_delivered: u64,
    /// A sweep has started (a request at offset 0) and the drift will hit its next page.
    drift_armed: bool,
    rng: StdRng,
}

/// The simulator's state, shared by its handlers and (in-process) by tests.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Mutex<Inner>>,
}

/// A running simulator.
pub struct Running {
    pub sim: Sim,
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The API base URL, ending in `/v10/api/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v10/api/", self.addr)
    }

    /// Where the admin endpoints live (`{root}/_sim/...`).
    pub fn root(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The payload of the panic that drops a connection.
struct DropConnection;

fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new(DropConnection))
}

fn silence_connection_drops() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<DropConnection>().is_none() {
                previous(info);
            }
        }));
    });
}

impl Sim {
    /// A simulator holding freshly generated accounts.
    pub fn new(opts: &SimOptions) -> Sim {
        let mut accounts = BTreeMap::new();
        for k in 1..=opts.accounts.max(1) {
            let mut rng =
                StdRng::seed_from_u64(opts.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(k)));
            let tickets: BTreeMap<i64, SimTicket> = data::generate(&mut rng, opts.tickets, 1001)
                .into_iter()
                .map(|t| (t.id, t))
                .collect();
            let next_id = tickets.keys().next_back().map_or(1001, |m| m + 1);
            accounts.insert(format!("sim-{k}"), Account { tickets, next_id });
        }
        let faults = Faults {
            latency_ms: opts.latency_ms,
            ..Faults::default()
        };
        Sim {
            inner: Arc::new(Mutex::new(Inner {
                accounts,
                calls: BTreeMap::new(),
                total_calls: 0,
                in_flight: 0,
                max_in_flight: 0,
                log: Vec::new(),
                faults,
                webhook: opts.webhook.clone(),
                webhooks_dropped: 0,
                webhooks_delivered: 0,
                drift_armed: false,
                rng: StdRng::seed_from_u64(opts.seed ^ 0x5eed),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves on `listener` until `shutdown` resolves. The listener must be on loopback.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            bail!("the simulator listens on loopback only, not {addr}");
        }
        silence_connection_drops();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }

    /// Binds `addr` (loopback) and serves in the background.
    pub async fn start(self, addr: &str) -> anyhow::Result<Running> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        if !bound.ip().is_loopback() {
            bail!("the simulator listens on loopback only, not {bound}");
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let sim = self.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = sim
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
            {
                tracing::error!(error = %e, "The simulator stopped.");
            }
        });
        Ok(Running {
            sim: self,
            addr: bound,
            shutdown: Some(tx),
            task,
        })
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/v10/api/ilmoitukset/selaa", post(api_selaa))
            .route("/v10/api/ilmoitukset/base64", post(api_create))
            .route("/v10/api/ilmoitukset/{id}", get(api_get))
            .route("/v10/api/ilmoitukset/{id}/{action}", post(api_transition))
            .route("/_sim/stats", get(admin_stats))
            .route("/_sim/log", get(admin_log))
            .route(
                "/_sim/faults",
                post(admin_set_faults).delete(admin_clear_faults),
            )
            .route("/_sim/tickets", post(admin_create))
            .route("/_sim/tickets/{account}", get(admin_list))
            .route(
                "/_sim/tickets/{account}/{id}",
                get(admin_get).patch(admin_patch).delete(admin_delete),
            )
            .with_state(self.clone())
    }

    // ---- the truth, for tests and the admin API -----------------------------------------

    /// Calls received for one route key (`"POST ilmoitukset/selaa"`), 0 if none.
    pub fn calls(&self, route: &str) -> u64 {
        self.lock().calls.get(route).copied().unwrap_or(0)
    }

    /// All API calls received.
    pub fn total_calls(&self) -> u64 {
        self.lock().total_calls
    }

    /// Every change the API applied, in order.
    pub fn log(&self) -> Vec<LogEntry> {
        self.lock().log.clone()
    }

    /// One ticket as the simulator holds it.
    pub fn ticket(&self, account: &str, id: i64) -> Option<SimTicket> {
        self.lock().accounts.get(account)?.tickets.get(&id).cloned()
    }

    /// Every ticket of an account.
    pub fn tickets(&self, account: &str) -> Vec<SimTicket> {
        self.lock()
            .accounts
            .get(account)
            .map(|a| a.tickets.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Merges fault settings (any subset of [`Faults`]' fields) into the current ones.
    pub fn set_faults(&self, patch: &Value) -> anyhow::Result<Faults> {
        let mut inner = self.lock();
        let mut current = serde_json::to_value(&inner.faults)?;
        let (Value::Object(cur), Value::Object(new)) = (&mut current, patch) else {
            bail!("faults must be a JSON object");
        };
        for (k, v) in new {
            if !cur.contains_key(k) {
                bail!("unknown fault {k:?}");
            }
            cur.insert(k.clone(), v.clone());
        }
        inner.faults = serde_json::from_value(current).context("bad fault value")?;
        if new.contains_key("drift") && !new.contains_key("drift_sweeps") {
            inner.faults.drift_sweeps = 1;
        }
        Ok(inner.faults.clone())
    }

    /// The most API requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> u64 {
        self.lock().max_in_flight
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        self.lock().faults = Faults::default();
    }

    /// Adds a ticket (assigned to us and `Avoin` unless the fields say otherwise); answers its id.
    pub fn insert(&self, account: &str, fields: &Map<String, Value>) -> Result<i64, String> {
        let mut inner = self.lock();
        let acc = inner
            .accounts
            .get_mut(account)
            .ok_or_else(|| format!("no account {account:?}"))?;
        let id = acc.next_id;
        acc.next_id += 1;
        let now = stamp();
        let mut base = serde_json::to_value(SimTicket {
            id,
            tila: "Avoin".into(),
            otsikko: "Uusi vikailmoitus".into(),
            tyotehtavan_kuvaus: String::new(),
            tyotehtavan_lisatiedot: None,
            tyonsuorittaja_id: Some(CONTRACTOR_ID),
            kustannuspaikka_id: Some(100),
            tila_id: None,
            huone_id: None,
            parent_id: None,
            kiireellisyys: None,
            sisaanpaasy: None,
            vikaluokka: None,
            suoritusaika_aikaisintaan: None,
            suoritusaika_viimeistaan: None,
            kohde: None,
            ilmoittaja: None,
            luotu: now.clone(),
            muokattu: now,
            liitteet: Vec::new(),
            extra: Map::new(),
        })
        .map_err(|e| e.to_string())?;
        merge(&mut base, fields, &["Id", "account"]);
        let ticket = to_ticket(base)?;
        let note = notification("IlmoitusUusi", account, &ticket);
        acc.tickets.insert(id, ticket);
        drop(inner);
        self.deliver(note);
        Ok(id)
    }

    /// Changes fields of a ticket (the state by name or number); answers the ticket.
    pub fn patch(
        &self,
        account: &str,
        id: i64,
        fields: &Map<String, Value>,
    ) -> Result<SimTicket, String> {
        let mut inner = self.lock();
        let t = inner
            .accounts
            .get_mut(account)
            .and_then(|a| a.tickets.get_mut(&id))
            .ok_or_else(|| format!("no ticket {id} in {account:?}"))?;
        let mut v = serde_json::to_value(&*t).map_err(|e| e.to_string())?;
        merge(&mut v, fields, &["Id"]);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("Muokattu".into(), stamp().into());
        }
        let before = t.tila.clone();
        *t = to_ticket(v)?;
        let t = t.clone();
        drop(inner);
        if t.tila != before {
            self.deliver(notification("IlmoitusTilamuutos", account, &t));
        }
        Ok(t)
    }

    /// Changes where (and whether) webhook notifications are delivered.
    pub fn set_webhook(&self, target: Option<WebhookTarget>) {
        self.lock().webhook = target;
    }

    /// Webhook deliveries `(made, dropped on purpose)`.
    pub fn webhook_counts(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.webhooks_delivered, inner.webhooks_dropped)
    }

    /// Sends one notification batch to the webhook target, retrying up to 5 attempts, unless
    /// the drop rate says to lose it.
    fn deliver(&self, note: Value) {
        let (target, dropped) = {
            let mut inner = self.lock();
            let Some(target) = inner.webhook.clone() else {
                return;
            };
            let dropped =
                target.drop_rate > 0.0 && inner.rng.random_bool(target.drop_rate.min(1.0));
            if dropped {
                inner.webhooks_dropped += 1;
            }
            (target, dropped)
        };
        if dropped {
            return;
        }
        let sim = self.clone();
        tokio::spawn(async move {
            crate::tampuuri::install_tls_provider();
            let client = reqwest::Client::new();
            for attempt in 1..=5u32 {
                let body =
                    json!({ "Notifications": [note.clone()], "Attempts": attempt }).to_string();
                let mut req = client
                    .post(&target.url)
                    .header("content-type", "application/json");
                if let Some(secret) = &target.secret {
                    req = req.header(
                        target.header.as_str(),
                        crate::webhook::sign(secret.as_bytes(), body.as_bytes()),
                    );
                }
                if let Some((u, p)) = &target.basic {
                    req = req.basic_auth(u, Some(p));
                }
                match req.body(body).timeout(Duration::from_secs(10)).send().await {
                    Ok(r) if r.status().is_success() => {
                        sim.lock().webhooks_delivered += 1;
                        return;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100 << attempt)).await,
                }
            }
        });
    }

    /// Deletes a ticket; whether it existed.
    pub fn delete(&self, account: &str, id: i64) -> bool {
        self.lock()
            .accounts
            .get_mut(account)
            .and_then(|a| a.tickets.remove(&id))
            .is_some()
    }
}

/// A notification about `t` as Tampuuri's webhook add-on sends it.
fn notification(action: &str, account: &str, t: &SimTicket) -> Value {
    json!({
        "Action": action,
        "Account": account,
        "ReferenceId": t.id,
        "ReferenceSecondaryId": null,
        "ReferenceData": null,
        "ReferenceJson": json!({ "TyonsuorittajaId": t.tyonsuorittaja_id, "Tila": t.tila }).to_string(),
        "Timestamp": t.muokattu,
    })
}

fn merge(base: &mut Value, fields: &Map<String, Value>, skip: &[&str]) {
    if let Value::Object(obj) = base {
        for (k, v) in fields {
            if skip.contains(&k.as_str()) {
                continue;
            }
            let v = if k == "Tila" {
                Value::String(state_name(v).unwrap_or_default())
            } else {
                v.clone()
            };
            obj.insert(k.clone(), v);
        }
    }
}

fn to_ticket(v: Value) -> Result<SimTicket, String> {
    let t: SimTicket = serde_json::from_value(v).map_err(|e| format!("bad ticket fields: {e}"))?;
    if !STATES.contains(&t.tila.as_str()) {
        return Err(format!("unknown state {:?}: use one of {STATES:?}", t.tila));
    }
    Ok(t)
}

/// A state given as a name or a number 1–5.
fn state_name(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => STATES
            .iter()
            .find(|n| n.eq_ignore_ascii_case(s))
            .map(|s| s.to_string()),
        Value::Number(n) => n
            .as_u64()
            .and_then(|i| STATES.get((i as usize).checked_sub(1)?))
            .map(|s| s.to_string()),
        _ => None,
    }
}

/// A `Muokattu`/`Luotu` value for a change made now: strictly later than every earlier one, so
/// that every change (a transition, an admin PATCH, drift) is visible as a new `Muokattu`.
fn stamp() -> String {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(i64::MIN);
    let now = chrono::Utc::now().timestamp_micros();
    let prev = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(now);
    let micros = now.max(prev.saturating_add(1));
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .with_timezone(&chrono_tz::Europe::Helsinki)
        .format("%Y-%m-%dT%H:%M:%S%.6f%:z")
        .to_string()
}

// ---- the API -----------------------------------------------------------------------------

fn message(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(json!({ "Message": text.into() }))).into_response()
}

/// What a call may do after its preamble.
struct Granted {
    account: String,
    malformed: bool,
    drop_after_apply: bool,
    latency_after_apply: u64,
    int_states: bool,
    extra_fields: bool,
    meta_envelope: bool,
    _flight: Flight,
}

/// Counts an API request in flight until dropped (also when its connection is dropped).
struct Flight(Sim);

impl Flight {
    fn start(sim: &Sim) -> Flight {
        let mut inner = sim.lock();
        inner.in_flight += 1;
        inner.max_in_flight = inner.max_in_flight.max(inner.in_flight);
        Flight(sim.clone())
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
    }
}

impl Granted {
    /// After a change was applied: wait, or drop the connection, as the faults say.
    async fn after_apply(&self) {
        if self.latency_after_apply > 0 {
            tokio::time::sleep(Duration::from_millis(self.latency_after_apply)).await;
        }
        if self.drop_after_apply {
            drop_connection();
        }
    }
}

/// Counts the call, waits the latency, checks the six headers, and rolls the faults.
async fn preamble(sim: &Sim, headers: &HeaderMap, route: String) -> Result<Granted, Response> {
    let flight = Flight::start(sim);
    let (latency, call_no) = {
        let mut inner = sim.lock();
        *inner.calls.entry(route).or_default() += 1;
        inner.total_calls += 1;
        (inner.faults.latency_ms, inner.total_calls)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    for name in [
        "X-TampuuriAvain",
        "X-AsiakasNimi",
        "X-Ohjelmistoversio",
        "X-TiliNimi",
        "X-Kayttajatunnus",
        "X-Salasana",
    ] {
        if h(name).is_empty() {
            return Err(message(
                StatusCode::FORBIDDEN,
                format!("Otsake {name} puuttuu (missing header)"),
            ));
        }
    }
    let mut inner = sim.lock();
    let account = h("X-TiliNimi");
    if h("X-TampuuriAvain") != API_KEY
        || !inner.accounts.contains_key(&account)
        || h("X-Kayttajatunnus") != USERNAME
        || h("X-Salasana") != PASSWORD
    {
        return Err(message(
            StatusCode::FORBIDDEN,
            "Virheellinen avain, tili, käyttäjätunnus tai salasana",
        ));
    }
    if inner
        .faults
        .only_account
        .as_ref()
        .is_some_and(|a| *a != account)
    {
        return Ok(Granted {
            account,
            malformed: false,
            drop_after_apply: false,
            latency_after_apply: 0,
            int_states: false,
            extra_fields: false,
            meta_envelope: false,
            _flight: flight,
        });
    }
    let failing_from = inner.faults.error_from_call;
    let f = &mut inner.faults;
    let reject = take(&mut f.reject_next);
    let next = [
        take(&mut f.error_next),
        take(&mut f.rate_limit_next),
        take(&mut f.drop_next),
        take(&mut f.drop_after_apply_next),
        take(&mut f.malformed_next),
    ];
    let f = inner.faults.clone();
    let rates = [
        f.error_rate,
        f.rate_limit_rate,
        f.drop_rate,
        f.drop_after_apply_rate,
        f.malformed_rate,
    ];
    let rng = &mut inner.rng;
    let [error, rate_limit, dropped, drop_after, malformed] =
        std::array::from_fn(|i| next[i] || (rates[i] > 0.0 && rng.random_bool(rates[i].min(1.0))));
    drop(inner);
    if error || (failing_from > 0 && call_no >= failing_from) {
        return Err(message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Simuloitu palvelinvirhe (simulated failure)",
        ));
    }
    if reject {
        return Err(message(
            StatusCode::BAD_REQUEST,
            "Simuloitu hylkäys (simulated rejection)",
        ));
    }
    if rate_limit {
        let mut r = message(
            StatusCode::TOO_MANY_REQUESTS,
            "Liikaa pyyntöjä (rate limited)",
        );
        r.headers_mut()
            .insert("Retry-After", f.retry_after_secs.into());
        return Err(r);
    }
    if dropped {
        drop_connection();
    }
    Ok(Granted {
        account,
        malformed,
        drop_after_apply: drop_after,
        latency_after_apply: f.latency_after_apply_ms,
        int_states: f.int_states,
        extra_fields: f.extra_fields,
        meta_envelope: f.meta_envelope,
        _flight: flight,
    })
}

fn take(n: &mut u32) -> bool {
    let hit = *n > 0;
    *n = n.saturating_sub(1);
    hit
}

/// A ticket as the API shows it, with the faults that shape it.
fn render(t: &SimTicket, g: &Granted) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Value::Object(obj) = &mut v {
        if g.int_states {
            let n = STATES
                .iter()
                .position(|s| *s == t.tila)
                .map_or(0, |i| i + 1);
            obj.insert("Tila".into(), n.into());
        }
        if g.extra_fields {
            obj.insert(
                "SimUusiKentta".into(),
                json!({ "Versio": 11, "Merkinnat": ["a", "b"] }),
            );
            obj.insert("Laskutettava".into(), Value::Bool(false));
        }
    }
    v
}

fn answer(g: &Granted, status: StatusCode, body: Value) -> Response {
    if g.malformed {
        let text = body.to_string();
        let cut = &text[..text.len() / 2];
        return (
            status,
            [("content-type", "application/json")],
            cut.to_owned(),
        )
            .into_response();
    }
    (status, Json(body)).into_response()
}

async fn api_selaa(State(sim): State<Sim>, headers: HeaderMap, body: String) -> Response {
    let g = match preamble(&sim, &headers, "POST ilmoitukset/selaa".into()).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let Ok(Value::Object(q)) = serde_json::from_str::<Value>(&body) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Pyynnön runko ei ole JSON-objekti (body is not a JSON object)",
        );
    };
    let int = |k: &str| q.get(k).and_then(Value::as_i64);
    let offset = int("Offset").unwrap_or(0).max(0) as usize;
    let limit = int("Limit").unwrap_or(250);
    if !(1..=250).contains(&limit) {
        return message(
            StatusCode::BAD_REQUEST,
            format!("Limit {limit} ei ole sallittu: 1–250 (Limit must be 1 to 250)"),
        );
    }
    let assignee = int("TyonsuorittajaId");
    let states: Option<Vec<String>> = match q.get("Tila") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.iter().filter_map(state_name).collect()),
        Some(v) => Some(state_name(v).into_iter().collect()),
    };
    let mut inner = sim.lock();
    let drift = inner.faults.drift;
    if offset == 0 {
        inner.drift_armed = drift != Drift::Off && inner.faults.drift_sweeps > 0;
    } else if inner.drift_armed {
        inner.drift_armed = false;
        inner.faults.drift_sweeps -= 1;
        if inner.faults.drift_sweeps == 0 {
            inner.faults.drift = Drift::Off;
        }
        apply_drift(&mut inner, &g.account, drift, assignee, states.as_deref());
    }
    // The page faults hit every account unless `only_account` names another one.
    let f = &inner.faults;
    let page_faults = f.only_account.as_ref().is_none_or(|a| *a == g.account);
    let (page_cap, no_total, ignore_filter, ignore_offset, lie_total) = if page_faults {
        (
            f.page_cap,
            f.no_total,
            f.ignore_filter,
            f.ignore_offset,
            f.lie_total,
        )
    } else {
        (0, false, false, false, 0)
    };
    if page_faults && f.no_state_list && matches!(q.get("Tila"), Some(Value::Array(_))) {
        return message(
            StatusCode::BAD_REQUEST,
            "Tila: odotettiin yksi arvo (Tila must be one value)",
        );
    }
    let offset = if ignore_offset { 0 } else { offset };
    let limit = match page_cap {
        0 => limit,
        cap => limit.min(i64::from(cap)),
    };
    let (assignee, states) = if ignore_filter {
        (None, None)
    } else {
        (assignee, states)
    };
    let acc = &inner.accounts[&g.account];
    let matching: Vec<&SimTicket> = acc
        .tickets
        .values()
        .filter(|t| assignee.is_none_or(|a| t.tyonsuorittaja_id == Some(a)))
        .filter(|t| states.as_ref().is_none_or(|s| s.contains(&t.tila)))
        .collect();
    let total = match lie_total {
        0 => matching.len() as u64,
        lie => lie,
    };
    let items: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit as usize)
        .map(|t| render(t, &g))
        .collect();
    drop(inner);
    let mut body = if g.meta_envelope {
        json!({ "Items": items, "metadata": { "total": total, "offset": offset, "limit": limit } })
    } else {
        json!({ "Offset": offset, "Limit": limit, "Total": total, "Items": items })
    };
    if no_total {
        if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("total");
        }
        if let Some(m) = body.as_object_mut() {
            m.remove("Total");
        }
    }
    if g.extra_fields {
        body["SimHakuId"] = json!("a1b2c3");
    }
    answer(&g, StatusCode::OK, body)
}

fn apply_drift(
    inner: &mut Inner,
    account: &str,
    drift: Drift,
    assignee: Option<i64>,
    states: Option<&[String]>,
) {
    let first_listed = inner.accounts[account]
        .tickets
        .values()
        .find(|t| {
            assignee.is_none_or(|a| t.tyonsuorittaja_id == Some(a))
                && states.is_none_or(|s| s.contains(&t.tila))
        })
        .map(|t| t.id);
    let acc = inner.accounts.get_mut(account).expect("account checked");
    if matches!(drift, Drift::Remove | Drift::Swap)
        && let Some(t) = first_listed.and_then(|id| acc.tickets.get_mut(&id))
    {
        t.tila = "Tehty".into();
        t.muokattu = stamp();
    }
    if matches!(drift, Drift::Insert | Drift::Swap) {
        let id = acc.next_id;
        acc.next_id += 1;
        let mut rng = StdRng::seed_from_u64(id as u64);
        let mut t = data::ticket(&mut rng, id);
        t.tyonsuorittaja_id = assignee.or(Some(CONTRACTOR_ID));
        t.luotu = stamp();
        t.muokattu = t.luotu.clone();
        acc.tickets.insert(id, t);
    }
}

async fn api_get(State(sim): State<Sim>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let g = match preamble(&sim, &headers, "GET ilmoitukset/{id}".into()).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<i64>() else {
        return message(
            StatusCode::BAD_REQUEST,
            format!("Tunniste {id:?} ei ole numero"),
        );
    };
    let found = sim.lock().accounts[&g.account]
        .tickets
        .get(&id)
        .map(|t| render(t, &g));
    match found {
        Some(v) => answer(&g, StatusCode::OK, v),
        None => message(
            StatusCode::NOT_FOUND,
            format!("Ilmoitusta {id} ei löydy (not found)"),
        ),
    }
}

async fn api_transition(
    State(sim): State<Sim>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let g = match preamble(&sim, &headers, format!("POST ilmoitukset/{{id}}/{action}")).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<i64>() else {
        return message(
            StatusCode::BAD_REQUEST,
            format!("Tunniste {id:?} ei ole numero"),
        );
    };
    let body: Value = if body.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return message(
                    StatusCode::BAD_REQUEST,
                    "Pyynnön runko ei ole JSON-objekti (body is not a JSON object)",
                );
            }
        }
    };
    let comment = body
        .get("Kommentti")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned();
    if let Err(refused) = apply_transition(&sim, &g.account, id, &action, body, &comment) {
        return *refused;
    }
    if let Some(t) = sim.ticket(&g.account, id) {
        sim.deliver(notification("IlmoitusTilamuutos", &g.account, &t));
    }
    g.after_apply().await;
    answer(&g, StatusCode::OK, json!({}))
}

/// Applies a workflow transition under the lock, or answers why not.
fn apply_transition(
    sim: &Sim,
    account: &str,
    id: i64,
    action: &str,
    body: Value,
    comment: &str,
) -> Result<(), Box<Response>> {
    let mut inner = sim.lock();
    let acc = &inner.accounts[account];
    let Some(t) = acc.tickets.get(&id) else {
        return Err(Box::new(message(
            StatusCode::NOT_FOUND,
            format!("Ilmoitusta {id} ei löydy (not found)"),
        )));
    };
    let from = t.tila.clone();
    let to = match (action, from.as_str()) {
        ("vastaanota", "Avoin" | "Odottaa") => "Vastaanotettu",
        ("odotukseen", "Vastaanotettu") if comment.is_empty() => {
            return Err(Box::new(message(
                StatusCode::BAD_REQUEST,
                "Odotukseen siirto vaatii syyn (Kommentti is required)",
            )));
        }
        ("odotukseen", "Vastaanotettu") => "Odottaa",
        ("kuittaatehdyksi", "Avoin" | "Vastaanotettu" | "Odottaa") => {
            let open: Vec<i64> = acc
                .tickets
                .values()
                .filter(|c| {
                    c.parent_id == Some(id) && !matches!(c.tila.as_str(), "Tehty" | "Valmis")
                })
                .map(|c| c.id)
                .collect();
            if !open.is_empty() {
                return Err(Box::new(message(
                    StatusCode::CONFLICT,
                    format!(
                        "Ilmoituksella {id} on keskeneräisiä jatkoilmoituksia {open:?} (unfinished follow-ups)"
                    ),
                )));
            }
            "Tehty"
        }
        ("vastaanota" | "odotukseen" | "kuittaatehdyksi", _) => {
            return Err(Box::new(message(
                StatusCode::CONFLICT,
                format!(
                    "Ilmoitus {id} on tilassa {from}: {action} ei ole sallittu (not allowed in state {from})"
                ),
            )));
        }
        _ => {
            return Err(Box::new(message(
                StatusCode::NOT_FOUND,
                format!("Toimintoa {action} ei ole"),
            )));
        }
    };
    let t = inner
        .accounts
        .get_mut(account)
        .and_then(|a| a.tickets.get_mut(&id))
        .expect("checked above");
    t.tila = to.into();
    t.muokattu = stamp();
    let seq = inner.log.len() as u64 + 1;
    inner.log.push(LogEntry {
        seq,
        account: account.to_owned(),
        ticket_id: id,
        action: action.to_owned(),
        body,
    });
    Ok(())
}

async fn api_create(State(sim): State<Sim>, headers: HeaderMap, body: String) -> Response {
    let g = match preamble(&sim, &headers, "POST ilmoitukset/base64".into()).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let Ok(Value::Object(req)) = serde_json::from_str::<Value>(&body) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Pyynnön runko ei ole JSON-objekti (body is not a JSON object)",
        );
    };
    let text = |k: &str| {
        req.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut problems = Vec::new();
    if req
        .get("KustannuspaikkaId")
        .and_then(Value::as_i64)
        .is_none()
    {
        problems.push("KustannuspaikkaId puuttuu (required)".to_owned());
    }
    for (key, max, required) in [
        ("Otsikko", 255, true),
        ("TyotehtavanKuvaus", 8000, true),
        ("TyotehtavanLisatiedot", 20000, false),
    ] {
        let len = text(key).chars().count();
        if required && len == 0 {
            problems.push(format!("{key} puuttuu (required)"));
        }
        if len > max {
            problems.push(format!("{key} on liian pitkä: {len} > {max}"));
        }
    }
    let mut attachments = Vec::new();
    for (i, a) in req
        .get("Liitteet")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let name = a
            .get("FileName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match a
            .get("Base64Content")
            .and_then(Value::as_str)
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
        {
            Some(Ok(bytes)) if !name.is_empty() => attachments.push(json!({
                "FileName": name,
                "ContentType": a.get("ContentType"),
                "Description": a.get("Description"),
                "Size": bytes.len(),
            })),
            _ => problems.push(format!(
                "Liitteet[{i}]: FileName and valid Base64Content required"
            )),
        }
    }
    let parent = req.get("ParentId").and_then(Value::as_i64);
    if let Some(p) = parent
        && !sim.lock().accounts[&g.account].tickets.contains_key(&p)
    {
        problems.push(format!(
            "ParentId {p}: ilmoitusta ei löydy (parent not found)"
        ));
    }
    if !problems.is_empty() {
        return message(StatusCode::BAD_REQUEST, problems.join("; "));
    }
    let mut fields = req.clone();
    fields.insert("Liitteet".into(), Value::Array(attachments.clone()));
    fields.insert("Tila".into(), "Avoin".into());
    if !fields.contains_key("TyonsuorittajaId") {
        fields.insert("TyonsuorittajaId".into(), Value::Null);
    }
    let id = match sim.insert(&g.account, &fields) {
        Ok(id) => id,
        Err(e) => return message(StatusCode::BAD_REQUEST, e),
    };
    let mut logged = req;
    logged.insert("Liitteet".into(), Value::Array(attachments));
    {
        let mut inner = sim.lock();
        let seq = inner.log.len() as u64 + 1;
        inner.log.push(LogEntry {
            seq,
            account: g.account.clone(),
            ticket_id: id,
            action: "create".into(),
            body: Value::Object(logged),
        });
    }
    g.after_apply().await;
    answer(&g, StatusCode::OK, json!({ "Id": id }))
}

// ---- admin -------------------------------------------------------------------------------

async fn admin_stats(State(sim): State<Sim>) -> Json<Value> {
    let inner = sim.lock();
    Json(
        json!({ "total_calls": inner.total_calls, "calls": inner.calls, "max_in_flight": inner.max_in_flight }),
    )
}

async fn admin_log(State(sim): State<Sim>) -> Json<Vec<LogEntry>> {
    Json(sim.log())
}

async fn admin_set_faults(State(sim): State<Sim>, Json(patch): Json<Value>) -> Response {
    match sim.set_faults(&patch) {
        Ok(f) => Json(f).into_response(),
        Err(e) => message(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}

async fn admin_clear_faults(State(sim): State<Sim>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

async fn admin_create(State(sim): State<Sim>, Json(fields): Json<Map<String, Value>>) -> Response {
    let account = fields
        .get("account")
        .and_then(Value::as_str)
        .unwrap_or("sim-1")
        .to_owned();
    match sim.insert(&account, &fields) {
        Ok(id) => Json(json!({ "Id": id })).into_response(),
        Err(e) => message(StatusCode::BAD_REQUEST, e),
    }
}

async fn admin_list(State(sim): State<Sim>, Path(account): Path<String>) -> Json<Vec<SimTicket>> {
    Json(sim.tickets(&account))
}

async fn admin_get(State(sim): State<Sim>, Path((account, id)): Path<(String, i64)>) -> Response {
    match sim.ticket(&account, id) {
        Some(t) => Json(t).into_response(),
        None => message(
            StatusCode::NOT_FOUND,
            format!("no ticket {id} in {account:?}"),
        ),
    }
}

async fn admin_patch(
    State(sim): State<Sim>,
    Path((account, id)): Path<(String, i64)>,
    Json(fields): Json<Map<String, Value>>,
) -> Response {
    match sim.patch(&account, id, &fields) {
        Ok(t) => Json(t).into_response(),
        Err(e) => message(StatusCode::BAD_REQUEST, e),
    }
}

async fn admin_delete(
    State(sim): State<Sim>,
    Path((account, id)): Path<(String, i64)>,
) -> StatusCode {
    if sim.delete(&account, id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}
