//! The HTTP API (`src/faces/api/`): tokens and scopes, problem+json errors, cursor paging over the
//! mirror, one ticket in full, the change feed (gap-free over a big sync, long poll woken by a
//! sync, 410 after the purge), the outbox, status and cost as the commands show them, the body
//! bound, `huoltosync serve`, and the committed OpenAPI document.

use std::time::Duration;

use huoltosync::store::Handle;
use serde_json::{Value, json};

use crate::helpers::{Setup, TestEnv};

pub(crate) const WRITE: &str = "write-token-123456";
pub(crate) const READ: &str = "read-token-123456";

pub(crate) fn api_toml(extra: &str) -> String {
    format!(
        "[api]\nlisten = \"127.0.0.1:0\"\n{extra}\n[[api.tokens]]\nname = \"erp\"\ntoken = \"{WRITE}\"\nscope = \"write\"\n[[api.tokens]]\nname = \"viewer\"\ntoken = \"{READ}\"\nscope = \"read\"\n"
    )
}

/// The API of `env`, served in-process on a loopback port.
pub(crate) struct Served {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub(crate) async fn serve(env: &TestEnv) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let store = Handle::open(env.config.store.path.clone()).await.unwrap();
    let probe = Handle::open(env.config.store.path.clone()).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = env.config.clone();
    let api = config.api.clone().expect("[api] in the test config");
    tokio::spawn(huoltosync::faces::api::serve(
        listener,
        config,
        api,
        store,
        probe,
        async move {
            let _ = stopped.await;
        },
    ));
    Served {
        base,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(70))
            .build()
            .unwrap(),
        _stop: stop,
    }
}

impl Served {
    async fn get_as(
        &self,
        token: Option<&str>,
        path: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, headers, json)
    }

    /// GET with the read token; the status and JSON body.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let (s, _, v) = self.get_as(Some(READ), path).await;
        (s, v)
    }

    /// GET with the read token that must answer 200.
    pub(crate) async fn ok(&self, path: &str) -> Value {
        let (s, v) = self.get(path).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }
}

pub(crate) fn is_problem(headers: &reqwest::header::HeaderMap, body: &Value, status: u16) -> bool {
    headers
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("application/problem+json"))
        && body["status"] == status
        && body["title"].is_string()
        && body["type"].is_string()
        && body["detail"].is_string()
}

pub(crate) async fn env(tickets: u64) -> TestEnv {
    Setup::tickets(tickets)
        .sections(&api_toml(""))
        .start()
        .await
}

