//! The outbox (`GET /outbox`): queued and dead-lettered actions, with retry and cancel
//! (`POST /outbox/{id}/{retry|cancel}`, as `huoltosync outbox retry|cancel`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::auth::Me;
use super::super::{Board, Lang, lang, render, segment};
use super::{ActForm, internal, not_found, notice};
use crate::engine::queue;
use crate::store::{OutboxRefusal, OutboxRow};

/// An outbox row as the ticket and outbox pages list it.
pub(super) fn action_view(lang: Lang, o: &OutboxRow) -> Value {
    json!({
        "id": o.id,
        "account": o.account,
        "kind": lang.action_kind(&o.kind),
        "ticket": o.ticket_id.or(o.queue_ticket),
        "href": o.ticket_id.or(o.queue_ticket).map(|t| format!("/tickets/{}/{t}", segment(&o.account))),
        "status": match o.status.as_str() {
            "dead" => lang.t("st_dead"),
            "pending" => lang.t("st_pending"),
            "delivered" => lang.t("st_delivered"),
            "cancelled" => lang.t("st_cancelled"),
            other => other,
        },
        "dead": o.status == "dead",
        "attempts": o.attempts,
        "last_error": o.last_error.as_deref().map(|e| lang.reason(e)),
        "by": o.requested_by.as_deref().map(|b| lang.requested_by(b)),
        "created": lang.stored_time(&o.created_at),
    })
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
    let rows = match b.store.call(|s| s.outbox().outbox_list(false)).await {
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
