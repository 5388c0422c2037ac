//! The API's write side (`src/faces/api/write.rs`): accept, hold, done and new tickets queued through
//! the same path as the CLI with the token's name as `requested_by`; refusals as problem+json
//! naming the ticket; scopes; `Idempotency-Key` (a retry answers the first answer and queues
//! nothing, another body is 422, concurrent requests with one key queue one row); base64 and
//! multipart attachments reach Tampuuri; outbox retry and cancel.

use huoltosync::store::{Claim, ClaimLost, KeptAnswer, KeyClaim, Retention, Store};
use serde_json::{Value, json};

use crate::api::{READ, WRITE, env, is_problem, serve};

/// A POST answer: status, headers, JSON body.
type Answer = (u16, reqwest::header::HeaderMap, Value);

async fn post(
    api: &crate::api::Served,
    token: &str,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> Answer {
    let mut r = api
        .http
        .post(format!("{}{path}", api.base))
        .bearer_auth(token)
        .json(&body);
    if let Some(k) = key {
        r = r.header("idempotency-key", k);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

fn detail(b: &Value) -> &str {
    b["detail"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn accept_hold_done_queue_as_the_token_and_refusals_are_problems_naming_the_ticket() {
    let env = env(5).await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    let api = serve(&env).await;
    let t = |id: i64, what: &str| format!("/tickets/sim-1/{id}/{what}");

    let (s, _, a) = post(
        &api,
        WRITE,
        &t(ids[0], "accept"),
        None,
        json!({"comment": "Tulossa"}),
    )
    .await;
    assert_eq!(s, 202, "{a}");
    assert_eq!(
        (a["kind"].as_str(), a["ticket_id"].as_i64()),
        (Some("accept"), Some(ids[0]))
    );
    assert_eq!(a["status"], "pending");
    assert_eq!(a["requested_by"], "erp");
    // hold after the queued accept; done of another ticket, with notify off.
    let (s, _, h) = post(
        &api,
        WRITE,
        &t(ids[0], "hold"),
        None,
        json!({"reason": "Varaosa"}),
    )
    .await;
    assert_eq!((s, h["kind"].as_str()), (202, Some("hold")), "{h}");
    let (s, _, d) = post(
        &api,
        WRITE,
        &t(ids[1], "done"),
        None,
        json!({"notify": false}),
    )
    .await;
    assert_eq!((s, d["kind"].as_str()), (202, Some("done")), "{d}");
    assert_eq!(env.outbox().len(), 3);
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE requested_by = 'erp'"),
        3
    );

    // Refusals: the state refuses (409), not in the mirror (404), unknown account (404), an
    // empty reason (422), a body that is not the JSON asked for (400, naming the field).
    let (s, h, b) = post(&api, WRITE, &t(ids[1], "accept"), None, json!({})).await;
    assert_eq!(s, 409, "{b}");
    assert!(
        is_problem(&h, &b, 409) && detail(&b).contains(&ids[1].to_string()),
        "{b}"
    );
    let (s, h, b) = post(&api, WRITE, &t(999_999, "accept"), None, json!({})).await;
    assert!(
        is_problem(&h, &b, 404) && detail(&b).contains("999999"),
        "{s} {b}"
    );
    let (s, h, b) = post(&api, WRITE, "/tickets/nope/1/accept", None, json!({})).await;
    assert!(
        is_problem(&h, &b, 404) && detail(&b).contains("nope"),
        "{s} {b}"
    );
    let (s, h, b) = post(
        &api,
        WRITE,
        &t(ids[2], "hold"),
        None,
        json!({"reason": " "}),
    )
    .await;
    assert!(
        is_problem(&h, &b, 422) && detail(&b).contains(&ids[2].to_string()),
        "{s} {b}"
    );
    let (s, h, b) = post(
        &api,
        WRITE,
        &t(ids[2], "hold"),
        None,
        json!({"notify": true}),
    )
    .await;
    assert!(
        is_problem(&h, &b, 400) && detail(&b).contains("reason"),
        "{s} {b}"
    );
    let (s, h, b) = post(
        &api,
        WRITE,
        &t(ids[2], "done"),
        None,
        json!({"notify": "yes"}),
    )
    .await;
    assert!(
        is_problem(&h, &b, 400) && detail(&b).contains("notify"),
        "{s} {b}"
    );
    let r = api
        .http
        .post(format!("{}{}", api.base, t(ids[2], "accept")))
        .bearer_auth(WRITE)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(env.outbox().len(), 3, "no refusal queued anything");

    // A read token may not write, on any write endpoint.
    for path in [
        t(ids[2], "accept"),
        t(ids[2], "hold"),
        t(ids[2], "done"),
        "/tickets".into(),
        "/outbox/1/retry".into(),
        "/outbox/1/cancel".into(),
    ] {
        let (s, h, b) = post(&api, READ, &path, None, json!({"reason": "x"})).await;
        assert!(is_problem(&h, &b, 403), "{path}: {s} {b}");
    }
    assert_eq!(env.outbox().len(), 3);

    // Who asked shows in GET outbox, the ticket's pending actions and `outbox --json`; the CLI
    // records "cli".
    env.task_ok(&["accept", &ids[2].to_string()]).await;
    let listed = api.ok("/outbox").await;
    let by: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requested_by"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["erp", "erp", "erp", "cli"]);
    let detail = api.ok(&format!("/tickets/sim-1/{}", ids[0])).await;
    assert_eq!(detail["pending_actions"][0]["requested_by"], "erp");
    let (_, out, _) = env.cli(&["outbox", "--json"]).await;
    let cli: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cli[0]["requested_by"], "erp");
    assert_eq!(cli[3]["requested_by"], "cli");
}

#[tokio::test]
async fn an_idempotency_key_answers_the_first_answer_and_the_accept_goes_out_once() {
    let env = env(3).await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    let api = serve(&env).await;
    let path = format!("/tickets/sim-1/{}/accept", ids[0]);
    let body = json!({"comment": "Tulossa"});
    let (s1, h1, b1) = post(&api, WRITE, &path, Some("k-1"), body.clone()).await;
    let (s2, h2, b2) = post(&api, WRITE, &path, Some("k-1"), body.clone()).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(b1, b2, "the retry answers the first answer");
    assert!(h1.get("idempotent-replayed").is_none());
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(env.outbox().len(), 1, "the retry queued nothing");
    // The same key with another body, or on another path: 422, nothing queued.
    let (s, h, b) = post(
        &api,
        WRITE,
        &path,
        Some("k-1"),
        json!({"comment": "Toinen"}),
    )
    .await;
    assert!(
        is_problem(&h, &b, 422) && detail(&b).contains("k-1"),
        "{s} {b}"
    );
    let other = format!("/tickets/sim-1/{}/accept", ids[1]);
    let (s, _, _) = post(&api, WRITE, &other, Some("k-1"), body.clone()).await;
    assert_eq!(s, 422);
    assert_eq!(env.outbox().len(), 1);
    // A refusal is kept too: its retry gets the same problem.
    let (s, _, r1) = post(&api, WRITE, &path, Some("k-2"), json!({})).await;
    let (s2, h, r2) = post(&api, WRITE, &path, Some("k-2"), json!({})).await;
    assert_eq!((s, s2), (409, 409));
    assert_eq!(r1, r2);
    assert!(is_problem(&h, &r2, 409));
    // A bad key is a 400.
    let (s, _, _) = post(&api, WRITE, &other, Some(&"x".repeat(300)), body.clone()).await;
    assert_eq!(s, 400);

    let report = env.push().await;
    assert_eq!(report.delivered.len(), 1);
    let accepts: Vec<_> = env
        .applied()
        .into_iter()
        .filter(|(id, a)| *id == ids[0] && a == "vastaanota")
        .collect();
    assert_eq!(accepts.len(), 1, "the accept reached Tampuuri once");
    // After delivery, the retry still answers the first answer and queues nothing.
    let (s, _, b) = post(&api, WRITE, &path, Some("k-1"), body).await;
    assert_eq!((s, &b), (202, &b1));
    assert_eq!(env.outbox().len(), 1);
}

#[tokio::test]
async fn ten_concurrent_requests_with_one_key_queue_one_row() {
    let env = env(3).await;
    env.sync_ok().await;
    let api = std::sync::Arc::new(serve(&env).await);
    // A new ticket: without the key, each of these would queue a row of its own.
    let body = json!({"account": "sim-1", "title": "Vuoto", "description": "Katto vuotaa",
                      "cost_centre_id": 1});
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (api, body) = (api.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            post(&api, WRITE, "/tickets", Some("same"), body).await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        let (s, _, b) = t.await.unwrap();
        answers.push((s, b));
    }
    assert_eq!(env.outbox().len(), 1, "one outbox row");
    let first = answers
        .iter()
        .find(|(s, _)| *s == 202)
        .expect("one 202")
        .1
        .clone();
    for (s, b) in &answers {
        // Each got the answer (or, waiting past the bound, an "in progress" 409).
        assert!(
            (*s == 202 && *b == first) || (*s == 409 && detail(b).contains("in progress")),
            "{s} {b}"
        );
    }
}

#[tokio::test]
async fn new_tickets_with_base64_and_multipart_attachments_reach_tampuuri() {
    let env = env(2).await;
    env.sync_ok().await;
    let api = serve(&env).await;
    let photo = b"\xff\xd8\xff kuva".to_vec();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&photo);
    let (s, _, a) = post(
        &api,
        WRITE,
        "/tickets",
        Some("new-1"),
        json!({"account": "sim-1", "title": "Vuoto", "description": "Katto vuotaa",
               "cost_centre_id": 1, "attachments": [{"file_name": "vuoto.jpg", "content_base64": b64}]}),
    )
    .await;
    assert_eq!(s, 202, "{a}");
    assert_eq!(
        (a["kind"].as_str(), a["attachments"].as_u64()),
        (Some("create"), Some(1))
    );
    assert_eq!(a["requested_by"], "erp");

    let boundary = "XyZb0undary";
    let mut body = Vec::new();
    for (name, value) in [
        ("account", "sim-1"),
        ("title", "Ovi"),
        ("description", "Ovi jumittaa"),
        ("cost_centre_id", "1"),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"ovi.png\"\r\ncontent-type: image/png\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(b"\x89PNG12345678");
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = api
        .http
        .post(format!("{}/tickets", api.base))
        .bearer_auth(WRITE)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["attachments"], 1);

    // Refusals: no cost centre (422), bad base64 (400 naming the field), unknown form field.
    let (s, h, b) = post(
        &api,
        WRITE,
        "/tickets",
        None,
        json!({"account": "sim-1", "title": "T", "description": "D"}),
    )
    .await;
    assert!(
        is_problem(&h, &b, 422) && detail(&b).contains("cost centre"),
        "{s} {b}"
    );
    let (s, h, b) = post(
        &api,
        WRITE,
        "/tickets",
        None,
        json!({"account": "sim-1", "title": "T", "description": "D", "cost_centre_id": 1,
               "attachments": [{"file_name": "a.jpg", "content_base64": "***"}]}),
    )
    .await;
    assert!(
        is_problem(&h, &b, 400) && detail(&b).contains("content_base64"),
        "{s} {b}"
    );
    let (s, h, b) = post(
        &api,
        WRITE,
        "/tickets",
        None,
        json!({"account": "muu", "title": "T", "description": "D", "cost_centre_id": 1}),
    )
    .await;
    assert!(
        is_problem(&h, &b, 422) && detail(&b).contains("muu"),
        "{s} {b}"
    );
    assert_eq!(env.outbox().len(), 2);

    let report = env.push().await;
    assert_eq!(report.delivered.len(), 2, "{report:?}");
    let log = env.sim().log();
    // Two independent creates: delivered in either order.
    let mut sent: Vec<String> = log
        .iter()
        .filter(|e| e.action == "create")
        .map(|e| e.body["Liitteet"].to_string())
        .collect();
    sent.sort();
    let mut want = vec![
        json!([{"FileName": "vuoto.jpg", "ContentType": "image/jpeg", "Description": null, "Size": 8}]).to_string(),
        json!([{"FileName": "ovi.png", "ContentType": "image/png", "Description": null, "Size": 12}]).to_string(),
    ];
    want.sort();
    assert_eq!(sent, want);
}

#[tokio::test]
async fn outbox_retry_and_cancel_call_what_the_cli_calls() {
    let env = env(3).await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    let api = serve(&env).await;
    let t = |id: i64| format!("/tickets/sim-1/{id}/accept");
    let (_, _, a) = post(&api, WRITE, &t(ids[0]), None, json!({})).await;
    let (_, _, b) = post(&api, WRITE, &t(ids[1]), None, json!({})).await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());

    // Retry of a pending action: refused with the CLI's wording.
    let (s, h, p) = post(
        &api,
        WRITE,
        &format!("/outbox/{a}/retry"),
        None,
        json!(null),
    )
    .await;
    assert!(is_problem(&h, &p, 409), "{s} {p}");
    assert!(
        detail(&p).contains("only dead-lettered actions can be retried"),
        "{p}"
    );
    let (s, h, p) = post(&api, WRITE, "/outbox/9999/cancel", None, json!(null)).await;
    assert!(
        is_problem(&h, &p, 404) && detail(&p).contains("#9999"),
        "{s} {p}"
    );

    let (s, _, c) = post(
        &api,
        WRITE,
        &format!("/outbox/{a}/cancel"),
        None,
        json!(null),
    )
    .await;
    assert_eq!((s, c["status"].as_str()), (200, Some("cancelled")), "{c}");
    let (s, h, p) = post(
        &api,
        WRITE,
        &format!("/outbox/{a}/cancel"),
        None,
        json!(null),
    )
    .await;
    assert!(is_problem(&h, &p, 409), "{s} {p}");
    assert!(detail(&p).contains("only pending or dead-lettered actions can be cancelled"));

    // A dead-lettered action goes back in the queue.
    env.db()
        .execute("UPDATE outbox SET status = 'dead' WHERE id = ?1", [b])
        .unwrap();
    let (s, _, r) = post(
        &api,
        WRITE,
        &format!("/outbox/{b}/retry"),
        None,
        json!(null),
    )
    .await;
    assert_eq!((s, r["status"].as_str()), (202, Some("pending")), "{r}");
    let report = env.push().await;
    assert_eq!(report.delivered.len(), 1);
    assert_eq!(env.applied(), vec![(ids[1], "vastaanota".to_owned())]);
}

#[test]
fn idempotency_keys_are_claimed_once_per_token_and_purged_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("s.db")).unwrap();
    let now = "2026-11-27T10:00:00.000Z";
    // Claims made before this are dead (none here yet).
    let stale = "2026-11-27T09:59:30.000Z";
    let claim = |token: &str, owner: &str| KeyClaim {
        token: token.into(),
        key: "k".into(),
        owner: owner.into(),
    };
    let (erp, crm, other) = (claim("erp", "o1"), claim("crm", "o2"), claim("erp", "o3"));
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&erp, "h1", now, stale)
            .unwrap(),
        Claim::Claimed
    );
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&other, "h1", now, stale)
            .unwrap(),
        Claim::InProgress
    );
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&other, "h2", now, stale)
            .unwrap(),
        Claim::OtherRequest
    );
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&crm, "h2", now, stale)
            .unwrap(),
        Claim::Claimed
    );
    assert!(
        !s.idempotency()
            .idempotency_answer(&other, 500, "{}")
            .unwrap(),
        "only the claim's owner answers"
    );
    assert!(s.idempotency().idempotency_answer(&erp, 202, "{}").unwrap());
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&other, "h1", now, stale)
            .unwrap(),
        Claim::Answered {
            status: 202,
            body: "{}".into()
        }
    );
    s.idempotency()
        .idempotency_release(&claim("crm", "o4"))
        .unwrap();
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&claim("crm", "o4"), "h2", now, stale)
            .unwrap(),
        Claim::InProgress,
        "only the claim's owner releases it"
    );
    s.idempotency().idempotency_release(&crm).unwrap();
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&crm, "h3", now, stale)
            .unwrap(),
        Claim::Claimed
    );
    let at = |h: u32| {
        chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::hours(h.into())
    };
    let retention = Retention {
        personal_days: 30,
        sync_runs_days: 30,
        api_calls_days: 30,
        outbox_days: 30,
        webhook_events_days: 30,
        feed_days: 30,
        idempotency_keys: huoltosync::faces::api::IDEMPOTENCY_KEEP,
        personal_fields: &[],
        booking_personal_fields: &[],
    };
    let purged = |s: &mut Store, h| {
        s.purge(&retention, at(h), false)
            .unwrap()
            .idempotency_keys_deleted
    };
    assert_eq!(purged(&mut s, 23), 0);
    assert_eq!(purged(&mut s, 25), 2);
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&erp, "h2", now, stale)
            .unwrap(),
        Claim::Claimed
    );
}

