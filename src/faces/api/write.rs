//! The API's write side: actions on tickets, new tickets, outbox retry and cancel, and the
//! `Idempotency-Key` that makes a retried POST safe.
//!
//! Every endpoint here needs a write token ([`Caller::require`]) and queues through the same
//! library functions as the CLI: [`crate::engine::queue::queue`] (with `requested_by` = the token's
//! name), [`crate::engine::queue::retry`] and [`crate::engine::queue::cancel`]. Refusals are problem+json with
//! the queue's wording (naming the ticket): 422 for a request the workflow can never take (a
//! hold without a reason, a bad attachment, a new ticket's wrong fields), 409 for an action the
//! ticket's current state refuses, 404 for a ticket not in the account's mirror or an unknown
//! account or outbox id. A body that is not the JSON asked for is a 400 naming the field.
//!
//! Idempotency (`idempotency`, a middleware on every POST): the key is claimed per token in
//! one transaction ([`Idempotency::idempotency_claim`]) before the handler runs, under a random owner
//! id; the answer is stored and given again to a retry with the same method, path and body
//! (`Idempotent-Replayed: true`). An action's answer is kept in the transaction that queues it
//! ([`queue::queue_keeping`]), so a request that dies leaves either the queued action with its
//! answer or neither. The same key with another request is 422; a retry while the first request
//! still runs waits up to [`IDEMPOTENCY_WAIT`] for its answer, then gets 409. A claim left
//! unanswered for [`IDEMPOTENCY_TAKEOVER`] (its process was killed, or its client left before
//! the answer was kept) is taken over by the retry, which runs afresh; only the claim's owner
//! keeps an answer or queues with it, so a key never queues two rows. A 5xx answer is not kept
//! (the retry runs again). Keys are kept [`IDEMPOTENCY_KEEP`] (the purge).
//!
//! [`Idempotency::idempotency_claim`]: crate::store::Idempotency::idempotency_claim

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{Action, AppState, Caller, Problem};
use crate::config::Scope;
use crate::domain::action::{self, CreateRequest};
use crate::engine::queue::{self, AttachmentSource, QueueError, QueueRequest, Task};
use crate::store::{Claim, ClaimLost, KeptAnswer, KeyClaim, OutboxRefusal};

/// How long an Idempotency-Key and its answer are kept.
pub const IDEMPOTENCY_KEEP: Duration = Duration::from_secs(24 * 3600);
/// How long a retry waits for the answer of the first request with its key.
pub const IDEMPOTENCY_WAIT: Duration = Duration::from_secs(10);
/// How long an unanswered claim of a key holds: a retry after this takes it over and runs
/// afresh (the first request died). Far longer than a request takes (the store's busy timeout
/// is 10 s); a first request that still runs then cannot queue or answer with the key.
pub const IDEMPOTENCY_TAKEOVER: Duration = Duration::from_secs(30);
/// The longest Idempotency-Key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// The largest answer kept for a key (answers here are one outbox row or a problem).
const MAX_KEPT_ANSWER: usize = 1 << 20;

// ---- bodies ------------------------------------------------------------------------------------

/// `POST tickets/{account}/{id}/accept`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// A comment for Tampuuri.
    pub comment: Option<String>,
}

/// `POST tickets/{account}/{id}/hold`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// Why the job waits (the resident is told); required.
    pub reason: String,
    /// Tell the resident (default true).
    pub notify: Option<bool>,
}

/// `POST tickets/{account}/{id}/done`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DoneBody {
    pub comment: Option<String>,
    /// Tell the resident (default true).
    pub notify: Option<bool>,
}

/// An attachment of a new ticket, in JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentBody {
    pub file_name: String,
    /// Guessed from the file name when absent.
    pub content_type: Option<String>,
    /// The bytes, standard base64.
    pub content_base64: String,
}

