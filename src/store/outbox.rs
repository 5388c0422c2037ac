//! The outbox: actions queued for Tampuuri, their delivery state, and the facts about a
//! ticket that decide whether an action may be queued.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use rusqlite::Connection;

use super::Outbox;
use crate::domain::action::{Action, ActiveVisit, Attachment, Facts, MirroredTicket};
use crate::domain::model::TicketState;

/// An outbox row as the commands and the relay see it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub account: String,
    pub kind: String,
    pub ticket_id: Option<i64>,
    pub queue_ticket: Option<i64>,
    #[serde(skip)]
    pub action: Action,
    pub from_state: Option<String>,
    pub expected_state: Option<String>,
    pub status: String,
    pub in_doubt: bool,
    pub attempts: u32,
    pub created_at: String,
    pub next_attempt_at: String,
    pub deadline_at: String,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    pub outcome: Option<String>,
    pub created_ticket_id: Option<i64>,
    pub marker: Option<String>,
    pub attachments: u32,
    /// The ticket's state just before the latest send (a transition).
    pub before_state: Option<String>,
    /// The ticket's `Muokattu` just before the latest send, when known.
    pub before_modified: Option<String>,
    /// Who asked for it: the API token's name, `cli`, `demo` (`None` before migration 010).
    pub requested_by: Option<String>,
}

const ROW_COLUMNS: &str = "o.id, o.account, o.kind, o.ticket_id, o.queue_ticket, o.payload, o.from_state, \
     o.expected_state, o.status, o.in_doubt, o.attempts, o.created_at, o.next_attempt_at, o.deadline_at, \
     o.last_error, o.delivered_at, o.outcome, o.created_ticket_id, o.marker, \
     (SELECT count(*) FROM outbox_attachments a WHERE a.outbox_id = o.id), o.before_state, o.before_modified, o.requested_by";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    let payload: String = r.get(5)?;
    let action = serde_json::from_str(&payload).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(OutboxRow {
        id: r.get(0)?,
        account: r.get(1)?,
        kind: r.get(2)?,
        ticket_id: r.get(3)?,
        queue_ticket: r.get(4)?,
        action,
        from_state: r.get(6)?,
        expected_state: r.get(7)?,
        status: r.get(8)?,
        in_doubt: r.get(9)?,
        attempts: r.get(10)?,
        created_at: r.get(11)?,
        next_attempt_at: r.get(12)?,
        deadline_at: r.get(13)?,
        last_error: r.get(14)?,
        delivered_at: r.get(15)?,
        outcome: r.get(16)?,
        created_ticket_id: r.get(17)?,
        marker: r.get(18)?,
        attachments: r.get(19)?,
        before_state: r.get(20)?,
        before_modified: r.get(21)?,
        requested_by: r.get(22)?,
    })
}

/// Why `outbox retry|cancel` did nothing; the message is the CLI's wording.
#[derive(Debug, thiserror::Error)]
pub enum OutboxRefusal {
    /// No action has that id.
    #[error("{0}")]
    NotFound(String),
    /// The action is in a status the command does not apply to (or its text was erased).
    #[error("{0}")]
    Refused(String),
}

/// What a ticket looked like at one moment: its state, and its `Muokattu` as Tampuuri sent it
/// (`None` when it sent none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub state: String,
    pub modified: Option<String>,
}

/// How a relay attempt ended, for [`Outbox::finish_attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    /// It took effect: sent now, or found already applied.
    Delivered {
        outcome: &'static str,
        created_ticket_id: Option<i64>,
    },
    /// Try again at `next_at`; `in_doubt` when the send may have reached Tampuuri.
    Retry {
        next_at: String,
        error: String,
        in_doubt: bool,
    },
    /// Given up: a permanent rejection, or an explanation why it can never be delivered.
    Dead { error: String },
}

