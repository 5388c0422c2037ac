//! Delivered means known: an action Tampuuri confirmed is in the mirror at once (its state, a
//! history row naming the action with what was sent, the feed event), the next poll confirms it
//! without a second row or records a later change as its own; a created follow-up appears at
//! once. The outbox never says "delivered" without knowing it: a ticket staff moved into the
//! target state before the send is not sent to, and an in-doubt action whose ticket was
//! already there is never settled as applied.

use huoltosync::store::{HistoryEntry, Store};
use serde_json::{Value, json};

use crate::helpers::{Setup, TestEnv};

const ACCOUNT: &str = "sim-1";

/// A synced store whose first open ticket is in `state` in Tampuuri and in the mirror.
async fn one_ticket_in(state: &str) -> (TestEnv, i64) {
    let mut env = Setup::tickets(3).start().await;
    env.config.push.linger = std::time::Duration::ZERO;
    env.sync_ok().await;
    let id = env.open_ids(ACCOUNT)[0];
    env.patch(ACCOUNT, id, json!({"Tila": state}));
    env.sync_ok().await;
    (env, id)
}

fn history(env: &TestEnv, id: i64) -> Vec<HistoryEntry> {
    Store::open(&env.config.store.path)
        .unwrap()
        .mirror()
        .ticket_detail(ACCOUNT, id)
        .unwrap()
        .expect("the ticket is mirrored")
        .history
}

