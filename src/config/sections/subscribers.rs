//! `[[api.subscribers]]`: who receives the signed outgoing events, read by the config's one
//! [`Reader`] from the `subscribers` array of the `[api]` table (the rest of `[api]` is
//! `sections::api`'s). Defaults and bounds are in `keys::api::subscribers`.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use toml::{Table, Value};

use crate::config::keys::api::subscribers::*;
use crate::config::keys::api::{SECTION as API, SUBSCRIBERS};
use crate::config::reader::{Reader, join};

/// The feed event types a subscriber can ask for (`events`), as `sql/007_feed.sql` and
/// `sql/011_visits.sql` write them.
pub const EVENT_TYPES: [&str; 12] = [
    "ticket.new",
    "ticket.changed",
    "ticket.returned",
    "ticket.left",
    "action.queued",
    "action.applied",
    "action.dead",
    "action.cancelled",
    "action.requeued",
    "visit.booked",
    "visit.moved",
    "visit.cancelled",
];

/// One `[[api.subscribers]]` entry.
#[derive(Debug, Clone)]
pub struct SubscriberConfig {
    /// Unique; the key of its cursor in the store. Default: the url's host, port and path.
    pub name: String,
    /// Where every event is POSTed (http or https). Nothing is sent anywhere else.
    pub url: reqwest::Url,
    /// The `whsec_…` secret as written; empty when loaded without secrets.
    pub secret: SecretString,
    /// Event types to deliver; `None` for all (`"*"`).
    pub events: Option<Vec<String>>,
    /// How long the current event is retried after its first failure before the subscriber
    /// is marked dead.
    pub deadline: Duration,
}

impl SubscriberConfig {
    /// Whether events of `kind` go to this subscriber.
    pub fn wants(&self, kind: &str) -> bool {
        match &self.events {
            None => true,
            Some(list) => list.iter().any(|e| e == kind),
        }
    }

    /// The HMAC key: the base64 after `whsec_`. `None` when the secret was not read or is not
    /// in that form (the loader refuses such a config).
    pub fn signing_key(&self) -> Option<Vec<u8>> {
        signing_key(self.secret.expose_secret())
    }
}

/// The bytes of a Standard Webhooks secret (`whsec_` + base64), if it is one.
pub fn signing_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .filter(|k| k.len() >= MIN_SECRET_BYTES)
}

/// The default name of a subscriber at `url`: host, port when given, and path.
pub fn default_name(url: &reqwest::Url) -> String {
    let mut name = url.host_str().unwrap_or("subscriber").to_owned();
    if let Some(port) = url.port() {
        name.push_str(&format!(":{port}"));
    }
    name.push_str(url.path().trim_end_matches('/'));
    name
}

impl Reader {
    /// Takes `subscribers` out of the `[api]` table (leaving its other keys to
    /// [`Reader::api`]) and validates every entry, reporting each problem by its key
    /// (`api.subscribers[0].secret`).
    pub(in crate::config) fn subscribers(&mut self, root: &mut Table) -> Vec<SubscriberConfig> {
        let Some(Value::Table(api)) = root.get_mut(API) else {
            return Vec::new();
        };
        let entries = api.remove(SUBSCRIBERS);
        if api.is_empty() {
            // `[[api.subscribers]]` alone: no `[api]` of its own.
            root.remove(API);
        }
        let Some(entries) = entries else {
            return Vec::new();
        };
        // Under its full name, so that each entry's key is `api.subscribers[i]`.
        let mut holder = Table::new();
        holder.insert(SECTION.to_owned(), entries);
        let mut out = Vec::new();
        let mut names = HashSet::new();
        for (p, mut t) in self.tables(&mut holder, "", SECTION) {
            let before = self.errors.len();
            let s = self.subscriber(&p, &mut t);
            self.finish(t, &p);
            let Some(s) = s.filter(|_| self.errors.len() == before) else {
                continue;
            };
            if !names.insert(s.name.clone()) {
                self.error(
                    &format!("{p}.name"),
                    &format!(
                        "duplicate subscriber name {:?}: give each subscriber its own name",
                        s.name
                    ),
                );
                continue;
            }
            out.push(s);
        }
        out
    }

