//! Queueing an action: the one library function through which the CLI (`huoltosync task`), the
//! demo and the HTTP API put the contractor's work in the outbox.
//!
//! A [`QueueRequest`] says what to do (a transition of a ticket, or a new ticket with its
//! attachments), in which account, and who asked. [`queue`] resolves the account, reads the
//! attachments within `[push] max_attachment_bytes`, and has [`Outbox::enqueue`] check the
//! action against the mirror and write it in one transaction. It returns the queued outbox
//! row, or a [`QueueError`] that says what to fix and names the ticket; nothing is queued then.
//! Delivering is not part of it: the relay ([`crate::engine::push`]) sends the row with the next push.
//!
//! [`Outbox::enqueue`]: crate::store::Outbox::enqueue

use std::path::PathBuf;

use crate::config::Config;
use crate::domain::action::{self, Action, Attachment, CreateRequest, Facts, VisitBooking};
use crate::domain::time;
use crate::store::{Handle, KeptAnswer, OutboxRow};

/// One action to queue, as a caller asks for it.
#[derive(Debug, Clone)]
pub struct QueueRequest {
    /// The account. It may be left out when the ticket (for a follow-up, its parent) is in the
    /// mirror of one configured account only, or when one account is configured.
    pub account: Option<String>,
    pub task: Task,
    /// Who asked (the HTTP API gives its token's name, the CLI `cli`, the demo `demo`): stored
    /// in `outbox.requested_by` and logged with the queued row.
    pub requested_by: Option<String>,
}

/// What to queue.
#[derive(Debug, Clone)]
pub enum Task {
    /// Accept, hold or done on ticket `ticket`.
    Transition { ticket: i64, action: Action },
    /// A new ticket (a follow-up when it names a parent), with its attachments.
    Create {
        ticket: CreateRequest,
        attachments: Vec<AttachmentSource>,
    },
    /// A visit to book in Slotti for ticket `ticket` (see [`crate::engine::visits::book`]): refused
    /// when the ticket has a live visit or a booking waiting in the outbox.
    Book {
        ticket: i64,
        booking: Box<VisitBooking>,
    },
}

/// An attachment as the caller has it.
#[derive(Debug, Clone)]
pub enum AttachmentSource {
    /// A file to read (the CLI's `--attach`).
    Path(PathBuf),
    /// Bytes already received (an upload); the content type is guessed from the name if absent.
    Bytes {
        file_name: String,
        content_type: Option<String>,
        bytes: Vec<u8>,
    },
}

/// Why nothing was queued. Callers branch on the kind; the message is the CLI's wording.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The request is incomplete, or names an account that is not configured, or the ticket is
    /// in several accounts' mirrors and no account is named, or an attachment's file name is
    /// too long (the CLI's bad usage, exit 2).
    #[error("{0}")]
    Invalid(String),
    /// An attachment cannot be read, or is over `[push] max_attachment_bytes`.
    #[error("{0}")]
    Attachment(String),
    /// The mirror or the workflow refuses the action (the ticket is not mirrored, has left,
    /// is in the wrong state, has open follow-ups; the new ticket's fields are wrong). The
    /// message names the ticket.
    #[error("{0}")]
    Refused(String),
    /// Not the request's fault: the store failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Decides the action to queue from the facts read in the enqueue transaction.
type Plan = Box<dyn FnOnce(&Facts) -> anyhow::Result<Action> + Send>;

/// What [`queue`] hands to the store: the account, the ticket whose facts are read, the
/// attachments and the check.
struct Prepared {
    account: String,
    ticket: Option<i64>,
    attachments: Vec<Attachment>,
    plan: Plan,
}

/// Queues one action and returns its outbox row (`pending`, with its id, ticket, kind and
/// the states it goes from and to). Checks that need no store come first (a hold's reason, the
/// account, the attachments), then the store checks and writes in one transaction.
pub async fn queue(
    config: &Config,
    store: &Handle,
    req: QueueRequest,
) -> Result<OutboxRow, QueueError> {
    queue_keeping(config, store, req, None).await
}

