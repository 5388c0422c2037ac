//! The mirror logic: one sync of one account, and of all accounts.
//!
//! A sync sweeps `ilmoitukset/selaa` page by page, staging each page in the store as it
//! arrives (while the next page is already being fetched), so memory holds a page or two and
//! the ids listed (to refuse a page that repeats them). It pages by what the server serves,
//! which may be fewer than the `Limit` asked. If the list's `Total` moves during a sweep, the
//! sweep is repeated (up to `[sync] max_resweeps` more times) so that what is applied is one
//! consistent snapshot. The server is not trusted to end its list or to filter it: a sweep
//! takes at most `[sync] max_pages` pages, an account's calls at most `[sync]
//! account_deadline_secs`, and listed tickets that are not ours and open are left out. Each
//! open ticket the sweep did not list is then fetched once by id: offset paging over a moving
//! list can skip a ticket, so absence from a sweep is not proof that a ticket left. Only then is
//! the whole result applied, in one short transaction that also finishes the run's
//! `sync_runs` row as `ok` (a kill leaves both or neither). A failed sweep changes nothing.
//!
//! Sync knows nothing about cron, systemd or HTTP servers; it is called by `service::cycle`
//! (the daemon and `run --once`), the commands and the demo.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;

use crate::config::{AccountConfig, Config, StateFilter};
use crate::domain::model::{Departure, Ticket};
use crate::domain::time;
use crate::store::{ApplyCounts, Handle, RunRecord, RunTally, StagingHandle};
use crate::tampuuri::{Api, Client, Page, Query};

/// What one account's sync did.
#[derive(Debug)]
pub struct SyncReport {
    pub account: String,
    pub sweeps: u32,
    pub pages: u32,
    /// Calls sent, retries included.
    pub api_calls: u64,
    /// Requests that never reached Tampuuri (refused, DNS, TLS, proxy): not billed, not in
    /// `api_calls`.
    pub unreached: u64,
    /// Tickets in the open set after the sync.
    pub seen: u64,
    pub counts: ApplyCounts,
    pub elapsed: Duration,
    /// Why the sync failed; the mirror is then as it was before.
    pub error: Option<anyhow::Error>,
}

