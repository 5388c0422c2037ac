//! The HTTP API under `/api/v1/`: the mirror, the change feed and the outbox for the
//! contractor's own systems, served by the daemon (`[api] listen`) or alone (`huoltosync
//! serve`).
//!
//! - Serving: [`serve`] runs an axum router on the accept loop shared with the webhook
//!   listener ([`crate::listen`]: header timeout, connection cap); bodies are read with a timeout
//!   and one byte budget ([`crate::listen::read_body`]) up to `[api] max_body_bytes`. A request
//!   uses the store only: it never calls Tampuuri (work is queued for the push, [`write`](mod@write)).
//! - Auth: `Authorization: Bearer <token>`, compared in constant time with every configured
//!   token; missing or wrong: 401 with `WWW-Authenticate: Bearer`. Each token has a scope;
//!   [`Caller::require`] refuses a read token on an endpoint that queues work (403). Tokens are
//!   never logged; the token's name is the caller's identity.
//! - Errors are `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`.
//! - The change feed (`GET changes`) reads the `feed` table (written by triggers, gap-free
//!   `seq`); a long poll (`wait`) is woken by [`FeedWatch`], which probes the store's last `seq`
//!   every [`PROBE_EVERY`] while someone waits (and not at all while nobody does), so a commit by any process (the daemon's own
//!   sync, or another process writing the store beside `serve`) reaches it quickly.
//! - The OpenAPI 3.1 document is generated from these handlers by `utoipa` ([`openapi`]) and
//!   committed as `docs/openapi.json`.

pub mod config;
pub mod write;

pub use write::IDEMPOTENCY_KEEP;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::{Semaphore, watch};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::config::Config;
use crate::listen::{BodyBudget, BodyRefused, read_body};
use crate::store::{FeedEvent, Handle, OutboxRow, TicketPageQuery, TicketRow};
use config::{ApiConfig, Scope};

/// The page size of `tickets`, `changes` without `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page of `tickets` and `changes`.
pub const MAX_LIMIT: u32 = 1000;
/// The longest long poll of `changes` (`wait`, seconds).
pub const MAX_WAIT_SECS: u64 = 60;
/// At most this many `changes` requests wait at once; more get 503.
pub const MAX_WAITERS: usize = 512;
/// How often the feed's last `seq` is probed while a long poll waits.
pub const PROBE_EVERY: Duration = Duration::from_millis(10);
/// Bytes of request bodies buffered at once over all API connections.
pub const BODY_BUDGET: usize = 64 << 20;

/// The caller of a request, as authenticated: the token's name and scope.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
}

impl Caller {
    /// `Ok` when the caller's token has `scope`; else a 403 problem. Endpoints that queue work
    /// call this with [`Scope::Write`].
    pub fn require(&self, scope: Scope) -> Result<(), Problem> {
        if self.scope >= scope {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the token {:?} has the read scope; this endpoint needs a write token",
                    self.name
                ),
            ))
        }
    }
}

