//! The mirror's tickets: the SQL fragments every write to `tickets` and `ticket_changes` is
//! made of, and the one rule for writing a fetched ticket (new, changed, back in the open set,
//! or gone from it) with its history row. A sweep's apply ([`super::Staging::apply`]) and the
//! direct upsert of one fetched ticket ([`Mirror::upsert_fetched`]) both write through here.
//!
//! A delivered action's result is written here too ([`record_delivery`], in the transaction
//! that marks the action delivered): the new state, or a created ticket from what was sent,
//! with a history row naming the action. The row keeps the action's id in
//! `delivered_outbox_id` until Tampuuri's copy of the ticket is next written; that write then
//! confirms the result without a history row of its own ([`news`]), or records what someone
//! else changed since.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{ApplyCounts, Mirror, OutboxRow};
use crate::domain::action::{Action, NewTicket};
use crate::domain::model::{
    ChangedFields, Departure, LeftReason, Ticket, TicketState, content_hash, field,
    moves_with_state,
};

/// The columns a ticket's content fills, in [`ticket_values`] order.
pub(super) const TICKET_COLUMNS: &str = "state, title, description, extra_info, assignee_id, \
     cost_centre_id, space_id, room_id, parent_id, urgency, access, fault_class, earliest, latest, \
     reporter_name, reporter_phone, reporter_email, remote_created, remote_modified, raw_json, \
     content_hash, address";

/// How many columns [`TICKET_COLUMNS`] names.
const TICKET_COLUMN_COUNT: usize = 22;

/// One ticket of one account: `?1` the account, `?2` the ticket id.
pub(super) const THIS_TICKET: &str = "account = ?1 AND id = ?2";

/// The open set of one account (`?1`): its tickets that are ours and unfinished.
pub(super) const OPEN_SET: &str = "account = ?1 AND open = 1";

/// The columns of a history row in `ticket_changes`.
pub(super) const CHANGE_COLUMNS: &str =
    "account, ticket_id, run_id, at, kind, fields, old_state, new_state";

/// Where a write happens: the account, the sync run (none outside a sweep) and the time.
pub(super) struct At<'a> {
    pub account: &'a str,
    pub run_id: Option<i64>,
    pub now: &'a str,
    /// The delivered action (outbox id) whose result this write records; `None` for what
    /// Tampuuri sent.
    pub action: Option<i64>,
}

/// The `raw_json` of a ticket we created and hold no copy of from Tampuuri yet.
pub(super) const NO_COPY: &str = "{}";

/// What the store needs of an account to write a delivered action's result (the store reads
/// no config): who we are and the account's open states.
#[derive(Debug, Clone, Copy)]
pub struct AccountRules<'a> {
    pub contractor_id: i64,
    pub open_states: &'a [String],
}

impl AccountRules<'_> {
    fn is_open(&self, state: &str) -> bool {
        self.open_states
            .iter()
            .any(|s| s.eq_ignore_ascii_case(state))
    }
}

/// One history row.
pub(super) struct Change<'a> {
    pub id: i64,
    /// `appeared`, `changed`, `returned` or `left`.
    pub kind: &'a str,
    /// The top-level fields that changed; none for a ticket that appeared.
    pub fields: Option<&'a [String]>,
    pub old_state: Option<&'a str>,
    pub new_state: Option<&'a str>,
}

/// What the mirror holds of a ticket before a write.
struct Known {
    state: String,
    raw_json: String,
    open: bool,
    left_reason: Option<String>,
    content_hash: i64,
    /// The row shows a delivered action's result that Tampuuri has not confirmed yet.
    delivered: bool,
}

