//! The outbox relay: delivers queued actions to Tampuuri exactly once in effect, in order per
//! ticket, across crashes, restarts and network faults.
//!
//! Each pass takes, for every queue (a ticket's own actions, and follow-up creates of it as
//! parent), its oldest pending action, unless an older one of the same queue is pending or
//! dead-lettered; different queues go side by side up to `[push] concurrency`. Before a send,
//! the action is marked *in doubt* in its own commit; a definite answer clears that. An action
//! still in doubt at its next attempt (a timeout, a lost connection, a 5xx, or a process killed
//! between the send and the commit) is first checked against Tampuuri: a transition by reading
//! the ticket's state, a create by looking for its correlation marker among the open tickets
//! of its assignee. Only when it did not take effect is it sent again.
//!
//! Transient failures are retried with exponential backoff until `[push] deadline_hours`;
//! a permanent rejection (4xx other than 429) dead-letters the action with Tampuuri's message,
//! and the ticket's later actions wait behind it.

use std::collections::HashMap;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;

use crate::action::Action;
use crate::config::{AccountConfig, Config};
use crate::model::Ticket;
use crate::store::{AttemptEnd, Handle, OutboxRow};
use crate::tampuuri::{Api, ApiError, Client, wire};
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

/// How one attempt at one action ended.
enum Outcome {
    Delivered(&'static str, Option<i64>),
    Retry(String, bool),
    Dead(String),
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
    let mut report = PushReport::default();
    let linger_until = time::now() + chrono::Duration::from_std(config.push.linger)?;
    loop {
        let now = time::now();
        let ready = store
            .call(move |s| s.ready_actions(&time::fmt(now), 256))
            .await?;
        if ready.is_empty() {
            let next = store
                .call(|s| s.next_due())
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
                    continue;
                }
                _ => break,
            }
        }
        let results: Vec<(OutboxRow, anyhow::Result<Outcome>)> = futures::stream::iter(ready)
            .map(|row| async {
                let outcome = attempt(config, &clients, store, &row).await;
                (row, outcome)
            })
            .buffer_unordered(config.push.concurrency)
            .collect()
            .await;
        for (row, outcome) in results {
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    return Err(e.context(format!(
                        "outbox action #{}: cannot record its outcome",
                        row.id
                    )));
                }
            };
            let end = match outcome {
                Outcome::Delivered(how, created) => AttemptEnd::Delivered {
                    outcome: how,
                    created_ticket_id: created,
                },
                Outcome::Dead(why) => AttemptEnd::Dead { error: why },
                Outcome::Retry(error, in_doubt) => {
                    let next = time::now()
                        + chrono::Duration::from_std(backoff(config, row.attempts + 1))?;
                    match time::parse(&row.deadline_at) {
                        Some(deadline) if next > deadline => AttemptEnd::Dead {
                            error: format!(
                                "gave up after {} attempts (deadline {}): {error}",
                                row.attempts + 1,
                                row.deadline_at
                            ),
                        },
                        _ => AttemptEnd::Retry {
                            next_at: time::fmt(next),
                            error,
                            in_doubt,
                        },
                    }
                }
            };
            let id = row.id;
            let end2 = end.clone();
            store
                .call(move |s| s.finish_attempt(id, &time::fmt(time::now()), &end2))
                .await?;
            match end {
                AttemptEnd::Delivered {
                    outcome,
                    created_ticket_id,
                } => {
                    // Mirror a ticket we just created, after its delivery is on record.
                    if let (Some(new_id), "sent", Some(account)) =
                        (created_ticket_id, outcome, config.account(&row.account))
                    {
                        mirror_created(account, &clients[&row.account], store, new_id).await;
                    }
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
        }
    }
    let day = time::local_day(time::now());
    for (name, client) in clients {
        let calls = client.take_calls();
        report.api_calls += calls.values().sum::<u64>();
        if !calls.is_empty() {
            let day = day.clone();
            store
                .call(move |s| s.record_calls(&name, &day, &calls))
                .await?;
        }
    }
    report.pending = store.call(|s| s.pending_count()).await?;
    Ok(report)
}

/// The delay before attempt `n` (counting from 1): exponential from `retry_initial` up to
/// `retry_max`, with jitter.
fn backoff(config: &Config, attempts: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(config.push.retry_initial)
        .with_max_delay(config.push.retry_max)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1) as usize)
        .unwrap_or(config.push.retry_max)
}

