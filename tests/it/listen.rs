//! The listeners under attack (`src/faces/listen.rs`, issue 19): slow request bodies make room at the
//! cap like idle connections, one address gets its share of the cap and no more, long polls
//! over `[api] max_long_polls` are answered at once, and the board's sign-in form is small and
//! quick. Loopback only; attackers bind other 127.0.0.x addresses than the probes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use huoltosync::faces::listen::{BodyBudget, Caps, Names, read_body, serve_router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;

use crate::helpers::wait_for;

const NAMES: Names = Names {
    section: "[test]",
    noun: "test",
    shed: "test_shed_total",
    refused: "test_refused_total",
    accept_errors: "test_accept_errors_total",
};

/// A slow body: a head declaring 100 bytes, then 9 of them.
const SLOW: &[u8] = b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nusername=";

struct Server {
    addr: SocketAddr,
    /// Requests whose handler started reading a body.
    reading: Arc<AtomicUsize>,
    /// Requests held in `GET /hold`.
    holding: Arc<AtomicUsize>,
    release: Arc<Notify>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The shared accept loop serving `GET /ping`, `POST /form` (reads its body within the body
/// timeout) and `GET /hold` (busy until released).
async fn server(caps: Caps) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reading = Arc::new(AtomicUsize::new(0));
    let holding = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let budget = BodyBudget::new(1 << 20);
    let (r, h, rel) = (reading.clone(), holding.clone(), release.clone());
    let router = Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route(
            "/form",
            post(move |body: axum::body::Body| async move {
                r.fetch_add(1, Ordering::SeqCst);
                match read_body(body, None, 1000, &budget).await {
                    Ok(_) => "read",
                    Err(_) => "refused",
                }
            }),
        )
        .route(
            "/hold",
            get(move || async move {
                let released = rel.notified();
                h.fetch_add(1, Ordering::SeqCst);
                released.await;
                "released"
            }),
        );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_router(listener, router, caps, NAMES, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        reading,
        holding,
        release,
        _stop: stop,
    }
}

/// A connection to `addr` from the loopback address `127.0.0.<host>`.
async fn connect_from(addr: SocketAddr, host: u8) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from(([127, 0, 0, host], 0))).unwrap();
    sock.connect(addr).await.unwrap()
}

