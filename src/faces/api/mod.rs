//! The HTTP API under `/api/v1/`: the mirror, the change feed and the outbox for the
//! contractor's own systems, served by the daemon (`[api] listen`) or alone (`huoltosync
//! serve`).
//!
//! - Serving: [`serve`] runs an axum router on the accept loop shared with the webhook
//!   listener ([`crate::faces::listen`]: header timeout, connection cap); bodies are read with a timeout
//!   and one byte budget ([`crate::faces::listen::read_body`]) up to `[api] max_body_bytes`. A request
//!   uses the store only: it never calls Tampuuri (work is queued for the push, [`write`](mod@write)).
//! - Auth: `Authorization: Bearer <token>`, compared in constant time with every configured
//!   token; missing or wrong: 401 with `WWW-Authenticate: Bearer`. Each token has a scope;
//!   [`Caller::require`] refuses a read token on an endpoint that queues work (403). Tokens are
//!   never logged; the token's name is the caller's identity.
//! - Errors are `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`.
//! - The change feed (`GET changes`) reads the `feed` table (written by triggers, gap-free
//!   `seq`); a long poll (`wait`) is woken by [`FeedWatch`], which probes the store's last `seq`
//!   every [`PROBE_EVERY`] while someone waits (and not at all while nobody does), so a commit
//!   by any process (the daemon's own sync, or another process writing the store beside `serve`) reaches it quickly.
//! - The OpenAPI 3.1 document is generated from these handlers by `utoipa` ([`openapi()`]) and
//!   committed as `docs/openapi.json`.
//!
//! The files, by concern: `auth` (tokens, [`Caller`]), `problem` ([`Problem`] and the parameter
//! helpers), `feed` ([`FeedWatch`] and `GET changes`), `router` (routes and the body bound),
//! `lifecycle` (binding, [`serve`], `huoltosync serve`), `handlers` (the read endpoints),
//! `openapi` (the document) and [`write`](mod@write) (the endpoints that queue work). `[api]`
//! is read by the config ([`crate::config::ApiConfig`]; its bounds in `config::keys::api`).

pub mod delivered;
pub mod write;

pub use write::IDEMPOTENCY_KEEP;

mod auth;
mod feed;
mod handlers;
mod lifecycle;
mod openapi;
mod problem;
mod router;

pub use auth::Caller;
pub use feed::{Changes, ChangesParams, Event, FeedWatch};
pub use handlers::{
    Action, CostParams, HistoryEntry, NextVisit, OutboxParams, Ticket, TicketDetail, TicketPage,
    TicketsParams,
};
pub use lifecycle::{ended, serve, serve_alone, serve_following, spawn_following};
pub use openapi::openapi;
pub use problem::Problem;
pub use router::{Kept, router, routes};

use std::sync::Arc;
use std::time::Duration;

use crate::config::ApiConfig;
use crate::config::Config;
use crate::faces::listen::BodyBudget;
use crate::store::Handle;

/// The page size of `tickets`, `changes` without `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page of `tickets` and `changes`.
pub const MAX_LIMIT: u32 = 1000;
/// The longest long poll of `changes` (`wait`, seconds).
pub const MAX_WAIT_SECS: u64 = 60;
/// The `Retry-After` (seconds) of a long poll refused over `[api] max_long_polls`.
pub const LONG_POLL_RETRY_AFTER: u64 = 2;
/// How often the feed's last `seq` is probed while a long poll waits.
pub const PROBE_EVERY: Duration = Duration::from_millis(10);
/// Bytes of request bodies buffered at once over all API connections.
pub const BODY_BUDGET: usize = 64 << 20;

#[derive(Clone)]
struct AppState {
    config: Arc<Config>,
    api: Arc<ApiConfig>,
    store: Handle,
    feed: Arc<FeedWatch>,
    bodies: BodyBudget,
}
