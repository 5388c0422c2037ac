//! The read endpoints: tickets, one ticket, the outbox, status and cost.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::problem::{limit, query};
use super::*;
use crate::store::{OutboxRow, TicketPageQuery, TicketRow};

/// Which tickets to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketsParams {
    /// Only this account.
    pub account: Option<String>,
    /// Only this state (e.g. `Avoin`), case-insensitive.
    pub state: Option<String>,
    /// `true` (default): tickets in the open set; `false`: tickets that left it; `all`: both.
    pub open: Option<String>,
    /// Text in the title, description or address.
    pub q: Option<String>,
    /// Tickets a page: 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Where to continue: `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A mirrored ticket: the fields of `huoltosync tasks --json`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ticket {
    pub account: String,
    pub id: i64,
    pub state: String,
    pub title: Option<String>,
    /// In the open set (ours and unfinished).
    pub open: bool,
    pub assignee_id: Option<i64>,
    pub cost_centre_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub urgency: Option<String>,
    /// Tampuuri's `Muokattu`, as received.
    pub remote_modified: Option<String>,
    pub first_seen: String,
    pub last_changed: String,
    pub left_at: Option<String>,
    /// `state`, `reassigned` or `deleted`.
    pub left_reason: Option<String>,
    /// The state our queued actions will bring it to, when any wait (a dead-lettered action
    /// is not pending: it waits for a dispatcher, and is listed in the ticket's actions).
    pub pending_state: Option<String>,
    /// Its next technician visit booked in Slotti (booked or moved, not ended yet), if any.
    pub next_visit: Option<NextVisit>,
    /// The site's address (Tampuuri's `Kohde`), as text.
    pub address: Option<String>,
    /// What is wrong (Tampuuri's `TyotehtavanKuvaus`).
    pub description: Option<String>,
    /// Who reported it: personal data, `null` fields once its retention has ended.
    pub reporter: Reporter,
}

/// The resident who reported a ticket.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reporter {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// A ticket's next technician visit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NextVisit {
    /// When it starts (UTC, RFC 3339).
    pub start: String,
    /// When it ends (UTC, RFC 3339).
    pub end: String,
    /// The technician (Slotti resource) booked.
    pub technician: Option<String>,
    /// `booked`, or `moved` when Slotti moved it since.
    pub status: String,
}

impl From<crate::store::NextVisit> for NextVisit {
    fn from(v: crate::store::NextVisit) -> NextVisit {
        NextVisit {
            start: v.start,
            end: v.end,
            technician: v.technician,
            status: v.status,
        }
    }
}

impl From<TicketRow> for Ticket {
    fn from(r: TicketRow) -> Ticket {
        Ticket {
            account: r.account,
            id: r.id,
            state: r.state,
            title: r.title,
            open: r.open,
            assignee_id: r.assignee_id,
            cost_centre_id: r.cost_centre_id,
            parent_id: r.parent_id,
            urgency: r.urgency,
            remote_modified: r.remote_modified,
            first_seen: r.first_seen,
            last_changed: r.last_changed,
            left_at: r.left_at,
            left_reason: r.left_reason,
            pending_state: r.pending_state,
            next_visit: r.next_visit.map(NextVisit::from),
            address: r.address,
            description: r.description,
            reporter: Reporter {
                name: r.reporter.name,
                phone: r.reporter.phone,
                email: r.reporter.email,
            },
        }
    }
}

/// A page of tickets.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketPage {
    pub items: Vec<Ticket>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The opaque cursor after `(account, id)`: base64url (no padding) of the JSON `[account, id]`.
pub(super) fn cursor(account: &str, id: i64) -> String {
    let json = serde_json::to_vec(&(account, id)).expect("serializable");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

pub(super) fn parse_cursor(c: &str) -> Result<(String, i64), Problem> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c.trim())
        .ok()
        .and_then(|b| serde_json::from_slice::<(String, i64)>(&b).ok())
        .ok_or_else(|| Problem::bad_request(format!("cursor {c:?} is not a cursor this API gave")))
}

