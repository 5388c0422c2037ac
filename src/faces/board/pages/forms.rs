//! The forms of a ticket's page: accept, hold, done and a follow-up (through [`crate::engine::queue`],
//! as `board:<user>`), and booking a visit (through [`crate::engine::visits::book::book`], the path of
//! `task book`). A refusal shows the ticket again with the queue's own message.

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;

use super::super::auth::Me;
use super::super::{Board, Lang, lang, segment};
use super::ticket::{Shown, ticket_page};
use super::{ActForm, internal, not_found, notice};
use crate::domain::action::{Action, CreateRequest};
use crate::engine::queue::{self, AttachmentSource, QueueError, QueueRequest, Task};
use crate::store::OutboxRow;

/// The notice after outbox row `n` was queued: a booking names its slot.
pub(super) fn queued_notice(lang: Lang, actions: &[OutboxRow], n: i64) -> Value {
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
pub(super) fn slot_text(
    lang: Lang,
    b: &crate::domain::action::VisitBooking,
    s: &crate::domain::action::BookedSlot,
) -> String {
    match b.technician_name(&s.resource_guid) {
        Some(who) => format!("{}, {who}", lang.span(s.start, s.end)),
        None => lang.span(s.start, s.end),
    }
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
/// [`crate::engine::visits::book::book`], the path of `huoltosync task book`, as `board:<user>`. A dry
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
        Some(s) => match crate::engine::visits::book::parse_time(s, tz) {
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
    let request = crate::engine::visits::book::BookRequest {
        account: Some(acc.clone()),
        ticket: id,
        opts: crate::engine::visits::book::BookOptions {
            technicians,
            after,
            ..Default::default()
        },
        dry_run: f.dry_run.is_some(),
        requested_by: format!("board:{}", me.name),
    };
    use crate::engine::visits::book::{BookError, Booked};
    match crate::engine::visits::book::book(&b.config, &b.exchange, &b.store, request).await {
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