#[tokio::test]
async fn a_token_is_required_and_errors_are_problem_json() {
    let env = env(5).await;
    env.sync_ok().await;
    let api = serve(&env).await;
    let (s, h, b) = api.get_as(None, "/tickets").await;
    assert_eq!(s, 401);
    assert!(is_problem(&h, &b, 401), "{h:?} {b}");
    assert_eq!(h.get("www-authenticate").unwrap(), "Bearer");
    let (s, h, b) = api.get_as(Some("wrong-token-123456"), "/tickets").await;
    assert_eq!(s, 401);
    assert!(is_problem(&h, &b, 401));
    assert!(!b.to_string().contains("wrong-token-123456"));
    // A Basic header is not a bearer token.
    let resp = api
        .http
        .get(format!("{}/tickets", api.base))
        .basic_auth("erp", Some(WRITE))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Both scopes read; the scheme name is case-insensitive.
    assert_eq!(api.get_as(Some(WRITE), "/tickets").await.0, 200);
    let resp = api
        .http
        .get(format!("{}/tickets", api.base))
        .header("authorization", format!("bearer {READ}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // An unknown endpoint is a 404 problem.
    let (s, h, b) = api.get_as(Some(READ), "/nothing-here").await;
    assert_eq!(s, 404);
    assert!(is_problem(&h, &b, 404) && b["detail"].as_str().unwrap().contains("/nothing-here"));
    // A method an endpoint does not serve is a 405 problem.
    let r = api
        .http
        .delete(format!("{}/tickets", api.base))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
}

#[tokio::test]
async fn tickets_page_by_cursor_each_once_with_the_fields_of_tasks_json() {
    let env = env(250).await;
    env.sync_ok().await;
    let api = serve(&env).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/tickets?limit=100&cursor={c}"),
            None => "/tickets?limit=100".into(),
        };
        let page = api.ok(&path).await;
        pages += 1;
        for t in page["items"].as_array().unwrap() {
            seen.push((
                t["account"].as_str().unwrap().to_owned(),
                t["id"].as_i64().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert!(
                    c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "{c}"
                );
                cursor = Some(c.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "in (account, id) order, each once");
    let ids: Vec<i64> = seen.iter().map(|s| s.1).collect();
    assert_eq!(ids, env.open_ids("sim-1"));
    // Default page: 100; the items carry every field of `tasks --json`.
    let page = api.ok("/tickets").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    let (code, out, err) = env.cli(&["tasks", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let tasks: Vec<Value> = serde_json::from_str(&out).unwrap();
    // The list also carries the reporter (the integrator's contact), which `tasks` leaves out.
    let mut item = page["items"][0].clone();
    let reporter = item.as_object_mut().unwrap().remove("reporter").unwrap();
    for k in ["name", "phone", "email"] {
        assert!(reporter[k].is_string(), "{reporter}");
    }
    assert_eq!(item, tasks[0], "the same fields and values as tasks --json");
    // Bad parameters are 400 problems naming them.
    for bad in [
        "/tickets?limit=0",
        "/tickets?limit=1001",
        "/tickets?cursor=zz",
        "/tickets?open=maybe",
        "/tickets?account=nope",
        "/tickets?limit=x",
    ] {
        let (s, b) = api.get(bad).await;
        assert_eq!(s, 400, "{bad}: {b}");
        assert!(b["detail"].is_string(), "{bad}: {b}");
    }
}

#[tokio::test]
async fn tickets_filter_by_state_openness_and_text_in_title_description_or_address() {
    let env = env(30).await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    env.patch("sim-1", ids[0], json!({"Otsikko": "Ovikello ei soi"}));
    env.patch(
        "sim-1",
        ids[1],
        json!({"TyotehtavanKuvaus": "ovikello rikki rapussa"}),
    );
    env.patch(
        "sim-1",
        ids[2],
        json!({"Kohde": "As Oy Testitalo, Ovikellontie 5"}),
    );
    env.patch("sim-1", ids[3], json!({"Tila": "Valmis"}));
    env.sync_ok().await;
    let api = serve(&env).await;
    let found = |v: &Value| -> Vec<i64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        found(&api.ok("/tickets?q=ovikello").await),
        ids[0..3].to_vec()
    );
    assert_eq!(
        found(&api.ok("/tickets?q=100%25").await),
        Vec::<i64>::new(),
        "% is not a wildcard"
    );
    assert_eq!(found(&api.ok("/tickets?open=false").await), vec![ids[3]]);
    assert_eq!(found(&api.ok("/tickets?open=all").await).len(), 30);
    assert_eq!(
        found(&api.ok("/tickets").await).len(),
        29,
        "open tickets by default"
    );
    let avoin = api.ok("/tickets?state=avoin&limit=1000").await;
    assert!(
        avoin["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "Avoin")
    );
    assert_eq!(
        found(&api.ok("/tickets?state=Tehty").await),
        Vec::<i64>::new()
    );
    assert_eq!(found(&api.ok("/tickets?account=sim-1").await).len(), 29);
}

#[tokio::test]
async fn one_ticket_comes_with_history_pending_actions_and_raw_json() {
    let env = env(5).await;
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[0];
    env.patch("sim-1", id, json!({"Otsikko": "Uusi otsikko"}));
    env.sync_ok().await;
    env.task_ok(&["accept", &id.to_string()]).await;
    let api = serve(&env).await;
    let t = api.ok(&format!("/tickets/sim-1/{id}")).await;
    assert_eq!(t["ticket"]["id"], id);
    assert_eq!(t["ticket"]["title"], "Uusi otsikko");
    assert_eq!(t["raw"]["Otsikko"], "Uusi otsikko");
    assert!(t["description"].is_string());
    let kinds: Vec<&str> = t["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["appeared", "changed"], "{t}");
    assert!(
        t["history"][1]["fields"]
            .as_array()
            .unwrap()
            .contains(&json!("title")),
        "{t}"
    );
    let actions = t["pending_actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{t}");
    assert_eq!(actions[0]["kind"], "accept");
    assert_eq!(actions[0]["status"], "pending");
    let (s, h, b) = api.get_as(Some(READ), "/tickets/sim-1/999999").await;
    assert_eq!(s, 404);
    assert!(is_problem(&h, &b, 404));
    assert!(
        b["detail"].as_str().unwrap().contains("999999")
            && b["detail"].as_str().unwrap().contains("sim-1")
    );
    assert_eq!(api.get("/tickets/sim-1/notanumber").await.0, 400);
}

/// Every event after `after`, page by page (`limit` a page), following `next_after`.
async fn follow(api: &Served, mut after: i64, limit: u32) -> Vec<Value> {
    let mut all = Vec::new();
    for _ in 0..100 {
        let page = api
            .ok(&format!("/changes?after={after}&limit={limit}"))
            .await;
        let events = page["events"].as_array().unwrap().clone();
        if events.is_empty() {
            assert_eq!(page["next_after"], after);
            return all;
        }
        after = page["next_after"].as_i64().unwrap();
        assert_eq!(after, events.last().unwrap()["seq"].as_i64().unwrap());
        all.extend(events);
    }
    panic!("the feed did not end within 100 pages");
}

#[tokio::test]
async fn the_feed_over_a_sync_that_changes_1000_tickets_has_no_gap_no_repeat_in_commit_order() {
    let env = env(1000).await;
    env.sync_ok().await;
    let api = serve(&env).await;
    let first = follow(&api, 0, 1000).await;
    assert_eq!(first.len(), 1000);
    assert!(
        first
            .iter()
            .all(|e| e["type"] == "ticket.new" && e["account"] == "sim-1" && e["state"] == "Avoin")
    );
    let last = first.last().unwrap()["seq"].as_i64().unwrap();
    for id in env.open_ids("sim-1") {
        env.patch("sim-1", id, json!({"Otsikko": format!("Muutettu {id}")}));
    }
    env.sync_ok().await;
    let events = follow(&api, last, 300).await;
    assert_eq!(events.len(), 1000);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["seq"].as_i64().unwrap(),
            last + 1 + i as i64,
            "gap or repeat at {e}"
        );
        assert_eq!(e["type"], "ticket.changed");
        assert!(
            e["fields"].as_array().unwrap().contains(&json!("title")),
            "{e}"
        );
        assert!(e["at"].is_string() && e["ticket_id"].is_i64());
    }
    // The same order as the feed table (commit order), ticket by ticket.
    let db = env.db();
    let mut q = db
        .prepare("SELECT ticket_id FROM feed WHERE seq > ?1 ORDER BY seq")
        .unwrap();
    let table: Vec<i64> = q
        .query_map([last], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let served: Vec<i64> = events
        .iter()
        .map(|e| e["ticket_id"].as_i64().unwrap())
        .collect();
    assert_eq!(served, table);
    let mut unique = served.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 1000, "each ticket once");
    // Parameters out of range.
    for bad in [
        "/changes?limit=1001",
        "/changes?after=-1",
        "/changes?wait=61",
        "/changes?after=x",
    ] {
        assert_eq!(api.get(bad).await.0, 400, "{bad}");
    }
}

#[tokio::test]
async fn a_long_poll_is_woken_by_a_sync_and_a_quiet_one_ends_empty() {
    // One long poll at a time: a second one refused is the signal that the first one waits.
    let env = Setup::tickets(5)
        .sections(&api_toml("max_long_polls = 1"))
        .start()
        .await;
    env.sync_ok().await;
    let api = serve(&env).await;
    let head = api.ok("/changes?after=0&limit=1000").await["next_after"]
        .as_i64()
        .unwrap();
    assert_eq!(head, 5);
    // Nothing happens: the request ends after `wait` with no event and next_after = after.
    let quiet = api.ok(&format!("/changes?after={head}&wait=1")).await;
    assert_eq!(quiet["events"], json!([]));
    assert_eq!(quiet["next_after"], head);
    // A waiting request returns the change a sync commits.
    let id = env.open_ids("sim-1")[2];
    let waiting = waiting_long_poll(&api, head).await;
    assert!(
        !waiting.is_finished(),
        "the request waits while nothing changes"
    );
    env.patch("sim-1", id, json!({"Otsikko": "Herätys"}));
    env.sync_ok().await;
    let (status, v, took) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{v}");
    assert!(
        took < Duration::from_secs(30),
        "woken by the sync, not by the end of the wait"
    );
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{v}");
    assert_eq!(events[0]["ticket_id"], id);
    assert_eq!(events[0]["seq"], head + 1);
    assert_eq!(v["next_after"], head + 1);
}

/// A long poll of the changes after `after` (`wait=30`), answered with its body and how long
/// it took, once it waits: with `[api] max_long_polls = 1`, a probe long poll is refused (503)
/// exactly while it holds the one slot. (A probe that came first holds the slot for its 1 s
/// and the request, refused meanwhile, is sent again.)
async fn waiting_long_poll(
    api: &Served,
    after: i64,
) -> tokio::task::JoinHandle<(u16, Value, Duration)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let get = |wait: u32| {
        api.http
            .get(format!("{}/changes?after={after}&wait={wait}", api.base))
            .bearer_auth(READ)
            .send()
    };
    loop {
        let request = get(30);
        let waiting = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = request.await.unwrap();
            let status = r.status().as_u16();
            (status, r.json().await.unwrap(), started.elapsed())
        });
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the long poll never waited"
            );
            if get(1).await.unwrap().status() == 503 {
                return waiting;
            }
            if waiting.is_finished() {
                let (status, v, _) = waiting.await.unwrap();
                assert_eq!(status, 503, "answered without waiting: {v}");
                break;
            }
        }
    }
}

