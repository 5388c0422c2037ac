//! The runtime of `huoltosync run` under real signals: a SIGHUP reaches every part (the API's
//! tokens, the board's users, the subscribers; a broken config keeps the running one; a moved
//! listening address is logged as needing a restart), and a SIGTERM drains the listeners (a long
//! poll in flight is answered with what it has, a board's event stream ends) before the daemon
//! exits 0.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Daemon, Setup, TestEnv, wait_for};

const NEVER: &str = "[schedule]\npoll = \"0 0 0 1 1 *\"\n[service]\nshutdown_grace_secs = 10\n";
const FIRST: &str = "first-token-0123456789";
const SECOND: &str = "second-token-0123456789";
const LIMIT: Duration = Duration::from_secs(10);

/// A loopback port nobody listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `[api]` on `port` with one read token; `extra` goes after it (`[board]`, subscribers).
fn api(port: u16, token: &str, extra: &str) -> String {
    format!(
        "{NEVER}[api]\nlisten = \"127.0.0.1:{port}\"\n[[api.tokens]]\nname = \"erp\"\ntoken = \"{token}\"\nscope = \"read\"\n{extra}"
    )
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The status code of `GET /api/v1/status` with `token` (0: no answer).
async fn status(port: u16, token: &str) -> u16 {
    http()
        .get(format!("http://127.0.0.1:{port}/api/v1/status"))
        .bearer_auth(token)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Replaces `from` with `to` in the config file and sends SIGHUP.
fn reload(env: &TestEnv, daemon: &Daemon, from: &str, to: &str) {
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(text.contains(from), "{from:?} is in the config");
    std::fs::write(env.config_path(), text.replace(from, to)).unwrap();
    daemon.signal("HUP");
}

/// Waits until the daemon answers `token` with 200.
async fn serving(port: u16, token: &str) -> bool {
    for _ in 0..200 {
        if status(port, token).await == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Lines of the daemon's log containing `what`, once there are `n`.
async fn logged(daemon: &Daemon, what: &str, n: usize) -> bool {
    wait_for(LIMIT, || daemon.log().matches(what).count() >= n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_replaces_an_api_token_keeps_it_on_a_broken_config_and_logs_a_moved_listener() {
    let port = free_port();
    let env = Setup::tickets(2)
        .sections(&api(port, FIRST, ""))
        .start()
        .await;
    env.sync_ok().await;
    let daemon = env.daemon(&[]).await;
    assert!(serving(port, FIRST).await, "{}", daemon.log());
    assert_eq!(status(port, SECOND).await, 401);

    reload(&env, &daemon, FIRST, SECOND);
    assert!(serving(port, SECOND).await, "{}", daemon.log());
    assert_eq!(
        status(port, FIRST).await,
        401,
        "the replaced token is refused"
    );

    // A broken config: refused as a whole, naming the key; the running tokens stay.
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        text.replace(SECOND, FIRST)
            .replace("contractor_id = 4711", "contractor_id = \"x\""),
    )
    .unwrap();
    daemon.signal("HUP");
    assert!(
        logged(
            &daemon,
            "Config reload failed; keeping the running config.",
            1
        )
        .await
    );
    assert_eq!(status(port, SECOND).await, 200, "the running config stays");
    assert_eq!(status(port, FIRST).await, 401);

    // A new listening address needs a restart: said, naming the key; the old one serves on.
    std::fs::write(
        env.config_path(),
        text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:1"),
    )
    .unwrap();
    daemon.signal("HUP");
    assert!(
        logged(&daemon, "Config reloaded.", 2).await,
        "{}",
        daemon.log()
    );
    assert_eq!(status(port, SECOND).await, 200);
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("api.listen") && l.contains("restart")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("Config reload failed") && l.contains("contractor_id")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_user_added_by_a_reload_can_sign_in() {
    let port = free_port();
    let kaisa = huoltosync::faces::board::hash_password("Salasana-kaisa-1").unwrap();
    let pekka = huoltosync::faces::board::hash_password("Salasana-pekka-1").unwrap();
    let users = format!(
        "[board]\nenabled = true\ninsecure_cookies = true\n[[board.users]]\nname = \"kaisa\"\npassword_hash = \"{kaisa}\"\nrole = \"dispatcher\"\n"
    );
    let env = Setup::tickets(2)
        .sections(&api(port, FIRST, &users))
        .start()
        .await;
    env.sync_ok().await;
    let daemon = env.daemon(&[]).await;
    assert!(serving(port, FIRST).await, "{}", daemon.log());
    let sign_in = |user: &'static str, password: &'static str| async move {
        http()
            .post(format!("http://127.0.0.1:{port}/login"))
            .header("origin", format!("http://127.0.0.1:{port}"))
            .form(&[("username", user), ("password", password)])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(sign_in("kaisa", "Salasana-kaisa-1").await, 303);
    assert_ne!(sign_in("pekka", "Salasana-pekka-1").await, 303);
    let added = format!(
        "{users}[[board.users]]\nname = \"pekka\"\npassword_hash = \"{pekka}\"\nrole = \"viewer\"\n"
    );
    reload(&env, &daemon, &users, &added);
    assert!(
        logged(&daemon, "Config reloaded.", 1).await,
        "{}",
        daemon.log()
    );
    assert_eq!(
        sign_in("pekka", "Salasana-pekka-1").await,
        303,
        "{}",
        daemon.log()
    );
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{log}");
}

/// A subscriber's endpoint on loopback: the bodies it was sent.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_added_by_a_reload_gets_the_events_after_it() {
    let port = free_port();
    let marker = "# subscribers\n";
    let env = Setup::tickets(2)
        .sections(&api(port, FIRST, marker))
        .start()
        .await;
    env.sync_ok().await;
    let daemon = env.daemon(&[]).await;
    assert!(serving(port, FIRST).await, "{}", daemon.log());
    let (url, got) = receiver().await;
    let secret = format!(
        "whsec_{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 24])
    );
    reload(
        &env,
        &daemon,
        marker,
        &format!("[[api.subscribers]]\nname = \"erp\"\nurl = {url:?}\nsecret = {secret:?}\n"),
    );
    assert!(
        logged(&daemon, "Subscriber added by the reload.", 1).await,
        "{}",
        daemon.log()
    );
    let id = env.open_ids("sim-1")[0];
    env.task_ok(&["accept", &id.to_string()]).await;
    assert!(
        wait_for(LIMIT, || got
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "action.queued" && e["ticket_id"] == id))
        .await,
        "the new subscriber got the event: {:?} {}",
        got.lock().unwrap(),
        daemon.log()
    );
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_in_flight_at_sigterm_is_answered_with_the_feed_and_the_daemon_exits_0() {
    let port = free_port();
    let env = Setup::tickets(2)
        .sections(&api(port, FIRST, ""))
        .start()
        .await;
    env.sync_ok().await;
    // Debug: the daemon says when a long poll waits.
    let daemon = env.daemon(&["--log-level", "debug"]).await;
    assert!(serving(port, FIRST).await, "{}", daemon.log());
    let base = format!("http://127.0.0.1:{port}/api/v1/changes");
    let head: Value = http()
        .get(format!("{base}?after=0&limit=1000"))
        .bearer_auth(FIRST)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after = head["next_after"].as_i64().unwrap();
    let poll = tokio::spawn(
        http()
            .get(format!("{base}?after={after}&wait=30"))
            .bearer_auth(FIRST)
            .send(),
    );
    assert!(
        logged(&daemon, "A long poll waits for the feed.", 1).await,
        "{}",
        daemon.log()
    );
    let started = std::time::Instant::now();
    let pid = daemon.pid();
    let stopped = tokio::spawn(daemon.stop(Duration::from_secs(15)));
    let answer = poll
        .await
        .unwrap()
        .expect("the long poll is answered, not cut");
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["events"], serde_json::json!([]), "{body}");
    assert_eq!(body["next_after"], after);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered at the stop, not at the end of its wait"
    );
    let (code, log) = stopped.await.unwrap();
    assert_eq!(code, 0, "pid {pid}: {log}");
    assert!(log.contains("The listeners drained."), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boards_event_stream_ends_at_sigterm_and_the_daemon_exits_0() {
    let port = free_port();
    let kaisa = huoltosync::faces::board::hash_password("Salasana-kaisa-1").unwrap();
    let board = format!(
        "[board]\nenabled = true\ninsecure_cookies = true\n[[board.users]]\nname = \"kaisa\"\npassword_hash = \"{kaisa}\"\nrole = \"dispatcher\"\n"
    );
    let env = Setup::tickets(2)
        .sections(&api(port, FIRST, &board))
        .start()
        .await;
    env.sync_ok().await;
    let daemon = env.daemon(&[]).await;
    assert!(serving(port, FIRST).await, "{}", daemon.log());
    let browser = reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = browser
        .post(format!("http://127.0.0.1:{port}/login"))
        .header("origin", format!("http://127.0.0.1:{port}"))
        .form(&[("username", "kaisa"), ("password", "Salasana-kaisa-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // The stream is open once its head arrived; its body ends only with the stream.
    let mut stream = browser
        .get(format!("http://127.0.0.1:{port}/events?after=1000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let stopped = tokio::spawn(daemon.stop(Duration::from_secs(15)));
    let ended = tokio::time::timeout(LIMIT, async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the stream ends cleanly at the stop");
    let (code, log) = stopped.await.unwrap();
    assert_eq!(code, 0, "{log}");
}
