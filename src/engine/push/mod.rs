//! The outbox relay: delivers queued actions to Tampuuri exactly once in effect, in order per
//! ticket, across crashes, restarts and network faults. A visit booking (`book`) waits in the
//! same queues and is delivered to Slotti with the same rules; once it is booked, its delivery
//! and visit are recorded in one commit and the telling of Tampuuri is queued
//! ([`crate::engine::visits::tell`]), so the same pass delivers it.
//!
//! This module picks the queue heads and applies the retry rule (`decide`); each target's
//! relay implements one trait, `Relay` (`attempt` a row, `record` a delivery): `tampuuri.rs`
//! for accept, hold, done and create, `slotti.rs` for visit bookings. What a failed send proves
//! (refused for good, surely not applied, or unknown) each remote's error says
//! (`SendFailure`), and `failed_send` is the one rule that makes an attempt's outcome of it.
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
//! check); [`push_pending`], each relay's `attempt` and `finish` are the mechanism around them.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::domain::action::Action;
use crate::domain::backoff::Backoff;
use crate::domain::time;
use crate::store::{AccountRules, AttemptEnd, Handle, OutboxRow};
use crate::tampuuri::Api;

mod slotti;
mod tampuuri;

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
/// `D` is what a delivery carries to its recording ([`Relay::Delivered`]).
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome<D> {
    /// It took effect: how it was found (`"sent"`, `"already applied"`), and its result.
    Delivered(&'static str, D),
    /// Not delivered, and it may be later; `in_doubt` when the send may have reached the
    /// remote (it is then checked against the remote before it is sent again).
    Failed { error: String, in_doubt: bool },
    /// It can never be delivered, or only a dispatcher can tell whether it was: why.
    Dead(String),
}

/// One target of the outbox (Tampuuri's actions, Slotti's bookings): how an attempt is made
/// and how a delivery is recorded. The retry rule, the in-doubt bookkeeping of a failure and
/// the order of the queues are [`push_pending`]'s, the same for every target.
pub(crate) trait Relay {
    /// What a delivery carries to [`Relay::record`]: the ticket a create made, the visit booked.
    type Delivered;

    /// One attempt at `row`, whose account is configured and whose ticket has not left. The
    /// attempt marks itself in doubt in its own commit before it sends. An error only when the
    /// store cannot be used.
    async fn attempt(&self, row: &OutboxRow) -> anyhow::Result<Outcome<Self::Delivered>>;

    /// Records `row` as delivered (`how`) with its result, in one commit, and logs it.
    async fn record(
        &self,
        row: &OutboxRow,
        how: &'static str,
        delivered: Self::Delivered,
    ) -> anyhow::Result<()>;
}

/// What a failed send proves about the remote.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Proof {
    /// It refused the action for good: why, for the dispatcher.
    Refused(String),
    /// It surely did not act (bad credentials, a 429, no connection): sent again as is.
    NotApplied,
    /// It may have acted (a 5xx, a lost or unreadable answer, a redirect): in doubt.
    Unknown,
}

/// A remote's error for a failed send, judged by what it proves.
pub(crate) trait SendFailure: std::fmt::Display {
    /// What this failure of a send for ticket `ticket` proves.
    fn proof(&self, ticket: i64) -> Proof;
}

/// The one rule for a failed send: a refusal dead-letters, a failure that proves the remote
/// unchanged is retried as is, any other leaves the action in doubt.
pub(crate) fn failed_send<D>(e: impl SendFailure, ticket: i64) -> Outcome<D> {
    match e.proof(ticket) {
        Proof::Refused(why) => Outcome::Dead(why),
        Proof::NotApplied => Outcome::Failed {
            error: e.to_string(),
            in_doubt: false,
        },
        Proof::Unknown => Outcome::Failed {
            error: e.to_string(),
            in_doubt: true,
        },
    }
}

/// Delivers every action that is due, waiting up to `[push] linger_secs` for retries that
/// fall due soon. Per-action failures are recorded on the action, never raised; an error is
/// returned only when the store cannot be used.
pub async fn push_pending(
    config: &Config,
    api: &Api,
    store: &Handle,
) -> anyhow::Result<PushReport> {
    let tampuuri = tampuuri::TampuuriRelay::new(config, api, store)?;
    let slotti = slotti::SlottiRelay::new(config, api.exchange(), store)?;
    // Outcomes are recorded one at a time, each as it arrives: a slow queue keeps no other
    // queue's delivered action in doubt.
    let report = Mutex::new(PushReport::default());
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
        let mut results = std::pin::pin!(
            futures::stream::iter(ready)
                .map(|row| async {
                    if row.action.is_for_slotti() {
                        deliver(config, &slotti, store, row, &report).await
                    } else {
                        deliver(config, &tampuuri, store, row, &report).await
                    }
                })
                .buffer_unordered(config.push.concurrency)
        );
        while let Some(done) = results.next().await {
            done?;
        }
    }
    let mut report = report.into_inner();
    report.api_calls += tampuuri.meter().await?;
    report.api_calls += slotti.meter().await?;
    report.pending = store.call(|s| s.outbox().pending_count()).await?;
    Ok(report)
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

