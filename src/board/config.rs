//! `[board]`: the web board's switch, its address for login links, its cookies and its users
//! (`[[board.users]]`: a name, an Argon2id password hash, a role). Read by the config loader
//! (`config/load.rs`, section `board`); the hashing and checking of passwords is here, shared by
//! the loader, `huoltosync board passwd` and the sign-in form.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// The shortest password `board passwd` accepts.
pub const MIN_PASSWORD_LEN: usize = 10;

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
            enabled: false,
            public_url: None,
            insecure_cookies: false,
            trusted_proxies: Vec::new(),
            session_hours: 12,
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

/// `[board] trusted_proxies`: a list of IP addresses (`["127.0.0.1", "::1"]`), or why not.
pub fn parse_trusted_proxies(value: &toml::Value) -> Result<Vec<std::net::IpAddr>, String> {
    const WANT: &str = "must be a list of IP addresses, like [\"127.0.0.1\"]";
    let Some(items) = value.as_array() else {
        return Err(WANT.to_owned());
    };
    items
        .iter()
        .map(
            |v| match v.as_str().map(|s| s.trim().parse::<std::net::IpAddr>()) {
                Some(Ok(ip)) => Ok(ip.to_canonical()),
                Some(Err(_)) => Err(format!("{v} is not an IP address: {WANT}")),
                None => Err(format!("{v} is not a string: {WANT}")),
            },
        )
        .collect()
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

/// An Argon2id PHC string of `password` with a random salt (the crate's default parameters).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash.trim()) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("Salasana-kaisa-1").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert_eq!(check_hash(&h), None);
        assert!(verify_password("Salasana-kaisa-1", &h));
        assert!(!verify_password("salasana-kaisa-1", &h));
        assert!(!verify_password("Salasana-kaisa-1", "not a hash"));
    }

    #[test]
    fn malformed_and_other_hashes_are_named() {
        assert!(check_hash("hunter2").unwrap().contains("PHC"));
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$R2a9tmfwrTQ0ZhvNdwQzrA";
        assert!(check_hash(argon2i).unwrap().contains("argon2i"));
    }
}