/// `POST tickets`: the fields of `huoltosync task new`. As `multipart/form-data`, the same
/// fields are form fields and each file part is an attachment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTicketBody {
    /// The account (may be left out with a `parent_id` in one account's mirror, or when one
    /// account is configured).
    pub account: Option<String>,
    /// The parent ticket: the new ticket is its follow-up and inherits its cost centre, space
    /// and room.
    pub parent_id: Option<i64>,
    /// `KustannuspaikkaId` (required without a parent).
    pub cost_centre_id: Option<i64>,
    pub space_id: Option<i64>,
    pub room_id: Option<i64>,
    pub title: String,
    pub description: String,
    pub details: Option<String>,
    pub urgency: Option<String>,
    /// Default: the account's contractor.
    pub assignee_id: Option<i64>,
    #[serde(default)]
    pub attachments: Vec<AttachmentBody>,
}

/// Parses a JSON body (an empty body is `{}`); a 400 naming the field otherwise.
fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Problem::bad_request(format!("the JSON body is wrong: {inner}"))
        } else {
            Problem::bad_request(format!("the JSON body's field {path} is wrong: {inner}"))
        }
    })
}

// ---- queueing ----------------------------------------------------------------------------------

/// 202 with the queued row.
fn accepted(row: crate::store::OutboxRow) -> Response {
    (StatusCode::ACCEPTED, axum::Json(Action::from(row))).into_response()
}

/// The answer to a queued action, as kept for its Idempotency-Key and as given: 202 and the
/// row's JSON.
fn queued_answer(row: &crate::store::OutboxRow) -> anyhow::Result<(u16, String)> {
    Ok((
        StatusCode::ACCEPTED.as_u16(),
        serde_json::to_string(&Action::from(row.clone()))?,
    ))
}

