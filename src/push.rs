//! The outbox relay: delivers queued actions to Tampuuri exactly once in effect, in order per
//! ticket, across crashes, restarts and network faults. A visit booking (`book`) waits in the
//! same queues and is delivered to Slotti by [`crate::slotti::relay`] with the same rules; once
//! it is booked, its delivery and visit are recorded in one commit and the telling of Tampuuri
//! is queued ([`crate::slotti::tell`]), so the same pass delivers it.
//!
//! Each pass takes, for every queue (a ticket's own actions, and follow-up creates of it as
//! parent), its oldest pending action, unless an older one of the same queue is pending or
//! dead-lettered; different queues go side by side up to `[push] concurrency`. Before a send,
//! the action is marked *in doubt* in its own commit; a definite answer clears that. An action
//! still in doubt at its next attempt (a timeout, a lost connection, a 5xx, or a process killed
//! between the send and the commit) is first checked against Tampuuri: a create by looking for
//! its correlation marker among the open tickets of its assignee; a transition by reading the
//! ticket and comparing it with what it looked like just before the send (its state and
//! `Muokattu`, recorded with the in-doubt mark). Only when it provably did not take effect is
//! it sent again: a transition whose ticket is in the target state counts as applied, one whose
//! ticket is exactly as before (state and `Muokattu`) is sent again, and one whose ticket
//! changed in between (someone else moved or edited it while ours was in flight) is
//! dead-lettered for a dispatcher, because Tampuuri cannot tell whether ours was applied.
//!
//! The outbox never says "delivered" without knowing it: a transition whose ticket is already
//! in its target state before the send (staff moved it there) is not sent but dead-lettered,
//! saying that our comment or reason was not sent; and an in-doubt one whose ticket was in the
//! target state before its send is never settled as applied (a state cannot tell ours from the
//! staff's move), but dead-lettered the same way.
//!
//! A delivered action's result is written into the mirror in the commit that records the
//! delivery (`Outbox::finish_attempt`): the ticket's new state, or the ticket a create made,
//! with a history row naming the action, so every face shows it before the next poll.
//!
//! The picture before the send comes from the mirror when the mirror is current for that
//! ticket, and otherwise (an earlier action of ours changed it since the last poll) from one
//! `GET` of the ticket. When Tampuuri sends no `Muokattu`, only the state can be compared: the
//! action is sent again when the ticket is in the state it was sent from, and dead-lettered
//! when it is in neither that state nor the target.
//!
//! Transient failures are retried with exponential backoff until `[push] deadline_hours`;
//! a permanent rejection (4xx other than 429) dead-letters the action with Tampuuri's message,
//! and the ticket's later actions wait behind it. A redirect answering a send is not a
//! rejection: whether Tampuuri acted first is unknown, so the action is in doubt.
//!
//! The decisions are pure functions with table tests: `sent_outcome` (what a send's answer
//! makes of an attempt), `decide` (the retry rule) and `judge` (an in-doubt transition's
//! check); [`push_pending`], `attempt` and `finish` are the mechanism around them.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;

use crate::action::Action;
use crate::backoff::Backoff;
use crate::config::{AccountConfig, Config};
use crate::model::{Ticket, TicketState};
use crate::slotti;
use crate::store::{AccountRules, AttemptEnd, Handle, NewVisit, OutboxRow, Snapshot};
use crate::sync;
use crate::tampuuri::{Api, ApiError, Client};
use crate::time;

/// What a push pass did.
#[derive(Debug, Default)]
pub struct PushReport {
    /// Actions that took effect in this pass.
    pub delivered: Vec<OutboxRow>,
    /// Actions dead-lettered in this pass, with the reason.
    pub dead: Vec<(OutboxRow, String)>,
    /// Actions still pending after the pass (waiting for a retry, or behind a dead letter).
    pub pending: u64,
    /// API calls made.
    pub api_calls: u64,
}