/// An RFC 9457 problem: the JSON body of every error answer (`application/problem+json`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What is wrong, naming the parameter, ticket or token.
    pub detail: String,
    /// With 410 from `changes`: the oldest `seq` still in the feed (resume with `after` one
    /// below it, after reading the tickets again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_seq: Option<i64>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            oldest_seq: None,
        }
    }

    fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    fn internal(e: anyhow::Error) -> Problem {
        tracing::error!(error = format!("{e:#}"), "An API request failed.");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store could not answer; see the service's log",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// The feed's last `seq` as last probed, for long polls to wait on.
pub struct FeedWatch {
    last: watch::Sender<i64>,
    waiters: Arc<Semaphore>,
    /// Notified when a request starts waiting: the probe sleeps while nobody waits.
    wanted: tokio::sync::Notify,
}

impl FeedWatch {
    /// Starts probing `store` (its own connection: probes never queue behind requests).
    fn start(store: Handle) -> Arc<FeedWatch> {
        let (tx, _) = watch::channel(0);
        let feed = Arc::new(FeedWatch {
            last: tx,
            waiters: Arc::new(Semaphore::new(MAX_WAITERS)),
            wanted: tokio::sync::Notify::new(),
        });
        let weak = Arc::downgrade(&feed);
        tokio::spawn(async move {
            loop {
                let Some(feed) = weak.upgrade() else { return };
                if feed.last.receiver_count() == 0 {
                    // Idle: no probe until a request waits (checking now and then that the
                    // router still exists).
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), feed.wanted.notified()).await;
                    continue;
                }
                match store.call(|s| s.feed_head()).await {
                    Ok((_, last)) => {
                        feed.last.send_if_modified(|v| {
                            let changed = *v != last;
                            *v = last;
                            changed
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = format!("{e:#}"), "Cannot probe the change feed.")
                    }
                }
                drop(feed);
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
        feed
    }
}

impl FeedWatch {
    /// A receiver of the feed's last `seq`: the probe runs while it is held (the board's live
    /// event streams wait on it, as long polls do).
    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        let rx = self.last.subscribe();
        self.wanted.notify_one();
        rx
    }
}

#[derive(Clone)]
struct AppState {
    config: Arc<Config>,
    api: Arc<ApiConfig>,
    store: Handle,
    feed: Arc<FeedWatch>,
    bodies: BodyBudget,
}

/// The API's router: every endpoint under `/api/v1/`, behind the body bound and the token check.
pub fn router(config: Config, api: ApiConfig, store: Handle, probe: Handle) -> Router {
    let state = AppState {
        config: Arc::new(config),
        api: Arc::new(api),
        store,
        feed: FeedWatch::start(probe),
        bodies: BodyBudget::new(BODY_BUDGET),
    };
    let v1 = Router::new()
        .route("/tickets", get(list_tickets).post(write::create))
        .route("/tickets/{account}/{id}", get(get_ticket))
        .route("/tickets/{account}/{id}/accept", post(write::accept))
        .route("/tickets/{account}/{id}/hold", post(write::hold))
        .route("/tickets/{account}/{id}/done", post(write::done))
        .route("/changes", get(changes))
        .route("/outbox", get(list_outbox))
        .route("/outbox/{id}/retry", post(write::retry))
        .route("/outbox/{id}/cancel", post(write::cancel))
        .route("/status", get(status))
        .route("/cost", get(cost))
        .route("/openapi.json", get(openapi_json))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found);
    let api = Router::new()
        .nest("/api/v1", v1)
        .fallback(not_found)
        // The outer layer runs first: the token is checked before a body is read, and an
        // Idempotency-Key is claimed with the body in memory.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            write::idempotency,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), bound_body))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state.clone());
    // The web board, when `[board] enabled`: its own paths, the API's router behind them.
    crate::board::mount(api, state.config, state.store, state.feed)
}

/// Binds `[api] listen` and serves the API there until the returned task is dropped: for
/// `huoltosync run` (the daemon exits 1 if this task ever ends) and `huoltosync serve`. The API
/// reads the store through its own connections. `None` when `[api] listen` is not set.
pub async fn spawn(
    config: &Config,
) -> anyhow::Result<Option<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let Some((api, addr)) = config
        .api
        .clone()
        .and_then(|a| a.listen.map(|addr| (a, addr)))
    else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("[api] listen = {addr}: cannot listen: {e}"))?;
    let store = Handle::open(config.store.path.clone()).await?;
    let probe = Handle::open(config.store.path.clone()).await?;
    tracing::info!(addr = %addr, tokens = api.tokens.len(), "HTTP API started.");
    Ok(Some(tokio::spawn(serve(
        listener,
        config.clone(),
        api,
        store,
        probe,
        std::future::pending(),
    ))))
}

/// `huoltosync serve`: the API alone, until SIGTERM or SIGINT (exit 0) or until the server fails
/// (an error: exit 1). `config` was loaded without secrets; the `[api]` tokens are read here.
pub async fn serve_alone(mut config: Config) -> anyhow::Result<std::process::ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    if config.api.as_ref().is_none_or(|a| a.listen.is_none()) {
        return Err(anyhow::anyhow!(format!(
            "{} has no [api] listen: set it (and [[api.tokens]]) to serve the API",
            config.source.display()
        )));
    }
    config.api =
        config::read_with_tokens(&config.source).map_err(|errors| crate::config::ConfigError {
            path: config.source.clone(),
            errors,
        })?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut task = spawn(&config).await?.expect("[api] listen is set");
    tokio::select! {
        _ = term.recv() => Ok(std::process::ExitCode::SUCCESS),
        _ = int.recv() => Ok(std::process::ExitCode::SUCCESS),
        r = &mut task => Err(ended(r)),
    }
}

