//! The board's page of open tickets: every filter and the order run in one query, so a page of
//! 100 out of 100 000 open tickets reads about a hundred rows (through the index
//! `tickets_board_order` of `sql/020_board_search_covered.sql`), and the count is the true
//! count of what matches, not of a first slice. The index also holds every column the filters
//! and the search test, so the count and a search read it alone, never a ticket's row.

use rusqlite::{OptionalExtension, params};

use super::api::{TICKET_SELECT, contains_pattern, ticket_row};
use super::mirror::{THIS_TICKET, TICKET_COLUMNS};
use super::{Board, Mirror, TicketRow};
use crate::domain::model::{Reporter, Ticket, TicketState};

/// How many columns the API's ticket select has (the board's own follow them).
const ROW_COLUMNS: usize = super::api::TICKET_COLUMNS;

/// The board's order: urgent first, then by the latest completion time when there is one
/// (earliest first), then the oldest reported first (the first sight when Tampuuri gave no
/// `Luotu`), then by key. The same expressions as the index `tickets_board_order`, so that
/// SQLite walks the index instead of sorting.
const BOARD_ORDER: &str = "(urgency = 'Kiireellinen') DESC, (latest IS NULL), julianday(latest), \
     julianday(coalesce(remote_created, first_seen)), account, id";

/// [`BOARD_ORDER`] over the table `t` of a join.
const BOARD_ORDER_T: &str = "(t.urgency = 'Kiireellinen') DESC, (t.latest IS NULL), \
     julianday(t.latest), julianday(coalesce(t.remote_created, t.first_seen)), t.account, t.id";

/// The most urgencies the board's filter offers (Tampuuri has a handful).
const MAX_URGENCIES: usize = 50;

/// The urgency that goes first and is marked.
pub const URGENT: &str = "Kiireellinen";

/// Which open tickets a board page holds.
#[derive(Debug, Clone, Default)]
pub struct BoardQuery {
    pub account: Option<String>,
    /// A state name, matched case-insensitively.
    pub state: Option<String>,
    /// An urgency, matched case-insensitively and without surrounding blanks.
    pub urgency: Option<String>,
    /// Only tickets reported before this time (RFC 3339): "older than N days".
    pub reported_before: Option<String>,
    /// Text searched (case-insensitively for ASCII) in the title, description and address.
    pub q: Option<String>,
    /// Rows skipped (the pages before this one).
    pub offset: u64,
    pub limit: u32,
}

/// A dead-lettered action of a ticket: what it was, and why it failed (the relay's words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAction {
    pub id: i64,
    /// `accept`, `hold`, `done`, `create`, `book`.
    pub kind: String,
    pub error: Option<String>,
}

/// One row of the board: the ticket as the API lists it, with what the board adds.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardRow {
    pub ticket: TicketRow,
    /// `SuoritusaikaViimeistaan`, as received.
    pub latest: Option<String>,
    /// When it was reported (`Luotu`, as received), else when the mirror first saw it.
    pub reported: String,
    /// The state a *queued* action will bring it to (a dead-lettered one is not waiting).
    pub waiting: Option<String>,
    /// Its newest dead-lettered action, if one is left (not retried or cancelled).
    pub failed: Option<FailedAction>,
}

/// A page of the board and how many open tickets match its filters in all.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardPage {
    pub total: u64,
    pub rows: Vec<BoardRow>,
}

/// The filters, shared by the count and the page: `?1` account, `?2` state, `?3` urgency,
/// `?4` reported before, `?5` the search pattern, `?6` one ticket's id (the live board's row).
const BOARD_FILTER: &str = "open = 1 AND (?1 IS NULL OR account = ?1)
       AND (?2 IS NULL OR state = ?2 COLLATE NOCASE)
       AND (?3 IS NULL OR trim(urgency) = ?3 COLLATE NOCASE)
       AND (?4 IS NULL OR julianday(coalesce(remote_created, first_seen)) < julianday(?4))
       AND (?5 IS NULL OR title LIKE ?5 ESCAPE '\\' OR description LIKE ?5 ESCAPE '\\'
            OR address LIKE ?5 ESCAPE '\\')
       AND (?6 IS NULL OR id = ?6)";

/// A dead-lettered action of ticket `t` (its own, or a follow-up queued from it), newest first.
const FAILED: &str = "SELECT json_object('id', o.id, 'kind', o.kind, 'error', o.last_error)
       FROM outbox o WHERE o.account = t.account AND (o.ticket_id = t.id OR o.queue_ticket = t.id)
         AND o.status = 'dead' ORDER BY o.id DESC LIMIT 1";

fn count_sql() -> String {
    format!("SELECT count(*) FROM tickets WHERE {BOARD_FILTER}")
}

fn page_sql() -> String {
    format!(
        "WITH page AS (SELECT account, id FROM tickets WHERE {BOARD_FILTER}
                       ORDER BY {BOARD_ORDER} LIMIT ?7 OFFSET ?8)
         SELECT r.*, t.latest, coalesce(t.remote_created, t.first_seen),
           (SELECT o.expected_state FROM outbox o WHERE o.account = t.account AND o.ticket_id = t.id
              AND o.status = 'pending' ORDER BY o.id DESC LIMIT 1),
           ({FAILED})
         FROM ({TICKET_SELECT} WHERE (account, id) IN (SELECT account, id FROM page)) r
         JOIN tickets t ON t.account = r.account AND t.id = r.id
         ORDER BY {BOARD_ORDER_T}"
    )
}

