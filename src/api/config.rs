//! `[api]`: the HTTP API's listen address, tokens and limits. Read by [`read`], which
//! `config.rs` calls with the `[api]` table; problems are reported by key (`api.listen`,
//! `api.tokens[1].scope`), like every other key of the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use toml::{Table, Value};

use crate::config::Issue;
use crate::config::keys::{Int, api as keys};

/// The shortest token accepted: a bearer token must not be guessable.
pub const MIN_TOKEN_LEN: usize = 16;
/// Feed events are kept this many days unless `[api] feed_retain_days` says otherwise.
pub const DEFAULT_FEED_RETAIN_DAYS: u32 = 30;
/// The default `[api] max_body_bytes`: room for a few base64 attachments.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;
/// The largest `[api] max_body_bytes`.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The GET endpoints.
    Read,
    /// Also the endpoints that queue work.
    Write,
}

/// One `[[api.tokens]]` entry.
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// Who uses it (recorded with what it asks for; never the token itself).
    pub name: String,
    pub token: SecretString,
    pub scope: Scope,
}

/// `[api]`, when the section is present.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where to serve the API; `None`: not served (the section may hold only other keys, such
    /// as `feed_retain_days` or the subscribers).
    pub listen: Option<SocketAddr>,
    pub tokens: Vec<ApiToken>,
    /// Feed events older than this many days are dropped by the purge (daily, and `huoltosync
    /// purge`).
    pub feed_retain_days: u32,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// At most this many connections at once.
    pub max_connections: usize,
    /// At most this many of them from one address.
    pub max_connections_per_address: usize,
    /// At most this many long polls (`changes?wait=`) at once (and at most half of
    /// `max_connections`: [`ApiConfig::long_polls`]).
    pub max_long_polls: usize,
}

impl ApiConfig {
    /// The long polls held at once: `max_long_polls`, but at most half of `max_connections`, so
    /// that ordinary requests always keep slots.
    pub fn long_polls(&self) -> usize {
        self.max_long_polls.min(self.max_connections / 2)
    }
}

/// What reading `[api]` found besides the config: problems by key, the keys of inline secrets
/// and of secrets left unread.
#[derive(Debug, Default)]
pub struct Found {
    pub errors: Vec<Issue>,
    pub inline: Vec<String>,
    pub unread: Vec<String>,
}

impl Found {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Issue {
            key: key.into(),
            message: message.into(),
        });
    }
}

/// The days feed events are kept: `[api] feed_retain_days`, or the default without `[api]`
/// (the feed is written either way).
pub fn feed_retain_days(api: Option<&ApiConfig>) -> u32 {
    api.map_or(DEFAULT_FEED_RETAIN_DAYS, |a| a.feed_retain_days)
}

/// Reads `[api]` (`value` is what the file has under `api`, if anything). `None` when absent or
/// invalid; the API is served only when `listen` is set (then at least one token is needed). With `read_secrets` false, `token_file` / `token_env` are not read (their keys go to
/// `unread`), as for every other secret; `base_dir` anchors relative `token_file` paths (unless
/// `$CREDENTIALS_DIRECTORY` is set). The key `subscribers` is left to its own reader.
pub fn read(
    value: Option<Value>,
    base_dir: &Path,
    read_secrets: bool,
    found: &mut Found,
) -> Option<ApiConfig> {
    let mut t = match value? {
        Value::Table(t) => t,
        other => {
            found.error(
                "api",
                format!("must be a table, not a {}", other.type_str()),
            );
            return None;
        }
    };
    // `[[api.subscribers]]` belongs to the outgoing events' reader.
    t.remove("subscribers");
    let mut bad_listen = false;
    let listen = match t.remove("listen") {
        None => None,
        Some(Value::String(s)) => match s.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                found.error(
                    "api.listen",
                    format!("{s:?} is not an address like 127.0.0.1:8788: {e}"),
                );
                bad_listen = true;
                None
            }
        },
        Some(other) => {
            found.error(
                "api.listen",
                format!("must be a string, not a {}", other.type_str()),
            );
            bad_listen = true;
            None
        }
    };
    let feed_retain_days = int_in(&mut t, "feed_retain_days", 1, 3650, found)
        .unwrap_or(DEFAULT_FEED_RETAIN_DAYS as i64) as u32;
    let max_body_bytes = int_in(&mut t, "max_body_bytes", 1024, MAX_BODY_BYTES as i64, found)
        .unwrap_or(DEFAULT_MAX_BODY_BYTES as i64) as usize;
    let max_connections = int_key(&mut t, &keys::MAX_CONNECTIONS, found) as usize;
    let max_connections_per_address =
        int_key(&mut t, &keys::MAX_CONNECTIONS_PER_ADDRESS, found) as usize;
    let max_long_polls = int_key(&mut t, &keys::MAX_LONG_POLLS, found) as usize;
    let tokens = tokens(t.remove("tokens"), base_dir, read_secrets, found);
    for key in t.keys() {
        found.error(format!("api.{key}"), "unknown key");
    }
    if listen.is_some()
        && tokens.is_empty()
        && !found.errors.iter().any(|i| i.key.starts_with("api.tokens"))
    {
        found.error(
            "api.tokens",
            "missing: serving the API needs at least one [[api.tokens]] entry (name, token, scope)",
        );
    }
    if bad_listen {
        return None;
    }
    Some(ApiConfig {
        listen,
        tokens,
        feed_retain_days,
        max_body_bytes,
        max_connections,
        max_connections_per_address,
        max_long_polls,
    })
}

