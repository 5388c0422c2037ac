//! The accept loop shared by the HTTP listeners (the webhook listener and the API): hyper's
//! HTTP/1 connections serving an axum router, with a header timeout, a connection cap (and a
//! per-address share of it) that closes an idle connection, or one still waiting for its
//! request body, for a new one, and accept errors (such as too many open files) paused on
//! rather than fatal. Bodies are bounded by the routers themselves
//! ([`read_body`]: a timeout and one byte budget shared by all connections). The router may be
//! replaced while serving ([`serve_routes`]: a reload), each request taking the one in force;
//! at the shutdown the listener drains: it accepts no more, closes idle connections, answers the
//! requests in flight, and ends once every connection has.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A connection that has not sent a complete request head this long after it opened (or after
/// its previous response) is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request whose body has not arrived this long after its head (waiting for the body budget
/// included) is refused (408). Meanwhile its connection counts as closable at the cap.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(15);
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(50);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// What a listener is called in errors and logs, and its metric names.
#[derive(Debug, Clone, Copy)]
pub struct Names {
    /// For messages: `[webhook]`, `[api]`.
    pub section: &'static str,
    /// For messages: `webhook`, `API`.
    pub noun: &'static str,
    /// Counter of connections closed to make room.
    pub shed: &'static str,
    /// Counter of new connections closed at once: their address held its share of the cap,
    /// none of them closable.
    pub refused: &'static str,
    /// Counter of accept errors.
    pub accept_errors: &'static str,
}

/// How many connections a listener serves at once.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// In all (`max_connections`).
    pub connections: usize,
    /// From one address (`max_connections_per_address`; above `connections` it changes
    /// nothing).
    pub per_address: usize,
}

/// The open connections, oldest first. Removing an entry closes its connection (its task
/// watches the other end of `close`).
#[derive(Default)]
struct Connections {
    open: Mutex<Table>,
    /// Notified whenever a connection ends, a request ends, or a request starts waiting for
    /// its body: whenever a connection may have become closable.
    changed: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    conns: BTreeMap<u64, Conn>,
    /// Connections by peer address.
    per_ip: HashMap<IpAddr, usize>,
}

struct Conn {
    ip: IpAddr,
    activity: Arc<Activity>,
    _close: oneshot::Sender<()>,
}

/// What a connection is doing, for the cap to choose which connection to close.
struct Activity {
    /// Requests in progress (0: idle, waiting for a request head).
    busy: AtomicUsize,
    /// Of those, the requests whose handler waits for body bytes the peer has not sent.
    awaiting_body: AtomicUsize,
    changed: Arc<Notify>,
}

impl Activity {
    /// Idle, or every request in progress waits for its body: closing it loses no work that
    /// the peer has finished asking for. (A request being handled, a long poll or an event
    /// stream among them, is not closable: those are capped on their own.)
    fn closable(&self) -> bool {
        let busy = self.busy.load(Ordering::SeqCst);
        busy == 0 || busy <= self.awaiting_body.load(Ordering::SeqCst)
    }
}

impl Table {
    fn insert(&mut self, id: u64, conn: Conn) {
        *self.per_ip.entry(conn.ip).or_default() += 1;
        self.conns.insert(id, conn);
    }

    /// Removes (and so closes) a connection; `false` if it was gone already.
    fn remove(&mut self, id: u64) -> bool {
        let Some(conn) = self.conns.remove(&id) else {
            return false;
        };
        if let Some(n) = self.per_ip.get_mut(&conn.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&conn.ip);
            }
        }
        true
    }

    fn held_by(&self, ip: &IpAddr) -> usize {
        self.per_ip.get(ip).copied().unwrap_or(0)
    }

    /// The closable connection to close for a new one: with `only`, the oldest of that
    /// address; else the oldest of the address holding the most connections (so that a
    /// client holding few is the last to lose one).
    fn victim(&self, only: Option<IpAddr>) -> Option<u64> {
        let mut best: Option<(usize, u64)> = None;
        for (id, c) in &self.conns {
            if only.is_some_and(|ip| ip != c.ip) || !c.activity.closable() {
                continue;
            }
            let held = self.held_by(&c.ip);
            if best.is_none_or(|(most, _)| held > most) {
                best = Some((held, *id));
            }
        }
        best.map(|(_, id)| id)
    }
}

