//! A reload (SIGHUP): the config file read again with its secrets and validated. A valid one
//! is put in force through the runtime, which hands it to every part (the API's tokens, the
//! board's users, the subscribers, the poll and `[slotti] reconcile` jobs, this loop); an
//! invalid one is logged as one event naming every key at fault, and the running one stays. A
//! changed listening address (or store) is logged, naming its key: only a restart moves it.

use super::{Daemon, Happened};
use crate::config::Config;
use crate::service::runtime::needs_restart;

impl Daemon {
    /// Reads the config again; an invalid one is logged and the running one kept.
    pub(super) fn reload(&mut self) {
        let loaded = match Config::load(&self.config_path) {
            Ok(l) => l,
            // One event: every problem on one line, so the journal keeps them together.
            Err(e) => {
                tracing::error!(
                    config = %e.path.display(),
                    problems = %e.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                    "Config reload failed; keeping the running config."
                );
                self.report(Happened::ReloadRefused);
                return;
            }
        };
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let new = loaded.config;
        // The remotes of the new config on the process's one exchange: its pools are kept.
        let api = match self.runtime.remotes_of(&new) {
            Ok(api) => api,
            Err(e) => {
                tracing::error!(
                    config = %self.config_path.display(),
                    error = format!("{e:#}"),
                    "Config reload failed; keeping the running config."
                );
                self.report(Happened::ReloadRefused);
                return;
            }
        };
        for key in needs_restart(&self.config, &new) {
            tracing::warn!(
                key,
                "Config reload: {key} changed; it takes effect at the next start (restart the service), the running one stays until then."
            );
        }
        self.config = match self.runtime.replace(new, api.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    config = %self.config_path.display(),
                    error = format!("{e:#}"),
                    "Config reload failed; keeping the running config."
                );
                self.report(Happened::ReloadRefused);
                return;
            }
        };
        self.api = api;
        let c = &self.config;
        tracing::info!(
            schedule = super::poll_schedule(c).expr(),
            accounts = c.accounts.len(),
            api_tokens = c.api.as_ref().map_or(0, |a| a.tokens.len()),
            board_users = c.board.users.len(),
            subscribers = c.subscribers.len(),
            slotti_reconcile = c.slotti.as_ref().map(|s| s.reconcile.expr()),
            "Config reloaded."
        );
        self.report(Happened::Reloaded);
    }
}
