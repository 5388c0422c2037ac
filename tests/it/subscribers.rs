//! Outgoing events: a receiver in the test checks every delivery's signature with a verifier
//! written here from the Standard Webhooks spec (HMAC-SHA256 over "id.timestamp.body" with the
//! base64-decoded `whsec_` secret), not with the code under test.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Setup, TestEnv, wait_for};

const LIMIT: Duration = Duration::from_secs(30);

fn secret() -> String {
    format!(
        "whsec_{}",
        STANDARD.encode(b"subscriber-test-secret-32-bytes!")
    )
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    /// The signature checked out (and the timestamp is within 5 minutes, as the spec asks).
    verified: bool,
    json: bool,
    body: Value,
    /// What the receiver answered.
    status: u16,
}

#[derive(Default)]
struct Inner {
    got: Mutex<Vec<Got>>,
    /// Answer 500 to this many requests.
    fail_next: AtomicU32,
    /// Answer 500 to every request.
    fail_all: AtomicBool,
    /// Requests that arrived.
    started: AtomicU32,
    /// While closed, requests wait before being answered.
    gate: Option<tokio::sync::watch::Receiver<bool>>,
}

#[derive(Clone)]
struct Receiver {
    inner: Arc<Inner>,
    url: String,
    _gate: Option<Arc<tokio::sync::watch::Sender<bool>>>,
}

/// The Standard Webhooks verification: `webhook-signature` is a space-separated list of
/// `v1,<base64>` signatures; one must equal HMAC-SHA256(key, "{id}.{timestamp}.{body}").
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let (id, ts) = (h("webhook-id"), h("webhook-timestamp"));
    let Ok(t) = ts.parse::<i64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - t).abs() > 300 || id.is_empty() {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let want = STANDARD.encode(mac.finalize().into_bytes());
    h("webhook-signature")
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(want.as_str()))
}

async fn receive(State(r): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.started.fetch_add(1, Ordering::SeqCst);
    if let Some(gate) = &r.gate {
        let mut gate = gate.clone();
        let _ = gate.wait_for(|open| *open).await;
    }
    let fail = r.fail_all.load(Ordering::SeqCst)
        || r.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    r.got.lock().unwrap().push(Got {
        id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        verified: verify(&secret(), &headers, &body),
        json: headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/json"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status: status.as_u16(),
    });
    status
}

