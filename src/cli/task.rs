//! `huoltosync task …` (queue an action) and `huoltosync outbox …` (look at and manage the
//! queue). Every queued action is validated against the mirror and written with its outbox
//! row in one transaction; nothing is queued when a check fails.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::escape::esc;
use crate::action::{self, Action, CreateRequest};
use crate::config::Config;
use crate::store::{Handle, OutboxRow};
use crate::tampuuri::Api;
use crate::time;

#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    pub action: TaskAction,
}

impl TaskArgs {
    /// `--now`: the action is pushed at once, so the command calls Tampuuri.
    pub fn pushes_now(&self) -> bool {
        match &self.action {
            TaskAction::Accept { common, .. }
            | TaskAction::Hold { common, .. }
            | TaskAction::Done { common, .. }
            | TaskAction::New { common, .. } => common.now,
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

/// Decides the action to queue from the facts read in the enqueue transaction.
type Plan = Box<dyn FnOnce(&action::Facts) -> anyhow::Result<Action> + Send>;

/// What a task command queues: its options, the account, the ticket, attachments, the check.
type Queued = (Common, String, Option<i64>, Vec<action::Attachment>, Plan);

/// A transition on ticket `id`: its account resolved, checked against the workflow when queued.
async fn transition(
    config: &Config,
    store: &Handle,
    common: Common,
    id: i64,
    action: Action,
) -> anyhow::Result<Queued> {
    let account = resolve(config, store, common.account.as_deref(), id).await?;
    let (acc, require_followups) = (account.clone(), config.push.require_followups_done);
    let plan: Plan = Box::new(move |f: &action::Facts| {
        action::check_transition(action, &acc, id, f, require_followups)
    });
    Ok((common, account, Some(id), vec![], plan))
}

pub async fn task(config: &Config, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let store = Handle::open(config.store.path.clone()).await?;
    let (common, account, ticket, attachments, plan): Queued = match args.action {
        TaskAction::Accept {
            id,
            comment,
            common,
        } => transition(config, &store, common, id, Action::Accept { comment }).await?,
        TaskAction::Hold {
            id,
            reason,
            notify,
            common,
        } => {
            let reason = reason.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
                super::usage(format!("hold of ticket {id} needs a reason (--reason TEXT): the resident is told why the job waits"))
            })?;
            transition(
                config,
                &store,
                common,
                id,
                Action::Hold {
                    reason,
                    notify: notify.value(),
                },
            )
            .await?
        }
        TaskAction::Done {
            id,
            comment,
            notify,
            common,
        } => {
            transition(
                config,
                &store,
                common,
                id,
                Action::Done {
                    comment,
                    notify: notify.value(),
                },
            )
            .await?
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
            let files = attach
                .iter()
                .map(|p| action::read_attachment(p, config.push.max_attachment_bytes))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let account = match (common.account.as_deref(), parent) {
                (Some(a), _) => known(config, a)?,
                (None, Some(p)) => resolve(config, &store, None, p).await?,
                (None, None) => {
                    return Err(super::usage(
                        "task new needs --account NAME (or --parent ID of a ticket in one account)",
                    ));
                }
            };
            let contractor = config
                .account(&account)
                .map(|a| a.contractor_id)
                .unwrap_or_default();
            let acc = account.clone();
            let req = CreateRequest {
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
            (
                common,
                account,
                parent,
                files,
                Box::new(move |f: &action::Facts| action::check_create(req, &acc, contractor, f)),
            )
        }
    };
    let now = time::now();
    let deadline = now + chrono::Duration::from_std(config.push.deadline)?;
    let row = store
        .call(move |s| {
            s.enqueue(
                &account,
                ticket,
                &time::fmt(now),
                &time::fmt(deadline),
                &attachments,
                plan,
            )
        })
        .await?;
    if common.json {
        outln!("{}", serde_json::to_string_pretty(&queued_json(&row))?)?;
    } else {
        outln!("queued #{}: {}", row.id, describe(&row))?;
    }
    if !common.now {
        return Ok(ExitCode::SUCCESS);
    }
    let _lock = match crate::lock::StoreLock::try_acquire(&config.store.path)? {
        Ok(l) => l,
        Err(busy) => {
            outln!("not pushed now: {busy}; it goes out with that cycle or the next")?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let api = Api::new(config)?;
    let report = crate::push::push_pending(config, &api, &store).await?;
    print_push(&report)?;
    let ours_dead = report.dead.iter().any(|(r, _)| r.id == row.id);
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

/// `accept ticket 1003 in sim-1 (Avoin → Vastaanotettu)`, its text escaped for a terminal.
pub fn describe(row: &OutboxRow) -> String {
    let (action, account) = (row.action.describe(), &row.account);
    let (action, account) = (esc(&action), esc(account));
    match (&row.action, row.ticket_id) {
        (Action::Create(_), _) => {
            let files = if row.attachments > 0 {
                format!(", {} attachment(s)", row.attachments)
            } else {
                String::new()
            };
            format!("{action} in {account}{files}")
        }
        (_, Some(id)) => format!(
            "{action} ticket {id} in {account} ({} → {})",
            esc(row.from_state.as_deref().unwrap_or("?")),
            esc(row.expected_state.as_deref().unwrap_or("?"))
        ),
        (_, None) => format!("{action} in {account}"),
    }
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

fn known(config: &Config, name: &str) -> anyhow::Result<String> {
    match config.account(name) {
        Some(a) => Ok(a.name.clone()),
        None => Err(super::usage(format!(
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
/// holds it.
async fn resolve(
    config: &Config,
    store: &Handle,
    given: Option<&str>,
    id: i64,
) -> anyhow::Result<String> {
    if let Some(a) = given {
        return known(config, a);
    }
    let holding: Vec<String> = store
        .call(move |s| s.accounts_holding(id))
        .await?
        .into_iter()
        .filter(|a| config.account(a).is_some())
        .collect();
    match holding.as_slice() {
        [one] => Ok(one.clone()),
        [] if config.accounts.len() == 1 => Ok(config.accounts[0].name.clone()),
        [] => anyhow::bail!(
            "ticket {id} is not in the mirror of any account ({}): check the id, or run `huoltosync run --once` first",
            names(config)
        ),
        many => Err(super::usage(format!(
            "ticket {id} exists in several accounts: {}; say which with --account NAME",
            many.join(", ")
        ))),
    }
}

pub async fn outbox(config: &Config, args: OutboxArgs) -> anyhow::Result<ExitCode> {
    let store = Handle::open_existing(config.store.path.clone()).await?;
    match args.command {
        Some(OutboxCommand::Retry { id }) => {
            let now = time::now();
            let deadline = now + chrono::Duration::from_std(config.push.deadline)?;
            let row = store
                .call(move |s| s.outbox_retry(id, &time::fmt(now), &time::fmt(deadline)))
                .await?;
            outln!(
                "re-queued #{}: {} (it goes out with the next push)",
                row.id,
                describe(&row)
            )?;
        }
        Some(OutboxCommand::Cancel { id }) => {
            let row = store
                .call(move |s| s.outbox_cancel(id, &time::fmt(time::now())))
                .await?;
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