/// [`queue`], keeping the answer of the HTTP request's Idempotency-Key (`kept`) in the
/// transaction that queues the action: a request that dies leaves either both or neither.
/// When the key's claim was taken over by a retry, it fails ([`crate::store::ClaimLost`] in
/// [`QueueError::Failed`]) and queues nothing.
pub async fn queue_keeping(
    config: &Config,
    store: &Handle,
    req: QueueRequest,
    kept: Option<KeptAnswer>,
) -> Result<OutboxRow, QueueError> {
    let QueueRequest {
        account,
        task,
        requested_by,
    } = req;
    let prepared = match task {
        Task::Transition { ticket, action } => {
            transition(config, store, account.as_deref(), ticket, action).await?
        }
        Task::Create {
            ticket,
            attachments,
        } => create(config, store, account.as_deref(), ticket, attachments).await?,
        Task::Book { ticket, booking } => {
            book(config, store, account.as_deref(), ticket, booking).await?
        }
    };
    let Prepared {
        account,
        ticket,
        attachments,
        plan,
    } = prepared;
    let now = time::now();
    let deadline = chrono::Duration::from_std(config.push.deadline)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| anyhow::anyhow!("[push] deadline_hours is out of range"))?;
    let name = account.clone();
    let by = requested_by.clone();
    let row = store
        .call(move |s| {
            s.outbox().enqueue_by(
                &name,
                ticket,
                &time::fmt(now),
                &time::fmt(deadline),
                &attachments,
                by.as_deref(),
                kept,
                plan,
            )
        })
        .await
        .map_err(|e| match e.downcast::<QueueError>() {
            Ok(refusal) => refusal,
            Err(e) => QueueError::Failed(e),
        })?;
    tracing::info!(
        account = %account,
        outbox_id = row.id,
        kind = %row.kind,
        ticket = ?row.ticket_id,
        requested_by = requested_by.as_deref().unwrap_or("-"),
        "Action queued."
    );
    Ok(row)
}

/// `huoltosync outbox retry ID` and `POST outbox/{id}/retry`: puts a dead-lettered action back
/// in the queue with a new `[push] deadline_hours`; the updated row. A refusal is a
/// [`crate::store::OutboxRefusal`] inside the error (the CLI's wording).
pub async fn retry(config: &Config, store: &Handle, id: i64) -> anyhow::Result<OutboxRow> {
    let now = time::now();
    let deadline = now + chrono::Duration::from_std(config.push.deadline)?;
    store
        .call(move |s| {
            s.outbox()
                .outbox_retry(id, &time::fmt(now), &time::fmt(deadline))
        })
        .await
}

/// `huoltosync outbox cancel ID` and `POST outbox/{id}/cancel`: drops a pending or
/// dead-lettered action; the row as it was. A refusal is a [`crate::store::OutboxRefusal`].
pub async fn cancel(store: &Handle, id: i64) -> anyhow::Result<OutboxRow> {
    store
        .call(move |s| s.outbox().outbox_cancel(id, &time::fmt(time::now())))
        .await
}

/// A transition of ticket `id`: its account resolved, checked against the workflow when queued.
async fn transition(
    config: &Config,
    store: &Handle,
    given: Option<&str>,
    id: i64,
    action: Action,
) -> Result<Prepared, QueueError> {
    match &action {
        Action::Create(_) => {
            return Err(QueueError::Invalid(format!(
                "a new ticket is queued as a create, not as a transition of ticket {id}"
            )));
        }
        Action::Hold { reason, .. } if reason.trim().is_empty() => {
            return Err(QueueError::Invalid(format!(
                "hold of ticket {id} needs a reason (--reason TEXT): the resident is told why the job waits"
            )));
        }
        _ => {}
    }
    let account = resolve(config, store, given, id).await?;
    let (acc, require_followups) = (account.clone(), config.push.require_followups_done);
    let plan: Plan = Box::new(move |f: &Facts| {
        action::check_transition(action, &acc, id, f, require_followups).map_err(refused)
    });
    Ok(Prepared {
        account,
        ticket: Some(id),
        attachments: vec![],
        plan,
    })
}

/// A visit booking of ticket `id`: its account resolved; refused when queued if the ticket
/// has a live visit (named by its booking guid and local time) or a booking in the outbox, or
/// could not be acted on (not mirrored, left, finished).
async fn book(
    config: &Config,
    store: &Handle,
    given: Option<&str>,
    id: i64,
    booking: Box<VisitBooking>,
) -> Result<Prepared, QueueError> {
    let account = resolve(config, store, given, id).await?;
    let acc = account.clone();
    let tz = crate::slotti::zone(config);
    let plan: Plan = Box::new(move |f: &Facts| {
        if let Some(v) = &f.active_visit {
            return Err(refused(anyhow::anyhow!(
                "ticket {id} in account {acc} already has a visit: Slotti booking {} on {}; a booked visit is moved or cancelled in Slotti, and huoltosync follows",
                v.booking_guid,
                crate::engine::visits::message::describe(v.start, v.end, tz)
            )));
        }
        if let Some(o) = f.queued_booking {
            return Err(refused(anyhow::anyhow!(
                "ticket {id} in account {acc} already has a visit booking queued as outbox action #{o}: see `huoltosync outbox`"
            )));
        }
        action::check_transition(Action::Book(booking), &acc, id, f, false).map_err(refused)
    });
    Ok(Prepared {
        account,
        ticket: Some(id),
        attachments: vec![],
        plan,
    })
}

