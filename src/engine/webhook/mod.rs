//! Processing of the webhook events the listener recorded (the engine's side of webhooks): a
//! delivery's body parsed into events ([`parse_delivery`], Tampuuri's notification format), and
//! each processing pass ([`process_pending`]), which fetches the tickets the events name from
//! Tampuuri and writes them through the same upsert as a poll.

pub mod budget;
mod fetch;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::domain::time;
use crate::store::{Handle, NewEvent, PendingEvent};
use crate::tampuuri::{self, Api};

/// A ticket whose fetch failed transiently is fetched again after this, then after twice as
/// long each time (at most [`RETRY_MAX`]), ...
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two fetches of a failing ticket.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// ... and after this many failed fetches its events are parked (about 8.5 minutes of
/// retries): the next reconciliation sweep covers the ticket.
pub const RETRY_ATTEMPTS: u32 = 10;

/// The events of one delivery's body (Tampuuri's notifications), as the store records them; the
/// reason when the body is not a delivery.
pub fn parse_delivery(body: &[u8]) -> Result<Vec<NewEvent>, String> {
    Ok(tampuuri::parse_notifications(body)?
        .into_iter()
        .map(to_event)
        .collect())
}

fn to_event(n: tampuuri::Notification) -> NewEvent {
    NewEvent {
        key: n.key,
        account: n.account,
        action: n.action,
        reference_id: n.reference_id,
        reference_json: n.reference_json,
        event_time: n.event_time,
    }
}

/// What one processing pass did.
#[derive(Debug, Default)]
pub struct Processed {
    pub fetched: u64,
    pub skipped: u64,
    pub ignored: u64,
    pub failed: u64,
    /// Tickets whose events were parked this pass (a permanent failure, or the last retry).
    pub parked: u64,
    /// Events left pending because their ticket's deliveries have not settled yet.
    pub deferred: u64,
    /// When the earliest deferred ticket becomes due (its deliveries settled, or its retry).
    pub next_due: Option<DateTime<Utc>>,
    /// Events about tickets the mirror does not hold, over `[webhook] max_fetches_per_minute`:
    /// parked for a reconciliation sweep of their account instead of fetched.
    pub swept: u64,
    /// Reconciliation sweeps run this pass for such events.
    pub sweeps: u64,
    /// With `[slotti]`: Slotti's recorded deliveries processed in the same pass.
    pub slotti: crate::engine::visits::deliveries::DeliveriesProcessed,
}

/// When the pending events of one ticket are due: once no event arrived for it for `quiet`
/// (a burst has settled), but no later than `longest` after its oldest pending event (so a
/// steady stream is still processed).
pub fn due_at(
    oldest: DateTime<Utc>,
    newest: DateTime<Utc>,
    quiet: Duration,
    longest: Duration,
) -> DateTime<Utc> {
    let span = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let settled = newest.checked_add_signed(span(quiet));
    let overdue = oldest.checked_add_signed(span(longest));
    match (settled, overdue) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(DateTime::<Utc>::MAX_UTC),
    }
}