/// Whether a new connection is served.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Yes,
    /// At the cap, every connection busy: wait for one to end or become closable.
    Wait,
    /// Its address holds its share, all of them busy: close it.
    Refuse,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a new connection from `ip` may be served, closing a closable connection (idle
    /// or waiting for its body) to make room: one of the same address when that address holds
    /// its share of the cap, else, at the cap, one of the address holding the most.
    fn make_room(&self, ip: IpAddr, caps: Caps, names: &Names) -> Admit {
        let mut open = self.lock();
        if open.held_by(&ip) >= caps.per_address.max(1) {
            let Some(id) = open.victim(Some(ip)) else {
                return Admit::Refuse;
            };
            open.remove(id);
            metrics::counter!(names.shed).increment(1);
        }
        if open.conns.len() < caps.connections.max(1) {
            return Admit::Yes;
        }
        match open.victim(None) {
            Some(id) => {
                open.remove(id);
                metrics::counter!(names.shed).increment(1);
                Admit::Yes
            }
            None => Admit::Wait,
        }
    }
}

/// Removes its connection from the table when the connection's task ends, however it ends.
struct Registered {
    id: u64,
    table: Arc<Connections>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
        self.table.changed.notify_waiters();
    }
}

/// Counts a request in progress while alive.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: &Arc<Activity>) -> Busy {
        a.busy.fetch_add(1, Ordering::SeqCst);
        Busy(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// A request's body, counted in its connection's [`Activity::awaiting_body`] while the handler
/// waits for bytes the peer has not sent (its last poll was pending).
struct Watched {
    inner: hyper::body::Incoming,
    activity: Arc<Activity>,
    awaiting: bool,
}

impl Watched {
    fn set_awaiting(&mut self, awaiting: bool) {
        if awaiting == self.awaiting {
            return;
        }
        self.awaiting = awaiting;
        if awaiting {
            self.activity.awaiting_body.fetch_add(1, Ordering::SeqCst);
            self.activity.changed.notify_waiters();
        } else {
            self.activity.awaiting_body.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl hyper::body::Body for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        self.set_awaiting(polled.is_pending());
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.set_awaiting(false);
    }
}

/// The address a connection counts against for the per-address share: an IPv4 address, or an
/// IPv6 address's /64 (one host's usual allocation).
fn client(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Whether an accept error means the listening socket itself is broken (rather than a passing
/// shortage of file descriptors or memory, or a connection reset before it was accepted).
fn listener_broken(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP)
    )
}

/// Serves `router` on `listener` until `shutdown`, then drains (see [`serve_routes`]).
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    caps: Caps,
    names: Names,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (_keep, routes) = watch::channel(router);
    serve_routes(listener, routes, caps, names, shutdown).await
}

/// Serves the router in force in `routes` (each request takes the latest) on `listener` until
/// `shutdown`; then drains: the listening socket is closed, idle connections are closed, each
/// request in flight is answered (its connection closed after it), and this ends when every
/// connection has. The caller bounds the drain (the daemon by `[service] shutdown_grace_secs`);
/// handlers that wait (long polls, event streams) answer at their own stop signal.
///
/// HTTP/1.1 with a [`HEADER_TIMEOUT`] on every request head and at most `caps.connections`
/// connections, `caps.per_address` of them from one address. A connection that is idle or whose
/// request still waits for its body is closable: at the cap, the oldest closable connection of
/// the address holding the most connections is closed for the new one; an address at its share
/// loses its own oldest closable one (or, with none, the new connection is closed at once).
/// When every connection is in the middle of a request, the new one waits for a slot. An accept
/// error such as too many open files pauses the accept loop briefly (50 ms, doubling up to 1 s);
/// only a broken listening socket ends it, with an error.
pub async fn serve_routes(
    listener: tokio::net::TcpListener,
    routes: watch::Receiver<Router>,
    caps: Caps,
    names: Names,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let table = Arc::new(Connections::default());
    let drain = CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut pause = ACCEPT_PAUSE_MIN;
    let mut next_id = 0u64;
    'accept: loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                pause = ACCEPT_PAUSE_MIN;
                accepted
            }
            Err(e) if listener_broken(&e) => {
                anyhow::bail!(
                    "{} listen = {addr}: the listening socket failed: {e}",
                    names.section
                )
            }
            Err(e) => {
                metrics::counter!(names.accept_errors).increment(1);
                tracing::warn!(
                    error = %e,
                    open = table.lock().conns.len(),
                    pause_ms = pause.as_millis() as u64,
                    "Cannot accept a {} connection; pausing the listener.", names.noun
                );
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                continue;
            }
        };
        let ip = client(peer.ip());
        loop {
            let changed = table.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            match table.make_room(ip, caps, &names) {
                Admit::Yes => break,
                Admit::Refuse => {
                    metrics::counter!(names.refused).increment(1);
                    tracing::debug!(listener = names.section, peer = %ip, "A connection was refused: its address holds its share.");
                    continue 'accept;
                }
                Admit::Wait => {}
            }
            tokio::select! {
                () = &mut shutdown => break 'accept,
                () = changed => {}
            }
        }
        let activity = Arc::new(Activity {
            busy: AtomicUsize::new(0),
            awaiting_body: AtomicUsize::new(0),
            changed: table.changed.clone(),
        });
        let (close_tx, close_rx) = oneshot::channel();
        next_id += 1;
        table.lock().insert(
            next_id,
            Conn {
                ip,
                activity: activity.clone(),
                _close: close_tx,
            },
        );
        let registered = Registered {
            id: next_id,
            table: table.clone(),
        };
        tokio::spawn(serve_connection(
            names.section,
            stream,
            routes.clone(),
            activity,
            (close_rx, drain.clone()),
            registered,
        ));
    }
    drop(listener);
    drain.cancel();
    loop {
        let ended = table.changed.notified();
        let mut ended = std::pin::pin!(ended);
        ended.as_mut().enable();
        let open = table.lock().conns.len();
        if open == 0 {
            break;
        }
        tracing::debug!(open, listener = names.section, "Draining the connections.");
        ended.await;
    }
    Ok(())
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRefused {
    /// Over the limit (declared or sent): 413.
    TooLarge,
    /// Not received within [`BODY_TIMEOUT`]: 408.
    TimedOut,
}