/// Why the API server's task ended: it never should.
pub fn ended(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Error {
    match r {
        Ok(Ok(())) => anyhow::anyhow!("the HTTP API stopped"),
        Ok(Err(e)) => e.context("the HTTP API failed"),
        Err(e) => anyhow::anyhow!("the HTTP API ended: {e}"),
    }
}

/// Serves the API on `listener` until `shutdown`; only a broken listening socket ends it early.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    api: ApiConfig,
    store: Handle,
    probe: Handle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cap = api.max_connections;
    let router = router(config, api, store, probe);
    let names = crate::listen::Names {
        section: "[api]",
        noun: "API",
        shed: "huoltosync_api_connections_shed_total",
        accept_errors: "huoltosync_api_accept_errors_total",
    };
    crate::listen::serve_router(listener, router, cap, names, shutdown).await
}

async fn method_not_allowed(req: Request) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not served for {}", req.method(), req.uri().path()),
    )
}

async fn not_found(req: Request) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {} {}", req.method(), req.uri().path()),
    )
}

/// The bearer token of `headers`, if any (the scheme name is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Finds the token among the configured ones, comparing with each in constant time.
fn caller(api: &ApiConfig, given: &str) -> Option<Caller> {
    let mut found = None;
    for t in &api.tokens {
        let same: bool = given
            .as_bytes()
            .ct_eq(t.token.expose_secret().as_bytes())
            .into();
        if same && found.is_none() {
            found = Some(Caller {
                name: t.name.clone(),
                scope: t.scope,
            });
        }
    }
    found
}

async fn authenticate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(given) = bearer(req.headers()) else {
        metrics::counter!("huoltosync_api_rejected_total").increment(1);
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "missing credentials: send Authorization: Bearer <token>",
        )
        .into_response();
    };
    let Some(caller) = caller(&st.api, given) else {
        metrics::counter!("huoltosync_api_rejected_total").increment(1);
        return Problem::new(StatusCode::UNAUTHORIZED, "the bearer token is not valid")
            .into_response();
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Reads a request's body (if it has one) within the body timeout, the shared budget and
/// `[api] max_body_bytes`, before any handler sees it: 413 or 408 otherwise.
async fn bound_body(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if declared.unwrap_or(0) == 0 && !chunked {
        return next.run(req).await;
    }
    let max = st.api.max_body_bytes;
    let (parts, body) = req.into_parts();
    match read_body(body, declared, max, &st.bodies).await {
        Ok((bytes, _reserved)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(BodyRefused::TooLarge) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over [api] max_body_bytes ({max} bytes)"),
        )
        .into_response(),
        Err(BodyRefused::TimedOut) => Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body was not received within {} s",
                crate::listen::BODY_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    q.map(|Query(t)| t)
        .map_err(|e| Problem::bad_request(format!("bad query parameters: {}", e.body_text())))
}

fn limit(given: Option<u32>) -> Result<u32, Problem> {
    match given.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(Problem::bad_request(format!(
            "limit {n} is out of range: give 1 to {MAX_LIMIT}"
        ))),
    }
}

// ---- tickets ---------------------------------------------------------------------------------

/// Which tickets to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketsParams {
    /// Only this account.
    pub account: Option<String>,
    /// Only this state (e.g. `Avoin`), case-insensitive.
    pub state: Option<String>,
    /// `true` (default): tickets in the open set; `false`: tickets that left it; `all`: both.
    pub open: Option<String>,
    /// Text in the title, description or address.
    pub q: Option<String>,
    /// Tickets a page: 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Where to continue: `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A mirrored ticket: the fields of `huoltosync tasks --json`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ticket {
    pub account: String,
    pub id: i64,
    pub state: String,
    pub title: Option<String>,
    /// In the open set (ours and unfinished).
    pub open: bool,
    pub assignee_id: Option<i64>,
    pub cost_centre_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub urgency: Option<String>,
    /// Tampuuri's `Muokattu`, as received.
    pub remote_modified: Option<String>,
    pub first_seen: String,
    pub last_changed: String,
    pub left_at: Option<String>,
    /// `state`, `reassigned` or `deleted`.
    pub left_reason: Option<String>,
    /// The state our queued (or dead-lettered) actions will bring it to, when any wait.
    pub pending_state: Option<String>,
    /// Its next technician visit booked in Slotti (booked or moved, not ended yet), if any.
    pub next_visit: Option<NextVisit>,
    /// The site's address (Tampuuri's `Kohde`), as text.
    pub address: Option<String>,
    /// What is wrong (Tampuuri's `TyotehtavanKuvaus`).
    pub description: Option<String>,
    /// Who reported it: personal data, `null` fields once its retention has ended.
    pub reporter: Reporter,
}