/// The configured account of a path, or 404.
fn account(st: &AppState, name: &str) -> Result<String, Problem> {
    match st.config.account(name) {
        Some(a) => Ok(a.name.clone()),
        None => Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!(
                "account {name:?} is not configured (accounts: {})",
                st.config
                    .accounts
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Queues `task` for `caller` through [`queue::queue_keeping`], keeping the answer of the
/// request's Idempotency-Key (`claim`, set by the middleware) in the same transaction; a
/// refusal as a problem.
async fn queue_for(
    st: &AppState,
    caller: &Caller,
    claim: Option<KeyClaim>,
    account: Option<String>,
    task: Task,
) -> Result<Response, Problem> {
    let transition = match &task {
        Task::Transition { ticket, .. } | Task::Book { ticket, .. } => {
            account.clone().map(|a| (a, *ticket))
        }
        Task::Create { .. } => None,
    };
    let req = QueueRequest {
        account,
        task,
        requested_by: Some(caller.name.clone()),
    };
    let kept = claim.map(|claim| KeptAnswer {
        claim,
        answer: Box::new(queued_answer),
    });
    match queue::queue_keeping(&st.config, &st.store, req, kept).await {
        Ok(row) => {
            let (status, body) = queued_answer(&row).map_err(Problem::internal)?;
            Ok(json_answer(status, body))
        }
        Err(QueueError::Failed(e)) => match e.downcast::<ClaimLost>() {
            Ok(lost) => Err(Problem::new(StatusCode::CONFLICT, lost.to_string())),
            Err(e) => Err(Problem::internal(e)),
        },
        Err(QueueError::Refused(m)) => {
            let status = match transition {
                // Not in this account's mirror: 404; in it but refused by its state: 409.
                Some((a, id)) => {
                    let held = st
                        .store
                        .call(move |s| s.outbox().accounts_holding(id))
                        .await
                        .map_err(Problem::internal)?;
                    if held.contains(&a) {
                        StatusCode::CONFLICT
                    } else {
                        StatusCode::NOT_FOUND
                    }
                }
                None => StatusCode::UNPROCESSABLE_ENTITY,
            };
            Err(Problem::new(status, m))
        }
        Err(QueueError::Invalid(m) | QueueError::Attachment(m)) => {
            Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, m))
        }
    }
}

type TicketPath = Result<Path<(String, i64)>, axum::extract::rejection::PathRejection>;

fn ticket_path(path: TicketPath) -> Result<(String, i64), Problem> {
    path.map(|Path(p)| p)
        .map_err(|e| Problem::bad_request(format!("bad path: {}", e.body_text())))
}

/// What accept, hold and done share: a write token, the ticket's path and account, the body
/// read as `B` (checked in that order, so each refusal is the same for the three), then the
/// transition `action(body)` queued for the caller.
async fn queue_transition<B: DeserializeOwned>(
    st: &AppState,
    caller: &Caller,
    claim: Option<axum::Extension<KeyClaim>>,
    path: TicketPath,
    body: &[u8],
    action: impl FnOnce(B) -> action::Action,
) -> Result<Response, Problem> {
    caller.require(Scope::Write)?;
    let (acc, id) = ticket_path(path)?;
    let acc = account(st, &acc)?;
    let action = action(json(body)?);
    queue_for(
        st,
        caller,
        claim.map(|c| c.0),
        Some(acc),
        Task::Transition { ticket: id, action },
    )
    .await
}

/// Accept a ticket (`vastaanota`): from `Avoin` or `Odottaa`.
#[utoipa::path(post, path = "/api/v1/tickets/{account}/{id}/accept", tag = "actions",
    params(("account" = String, Path, description = "The Tampuuri account"),
           ("id" = i64, Path, description = "The ticket id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe (kept 24 h)")),
    request_body(content = AcceptBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued: the outbox row", body = Action),
        (status = 400, description = "The body is not the JSON asked for", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A read token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account, or the ticket is not in its mirror", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The ticket's state refuses it, or the key's first request still runs", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key came with another request", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(super) async fn accept(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    claim: Option<axum::Extension<KeyClaim>>,
    path: TicketPath,
    body: Bytes,
) -> Result<Response, Problem> {
    queue_transition(&st, &caller, claim, path, &body, |b: AcceptBody| {
        action::Action::Accept { comment: b.comment }
    })
    .await
}

/// Put a ticket on hold (`odotukseen`) with a reason the resident is told.
#[utoipa::path(post, path = "/api/v1/tickets/{account}/{id}/hold", tag = "actions",
    params(("account" = String, Path, description = "The Tampuuri account"),
           ("id" = i64, Path, description = "The ticket id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe (kept 24 h)")),
    request_body(content = HoldBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued: the outbox row", body = Action),
        (status = 400, description = "The body is not the JSON asked for", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A read token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account, or the ticket is not in its mirror", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The ticket's state refuses it, or the key's first request still runs", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An empty reason, or the key came with another request", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(super) async fn hold(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    claim: Option<axum::Extension<KeyClaim>>,
    path: TicketPath,
    body: Bytes,
) -> Result<Response, Problem> {
    queue_transition(&st, &caller, claim, path, &body, |b: HoldBody| {
        action::Action::Hold {
            reason: b.reason,
            notify: b.notify.unwrap_or(true),
        }
    })
    .await
}

/// Mark a ticket done (`kuittaatehdyksi`).
#[utoipa::path(post, path = "/api/v1/tickets/{account}/{id}/done", tag = "actions",
    params(("account" = String, Path, description = "The Tampuuri account"),
           ("id" = i64, Path, description = "The ticket id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe (kept 24 h)")),
    request_body(content = DoneBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued: the outbox row", body = Action),
        (status = 400, description = "The body is not the JSON asked for", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A read token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account, or the ticket is not in its mirror", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The ticket's state (or its open follow-ups) refuses it, or the key's first request still runs", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The key came with another request", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(super) async fn done(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    claim: Option<axum::Extension<KeyClaim>>,
    path: TicketPath,
    body: Bytes,
) -> Result<Response, Problem> {
    queue_transition(&st, &caller, claim, path, &body, |b: DoneBody| {
        action::Action::Done {
            comment: b.comment,
            notify: b.notify.unwrap_or(true),
        }
    })
    .await
}

/// Create a ticket (a follow-up with `parent_id`): JSON with base64 attachments, or
/// `multipart/form-data` with the same fields as form fields and files as attachments.
#[utoipa::path(post, path = "/api/v1/tickets", tag = "actions",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe (kept 24 h)")),
    request_body(content(
        (NewTicketBody = "application/json"),
        (NewTicketBody = "multipart/form-data"),
    )),
    responses(
        (status = 202, description = "Queued: the outbox row", body = Action),
        (status = 400, description = "The body is not the JSON or form asked for", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A read token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key's first request still runs", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong fields (no cost centre, unknown account or parent), a bad attachment, or the key came with another request", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(super) async fn create(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    req: Request,
) -> Result<Response, Problem> {
    caller.require(Scope::Write)?;
    let claim = req.extensions().get::<KeyClaim>().cloned();
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        });
    let (b, mut attachments) = if multipart {
        form(req).await?
    } else {
        let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .map_err(|e| Problem::bad_request(format!("cannot read the body: {e}")))?;
        (json::<NewTicketBody>(&bytes)?, Vec::new())
    };
    let mut sources = Vec::with_capacity(b.attachments.len() + attachments.len());
    for (i, a) in b.attachments.into_iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.content_base64.trim())
            .map_err(|e| {
                Problem::bad_request(format!(
                    "the JSON body's field attachments[{i}].content_base64 ({}) is not base64: {e}",
                    a.file_name
                ))
            })?;
        sources.push(AttachmentSource::Bytes {
            file_name: a.file_name,
            content_type: a.content_type,
            bytes,
        });
    }
    sources.append(&mut attachments);
    let ticket = CreateRequest {
        parent_id: b.parent_id,
        cost_centre_id: b.cost_centre_id,
        space_id: b.space_id,
        room_id: b.room_id,
        title: b.title,
        description: b.description,
        details: b.details,
        urgency: b.urgency,
        assignee_id: b.assignee_id,
    };
    if let Some(a) = &b.account
        && st.config.account(a).is_none()
    {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            account(&st, a).unwrap_err().detail,
        ));
    }
    let task = Task::Create {
        ticket,
        attachments: sources,
    };
    queue_for(&st, &caller, claim, b.account, task).await
}