impl Receiver {
    async fn start(gated: bool) -> Receiver {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let inner = Arc::new(Inner {
            gate: gated.then_some(rx),
            ..Inner::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/events", axum::routing::post(receive))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            inner,
            url,
            _gate: gated.then(|| Arc::new(tx)),
        }
    }

    fn open_gate(&self) {
        self._gate.as_ref().unwrap().send_replace(true);
    }

    fn got(&self) -> Vec<Got> {
        self.inner.got.lock().unwrap().clone()
    }

    /// The bodies of the accepted deliveries, in arrival order.
    fn accepted(&self) -> Vec<Value> {
        self.got()
            .into_iter()
            .filter(|g| g.status < 300)
            .map(|g| g.body)
            .collect()
    }

    fn toml(&self, name: &str, extra: &str) -> String {
        format!(
            "[[api.subscribers]]\nname = {name:?}\nurl = {:?}\nsecret = {:?}\n{extra}\n",
            self.url,
            secret()
        )
    }
}

/// Starts the delivery tasks as the daemon does, and waits until each subscriber has its row
/// (its cursor at the end of the feed then).
async fn deliver(env: &TestEnv) -> tokio::task::JoinHandle<()> {
    let store = huoltosync::store::Handle::open(env.config.store.path.clone())
        .await
        .unwrap();
    let exchange = huoltosync::remote::Exchange::new(&env.config).unwrap();
    let task = huoltosync::faces::outgoing::spawn(&env.config, &exchange, store)
        .await
        .unwrap();
    let n = env.config.subscribers.len() as i64;
    assert!(
        wait_for(LIMIT, || rows(env).len() as i64 == n).await,
        "the subscribers got no row"
    );
    task
}

/// (name, cursor, status, attempts, last_error) of every subscriber row.
fn rows(env: &TestEnv) -> Vec<(String, i64, String, u32, Option<String>)> {
    let db = env.db();
    let Ok(mut q) = db.prepare(
        "SELECT name, cursor, status, attempts, last_error FROM subscribers ORDER BY name",
    ) else {
        return Vec::new();
    };
    q.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Waits for one pass of the subscriber's delivery task: each pass reads the subscriber's row
/// first and puts back its configured URL when the row names another (a config's new URL),
/// so a URL changed here and put back is a pass that has begun; passes run one at a time.
async fn passed(env: &TestEnv, r: &Receiver) {
    env.db()
        .execute(
            "UPDATE subscribers SET url = 'http://elsewhere.invalid/'",
            [],
        )
        .unwrap();
    let url = || {
        env.db()
            .query_row("SELECT url FROM subscribers", [], |row| {
                row.get::<_, String>(0)
            })
            .unwrap()
    };
    assert!(
        wait_for(LIMIT, || url() == r.url).await,
        "no pass of the delivery task"
    );
}

fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

fn feed_end(env: &TestEnv) -> i64 {
    env.count("SELECT coalesce(max(seq), 0) FROM feed")
}

#[tokio::test]
async fn every_feed_event_reaches_the_subscriber_once_in_order_and_signed() {
    let r = Receiver::start(false).await;
    let env = Setup::tickets(400)
        .sections(&r.toml("erp", "events = [\"*\"]"))
        .start()
        .await;
    let task = deliver(&env).await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    env.patch("sim-1", ids[0], json!({"Tila": "Valmis"}));
    env.sync_ok().await;
    let end = feed_end(&env);
    assert_eq!(end, 401);
    assert!(
        wait_for(LIMIT, || r.accepted().len() as i64 >= end).await,
        "{} of {end} events delivered",
        r.accepted().len()
    );
    let got = r.got();
    assert!(got.iter().all(|g| g.verified && g.json), "a bad signature");
    let events = r.accepted();
    assert_eq!(
        seqs(&events),
        (1..=end).collect::<Vec<_>>(),
        "once each, in order"
    );
    assert!(got.iter().all(|g| g.id == format!("evt_{}", g.body["seq"])));
    let first = &events[0];
    assert_eq!(first["type"], "ticket.new");
    assert_eq!(first["account"], "sim-1");
    assert_eq!(first["state"], "Avoin");
    assert!(
        first["ticket_id"].is_i64() && first["at"].is_string(),
        "{first}"
    );
    let last = &events[400];
    assert_eq!(last["type"], "ticket.left");
    assert_eq!(
        (&last["ticket_id"], &last["reason"]),
        (&json!(ids[0]), &json!("state"))
    );
    // The cursor follows: nothing left to send, nothing sent twice. A later event is the
    // signal that the task went on past the end: sent in order, it comes after any repeat.
    assert!(wait_for(LIMIT, || rows(&env)[0].1 == end).await);
    env.task_ok(&["accept", &ids[1].to_string()]).await;
    assert!(
        wait_for(LIMIT, || r.accepted().len() as i64 > end).await,
        "{:?}",
        rows(&env)
    );
    assert_eq!(r.got().len() as i64, end + 1);
    assert_eq!(r.accepted()[end as usize]["type"], "action.queued");
    assert_eq!(seqs(&r.accepted()), (1..=end + 1).collect::<Vec<_>>());
    task.abort();
}

#[tokio::test]
async fn a_subscriber_failing_for_a_while_gets_everything_in_order_with_the_same_id() {
    let r = Receiver::start(false).await;
    r.inner.fail_next.store(3, Ordering::SeqCst);
    let env = Setup::tickets(20)
        .sections(&r.toml("erp", ""))
        .start()
        .await;
    let task = deliver(&env).await;
    env.sync_ok().await;
    assert!(
        wait_for(LIMIT, || r.accepted().len() == 20).await,
        "{:?}",
        rows(&env)
    );
    let got = r.got();
    assert_eq!(got.len(), 23, "three refused, then each once");
    // The refused attempts were all the first event, retried under its own id.
    assert!(got[..4].iter().all(|g| g.id == "evt_1"), "{got:?}");
    assert_eq!(
        got[..4].iter().map(|g| g.status).collect::<Vec<_>>(),
        [500, 500, 500, 204]
    );
    assert_eq!(seqs(&r.accepted()), (1..=20).collect::<Vec<_>>());
    assert!(got.iter().all(|g| g.verified));
    assert!(
        wait_for(LIMIT, || rows(&env)[0]
            == ("erp".into(), 20, "active".into(), 0, None))
        .await
    );
    task.abort();
}

#[tokio::test]
async fn past_its_deadline_a_subscriber_is_dead_shown_and_revived_by_retry() {
    let r = Receiver::start(false).await;
    r.inner.fail_all.store(true, Ordering::SeqCst);
    let env = Setup::tickets(5)
        .sections(&r.toml("erp", "deadline_hours = 1"))
        .start()
        .await;
    let task = deliver(&env).await;
    env.sync_ok().await;
    assert!(wait_for(LIMIT, || rows(&env)[0].3 >= 1).await);
    // The first failure was over an hour ago: the next failure ends it.
    env.db()
        .execute(
            "UPDATE subscribers SET first_failure_at = '2020-01-01T00:00:00.000Z', next_try_at = NULL",
            [],
        )
        .unwrap();
    assert!(
        wait_for(LIMIT, || rows(&env)[0].2 == "dead").await,
        "{:?}",
        rows(&env)
    );
    let (_, cursor, _, _, error) = rows(&env).remove(0);
    assert_eq!(cursor, 0);
    assert!(error.unwrap().contains("500"));
    let tried = r.got().len();

    let (code, out, err) = env.cli(&["status", "--json"]).await;
    assert_eq!(code, 1, "a dead subscriber is a problem: {out}{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["subscribers"][0]["name"], "erp");
    assert_eq!(status["subscribers"][0]["status"], "dead");
    let (_, text, _) = env.cli(&["status"]).await;
    assert!(
        text.contains("subscriber erp") && text.contains("dead"),
        "{text}"
    );
    let (code, out, _) = env.cli(&["subscribers", "--json"]).await;
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["status"], "dead");
    assert_eq!(
        (&list[0]["cursor"], &list[0]["lag"]),
        (&json!(0), &json!(5))
    );
    assert!(list[0]["last_error"].as_str().unwrap().contains("500"));
    assert_eq!(list[0]["url"], r.url.as_str());

    // Dead: nothing more is sent, in two whole passes of its task that saw it dead.
    for _ in 0..2 {
        passed(&env, &r).await;
    }
    assert_eq!(r.got().len(), tried);

    r.inner.fail_all.store(false, Ordering::SeqCst);
    let (code, _, err) = env.cli(&["subscribers", "retry", "nobody"]).await;
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = env.cli(&["subscribers", "retry", "erp"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("from event 1"), "{out}");
    assert!(wait_for(LIMIT, || r.accepted().len() == 5).await);
    assert_eq!(seqs(&r.accepted()), [1, 2, 3, 4, 5]);
    assert!(
        wait_for(LIMIT, || rows(&env)[0].2 == "active"
            && rows(&env)[0].1 == 5)
        .await
    );
    let (code, _, _) = env.cli(&["subscribers", "retry", "erp"]).await;
    assert_eq!(code, 1, "an active subscriber has nothing to retry");
    task.abort();
}

#[tokio::test]
async fn a_subscriber_gets_only_the_types_it_asks_for_and_starts_at_the_end_of_the_feed() {
    let r = Receiver::start(false).await;
    let env = Setup::tickets(10)
        .sections(&r.toml("left-only", "events = [\"ticket.left\"]"))
        .start()
        .await;
    // Events before the subscriber first runs are not sent to it.
    env.sync_ok().await;
    let task = deliver(&env).await;
    assert_eq!(
        rows(&env)[0].1,
        10,
        "a new subscriber starts at the end of the feed"
    );
    let ids = env.open_ids("sim-1");
    env.patch("sim-1", ids[0], json!({"Otsikko": "Muuttunut"}));
    env.patch("sim-1", ids[1], json!({"Tila": "Valmis"}));
    env.sync_ok().await;
    let end = feed_end(&env);
    assert_eq!(end, 12);
    // The unwanted event moves the cursor too.
    assert!(
        wait_for(LIMIT, || rows(&env)[0].1 == end).await,
        "{:?}",
        rows(&env)
    );
    let events = r.accepted();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ticket.left");
    assert_eq!(events[0]["ticket_id"], ids[1]);
    task.abort();
}

#[tokio::test]
async fn a_subscriber_that_hangs_does_not_hold_up_a_sync() {
    let r = Receiver::start(true).await;
    let env = Setup::tickets(30)
        .sections(&r.toml("slow", ""))
        .start()
        .await;
    let task = deliver(&env).await;
    env.sync_ok().await;
    assert!(wait_for(LIMIT, || r.inner.started.load(Ordering::SeqCst) >= 1).await);
    // The subscriber holds its first request; a sync still runs to its end.
    let ids = env.open_ids("sim-1");
    env.patch("sim-1", ids[0], json!({"Tila": "Valmis"}));
    tokio::time::timeout(LIMIT, env.sync_ok())
        .await
        .expect("the sync finished while the subscriber hung");
    assert_eq!(env.open_ids("sim-1").len(), 29);
    assert!(r.got().is_empty(), "nothing was answered yet");
    r.open_gate();
    assert!(wait_for(LIMIT, || r.accepted().len() == 31).await);
    let s = seqs(&r.accepted());
    // The held request may have timed out and been sent again: at least once, in order.
    let mut uniq = s.clone();
    uniq.dedup();
    assert_eq!(uniq, (1..=31).collect::<Vec<_>>());
    task.abort();
}

#[tokio::test]
async fn the_daemon_delivers_what_its_polls_and_the_cli_change() {
    let r = Receiver::start(false).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Setup::tickets(8)
        .sections(&format!(
            "[schedule]\npoll = \"0 0 0 1 1 *\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n{}",
            r.toml("erp", "")
        ))
        .start()
        .await;
    // The daemon serves the subscriber from its start: the first poll's events reach it.
    let daemon = env.daemon(&[]).await;
    assert!(
        wait_for(LIMIT, || r.accepted().len() == 8).await,
        "{}",
        daemon.log()
    );
    // A change committed by another process (the CLI) reaches it too.
    let id = env.open_ids("sim-1")[0].to_string();
    env.task_ok(&["accept", &id]).await;
    assert!(
        wait_for(LIMIT, || r.accepted().len() >= 9).await,
        "{}",
        daemon.log()
    );
    let events = r.accepted();
    assert_eq!(events[8]["type"], "action.queued");
    assert_eq!(seqs(&events[..9]), (1..=9).collect::<Vec<_>>());
    assert!(r.got().iter().all(|g| g.verified));
    let url = format!("http://127.0.0.1:{port}/metrics");
    let metrics = [
        "huoltosync_subscriber_dead{subscriber=\"erp\"} 0",
        "huoltosync_subscriber_events_delivered_total{subscriber=\"erp\"} 9",
    ];
    let mut body = String::new();
    for _ in 0..100 {
        body = match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if metrics.iter().all(|m| body.contains(m)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for m in metrics {
        assert!(body.contains(m), "{m} missing from:\n{body}");
    }
    let (code, _) = daemon.stop(LIMIT).await;
    assert_eq!(code, 0);
}

#[tokio::test]
async fn a_redirect_is_not_followed_but_counted_as_a_failure() {
    let elsewhere = Receiver::start(false).await;
    let target = elsewhere.url.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/moved", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/moved",
        axum::routing::post(move || async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, target)],
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let env = Setup::tickets(3)
        .sections(&format!(
            "[[api.subscribers]]\nname = \"moved\"\nurl = {url:?}\nsecret = {:?}\n",
            secret()
        ))
        .start()
        .await;
    let task = deliver(&env).await;
    env.sync_ok().await;
    assert!(wait_for(LIMIT, || rows(&env)[0].3 >= 1).await);
    let (_, cursor, status, _, error) = rows(&env).remove(0);
    assert_eq!((cursor, status.as_str()), (0, "active"));
    assert!(error.unwrap().contains("307"));
    assert!(elsewhere.got().is_empty(), "the redirect was followed");
    task.abort();
}