/// How one attempt at one action came out, before the retry rule ([`decide`]) is applied.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// It took effect: how it was found (`"sent"`, `"already applied"`), and the ticket a
    /// create made.
    Delivered(&'static str, Option<i64>),
    /// Not delivered, and it may be later; `in_doubt` when the send may have reached Tampuuri
    /// (it is then checked against Tampuuri before it is sent again).
    Failed { error: String, in_doubt: bool },
    /// It can never be delivered, or only a dispatcher can tell whether it was: why.
    Dead(String),
    /// A visit booked in Slotti (`slotti::relay`): how, and the visit to record with it.
    Booked(&'static str, Box<NewVisit>),
}

/// Delivers every action that is due, waiting up to `[push] linger_secs` for retries that
/// fall due soon. Per-action failures are recorded on the action, never raised; an error is
/// returned only when the store cannot be used.
pub async fn push_pending(
    config: &Config,
    api: &Api,
    store: &Handle,
) -> anyhow::Result<PushReport> {
    let clients: HashMap<String, Client> = config
        .accounts
        .iter()
        .map(|a| Ok((a.name.clone(), api.client(a)?)))
        .collect::<anyhow::Result<_>>()?;
    let slotti = match &config.slotti {
        Some(s) => Some(slotti::Client::new(config, s, api.exchange())?),
        None => None,
    };
    let clients = Clients {
        tampuuri: clients,
        slotti,
    };
    let mut report = PushReport::default();
    let linger_until = time::now() + chrono::Duration::from_std(config.push.linger)?;
    loop {
        let now = time::now();
        let ready = store
            .call(move |s| s.outbox().ready_actions(&time::fmt(now), 256))
            .await?;
        if ready.is_empty() {
            if wait_for_due(store, linger_until).await? {
                continue;
            }
            break;
        }
        // Each outcome is recorded as it arrives: a slow queue keeps no other queue's delivered
        // action in doubt.
        let mut results = std::pin::pin!(
            futures::stream::iter(ready)
                .map(|row| async {
                    let outcome = attempt(config, &clients, store, &row).await;
                    (row, outcome)
                })
                .buffer_unordered(config.push.concurrency)
        );
        while let Some((row, outcome)) = results.next().await {
            let outcome = outcome.map_err(|e| {
                e.context(format!(
                    "outbox action #{}: cannot record its outcome",
                    row.id
                ))
            })?;
            finish(config, store, row, outcome, &mut report).await?;
        }
    }
    for client in clients.tampuuri.values() {
        report.api_calls += client.meter().record(store).await?;
    }
    if let Some(c) = &clients.slotti {
        report.api_calls += c.meter().record(store).await?;
    }
    report.pending = store.call(|s| s.outbox().pending_count()).await?;
    Ok(report)
}

/// The clients of one push pass: one per Tampuuri account, and Slotti's when configured.
struct Clients {
    tampuuri: HashMap<String, Client>,
    slotti: Option<slotti::Client>,
}

/// With nothing due now: waits for the next retry if it falls due before `linger_until`, and
/// answers whether it did.
async fn wait_for_due(
    store: &Handle,
    linger_until: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<bool> {
    let next = store
        .call(|s| s.outbox().next_due())
        .await?
        .as_deref()
        .and_then(time::parse);
    match next {
        Some(due) if due <= linger_until && time::now() < linger_until => {
            let wait = (due - time::now())
                .to_std()
                .unwrap_or_default()
                .max(Duration::from_millis(10));
            tokio::time::sleep(wait).await;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Applies the retry rule to one attempt's outcome, records the result on the action (a
/// delivered one with its result in the mirror, in the same commit) and logs it.
async fn finish(
    config: &Config,
    store: &Handle,
    row: OutboxRow,
    outcome: Outcome,
    report: &mut PushReport,
) -> anyhow::Result<()> {
    if let Outcome::Booked(how, visit) = outcome {
        return finish_booking(config, store, row, how, *visit, report).await;
    }
    let delay = backoff(config, row.attempts + 1);
    let end = decide(outcome, row.attempts, &row.deadline_at, time::now(), delay);
    let id = row.id;
    let recorded = end.clone();
    let account = config
        .account(&row.account)
        .map(|a| (a.contractor_id, a.states.clone()));
    store
        .call(move |s| {
            let rules = account
                .as_ref()
                .map(|(contractor_id, states)| AccountRules {
                    contractor_id: *contractor_id,
                    open_states: states,
                    state_field: crate::tampuuri::STATE_FIELD,
                });
            s.outbox()
                .finish_attempt(id, &time::fmt(time::now()), &recorded, rules.as_ref())
        })
        .await?;
    match end {
        AttemptEnd::Delivered { outcome, .. } => {
            tracing::info!(account = %row.account, ticket = row.ticket_id, outbox_id = id, action = row.kind, outcome, "Action delivered.");
            report.delivered.push(row);
        }
        AttemptEnd::Dead { error } => {
            tracing::error!(account = %row.account, ticket = row.ticket_id, outbox_id = id, action = row.kind, reason = %error, "Action dead-lettered; later actions on this ticket wait.");
            report.dead.push((row, error));
        }
        AttemptEnd::Retry {
            next_at,
            error,
            in_doubt,
        } => {
            tracing::warn!(account = %row.account, ticket = row.ticket_id, outbox_id = id, action = row.kind, %next_at, in_doubt, %error, "Action not delivered; will retry.");
        }
    }
    Ok(())
}

/// A visit booked: the delivery recorded with its visit in one commit, then the booking
/// (and any other untold visit change) told to Tampuuri through the outbox, so that this
/// pass delivers the accept and the hold too.
async fn finish_booking(
    config: &Config,
    store: &Handle,
    row: OutboxRow,
    how: &'static str,
    visit: NewVisit,
    report: &mut PushReport,
) -> anyhow::Result<()> {
    let (id, guid) = (row.id, visit.booking_guid.clone());
    let recorded = store
        .call(move |s| s.visits().deliver_booking(id, how, &visit, time::now()))
        .await?;
    if let crate::store::VisitInsert::TicketHasVisit(other) = &recorded {
        tracing::error!(account = %row.account, ticket = row.ticket_id, outbox_id = id, booking = %guid, other = %other.booking_guid, "A visit was booked in Slotti for a ticket that already has one; cancel one of them in Slotti.");
    }
    tracing::info!(account = %row.account, ticket = row.ticket_id, outbox_id = id, action = row.kind, outcome = how, booking = %guid, "Visit booked.");
    report.delivered.push(row);
    slotti::tell::tell_untold(config, store).await?;
    Ok(())
}

/// The retry rule: what an attempt's outcome makes of an action that had been tried
/// `attempts` times before it. A failure is tried again `delay` after `now`, unless that is
/// past the action's `deadline_at`: then it is dead-lettered, saying so. Pure, so that the
/// rule is checked in a table.
fn decide(
    outcome: Outcome,
    attempts: u32,
    deadline_at: &str,
    now: chrono::DateTime<chrono::Utc>,
    delay: Duration,
) -> AttemptEnd {
    match outcome {
        Outcome::Delivered(how, created) => AttemptEnd::Delivered {
            outcome: how,
            created_ticket_id: created,
        },
        Outcome::Dead(why) => AttemptEnd::Dead { error: why },
        Outcome::Booked(how, _) => AttemptEnd::Delivered {
            outcome: how,
            created_ticket_id: None,
        },
        Outcome::Failed { error, in_doubt } => {
            let next = chrono::Duration::from_std(delay)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
            match time::parse(deadline_at) {
                Some(deadline) if next > deadline => AttemptEnd::Dead {
                    error: format!(
                        "gave up after {} attempts (deadline {deadline_at}): {error}",
                        attempts + 1
                    ),
                },
                _ => AttemptEnd::Retry {
                    next_at: time::fmt(next),
                    error,
                    in_doubt,
                },
            }
        }
    }
}

/// The delay before attempt `n` (counting from 1): doubling from `retry_initial` up to
/// `retry_max`, with jitter.
fn backoff(config: &Config, attempts: u32) -> Duration {
    Backoff::jittered(config.push.retry_initial, config.push.retry_max).delay(attempts)
}

/// One attempt at one action.
async fn attempt(
    config: &Config,
    clients: &Clients,
    store: &Handle,
    row: &OutboxRow,
) -> anyhow::Result<Outcome> {
    let (Some(account), Some(client)) = (
        config.account(&row.account),
        clients.tampuuri.get(&row.account),
    ) else {
        return Ok(Outcome::Dead(format!(
            "account {:?} is no longer in the config",
            row.account
        )));
    };
    if let (Some(id), false) = (row.ticket_id, matches!(row.action, Action::Create(_))) {
        let (acc, tid) = (row.account.clone(), id);
        if let Some(reason) = store.call(move |s| s.outbox().departure(&acc, tid)).await? {
            return Ok(Outcome::Dead(match reason.as_str() {
                "deleted" => format!("ticket {id} was deleted in Tampuuri"),
                _ => format!("ticket {id} was re-assigned away from us"),
            }));
        }
    }
    if row.action.is_for_slotti() {
        return Ok(
            match slotti::relay::attempt(config, clients.slotti.as_ref(), store, row).await? {
                slotti::relay::Outcome::Booked { how, visit } => Outcome::Booked(how, visit),
                slotti::relay::Outcome::Failed { error, in_doubt } => {
                    Outcome::Failed { error, in_doubt }
                }
                slotti::relay::Outcome::Dead(why) => Outcome::Dead(why),
            },
        );
    }
    let before = if row.in_doubt {
        match check_applied(config, account, client, store, row).await {
            Ok(Check::Applied(created)) => {
                return Ok(Outcome::Delivered("already applied", created));
            }
            Ok(Check::Impossible(why)) => return Ok(Outcome::Dead(why)),
            Ok(Check::NotApplied(before)) => before,
            Err(e) => {
                return Ok(Outcome::Failed {
                    error: format!("cannot check whether the last attempt took effect: {e:#}"),
                    in_doubt: true,
                });
            }
        }
    } else {
        match before_send(account, client, store, row).await? {
            Ok(before) => before,
            Err(outcome) => return Ok(outcome),
        }
    };
    let id = row.id;
    store
        .call(move |s| {
            s.outbox()
                .begin_attempt(id, &time::fmt(time::now()), before.as_ref())
        })
        .await?;
    let attachments = match row.action {
        Action::Create(_) => store.call(move |s| s.outbox().attachments(id)).await?,
        _ => Vec::new(),
    };
    let sent = client.push(row.ticket_id, &row.action, &attachments).await;
    Ok(sent_outcome(sent, row.ticket_id))
}

/// What the answer to a send makes of the attempt: a definite answer delivers or
/// dead-letters; a failure that surely left Tampuuri unchanged (bad credentials, 429, no
/// connection) is retried as is; any other (a 5xx, a lost answer, a redirect, an unreadable
/// 2xx) leaves the action in doubt, to be checked against Tampuuri before it is sent again.
fn sent_outcome(sent: Result<Option<i64>, ApiError>, ticket_id: Option<i64>) -> Outcome {
    let failed = |e: ApiError, in_doubt| Outcome::Failed {
        error: e.to_string(),
        in_doubt,
    };
    match sent {
        Ok(created) => Outcome::Delivered("sent", created),
        Err(ApiError::Rejected {
            status, message, ..
        }) => Outcome::Dead(format!("Tampuuri rejected it (HTTP {status}): {message}")),
        Err(ApiError::NotFound { .. }) => Outcome::Dead(format!(
            "ticket {} does not exist in Tampuuri (deleted?)",
            ticket_id.unwrap_or_default()
        )),
        Err(
            e @ (ApiError::Auth { .. }
            | ApiError::Credentials { .. }
            | ApiError::RateLimited { .. }
            | ApiError::Unreachable { .. }),
        ) => failed(e, false),
        Err(e) => failed(e, true),
    }
}

enum Check {
    /// It took effect (a create: the ticket it made).
    Applied(Option<i64>),
    /// It provably did not take effect (a transition: the ticket as it is now, before the
    /// next send).
    NotApplied(Option<Snapshot>),
    /// It can never take effect, or whether it did cannot be known: a dispatcher decides.
    Impossible(String),
}

/// What a transition's ticket looks like before it is sent (`None` for a create): the
/// mirror's picture when it is current and carries a modification time (without one, the
/// check after a lost answer could only compare states), else one `GET`. `Err` is the attempt's outcome when
/// the ticket cannot be acted on or cannot be read, or is already in the action's target state
/// (staff moved it there): then nothing is sent, and a dispatcher decides.
async fn before_send(
    account: &AccountConfig,
    client: &Client,
    store: &Handle,
    row: &OutboxRow,
) -> anyhow::Result<Result<Option<Snapshot>, Outcome>> {
    Ok(match read_before_send(account, client, store, row).await? {
        Ok(Some(snap)) if row.expected_state.as_deref() == Some(snap.state.as_str()) => {
            Err(Outcome::Dead(moved_there_first(row, &snap.state)))
        }
        read => read,
    })
}

/// What the ticket looks like before the send (see [`before_send`]).
async fn read_before_send(
    account: &AccountConfig,
    client: &Client,
    store: &Handle,
    row: &OutboxRow,
) -> anyhow::Result<Result<Option<Snapshot>, Outcome>> {
    let Some(id) = row
        .ticket_id
        .filter(|_| !matches!(row.action, Action::Create(_)))
    else {
        return Ok(Ok(None));
    };
    let (name, from) = (account.name.clone(), row.from_state.clone());
    if let Some(snap) = store
        .call(move |s| s.outbox().mirror_snapshot(&name, id, from.as_deref()))
        .await?
        .filter(|snap| snap.modified.is_some())
    {
        return Ok(Ok(Some(snap)));
    }
    Ok(match client.get_ticket(id).await {
        Ok(None) => Err(Outcome::Dead(format!(
            "ticket {id} was deleted in Tampuuri"
        ))),
        Ok(Some(t)) if t.assignee_id != Some(account.contractor_id) => {
            let who = t.assignee_id.map_or("nobody".to_owned(), |a| a.to_string());
            upsert(account, store, t).await;
            Err(Outcome::Dead(format!(
                "ticket {id} was re-assigned away from us (to {who})"
            )))
        }
        Ok(Some(t)) => {
            let snap = snapshot(&t);
            upsert(account, store, t).await;
            Ok(Some(snap))
        }
        Err(e) => Err(Outcome::Failed {
            error: format!("cannot read ticket {id} before sending: {e}"),
            in_doubt: false,
        }),
    })
}

fn snapshot(t: &Ticket) -> Snapshot {
    Snapshot {
        state: t.state.name().to_owned(),
        modified: t.remote_modified.clone(),
    }
}

/// What a transition's in-doubt check concludes from the ticket as it is now.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Already in the target state before the send: whether ours took effect cannot be
    /// known from the state (an older version sent such actions).
    WasThere,
    /// In the target state: it took effect.
    Applied,
    /// Exactly as before the send: it did not take effect, and may be sent again.
    Unchanged,
    /// Changed since before the send, and not in the target state: whether ours took effect
    /// cannot be known.
    Changed,
}

/// Compares a transition's ticket now with the picture taken before the send. Without a
/// `Muokattu` from before (Tampuuri sent none, or the action was marked before huoltosync
/// recorded it), only the state is compared.
fn judge(target: Option<&str>, before: &Snapshot, now: &Snapshot) -> Verdict {
    if target == Some(before.state.as_str()) {
        Verdict::WasThere
    } else if target == Some(now.state.as_str()) {
        Verdict::Applied
    } else if now.state != before.state {
        Verdict::Changed
    } else {
        match (&before.modified, &now.modified) {
            (None, _) => Verdict::Unchanged,
            (Some(b), Some(n)) if same_instant(b, n) => Verdict::Unchanged,
            _ => Verdict::Changed,
        }
    }
}

/// Whether two `Muokattu` values are the same moment (compared as instants when both parse,
/// else as text).
fn same_instant(a: &str, b: &str) -> bool {
    match (
        chrono::DateTime::parse_from_rfc3339(a),
        chrono::DateTime::parse_from_rfc3339(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// What of ours a transition carries that the resident or the manager would read.
fn what_we_say(action: &Action) -> &'static str {
    match action {
        Action::Hold { .. } => "our reason",
        Action::Accept { comment: Some(_) }
        | Action::Done {
            comment: Some(_), ..
        } => "our comment",
        _ => "our action",
    }
}

/// A dispatcher's explanation of a transition not sent because the ticket was already in its
/// target state: someone else moved it there.
fn moved_there_first(row: &OutboxRow, state: &str) -> String {
    format!(
        "staff already moved ticket {id} to {state} before our {kind} was sent; {what} was not sent \
         (nothing was sent); check ticket {id} in Tampuuri, then queue what should still be said, \
         and `huoltosync outbox cancel {oid}`",
        id = row.ticket_id.unwrap_or_default(),
        kind = row.kind,
        what = what_we_say(&row.action),
        oid = row.id,
    )
}

/// A dispatcher's explanation of an in-doubt transition sent to a ticket that was already in
/// its target state: the state cannot tell whether Tampuuri took ours.
fn was_there_before(row: &OutboxRow, id: i64, state: &str) -> String {
    format!(
        "ticket {id} was already {state} before our {kind} was sent (staff moved it), so its state \
         cannot tell whether Tampuuri took ours and {what}; check ticket {id} in Tampuuri, then \
         `huoltosync outbox retry {oid}` or `huoltosync outbox cancel {oid}`",
        kind = row.kind,
        what = what_we_say(&row.action),
        oid = row.id,
    )
}

/// A dispatcher's explanation of an ambiguous transition.
fn changed_in_flight(row: &OutboxRow, id: i64, before: &Snapshot, now: &Snapshot) -> String {
    let when = |s: &Snapshot| match &s.modified {
        Some(m) => format!("{}, modified {m}", s.state),
        None => s.state.clone(),
    };
    format!(
        "the ticket changed in Tampuuri while our {kind} was in flight, so whether it took effect is unknown \
         (ticket {id} was {was} before the send, and is {is} now); check ticket {id} in Tampuuri, \
         then `huoltosync outbox retry {oid}` or `huoltosync outbox cancel {oid}`",
        kind = row.kind,
        was = when(before),
        is = when(now),
        oid = row.id,
    )
}

/// Whether an in-doubt action took effect.
async fn check_applied(
    config: &Config,
    account: &AccountConfig,
    client: &Client,
    store: &Handle,
    row: &OutboxRow,
) -> anyhow::Result<Check> {
    if let Action::Create(t) = &row.action {
        // The poll may already have brought it: the mirror costs no call.
        let (name, marker) = (account.name.clone(), t.marker.clone());
        if let Ok(Some(id)) = store
            .call(move |s| s.outbox().find_marker(&name, &marker))
            .await
        {
            return Ok(Check::Applied(Some(id)));
        }
        let assignee = t.assignee_id.unwrap_or(account.contractor_id);
        return Ok(
            match find_marker(config, account, client, assignee, &t.marker).await? {
                Some(ticket) => {
                    let id = ticket.id;
                    upsert(account, store, ticket).await;
                    Check::Applied(Some(id))
                }
                None => Check::NotApplied(None),
            },
        );
    }
    let id = row.ticket_id.unwrap_or_default();
    Ok(match client.get_ticket(id).await? {
        None => Check::Impossible(format!("ticket {id} was deleted in Tampuuri")),
        Some(t) if t.assignee_id != Some(account.contractor_id) => {
            let who = t.assignee_id.map_or("nobody".to_owned(), |a| a.to_string());
            upsert(account, store, t).await;
            Check::Impossible(format!(
                "ticket {id} was re-assigned away from us (to {who})"
            ))
        }
        Some(t) => {
            let now = snapshot(&t);
            // Marked before huoltosync recorded the picture: the state it was queued from.
            let before = match (&row.before_state, &row.from_state) {
                (Some(state), _) | (None, Some(state)) => Snapshot {
                    state: state.clone(),
                    modified: row.before_modified.clone(),
                },
                (None, None) => Snapshot {
                    state: String::new(),
                    modified: None,
                },
            };
            let verdict = judge(row.expected_state.as_deref(), &before, &now);
            // Applied: the delivery writes the new state into the mirror, with its history
            // row; any other verdict leaves the ticket as Tampuuri has it now.
            if verdict != Verdict::Applied {
                upsert(account, store, t).await;
            }
            match verdict {
                Verdict::Applied => Check::Applied(None),
                Verdict::Unchanged => Check::NotApplied(Some(now)),
                Verdict::Changed => Check::Impossible(changed_in_flight(row, id, &before, &now)),
                Verdict::WasThere => Check::Impossible(was_there_before(row, id, &before.state)),
            }
        }
    })
}

/// Looks for a ticket carrying `marker` among the tickets assigned to `assignee`, open or
/// finished (staff may have finished the new ticket before this check): see [`sync::search`].
/// Only a search that went through the whole list answers "not there".
async fn find_marker(
    config: &Config,
    account: &AccountConfig,
    client: &Client,
    assignee: i64,
    marker: &str,
) -> anyhow::Result<Option<Ticket>> {
    let mut states = account.states.clone();
    for done in [TicketState::Tehty, TicketState::Valmis] {
        if !states.iter().any(|s| s.eq_ignore_ascii_case(done.name())) {
            states.push(done.name().to_owned());
        }
    }
    sync::search(
        account,
        client,
        &sync::SweepSettings::from_config(config),
        assignee,
        &states,
        |t| t.extra_info.as_deref().is_some_and(|d| d.contains(marker)),
    )
    .await
}

async fn upsert(account: &AccountConfig, store: &Handle, t: Ticket) {
    let open = t.openness(account.contractor_id, &account.states);
    let (name, id) = (account.name.clone(), t.id);
    if let Err(e) = store
        .call(move |s| {
            s.mirror()
                .upsert_fetched(&name, t, open, &time::fmt(time::now()))
        })
        .await
    {
        tracing::warn!(account = %account.name, ticket = id, error = format!("{e:#}"), "Cannot mirror a fetched ticket.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(state: &str, modified: Option<&str>) -> Snapshot {
        Snapshot {
            state: state.into(),
            modified: modified.map(Into::into),
        }
    }

    fn failed(error: &str, in_doubt: bool) -> Outcome {
        Outcome::Failed {
            error: error.into(),
            in_doubt,
        }
    }

    #[test]
    fn the_retry_rule_delivers_retries_before_the_deadline_and_gives_up_after_it() {
        let now = time::parse("2026-03-01T10:00:00.000Z").unwrap();
        let deadline = "2026-03-01T11:00:00.000Z";
        let min = |m: u64| Duration::from_secs(60 * m);
        let retry = |at: &str, error: &str, in_doubt| AttemptEnd::Retry {
            next_at: at.into(),
            error: error.into(),
            in_doubt,
        };
        let dead = |error: &str| AttemptEnd::Dead {
            error: error.into(),
        };
        // (outcome, earlier attempts, deadline, delay, what becomes of the action)
        let table = [
            (
                Outcome::Delivered("sent", None),
                0,
                deadline,
                min(1),
                AttemptEnd::Delivered {
                    outcome: "sent",
                    created_ticket_id: None,
                },
            ),
            (
                Outcome::Delivered("already applied", Some(90)),
                4,
                deadline,
                min(1),
                AttemptEnd::Delivered {
                    outcome: "already applied",
                    created_ticket_id: Some(90),
                },
            ),
            // A delivery past the deadline is still a delivery.
            (
                Outcome::Delivered("sent", None),
                9,
                "2026-03-01T09:00:00.000Z",
                min(1),
                AttemptEnd::Delivered {
                    outcome: "sent",
                    created_ticket_id: None,
                },
            ),
            (
                Outcome::Dead("rejected".into()),
                0,
                deadline,
                min(1),
                dead("rejected"),
            ),
            (
                failed("HTTP 429", false),
                0,
                deadline,
                min(1),
                retry("2026-03-01T10:01:00.000Z", "HTTP 429", false),
            ),
            (
                failed("outcome unknown", true),
                2,
                deadline,
                min(4),
                retry("2026-03-01T10:04:00.000Z", "outcome unknown", true),
            ),
            // Exactly at the deadline is still in time.
            (
                failed("HTTP 500", true),
                5,
                deadline,
                min(60),
                retry("2026-03-01T11:00:00.000Z", "HTTP 500", true),
            ),
            (
                failed("HTTP 500", true),
                5,
                deadline,
                min(61),
                dead("gave up after 6 attempts (deadline 2026-03-01T11:00:00.000Z): HTTP 500"),
            ),
            (
                failed("unreachable", false),
                0,
                deadline,
                Duration::MAX,
                dead("gave up after 1 attempts (deadline 2026-03-01T11:00:00.000Z): unreachable"),
            ),
            // A deadline that cannot be read bounds nothing.
            (
                failed("unreachable", false),
                0,
                "",
                min(1),
                retry("2026-03-01T10:01:00.000Z", "unreachable", false),
            ),
        ];
        for (outcome, attempts, deadline, delay, expected) in table {
            let what = format!("{outcome:?} after {attempts} attempts, {delay:?}");
            assert_eq!(
                decide(outcome, attempts, deadline, now, delay),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn a_sends_answer_delivers_dead_letters_retries_or_leaves_the_action_in_doubt() {
        let account = || "acme".to_owned();
        let endpoint = crate::tampuuri::endpoint::VASTAANOTA;
        let doubtful = |e: ApiError| failed(&e.to_string(), true);
        let clean = |e: ApiError| failed(&e.to_string(), false);
        let unknown = || ApiError::OutcomeUnknown {
            account: account(),
            endpoint,
            detail: "HTTP 303, a redirect to http://elsewhere.example/, not followed".into(),
        };
        let server = || ApiError::Server {
            account: account(),
            endpoint,
            status: 502,
            message: "bad gateway".into(),
        };
        let malformed = || ApiError::Malformed {
            account: account(),
            endpoint,
            detail: "the answer has no Id".into(),
        };
        let auth = || ApiError::Auth {
            account: account(),
            status: 403,
            message: "Virheellinen avain".into(),
        };
        let limited = || ApiError::RateLimited {
            account: account(),
            endpoint,
            retry_after: None,
            message: "(no body)".into(),
        };
        let unreachable = || ApiError::Unreachable {
            account: account(),
            endpoint,
            detail: "connection refused".into(),
        };
        let table: Vec<(Result<Option<i64>, ApiError>, Outcome)> = vec![
            (Ok(None), Outcome::Delivered("sent", None)),
            (Ok(Some(77)), Outcome::Delivered("sent", Some(77))),
            (
                Err(ApiError::Rejected {
                    account: account(),
                    endpoint,
                    status: 409,
                    message: "Tila ei salli".into(),
                }),
                Outcome::Dead("Tampuuri rejected it (HTTP 409): Tila ei salli".into()),
            ),
            (
                Err(ApiError::NotFound {
                    account: account(),
                    endpoint,
                    detail: "http://tampuuri.example/v10/api/ilmoitukset/5: (no body)".into(),
                }),
                Outcome::Dead("ticket 5 does not exist in Tampuuri (deleted?)".into()),
            ),
            (Err(auth()), clean(auth())),
            (Err(limited()), clean(limited())),
            (Err(unreachable()), clean(unreachable())),
            // The answer does not tell whether Tampuuri acted: checked before any resend.
            (Err(unknown()), doubtful(unknown())),
            (Err(server()), doubtful(server())),
            (Err(malformed()), doubtful(malformed())),
        ];
        for (sent, expected) in table {
            let what = format!("{sent:?}");
            assert_eq!(sent_outcome(sent, Some(5)), expected, "{what}");
        }
    }

    #[test]
    fn an_in_doubt_transition_is_sent_again_only_when_the_ticket_is_provably_unchanged() {
        use Verdict::*;
        const M1: &str = "2026-03-01T10:00:00.000001+02:00";
        const M2: &str = "2026-03-01T10:00:05.5+02:00";
        let target = Some("Vastaanotettu");
        let before = snap("Avoin", Some(M1));
        for (now, expected) in [
            (snap("Vastaanotettu", Some(M2)), Applied),
            (snap("Avoin", Some(M1)), Unchanged),
            // The same instant written another way.
            (
                snap("Avoin", Some("2026-03-01T08:00:00.000001Z")),
                Unchanged,
            ),
            // Applied, then moved back by someone else: Muokattu moved.
            (snap("Avoin", Some(M2)), Changed),
            (snap("Avoin", None), Changed),
            (snap("Odottaa", Some(M2)), Changed),
            (snap("Tehty", Some(M2)), Changed),
        ] {
            assert_eq!(judge(target, &before, &now), expected, "{now:?}");
        }
        // Already in the target state before the send: never "applied".
        let there = snap("Vastaanotettu", Some(M1));
        for now in [
            snap("Vastaanotettu", Some(M1)),
            snap("Vastaanotettu", Some(M2)),
            snap("Avoin", Some(M2)),
        ] {
            assert_eq!(judge(target, &there, &now), WasThere, "{now:?}");
        }
        // Without a Muokattu from before, only the state can be compared.
        let unknown = snap("Avoin", None);
        for (now, expected) in [
            (snap("Vastaanotettu", Some(M2)), Applied),
            (snap("Avoin", Some(M2)), Unchanged),
            (snap("Avoin", None), Unchanged),
            (snap("Odottaa", None), Changed),
        ] {
            assert_eq!(judge(target, &unknown, &now), expected, "{now:?}");
        }
    }
}
