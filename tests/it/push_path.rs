//! The push path: actions reach Tampuuri with the right body, once, in order per ticket;
//! bad actions are refused with nothing queued; failures retry or dead-letter.

use serde_json::{Value, json};

use crate::helpers::{Setup, TestEnv, wait_for};

async fn synced(n: u64) -> (TestEnv, Vec<i64>) {
    let env = Setup::tickets(n).start().await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    (env, ids)
}

fn s(id: i64) -> String {
    id.to_string()
}

#[tokio::test]
async fn each_action_reaches_tampuuri_with_the_right_body() {
    let (env, ids) = synced(6).await;
    let (a, b, c) = (s(ids[0]), s(ids[1]), s(ids[2]));
    env.task_ok(&["accept", &a, "--comment", "Tulen huomenna"])
        .await;
    env.task_ok(&["accept", &b]).await;
    env.task_ok(&["hold", &b, "--reason", "Odotetaan varaosia"])
        .await;
    env.task_ok(&["done", &c, "--comment", "Korjattu", "--no-notify"])
        .await;
    let photo = env.dir.path().join("vuoto.jpg");
    std::fs::write(&photo, b"\xff\xd8\xff kuva").unwrap();
    env.task_ok(&[
        "new",
        "--parent",
        &a,
        "--title",
        "Jatkotyö",
        "--description",
        "Putki vaihdettava",
        "--details",
        "Avain huoltokonttorissa",
        "--urgency",
        "Kiireellinen",
        "--attach",
        photo.to_str().unwrap(),
    ])
    .await;
    let report = env.push().await;
    assert_eq!(
        (report.delivered.len(), report.dead.len(), report.pending),
        (5, 0, 0)
    );

    let log = env.sim().log();
    assert_eq!(log.len(), 5, "each action applied once");
    let body = |ticket: i64, action: &str| {
        let found: Vec<_> = log
            .iter()
            .filter(|e| (ticket == 0 || e.ticket_id == ticket) && e.action == action)
            .collect();
        assert_eq!(found.len(), 1, "{action} on {ticket}");
        found[0].body.clone()
    };
    assert_eq!(
        body(ids[0], "vastaanota"),
        json!({"Kommentti": "Tulen huomenna"})
    );
    assert_eq!(body(ids[1], "vastaanota"), json!({}));
    assert_eq!(
        body(ids[1], "odotukseen"),
        json!({"Kommentti": "Odotetaan varaosia", "IlmoitaOsallisille": true})
    );
    assert_eq!(
        body(ids[2], "kuittaatehdyksi"),
        json!({"Kommentti": "Korjattu", "IlmoitaOsallisille": false})
    );
    let create = body(0, "create");
    let parent = env.sim().ticket("sim-1", ids[0]).unwrap();
    let follow_up = log.iter().position(|e| e.action == "create").unwrap();
    let parent_accept = log
        .iter()
        .position(|e| e.ticket_id == ids[0] && e.action == "vastaanota")
        .unwrap();
    assert!(
        parent_accept < follow_up,
        "the follow-up waits for its parent's earlier action"
    );
    assert_eq!(create["ParentId"], ids[0]);
    assert_eq!(
        create["KustannuspaikkaId"],
        parent.kustannuspaikka_id.unwrap(),
        "inherited from the parent"
    );
    assert_eq!(
        create["TilaId"],
        parent.tila_id.unwrap(),
        "inherited from the parent"
    );
    assert_eq!(create["TyonsuorittajaId"], 4711, "assigned to us");
    assert_eq!(create["Kiireellisyys"], "Kiireellinen");
    let details = create["TyotehtavanLisatiedot"].as_str().unwrap();
    assert!(
        details.starts_with("Avain huoltokonttorissa\n\n[huoltosync:"),
        "{details}"
    );
    assert_eq!(
        create["Liitteet"],
        json!([{"FileName": "vuoto.jpg", "ContentType": "image/jpeg", "Description": null, "Size": 8}])
    );

    let state = |id: i64| env.sim().ticket("sim-1", id).unwrap().tila;
    assert_eq!(
        (state(ids[0]), state(ids[1]), state(ids[2])),
        ("Vastaanotettu".into(), "Odottaa".into(), "Tehty".into())
    );
    // The new ticket is mirrored at once, without a poll; its photo bytes are gone from the store.
    let new_id = log[follow_up].ticket_id;
    assert!(env.open_ids("sim-1").contains(&new_id));
    assert_eq!(
        env.count("SELECT count(*) FROM outbox_attachments WHERE content IS NULL AND size = 8"),
        1
    );
    assert_eq!(
        env.count("SELECT created_ticket_id FROM outbox WHERE kind = 'create'"),
        new_id
    );
}