#[test]
fn an_unanswered_claim_is_taken_over_only_once_it_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("s.db")).unwrap();
    let claim = |owner: &str| KeyClaim {
        token: "erp".into(),
        key: "k".into(),
        owner: owner.into(),
    };
    let (dead, retry, late) = (claim("dead"), claim("retry"), claim("late"));
    let t = |m: u32| format!("2026-11-27T10:{m:02}:00.000Z");
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&dead, "h", &t(0), &t(0))
            .unwrap(),
        Claim::Claimed
    );
    // Claimed at 10:00: still held by a claim whose bound reaches back to 10:00.
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&retry, "h", &t(1), &t(0))
            .unwrap(),
        Claim::InProgress
    );
    // Past the bound: the retry takes it over; the dead owner can no longer answer.
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&retry, "h", &t(2), &t(1))
            .unwrap(),
        Claim::TakenOver
    );
    assert!(
        !s.idempotency()
            .idempotency_answer(&dead, 202, "old")
            .unwrap()
    );
    // The new claim holds from its takeover: another retry waits for it.
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&late, "h", &t(3), &t(1))
            .unwrap(),
        Claim::InProgress
    );
    assert!(
        s.idempotency()
            .idempotency_answer(&retry, 202, "new")
            .unwrap()
    );
    // An answered key is never taken over, however old.
    assert_eq!(
        s.idempotency()
            .idempotency_claim(&late, "h", &t(59), &t(58))
            .unwrap(),
        Claim::Answered {
            status: 202,
            body: "new".into()
        }
    );
}

