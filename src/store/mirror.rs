//! The mirror's tickets: the SQL fragments every write to `tickets` and `ticket_changes` is
//! made of, and the one rule for writing a fetched ticket (new, changed, back in the open set,
//! or gone from it) with its history row. A sweep's apply ([`super::Staging::apply`]) and the
//! direct upsert of one fetched ticket ([`Store::upsert_fetched`]) both write through here.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{ApplyCounts, Store};
use crate::model::{Departure, LeftReason, Ticket, changed_fields};

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
             open = 1, left_at = NULL, left_reason = NULL
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

/// Writes one history row.
pub(super) fn note(conn: &Connection, at: &At<'_>, c: &Change<'_>) -> anyhow::Result<()> {
    let fields = c.fields.map(serde_json::to_string).transpose()?;
    conn.prepare_cached(&format!(
        "INSERT INTO ticket_changes ({CHANGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        at.account,
        c.id,
        at.run_id,
        at.now,
        c.kind,
        fields,
        c.old_state,
        c.new_state
    ])?;
    Ok(())
}

fn known(conn: &Connection, account: &str, id: i64) -> anyhow::Result<Option<Known>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT state, raw_json, open, left_reason, content_hash FROM tickets WHERE {THIS_TICKET}"
        ))?
        .query_row(params![account, id], |r| {
            Ok(Known {
                state: r.get(0)?,
                raw_json: r.get(1)?,
                open: r.get(2)?,
                left_reason: r.get(3)?,
                content_hash: r.get(4)?,
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
            let fields = changed_fields(&old.raw_json, &t.raw_json);
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
    counts: &mut ApplyCounts,
) -> anyhow::Result<()> {
    let (id, reason, ticket) = match d {
        Departure::Left { ticket, reason } => (ticket.id, reason.as_str(), Some(&**ticket)),
        Departure::Deleted { id } => (*id, "deleted", None),
    };
    let Some(old) = known(conn, at.account, id)? else {
        return Ok(());
    };
    let new_content = ticket.filter(|t| t.content_hash != old.content_hash);
    if !old.open && new_content.is_none() && old.left_reason.as_deref() == Some(reason) {
        return Ok(());
    }
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
             open = 0, left_reason = ?4, last_changed = ?3
         WHERE {THIS_TICKET}"
    ))?
    .execute(params![at.account, id, at.now, reason])?;
    counts.rows_written += 1;
    if old.open {
        counts.gone += 1;
    }
    let fields = ticket
        .map(|t| changed_fields(&old.raw_json, &t.raw_json))
        .unwrap_or_default();
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

impl Store {
    /// Records one ticket fetched outside a sweep (after a create, by push's in-doubt check,
    /// or for a webhook), directly in one transaction: upserted with history when it is ours
    /// and open (`open` is `Ok`), else recorded as having left the open set for that reason.
    pub fn upsert_fetched(
        &mut self,
        account: &str,
        ticket: Ticket,
        open: Result<(), LeftReason>,
        now: &str,
    ) -> anyhow::Result<ApplyCounts> {
        match open {
            Ok(()) => self.write_one(account, now, |conn, at, counts| {
                upsert_open(conn, at, &ticket, counts)
            }),
            Err(reason) => {
                let left = Departure::Left {
                    ticket: Box::new(ticket),
                    reason,
                };
                self.write_one(account, now, |conn, at, counts| {
                    depart(conn, at, &left, counts)
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
            depart(conn, at, &Departure::Deleted { id }, counts)
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
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut counts = ApplyCounts::default();
        let at = At {
            account,
            run_id: None,
            now,
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
        assert!(placeholders(3).starts_with("?3, ?4") && placeholders(3).ends_with("?23"));
        assert!(
            prefixed("s.").starts_with("s.state, s.title")
                && prefixed("s.").ends_with("s.content_hash")
        );
    }

    #[test]
    fn a_known_tickets_new_content_is_history_only_when_a_reader_sees_a_change() {
        let fields = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (was_open, changed, kind) in [
            (true, fields(&["Otsikko"]), Some("changed")),
            (true, fields(&[]), None),
            (false, fields(&["Tila"]), Some("returned")),
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
