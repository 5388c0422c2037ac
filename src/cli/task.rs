//! `huoltosync task …` (queue an action) and `huoltosync outbox …` (look at and manage the
//! queue): their arguments and what they print. Queueing itself is [`crate::engine::queue`]: every
//! action is validated against the mirror and written with its outbox row in one transaction;
//! nothing is queued when a check fails.

use std::process::ExitCode;

use serde_json::json;

pub use super::args::{BookArgs, Common, Notify, OutboxArgs, OutboxCommand, TaskAction, TaskArgs};
pub use crate::cli::report::describe;
use crate::config::Config;
use crate::domain::action::{Action, CreateRequest};
use crate::domain::escape::esc;
use crate::engine::queue::{self, AttachmentSource, QueueError, QueueRequest, Task};
use crate::store::{Handle, OutboxRow};
use crate::tampuuri::Api;

impl TaskArgs {
    /// `--now`: the action is pushed at once, so the command calls Tampuuri; `book` always
    /// calls Slotti. Either needs the config's secrets.
    pub fn pushes_now(&self) -> bool {
        match &self.action {
            TaskAction::Accept { common, .. }
            | TaskAction::Hold { common, .. }
            | TaskAction::Done { common, .. }
            | TaskAction::New { common, .. } => common.now,
            TaskAction::Book(_) => true,
        }
    }
}

impl Notify {
    fn value(&self) -> bool {
        !self.no_notify
    }
}

impl TaskAction {
    /// The library's request for this command (`queue::queue` checks it), and its options.
    fn into_request(self) -> Option<(QueueRequest, Common)> {
        let (task, common) = match self {
            TaskAction::Accept {
                id,
                comment,
                common,
            } => (transition(id, Action::Accept { comment }), common),
            TaskAction::Hold {
                id,
                reason,
                notify,
                common,
            } => {
                // No `--reason` is an empty reason, which the queue refuses with the wording
                // that names `--reason`.
                let reason = reason.unwrap_or_default();
                let notify = notify.value();
                (transition(id, Action::Hold { reason, notify }), common)
            }
            TaskAction::Done {
                id,
                comment,
                notify,
                common,
            } => {
                let notify = notify.value();
                (transition(id, Action::Done { comment, notify }), common)
            }
            TaskAction::New {
                parent,
                title,
                description,
                details,
                cost_centre,
                space,
                room,
                urgency,
                assignee,
                attach,
                common,
            } => {
                let ticket = CreateRequest {
                    parent_id: parent,
                    cost_centre_id: cost_centre,
                    space_id: space,
                    room_id: room,
                    title,
                    description,
                    details,
                    urgency,
                    assignee_id: assignee,
                };
                let attachments = attach.into_iter().map(AttachmentSource::Path).collect();
                let task = Task::Create {
                    ticket,
                    attachments,
                };
                (task, common)
            }
            // Booking asks Slotti first: see `book`.
            TaskAction::Book(_) => return None,
        };
        let request = QueueRequest {
            account: common.account.clone(),
            task,
            requested_by: Some("cli".into()),
        };
        Some((request, common))
    }
}

fn transition(ticket: i64, action: Action) -> Task {
    Task::Transition { ticket, action }
}

/// A refusal as the command reports it: bad requests are bad usage (exit 2), the rest fail
/// (exit 1).
fn refusal(e: QueueError) -> anyhow::Error {
    match e {
        QueueError::Invalid(m) => super::usage(m),
        QueueError::Failed(e) => e,
        other => other.into(),
    }
}

/// A queued booking as `task book` reports it: the visit's start on the wall clock of
/// `[slotti] timezone` (`tz`), named, where the outbox's own description gives UTC.
fn describe_booking(
    row: &OutboxRow,
    booking: &crate::domain::action::VisitBooking,
    slot: &crate::domain::action::BookedSlot,
    tz: chrono_tz::Tz,
) -> String {
    format!(
        "book a visit ({:?}, {} {}, {}) for ticket {} in {}",
        esc(&booking.service.name),
        slot.start.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        tz.name(),
        esc(booking
            .technician_name(&slot.resource_guid)
            .unwrap_or("a technician")),
        row.ticket_id
            .map_or_else(|| "?".to_owned(), |id| id.to_string()),
        esc(&row.account)
    )
}

/// `huoltosync task …`: queues the action, prints it, and with `--now` pushes at once.
pub async fn task(config: &Config, args: TaskArgs) -> anyhow::Result<ExitCode> {
    if let TaskAction::Book(book_args) = args.action {
        return book(config, book_args).await;
    }
    let store = Handle::open(config.store.path.clone()).await?;
    let Some((request, common)) = args.action.into_request() else {
        anyhow::bail!("task book is queued by `book`");
    };
    let row = queue::queue(config, &store, request)
        .await
        .map_err(refusal)?;
    if common.json {
        outln!("{}", serde_json::to_string_pretty(&queued_json(&row))?)?;
    } else {
        outln!("queued #{}: {}", row.id, describe(&row))?;
    }
    if !common.now {
        return Ok(ExitCode::SUCCESS);
    }
    push_now(config, &store, row.id).await
}

