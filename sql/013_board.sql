-- The dispatcher's web board (`[board]`): sign-in sessions and one-time login links. Shared by
-- the daemon (or `serve`), which reads and writes them, and `huoltosync board login-link`, which
-- writes a link. Tokens are never stored: only the SHA-256 (hex) of each.

-- A signed-in browser: the hash of its cookie's token, the user (a `[[board.users]]` name),
-- when it was made and when it ends, and its CSRF token (sent in every form's hidden field).
CREATE TABLE board_sessions (
    token_sha256 TEXT PRIMARY KEY,
    user         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    csrf         TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX board_sessions_expires ON board_sessions (expires_at);

-- A one-time login link (`huoltosync board login-link`): valid until `expires_at` (5 minutes),
-- used once (`used_at` set in the transaction that makes the session).
CREATE TABLE board_login_links (
    token_sha256 TEXT PRIMARY KEY,
    user         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    used_at      TEXT
) WITHOUT ROWID;
