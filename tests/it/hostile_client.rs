//! The API client against servers that misbehave: a redirect elsewhere, an endless or huge
//! body, a fetch answering with another ticket, no server at all, a proxy in between, and an
//! account whose secret cannot be sent. Each fake server is a tiny axum app on 127.0.0.1:0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use huoltosync::config::Config;
use huoltosync::tampuuri::Api;
use serde_json::{Value, json};

use crate::helpers::{Setup, config_text, run_cli};

/// Serves `app` on a fresh loopback port.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}/v10/api/")
}

/// A config for one account `fake-1` against `base_url`, written in `dir` through the real
/// loader; `tampuuri` is extra TOML for `[tampuuri]`.
fn write_config(dir: &Path, base_url: &str, tampuuri: &str) -> (PathBuf, Config) {
    let mut setup = Setup::tickets(0);
    setup.accounts = vec!["fake-1".into()];
    setup.tampuuri = tampuuri.into();
    let path = dir.join("config.toml");
    std::fs::write(&path, config_text(base_url, &dir.join("store.db"), &setup)).unwrap();
    let config = Config::load(&path).expect("test config is valid").config;
    (path, config)
}

/// One sync of `fake-1`: its error text (empty when it succeeded), calls and unreached requests.
async fn sync_once(config: &Config) -> (String, u64, u64) {
    let api = Api::new(config).unwrap();
    let r = huoltosync::engine::sync::sync_all(config, &api)
        .await
        .remove(0);
    let err = r.error.map(|e| format!("{e:#}")).unwrap_or_default();
    (err, r.api_calls, r.unreached)
}

fn ticket(id: i64, state: &str, title: &str) -> Value {
    json!({"Id": id, "Tila": state, "Otsikko": title, "TyonsuorittajaId": 4711})
}

