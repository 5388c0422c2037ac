//! The fetches of one processing pass: one `GET ilmoitukset/{id}` per ticket named by due
//! events, through one client per account, and what a failed fetch leads to.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{FetchEnd, Processed, after_failure};
use crate::config::Config;
use crate::domain::time;
use crate::store::{Handle, PendingEvent};
use crate::tampuuri::{Api, Client, changed_fields};

/// The fetching side of one pass: the config, the API, the store, the pass's `now`, and the
/// clients made so far (their calls are metered by [`Fetcher::record_calls`]).
pub(super) struct Fetcher<'a> {
    pub config: &'a Config,
    pub api: &'a Api,
    pub store: &'a Handle,
    pub now: DateTime<Utc>,
    clients: HashMap<String, Client>,
}

impl<'a> Fetcher<'a> {
    pub fn new(config: &'a Config, api: &'a Api, store: &'a Handle, now: DateTime<Utc>) -> Self {
        Fetcher {
            config,
            api,
            store,
            now,
            clients: HashMap::new(),
        }
    }

    /// Fetches ticket `id` of `account` for its events `evs` and applies it (an upsert, or
    /// its deletion); a failed fetch is retried later or parked ([`after_failure`]).
    pub async fn fetch(
        &mut self,
        account: &str,
        id: i64,
        evs: Vec<PendingEvent>,
        done: &mut Processed,
    ) -> anyhow::Result<()> {
        let acc = self
            .config
            .account(account)
            .expect("events are sorted by configured account");
        if !self.clients.contains_key(account) {
            self.clients
                .insert(account.to_owned(), self.api.client(acc)?);
        }
        let ids: Vec<i64> = evs.iter().map(|e| e.id).collect();
        match self.clients[account].get_ticket(id).await {
            Ok(fetched) => {
                let name = account.to_owned();
                let open = fetched
                    .as_ref()
                    .map(|t| t.openness(acc.contractor_id, &acc.states));
                self.store
                    .call(move |s| {
                        let now = time::fmt(time::now());
                        match (fetched, open) {
                            (Some(t), Some(open)) => {
                                s.mirror()
                                    .upsert_fetched(&name, t, open, &now, changed_fields)?
                            }
                            _ => s.mirror().record_deleted(&name, id, &now)?,
                        };
                        s.webhook().count_fetches(1)?;
                        s.webhook().finish_events(&ids, "fetched", None, &now)
                    })
                    .await?;
                done.fetched += 1;
                tracing::info!(account = %account, ticket = id, events = evs.len(), "Ticket refetched after webhook events.");
            }
            Err(e) => {
                let msg = e.to_string();
                let attempts = evs.iter().map(|e| e.attempts).max().unwrap_or(0) + 1;
                done.failed += 1;
                let (retry, reason) = match after_failure(attempts, e.is_transient(), self.now) {
                    FetchEnd::Retry(at) => {
                        done.next_due = Some(done.next_due.map_or(at, |d| d.min(at)));
                        tracing::warn!(account = %account, ticket = id, error = %msg, attempts, retry_at = %time::fmt(at), "Cannot fetch a ticket named by webhook events; trying again later.");
                        (Some(time::fmt(at)), String::new())
                    }
                    FetchEnd::Park(reason) => {
                        done.parked += 1;
                        tracing::warn!(account = %account, ticket = id, error = %msg, attempts, "Cannot fetch a ticket named by webhook events; its events are parked until the next reconciliation.");
                        (None, reason)
                    }
                };
                self.store
                    .call(move |s| {
                        s.webhook().fail_events(
                            &ids,
                            &msg,
                            attempts,
                            retry.as_deref(),
                            &reason,
                            &time::fmt(time::now()),
                        )
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// Meters the calls of every client used.
    pub async fn record_calls(&self) -> anyhow::Result<()> {
        for client in self.clients.values() {
            client.meter().record(self.store).await?;
        }
        Ok(())
    }
}
