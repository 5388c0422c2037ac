//! The dispatcher's web board (`[board] enabled`): server-rendered pages on the `[api] listen`
//! address, beside the HTTP API (which keeps `/api/v1/` and its bearer tokens), for the office's
//! desktop and a technician's phone. It is built on the API's code, never on a copy: the ticket
//! page and list come from the store's API reads (`ticket_page`, `ticket_detail`, the feed), every
//! action goes through [`crate::engine::queue`] (`requested_by = "board:<user>"`; a visit booking
//! through [`crate::engine::visits::book::book`], the path of `task book`), the status page is
//! [`crate::engine::status`]. A request never calls Tampuuri; only a booking form's POST calls Slotti.
//!
//! Sign-in ([`auth`]): `[[board.users]]` with Argon2id hashes (`huoltosync board passwd`) or a
//! one-time login link (`huoltosync board login-link`, 5 minutes); a session is a random token in
//! an `HttpOnly; SameSite=Strict` cookie (`Secure` unless `[board] insecure_cookies`), kept in the
//! store by its SHA-256 with a CSRF token that every form carries.
//!
//! Rooms: `config` (`[board]`, passwords), `auth` (sessions, sign-in, CSRF, rate limit),
//! `i18n` (the Finnish and English catalogues, Helsinki times), `pages` (the pages and their
//! forms), `events` (the server-sent events of the live board). Templates are in
//! `src/faces/board/templates/`, the stylesheet and script in `src/faces/board/static/`, all compiled
//! into the binary.
//!
//! # What a browser test can select (keep these stable)
//!
//! - Every page: `header.top` with `nav` links `#nav-board`, `#nav-outbox`, `#nav-status`; the
//!   sign-out form `#logout` (button `#logout-button`), the user in `#me`; `main#main`;
//!   `#message` on an error page; `#notice` (class `error` for a refusal) after an action.
//! - `/login`: `#login-form` with `#username`, `#password`, `#login-button`; `#login-note`.
//! - `/`: the filter form `#filters` (`#f-account`, `#f-state`, `#f-urgency`, `#f-age`, `#f-q`,
//!   `#filter-button`, `#filter-clear`); `table#tickets` (`data-seq`: the feed position of the
//!   page) with `tbody#ticket-rows`, one `tr#t-{account}-{id}` per ticket (`data-account`,
//!   `data-id`; the title links to the ticket; a queued action shows as `span.pending`; a new
//!   row gets class `new`, a leaving one `leaving` before it is removed); `#count`;
//!   `#no-tickets`.
//! - `/tickets/{account}/{id}`: `#ticket-title`, `#details`, `#reporter`, `#all-fields`,
//!   `#queued-actions` (`tr#action-{id}`), `#history`; the forms `#form-accept`
//!   (`#accept-comment`, `#accept-button`), `#form-hold` (`#hold-reason`, `#hold-preview`,
//!   `#hold-notify`, `#hold-button`), `#form-done` (`#done-comment`, `#done-notify`,
//!   `#done-button`), `#form-followup` (`#followup-title`, `#followup-description`,
//!   `#followup-urgency`, `#followup-photos`, `#followup-button`); with `[slotti]`,
//!   `#form-book` (`#book-technician` with `datalist#book-technicians`, `#book-after`,
//!   `#book-button`, `#book-slots-button`; `#book-no-key` instead of the fields when the Slotti
//!   key was not read) and after a dry run `#free-slots` (one `li` a time); `#visits` with one
//!   `li#visit-{id}` per visit (class `cancelled` when it is) and its `li.visit-change`s, or
//!   `#no-visits`; for a viewer `#viewer-note` instead of the forms. Every POST form has a
//!   hidden `csrf` field. A board row's `td.next-visit` holds a `time` when there is a visit.
//! - `/outbox`: `table#outbox` with `tr#outbox-{id}`, buttons `#retry-{id}`, `#cancel-{id}`;
//!   `#outbox-empty`. `/status`: `#verdict` (class `ok` or `bad`), `table#accounts`
//!   (`tr#account-{name}`), `table#cost`, `#webhooks`.

