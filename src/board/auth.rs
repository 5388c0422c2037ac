//! Signing in and staying signed in: the session cookie, the sign-in form (rate-limited per user
//! and per address), one-time login links, sign-out, and the checks every page and form pass
//! (a session, the CSRF token, the dispatcher role).
//!
//! The session cookie (`huoltosync_board`) carries a random token; the store keeps its SHA-256
//! with the user, the expiry and the session's CSRF token, which every form sends back in its
//! hidden `csrf` field. The cookie is `HttpOnly; SameSite=Strict; Path=/` and `Secure` unless
//! `[board] insecure_cookies`.
//!
//! The rate limit counts failed sign-ins only ([`Failures`]), so that an office behind one
//! address is not locked out by its own good sign-ins: [`USER_FAILURES`] per user name and
//! [`ADDRESS_FAILURES`] per address within [`FAILURE_WINDOW`]; over that, every attempt for the
//! key is 429 (before the password is checked) until the window has passed. Behind a proxy on
//! the same host (a loopback peer), the address is the last one the proxy put in
//! `X-Forwarded-For`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{Board, Lang, Role, lang, new_token, render, token_hash};
use crate::store::{LinkUse, NewBoardSession};

/// The session cookie's name.
pub const COOKIE: &str = "huoltosync_board";
/// Failed sign-ins of one user name within [`FAILURE_WINDOW`] before it is refused (429).
pub const USER_FAILURES: usize = 5;
/// Failed sign-ins from one address within [`FAILURE_WINDOW`] before it is refused (429).
pub const ADDRESS_FAILURES: usize = 20;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Keys remembered at most (the oldest are forgotten first): memory stays bounded whatever
/// names and addresses are tried.
const MAX_KEYS: usize = 10_000;

/// Recent failed sign-ins by key (`user:NAME`, `addr:IP`).
#[derive(Default)]
pub struct Failures {
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Failures {
    /// Whether `key` has `limit` failures within the window at `now`.
    pub fn blocked(&self, key: &str, limit: usize, now: Instant) -> bool {
        let mut m = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = m.get_mut(key) else {
            return false;
        };
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
        {
            q.pop_front();
        }
        if q.is_empty() {
            m.remove(key);
            return false;
        }
        q.len() >= limit
    }

    /// Records a failure of `key` at `now`.
    pub fn record(&self, key: &str, limit: usize, now: Instant) {
        let mut m = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if !m.contains_key(key) && m.len() >= MAX_KEYS {
            m.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
            });
            if m.len() >= MAX_KEYS
                && let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, q)| q.back().copied())
                    .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        let q = m.entry(key.to_owned()).or_default();
        q.push_back(now);
        while q.len() > limit {
            q.pop_front();
        }
    }
}

/// The signed-in user of a request (put there by the session check of every page).
#[derive(Debug, Clone)]
pub struct Me {
    pub name: String,
    pub role: Role,
    pub csrf: String,
    token_sha256: String,
    expires_at: String,
}

/// What the templates see of the user.
#[derive(Debug, Serialize)]
pub struct MeView {
    name: String,
    role: &'static str,
    csrf: String,
    may_act: bool,
}

impl Me {
    /// When the session ends.
    pub fn expires_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        crate::time::parse(&self.expires_at)
    }

    pub fn view(&self) -> MeView {
        MeView {
            name: self.name.clone(),
            role: match self.role {
                Role::Dispatcher => "role_dispatcher",
                Role::Viewer => "role_viewer",
            },
            csrf: self.csrf.clone(),
            may_act: self.may_act(),
        }
    }

    /// Whether a form's `csrf` field is this session's token (compared in constant time).
    pub fn csrf_ok(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(self.csrf.as_bytes())))
    }

    /// Whether the user may change anything (a dispatcher).
    pub fn may_act(&self) -> bool {
        self.role == Role::Dispatcher
    }

    /// The 403 page saying why (`key`: `err_csrf`, `err_viewer`).
    pub fn forbidden(&self, lang: Lang, key: &str) -> Response {
        super::message(StatusCode::FORBIDDEN, lang, Some(self), lang.t(key))
    }
}

/// The session of a request's cookie, if it is valid now and its user is still configured.
async fn session(b: &Board, jar: &CookieJar) -> anyhow::Result<Option<Me>> {
    let Some(token) = jar.get(COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(None);
    };
    let hash = token_hash(&token);
    let h = hash.clone();
    let now = crate::time::fmt(crate::time::now());
    let Some(s) = b.store.call(move |s| s.board_session(&h, &now)).await? else {
        return Ok(None);
    };
    Ok(b.config.board.user(&s.user).map(|u| Me {
        name: u.name.clone(),
        role: u.role,
        csrf: s.csrf,
        token_sha256: hash,
        expires_at: s.expires_at,
    }))
}