#[tokio::test]
async fn one_tickets_actions_arrive_in_queue_order_and_tickets_go_in_parallel() {
    let (env, ids) = synced(8).await;
    let t = s(ids[0]);
    for args in [
        vec!["accept", t.as_str()],
        vec!["hold", &t, "--reason", "Odotetaan"],
        vec!["accept", &t],
        vec!["hold", &t, "--reason", "Taas odotetaan"],
        vec!["accept", &t],
        vec!["done", &t],
    ] {
        env.task_ok(&args).await;
    }
    for id in &ids[1..5] {
        env.task_ok(&["accept", &s(*id)]).await;
    }
    env.faults(json!({"latency_ms": 150}));
    let report = env.push().await;
    assert_eq!(report.delivered.len(), 10);
    let mine: Vec<String> = env
        .applied()
        .into_iter()
        .filter(|(id, _)| *id == ids[0])
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        mine,
        [
            "vastaanota",
            "odotukseen",
            "vastaanota",
            "odotukseen",
            "vastaanota",
            "kuittaatehdyksi"
        ]
    );
    assert!(
        env.sim().max_in_flight() >= 3,
        "different tickets are pushed side by side: {}",
        env.sim().max_in_flight()
    );
    assert_eq!(env.sim().ticket("sim-1", ids[0]).unwrap().tila, "Tehty");
}

#[tokio::test]
async fn a_rejected_action_is_dead_lettered_blocks_only_its_ticket_and_retry_delivers_it() {
    // One at a time, so the rejection hits the oldest action.
    let env = Setup::tickets(4).push_toml("concurrency = 1").start().await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    let (a, b) = (s(ids[0]), s(ids[1]));
    env.task_ok(&["accept", &a]).await;
    env.task_ok(&["hold", &a, "--reason", "Odotetaan"]).await;
    env.task_ok(&["accept", &b]).await;
    env.faults(json!({"reject_next": 1}));
    let report = env.push().await;
    assert_eq!(report.dead.len(), 1);
    let (dead, why) = &report.dead[0];
    assert_eq!(
        (dead.ticket_id, dead.kind.as_str()),
        (Some(ids[0]), "accept")
    );
    assert!(
        why.contains("400") && why.contains("Simuloitu hylkäys"),
        "{why}"
    );
    assert_eq!(
        env.applied(),
        [(ids[1], "vastaanota".to_owned())],
        "only the other ticket went through"
    );
    assert_eq!(report.pending, 1, "the hold waits behind the dead letter");

    let (code, out, _) = env.cli(&["outbox", "--failed", "--json"]).await;
    assert_eq!(code, 0);
    let failed: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("Simuloitu hylkäys")
    );
    let (_, status, _) = env.cli(&["status", "--json"]).await;
    let status: Vec<Value> = serde_json::from_str(&status).unwrap();
    assert_eq!(
        (
            status[0]["dead_letters"].clone(),
            status[0]["outbox_pending"].clone()
        ),
        (json!(1), json!(1))
    );

    let (code, out, _) = env.cli(&["outbox", "retry", &dead.id.to_string()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("re-queued"));
    let report = env.push().await;
    assert_eq!(
        (report.delivered.len(), report.dead.len(), report.pending),
        (2, 0, 0)
    );
    assert_eq!(env.sim().ticket("sim-1", ids[0]).unwrap().tila, "Odottaa");
}

#[tokio::test]
async fn run_once_exits_nonzero_and_names_a_dead_letter() {
    let (env, ids) = synced(3).await;
    env.task_ok(&["accept", &s(ids[0])]).await;
    // The manager finished it in the meantime: Tampuuri refuses the accept (409).
    env.patch("sim-1", ids[0], json!({"Tila": "Valmis"}));
    let (code, out, _) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("dead-lettered #1: accept ticket") && out.contains("409"),
        "{out}"
    );
    assert!(
        out.contains("sim-1: ok"),
        "the poll itself succeeded: {out}"
    );
    // The outbox keeps it dead with Tampuuri's answer, for a dispatcher; nothing was applied.
    assert_eq!(
        env.outbox(),
        [(1, "dead".into(), "accept".into(), Some(ids[0]))]
    );
    let error: String = env
        .db()
        .query_row("SELECT last_error FROM outbox WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(error.contains("409"), "{error}");
    assert!(env.sim().log().is_empty(), "Tampuuri applied nothing");
    assert_eq!(env.sim().ticket("sim-1", ids[0]).unwrap().tila, "Valmis");
}

#[tokio::test]
async fn transient_failures_are_retried_and_delivered_exactly_once() {
    let (env, ids) = synced(4).await;
    let (a, b, c) = (s(ids[0]), s(ids[1]), s(ids[2]));
    env.task_ok(&["accept", &a]).await;
    env.task_ok(&["accept", &b]).await;
    env.task_ok(&[
        "new",
        "--account",
        "sim-1",
        "--cost-centre",
        "120",
        "--title",
        "Uusi",
        "--description",
        "Kuvaus",
    ])
    .await;
    env.task_ok(&["accept", &c]).await;
    // 5xx before applying, applied-then-dropped for the accept and the create, a refused connection.
    env.faults(json!({"error_next": 1}));
    let r = env.push().await;
    assert_eq!(
        r.delivered.len(),
        4,
        "all delivered in one pass (retries within linger)"
    );
    env.task_ok(&["done", &a]).await;
    env.task_ok(&[
        "new",
        "--account",
        "sim-1",
        "--cost-centre",
        "121",
        "--title",
        "Toinen",
        "--description",
        "Kuvaus",
    ])
    .await;
    // The done's send is preceded by a read of the ticket (the mirror does not know the
    // accept's new Muokattu yet), which takes one of these without effect: reads apply nothing.
    env.faults(json!({"drop_after_apply_next": 3}));
    let r = env.push().await;
    assert_eq!((r.delivered.len(), r.dead.len()), (2, 0));
    let outcomes: Vec<String> = {
        let db = env.db();
        let mut st = db
            .prepare("SELECT outcome FROM outbox WHERE id > 4 ORDER BY id")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        outcomes,
        ["already applied", "already applied"],
        "found applied, not sent again"
    );
    let creates = env.applied().iter().filter(|(_, a)| a == "create").count();
    assert_eq!(creates, 2, "no duplicate ticket");
    assert_eq!(
        env.applied()
            .iter()
            .filter(|(id, a)| *id == ids[0] && a == "kuittaatehdyksi")
            .count(),
        1
    );
    assert_eq!(env.applied().len(), 6, "every action applied exactly once");
}

