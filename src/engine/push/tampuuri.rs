//! The relay's Tampuuri side: one attempt at a queued action for Tampuuri (accept, hold,
//! done, create), for [`super::push_pending`].
//!
//! A transition is sent after the picture of its ticket just before the send was recorded with
//! the in-doubt mark (`before_send`: the mirror's when current, else one `GET`); an attempt
//! that starts in doubt is first checked against Tampuuri (`check_applied`: a create by its
//! marker among the assignee's tickets, a transition by [`judge`]). What a failed send proves
//! is [`ApiError`]'s [`SendFailure`]; what the retry rule makes of it is the relay's, shared.

use std::collections::HashMap;

use super::{Outcome, Proof, Relay, SendFailure, failed_send, gone, record_end};
use crate::config::{AccountConfig, Config};
use crate::domain::action::Action;
use crate::domain::model::{Ticket, TicketState};
use crate::domain::time;
use crate::engine::sync;
use crate::store::{AttemptEnd, Handle, OutboxRow, Snapshot};
use crate::tampuuri::{Api, ApiError, Client};

/// Delivers actions to Tampuuri: one client per account of the config.
pub(super) struct TampuuriRelay<'a> {
    config: &'a Config,
    clients: HashMap<String, Client>,
    store: &'a Handle,
}

impl<'a> TampuuriRelay<'a> {
    /// A client for every account of `config`, on `api`'s exchange.
    pub(super) fn new(config: &'a Config, api: &Api, store: &'a Handle) -> anyhow::Result<Self> {
        let clients = config
            .accounts
            .iter()
            .map(|a| Ok((a.name.clone(), api.client(a)?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(TampuuriRelay {
            config,
            clients,
            store,
        })
    }

    /// Records the calls of this pass in `api_calls`; answers how many.
    pub(super) async fn meter(&self) -> anyhow::Result<u64> {
        let mut calls = 0;
        for client in self.clients.values() {
            calls += client.meter().record(self.store).await?;
        }
        Ok(calls)
    }
}

impl Relay for TampuuriRelay<'_> {
    /// The ticket a create made.
    type Delivered = Option<i64>;

    async fn attempt(&self, row: &OutboxRow) -> anyhow::Result<Outcome<Option<i64>>> {
        let (config, store) = (self.config, self.store);
        let (Some(account), Some(client)) =
            (config.account(&row.account), self.clients.get(&row.account))
        else {
            return Ok(Outcome::Dead(gone(row)));
        };
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

    /// The delivery recorded with its result in the mirror (the new state, or the ticket a
    /// create made), in one commit.
    async fn record(
        &self,
        row: &OutboxRow,
        how: &'static str,
        created: Option<i64>,
    ) -> anyhow::Result<()> {
        let end = AttemptEnd::Delivered {
            outcome: how,
            created_ticket_id: created,
        };
        record_end(self.config, self.store, row, &end).await?;
        tracing::info!(account = %row.account, ticket = row.ticket_id, outbox_id = row.id, action = row.kind, outcome = how, "Action delivered.");
        Ok(())
    }
}

impl SendFailure for ApiError {
    /// A rejection (4xx other than 429) or a missing ticket is final; bad credentials, a 429
    /// or no connection surely left Tampuuri unchanged; anything else (a 5xx, a lost answer, a
    /// redirect, an unreadable 2xx) may have reached it.
    fn proof(&self, ticket: i64) -> Proof {
        match self {
            ApiError::Rejected {
                status, message, ..
            } => Proof::Refused(format!("Tampuuri rejected it (HTTP {status}): {message}")),
            ApiError::NotFound { .. } => Proof::Refused(format!(
                "ticket {ticket} does not exist in Tampuuri (deleted?)"
            )),
            ApiError::Auth { .. }
            | ApiError::Credentials { .. }
            | ApiError::RateLimited { .. }
            | ApiError::Unreachable { .. } => Proof::NotApplied,
            _ => Proof::Unknown,
        }
    }
}

/// What the answer to a send makes of the attempt: a definite answer delivers; a failure is
/// what it proves ([`failed_send`]): dead-lettered, retried as is, or left in doubt, to be
/// checked against Tampuuri before it is sent again.
fn sent_outcome(
    sent: Result<Option<i64>, ApiError>,
    ticket_id: Option<i64>,
) -> Outcome<Option<i64>> {
    match sent {
        Ok(created) => Outcome::Delivered("sent", created),
        Err(e) => failed_send(e, ticket_id.unwrap_or_default()),
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
) -> anyhow::Result<Result<Option<Snapshot>, Outcome<Option<i64>>>> {
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
) -> anyhow::Result<Result<Option<Snapshot>, Outcome<Option<i64>>>> {
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
            s.mirror().upsert_fetched(
                &name,
                t,
                open,
                &time::fmt(time::now()),
                crate::tampuuri::changed_fields,
            )
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

    fn failed(error: &str, in_doubt: bool) -> Outcome<Option<i64>> {
        Outcome::Failed {
            error: error.into(),
            in_doubt,
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
        type Sent = Result<Option<i64>, ApiError>;
        let table: Vec<(Sent, Outcome<Option<i64>>)> = vec![
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
