//! Webhooks: authenticated deliveries recorded before they are answered, one fetch per ticket,
//! none for other contractors' tickets, nothing recorded from a bad delivery, and
//! reconciliation catching what a lost delivery missed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Setup, TestEnv, wait_for};

const SECRET: &str = "whsecret-test";

fn webhook_toml(extra: &str) -> String {
    format!(
        "[schedule]\npoll = \"0 0 0 1 1 *\"\n[webhook]\nlisten = \"127.0.0.1:9\"\nhmac_secret = \"{SECRET}\"\nreconcile = \"0 0 0 1 1 *\"\n{extra}\n"
    )
}

/// A listener served in this process on a free port; answers its URL.
async fn listener(env: &TestEnv) -> String {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let cfg = env.config.webhook.clone().expect("[webhook] configured");
    let store = huoltosync::store::Handle::open(env.config.store.path.clone())
        .await
        .unwrap();
    let path = cfg.path.clone();
    tokio::spawn(huoltosync::faces::webhook::serve(
        tcp,
        cfg,
        store,
        Arc::new(tokio::sync::Notify::new()),
        std::future::pending(),
    ));
    format!("http://{addr}{path}")
}

fn note(action: &str, id: i64, assignee: i64, state: &str, stamp: &str) -> Value {
    json!({
        "Action": action, "Account": "sim-1", "ReferenceId": id, "ReferenceSecondaryId": null, "ReferenceData": null,
        "ReferenceJson": json!({"TyonsuorittajaId": assignee, "Tila": state}).to_string(), "Timestamp": stamp,
    })
}