pub mod auth;
mod events;
pub mod i18n;
mod pages;
pub mod password;

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::faces::api::FeedWatch;
use crate::faces::listen::{BODY_TIMEOUT, BodyBudget, BodyRefused, read_body_within};
use crate::remote::Exchange;
use crate::store::Handle;
pub use i18n::Lang;

pub use crate::config::{BoardConfig, BoardUser, Role, check_hash};
pub use password::{MIN_PASSWORD_LEN, hash_password, verify_password};

use crate::store::Store;

/// The largest sign-in form (`POST /login`: a name and a password).
pub const LOGIN_MAX_BODY: usize = 4096;
/// A sign-in form not received this long after its head is refused (408).
pub const LOGIN_BODY_TIMEOUT: Duration = Duration::from_secs(5);

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
    store.board().board_link_create(
        &token_hash(&token),
        user,
        &crate::domain::time::fmt(now),
        &crate::domain::time::fmt(expires),
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

// ---- serving -------------------------------------------------------------------------------------

/// Bytes of form bodies buffered at once over all board connections.
const BODY_BUDGET: usize = 64 << 20;
/// At most this many live boards (`/events` streams) at once; more get 503.
pub const MAX_STREAMS: usize = 64;

/// What every board handler shares.
#[derive(Clone)]
pub(crate) struct Board {
    config: Arc<Config>,
    store: Handle,
    feed: Arc<FeedWatch>,
    failures: Arc<auth::Failures>,
    verifying: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    bodies: BodyBudget,
    max_body: usize,
    /// The process's one exchange: a visit booking asks Slotti through it.
    exchange: Exchange,
}

/// What the board keeps while its router is built again for each reloaded config: the sign-in
/// failures (the rate limit), the Argon2 verification slots, the cap on event streams, the
/// body budget and the exchange.
#[derive(Clone)]
pub struct Kept {
    failures: Arc<auth::Failures>,
    verifying: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    bodies: BodyBudget,
    exchange: Exchange,
}

impl Kept {
    /// Fresh limits, on the process's `exchange`.
    pub fn new(exchange: Exchange) -> Kept {
        Kept {
            failures: Arc::new(auth::Failures::default()),
            verifying: Arc::new(Semaphore::new(auth::MAX_VERIFICATIONS)),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            bodies: BodyBudget::new(BODY_BUDGET),
            exchange,
        }
    }
}

/// The board's router in front of the API's (`api`): the board answers its own paths (`/`,
/// `/login`, `/tickets/…`, `/outbox`, `/status`, `/events`, `/fragments/…`, `/static/…`),
/// everything else goes to `api`. Without `[board] enabled`, `api` alone. `kept` is what
/// outlives a reload.
pub fn mount(
    api: Router,
    config: Arc<Config>,
    store: Handle,
    feed: Arc<FeedWatch>,
    kept: &Kept,
) -> Router {
    if !config.board.enabled {
        return api;
    }
    let max_body = crate::config::max_body_bytes(config.api.as_ref());
    let board = Board {
        config,
        store,
        feed,
        failures: kept.failures.clone(),
        verifying: kept.verifying.clone(),
        streams: kept.streams.clone(),
        bodies: kept.bodies.clone(),
        max_body,
        exchange: kept.exchange.clone(),
    };
    let signed_in = Router::new()
        .route("/", get(pages::board))
        .route("/tickets/{account}/{id}", get(pages::ticket))
        .route("/tickets/{account}/{id}/{action}", post(pages::act))
        .route("/outbox", get(pages::outbox))
        .route("/outbox/{id}/{action}", post(pages::outbox_act))
        .route("/status", get(pages::status))
        .route("/fragments/row/{account}/{id}", get(pages::row_fragment))
        .route("/events", get(events::events))
        .route("/logout", post(auth::logout))
        // The session is checked before a body is read (the last layer runs first): without
        // one, a form's body never reaches the shared budget, so requests without credentials
        // cannot hold it against the sign-in form.
        .route_layer(middleware::from_fn_with_state(board.clone(), bound_body))
        .route_layer(middleware::from_fn_with_state(
            board.clone(),
            auth::require_session,
        ));
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/login/{token}", get(auth::login_link))
        .route("/static/board.css", get(static_css))
        .route("/static/board.js", get(static_js))
        .route_layer(middleware::from_fn_with_state(board.clone(), bound_body))
        .merge(signed_in)
        .layer(middleware::map_response(page_headers))
        // The board's pages gzipped for a browser that accepts it (not /events: tower-http
        // leaves text/event-stream alone); the API behind the fallback is not layered.
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(board)
        .fallback_service(api)
}

/// Headers of every board answer: personal data is never cached, the pages load nothing from
/// elsewhere and cannot be framed, and no address (a login link's token) leaks as a referrer
/// to another site. `same-origin`, not `no-referrer`: under `no-referrer` a browser posts the
/// sign-in form with `Origin: null`, which the sign-in's origin check must refuse.
async fn page_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// Reads a form's body within the body timeout, the shared budget and `[api] max_body_bytes`
/// before a handler sees it (as the API does): 413 or 408 otherwise. The sign-in form, which
/// anyone may send, gets [`LOGIN_MAX_BODY`] and [`LOGIN_BODY_TIMEOUT`].
async fn bound_body(State(b): State<Board>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if declared.unwrap_or(0) == 0 && !chunked {
        return next.run(req).await;
    }
    let (max, timeout) = if req.uri().path() == "/login" {
        (LOGIN_MAX_BODY.min(b.max_body), LOGIN_BODY_TIMEOUT)
    } else {
        (b.max_body, BODY_TIMEOUT)
    };
    let (parts, body) = req.into_parts();
    match read_body_within(body, declared, max, &b.bodies, timeout).await {
        Ok((bytes, _reserved)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(BodyRefused::TooLarge) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the form is over {max} bytes"),
        )
            .into_response(),
        Err(BodyRefused::TimedOut) => (
            StatusCode::REQUEST_TIMEOUT,
            "the form was not received in time",
        )
            .into_response(),
    }
}

async fn static_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/board.css"),
    )
        .into_response()
}