impl Outbox<'_> {
    /// Accounts whose mirror holds ticket `id`.
    pub fn accounts_holding(&self, id: i64) -> anyhow::Result<Vec<String>> {
        let mut s = self
            .0
            .conn
            .prepare_cached("SELECT account FROM tickets WHERE id = ?1 ORDER BY account")?;
        let v = s.query_map([id], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Queues an action in one IMMEDIATE transaction: the facts about `ticket` are read, `plan`
    /// decides (and may refuse) the action from them, then the row and its attachments are
    /// written. Nothing is written when `plan` fails. Who asked is not recorded: see
    /// [`Outbox::enqueue_by`].
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &mut self,
        account: &str,
        ticket: Option<i64>,
        now: &str,
        deadline: &str,
        attachments: &[Attachment],
        plan: impl FnOnce(&Facts) -> anyhow::Result<Action>,
    ) -> anyhow::Result<OutboxRow> {
        self.enqueue_by(
            account,
            ticket,
            now,
            deadline,
            attachments,
            None,
            None,
            plan,
        )
    }

    /// [`Outbox::enqueue`], recording who asked (`outbox.requested_by`), and keeping the answer
    /// of an HTTP request's Idempotency-Key in the same transaction (`kept`): a request that
    /// dies leaves either its action queued with its answer kept, or neither. When the key's
    /// claim is no longer the request's, it fails with [`super::ClaimLost`] and queues nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue_by(
        &mut self,
        account: &str,
        ticket: Option<i64>,
        now: &str,
        deadline: &str,
        attachments: &[Attachment],
        requested_by: Option<&str>,
        kept: Option<super::KeptAnswer>,
        plan: impl FnOnce(&Facts) -> anyhow::Result<Action>,
    ) -> anyhow::Result<OutboxRow> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let facts = match ticket {
            Some(id) => facts(&tx, account, id)?,
            None => Facts {
                ticket: None,
                effective_state: None,
                followups: vec![],
                queued_followups: vec![],
                active_visit: None,
                queued_booking: None,
            },
        };
        let action = plan(&facts)?;
        let from = facts.effective_state.clone();
        let id = insert_action(
            &tx,
            &NewRow {
                account,
                ticket,
                from_state: from.as_ref(),
                now,
                deadline,
                requested_by,
            },
            &action,
            attachments,
        )?;
        let row = tx.query_row(
            &format!("SELECT {ROW_COLUMNS} FROM outbox o WHERE o.id = ?1"),
            [id],
            read_row,
        )?;
        if let Some(kept) = kept {
            super::api::keep_in(&tx, kept, &row)?;
        }
        tx.commit()?;
        Ok(row)
    }

    /// Queues the actions that tell Tampuuri about a visit change (`visit_changes.seq` =
    /// `change_id`) and marks the change told by the last of them, in one IMMEDIATE
    /// transaction: the facts about `ticket` are read, `plan` decides the actions (in order;
    /// each goes from the state the one before it leads to) or why the change is not told
    /// (`Err`: the change is marked so, with that reason, and nothing is queued). A change told
    /// already (by another process) queues nothing: `TellQueued::AlreadyTold`.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue_tell(
        &mut self,
        account: &str,
        ticket: i64,
        change_id: i64,
        now: &str,
        deadline: &str,
        requested_by: Option<&str>,
        plan: impl FnOnce(&Facts) -> Result<Vec<Action>, String>,
    ) -> anyhow::Result<TellQueued> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let untold: bool = tx
            .query_row(
                "SELECT count(*) FROM visit_changes WHERE seq = ?1 AND told_outbox_id IS NULL AND not_told IS NULL",
                [change_id],
                |r| r.get(0),
            )?;
        if !untold {
            return Ok(TellQueued::AlreadyTold);
        }
        let facts = facts(&tx, account, ticket)?;
        let actions = match plan(&facts) {
            Ok(actions) if actions.is_empty() => Err("there was nothing to tell".to_owned()),
            planned => planned,
        };
        let actions = match actions {
            Ok(actions) => actions,
            Err(why) => {
                super::visits::mark_not_told(&tx, change_id, &why, now)?;
                tx.commit()?;
                return Ok(TellQueued::NotTold(why));
            }
        };
        let mut from = facts.effective_state.clone();
        let mut rows = Vec::new();
        for action in &actions {
            let id = insert_action(
                &tx,
                &NewRow {
                    account,
                    ticket: Some(ticket),
                    from_state: from.as_ref(),
                    now,
                    deadline,
                    requested_by,
                },
                action,
                &[],
            )?;
            from = action.target_state().or(from);
            rows.push(tx.query_row(
                &format!("SELECT {ROW_COLUMNS} FROM outbox o WHERE o.id = ?1"),
                [id],
                read_row,
            )?);
        }
        if let Some(last) = rows.last() {
            super::visits::mark_told(&tx, change_id, last.id, now)?;
        }
        tx.commit()?;
        Ok(TellQueued::Queued(rows))
    }

    /// The actions the relay may send now: for each queue, its oldest pending action, unless
    /// an older one in the same queue is pending or dead-lettered; oldest first.
    pub fn ready_actions(&self, now: &str, limit: u32) -> anyhow::Result<Vec<OutboxRow>> {
        let mut s = self.0.conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM outbox o
             WHERE o.status = 'pending' AND o.next_attempt_at <= ?1
               AND NOT EXISTS (SELECT 1 FROM outbox p
                               WHERE p.account = o.account AND p.queue_ticket = o.queue_ticket
                                 AND p.id < o.id AND p.status IN ('pending', 'dead'))
             ORDER BY o.id LIMIT ?2"
        ))?;
        let v = s
            .query_map(params![now, limit], read_row)?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// When the earliest action the relay may send (a queue's head, not blocked behind a
    /// dead letter) falls due, if any.
    pub fn next_due(&self) -> anyhow::Result<Option<String>> {
        Ok(self
            .0
            .conn
            .query_row(
                "SELECT min(o.next_attempt_at) FROM outbox o
                 WHERE o.status = 'pending'
                   AND NOT EXISTS (SELECT 1 FROM outbox p
                                   WHERE p.account = o.account AND p.queue_ticket = o.queue_ticket
                                     AND p.id < o.id AND p.status IN ('pending', 'dead'))",
                [],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Records that a send is about to happen, with what the ticket looked like just before
    /// it (`before`: state and `Muokattu`; `None` for a create): from here until
    /// [`Outbox::finish_attempt`], a crash leaves the action in doubt, and the next attempt
    /// checks Tampuuri first against that picture.
    pub fn begin_attempt(
        &mut self,
        id: i64,
        now: &str,
        before: Option<&Snapshot>,
    ) -> anyhow::Result<()> {
        self.0.conn.execute(
            "UPDATE outbox SET in_doubt = 1, attempts = attempts + 1, last_attempt_at = ?2,
                 before_state = ?3, before_modified = ?4
             WHERE id = ?1 AND status = 'pending'",
            params![
                id,
                now,
                before.map(|b| &b.state),
                before.and_then(|b| b.modified.as_ref())
            ],
        )?;
        Ok(())
    }

    /// What the mirror knows of ticket `id` before an action queued from `from_state` is
    /// sent, if that is known to be current: the row is open, in `from_state`, and no action
    /// of ours was sent to it since Tampuuri's copy was last written (the row then shows the
    /// action's state, but not the new `Muokattu`; a delivery before migration 017 shows
    /// neither). `None`: the caller reads the ticket instead.
    pub fn mirror_snapshot(
        &self,
        account: &str,
        id: i64,
        from_state: Option<&str>,
    ) -> anyhow::Result<Option<Snapshot>> {
        Ok(self
            .0.conn
            .query_row(
                "SELECT t.state, t.remote_modified FROM tickets t
                 WHERE t.account = ?1 AND t.id = ?2 AND t.open = 1 AND (?3 IS NULL OR t.state = ?3)
                   AND t.delivered_outbox_id IS NULL
                   AND NOT EXISTS (
                       SELECT 1 FROM outbox o
                       WHERE o.account = ?1 AND o.ticket_id = ?2 AND o.status = 'delivered' AND o.outcome = 'sent'
                         AND o.delivered_at >= coalesce((SELECT max(c.at) FROM ticket_changes c
                                                         WHERE c.account = ?1 AND c.ticket_id = ?2), ''))",
                params![account, id, from_state],
                |r| {
                    Ok(Snapshot {
                        state: r.get(0)?,
                        modified: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Records how an attempt ended. Delivered and dead actions drop their attachment bytes. A
    /// delivered action's result is written into the mirror in the same transaction, by the
    /// account's `rules` (none: the account is gone, the mirror is left as it is): the
    /// ticket's new state, or the ticket a create made, with a history row naming the action.
    pub fn finish_attempt(
        &mut self,
        id: i64,
        now: &str,
        end: &AttemptEnd,
        rules: Option<&super::AccountRules<'_>>,
    ) -> anyhow::Result<()> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        match end {
            AttemptEnd::Delivered {
                outcome,
                created_ticket_id,
            } => {
                tx.execute(
                    "UPDATE outbox SET status = 'delivered', in_doubt = 0, delivered_at = ?2, outcome = ?3,
                         created_ticket_id = ?4, last_error = NULL WHERE id = ?1",
                    params![id, now, outcome, created_ticket_id],
                )?;
                tx.execute(
                    "UPDATE outbox_attachments SET content = NULL WHERE outbox_id = ?1",
                    [id],
                )?;
                if let Some(rules) = rules {
                    let row = tx.query_row(
                        &format!("SELECT {ROW_COLUMNS} FROM outbox o WHERE o.id = ?1"),
                        [id],
                        read_row,
                    )?;
                    super::mirror::record_delivery(&tx, &row, now, rules)?;
                }
            }
            AttemptEnd::Retry {
                next_at,
                error,
                in_doubt,
            } => {
                tx.execute(
                    "UPDATE outbox SET in_doubt = ?2, next_attempt_at = ?3, last_error = ?4 WHERE id = ?1",
                    params![id, in_doubt, next_at, error],
                )?;
            }
            AttemptEnd::Dead { error } => {
                tx.execute(
                    "UPDATE outbox SET status = 'dead', in_doubt = 0, last_error = ?2 WHERE id = ?1",
                    params![id, error],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The attachments of an outbox row, with their bytes (empty once dropped).
    pub fn attachments(&self, id: i64) -> anyhow::Result<Vec<Attachment>> {
        let mut s = self.0.conn.prepare_cached(
            "SELECT file_name, content_type, description, content FROM outbox_attachments WHERE outbox_id = ?1 ORDER BY seq",
        )?;
        let v = s
            .query_map([id], |r| {
                Ok(Attachment {
                    file_name: r.get(0)?,
                    content_type: r.get(1)?,
                    description: r.get(2)?,
                    bytes: r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Why the mirror says a ticket can no longer be acted on: it was re-assigned away from us
    /// or deleted in Tampuuri.
    pub fn departure(&self, account: &str, id: i64) -> anyhow::Result<Option<String>> {
        Ok(self
            .0
            .conn
            .query_row(
                "SELECT left_reason FROM tickets WHERE account = ?1 AND id = ?2 AND open = 0
                   AND left_reason IN ('reassigned', 'deleted')",
                params![account, id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// A mirrored ticket of `account` whose `TyotehtavanLisatiedot` carries `marker`.
    pub fn find_marker(&self, account: &str, marker: &str) -> anyhow::Result<Option<i64>> {
        Ok(self
            .0.conn
            .query_row(
                "SELECT id FROM tickets WHERE account = ?1 AND instr(extra_info, ?2) > 0 ORDER BY id LIMIT 1",
                params![account, marker],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// One outbox row.
    pub fn outbox_row(&self, id: i64) -> anyhow::Result<Option<OutboxRow>> {
        Ok(self
            .0
            .conn
            .query_row(
                &format!("SELECT {ROW_COLUMNS} FROM outbox o WHERE o.id = ?1"),
                [id],
                read_row,
            )
            .optional()?)
    }

    /// Pending and dead-lettered actions (only dead ones with `failed_only`), oldest first.
    pub fn outbox_list(&self, failed_only: bool) -> anyhow::Result<Vec<OutboxRow>> {
        outbox_list(&self.0.conn, failed_only)
    }

    /// Puts a dead-lettered action back in the queue with a new deadline; the updated row.
    pub fn outbox_retry(
        &mut self,
        id: i64,
        now: &str,
        deadline: &str,
    ) -> anyhow::Result<OutboxRow> {
        let n = self.0.conn.execute(
            "UPDATE outbox SET status = 'pending', next_attempt_at = ?2, deadline_at = ?3 WHERE id = ?1 AND status = 'dead' AND erased_at IS NULL",
            params![id, now, deadline],
        )?;
        let row = self.outbox_row(id)?.ok_or_else(|| {
            OutboxRefusal::NotFound(format!("outbox action #{id} does not exist"))
        })?;
        let erased: Option<String> =
            self.0
                .conn
                .query_row("SELECT erased_at FROM outbox WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?;
        if n == 0
            && let Some(when) = erased
        {
            // Its reason, comment or description now reads "[erased]": sending that would be
            // a message to the resident that nobody wrote.
            return Err(OutboxRefusal::Refused(format!(
                "outbox action #{id} cannot be retried: the retention purge erased its text on {when} ([privacy] retention); queue the action again with its text (huoltosync task …)"
            ))
            .into());
        }
        if n == 0 {
            return Err(OutboxRefusal::Refused(format!(
                "outbox action #{id} is {}, not dead-lettered: only dead-lettered actions can be retried",
                row.status
            ))
            .into());
        }
        Ok(row)
    }

    /// Drops a pending or dead-lettered action (kept as `cancelled`, without attachment bytes);
    /// the row as it was.
    pub fn outbox_cancel(&mut self, id: i64, now: &str) -> anyhow::Result<OutboxRow> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = tx
            .query_row(
                &format!("SELECT {ROW_COLUMNS} FROM outbox o WHERE o.id = ?1"),
                [id],
                read_row,
            )
            .optional()?
            .ok_or_else(|| {
                OutboxRefusal::NotFound(format!("outbox action #{id} does not exist"))
            })?;
        if !matches!(row.status.as_str(), "pending" | "dead") {
            return Err(OutboxRefusal::Refused(format!(
                "outbox action #{id} is {}: only pending or dead-lettered actions can be cancelled",
                row.status
            ))
            .into());
        }
        tx.execute(
            "UPDATE outbox SET status = 'cancelled', in_doubt = 0, last_error = coalesce(last_error, '') || ?2 WHERE id = ?1",
            params![id, format!(" [cancelled {now}]")],
        )?;
        tx.execute(
            "UPDATE outbox_attachments SET content = NULL WHERE outbox_id = ?1",
            [id],
        )?;
        tx.commit()?;
        Ok(row)
    }

    /// Actions still pending, in all accounts.
    pub fn pending_count(&self) -> anyhow::Result<u64> {
        Ok(self.0.conn.query_row(
            "SELECT count(*) FROM outbox WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Pending and dead-lettered actions of an account.
    pub fn outbox_counts(&self, account: &str) -> anyhow::Result<(u64, u64)> {
        outbox_counts(&self.0.conn, account)
    }

    /// The latest pending target state of each ticket of an account (a dead-lettered action
    /// waits for a dispatcher, not for delivery).
    pub fn pending_states(
        &self,
        account: Option<&str>,
    ) -> anyhow::Result<Vec<(String, i64, String)>> {
        let mut s = self.0.conn.prepare_cached(
            "SELECT account, ticket_id, expected_state FROM outbox o
             WHERE status = 'pending' AND ticket_id IS NOT NULL AND (?1 IS NULL OR account = ?1)
               AND id = (SELECT max(id) FROM outbox p WHERE p.account = o.account AND p.ticket_id = o.ticket_id
                         AND p.status = 'pending')",
        )?;
        let v = s
            .query_map([account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }
}

/// What [`Outbox::enqueue_tell`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum TellQueued {
    /// The actions queued, in order; the change is told by the last.
    Queued(Vec<OutboxRow>),
    /// Nothing queued; the change is marked not told, for this reason.
    NotTold(String),
    /// The change was told (or marked) already: nothing done.
    AlreadyTold,
}

/// Where and when one outbox row is written.
struct NewRow<'a> {
    account: &'a str,
    ticket: Option<i64>,
    /// The ticket's state the action goes from.
    from_state: Option<&'a TicketState>,
    now: &'a str,
    deadline: &'a str,
    requested_by: Option<&'a str>,
}

/// Writes one outbox row and its attachments; its id. A booking leaves the state as it is,
/// so it is expected in the state it goes from.
fn insert_action(
    tx: &rusqlite::Transaction<'_>,
    r: &NewRow<'_>,
    action: &Action,
    attachments: &[Attachment],
) -> anyhow::Result<i64> {
    let (ticket_id, queue_ticket) = match action {
        Action::Create(t) => (None, t.parent_id),
        _ => (r.ticket, r.ticket),
    };
    let marker = match action {
        Action::Create(t) => Some(t.marker.clone()),
        Action::Book(b) => Some(b.marker.clone()),
        _ => None,
    };
    let from = r.from_state.filter(|_| ticket_id.is_some());
    let expected = match action {
        Action::Book(_) => from.cloned(),
        _ => action.target_state(),
    };
    tx.execute(
        "INSERT INTO outbox (account, kind, ticket_id, queue_ticket, payload, from_state, expected_state,
             status, created_at, next_attempt_at, deadline_at, marker, requested_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8, ?9, ?10, ?11)",
        params![
            r.account,
            action.kind(),
            ticket_id,
            queue_ticket,
            serde_json::to_string(action)?,
            from,
            expected,
            r.now,
            r.deadline,
            marker,
            r.requested_by
        ],
    )?;
    let id = tx.last_insert_rowid();
    let mut ins = tx.prepare_cached(
        "INSERT INTO outbox_attachments (outbox_id, seq, file_name, content_type, description, size, content)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (i, a) in attachments.iter().enumerate() {
        ins.execute(params![
            id,
            i as i64,
            a.file_name,
            a.content_type,
            a.description,
            a.bytes.len() as i64,
            a.bytes
        ])?;
    }
    Ok(id)
}

/// Reads the facts about ticket `id` of `account` inside a transaction.
fn facts(tx: &rusqlite::Transaction<'_>, account: &str, id: i64) -> anyhow::Result<Facts> {
    let ticket = tx
        .query_row(
            "SELECT state, open, left_reason, cost_centre_id, space_id, room_id FROM tickets WHERE account = ?1 AND id = ?2",
            params![account, id],
            |r| {
                Ok(MirroredTicket {
                    state: TicketState::from_name(&r.get::<_, String>(0)?),
                    open: r.get(1)?,
                    left_reason: r.get(2)?,
                    cost_centre_id: r.get(3)?,
                    space_id: r.get(4)?,
                    room_id: r.get(5)?,
                })
            },
        )
        .optional()?;
    let effective = match &ticket {
        Some(t) => Some(effective_state(tx, account, id, &t.state)?),
        None => None,
    };
    let children: Vec<(i64, String)> = {
        let mut s = tx.prepare_cached(
            "SELECT id, state FROM tickets WHERE account = ?1 AND parent_id = ?2 ORDER BY id",
        )?;
        s.query_map(params![account, id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    let mut followups = Vec::new();
    for (child, state) in children {
        let state = effective_state(tx, account, child, &TicketState::from_name(&state))?;
        followups.push((child, state));
    }
    let queued_followups = {
        let mut s = tx.prepare_cached(
            "SELECT id FROM outbox WHERE account = ?1 AND kind = 'create' AND queue_ticket = ?2
               AND (status IN ('pending', 'dead')
                    OR (status = 'delivered' AND created_ticket_id IS NOT NULL
                        AND created_ticket_id NOT IN (SELECT id FROM tickets WHERE account = ?1)))
             ORDER BY id",
        )?;
        s.query_map(params![account, id], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    let active_visit = tx
        .query_row(
            "SELECT booking_guid, start_at, end_at FROM visits
             WHERE account = ?1 AND ticket_id = ?2 AND status <> 'cancelled'",
            params![account, id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?
        .map(|(guid, start, end)| -> anyhow::Result<ActiveVisit> {
            let parse = |t: &str| {
                crate::domain::time::parse(t).ok_or_else(|| {
                    anyhow::anyhow!("visit {guid}: unreadable time {t:?} in the store")
                })
            };
            Ok(ActiveVisit {
                start: parse(&start)?,
                end: parse(&end)?,
                booking_guid: guid.clone(),
            })
        })
        .transpose()?;
    let queued_booking = tx
        .query_row(
            "SELECT id FROM outbox WHERE account = ?1 AND ticket_id = ?2 AND kind = 'book'
               AND status IN ('pending', 'dead') ORDER BY id LIMIT 1",
            params![account, id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(Facts {
        ticket,
        effective_state: effective,
        followups,
        queued_followups,
        active_visit,
        queued_booking,
    })
}

/// A ticket's state counting our own actions: the target of its latest pending or
/// dead-lettered action; else the target of an action delivered after the mirror last recorded
/// a change of the ticket (the poll that would show it has not come yet); else the mirror's.
fn effective_state(
    tx: &rusqlite::Transaction<'_>,
    account: &str,
    id: i64,
    mirrored: &TicketState,
) -> anyhow::Result<TicketState> {
    let pending: Option<String> = tx
        .query_row(
            "SELECT expected_state FROM outbox WHERE account = ?1 AND ticket_id = ?2 AND status IN ('pending', 'dead')
             ORDER BY id DESC LIMIT 1",
            params![account, id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(s) = pending {
        return Ok(TicketState::from_name(&s));
    }
    let delivered: Option<String> = tx
        .query_row(
            "SELECT o.expected_state FROM outbox o
             WHERE o.account = ?1 AND o.ticket_id = ?2 AND o.status = 'delivered'
               AND o.delivered_at > coalesce((SELECT max(c.at) FROM ticket_changes c WHERE c.account = ?1 AND c.ticket_id = ?2), '')
             ORDER BY o.id DESC LIMIT 1",
            params![account, id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(delivered
        .map(|s| TicketState::from_name(&s))
        .unwrap_or_else(|| mirrored.clone()))
}

/// [`Outbox::outbox_list`] on `conn` (a ticket's detail lists its actions too).
pub(super) fn outbox_list(conn: &Connection, failed_only: bool) -> anyhow::Result<Vec<OutboxRow>> {
    let mut s = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM outbox o
         WHERE o.status = 'dead' OR (NOT ?1 AND o.status = 'pending') ORDER BY o.id"
    ))?;
    let v = s
        .query_map([failed_only], read_row)?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

/// Pending and dead-lettered actions of `account` ([`Outbox::outbox_counts`]; the status of
/// the accounts reads them too).
pub(super) fn outbox_counts(conn: &Connection, account: &str) -> anyhow::Result<(u64, u64)> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(status = 'pending'), 0), coalesce(sum(status = 'dead'), 0) FROM outbox WHERE account = ?1",
        [account],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}
