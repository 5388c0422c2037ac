//! The questions the HTTP API asks of the store: a page of tickets by key, one ticket with its
//! history, the change feed (`feed`, written by triggers: see `sql/007_feed.sql`; purged by
//! [`Store::purge`]) and the Idempotency-Keys of its POSTs.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Feed, Idempotency, Mirror, OutboxRow, TicketRow};

/// Which tickets a page holds, and where it starts.
#[derive(Debug, Clone, Default)]
pub struct TicketPageQuery {
    pub account: Option<String>,
    /// A state name, matched case-insensitively.
    pub state: Option<String>,
    /// `Some(true)`: in the open set; `Some(false)`: left it; `None`: both.
    pub open: Option<bool>,
    /// Text searched (case-insensitively for ASCII) in the title, description and address.
    pub q: Option<String>,
    /// The page starts after this `(account, id)`.
    pub after: Option<(String, i64)>,
    pub limit: u32,
}

/// One change of a ticket as `ticket_changes` keeps it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryEntry {
    pub at: String,
    /// `appeared`, `changed`, `left`, `returned`.
    pub kind: String,
    /// The fields that changed, in the model's terms (`model::field`; for `changed`).
    pub fields: Option<serde_json::Value>,
    pub old_state: Option<String>,
    pub new_state: Option<String>,
    /// The delivered action of ours this change is (`None`: a change Tampuuri showed).
    pub action: Option<DeliveredAction>,
}

/// A delivered action as a ticket's history shows it: what was sent, who asked, and when
/// Tampuuri took it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeliveredAction {
    /// The outbox id.
    pub id: i64,
    /// `accept`, `hold`, `done`, `create`.
    pub kind: String,
    /// The comment sent (accept, done).
    pub comment: Option<String>,
    /// The reason sent (hold).
    pub reason: Option<String>,
    /// Whether Tampuuri was asked to tell the ticket's parties (hold, done).
    pub notify: Option<bool>,
    /// The title sent (create).
    pub title: Option<String>,
    /// Who asked: the API token's name, `cli`, `demo`, `board:<user>`.
    pub requested_by: Option<String>,
    pub delivered_at: Option<String>,
}

impl DeliveredAction {
    fn read(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Option<DeliveredAction>> {
        let Some(id) = r.get::<_, Option<i64>>(first)? else {
            return Ok(None);
        };
        let payload: String = r.get(first + 2)?;
        // An action this version cannot read still names itself; only the text is missing.
        let action = serde_json::from_str::<crate::domain::action::Action>(&payload).ok();
        let (mut comment, mut reason, mut notify, mut title) = (None, None, None, None);
        match action {
            Some(crate::domain::action::Action::Accept { comment: c }) => comment = c,
            Some(crate::domain::action::Action::Hold {
                reason: r,
                notify: n,
            }) => {
                (reason, notify) = (Some(r), Some(n));
            }
            Some(crate::domain::action::Action::Done {
                comment: c,
                notify: n,
            }) => {
                (comment, notify) = (c, Some(n));
            }
            Some(crate::domain::action::Action::Create(t)) => title = Some(t.title),
            Some(crate::domain::action::Action::Book(_)) | None => {}
        }
        Ok(Some(DeliveredAction {
            id,
            kind: r.get(first + 1)?,
            comment,
            reason,
            notify,
            title,
            requested_by: r.get(first + 3)?,
            delivered_at: r.get(first + 4)?,
        }))
    }
}

/// A ticket with what the mirror knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketDetail {
    pub row: TicketRow,
    pub description: Option<String>,
    pub history: Vec<HistoryEntry>,
    /// Its queued and dead-lettered actions, oldest first.
    pub actions: Vec<OutboxRow>,
    /// The ticket as Tampuuri last sent it.
    pub raw_json: String,
}

/// One row of the change feed, as the API serves it and a subscriber receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub account: String,
    pub ticket_id: Option<i64>,
    /// A JSON object.
    pub data: String,
}

/// What the feed holds: its oldest retained `seq` (`None` when empty) and the last `seq` ever
/// given (0 when none was).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedBounds {
    pub oldest: Option<i64>,
    pub last: i64,
}