/// The resident who reported a ticket.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reporter {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// A ticket's next technician visit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NextVisit {
    /// When it starts (UTC, RFC 3339).
    pub start: String,
    /// When it ends (UTC, RFC 3339).
    pub end: String,
    /// The technician (Slotti resource) booked.
    pub technician: Option<String>,
    /// `booked`, or `moved` when Slotti moved it since.
    pub status: String,
}

impl From<crate::store::NextVisit> for NextVisit {
    fn from(v: crate::store::NextVisit) -> NextVisit {
        NextVisit {
            start: v.start,
            end: v.end,
            technician: v.technician,
            status: v.status,
        }
    }
}

impl From<TicketRow> for Ticket {
    fn from(r: TicketRow) -> Ticket {
        Ticket {
            account: r.account,
            id: r.id,
            state: r.state,
            title: r.title,
            open: r.open,
            assignee_id: r.assignee_id,
            cost_centre_id: r.cost_centre_id,
            parent_id: r.parent_id,
            urgency: r.urgency,
            remote_modified: r.remote_modified,
            first_seen: r.first_seen,
            last_changed: r.last_changed,
            left_at: r.left_at,
            left_reason: r.left_reason,
            pending_state: r.pending_state,
            next_visit: r.next_visit.map(NextVisit::from),
            address: r.address,
            description: r.description,
            reporter: Reporter {
                name: r.reporter.name,
                phone: r.reporter.phone,
                email: r.reporter.email,
            },
        }
    }
}

/// A page of tickets.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketPage {
    pub items: Vec<Ticket>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The opaque cursor after `(account, id)`: base64url (no padding) of the JSON `[account, id]`.
fn cursor(account: &str, id: i64) -> String {
    let json = serde_json::to_vec(&(account, id)).expect("serializable");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn parse_cursor(c: &str) -> Result<(String, i64), Problem> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c.trim())
        .ok()
        .and_then(|b| serde_json::from_slice::<(String, i64)>(&b).ok())
        .ok_or_else(|| Problem::bad_request(format!("cursor {c:?} is not a cursor this API gave")))
}

/// List mirrored tickets, a page at a time, in (account, id) order.
#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", params(TicketsParams),
    responses(
        (status = 200, description = "A page of tickets", body = TicketPage),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn list_tickets(
    State(st): State<AppState>,
    q: Result<Query<TicketsParams>, QueryRejection>,
) -> Result<axum::Json<TicketPage>, Problem> {
    let p = query(q)?;
    let limit = limit(p.limit)?;
    if let Some(a) = &p.account
        && st.config.account(a).is_none()
    {
        return Err(Problem::bad_request(format!(
            "account {a:?} is not in the config (accounts: {})",
            st.config
                .accounts
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let open = match p.open.as_deref().map(str::trim) {
        None | Some("true") => Some(true),
        Some("false") => Some(false),
        Some("all") => None,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "open {other:?} is not one of true, false, all"
            )));
        }
    };
    let after = p.cursor.as_deref().map(parse_cursor).transpose()?;
    let query = TicketPageQuery {
        account: p.account,
        state: p.state.filter(|s| !s.trim().is_empty()),
        open,
        q: p.q.filter(|s| !s.trim().is_empty()),
        after,
        limit: limit + 1,
    };
    let mut rows = st
        .store
        .call(move |s| s.ticket_page(&query))
        .await
        .map_err(Problem::internal)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| cursor(&r.account, r.id)))
        .flatten();
    Ok(axum::Json(TicketPage {
        items: rows.into_iter().map(Ticket::from).collect(),
        next_cursor,
    }))
}

/// One change in a ticket's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub at: String,
    /// `appeared`, `changed`, `left`, `returned`.
    pub kind: String,
    /// The Tampuuri fields that changed.
    #[schema(value_type = Option<Vec<String>>)]
    pub fields: Option<serde_json::Value>,
    pub old_state: Option<String>,
    pub new_state: Option<String>,
}