/// One attempt at one action.
async fn attempt(
    config: &Config,
    clients: &HashMap<String, Client>,
    store: &Handle,
    row: &OutboxRow,
) -> anyhow::Result<Outcome> {
    let (Some(account), Some(client)) = (config.account(&row.account), clients.get(&row.account))
    else {
        return Ok(Outcome::Dead(format!(
            "account {:?} is no longer in the config",
            row.account
        )));
    };
    if let (Some(id), false) = (row.ticket_id, matches!(row.action, Action::Create(_))) {
        let (acc, tid) = (row.account.clone(), id);
        if let Some(reason) = store.call(move |s| s.departure(&acc, tid)).await? {
            return Ok(Outcome::Dead(match reason.as_str() {
                "deleted" => format!("ticket {id} was deleted in Tampuuri"),
                _ => format!("ticket {id} was re-assigned away from us"),
            }));
        }
    }
    if row.in_doubt {
        match check_applied(account, client, store, row).await {
            Ok(Check::Applied(created)) => {
                return Ok(Outcome::Delivered("already applied", created));
            }
            Ok(Check::Impossible(why)) => return Ok(Outcome::Dead(why)),
            Ok(Check::NotApplied) => {}
            Err(e) => {
                return Ok(Outcome::Retry(
                    format!("cannot check whether the last attempt took effect: {e}"),
                    true,
                ));
            }
        }
    }
    let id = row.id;
    store
        .call(move |s| s.begin_attempt(id, &time::fmt(time::now())))
        .await?;
    let attachments = match row.action {
        Action::Create(_) => store.call(move |s| s.attachments(id)).await?,
        _ => Vec::new(),
    };
    let sent = client.push(row.ticket_id, &row.action, &attachments).await;
    Ok(match sent {
        Ok(created) => Outcome::Delivered("sent", created),
        Err(ApiError::Rejected {
            status, message, ..
        }) => Outcome::Dead(format!("Tampuuri rejected it (HTTP {status}): {message}")),
        Err(ApiError::NotFound { .. }) => Outcome::Dead(format!(
            "ticket {} does not exist in Tampuuri (deleted?)",
            row.ticket_id.unwrap_or_default()
        )),
        Err(
            e @ (ApiError::Auth { .. }
            | ApiError::Credentials { .. }
            | ApiError::RateLimited { .. }
            | ApiError::Unreachable { .. }),
        ) => Outcome::Retry(e.to_string(), false),
        Err(e) => Outcome::Retry(e.to_string(), true),
    })
}

enum Check {
    /// It took effect (a create: the ticket it made).
    Applied(Option<i64>),
    NotApplied,
    /// It can never take effect.
    Impossible(String),
}

/// Whether an in-doubt action took effect.
async fn check_applied(
    account: &AccountConfig,
    client: &Client,
    store: &Handle,
    row: &OutboxRow,
) -> Result<Check, ApiError> {
    if let Action::Create(t) = &row.action {
        // The poll may already have brought it: the mirror costs no call.
        let (name, marker) = (account.name.clone(), t.marker.clone());
        if let Ok(Some(id)) = store.call(move |s| s.find_marker(&name, &marker)).await {
            return Ok(Check::Applied(Some(id)));
        }
        let assignee = t.assignee_id.unwrap_or(account.contractor_id);
        return Ok(
            match find_marker(account, client, assignee, &t.marker).await? {
                Some(ticket) => {
                    let id = ticket.id;
                    upsert(account, store, ticket).await;
                    Check::Applied(Some(id))
                }
                None => Check::NotApplied,
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
            let applied = Some(t.state.name()) == row.expected_state.as_deref();
            upsert(account, store, t).await;
            if applied {
                Check::Applied(None)
            } else {
                Check::NotApplied
            }
        }
    })
}

/// Looks for a ticket carrying `marker` among the open tickets assigned to `assignee`: one
/// selaa sweep.
async fn find_marker(
    account: &AccountConfig,
    client: &Client,
    assignee: i64,
    marker: &str,
) -> Result<Option<Ticket>, ApiError> {
    let mut offset = 0u64;
    loop {
        let page = client
            .selaa(&wire::selaa_body(
                assignee,
                &account.states,
                offset,
                250,
                &account.extra_filter,
            ))
            .await?;
        let n = page.items.len() as u64;
        if let Some(t) = page
            .items
            .into_iter()
            .find(|t| t.extra_info.as_deref().is_some_and(|d| d.contains(marker)))
        {
            return Ok(Some(t));
        }
        offset += n;
        let more = match page.total {
            Some(total) => offset < total && n > 0,
            None => n == 250,
        };
        if !more {
            return Ok(None);
        }
    }
}

/// Fetches a ticket we just created and mirrors it, so it shows without waiting for the next
/// poll. A failure here is only logged: the next poll brings it.
async fn mirror_created(account: &AccountConfig, client: &Client, store: &Handle, id: i64) {
    match client.get_ticket(id).await {
        Ok(Some(t)) => upsert(account, store, t).await,
        Ok(None) => {
            tracing::warn!(account = %account.name, ticket = id, "The ticket we created is not found; the next poll will tell.")
        }
        Err(e) => {
            tracing::warn!(account = %account.name, ticket = id, error = %e, "Cannot fetch the ticket we created; the next poll brings it.")
        }
    }
}

async fn upsert(account: &AccountConfig, store: &Handle, t: Ticket) {
    let open = crate::sync::openness(account, &t);
    let (name, id) = (account.name.clone(), t.id);
    if let Err(e) = store
        .call(move |s| s.upsert_fetched(&name, t, open, &time::fmt(time::now())))
        .await
    {
        tracing::warn!(account = %account.name, ticket = id, error = format!("{e:#}"), "Cannot mirror a fetched ticket.");
    }
}