#[tokio::test]
async fn every_bad_action_is_refused_with_a_clear_error_and_nothing_queued() {
    let env = Setup::tickets(4)
        .push_toml("max_attachment_bytes = 100")
        .start()
        .await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    let (a, b) = (s(ids[0]), s(ids[1]));
    let big = env.dir.path().join("iso.jpg");
    std::fs::write(&big, vec![0u8; 101]).unwrap();
    let long = |n: usize| "x".repeat(n);
    // `task new` on sim-1 with a cost centre, a title and a description, then `extra`.
    let new = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "new",
            "--account",
            "sim-1",
            "--cost-centre",
            "1",
            "--title",
            "T",
            "--description",
            "D",
        ]
        .map(String::from)
        .to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // A new ticket with the title or description replaced.
    let with = |key: &str, value: String| -> Vec<String> {
        let mut v = new(&[]);
        let at = v.iter().position(|a| a == key).unwrap() + 1;
        v[at] = value;
        v
    };
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let dir = env.dir.path().to_string_lossy().into_owned();
    let big = big.to_string_lossy().into_owned();
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            strs(&["accept", "999999"]),
            strs(&["ticket 999999", "not in the mirror"]),
        ),
        (
            strs(&["hold", &a, "--reason", "x"]),
            vec![
                format!("ticket {a}"),
                "Avoin".into(),
                "Odottaa".into(),
                "Vastaanotettu".into(),
            ],
        ),
        (strs(&["hold", &a]), strs(&["needs a reason"])),
        (
            strs(&["hold", &a, "--reason", "  "]),
            strs(&["needs a reason"]),
        ),
        (
            strs(&[
                "new",
                "--account",
                "sim-1",
                "--title",
                "T",
                "--description",
                "D",
            ]),
            strs(&["--cost-centre"]),
        ),
        (
            new(&["--attach", "/nonexistent/kuva.jpg"]),
            strs(&["/nonexistent/kuva.jpg"]),
        ),
        (new(&["--attach", &dir]), strs(&["not a file"])),
        (
            new(&["--attach", &big]),
            strs(&["iso.jpg", "101 bytes", "100"]),
        ),
        (with("--title", long(256)), strs(&["Otsikko", "256"])),
        (
            with("--description", long(8001)),
            strs(&["TyotehtavanKuvaus", "8001"]),
        ),
        (
            new(&["--details", &long(19990)]),
            strs(&["TyotehtavanLisatiedot", "20000"]),
        ),
        (
            strs(&[
                "new",
                "--parent",
                "999999",
                "--title",
                "T",
                "--description",
                "D",
            ]),
            strs(&["999999"]),
        ),
        (
            strs(&["accept", &b, "--account", "sim-9"]),
            strs(&["sim-9"]),
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = env.task_err(&args).await;
        for e in expected {
            assert!(
                err.contains(&e),
                "task {:?}: {e:?} not in: {err}",
                &args[..args.len().min(3)]
            );
        }
        assert!(env.outbox().is_empty(), "nothing queued by {args:?}");
    }
    // Done on a parent whose follow-up is not carried out: refused while queued and while open.
    env.task_ok(&[
        "new",
        "--parent",
        &a,
        "--title",
        "Jatko",
        "--description",
        "D",
    ])
    .await;
    let err = env.task_err(&["done", &a]).await;
    assert!(err.contains("follow-up") && err.contains("#1"), "{err}");
    env.push().await;
    let child = env.sim().log()[0].ticket_id;
    let err = env.task_err(&["done", &a]).await;
    assert!(err.contains(&format!("{child} (Avoin)")), "{err}");
    assert_eq!(env.outbox().len(), 1);
    // Once the follow-up is done, the parent can be.
    env.task_ok(&["done", &s(child)]).await;
    env.task_ok(&["done", &a]).await;
}

#[tokio::test]
async fn the_followup_check_can_be_switched_off() {
    let env = Setup::tickets(2)
        .push_toml("require_followups_done = false")
        .start()
        .await;
    env.sync_ok().await;
    let a = s(env.open_ids("sim-1")[0]);
    env.task_ok(&[
        "new",
        "--parent",
        &a,
        "--title",
        "Jatko",
        "--description",
        "D",
    ])
    .await;
    // Done on the parent while its follow-up is queued: queued too (not refused), after it.
    env.task_ok(&["done", &a]).await;
    let parent: i64 = a.parse().unwrap();
    assert_eq!(
        env.outbox(),
        [
            (1, "pending".into(), "create".into(), None),
            (2, "pending".into(), "done".into(), Some(parent)),
        ]
    );
}

