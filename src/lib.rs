//! huoltosync mirrors the Visma Tampuuri service tickets (ilmoitukset) assigned to a Finnish
//! maintenance contractor into a local SQLite store, for many Tampuuri accounts at once, at the
//! fewest billed API calls the job allows.
//!
//! # Layout
//!
//! One folder a part; the lines between them are held by `tests/it/boundary.rs`.
//!
//! - [`domain`]: tickets and their workflow states ([`domain::model`]), the contractor's actions
//!   and the rules they must pass ([`domain::action`]), the monthly cost ([`domain::cost`]),
//!   clocks ([`domain::time`]), text from outside made safe ([`domain::escape`]) and the one
//!   backoff rule ([`domain::backoff`]). It imports no integration, no config and no store.
//! - [`engine`]: the work. The mirror logic ([`engine::sync`]: sweep, stage, confirm departures,
//!   apply once), queueing an action ([`engine::queue`], the one function the CLI, the demo, the
//!   API and the board call), the outbox relay ([`engine::push`]: each target, Tampuuri actions
//!   and Slotti bookings, by its relay behind one trait), the visits booked in Slotti
//!   ([`engine::visits`]), the processing of webhook events ([`engine::webhook`]) and what
//!   `status` and `cost` report ([`engine::status`]). It imports nothing from the service or
//!   the faces.
//! - The integrations: [`remote`], the one exchange for every outgoing HTTP call (pools,
//!   throttle, timeouts, retries and the `Retry-After` cap, metering, secret scrubbing);
//!   [`tampuuri`] and [`slotti`], each a client and its wire format (the remote's field names
//!   stay there). Neither imports the store.
//! - [`store`]: SQLite, the only place with SQL, reached through its areas' handles; schema
//!   migrations come from `sql/`.
//! - [`config`]: the TOML file, every section read by one reader and validated in full,
//!   secrets that never print. It imports no face.
//! - [`faces`]: what answers or tells a network peer: the accept loop ([`faces::listen`]), the
//!   HTTP API ([`faces::api`]), the dispatcher's board ([`faces::board`]), the webhook listeners
//!   ([`faces::webhook`], which record and wake) and the signed events POSTed to subscribers
//!   ([`faces::outgoing`]). No face imports `tampuuri`.
//! - [`service`]: one cycle, the daemon as an event loop with its event sources, the runtime
//!   that owns the running parts (config, exchange, store) across reloads, cron schedules, the
//!   store lock, retention, metrics and logging.
//! - [`cli`]: the commands, how results read to a person, and the built-in demo.
//! - [`sim`]: the Tampuuri and Slotti simulators used by tests, benchmarks and the demo (behind
//!   the default cargo feature `sim`).
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