/// `(state, open, delivered_outbox_id, raw_json)` of a mirrored ticket.
fn mirrored(env: &TestEnv, id: i64) -> (String, bool, Option<i64>, String) {
    env.db()
        .query_row(
            "SELECT state, open, delivered_outbox_id, raw_json FROM tickets WHERE account = ?1 AND id = ?2",
            rusqlite::params![ACCOUNT, id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
}

/// The `tasks --json` item of ticket `id`, if listed.
async fn task(env: &TestEnv, id: i64) -> Option<Value> {
    let (code, out, err) = env.cli(&["tasks", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let tasks: Vec<Value> = serde_json::from_str(&out).unwrap();
    tasks.into_iter().find(|t| t["id"] == id)
}

#[tokio::test]
async fn a_delivered_accept_shows_at_once_with_its_comment_and_the_poll_confirms_it_without_a_second_row()
 {
    let (env, id) = one_ticket_in("Avoin").await;
    env.task_ok(&["accept", &id.to_string(), "--comment", "Tulemme huomenna"])
        .await;
    let r = env.push().await;
    assert_eq!(r.delivered.len(), 1, "{:?}", r.dead);
    let oid = r.delivered[0].id;

    // Before any poll: the mirror, tasks and the API's ticket agree.
    let (state, open, delivered, _) = mirrored(&env, id);
    assert_eq!(
        (state.as_str(), open, delivered),
        ("Vastaanotettu", true, Some(oid))
    );
    let t = task(&env, id).await.expect("still open");
    assert_eq!(
        (t["state"].as_str(), &t["pending_state"]),
        (Some("Vastaanotettu"), &Value::Null)
    );
    let rows = history(&env, id);
    let last = rows.last().unwrap();
    assert_eq!(
        (
            last.kind.as_str(),
            last.old_state.as_deref(),
            last.new_state.as_deref()
        ),
        ("changed", Some("Avoin"), Some("Vastaanotettu"))
    );
    let action = last.action.as_ref().expect("the row names the action");
    assert_eq!(
        (
            action.id,
            action.kind.as_str(),
            action.comment.as_deref(),
            action.requested_by.as_deref()
        ),
        (oid, "accept", Some("Tulemme huomenna"), Some("cli"))
    );
    assert_eq!(action.delivered_at.as_deref(), Some(last.at.as_str()));
    // The feed tells subscribers, naming the action.
    let (kind, data): (String, String) = env
        .db()
        .query_row(
            "SELECT type, data FROM feed WHERE ticket_id = ?1 AND type LIKE 'ticket.%' ORDER BY seq DESC LIMIT 1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let data: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(kind, "ticket.changed");
    assert_eq!(
        (&data["state"], &data["old_state"], &data["action_id"]),
        (&json!("Vastaanotettu"), &json!("Avoin"), &json!(oid))
    );

    // The next poll brings Tampuuri's copy: it confirms, and writes no second row.
    env.sync_ok().await;
    assert_eq!(history(&env, id).len(), rows.len(), "no second history row");
    let (state, _, delivered, raw) = mirrored(&env, id);
    assert_eq!((state.as_str(), delivered), ("Vastaanotettu", None));
    assert!(
        raw.contains("Vastaanotettu"),
        "Tampuuri's copy is stored: {raw}"
    );
    // A later real change is history again.
    env.patch(ACCOUNT, id, json!({"Otsikko": "Vuoto pahenee"}));
    env.sync_ok().await;
    let after = history(&env, id);
    assert_eq!(after.len(), rows.len() + 1);
    assert!(after.last().unwrap().action.is_none());
}

#[tokio::test]
async fn a_third_partys_change_after_our_delivery_is_its_own_history_row() {
    let (env, id) = one_ticket_in("Avoin").await;
    env.task_ok(&["accept", &id.to_string()]).await;
    assert_eq!(env.push().await.delivered.len(), 1);
    let rows = history(&env, id).len();
    // Staff put it on hold before the next poll.
    env.patch(ACCOUNT, id, json!({"Tila": "Odottaa"}));
    env.sync_ok().await;
    let after = history(&env, id);
    assert_eq!(after.len(), rows + 1);
    let last = after.last().unwrap();
    assert_eq!(
        (
            last.kind.as_str(),
            last.old_state.as_deref(),
            last.new_state.as_deref(),
            last.action.is_none()
        ),
        ("changed", Some("Vastaanotettu"), Some("Odottaa"), true)
    );
    assert_eq!(mirrored(&env, id).0, "Odottaa");
}

#[tokio::test]
async fn a_delivered_done_leaves_the_open_set_at_once() {
    let (env, id) = one_ticket_in("Vastaanotettu").await;
    env.task_ok(&["done", &id.to_string(), "--comment", "Hana vaihdettu"])
        .await;
    assert_eq!(env.push().await.delivered.len(), 1);
    let (state, open, _, _) = mirrored(&env, id);
    assert_eq!((state.as_str(), open), ("Tehty", false));
    assert!(task(&env, id).await.is_none(), "tasks no longer lists it");
    let last = history(&env, id).pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.new_state.as_deref()),
        ("left", Some("Tehty"))
    );
    assert_eq!(
        last.action.unwrap().comment.as_deref(),
        Some("Hana vaihdettu")
    );
    assert_eq!(
        env.count(&format!(
            "SELECT left_reason = 'state' FROM tickets WHERE id = {id}"
        )),
        1
    );
}

/// A ticket we marked done left the open set when the action was delivered; Tampuuri's copy,
/// fetched later (as a webhook's notification of our own change brings it), confirms that
/// without a second history row, and fills in what Tampuuri wrote. A third party's later move
/// is still its own row.
#[tokio::test]
async fn a_delivered_done_fetched_later_is_confirmed_without_a_second_row() {
    let (env, id) = one_ticket_in("Vastaanotettu").await;
    env.task_ok(&["done", &id.to_string(), "--comment", "Hana vaihdettu"])
        .await;
    assert_eq!(env.push().await.delivered.len(), 1);
    let rows = history(&env, id);
    let api = huoltosync::tampuuri::Api::new(&env.config).unwrap();
    let acc = env.config.account(ACCOUNT).unwrap();
    let fetch_and_apply = || async {
        let t = api
            .client(acc)
            .unwrap()
            .get_ticket(id)
            .await
            .unwrap()
            .expect("Tampuuri still has it");
        let open = t.openness(acc.contractor_id, &acc.states);
        let raw = t.raw_json.clone();
        Store::open(&env.config.store.path)
            .unwrap()
            .mirror()
            .upsert_fetched(
                ACCOUNT,
                t,
                open,
                "2026-12-07T12:00:00Z",
                huoltosync::tampuuri::changed_fields,
            )
            .unwrap();
        raw
    };
    let raw = fetch_and_apply().await;
    assert_eq!(history(&env, id).len(), rows.len(), "no second history row");
    let (state, open, delivered, stored_raw) = mirrored(&env, id);
    assert_eq!((state.as_str(), open, delivered), ("Tehty", false, None));
    assert_eq!(stored_raw, raw, "Tampuuri's copy is stored");

    // Staff reopen it afterwards: that is news, and its own row.
    env.patch(ACCOUNT, id, json!({"Tila": "Avoin"}));
    fetch_and_apply().await;
    let after = history(&env, id);
    assert_eq!(
        after.len(),
        rows.len() + 1,
        "the staff's move is its own row"
    );
    let last = after.last().unwrap();
    assert_eq!(last.new_state.as_deref(), Some("Avoin"));
    assert!(last.action.is_none(), "not ours");
}

#[tokio::test]
async fn a_created_follow_up_appears_at_once_and_the_poll_fills_in_the_rest() {
    let (env, parent) = one_ticket_in("Vastaanotettu").await;
    env.task_ok(&[
        "new",
        "--parent",
        &parent.to_string(),
        "--title",
        "Jatkotyö: putki",
        "--description",
        "Putki vaihdetaan",
    ])
    .await;
    let gets = env.get_calls();
    let r = env.push().await;
    assert_eq!(r.delivered.len(), 1, "{:?}", r.dead);
    assert_eq!(env.get_calls(), gets, "no read after the create");
    let new_id = env.count("SELECT created_ticket_id FROM outbox WHERE kind = 'create'");
    let (state, open, delivered, raw) = mirrored(&env, new_id);
    assert_eq!(
        (state.as_str(), open, delivered, raw.as_str()),
        ("Avoin", true, Some(r.delivered[0].id), "{}")
    );
    let t = task(&env, new_id).await.expect("listed at once");
    assert_eq!(
        (t["title"].as_str(), t["parent_id"].as_i64()),
        (Some("Jatkotyö: putki"), Some(parent))
    );
    let rows = history(&env, new_id);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].kind, "appeared");
    assert_eq!(
        rows[0].action.as_ref().unwrap().title.as_deref(),
        Some("Jatkotyö: putki")
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM feed WHERE type = 'ticket.new' AND ticket_id = {new_id}"
        )),
        1
    );

    env.sync_ok().await;
    let (_, _, delivered, raw) = mirrored(&env, new_id);
    assert_eq!(delivered, None);
    assert!(raw.contains("Putki vaihdetaan"), "{raw}");
    assert_eq!(history(&env, new_id).len(), 1, "filled in without a row");
}