/// The columns of a [`TicketRow`], in [`ticket_row`] order (the listing of `tasks` and the API's
/// pages share it). The last is the next visit as a JSON object: the ticket's live visit
/// (booked or moved) that has not ended (the `open_tickets` view's `next_visit_start` too).
pub(super) const TICKET_SELECT: &str =
    "SELECT account, id, state, title, open, assignee_id, cost_centre_id, parent_id, urgency,
        remote_modified, first_seen, last_changed, left_at, left_reason,
        (SELECT o.expected_state FROM outbox o WHERE o.account = t.account AND o.ticket_id = t.id
           AND o.status = 'pending' ORDER BY o.id DESC LIMIT 1),
        (SELECT json_object('start', v.start_at, 'end', v.end_at, 'technician', v.technician_name,
                            'status', v.status)
           FROM visits v WHERE v.account = t.account AND v.ticket_id = t.id AND v.status <> 'cancelled'
             AND v.end_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
           ORDER BY v.start_at LIMIT 1),
        address, description, reporter_name, reporter_phone, reporter_email
     FROM tickets t";

/// How many columns [`TICKET_SELECT`] has.
pub(super) const TICKET_COLUMNS: usize = 21;

pub(super) fn ticket_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TicketRow> {
    Ok(TicketRow {
        account: r.get(0)?,
        id: r.get(1)?,
        state: r.get(2)?,
        title: r.get(3)?,
        open: r.get(4)?,
        assignee_id: r.get(5)?,
        cost_centre_id: r.get(6)?,
        parent_id: r.get(7)?,
        urgency: r.get(8)?,
        remote_modified: r.get(9)?,
        first_seen: r.get(10)?,
        last_changed: r.get(11)?,
        left_at: r.get(12)?,
        left_reason: r.get(13)?,
        pending_state: r.get(14)?,
        next_visit: r
            .get::<_, Option<String>>(15)?
            .map(|json| {
                serde_json::from_str(&json).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        15,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })
            })
            .transpose()?,
        address: r.get(16)?,
        description: r.get(17)?,
        reporter: crate::domain::model::Reporter {
            name: r.get(18)?,
            phone: r.get(19)?,
            email: r.get(20)?,
        },
    })
}

/// The SQL of a page of tickets, with the keyset condition when the page starts after a cursor.
/// The condition is left out rather than written `(?6 IS NULL OR (account, id) > (?6, ?7))`:
/// SQLite cannot seek the primary key on a disjunction, so that form scanned every ticket
/// before the cursor (fetching each row to test `open`) on every page, and a page near the end
/// of 100 000 tickets cost as much as reading them all.
fn page_sql(after_cursor: bool) -> String {
    let keyset = if after_cursor {
        "(account, id) > (?5, ?6)"
    } else {
        "?5 IS NULL AND ?6 IS NULL"
    };
    format!(
        "{TICKET_SELECT}
         WHERE (?1 IS NULL OR account = ?1) AND (?2 IS NULL OR state = ?2 COLLATE NOCASE)
           AND (?3 IS NULL OR open = ?3)
           AND (?4 IS NULL OR title LIKE ?4 ESCAPE '\\' OR description LIKE ?4 ESCAPE '\\'
                OR address LIKE ?4 ESCAPE '\\')
           AND {keyset}
         ORDER BY account, id LIMIT ?7"
    )
}