/// Processes the pending events that are due at `now` (see [`due_at`] and `[webhook]
/// debounce_ms`, `debounce_max_ms`): one fetch per ticket named by relevant events; the events
/// of a ticket whose deliveries are still coming wait for the next pass. Tickets the mirror
/// holds are fetched first; the others within the fetch budget of [`budget`], or covered by one
/// reconciliation sweep of their account.
pub async fn process_pending(
    config: &Config,
    api: &Api,
    store: &Handle,
    now: DateTime<Utc>,
) -> anyhow::Result<Processed> {
    let mut done = Processed::default();
    let (quiet, longest) = config
        .webhook
        .as_ref()
        .map_or((Duration::ZERO, Duration::ZERO), |w| {
            (w.debounce, w.debounce_max)
        });
    let events = store.call(|s| s.webhook().pending_events(10_000)).await?;
    let (groups, ignored) = sort_events(config, events);
    for (id, why) in &ignored {
        let (id, why) = (*id, *why);
        store
            .call(move |s| {
                s.webhook()
                    .finish_events(&[id], "ignored", Some(why), &time::fmt(time::now()))
            })
            .await?;
    }
    done.ignored = ignored.len() as u64;
    let mut fetcher = fetch::Fetcher::new(config, api, store, now);
    // Tickets the mirror does not hold, by account: after every held one.
    let mut unheld: BTreeMap<String, Vec<(i64, Vec<PendingEvent>)>> = BTreeMap::new();
    for ((account, id), evs) in groups {
        let due = group_due(&evs, now, quiet, longest);
        if due > now {
            done.deferred += evs.len() as u64;
            done.next_due = Some(done.next_due.map_or(due, |d| d.min(due)));
            continue;
        }
        let acc = config.account(&account).expect("sorted by account above");
        let (a2, i2) = (account.clone(), id);
        let (held, open) = store
            .call(move |s| {
                Ok((
                    s.webhook().holds(&a2, i2)?,
                    s.webhook().holds_open(&a2, i2)?,
                ))
            })
            .await?;
        if names_only_another(&evs, acc.contractor_id) && !open {
            let ids: Vec<i64> = evs.iter().map(|e| e.id).collect();
            store
                .call(move |s| {
                    s.webhook().finish_events(
                        &ids,
                        "skipped",
                        Some("assigned to another contractor"),
                        &time::fmt(time::now()),
                    )
                })
                .await?;
            done.skipped += evs.len() as u64;
        } else if held {
            fetcher.fetch(&account, id, evs, &mut done).await?;
        } else {
            unheld.entry(account).or_default().push((id, evs));
        }
    }
    for (account, groups) in unheld {
        budget::unheld(&mut fetcher, &account, groups, &mut done).await?;
    }
    fetcher.record_calls().await?;
    budget::sweeps(&fetcher, &mut done).await?;
    // Slotti's deliveries carry what they tell: no fetch, no call.
    if config.slotti.is_some() {
        done.slotti = crate::engine::visits::deliveries::process_deliveries(store, now).await?;
        if done.slotti.more {
            done.next_due = Some(done.next_due.map_or(now, |d| d.min(now)));
        }
    }
    Ok(done)
}

/// Pending events by (account, ticket).
type Groups = BTreeMap<(String, i64), Vec<PendingEvent>>;

/// Pending events grouped by (account, ticket) for one fetch each, and the events that need no
/// fetch with the reason: another kind of event (`[webhook] actions`), or an account not in
/// the config.
fn sort_events(config: &Config, events: Vec<PendingEvent>) -> (Groups, Vec<(i64, &'static str)>) {
    let refetch = |action: &str| match config.webhook.as_ref().map(|w| &w.actions) {
        Some(list) if !list.is_empty() => list.iter().any(|a| a == action),
        _ => action.starts_with("Ilmoitus"),
    };
    let mut groups = Groups::new();
    let mut ignored = Vec::new();
    for e in events {
        match (&e.account, e.reference_id, e.action.as_deref()) {
            (Some(acc), Some(id), Some(action)) if refetch(action) => {
                if config.account(acc).is_some() {
                    groups.entry((acc.clone(), id)).or_default().push(e);
                } else {
                    ignored.push((e.id, "account not in the config"));
                }
            }
            _ => ignored.push((e.id, "not a ticket event")),
        }
    }
    (groups, ignored)
}

/// When a ticket's events are due: once its deliveries settled ([`due_at`]), and after a
/// failed fetch not before its retry time. An unreadable receipt time counts as long ago:
/// never a reason to wait.
fn group_due(
    evs: &[PendingEvent],
    now: DateTime<Utc>,
    quiet: Duration,
    longest: Duration,
) -> DateTime<Utc> {
    let received: Vec<DateTime<Utc>> = evs
        .iter()
        .map(|e| time::parse(&e.received_at).unwrap_or(DateTime::<Utc>::MIN_UTC))
        .collect();
    let oldest = received.iter().min().copied().unwrap_or(now);
    let newest = received.iter().max().copied().unwrap_or(now);
    let due = due_at(oldest, newest, quiet, longest);
    evs.iter()
        .filter_map(|e| e.next_try_at.as_deref().and_then(time::parse))
        .max()
        .map_or(due, |retry| due.max(retry))
}

/// Whether the events name another contractor as the assignee and none names us: then the
/// ticket is not fetched (unless the mirror holds it open).
fn names_only_another(evs: &[PendingEvent], contractor_id: i64) -> bool {
    let names = |e: &PendingEvent| assignee_in(e.reference_json.as_deref());
    evs.iter()
        .any(|e| names(e).is_some_and(|a| a != contractor_id))
        && !evs.iter().any(|e| names(e) == Some(contractor_id))
}

/// What a failed fetch of a ticket named by webhook events leads to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FetchEnd {
    /// Fetch again at this time.
    Retry(DateTime<Utc>),
    /// Park the events, with this reason: the next reconciliation covers the ticket.
    Park(String),
}

