//! Signing in and staying signed in: the session cookie, the sign-in form (rate-limited per user
//! and per address, checked for its origin), one-time login links, sign-out, and the checks
//! every page and form pass (a session, the CSRF token, the dispatcher role).
//!
//! The session cookie (`huoltosync_board`) carries a random token; the store keeps its SHA-256
//! with the user, the expiry and the session's CSRF token, which every form sends back in its
//! hidden `csrf` field. The cookie is `HttpOnly; SameSite=Strict; Path=/` and `Secure` unless
//! `[board] insecure_cookies`.
//!
//! The rate limit counts failed sign-ins only ([`Failures`]), so that an office behind one
//! address is not locked out by its own good sign-ins: [`USER_FAILURES`] per user name and
//! [`ADDRESS_FAILURES`] per address within [`FAILURE_WINDOW`]; over that, every attempt for the
//! key is 429 (before the password is checked) until the window has passed. An attempt is
//! counted *before* its password is checked and forgiven when the password was right, so that
//! parallel guesses cannot all pass the check while the first ones are still verifying. At
//! most [`MAX_VERIFICATIONS`] Argon2 verifications (about 19 MiB each) run at once; a sign-in
//! that finds no free one within [`VERIFY_WAIT`] gets 503 with `Retry-After`. The address is
//! the peer's; only from a peer in `[board] trusted_proxies` is it the last address the proxy
//! put in `X-Forwarded-For`.
//!
//! A sign-in form posted from another site (login CSRF) is refused with 403 and no cookie: its
//! `Origin` (or, without one, its `Referer`) must be the board's own origin (the request's
//! `Host`, the `[api] listen` address or `[board] public_url`). A POST with neither header (no
//! browser sends one without `Origin`) is let through: it can come from a script only, which
//! could as well post the form itself. What a failed sign-in logs names the user only when it
//! is a configured one: people type passwords into the name field.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Board, Lang, Role, lang, new_token, render, token_hash};
use crate::store::{LinkUse, NewBoardSession};

/// The session cookie's name.
pub const COOKIE: &str = "huoltosync_board";
/// Failed sign-ins of one user name within [`FAILURE_WINDOW`] before it is refused (429).
pub const USER_FAILURES: usize = 5;
/// Failed sign-ins from one address within [`FAILURE_WINDOW`] before it is refused (429).
pub const ADDRESS_FAILURES: usize = 20;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Argon2 verifications of sign-in passwords at once (each holds about 19 MiB while it runs).
pub const MAX_VERIFICATIONS: usize = 4;
/// How long a sign-in waits for a free verification before it is answered 503.
pub const VERIFY_WAIT: Duration = Duration::from_secs(5);
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
        recent(&mut m, key, now) >= limit
    }

    /// Records a failure of `key` at `now`.
    pub fn record(&self, key: &str, limit: usize, now: Instant) {
        let mut m = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        push(&mut m, key, limit, now);
    }

    /// Counts an attempt at `now` against every `(key, limit)` at once, before its password is
    /// checked: false (and nothing counted) when a key has its `limit` already. An attempt
    /// that turns out good is taken back with [`Failures::forgive`].
    pub fn begin(&self, keys: &[(&str, usize)], now: Instant) -> bool {
        let mut m = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if keys
            .iter()
            .any(|(key, limit)| recent(&mut m, key, now) >= *limit)
        {
            return false;
        }
        for (key, limit) in keys {
            push(&mut m, key, *limit, now);
        }
        true
    }

    /// Takes back the attempt counted at `now` by [`Failures::begin`] for each of `keys`.
    pub fn forgive(&self, keys: &[&str], now: Instant) {
        let mut m = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if let Some(q) = m.get_mut(*key) {
                if let Some(i) = q.iter().rposition(|t| *t == now) {
                    q.remove(i);
                }
                if q.is_empty() {
                    m.remove(*key);
                }
            }
        }
    }
}

