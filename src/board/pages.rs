//! The board's pages and forms: the board of open tickets (`/`, and one row at a time for the
//! live board), a ticket with its history and action forms, the outbox with retry and cancel,
//! and the status. Reads use the store's API reads; every action goes through
//! [`crate::queue`] with `requested_by = "board:<user>"`, and a refusal shows the queue's own
//! message (the CLI's wording).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Me;
use super::{Board, Lang, lang, message, render, segment};
use crate::action::{Action, CreateRequest};
use crate::model::TicketState;
use crate::queue::{self, AttachmentSource, QueueError, QueueRequest, Task};
use crate::store::{OutboxRefusal, OutboxRow, TicketPageQuery, TicketRow};

/// The most rows the board shows at once (the rest: narrow the filters).
pub const MAX_ROWS: u32 = 5000;

/// The board's filters (a GET form): each optional.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Filters {
    account: Option<String>,
    state: Option<String>,
    urgency: Option<String>,
    /// Only tickets mirrored more than this many days.
    age: Option<String>,
    q: Option<String>,
}

impl Filters {
    fn from(q: Result<Query<Filters>, QueryRejection>) -> Filters {
        let f = q.map(|Query(f)| f).unwrap_or_default();
        let keep = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        Filters {
            account: keep(f.account),
            state: keep(f.state),
            urgency: keep(f.urgency),
            age: keep(f.age),
            q: keep(f.q),
        }
    }

    /// The store's query for these filters: the API's ticket query over the open set.
    fn query(&self, after: Option<(String, i64)>, limit: u32) -> TicketPageQuery {
        TicketPageQuery {
            account: self.account.clone(),
            state: self.state.clone(),
            open: Some(true),
            q: self.q.clone(),
            address_field: crate::tampuuri::ADDRESS_FIELDS[0],
            after,
            limit,
        }
    }

    /// The filters the store's query has no column for: urgency and age.
    fn keeps(&self, r: &TicketRow, now: DateTime<Utc>) -> bool {
        let urgency = self.urgency.as_deref().is_none_or(|u| {
            r.urgency
                .as_deref()
                .is_some_and(|x| x.trim().eq_ignore_ascii_case(u))
        });
        let age = match self.age.as_deref().and_then(|a| a.parse::<i64>().ok()) {
            None => true,
            Some(days) => crate::time::parse(&r.first_seen)
                .is_some_and(|t| now - t > chrono::Duration::days(days)),
        };
        urgency && age
    }

    fn view(&self) -> Value {
        json!({
            "account": self.account, "state": self.state, "urgency": self.urgency,
            "age": self.age, "q": self.q,
        })
    }
}

/// One row of the board. Links (`href`, a ticket's `base`) are built here from a
/// percent-encoded account ([`segment`]) and an integer id, so they hold no character HTML
/// needs escaped: the templates write them `|safe` (the escaper would write `/` as `&#x2f;`).
fn row_view(lang: Lang, r: &TicketRow, address: Option<&str>, now: DateTime<Utc>) -> Value {
    let age = crate::time::parse(&r.first_seen).map(|t| lang.age(now - t));
    json!({
        "account": r.account,
        "id": r.id,
        "href": format!("/tickets/{}/{}", segment(&r.account), r.id),
        "dom_id": format!("t-{}-{}", r.account, r.id),
        "title": r.title.as_deref().unwrap_or("—"),
        "address": address.unwrap_or("—"),
        "state": lang.state(&r.state),
        "pending": r.pending_state.as_deref().map(|s| lang.state(s)),
        "age": age.unwrap_or_default(),
        "urgency": r.urgency.as_deref().unwrap_or("—"),
        "next_visit": r.next_visit.as_ref().and_then(|v| crate::time::parse(&v.start)).map(|t| lang.time(t)),
        "next_visit_at": r.next_visit.as_ref().map(|v| v.start.clone()),
        "next_visit_who": r.next_visit.as_ref().and_then(|v| v.technician.clone()),
    })
}

fn internal(lang: Lang, me: Option<&Me>, e: anyhow::Error) -> Response {
    tracing::error!(error = format!("{e:#}"), "A board page failed.");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        lang,
        me,
        lang.t("err_internal"),
    )
}

