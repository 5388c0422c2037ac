//! `subscribers`: each `[[api.subscribers]]` entry's delivery state (cursor, lag, status, last
//! error), and `subscribers retry NAME`, which revives a dead one.

use std::process::ExitCode;

pub use super::args::{SubscribersArgs, SubscribersCommand};
use super::escape::esc;
use super::usage;
use crate::config::Config;
use crate::engine::status::{SubscriberShown as Shown, subscribers_shown as shown};
use crate::store::Handle;

/// One line per subscriber for `status` and `subscribers`.
pub fn line(s: &Shown) -> String {
    let mut l = format!(
        "subscriber {} ({}): {}",
        esc(&s.name),
        esc(&s.url),
        s.status
    );
    if let Some(r) = &s.row {
        l.push_str(&format!(
            "; cursor {}, {} event(s) behind, {} delivered",
            r.cursor, r.lag, r.delivered
        ));
        if let Some(e) = &r.last_error {
            l.push_str(&format!(
                "; {} failed attempt(s), last error: {}",
                r.attempts,
                esc(e)
            ));
        }
        if s.status == "dead" {
            l.push_str(&format!(
                " (revive with `huoltosync subscribers retry {}`)",
                esc(&s.name)
            ));
        }
    }
    l
}

pub async fn subscribers(config: &Config, args: SubscribersArgs) -> anyhow::Result<ExitCode> {
    let store = Handle::open_existing(config.store.path.clone()).await?;
    match args.command {
        Some(SubscribersCommand::Retry { name }) => {
            let rows = store.call(|s| s.subscribers().subscribers()).await?;
            let Some(row) = rows.iter().find(|r| r.name == name) else {
                let known: Vec<&str> = config.subscribers.iter().map(|s| s.name.as_str()).collect();
                return Err(usage(format!(
                    "no subscriber named {name:?} has been served (configured: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if row.status != "dead" {
                anyhow::bail!(
                    "subscriber {name:?} is {}, not dead: nothing to retry",
                    row.status
                );
            }
            let n = name.clone();
            store
                .call(move |s| s.subscribers().subscriber_retry(&n))
                .await?;
            outln!(
                "revived subscriber {}: the daemon delivers again from event {}",
                esc(&name),
                row.cursor + 1
            )?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let rows = store.call(|s| s.subscribers().subscribers()).await?;
            let shown = shown(config, rows);
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&shown)?)?;
            } else if shown.is_empty() {
                outln!("no subscribers ([[api.subscribers]] in the config)")?;
            } else {
                for s in &shown {
                    outln!("{}", line(s))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