/// The failures of `key` within the window at `now` (older ones are dropped).
fn recent(m: &mut HashMap<String, VecDeque<Instant>>, key: &str, now: Instant) -> usize {
    let Some(q) = m.get_mut(key) else {
        return 0;
    };
    while q
        .front()
        .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
    {
        q.pop_front();
    }
    if q.is_empty() {
        m.remove(key);
        return 0;
    }
    q.len()
}

/// Adds a failure of `key` at `now`, keeping at most `limit` of them and [`MAX_KEYS`] keys.
fn push(m: &mut HashMap<String, VecDeque<Instant>>, key: &str, limit: usize, now: Instant) {
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
        crate::domain::time::parse(&self.expires_at)
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
    let now = crate::domain::time::fmt(crate::domain::time::now());
    let Some(s) = b
        .store
        .call(move |s| s.board().board_session(&h, &now))
        .await?
    else {
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
    let expires =
        crate::domain::time::now() + chrono::Duration::hours(b.config.board.session_hours.into());
    let row = NewBoardSession {
        token_sha256: token_hash(&token),
        csrf: new_token(),
        expires_at: crate::domain::time::fmt(expires),
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

/// The address a sign-in comes from: the peer, or when the peer is one of `trusted` (the
/// `[board] trusted_proxies`), the last address that proxy added to `X-Forwarded-For`.
fn client_address(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> String {
    let peer_ip = peer.map(|p| p.ip().to_canonical());
    if peer_ip.is_some_and(|ip| trusted.contains(&ip))
        && let Some(fwd) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return fwd.to_canonical().to_string();
    }
    peer_ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// Whether a sign-in was posted from the board's own pages: its `Origin` (without one, its
/// `Referer`) is the origin of the request's `Host` (over http or https), of `listen` or of
/// `public_url`. With neither header, true (see the module's documentation); `Origin: null`
/// or an unreadable one, false.
fn same_origin(headers: &HeaderMap, listen: Option<SocketAddr>, public_url: Option<&str>) -> bool {
    let given = match (headers.get(header::ORIGIN), headers.get(header::REFERER)) {
        (None, None) => return true,
        (Some(v), _) | (None, Some(v)) => v.to_str().ok().and_then(|s| reqwest::Url::parse(s).ok()),
    };
    let Some(given) = given.map(|u| u.origin()).filter(|o| o.is_tuple()) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let own = [
        host.map(|h| format!("http://{h}")),
        host.map(|h| format!("https://{h}")),
        listen.map(|l| format!("http://{l}")),
        public_url.map(str::to_owned),
    ];
    own.into_iter()
        .flatten()
        .filter_map(|o| reqwest::Url::parse(&o).ok())
        .any(|u| u.origin() == given)
}

/// A hash to check unknown users' passwords against, so that a wrong name takes as long as a
/// wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| super::hash_password(&new_token()).expect("hashing a random password works"));

/// The sign-in form again with `note`, answered with `status` and `Retry-After: retry_secs`.
fn login_retry_later(lang: Lang, status: StatusCode, note: &str, retry_secs: u64) -> Response {
    let mut r = login_form(status, lang, Some(note), "");
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_secs));
    r
}

/// One of the verification slots `slots`, waiting at most `wait` for it (`None`: none was
/// free).
async fn verification_slot(slots: &Arc<Semaphore>, wait: Duration) -> Option<OwnedSemaphorePermit> {
    tokio::time::timeout(wait, slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// Whether `password` is `user`'s (an unknown user's is checked against [`DUMMY_HASH`]), on a
/// blocking thread holding one of the [`MAX_VERIFICATIONS`]; `None` when none was free within
/// [`VERIFY_WAIT`].
async fn verify(b: &Board, user: Option<&super::BoardUser>, password: String) -> Option<bool> {
    let permit = verification_slot(&b.verifying, VERIFY_WAIT).await?;
    let hash = user.map_or_else(|| DUMMY_HASH.clone(), |u| u.password_hash.clone());
    // The permit moves into the blocking task: it is held until the hash is done even when
    // the client has gone away and this future is dropped.
    let good = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        super::verify_password(&password, &hash)
    })
    .await
    .unwrap_or(false);
    Some(good)
}

/// `POST /login` (`username`, `password`): a session and 303 to the board; a wrong pair shows
/// the form again with one message for every cause (401); too many failures, 429; no free
/// verification, 503; posted from another origin, 403.
pub(crate) async fn login(
    State(b): State<Board>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let lang = lang(&headers);
    let listen = b.config.api.as_ref().and_then(|a| a.listen);
    if !same_origin(&headers, listen, b.config.board.public_url.as_deref()) {
        tracing::warn!("Board sign-in refused: posted from another origin.");
        return login_form(StatusCode::FORBIDDEN, lang, Some("login_foreign"), "");
    }
    let Ok(axum::Form(f)) = form else {
        return login_form(StatusCode::BAD_REQUEST, lang, Some("err_bad_form"), "");
    };
    let name = f.username.trim();
    let user = b.config.board.user(name).cloned();
    // Only a configured name is logged: a password typed into the name field is not.
    let logged = user
        .as_ref()
        .map_or_else(|| "(not a user)".to_owned(), |u| u.name.clone());
    let user_key = format!("user:{name}");
    let trusted = &b.config.board.trusted_proxies;
    let addr_key = format!(
        "addr:{}",
        client_address(peer.map(|p| (p.0).0), &headers, trusted)
    );
    let now = Instant::now();
    let keys = [
        (user_key.as_str(), USER_FAILURES),
        (addr_key.as_str(), ADDRESS_FAILURES),
    ];
    if !b.failures.begin(&keys, now) {
        tracing::warn!(user = %logged, address = %addr_key, "Board sign-in refused: too many failures.");
        let retry = FAILURE_WINDOW.as_secs();
        return login_retry_later(
            lang,
            StatusCode::TOO_MANY_REQUESTS,
            "login_throttled",
            retry,
        );
    }
    let forgive = || b.failures.forgive(&[&user_key, &addr_key], now);
    let Some(good) = verify(&b, user.as_ref(), f.password).await else {
        forgive();
        tracing::warn!(user = %logged, address = %addr_key, "Board sign-in refused: every password check is busy.");
        let retry = VERIFY_WAIT.as_secs();
        return login_retry_later(lang, StatusCode::SERVICE_UNAVAILABLE, "login_busy", retry);
    };
    let Some(user) = user.filter(|_| good) else {
        tracing::info!(user = %logged, address = %addr_key, "Board sign-in failed.");
        return login_form(
            StatusCode::UNAUTHORIZED,
            lang,
            Some("login_failed"),
            &f.username,
        );
    };
    forgive();
    let (token, row) = new_session(&b);
    let (name, now_s) = (
        user.name.clone(),
        crate::domain::time::fmt(crate::domain::time::now()),
    );
    if let Err(e) = b
        .store
        .call(move |s| s.board().board_session_create(&name, &row, &now_s))
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
    let now = crate::domain::time::fmt(crate::domain::time::now());
    let used = b
        .store
        .call(move |s| s.board().board_link_use(&hash, &now, &row))
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
    if let Err(e) = b
        .store
        .call(move |s| s.board().board_session_delete(&hash))
        .await
    {
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
    fn an_attempt_counts_before_its_check_and_a_good_one_is_forgiven() {
        let f = Failures::default();
        let t0 = Instant::now();
        let keys = [("user:a", 2), ("addr:1", 3)];
        assert!(f.begin(&keys, t0));
        assert!(f.begin(&keys, t0));
        // Two in flight for user:a: a third is refused before its check, and counts nothing.
        assert!(!f.begin(&keys, t0));
        assert!(f.blocked("user:a", 2, t0));
        assert!(!f.blocked("addr:1", 3, t0));
        // One turned out good: its attempt is taken back, under both keys.
        f.forgive(&["user:a", "addr:1"], t0);
        assert!(!f.blocked("user:a", 2, t0));
        assert!(f.begin(&[("user:b", 2), ("addr:1", 3)], t0));
        assert!(f.begin(&[("user:c", 2), ("addr:1", 3)], t0));
        assert!(f.blocked("addr:1", 3, t0));
        assert!(!f.begin(&[("user:d", 2), ("addr:1", 3)], t0));
        assert!(f.begin(&keys, t0 + FAILURE_WINDOW));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sign_in_waits_for_a_free_verification_only_so_long() {
        let slots = Arc::new(Semaphore::new(MAX_VERIFICATIONS));
        let busy = slots
            .clone()
            .acquire_many_owned(MAX_VERIFICATIONS as u32)
            .await
            .unwrap();
        let t0 = tokio::time::Instant::now();
        assert!(verification_slot(&slots, VERIFY_WAIT).await.is_none());
        assert_eq!(t0.elapsed(), VERIFY_WAIT);
        // One freed while it waits: it gets that one.
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { verification_slot(&slots, VERIFY_WAIT).await.is_some() }
        });
        tokio::time::sleep(VERIFY_WAIT / 2).await;
        drop(busy);
        assert!(waiting.await.unwrap());
    }

    #[test]
    fn the_forwarded_address_counts_only_from_a_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "10.0.0.1, 192.0.2.7".parse().unwrap());
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let remote: SocketAddr = "198.51.100.3:5000".parse().unwrap();
        let proxy: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        assert_eq!(client_address(Some(local), &h, &proxy), "192.0.2.7");
        assert_eq!(client_address(Some(mapped), &h, &proxy), "192.0.2.7");
        assert_eq!(client_address(Some(remote), &h, &proxy), "198.51.100.3");
        assert_eq!(
            client_address(Some(local), &HeaderMap::new(), &proxy),
            "127.0.0.1"
        );
        // No proxy configured (the default): a loopback peer's header counts for nothing.
        assert_eq!(client_address(Some(local), &h, &[]), "127.0.0.1");
    }

    #[test]
    fn a_sign_in_must_come_from_the_boards_own_origin() {
        let listen: SocketAddr = "127.0.0.1:8788".parse().unwrap();
        let public = Some("https://huolto.example.fi");
        let check = |headers: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            same_origin(&h, Some(listen), public)
        };
        for (headers, ok) in [
            (&[][..], true),
            (&[("origin", "http://127.0.0.1:8788")][..], true),
            (&[("origin", "https://huolto.example.fi")][..], true),
            (&[("origin", "https://huolto.example.fi:443")][..], true),
            (
                &[
                    ("origin", "http://localhost:9000"),
                    ("host", "localhost:9000"),
                ][..],
                true,
            ),
            (
                &[("origin", "https://board.local"), ("host", "board.local")][..],
                true,
            ),
            (
                &[("referer", "https://huolto.example.fi/login?m=out")][..],
                true,
            ),
            (&[("origin", "https://evil.example")][..], false),
            (
                &[
                    ("origin", "https://evil.example"),
                    ("host", "127.0.0.1:8788"),
                ][..],
                false,
            ),
            (&[("origin", "http://127.0.0.1:8789")][..], false),
            (&[("origin", "http://huolto.example.fi")][..], false),
            (&[("origin", "null")][..], false),
            (&[("origin", "garbage")][..], false),
            (&[("referer", "https://evil.example/page")][..], false),
            // Origin wins over Referer.
            (
                &[
                    ("origin", "https://evil.example"),
                    ("referer", "http://127.0.0.1:8788/login"),
                ][..],
                false,
            ),
        ] {
            assert_eq!(check(headers), ok, "{headers:?}");
        }
    }
}