/// Reads only the `[api]` tokens of the file at `path`, with their secrets: `huoltosync serve`
/// loads the rest of the config without secrets (it never calls Tampuuri) but needs these.
pub fn read_with_tokens(path: &Path) -> Result<Option<ApiConfig>, Vec<Issue>> {
    let fail = |message: String| {
        vec![Issue {
            key: String::new(),
            message,
        }]
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    let mut table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| fail(format!("not valid TOML: {e}")))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut found = Found::default();
    let api = read(table.remove("api"), &base_dir, true, &mut found);
    if found.errors.is_empty() {
        Ok(api)
    } else {
        Err(found.errors)
    }
}

/// A key declared in [`crate::config::keys::api`]: its value, or its default when absent or wrong.
fn int_key(t: &mut Table, key: &Int, found: &mut Found) -> i64 {
    int_in(t, key.name, key.min, key.max, found).unwrap_or(key.default)
}

fn int_in(t: &mut Table, key: &str, min: i64, max: i64, found: &mut Found) -> Option<i64> {
    match t.remove(key)? {
        Value::Integer(n) if (min..=max).contains(&n) => Some(n),
        Value::Integer(n) => {
            found.error(
                format!("api.{key}"),
                format!("{n} is out of range: must be from {min} to {max}"),
            );
            None
        }
        other => {
            found.error(
                format!("api.{key}"),
                format!("must be an integer, not a {}", other.type_str()),
            );
            None
        }
    }
}

fn tokens(
    value: Option<Value>,
    base_dir: &Path,
    read_secrets: bool,
    found: &mut Found,
) -> Vec<ApiToken> {
    let items = match value {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            found.error("api.tokens", "must be an array of tables ([[api.tokens]])");
            return Vec::new();
        }
    };
    let mut out: Vec<ApiToken> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let key = format!("api.tokens[{i}]");
        let Value::Table(mut t) = item else {
            found.error(&key, "must be a table");
            continue;
        };
        let name = match t.remove("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(_) => {
                found.error(format!("{key}.name"), "must be a non-empty string");
                None
            }
            None => {
                found.error(format!("{key}.name"), "missing");
                None
            }
        };
        if let Some(n) = &name
            && out.iter().any(|o| &o.name == n)
        {
            found.error(
                format!("{key}.name"),
                format!("{n:?} is already the name of another token: names must be unique"),
            );
        }
        let scope = match t.remove("scope") {
            None => Some(Scope::Read),
            Some(Value::String(s)) if s == "read" => Some(Scope::Read),
            Some(Value::String(s)) if s == "write" => Some(Scope::Write),
            Some(other) => {
                found.error(
                    format!("{key}.scope"),
                    format!("{other} is not a scope: give \"read\" or \"write\""),
                );
                None
            }
        };
        let token = secret(&mut t, &key, base_dir, read_secrets, found);
        for k in t.keys() {
            found.error(format!("{key}.{k}"), "unknown key");
        }
        if let (Some(name), Some(token), Some(scope)) = (name, token, scope) {
            out.push(ApiToken { name, token, scope });
        }
    }
    out
}

