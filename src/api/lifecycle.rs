//! Starting and stopping the API: binding `[api] listen`, `huoltosync serve`, and the accept loop.

use super::config::ApiConfig;
use super::*;
use crate::config::Config;
use crate::store::Handle;

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
    let caps = crate::listen::Caps {
        connections: api.max_connections,
        per_address: api.max_connections_per_address,
    };
    let router = router(config, api, store, probe);
    let names = crate::listen::Names {
        section: "[api]",
        noun: "API",
        shed: "huoltosync_api_connections_shed_total",
        refused: "huoltosync_api_connections_refused_total",
        accept_errors: "huoltosync_api_accept_errors_total",
    };
    crate::listen::serve_router(listener, router, caps, names, shutdown).await
}