#[tokio::test]
async fn a_pending_state_survives_a_poll_that_still_shows_the_old_state() {
    let (env, ids) = synced(3).await;
    let a = s(ids[0]);
    env.task_ok(&["accept", &a]).await;
    env.sync_ok().await;
    let (_, out, _) = env.cli(&["tasks", "--json"]).await;
    let tasks: Vec<Value> = serde_json::from_str(&out).unwrap();
    let t = tasks.iter().find(|t| t["id"] == ids[0]).unwrap();
    assert_eq!(
        (t["state"].as_str(), t["pending_state"].as_str()),
        (Some("Avoin"), Some("Vastaanotettu"))
    );
    assert_eq!(
        env.count(&format!(
            "SELECT pending_state = 'Vastaanotettu' FROM open_tickets WHERE id = {}",
            ids[0]
        )),
        1
    );
    // Validation follows the pending state: a second accept is refused, a hold is allowed.
    let err = env.task_err(&["accept", &a]).await;
    assert!(
        err.contains("its state is Vastaanotettu (after queued actions; Tampuuri last said Avoin)"),
        "{err}"
    );
    env.task_ok(&["hold", &a, "--reason", "Odotetaan"]).await;
    // After delivery and before the next poll, the delivered state still counts: Odottaa.
    let r = env.push().await;
    assert_eq!(r.delivered.len(), 2);
    env.task_ok(&["accept", &a]).await;
    let err = env.task_err(&["accept", &a]).await;
    assert!(err.contains("its state is Vastaanotettu"), "{err}");
    // Each refusal reads as a sentence, whatever the action.
    env.task_ok(&["done", &a]).await;
    let err = env.task_err(&["done", &a]).await;
    assert!(
        err.contains(&format!(
            "cannot mark ticket {a} in account sim-1 done: its state is Tehty"
        )),
        "{err}"
    );
    let err = env.task_err(&["hold", &a, "--reason", "x"]).await;
    assert!(
        err.contains(&format!("cannot put ticket {a} in account sim-1 on hold:")),
        "{err}"
    );
}

#[tokio::test]
async fn an_ambiguous_id_needs_account_and_now_pushes_at_once() {
    let env = Setup::tickets(3).accounts(2).start().await;
    env.sync_ok().await;
    let id = s(env.open_ids("sim-1")[0]);
    assert!(
        env.open_ids("sim-2").contains(&env.open_ids("sim-1")[0]),
        "ids are account-local and overlap"
    );
    let err = env.task_err(&["accept", &id]).await;
    assert!(
        err.contains("sim-1, sim-2") && err.contains("--account"),
        "{err}"
    );
    let out = env
        .task_ok(&["accept", &id, "--account", "sim-2", "--now", "--json"])
        .await;
    let queued: Value = serde_json::from_str(out.split("push:").next().unwrap()).unwrap();
    assert_eq!(
        (
            queued["account"].as_str(),
            queued["action"].as_str(),
            queued["outbox_id"].as_i64()
        ),
        (Some("sim-2"), Some("accept"), Some(1))
    );
    assert!(out.contains("push: 1 delivered"), "{out}");
    assert_eq!(env.sim().log()[0].account, "sim-2");
}

#[tokio::test]
async fn actions_for_removed_accounts_and_reassigned_tickets_are_dead_lettered() {
    let env = Setup::tickets(3).accounts(2).start().await;
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[0];
    env.task_ok(&["accept", &s(id), "--account", "sim-1"]).await;
    env.task_ok(&["accept", &s(id), "--account", "sim-2"]).await;
    // sim-2 leaves the config; sim-1's ticket is re-assigned and the poll sees it.
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    let cut = text.find("[[accounts]]\nname = \"sim-2\"").unwrap();
    std::fs::write(env.config_path(), &text[..cut]).unwrap();
    env.patch("sim-1", id, json!({"TyonsuorittajaId": 5020}));
    env.sync_ok().await;
    let (code, out, _) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 1);
    assert!(out.contains("re-assigned away from us"), "{out}");
    assert!(
        out.contains("\"sim-2\" is no longer in the config"),
        "{out}"
    );
    assert!(env.sim().log().is_empty(), "nothing was sent");
    assert_eq!(
        env.outbox(),
        [
            (1, "dead".into(), "accept".into(), Some(id)),
            (2, "dead".into(), "accept".into(), Some(id)),
        ]
    );
}

