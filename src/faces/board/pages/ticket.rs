//! A ticket's page (`GET /tickets/{account}/{id}`), laid out for a technician's phone: first what
//! is true now (the state Tampuuri has, an action that failed with its reason and retry and
//! cancel right there, the next visit, the resident's contact with a tap-to-call link), then
//! the actions the state Tampuuri has allows, then the visits, the details, the outgoing actions
//! and the history. It reads the store only: rendering never calls Slotti (nor Tampuuri).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::auth::Me;
use super::super::{Board, Lang, lang, render, segment};
use super::forms::queued_notice;
use super::outbox::action_view;
use super::{internal, not_found};
use crate::domain::action::Action;
use crate::domain::model::field;
use crate::domain::model::{Ticket, TicketState};
use crate::store::{HistoryEntry, OutboxRow, TicketDetail, Visit};

#[derive(Debug, Deserialize)]
pub(crate) struct TicketQuery {
    queued: Option<i64>,
}

/// `GET /tickets/{account}/{id}`.
pub(crate) async fn ticket(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    headers: HeaderMap,
    path: Result<Path<(String, i64)>, PathRejection>,
    q: Result<Query<TicketQuery>, QueryRejection>,
) -> Response {
    let lang = lang(&headers);
    let Ok(Path((account, id))) = path else {
        return not_found(lang, &me);
    };
    let queued = q.ok().and_then(|Query(q)| q.queued);
    let shown = Shown {
        queued,
        ..Shown::default()
    };
    ticket_page(&b, &me, lang, account, id, StatusCode::OK, shown).await
}

/// What a ticket page shows besides the ticket: a notice (a refusal), the action just queued
/// (its notice names a booking's slot), the free times of a dry run.
#[derive(Debug, Default)]
pub(super) struct Shown {
    pub notice: Option<Value>,
    pub queued: Option<i64>,
    pub free: Option<Vec<String>>,
}

impl Shown {
    pub fn notice(n: Value) -> Shown {
        Shown {
            notice: Some(n),
            ..Shown::default()
        }
    }
}

/// The newest of a ticket's own actions with `status` (`pending` or `dead`).
fn newest<'a>(d: &'a TicketDetail, status: &str) -> Option<&'a OutboxRow> {
    d.actions
        .iter()
        .filter(|o| o.status == status)
        .max_by_key(|o| o.id)
}

/// Renders a ticket's page with what `shown` adds, answered with `status`.
pub(super) async fn ticket_page(
    b: &Board,
    me: &Me,
    lang: Lang,
    account: String,
    id: i64,
    status: StatusCode,
    shown: Shown,
) -> Response {
    let a = account.clone();
    let read = b
        .store
        .call(move |s| {
            let (Some(d), Some(t)) = (
                s.mirror().ticket_detail(&a, id)?,
                s.mirror().stored_ticket(&a, id)?,
            ) else {
                return Ok(None);
            };
            Ok(Some((d, t, s.visits().ticket_visits(&a, id)?)))
        })
        .await;
    let (d, t, visits) = match read {
        Ok(Some(x)) => x,
        Ok(None) => return not_found(lang, me),
        Err(e) => return internal(lang, Some(me), e),
    };
    let notice = match shown.queued {
        Some(n) => Some(queued_notice(lang, &d.actions, n)),
        None => shown.notice,
    };
    let r = &d.row;
    // Only a queued action is waiting: a dead-lettered one changed nothing in Tampuuri.
    let waiting = newest(&d, "pending")
        .filter(|o| o.ticket_id == Some(id))
        .and_then(|o| o.expected_state.clone());
    let failed = newest(&d, "dead").map(|o| {
        json!({
            "id": o.id,
            "kind": lang.action_kind(&o.kind),
            "reason": o.last_error.as_deref().map(|e| lang.reason(e)),
        })
    });
    let now = json!({
        "state": lang.state(&r.state),
        "pending": waiting.as_deref().map(|s| lang.state(s)),
        "failed": failed,
        "next_visit": r.next_visit.as_ref().and_then(|v| {
            let (s, e) = (crate::domain::time::parse(&v.start)?, crate::domain::time::parse(&v.end)?);
            Some(json!({"when": lang.span(s, e), "at": v.start, "who": v.technician}))
        }),
        "address": r.address,
        "reporter": reporter_view(&r.reporter),
    });
    let forms = forms_view(b, r, waiting.as_deref(), &d.actions, &visits);
    let visits: Vec<Value> = visits.iter().map(|v| visit_view(lang, v)).collect();
    render(
        status,
        "ticket.html",
        json!({
            "t": lang.words(),
            "lang": lang.code(),
            "me": me.view(),
            "nav": "ticket",
            "ticket": json!({
                "account": r.account, "id": r.id, "title": r.title.as_deref().unwrap_or("—"),
                "base": format!("/tickets/{}/{}", segment(&r.account), r.id),
            }),
            "now": now,
            "fields": fields_view(lang, &d, &t, waiting.as_deref()),
            "raw_fields": raw_fields(&d.raw_json),
            "history": d.history.iter().map(|h| history_view(lang, h)).collect::<Vec<_>>(),
            "actions": d.actions.iter().map(|o| action_view(lang, o)).collect::<Vec<_>>(),
            "forms": forms,
            "visits": visits,
            "free": shown.free,
            "notice": notice,
        }),
    )
}