/// Queues what tells Tampuuri about a visit change (`change_id`) of ticket `ticket` in
/// `account`, in one transaction with marking the change told: `plan` decides the actions
/// from the ticket's facts (see [`crate::engine::visits::tell`]), or why the change is not told. Like
/// [`queue`], it goes through the store's enqueue path and logs each row with `requested_by`.
pub async fn queue_tell(
    config: &Config,
    store: &Handle,
    account: &str,
    ticket: i64,
    change_id: i64,
    requested_by: &str,
    plan: impl FnOnce(&Facts) -> Result<Vec<Action>, String> + Send + 'static,
) -> anyhow::Result<crate::store::TellQueued> {
    let now = time::now();
    let deadline = chrono::Duration::from_std(config.push.deadline)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| anyhow::anyhow!("[push] deadline_hours is out of range"))?;
    let (name, by) = (account.to_owned(), requested_by.to_owned());
    let done = store
        .call(move |s| {
            s.outbox().enqueue_tell(
                &name,
                ticket,
                change_id,
                &time::fmt(now),
                &time::fmt(deadline),
                Some(&by),
                plan,
            )
        })
        .await?;
    if let crate::store::TellQueued::Queued(rows) = &done {
        for row in rows {
            tracing::info!(account = %account, outbox_id = row.id, kind = %row.kind, ticket, change_id, requested_by, "Action queued.");
        }
    }
    Ok(done)
}

/// A new ticket: its attachments read, its account resolved (given, or its parent's),
/// checked and completed from its parent when queued.
async fn create(
    config: &Config,
    store: &Handle,
    given: Option<&str>,
    req: CreateRequest,
    sources: Vec<AttachmentSource>,
) -> Result<Prepared, QueueError> {
    let attachments = read_attachments(sources, config.push.max_attachment_bytes)?;
    let account = match (given, req.parent_id) {
        (Some(a), _) => known(config, a)?,
        (None, Some(p)) => resolve(config, store, None, p).await?,
        (None, None) => {
            return Err(QueueError::Invalid(
                "task new needs --account NAME (or --parent ID of a ticket in one account)".into(),
            ));
        }
    };
    let contractor = config
        .account(&account)
        .map(|a| a.contractor_id)
        .unwrap_or_default();
    let (acc, parent) = (account.clone(), req.parent_id);
    let plan: Plan =
        Box::new(move |f: &Facts| action::check_create(req, &acc, contractor, f).map_err(refused));
    Ok(Prepared {
        account,
        ticket: parent,
        attachments,
        plan,
    })
}

/// A check's error as a [`QueueError::Refused`], carried through the store's `anyhow` error.
fn refused(e: anyhow::Error) -> anyhow::Error {
    QueueError::Refused(format!("{e:#}")).into()
}

/// Every attachment read and bounded, in order; the first problem refuses them all. A file name
/// over [`action::MAX_FILE_NAME_BYTES`] is a bad request, refused before anything is read.
fn read_attachments(
    sources: Vec<AttachmentSource>,
    max_bytes: u64,
) -> Result<Vec<Attachment>, QueueError> {
    for source in &sources {
        let name = match source {
            AttachmentSource::Path(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            AttachmentSource::Bytes { file_name, .. } => action::sent_file_name(file_name),
        };
        action::check_file_name(name.as_deref().unwrap_or("")).map_err(QueueError::Invalid)?;
    }
    sources
        .into_iter()
        .map(|source| match source {
            AttachmentSource::Path(p) => action::read_attachment(&p, max_bytes),
            AttachmentSource::Bytes {
                file_name,
                content_type,
                bytes,
            } => {
                action::attachment_from_bytes(&file_name, content_type.as_deref(), bytes, max_bytes)
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|e| QueueError::Attachment(format!("{e:#}")))
}

/// The configured account called `name`.
fn known(config: &Config, name: &str) -> Result<String, QueueError> {
    match config.account(name) {
        Some(a) => Ok(a.name.clone()),
        None => Err(QueueError::Invalid(format!(
            "--account {name:?} is not in the config (accounts: {})",
            names(config)
        ))),
    }
}

fn names(config: &Config) -> String {
    config
        .accounts
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The account of ticket `id`: the one given, or the only configured account whose mirror
/// holds it, or the only account configured.
pub(crate) async fn resolve(
    config: &Config,
    store: &Handle,
    given: Option<&str>,
    id: i64,
) -> Result<String, QueueError> {
    if let Some(a) = given {
        return known(config, a);
    }
    let holding: Vec<String> = store
        .call(move |s| s.outbox().accounts_holding(id))
        .await?
        .into_iter()
        .filter(|a| config.account(a).is_some())
        .collect();
    match holding.as_slice() {
        [one] => Ok(one.clone()),
        [] if config.accounts.len() == 1 => Ok(config.accounts[0].name.clone()),
        [] => Err(QueueError::Refused(format!(
            "ticket {id} is not in the mirror of any account ({}): check the id, or run `huoltosync run --once` first",
            names(config)
        ))),
        many => Err(QueueError::Invalid(format!(
            "ticket {id} exists in several accounts: {}; say which with --account NAME",
            many.join(", ")
        ))),
    }
}
