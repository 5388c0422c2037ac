//! `[board]`: the web board's switch, its address for login links, its cookies and its users
//! (`[[board.users]]`: a name, an Argon2id password hash, a role), read by the config's one
//! [`Reader`]. Defaults and bounds are in `keys::board`. Hashing and verifying passwords is the
//! board's (`crate::faces::board::password`); the config only checks that a hash is an Argon2id one.

use argon2::password_hash::phc::PasswordHash;
use toml::{Table, Value};

use crate::config::keys::board::*;
use crate::config::reader::Reader;

/// What a user may do on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything: actions on tickets, outbox retry and cancel.
    Dispatcher,
    /// Read only: every page, no form that changes anything.
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s.trim() {
            "dispatcher" => Some(Role::Dispatcher),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Dispatcher => "dispatcher",
            Role::Viewer => "viewer",
        }
    }
}

/// One `[[board.users]]` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct BoardUser {
    pub name: String,
    /// An Argon2id PHC string (`$argon2id$v=19$m=…`), checked when the config is loaded.
    pub password_hash: String,
    pub role: Role,
}

impl std::fmt::Debug for BoardUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is not the password, but it is not for logs either.
        f.debug_struct("BoardUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// `[board]`. Without the section: disabled, no users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardConfig {
    /// Serve the board at `/` on the `[api] listen` address.
    pub enabled: bool,
    /// The board's address as browsers reach it (behind the TLS proxy), for login links;
    /// without it, links are `http://<[api] listen>/…`. Ends without `/`.
    pub public_url: Option<String>,
    /// Session cookies without `Secure`: only for plain-HTTP loopback.
    pub insecure_cookies: bool,
    /// The reverse proxies whose `X-Forwarded-For` names the client of a sign-in (for its
    /// per-address limit); from any other peer the header is ignored. Default: none.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long a sign-in lasts.
    pub session_hours: u32,
    pub users: Vec<BoardUser>,
}

impl Default for BoardConfig {
    fn default() -> BoardConfig {
        BoardConfig {
            enabled: ENABLED.default,
            public_url: None,
            insecure_cookies: INSECURE_COOKIES.default,
            trusted_proxies: Vec::new(),
            session_hours: SESSION_HOURS.default as u32,
            users: Vec::new(),
        }
    }
}

impl BoardConfig {
    /// The user with this name.
    pub fn user(&self, name: &str) -> Option<&BoardUser> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// Why `hash` is not an Argon2id PHC string (`None` when it is one).
pub fn check_hash(hash: &str) -> Option<String> {
    match PasswordHash::new(hash.trim()) {
        Ok(h) if h.algorithm.as_str() == "argon2id" => None,
        Ok(h) => Some(format!(
            "is a {} hash, not argon2id: make one with `huoltosync board passwd NAME`",
            h.algorithm.as_str()
        )),
        Err(e) => Some(format!(
            "is not a PHC string like $argon2id$v=19$m=…: {e} (make one with `huoltosync board passwd NAME`)"
        )),
    }
}

impl Reader {
    /// `[board]` and its `[[board.users]]`; `api_listens`: `[api] listen` is set (the board is
    /// served there).
    pub(in crate::config) fn board(&mut self, root: &mut Table, api_listens: bool) -> BoardConfig {
        let Some(mut t) = self.table(root, "", SECTION) else {
            return BoardConfig::default();
        };
        let enabled = self.flag(&mut t, SECTION, &ENABLED);
        if enabled && !api_listens {
            self.error(
                &format!("{SECTION}.{}", ENABLED.name),
                "the board is served on the HTTP API's listener: set [api] listen (and [[api.tokens]])",
            );
        }
        let public_url = self
            .url(&mut t, SECTION, PUBLIC_URL)
            .map(|u| u.trim_end_matches('/').to_owned());
        let insecure_cookies = self.flag(&mut t, SECTION, &INSECURE_COOKIES);
        let trusted_proxies = self.trusted_proxies(&mut t);
        let session_hours = self.int(&mut t, SECTION, &SESSION_HOURS) as u32;
        let users = self.users(&mut t);
        self.finish(t, SECTION);
        BoardConfig {
            enabled,
            public_url,
            insecure_cookies,
            trusted_proxies,
            session_hours,
            users,
        }
    }

    /// `[board] trusted_proxies`: a list of IP addresses (`["127.0.0.1", "::1"]`).
    fn trusted_proxies(&mut self, t: &mut Table) -> Vec<std::net::IpAddr> {
        const WANT: &str = "must be a list of IP addresses, like [\"127.0.0.1\"]";
        let key = format!("{SECTION}.{TRUSTED_PROXIES}");
        let Some(value) = t.remove(TRUSTED_PROXIES) else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            self.error(&key, WANT);
            return Vec::new();
        };
        let parsed: Result<Vec<_>, String> = items
            .iter()
            .map(
                |v| match v.as_str().map(|s| s.trim().parse::<std::net::IpAddr>()) {
                    Some(Ok(ip)) => Ok(ip.to_canonical()),
                    Some(Err(_)) => Err(format!("{v} is not an IP address: {WANT}")),
                    None => Err(format!("{v} is not a string: {WANT}")),
                },
            )
            .collect();
        parsed.unwrap_or_else(|why| {
            self.error(&key, &why);
            Vec::new()
        })
    }

    /// `[[board.users]]`: unique names, Argon2id hashes, roles (default viewer).
    fn users(&mut self, board: &mut Table) -> Vec<BoardUser> {
        let mut users: Vec<BoardUser> = Vec::new();
        for (key, mut u) in self.tables(board, SECTION, USERS) {
            let name = self.required_string(&mut u, &key, "name");
            let hash = self.required_string(&mut u, &key, "password_hash");
            if let Some(h) = &hash
                && let Some(why) = check_hash(h)
            {
                self.error(&format!("{key}.password_hash"), &why);
            }
            let role = match self.string(&mut u, &key, "role") {
                None => Role::Viewer,
                Some(r) => Role::parse(&r).unwrap_or_else(|| {
                    self.error(
                        &format!("{key}.role"),
                        &format!("{r:?} is not one of dispatcher, viewer"),
                    );
                    Role::Viewer
                }),
            };
            self.finish(u, &key);
            if let (Some(name), Some(password_hash)) = (name, hash) {
                if users.iter().any(|x| x.name == name) {
                    self.error(
                        &format!("{key}.name"),
                        &format!("{name:?} is given twice: names must be unique"),
                    );
                }
                users.push(BoardUser {
                    name,
                    password_hash: password_hash.trim().to_owned(),
                    role,
                });
            }
        }
        users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_and_other_hashes_are_named() {
        assert!(check_hash("hunter2").unwrap().contains("PHC"));
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$R2a9tmfwrTQ0ZhvNdwQzrA";
        assert!(check_hash(argon2i).unwrap().contains("argon2i"));
    }
}