async fn post(url: &str, body: &str, digest: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(d) = digest {
        req = req.header("X-Huoltosync-Digest", d);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn signed(url: &str, notes: Vec<Value>) -> u16 {
    let body = json!({ "Notifications": notes, "Attempts": 1 }).to_string();
    post(
        url,
        &body,
        Some(&huoltosync::faces::webhook::sign(
            SECRET.as_bytes(),
            body.as_bytes(),
        )),
    )
    .await
}

/// One processing pass at `now`.
async fn process_at(
    env: &TestEnv,
    now: chrono::DateTime<chrono::Utc>,
) -> huoltosync::engine::webhook::Processed {
    let api = huoltosync::tampuuri::Api::new(&env.config).unwrap();
    let store = huoltosync::store::Handle::open(env.config.store.path.clone())
        .await
        .unwrap();
    huoltosync::engine::webhook::process_pending(&env.config, &api, &store, now)
        .await
        .unwrap()
}

/// One processing pass once every burst so far has settled.
async fn process(env: &TestEnv) -> huoltosync::engine::webhook::Processed {
    process_at(env, chrono::Utc::now() + chrono::Duration::hours(1)).await
}

fn events(env: &TestEnv) -> i64 {
    env.count("SELECT count(*) FROM webhook_events")
}

#[tokio::test]
async fn a_signed_batch_mirrors_the_new_ticket_with_one_get_and_a_redelivery_costs_nothing() {
    let env = Setup::tickets(3).sections(&webhook_toml("")).start().await;
    env.sync_ok().await;
    let url = listener(&env).await;
    let id = env
        .sim()
        .insert(
            "sim-1",
            json!({"Otsikko": "Vesivuoto"}).as_object().unwrap(),
        )
        .unwrap();
    let batch = vec![note(
        "IlmoitusUusi",
        id,
        4711,
        "Avoin",
        "2026-11-25T10:00:00+02:00",
    )];
    assert_eq!(signed(&url, batch.clone()).await, 200);
    let p = process(&env).await;
    assert_eq!(p.fetched, 1);
    assert_eq!(env.get_calls(), 1);
    assert!(env.open_ids("sim-1").contains(&id));
    // Tampuuri tries a batch up to 5 times: the same notifications again change nothing.
    assert_eq!(signed(&url, batch).await, 200);
    let p = process(&env).await;
    assert_eq!((p.fetched, env.get_calls(), events(&env)), (0, 1, 1));
}

#[tokio::test]
async fn a_burst_of_fifty_events_for_five_tickets_costs_five_gets() {
    let env = Setup::tickets(5).sections(&webhook_toml("")).start().await;
    env.sync_ok().await;
    let url = listener(&env).await;
    let ids = env.open_ids("sim-1");
    for round in 0..10 {
        let notes = ids
            .iter()
            .map(|id| {
                note(
                    "IlmoitusTilamuutos",
                    *id,
                    4711,
                    "Avoin",
                    &format!("2026-11-25T10:00:{round:02}+02:00"),
                )
            })
            .collect();
        assert_eq!(signed(&url, notes).await, 200);
    }
    assert_eq!(events(&env), 50);
    let p = process(&env).await;
    assert_eq!((p.fetched, env.get_calls()), (5, 5));
    assert_eq!(
        env.count("SELECT count(*) FROM webhook_events WHERE status = 'fetched'"),
        50
    );
}

#[tokio::test]
async fn another_contractors_new_ticket_is_not_fetched() {
    let env = Setup::tickets(2).sections(&webhook_toml("")).start().await;
    let url = listener(&env).await;
    let theirs = env
        .sim()
        .insert(
            "sim-1",
            json!({"TyonsuorittajaId": 5020}).as_object().unwrap(),
        )
        .unwrap();
    assert_eq!(
        signed(
            &url,
            vec![note("IlmoitusUusi", theirs, 5020, "Avoin", "t1")]
        )
        .await,
        200
    );
    // Other kinds of events, and unknown accounts, are recorded and ignored.
    let mut other = note("LaskuUusi", 1, 4711, "Avoin", "t2");
    other["Action"] = json!("LaskuUusi");
    let mut stranger = note("IlmoitusUusi", 7, 4711, "Avoin", "t3");
    stranger["Account"] = json!("jonkun-muun-tili");
    assert_eq!(signed(&url, vec![other, stranger]).await, 200);
    let p = process(&env).await;
    assert_eq!((p.fetched, p.skipped, p.ignored), (0, 1, 2));
    assert_eq!(
        env.get_calls(),
        0,
        "no billed call for tickets that are not ours"
    );
    let (_, out, _) = env.cli(&["status", "--json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            v["webhooks"]["events_irrelevant"].as_u64(),
            v["webhooks"]["events_ignored"].as_u64()
        ),
        (Some(1), Some(2))
    );
}

#[tokio::test]
async fn bad_deliveries_get_the_right_status_and_nothing_is_recorded() {
    let env = Setup::tickets(1)
        .sections(&webhook_toml("max_body_bytes = 2048"))
        .start()
        .await;
    let url = listener(&env).await;
    let good =
        json!({ "Notifications": [note("IlmoitusUusi", 1001, 4711, "Avoin", "t")] }).to_string();
    let sign = |b: &str| huoltosync::faces::webhook::sign(SECRET.as_bytes(), b.as_bytes());
    assert_eq!(
        post(
            &url,
            &good,
            Some(&huoltosync::faces::webhook::sign(b"wrong", good.as_bytes()))
        )
        .await,
        401,
        "wrong signature"
    );
    assert_eq!(post(&url, &good, None).await, 401, "missing signature");
    let big = json!({ "Notifications": [], "x": "a".repeat(4096) }).to_string();
    assert_eq!(
        post(&url, &big, Some(&sign(&big))).await,
        413,
        "oversized body"
    );
    assert_eq!(
        post(&url, "{not json", Some(&sign("{not json"))).await,
        400,
        "garbage body"
    );
    assert_eq!(
        post(&url, "{\"Muuta\": []}", Some(&sign("{\"Muuta\": []}"))).await,
        400,
        "no Notifications"
    );
    assert_eq!(
        post(
            &url,
            "{\"Notifications\": []}",
            Some(&sign("{\"Notifications\": []}"))
        )
        .await,
        200,
        "empty is fine"
    );
    assert_eq!(events(&env), 0, "nothing recorded");
    assert_eq!(process(&env).await.fetched, 0);
    assert_eq!(env.sim().total_calls(), 0, "nothing fetched");
    let (_, out, _) = env.cli(&["status", "--json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["webhooks"].get("deliveries_rejected").is_none(),
        "rejections are a metric of the running daemon, not store figures: {out}"
    );
}

/// Size and a hash of the bytes of the store's files: any write shows, however soon after
/// the last one it comes (a modification time may not move within its granularity).
fn store_files(env: &TestEnv) -> Vec<Option<(u64, u64)>> {
    use std::hash::{Hash, Hasher};
    ["db", "db-wal"]
        .iter()
        .map(|ext| {
            let bytes = std::fs::read(env.config.store.path.with_extension(ext)).ok()?;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            Some((bytes.len() as u64, h.finish()))
        })
        .collect()
}

#[tokio::test]
async fn rejected_deliveries_write_nothing_to_the_store() {
    let env = Setup::tickets(1).sections(&webhook_toml("")).start().await;
    env.sync_ok().await;
    let url = listener(&env).await;
    let body = json!({ "Notifications": [] }).to_string();
    let before = store_files(&env);
    for _ in 0..30 {
        assert_eq!(post(&url, &body, Some("sha256=00")).await, 401);
        assert_eq!(post(&url, &body, None).await, 401);
    }
    assert_eq!(store_files(&env), before);
}

#[tokio::test]
async fn path_token_and_basic_credentials_are_checked_before_the_body() {
    let toml = "[webhook]\nlisten = \"127.0.0.1:9\"\npath_token = \"t0k3n\"\nbasic_username = \"tampuuri\"\nbasic_password = \"b4sic\"\n";
    let env = Setup::tickets(1).sections(toml).start().await;
    let url = listener(&env).await;
    let client = reqwest::Client::new();
    let body =
        json!({ "Notifications": [note("IlmoitusUusi", 1001, 4711, "Avoin", "t")] }).to_string();
    let send = |path: String, auth: Option<(&'static str, &'static str)>| {
        let mut r = client.post(path).body(body.clone());
        if let Some((u, p)) = auth {
            r = r.basic_auth(u, Some(p));
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        send(url.clone(), Some(("tampuuri", "b4sic"))).await,
        401,
        "token missing"
    );
    assert_eq!(
        send(format!("{url}/wrong"), Some(("tampuuri", "b4sic"))).await,
        401,
        "wrong token"
    );
    assert_eq!(
        send(format!("{url}/t0k3n"), None).await,
        401,
        "no Basic credentials"
    );
    assert_eq!(
        send(format!("{url}/t0k3n"), Some(("tampuuri", "wrong"))).await,
        401,
        "wrong password"
    );
    assert_eq!(events(&env), 0);
    assert_eq!(
        send(format!("{url}/t0k3n"), Some(("tampuuri", "b4sic"))).await,
        200
    );
    assert_eq!(events(&env), 1);
}

#[test]
fn a_listener_without_authentication_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[tampuuri]\nbase_url = \"http://127.0.0.1:1/\"\napi_key = \"k\"\ncustomer_name = \"C\"\n[webhook]\nlisten = \"127.0.0.1:8787\"\n\
         [[accounts]]\nname = \"a\"\nusername = \"u\"\npassword = \"p\"\ncontractor_id = 1\n",
    )
    .unwrap();
    let err = huoltosync::config::Config::load(&path).unwrap_err();
    assert!(
        err.errors
            .iter()
            .any(|i| i.key == "webhook" && i.message.contains("at least one")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_recorded_before_a_kill_is_processed_after_the_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = webhook_toml("").replace("127.0.0.1:9", &format!("127.0.0.1:{port}"));
    let env = Setup::tickets(2).sections(&toml).start().await;
    env.sync_ok().await;
    let url = format!("http://127.0.0.1:{port}/tampuuri/webhook");
    let mut daemon = env.daemon(&[]).await;
    assert!(
        wait_for(Duration::from_secs(5), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok())
        .await
    );
    let id = env
        .sim()
        .insert(
            "sim-1",
            json!({"Otsikko": "Ovi jumissa"}).as_object().unwrap(),
        )
        .unwrap();
    assert_eq!(
        signed(&url, vec![note("IlmoitusUusi", id, 4711, "Avoin", "t")]).await,
        200
    );
    daemon.child.start_kill().unwrap(); // SIGKILL, inside the burst-settling pause
    daemon.child.wait().await.unwrap();
    assert_eq!(
        env.count("SELECT count(*) FROM webhook_events WHERE status = 'pending'"),
        1,
        "recorded, not yet processed"
    );
    assert!(!env.open_ids("sim-1").contains(&id));
    let daemon = env.daemon(&[]).await;
    assert!(
        wait_for(Duration::from_secs(8), || env
            .open_ids("sim-1")
            .contains(&id))
        .await,
        "processed after the restart"
    );
    daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(env.get_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_fifth_of_deliveries_lost_one_reconciliation_sweep_restores_the_mirror() {
    let env = Setup::tickets(5).sections(&webhook_toml("")).start().await;
    env.sync_ok().await;
    let url = listener(&env).await;
    // The simulator now delivers to our listener, and loses 20 % of the deliveries.
    env.sim().set_webhook(Some(huoltosync::sim::WebhookTarget {
        url: url.clone(),
        secret: Some(SECRET.into()),
        header: "X-Huoltosync-Digest".into(),
        basic: None,
        drop_rate: 0.2,
    }));
    for i in 0..40 {
        env.sim()
            .insert(
                "sim-1",
                json!({"Otsikko": format!("Vika {i}")}).as_object().unwrap(),
            )
            .unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(10), || {
            let (d, x) = env.sim().webhook_counts();
            d + x == 40
        })
        .await
    );
    let (made, lost) = env.sim().webhook_counts();
    assert!(
        lost > 0 && made > 0,
        "some lost ({lost}), some made ({made})"
    );
    process(&env).await;
    assert_eq!(env.open_ids("sim-1").len() as u64, 5 + made);
    let r = env.sync_ok().await;
    assert_eq!(
        env.open_ids("sim-1"),
        env.truth("sim-1"),
        "the sweep caught what the lost deliveries missed"
    );
    assert_eq!(r[0].counts.new, lost);
    let (_, out, _) = env.cli(&["status"]).await;
    assert!(
        out.contains(&format!("last reconciliation found {lost} ticket(s)")),
        "{out}"
    );
}

#[tokio::test]
async fn a_flood_of_deliveries_for_the_same_tickets_costs_one_get_per_ticket() {
    // A long quiet period, so that no pass of the flood below can find a ticket settled.
    let env = Setup::tickets(5)
        .sections(&webhook_toml(
            "debounce_ms = 60000\ndebounce_max_ms = 600000",
        ))
        .start()
        .await;
    env.sync_ok().await;
    let gets = env.get_calls();
    let url = listener(&env).await;
    let ids = env.open_ids("sim-1");
    // Ten deliveries for the same five tickets, a processing pass after each.
    for round in 0..10u64 {
        let notes = ids
            .iter()
            .map(|id| {
                note(
                    "IlmoitusTilamuutos",
                    *id,
                    4711,
                    "Avoin",
                    &format!("2026-11-25T10:00:{round:02}+02:00"),
                )
            })
            .collect();
        assert_eq!(signed(&url, notes).await, 200);
        let p = process_at(&env, chrono::Utc::now()).await;
        assert_eq!(
            (p.fetched, p.deferred),
            (0, 5 * (round + 1)),
            "round {round}"
        );
        assert!(p.next_due.is_some_and(|d| d > chrono::Utc::now()));
    }
    assert_eq!(
        env.get_calls(),
        gets,
        "nothing fetched while deliveries kept coming"
    );
    // Once the deliveries have settled: one GET per ticket.
    let p = process_at(&env, chrono::Utc::now() + chrono::Duration::minutes(2)).await;
    assert_eq!((p.fetched, p.deferred, p.next_due), (5, 0, None));
    assert_eq!(env.get_calls() - gets, 5);
    assert_eq!(
        env.count("SELECT count(*) FROM webhook_events WHERE status = 'fetched'"),
        50
    );
}

#[tokio::test]
async fn the_basic_scheme_name_is_case_insensitive() {
    let toml = "[webhook]\nlisten = \"127.0.0.1:9\"\nbasic_username = \"tampuuri\"\nbasic_password = \"b4sic\"\n";
    let env = Setup::tickets(1).sections(toml).start().await;
    let url = listener(&env).await;
    let token = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("tampuuri:b4sic")
    };
    for (i, scheme) in ["basic", "BASIC", "Basic"].into_iter().enumerate() {
        let body =
            json!({ "Notifications": [note("IlmoitusUusi", 1001 + i as i64, 4711, "Avoin", "t")] })
                .to_string();
        let status = reqwest::Client::new()
            .post(&url)
            .header("authorization", format!("{scheme} {token}"))
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 200, "{scheme}");
    }
    assert_eq!(events(&env), 3);
}

/// `host:port` of a listener URL.
fn authority(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// Connects and sends the start of a request head, never its end.
async fn idle_connection(addr: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /tampuuri/webhook HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    s
}

/// Reads until the peer closes; answers what was read.
async fn read_to_close(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all).await;
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test]
async fn a_connection_that_never_completes_its_head_is_closed_after_ten_seconds() {
    let env = Setup::tickets(1).sections(&webhook_toml("")).start().await;
    let url = listener(&env).await;
    let mut idle = idle_connection(&authority(&url)).await;
    // Paused time: the timers run on the test's clock, which jumps whenever all is idle.
    tokio::time::pause();
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(120), read_to_close(&mut idle))
        .await
        .expect("closed by the listener");
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(11)).contains(&waited),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn a_body_that_never_arrives_is_answered_408() {
    use tokio::io::AsyncWriteExt;
    let env = Setup::tickets(1).sections(&webhook_toml("")).start().await;
    let url = listener(&env).await;
    let mut slow = tokio::net::TcpStream::connect(authority(&url))
        .await
        .unwrap();
    slow.write_all(
        b"POST /tampuuri/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Notif",
    )
    .await
    .unwrap();
    tokio::time::pause();
    let started = tokio::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(120), read_to_close(&mut slow))
        .await
        .expect("answered and closed by the listener");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(15));
    assert_eq!(events(&env), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_oldest_idle_connections_make_room_for_a_delivery() {
    let env = Setup::tickets(1)
        .sections(&webhook_toml("max_connections = 8"))
        .start()
        .await;
    let url = listener(&env).await;
    let started = std::time::Instant::now();
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(idle_connection(&authority(&url)).await);
    }
    assert_eq!(
        signed(&url, vec![note("IlmoitusUusi", 1001, 4711, "Avoin", "t")]).await,
        200
    );
    assert_eq!(events(&env), 1);
    // 41 connections, 8 at most open: the 33 oldest (idle) ones were closed for newer ones.
    // Closed: the read end says so (end of stream or reset) instead of "nothing yet".
    let closed = |s: &tokio::net::TcpStream| {
        let mut buf = [0u8; 64];
        !matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    };
    assert!(
        wait_for(Duration::from_secs(5), || idle[..33].iter().all(closed)).await,
        "the oldest idle connections were closed"
    );
    // The newest stay open until their own header timeout (10 s), if this ran fast enough to see.
    if started.elapsed() < Duration::from_secs(9) {
        assert!(
            idle[33..].iter().all(|s| !closed(s)),
            "only as many connections were closed as needed"
        );
    }
}

#[tokio::test]
async fn a_path_the_router_cannot_take_is_an_error_not_a_panic() {
    let env = Setup::tickets(1).sections(&webhook_toml("")).start().await;
    let store = huoltosync::store::Handle::open(env.config.store.path.clone())
        .await
        .unwrap();
    for bad in ["", "/a/{x}", "/a/*rest"] {
        let mut cfg = env.config.webhook.clone().unwrap();
        cfg.path = bad.into();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = tokio::spawn(huoltosync::faces::webhook::serve(
            tcp,
            cfg,
            store.clone(),
            Arc::new(tokio::sync::Notify::new()),
            std::future::pending(),
        ))
        .await
        .expect("no panic");
        let e = r.expect_err("an invalid path is refused");
        assert!(e.to_string().contains("webhook.path"), "{bad:?}: {e}");
    }
}

#[tokio::test]
async fn a_broken_listening_socket_ends_the_listener_with_an_error() {
    use std::os::fd::AsRawFd;
    let env = Setup::tickets(1).sections(&webhook_toml("")).start().await;
    let store = huoltosync::store::Handle::open(env.config.store.path.clone())
        .await
        .unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let fd = std_listener.as_raw_fd();
    let tcp = tokio::net::TcpListener::from_std(std_listener).unwrap();
    let task = tokio::spawn(huoltosync::faces::webhook::serve(
        tcp,
        env.config.webhook.clone().unwrap(),
        store,
        Arc::new(tokio::sync::Notify::new()),
        std::future::pending(),
    ));
    tokio::task::yield_now().await;
    // Shutting a listening socket down makes accept() fail with EINVAL from then on.
    assert_eq!(unsafe { libc::shutdown(fd, libc::SHUT_RDWR) }, 0);
    let r = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the listener ends instead of retrying forever")
        .expect("no panic");
    let e = r.expect_err("an error");
    assert!(e.to_string().contains("listening socket failed"), "{e}");
}

/// The daemon as a child process with at most `nofile` open files.
fn daemon_with_nofile(env: &TestEnv, nofile: u64) -> crate::helpers::Daemon {
    let log = env.dir.path().join(format!("daemon-nofile-{nofile}.log"));
    let mut cmd = tokio::process::Command::new(crate::helpers::BIN);
    cmd.arg("--config")
        .arg(env.config_path())
        .arg("run")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    crate::helpers::Daemon {
        child: cmd.spawn().unwrap(),
        log,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn listening(port: u16) -> bool {
    wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_idle_connections_beyond_its_file_limit_the_daemon_still_serves_and_pushes() {
    let port = free_port();
    let toml = webhook_toml("max_connections = 32\n[service]\npush_check_ms = 200")
        .replace("127.0.0.1:9", &format!("127.0.0.1:{port}"));
    let env = Setup::tickets(3).sections(&toml).start().await;
    env.sync_ok().await;
    let mut daemon = daemon_with_nofile(&env, 128);
    assert!(listening(port).await);
    let addr = format!("127.0.0.1:{port}");
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(idle_connection(&addr).await);
    }
    let ticket = env.open_ids("sim-1")[0];
    env.task_ok(&["accept", &ticket.to_string()]).await;
    let url = format!("http://{addr}/tampuuri/webhook");
    let answered = tokio::time::timeout(
        Duration::from_secs(60),
        signed(
            &url,
            vec![note("IlmoitusTilamuutos", ticket, 4711, "Avoin", "t")],
        ),
    )
    .await;
    assert_eq!(answered, Ok(200), "{}", daemon.log());
    assert!(
        wait_for(Duration::from_secs(30), || env.applied().len() == 1).await,
        "the queued action was pushed: {}",
        daemon.log()
    );
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "{}",
        daemon.log()
    );
    drop(idle);
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_daemon_skips_work_and_carries_on() {
    let port = free_port();
    // A cap above the file limit: the idle connections take every descriptor.
    let toml = webhook_toml("max_connections = 1000\n[service]\npush_check_ms = 200")
        .replace("127.0.0.1:9", &format!("127.0.0.1:{port}"));
    let env = Setup::tickets(3).sections(&toml).start().await;
    env.sync_ok().await;
    let mut daemon = daemon_with_nofile(&env, 128);
    assert!(listening(port).await);
    let addr = format!("127.0.0.1:{port}");
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(idle_connection(&addr).await);
    }
    assert!(
        wait_for(Duration::from_secs(10), || daemon.log().contains(
            "Cannot accept a webhook connection; pausing the listener."
        ))
        .await,
        "{}",
        daemon.log()
    );
    let ticket = env.open_ids("sim-1")[0];
    env.task_ok(&["accept", &ticket.to_string()]).await;
    assert!(
        wait_for(Duration::from_secs(8), || daemon
            .log()
            .contains("this work is skipped and tried again later"))
        .await,
        "{}",
        daemon.log()
    );
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "{}",
        daemon.log()
    );
    drop(idle);
    assert!(
        wait_for(Duration::from_secs(30), || env.applied().len() == 1).await,
        "the action went out once descriptors were free again: {}",
        daemon.log()
    );
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{log}");
}

/// Peak and current resident memory of a process, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (kb("VmHWM:"), kb("VmRSS:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_bodies_cannot_take_the_daemons_memory() {
    use tokio::io::AsyncWriteExt;
    let port = free_port();
    // HMAC only: a body must be read before it can be refused.
    let toml = webhook_toml("max_body_bytes = 1048576")
        .replace("127.0.0.1:9", &format!("127.0.0.1:{port}"));
    let env = Setup::tickets(1).sections(&toml).start().await;
    let daemon = env.daemon(&[]).await;
    assert!(listening(port).await);
    let pid = daemon.pid();
    let (_, before) = memory(pid);
    // 120 clients each send a 1 MiB body but its last byte, and hold on: 120 MiB if buffered.
    let body = vec![b'x'; (1 << 20) - 1];
    let clients: Vec<_> = (0..120)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let head = format!(
                    "POST /tampuuri/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len() + 1
                );
                let _ = tokio::time::timeout(Duration::from_secs(20), async {
                    s.write_all(head.as_bytes()).await?;
                    s.write_all(&body).await
                })
                .await;
                s
            })
        })
        .collect();
    let mut held = Vec::new();
    for c in clients {
        held.push(c.await.unwrap());
    }
    // Every request is answered (a 408 once its body timed out, or the connection closed)
    // only when the daemon is done with it: whatever it buffered of the bodies, it buffered
    // before. So the daemon's peak memory is read after the last answer, not after a pause.
    for mut s in held {
        use tokio::io::AsyncReadExt;
        let mut first = [0u8; 12];
        let answered = tokio::time::timeout(Duration::from_secs(60), s.read(&mut first)).await;
        let n = answered
            .expect("the daemon answers a held body within 60 s")
            .unwrap_or(0);
        assert!(
            n == 0 || first[..n].starts_with(b"HTTP/1.1 4"),
            "a held unauthenticated body got {:?}",
            String::from_utf8_lossy(&first[..n])
        );
    }
    let (peak, _) = memory(pid);
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 48 << 20,
        "the daemon grew by {} MiB for 120 × 1 MiB of unauthenticated bodies",
        grown >> 20
    );
    assert_eq!(events(&env), 0);
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{log}");
}

