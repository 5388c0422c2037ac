//! The subscribers of the config in force: [`follow`] runs one delivery task per
//! `[[api.subscribers]]` entry and, on every reload, starts the new ones (at the end of the
//! feed, as at start-up), restarts those whose URL, secret, event filter or deadline changed
//! (from their cursor: the event in flight is sent again, with the same `webhook-id`), and stops
//! those removed (their row stays, with its cursor, should they come back).

use std::collections::HashMap;
use std::sync::Arc;

use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use super::SubscriberConfig;
use crate::config::Config;
use crate::domain::time;
use crate::remote::Exchange;
use crate::store::Handle;

/// Starts the delivery tasks of the config in `config` and follows its changes until the
/// config's sender is gone. Each subscriber's row exists when this returns.
pub async fn follow(
    mut config: watch::Receiver<Arc<Config>>,
    exchange: Exchange,
    store: Handle,
) -> anyhow::Result<JoinHandle<()>> {
    let first = config.borrow_and_update().subscribers.clone();
    for s in &first {
        register(s, &store).await?;
    }
    let mut running = Running {
        exchange,
        tasks: HashMap::new(),
        set: JoinSet::new(),
    };
    for s in first {
        running.start(s, &store);
    }
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = config.changed() => {
                    if changed.is_err() {
                        // The runtime ended: so do the deliveries.
                        return;
                    }
                    let wanted = config.borrow_and_update().subscribers.clone();
                    running.follow(wanted, &store).await;
                }
                Some(ended) = running.set.join_next() => match ended {
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => tracing::error!(error = %e, "A subscriber's delivery task ended."),
                    Ok(()) => {}
                },
            }
        }
    }))
}

/// The subscriber's row: a new one starts at the end of the feed as it is now.
async fn register(s: &SubscriberConfig, store: &Handle) -> anyhow::Result<()> {
    let (name, url) = (s.name.clone(), s.url.to_string());
    store
        .call(move |st| {
            st.subscribers()
                .subscriber_start(&name, &url, &time::fmt(time::now()))
        })
        .await?;
    Ok(())
}

/// Whether a running task serves `new` as it is.
fn same(old: &SubscriberConfig, new: &SubscriberConfig) -> bool {
    old.url == new.url
        && old.secret.expose_secret() == new.secret.expose_secret()
        && old.events == new.events
        && old.deadline == new.deadline
}

struct Running {
    /// The shared exchange every subscriber's requests go through.
    exchange: Exchange,
    tasks: HashMap<String, (SubscriberConfig, AbortHandle)>,
    set: JoinSet<()>,
}

impl Running {
    fn start(&mut self, s: SubscriberConfig, store: &Handle) {
        let task = self.set.spawn(super::serve(
            s.clone(),
            self.exchange.clone(),
            store.clone(),
        ));
        self.tasks.insert(s.name.clone(), (s, task));
    }

    /// Starts, restarts and stops tasks so that they serve `wanted`.
    async fn follow(&mut self, wanted: Vec<SubscriberConfig>, store: &Handle) {
        let names: Vec<&str> = wanted.iter().map(|s| s.name.as_str()).collect();
        let gone: Vec<String> = self
            .tasks
            .keys()
            .filter(|n| !names.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some((_, task)) = self.tasks.remove(&name) {
                task.abort();
                tracing::info!(subscriber = %name, "Subscriber removed by the reload; no more events go to it.");
            }
        }
        for s in wanted {
            let verb = match self.tasks.get(&s.name) {
                Some((old, _)) if same(old, &s) => continue,
                Some((_, task)) => {
                    task.abort();
                    "changed"
                }
                None => "added",
            };
            if let Err(e) = register(&s, store).await {
                // Its task registers it on its first pass.
                tracing::warn!(subscriber = %s.name, error = format!("{e:#}"), "Cannot record a subscriber's row yet.");
            }
            tracing::info!(subscriber = %s.name, "Subscriber {verb} by the reload.");
            self.start(s, store);
        }
    }
}