/// `task book`: [`crate::engine::visits::book::book`] (the board's path too) with the command's
/// options; prints the five free times (`--dry-run`) or the queued booking.
async fn book(config: &Config, args: BookArgs) -> anyhow::Result<ExitCode> {
    let Some(slotti) = &config.slotti else {
        return Err(super::usage(format!(
            "{}: `task book` books in Slotti, and the config has no [slotti] section (see config.example.toml)",
            config.source.display()
        )));
    };
    let tz = slotti.timezone;
    let time =
        |flag: &str, v: &Option<String>| -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
            v.as_deref()
                .map(|s| {
                    crate::engine::visits::book::parse_time(s, tz)
                        .map_err(|e| super::usage(format!("--{flag}: {e}")))
                })
                .transpose()
        };
    let opts = crate::engine::visits::book::BookOptions {
        service: args.service.clone(),
        technicians: args.technician.clone(),
        after: time("after", &args.after)?,
        before: time("before", &args.before)?,
        at: time("at", &args.at)?,
        overrides: crate::engine::visits::resident::Overrides {
            name: args.name.clone(),
            phone: args.phone.clone(),
            email: args.email.clone(),
        },
    };
    let store = Handle::open(config.store.path.clone()).await?;
    let request = crate::engine::visits::book::BookRequest {
        account: args.common.account.clone(),
        ticket: args.id,
        opts,
        dry_run: args.dry_run,
        requested_by: "cli".into(),
    };
    // The command's one exchange.
    let exchange = crate::remote::Exchange::new(config)?;
    let booked = match crate::engine::visits::book::book(config, &exchange, &store, request).await {
        Ok(b) => b,
        Err(crate::engine::visits::book::BookError::Refused(e)) => return Err(refusal(e)),
        Err(crate::engine::visits::book::BookError::Slotti(e)) => return Err(e),
    };
    let row = match booked {
        crate::engine::visits::book::Booked::Free { booking, slots } => {
            if args.common.json {
                let v: Vec<serde_json::Value> = slots
                    .iter()
                    .map(|s| {
                        json!({
                            "start": s.start, "end": s.end,
                            "technician": booking.technician_name(&s.resource_guid),
                            "technician_guid": s.resource_guid,
                            "service": booking.service.name,
                        })
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                for s in &slots {
                    outln!(
                        "{}",
                        esc(&crate::engine::visits::book::describe_slot(&booking, s, tz))
                    )?;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        crate::engine::visits::book::Booked::Queued { row, booking, slot } => {
            if !args.common.json {
                outln!(
                    "queued #{}: {}",
                    row.id,
                    describe_booking(&row, &booking, &slot, tz)
                )?;
            }
            row
        }
    };
    if args.common.json {
        outln!("{}", serde_json::to_string_pretty(&queued_json(&row))?)?;
    }
    if !args.common.now {
        return Ok(ExitCode::SUCCESS);
    }
    push_now(config, &store, row.id).await
}

/// `--now`: pushes what is due, unless a cycle holds the store lock; fails when the action
/// just queued was dead-lettered.
async fn push_now(config: &Config, store: &Handle, queued: i64) -> anyhow::Result<ExitCode> {
    let _lock = match crate::service::lock::StoreLock::try_acquire(&config.store.path)? {
        Ok(l) => l,
        Err(busy) => {
            outln!("not pushed now: {busy}; it goes out with that cycle or the next")?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let api = Api::new(config)?;
    let report = crate::engine::push::push_pending(config, &api, store).await?;
    print_push(&report)?;
    let ours_dead = report.dead.iter().any(|(r, _)| r.id == queued);
    Ok(if ours_dead {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn queued_json(row: &OutboxRow) -> serde_json::Value {
    json!({
        "outbox_id": row.id,
        "account": row.account,
        "ticket": row.ticket_id,
        "parent": row.queue_ticket.filter(|_| row.kind == "create"),
        "action": row.kind,
        "from_state": row.from_state,
        "expected_state": row.expected_state,
        "status": row.status,
        "attachments": row.attachments,
    })
}

/// Prints what a push pass did; dead letters name the action and why.
pub fn print_push(report: &crate::engine::push::PushReport) -> std::io::Result<()> {
    if report.delivered.is_empty() && report.dead.is_empty() && report.pending == 0 {
        return Ok(());
    }
    outln!(
        "push: {} delivered, {} dead-lettered, {} pending, {} API calls",
        report.delivered.len(),
        report.dead.len(),
        report.pending,
        report.api_calls
    )?;
    for (row, why) in &report.dead {
        outln!(
            "  dead-lettered #{}: {}: {}",
            row.id,
            describe(row),
            esc(why)
        )?;
    }
    Ok(())
}

pub async fn outbox(config: &Config, args: OutboxArgs) -> anyhow::Result<ExitCode> {
    let store = Handle::open_existing(config.store.path.clone()).await?;
    match args.command {
        Some(OutboxCommand::Retry { id }) => {
            let row = queue::retry(config, &store, id).await?;
            outln!(
                "re-queued #{}: {} (it goes out with the next push)",
                row.id,
                describe(&row)
            )?;
        }
        Some(OutboxCommand::Cancel { id }) => {
            let row = queue::cancel(&store, id).await?;
            outln!(
                "cancelled #{}: {} (was {}, {} attempt(s){}); it will not be sent",
                row.id,
                describe(&row),
                esc(&row.status),
                row.attempts,
                if row.attachments > 0 {
                    format!(", {} attachment(s) dropped", row.attachments)
                } else {
                    String::new()
                }
            )?;
        }
        None => {
            let rows = store
                .call(move |s| s.outbox().outbox_list(args.failed))
                .await?;
            if args.json {
                let v: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|r| {
                        let mut j = serde_json::to_value(r).unwrap_or_default();
                        j["action"] = serde_json::to_value(&r.action).unwrap_or_default();
                        j
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                for r in &rows {
                    outln!(
                        "#{:<5} {:<8} {:<10} attempts {:<3} {}{}",
                        r.id,
                        esc(&r.status),
                        esc(&r.account),
                        r.attempts,
                        describe(r),
                        r.last_error
                            .as_deref()
                            .map(|e| format!("\n        last error: {}", esc(e)))
                            .unwrap_or_default()
                    )?;
                }
                eprintln!("{} action(s)", rows.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