#[tokio::test]
async fn after_the_purge_a_dropped_range_is_410_with_the_oldest_seq() {
    let env = env(10).await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    env.patch("sim-1", ids[0], json!({"Otsikko": "Myöhempi"}));
    env.sync_ok().await;
    // The first ten events are 40 days old; the purge with 30 days' retention drops them.
    env.db()
        .execute(
            "UPDATE feed SET at = '2000-01-01T00:00:00.000Z' WHERE seq <= 10",
            [],
        )
        .unwrap();
    let store = Handle::open(env.config.store.path.clone()).await.unwrap();
    let retention = huoltosync::service::retention::from_config(&env.config);
    assert_eq!(retention.feed_days, 30);
    let purged = store
        .call(move |s| s.purge(&retention, huoltosync::domain::time::now(), false))
        .await
        .unwrap();
    assert_eq!(purged.feed_events_deleted, 10);
    let api = serve(&env).await;
    let (s, h, b) = api.get_as(Some(READ), "/changes?after=0").await;
    assert_eq!(s, 410, "{b}");
    assert!(is_problem(&h, &b, 410));
    assert_eq!(b["oldest_seq"], 11);
    assert_eq!(api.get("/changes?after=5").await.0, 410);
    // From just before the oldest retained event, the feed goes on.
    let rest = api.ok("/changes?after=10").await;
    assert_eq!(rest["events"][0]["seq"], 11);
    assert_eq!(rest["events"][0]["ticket_id"], ids[0]);
    assert_eq!(api.ok("/changes?after=11").await["events"], json!([]));
}