fn not_found(lang: Lang, me: &Me) -> Response {
    message(
        StatusCode::NOT_FOUND,
        lang,
        Some(me),
        lang.t("err_not_found"),
    )
}

/// `GET /`: the open tickets of every account, filtered.
pub(crate) async fn board(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    headers: HeaderMap,
    q: Result<Query<Filters>, QueryRejection>,
) -> Response {
    let lang = lang(&headers);
    let f = Filters::from(q);
    let query = f.query(None, MAX_ROWS + 1);
    let read = b
        .store
        .call(move |s| {
            // The feed's head first: the live board asks for events after it, so none is missed.
            let seq = s.feed_bounds()?.last;
            let rows = s.ticket_page(&query)?;
            let addresses: HashMap<(String, i64), String> = s
                .open_ticket_addresses(crate::tampuuri::ADDRESS_FIELDS[0])?
                .into_iter()
                .collect();
            Ok((seq, rows, addresses))
        })
        .await;
    let (seq, mut rows, addresses) = match read {
        Ok(x) => x,
        Err(e) => return internal(lang, Some(&me), e),
    };
    let truncated = rows.len() > MAX_ROWS as usize;
    rows.truncate(MAX_ROWS as usize);
    let now = crate::time::now();
    let mut urgencies: Vec<String> = rows.iter().filter_map(|r| r.urgency.clone()).collect();
    urgencies.sort();
    urgencies.dedup();
    let mut states: Vec<String> = Vec::new();
    for a in &b.config.accounts {
        for s in &a.states {
            if !states.contains(s) {
                states.push(s.clone());
            }
        }
    }
    let shown: Vec<Value> = rows
        .iter()
        .filter(|r| f.keeps(r, now))
        .map(|r| {
            let addr = addresses
                .get(&(r.account.clone(), r.id))
                .map(String::as_str);
            row_view(lang, r, addr, now)
        })
        .collect();
    let states: Vec<Value> = states
        .iter()
        .map(|s| json!({"value": s, "label": lang.state(s)}))
        .collect();
    render(
        StatusCode::OK,
        "board.html",
        serde_json::json!({
            "t": lang.words(),
            "lang": lang.code(),
            "me": me.view(),
            "nav": "board",
            "rows": shown,
            "count": shown.len(),
            "truncated": truncated,
            "filters": f.view(),
            "accounts": b.config.accounts.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
            "states": states,
            "urgencies": urgencies,
            "seq": seq,
        }),
    )
}

/// `GET /fragments/row/{account}/{id}` (with the board's filters): the ticket's row, for the live
/// board to insert or replace; 204 when the ticket is not open or the filters leave it out.
pub(crate) async fn row_fragment(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    headers: HeaderMap,
    path: Result<Path<(String, i64)>, axum::extract::rejection::PathRejection>,
    q: Result<Query<Filters>, QueryRejection>,
) -> Response {
    let lang = lang(&headers);
    let Ok(Path((account, id))) = path else {
        return not_found(lang, &me);
    };
    let mut f = Filters::from(q);
    if f.account.as_deref().is_some_and(|a| a != account) {
        return StatusCode::NO_CONTENT.into_response();
    }
    f.account = Some(account.clone());
    // The API's query, starting just before the ticket: the first row is it when it matches.
    let query = f.query(Some((account.clone(), id - 1)), 1);
    let read = b
        .store
        .call(move |s| {
            let row = s.ticket_page(&query)?.into_iter().find(|r| r.id == id);
            let raw = match &row {
                Some(_) => s.ticket_detail(&account, id)?.map(|d| d.raw_json),
                None => None,
            };
            Ok((row, raw))
        })
        .await;
    let (row, raw) = match read {
        Ok(x) => x,
        Err(e) => return internal(lang, Some(&me), e),
    };
    let now = crate::time::now();
    let Some(row) = row.filter(|r| f.keeps(r, now)) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let address = raw.as_deref().and_then(address_of);
    render(
        StatusCode::OK,
        "row.html",
        serde_json::json!({
            "t": lang.words(),
            "row": row_view(lang, &row, address.as_deref(), now),
        }),
    )
}

/// The address in a ticket's raw JSON (the field the API's search reads).
fn address_of(raw: &str) -> Option<String> {
    let v: Value = serde_json::from_str(raw).ok()?;
    v.get(crate::tampuuri::ADDRESS_FIELDS[0])?
        .as_str()
        .map(str::to_owned)
}