/// `GET path` from `127.0.0.<host>`: the status line, or "" when the connection was closed
/// without an answer; `None` when nothing came within `limit`.
async fn get_from(addr: SocketAddr, host: u8, path: &str, limit: Duration) -> Option<String> {
    let exchange = async {
        let mut s = connect_from(addr, host).await;
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        if s.write_all(req.as_bytes()).await.is_err() {
            return String::new();
        }
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    tokio::time::timeout(limit, exchange).await.ok()
}

/// Whether the server closed `s` (end of stream or reset rather than "nothing yet").
fn closed(s: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    !matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_at_the_cap_make_room_for_a_request_from_another_address() {
    let srv = server(Caps {
        connections: 16,
        per_address: 16,
    })
    .await;
    let mut slow = Vec::new();
    for i in 0..16 {
        let mut s = connect_from(srv.addr, 10 + (i % 4) as u8).await;
        s.write_all(SLOW).await.unwrap();
        slow.push(s);
    }
    // Every slot holds a request waiting for its body.
    assert!(
        wait_for(Duration::from_secs(10), || srv
            .reading
            .load(Ordering::SeqCst)
            == 16)
        .await
    );
    // More of them, and then a probe: each closes the oldest slow body of the busiest address
    // instead of waiting for a slot (the body timeout is 15 s).
    for i in 0..24 {
        let mut s = connect_from(srv.addr, 10 + (i % 4) as u8).await;
        s.write_all(SLOW).await.unwrap();
        slow.push(s);
    }
    let answer = get_from(srv.addr, 3, "/ping", Duration::from_secs(3)).await;
    assert_eq!(answer.as_deref(), Some("HTTP/1.1 200 OK"));
    assert!(
        wait_for(Duration::from_secs(5), || slow[..16].iter().all(closed)).await,
        "the oldest slow bodies were closed to make room"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_its_share_of_the_cap_and_no_more() {
    let srv = server(Caps {
        connections: 16,
        per_address: 4,
    })
    .await;
    // Four requests in progress from one address: its share, none of them closable.
    let mut holds = Vec::new();
    for _ in 0..4 {
        let addr = srv.addr;
        holds.push(tokio::spawn(async move {
            get_from(addr, 20, "/hold", Duration::from_secs(20)).await
        }));
    }
    assert!(
        wait_for(Duration::from_secs(10), || srv
            .holding
            .load(Ordering::SeqCst)
            == 4)
        .await
    );
    // A fifth from that address is closed at once, unanswered; another address is served.
    assert_eq!(
        get_from(srv.addr, 20, "/ping", Duration::from_secs(3))
            .await
            .as_deref(),
        Some("")
    );
    assert_eq!(
        get_from(srv.addr, 21, "/ping", Duration::from_secs(3))
            .await
            .as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    // Slow bodies from one address beyond its share close that address's own oldest.
    let mut slow = Vec::new();
    for _ in 0..6 {
        let mut s = connect_from(srv.addr, 22).await;
        s.write_all(SLOW).await.unwrap();
        slow.push(s);
        // Each is reading its body before the next comes.
        let n = slow.len();
        assert!(
            wait_for(Duration::from_secs(10), || srv
                .reading
                .load(Ordering::SeqCst)
                == n)
            .await
        );
    }
    assert!(wait_for(Duration::from_secs(5), || slow[..2].iter().all(closed)).await);
    assert!(
        slow[2..].iter().all(|s| !closed(s)),
        "only as many as needed"
    );
    srv.release.notify_waiters();
    for h in holds {
        assert_eq!(
            h.await.unwrap().as_deref(),
            Some("HTTP/1.1 200 OK"),
            "the held requests were never closed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_over_the_cap_get_503_at_once_and_other_requests_are_answered() {
    let env = crate::helpers::Setup::tickets(2)
        .sections(&crate::api::api_toml("max_long_polls = 2"))
        .start()
        .await;
    env.sync_ok().await;
    let api = crate::api::serve(&env).await;
    let after = api.ok("/changes?limit=1000").await["next_after"]
        .as_i64()
        .unwrap();
    // Three long polls of 30 s against a cap of two: two hold their places, the third is refused
    // at once (well before its 30 s), whichever of the three arrives last.
    let path = format!("/changes?after={after}&wait=30");
    let started = std::time::Instant::now();
    let mut polls = Vec::new();
    for _ in 0..3 {
        let (http, url) = (api.http.clone(), format!("{}{path}", api.base));
        polls.push(tokio::spawn(async move {
            let r = http
                .get(url)
                .bearer_auth(crate::api::READ)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (status, retry, body, started.elapsed())
        }));
    }
    let (refused, _, polls) =
        tokio::time::timeout(Duration::from_secs(20), futures::future::select_all(polls))
            .await
            .expect("no long poll was refused over the cap");
    let (status, retry, body, took) = refused.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        took < Duration::from_secs(10),
        "refused only after {took:?}"
    );
    assert_eq!(retry.as_deref(), Some("2"));
    assert!(
        body["detail"].as_str().unwrap().contains("max_long_polls"),
        "{body}"
    );
    // Ordinary requests are answered meanwhile, and the two long polls still wait.
    api.ok("/status").await;
    assert_eq!(polls.len(), 2);
    assert!(polls.iter().all(|p| !p.is_finished()));
    for p in polls {
        p.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_form_is_small_and_quick_or_refused() {
    let (_env, served, root) = crate::board::board_env(1, true).await;
    let addr: SocketAddr = root.trim_start_matches("http://").parse().unwrap();
    let _ = served;
    let exchange = |head: String, body: &'static [u8]| async move {
        let mut s = connect_from(addr, 30).await;
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut buf = Vec::new();
        let started = std::time::Instant::now();
        let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf).to_string();
        (
            text.lines().next().unwrap_or("").to_owned(),
            started.elapsed(),
        )
    };
    let head = |len: usize| {
        format!(
            "POST /login HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        )
    };
    // Over 4 kB: refused before the body is read.
    let (status, took) = exchange(head(5000), b"").await;
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // A body that stops coming: 408 after 5 s, not the 15 s of other forms.
    let (status, took) = exchange(head(100), b"username=").await;
    assert_eq!(status, "HTTP/1.1 408 Request Timeout");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

/// A form posted to a signed-in page without a session is refused before its body is read: a
/// request without credentials never holds the shared body budget (which the sign-in form needs)
/// for the body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_a_session_is_refused_before_its_body_is_read() {
    let (_env, served, root) = crate::board::board_env(1, true).await;
    let addr: SocketAddr = root.trim_start_matches("http://").parse().unwrap();
    let _ = served;
    let mut s = connect_from(addr, 31).await;
    // 8 MB declared, nothing sent: answered at once, not after the 15 s body timeout.
    let head = "POST /logout HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 8000000\r\nConnection: close\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("no answer within 10 s: the body was waited for")
        .unwrap();
    let status = String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