impl SyncReport {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Syncs every configured account, at most `[sync] account_concurrency` at a time. One
/// failing account does not stop the others. Reports come back in config order.
pub async fn sync_all(config: &Config, api: &Api) -> Vec<SyncReport> {
    sync_accounts(config, api, &config.accounts, Duration::ZERO).await
}

/// Syncs the given accounts, at most `[sync] account_concurrency` at a time, each after a
/// random delay up to `jitter`. Reports come back in the order given.
pub async fn sync_accounts(
    config: &Config,
    api: &Api,
    accounts: &[AccountConfig],
    jitter: Duration,
) -> Vec<SyncReport> {
    let store_path = config.store.path.clone();
    // Open (and migrate) once before the accounts open their own connections.
    if let Err(e) = Handle::open(store_path.clone()).await {
        let e = format!("{e:#}");
        return accounts
            .iter()
            .map(|a| SyncReport::failed(&a.name, anyhow::anyhow!("{e}")))
            .collect();
    }
    let settings = SweepSettings::from_config(config);
    // Owned accounts and API handle: the futures borrow nothing, so a spawned caller can hold them.
    let mut reports: Vec<(usize, SyncReport)> =
        futures::stream::iter(accounts.iter().cloned().enumerate())
            .map(|(i, account)| {
                let (store_path, api) = (store_path.clone(), api.clone());
                async move {
                    tokio::time::sleep(jitter_delay(jitter)).await;
                    let report = match api.client(&account) {
                        Ok(client) => sync_account(&store_path, &account, &client, &settings).await,
                        Err(e) => SyncReport::failed(&account.name, e),
                    };
                    (i, report)
                }
            })
            .buffer_unordered(config.sync.account_concurrency)
            .collect()
            .await;
    reports.sort_by_key(|(i, _)| *i);
    reports.into_iter().map(|(_, r)| r).collect()
}

impl SyncReport {
    fn failed(account: &str, error: anyhow::Error) -> SyncReport {
        SyncReport {
            account: account.to_owned(),
            sweeps: 0,
            pages: 0,
            api_calls: 0,
            unreached: 0,
            seen: 0,
            counts: ApplyCounts::default(),
            elapsed: Duration::ZERO,
            error: Some(error),
        }
    }
}

/// Syncs one account into the store at `store_path`, recording the run and its API calls. A
/// sync that applies its sweep finishes its run (`ok`, with its counts) in the same
/// transaction; a failed one records the failure after.
#[tracing::instrument(name = "sync", skip_all, fields(account = %account.name))]
pub async fn sync_account(
    store_path: &Path,
    account: &AccountConfig,
    client: &Client,
    settings: &SweepSettings,
) -> SyncReport {
    let started = Instant::now();
    let store = match Handle::open(store_path.to_owned()).await {
        Ok(s) => s,
        Err(e) => return SyncReport::failed(&account.name, e),
    };
    let name = account.name.clone();
    let trigger = settings.trigger;
    let run_id = match store
        .call(move |s| s.runs().begin_run(&name, &time::fmt(time::now()), trigger))
        .await
    {
        Ok(id) => id,
        Err(e) => return SyncReport::failed(&account.name, e),
    };
    let mut progress = Progress::default();
    let result = sweep_and_apply(&store, account, client, settings, run_id, &mut progress).await;
    let metered = client.meter().record(&store).await;
    let unreached = client.take_unreached();
    let mut record = RunRecord {
        ok: result.is_ok(),
        sweeps: progress.sweeps,
        pages: progress.pages,
        api_calls: match &metered {
            Ok(n) => *n,
            Err(_) => client.unrecorded_calls(),
        },
        seen: progress.seen,
        counts: result.as_ref().copied().unwrap_or_default(),
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    // A run that applied its sweep was finished as `ok` in the apply's own transaction.
    let finished = match record.ok {
        true => Ok(()),
        false => {
            let rec = record.clone();
            store
                .call(move |s| s.runs().finish_run(run_id, &time::fmt(time::now()), &rec))
                .await
        }
    };
    let mut error = result.err();
    if let Err(e) = metered {
        record.ok = false;
        error.get_or_insert(e);
    }
    if let Err(e) = finished {
        record.ok = false;
        error.get_or_insert(e.context("cannot record the sync run"));
    }
    let report = SyncReport {
        account: account.name.clone(),
        sweeps: record.sweeps,
        pages: record.pages,
        api_calls: record.api_calls,
        unreached,
        seen: record.seen,
        counts: record.counts,
        elapsed: started.elapsed(),
        error,
    };
    match &report.error {
        None => tracing::info!(
            pages = report.pages,
            api_calls = report.api_calls,
            open = report.seen,
            new = report.counts.new,
            changed = report.counts.changed,
            gone = report.counts.gone,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "Sync finished."
        ),
        Some(e) => tracing::error!(
            api_calls = report.api_calls,
            unreached = report.unreached,
            error = format!("{e:#}"),
            "Sync failed; the mirror is unchanged."
        ),
    }
    report
}

/// How sweeps page, and how far they may go.
#[derive(Debug, Clone, Copy)]
pub struct SweepSettings {
    /// The `Limit` asked; the server may serve fewer, and the sweep pages by what it serves.
    pub page_size: u32,
    pub max_resweeps: u32,
    pub pages_in_flight: usize,
    /// Most pages one sweep may take (`[sync] max_pages`).
    pub max_pages: u32,
    /// Time one account's sweeps and fetches may take (`[sync] account_deadline_secs`).
    pub account_deadline: Duration,
    /// What `sync_runs.trigger` records: `reconcile` when webhooks are on, else `poll`.
    pub trigger: &'static str,
}

impl SweepSettings {
    pub fn from_config(config: &Config) -> SweepSettings {
        SweepSettings {
            page_size: config.tampuuri.page_size,
            max_resweeps: config.sync.max_resweeps,
            pages_in_flight: config.sync.pages_in_flight,
            max_pages: config.sync.max_pages,
            account_deadline: config.sync.account_deadline,
            trigger: if config.webhook.is_some() {
                "reconcile"
            } else {
                "poll"
            },
        }
    }
}

#[derive(Debug, Default)]
struct Progress {
    sweeps: u32,
    pages: u32,
    seen: u64,
    /// Listed tickets left out because they are not ours or not open (this sweep).
    not_ours: u64,
}

/// Whether a sweep saw one consistent list.
enum Sweep {
    Consistent,
    Moved(String),
}

async fn sweep_and_apply(
    store: &Handle,
    account: &AccountConfig,
    client: &Client,
    settings: &SweepSettings,
    run_id: i64,
    progress: &mut Progress,
) -> anyhow::Result<ApplyCounts> {
    let staging = store
        .begin_staging(&account.name, crate::tampuuri::changed_fields)
        .await?;
    let collected = tokio::time::timeout(
        settings.account_deadline,
        sweep_and_confirm(&staging, account, client, settings, progress),
    )
    .await;
    let Ok(collected) = collected else {
        bail!(
            "account {}: the sync took longer than [sync] account_deadline_secs = {} ({} pages so far); nothing was applied, the next sync tries again",
            account.name,
            settings.account_deadline.as_secs(),
            progress.pages
        );
    };
    let (departures, still_open) = collected?;
    let tally = RunTally {
        sweeps: progress.sweeps,
        pages: progress.pages,
        api_calls: client.unrecorded_calls(),
    };
    let (seen, counts) = staging
        .apply(
            run_id,
            tally,
            time::fmt(time::now()),
            still_open,
            departures,
        )
        .await?;
    progress.seen = seen;
    Ok(counts)
}

/// Sweeps until one sweep is consistent, then fetches each open ticket it did not list:
/// answers the departures and the tickets confirmed still open. Writes only staging tables.
async fn sweep_and_confirm(
    staging: &StagingHandle,
    account: &AccountConfig,
    client: &Client,
    settings: &SweepSettings,
    progress: &mut Progress,
) -> anyhow::Result<(Vec<Departure>, Vec<Ticket>)> {
    let groups: Vec<Vec<String>> = match account.state_filter {
        StateFilter::List => vec![account.states.clone()],
        StateFilter::PerState => account.states.iter().map(|s| vec![s.clone()]).collect(),
    };
    let mut attempt = 0;
    loop {
        progress.sweeps += 1;
        progress.not_ours = 0;
        staging.restart().await?;
        let mut moved = None;
        for states in &groups {
            if let Sweep::Moved(why) =
                sweep(staging, account, client, states, settings, progress).await?
            {
                moved = Some(why);
                break;
            }
        }
        match moved {
            None => break,
            Some(why) if attempt < settings.max_resweeps => {
                tracing::warn!(sweep = progress.sweeps, reason = %why, "The ticket list moved while paging; sweeping again.");
                attempt += 1;
            }
            Some(why) => bail!(
                "the ticket list kept moving while paging ({} sweeps, last: {why}); nothing was applied, the next sync tries again",
                progress.sweeps
            ),
        }
    }
    if progress.not_ours > 0 {
        tracing::warn!(
            tickets = progress.not_ours,
            "The list held tickets that are not ours or not open; they were left out (any that were mirrored as open are checked by id)."
        );
    }

    // Tickets the sweep did not list: confirm each with one fetch.
    let unseen = staging.unseen_open().await?;
    let mut departures = Vec::new();
    let mut still_open = Vec::new();
    for id in unseen {
        match client.get_ticket(id).await? {
            None => departures.push(Departure::Deleted { id }),
            Some(t) => match t.openness(account.contractor_id, &account.states) {
                Err(reason) => departures.push(Departure::Left {
                    ticket: Box::new(t),
                    reason,
                }),
                Ok(()) => {
                    tracing::info!(
                        ticket = t.id,
                        "A ticket the sweep skipped is still open; it stays mirrored."
                    );
                    still_open.push(t);
                }
            },
        }
    }
    Ok((departures, still_open))
}

/// One sweep over the tickets in `states`, staging each page while the next ones are fetched.
///
/// The sweep pages by what the server serves, not by what it asked: the first page tells the
/// server's page size (a server may serve 100 a page whatever `Limit` says). With a `Total`,
/// the offsets are planned from that page size and up to `pages_in_flight` page requests are
/// under way at a time (never more calls than pages, always within the client's throttle);
/// without one, pages come one at a time until an empty page. Every sweep stays within
/// `max_pages`, and a page that holds more than asked or repeats a ticket already listed ends
/// it with an error (see [`PageGuard`]). Listed tickets that are not ours or not open are not
/// staged (see [`ours`]).
async fn sweep(
    staging: &StagingHandle,
    account: &AccountConfig,
    client: &Client,
    states: &[String],
    settings: &SweepSettings,
    progress: &mut Progress,
) -> anyhow::Result<Sweep> {
    let query = Query::of(account, states, settings.page_size);
    let mut guard = PageGuard::new(&account.name, settings.page_size, settings.max_pages);
    let first = client.list_open(&query, 0).await?;
    progress.pages += 1;
    guard.admit(0, &first)?; // the first page cannot repeat anything
    let Some(total) = first.total else {
        return sweep_without_total(
            staging, account, client, &query, first, &mut guard, progress,
        )
        .await;
    };
    let served = first.items.len() as u64;
    let step = match plan(total, served, settings.max_pages) {
        Plan::Done => total,
        Plan::Pages { step } => step,
        Plan::EmptyFirstPage => {
            return Ok(Sweep::Moved(format!(
                "Total was {total} but the first page was empty"
            )));
        }
        Plan::TooManyPages { pages } => bail!(
            "account {}: Total {total} at {served} tickets a page means {pages} pages, more than [sync] max_pages = {}; nothing was applied (raise max_pages only if the Total is real)",
            account.name,
            settings.max_pages
        ),
    };
    let mut seen = served;
    // Lazily: never more offsets than pages, and at most `max_pages` of them (checked above).
    let offsets = (1..).map(move |k| k * step).take_while(move |o| *o < total);
    let mut fetches = futures::stream::iter(offsets)
        .map(|offset| async move { (offset, client.list_open(&query, offset).await) })
        .buffered(settings.pages_in_flight);
    let mut staged_page = staging.stage(ours(account, first.items, progress));
    loop {
        let (staged, next) = tokio::join!(staged_page, fetches.next());
        staged?;
        let Some((offset, page)) = next else { break };
        let page = page?;
        progress.pages += 1;
        if page.total != Some(total) {
            return Ok(Sweep::Moved(format!(
                "Total was {total} at the first page and {} at offset {offset}",
                show(page.total)
            )));
        }
        if let Admitted::Overlap(why) = guard.admit(offset, &page)? {
            return Ok(Sweep::Moved(why));
        }
        seen += page.items.len() as u64;
        staged_page = staging.stage(ours(account, page.items, progress));
    }
    if seen != total {
        return Ok(Sweep::Moved(format!(
            "the pages held {seen} tickets, Total said {total}"
        )));
    }
    Ok(Sweep::Consistent)
}

/// Looks through the tickets in `states` assigned to `assignee`, page by page, for the first
/// that `found` accepts: the search behind an in-doubt create's marker check. It keeps the
/// bounds of a sweep (the server's real page size, `max_pages`, no page larger than asked, no
/// page of repeats, `account_deadline`), and a list that moves under it (a `Total` that
/// changes, a page that repeats tickets) is an error rather than "not found", since a ticket
/// may have been skipped and "not found" would send the create again.
pub async fn search(
    account: &AccountConfig,
    client: &Client,
    settings: &SweepSettings,
    assignee: i64,
    states: &[String],
    found: impl Fn(&Ticket) -> bool,
) -> anyhow::Result<Option<Ticket>> {
    let groups: Vec<Vec<String>> = match account.state_filter {
        StateFilter::List => vec![states.to_vec()],
        StateFilter::PerState => states.iter().map(|s| vec![s.clone()]).collect(),
    };
    let pages = async {
        for states in &groups {
            let mut guard = PageGuard::new(&account.name, settings.page_size, settings.max_pages);
            let mut offset = 0u64;
            let mut first_total = None;
            loop {
                let query = Query {
                    assignee_id: assignee,
                    ..Query::of(account, states, settings.page_size)
                };
                let page = client.list_open(&query, offset).await?;
                if let Admitted::Overlap(why) = guard.admit(offset, &page)? {
                    bail!(
                        "account {}: the list moved while searching ({why})",
                        account.name
                    );
                }
                if offset == 0 {
                    first_total = page.total;
                } else if page.total != first_total {
                    bail!(
                        "account {}: the list moved while searching (Total {} at the first page, {} at offset {offset})",
                        account.name,
                        show(first_total),
                        show(page.total)
                    );
                }
                let n = page.items.len() as u64;
                if let Some(t) = page.items.into_iter().find(|t| found(t)) {
                    return Ok(Some(t));
                }
                offset += n;
                let done = match first_total {
                    Some(total) => offset >= total || n == 0,
                    None => n == 0,
                };
                if done {
                    break;
                }
                guard.another()?;
            }
        }
        Ok(None)
    };
    match tokio::time::timeout(settings.account_deadline, pages).await {
        Ok(result) => result,
        Err(_) => bail!(
            "account {}: the search took longer than [sync] account_deadline_secs = {}",
            account.name,
            settings.account_deadline.as_secs()
        ),
    }
}

/// How a sweep with a known `Total` goes on after a first page of `served` tickets.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// The first page held everything.
    Done,
    /// Pages of `step` tickets (the server's page size) at offsets `step`, `2·step`, … below
    /// `Total`.
    Pages { step: u64 },
    /// `Total` says there is more, yet the first page was empty: the list moved, or the server
    /// is confused.
    EmptyFirstPage,
    /// `Total` implies more pages than the sweep may take.
    TooManyPages { pages: u64 },
}

fn plan(total: u64, served: u64, max_pages: u32) -> Plan {
    if served >= total {
        Plan::Done
    } else if served == 0 {
        Plan::EmptyFirstPage
    } else {
        match total.div_ceil(served) {
            pages if pages > u64::from(max_pages) => Plan::TooManyPages { pages },
            _ => Plan::Pages { step: served },
        }
    }
}

/// What [`PageGuard::admit`] found in a page.
#[derive(Debug, PartialEq, Eq)]
enum Admitted {
    /// Only tickets not listed before in this sweep.
    Fresh,
    /// Some tickets listed before: the list moved while paging.
    Overlap(String),
}

/// The bounds every page of one sweep must keep, whatever the server says: at most
/// `max_pages` pages, no page larger than the `Limit` asked, no ticket listed twice (a server
/// that ignores `Offset` would otherwise be paged forever). Remembers the ids listed so far,
/// at most `max_pages × Limit` of them.
struct PageGuard<'a> {
    account: &'a str,
    asked: u32,
    max_pages: u32,
    pages: u32,
    ids: HashSet<i64>,
}