/// A notice on a page: done, or refused with the queue's message.
fn notice(ok: bool, text: String) -> Value {
    json!({"ok": ok, "text": text})
}

#[derive(Debug, Deserialize)]
pub(crate) struct TicketQuery {
    queued: Option<i64>,
}

/// `GET /tickets/{account}/{id}`.
pub(crate) async fn ticket(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    headers: HeaderMap,
    path: Result<Path<(String, i64)>, axum::extract::rejection::PathRejection>,
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
struct Shown {
    notice: Option<Value>,
    queued: Option<i64>,
    free: Option<Vec<String>>,
}

impl Shown {
    fn notice(n: Value) -> Shown {
        Shown {
            notice: Some(n),
            ..Shown::default()
        }
    }
}

/// Renders a ticket's page with what `shown` adds, answered with `status`. It reads the store
/// only: rendering never calls Slotti (nor Tampuuri).
async fn ticket_page(
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
            let Some(d) = s.ticket_detail(&a, id)? else {
                return Ok(None);
            };
            Ok(Some((d, s.ticket_visits(&a, id)?)))
        })
        .await;
    let (d, visits) = match read {
        Ok(Some(x)) => x,
        Ok(None) => return not_found(lang, me),
        Err(e) => return internal(lang, Some(me), e),
    };
    let notice = match shown.queued {
        Some(n) => Some(queued_notice(lang, &d.actions, n)),
        None => shown.notice,
    };
    let r = &d.row;
    let parsed = crate::tampuuri::parse_stored_ticket(&d.raw_json).ok();
    let mut fields: Vec<Value> = Vec::new();
    let mut add = |key: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
            fields.push(json!({"label": lang.t(key), "value": v}));
        }
    };
    add(
        "d_state",
        Some(match &r.pending_state {
            Some(p) => format!(
                "{} → {} ({})",
                lang.state(&r.state),
                lang.state(p),
                lang.t("pending")
            ),
            None => lang.state(&r.state),
        }),
    );
    add("d_address", address_of(&d.raw_json));
    add("d_description", d.description.clone());
    if let Some(t) = &parsed {
        add("d_extra", t.extra_info.clone());
        add("d_urgency", t.urgency.clone());
        add("d_access", t.access.clone());
        add("d_fault_class", t.fault_class.clone());
        add(
            "d_earliest",
            t.earliest.as_deref().map(|s| lang.stored_time(s)),
        );
        add("d_latest", t.latest.as_deref().map(|s| lang.stored_time(s)));
        add(
            "d_created",
            t.remote_created.as_deref().map(|s| lang.stored_time(s)),
        );
        add(
            "d_modified",
            t.remote_modified.as_deref().map(|s| lang.stored_time(s)),
        );
        add("d_space", t.space_id.map(|v| v.to_string()));
        add("d_room", t.room_id.map(|v| v.to_string()));
    }
    add("d_cost_centre", r.cost_centre_id.map(|v| v.to_string()));
    add("d_parent", r.parent_id.map(|v| v.to_string()));
    add("d_assignee", r.assignee_id.map(|v| v.to_string()));
    add("d_first_seen", Some(lang.stored_time(&r.first_seen)));
    add("d_last_changed", Some(lang.stored_time(&r.last_changed)));
    let reporter = parsed.as_ref().map(|t| {
        json!({
            "name": t.reporter.name, "phone": t.reporter.phone, "email": t.reporter.email,
            "tel": t.reporter.phone.as_deref().map(|p| p.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect::<String>()),
        })
    });
    let raw_fields: Vec<Value> =
        serde_json::from_str::<serde_json::Map<String, Value>>(&d.raw_json)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                json!({"key": k, "value": v})
            })
            .collect();
    let history: Vec<Value> = d
        .history
        .iter()
        .map(|h| {
            let fields = h
                .fields
                .as_ref()
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
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
        })
        .collect();
    let actions: Vec<Value> = d.actions.iter().map(|o| action_view(lang, o)).collect();
    let current = TicketState::from_name(r.pending_state.as_deref().unwrap_or(&r.state));
    let allowed = |a: Action| r.open && a.allowed_from(&current);
    // A visit is booked for a ticket the workflow could finish (as `task book`), with no live
    // visit and no booking in the outbox; the POST checks all of it again.
    let live_visit = visits.iter().any(|v| v.status != "cancelled");
    let queued_booking = d.actions.iter().any(|o| o.kind == "book");
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
    let forms = json!({
        "accept": allowed(Action::Accept { comment: None }),
        "hold": allowed(Action::Hold { reason: String::new(), notify: true }),
        "done": allowed(Action::Done { comment: None, notify: true }),
        "followup": r.open,
        "book": book.filter(|_| !live_visit && !queued_booking && allowed(Action::Done { comment: None, notify: true })),
    });
    let visits: Vec<Value> = visits.iter().map(|v| visit_view(lang, v)).collect();
    render(
        status,
        "ticket.html",
        serde_json::json!({
            "t": lang.words(),
            "lang": lang.code(),
            "me": me.view(),
            "nav": "ticket",
            "ticket": json!({
                "account": r.account, "id": r.id, "title": r.title.as_deref().unwrap_or("—"),
                "base": format!("/tickets/{}/{}", segment(&r.account), r.id),
            }),
            "fields": fields,
            "reporter": reporter,
            "raw_fields": raw_fields,
            "history": history,
            "actions": actions,
            "forms": forms,
            "visits": visits,
            "free": shown.free,
            "notice": notice,
        }),
    )
}

