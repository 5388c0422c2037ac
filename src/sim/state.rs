//! The simulator's state: the accounts and their tickets (with the index that serves a page
//! without scanning the account), the call counters, the change log, and the "truth" methods
//! tests and the admin endpoints read and change it through.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::deliveries::{WebhookTarget, notification};
use super::faults::Faults;
use super::{CONTRACTOR_ID, SimOptions, data};

/// The workflow states, in Tampuuri's numbering (1–5).
pub(super) const STATES: [&str; 5] = ["Avoin", "Vastaanotettu", "Odottaa", "Tehty", "Valmis"];

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

/// The filter of a `selaa` page: an assignee, and states by name (`None`: any).
#[derive(Debug, Clone, Copy)]
pub(super) struct Filter<'a> {
    pub assignee: Option<i64>,
    pub states: Option<&'a [String]>,
}

/// A state's group in the index: its place in [`STATES`], or the last group for any other.
fn group(state: &str) -> usize {
    STATES
        .iter()
        .position(|s| *s == state)
        .unwrap_or(STATES.len())
}

const GROUPS: usize = STATES.len() + 1;

/// Ids in ascending order. New tickets take the highest id, so adding one is a push; a state
/// or assignee change moves one id between two lists.
#[derive(Debug, Default, Clone)]
struct SortedIds(Vec<i64>);

impl SortedIds {
    fn insert(&mut self, id: i64) {
        if let Err(at) = self.0.binary_search(&id) {
            self.0.insert(at, id);
        }
    }

    fn remove(&mut self, id: i64) {
        if let Ok(at) = self.0.binary_search(&id) {
            self.0.remove(at);
        }
    }
}

/// The tickets of one account, by id, with an index by (assignee, state) kept up to date by
/// every change, so that a page of a filtered list costs O(page + log² n), not a scan of the
/// account. Every change goes through these methods: the map is private, so the index cannot
/// drift from it.
#[derive(Debug, Default)]
pub(super) struct Tickets {
    by_id: BTreeMap<i64, SimTicket>,
    /// Every ticket's id by state group, whoever the assignee.
    by_state: [SortedIds; GROUPS],
    /// The ids of the tickets with an assignee, by (assignee, state group).
    by_assignee: HashMap<(i64, usize), SortedIds>,
}

impl Tickets {
    pub(super) fn get(&self, id: i64) -> Option<&SimTicket> {
        self.by_id.get(&id)
    }

