//! `slotti webhook register|list|delete`: Slotti's webhook registration, through its API; and
//! Slotti's part of `check-config` (its line, and with `--online` the key, the services and the
//! technicians the config names) and of `status` (its API calls).

use std::process::ExitCode;

pub use super::args::{SlottiArgs, SlottiCommand, WebhookCommand};
use super::escape::esc;
use super::usage;
use crate::config::Config;
use crate::config::SlottiConfig;
use crate::slotti::{Client, NewWebhook, Resource, Service, TOPICS};
use crate::store::{CallsOf, Handle};

/// The `[slotti]` section, or the usage error that says it is missing.
fn section(config: &Config) -> anyhow::Result<&SlottiConfig> {
    config.slotti.as_ref().ok_or_else(|| {
        usage(format!(
            "{} has no [slotti] section: add one (see config.example.toml)",
            config.source.display()
        ))
    })
}

/// Meters the client's calls when the store exists (a command must not create it).
async fn meter(config: &Config, client: &Client) -> String {
    if !config.store.path.exists() {
        return format!(
            "not metered: no store yet at {}",
            config.store.path.display()
        );
    }
    let recorded = match Handle::open(config.store.path.clone()).await {
        Ok(store) => client.meter().record(&store).await,
        Err(e) => Err(e),
    };
    match recorded {
        Ok(_) => "metered in the store".into(),
        Err(e) => format!("NOT metered: {e:#}"),
    }
}

pub async fn slotti(config: &Config, args: SlottiArgs) -> anyhow::Result<ExitCode> {
    let s = section(config)?;
    let SlottiCommand::Webhook(command) = args.command;
    let client = Client::new(config, s, &crate::remote::Exchange::new(config)?)?;
    let result = webhook(s, &client, command).await;
    let calls = client.unrecorded_calls();
    if calls > 0 {
        let metered = meter(config, &client).await;
        if metered != "metered in the store" {
            tracing::warn!(calls, "Slotti calls {metered}.");
        }
    }
    result
}

async fn webhook(
    s: &SlottiConfig,
    client: &Client,
    command: WebhookCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        WebhookCommand::Register { url } => {
            let raw = match url {
                Some(u) => u,
                None => s.webhook.public_url.as_ref().map(|u| u.to_string()).ok_or_else(|| {
                    usage("give --url, or set [slotti.webhook] public_url: the address Slotti delivers to")
                })?,
            };
            let delivery_url = reqwest::Url::parse(&raw)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or_else(|| {
                    usage(format!("--url {raw:?} must be an http:// or https:// URL"))
                })?;
            if s.webhook.secret.is_none() && s.webhook.basic_user.is_none() {
                return Err(usage(
                    "[slotti.webhook] has neither secret nor basic_user/basic_password: deliveries could not be authenticated",
                ));
            }
            if s.webhook.basic_user.is_some() && delivery_url.scheme() != "https" {
                tracing::warn!(url = %delivery_url, "Slotti adds Basic auth to deliveries over HTTPS only (its documentation says); over http the digest is what authenticates them.");
            }
            let id = client
                .register_webhook(&NewWebhook {
                    delivery_url,
                    topics: TOPICS.iter().map(|t| t.to_string()).collect(),
                    secret: s.webhook.secret.clone(),
                    auth_user: s.webhook.basic_user.clone(),
                    auth_password: s.webhook.basic_password.clone(),
                })
                .await?;
            outln!("{id}")?;
        }
        WebhookCommand::List { json } => {
            let hooks = client.webhooks().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&hooks)?)?;
            } else if hooks.is_empty() {
                outln!("no webhook registered")?;
            } else {
                for h in &hooks {
                    outln!(
                        "{}  {}  {}",
                        esc(&h.guid),
                        esc(&h.delivery_url),
                        esc(&h.topics.join(","))
                    )?;
                }
            }
        }
        WebhookCommand::Delete { guid } => {
            client.delete_webhook(&guid).await?;
            outln!("deleted webhook {}", esc(&guid))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `check-config`'s line for a valid `[slotti]`.
pub fn config_line(s: &SlottiConfig) -> String {
    format!(
        "  slotti: booking account {} at {}, default service {:?}, {} rule(s), horizon {} day(s), auto_book {}",
        s.booking_account,
        s.base_url,
        s.default_service,
        s.rules.len(),
        s.horizon_days,
        s.auto_book
    )
}

/// `status`'s line for Slotti's calls.
pub fn status_line(c: &CallsOf) -> String {
    let by: Vec<String> = c
        .calls_by_endpoint_today
        .iter()
        .map(|(e, n)| format!("{e} {n}"))
        .collect();
    let mut l = format!(
        "slotti: API calls: {} today, {} this month (not billed by Tampuuri)",
        c.calls_today, c.calls_this_month
    );
    if !by.is_empty() {
        l.push_str(&format!(" [{}]", by.join(", ")));
    }
    l
}

/// `status`'s line for Slotti's synchronisation: the last reconciliation and its age, the
/// visits by status, the webhook deliveries.
pub fn sync_line(
    s: &crate::engine::status::SlottiShown,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let y = &s.sync;
    let last = match &y.last_reconcile {
        None => "never".to_owned(),
        Some(r) => {
            let age = crate::domain::time::parse(&r.finished_at).map_or_else(String::new, |t| {
                format!(" ({} ago)", crate::domain::time::age(now - t))
            });
            match (&r.ok, &r.error) {
                (true, _) => format!(
                    "{}{age}, {} listed, {} moved, {} cancelled, {} recovered",
                    r.finished_at, r.listed, r.moved, r.cancelled, r.recovered
                ),
                (false, e) => format!(
                    "{}{age} FAILED: {}",
                    r.finished_at,
                    e.as_deref().unwrap_or("unknown error")
                ),
            }
        }
    };
    format!(
        "slotti: last reconciliation {last}; visits {} booked, {} moved, {} cancelled; \
         webhook deliveries {} received, {} duplicates, {} refused, {} pending",
        y.visits_booked,
        y.visits_moved,
        y.visits_cancelled,
        y.deliveries_received,
        y.deliveries_duplicate,
        y.deliveries_refused,
        y.deliveries_pending
    )
}

/// `run --once`'s line for Slotti's part: the deliveries processed and the reconciliation.
pub fn run_line(s: &crate::service::cycle::SlottiReport) -> String {
    let (d, r) = (&s.deliveries, &s.reconcile);
    let reconciled = match (&r.ok, &r.error) {
        (true, _) => format!(
            "{} listed, {} ours, {} moved, {} cancelled, {} recovered, {} API call(s)",
            r.listed, r.ours, r.moved, r.cancelled, r.recovered, r.calls
        ),
        (false, e) => format!("FAILED: {}", e.as_deref().unwrap_or("unknown error")),
    };
    format!(
        "slotti: {} webhook deliveries processed ({} moved, {} cancelled); reconciliation: {reconciled}",
        d.processed, d.moved, d.cancelled
    )
}

/// A service named by name (any case) or guid.
fn find_service<'a>(services: &'a [Service], want: &str) -> Option<&'a Service> {
    services.iter().find(|s| {
        s.guid.eq_ignore_ascii_case(want) || s.name.trim().eq_ignore_ascii_case(want.trim())
    })
}