/// The hash the API keeps for a request (method, path, body), as `src/faces/api/write.rs` makes it.
fn request_hash(path: &str, body: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"POST\n");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    hex::encode(h.finalize())
}

#[tokio::test]
async fn a_retry_after_the_first_request_died_queues_exactly_one_row() {
    let env = env(3).await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    let api = serve(&env).await;
    let path = format!("/tickets/sim-1/{}/accept", ids[0]);
    let body = json!({"comment": "Tulossa"});
    // What a process killed between the claim and the queueing leaves: the key claimed, no
    // answer, nothing queued (the answer and the action commit together, or neither does).
    let long_ago = huoltosync::domain::time::fmt(
        huoltosync::domain::time::now() - chrono::Duration::minutes(5),
    );
    env.db()
        .execute(
            "INSERT INTO api_idempotency (token, key, request_hash, created_at, owner, claimed_at)
             VALUES ('erp', 'k-dead', ?1, ?2, 'killed', ?2)",
            rusqlite::params![
                request_hash(
                    &format!("/api/v1{path}"),
                    &serde_json::to_vec(&body).unwrap()
                ),
                long_ago
            ],
        )
        .unwrap();
    assert!(env.outbox().is_empty());

    let (s1, h1, b1) = post(&api, WRITE, &path, Some("k-dead"), body.clone()).await;
    assert_eq!(s1, 202, "the retry runs afresh: {b1}");
    assert!(h1.get("idempotent-replayed").is_none());
    assert_eq!(env.outbox().len(), 1);
    // Its answer was kept with the action: the next retry gets it and queues nothing.
    let (s2, h2, b2) = post(&api, WRITE, &path, Some("k-dead"), body.clone()).await;
    assert_eq!((s2, &b2), (202, &b1));
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(env.outbox().len(), 1, "one row for the key");
    let (status, owner): (u16, String) = env
        .db()
        .query_row(
            "SELECT status, owner FROM api_idempotency WHERE key = 'k-dead'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(status, 202);
    assert_ne!(owner, "killed");

    // Were the dead request still running, it could not queue with the key any more: the
    // enqueue that would keep its answer fails and writes nothing.
    let mut store = Store::open_existing(&env.config.store.path).unwrap();
    let kept = KeptAnswer {
        claim: KeyClaim {
            token: "erp".into(),
            key: "k-dead".into(),
            owner: "killed".into(),
        },
        answer: Box::new(|_| Ok((202, "{}".into()))),
    };
    let now = huoltosync::domain::time::fmt(huoltosync::domain::time::now());
    let err = store
        .outbox()
        .enqueue_by(
            "sim-1",
            Some(ids[1]),
            &now,
            &now,
            &[],
            Some("erp"),
            Some(kept),
            |_| {
                Ok(huoltosync::domain::action::Action::Accept {
                    comment: Some("late".into()),
                })
            },
        )
        .unwrap_err();
    assert!(err.downcast_ref::<ClaimLost>().is_some(), "{err:#}");
    assert_eq!(env.outbox().len(), 1, "the lost claim queued nothing");
}

#[tokio::test]
async fn huoltosync_purge_drops_old_feed_events_and_old_idempotency_keys_and_keeps_recent_ones() {
    let env = env(3).await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    let api = serve(&env).await;
    let path = |id: i64| format!("/tickets/sim-1/{id}/accept");
    for (key, id) in [("old", ids[0]), ("new", ids[1])] {
        let (s, _, b) = post(&api, WRITE, &path(id), Some(key), json!({})).await;
        assert_eq!(s, 202, "{b}");
    }
    let feed_before = env.count("SELECT count(*) FROM feed");
    assert!(feed_before > 3, "the sync and the accepts wrote events");
    // The first three events are 31 days old ([api] feed_retain_days = 30 by default), key
    // "old" 25 hours old (keys are kept 24 h).
    let ago = |h: i64| {
        huoltosync::domain::time::fmt(huoltosync::domain::time::now() - chrono::Duration::hours(h))
    };
    let db = env.db();
    let first: i64 = db
        .query_row("SELECT min(seq) FROM feed", [], |r| r.get(0))
        .unwrap();
    db.execute(
        "UPDATE feed SET at = ?1 WHERE seq < ?2",
        rusqlite::params![ago(31 * 24), first + 3],
    )
    .unwrap();
    db.execute(
        "UPDATE api_idempotency SET created_at = ?1 WHERE key = 'old'",
        [ago(25)],
    )
    .unwrap();

    let (code, out, err) = env.cli(&["purge", "--dry-run", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let dry: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            dry["feed_events_deleted"].as_u64(),
            dry["idempotency_keys_deleted"].as_u64()
        ),
        (Some(3), Some(1)),
        "{dry}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM feed"),
        feed_before,
        "a dry run changes nothing"
    );

    let (code, out, err) = env.cli(&["purge"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("3 change-feed event(s) older than 30 days")
            && out.contains("1 Idempotency-Key(s) older than 24 h"),
        "{out}"
    );
    assert_eq!(env.count("SELECT count(*) FROM feed"), feed_before - 3);
    assert_eq!(
        env.count("SELECT min(seq) FROM feed"),
        first + 3,
        "recent events are kept"
    );
    let keys: Vec<String> = env
        .db()
        .prepare("SELECT key FROM api_idempotency")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(keys, vec!["new".to_owned()], "the recent key is kept");
    // The kept key still answers its retry, and queues nothing.
    let (s, h, _) = post(&api, WRITE, &path(ids[1]), Some("new"), json!({})).await;
    assert_eq!(
        (s, &h["idempotent-replayed"]),
        (
            202,
            &"true".parse::<reqwest::header::HeaderValue>().unwrap()
        )
    );
    assert_eq!(env.outbox().len(), 2);
}
