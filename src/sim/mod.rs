//! The Tampuuri simulator: the *assumed* API of `tampuuri-api.md` on loopback, with state in
//! memory, for tests, benchmarks and the demo. It never talks to the real Tampuuri, and it
//! shares no code with huoltosync's side of the wire (it signs its webhook deliveries itself),
//! so a mistake on our side cannot hide in both. Built with the default cargo feature `sim`.
//!
//! It checks the six headers (403 on a wrong key or password), enforces `Limit ≤ 250`, the
//! state machine and the follow-up rule, counts every API call by route template, logs every
//! change the API applied (the ground truth for "exactly once"), and injects faults on demand
//! through `POST /_sim/faults`.
//!
//! - `state.rs`: accounts, tickets (indexed so a page costs the page, not the account), the
//!   counters and change log, and the methods tests read and change them through.
//! - `faults.rs`: the faults, and the preamble every API call passes (headers, counting, faults).
//! - `api.rs`: the Tampuuri routes. `admin.rs`: the `/_sim/` routes.
//! - `deliveries.rs`: webhook notifications, signed here. `data.rs`: generated Finnish tickets.
//! - `slotti/`: Slotti's booking and Slotti APIs under `/slotti/` (`Sim::with_slotti`, the
//!   `sim --slotti` flag), with their own admin routes, faults and signed webhooks.

mod admin;
mod api;
mod data;
mod deliveries;
mod faults;
mod slotti;
mod state;

use std::net::SocketAddr;

use anyhow::{Context, bail};
use axum::Router;

pub use data::CONTRACTOR_ID;
pub use deliveries::WebhookTarget;
pub use faults::{Drift, Faults};
pub use slotti::{SlottiFaults, SlottiStats};
pub use state::{LogEntry, Party, Sim, SimTicket};

/// Credentials every simulated account accepts.
pub const API_KEY: &str = "sim-key";
pub const CUSTOMER: &str = "Simulaattori Oy";
pub const USERNAME: &str = "huolto";
pub const PASSWORD: &str = "sim-password";

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Open tickets for us in each account.
    pub tickets: u64,
    /// Accounts `sim-1` … `sim-K`.
    pub accounts: u32,
    pub seed: u64,
    pub latency_ms: u64,
    /// Where to deliver webhook notifications, if anywhere.
    pub webhook: Option<WebhookTarget>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            webhook: None,
            tickets: 20,
            accounts: 1,
            seed: 1,
            latency_ms: 0,
        }
    }
}

/// A running simulator.
pub struct Running {
    pub sim: Sim,
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The API base URL, ending in `/v10/api/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v10/api/", self.addr)
    }

    /// The Slotti base URL (`http://ADDR/slotti/`), served when the simulator was made
    /// `with_slotti()`; a client appends `booking/{tili}/api/v2/…` and `api/v1/…`.
    pub fn slotti_url(&self) -> String {
        format!("http://{}/slotti/", self.addr)
    }

    /// Where the admin endpoints live (`{root}/_sim/...`).
    pub fn root(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sim {
    /// Serves on `listener` until `shutdown` resolves. The listener must be on loopback.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            bail!("the simulator listens on loopback only, not {addr}");
        }
        faults::silence_connection_drops();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }

    /// Binds `addr` (loopback) and serves in the background.
    pub async fn start(self, addr: &str) -> anyhow::Result<Running> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        if !bound.ip().is_loopback() {
            bail!("the simulator listens on loopback only, not {bound}");
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let sim = self.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = sim
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
            {
                tracing::error!(error = %e, "The simulator stopped.");
            }
        });
        Ok(Running {
            sim: self,
            addr: bound,
            shutdown: Some(tx),
            task,
        })
    }

    fn router(&self) -> Router {
        api::routes()
            .merge(admin::routes())
            .merge(slotti::routes())
            .with_state(self.clone())
    }
}
