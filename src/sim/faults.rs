//! Fault injection: the faults a test can set (`POST /_sim/faults`), and the preamble every API
//! call passes through, which counts the call, waits the latency, checks the six headers and
//! rolls the faults. A dropped connection is made by unwinding the connection's task with a
//! private panic payload (silenced by a panic hook), which closes the socket without an
//! answer, exactly what a caller sees when a network path dies.

use std::sync::Once;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::api::message;
use super::data;
use super::state::{Filter, Inner, Sim, stamp};
use super::{API_KEY, CONTRACTOR_ID, PASSWORD, USERNAME};

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
    /// The Slotti faults (`slot_taken_next`, `slotti_*`), flat among the others.
    #[serde(flatten)]
    pub slotti: super::slotti::SlottiFaults,
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
            slotti: Default::default(),
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

impl Sim {
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

    /// Clears every fault.
    pub fn clear_faults(&self) {
        self.lock().faults = Faults::default();
    }
}

/// The payload of the panic that drops a connection.
struct DropConnection;

pub(super) fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new(DropConnection))
}

/// Keeps the panic hook quiet about the connections dropped on purpose.
pub(super) fn silence_connection_drops() {
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

/// What a call may do after its preamble.
pub(super) struct Granted {
    pub account: String,
    pub malformed: bool,
    drop_after_apply: bool,
    latency_after_apply: u64,
    pub int_states: bool,
    pub extra_fields: bool,
    pub meta_envelope: bool,
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
    pub(super) async fn after_apply(&self) {
        if self.latency_after_apply > 0 {
            tokio::time::sleep(Duration::from_millis(self.latency_after_apply)).await;
        }
        if self.drop_after_apply {
            drop_connection();
        }
    }
}

/// Counts the call, waits the latency, checks the six headers, and rolls the faults.
pub(super) async fn preamble(
    sim: &Sim,
    headers: &HeaderMap,
    route: String,
) -> Result<Granted, Response> {
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

/// The drift of a sweep, at its second page: with `filter` the page's own (as asked, even when
/// the server ignores it), finishes the first listed ticket and/or adds one at the end.
pub(super) fn apply_drift(inner: &mut Inner, account: &str, drift: Drift, filter: Filter<'_>) {
    let Some(acc) = inner.accounts.get_mut(account) else {
        return;
    };
    let first_listed = acc.tickets.page(filter, 0, 1).1.first().map(|t| t.id);
    if matches!(drift, Drift::Remove | Drift::Swap)
        && let Some(id) = first_listed
    {
        acc.tickets.update(id, |t| {
            t.tila = "Tehty".into();
            t.muokattu = stamp();
        });
    }
    if matches!(drift, Drift::Insert | Drift::Swap) {
        let id = acc.next_id;
        acc.next_id += 1;
        let mut rng = StdRng::seed_from_u64(id as u64);
        let mut t = data::ticket(&mut rng, id);
        t.tyonsuorittaja_id = filter.assignee.or(Some(CONTRACTOR_ID));
        t.luotu = stamp();
        t.muokattu = t.luotu.clone();
        acc.tickets.insert(t);
    }
}