/// The resident's contact, with the digits of the phone number for a `tel:` link.
fn reporter_view(p: &crate::domain::model::Reporter) -> Option<Value> {
    if p.name.is_none() && p.phone.is_none() && p.email.is_none() {
        return None;
    }
    let tel = p.phone.as_deref().map(|p| {
        p.chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect::<String>()
    });
    Some(json!({"name": p.name, "phone": p.phone, "email": p.email, "tel": tel}))
}

/// The ticket's details, as the mirror's columns hold them.
fn fields_view(lang: Lang, d: &TicketDetail, c: &Ticket, waiting: Option<&str>) -> Vec<Value> {
    let r = &d.row;
    let mut fields: Vec<Value> = Vec::new();
    let mut add = |key: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
            fields.push(json!({"label": lang.t(key), "value": v}));
        }
    };
    let state = match waiting {
        Some(p) => format!(
            "{} → {} ({})",
            lang.state(&r.state),
            lang.state(p),
            lang.t("pending")
        ),
        None => lang.state(&r.state),
    };
    add("d_state", Some(state));
    add("d_address", r.address.clone());
    add("d_description", d.description.clone());
    add("d_extra", c.extra_info.clone());
    add("d_urgency", r.urgency.clone());
    add("d_access", c.access.clone());
    add("d_fault_class", c.fault_class.clone());
    let time = |s: &Option<String>| s.as_deref().map(|s| lang.stored_time(s));
    add("d_earliest", time(&c.earliest));
    add("d_latest", time(&c.latest));
    add("d_created", time(&c.remote_created));
    add("d_modified", time(&r.remote_modified));
    add("d_space", c.space_id.map(|v| v.to_string()));
    add("d_room", c.room_id.map(|v| v.to_string()));
    add("d_cost_centre", r.cost_centre_id.map(|v| v.to_string()));
    add("d_parent", r.parent_id.map(|v| v.to_string()));
    add("d_assignee", r.assignee_id.map(|v| v.to_string()));
    add("d_first_seen", Some(lang.stored_time(&r.first_seen)));
    add("d_last_changed", Some(lang.stored_time(&r.last_changed)));
    fields
}

/// Every top-level field of the raw JSON as text, for "All fields" (names as they arrived).
fn raw_fields(raw_json: &str) -> Vec<Value> {
    serde_json::from_str::<serde_json::Map<String, Value>>(raw_json)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            json!({"key": k, "value": v})
        })
        .collect()
}

/// A changed field's label on the page: the ticket's own fields (history names them in the
/// model's terms, [`field`]) by the label the details show; a field the mirror does not read
/// by the name Tampuuri gave it.
fn field_label(lang: Lang, name: &str) -> &str {
    let key = match name {
        field::STATE => "d_state",
        field::TITLE => "col_title",
        field::DESCRIPTION => "d_description",
        field::ADDRESS => "d_address",
        field::EXTRA_INFO => "d_extra",
        field::ASSIGNEE_ID => "d_assignee",
        field::COST_CENTRE_ID => "d_cost_centre",
        field::SPACE_ID => "d_space",
        field::ROOM_ID => "d_room",
        field::PARENT_ID => "d_parent",
        field::URGENCY => "d_urgency",
        field::ACCESS => "d_access",
        field::FAULT_CLASS => "d_fault_class",
        field::EARLIEST => "d_earliest",
        field::LATEST => "d_latest",
        field::REPORTER => "reporter",
        field::CREATED => "d_created",
        field::MODIFIED => "d_modified",
        _ => return name,
    };
    lang.t(key)
}

