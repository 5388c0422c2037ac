//! The board's sign-in state (`sql/013_board.sql`): sessions and one-time login links, both kept
//! by the SHA-256 of their token (the token itself is never stored). The daemon (or `serve`) and
//! `huoltosync board login-link` share these tables. The board's page of tickets is
//! [`Board::board_page`] (`board_page.rs`).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::Board;

/// A signed-in browser, as its session row has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardSession {
    pub user: String,
    pub csrf: String,
    pub expires_at: String,
}

/// A session to create: the hash of its cookie's token, its CSRF token, when it ends.
#[derive(Debug, Clone)]
pub struct NewBoardSession {
    pub token_sha256: String,
    pub csrf: String,
    pub expires_at: String,
}

/// What opening a login link found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkUse {
    /// The link was valid: it is used now, and the session was created for this user.
    SignedIn { user: String },
    /// No such link (or purged).
    Unknown,
    /// Opened before.
    AlreadyUsed,
    /// Older than its five minutes.
    Expired,
}

impl Board<'_> {
    /// Creates a session for `user` (and drops the sessions and links that ended before `now`).
    pub fn board_session_create(
        &mut self,
        user: &str,
        s: &NewBoardSession,
        now: &str,
    ) -> anyhow::Result<()> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        expire(&tx, now)?;
        tx.execute(
            "INSERT INTO board_sessions (token_sha256, user, created_at, expires_at, csrf)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![s.token_sha256, user, now, s.expires_at, s.csrf],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The session whose token hashes to `token_sha256`, unless it ended before `now`.
    pub fn board_session(
        &self,
        token_sha256: &str,
        now: &str,
    ) -> anyhow::Result<Option<BoardSession>> {
        Ok(self
            .0
            .conn
            .prepare_cached(
                "SELECT user, csrf, expires_at FROM board_sessions
                 WHERE token_sha256 = ?1 AND expires_at > ?2",
            )?
            .query_row(params![token_sha256, now], |r| {
                Ok(BoardSession {
                    user: r.get(0)?,
                    csrf: r.get(1)?,
                    expires_at: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// Ends a session (sign-out).
    pub fn board_session_delete(&mut self, token_sha256: &str) -> anyhow::Result<()> {
        self.0.conn.execute(
            "DELETE FROM board_sessions WHERE token_sha256 = ?1",
            [token_sha256],
        )?;
        Ok(())
    }

    /// Stores a one-time login link for `user`, valid until `expires_at`.
    pub fn board_link_create(
        &mut self,
        token_sha256: &str,
        user: &str,
        now: &str,
        expires_at: &str,
    ) -> anyhow::Result<()> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        expire(&tx, now)?;
        tx.execute(
            "INSERT INTO board_login_links (token_sha256, user, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![token_sha256, user, now, expires_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Opens the login link whose token hashes to `token_sha256` at `now`: when it is unused
    /// and unexpired, marks it used and creates `session` for its user, in one transaction (two
    /// opens at once cannot both sign in).
    pub fn board_link_use(
        &mut self,
        token_sha256: &str,
        now: &str,
        session: &NewBoardSession,
    ) -> anyhow::Result<LinkUse> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: Option<(String, String, Option<String>)> = tx
            .query_row(
                "SELECT user, expires_at, used_at FROM board_login_links WHERE token_sha256 = ?1",
                [token_sha256],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let outcome =
            match found {
                None => LinkUse::Unknown,
                Some((_, _, Some(_))) => LinkUse::AlreadyUsed,
                Some((_, expires, None)) if expires.as_str() <= now => LinkUse::Expired,
                Some((user, _, None)) => {
                    tx.execute(
                        "UPDATE board_login_links SET used_at = ?2 WHERE token_sha256 = ?1",
                        params![token_sha256, now],
                    )?;
                    tx.execute(
                    "INSERT INTO board_sessions (token_sha256, user, created_at, expires_at, csrf)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![session.token_sha256, user, now, session.expires_at, session.csrf],
                )?;
                    LinkUse::SignedIn { user }
                }
            };
        tx.commit()?;
        Ok(outcome)
    }
}

/// Drops sessions that ended and links that expired a day before `now` (used links are kept
/// that long so that a second open says "used", not "unknown").
fn expire(tx: &rusqlite::Transaction<'_>, now: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM board_sessions WHERE expires_at <= ?1", [now])?;
    let day_ago = crate::domain::time::parse(now)
        .map(|t| crate::domain::time::fmt(t - chrono::Duration::days(1)))
        .unwrap_or_else(|| now.to_owned());
    tx.execute(
        "DELETE FROM board_login_links WHERE expires_at <= ?1",
        [day_ago],
    )?;
    Ok(())
}