/// The fields of a `multipart/form-data` new ticket, and its file parts as attachments.
async fn form(req: Request) -> Result<(NewTicketBody, Vec<AttachmentSource>), Problem> {
    const NUMBERS: [&str; 5] = [
        "parent_id",
        "cost_centre_id",
        "space_id",
        "room_id",
        "assignee_id",
    ];
    const TEXTS: [&str; 6] = [
        "account",
        "title",
        "description",
        "details",
        "urgency",
        "attachments",
    ];
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| Problem::bad_request(format!("bad multipart body: {}", e.body_text())))?;
    let mut fields = serde_json::Map::new();
    let mut files = Vec::new();
    while let Some(part) = mp
        .next_field()
        .await
        .map_err(|e| Problem::bad_request(format!("bad multipart body: {}", e.body_text())))?
    {
        let name = part.name().unwrap_or_default().to_owned();
        if let Some(file_name) = part.file_name().map(str::to_owned) {
            let content_type = part.content_type().map(str::to_owned);
            let bytes = part.bytes().await.map_err(|e| {
                Problem::bad_request(format!("bad multipart part {name:?}: {}", e.body_text()))
            })?;
            files.push(AttachmentSource::Bytes {
                file_name,
                content_type,
                bytes: bytes.to_vec(),
            });
            continue;
        }
        let text = part.text().await.map_err(|e| {
            Problem::bad_request(format!("bad multipart field {name:?}: {}", e.body_text()))
        })?;
        let value = if NUMBERS.contains(&name.as_str()) {
            let n: i64 = text.trim().parse().map_err(|_| {
                Problem::bad_request(format!(
                    "the form field {name} is wrong: {text:?} is not an integer"
                ))
            })?;
            serde_json::Value::from(n)
        } else if TEXTS.contains(&name.as_str()) && name != "attachments" {
            serde_json::Value::from(text)
        } else {
            return Err(Problem::bad_request(format!(
                "the form field {name:?} is unknown (fields: {}, {}; files are attachments)",
                TEXTS[..5].join(", "),
                NUMBERS.join(", ")
            )));
        };
        fields.insert(name, value);
    }
    let body = serde_json::to_vec(&fields).map_err(|e| Problem::internal(e.into()))?;
    Ok((json(&body)?, files))
}

// ---- the outbox --------------------------------------------------------------------------------

type IdPath = Result<Path<i64>, axum::extract::rejection::PathRejection>;