/// The retry rule for webhook fetches: a transient failure is retried with backoff
/// ([`retry_after`]) until the [`RETRY_ATTEMPTS`]th failure; a permanent one (a 4xx such as
/// refused credentials) parks the events at once.
pub(super) fn after_failure(attempts: u32, transient: bool, now: DateTime<Utc>) -> FetchEnd {
    if transient && attempts < RETRY_ATTEMPTS {
        FetchEnd::Retry(now + chrono::Duration::from_std(retry_after(attempts)).unwrap_or_default())
    } else if transient {
        FetchEnd::Park(format!(
            "fetch failed {attempts} times; the next reconciliation covers the ticket"
        ))
    } else {
        FetchEnd::Park(
            "fetch failed permanently; the next reconciliation covers the ticket".to_owned(),
        )
    }
}

/// How long to wait before fetching again a ticket whose fetch failed `attempts` times:
/// [`RETRY_FIRST`], doubling, at most [`RETRY_MAX`].
pub fn retry_after(attempts: u32) -> Duration {
    crate::domain::backoff::Backoff::doubling(RETRY_FIRST, RETRY_MAX).delay(attempts)
}

/// The assignee an event's ticket JSON names, if it is JSON and names one.
fn assignee_in(reference_json: Option<&str>) -> Option<i64> {
    tampuuri::reference_assignee(reference_json?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fetch_is_retried_doubling_then_parked_and_a_permanent_one_parked_at_once() {
        let now = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20_000);
        let at = |secs: i64| FetchEnd::Retry(now + chrono::Duration::seconds(secs));
        let table = [
            (1, true, at(1)),
            (2, true, at(2)),
            (3, true, at(4)),
            (6, true, at(32)),
            (RETRY_ATTEMPTS - 1, true, at(256)),
        ];
        for (attempts, transient, want) in table {
            assert_eq!(after_failure(attempts, transient, now), want, "{attempts}");
        }
        for (attempts, transient, word) in [
            (RETRY_ATTEMPTS, true, "10 times"),
            (RETRY_ATTEMPTS + 5, true, "15 times"),
            (1, false, "permanently"),
            (9, false, "permanently"),
        ] {
            match after_failure(attempts, transient, now) {
                FetchEnd::Park(reason) => assert!(reason.contains(word), "{reason}"),
                other => panic!("{attempts} {transient}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_ticket_is_due_when_its_burst_settles_or_its_oldest_event_waited_long_enough() {
        let t = |s: &str| time::parse(&format!("2026-11-25T10:00:{s}Z")).unwrap();
        let (quiet, longest) = (Duration::from_millis(500), Duration::from_secs(5));
        // (oldest, newest) -> due
        for (oldest, newest, due) in [
            ("00.000", "00.000", "00.500"), // one event: half a second later
            ("00.000", "02.000", "02.500"), // a burst: half a second after its last event
            ("00.000", "04.800", "05.000"), // a steady stream: 5 s after its first event
            ("00.000", "09.000", "05.000"),
        ] {
            assert_eq!(
                due_at(t(oldest), t(newest), quiet, longest),
                t(due),
                "{oldest}..{newest}"
            );
        }
        assert_eq!(
            due_at(t("00.000"), t("03.000"), Duration::ZERO, Duration::ZERO),
            t("00.000"),
            "no debounce: due at once"
        );
    }
}