/// List mirrored tickets, a page at a time, in (account, id) order.
#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", params(TicketsParams),
    responses(
        (status = 200, description = "A page of tickets", body = TicketPage),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(super) async fn list_tickets(
    State(st): State<AppState>,
    q: Result<Query<TicketsParams>, QueryRejection>,
) -> Result<axum::Json<TicketPage>, Problem> {
    let p = query(q)?;
    let limit = limit(p.limit)?;
    if let Some(a) = &p.account
        && st.config.account(a).is_none()
    {
        return Err(Problem::bad_request(format!(
            "account {a:?} is not in the config (accounts: {})",
            st.config
                .accounts
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let open = match p.open.as_deref().map(str::trim) {
        None | Some("true") => Some(true),
        Some("false") => Some(false),
        Some("all") => None,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "open {other:?} is not one of true, false, all"
            )));
        }
    };
    let after = p.cursor.as_deref().map(parse_cursor).transpose()?;
    let query = TicketPageQuery {
        account: p.account,
        state: p.state.filter(|s| !s.trim().is_empty()),
        open,
        q: p.q.filter(|s| !s.trim().is_empty()),
        after,
        limit: limit + 1,
    };
    let mut rows = st
        .store
        .call(move |s| s.mirror().ticket_page(&query))
        .await
        .map_err(Problem::internal)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| cursor(&r.account, r.id)))
        .flatten();
    Ok(axum::Json(TicketPage {
        items: rows.into_iter().map(Ticket::from).collect(),
        next_cursor,
    }))
}

/// One change in a ticket's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub at: String,
    /// `appeared`, `changed`, `left`, `returned`.
    pub kind: String,
    /// The fields that changed, in huoltosync's terms: the ticket's own field names (`state`,
    /// `title`, `modified`, ...), or Tampuuri's name for a field the mirror does not read.
    #[schema(value_type = Option<Vec<String>>)]
    pub fields: Option<serde_json::Value>,
    pub old_state: Option<String>,
    pub new_state: Option<String>,
    /// The delivered action of ours this change is, with what was sent (`null`: a change
    /// Tampuuri showed).
    pub action: Option<super::delivered::DeliveredAction>,
}

/// An action in the outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct Action {
    pub id: i64,
    pub account: String,
    /// `accept`, `hold`, `done`, `create`.
    pub kind: String,
    pub ticket_id: Option<i64>,
    /// The ticket whose queue it waits in (for a follow-up ticket: the parent).
    pub queue_ticket: Option<i64>,
    pub from_state: Option<String>,
    pub expected_state: Option<String>,
    /// `pending`, `dead`, `delivered`, `cancelled`.
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
    pub attachments: u32,
    /// Who asked: the API token's name, `cli`, `demo`.
    pub requested_by: Option<String>,
}

impl From<OutboxRow> for Action {
    fn from(o: OutboxRow) -> Action {
        Action {
            id: o.id,
            account: o.account,
            kind: o.kind,
            ticket_id: o.ticket_id,
            queue_ticket: o.queue_ticket,
            from_state: o.from_state,
            expected_state: o.expected_state,
            status: o.status,
            in_doubt: o.in_doubt,
            attempts: o.attempts,
            created_at: o.created_at,
            next_attempt_at: o.next_attempt_at,
            deadline_at: o.deadline_at,
            last_error: o.last_error,
            delivered_at: o.delivered_at,
            outcome: o.outcome,
            created_ticket_id: o.created_ticket_id,
            attachments: o.attachments,
            requested_by: o.requested_by,
        }
    }
}

/// A ticket with its history, its waiting actions and its raw JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketDetail {
    pub ticket: Ticket,
    pub description: Option<String>,
    pub history: Vec<HistoryEntry>,
    /// Queued and dead-lettered actions on it, oldest first.
    pub pending_actions: Vec<Action>,
    /// The ticket as Tampuuri last sent it.
    #[schema(value_type = Object)]
    pub raw: serde_json::Value,
}