/// Fetch passes (processing passes that tried a fetch and failed) over `secs` seconds of
/// virtual time from `t0`, looked at every 250 ms.
async fn failing_passes(env: &TestEnv, t0: chrono::DateTime<chrono::Utc>, secs: i64) -> u64 {
    let mut failed = 0;
    for step in 0..secs * 4 {
        let p = process_at(env, t0 + chrono::Duration::milliseconds(step * 250)).await;
        assert_eq!(p.fetched, 0);
        failed += p.failed;
    }
    failed
}

#[tokio::test]
async fn a_fetch_that_keeps_failing_is_retried_with_backoff_then_parked_for_reconciliation() {
    let env = Setup::tickets(1).sections(&webhook_toml("")).start().await;
    env.sync_ok().await;
    let url = listener(&env).await;
    let id = env
        .sim()
        .insert("sim-1", json!({"Otsikko": "Vuoto"}).as_object().unwrap())
        .unwrap();
    assert_eq!(
        signed(&url, vec![note("IlmoitusUusi", id, 4711, "Avoin", "t")]).await,
        200
    );
    env.faults(json!({"error_rate": 1.0}));
    let t0 = chrono::Utc::now() + chrono::Duration::hours(1);
    // From 1 s, doubling: fetches at 0, 1, 3, 7, 15 and 31 s.
    assert_eq!(failing_passes(&env, t0, 40).await, 6);
    let attempts = || env.count("SELECT max(attempts) FROM webhook_events");
    assert_eq!(attempts(), 6);
    // The tenth failure parks the event: nothing more is fetched for it.
    let p = process_at(&env, t0 + chrono::Duration::hours(1)).await;
    assert_eq!((p.failed, p.parked), (1, 0));
    for h in 2..6 {
        process_at(&env, t0 + chrono::Duration::hours(h)).await;
    }
    assert_eq!(
        attempts(),
        huoltosync::engine::webhook::RETRY_ATTEMPTS as i64
    );
    let (_, out, _) = env.cli(&["status", "--json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &v["webhooks"]["events_parked"],
            &v["webhooks"]["events_pending"]
        ),
        (&json!(1), &json!(0)),
        "{out}"
    );
    let gets = env.get_calls();
    env.faults(json!({"error_rate": 0.0}));
    let p = process_at(&env, t0 + chrono::Duration::hours(9)).await;
    assert_eq!((p.fetched, p.failed, env.get_calls()), (0, 0, gets));
    // The next reconciliation covers the ticket, and settles the parked event.
    env.sync_ok().await;
    assert!(env.open_ids("sim-1").contains(&id));
    let (_, out, _) = env.cli(&["status", "--json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &v["webhooks"]["events_parked"],
            &v["webhooks"]["events_reconciled"]
        ),
        (&json!(0), &json!(1)),
        "{out}"
    );
    let (_, out, _) = env.cli(&["status"]).await;
    assert!(
        out.contains("0 parked") && out.contains("1 reconciled"),
        "{out}"
    );
}

