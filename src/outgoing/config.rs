//! `[[api.subscribers]]`: who receives the signed outgoing events, read from the `subscribers`
//! array of the `[api]` table. The rest of `[api]` is not read here.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use toml::{Table, Value};

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

/// The smallest signing secret accepted, in decoded bytes (Standard Webhooks secrets are 24 to
/// 64 random bytes; 16 leaves room for hand-made ones without allowing toy keys).
pub const MIN_SECRET_BYTES: usize = 16;

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

/// What the config loader lends this parser: its secret reader (inline, `*_file`, `*_env`, with
/// the inline warning and the unread list) and its error list.
pub trait Keys {
    /// A secret given as `key`, `key_file` or `key_env`; an empty one when the config is loaded
    /// without secrets and it is in a file or the environment.
    fn secret(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<SecretString>;
    /// Records a problem with `key`.
    fn error(&mut self, key: &str, message: &str);
}

/// Takes `subscribers` out of the `[api]` table (leaving its other keys to their owner) and
/// validates every entry, reporting each problem by its key (`api.subscribers[0].secret`).
pub fn subscribers(api: Option<&mut Table>, keys: &mut dyn Keys) -> Vec<SubscriberConfig> {
    let Some(api) = api else {
        return Vec::new();
    };
    let items = match api.remove("subscribers") {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            keys.error(
                "api.subscribers",
                &format!(
                    "must be a list of tables ([[api.subscribers]]), not a {}",
                    other.type_str()
                ),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let p = format!("api.subscribers[{i}]");
        let Value::Table(mut t) = item else {
            keys.error(&p, "must be a table ([[api.subscribers]])");
            continue;
        };
        if let Some(s) = one(keys, &p, &mut t) {
            if !names.insert(s.name.clone()) {
                keys.error(
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
    }
    out
}

fn one(keys: &mut dyn Keys, p: &str, t: &mut Table) -> Option<SubscriberConfig> {
    let mut ok = true;
    let url = url(keys, p, t);
    let name = name(keys, p, t, url.as_ref(), &mut ok);
    let secret = secret(keys, p, t, &mut ok);
    let events = events(keys, p, t, &mut ok);
    let deadline_hours = deadline_hours(keys, p, t, &mut ok);
    for key in t.keys() {
        keys.error(&format!("{p}.{key}"), "unknown key");
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(SubscriberConfig {
        name: name?,
        url: url?,
        secret: secret?,
        events,
        deadline: Duration::from_secs(deadline_hours * 3600),
    })
}

/// `url`: an http(s) URL with a host and no user:password.
fn url(keys: &mut dyn Keys, p: &str, t: &mut Table) -> Option<reqwest::Url> {
    match t.remove("url") {
        None => {
            keys.error(&format!("{p}.url"), "missing");
            None
        }
        Some(Value::String(raw)) => match reqwest::Url::parse(&raw) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.username().is_empty()
                    && u.password().is_none() =>
            {
                Some(u)
            }
            Ok(_) => {
                keys.error(
                    &format!("{p}.url"),
                    &format!("{raw:?} must be an http:// or https:// URL without user:password"),
                );
                None
            }
            Err(e) => {
                keys.error(&format!("{p}.url"), &format!("{raw:?} is not a URL: {e}"));
                None
            }
        },
        Some(other) => {
            keys.error(
                &format!("{p}.url"),
                &format!("must be a string, not a {}", other.type_str()),
            );
            None
        }
    }
}

/// `name`: given, or made from the URL.
fn name(
    keys: &mut dyn Keys,
    p: &str,
    t: &mut Table,
    url: Option<&reqwest::Url>,
    ok: &mut bool,
) -> Option<String> {
    match t.remove("name") {
        None => url.map(default_name),
        Some(Value::String(s)) if !s.trim().is_empty() && !s.chars().any(char::is_control) => {
            Some(s)
        }
        Some(Value::String(_)) => {
            keys.error(
                &format!("{p}.name"),
                "must not be empty or hold control characters",
            );
            *ok = false;
            None
        }
        Some(other) => {
            keys.error(
                &format!("{p}.name"),
                &format!("must be a string, not a {}", other.type_str()),
            );
            *ok = false;
            None
        }
    }
}

/// `secret`, `secret_file` or `secret_env`: a Standard Webhooks secret.
fn secret(keys: &mut dyn Keys, p: &str, t: &mut Table, ok: &mut bool) -> Option<SecretString> {
    let given = ["secret", "secret_file", "secret_env"]
        .into_iter()
        .find(|k| t.contains_key(*k))
        .map(|k| format!("{p}.{k}"));
    let secret = keys.secret(t, p, "secret");
    match (&secret, &given) {
        (None, None) => {
            keys.error(
                &format!("{p}.secret"),
                "missing: give secret, secret_file or secret_env (whsec_ + base64)",
            );
            *ok = false;
        }
        (None, Some(_)) => *ok = false,
        // Not read (loaded without secrets): its form is checked when it is read.
        (Some(s), _) if s.expose_secret().is_empty() => {}
        (Some(s), Some(key)) => {
            if signing_key(s.expose_secret()).is_none() {
                keys.error(
                    key,
                    &format!("must be a Standard Webhooks secret: whsec_ followed by the base64 of at least {MIN_SECRET_BYTES} random bytes"),
                );
                *ok = false;
            }
        }
        (Some(_), None) => {}
    }
    secret
}

/// `events`: `None` for every event type.
fn events(keys: &mut dyn Keys, p: &str, t: &mut Table, ok: &mut bool) -> Option<Vec<String>> {
    match t.remove("events") {
        None => None,
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut list = Vec::new();
            let mut all = false;
            for (j, v) in items.into_iter().enumerate() {
                match v {
                    Value::String(s) if s == "*" => all = true,
                    Value::String(s) if EVENT_TYPES.contains(&s.as_str()) => list.push(s),
                    Value::String(s) => {
                        keys.error(
                            &format!("{p}.events[{j}]"),
                            &format!(
                                "unknown event type {s:?}: use \"*\" or one of {}",
                                EVENT_TYPES.join(", ")
                            ),
                        );
                        *ok = false;
                    }
                    other => {
                        keys.error(
                            &format!("{p}.events[{j}]"),
                            &format!("must be a string, not a {}", other.type_str()),
                        );
                        *ok = false;
                    }
                }
            }
            if all { None } else { Some(list) }
        }
        Some(_) => {
            keys.error(
                &format!("{p}.events"),
                "must be a non-empty list of event types, or [\"*\"] for all",
            );
            *ok = false;
            None
        }
    }
}

/// `deadline_hours`: 1 to 720, 24 when absent.
fn deadline_hours(keys: &mut dyn Keys, p: &str, t: &mut Table, ok: &mut bool) -> u64 {
    match t.remove("deadline_hours") {
        None => 24,
        Some(Value::Integer(n)) if (1..=24 * 30).contains(&n) => n as u64,
        Some(Value::Integer(n)) => {
            keys.error(
                &format!("{p}.deadline_hours"),
                &format!("{n} is out of range: must be from 1 to 720"),
            );
            *ok = false;
            24
        }
        Some(other) => {
            keys.error(
                &format!("{p}.deadline_hours"),
                &format!("must be an integer, not a {}", other.type_str()),
            );
            *ok = false;
            24
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