/// The notice after outbox row `n` was queued: a booking names its slot.
fn queued_notice(lang: Lang, actions: &[OutboxRow], n: i64) -> Value {
    let booked = actions
        .iter()
        .find(|o| o.id == n)
        .and_then(|o| match &o.action {
            Action::Book(b) => b.slot.as_ref().map(|s| slot_text(lang, b, s)),
            _ => None,
        });
    match booked {
        Some(slot) => notice(true, format!("{} {slot} (#{n})", lang.t("booking_queued"))),
        None => notice(true, format!("{} #{n}", lang.t("queued"))),
    }
}

/// `ti 1.12. klo 9.00–9.30, Asentaja 1`: a slot of a booking.
fn slot_text(lang: Lang, b: &crate::action::VisitBooking, s: &crate::action::BookedSlot) -> String {
    match b.technician_name(&s.resource_guid) {
        Some(who) => format!("{}, {who}", lang.span(s.start, s.end)),
        None => lang.span(s.start, s.end),
    }
}

/// A visit with its history, as the ticket page lists it.
fn visit_view(lang: Lang, v: &crate::store::Visit) -> Value {
    let span = |s: Option<&str>, e: Option<&str>| -> Option<String> {
        Some(lang.span(crate::time::parse(s?)?, crate::time::parse(e?)?))
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

/// An outbox row as the ticket and outbox pages list it.
fn action_view(lang: Lang, o: &OutboxRow) -> Value {
    json!({
        "id": o.id,
        "account": o.account,
        "kind": lang.t(match o.kind.as_str() {
            "accept" => "k_accept",
            "hold" => "k_hold",
            "done" => "k_done",
            "book" => "k_book",
            _ => "k_create",
        }),
        "ticket": o.ticket_id.or(o.queue_ticket),
        "href": o.ticket_id.or(o.queue_ticket).map(|t| format!("/tickets/{}/{t}", segment(&o.account))),
        "status": match o.status.as_str() {
            "dead" => lang.t("st_dead"),
            "pending" => lang.t("st_pending"),
            other => other,
        },
        "dead": o.status == "dead",
        "attempts": o.attempts,
        "last_error": o.last_error,
        "by": o.requested_by,
        "created": lang.stored_time(&o.created_at),
    })
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ActForm {
    csrf: Option<String>,
    comment: Option<String>,
    reason: Option<String>,
    notify: Option<String>,
}

/// The fields of the follow-up form and its photos.
struct FollowUp {
    csrf: Option<String>,
    title: String,
    description: String,
    urgency: Option<String>,
    photos: Vec<AttachmentSource>,
}

async fn follow_up_form(req: Request) -> Option<FollowUp> {
    let mut mp = Multipart::from_request(req, &()).await.ok()?;
    let mut f = FollowUp {
        csrf: None,
        title: String::new(),
        description: String::new(),
        urgency: None,
        photos: Vec::new(),
    };
    while let Some(field) = mp.next_field().await.ok()? {
        let name = field.name().unwrap_or("").to_owned();
        if name == "photos" {
            let file_name = field.file_name().unwrap_or("").to_owned();
            let content_type = field.content_type().map(str::to_owned);
            let bytes = field.bytes().await.ok()?;
            if file_name.is_empty() && bytes.is_empty() {
                continue; // no file chosen
            }
            f.photos.push(AttachmentSource::Bytes {
                file_name: if file_name.is_empty() {
                    "photo".into()
                } else {
                    file_name
                },
                content_type,
                bytes: bytes.to_vec(),
            });
            continue;
        }
        let text = field.text().await.ok()?;
        match name.as_str() {
            "csrf" => f.csrf = Some(text),
            "title" => f.title = text,
            "description" => f.description = text,
            "urgency" => f.urgency = Some(text).filter(|s| !s.trim().is_empty()),
            _ => {}
        }
    }
    Some(f)
}

/// `POST /tickets/{account}/{id}/{accept|hold|done|followup}`: the CSRF token, the dispatcher
/// role, then [`queue::queue`] as `board:<user>`; 303 back to the ticket with a notice, or the
/// ticket again with the refusal.
pub(crate) async fn act(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    Path((account, id, action)): Path<(String, i64, String)>,
    req: Request,
) -> Response {
    let lang = lang(req.headers());
    if action == "book" {
        return book_visit(b, me, lang, account, id, req).await;
    }
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        });
    let task = match action.as_str() {
        "followup" => {
            let Some(f) = (if multipart {
                follow_up_form(req).await
            } else {
                None
            }) else {
                // No form to read a token from: refused like a missing token.
                return me.forbidden(lang, "err_csrf");
            };
            if !me.csrf_ok(f.csrf.as_deref()) {
                return me.forbidden(lang, "err_csrf");
            }
            Task::Create {
                ticket: CreateRequest {
                    parent_id: Some(id),
                    cost_centre_id: None,
                    space_id: None,
                    room_id: None,
                    title: f.title,
                    description: f.description,
                    details: None,
                    urgency: f.urgency,
                    assignee_id: None,
                },
                attachments: f.photos,
            }
        }
        "accept" | "hold" | "done" => {
            let f = match axum::Form::<ActForm>::from_request(req, &()).await {
                Ok(axum::Form(f)) => f,
                Err(_) => ActForm::default(),
            };
            if !me.csrf_ok(f.csrf.as_deref()) {
                return me.forbidden(lang, "err_csrf");
            }
            let comment = f.comment.filter(|c| !c.trim().is_empty());
            let notify = f.notify.is_some();
            let action = match action.as_str() {
                "accept" => Action::Accept { comment },
                "hold" => Action::Hold {
                    reason: f.reason.unwrap_or_default(),
                    notify,
                },
                _ => Action::Done { comment, notify },
            };
            Task::Transition { ticket: id, action }
        }
        _ => return not_found(lang, &me),
    };
    if !me.may_act() {
        return me.forbidden(lang, "err_viewer");
    }
    let Some(acc) = b.config.account(&account).map(|a| a.name.clone()) else {
        return not_found(lang, &me);
    };
    let req = QueueRequest {
        account: Some(acc.clone()),
        task,
        requested_by: Some(format!("board:{}", me.name)),
    };
    match queue::queue(&b.config, &b.store, req).await {
        Ok(row) => Redirect::to(&format!(
            "/tickets/{}/{id}?queued={}",
            segment(&acc),
            row.id
        ))
        .into_response(),
        Err(QueueError::Failed(e)) => internal(lang, Some(&me), e),
        Err(e) => {
            let status = match e {
                QueueError::Refused(_) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let text = format!("{} {e}", lang.t("refused"));
            ticket_page(
                &b,
                &me,
                lang,
                acc,
                id,
                status,
                Shown::notice(notice(false, text)),
            )
            .await
        }
    }
}

/// The fields of the booking form.
#[derive(Debug, Default, Deserialize)]
struct BookForm {
    csrf: Option<String>,
    technician: Option<String>,
    after: Option<String>,
    /// "Näytä vapaat ajat": list the first free times, book nothing.
    dry_run: Option<String>,
}

/// `POST /tickets/{account}/{id}/book`: the CSRF token, the dispatcher role, then
/// [`crate::slotti::book::book`], the path of `huoltosync task book`, as `board:<user>`. A dry
/// run shows the first free times; a booking is 303 to the ticket with a notice naming its
/// slot; a refusal shows the CLI's message. Only this POST asks Slotti (its client's timeouts
/// and retries bound it).
async fn book_visit(
    b: Board,
    me: Me,
    lang: Lang,
    account: String,
    id: i64,
    req: Request,
) -> Response {
    let f = match axum::Form::<BookForm>::from_request(req, &()).await {
        Ok(axum::Form(f)) => f,
        Err(_) => BookForm::default(),
    };
    if !me.csrf_ok(f.csrf.as_deref()) {
        return me.forbidden(lang, "err_csrf");
    }
    if !me.may_act() {
        return me.forbidden(lang, "err_viewer");
    }
    let Some(acc) = b.config.account(&account).map(|a| a.name.clone()) else {
        return not_found(lang, &me);
    };
    let refuse = |status: StatusCode, text: String| {
        let shown = Shown::notice(notice(false, format!("{} {text}", lang.t("refused"))));
        ticket_page(&b, &me, lang, acc.clone(), id, status, shown)
    };
    let tz = crate::slotti::zone(&b.config);
    let after = match f.after.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match crate::slotti::book::parse_time(s, tz) {
            Ok(t) => Some(t),
            Err(e) => {
                let text = format!("{}: {e}", lang.t("book_after"));
                return refuse(StatusCode::UNPROCESSABLE_ENTITY, text).await;
            }
        },
    };
    let technicians = f
        .technician
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .into_iter()
        .collect();
    let request = crate::slotti::book::BookRequest {
        account: Some(acc.clone()),
        ticket: id,
        opts: crate::slotti::book::BookOptions {
            technicians,
            after,
            ..Default::default()
        },
        dry_run: f.dry_run.is_some(),
        requested_by: format!("board:{}", me.name),
    };
    use crate::slotti::book::{BookError, Booked};
    match crate::slotti::book::book(&b.config, &b.store, request).await {
        Ok(Booked::Free { booking, slots }) => {
            let free = slots.iter().map(|s| slot_text(lang, &booking, s)).collect();
            let shown = Shown {
                free: Some(free),
                ..Shown::default()
            };
            ticket_page(&b, &me, lang, acc, id, StatusCode::OK, shown).await
        }
        Ok(Booked::Queued { row, .. }) => Redirect::to(&format!(
            "/tickets/{}/{id}?queued={}",
            segment(&acc),
            row.id
        ))
        .into_response(),
        Err(BookError::Refused(QueueError::Failed(e))) => internal(lang, Some(&me), e),
        Err(BookError::Refused(e)) => {
            let status = match e {
                QueueError::Refused(_) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            refuse(status, e.to_string()).await
        }
        Err(BookError::Slotti(e)) => {
            tracing::warn!(account = %acc, ticket = id, error = format!("{e:#}"), "A visit could not be booked from the board.");
            let shown = Shown::notice(notice(false, format!("{} {e:#}", lang.t("err_slotti"))));
            ticket_page(
                &b,
                &me,
                lang,
                acc.clone(),
                id,
                StatusCode::BAD_GATEWAY,
                shown,
            )
            .await
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct OutboxQuery {
    done: Option<String>,
    id: Option<i64>,
}

/// `GET /outbox`: queued and dead-lettered actions.
pub(crate) async fn outbox(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    headers: HeaderMap,
    q: Result<Query<OutboxQuery>, QueryRejection>,
) -> Response {
    let lang = lang(&headers);
    let n = q.ok().and_then(|Query(q)| {
        let key = match q.done.as_deref()? {
            "retry" => "retried",
            "cancel" => "cancelled",
            _ => return None,
        };
        Some(notice(true, format!("{} #{}", lang.t(key), q.id?)))
    });
    outbox_page(&b, &me, lang, StatusCode::OK, n).await
}

async fn outbox_page(
    b: &Board,
    me: &Me,
    lang: Lang,
    status: StatusCode,
    notice: Option<Value>,
) -> Response {
    let rows = match b.store.call(|s| s.outbox_list(false)).await {
        Ok(r) => r,
        Err(e) => return internal(lang, Some(me), e),
    };
    let actions: Vec<Value> = rows.iter().map(|o| action_view(lang, o)).collect();
    render(
        status,
        "outbox.html",
        serde_json::json!({
            "t": lang.words(),
            "lang": lang.code(),
            "me": me.view(),
            "nav": "outbox",
            "actions": actions,
            "notice": notice,
        }),
    )
}

/// `POST /outbox/{id}/{retry|cancel}`: the CSRF token, the dispatcher role, then
/// [`queue::retry`] or [`queue::cancel`], as `huoltosync outbox retry|cancel`.
pub(crate) async fn outbox_act(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
    form: Result<axum::Form<ActForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let lang = lang(&headers);
    let f = form.map(|f| f.0).unwrap_or_default();
    if !me.csrf_ok(f.csrf.as_deref()) {
        return me.forbidden(lang, "err_csrf");
    }
    if !me.may_act() {
        return me.forbidden(lang, "err_viewer");
    }
    let done = match action.as_str() {
        "retry" => queue::retry(&b.config, &b.store, id).await,
        "cancel" => queue::cancel(&b.store, id).await,
        _ => return not_found(lang, &me),
    };
    match done {
        Ok(row) => Redirect::to(&format!("/outbox?done={action}&id={}", row.id)).into_response(),
        Err(e) => match e.downcast_ref::<OutboxRefusal>() {
            Some(refusal) => {
                let status = match refusal {
                    OutboxRefusal::NotFound(_) => StatusCode::NOT_FOUND,
                    OutboxRefusal::Refused(_) => StatusCode::CONFLICT,
                };
                let text = format!("{} {refusal}", lang.t("refused"));
                outbox_page(&b, &me, lang, status, Some(notice(false, text))).await
            }
            None => internal(lang, Some(&me), e),
        },
    }
}

/// `GET /status`: what `huoltosync status` judges, with this month's cost.
pub(crate) async fn status(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    headers: HeaderMap,
) -> Response {
    let lang = lang(&headers);
    let config = b.config.clone();
    let now = crate::time::now();
    let read = b
        .store
        .call(move |s| {
            let status = crate::status::status(&config, s, now)?;
            let month = crate::cost::Month::parse(&crate::time::local_month(now))?;
            let cost = crate::status::cost_report(&config, s, &month, now)?;
            Ok((status, cost))
        })
        .await;
    let (st, cost) = match read {
        Ok(x) => x,
        Err(e) => return internal(lang, Some(&me), e),
    };
    let accounts: Vec<Value> = st
        .accounts
        .iter()
        .map(|a| {
            let s = &a.status;
            json!({
                "account": s.account,
                "last_sync": s.last_success.as_deref().map_or_else(|| lang.t("never").to_owned(), |t| lang.stored_time(t)),
                "age": a.last_success_age_secs.map(|secs| lang.age(chrono::Duration::seconds(secs))),
                "last_run": s.last_run.as_ref().map(|r| format!("{} ({})", r.outcome, lang.stored_time(&r.started_at))),
                "open": s.open_tickets,
                "calls_today": s.calls_today,
                "calls_month": s.calls_this_month,
                "pending": s.outbox_pending,
                "dead": s.dead_letters,
                "problems": a.problems,
            })
        })
        .collect();
    let customers: Vec<Value> = cost
        .customers
        .iter()
        .map(|c| {
            let cheapest = c.projected_prices.iter().find(|p| p.cheapest);
            json!({
                "customer": c.customer,
                "calls": c.calls,
                "projected": c.projected_calls,
                "price": cheapest.map(|p| format!("{} {:.2} €", p.package, p.eur)),
            })
        })
        .collect();
    let webhooks = st.webhooks.as_ref().map(|w| {
        json!({
            "received": w.deliveries_received, "pending": w.events_pending,
            "parked": w.events_parked, "fetches": w.fetches,
        })
    });
    render(
        StatusCode::OK,
        "status.html",
        serde_json::json!({
            "t": lang.words(),
            "lang": lang.code(),
            "me": me.view(),
            "nav": "status",
            "healthy": st.healthy(),
            "accounts": accounts,
            "customers": customers,
            "month": cost.month,
            "webhooks": webhooks,
        }),
    )
}
