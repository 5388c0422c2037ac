//! Every subcommand's arguments: the clap definitions alone, with nothing but `clap`, `std`
//! and the two library items taken from the parent module in scope, so that `build.rs` compiles this very file to generate the man page `huoltosync(1)`
//! and the shell completions (`clap_mangen`, `clap_complete`) from the definitions the binary
//! parses with. What each command does is in the modules beside this one. The simulator's
//! commands (`sim`, `demo`) are behind the `sim` feature, which a build script never has: the
//! generated pages describe the packaged binary, built without it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

// The library's (`config::DEFAULT_CONFIG_PATH`, `telemetry::LogFormat`), re-exported by the
// `cli` module for this file; `build.rs` declares its own stand-ins for them.
pub use super::{DEFAULT_CONFIG_PATH, LogFormat};

/// Mirrors the Visma Tampuuri service tickets assigned to a maintenance contractor into SQLite.
#[derive(Debug, Parser)]
#[command(name = "huoltosync", version, about, long_about = None)]
pub struct Cli {
    /// The config file (TOML).
    #[arg(long, global = true, value_name = "PATH", env = "HUOLTOSYNC_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Log filter, e.g. `debug` or `huoltosync=debug,info` (default: $RUST_LOG, else info).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sync every account: `run --once` runs one cycle and exits.
    Run(RunArgs),
    /// List mirrored tickets (those in the open set unless --all).
    Tasks(TasksArgs),
    /// Show each account's last sync, open tickets and API calls.
    Status(JsonArg),
    /// Validate the config file; --online also tries each account's credentials.
    CheckConfig(CheckArgs),
    /// Queue an action on a ticket: accept, hold, done, or a new (follow-up) ticket.
    Task(TaskArgs),
    /// List queued and dead-lettered actions; retry or cancel one.
    Outbox(OutboxArgs),
    /// Run the Tampuuri simulator on loopback until killed.
    #[cfg(feature = "sim")]
    Sim(super::SimArgs),
    /// Run the built-in demo against an embedded simulator; needs no config.
    #[cfg(feature = "sim")]
    Demo(super::demo::DemoArgs),
    /// API calls and what they cost per account and customer, projected, under each package.
    Cost(CostArgs),
    /// Erase personal data of tickets that left long enough ago; trim old bookkeeping rows.
    Purge(PurgeArgs),
    /// List the outgoing event subscribers (cursor, lag, status); revive a dead one.
    Subscribers(SubscribersArgs),
    /// Serve the HTTP API (`[api]`) alone: no polling, no pushing, no Tampuuri secrets read.
    Serve,
    /// Slotti, the calendar visits are booked in (`[slotti]`): manage its webhook registration.
    Slotti(SlottiArgs),
    /// Print the HTTP API's OpenAPI 3.1 document (as committed in docs/openapi.json).
    Openapi,
    /// List the technician visits booked in Slotti, with their history.
    Visits(VisitsArgs),
    /// The web board's users (`board passwd`) and one-time sign-in links (`board login-link`).
    Board(BoardArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run one cycle (push, poll every account, push) and exit: 0 only if every account synced
    /// and no action was dead-lettered; 75 if another process holds the store lock.
    #[arg(long)]
    pub once: bool,
    /// With --once: wait up to this many seconds for the store lock.
    #[arg(long, value_name = "SECS", default_value_t = 0, requires = "once")]
    pub wait: u64,
}

#[derive(Debug, Args)]
pub struct CostArgs {
    /// The month, YYYY-MM (default: this month, Helsinki time).
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Only count what would be erased and deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Only this account.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Only tickets in this state (e.g. Avoin).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Also tickets that left the open set.
    #[arg(long)]
    pub all: bool,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also call each account once (one selaa page; one more per extra state with
    /// state_filter = "per_state"): credentials, contractor id, and what the server really does.
    #[arg(long)]
    pub online: bool,
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    pub action: TaskAction,
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
        #[arg(long, value_name = "ID", required_unless_present = "parent")]
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

#[derive(Debug, Args)]
pub struct BoardArgs {
    #[command(subcommand)]
    pub command: BoardCommand,
}

#[derive(Debug, Subcommand)]
pub enum BoardCommand {
    /// Print a [[board.users]] entry (an Argon2id hash of the password) to add to the config.
    /// The password is asked on the terminal, or read from stdin with its repeat on the next
    /// line.
    Passwd {
        /// The user's name (shown on the board and recorded with the user's actions).
        name: String,
        /// `dispatcher` (every action) or `viewer` (read only; the default, as for an entry
        /// without `role`).
        #[arg(long, value_name = "ROLE", default_value = "viewer")]
        role: String,
    },
    /// Print a one-time sign-in URL, valid for 5 minutes (for the first sign-in, or a phone).
    LoginLink {
        /// The user it signs in (default: the first dispatcher in [[board.users]]).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct SlottiArgs {
    #[command(subcommand)]
    pub command: SlottiCommand,
}

#[derive(Debug, Subcommand)]
pub enum SlottiCommand {
    /// Slotti's webhook registration (deliveries of booking.created/modified/deleted).
    #[command(subcommand)]
    Webhook(WebhookCommand),
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register a webhook for booking.created, booking.modified and booking.deleted, signed with
    /// `[slotti.webhook] secret` (and Basic when configured); prints its id.
    Register {
        /// Where Slotti delivers (default: `[slotti.webhook] public_url`).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// List the registered webhooks.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a registered webhook.
    Delete {
        /// The webhook's guid (as `list` shows it).
        guid: String,
    },
}

#[derive(Debug, Args)]
pub struct SubscribersArgs {
    #[command(subcommand)]
    pub command: Option<SubscribersCommand>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// Revive a dead subscriber: the daemon delivers again from the event it stopped on.
    Retry {
        /// The subscriber's name (`name` in `[[api.subscribers]]`, or as `subscribers` lists it).
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct VisitsArgs {
    /// Visits that end after this: a day (YYYY-MM-DD, local) or an RFC 3339 time (default: the
    /// start of today).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Visits that start before the end of this day (YYYY-MM-DD, local) or before this RFC 3339
    /// time (default: no end).
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Only this account.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Print a JSON array (times in UTC, each visit with its history).
    #[arg(long)]
    pub json: bool,
}
