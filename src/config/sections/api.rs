//! `[api]`: the HTTP API's listen address, tokens and limits, read by the config's one
//! [`Reader`]; problems are reported by key (`api.listen`, `api.tokens[1].scope`), like every
//! other key of the file. Defaults and bounds are in `keys::api`. `[[api.subscribers]]` is read
//! by `sections::subscribers`.

use std::net::SocketAddr;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use toml::{Table, Value};

use crate::config::keys::api::*;
use crate::config::reader::{Reader, join};
use crate::config::types::Issue;

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

/// The days feed events are kept: `[api] feed_retain_days`, or the default without `[api]`
/// (the feed is written either way).
pub fn feed_retain_days(api: Option<&ApiConfig>) -> u32 {
    api.map_or(FEED_RETAIN_DAYS.default as u32, |a| a.feed_retain_days)
}

/// The largest request body the listener takes: `[api] max_body_bytes`, or its default.
pub fn max_body_bytes(api: Option<&ApiConfig>) -> usize {
    api.map_or(MAX_BODY_BYTES.default as usize, |a| a.max_body_bytes)
}

/// Reads only the `[api]` section of the file at `path`, with its tokens' secrets: `huoltosync
/// serve` loads the rest of the config without secrets (it never calls Tampuuri) but needs
/// these. The problems are returned by key, as [`crate::config::Config::load`] reports them.
pub fn read_api_with_tokens(path: &Path) -> Result<Option<ApiConfig>, Vec<Issue>> {
    let fail = |message: String| {
        vec![Issue {
            key: String::new(),
            message,
        }]
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    let mut root: Table = text
        .parse()
        .map_err(|e: toml::de::Error| fail(format!("not valid TOML: {e}")))?;
    let mut r = Reader::new(path, true);
    if let Some(Value::Table(api)) = root.get_mut(SECTION) {
        // Read by their own section; not this one's to judge here.
        api.remove(SUBSCRIBERS);
    }
    let api = r.api(&mut root);
    if r.errors.is_empty() {
        Ok(api)
    } else {
        Err(r.errors)
    }
}

impl Reader {
    /// `[api]`: `None` when absent or when `listen` is bad; the API is served only when
    /// `listen` is set (then at least one token is needed). Call after
    /// [`Reader::subscribers`], which takes `subscribers` out of the table.
    pub(in crate::config) fn api(&mut self, root: &mut Table) -> Option<ApiConfig> {
        let mut t = self.table(root, "", SECTION)?;
        let errors_before = self.errors.len();
        let listen = self.string(&mut t, SECTION, "listen");
        let bad_listen = self.errors.len() > errors_before;
        let listen = listen.and_then(|s| match s.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                self.error(
                    "api.listen",
                    &format!("{s:?} is not an address like 127.0.0.1:8788: {e}"),
                );
                None
            }
        });
        let bad_listen = bad_listen || self.errors.len() > errors_before;
        let feed_retain_days = self.int(&mut t, SECTION, &FEED_RETAIN_DAYS) as u32;
        let max_body_bytes = self.int(&mut t, SECTION, &MAX_BODY_BYTES) as usize;
        let max_connections = self.int(&mut t, SECTION, &MAX_CONNECTIONS) as usize;
        let max_connections_per_address =
            self.int(&mut t, SECTION, &MAX_CONNECTIONS_PER_ADDRESS) as usize;
        let max_long_polls = self.int(&mut t, SECTION, &MAX_LONG_POLLS) as usize;
        let tokens = self.tokens(&mut t);
        self.finish(t, SECTION);
        let tokens_key = join(SECTION, TOKENS);
        if listen.is_some()
            && tokens.is_empty()
            && !self.errors.iter().any(|i| i.key.starts_with(&tokens_key))
        {
            self.error(
                &tokens_key,
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

    /// `[[api.tokens]]`: each with a unique name, a scope and a token.
    fn tokens(&mut self, api: &mut Table) -> Vec<ApiToken> {
        let mut out: Vec<ApiToken> = Vec::new();
        for (key, mut t) in self.tables(api, SECTION, TOKENS) {
            let name = self
                .required_string(&mut t, &key, "name")
                .map(|s| s.trim().to_owned());
            if let Some(n) = &name
                && out.iter().any(|o| &o.name == n)
            {
                self.error(
                    &format!("{key}.name"),
                    &format!("{n:?} is already the name of another token: names must be unique"),
                );
            }
            let scope = match t.remove("scope") {
                None => Some(Scope::Read),
                Some(Value::String(s)) if s == "read" => Some(Scope::Read),
                Some(Value::String(s)) if s == "write" => Some(Scope::Write),
                Some(other) => {
                    self.error(
                        &format!("{key}.scope"),
                        &format!("{other} is not a scope: give \"read\" or \"write\""),
                    );
                    None
                }
            };
            let token = self.token(&mut t, &key);
            self.finish(t, &key);
            if let (Some(name), Some(token), Some(scope)) = (name, token, scope) {
                out.push(ApiToken { name, token, scope });
            }
        }
        out
    }

    /// The token of `[[api.tokens]]` entry `key`, through the one secret reader (`token`,
    /// `token_file` or `token_env`), at least [`MIN_TOKEN_LEN`] characters and fit for a
    /// Bearer header. Errors name the key, never the value.
    fn token(&mut self, t: &mut Table, key: &str) -> Option<SecretString> {
        let given = ["token", "token_file", "token_env"]
            .into_iter()
            .find(|k| t.contains_key(*k))
            .map(|k| join(key, k));
        let secret = self.secret(t, key, "token");
        let Some(given) = given else {
            self.missing_secret(key, "token");
            return None;
        };
        let secret = secret?;
        if secret.expose_secret().is_empty() {
            // Not read (loaded without secrets): it is checked when it is read.
            return Some(secret);
        }
        let n = secret.expose_secret().chars().count();
        if n < MIN_TOKEN_LEN {
            self.error(
                &given,
                &format!(
                    "the token is {n} characters long: a token needs at least {MIN_TOKEN_LEN}"
                ),
            );
            return None;
        }
        if secret
            .expose_secret()
            .chars()
            .any(|c| c.is_control() || c == ' ')
        {
            self.error(
                &given,
                "the token holds a space or a control character, which a Bearer header cannot carry",
            );
            return None;
        }
        Some(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(toml: &str) -> (Option<ApiConfig>, Reader) {
        let mut t: Table = toml.parse().unwrap();
        let mut r = Reader::new(Path::new("/nonexistent/config.toml"), true);
        let api = r.api(&mut t);
        (api, r)
    }

    #[test]
    fn defaults_and_scopes() {
        let (api, found) = read_str(
            "[api]\nlisten = \"127.0.0.1:0\"\n[[api.tokens]]\nname = \"erp\"\ntoken = \"0123456789abcdef\"\nscope = \"write\"\n[[api.tokens]]\nname = \"v\"\ntoken = \"0123456789abcdeg\"\n",
        );
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let api = api.unwrap();
        assert_eq!(api.feed_retain_days, 30);
        assert_eq!(api.max_body_bytes, MAX_BODY_BYTES.default as usize);
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
    fn a_short_or_missing_token_is_named_by_its_key() {
        let (_, found) = read_str(
            "[api]\nlisten = \"127.0.0.1:0\"\n[[api.tokens]]\nname = \"a\"\ntoken = \"short\"\n[[api.tokens]]\nname = \"b\"\n",
        );
        let keys: Vec<_> = found.errors.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["api.tokens[0].token", "api.tokens[1].token"]);
        assert!(found.errors[0].message.contains("at least 16"));
        assert!(found.errors[1].message.starts_with("missing: give token"));
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