#[tokio::test]
async fn a_ticket_staff_moved_into_the_target_state_before_the_send_gets_nothing_sent() {
    let (env, id) = one_ticket_in("Vastaanotettu").await;
    env.task_ok(&["hold", &id.to_string(), "--reason", "Odotetaan varaosia"])
        .await;
    // Staff put it on hold themselves, and a poll saw it; an answer would now be lost.
    env.patch(ACCOUNT, id, json!({"Tila": "Odottaa"}));
    env.sync_ok().await;
    env.faults(json!({"drop_after_apply_rate": 1.0}));
    let r = env.push().await;
    assert_eq!((r.delivered.len(), r.dead.len()), (0, 1));
    let why = &r.dead[0].1;
    assert!(
        why.contains(&format!("staff already moved ticket {id} to Odottaa"))
            && why.contains("our reason was not sent")
            && why.contains(&format!("outbox cancel {}", r.dead[0].0.id)),
        "{why}"
    );
    assert!(
        !why.contains("Odotetaan varaosia"),
        "the text is not echoed: {why}"
    );
    assert!(env.applied().is_empty(), "nothing was sent");
    assert_eq!(
        env.count("SELECT attempts FROM outbox"),
        0,
        "no attempt was begun"
    );
    // Dead-lettered is not pending, on the store's faces.
    assert_eq!(task(&env, id).await.unwrap()["pending_state"], Value::Null);
    assert_eq!(
        env.count(&format!(
            "SELECT pending_state IS NULL AND pending_actions = 0 AND failed_actions = 1 FROM open_tickets WHERE id = {id}"
        )),
        1
    );
}

#[tokio::test]
async fn an_in_doubt_action_whose_ticket_was_already_in_the_target_state_is_never_settled_as_applied()
 {
    let (env, id) = one_ticket_in("Vastaanotettu").await;
    env.task_ok(&["hold", &id.to_string(), "--reason", "Odotetaan"])
        .await;
    // What a kill between the in-doubt mark and the answer leaves, when the state before the
    // send was already the target (as an older version recorded it): staff had moved it.
    env.patch(ACCOUNT, id, json!({"Tila": "Odottaa"}));
    env.db()
        .execute(
            "UPDATE outbox SET in_doubt = 1, attempts = 1, before_state = 'Odottaa', before_modified = NULL",
            [],
        )
        .unwrap();
    let r = env.push().await;
    assert_eq!((r.delivered.len(), r.dead.len()), (0, 1));
    let why = &r.dead[0].1;
    assert!(
        why.contains(&format!(
            "ticket {id} was already Odottaa before our hold was sent"
        )) && why.contains("cannot tell whether Tampuuri took ours and our reason"),
        "{why}"
    );
    assert!(env.applied().is_empty(), "nothing was sent");
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE outcome = 'already applied'"),
        0
    );
}

#[tokio::test]
async fn an_in_doubt_transition_found_applied_writes_its_row_once() {
    let (env, id) = one_ticket_in("Avoin").await;
    env.task_ok(&["accept", &id.to_string(), "--comment", "Tulossa"])
        .await;
    env.faults(json!({"drop_after_apply_rate": 1.0}));
    let r = env.push().await;
    assert_eq!(r.delivered.len(), 0, "the answer was lost: in doubt");
    env.sim().clear_faults();
    env.db()
        .execute(
            "UPDATE outbox SET next_attempt_at = '2000-01-01T00:00:00.000Z'",
            [],
        )
        .unwrap();
    let rows = history(&env, id).len();
    let r = env.push().await;
    assert_eq!(r.delivered.len(), 1);
    assert_eq!(env.applied().len(), 1, "sent once");
    let after = history(&env, id);
    assert_eq!(after.len(), rows + 1, "one row, naming the action");
    let last = after.last().unwrap();
    assert_eq!(
        (
            last.new_state.as_deref(),
            last.action.as_ref().map(|a| a.comment.as_deref())
        ),
        (Some("Vastaanotettu"), Some(Some("Tulossa")))
    );
    env.sync_ok().await;
    assert_eq!(history(&env, id).len(), rows + 1, "the poll confirms it");
}