/// An `outbox retry|cancel` error as a problem with the CLI's wording.
fn outbox_problem(e: anyhow::Error) -> Problem {
    match e.downcast::<OutboxRefusal>() {
        Ok(OutboxRefusal::NotFound(m)) => Problem::new(StatusCode::NOT_FOUND, m),
        Ok(OutboxRefusal::Refused(m)) => Problem::new(StatusCode::CONFLICT, m),
        Err(e) => Problem::internal(e),
    }
}

/// Put a dead-lettered action back in the queue with a new deadline (`huoltosync outbox retry`).
#[utoipa::path(post, path = "/api/v1/outbox/{id}/retry", tag = "outbox",
    params(("id" = i64, Path, description = "The outbox id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe (kept 24 h)")),
    responses(
        (status = 202, description = "Queued again: the updated row", body = Action),
        (status = 403, description = "A read token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such action", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The action is not dead-lettered (or its text was erased)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(super) async fn retry(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    path: IdPath,
) -> Result<Response, Problem> {
    caller.require(Scope::Write)?;
    let Path(id) =
        path.map_err(|e| Problem::bad_request(format!("bad path: {}", e.body_text())))?;
    let row = queue::retry(&st.config, &st.store, id)
        .await
        .map_err(outbox_problem)?;
    tracing::info!(outbox_id = id, requested_by = %caller.name, "Action re-queued through the API.");
    Ok(accepted(row))
}

/// Drop a pending or dead-lettered action (`huoltosync outbox cancel`): it will not be sent.
#[utoipa::path(post, path = "/api/v1/outbox/{id}/cancel", tag = "outbox",
    params(("id" = i64, Path, description = "The outbox id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe (kept 24 h)")),
    responses(
        (status = 200, description = "Cancelled: the row, now `cancelled`", body = Action),
        (status = 403, description = "A read token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such action", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The action is neither pending nor dead-lettered", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(super) async fn cancel(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    path: IdPath,
) -> Result<Response, Problem> {
    caller.require(Scope::Write)?;
    let Path(id) =
        path.map_err(|e| Problem::bad_request(format!("bad path: {}", e.body_text())))?;
    queue::cancel(&st.store, id).await.map_err(outbox_problem)?;
    tracing::info!(outbox_id = id, requested_by = %caller.name, "Action cancelled through the API.");
    let row = st
        .store
        .call(move |s| s.outbox().outbox_row(id))
        .await
        .map_err(Problem::internal)?
        .ok_or_else(|| Problem::internal(anyhow::anyhow!("outbox action #{id} vanished")))?;
    Ok((StatusCode::OK, axum::Json(Action::from(row))).into_response())
}

// ---- Idempotency-Key ---------------------------------------------------------------------------

/// The hash that says whether a retry is the same request: method, path and body.
fn request_hash(method: &Method, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b"\n");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// An answer given as JSON (problem+json for an error status).
fn json_answer(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

/// A kept answer, given again.
fn replay(status: u16, body: String) -> Response {
    let mut r = json_answer(status, body);
    r.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    r
}

/// The `Idempotency-Key` middleware on POSTs (see the module doc). Runs after the token check
/// and the body bound: the body is already in memory.
pub(super) async fn idempotency(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get("idempotency-key") else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= MAX_KEY_LEN => k.trim().to_owned(),
        _ => {
            return Problem::bad_request(format!(
                "the Idempotency-Key header must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
            .into_response();
        }
    };
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return Problem::internal(anyhow::anyhow!("no caller on an authenticated request"))
            .into_response();
    };
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return Problem::bad_request(format!("cannot read the body: {e}")).into_response();
        }
    };
    let hash = request_hash(&parts.method, parts.uri.path(), &bytes);
    let claim = KeyClaim {
        token: caller.name.clone(),
        key: key.clone(),
        owner: format!("{:032x}", rand::random::<u128>()),
    };
    let deadline = tokio::time::Instant::now() + IDEMPOTENCY_WAIT;
    loop {
        let (c, h) = (claim.clone(), hash.clone());
        let now = crate::domain::time::now();
        let stale_before = crate::domain::time::fmt(
            now - chrono::Duration::from_std(IDEMPOTENCY_TAKEOVER).unwrap_or_default(),
        );
        let now = crate::domain::time::fmt(now);
        let found = match st
            .store
            .call(move |s| {
                s.idempotency()
                    .idempotency_claim(&c, &h, &now, &stale_before)
            })
            .await
        {
            Ok(c) => c,
            Err(e) => return Problem::internal(e).into_response(),
        };
        match found {
            Claim::Claimed => break,
            Claim::TakenOver => {
                tracing::warn!(
                    requested_by = %caller.name,
                    "An Idempotency-Key's first request left no answer (it died); its retry runs afresh."
                );
                break;
            }
            Claim::Answered { status, body } => return replay(status, body),
            Claim::OtherRequest => {
                return Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "the Idempotency-Key {key:?} was used with another request (method, path or body) by token {:?}; use a new key for a new request",
                        caller.name
                    ),
                )
                .into_response();
            }
            Claim::InProgress => {
                if tokio::time::Instant::now() >= deadline {
                    return Problem::new(
                        StatusCode::CONFLICT,
                        format!(
                            "the request with Idempotency-Key {key:?} is still in progress; retry later for its answer"
                        ),
                    )
                    .into_response();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    parts.extensions.insert(claim.clone());
    let resp = next.run(Request::from_parts(parts, bytes.into())).await;
    let (rparts, rbody) = resp.into_parts();
    let rbytes = axum::body::to_bytes(rbody, MAX_KEPT_ANSWER).await;
    // A queued action's answer is already kept (with the action); this keeps the others.
    match rbytes {
        Ok(b) if !rparts.status.is_server_error() => {
            let text = String::from_utf8_lossy(&b).into_owned();
            settle_key(&st.store, claim, Some((rparts.status.as_u16(), text))).await;
            Response::from_parts(rparts, b.into())
        }
        other => {
            settle_key(&st.store, claim, None).await;
            match other {
                Ok(b) => Response::from_parts(rparts, b.into()),
                Err(e) => Problem::internal(anyhow::anyhow!("cannot read the answer: {e}"))
                    .into_response(),
            }
        }
    }
}

/// Keeps `answer` (status, body) for `claim`'s key, or releases the key when there is none to
/// keep (a 5xx, an unreadable answer): the retry runs again. A store error is logged.
async fn settle_key(store: &crate::store::Handle, claim: KeyClaim, answer: Option<(u16, String)>) {
    let (r, what) = match answer {
        Some((status, text)) => (
            store
                .call(move |s| s.idempotency().idempotency_answer(&claim, status, &text))
                .await
                .map(drop),
            "Cannot keep an Idempotency-Key's answer.",
        ),
        None => (
            store
                .call(move |s| s.idempotency().idempotency_release(&claim))
                .await,
            "Cannot release an Idempotency-Key.",
        ),
    };
    if let Err(e) = r {
        tracing::warn!(error = format!("{e:#}"), "{what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_field_is_named() {
        let e = json::<HoldBody>(br#"{"reason": 5}"#).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.detail.contains("reason"), "{}", e.detail);
        let e = json::<HoldBody>(b"{}").unwrap_err();
        assert!(e.detail.contains("reason"), "{}", e.detail);
        let e = json::<AcceptBody>(br#"{"coment": "x"}"#).unwrap_err();
        assert!(e.detail.contains("coment"), "{}", e.detail);
        assert!(json::<AcceptBody>(b"").unwrap().comment.is_none());
    }

    #[test]
    fn the_hash_covers_method_path_and_body() {
        let a = request_hash(&Method::POST, "/api/v1/tickets/a/1/accept", b"{}");
        assert_eq!(
            a,
            request_hash(&Method::POST, "/api/v1/tickets/a/1/accept", b"{}")
        );
        assert_ne!(
            a,
            request_hash(&Method::POST, "/api/v1/tickets/a/2/accept", b"{}")
        );
        assert_ne!(
            a,
            request_hash(&Method::POST, "/api/v1/tickets/a/1/accept", b"{ }")
        );
        assert_ne!(
            a,
            request_hash(&Method::PUT, "/api/v1/tickets/a/1/accept", b"{}")
        );
    }
}
