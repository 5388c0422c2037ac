//! The API's router: its routes, the body bound and the token check in front of them.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::auth::authenticate;
use super::*;
use crate::config::ApiConfig;
use crate::config::Config;
use crate::faces::listen::{BodyBudget, BodyRefused, read_body};
use crate::remote::Exchange;
use crate::store::Handle;
use tokio_util::sync::CancellationToken;

/// What the API's router keeps while it is built again for each reloaded config: the feed's
/// watch (with the stop token), the body budget, the board's own.
#[derive(Clone)]
pub struct Kept {
    feed: Arc<FeedWatch>,
    bodies: BodyBudget,
    board: crate::faces::board::Kept,
}

impl Kept {
    /// Starts the feed's probe on `probe` (its own store connection); `stop` is the token on
    /// which long polls and event streams answer at once; at most `long_polls` wait at once
    /// (`[api] max_long_polls` as the listener started: a reload keeps it); the board books
    /// visits through `exchange`, the process's one.
    pub fn new(
        probe: Handle,
        stop: CancellationToken,
        long_polls: usize,
        exchange: Exchange,
    ) -> Kept {
        Kept {
            feed: FeedWatch::start(probe, stop, long_polls),
            bodies: BodyBudget::new(BODY_BUDGET),
            board: crate::faces::board::Kept::new(exchange),
        }
    }
}

/// The API's router: every endpoint under `/api/v1/`, behind the body bound and the token check;
/// the board (when enabled) calls Slotti through `exchange`.
pub fn router(
    config: Config,
    api: ApiConfig,
    store: Handle,
    probe: Handle,
    exchange: Exchange,
) -> Router {
    let kept = Kept::new(probe, CancellationToken::new(), api.long_polls(), exchange);
    routes(Arc::new(config), api, store, &kept)
}

/// The router for `config` (with `api` as its `[api]`), on what `kept` keeps across reloads.
pub fn routes(config: Arc<Config>, api: ApiConfig, store: Handle, kept: &Kept) -> Router {
    let state = AppState {
        config,
        api: Arc::new(api),
        store,
        feed: kept.feed.clone(),
        bodies: kept.bodies.clone(),
    };
    let v1 = Router::new()
        .route("/tickets", get(handlers::list_tickets).post(write::create))
        .route("/tickets/{account}/{id}", get(handlers::get_ticket))
        .route("/tickets/{account}/{id}/accept", post(write::accept))
        .route("/tickets/{account}/{id}/hold", post(write::hold))
        .route("/tickets/{account}/{id}/done", post(write::done))
        .route("/changes", get(feed::changes))
        .route("/outbox", get(handlers::list_outbox))
        .route("/outbox/{id}/retry", post(write::retry))
        .route("/outbox/{id}/cancel", post(write::cancel))
        .route("/status", get(handlers::status))
        .route("/cost", get(handlers::cost))
        .route("/openapi.json", get(openapi::openapi_json))
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
    crate::faces::board::mount(api, state.config, state.store, state.feed, &kept.board)
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
                crate::faces::listen::BODY_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}
