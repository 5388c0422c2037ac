//! The change feed (`feed` table, written by triggers in the store's own transactions): every
//! change of the mirror and the outbox becomes one event, in commit order, with a gap-free `seq`.

use serde_json::{Value, json};

use crate::helpers::{Setup, TestEnv};

/// (seq, type, ticket_id, data) of every feed event, in seq order.
fn feed(env: &TestEnv) -> Vec<(i64, String, Option<i64>, Value)> {
    let db = env.db();
    let mut q = db
        .prepare("SELECT seq, type, ticket_id, data FROM feed ORDER BY seq")
        .unwrap();
    q.query_map([], |r| {
        let data: String = r.get(3)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            serde_json::from_str(&data).unwrap(),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn assert_gap_free(events: &[(i64, String, Option<i64>, Value)]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.0,
            events[0].0 + i as i64,
            "seq has a gap or repeat at {e:?}"
        );
    }
}

#[tokio::test]
async fn every_mirror_and_outbox_change_is_one_feed_event_in_commit_order() {
    let env = Setup::tickets(300).start().await;
    env.sync_ok().await;
    let first = feed(&env);
    assert_eq!(first.len(), 300, "one ticket.new per mirrored ticket");
    assert!(
        first
            .iter()
            .all(|e| e.1 == "ticket.new" && e.3["state"] == "Avoin")
    );
    assert_gap_free(&first);

    // A sync that changes nothing writes no event.
    env.sync_ok().await;
    assert_eq!(feed(&env).len(), 300, "an unchanged sweep adds no event");

    let ids = env.open_ids("sim-1");
    env.patch("sim-1", ids[0], json!({"Otsikko": "Uusi otsikko"}));
    env.patch("sim-1", ids[1], json!({"Tila": "Valmis"}));
    env.patch("sim-1", ids[2], json!({"TyonsuorittajaId": 5020}));
    env.sync_ok().await;
    let all = feed(&env);
    assert_gap_free(&all);
    let rest: Vec<_> = all[300..].iter().collect();
    assert_eq!(rest.len(), 3, "{rest:?}");
    let of = |id: i64| rest.iter().find(|e| e.2 == Some(id)).unwrap();
    assert_eq!(of(ids[0]).1, "ticket.changed");
    let fields = of(ids[0]).3["fields"].as_array().unwrap().clone();
    assert!(fields.contains(&json!("title")), "{fields:?}");
    assert_eq!(of(ids[1]).1, "ticket.left");
    assert_eq!(of(ids[1]).3["reason"], "state");
    assert_eq!(of(ids[2]).1, "ticket.left");
    assert_eq!(of(ids[2]).3["reason"], "reassigned");

    // The outbox: queued, then applied, and the ticket's new state in the same commit, naming
    // the action.
    let id = ids[3].to_string();
    env.task_ok(&["accept", &id]).await;
    env.push().await;
    let all = feed(&env);
    assert_gap_free(&all);
    let tail: Vec<&str> = all[303..].iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        tail,
        ["action.queued", "action.applied", "ticket.changed"],
        "{:?}",
        &all[303..]
    );
    assert!(all[303..].iter().all(|e| e.2 == Some(ids[3])));
    assert_eq!(all[304].3["kind"], "accept");
    assert_eq!(
        (&all[305].3["state"], &all[305].3["action_id"]),
        (&json!("Vastaanotettu"), &all[304].3["action_id"])
    );
    // The poll that brings Tampuuri's copy confirms it: no event.
    env.sync_ok().await;
    assert_eq!(
        feed(&env).len(),
        all.len(),
        "the confirming poll adds no event"
    );
}
