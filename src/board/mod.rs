//! The dispatcher's web board (`[board] enabled`): server-rendered pages on the `[api] listen`
//! address, beside the HTTP API (which keeps `/api/v1/` and its bearer tokens), for the office's
//! desktop and a technician's phone. It is built on the API's code, never on a copy: the ticket
//! page and list come from the store's API reads (`ticket_page`, `ticket_detail`, the feed), every
//! action goes through [`crate::queue`] (`requested_by = "board:<user>"`), the status page is
//! [`crate::status`]. A request never calls Tampuuri.
//!
//! Sign-in ([`auth`]): `[[board.users]]` with Argon2id hashes (`huoltosync board passwd`) or a
//! one-time login link (`huoltosync board login-link`, 5 minutes); a session is a random token in
//! an `HttpOnly; SameSite=Strict` cookie (`Secure` unless `[board] insecure_cookies`), kept in the
//! store by its SHA-256 with a CSRF token that every form carries.
//!
//! Rooms: `config` (`[board]`, passwords), `auth` (sessions, sign-in, CSRF, rate limit),
//! `i18n` (the Finnish and English catalogues, Helsinki times), `pages` (the pages and their
//! forms), `events` (the server-sent events of the live board). Templates are in
//! `src/board/templates/`, the stylesheet and script in `src/board/static/`, all compiled
//! into the binary.

pub mod config;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub use config::{
    BoardConfig, BoardUser, MIN_PASSWORD_LEN, Role, check_hash, hash_password, verify_password,
};

use crate::store::Store;

/// How long a login link is valid.
pub const LOGIN_LINK_VALID: Duration = Duration::from_secs(5 * 60);

/// A new random token (256 bits, base64url): for session cookies, CSRF fields and login links.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The SHA-256 (hex) of a token: what the store keeps instead of the token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Stores a one-time login link for `user`, valid [`LOGIN_LINK_VALID`] from `now`; its token.
pub fn create_login_link(
    store: &mut Store,
    user: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<String> {
    let token = new_token();
    let expires = now + chrono::Duration::from_std(LOGIN_LINK_VALID)?;
    store.board_link_create(
        &token_hash(&token),
        user,
        &crate::time::fmt(now),
        &crate::time::fmt(expires),
    )?;
    Ok(token)
}

/// The URL of a login link: under `[board] public_url`, else `http://<[api] listen>`.
pub fn login_url(board: &BoardConfig, listen: SocketAddr, token: &str) -> String {
    match &board.public_url {
        Some(base) => format!("{base}/login/{token}"),
        None => format!("http://{listen}/login/{token}"),
    }
}
