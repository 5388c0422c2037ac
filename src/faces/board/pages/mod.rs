//! The board's pages and forms, one room per page: the board of open tickets (`list`: `/`, and
//! one row at a time for the live board), a ticket with its history and action forms (`ticket`),
//! the forms' POSTs (`forms`), the outbox with retry and cancel (`outbox`), and the status
//! (`status`). Reads use the store's reads (the board's own page query, the API's ticket
//! detail); every action goes through [`crate::engine::queue`] with `requested_by = "board:<user>"`,
//! and a refusal shows the queue's own message (the CLI's wording).

mod forms;
mod list;
mod outbox;
mod status;
mod ticket;

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Me;
use super::{Lang, message};

pub(crate) use forms::act;
pub(crate) use list::{board, row_fragment};
pub(crate) use outbox::{outbox, outbox_act};
pub(crate) use status::status;
pub(crate) use ticket::ticket;

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

/// A notice on a page: done, or refused with the queue's message.
fn notice(ok: bool, text: String) -> Value {
    json!({"ok": ok, "text": text})
}

/// The fields of the accept, hold and done forms, and of retry and cancel (the token only).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ActForm {
    csrf: Option<String>,
    comment: Option<String>,
    reason: Option<String>,
    notify: Option<String>,
}
