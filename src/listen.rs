//! The accept loop shared by the HTTP listeners (the webhook listener and the API): hyper's
//! HTTP/1 connections serving an axum router, with a header timeout, a connection cap that
//! closes the oldest idle connection for a new one, and accept errors (such as too many open
//! files) paused on rather than fatal. Bodies are bounded by the routers themselves
//! ([`read_body`]: a timeout and one byte budget shared by all connections). The router may be
//! replaced while serving ([`serve_routes`]: a reload), each request taking the one in force;
//! at the shutdown the listener drains: it accepts no more, closes idle connections, answers the
//! requests in flight, and ends once every connection has.

use std::collections::BTreeMap;
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
/// included) is refused (408).
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
    /// Counter of accept errors.
    pub accept_errors: &'static str,
}

/// The open connections, oldest first. Removing an entry closes its connection (its task
/// watches the other end of `close`).
#[derive(Default)]
struct Connections {
    open: Mutex<BTreeMap<u64, Conn>>,
    /// Notified whenever a connection ends.
    ended: Notify,
}

struct Conn {
    /// Requests in progress on this connection (0: idle, waiting for a request head).
    busy: Arc<AtomicUsize>,
    _close: oneshot::Sender<()>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Conn>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a new connection may be served: below the cap, or after the oldest idle
    /// connection was closed to make room.
    fn make_room(&self, cap: usize, names: &Names) -> bool {
        let mut open = self.lock();
        if open.len() < cap {
            return true;
        }
        let oldest_idle = open
            .iter()
            .find(|(_, c)| c.busy.load(Ordering::SeqCst) == 0)
            .map(|(id, _)| *id);
        match oldest_idle {
            Some(id) => {
                open.remove(&id);
                metrics::counter!(names.shed).increment(1);
                true
            }
            None => false,
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
        self.table.lock().remove(&self.id);
        self.table.ended.notify_waiters();
    }
}

/// Counts a request in progress while alive.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(n: &Arc<AtomicUsize>) -> Busy {
        n.fetch_add(1, Ordering::SeqCst);
        Busy(n.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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
    max_connections: usize,
    names: Names,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (_keep, routes) = watch::channel(router);
    serve_routes(listener, routes, max_connections, names, shutdown).await
}

/// Serves the router in force in `routes` (each request takes the latest) on `listener` until
/// `shutdown`; then drains: the listening socket is closed, idle connections are closed, each
/// request in flight is answered (its connection closed after it), and this ends when every
/// connection has. The caller bounds the drain (the daemon by `[service] shutdown_grace_secs`);
/// handlers that wait (long polls, event streams) answer at their own stop signal.
///
/// HTTP/1.1 with a [`HEADER_TIMEOUT`] on every request head and at most `max_connections`
/// connections: at the cap the oldest idle connection is closed for the new one (or, when every
/// connection is in the middle of a request, the new one waits for a slot). An accept error such
/// as too many open files pauses the accept loop briefly (50 ms, doubling up to 1 s); only a
/// broken listening socket ends it, with an error.
pub async fn serve_routes(
    listener: tokio::net::TcpListener,
    routes: watch::Receiver<Router>,
    max_connections: usize,
    names: Names,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let cap = max_connections.max(1);
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
        let stream = match accepted {
            Ok((stream, _)) => {
                pause = ACCEPT_PAUSE_MIN;
                stream
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
                    open = table.lock().len(),
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
        loop {
            let ended = table.ended.notified();
            let mut ended = std::pin::pin!(ended);
            ended.as_mut().enable();
            if table.make_room(cap, &names) {
                break;
            }
            tokio::select! {
                () = &mut shutdown => break 'accept,
                () = ended => {}
            }
        }
        let busy = Arc::new(AtomicUsize::new(0));
        let (close_tx, close_rx) = oneshot::channel();
        next_id += 1;
        table.lock().insert(
            next_id,
            Conn {
                busy: busy.clone(),
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
            busy,
            (close_rx, drain.clone()),
            registered,
        ));
    }
    drop(listener);
    drain.cancel();
    loop {
        let ended = table.ended.notified();
        let mut ended = std::pin::pin!(ended);
        ended.as_mut().enable();
        let open = table.lock().len();
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
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
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
    busy: Arc<AtomicUsize>,
    close: (oneshot::Receiver<()>, CancellationToken),
    _registered: Registered,
) {
    let (mut close, drain) = close;
    // The peer's address, for handlers that key on it (the board's sign-in rate limit).
    let peer = stream.peer_addr().ok();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let router = routes.borrow().clone();
        let busy = Busy::new(&busy);
        let mut req = req.map(Body::new);
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
