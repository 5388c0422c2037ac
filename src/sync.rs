//! The mirror logic: one sync of one account, and of all accounts.
//!
//! A sync sweeps `ilmoitukset/selaa` page by page, staging each page in the store as it
//! arrives (while the next page is already being fetched), so memory does not grow with the
//! number of tickets. If the list's `Total` moves during a sweep, the sweep is repeated (up to
//! `[sync] max_resweeps` more times) so that what is applied is one consistent snapshot. Each
//! open ticket the sweep did not list is then fetched once by id: offset paging over a moving
//! list can skip a ticket, so absence from a sweep is not proof that a ticket left. Only then is
//! the whole result applied, in one short transaction. A failed sweep changes nothing.
//!
//! Sync knows nothing about cron, systemd or HTTP servers; it is called by the commands and,
//! later, the scheduler.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;

use crate::config::{AccountConfig, Config, StateFilter};
use crate::model::{Departure, LeftReason, Ticket};
use crate::store::{ApplyCounts, Handle, RunRecord};
use crate::tampuuri::{Api, Client, wire};
use crate::time;

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

/// Syncs one account into the store at `store_path`, recording the run and its API calls.
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
        .call(move |s| s.begin_run(&name, &time::fmt(time::now()), trigger))
        .await
    {
        Ok(id) => id,
        Err(e) => return SyncReport::failed(&account.name, e),
    };
    let mut progress = Progress::default();
    let result = sweep_and_apply(&store, account, client, settings, run_id, &mut progress).await;
    let calls = client.take_calls();
    let unreached = client.take_unreached();
    let mut record = RunRecord {
        ok: result.is_ok(),
        sweeps: progress.sweeps,
        pages: progress.pages,
        api_calls: calls.values().sum(),
        seen: progress.seen,
        counts: result.as_ref().copied().unwrap_or_default(),
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    let name = account.name.clone();
    let rec = record.clone();
    let finished = store
        .call(move |s| {
            let now = time::now();
            s.finish_run(
                run_id,
                &name,
                &time::fmt(now),
                &time::local_day(now),
                &calls,
                &rec,
            )
        })
        .await;
    let mut error = result.err();
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

/// How sweeps page.
#[derive(Debug, Clone, Copy)]
pub struct SweepSettings {
    pub page_size: u32,
    pub max_resweeps: u32,
    pub pages_in_flight: usize,
    /// What `sync_runs.trigger` records: `reconcile` when webhooks are on, else `poll`.
    pub trigger: &'static str,
}

impl SweepSettings {
    pub fn from_config(config: &Config) -> SweepSettings {
        SweepSettings {
            page_size: config.tampuuri.page_size,
            max_resweeps: config.sync.max_resweeps,
            pages_in_flight: config.sync.pages_in_flight,
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
    let groups: Vec<Vec<String>> = match account.state_filter {
        StateFilter::List => vec![account.states.clone()],
        StateFilter::PerState => account.states.iter().map(|s| vec![s.clone()]).collect(),
    };
    let mut attempt = 0;
    loop {
        progress.sweeps += 1;
        store.call(|s| s.begin_sweep()).await?;
        let mut moved = None;
        for states in &groups {
            if let Sweep::Moved(why) =
                sweep(store, account, client, states, settings, progress).await?
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

    // Tickets the sweep did not list: confirm each with one fetch.
    let name = account.name.clone();
    let unseen = store.call(move |s| s.unseen_open(&name)).await?;
    let mut departures = Vec::new();
    let mut still_open = Vec::new();
    for id in unseen {
        match client.get_ticket(id).await? {
            None => departures.push(Departure::Deleted { id }),
            Some(t) => match openness(account, &t) {
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
    let name = account.name.clone();
    store
        .call(move |s| {
            s.stage_page(&name, &still_open)?;
            let seen = s.seen_count()?;
            let counts =
                s.apply_sweep(&name, Some(run_id), &time::fmt(time::now()), &departures)?;
            Ok((seen, counts))
        })
        .await
        .map(|(seen, counts)| {
            progress.seen = seen;
            counts
        })
}

fn is_open_state(account: &AccountConfig, t: &Ticket) -> bool {
    account
        .states
        .iter()
        .any(|s| s.eq_ignore_ascii_case(t.state.name()))
}

/// Whether a fetched ticket belongs in the account's open set, and if not, why.
pub fn openness(account: &AccountConfig, t: &Ticket) -> Result<(), LeftReason> {
    if t.assignee_id != Some(account.contractor_id) {
        Err(LeftReason::Reassigned)
    } else if !is_open_state(account, t) {
        Err(LeftReason::State)
    } else {
        Ok(())
    }
}

/// One sweep over the tickets in `states`, staging each page while the next ones are fetched.
/// Once the first page tells the total, up to `pages_in_flight` page requests are under way at
/// a time (never more calls than pages, and always within the client's throttle).
async fn sweep(
    store: &Handle,
    account: &AccountConfig,
    client: &Client,
    states: &[String],
    settings: &SweepSettings,
    progress: &mut Progress,
) -> anyhow::Result<Sweep> {
    let page_size = settings.page_size;
    let body = |offset: u64| {
        wire::selaa_body(
            account.contractor_id,
            states,
            offset,
            page_size,
            &account.extra_filter,
        )
    };
    let first = client.selaa(&body(0)).await?;
    progress.pages += 1;
    let Some(total) = first.total else {
        // No total to plan by: page one at a time until a short page.
        return sweep_without_total(store, account, client, &body, first, page_size, progress)
            .await;
    };
    let mut seen = first.items.len() as u64;
    let offsets: Vec<u64> = (1..)
        .map(|k| k * u64::from(page_size))
        .take_while(|o| *o < total)
        .collect();
    let mut fetches = futures::stream::iter(offsets)
        .map(|offset| {
            let b = body(offset);
            async move { (offset, client.selaa(&b).await) }
        })
        .buffered(settings.pages_in_flight);
    let mut staging = stage(store, &account.name, first.items);
    loop {
        let (staged, next) = tokio::join!(staging, fetches.next());
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
        seen += page.items.len() as u64;
        staging = stage(store, &account.name, page.items);
    }
    if seen != total {
        return Ok(Sweep::Moved(format!(
            "the pages held {seen} tickets, Total said {total}"
        )));
    }
    Ok(Sweep::Consistent)
}

/// Stages one page on the store's thread.
fn stage(
    store: &Handle,
    account: &str,
    items: Vec<Ticket>,
) -> impl Future<Output = anyhow::Result<()>> + use<> {
    let (store, name) = (store.clone(), account.to_owned());
    async move { store.call(move |s| s.stage_page(&name, &items)).await }
}

/// A sweep over a list that reports no total: one page at a time until a short page.
async fn sweep_without_total(
    store: &Handle,
    account: &AccountConfig,
    client: &Client,
    body: &(dyn Fn(u64) -> serde_json::Value + Sync),
    first: wire::Page,
    page_size: u32,
    progress: &mut Progress,
) -> anyhow::Result<Sweep> {
    let mut page = first;
    let mut offset = 0u64;
    loop {
        let n = page.items.len() as u64;
        let full = n == u64::from(page_size);
        let staging = stage(store, &account.name, page.items);
        if !full {
            staging.await?;
            return Ok(Sweep::Consistent);
        }
        offset += n;
        let next_body = body(offset);
        let (staged, fetched) = tokio::join!(staging, client.selaa(&next_body));
        staged?;
        page = fetched?;
        progress.pages += 1;
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
