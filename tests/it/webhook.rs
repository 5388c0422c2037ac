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
    tokio::spawn(huoltosync::webhook::serve(
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
        Some(&huoltosync::webhook::sign(
            SECRET.as_bytes(),
            body.as_bytes(),
        )),
    )
    .await
}

async fn process(env: &TestEnv) -> huoltosync::webhook::Processed {
    let api = huoltosync::tampuuri::Api::new(&env.config).unwrap();
    let store = huoltosync::store::Handle::open(env.config.store.path.clone())
        .await
        .unwrap();
    huoltosync::webhook::process_pending(&env.config, &api, &store)
        .await
        .unwrap()
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
    let sign = |b: &str| huoltosync::webhook::sign(SECRET.as_bytes(), b.as_bytes());
    assert_eq!(
        post(
            &url,
            &good,
            Some(&huoltosync::webhook::sign(b"wrong", good.as_bytes()))
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
    assert_eq!(v["webhooks"]["deliveries_rejected"], 5);
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
