//! huoltosync mirrors the Visma Tampuuri service tickets (ilmoitukset) assigned to a Finnish
//! maintenance contractor into a local SQLite store, for many Tampuuri accounts at once, at the
//! fewest billed API calls the job allows.
//!
//! # Layout
//!
//! - [`config`]: the TOML file, validated in full, secrets that never print.
//! - [`model`]: tickets and their workflow states, as the rest of the crate sees them.
//! - [`action`]: the contractor's actions (accept, hold, done, create) and the workflow rules.
//! - [`backoff`]: the one exponential backoff rule every retry uses.
//! - [`remote`]: the one exchange for every outgoing HTTP call (pools, throttle, timeouts, retries
//!   and the `Retry-After` cap, metering, secret scrubbing).
//! - [`tampuuri`]: the API boundary (requests, wire types and what an answer means stay here).
//! - [`slotti`]: the Slotti calendar: its `[slotti]` config and its API client (wire types stay
//!   there too).
//! - [`store`]: SQLite, the only place with SQL; schema migrations come from `sql/`.
//! - [`sync`]: the mirror logic: sweep, stage, confirm departures, apply once.
//! - [`queue`]: queueing an action, the one function the CLI, the demo and the HTTP API call.
//! - [`push`]: the outbox relay: queued actions delivered exactly once in effect, in order, each
//!   target (Tampuuri actions, Slotti bookings) by its relay behind one trait.
//! - [`retention`]: the purge's retention values, from the config.
//! - [`report`]: how a sync's result and a queued action read to a person; [`escape`]: text
//!   from outside made safe for a terminal.
//! - [`outgoing`]: signed change-feed events POSTed to subscribers, at least once, in order.
//! - [`service`]: one cycle, and the daemon as an event loop (`service::daemon`) with its
//!   production event sources (cron ticks, signals, the webhook listener, systemd).
//! - [`sim`]: the Tampuuri simulator used by tests, benchmarks and the demo (with [`demo`], behind
//!   the default cargo feature `sim`).
//! - [`api`]: the HTTP API for the contractor's systems, on the accept loop of [`listen`];
//!   [`status`]: what `status` and `cost` report, for the CLI and the API; [`board`]: the
//!   dispatcher's web board on the API's listener (sign-in, pages, live updates).
//! - [`visits`]: visits booked in Slotti (booking, slot choice, the customer, telling
//!   Tampuuri, the reconciliation and the processing of Slotti's webhook deliveries).
//! - [`webhook`]: the webhook listener and the processing of its events; [`schedule`]: cron
//!   schedules in one zone; [`lock`]: the store lock; [`cost`]: the monthly cost report;
//!   [`metrics`]: Prometheus metrics.
//! - [`cli`]: the commands; [`demo`]: the built-in demo; [`telemetry`]: logging; [`time`]: clocks.
//!
//! `ARCHITECTURE.md` at the repository root has the bird's-eye view and the invariants.

/// `print!` that returns an `io::Result` rather than panicking: output to a closed pipe
/// (`huoltosync tasks | head`) becomes an error that `cli::main` turns into a quiet exit 0.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($t)*)
    }};
}

/// `println!` that returns an `io::Result` rather than panicking (see `out!`).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)
    }};
}

pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod faces;
pub mod remote;
pub mod service;
#[cfg(feature = "sim")]
pub mod sim;
pub mod slotti;
pub mod store;
pub mod tampuuri;