/// An action in the outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct Action {
    pub id: i64,
    pub account: String,
    /// `accept`, `hold`, `done`, `create`.
    pub kind: String,
    pub ticket_id: Option<i64>,
    /// The ticket whose queue it waits in (for a follow-up ticket: the parent).
    pub queue_ticket: Option<i64>,
    pub from_state: Option<String>,
    pub expected_state: Option<String>,
    /// `pending`, `dead`, `delivered`, `cancelled`.
    pub status: String,
    pub in_doubt: bool,
    pub attempts: u32,
    pub created_at: String,
    pub next_attempt_at: String,
    pub deadline_at: String,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    pub outcome: Option<String>,
    pub created_ticket_id: Option<i64>,
    pub attachments: u32,
    /// Who asked: the API token's name, `cli`, `demo`.
    pub requested_by: Option<String>,
}

impl From<OutboxRow> for Action {
    fn from(o: OutboxRow) -> Action {
        Action {
            id: o.id,
            account: o.account,
            kind: o.kind,
            ticket_id: o.ticket_id,
            queue_ticket: o.queue_ticket,
            from_state: o.from_state,
            expected_state: o.expected_state,
            status: o.status,
            in_doubt: o.in_doubt,
            attempts: o.attempts,
            created_at: o.created_at,
            next_attempt_at: o.next_attempt_at,
            deadline_at: o.deadline_at,
            last_error: o.last_error,
            delivered_at: o.delivered_at,
            outcome: o.outcome,
            created_ticket_id: o.created_ticket_id,
            attachments: o.attachments,
            requested_by: o.requested_by,
        }
    }
}

/// A ticket with its history, its waiting actions and its raw JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketDetail {
    pub ticket: Ticket,
    pub description: Option<String>,
    pub history: Vec<HistoryEntry>,
    /// Queued and dead-lettered actions on it, oldest first.
    pub pending_actions: Vec<Action>,
    /// The ticket as Tampuuri last sent it.
    #[schema(value_type = Object)]
    pub raw: serde_json::Value,
}

/// One ticket with its history, pending actions and raw JSON.
#[utoipa::path(get, path = "/api/v1/tickets/{account}/{id}", tag = "tickets",
    params(("account" = String, Path, description = "The Tampuuri account"),
           ("id" = i64, Path, description = "The ticket id")),
    responses(
        (status = 200, description = "The ticket", body = TicketDetail),
        (status = 404, description = "No such ticket in the mirror", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn get_ticket(
    State(st): State<AppState>,
    path: Result<Path<(String, i64)>, axum::extract::rejection::PathRejection>,
) -> Result<axum::Json<TicketDetail>, Problem> {
    let Path((account, id)) =
        path.map_err(|e| Problem::bad_request(format!("bad path: {}", e.body_text())))?;
    let (a, i) = (account.clone(), id);
    let d = st
        .store
        .call(move |s| s.ticket_detail(&a, i))
        .await
        .map_err(Problem::internal)?
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                format!("ticket {id} of account {account} is not in the mirror"),
            )
        })?;
    Ok(axum::Json(TicketDetail {
        ticket: d.row.into(),
        description: d.description,
        history: d
            .history
            .into_iter()
            .map(|h| HistoryEntry {
                at: h.at,
                kind: h.kind,
                fields: h.fields,
                old_state: h.old_state,
                new_state: h.new_state,
            })
            .collect(),
        pending_actions: d.actions.into_iter().map(Action::from).collect(),
        raw: serde_json::from_str(&d.raw_json).unwrap_or(serde_json::Value::Null),
    }))
}

// ---- the change feed -------------------------------------------------------------------------

/// Where to read the feed from.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// The last `seq` already seen (0 for the start).
    pub after: Option<i64>,
    /// Events a page: 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Seconds (at most 60) to hold the request open until an event after `after` exists.
    pub wait: Option<u64>,
}