    /// One entry (`p` is `api.subscribers[i]`); `None` when a required value is missing.
    fn subscriber(&mut self, p: &str, t: &mut Table) -> Option<SubscriberConfig> {
        let url = self.web_url(t, p, "url", None);
        if url.is_none() && !self.has_error(&join(p, "url")) {
            self.error(&join(p, "url"), "missing");
        }
        let url = url.filter(|u| {
            let plain = u.username().is_empty() && u.password().is_none();
            if !plain {
                self.error(
                    &join(p, "url"),
                    &format!(
                        "{:?} must be an http:// or https:// URL without user:password",
                        u.as_str()
                    ),
                );
            }
            plain
        });
        let name = match t.remove("name") {
            None => url.as_ref().map(default_name),
            Some(Value::String(s)) if !s.trim().is_empty() && !s.chars().any(char::is_control) => {
                Some(s)
            }
            Some(Value::String(_)) => {
                self.error(
                    &join(p, "name"),
                    "must not be empty or hold control characters",
                );
                None
            }
            Some(other) => {
                self.error(
                    &join(p, "name"),
                    &format!("must be a string, not a {}", other.type_str()),
                );
                None
            }
        };
        let secret = self.signing_secret(t, p);
        let events = self.events(t, p);
        let deadline_hours = self.int(t, p, &DEADLINE_HOURS) as u64;
        Some(SubscriberConfig {
            name: name?,
            url: url?,
            secret: secret?,
            events,
            deadline: Duration::from_secs(deadline_hours * 3600),
        })
    }

    /// `secret`, `secret_file` or `secret_env`: a Standard Webhooks secret.
    fn signing_secret(&mut self, t: &mut Table, p: &str) -> Option<SecretString> {
        let given = ["secret", "secret_file", "secret_env"]
            .into_iter()
            .find(|k| t.contains_key(*k))
            .map(|k| join(p, k));
        let secret = self.secret(t, p, "secret");
        let Some(given) = given else {
            self.error(
                &join(p, "secret"),
                "missing: give secret, secret_file or secret_env (whsec_ + base64)",
            );
            return None;
        };
        let s = secret?;
        // Empty: not read (loaded without secrets); its form is checked when it is read.
        if !s.expose_secret().is_empty() && signing_key(s.expose_secret()).is_none() {
            self.error(
                &given,
                &format!("must be a Standard Webhooks secret: whsec_ followed by the base64 of at least {MIN_SECRET_BYTES} random bytes"),
            );
        }
        Some(s)
    }

    /// `events`: `None` for every event type (`["*"]`).
    fn events(&mut self, t: &mut Table, p: &str) -> Option<Vec<String>> {
        match t.remove("events") {
            None => None,
            Some(Value::Array(items)) if !items.is_empty() => {
                let mut list = Vec::new();
                let mut all = false;
                for (j, v) in items.into_iter().enumerate() {
                    match v {
                        Value::String(s) if s == "*" => all = true,
                        Value::String(s) if EVENT_TYPES.contains(&s.as_str()) => list.push(s),
                        Value::String(s) => self.error(
                            &format!("{p}.events[{j}]"),
                            &format!(
                                "unknown event type {s:?}: use \"*\" or one of {}",
                                EVENT_TYPES.join(", ")
                            ),
                        ),
                        other => self.error(
                            &format!("{p}.events[{j}]"),
                            &format!("must be a string, not a {}", other.type_str()),
                        ),
                    }
                }
                if all { None } else { Some(list) }
            }
            Some(_) => {
                self.error(
                    &join(p, "events"),
                    "must be a non-empty list of event types, or [\"*\"] for all",
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_must_be_whsec_base64_of_enough_bytes() {
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let table = [
            (format!("whsec_{}", b64(&[7; 32])), Some(32)),
            (format!("whsec_{}", b64(&[7; 16])), Some(16)),
            (format!("whsec_{}", b64(&[7; 15])), None),
            (b64(&[7; 32]), None),
            ("whsec_not base64!".to_owned(), None),
            ("whsec_".to_owned(), None),
            ("".to_owned(), None),
        ];
        for (secret, want) in table {
            assert_eq!(signing_key(&secret).map(|k| k.len()), want, "{secret}");
        }
    }

    #[test]
    fn default_names_come_from_the_url() {
        let name = |u: &str| default_name(&reqwest::Url::parse(u).unwrap());
        assert_eq!(
            name("https://erp.example.fi/hooks/"),
            "erp.example.fi/hooks"
        );
        assert_eq!(
            name("http://127.0.0.1:8080/events"),
            "127.0.0.1:8080/events"
        );
        assert_eq!(name("https://erp.example.fi"), "erp.example.fi");
    }
}