/// A resource named by name (any case) or guid.
fn find_resource<'a>(resources: &'a [Resource], want: &str) -> Option<&'a Resource> {
    resources.iter().find(|r| {
        r.guid.eq_ignore_ascii_case(want) || r.name.trim().eq_ignore_ascii_case(want.trim())
    })
}

/// `check-config --online` for `[slotti]`: the key works (`GET webhooks`, on the API that
/// needs it), and the default service, each rule's service and technicians exist. Prints what
/// it found; answers whether all was well.
pub async fn online(config: &Config) -> anyhow::Result<bool> {
    let s = section(config)?;
    let client = Client::new(config, s, &crate::remote::Exchange::new(config)?)?;
    let lines = probe(s, &client).await;
    let ok = lines.iter().all(|(good, _)| *good);
    outln!("  slotti: {}", if ok { "OK" } else { "PROBLEM" })?;
    for (good, line) in &lines {
        outln!("    {}{}", if *good { "" } else { "FAILED: " }, esc(line))?;
    }
    outln!(
        "    calls made: {} ({})",
        client.unrecorded_calls(),
        meter(config, &client).await
    )?;
    Ok(ok)
}

/// What the probe found, each line with whether it is good.
async fn probe(s: &SlottiConfig, client: &Client) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    match client.webhooks().await {
        Ok(w) => out.push((
            true,
            format!("the API key works (GET webhooks: {} registered)", w.len()),
        )),
        Err(e) => out.push((false, e.to_string())),
    }
    match client.services().await {
        Ok(services) => {
            let mut wanted = vec![("default_service".to_owned(), s.default_service.clone())];
            for (i, r) in s.rules.iter().enumerate() {
                if let Some(x) = &r.service {
                    wanted.push((format!("slotti.rules[{i}].service"), x.clone()));
                }
            }
            for (key, want) in wanted {
                match find_service(&services, &want) {
                    Some(found) => out.push((
                        true,
                        format!("{key} {want:?}: service {} ({})", found.name, found.guid),
                    )),
                    None => out.push((
                        false,
                        format!(
                            "{key} {want:?}: no such service in booking account {} (it has: {})",
                            s.booking_account,
                            services
                                .iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )),
                }
            }
        }
        Err(e) => out.push((false, e.to_string())),
    }
    if s.rules.iter().any(|r| !r.technicians.is_empty()) {
        match client.resources().await {
            Ok(resources) => {
                for (i, r) in s.rules.iter().enumerate() {
                    for t in &r.technicians {
                        let key = format!("slotti.rules[{i}].technicians");
                        match find_resource(&resources, t) {
                            Some(found) => out.push((
                                true,
                                format!("{key} {t:?}: resource {} (id {})", found.name, found.id),
                            )),
                            None => out.push((
                                false,
                                format!(
                                    "{key} {t:?}: no such technician (resource) in booking account {} (it has: {})",
                                    s.booking_account,
                                    resources.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
                                ),
                            )),
                        }
                    }
                }
            }
            Err(e) => out.push((false, e.to_string())),
        }
    }
    out
}