/// One feed event. Besides the fields listed, each type has its own: `ticket.new`: `state`;
/// `ticket.changed` / `ticket.returned`: `fields`, `old_state`, `state`; `ticket.left`:
/// `reason`, `state`; `action.*`: `action_id`, `kind` (and `outcome`, `error`,
/// `created_ticket_id` when the action ended); `visit.*`: `visit_id`, `booking_guid`, `start`,
/// `end`, `old_start`, `old_end`, `technician`, `source`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    /// Gap-free and increasing, in commit order.
    pub seq: i64,
    /// `ticket.new`, `ticket.changed`, `ticket.returned`, `ticket.left`, `action.queued`,
    /// `action.applied`, `action.dead`, `action.cancelled`, `action.requeued`, `visit.booked`,
    /// `visit.moved`, `visit.cancelled`.
    #[serde(rename = "type")]
    pub kind: String,
    pub account: String,
    pub ticket_id: Option<i64>,
    /// When the change was committed (UTC).
    pub at: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl From<FeedEvent> for Event {
    fn from(e: FeedEvent) -> Event {
        let mut data: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&e.data).unwrap_or_default();
        // The fixed fields win over a data field of the same name.
        for k in ["seq", "type", "account", "ticket_id", "at"] {
            data.remove(k);
        }
        Event {
            seq: e.seq,
            kind: e.kind,
            account: e.account,
            ticket_id: e.ticket_id,
            at: e.at,
            data,
        }
    }
}

/// A page of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Changes {
    pub events: Vec<Event>,
    /// Pass as `after` next time: the last `seq` returned, or `after` when none was.
    pub next_after: i64,
}

/// The change feed: every change of the mirror and the outbox, in commit order.
#[utoipa::path(get, path = "/api/v1/changes", tag = "changes", params(ChangesParams),
    responses(
        (status = 200, description = "Events after `after`", body = Changes),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Events after `after` were purged; `oldest_seq` says where the feed starts", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many requests waiting", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn changes(
    State(st): State<AppState>,
    q: Result<Query<ChangesParams>, QueryRejection>,
) -> Result<axum::Json<Changes>, Problem> {
    let p = query(q)?;
    let limit = limit(p.limit)?;
    let after = p.after.unwrap_or(0);
    if after < 0 {
        return Err(Problem::bad_request(format!("after {after} is negative")));
    }
    let wait = p.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(Problem::bad_request(format!(
            "wait {wait} is over {MAX_WAIT_SECS} seconds"
        )));
    }
    let read = |st: &AppState| {
        let store = st.store.clone();
        async move {
            store
                .call(move |s| Ok((s.feed_bounds()?, s.feed_after(after, limit)?)))
                .await
                .map_err(Problem::internal)
        }
    };
    let (bounds, mut events) = read(&st).await?;
    if after < bounds.last && bounds.oldest.is_none_or(|o| o > after + 1) {
        let oldest = bounds.oldest.unwrap_or(bounds.last + 1);
        let mut p = Problem::new(
            StatusCode::GONE,
            format!(
                "the events after {after} were purged ([api] feed_retain_days): the feed starts at seq {oldest}; read the tickets again, then follow the feed with after={}",
                oldest - 1
            ),
        );
        p.oldest_seq = Some(oldest);
        return Err(p);
    }
    if events.is_empty() && wait > 0 {
        let Ok(_waiting) = st.feed.waiters.clone().try_acquire_owned() else {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{MAX_WAITERS} requests are already waiting; try again without wait or later"
                ),
            ));
        };
        let mut rx = st.feed.last.subscribe();
        st.feed.wanted.notify_one();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        // Read again whenever the probe sees the feed past `after` (it may already have seen
        // an event committed after the read above).
        let mut first = true;
        loop {
            if !first {
                let moved = tokio::time::timeout_at(deadline, rx.changed()).await;
                if !matches!(moved, Ok(Ok(()))) {
                    break;
                }
            }
            first = false;
            if *rx.borrow_and_update() > after {
                events = read(&st).await?.1;
                if !events.is_empty() {
                    break;
                }
            }
        }
    }
    let next_after = events.last().map_or(after, |e| e.seq);
    Ok(axum::Json(Changes {
        events: events.into_iter().map(Event::from).collect(),
        next_after,
    }))
}

// ---- outbox, status, cost, the document ------------------------------------------------------

/// Which actions to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutboxParams {
    /// `pending` or `dead` (default: both, like `huoltosync outbox`).
    pub status: Option<String>,
}