#[tokio::test]
async fn outbox_cancel_drops_an_action_and_says_what() {
    let (env, ids) = synced(2).await;
    let photo = env.dir.path().join("k.png");
    std::fs::write(&photo, b"png").unwrap();
    env.task_ok(&[
        "new",
        "--parent",
        &s(ids[0]),
        "--title",
        "T",
        "--description",
        "D",
        "--attach",
        photo.to_str().unwrap(),
    ])
    .await;
    let (code, out, _) = env.cli(&["outbox", "cancel", "1"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("cancelled #1") && out.contains("1 attachment(s) dropped"),
        "{out}"
    );
    assert_eq!(
        env.outbox(),
        [(1, "cancelled".into(), "create".into(), None)]
    );
    assert_eq!(
        env.count("SELECT count(*) FROM outbox_attachments WHERE content IS NOT NULL"),
        0
    );
    let r = env.push().await;
    assert!(r.delivered.is_empty() && env.sim().log().is_empty());
    let (code, _, err) = env.cli(&["outbox", "cancel", "1"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("#1 is cancelled"), "{err}");
    let (code, _, err) = env.cli(&["outbox", "retry", "7"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("#7 does not exist"), "{err}");
}

#[tokio::test]
async fn a_transient_failure_past_the_deadline_is_dead_lettered() {
    let (env, ids) = synced(2).await;
    env.task_ok(&["accept", &s(ids[0])]).await;
    env.db()
        .execute(
            "UPDATE outbox SET deadline_at = '2000-01-01T00:00:00.000Z'",
            [],
        )
        .unwrap();
    env.faults(json!({"error_rate": 1.0}));
    let r = env.push().await;
    assert_eq!(r.dead.len(), 1);
    assert!(
        r.dead[0].1.contains("gave up after 1 attempts"),
        "{}",
        r.dead[0].1
    );
}

/// A push pass that does not wait for retries (a minute away): an in-doubt action stays in
/// doubt until the next pass.
fn no_linger(mut env: TestEnv) -> TestEnv {
    env.config.push.linger = std::time::Duration::ZERO;
    env.config.push.retry_initial = std::time::Duration::from_secs(60);
    env.config.push.retry_max = std::time::Duration::from_secs(60);
    env
}

/// Makes every pending action due now (instead of waiting out its retry delay).
fn due_now(env: &TestEnv) {
    env.db()
        .execute(
            "UPDATE outbox SET next_attempt_at = '2000-01-01T00:00:00.000Z' WHERE status = 'pending'",
            [],
        )
        .unwrap();
}

#[tokio::test]
async fn a_lost_answer_then_a_third_party_move_is_dead_lettered_never_applied_twice() {
    let env = no_linger(Setup::tickets(6).start().await);
    let ids = env.truth("sim-1");
    for id in &ids[3..6] {
        env.patch("sim-1", *id, json!({"Tila": "Vastaanotettu"}));
    }
    env.sync_ok().await;
    // (ticket, action, what the manager's staff do after Tampuuri applied ours unanswered)
    let cases = [
        (ids[0], vec!["accept"], "Avoin"),
        (ids[1], vec!["accept"], "Odottaa"),
        (ids[2], vec!["done"], "Vastaanotettu"),
        (
            ids[3],
            vec!["hold", "--reason", "Odotetaan osia"],
            "Vastaanotettu",
        ),
        (ids[4], vec!["hold", "--reason", "Odotetaan osia"], "Avoin"),
        (ids[5], vec!["done"], "Odottaa"),
    ];
    for (id, args, _) in &cases {
        let mut args = args.clone();
        let t = s(*id);
        args.insert(1, &t);
        env.task_ok(&args).await;
    }
    env.faults(json!({"drop_after_apply_rate": 1.0}));
    let r = env.push().await;
    assert_eq!(
        (r.delivered.len(), r.dead.len(), r.pending),
        (0, 0, 6),
        "every answer lost: all in doubt"
    );
    assert_eq!(env.applied().len(), 6, "each applied once");
    env.sim().clear_faults();
    for (id, _, moved_to) in &cases {
        env.patch("sim-1", *id, json!({"Tila": moved_to}));
    }
    due_now(&env);
    let r = env.push().await;
    assert_eq!((r.delivered.len(), r.dead.len(), r.pending), (0, 6, 0));
    assert_eq!(env.applied().len(), 6, "nothing was sent again");
    for (row, why) in &r.dead {
        assert!(
            why.contains(&format!(
                "the ticket changed in Tampuuri while our {} was in flight",
                row.kind
            )) && why.contains(&format!(
                "check ticket {} in Tampuuri",
                row.ticket_id.unwrap()
            )) && why.contains(&format!("outbox retry {}", row.id))
                && why.contains(&format!("outbox cancel {}", row.id)),
            "{why}"
        );
    }
    let (code, out, _) = env.cli(&["outbox", "--failed", "--json"]).await;
    assert_eq!(code, 0);
    let failed: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(failed.len(), 6, "{out}");
    // The check refreshed the mirror, with a history row naming what changed.
    for (id, _, moved_to) in &cases {
        let (state, fields): (String, String) = env
            .db()
            .query_row(
                "SELECT new_state, fields FROM ticket_changes WHERE ticket_id = ?1 ORDER BY seq DESC LIMIT 1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(state, *moved_to, "ticket {id}");
        assert!(fields.contains("\"modified\""), "ticket {id}: {fields}");
    }

    // A dispatcher who checked in Tampuuri and retries sends it once more, on purpose.
    let (code, out, _) = env
        .cli(&["outbox", "retry", &r.dead[0].0.id.to_string()])
        .await;
    assert_eq!(code, 0, "{out}");
    let r2 = env.push().await;
    assert_eq!(r2.delivered.len(), 1);
    assert_eq!(env.applied().len(), 7);
}

#[tokio::test]
async fn an_in_doubt_action_on_an_unchanged_ticket_is_checked_and_sent_again_once() {
    // The accept is delivered; the mirror does not know its new Muokattu yet, so the hold
    // behind it reads the ticket first. The hold's send then fails with a 5xx (in doubt); the
    // check finds the ticket exactly as read before the send, and sends it again.
    let env = no_linger(Setup::tickets(2).start().await);
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[0];
    env.task_ok(&["accept", &s(id)]).await;
    env.task_ok(&["hold", &s(id), "--reason", "Odotetaan"])
        .await;
    let gets = env.get_calls();
    // POST vastaanota, GET the ticket, then POST odotukseen and everything after it fails.
    env.faults(json!({"error_from_call": env.sim().total_calls() + 3}));
    let r = env.push().await;
    assert_eq!((r.delivered.len(), r.pending), (1, 1), "{:?}", r.dead);
    assert_eq!(env.get_calls() - gets, 1, "one read before the hold");
    assert_eq!(
        env.count("SELECT in_doubt FROM outbox WHERE kind = 'hold'"),
        1
    );
    env.sim().clear_faults();
    due_now(&env);
    let r = env.push().await;
    assert_eq!((r.delivered.len(), r.dead.len()), (1, 0), "{:?}", r.dead);
    assert_eq!(
        env.applied(),
        [(id, "vastaanota".to_owned()), (id, "odotukseen".to_owned())],
        "each applied exactly once"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE outcome = 'sent' AND kind = 'hold'"),
        1,
        "the hold was checked, found unchanged, and sent again"
    );
}

#[tokio::test]
async fn a_ticket_that_had_left_and_is_refreshed_by_a_check_keeps_its_history_and_reason() {
    let env = no_linger(Setup::tickets(2).start().await);
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[0];
    env.task_ok(&["done", &s(id)]).await;
    env.faults(json!({"drop_after_apply_rate": 1.0}));
    let r = env.push().await;
    assert_eq!(r.pending, 1, "the answer was lost");
    env.sim().clear_faults();
    env.sync_ok().await;
    let left = "SELECT left_reason FROM tickets WHERE open = 0";
    let reason = |env: &TestEnv| -> String { env.db().query_row(left, [], |r| r.get(0)).unwrap() };
    assert_eq!(reason(&env), "state", "the poll saw it done");
    // The manager re-assigns it to another contractor before our check.
    env.patch(
        "sim-1",
        id,
        json!({"TyonsuorittajaId": 5020, "Tila": "Avoin"}),
    );
    let changes_before = env.count("SELECT count(*) FROM ticket_changes");
    due_now(&env);
    let r = env.push().await;
    assert_eq!(r.dead.len(), 1);
    assert!(
        r.dead[0].1.contains("re-assigned away from us (to 5020)"),
        "{}",
        r.dead[0].1
    );
    assert_eq!(reason(&env), "reassigned");
    assert_eq!(
        env.count("SELECT count(*) FROM ticket_changes"),
        changes_before + 1
    );
    let (kind, fields, new_state): (String, String, String) = env
        .db()
        .query_row(
            "SELECT kind, fields, new_state FROM ticket_changes ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((kind.as_str(), new_state.as_str()), ("changed", "Avoin"));
    assert!(
        fields.contains("\"assignee_id\"") && fields.contains("\"state\""),
        "{fields}"
    );
    assert_eq!(
        env.count(&format!("SELECT assignee_id FROM tickets WHERE id = {id}")),
        5020
    );
    assert_eq!(env.applied().len(), 1, "never sent twice");
}

#[tokio::test]
async fn the_simulator_moves_muokattu_on_every_change_admin_patch_included() {
    let (env, ids) = synced(2).await;
    let m = |env: &TestEnv| env.sim().ticket("sim-1", ids[0]).unwrap().muokattu;
    let mut seen = vec![m(&env)];
    env.patch("sim-1", ids[0], json!({"Otsikko": "Uusi otsikko"}));
    seen.push(m(&env));
    // Even a PATCH that tries to set Muokattu, or changes nothing else, moves it.
    env.patch("sim-1", ids[0], json!({"Muokattu": seen[0]}));
    seen.push(m(&env));
    env.task_ok(&["accept", &s(ids[0]), "--now"]).await;
    seen.push(m(&env));
    let instants: Vec<_> = seen
        .iter()
        .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap())
        .collect();
    assert!(instants.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

/// An in-doubt create is looked for wherever the new ticket can be: on every page of a server
/// that caps its pages and reports no `Total`, and among finished tickets when the manager's
/// staff closed it before the check. Found, it is not sent again.
#[tokio::test]
async fn an_in_doubt_create_is_found_on_capped_pages_and_after_staff_finished_it() {
    let env = no_linger(Setup::tickets(300).start().await);
    env.sync_ok().await;
    let creates = |env: &TestEnv| env.applied().iter().filter(|(_, a)| a == "create").count();
    for (n, staff) in [(1, None), (2, Some("Valmis")), (3, Some("Tehty"))] {
        env.task_ok(&[
            "new",
            "--account",
            "sim-1",
            "--cost-centre",
            "120",
            "--title",
            &format!("Jatkotyö {n}"),
            "--description",
            "Kuvaus",
        ])
        .await;
        env.faults(json!({"drop_after_apply_rate": 1.0}));
        let r = env.push().await;
        assert_eq!(r.pending, 1, "case {n}: the answer was lost: in doubt");
        assert_eq!(creates(&env), n, "case {n}: applied once");
        env.sim().clear_faults();
        let created = env.applied().last().unwrap().0;
        if let Some(state) = staff {
            env.patch("sim-1", created, json!({"Tila": state}));
        }
        env.faults(json!({"page_cap": 100, "no_total": true}));
        due_now(&env);
        let r = env.push().await;
        env.sim().clear_faults();
        assert_eq!(
            (r.delivered.len(), r.pending, r.dead.len()),
            (1, 0, 0),
            "case {n} ({staff:?}): found, so delivered"
        );
        assert_eq!(creates(&env), n, "case {n} ({staff:?}): not created again");
    }
}

/// A marker search that cannot finish (a server that lies about `Total` and ignores `Offset`)
/// is bounded, and leaves the create in doubt rather than sending it again.
#[tokio::test]
async fn an_in_doubt_create_whose_search_cannot_finish_is_not_sent_again() {
    let mut env = no_linger(Setup::tickets(300).start().await);
    env.config.sync.max_pages = 5;
    env.sync_ok().await;
    env.task_ok(&[
        "new",
        "--account",
        "sim-1",
        "--cost-centre",
        "120",
        "--title",
        "Uusi",
        "--description",
        "Kuvaus",
    ])
    .await;
    env.faults(json!({"drop_after_apply_rate": 1.0}));
    env.push().await;
    env.sim().clear_faults();
    let before = env.selaa_calls();
    env.faults(json!({"lie_total": 1_000_000_000_000_000_000u64, "ignore_offset": true}));
    due_now(&env);
    let r = env.push().await;
    env.sim().clear_faults();
    let after = env.selaa_calls();
    assert_eq!((r.delivered.len(), r.pending), (0, 1), "still in doubt");
    assert!(after - before <= 5, "{} selaa calls", after - before);
    let creates = env.applied().iter().filter(|(_, a)| a == "create").count();
    assert_eq!(creates, 1, "not sent again");
}

#[tokio::test]
async fn a_dead_lettered_hold_whose_reason_the_purge_erased_is_not_retried() {
    let env = Setup::tickets(2).start().await;
    env.sync_ok().await;
    let a = s(env.open_ids("sim-1")[0]);
    env.task_ok(&["accept", &a]).await;
    assert_eq!(env.push().await.delivered.len(), 1);
    env.task_ok(&["hold", &a, "--reason", "Odotetaan varaosaa"])
        .await;
    // Dead-lettered long ago (a rejection, say): the purge erases the hold's reason.
    let id: i64 = env
        .db()
        .query_row("SELECT max(id) FROM outbox", [], |r| r.get(0))
        .unwrap();
    env.db()
        .execute(
            "UPDATE outbox SET status = 'dead', last_error = 'HTTP 400', created_at = '2020-01-01T00:00:00.000Z' WHERE id = ?1",
            [id],
        )
        .unwrap();
    let (code, out, err) = env.cli(&["purge"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = env.cli(&["outbox", "retry", &id.to_string()]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("#{id}")) && err.contains("erased"),
        "{err}"
    );
    let report = env.push().await;
    assert_eq!((report.delivered.len(), report.pending), (0, 0));
    assert_eq!(env.applied().len(), 1, "only the accept reached Tampuuri");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_queue_keeps_no_other_queues_delivered_action_in_doubt() {
    let env = Setup::tickets(2)
        .accounts(2)
        .push_toml("concurrency = 4")
        .start()
        .await;
    env.sync_ok().await;
    let t = s(env.open_ids("sim-1")[0]);
    env.task_ok(&["accept", &t, "--account", "sim-1"]).await;
    env.task_ok(&["accept", &t, "--account", "sim-2"]).await;
    // sim-2's change is applied, then its answer takes 8 s.
    env.faults(json!({"latency_after_apply_ms": 8000, "only_account": "sim-2"}));
    let (config, path) = (env.config.clone(), env.config.store.path.clone());
    let push = tokio::spawn(async move {
        let api = huoltosync::tampuuri::Api::new(&config).unwrap();
        let store = huoltosync::store::Handle::open(path).await.unwrap();
        huoltosync::engine::push::push_pending(&config, &api, &store)
            .await
            .unwrap()
    });
    let status = |account: &str| -> String {
        env.db()
            .query_row(
                "SELECT status FROM outbox WHERE account = ?1",
                [account],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert!(
        wait_for(std::time::Duration::from_secs(30), || status("sim-1")
            == "delivered")
        .await,
        "{}",
        status("sim-1")
    );
    assert!(
        !push.is_finished() && status("sim-2") == "pending",
        "sim-1's delivery was recorded while sim-2's answer was still coming"
    );
    let report = push.await.unwrap();
    assert_eq!(report.delivered.len(), 2);
}

/// A proxy on loopback in front of `upstream` (the simulator's root). The next `redirects`
/// state changes (`POST …/vastaanota`, `…/odotukseen`, `…/kuittaatehdyksi`) are answered with
/// `303 See Other` to `location`; with `apply_first` they reach the simulator first (Tampuuri
/// acted on the POST, then redirected), else they never do. Everything else is passed on.
async fn redirecting_proxy(
    upstream: String,
    location: String,
    apply_first: bool,
    redirects: u32,
) -> String {
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicU32, Ordering};
    let left = std::sync::Arc::new(AtomicU32::new(redirects));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let (http, upstream, location, left) = (
                http.clone(),
                upstream.clone(),
                location.clone(),
                left.clone(),
            );
            async move {
                let path = uri.path().to_owned();
                let change = method == Method::POST
                    && ["/vastaanota", "/odotukseen", "/kuittaatehdyksi"]
                        .iter()
                        .any(|a| path.ends_with(a));
                let redirect = change
                    && left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                if redirect && !apply_first {
                    return (StatusCode::SEE_OTHER, [("location", location)]).into_response();
                }
                let mut req = http.request(method, format!("{upstream}{uri}")).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        req = req.header(name, value);
                    }
                }
                let resp = req.send().await.unwrap();
                if redirect {
                    return (StatusCode::SEE_OTHER, [("location", location)]).into_response();
                }
                let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
                (status, resp.bytes().await.unwrap()).into_response()
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v10/api/")
}

#[tokio::test]
async fn a_redirect_answering_a_state_change_leaves_it_in_doubt_and_it_is_checked_before_any_resend()
 {
    // Another origin records whatever reaches it: nothing may.
    let caught = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let c = caught.clone();
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let location = format!(
        "http://localhost:{}/v10/api/ilmoitukset",
        other.local_addr().unwrap().port()
    );
    let catcher = axum::Router::new().fallback(move |uri: axum::http::Uri| async move {
        c.lock().unwrap().push(uri.to_string());
        axum::http::StatusCode::NOT_FOUND
    });
    tokio::spawn(async move { axum::serve(other, catcher).await });

    // (Tampuuri acted before redirecting, how the second pass delivers it)
    for (apply_first, delivered_as) in [(true, "already applied"), (false, "sent")] {
        let mut env = no_linger(Setup::tickets(2).start().await);
        env.sync_ok().await;
        let id = env.open_ids("sim-1")[0];
        env.task_ok(&["accept", &s(id)]).await;
        let proxy = redirecting_proxy(env.sim.root(), location.clone(), apply_first, 1).await;
        env.config.accounts[0].base_url = proxy;
        let posts = env.sim().calls(huoltosync::tampuuri::endpoint::VASTAANOTA);

        let r = env.push().await;
        assert_eq!(
            (r.delivered.len(), r.dead.len(), r.pending),
            (0, 0, 1),
            "apply_first {apply_first}: a redirect answering a write is no rejection: {:?}",
            r.dead
        );
        let (in_doubt, error): (bool, String) = env
            .db()
            .query_row("SELECT in_doubt, last_error FROM outbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert!(in_doubt, "apply_first {apply_first}: {error}");
        assert!(
            error.contains("the outcome is unknown")
                && error.contains("HTTP 303, a redirect to")
                && error.contains(&location),
            "{error}"
        );
        let applied = if apply_first { 1 } else { 0 };
        assert_eq!(env.applied().len(), applied, "apply_first {apply_first}");

        // The next pass checks the ticket first: applied → delivered without a resend;
        // unchanged → sent again, once.
        due_now(&env);
        let r = env.push().await;
        assert_eq!(
            (r.delivered.len(), r.dead.len(), r.pending),
            (1, 0, 0),
            "apply_first {apply_first}: {:?}",
            r.dead
        );
        assert_eq!(
            env.applied(),
            [(id, "vastaanota".to_owned())],
            "apply_first {apply_first}: applied exactly once"
        );
        assert_eq!(
            env.count(&format!(
                "SELECT count(*) FROM outbox WHERE status = 'delivered' AND outcome = '{delivered_as}'"
            )),
            1,
            "apply_first {apply_first}"
        );
        let sends = env.sim().calls(huoltosync::tampuuri::endpoint::VASTAANOTA) - posts;
        assert_eq!(
            sends, 1,
            "apply_first {apply_first}: one POST reached Tampuuri, before the redirect or after the check"
        );
    }
    assert!(caught.lock().unwrap().is_empty(), "{:?}", caught.lock());
}

#[tokio::test]
async fn task_new_without_a_cost_centre_or_parent_is_bad_usage() {
    let (env, _) = synced(2).await;
    let (code, out, err) = env
        .cli(&[
            "task",
            "new",
            "--account",
            "sim-1",
            "--title",
            "Uusi",
            "--description",
            "Kuvaus",
        ])
        .await;
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("--cost-centre"), "{err}");
    let queued: i64 = env
        .db()
        .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(queued, 0);
}
