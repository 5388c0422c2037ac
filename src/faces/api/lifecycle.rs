//! Starting and stopping the API: binding `[api] listen`, `huoltosync serve`, and the accept
//! loop, which builds the router again for each reloaded config and drains at the stop.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::ApiConfig;
use crate::config::Config;
use crate::remote::Exchange;
use crate::store::Handle;

/// Binds `[api] listen` of the config in force and serves the API there, following the
/// reloads (tokens, the board's users), until `stop`, then drains: for `huoltosync run` (the
/// daemon exits 1 if this task ends before the stop) and `huoltosync serve`. The API reads the
/// store through its own connections. `None` when `[api] listen` is not set.
pub async fn spawn_following(
    config: watch::Receiver<Arc<Config>>,
    stop: CancellationToken,
    exchange: Exchange,
) -> anyhow::Result<Option<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let (path, api) = {
        let c = config.borrow();
        (c.store.path.clone(), c.api.clone())
    };
    let Some((api, addr)) = api.and_then(|a| a.listen.map(|addr| (a, addr))) else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("[api] listen = {addr}: cannot listen: {e}"))?;
    let store = Handle::open(path.clone()).await?;
    let probe = Handle::open(path).await?;
    tracing::info!(addr = %addr, tokens = api.tokens.len(), "HTTP API started.");
    Ok(Some(tokio::spawn(serve_following(
        listener, config, store, probe, stop, exchange,
    ))))
}

/// `huoltosync serve`: the API alone, until SIGTERM or SIGINT (then it drains, within
/// `[service] shutdown_grace_secs`, and exits 0) or until the server fails (an error: exit 1).
/// `config` was loaded without secrets; the `[api]` tokens are read here.
pub async fn serve_alone(mut config: Config) -> anyhow::Result<std::process::ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    if config.api.as_ref().is_none_or(|a| a.listen.is_none()) {
        return Err(anyhow::anyhow!(format!(
            "{} has no [api] listen: set it (and [[api.tokens]]) to serve the API",
            config.source.display()
        )));
    }
    config.api = crate::config::read_api_with_tokens(&config.source).map_err(|errors| {
        crate::config::ConfigError {
            path: config.source.clone(),
            errors,
        }
    })?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let grace = config.service.shutdown_grace;
    // The process's one exchange (the board's bookings call Slotti through it).
    let exchange = Exchange::new(&config)?;
    let (_keep, rx) = watch::channel(Arc::new(config));
    let stop = CancellationToken::new();
    let mut task = spawn_following(rx, stop.clone(), exchange)
        .await?
        .expect("[api] listen is set");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
        r = &mut task => return Err(ended(r)),
    }
    stop.cancel();
    if tokio::time::timeout(grace, &mut task).await.is_err() {
        task.abort();
        tracing::warn!(
            grace_s = grace.as_secs(),
            "The API did not drain within the grace period; the requests still open were cut."
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Why the API server's task ended: it never should.
pub fn ended(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Error {
    match r {
        Ok(Ok(())) => anyhow::anyhow!("the HTTP API stopped"),
        Ok(Err(e)) => e.context("the HTTP API failed"),
        Err(e) => anyhow::anyhow!("the HTTP API ended: {e}"),
    }
}

/// What the API's listener is called in errors, logs and metrics.
const NAMES: crate::faces::listen::Names = crate::faces::listen::Names {
    section: "[api]",
    noun: "API",
    shed: "huoltosync_api_connections_shed_total",
    refused: "huoltosync_api_connections_refused_total",
    accept_errors: "huoltosync_api_accept_errors_total",
};

/// Serves the API (`config` with `api` as its `[api]`) on `listener` until `shutdown`, then
/// drains (long polls answer at once); only a broken listening socket ends it early.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut config: Config,
    api: ApiConfig,
    store: Handle,
    probe: Handle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.api = Some(api);
    let exchange = Exchange::new(&config)?;
    let (_keep, config) = watch::channel(Arc::new(config));
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        cancel.cancel();
    });
    serve_following(listener, config, store, probe, stop, exchange).await
}

/// Serves the API of the config in force in `config` on `listener`, building its router again
/// for each reloaded config (the tokens, the board's users; `[api] listen` and
/// `max_connections` stay as they were at the start), until `stop`; then drains: no new
/// connections, requests in flight answered, long polls and event streams answered at once.
pub async fn serve_following(
    listener: tokio::net::TcpListener,
    mut config: watch::Receiver<Arc<Config>>,
    store: Handle,
    probe: Handle,
    stop: CancellationToken,
    exchange: Exchange,
) -> anyhow::Result<()> {
    let long_polls = config.borrow().api.as_ref().map_or(1, |a| a.long_polls());
    let kept = Kept::new(probe, stop.clone(), long_polls, exchange);
    let build = |c: &Arc<Config>| {
        c.api
            .clone()
            .map(|api| routes(c.clone(), api, store.clone(), &kept))
    };
    let (first, caps) = {
        let c = config.borrow_and_update();
        let caps = c.api.as_ref().map_or(
            crate::faces::listen::Caps {
                connections: 1,
                per_address: 1,
            },
            |a| crate::faces::listen::Caps {
                connections: a.max_connections,
                per_address: a.max_connections_per_address,
            },
        );
        (build(&c), caps)
    };
    let Some(first) = first else {
        anyhow::bail!("no [api] section");
    };
    let (routes_tx, routes) = watch::channel(first);
    // Follows the reloads until the config's sender is gone, then serves on as it is. A reload
    // without `[api]` keeps the running router.
    let follow = async move {
        while config.changed().await.is_ok() {
            let next = build(&config.borrow_and_update());
            if let Some(r) = next {
                let _old = routes_tx.send_replace(r);
            }
        }
    };
    let serve =
        crate::faces::listen::serve_routes(listener, routes, caps, NAMES, stop.cancelled_owned());
    let mut serve = std::pin::pin!(serve);
    tokio::select! {
        r = &mut serve => return r,
        () = follow => {}
    }
    serve.await
}