fn metered(config: &Config) -> i64 {
    let db = rusqlite::Connection::open(&config.store.path).unwrap();
    db.query_row("SELECT coalesce(sum(calls), 0) FROM api_calls", [], |r| {
        r.get(0)
    })
    .unwrap()
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed_and_names_its_location() {
    // The other origin records whatever reaches it.
    let caught = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let c = caught.clone();
    let other = serve(
        Router::new().fallback(move |headers: HeaderMap| async move {
            c.lock().unwrap().push(format!("{headers:?}"));
            StatusCode::NOT_FOUND
        }),
    )
    .await;
    let location = format!(
        "http://localhost:{}/v10/api/ilmoitukset/selaa",
        other.port()
    );
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let redirecting = serve(Router::new().fallback(move || async move {
        h.fetch_add(1, Ordering::SeqCst);
        (
            StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, location)],
        )
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = write_config(dir.path(), &base_url(redirecting), "");
    let (err, calls, _) = sync_once(&config).await;
    assert!(caught.lock().unwrap().is_empty(), "{:?}", caught.lock());
    assert!(
        err.contains("redirect")
            && err.contains(&format!("localhost:{}", other.port()))
            && err.contains("307"),
        "{err}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a redirect is an answer, not retried"
    );
    assert_eq!(calls, 1);
}

/// A fake whose selaa answers one ticket with a `title_bytes` long title, streamed in 64 KiB
/// chunks (no Content-Length) or whole (with one); `chunks` counts the chunks it produced.
async fn huge_ticket_server(
    title_bytes: usize,
    streamed: bool,
    chunks: Arc<AtomicU64>,
) -> SocketAddr {
    static CHUNK: [u8; 65536] = [b'x'; 65536];
    serve(Router::new().fallback(move || async move {
        if !streamed {
            let body = json!({"Total": 1, "Items": [ticket(1, "Avoin", &"x".repeat(title_bytes))]});
            return body.to_string().into_response();
        }
        let n = title_bytes / CHUNK.len();
        let head = futures::stream::once(async {
            Ok::<_, std::io::Error>(&br#"{"Total": 1, "Items": [{"Id": 1, "Tila": "Avoin", "TyonsuorittajaId": 4711, "Otsikko": ""#[..])
        });
        let middle = futures::stream::iter((0..n).map(move |_| {
            chunks.fetch_add(1, Ordering::SeqCst);
            Ok(&CHUNK[..])
        }));
        let tail = futures::stream::once(async { Ok(&br#""}]}"#[..]) });
        use futures::StreamExt;
        Response::new(Body::from_stream(head.chain(middle).chain(tail)))
    }))
    .await
}

#[tokio::test]
async fn a_response_over_max_response_bytes_fails_cleanly_naming_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    // Declared by Content-Length: refused before reading.
    let whole = huge_ticket_server(200_000, false, Default::default()).await;
    let (_, config) = write_config(dir.path(), &base_url(whole), "max_response_bytes = 65536");
    let (err, _, _) = sync_once(&config).await;
    assert!(err.contains("max_response_bytes = 65536"), "{err}");

    // Streamed without a length: reading stops at the cap, long before the end (100 MiB).
    let chunks = Arc::new(AtomicU64::new(0));
    let streamed = huge_ticket_server(100 << 20, true, chunks.clone()).await;
    let (_, config) = write_config(
        dir.path(),
        &base_url(streamed),
        "max_response_bytes = 65536",
    );
    let (err, _, _) = sync_once(&config).await;
    assert!(err.contains("max_response_bytes = 65536"), "{err}");
    let produced = chunks.load(Ordering::SeqCst);
    assert!(
        produced < 800,
        "{produced} of 1600 chunks were produced: the body was read past the cap"
    );
    assert_eq!(
        rusqlite::Connection::open(&config.store.path)
            .unwrap()
            .query_row("SELECT count(*) FROM tickets", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        0
    );

    // Under the cap the same ticket is fine.
    let small = huge_ticket_server(20_000, false, Default::default()).await;
    let (_, config) = write_config(dir.path(), &base_url(small), "max_response_bytes = 65536");
    let (err, _, _) = sync_once(&config).await;
    assert_eq!(err, "");
}

#[tokio::test]
async fn a_fetch_answering_with_another_ticket_is_not_applied_to_either() {
    // First the list holds 1001-1003; then it holds 1002 and 1003, and GET 1001 answers with
    // ticket 1003, finished.
    let second = Arc::new(AtomicBool::new(false));
    let s = second.clone();
    let fake = serve(
        Router::new().fallback(move |method: Method, uri: Uri| async move {
            let later = s.load(Ordering::SeqCst);
            let body = if method == Method::GET {
                assert!(uri.path().ends_with("/ilmoitukset/1001"), "{uri}");
                ticket(1003, "Valmis", "wrong ticket for 1001")
            } else {
                let ids: &[i64] = if later {
                    &[1002, 1003]
                } else {
                    &[1001, 1002, 1003]
                };
                let items: Vec<Value> = ids.iter().map(|i| ticket(*i, "Avoin", "Vika")).collect();
                json!({"Total": ids.len(), "Items": items})
            };
            axum::Json(body)
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = write_config(dir.path(), &base_url(fake), "");
    assert_eq!(sync_once(&config).await.0, "");
    second.store(true, Ordering::SeqCst);
    let (err, _, _) = sync_once(&config).await;
    assert!(
        err.contains("asked for ticket 1001") && err.contains("ticket 1003"),
        "{err}"
    );
    let db = rusqlite::Connection::open(&config.store.path).unwrap();
    let mut st = db
        .prepare("SELECT id FROM tickets WHERE open = 1 ORDER BY id")
        .unwrap();
    let open: Vec<i64> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(open, [1001, 1002, 1003]);
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_refused_connection_names_its_cause_and_is_not_billed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/v10/api/", closed_port());
    let (path, config) = write_config(dir.path(), &url, "");
    let (err, calls, unreached) = sync_once(&config).await;
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(!err.contains("sim-key") && !err.contains("sim-password"));
    assert_eq!(calls, 0, "nothing reached Tampuuri");
    assert_eq!(
        unreached, 3,
        "each attempt (max_attempts = 3) counted apart"
    );
    assert_eq!(metered(&config), 0);
    let (code, out, _) = run_cli(&path, &["status", "--json"]).await;
    let status: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 1, "{out}");
    assert_eq!(status[0]["calls_today"], 0);
    assert_eq!(status[0]["last_run"]["outcome"], "failed");
    assert!(
        status[0]["last_run"]["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{out}"
    );
}

#[tokio::test]
async fn a_timeout_after_sending_is_billed() {
    // Accepts and reads, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (_, mut config) = write_config(dir.path(), &base_url(addr), "timeout_secs = 1");
    config.tampuuri.retry.max_attempts = 1;
    let (err, calls, unreached) = sync_once(&config).await;
    assert!(err.contains("timed out"), "{err}");
    assert_eq!((calls, unreached), (1, 0));
    assert_eq!(metered(&config), 1);
}

/// A plain-HTTP forward proxy that answers every request itself with an empty page and
/// records the request targets it saw.
async fn fake_proxy(seen: Arc<std::sync::Mutex<Vec<String>>>) -> SocketAddr {
    serve(
        Router::new().fallback(move |uri: Uri, headers: HeaderMap| async move {
            let key = headers
                .get("x-tampuuriavain")
                .map(|v| v.to_str().unwrap().to_owned());
            seen.lock().unwrap().push(format!("{uri} {key:?}"));
            axum::Json(json!({"Total": 0, "Items": []}))
        }),
    )
    .await
}

#[tokio::test]
async fn the_standard_proxy_variables_are_honoured() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let proxy = fake_proxy(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_config(
        dir.path(),
        "http://tampuuri.invalid/v10/api/",
        "timeout_secs = 5",
    );
    let run = |no_proxy: &'static str| {
        let path = path.clone();
        async move {
            let out = tokio::process::Command::new(crate::helpers::BIN)
                .arg("--config")
                .arg(&path)
                .args(["run", "--once"])
                .env_remove("RUST_LOG")
                .env_remove("HTTPS_PROXY")
                .env_remove("https_proxy")
                .env_remove("ALL_PROXY")
                .env_remove("all_proxy")
                .env_remove("http_proxy")
                .env_remove("no_proxy")
                .env("HTTP_PROXY", format!("http://{proxy}"))
                .env("NO_PROXY", no_proxy)
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
    };
    let (code, out) = run("").await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        *seen.lock().unwrap(),
        ["http://tampuuri.invalid/v10/api/ilmoitukset/selaa Some(\"sim-key\")"]
    );
    // NO_PROXY: straight to a host that does not resolve; the cause is named.
    let (code, out) = run("tampuuri.invalid").await;
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(seen.lock().unwrap().len(), 1, "NO_PROXY bypasses the proxy");
    assert!(
        out.contains("fake-1: FAILED") && out.contains("dns"),
        "{out}"
    );
}

#[tokio::test]
async fn a_secret_http_cannot_carry_fails_its_account_only() {
    let env = Setup::tickets(3).accounts(2).start().await;
    let dir = env.dir.path();
    std::fs::write(dir.join("pw"), "XYZZY\nsecond line\n").unwrap();
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    // The second account reads its password from the file.
    let (head, tail) = text.split_at(text.find("name = \"sim-2\"").unwrap());
    let tail = tail.replacen("password = \"sim-password\"", "password_file = \"pw\"", 1);
    let path = dir.join("bad.toml");
    std::fs::write(&path, format!("{head}{tail}")).unwrap();

    let (code, out, err) = run_cli(&path, &["check-config"]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("accounts[1].password_file"), "{out}");
    assert!(!format!("{out}{err}").contains("XYZZY"));

    let (code, out, err) = run_cli(&path, &["run", "--once"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("sim-1: ok: 3 open") && out.contains("sim-2: FAILED"),
        "{out}"
    );
    assert!(out.contains("password"), "{out}");
    assert!(!format!("{out}{err}").contains("XYZZY"));
    assert_eq!(
        env.sim().calls("POST ilmoitukset/selaa"),
        1,
        "sim-2 sent nothing"
    );
}