impl<'a> PageGuard<'a> {
    fn new(account: &'a str, asked: u32, max_pages: u32) -> PageGuard<'a> {
        PageGuard {
            account,
            asked,
            max_pages,
            pages: 0,
            ids: HashSet::new(),
        }
    }

    /// Checks a page that arrived from `offset`. A page that repeats some of the tickets already
    /// listed means the list moved under the offsets (a ticket that arrived at the front shifts
    /// every later one): [`Admitted::Overlap`], and the sweep starts again. A page that repeats
    /// every one of its tickets is a server that does not page by `Offset`: an error.
    fn admit(&mut self, offset: u64, page: &Page) -> anyhow::Result<Admitted> {
        self.pages += 1;
        if page.items.len() > self.asked as usize {
            bail!(
                "account {}: the page at offset {offset} held {} tickets, more than the Limit {} asked; nothing was applied",
                self.account,
                page.items.len(),
                self.asked
            );
        }
        let repeated: Vec<i64> = page
            .items
            .iter()
            .filter(|t| !self.ids.insert(t.id))
            .map(|t| t.id)
            .collect();
        match repeated.first() {
            None => Ok(Admitted::Fresh),
            Some(first) if repeated.len() == page.items.len() => bail!(
                "account {}: the page at offset {offset} repeats {} ticket(s), every one already listed in this sweep (first: {first}); the server does not page by Offset, nothing was applied",
                self.account,
                repeated.len()
            ),
            Some(first) => Ok(Admitted::Overlap(format!(
                "the page at offset {offset} repeats {} ticket(s) already listed (first: {first})",
                repeated.len()
            ))),
        }
    }

    /// Whether one more page may be asked for.
    fn another(&self) -> anyhow::Result<()> {
        if self.pages >= self.max_pages {
            bail!(
                "account {}: the list did not end within [sync] max_pages = {} pages ({} tickets listed, no Total); nothing was applied",
                self.account,
                self.max_pages,
                self.ids.len()
            );
        }
        Ok(())
    }
}

/// The listed tickets that belong in the open set. The server's filter is not trusted: a
/// listed ticket of another contractor, or in a state that is not open (or none), is left out
/// here and so not seen by the sweep; if the mirror holds it as open, the check of unseen
/// tickets fetches it by id and [`Ticket::openness`] decides, as for any ticket the sweep missed.
/// A listed ticket that names no assignee at all is taken as ours: the list was asked for our
/// id, and a server whose list rows leave the field out would otherwise mirror nothing.
fn ours(account: &AccountConfig, items: Vec<Ticket>, progress: &mut Progress) -> Vec<Ticket> {
    let listed = items.len();
    let kept: Vec<Ticket> = items
        .into_iter()
        .filter(|t| match t.assignee_id {
            None => t.in_open_state(&account.states),
            Some(_) => t.openness(account.contractor_id, &account.states).is_ok(),
        })
        .collect();
    progress.not_ours += (listed - kept.len()) as u64;
    kept
}

/// A sweep over a list that reports no total: one page at a time, each from where the last
/// one ended, until an empty page. A short page is not the end: the server may cap its pages.
async fn sweep_without_total(
    staging: &StagingHandle,
    account: &AccountConfig,
    client: &Client,
    query: &Query<'_>,
    first: Page,
    guard: &mut PageGuard<'_>,
    progress: &mut Progress,
) -> anyhow::Result<Sweep> {
    let mut page = first;
    let mut offset = 0u64;
    loop {
        let n = page.items.len() as u64;
        let staged_page = staging.stage(ours(account, page.items, progress));
        if n == 0 {
            staged_page.await?;
            return Ok(Sweep::Consistent);
        }
        offset += n;
        guard.another()?;
        let (staged, fetched) = tokio::join!(staged_page, client.list_open(query, offset));
        staged?;
        page = fetched?;
        progress.pages += 1;
        if let Admitted::Overlap(why) = guard.admit(offset, &page)? {
            return Ok(Sweep::Moved(why));
        }
    }
}

fn show(total: Option<u64>) -> String {
    total.map_or_else(|| "absent".to_owned(), |t| t.to_string())
}

/// A random delay up to `jitter`, so accounts do not all poll at the same second.
fn jitter_delay(jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::Rng::random_range(
        &mut rand::rng(),
        0..=jitter.as_millis() as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_total_is_planned_by_the_page_size_the_server_served() {
        for (total, served, max_pages, expected) in [
            (0, 0, 20, Plan::Done),
            (3, 3, 20, Plan::Done),
            (600, 250, 20, Plan::Pages { step: 250 }),
            (600, 100, 20, Plan::Pages { step: 100 }),
            (2000, 100, 20, Plan::Pages { step: 100 }),
            (2001, 100, 20, Plan::TooManyPages { pages: 21 }),
            (5, 0, 20, Plan::EmptyFirstPage),
            (
                10u64.pow(18),
                1,
                2000,
                Plan::TooManyPages {
                    pages: 10u64.pow(18),
                },
            ),
            (
                u64::MAX,
                250,
                2000,
                Plan::TooManyPages {
                    pages: u64::MAX.div_ceil(250),
                },
            ),
        ] {
            assert_eq!(
                plan(total, served, max_pages),
                expected,
                "Total {total}, first page {served}, max_pages {max_pages}"
            );
        }
    }

    #[test]
    fn only_listed_tickets_that_are_ours_and_open_are_staged() {
        let toml = r#"
            [tampuuri]
            base_url = "http://127.0.0.1:9/v10/api/"
            api_key = "k"
            customer_name = "C"
            [[accounts]]
            name = "a"
            username = "u"
            password = "p"
            contractor_id = 4711
        "#;
        let config = Config::from_table(toml.parse().unwrap(), Path::new("c.toml"))
            .unwrap()
            .config;
        use crate::domain::model::TicketState::*;
        let listed: Vec<Ticket> = [
            (1, Avoin, Some(4711)),
            (2, Valmis, Some(4711)),
            (3, Other(String::new()), Some(4711)),
            (4, Other("Peruttu".into()), Some(4711)),
            (5, Odottaa, Some(5020)),
            (6, Vastaanotettu, None),
            (7, Vastaanotettu, Some(4711)),
        ]
        .into_iter()
        .map(|(id, state, assignee_id)| Ticket {
            state,
            assignee_id,
            ..ticket(id)
        })
        .collect();
        let mut progress = Progress::default();
        let kept: Vec<i64> = ours(&config.accounts[0], listed, &mut progress)
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!((kept, progress.not_ours), (vec![1, 6, 7], 4));
    }

    /// A listed ticket with nothing but its id.
    fn ticket(id: i64) -> Ticket {
        Ticket {
            id,
            state: crate::domain::model::TicketState::Other(String::new()),
            title: None,
            description: None,
            address: None,
            extra_info: None,
            assignee_id: None,
            cost_centre_id: None,
            space_id: None,
            room_id: None,
            parent_id: None,
            urgency: None,
            access: None,
            fault_class: None,
            earliest: None,
            latest: None,
            reporter: Default::default(),
            remote_created: None,
            remote_modified: None,
            raw_json: format!(r#"{{"Id":{id}}}"#),
            content_hash: 0,
        }
    }

    fn page(ids: std::ops::Range<i64>) -> Page {
        Page {
            total: None,
            items: ids.map(ticket).collect(),
            limit: None,
            total_at: crate::tampuuri::TotalAt::Absent,
        }
    }

    #[test]
    fn a_page_guard_refuses_oversized_pages_whole_repeats_and_one_page_too_many_and_tells_a_moving_list()
     {
        let mut g = PageGuard::new("sim-1", 3, 3);
        assert_eq!(g.admit(0, &page(1..4)).unwrap(), Admitted::Fresh);
        g.another().unwrap();
        // One ticket shifted in at the front: the next page repeats the last one listed.
        let Admitted::Overlap(why) = g.admit(3, &page(3..6)).unwrap() else {
            panic!("a partial repeat is a moving list")
        };
        assert!(
            why.contains("offset 3") && why.contains("first: 3"),
            "{why}"
        );
        g.another().unwrap();
        // Every ticket repeated: the server ignores Offset.
        let e = g.admit(6, &page(1..4)).unwrap_err().to_string();
        assert!(
            e.contains("sim-1") && e.contains("offset 6") && e.contains("does not page by Offset"),
            "{e}"
        );
        let e = g.another().unwrap_err().to_string();
        assert!(e.contains("max_pages = 3") && e.contains("sim-1"), "{e}");
        let e = PageGuard::new("sim-2", 3, 5)
            .admit(0, &page(1..5))
            .unwrap_err()
            .to_string();
        assert!(e.contains("held 4 tickets, more than the Limit 3"), "{e}");
    }
}