    pub(super) fn contains(&self, id: i64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Every ticket, by id.
    pub(super) fn values(&self) -> impl Iterator<Item = &SimTicket> {
        self.by_id.values()
    }

    pub(super) fn last_id(&self) -> Option<i64> {
        self.by_id.keys().next_back().copied()
    }

    /// Adds (or replaces) a ticket.
    pub(super) fn insert(&mut self, t: SimTicket) {
        if let Some(old) = self.by_id.remove(&t.id) {
            self.unindex(&old);
        }
        self.index(&t);
        self.by_id.insert(t.id, t);
    }

    pub(super) fn remove(&mut self, id: i64) -> Option<SimTicket> {
        let t = self.by_id.remove(&id)?;
        self.unindex(&t);
        Some(t)
    }

    /// Changes one ticket in place (its id must stay), keeping the index in step.
    pub(super) fn update<R>(&mut self, id: i64, f: impl FnOnce(&mut SimTicket) -> R) -> Option<R> {
        let mut t = self.by_id.remove(&id)?;
        self.unindex(&t);
        let r = f(&mut t);
        t.id = id;
        self.index(&t);
        self.by_id.insert(id, t);
        Some(r)
    }

    fn index(&mut self, t: &SimTicket) {
        let g = group(&t.tila);
        self.by_state[g].insert(t.id);
        if let Some(a) = t.tyonsuorittaja_id {
            self.by_assignee.entry((a, g)).or_default().insert(t.id);
        }
    }

    fn unindex(&mut self, t: &SimTicket) {
        let g = group(&t.tila);
        self.by_state[g].remove(t.id);
        if let Some(a) = t.tyonsuorittaja_id
            && let Some(ids) = self.by_assignee.get_mut(&(a, g))
        {
            ids.remove(t.id);
            if ids.0.is_empty() {
                self.by_assignee.remove(&(a, g));
            }
        }
    }

    /// The tickets listed under `filter`, in id order: how many there are, and those from
    /// `offset`, at most `limit`. The same as filtering every ticket and skipping `offset`,
    /// without the scan.
    pub(super) fn page(
        &self,
        filter: Filter<'_>,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<&SimTicket>) {
        let mut wanted = [filter.states.is_none(); GROUPS];
        for s in filter.states.unwrap_or_default() {
            // A name outside STATES never matches a ticket (every ticket's state is in STATES).
            if let Some(i) = STATES.iter().position(|n| n == s) {
                wanted[i] = true;
            }
        }
        let lists: Vec<&[i64]> = (0..GROUPS)
            .filter(|&g| wanted[g])
            .filter_map(|g| match filter.assignee {
                None => Some(self.by_state[g].0.as_slice()),
                Some(a) => self.by_assignee.get(&(a, g)).map(|ids| ids.0.as_slice()),
            })
            .filter(|l| !l.is_empty())
            .collect();
        let total: usize = lists.iter().map(|l| l.len()).sum();
        let ids = merged_page(&lists, offset, limit);
        let page = ids.iter().filter_map(|id| self.by_id.get(id)).collect();
        (total, page)
    }
}

/// From sorted lists of distinct ids (no id in two lists), the ids of their union in order
/// from `offset`, at most `limit`: the offset is found by binary search over the id values
/// (O(k · log² n) for k lists), then the page is merged (O(limit · k)).
fn merged_page(lists: &[&[i64]], offset: usize, limit: usize) -> Vec<i64> {
    let total: usize = lists.iter().map(|l| l.len()).sum();
    if offset >= total || limit == 0 {
        return Vec::new();
    }
    let mut at: Vec<usize> = if let [only] = lists {
        vec![offset.min(only.len())]
    } else {
        // The smallest id with more than `offset` ids at or below it is the first of the page;
        // each list starts at its first id not below it.
        let at_or_below =
            |v: i64| -> usize { lists.iter().map(|l| l.partition_point(|&x| x <= v)).sum() };
        let mut lo = lists.iter().map(|l| l[0]).min().unwrap_or(0);
        let mut hi = lists.iter().map(|l| l[l.len() - 1]).max().unwrap_or(0);
        while lo < hi {
            let mid = (i128::from(lo) + (i128::from(hi) - i128::from(lo)) / 2) as i64;
            if at_or_below(mid) > offset {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lists
            .iter()
            .map(|l| l.partition_point(|&x| x < lo))
            .collect()
    };
    let mut page = Vec::with_capacity(limit.min(total - offset));
    while page.len() < limit {
        let next = (0..lists.len())
            .filter(|&i| at[i] < lists[i].len())
            .min_by_key(|&i| lists[i][at[i]]);
        let Some(i) = next else { break };
        page.push(lists[i][at[i]]);
        at[i] += 1;
    }
    page
}

#[derive(Debug)]
pub(super) struct Account {
    pub tickets: Tickets,
    pub next_id: i64,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub accounts: BTreeMap<String, Account>,
    pub calls: BTreeMap<String, u64>,
    pub total_calls: u64,
    pub in_flight: u64,
    pub max_in_flight: u64,
    pub log: Vec<LogEntry>,
    pub faults: Faults,
    pub webhook: Option<WebhookTarget>,
    /// Webhook deliveries dropped on purpose, and made (successfully answered).
    pub webhooks_dropped: u64,
    pub webhooks_delivered: u64,
    /// A sweep has started (a request at offset 0) and the drift will hit its next page.
    pub drift_armed: bool,
    pub rng: StdRng,
    /// The seed the simulator was made with (Slotti's calendar is drawn from it).
    pub seed: u64,
    /// The Slotti APIs, when enabled (`Sim::with_slotti`).
    pub slotti: Option<super::slotti::Slotti>,
}

impl Inner {
    /// Appends a change the API applied to the log.
    pub(super) fn record(&mut self, account: &str, ticket_id: i64, action: &str, body: Value) {
        let seq = self.log.len() as u64 + 1;
        self.log.push(LogEntry {
            seq,
            account: account.to_owned(),
            ticket_id,
            action: action.to_owned(),
            body,
        });
    }
}

/// The simulator's state, shared by its handlers and (in-process) by tests.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Mutex<Inner>>,
}

impl Sim {
    /// A simulator holding freshly generated accounts.
    pub fn new(opts: &SimOptions) -> Sim {
        let mut accounts = BTreeMap::new();
        for k in 1..=opts.accounts.max(1) {
            let mut rng =
                StdRng::seed_from_u64(opts.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(k)));
            let mut tickets = Tickets::default();
            for t in data::generate(&mut rng, opts.tickets, 1001) {
                tickets.insert(t);
            }
            let next_id = tickets.last_id().map_or(1001, |m| m + 1);
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
                seed: opts.seed,
                slotti: None,
            })),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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
        self.lock().accounts.get(account)?.tickets.get(id).cloned()
    }

    /// Every ticket of an account.
    pub fn tickets(&self, account: &str) -> Vec<SimTicket> {
        self.lock()
            .accounts
            .get(account)
            .map(|a| a.tickets.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The most API requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> u64 {
        self.lock().max_in_flight
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
        acc.tickets.insert(ticket);
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
        let tickets = inner
            .accounts
            .get_mut(account)
            .map(|a| &mut a.tickets)
            .filter(|t| t.contains(id))
            .ok_or_else(|| format!("no ticket {id} in {account:?}"))?;
        let current = tickets.get(id).expect("checked above");
        let mut v = serde_json::to_value(current).map_err(|e| e.to_string())?;
        merge(&mut v, fields, &["Id"]);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("Muokattu".into(), stamp().into());
        }
        let before = current.tila.clone();
        let changed = to_ticket(v)?;
        tickets.update(id, |t| *t = changed.clone());
        drop(inner);
        if changed.tila != before {
            self.deliver(notification("IlmoitusTilamuutos", account, &changed));
        }
        Ok(changed)
    }

    /// Deletes a ticket; whether it existed.
    pub fn delete(&self, account: &str, id: i64) -> bool {
        self.lock()
            .accounts
            .get_mut(account)
            .and_then(|a| a.tickets.remove(id))
            .is_some()
    }
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
pub(super) fn state_name(v: &Value) -> Option<String> {
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
pub(super) fn stamp() -> String {
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

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::{Filter, STATES, SimTicket, Tickets, data};

    fn ticket(id: i64, assignee: Option<i64>, state: &str) -> SimTicket {
        let mut t = data::ticket(&mut StdRng::seed_from_u64(id as u64), id);
        t.tyonsuorittaja_id = assignee;
        t.tila = state.into();
        t
    }

    /// The page as a scan would serve it: every ticket filtered, sorted by id, then sliced.
    fn reference(
        all: &[(i64, Option<i64>, String)],
        assignee: Option<i64>,
        states: Option<&[String]>,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<i64>) {
        let mut ids: Vec<i64> = all
            .iter()
            .filter(|(_, a, _)| assignee.is_none_or(|x| *a == Some(x)))
            .filter(|(_, _, s)| states.is_none_or(|l| l.contains(s)))
            .map(|(id, _, _)| *id)
            .collect();
        ids.sort_unstable();
        let page = ids.iter().skip(offset).take(limit).copied().collect();
        (ids.len(), page)
    }

    #[test]
    fn pages_equal_a_filter_and_sort_of_every_ticket_through_random_changes() {
        let mut rng = StdRng::seed_from_u64(11);
        let assignees = [None, Some(4711), Some(4711), Some(4712), Some(5020)];
        // Unknown to the API's filter, listed only when the state is not filtered.
        let states: Vec<&str> = STATES.iter().copied().chain(["Peruttu"]).collect();
        let mut tickets = Tickets::default();
        let mut all: Vec<(i64, Option<i64>, String)> = Vec::new();
        let mut next_id = 1001;
        let mut checked = 0;
        for _ in 0..3000 {
            let pick = |rng: &mut StdRng, all: &[(i64, Option<i64>, String)]| {
                (!all.is_empty()).then(|| rng.random_range(0..all.len()))
            };
            match rng.random_range(0..10) {
                // A new ticket: mostly the next id, sometimes one in a gap below it.
                0..=3 => {
                    let id = if rng.random_bool(0.8) || next_id == 1001 {
                        next_id += rng.random_range(1..3);
                        next_id
                    } else {
                        rng.random_range(1001..next_id)
                    };
                    if all.iter().any(|(i, _, _)| *i == id) {
                        continue;
                    }
                    let a = assignees[rng.random_range(0..assignees.len())];
                    let s = states[rng.random_range(0..states.len())];
                    tickets.insert(ticket(id, a, s));
                    all.push((id, a, s.to_owned()));
                }
                // A state or assignee change.
                4..=6 => {
                    let Some(i) = pick(&mut rng, &all) else {
                        continue;
                    };
                    let (a, s) = if rng.random_bool(0.5) {
                        let s = states[rng.random_range(0..states.len())].to_owned();
                        (all[i].1, s)
                    } else {
                        (
                            assignees[rng.random_range(0..assignees.len())],
                            all[i].2.clone(),
                        )
                    };
                    let changed = tickets.update(all[i].0, |t| {
                        t.tyonsuorittaja_id = a;
                        t.tila = s.clone();
                    });
                    assert!(changed.is_some());
                    all[i].1 = a;
                    all[i].2 = s;
                }
                // A deletion (or of an id that is not there).
                7 => {
                    let Some(i) = pick(&mut rng, &all) else {
                        continue;
                    };
                    let (id, _, _) = all.swap_remove(i);
                    assert!(tickets.remove(id).is_some());
                    assert!(tickets.remove(id).is_none());
                }
                _ => {}
            }
            for _ in 0..3 {
                let assignee =
                    [None, Some(4711), Some(4712), Some(5020), Some(9999)][rng.random_range(0..5)];
                let filter_states: Option<Vec<String>> = rng.random_bool(0.7).then(|| {
                    (0..rng.random_range(0..5))
                        .map(|_| STATES[rng.random_range(0..STATES.len())].to_owned())
                        .collect()
                });
                let offset = rng.random_range(0..all.len() + 3);
                let offset = if rng.random_bool(0.2) { 0 } else { offset };
                let limit = rng.random_range(1..40);
                let filter = Filter {
                    assignee,
                    states: filter_states.as_deref(),
                };
                let (total, page) = tickets.page(filter, offset, limit);
                let page: Vec<i64> = page.iter().map(|t| t.id).collect();
                assert_eq!(
                    (total, page),
                    reference(&all, assignee, filter_states.as_deref(), offset, limit),
                    "{assignee:?} {filter_states:?} from {offset}, {limit} of {}",
                    all.len()
                );
                checked += 1;
            }
        }
        assert!(all.len() > 300, "the test grew an account: {}", all.len());
        assert!(checked > 8000, "{checked} pages compared");
        // Every ticket is still there, with what was set last.
        for (id, a, s) in &all {
            let t = tickets.get(*id).expect("kept");
            assert_eq!((t.tyonsuorittaja_id, &t.tila), (*a, s));
        }
        assert_eq!(tickets.values().count(), all.len());
    }
}