/// Queued and dead-lettered actions, oldest first (what `huoltosync outbox --json` lists).
#[utoipa::path(get, path = "/api/v1/outbox", tag = "outbox", params(OutboxParams),
    responses(
        (status = 200, description = "The actions", body = Vec<Action>),
        (status = 400, description = "A bad status", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn list_outbox(
    State(st): State<AppState>,
    q: Result<Query<OutboxParams>, QueryRejection>,
) -> Result<axum::Json<Vec<Action>>, Problem> {
    let p = query(q)?;
    let only = match p.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s @ ("pending" | "dead")) => Some(s.to_owned()),
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "status {other:?} is not one of pending, dead"
            )));
        }
    };
    let dead_only = only.as_deref() == Some("dead");
    let rows = st
        .store
        .call(move |s| s.outbox_list(dead_only))
        .await
        .map_err(Problem::internal)?;
    Ok(axum::Json(
        rows.into_iter()
            .filter(|r| only.as_deref().is_none_or(|s| r.status == s))
            .map(Action::from)
            .collect(),
    ))
}

/// Each account's last sync, open tickets, calls and problems: what `huoltosync status --json`
/// shows.
#[utoipa::path(get, path = "/api/v1/status", tag = "service",
    responses((status = 200, description = "The status, as `status --json` prints it", body = Object)),
    security(("bearer" = [])))]
async fn status(State(st): State<AppState>) -> Result<axum::Json<serde_json::Value>, Problem> {
    let config = st.config.clone();
    st.store
        .call(move |s| Ok(crate::status::status(&config, s, crate::time::now())?.to_json()))
        .await
        .map(axum::Json)
        .map_err(Problem::internal)
}

/// Which month's cost.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CostParams {
    /// `YYYY-MM` (default: this month, Helsinki time).
    pub month: Option<String>,
}

/// API calls and what they cost: what `huoltosync cost --json` shows.
#[utoipa::path(get, path = "/api/v1/cost", tag = "service", params(CostParams),
    responses(
        (status = 200, description = "The cost report, as `cost --json` prints it", body = Object),
        (status = 400, description = "A bad month", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn cost(
    State(st): State<AppState>,
    q: Result<Query<CostParams>, QueryRejection>,
) -> Result<axum::Json<serde_json::Value>, Problem> {
    let p = query(q)?;
    let now = crate::time::now();
    let month = p.month.unwrap_or_else(|| crate::time::local_month(now));
    let month = crate::cost::Month::parse(&month)
        .map_err(|e| Problem::bad_request(format!("month: {e:#}")))?;
    let config = st.config.clone();
    st.store
        .call(move |s| {
            let report = crate::status::cost_report(&config, s, &month, now)?;
            Ok(serde_json::to_value(report)?)
        })
        .await
        .map(axum::Json)
        .map_err(Problem::internal)
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)),
    security(("bearer" = [])))]
async fn openapi_json() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "huoltosync API", description = "The mirror of Tampuuri tickets, its change feed and the outbox, for the contractor's own systems. Every endpoint needs `Authorization: Bearer <token>` ([[api.tokens]]); errors are application/problem+json (RFC 9457)."),
    paths(list_tickets, get_ticket, write::accept, write::hold, write::done, write::create,
          changes, list_outbox, write::retry, write::cancel, status, cost, openapi_json),
    components(schemas(Problem, write::AcceptBody, write::HoldBody, write::DoneBody,
                       write::NewTicketBody, write::AttachmentBody)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The OpenAPI 3.1 document of this API, as `GET /api/v1/openapi.json` serves it and
/// `docs/openapi.json` holds it (`huoltosync openapi > docs/openapi.json`).
pub fn openapi() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serializes")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_token_may_not_write() {
        let read = Caller {
            name: "viewer".into(),
            scope: Scope::Read,
        };
        let write = Caller {
            name: "erp".into(),
            scope: Scope::Write,
        };
        assert!(read.require(Scope::Read).is_ok());
        let p = read.require(Scope::Write).unwrap_err();
        assert_eq!(p.status, 403);
        assert!(p.detail.contains("viewer"), "{}", p.detail);
        assert!(write.require(Scope::Write).is_ok());
    }

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let c = cursor("sim-1", 42);
        assert!(
            c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(parse_cursor(&c).unwrap(), ("sim-1".to_owned(), 42));
        assert_eq!(parse_cursor("bm9wZQ").unwrap_err().status, 400);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bEaReR  abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