/// `TICKET_COLUMNS` with each name prefixed (`s.state, s.title, …`).
pub(super) fn prefixed(prefix: &str) -> String {
    TICKET_COLUMNS
        .split(", ")
        .map(|c| format!("{prefix}{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Placeholders for a ticket's values, numbered from `first` (`?5, ?6, …`).
pub(super) fn placeholders(first: usize) -> String {
    (first..first + TICKET_COLUMN_COUNT)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A ticket's values in `TICKET_COLUMNS` order.
pub(super) fn ticket_values(t: &Ticket) -> [&dyn rusqlite::ToSql; TICKET_COLUMN_COUNT] {
    [
        &t.state,
        &t.title,
        &t.description,
        &t.extra_info,
        &t.assignee_id,
        &t.cost_centre_id,
        &t.space_id,
        &t.room_id,
        &t.parent_id,
        &t.urgency,
        &t.access,
        &t.fault_class,
        &t.earliest,
        &t.latest,
        &t.reporter.name,
        &t.reporter.phone,
        &t.reporter.email,
        &t.remote_created,
        &t.remote_modified,
        &t.raw_json,
        &t.content_hash,
        &t.address,
    ]
}

/// `INSERT INTO tickets` of new open tickets, whose `rows` (`VALUES …` or `SELECT …`) give the
/// account, the id, the content and the time first seen, in that order.
pub(super) fn insert_sql(rows: &str) -> String {
    format!(
        "INSERT INTO tickets (account, id, {TICKET_COLUMNS}, first_seen, last_changed, open) {rows}"
    )
}

/// The `UPDATE` that writes a known ticket's new content (`values`, a row of `TICKET_COLUMNS`)
/// and puts it in the open set: `?1` the account, `?2` the id, `?3` now, `?4` whether the
/// change is real (then `last_changed` moves).
pub(super) fn reopen_sql(values: &str) -> String {
    format!(
        "UPDATE tickets SET ({TICKET_COLUMNS}) = {values},
             last_changed = CASE WHEN ?4 THEN ?3 ELSE last_changed END,
             open = 1, left_at = NULL, left_reason = NULL, delivered_outbox_id = NULL
         WHERE {THIS_TICKET}"
    )
}

/// The history kind of a known ticket's new content, or `None` when nothing a reader sees
/// changed (the raw JSON differs only in representation): a ticket back in the open set has
/// `returned`, an open one whose fields differ has `changed`.
pub(super) fn content_change(was_open: bool, fields: &[String]) -> Option<&'static str> {
    if !was_open {
        Some("returned")
    } else if !fields.is_empty() {
        Some("changed")
    } else {
        None
    }
}

/// The changed fields of a known ticket that are news to a reader. When the row shows a
/// delivered action's result (`delivered`) and Tampuuri now has that same state
/// (`same_state`), the fields every transition moves are that result confirmed, not news; and
/// a ticket we created, of which the mirror holds no copy from Tampuuri yet, is only being
/// filled in. Otherwise (someone else moved it since, or no action of ours is unconfirmed),
/// every changed field is news.
pub(super) fn news(
    delivered: bool,
    same_state: bool,
    old_raw: &str,
    mut fields: Vec<String>,
) -> Vec<String> {
    if delivered && same_state {
        if old_raw == NO_COPY {
            fields.clear();
        } else {
            fields.retain(|f| !moves_with_state(f));
        }
    }
    fields
}

/// Writes one history row (naming the delivered action when `at` has one).
pub(super) fn note(conn: &Connection, at: &At<'_>, c: &Change<'_>) -> anyhow::Result<()> {
    let fields = c.fields.map(serde_json::to_string).transpose()?;
    conn.prepare_cached(&format!(
        "INSERT INTO ticket_changes ({CHANGE_COLUMNS}, outbox_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))?
    .execute(params![
        at.account,
        c.id,
        at.run_id,
        at.now,
        c.kind,
        fields,
        c.old_state,
        c.new_state,
        at.action
    ])?;
    Ok(())
}

fn known(conn: &Connection, account: &str, id: i64) -> anyhow::Result<Option<Known>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT state, raw_json, open, left_reason, content_hash, delivered_outbox_id IS NOT NULL
             FROM tickets WHERE {THIS_TICKET}"
        ))?
        .query_row(params![account, id], |r| {
            Ok(Known {
                state: r.get(0)?,
                raw_json: r.get(1)?,
                open: r.get(2)?,
                left_reason: r.get(3)?,
                content_hash: r.get(4)?,
                delivered: r.get(5)?,
            })
        })
        .optional()?)
}

/// Writes one fetched ticket that is ours and open: inserted when new (`appeared`), updated
/// when its content changed or it was out of the open set (`changed`, `returned`); an open
/// ticket whose content hash is unchanged is not written.
pub(super) fn upsert_open(
    conn: &Connection,
    at: &At<'_>,
    t: &Ticket,
    changed: ChangedFields,
    counts: &mut ApplyCounts,
) -> anyhow::Result<()> {
    let head: [&dyn rusqlite::ToSql; 2] = [&at.account, &t.id];
    match known(conn, at.account, t.id)? {
        None => {
            conn.prepare_cached(&insert_sql(&format!(
                "VALUES (?1, ?2, {}, ?3, ?3, 1)",
                placeholders(4)
            )))?
            .execute(rusqlite::params_from_iter(
                head.into_iter()
                    .chain([&at.now as &dyn rusqlite::ToSql])
                    .chain(ticket_values(t)),
            ))?;
            note(
                conn,
                at,
                &Change {
                    id: t.id,
                    kind: "appeared",
                    fields: None,
                    old_state: None,
                    new_state: Some(t.state.name()),
                },
            )?;
            counts.new += 1;
            counts.rows_written += 1;
        }
        Some(old) if old.open && old.content_hash == t.content_hash => {}
        Some(old) => {
            let fields = news(
                old.delivered,
                old.state == t.state.name(),
                &old.raw_json,
                changed(&old.raw_json, &t.raw_json),
            );
            let kind = content_change(old.open, &fields);
            conn.prepare_cached(&reopen_sql(&format!("({})", placeholders(5))))?
                .execute(rusqlite::params_from_iter(
                    head.into_iter()
                        .chain([&at.now as &dyn rusqlite::ToSql, &kind.is_some()])
                        .chain(ticket_values(t)),
                ))?;
            counts.rows_written += 1;
            if let Some(kind) = kind {
                note(
                    conn,
                    at,
                    &Change {
                        id: t.id,
                        kind,
                        fields: Some(&fields),
                        old_state: Some(&old.state),
                        new_state: Some(t.state.name()),
                    },
                )?;
                if old.open {
                    counts.changed += 1;
                } else {
                    counts.new += 1;
                }
            }
        }
    }
    Ok(())
}

/// Writes a ticket confirmed out of the open set (a fetch by id said so). An open one leaves
/// (`left`); one that had already left gets its new content and reason (`changed`), unless
/// neither moved. A ticket the mirror never held is not written.
pub(super) fn depart(
    conn: &Connection,
    at: &At<'_>,
    d: &Departure,
    changed: ChangedFields,
    counts: &mut ApplyCounts,
) -> anyhow::Result<()> {
    match d {
        Departure::Left { ticket, reason } => leave(
            conn,
            at,
            (ticket.id, reason.as_str()),
            Some((ticket, changed)),
            counts,
        ),
        Departure::Deleted { id } => leave(conn, at, (*id, "deleted"), None, counts),
    }
}

/// [`depart`] for ticket `id`, gone for `reason`, with its new copy and the remote's format to
/// tell what changed (none when deleted).
fn leave(
    conn: &Connection,
    at: &At<'_>,
    (id, reason): (i64, &str),
    new: Option<(&Ticket, ChangedFields)>,
    counts: &mut ApplyCounts,
) -> anyhow::Result<()> {
    let ticket = new.map(|(t, _)| t);
    let Some(old) = known(conn, at.account, id)? else {
        return Ok(());
    };
    let new_content = ticket.filter(|t| t.content_hash != old.content_hash);
    if !old.open && new_content.is_none() && old.left_reason.as_deref() == Some(reason) {
        return Ok(());
    }
    // What changed is news unless it is a delivered action's result confirmed (see [`news`]):
    // a ticket we marked done left the open set when the action was delivered, and its first
    // copy from Tampuuri since then only confirms that.
    let fields = new
        .map(|(t, changed)| {
            news(
                old.delivered,
                old.state == t.state.name(),
                &old.raw_json,
                changed(&old.raw_json, &t.raw_json),
            )
        })
        .unwrap_or_default();
    let confirmed = !old.open && old.left_reason.as_deref() == Some(reason) && fields.is_empty();
    if let Some(t) = new_content {
        conn.prepare_cached(&format!(
            "UPDATE tickets SET ({TICKET_COLUMNS}) = ({}) WHERE {THIS_TICKET}",
            placeholders(3)
        ))?
        .execute(rusqlite::params_from_iter(
            [&at.account as &dyn rusqlite::ToSql, &id]
                .into_iter()
                .chain(ticket_values(t)),
        ))?;
    }
    // `left_at` is when it left the open set: kept for one that had already left.
    conn.prepare_cached(&format!(
        "UPDATE tickets SET left_at = CASE WHEN open = 1 THEN ?3 ELSE left_at END,
             open = 0, left_reason = ?4, last_changed = ?3, delivered_outbox_id = NULL
         WHERE {THIS_TICKET}"
    ))?
    .execute(params![at.account, id, at.now, reason])?;
    counts.rows_written += 1;
    if old.open {
        counts.gone += 1;
    }
    if confirmed {
        return Ok(());
    }
    let new_state = match ticket {
        Some(t) => Some(t.state.name()),
        // Deleted: gone with no state; an entry of one already gone keeps the state it had.
        None if old.open => None,
        None => Some(old.state.as_str()),
    };
    note(
        conn,
        at,
        &Change {
            id,
            kind: if old.open { "left" } else { "changed" },
            fields: Some(&fields),
            old_state: Some(&old.state),
            new_state,
        },
    )
}

/// Writes a delivered action's result into the mirror, in the caller's transaction (the one
/// that marks the outbox row delivered): a transition's new state, or the ticket a create
/// made, each with a history row naming the action (`row`, read after it was marked).
pub(super) fn record_delivery(
    conn: &Connection,
    row: &OutboxRow,
    now: &str,
    rules: &AccountRules<'_>,
) -> anyhow::Result<()> {
    let at = At {
        account: &row.account,
        run_id: None,
        now,
        action: Some(row.id),
    };
    match (&row.action, row.ticket_id, row.created_ticket_id) {
        (Action::Create(t), _, Some(id)) => record_created(conn, &at, id, t, rules),
        (Action::Accept { .. } | Action::Hold { .. } | Action::Done { .. }, Some(id), _) => {
            match row.action.target_state() {
                Some(state) => record_transition(conn, &at, id, state.name(), rules),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// A delivered transition: the ticket's new state, with a `changed` history row (`left`, when
/// the state is not one of the account's open states: it leaves the open set). Its `raw_json`
/// stays what Tampuuri last sent until the next poll. A ticket the mirror does not hold is not
/// written.
fn record_transition(
    conn: &Connection,
    at: &At<'_>,
    id: i64,
    state: &str,
    rules: &AccountRules<'_>,
) -> anyhow::Result<()> {
    let Some(old) = known(conn, at.account, id)? else {
        return Ok(());
    };
    let leaves = old.open && !rules.is_open(state);
    conn.prepare_cached(&format!(
        "UPDATE tickets SET state = ?3, last_changed = ?4, delivered_outbox_id = ?5,
             left_at = CASE WHEN ?6 THEN ?4 ELSE left_at END,
             left_reason = CASE WHEN ?6 THEN 'state' ELSE left_reason END,
             open = CASE WHEN ?6 THEN 0 ELSE open END
         WHERE {THIS_TICKET}"
    ))?
    .execute(params![at.account, id, state, at.now, at.action, leaves])?;
    note(
        conn,
        at,
        &Change {
            id,
            kind: if leaves { "left" } else { "changed" },
            fields: Some(&[field::STATE.to_owned()]),
            old_state: Some(&old.state),
            new_state: Some(state),
        },
    )
}

/// A ticket we created (`id`, the one Tampuuri answered), from what was sent, with an
/// `appeared` history row; its `raw_json` is [`NO_COPY`] until the next poll fills in the rest.
/// A ticket the mirror holds already (a poll or a check brought it), or one that is not ours
/// and open, is not written.
fn record_created(
    conn: &Connection,
    at: &At<'_>,
    id: i64,
    t: &NewTicket,
    rules: &AccountRules<'_>,
) -> anyhow::Result<()> {
    // Tampuuri opens every new ticket as Avoin.
    let state = TicketState::Avoin;
    let assignee = t.assignee_id.unwrap_or(rules.contractor_id);
    if assignee != rules.contractor_id
        || !rules.is_open(state.name())
        || known(conn, at.account, id)?.is_some()
    {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO tickets (account, id, state, title, description, extra_info, assignee_id,
             cost_centre_id, space_id, room_id, parent_id, urgency, raw_json, content_hash,
             first_seen, last_changed, open, delivered_outbox_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, 1, ?16)",
    )?
    .execute(params![
        at.account,
        id,
        state.name(),
        t.title,
        t.description,
        t.details_with_marker(),
        assignee,
        t.cost_centre_id,
        t.space_id,
        t.room_id,
        t.parent_id,
        t.urgency,
        NO_COPY,
        content_hash(NO_COPY),
        at.now,
        at.action
    ])?;
    note(
        conn,
        at,
        &Change {
            id,
            kind: "appeared",
            fields: None,
            old_state: None,
            new_state: Some(state.name()),
        },
    )
}

impl Mirror<'_> {
    /// Records one ticket fetched outside a sweep (after a create, by push's in-doubt check,
    /// or for a webhook), directly in one transaction: upserted with history when it is ours
    /// and open (`open` is `Ok`), else recorded as having left the open set for that reason.
    /// `changed` is the remote's format: which fields differ from the copy the mirror holds.
    pub fn upsert_fetched(
        &mut self,
        account: &str,
        ticket: Ticket,
        open: Result<(), LeftReason>,
        now: &str,
        changed: ChangedFields,
    ) -> anyhow::Result<ApplyCounts> {
        match open {
            Ok(()) => self.write_one(account, now, |conn, at, counts| {
                upsert_open(conn, at, &ticket, changed, counts)
            }),
            Err(reason) => {
                let left = Departure::Left {
                    ticket: Box::new(ticket),
                    reason,
                };
                self.write_one(account, now, |conn, at, counts| {
                    depart(conn, at, &left, changed, counts)
                })
            }
        }
    }

    /// Records that Tampuuri no longer has a ticket we held (a fetch answered 404).
    pub fn record_deleted(
        &mut self,
        account: &str,
        id: i64,
        now: &str,
    ) -> anyhow::Result<ApplyCounts> {
        self.write_one(account, now, |conn, at, counts| {
            leave(conn, at, (id, "deleted"), None, counts)
        })
    }

    /// Runs `write` in one IMMEDIATE transaction, outside any sync run.
    fn write_one(
        &mut self,
        account: &str,
        now: &str,
        write: impl FnOnce(&Connection, &At<'_>, &mut ApplyCounts) -> anyhow::Result<()>,
    ) -> anyhow::Result<ApplyCounts> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut counts = ApplyCounts::default();
        let at = At {
            account,
            run_id: None,
            now,
            action: None,
        };
        write(&tx, &at, &mut counts)?;
        tx.commit()?;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_list_and_the_values_agree() {
        assert_eq!(TICKET_COLUMNS.split(", ").count(), TICKET_COLUMN_COUNT);
        assert_eq!(placeholders(3).split(", ").count(), TICKET_COLUMN_COUNT);
        assert!(placeholders(3).starts_with("?3, ?4") && placeholders(3).ends_with("?24"));
        assert!(
            prefixed("s.").starts_with("s.state, s.title")
                && prefixed("s.").ends_with("s.content_hash, s.address")
        );
    }

    #[test]
    fn tampuuris_copy_of_a_delivered_result_is_news_only_where_it_differs_from_it() {
        let fields = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let raw = r#"{"Id":1,"Tila":"Avoin"}"#;
        // (delivered, same state, old raw, changed fields, what is news)
        for (delivered, same, old, changed, expected) in [
            // Our accept, confirmed: the state and Muokattu moved as it said.
            (true, true, raw, fields(&["modified", "state"]), fields(&[])),
            // Confirmed, and staff also edited the title: that is news.
            (
                true,
                true,
                raw,
                fields(&["modified", "state", "title"]),
                fields(&["title"]),
            ),
            // Someone moved it on since: all of it is news.
            (
                true,
                false,
                raw,
                fields(&["modified", "state"]),
                fields(&["modified", "state"]),
            ),
            // A ticket we created: Tampuuri's copy fills it in.
            (
                true,
                true,
                NO_COPY,
                fields(&["address", "title"]),
                fields(&[]),
            ),
            // No delivery of ours unconfirmed: every change is news.
            (
                false,
                true,
                raw,
                fields(&["modified"]),
                fields(&["modified"]),
            ),
        ] {
            let what = format!("{delivered} {same} {old} {changed:?}");
            assert_eq!(news(delivered, same, old, changed), expected, "{what}");
        }
    }

    #[test]
    fn a_known_tickets_new_content_is_history_only_when_a_reader_sees_a_change() {
        let fields = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (was_open, changed, kind) in [
            (true, fields(&["title"]), Some("changed")),
            (true, fields(&[]), None),
            (false, fields(&["state"]), Some("returned")),
            (false, fields(&[]), Some("returned")),
        ] {
            assert_eq!(
                content_change(was_open, &changed),
                kind,
                "{was_open} {changed:?}"
            );
        }
    }
}
