//! `huoltosync task …` (queue an action) and `huoltosync outbox …` (look at and manage the
//! queue): their arguments and what they print. Queueing itself is [`crate::queue`]: every
//! action is validated against the mirror and written with its outbox row in one transaction;
//! nothing is queued when a check fails.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::action::{Action, CreateRequest};
use crate::config::Config;
use crate::escape::esc;
use crate::queue::{self, AttachmentSource, QueueError, QueueRequest, Task};
pub use crate::report::describe;
use crate::store::{Handle, OutboxRow};
use crate::tampuuri::Api;

#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    pub action: TaskAction,
}

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

/// Options every task command takes.
#[derive(Debug, Args)]
pub struct Common {
    /// The Tampuuri account; may be left out when the ticket id is in one account only.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Push now instead of waiting for the next cycle.
    #[arg(long)]
    pub now: bool,
    /// Print the queued action as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Whether the resident and other parties are notified (default: yes).
#[derive(Debug, Args)]
pub struct Notify {
    /// Tell the resident and other parties (IlmoitaOsallisille); the default.
    #[arg(long, overrides_with = "no_notify")]
    pub notify: bool,
    /// Do not tell them.
    #[arg(long)]
    pub no_notify: bool,
}

impl Notify {
    fn value(&self) -> bool {
        !self.no_notify
    }
}

#[derive(Debug, Subcommand)]
pub enum TaskAction {
    /// Accept a ticket (vastaanota): from Avoin or Odottaa.
    Accept {
        /// Ticket id.
        id: i64,
        /// A comment to send with it.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Put an accepted ticket on hold (odotukseen), with the reason the resident is told.
    Hold {
        /// Ticket id.
        id: i64,
        /// Why the job waits (required; the resident is told).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        notify: Notify,
        #[command(flatten)]
        common: Common,
    },
    /// Mark a ticket done (kuittaatehdyksi); its follow-ups must be carried out first.
    Done {
        /// Ticket id.
        id: i64,
        /// A comment to send with it.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        #[command(flatten)]
        notify: Notify,
        #[command(flatten)]
        common: Common,
    },
    /// Create a ticket (a follow-up with --parent), with attachments (ilmoitukset/base64).
    New {
        /// Parent ticket: this one is follow-up work of it, and inherits its cost centre and space.
        #[arg(long, value_name = "ID")]
        parent: Option<i64>,
        /// Otsikko, at most 255 characters.
        #[arg(long)]
        title: String,
        /// TyotehtavanKuvaus, at most 8000 characters.
        #[arg(long)]
        description: String,
        /// TyotehtavanLisatiedot, at most 20000 characters (huoltosync appends a short marker).
        #[arg(long)]
        details: Option<String>,
        /// KustannuspaikkaId (required unless inherited from --parent).
        #[arg(long, value_name = "ID")]
        cost_centre: Option<i64>,
        /// TilaId (a space: apartment, sauna…).
        #[arg(long, value_name = "ID")]
        space: Option<i64>,
        /// HuoneId.
        #[arg(long, value_name = "ID")]
        room: Option<i64>,
        /// Kiireellisyys.
        #[arg(long)]
        urgency: Option<String>,
        /// TyonsuorittajaId; default: our own contractor id, so the ticket shows in our sweep.
        #[arg(long, value_name = "ID")]
        assignee: Option<i64>,
        /// A file to attach (repeatable); its type is guessed from the name.
        #[arg(long, value_name = "FILE")]
        attach: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Book a technician's visit in Slotti (`[slotti]`) for an open ticket: the first free time
    /// that meets the options; the resident is then told the time through Tampuuri.
    Book(BookArgs),
}

/// `task book`.
#[derive(Debug, Args)]
pub struct BookArgs {
    /// Ticket id.
    pub id: i64,
    /// The Slotti service, by name or guid; default: the matching `[[slotti.rules]]` entry's, else
    /// `[slotti] default_service`.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// A technician allowed (a Slotti resource, by name or guid; repeatable); default: the
    /// rule's, else any.
    #[arg(long, value_name = "NAME")]
    pub technician: Vec<String>,
    /// Start at or after TIME (2026-12-01T09:00 in `[slotti] timezone`, a date, or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub after: Option<String>,
    /// End at or before TIME.
    #[arg(long, value_name = "TIME")]
    pub before: Option<String>,
    /// Start exactly at TIME.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// The resident's name, instead of the ticket's reporter's.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The resident's phone number, instead of the reporter's.
    #[arg(long, value_name = "PHONE")]
    pub phone: Option<String>,
    /// The resident's e-mail address, instead of the reporter's.
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// Print the first five free times, one a line, and queue nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct OutboxArgs {
    #[command(subcommand)]
    pub command: Option<OutboxCommand>,
    /// Only dead-lettered actions.
    #[arg(long)]
    pub failed: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Re-queue a dead-lettered action (after fixing its cause).
    Retry {
        /// The action's outbox id (`#` in `huoltosync outbox`).
        id: i64,
    },
    /// Drop a pending or dead-lettered action; prints what was dropped.
    Cancel {
        /// The action's outbox id (`#` in `huoltosync outbox`).
        id: i64,
    },
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

/// `task book`: [`crate::slotti::book::book`] (the board's path too) with the command's
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
                    crate::slotti::book::parse_time(s, tz)
                        .map_err(|e| super::usage(format!("--{flag}: {e}")))
                })
                .transpose()
        };
    let opts = crate::slotti::book::BookOptions {
        service: args.service.clone(),
        technicians: args.technician.clone(),
        after: time("after", &args.after)?,
        before: time("before", &args.before)?,
        at: time("at", &args.at)?,
        overrides: crate::slotti::resident::Overrides {
            name: args.name.clone(),
            phone: args.phone.clone(),
            email: args.email.clone(),
        },
    };
    let store = Handle::open(config.store.path.clone()).await?;
    let request = crate::slotti::book::BookRequest {
        account: args.common.account.clone(),
        ticket: args.id,
        opts,
        dry_run: args.dry_run,
        requested_by: "cli".into(),
    };
    let booked = match crate::slotti::book::book(config, &store, request).await {
        Ok(b) => b,
        Err(crate::slotti::book::BookError::Refused(e)) => return Err(refusal(e)),
        Err(crate::slotti::book::BookError::Slotti(e)) => return Err(e),
    };
    let row = match booked {
        crate::slotti::book::Booked::Free { booking, slots } => {
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
                        esc(&crate::slotti::book::describe_slot(&booking, s, tz))
                    )?;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        crate::slotti::book::Booked::Queued { row, .. } => row,
    };
    if args.common.json {
        outln!("{}", serde_json::to_string_pretty(&queued_json(&row))?)?;
    } else {
        outln!("queued #{}: {}", row.id, describe(&row))?;
    }
    if !args.common.now {
        return Ok(ExitCode::SUCCESS);
    }
    push_now(config, &store, row.id).await
}

/// `--now`: pushes what is due, unless a cycle holds the store lock; fails when the action
/// just queued was dead-lettered.
async fn push_now(config: &Config, store: &Handle, queued: i64) -> anyhow::Result<ExitCode> {
    let _lock = match crate::lock::StoreLock::try_acquire(&config.store.path)? {
        Ok(l) => l,
        Err(busy) => {
            outln!("not pushed now: {busy}; it goes out with that cycle or the next")?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let api = Api::new(config)?;
    let report = crate::push::push_pending(config, &api, store).await?;
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
pub fn print_push(report: &crate::push::PushReport) -> std::io::Result<()> {
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
            let rows = store.call(move |s| s.outbox_list(args.failed)).await?;
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
