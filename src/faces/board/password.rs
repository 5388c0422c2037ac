//! The board's passwords: hashing one (`huoltosync board passwd`, the demo) and verifying one
//! (the sign-in form). `[board]` and its users are read by the config
//! ([`crate::config::BoardConfig`], which also checks that a hash is an Argon2id one).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// The shortest password `board passwd` accepts.
pub const MIN_PASSWORD_LEN: usize = 10;

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
    use crate::config::check_hash;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("Salasana-kaisa-1").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert_eq!(check_hash(&h), None);
        assert!(verify_password("Salasana-kaisa-1", &h));
        assert!(!verify_password("salasana-kaisa-1", &h));
        assert!(!verify_password("Salasana-kaisa-1", "not a hash"));
    }
}
