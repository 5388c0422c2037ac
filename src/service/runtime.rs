//! The runtime: what the running parts of `huoltosync run` share. The config in force (a
//! `watch` of `Arc<Config>`: every part reads the latest, and the parts that hold something built
//! from it, such as the API's router, the subscribers' tasks and the cron jobs, follow its
//! changes), the remotes built from it, the store, and the cancellation token that a stop
//! cancels (the listeners then drain: no new connections, requests in flight answered, long
//! polls and event streams answered at once with what they have).
//!
//! The runtime owns one [`Exchange`] for the life of the process (its connection pools and
//! throttle), shared by Tampuuri's clients, Slotti's, the subscribers and the board's booking.
//! The daemon's loop is the only writer: a reload ([`Runtime::replace`]) hands the new config
//! to the exchange and swaps the remotes built on it and the config together, after the new
//! config was validated.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::remote::Exchange;
use crate::store::Handle;
use crate::tampuuri::Api;

/// The running parts' shared state. Cheap to clone: every clone sees the same config, remotes
/// and token.
#[derive(Clone)]
pub struct Runtime {
    config: Arc<watch::Sender<Arc<Config>>>,
    remotes: Arc<Mutex<Api>>,
    exchange: Exchange,
    store: Handle,
    stop: CancellationToken,
}

impl Runtime {
    /// A runtime running `config` with the remotes built from it (`api`) on `store`; `api`'s
    /// exchange is the one the runtime keeps.
    pub fn new(config: Config, api: Api, store: Handle) -> Runtime {
        let (config, _) = watch::channel(Arc::new(config));
        Runtime {
            config: Arc::new(config),
            exchange: api.exchange().clone(),
            remotes: Arc::new(Mutex::new(api)),
            store,
            stop: CancellationToken::new(),
        }
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// A receiver of the config in force and of every reloaded one.
    pub fn watch(&self) -> watch::Receiver<Arc<Config>> {
        self.config.subscribe()
    }

    /// The remotes (Tampuuri's client) built from the config in force.
    pub fn remotes(&self) -> Api {
        self.remotes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The one exchange of the process: every remote, the subscribers and the board call
    /// through it.
    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// The remotes of `config` on the runtime's exchange (nothing is put in force).
    pub fn remotes_of(&self, config: &Config) -> anyhow::Result<Api> {
        Api::on(config, self.exchange.clone())
    }

    pub fn store(&self) -> &Handle {
        &self.store
    }

    /// Cancelled when the daemon stops: the listeners drain on it.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Puts a validated `config` and the remotes built from it ([`Runtime::remotes_of`]) in
    /// force: the exchange takes the new config (keeping its pools), and every part that
    /// follows the config is told. When the exchange cannot take it (a client that cannot be
    /// built), nothing changes.
    pub fn replace(&self, config: Config, api: Api) -> anyhow::Result<Arc<Config>> {
        self.exchange.reconfigure(&config)?;
        *self.remotes.lock().unwrap_or_else(|e| e.into_inner()) = api;
        let config = Arc::new(config);
        self.config.send_replace(config.clone());
        Ok(config)
    }
}

/// The keys read only at start-up whose value differs between `old` and `new`: a listening
/// address (or the store) that only a restart changes. Each is named as the config names it.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let api = |c: &Config| c.api.as_ref().and_then(|a| a.listen);
    if api(old) != api(new) {
        keys.push("api.listen");
    }
    let api_cap = |c: &Config| c.api.as_ref().map(|a| a.max_connections);
    if api(old).is_some() && api(new).is_some() && api_cap(old) != api_cap(new) {
        keys.push("api.max_connections");
    }
    let api_share = |c: &Config| c.api.as_ref().map(|a| a.max_connections_per_address);
    if api(old).is_some() && api(new).is_some() && api_share(old) != api_share(new) {
        keys.push("api.max_connections_per_address");
    }
    let polls = |c: &Config| c.api.as_ref().map(|a| a.long_polls());
    if api(old).is_some() && api(new).is_some() && polls(old) != polls(new) {
        keys.push("api.max_long_polls");
    }
    let hook = |c: &Config| c.webhook.as_ref().map(|w| w.listen);
    if hook(old) != hook(new) {
        keys.push("webhook.listen");
    }
    let hook_cap = |c: &Config| c.webhook.as_ref().map(|w| w.max_connections);
    if hook(old).is_some() && hook(new).is_some() && hook_cap(old) != hook_cap(new) {
        keys.push("webhook.max_connections");
    }
    let hook_share = |c: &Config| c.webhook.as_ref().map(|w| w.max_connections_per_address);
    if hook(old).is_some() && hook(new).is_some() && hook_share(old) != hook_share(new) {
        keys.push("webhook.max_connections_per_address");
    }
    if old.service.metrics_listen != new.service.metrics_listen {
        keys.push("service.metrics_listen");
    }
    if old.store.path != new.store.path {
        keys.push("store.path");
    }
    keys
}