async fn static_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/board.js"),
    )
        .into_response()
}

/// The page language of a request.
pub(crate) fn lang(headers: &HeaderMap) -> Lang {
    Lang::from_accept_language(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// The templates, compiled into the binary; HTML-escaped by their `.html` names, and every
/// printed value's control and bidi characters escaped visibly ([`crate::domain::escape::esc_page`]).
fn templates() -> &'static minijinja::Environment<'static> {
    static ENV: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // Every value a page or fragment prints passes here, so no template can forget it: text
        // from Tampuuri with a bidi override or a NUL is shown escaped, as the CLI shows it.
        env.set_formatter(|out, state, value| {
            let clean = match value.as_str().map(crate::domain::escape::esc_page) {
                Some(std::borrow::Cow::Owned(c)) if value.is_safe() => {
                    minijinja::Value::from_safe_string(c)
                }
                Some(std::borrow::Cow::Owned(c)) => minijinja::Value::from(c),
                _ => return minijinja::escape_formatter(out, state, value),
            };
            minijinja::escape_formatter(out, state, &clean)
        });
        for (name, text) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("board.html", include_str!("templates/board.html")),
            ("row.html", include_str!("templates/row.html")),
            ("ticket.html", include_str!("templates/ticket.html")),
            ("outbox.html", include_str!("templates/outbox.html")),
            ("status.html", include_str!("templates/status.html")),
            ("message.html", include_str!("templates/message.html")),
        ] {
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("board template {name}: {e:#}"));
        }
        env
    });
    &ENV
}

/// Renders template `name` with `ctx` as an HTML answer with `status`; a template error is
/// logged and a 500.
pub(crate) fn render(status: StatusCode, name: &str, ctx: serde_json::Value) -> Response {
    match templates()
        .get_template(name)
        .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
    {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(
                template = name,
                error = format!("{e:#}"),
                "A board page cannot be rendered."
            );
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page cannot be rendered; see the service's log",
            )
                .into_response()
        }
    }
}

/// A page with only a message (an error, a refusal), in the page layout.
pub(crate) fn message(
    status: StatusCode,
    lang: Lang,
    me: Option<&auth::Me>,
    text: &str,
) -> Response {
    render(
        status,
        "message.html",
        serde_json::json!({
            "t": lang.words(),
            "lang": lang.code(),
            "me": me.map(auth::Me::view),
            "nav": "",
            "title": lang.t("err_title"),
            "text": text,
        }),
    )
}

/// `s` percent-encoded for one path segment.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