/// Bytes of request bodies a listener buffers at once over all its connections.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    sem: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    /// A budget of `total` bytes (at most `u32::MAX`).
    pub fn new(total: usize) -> BodyBudget {
        let total = total.min(u32::MAX as usize);
        BodyBudget {
            sem: Arc::new(Semaphore::new(total)),
            total,
        }
    }
}

/// Reads a request body of at most `max` bytes within [`BODY_TIMEOUT`], first reserving what it
/// may take (its declared length, which hyper holds it to, or `max`) of the shared `budget`, so
/// that the bytes buffered at once over all connections stay bounded. `declared` is the
/// request's `Content-Length`. The reservation ends when the returned permit is dropped.
pub async fn read_body(
    body: Body,
    declared: Option<u64>,
    max: usize,
    budget: &BodyBudget,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), BodyRefused> {
    read_body_within(body, declared, max, budget, BODY_TIMEOUT).await
}

/// [`read_body`] within `timeout` instead of [`BODY_TIMEOUT`] (for a form that is small by
/// nature, such as the board's sign-in).
pub async fn read_body_within(
    body: Body,
    declared: Option<u64>,
    max: usize,
    budget: &BodyBudget,
    timeout: Duration,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), BodyRefused> {
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyRefused::TooLarge);
    }
    let limit = declared.map_or(max, |n| n as usize).min(max);
    let reserve = u32::try_from(limit.min(budget.total)).expect("the budget fits in u32");
    let read = async {
        let permit = budget
            .sem
            .clone()
            .acquire_many_owned(reserve)
            .await
            .expect("the budget is never closed");
        (axum::body::to_bytes(body, limit).await, permit)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok((Ok(b), permit)) => Ok((b, permit)),
        Ok((Err(_), _)) => Err(BodyRefused::TooLarge),
        Err(_) => Err(BodyRefused::TimedOut),
    }
}

/// One connection: HTTP/1.1 until the client closes, a head times out, or the table drops it
/// (`close`); at the drain (`close.1`) it ends after the request in flight, if any.
async fn serve_connection(
    what: &'static str,
    stream: tokio::net::TcpStream,
    routes: watch::Receiver<Router>,
    activity: Arc<Activity>,
    close: (oneshot::Receiver<()>, CancellationToken),
    _registered: Registered,
) {
    let (mut close, drain) = close;
    // The peer's address, for handlers that key on it (the board's sign-in rate limit).
    let peer = stream.peer_addr().ok();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let router = routes.borrow().clone();
        let busy = Busy::new(&activity);
        let activity = activity.clone();
        let mut req = req.map(|inner| {
            Body::new(Watched {
                inner,
                activity,
                awaiting: false,
            })
        });
        if let Some(peer) = peer {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        async move {
            let _busy = busy;
            router.oneshot(req).await
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = &mut close => {
            tracing::debug!(listener = what, "A connection was closed to make room.");
            return;
        }
        () = drain.cancelled() => None,
    };
    let ended = match ended {
        Some(r) => r,
        None => {
            // The request in flight is answered; an idle connection closes at once.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, listener = what, "A connection ended with an error.");
    }
}