/// One ticket with its history, pending actions and raw JSON.
#[utoipa::path(get, path = "/api/v1/tickets/{account}/{id}", tag = "tickets",
    params(("account" = String, Path, description = "The Tampuuri account"),
           ("id" = i64, Path, description = "The ticket id")),
    responses(
        (status = 200, description = "The ticket", body = TicketDetail),
        (status = 404, description = "No such ticket in the mirror", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(super) async fn get_ticket(
    State(st): State<AppState>,
    path: Result<Path<(String, i64)>, axum::extract::rejection::PathRejection>,
) -> Result<axum::Json<TicketDetail>, Problem> {
    let Path((account, id)) =
        path.map_err(|e| Problem::bad_request(format!("bad path: {}", e.body_text())))?;
    let (a, i) = (account.clone(), id);
    let d = st
        .store
        .call(move |s| s.mirror().ticket_detail(&a, i))
        .await
        .map_err(Problem::internal)?
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                format!("ticket {id} of account {account} is not in the mirror"),
            )
        })?;
    Ok(axum::Json(TicketDetail {
        ticket: d.row.into(),
        description: d.description,
        history: d
            .history
            .into_iter()
            .map(|h| HistoryEntry {
                at: h.at,
                kind: h.kind,
                fields: h.fields,
                old_state: h.old_state,
                new_state: h.new_state,
                action: h.action.map(super::delivered::DeliveredAction::from),
            })
            .collect(),
        pending_actions: d.actions.into_iter().map(Action::from).collect(),
        raw: serde_json::from_str(&d.raw_json).unwrap_or(serde_json::Value::Null),
    }))
}

/// Which actions to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutboxParams {
    /// `pending` or `dead` (default: both, like `huoltosync outbox`).
    pub status: Option<String>,
}

/// Queued and dead-lettered actions, oldest first (what `huoltosync outbox --json` lists).
#[utoipa::path(get, path = "/api/v1/outbox", tag = "outbox", params(OutboxParams),
    responses(
        (status = 200, description = "The actions", body = Vec<Action>),
        (status = 400, description = "A bad status", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(super) async fn list_outbox(
    State(st): State<AppState>,
    q: Result<Query<OutboxParams>, QueryRejection>,
) -> Result<axum::Json<Vec<Action>>, Problem> {
    let p = query(q)?;
    let only = match p.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s @ ("pending" | "dead")) => Some(s.to_owned()),
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "status {other:?} is not one of pending, dead"
            )));
        }
    };
    let dead_only = only.as_deref() == Some("dead");
    let rows = st
        .store
        .call(move |s| s.outbox().outbox_list(dead_only))
        .await
        .map_err(Problem::internal)?;
    Ok(axum::Json(
        rows.into_iter()
            .filter(|r| only.as_deref().is_none_or(|s| r.status == s))
            .map(Action::from)
            .collect(),
    ))
}

/// Each account's last sync, open tickets, calls and problems: what `huoltosync status --json`
/// shows.
#[utoipa::path(get, path = "/api/v1/status", tag = "service",
    responses((status = 200, description = "The status, as `status --json` prints it", body = Object)),
    security(("bearer" = [])))]
pub(super) async fn status(
    State(st): State<AppState>,
) -> Result<axum::Json<serde_json::Value>, Problem> {
    let config = st.config.clone();
    st.store
        .call(move |s| {
            Ok(crate::engine::status::status(&config, s, crate::domain::time::now())?.to_json())
        })
        .await
        .map(axum::Json)
        .map_err(Problem::internal)
}

/// Which month's cost.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CostParams {
    /// `YYYY-MM` (default: this month, Helsinki time).
    pub month: Option<String>,
}

/// API calls and what they cost: what `huoltosync cost --json` shows.
#[utoipa::path(get, path = "/api/v1/cost", tag = "service", params(CostParams),
    responses(
        (status = 200, description = "The cost report, as `cost --json` prints it", body = Object),
        (status = 400, description = "A bad month", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(super) async fn cost(
    State(st): State<AppState>,
    q: Result<Query<CostParams>, QueryRejection>,
) -> Result<axum::Json<serde_json::Value>, Problem> {
    let p = query(q)?;
    let now = crate::domain::time::now();
    let month = p
        .month
        .unwrap_or_else(|| crate::domain::time::local_month(now));
    let month = crate::domain::cost::Month::parse(&month)
        .map_err(|e| Problem::bad_request(format!("month: {e:#}")))?;
    let config = st.config.clone();
    st.store
        .call(move |s| {
            let ticks = crate::service::schedule::month_ticks(
                &config.schedule.poll,
                &config.reconcile_schedule(),
                &month,
            );
            let report = crate::engine::status::cost_report(&config, s, &month, ticks, now)?;
            Ok(serde_json::to_value(report)?)
        })
        .await
        .map(axum::Json)
        .map_err(Problem::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let c = cursor("sim-1", 42);
        assert!(
            c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(parse_cursor(&c).unwrap(), ("sim-1".to_owned(), 42));
        assert_eq!(parse_cursor("bm9wZQ").unwrap_err().status, 400);
    }
}