/// The token of `[[api.tokens]]` entry `key`: `token`, `token_file` or `token_env` (exactly
/// one), at least [`MIN_TOKEN_LEN`] characters. Errors name the key, never the value.
fn secret(
    t: &mut Table,
    key: &str,
    base_dir: &Path,
    read_secrets: bool,
    found: &mut Found,
) -> Option<SecretString> {
    let mut given = Vec::new();
    for k in ["token", "token_file", "token_env"] {
        match t.remove(k) {
            None => {}
            Some(Value::String(s)) if !s.is_empty() => given.push((k, s)),
            Some(_) => found.error(format!("{key}.{k}"), "must be a non-empty string"),
        }
    }
    let (k, v) = match given.len() {
        0 => {
            if !found
                .errors
                .iter()
                .any(|i| i.key.starts_with(&format!("{key}.token")))
            {
                found.error(
                    format!("{key}.token"),
                    "missing: give token, token_file or token_env",
                );
            }
            return None;
        }
        1 => given.pop().expect("one"),
        _ => {
            found.error(
                format!("{key}.token"),
                "give only one of token, token_file, token_env",
            );
            return None;
        }
    };
    let full = format!("{key}.{k}");
    let value = match k {
        "token" => {
            found.inline.push(full.clone());
            v
        }
        _ if !read_secrets => {
            found.unread.push(full);
            return Some(SecretString::from(String::new()));
        }
        "token_file" => {
            let path = credential_path(base_dir, &v);
            match std::fs::read_to_string(&path) {
                Ok(s) => s.trim_end_matches(['\n', '\r']).to_owned(),
                Err(e) => {
                    let m = crate::config::unreadable_credential(&v, &path, &e);
                    found.error(full, m);
                    return None;
                }
            }
        }
        _ => match std::env::var(&v) {
            Ok(s) => s,
            Err(_) => {
                found.error(full, format!("environment variable {v} is not set"));
                return None;
            }
        },
    };
    let secret = SecretString::from(value);
    let n = secret.expose_secret().chars().count();
    if n < MIN_TOKEN_LEN {
        found.error(
            full,
            format!("the token is {n} characters long: a token needs at least {MIN_TOKEN_LEN}"),
        );
        return None;
    }
    if secret
        .expose_secret()
        .chars()
        .any(|c| c.is_control() || c == ' ')
    {
        found.error(
            full,
            "the token holds a space or a control character, which a Bearer header cannot carry",
        );
        return None;
    }
    Some(secret)
}

/// `*_file` names: absolute as given; relative ones in `$CREDENTIALS_DIRECTORY` (systemd's
/// `LoadCredential=`) when it is set, else beside the config file (as for every other secret).
fn credential_path(base_dir: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.to_owned();
    }
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => Path::new(&dir).join(p),
        None => base_dir.join(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(toml: &str) -> (Option<ApiConfig>, Found) {
        let mut t: Table = toml.parse().unwrap();
        let mut found = Found::default();
        let api = read(t.remove("api"), Path::new("/nonexistent"), true, &mut found);
        (api, found)
    }

    #[test]
    fn defaults_and_scopes() {
        let (api, found) = read_str(
            "[api]\nlisten = \"127.0.0.1:0\"\n[[api.tokens]]\nname = \"erp\"\ntoken = \"0123456789abcdef\"\nscope = \"write\"\n[[api.tokens]]\nname = \"v\"\ntoken = \"0123456789abcdeg\"\n",
        );
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let api = api.unwrap();
        assert_eq!(api.feed_retain_days, 30);
        assert_eq!(api.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(api.tokens[0].scope, Scope::Write);
        assert_eq!(api.tokens[1].scope, Scope::Read);
        assert_eq!(found.inline, ["api.tokens[0].token", "api.tokens[1].token"]);
    }

    #[test]
    fn an_absent_section_is_off() {
        let (api, found) = read_str("[store]\npath = \"x\"\n");
        assert!(api.is_none() && found.errors.is_empty());
    }

    #[test]
    fn long_polls_keep_half_the_connections_free_and_a_bad_cap_is_named() {
        let toml = |extra: &str| {
            format!(
                "[api]\nlisten = \"127.0.0.1:0\"\n{extra}\n[[api.tokens]]\nname = \"v\"\ntoken = \"0123456789abcdef\"\n"
            )
        };
        let (api, found) = read_str(&toml(""));
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let api = api.unwrap();
        assert_eq!(
            (api.max_long_polls, api.max_connections_per_address),
            (64, 128)
        );
        assert_eq!(api.long_polls(), 64);
        let (api, _) = read_str(&toml("max_connections = 10"));
        assert_eq!(api.unwrap().long_polls(), 5);
        let (_, found) = read_str(&toml(
            "max_long_polls = 0\nmax_connections_per_address = \"x\"",
        ));
        let keys: Vec<_> = found.errors.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            ["api.max_connections_per_address", "api.max_long_polls"]
        );
    }
}