#[tokio::test]
async fn outbox_status_and_cost_show_what_the_commands_show() {
    let env = env(5).await;
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[0];
    env.task_ok(&["accept", &id.to_string()]).await;
    let api = serve(&env).await;
    let all = api.ok("/outbox").await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(all[0]["ticket_id"], id);
    assert_eq!(all[0]["kind"], "accept");
    assert_eq!(
        api.ok("/outbox?status=pending")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(api.ok("/outbox?status=dead").await, json!([]));
    assert_eq!(api.get("/outbox?status=bogus").await.0, 400);
    let (_, out, _) = env.cli(&["outbox", "--json"]).await;
    let cli: Value = serde_json::from_str(&out).unwrap();
    let cli_ids: Vec<&Value> = cli.as_array().unwrap().iter().map(|r| &r["id"]).collect();
    assert_eq!(cli_ids, vec![&all[0]["id"]]);

    let served = api.ok("/status").await;
    let (_, out, _) = env.cli(&["status", "--json"]).await;
    let mut cli: Value = serde_json::from_str(&out).unwrap();
    let mut served_cmp = served.clone();
    for v in [&mut cli, &mut served_cmp] {
        for a in v.as_array_mut().unwrap() {
            a.as_object_mut().unwrap().remove("last_success_age_secs");
        }
    }
    assert_eq!(served_cmp, cli, "GET status is status --json");
    assert_eq!(served[0]["outbox_pending"], 1);

    let month = huoltosync::domain::time::local_month(huoltosync::domain::time::now());
    let served = api.ok(&format!("/cost?month={month}")).await;
    let (_, out, _) = env.cli(&["cost", "--json", "--month", &month]).await;
    let cli: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(served["month"], cli["month"]);
    assert_eq!(
        served["accounts"], cli["accounts"],
        "GET cost is cost --json"
    );
    assert_eq!(api.get("/cost?month=2026-13").await.0, 400);
}

#[tokio::test]
async fn a_body_over_max_body_bytes_is_refused_413_after_the_token_check() {
    let env = Setup::tickets(1)
        .sections(&api_toml("max_body_bytes = 1024"))
        .start()
        .await;
    let api = serve(&env).await;
    let send = |token: &'static str| {
        api.http
            .post(format!("{}/tickets", api.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(vec![b' '; 4096])
            .send()
    };
    let r = send(WRITE).await.unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    assert_eq!(
        send("not-a-token-at-all").await.unwrap().status().as_u16(),
        401
    );
}

#[tokio::test]
async fn huoltosync_serve_serves_the_api_alone_with_tokens_from_files() {
    let env = env(3).await;
    env.sync_ok().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(env.dir.path().join("viewer.token"), format!("{READ}\n")).unwrap();
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .replace(
            &format!("token = \"{READ}\""),
            "token_file = \"viewer.token\"",
        )
        // No Tampuuri secret is needed: a password file that does not exist is never read.
        .replace(
            "password = \"sim-password\"",
            "password_file = \"missing-password\"",
        );
    let path = env.dir.path().join("serve.toml");
    std::fs::write(&path, text).unwrap();
    let mut child = tokio::process::Command::new(crate::helpers::BIN)
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/tickets");
    let mut got = None;
    for _ in 0..100 {
        if let Ok(r) = http.get(&url).bearer_auth(READ).send().await {
            got = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = got.expect("serve listens");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
    let calls = env.sim().log().len();
    assert_eq!(calls, 0, "serving never calls Tampuuri");
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().unwrap().to_string())
        .status();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Without [api], serve is a usage error.
    let (code, _, err) =
        crate::helpers::run_cli(&env.config_path().with_file_name("none.toml"), &["serve"]).await;
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn huoltosync_serve_refuses_a_store_that_does_not_exist() {
    let env = env(3).await;
    let store = env.config.store.path.clone();
    assert!(!store.exists(), "no sync ran: there is no store");
    // Bounded: a serve that wrongly starts would never end on its own.
    let child = tokio::process::Command::new(crate::helpers::BIN)
        .arg("--config")
        .arg(env.config_path())
        .arg("serve")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("serve refuses at once instead of serving")
        .unwrap();
    let (code, out, err) = (
        done.status.code(),
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr),
    );
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains(&store.display().to_string()) && err.contains("huoltosync run --once"),
        "{err}"
    );
    assert!(!store.exists(), "serve created no store");
}

#[tokio::test]
async fn the_daemon_serves_the_api() {
    let env = Setup::tickets(4)
        .sections(&format!(
            "[schedule]\npoll = \"*/2 * * * * *\"\n{}",
            api_toml("")
        ))
        .start()
        .await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(env.config_path(), text).unwrap();
    let daemon = env.daemon(&[]).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/tickets");
    let mut n = 0;
    for _ in 0..100 {
        if let Ok(r) = http.get(&url).bearer_auth(READ).send().await
            && let Ok(v) = r.json::<Value>().await
        {
            n = v["items"].as_array().map_or(0, Vec::len);
            if n == 4 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(n, 4, "{}", daemon.log());
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{log}");
    assert!(
        !log.contains(READ) && !log.contains(WRITE),
        "a token in the log"
    );
}

#[tokio::test]
async fn the_openapi_document_is_generated_served_and_committed() {
    let generated = huoltosync::faces::api::openapi();
    let path = crate::helpers::repo().join("docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the API in the code: regenerate it with \
         `cargo run -q -- openapi > docs/openapi.json` (or UPDATE_OPENAPI=1 cargo test --test it openapi) and commit the diff"
    );
    let doc: Value = serde_json::from_str(&generated).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for p in [
        "/api/v1/tickets",
        "/api/v1/tickets/{account}/{id}",
        "/api/v1/tickets/{account}/{id}/accept",
        "/api/v1/tickets/{account}/{id}/hold",
        "/api/v1/tickets/{account}/{id}/done",
        "/api/v1/outbox/{id}/retry",
        "/api/v1/outbox/{id}/cancel",
        "/api/v1/changes",
        "/api/v1/outbox",
        "/api/v1/status",
        "/api/v1/cost",
        "/api/v1/openapi.json",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing from the document");
    }
    let env = env(1).await;
    let api = serve(&env).await;
    assert_eq!(api.ok("/openapi.json").await, doc);
}

/// Follows the daemon's feed from `after` to its end (bounded), over HTTP.
async fn follow_daemon(http: &reqwest::Client, base: &str, mut after: i64) -> (Vec<Value>, i64) {
    let mut all = Vec::new();
    for _ in 0..100 {
        let page: Value = http
            .get(format!("{base}/changes?after={after}&limit=7"))
            .bearer_auth(READ)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().unwrap().clone();
        if events.is_empty() {
            return (all, after);
        }
        after = page["next_after"].as_i64().unwrap();
        all.extend(events);
    }
    panic!("the feed did not end within 100 pages");
}

#[tokio::test]
async fn a_client_that_keeps_its_seq_misses_nothing_and_sees_nothing_twice_across_daemon_restarts()
{
    let env = Setup::tickets(12)
        .sections(&format!(
            "[schedule]\npoll = \"*/2 * * * * *\"\n{}",
            api_toml("")
        ))
        .start()
        .await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(env.config_path(), text).unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let ids = env.truth("sim-1");

    // The first daemon mirrors the 12 tickets; the client follows the feed to its end.
    let daemon = env.daemon(&[]).await;
    let mut seen: Vec<Value> = Vec::new();
    let mut after = 0;
    for _ in 0..150 {
        if let Ok(r) = http
            .get(format!("{base}/changes?after=0&limit=1"))
            .bearer_auth(READ)
            .send()
            .await
            && r.status() == 200
            && env.count("SELECT count(*) FROM feed WHERE type = 'ticket.new'") == 12
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (events, last) = follow_daemon(&http, &base, after).await;
    seen.extend(events);
    after = last;
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{log}");

    // While no daemon runs, Tampuuri changes and a `run --once` commits it.
    for id in &ids[..3] {
        env.patch("sim-1", *id, json!({"Otsikko": format!("Muutettu {id}")}));
    }
    let (code, out, err) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 0, "{out}{err}");

    // A second daemon: the client goes on from its seq, then a change made while it runs.
    let daemon = env.daemon(&[]).await;
    env.patch("sim-1", ids[4], json!({"Tila": "Valmis"}));
    let mut tail = Vec::new();
    for _ in 0..150 {
        if let Ok(r) = http
            .get(format!("{base}/changes?after={after}&wait=1"))
            .bearer_auth(READ)
            .send()
            .await
            && r.status() == 200
        {
            let (events, last) = follow_daemon(&http, &base, after).await;
            tail.extend(events);
            after = last;
            if tail.iter().any(|e| e["type"] == "ticket.left") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{log}");
    seen.extend(tail);

    let seqs: Vec<i64> = seen.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let total = env.count("SELECT count(*) FROM feed");
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "every committed event once, in order, across two restarts"
    );
    let of = |kind: &str, id: i64| {
        seen.iter()
            .filter(|e| e["type"] == kind && e["ticket_id"] == id)
            .count()
    };
    for id in &ids[..3] {
        assert_eq!(of("ticket.changed", *id), 1, "ticket {id}");
    }
    assert_eq!(of("ticket.left", ids[4]), 1);
    assert_eq!(
        ids.iter().map(|id| of("ticket.new", *id)).sum::<usize>(),
        12
    );
}