fn board_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BoardRow> {
    let failed: Option<String> = r.get(ROW_COLUMNS + 3)?;
    Ok(BoardRow {
        ticket: ticket_row(r)?,
        latest: r.get(ROW_COLUMNS)?,
        reported: r.get(ROW_COLUMNS + 1)?,
        waiting: r.get(ROW_COLUMNS + 2)?,
        failed: failed
            .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
            .map(|v| FailedAction {
                id: v["id"].as_i64().unwrap_or_default(),
                kind: v["kind"].as_str().unwrap_or_default().to_owned(),
                error: v["error"].as_str().map(str::to_owned),
            }),
    })
}

impl Board<'_> {
    /// A page of the board (see [`BoardQuery`]) and the count of every open ticket that matches.
    pub fn board_page(&self, q: &BoardQuery) -> anyhow::Result<BoardPage> {
        let pattern = q.q.as_deref().map(contains_pattern);
        let total: u64 = self.0.conn.prepare_cached(&count_sql())?.query_row(
            params![
                q.account,
                q.state,
                q.urgency,
                q.reported_before,
                pattern,
                Option::<i64>::None
            ],
            |r| r.get(0),
        )?;
        Ok(BoardPage {
            total,
            rows: self.board_rows(q, None)?,
        })
    }

    /// Ticket `id` as a row of the board, when it is open and `q`'s filters keep it (its page
    /// and limit aside).
    pub fn board_row(&self, q: &BoardQuery, id: i64) -> anyhow::Result<Option<BoardRow>> {
        let one = BoardQuery {
            offset: 0,
            limit: 1,
            ..q.clone()
        };
        Ok(self.board_rows(&one, Some(id))?.pop())
    }

    fn board_rows(&self, q: &BoardQuery, id: Option<i64>) -> anyhow::Result<Vec<BoardRow>> {
        let rows = self
            .0
            .conn
            .prepare_cached(&page_sql())?
            .query_map(
                params![
                    q.account,
                    q.state,
                    q.urgency,
                    q.reported_before,
                    q.q.as_deref().map(contains_pattern),
                    id,
                    q.limit,
                    i64::try_from(q.offset).unwrap_or(i64::MAX)
                ],
                board_row,
            )?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The urgencies of the open tickets (for the board's filter; at most 50),
    /// trimmed and sorted. One seek of the index `tickets_open_urgency` per value: a scan
    /// took seconds at 100 000 open tickets.
    pub fn open_urgencies(&self) -> anyhow::Result<Vec<String>> {
        let mut st = self
            .0
            .conn
            .prepare_cached("SELECT min(urgency) FROM tickets WHERE open = 1 AND urgency > ?1")?;
        let mut found: Vec<String> = Vec::new();
        let mut after = String::new();
        while found.len() < MAX_URGENCIES {
            let Some(next) = st.query_row([&after], |r| r.get::<_, Option<String>>(0))? else {
                break;
            };
            found.push(next.trim().to_owned());
            after = next;
        }
        found.retain(|u| !u.is_empty());
        found.sort();
        found.dedup();
        Ok(found)
    }
}

impl Mirror<'_> {
    /// Ticket `id` of `account` as the mirror's columns hold it (the fields the Tampuuri module
    /// parsed), with its raw JSON.
    pub fn stored_ticket(&self, account: &str, id: i64) -> anyhow::Result<Option<Ticket>> {
        Ok(self
            .0
            .conn
            .prepare_cached(&format!(
                "SELECT id, {TICKET_COLUMNS} FROM tickets WHERE {THIS_TICKET}"
            ))?
            .query_row(params![account, id], |r| {
                Ok(Ticket {
                    id: r.get(0)?,
                    state: TicketState::from_name(&r.get::<_, String>(1)?),
                    title: r.get(2)?,
                    description: r.get(3)?,
                    extra_info: r.get(4)?,
                    assignee_id: r.get(5)?,
                    cost_centre_id: r.get(6)?,
                    space_id: r.get(7)?,
                    room_id: r.get(8)?,
                    parent_id: r.get(9)?,
                    urgency: r.get(10)?,
                    access: r.get(11)?,
                    fault_class: r.get(12)?,
                    earliest: r.get(13)?,
                    latest: r.get(14)?,
                    reporter: Reporter {
                        name: r.get(15)?,
                        phone: r.get(16)?,
                        email: r.get(17)?,
                    },
                    remote_created: r.get(18)?,
                    remote_modified: r.get(19)?,
                    raw_json: r.get(20)?,
                    content_hash: r.get(21)?,
                    address: r.get(22)?,
                })
            })
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// The plans SQLite picks for the board's count and page, with every filter and a search
    /// set, and with none: the covering index `tickets_board_order` alone, never a ticket's
    /// row (the search's `LIKE` reads the index's title, description and address).
    #[test]
    fn the_count_and_the_page_read_the_covering_board_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let plan = |sql: &str, search: bool, page: bool| -> Vec<String> {
            let mut st = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let none: Option<String> = None;
            let pattern = search.then_some("%Koivutie%");
            let mut args: Vec<&dyn rusqlite::ToSql> = vec![
                &"sim-1",
                &"Avoin",
                &"Kiireellinen",
                &"2026-01-01T00:00:00Z",
                &pattern,
                &none,
            ];
            if page {
                args.extend([&100 as &dyn rusqlite::ToSql, &4000]);
            }
            let mut rows = Vec::new();
            let mut q = st.query(args.as_slice()).unwrap();
            while let Some(r) = q.next().unwrap() {
                rows.push(r.get::<_, String>(3).unwrap());
            }
            rows
        };
        let want = "SEARCH tickets USING COVERING INDEX tickets_board_order (open=?)";
        for search in [true, false] {
            let count = plan(&count_sql(), search, false);
            let page = plan(&page_sql(), search, true);
            for p in [&count, &page] {
                assert!(p.iter().any(|d| d == want), "search {search}: {p:?}");
                assert!(!p.iter().any(|d| d.starts_with("SCAN tickets")), "{p:?}");
            }
        }
    }
}