/// One attempt at `row` by its target's `relay`, and its outcome recorded under the retry rule.
async fn deliver<R: Relay>(
    config: &Config,
    relay: &R,
    store: &Handle,
    row: OutboxRow,
    report: &Mutex<PushReport>,
) -> anyhow::Result<()> {
    let outcome = match undeliverable(config, store, &row).await {
        Ok(Some(why)) => Ok(Outcome::Dead(why)),
        Ok(None) => relay.attempt(&row).await,
        Err(e) => Err(e),
    }
    .map_err(|e| {
        e.context(format!(
            "outbox action #{}: cannot record its outcome",
            row.id
        ))
    })?;
    let mut report = report.lock().await;
    finish(config, relay, store, row, outcome, &mut report).await
}

/// Why `row` can no longer be delivered to any target: its account left the config, or its
/// ticket left us (a create has no ticket yet).
async fn undeliverable(
    config: &Config,
    store: &Handle,
    row: &OutboxRow,
) -> anyhow::Result<Option<String>> {
    if config.account(&row.account).is_none() {
        return Ok(Some(gone(row)));
    }
    if let (Some(id), false) = (row.ticket_id, matches!(row.action, Action::Create(_))) {
        let (acc, tid) = (row.account.clone(), id);
        if let Some(reason) = store.call(move |s| s.outbox().departure(&acc, tid)).await? {
            return Ok(Some(match reason.as_str() {
                "deleted" => format!("ticket {id} was deleted in Tampuuri"),
                _ => format!("ticket {id} was re-assigned away from us"),
            }));
        }
    }
    Ok(None)
}

/// Why an action of an account no longer in the config is dead.
fn gone(row: &OutboxRow) -> String {
    format!("account {:?} is no longer in the config", row.account)
}

/// Applies the retry rule to one attempt's outcome, records the result on the action (a
/// delivered one by its relay, with its result, in one commit) and logs it.
async fn finish<R: Relay>(
    config: &Config,
    relay: &R,
    store: &Handle,
    row: OutboxRow,
    outcome: Outcome<R::Delivered>,
    report: &mut PushReport,
) -> anyhow::Result<()> {
    let delay = backoff(config, row.attempts + 1);
    let end = match decide(outcome, row.attempts, &row.deadline_at, time::now(), delay) {
        Decision::Deliver(how, delivered) => {
            relay.record(&row, how, delivered).await?;
            report.delivered.push(row);
            return Ok(());
        }
        Decision::End(end) => end,
    };
    record_end(config, store, &row, &end).await?;
    let id = row.id;
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

/// Records how an attempt at `row` ended (`Outbox::finish_attempt`; a delivery with its result
/// in the mirror, under its account's rules, in the same commit).
async fn record_end(
    config: &Config,
    store: &Handle,
    row: &OutboxRow,
    end: &AttemptEnd,
) -> anyhow::Result<()> {
    let (id, recorded) = (row.id, end.clone());
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
                });
            s.outbox()
                .finish_attempt(id, &time::fmt(time::now()), &recorded, rules.as_ref())
        })
        .await
}

/// What the retry rule makes of an outcome.
#[derive(Debug, PartialEq)]
enum Decision<D> {
    /// Delivered (`how`), with its result: recorded by the target's relay.
    Deliver(&'static str, D),
    /// Dead-lettered, or retried at a time.
    End(AttemptEnd),
}

/// The retry rule: what an attempt's outcome makes of an action that had been tried
/// `attempts` times before it. A failure is tried again `delay` after `now`, unless that is
/// past the action's `deadline_at`: then it is dead-lettered, saying so. Pure, so that the
/// rule is checked in a table.
fn decide<D>(
    outcome: Outcome<D>,
    attempts: u32,
    deadline_at: &str,
    now: chrono::DateTime<chrono::Utc>,
    delay: Duration,
) -> Decision<D> {
    match outcome {
        Outcome::Delivered(how, result) => Decision::Deliver(how, result),
        Outcome::Dead(why) => Decision::End(AttemptEnd::Dead { error: why }),
        Outcome::Failed { error, in_doubt } => {
            let next = chrono::Duration::from_std(delay)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
            Decision::End(match time::parse(deadline_at) {
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
            })
        }
    }
}

/// The delay before attempt `n` (counting from 1): doubling from `retry_initial` up to
/// `retry_max`, with jitter.
fn backoff(config: &Config, attempts: u32) -> Duration {
    Backoff::jittered(config.push.retry_initial, config.push.retry_max).delay(attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(error: &str, in_doubt: bool) -> Outcome<Option<i64>> {
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
        let retry = |at: &str, error: &str, in_doubt| {
            Decision::End(AttemptEnd::Retry {
                next_at: at.into(),
                error: error.into(),
                in_doubt,
            })
        };
        let dead = |error: &str| {
            Decision::End(AttemptEnd::Dead {
                error: error.into(),
            })
        };
        // (outcome, earlier attempts, deadline, delay, what becomes of the action)
        let table = [
            (
                Outcome::Delivered("sent", None),
                0,
                deadline,
                min(1),
                Decision::Deliver("sent", None),
            ),
            (
                Outcome::Delivered("already applied", Some(90)),
                4,
                deadline,
                min(1),
                Decision::Deliver("already applied", Some(90)),
            ),
            // A delivery past the deadline is still a delivery.
            (
                Outcome::Delivered("sent", None),
                9,
                "2026-03-01T09:00:00.000Z",
                min(1),
                Decision::Deliver("sent", None),
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
}