#[tokio::test]
async fn a_permanent_rejection_of_the_fetch_parks_the_events_at_once() {
    let env = Setup::tickets(1).sections(&webhook_toml("")).start().await;
    env.sync_ok().await;
    let url = listener(&env).await;
    assert_eq!(
        signed(&url, vec![note("IlmoitusUusi", 1001, 4711, "Avoin", "t")]).await,
        200
    );
    env.faults(json!({"reject_next": 1}));
    let t0 = chrono::Utc::now() + chrono::Duration::hours(1);
    let p = process_at(&env, t0).await;
    assert_eq!((p.failed, p.parked), (1, 1));
    assert_eq!(env.get_calls(), 1, "a 4xx is not retried");
    assert_eq!(failing_passes(&env, t0, 10).await, 0);
    assert_eq!(env.get_calls(), 1);
    assert_eq!(
        env.count("SELECT count(*) FROM webhook_events WHERE status = 'parked' AND reason LIKE '%permanently%'"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_webhook_fetch_keeps_failing_the_daemon_backs_off_and_still_pushes() {
    let port = free_port();
    let toml = webhook_toml("debounce_ms = 0\n[service]\npush_check_ms = 100")
        .replace("127.0.0.1:9", &format!("127.0.0.1:{port}"));
    let env = Setup::tickets(3).accounts(2).sections(&toml).start().await;
    env.sync_ok().await;
    // Every call of account sim-2 fails; sim-1 works.
    env.faults(json!({"error_rate": 1.0, "only_account": "sim-2"}));
    let mut daemon = env.daemon(&[]).await;
    assert!(listening(port).await);
    let url = format!("http://127.0.0.1:{port}/tampuuri/webhook");
    let mut n = note("IlmoitusTilamuutos", 1001, 4711, "Avoin", "t");
    n["Account"] = json!("sim-2");
    assert_eq!(signed(&url, vec![n]).await, 200);
    let attempts = || env.count("SELECT coalesce(max(attempts), 0) FROM webhook_events");
    assert!(
        wait_for(Duration::from_secs(20), || attempts() >= 1).await,
        "{}",
        daemon.log()
    );
    let ticket = env.open_ids("sim-1")[0];
    env.task_ok(&["accept", &ticket.to_string(), "--account", "sim-1"])
        .await;
    assert!(
        wait_for(Duration::from_secs(30), || env.applied().len() == 1).await,
        "the queued action was pushed while the event was failing: {}",
        daemon.log()
    );
    // From 1 s, doubling: after the third failure the next fetch is 4 s away. Another action
    // pushed meanwhile is the signal that the daemon went on working (push checks every
    // 100 ms, each of which fetched again without the backoff) while it did not fetch.
    assert!(
        wait_for(Duration::from_secs(20), || attempts() >= 3).await,
        "{}",
        daemon.log()
    );
    let (tried, next_try): (i64, String) = env
        .db()
        .query_row(
            "SELECT attempts, next_try_at FROM webhook_events WHERE attempts > 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let next_try = chrono::DateTime::parse_from_rfc3339(&next_try).unwrap();
    let ticket = env.open_ids("sim-1")[1];
    env.task_ok(&["accept", &ticket.to_string(), "--account", "sim-1"])
        .await;
    assert!(
        wait_for(Duration::from_secs(30), || env.applied().len() == 2).await,
        "{}",
        daemon.log()
    );
    assert!(
        chrono::Utc::now() < next_try,
        "the second push took until the event's next try ({next_try}): too slow to tell"
    );
    assert_eq!(attempts(), tried, "fetched again before its next try");
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "{}",
        daemon.log()
    );
    let _ = daemon.stop(Duration::from_secs(15)).await;
}

#[tokio::test]
async fn a_purge_with_nothing_to_purge_writes_nothing() {
    let env = Setup::tickets(3).start().await;
    env.sync_ok().await;
    // Held open, as the daemon holds it: the WAL stays.
    let db = env.db();
    let _: i64 = db
        .query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))
        .unwrap();
    env.sync_ok().await;
    let before = store_files(&env);
    assert!(
        before[1].is_some_and(|(len, _)| len > 0),
        "a WAL to fold: {before:?}"
    );
    let (code, out, err) = env.cli(&["purge"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(store_files(&env), before);
    drop(db);
}

/// HMAC-SHA256 (RFC 2104) written out over SHA-256, as lowercase hex: shares no code with the
/// simulator's signing, the listener's check or the `hmac` crate.
fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let padded = |pad: u8| block.iter().map(|b| b ^ pad).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(padded(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(padded(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_delivery_digest_is_the_hmac_sha256_of_the_body_computed_independently() {
    // The test's own HMAC is right: RFC 4231, test cases 2 and 6 (a key longer than a block).
    assert_eq!(
        hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hmac_sha256_hex(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        ),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
    // A receiver that keeps what it is sent.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let _ = tx.send((headers, body));
                async { axum::http::StatusCode::OK }
            },
        ),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(tcp, app).await });
    let sim = huoltosync::sim::Sim::new(&huoltosync::sim::SimOptions {
        tickets: 1,
        webhook: Some(huoltosync::sim::WebhookTarget {
            url: format!("http://{addr}/hook"),
            secret: Some("salaisuus-123".into()),
            header: "X-Tampuuri-Digest".into(),
            basic: None,
            drop_rate: 0.0,
        }),
        ..Default::default()
    });
    let id = sim
        .insert("sim-1", json!({"Otsikko": "Vuoto"}).as_object().unwrap())
        .unwrap();
    let (headers, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery within 10 s")
        .unwrap();
    let digest = headers
        .get("x-tampuuri-digest")
        .expect("the digest in the configured header")
        .to_str()
        .unwrap();
    assert_eq!(
        digest,
        format!("sha256={}", hmac_sha256_hex(b"salaisuus-123", &body))
    );
    assert_ne!(
        digest,
        format!("sha256={}", hmac_sha256_hex(b"salaisuus-124", &body))
    );
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["Notifications"][0]["ReferenceId"], json!(id));
    assert_eq!(sent["Attempts"], json!(1));
}

/// `n` notifications of new tickets from id `from` on, ours by their `ReferenceJson`, that the
/// mirror does not hold (and Tampuuri does not have).
fn unknown(from: i64, n: i64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            note(
                "IlmoitusUusi",
                from + i,
                4711,
                "Avoin",
                &format!("2026-11-25T10:{:02}:{:02}+02:00", i / 60, i % 60),
            )
        })
        .collect()
}

fn status_count(env: &TestEnv, status: &str) -> i64 {
    env.count(&format!(
        "SELECT count(*) FROM webhook_events WHERE status = '{status}'"
    ))
}

#[tokio::test]
async fn three_hundred_tickets_we_do_not_hold_cost_no_get_and_one_sweep_finds_the_new_one() {
    let env = Setup::tickets(3).sections(&webhook_toml("")).start().await;
    env.sync_ok().await;
    let url = listener(&env).await;
    let new = env
        .sim()
        .insert(
            "sim-1",
            json!({"Otsikko": "Aito uusi"}).as_object().unwrap(),
        )
        .unwrap();
    let mut notes = unknown(900_000_000, 300);
    notes.push(note(
        "IlmoitusUusi",
        new,
        4711,
        "Avoin",
        "2026-11-25T11:00:00+02:00",
    ));
    assert_eq!(signed(&url, notes).await, 200);
    // Right after the last sync of the account: no GET, and the sweep waits for its gap.
    let p = process_at(&env, chrono::Utc::now() + chrono::Duration::seconds(1)).await;
    assert_eq!((p.fetched, p.swept, p.sweeps), (0, 301, 0));
    assert!(p.next_due.is_some(), "due again when the gap has passed");
    assert_eq!(env.get_calls(), 0);
    assert!(!env.open_ids("sim-1").contains(&new));
    assert_eq!(status_count(&env, "parked"), 301);
    // After the gap, one sweep covers them all, and the new ticket is mirrored.
    let p = process(&env).await;
    assert_eq!((p.fetched, p.sweeps), (0, 1));
    assert!(env.open_ids("sim-1").contains(&new));
    assert_eq!(env.get_calls(), 0);
    assert_eq!(status_count(&env, "reconciled"), 301);
    assert_eq!(
        env.count("SELECT count(*) FROM sync_runs WHERE trigger = 'webhook' AND outcome = 'ok'"),
        1
    );
    let p = process(&env).await;
    assert_eq!((p.fetched, p.sweeps), (0, 0), "nothing left to sweep");
}

#[tokio::test]
async fn within_the_budget_unknown_tickets_are_fetched_and_beyond_it_a_sweep_takes_over() {
    let env = Setup::tickets(3)
        .sections(&webhook_toml("max_fetches_per_minute = 15"))
        .start()
        .await;
    env.sync_ok().await;
    let url = listener(&env).await;
    let t0 = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(signed(&url, unknown(900_000_000, 12)).await, 200);
    let p = process_at(&env, t0).await;
    assert_eq!((p.fetched, p.deferred, p.swept), (12, 0, 0));
    assert_eq!(env.get_calls(), 12);
    // Three fetches are left this minute: four more tickets are one sweep's.
    let new = env
        .sim()
        .insert(
            "sim-1",
            json!({"Otsikko": "Aito uusi"}).as_object().unwrap(),
        )
        .unwrap();
    let mut notes = unknown(900_000_100, 3);
    notes.push(note(
        "IlmoitusUusi",
        new,
        4711,
        "Avoin",
        "2026-11-25T11:00:00+02:00",
    ));
    assert_eq!(signed(&url, notes).await, 200);
    let p = process_at(&env, t0 + chrono::Duration::seconds(30)).await;
    assert_eq!((p.fetched, p.swept, p.sweeps), (0, 4, 1));
    assert_eq!(env.get_calls(), 12);
    assert!(env.open_ids("sim-1").contains(&new));
    // A minute after the first fetches, the budget is whole again.
    assert_eq!(signed(&url, unknown(900_000_200, 2)).await, 200);
    let p = process_at(&env, t0 + chrono::Duration::seconds(61)).await;
    assert_eq!((p.fetched, p.swept), (2, 0));
    assert_eq!(env.get_calls(), 14);
}

#[tokio::test]
async fn a_held_tickets_event_is_fetched_in_the_first_pass_behind_a_flood_of_unknown_ones() {
    let env = Setup::tickets(3)
        .sections(&webhook_toml("max_fetches_per_minute = 100"))
        .start()
        .await;
    env.sync_ok().await;
    let url = listener(&env).await;
    let held = env.open_ids("sim-1")[0];
    env.patch("sim-1", held, json!({ "Otsikko": "Muuttunut otsikko" }));
    let mut notes = unknown(900_000_000, 70);
    notes.push(note(
        "IlmoitusTilamuutos",
        held,
        4711,
        "Avoin",
        "2026-11-25T11:00:00+02:00",
    ));
    assert_eq!(signed(&url, notes).await, 200);
    let p = process(&env).await;
    assert_eq!((p.fetched, p.deferred, p.swept), (61, 10, 0));
    assert!(p.next_due.is_some(), "the rest at once, in the next pass");
    let title: String = env
        .db()
        .query_row(
            &format!("SELECT title FROM tickets WHERE id = {held}"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(title, "Muuttunut otsikko");
    // The rest follow in the next pass, within the budget of 100.
    let p = process(&env).await;
    assert_eq!((p.fetched, p.deferred), (10, 0));
    assert_eq!(env.get_calls(), 71);
    assert_eq!(status_count(&env, "pending"), 0);
}

#[tokio::test]
async fn a_failed_sweep_leaves_the_events_parked_and_is_tried_again_after_its_gap() {
    let env = Setup::tickets(3)
        .sections(&webhook_toml("max_fetches_per_minute = 0"))
        .start()
        .await;
    env.sync_ok().await;
    let url = listener(&env).await;
    assert_eq!(signed(&url, unknown(900_000_000, 3)).await, 200);
    env.faults(json!({ "reject_next": 1 }));
    let t = chrono::Utc::now() + chrono::Duration::hours(1);
    let p = process_at(&env, t).await;
    assert_eq!((p.fetched, p.swept, p.sweeps), (0, 3, 1));
    let gap = chrono::Duration::from_std(huoltosync::engine::webhook::budget::SWEEP_GAP).unwrap();
    assert_eq!(p.next_due, Some(t + gap));
    assert_eq!(status_count(&env, "parked"), 3);
    let p = process_at(&env, t + gap).await;
    assert_eq!(p.sweeps, 1);
    assert_eq!(status_count(&env, "reconciled"), 3);
    assert_eq!(env.get_calls(), 0);
}