fn history_view(lang: Lang, h: &HistoryEntry) -> Value {
    let fields = h
        .fields
        .as_ref()
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|f| field_label(lang, f))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let states = match (&h.old_state, &h.new_state) {
        (Some(o), Some(n)) if o != n => format!("{} → {}", lang.state(o), lang.state(n)),
        (_, Some(n)) => lang.state(n),
        _ => String::new(),
    };
    json!({
        "at": lang.stored_time(&h.at),
        "datetime": h.at,
        "kind": lang.t(match h.kind.as_str() {
            "appeared" => "h_appeared",
            "left" => "h_left",
            "returned" => "h_returned",
            _ => "h_changed",
        }),
        "fields": fields,
        "states": states,
    })
}

/// The forms the ticket's state allows: the state Tampuuri has, or the one a queued action
/// will bring (never the one a dead-lettered action would have brought).
fn forms_view(
    b: &Board,
    r: &crate::store::TicketRow,
    waiting: Option<&str>,
    actions: &[OutboxRow],
    visits: &[Visit],
) -> Value {
    let current = TicketState::from_name(waiting.unwrap_or(&r.state));
    let allowed = |a: Action| r.open && a.allowed_from(&current);
    // A visit is booked for a ticket the workflow could finish (as `task book`), with no live
    // visit and no booking in the outbox; the POST checks all of it again.
    let live_visit = visits.iter().any(|v| v.status != "cancelled");
    let queued_booking = actions
        .iter()
        .any(|o| o.kind == "book" && o.status == "pending");
    let book = b.config.slotti.as_ref().map(|s| {
        let mut technicians: Vec<&str> = Vec::new();
        for t in s.rules.iter().flat_map(|r| &r.technicians) {
            if !technicians.contains(&t.as_str()) {
                technicians.push(t);
            }
        }
        json!({
            "technicians": technicians,
            // `huoltosync serve` reads no `*_file`/`*_env` secret: the key is not there.
            "no_key": b.config.unread_secrets.iter().any(|k| k.starts_with("slotti.")),
        })
    });
    let done = || Action::Done {
        comment: None,
        notify: true,
    };
    json!({
        "accept": allowed(Action::Accept { comment: None }),
        "hold": allowed(Action::Hold { reason: String::new(), notify: true }),
        "done": allowed(done()),
        "followup": r.open,
        "book": book.filter(|_| !live_visit && !queued_booking && allowed(done())),
    })
}

/// A visit with its history, as the ticket page lists it.
fn visit_view(lang: Lang, v: &Visit) -> Value {
    let span = |s: Option<&str>, e: Option<&str>| -> Option<String> {
        Some(lang.span(
            crate::domain::time::parse(s?)?,
            crate::domain::time::parse(e?)?,
        ))
    };
    let what = |w: &str| {
        lang.t(match w {
            "booked" => "v_booked",
            "moved" => "v_moved",
            _ => "v_cancelled",
        })
    };
    let history: Vec<Value> = v
        .history
        .iter()
        .map(|c| {
            json!({
                "at": lang.stored_time(&c.at),
                "datetime": c.at,
                "what": what(&c.what),
                "new": span(c.new_start.as_deref(), c.new_end.as_deref()),
                "old": span(c.old_start.as_deref(), c.old_end.as_deref()),
                "source": lang.t(match c.source.as_str() {
                    "booking" => "v_src_booking",
                    "webhook" => "v_src_webhook",
                    _ => "v_src_reconcile",
                }),
            })
        })
        .collect();
    json!({
        "id": v.id,
        "status": what(&v.status),
        "cancelled": v.status == "cancelled",
        "when": span(Some(&v.start), Some(&v.end)).unwrap_or_else(|| v.start.clone()),
        "datetime": v.start,
        "technician": v.technician,
        "service": v.service,
        "booking": v.booking_guid,
        "history": history,
    })
}