/// Lets a request with a valid session through (with its [`Me`]); without one, a page request
/// is sent to the sign-in form (303) and anything else refused (403).
pub(crate) async fn require_session(
    State(b): State<Board>,
    jar: CookieJar,
    mut req: Request,
    next: Next,
) -> Response {
    match session(&b, &jar).await {
        Ok(Some(me)) => {
            req.extensions_mut().insert(me);
            next.run(req).await
        }
        Ok(None) if req.method() == Method::GET => Redirect::to("/login").into_response(),
        Ok(None) => super::message(
            StatusCode::FORBIDDEN,
            lang(req.headers()),
            None,
            lang(req.headers()).t("err_csrf"),
        ),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "Cannot read a board session.");
            super::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang(req.headers()),
                None,
                lang(req.headers()).t("err_internal"),
            )
        }
    }
}

/// A new session for `user`'s cookie: the token for the cookie, and the row to store.
fn new_session(b: &Board) -> (String, NewBoardSession) {
    let token = new_token();
    let expires = crate::time::now() + chrono::Duration::hours(b.config.board.session_hours.into());
    let row = NewBoardSession {
        token_sha256: token_hash(&token),
        csrf: new_token(),
        expires_at: crate::time::fmt(expires),
    };
    (token, row)
}

/// The session cookie carrying `token`.
fn cookie(b: &Board, token: String) -> Cookie<'static> {
    Cookie::build((COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(!b.config.board.insecure_cookies)
        .max_age(time::Duration::hours(b.config.board.session_hours.into()))
        .build()
}

/// The sign-in page with `note` (a catalogue key) shown, answered with `status`.
fn login_form(status: StatusCode, lang: Lang, note: Option<&str>, username: &str) -> Response {
    render(
        status,
        "login.html",
        serde_json::json!({
            "t": lang.words(),
            "lang": lang.code(),
            "me": None::<MeView>,
            "note": note.map(|k| lang.t(k)),
            "username": username,
        }),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    m: Option<String>,
}

/// `GET /login`: the sign-in form (or the board, when signed in already).
pub(crate) async fn login_page(
    State(b): State<Board>,
    headers: HeaderMap,
    jar: CookieJar,
    q: axum::extract::Query<LoginQuery>,
) -> Response {
    if let Ok(Some(_)) = session(&b, &jar).await {
        return Redirect::to("/").into_response();
    }
    let note = match q.m.as_deref() {
        Some("out") => Some("signed_out"),
        _ => None,
    };
    login_form(StatusCode::OK, lang(&headers), note, "")
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// The address a sign-in comes from: the peer, or behind a proxy on this host, the last
/// address the proxy added to `X-Forwarded-For`.
fn client_address(peer: Option<SocketAddr>, headers: &HeaderMap) -> String {
    let peer_ip = peer.map(|p| p.ip());
    if peer_ip.is_some_and(|ip| ip.is_loopback())
        && let Some(fwd) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return fwd.to_string();
    }
    peer_ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// A hash to check unknown users' passwords against, so that a wrong name takes as long as a
/// wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| super::hash_password(&new_token()).expect("hashing a random password works"));

/// `POST /login` (`username`, `password`): a session and 303 to the board; a wrong pair shows
/// the form again with one message for every cause (401); too many failures, 429.
pub(crate) async fn login(
    State(b): State<Board>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let lang = lang(&headers);
    let Ok(axum::Form(f)) = form else {
        return login_form(StatusCode::BAD_REQUEST, lang, Some("err_bad_form"), "");
    };
    let user_key = format!("user:{}", f.username.trim());
    let addr_key = format!("addr:{}", client_address(peer.map(|p| (p.0).0), &headers));
    let now = Instant::now();
    if b.failures.blocked(&user_key, USER_FAILURES, now)
        || b.failures.blocked(&addr_key, ADDRESS_FAILURES, now)
    {
        tracing::warn!(user = %f.username.trim(), address = %addr_key, "Board sign-in refused: too many failures.");
        let mut r = login_form(
            StatusCode::TOO_MANY_REQUESTS,
            lang,
            Some("login_throttled"),
            &f.username,
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            FAILURE_WINDOW
                .as_secs()
                .to_string()
                .parse()
                .expect("digits"),
        );
        return r;
    }
    let user = b.config.board.user(f.username.trim()).cloned();
    let hash = user
        .as_ref()
        .map_or_else(|| DUMMY_HASH.clone(), |u| u.password_hash.clone());
    let password = f.password;
    let good = tokio::task::spawn_blocking(move || super::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| good) else {
        b.failures.record(&user_key, USER_FAILURES, now);
        b.failures.record(&addr_key, ADDRESS_FAILURES, now);
        tracing::info!(user = %f.username.trim(), address = %addr_key, "Board sign-in failed.");
        return login_form(
            StatusCode::UNAUTHORIZED,
            lang,
            Some("login_failed"),
            &f.username,
        );
    };
    let (token, row) = new_session(&b);
    let (name, now_s) = (user.name.clone(), crate::time::fmt(crate::time::now()));
    if let Err(e) = b
        .store
        .call(move |s| s.board_session_create(&name, &row, &now_s))
        .await
    {
        tracing::error!(error = format!("{e:#}"), "Cannot store a board session.");
        return super::message(
            StatusCode::INTERNAL_SERVER_ERROR,
            lang,
            None,
            lang.t("err_internal"),
        );
    }
    tracing::info!(user = %user.name, "Board sign-in.");
    (CookieJar::new().add(cookie(&b, token)), Redirect::to("/")).into_response()
}

/// `GET /login/{token}`: a one-time login link. Valid and unused: marked used, a session, 303
/// to the board; otherwise the sign-in form says why.
pub(crate) async fn login_link(
    State(b): State<Board>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let lang = lang(&headers);
    let (cookie_token, row) = new_session(&b);
    let hash = token_hash(&token);
    let now = crate::time::fmt(crate::time::now());
    let used = b
        .store
        .call(move |s| s.board_link_use(&hash, &now, &row))
        .await;
    let note = match used {
        Ok(LinkUse::SignedIn { user }) if b.config.board.user(&user).is_some() => {
            tracing::info!(user = %user, "Board sign-in by a login link.");
            return (
                CookieJar::new().add(cookie(&b, cookie_token)),
                Redirect::to("/"),
            )
                .into_response();
        }
        Ok(LinkUse::SignedIn { .. } | LinkUse::Unknown) => "link_unknown",
        Ok(LinkUse::AlreadyUsed) => "link_used",
        Ok(LinkUse::Expired) => "link_expired",
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "Cannot open a board login link.");
            return super::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                None,
                lang.t("err_internal"),
            );
        }
    };
    login_form(StatusCode::FORBIDDEN, lang, Some(note), "")
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /logout` (with the CSRF field): ends the session, clears the cookie.
pub(crate) async fn logout(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    headers: HeaderMap,
    form: Result<axum::Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let lang = lang(&headers);
    let given = form.ok().and_then(|f| f.0.csrf);
    if !me.csrf_ok(given.as_deref()) {
        return me.forbidden(lang, "err_csrf");
    }
    let hash = me.token_sha256.clone();
    if let Err(e) = b.store.call(move |s| s.board_session_delete(&hash)).await {
        tracing::error!(error = format!("{e:#}"), "Cannot end a board session.");
    }
    let gone = Cookie::build((COOKIE, ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(!b.config.board.insecure_cookies)
        .max_age(time::Duration::ZERO)
        .build();
    (CookieJar::new().add(gone), Redirect::to("/login?m=out")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_block_a_key_within_the_window_only() {
        let f = Failures::default();
        let t0 = Instant::now();
        for _ in 0..USER_FAILURES {
            assert!(!f.blocked("user:a", USER_FAILURES, t0));
            f.record("user:a", USER_FAILURES, t0);
        }
        assert!(f.blocked("user:a", USER_FAILURES, t0));
        assert!(!f.blocked("user:b", USER_FAILURES, t0));
        assert!(!f.blocked("user:a", USER_FAILURES, t0 + FAILURE_WINDOW));
    }

    #[test]
    fn the_forwarded_address_counts_only_behind_a_local_proxy() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "10.0.0.1, 192.0.2.7".parse().unwrap());
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "198.51.100.3:5000".parse().unwrap();
        assert_eq!(client_address(Some(local), &h), "192.0.2.7");
        assert_eq!(client_address(Some(remote), &h), "198.51.100.3");
        assert_eq!(client_address(Some(local), &HeaderMap::new()), "127.0.0.1");
    }
}