/// `text` as a LIKE pattern matching it anywhere, `\` escaping the wildcards.
pub(super) fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Mirror<'_> {
    /// Up to `limit` tickets after `q.after`, in `(account, id)` order (keyset paging on the
    /// primary key: a page after a cursor seeks to it, see `page_sql`).
    pub fn ticket_page(&self, q: &TicketPageQuery) -> anyhow::Result<Vec<TicketRow>> {
        let mut st = self.0.conn.prepare_cached(&page_sql(q.after.is_some()))?;
        let (after_account, after_id) = match &q.after {
            Some((a, i)) => (Some(a.as_str()), Some(*i)),
            None => (None, None),
        };
        let rows = st
            .query_map(
                params![
                    q.account,
                    q.state,
                    q.open,
                    q.q.as_deref().map(contains_pattern),
                    after_account,
                    after_id,
                    q.limit
                ],
                ticket_row,
            )?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// One ticket with its history, its queued and dead-lettered actions and its raw JSON.
    pub fn ticket_detail(&self, account: &str, id: i64) -> anyhow::Result<Option<TicketDetail>> {
        let Some((row, description, raw_json)) = self
            .0.conn
            .query_row(
                &format!(
                    "SELECT r.*, t2.description, t2.raw_json FROM ({TICKET_SELECT} WHERE account = ?1 AND id = ?2) r
                     JOIN tickets t2 ON t2.account = r.account AND t2.id = r.id"
                ),
                params![account, id],
                |r| {
                    Ok((
                        ticket_row(r)?,
                        r.get(TICKET_COLUMNS)?,
                        r.get(TICKET_COLUMNS + 1)?,
                    ))
                },
            )
            .optional()?
        else {
            return Ok(None);
        };
        let mut st = self.0.conn.prepare_cached(
            "SELECT c.at, c.kind, c.fields, c.old_state, c.new_state,
                    o.id, o.kind, o.payload, o.requested_by, o.delivered_at
             FROM ticket_changes c LEFT JOIN outbox o ON o.id = c.outbox_id
             WHERE c.account = ?1 AND c.ticket_id = ?2 ORDER BY c.seq",
        )?;
        let history = st
            .query_map(params![account, id], |r| {
                let fields: Option<String> = r.get(2)?;
                Ok(HistoryEntry {
                    at: r.get(0)?,
                    kind: r.get(1)?,
                    fields: fields.and_then(|f| serde_json::from_str(&f).ok()),
                    old_state: r.get(3)?,
                    new_state: r.get(4)?,
                    action: DeliveredAction::read(r, 5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let actions = super::outbox::outbox_list(&self.0.conn, false)?
            .into_iter()
            .filter(|o| {
                o.account == account && (o.ticket_id == Some(id) || o.queue_ticket == Some(id))
            })
            .collect();
        Ok(Some(TicketDetail {
            row,
            description,
            history,
            actions,
            raw_json,
        }))
    }
}

impl Feed<'_> {
    /// Up to `limit` feed events after `after`, in `seq` (commit) order.
    pub fn feed_after(&self, after: i64, limit: u32) -> anyhow::Result<Vec<FeedEvent>> {
        let mut st = self.0.conn.prepare_cached(
            "SELECT seq, at, type, account, ticket_id, data FROM feed WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let v = st
            .query_map(params![after, limit], |r| {
                Ok(FeedEvent {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    account: r.get(3)?,
                    ticket_id: r.get(4)?,
                    data: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// The feed's oldest retained `seq` and the last `seq` it ever gave.
    pub fn feed_bounds(&self) -> anyhow::Result<FeedBounds> {
        let oldest: Option<i64> = self
            .0
            .conn
            .query_row("SELECT min(seq) FROM feed", [], |r| r.get(0))?;
        let last: Option<i64> = self
            .0
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'feed'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(FeedBounds {
            oldest,
            last: last.unwrap_or(0),
        })
    }

    /// A cheap probe of whether anything changed: SQLite's `data_version` (which moves when
    /// another connection commits) and the feed's last `seq`.
    pub fn feed_head(&self) -> anyhow::Result<(i64, i64)> {
        let version: i64 = self
            .0
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let last: i64 =
            self.0
                .conn
                .query_row("SELECT coalesce(max(seq), 0) FROM feed", [], |r| r.get(0))?;
        Ok((version, last))
    }
}

impl Idempotency<'_> {
    /// Claims an Idempotency-Key for a request whose method, path and body hash to `hash`, in
    /// one IMMEDIATE transaction: the first claim wins; later ones learn the stored answer, that
    /// the key came with another request, or that the first still runs. An unanswered claim made
    /// before `stale_before` is taken over ([`Claim::TakenOver`]): its request died without an
    /// answer (a killed process leaves it so), and an answer is kept only by the claim's owner.
    pub fn idempotency_claim(
        &mut self,
        claim: &KeyClaim,
        hash: &str,
        now: &str,
        stale_before: &str,
    ) -> anyhow::Result<Claim> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: Option<(String, Option<u16>, Option<String>, String)> = tx
            .query_row(
                "SELECT request_hash, status, body, coalesce(claimed_at, created_at)
                 FROM api_idempotency WHERE token = ?1 AND key = ?2",
                rusqlite::params![claim.token, claim.key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let found = match found {
            None => {
                tx.execute(
                    "INSERT INTO api_idempotency (token, key, request_hash, created_at, owner, claimed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
                    rusqlite::params![claim.token, claim.key, hash, now, claim.owner],
                )?;
                Claim::Claimed
            }
            Some((h, _, _, _)) if h != hash => Claim::OtherRequest,
            Some((_, Some(status), body, _)) => Claim::Answered {
                status,
                body: body.unwrap_or_default(),
            },
            Some((_, None, _, since)) if since.as_str() < stale_before => {
                tx.execute(
                    "UPDATE api_idempotency SET owner = ?3, claimed_at = ?4
                     WHERE token = ?1 AND key = ?2 AND status IS NULL",
                    rusqlite::params![claim.token, claim.key, claim.owner, now],
                )?;
                Claim::TakenOver
            }
            Some((_, None, _, _)) => Claim::InProgress,
        };
        tx.commit()?;
        Ok(found)
    }

    /// Keeps the answer to the request that holds `claim`: later requests with its key get it.
    /// False when the claim is no longer this request's (answered, or taken over by a retry).
    pub fn idempotency_answer(
        &mut self,
        claim: &KeyClaim,
        status: u16,
        body: &str,
    ) -> anyhow::Result<bool> {
        Ok(keep_answer(&self.0.conn, claim, status, body)?)
    }

    /// Gives up `claim` when its request had no answer worth repeating (a server failure): the
    /// client's retry runs again. Nothing happens when the claim is no longer this request's.
    pub fn idempotency_release(&mut self, claim: &KeyClaim) -> anyhow::Result<()> {
        self.0.conn.execute(
            "DELETE FROM api_idempotency WHERE token = ?1 AND key = ?2 AND owner = ?3 AND status IS NULL",
            rusqlite::params![claim.token, claim.key, claim.owner],
        )?;
        Ok(())
    }
}

/// Stores `status` and `body` as the answer of `claim`'s key if the claim is still its owner's
/// and unanswered; whether it did.
fn keep_answer(
    conn: &rusqlite::Connection,
    claim: &KeyClaim,
    status: u16,
    body: &str,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE api_idempotency SET status = ?4, body = ?5
         WHERE token = ?1 AND key = ?2 AND owner = ?3 AND status IS NULL",
        rusqlite::params![claim.token, claim.key, claim.owner, status, body],
    )?;
    Ok(n == 1)
}

/// Keeps the answer of an Idempotency-Key in the transaction that queues its action
/// ([`Outbox::enqueue_by`](super::Outbox::enqueue_by)): the action is queued and its answer kept, or neither. Fails with
/// [`ClaimLost`] (nothing queued) when the claim is no longer this request's.
pub(super) fn keep_in(
    tx: &rusqlite::Transaction<'_>,
    kept: KeptAnswer,
    row: &OutboxRow,
) -> anyhow::Result<()> {
    let (status, body) = (kept.answer)(row)?;
    if !keep_answer(tx, &kept.claim, status, &body)? {
        return Err(ClaimLost(kept.claim.key).into());
    }
    Ok(())
}

/// An Idempotency-Key claimed by one request: the API token's name, the key, and the random id
/// of the request that holds the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    pub token: String,
    pub key: String,
    pub owner: String,
}

/// Makes the answer (HTTP status, body) to keep from the queued row.
pub type AnswerOf = Box<dyn FnOnce(&OutboxRow) -> anyhow::Result<(u16, String)> + Send>;

/// The answer of an Idempotency-Key's request, kept in the transaction that queues its action.
pub struct KeptAnswer {
    pub claim: KeyClaim,
    /// The answer (HTTP status, body) to keep, from the queued row.
    pub answer: AnswerOf,
}

impl std::fmt::Debug for KeptAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptAnswer")
            .field("claim", &self.claim)
            .finish_non_exhaustive()
    }
}

/// The request no longer holds its Idempotency-Key's claim (a retry took it over): nothing was
/// queued.
#[derive(Debug, thiserror::Error)]
#[error(
    "the Idempotency-Key {0:?} was taken over by a retry of this request: nothing was queued by this one"
)]
pub struct ClaimLost(pub String);

/// What [`Idempotency::idempotency_claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: this request runs, then stores its answer.
    Claimed,
    /// The key's first request left no answer long enough ago to be dead: this request runs
    /// instead of it.
    TakenOver,
    /// The key's first request was answered so: answer the same.
    Answered { status: u16, body: String },
    /// The key came with another method, path or body.
    OtherRequest,
    /// The key's first request has no answer yet.
    InProgress,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// The plan SQLite picks for a page after a cursor: a seek on the primary key, not a scan
    /// from the first ticket.
    #[test]
    fn a_page_after_a_cursor_seeks_the_primary_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let plan = |after: bool| -> Vec<String> {
            let mut st = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", page_sql(after)))
                .unwrap();
            let p: Option<String> = None;
            st.query_map(rusqlite::params![p, p, true, p, "sim-1", 500, 1001], |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        let with_cursor = plan(true);
        assert!(
            with_cursor
                .iter()
                .any(|d| d
                    .starts_with("SEARCH t USING INDEX sqlite_autoindex_tickets_1 ((account,id)>")),
            "{with_cursor:?}"
        );
        assert!(
            !with_cursor.iter().any(|d| d.starts_with("SCAN t")),
            "{with_cursor:?}"
        );
    }
}
