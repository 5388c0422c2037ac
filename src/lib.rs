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
//! - [`tampuuri`]: the API boundary (HTTP client, throttle, retries, metering; wire types stay here).
//! - [`store`]: SQLite, the only place with SQL; schema migrations come from `sql/`.
//! - [`sync`]: the mirror logic: sweep, stage, confirm departures, apply once.
//! - [`push`]: the outbox relay: queued actions delivered exactly once in effect, in order.
//! - [`sim`]: the Tampuuri simulator used by tests, benchmarks and the demo.
//! - [`cli`]: the commands; [`demo`]: the built-in demo; [`telemetry`]: logging; [`time`]: clocks.
//!
//! `ARCHITECTURE.md` at the repository root has the bird's-eye view and the invariants.

pub mod action;
pub mod api;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod cost;
pub mod demo;
pub mod listen;
pub mod lock;
pub mod metrics;
pub mod model;
pub mod push;
pub mod schedule;
pub mod service;
pub mod sim;
pub mod store;
pub mod sync;
pub mod tampuuri;
pub mod telemetry;
pub mod time;
pub mod webhook;
