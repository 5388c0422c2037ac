//! Visits booked in Slotti, as the store keeps them: one live visit per ticket, moves and
//! cancellations recorded once however often they are seen, each change told once, Slotti's
//! deliveries recorded once per Shot-ID, customer data purged; and the `visits` and `tasks`
//! commands that show them.

use chrono::{DateTime, Duration, Utc};
use huoltosync::domain::model::{LeftReason, Reporter, Ticket, TicketState, content_hash};
use huoltosync::store::{
    NewVisit, Retention, SeenBooking, Store, VisitCustomer, VisitFilter, VisitInsert, VisitSeen,
    VisitSource,
};
use huoltosync::tampuuri::changed_fields;
use serde_json::Value;

use crate::helpers::Setup;

const ACCOUNT: &str = "sim-1";
const PHONE: &str = "040 555 1234";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn open_store() -> (tempfile::TempDir, std::path::PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open(&path).unwrap();
    (dir, path, store)
}

/// A booking of `ticket` from `start` for 30 minutes, with a customer.
fn booking(ticket: i64, guid: &str, start: DateTime<Utc>) -> NewVisit {
    NewVisit {
        account: ACCOUNT.into(),
        ticket_id: ticket,
        booking_guid: guid.into(),
        marker: format!("[huoltosync:{guid}]"),
        technician_guid: Some("res-1".into()),
        technician_name: Some("Asentaja 1".into()),
        service_guid: Some("svc-30".into()),
        service_name: Some("Huoltokäynti 30 min".into()),
        start,
        end: start + Duration::minutes(30),
        customer: VisitCustomer {
            name: Some("Maija Meikäläinen".into()),
            phone: Some(PHONE.into()),
            email: Some("maija@example.fi".into()),
        },
        raw_json: serde_json::json!({
            "guid": guid,
            "start": start,
            "info": "sim-1 / 1001 Hana vuotaa, Koivutie 3 A 4 [huoltosync:x]",
            "customerLinks": [{"customer": {"firstName": "Maija", "phone": PHONE}}],
        })
        .to_string(),
    }
}

/// A booking as Slotti shows it, without its technician.
fn seen<'a>(
    guid: &'a str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    raw_json: &'a str,
) -> SeenBooking<'a> {
    SeenBooking {
        booking_guid: guid,
        start,
        end,
        technician_guid: None,
        technician_name: None,
        raw_json,
    }
}

fn new_change(r: VisitInsert) -> i64 {
    match r {
        VisitInsert::New { change_id, .. } => change_id,
        other => panic!("expected a new visit, got {other:?}"),
    }
}

/// `(type, ticket_id, data)` of the feed's visit events, in order.
fn visit_feed(store: &Store) -> Vec<(String, i64, Value)> {
    let mut st = store
        .connection()
        .prepare("SELECT type, ticket_id, data FROM feed WHERE type LIKE 'visit.%' ORDER BY seq")
        .unwrap();
    st.query_map([], |r| {
        let data: String = r.get(2)?;
        Ok((r.get(0)?, r.get(1)?, serde_json::from_str(&data).unwrap()))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn one_live_visit_per_ticket_in_the_store_and_in_sqlite() {
    let (_dir, _path, mut store) = open_store();
    let now = t("2026-04-01T10:00:00Z");
    let first = booking(1001, "g-1", t("2026-04-07T06:00:00Z"));
    let r = store.visits().insert_visit(&first, now).unwrap();
    let VisitInsert::New { visit_id, .. } = r else {
        panic!("{r:?}")
    };
    // The same booking recorded again (a retried relay step) is known, not a second visit.
    assert_eq!(
        store.visits().insert_visit(&first, now).unwrap(),
        VisitInsert::Known { visit_id }
    );
    // Another booking for the ticket is refused, naming the live visit.
    let second = booking(1001, "g-2", t("2026-04-08T06:00:00Z"));
    match store.visits().insert_visit(&second, now).unwrap() {
        VisitInsert::TicketHasVisit(v) => {
            assert_eq!(
                (v.booking_guid.as_str(), v.status.as_str()),
                ("g-1", "booked")
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store
            .visits()
            .active_visit(ACCOUNT, 1001)
            .unwrap()
            .unwrap()
            .booking_guid,
        "g-1"
    );
    // SQLite itself refuses a second live visit, whoever writes.
    let raw = store.connection().execute(
        "INSERT INTO visits (account, ticket_id, booking_guid, marker, start_at, end_at, status, raw_json, created_at, updated_at)
         VALUES ('sim-1', 1001, 'g-3', 'm', 'a', 'b', 'moved', '{}', 'x', 'x')",
        [],
    );
    assert!(raw.is_err(), "the partial unique index refuses it");
    // Once the visit is cancelled, the ticket may be booked again.
    assert_eq!(
        store
            .visits()
            .record_visit_cancelled("g-1", VisitSource::Webhook, now)
            .unwrap(),
        VisitSeen::Changed { change_id: 2 }
    );
    assert_eq!(store.visits().active_visit(ACCOUNT, 1001).unwrap(), None);
    new_change(store.visits().insert_visit(&second, now).unwrap());
    // Another ticket is another matter.
    new_change(
        store
            .visits()
            .insert_visit(&booking(1002, "g-4", t("2026-04-07T06:00:00Z")), now)
            .unwrap(),
    );
}

#[test]
fn a_move_seen_by_webhook_and_by_reconciliation_is_one_change() {
    let (_dir, _path, mut store) = open_store();
    let now = t("2026-04-01T10:00:00Z");
    let start = t("2026-04-07T06:00:00Z");
    new_change(
        store
            .visits()
            .insert_visit(&booking(1001, "g-1", start), now)
            .unwrap(),
    );
    // The booking as it was: nothing to record.
    assert_eq!(
        store
            .visits()
            .record_visit_seen(
                &seen("g-1", start, start + Duration::minutes(30), "{}"),
                VisitSource::Reconcile,
                now
            )
            .unwrap(),
        VisitSeen::Unchanged
    );
    // Moved by a day and an hour in Slotti: the webhook sees it first...
    let moved = start + Duration::hours(25);
    let end = moved + Duration::minutes(30);
    let r = store
        .visits()
        .record_visit_seen(
            &seen("g-1", moved, end, r#"{"guid":"g-1","v":2}"#),
            VisitSource::Webhook,
            now,
        )
        .unwrap();
    assert!(matches!(r, VisitSeen::Changed { .. }), "{r:?}");
    // ...then the reconciliation, and a redelivery: no second change.
    for source in [VisitSource::Reconcile, VisitSource::Webhook] {
        assert_eq!(
            store
                .visits()
                .record_visit_seen(
                    &seen("g-1", moved, end, r#"{"guid":"g-1","v":2}"#),
                    source,
                    now
                )
                .unwrap(),
            VisitSeen::Unchanged
        );
    }
    // A booking that is not ours.
    assert_eq!(
        store
            .visits()
            .record_visit_seen(
                &seen("other", moved, end, "{}"),
                VisitSource::Reconcile,
                now
            )
            .unwrap(),
        VisitSeen::Unknown
    );
    let visits = store.visits().visits(&VisitFilter::default()).unwrap();
    assert_eq!(visits.len(), 1);
    let v = &visits[0];
    assert_eq!(
        (v.status.as_str(), v.start.as_str(), v.end.as_str()),
        (
            "moved",
            "2026-04-08T07:00:00.000Z",
            "2026-04-08T07:30:00.000Z"
        )
    );
    let history: Vec<(&str, Option<&str>, Option<&str>, &str)> = v
        .history
        .iter()
        .map(|c| {
            (
                c.what.as_str(),
                c.old_start.as_deref(),
                c.new_start.as_deref(),
                c.source.as_str(),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![
            ("booked", None, Some("2026-04-07T06:00:00.000Z"), "booking"),
            (
                "moved",
                Some("2026-04-07T06:00:00.000Z"),
                Some("2026-04-08T07:00:00.000Z"),
                "webhook"
            ),
        ]
    );
    // The feed announced each change once, for the ticket.
    let feed = visit_feed(&store);
    assert_eq!(
        feed.iter()
            .map(|(k, id, d)| (k.as_str(), *id, d["start"].as_str().unwrap_or("")))
            .collect::<Vec<_>>(),
        vec![
            ("visit.booked", 1001, "2026-04-07T06:00:00.000Z"),
            ("visit.moved", 1001, "2026-04-08T07:00:00.000Z"),
        ]
    );
    assert_eq!(feed[1].2["old_start"], "2026-04-07T06:00:00.000Z");
    assert_eq!(feed[1].2["booking_guid"], "g-1");
}

#[test]
fn a_cancellation_is_recorded_once_and_a_late_delivery_does_not_revive_it() {
    let (_dir, _path, mut store) = open_store();
    let now = t("2026-04-01T10:00:00Z");
    let start = t("2026-04-07T06:00:00Z");
    new_change(
        store
            .visits()
            .insert_visit(&booking(1001, "g-1", start), now)
            .unwrap(),
    );
    assert!(matches!(
        store
            .visits()
            .record_visit_cancelled("g-1", VisitSource::Reconcile, now)
            .unwrap(),
        VisitSeen::Changed { .. }
    ));
    assert_eq!(
        store
            .visits()
            .record_visit_cancelled("g-1", VisitSource::Webhook, now)
            .unwrap(),
        VisitSeen::Unchanged
    );
    assert_eq!(
        store
            .visits()
            .record_visit_cancelled("nobody", VisitSource::Webhook, now)
            .unwrap(),
        VisitSeen::Unknown
    );
    // A `booking.modified` from before the deletion, delivered late.
    assert_eq!(
        store
            .visits()
            .record_visit_seen(
                &seen(
                    "g-1",
                    start + Duration::hours(1),
                    start + Duration::hours(2),
                    "{}"
                ),
                VisitSource::Webhook,
                now
            )
            .unwrap(),
        VisitSeen::Unchanged
    );
    let v = store.visits().visit_by_guid("g-1").unwrap().unwrap();
    assert_eq!(
        (v.status.as_str(), v.start.as_str()),
        ("cancelled", "2026-04-07T06:00:00.000Z")
    );
    let kinds: Vec<String> = visit_feed(&store).into_iter().map(|e| e.0).collect();
    assert_eq!(kinds, ["visit.booked", "visit.cancelled"]);
}

#[test]
fn each_change_is_told_once() {
    let (_dir, _path, mut store) = open_store();
    let now = t("2026-04-01T10:00:00Z");
    let start = t("2026-04-07T06:00:00Z");
    let booked = new_change(
        store
            .visits()
            .insert_visit(&booking(1001, "g-1", start), now)
            .unwrap(),
    );
    let untold = store.visits().untold_visit_changes().unwrap();
    assert_eq!(untold.len(), 1);
    assert_eq!(
        (
            untold[0].change.id,
            untold[0].change.what.as_str(),
            untold[0].ticket_id,
            untold[0].technician.as_deref()
        ),
        (booked, "booked", 1001, Some("Asentaja 1"))
    );
    assert!(
        store
            .visits()
            .mark_visit_change_told(booked, 41, now)
            .unwrap()
    );
    // Told already: another outbox row cannot tell it again.
    assert!(
        !store
            .visits()
            .mark_visit_change_told(booked, 42, now)
            .unwrap()
    );
    assert!(!store.visits().mark_visit_change_told(999, 42, now).unwrap());
    assert!(store.visits().untold_visit_changes().unwrap().is_empty());
    let VisitSeen::Changed { change_id: moved } = store
        .visits()
        .record_visit_seen(
            &seen(
                "g-1",
                start + Duration::days(1),
                start + Duration::days(1) + Duration::minutes(30),
                "{}",
            ),
            VisitSource::Reconcile,
            now,
        )
        .unwrap()
    else {
        panic!("a move")
    };
    let untold = store.visits().untold_visit_changes().unwrap();
    assert_eq!(untold.len(), 1);
    assert_eq!(
        (
            untold[0].change.id,
            untold[0].change.what.as_str(),
            untold[0].change.new_start.as_deref()
        ),
        (moved, "moved", Some("2026-04-08T06:00:00.000Z"))
    );
    let history = store
        .visits()
        .visits(&VisitFilter::default())
        .unwrap()
        .remove(0)
        .history;
    assert_eq!(history[0].told_outbox_id, Some(41));
    assert_eq!(history[1].told_outbox_id, None);
}

#[test]
fn visits_are_listed_by_range_and_account() {
    let (_dir, _path, mut store) = open_store();
    let now = t("2026-04-01T10:00:00Z");
    for (ticket, guid, start) in [
        (1003, "g-3", "2026-04-20T06:00:00Z"),
        (1001, "g-1", "2026-04-07T06:00:00Z"),
        (1002, "g-2", "2026-04-09T06:00:00Z"),
    ] {
        new_change(
            store
                .visits()
                .insert_visit(&booking(ticket, guid, t(start)), now)
                .unwrap(),
        );
    }
    let mut guids = |f: VisitFilter| -> Vec<String> {
        store
            .visits()
            .visits(&f)
            .unwrap()
            .into_iter()
            .map(|v| v.booking_guid)
            .collect()
    };
    assert_eq!(guids(VisitFilter::default()), ["g-1", "g-2", "g-3"]);
    assert_eq!(
        guids(VisitFilter {
            from: Some(t("2026-04-07T06:15:00Z")),
            to: Some(t("2026-04-09T06:00:00Z")),
            ..Default::default()
        }),
        ["g-1"],
        "overlapping the range: g-1 still runs, g-2 starts at its end"
    );
    assert!(
        guids(VisitFilter {
            account: Some("sim-2".into()),
            ..Default::default()
        })
        .is_empty()
    );
}

#[test]
fn slotti_deliveries_are_recorded_once_per_shot_id() {
    let (_dir, _path, mut store) = open_store();
    let now = t("2026-04-01T10:00:00Z");
    assert!(
        store
            .visits()
            .record_slotti_delivery("shot-1", "booking.deleted", "\"g-1\"", now)
            .unwrap()
    );
    assert!(
        !store
            .visits()
            .record_slotti_delivery("shot-1", "booking.deleted", "\"g-1\"", now)
            .unwrap(),
        "a replayed Shot-ID is recorded once"
    );
    assert!(
        store
            .visits()
            .record_slotti_delivery("shot-2", "booking.modified", "{}", now)
            .unwrap()
    );
    let pending = store.visits().pending_slotti_deliveries(10).unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|d| (d.shot_id.as_str(), d.event.as_str()))
            .collect::<Vec<_>>(),
        [
            ("shot-1", "booking.deleted"),
            ("shot-2", "booking.modified")
        ]
    );
    assert!(
        store
            .visits()
            .mark_slotti_delivery_processed("shot-1", "cancelled visit g-1", now)
            .unwrap()
    );
    assert!(
        !store
            .visits()
            .mark_slotti_delivery_processed("shot-1", "again", now)
            .unwrap()
    );
    assert_eq!(
        store.visits().pending_slotti_deliveries(10).unwrap().len(),
        1
    );
    // Processed, it is still known: a redelivery is not recorded again.
    assert!(
        !store
            .visits()
            .record_slotti_delivery("shot-1", "booking.deleted", "\"g-1\"", now)
            .unwrap()
    );
}

/// A fetched ticket with a reporter.
fn ticket(id: i64, state: &str) -> Ticket {
    let raw_json =
        serde_json::json!({"Id": id, "Tila": state, "Ilmoittaja": {"Puhelin": PHONE}}).to_string();
    Ticket {
        id,
        state: TicketState::from_name(state),
        title: Some("Hana vuotaa".into()),
        description: None,
        address: None,
        extra_info: None,
        assignee_id: Some(4711),
        cost_centre_id: None,
        space_id: None,
        room_id: None,
        parent_id: None,
        urgency: None,
        access: None,
        fault_class: None,
        earliest: None,
        latest: None,
        reporter: Reporter {
            name: Some("Maija Meikäläinen".into()),
            phone: Some(PHONE.into()),
            email: None,
        },
        remote_created: None,
        remote_modified: None,
        content_hash: content_hash(&raw_json),
        raw_json,
    }
}

/// `(ticket_id, customer_name, customer_phone, raw_json, erased)` of a visit.
type VisitPersonal = (i64, Option<String>, Option<String>, String, bool);

#[test]
fn the_purge_erases_visits_customer_data_with_their_ticket_or_after_the_visit() {
    let (_dir, path, mut store) = open_store();
    let long_ago = "2026-01-01T10:00:00.000Z";
    // Ticket 1 left long ago (its personal data goes); 2 is open with a visit long past;
    // 3 is open with a visit next week.
    store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(1, "Avoin"),
            Ok(()),
            long_ago,
            changed_fields,
        )
        .unwrap();
    store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(1, "Valmis"),
            Err(LeftReason::State),
            long_ago,
            changed_fields,
        )
        .unwrap();
    for id in [2, 3] {
        store
            .mirror()
            .upsert_fetched(
                ACCOUNT,
                ticket(id, "Avoin"),
                Ok(()),
                long_ago,
                changed_fields,
            )
            .unwrap();
    }
    let booked_at = t(long_ago);
    for (id, start) in [
        (1, "2026-01-05T06:00:00Z"),
        (2, "2026-01-06T06:00:00Z"),
        (3, "2026-03-07T06:00:00Z"),
    ] {
        new_change(
            store
                .visits()
                .insert_visit(&booking(id, &format!("g-{id}"), t(start)), booked_at)
                .unwrap(),
        );
    }
    let now = t("2026-03-01T00:00:00Z");
    for (shot, at) in [("old", booked_at), ("new", now)] {
        store
            .visits()
            .record_slotti_delivery(
                shot,
                "booking.created",
                &format!("{{\"phone\":\"{PHONE}\"}}"),
                at,
            )
            .unwrap();
        store
            .visits()
            .mark_slotti_delivery_processed(shot, "ok", at)
            .unwrap();
    }
    let retention = Retention {
        personal_days: 30,
        sync_runs_days: 400,
        api_calls_days: 400,
        outbox_days: 400,
        webhook_events_days: 400,
        feed_days: 400,
        idempotency_keys: std::time::Duration::from_secs(400 * 86_400),
        personal_fields: &["Ilmoittaja"],
        booking_personal_fields: &huoltosync::slotti::BOOKING_PERSONAL_FIELDS,
    };
    let r = store.purge(&retention, now, false).unwrap();
    assert_eq!(
        (r.tickets_erased, r.visits_erased, r.deliveries_erased),
        (1, 2, 1)
    );
    let rows: Vec<VisitPersonal> = {
        let mut st = store
            .connection()
            .prepare("SELECT ticket_id, customer_name, customer_phone, raw_json, personal_erased_at IS NOT NULL FROM visits ORDER BY ticket_id")
            .unwrap();
        st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    for (id, name, phone, raw, erased) in &rows {
        let raw: Value = serde_json::from_str(raw).unwrap();
        if *id == 3 {
            assert_eq!(
                (name.as_deref(), phone.as_deref(), *erased),
                (Some("Maija Meikäläinen"), Some(PHONE), false),
                "the coming visit keeps its customer"
            );
            assert!(raw.get("customerLinks").is_some());
        } else {
            assert_eq!(
                (name, phone, *erased),
                (&None, &None, true),
                "visit of ticket {id}"
            );
            assert!(
                raw.get("customerLinks").is_none() && raw.get("info").is_none(),
                "{raw}"
            );
            assert_eq!(
                raw["guid"],
                format!("g-{id}"),
                "the rest of the booking stays"
            );
        }
    }
    // Erase visit 3's customer too (its ticket leaves and is purged): then the phone number is
    // gone from the store's files, the delivery's payload with it.
    store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(3, "Valmis"),
            Err(LeftReason::State),
            long_ago,
            changed_fields,
        )
        .unwrap();
    store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(2, "Valmis"),
            Err(LeftReason::State),
            long_ago,
            changed_fields,
        )
        .unwrap();
    store
        .connection()
        .execute("UPDATE slotti_deliveries SET received_at = ?1", [long_ago])
        .unwrap();
    let r = store.purge(&retention, now, false).unwrap();
    assert_eq!((r.visits_erased, r.deliveries_erased), (1, 1));
    drop(store);
    for file in [path.clone(), path.with_extension("db-wal")] {
        if let Ok(bytes) = std::fs::read(&file) {
            assert!(
                !bytes.windows(PHONE.len()).any(|w| w == PHONE.as_bytes()),
                "{} still holds the phone number",
                file.display()
            );
        }
    }
}

#[tokio::test]
async fn the_visits_command_and_the_next_visit_in_tasks() {
    let env = Setup::tickets(3)
        .sections(&crate::api::api_toml(""))
        .start()
        .await;
    env.sync_ok().await;
    let ids = env.open_ids(ACCOUNT);
    let now = Utc::now();
    // Ticket A: a visit in two days, moved in Slotti by an hour. Ticket B: a visit that
    // ended two days ago (no next visit; one a day ago could end after today's midnight in
    // Helsinki, within today's listing). Ticket C: none.
    let soon = (now + Duration::days(2))
        .with_timezone(&chrono_tz::Europe::Helsinki)
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_local_timezone(chrono_tz::Europe::Helsinki)
        .unwrap()
        .to_utc();
    {
        let mut store = Store::open(&env.config.store.path).unwrap();
        new_change(
            store
                .visits()
                .insert_visit(&booking(ids[0], "g-a", soon - Duration::hours(1)), now)
                .unwrap(),
        );
        store
            .visits()
            .record_visit_seen(
                &seen("g-a", soon, soon + Duration::minutes(30), "{}"),
                VisitSource::Webhook,
                now,
            )
            .unwrap();
        new_change(
            store
                .visits()
                .insert_visit(&booking(ids[1], "g-b", now - Duration::days(2)), now)
                .unwrap(),
        );
    }
    let (code, out, err) = env.cli(&["tasks", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let tasks: Value = serde_json::from_str(&out).unwrap();
    let next = |id: i64| {
        tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()["next_visit"]
            .clone()
    };
    assert_eq!(
        next(ids[0]),
        serde_json::json!({
            "start": huoltosync::domain::time::fmt(soon),
            "end": huoltosync::domain::time::fmt(soon + Duration::minutes(30)),
            "technician": "Asentaja 1",
            "status": "moved",
        })
    );
    assert_eq!(
        next(ids[1]),
        Value::Null,
        "a visit that has ended is not next"
    );
    assert_eq!(next(ids[2]), Value::Null);
    // The table shows it on the wall clock.
    let (code, out, _) = env.cli(&["tasks"]).await;
    assert_eq!(code, 0);
    let line = out
        .lines()
        .find(|l| l.contains(&ids[0].to_string()))
        .unwrap();
    assert!(
        line.contains("(visit ") && line.contains(" klo 9.00–9.30)"),
        "{line}"
    );
    // So do the HTTP API's ticket items, and one ticket in full.
    let served = crate::api::serve(&env).await;
    let (status, page) = served.get("/tickets").await;
    assert_eq!(status, 200, "{page}");
    let item = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == ids[0])
        .unwrap();
    assert_eq!(item["next_visit"], next(ids[0]));
    let (status, one) = served.get(&format!("/tickets/{ACCOUNT}/{}", ids[0])).await;
    assert_eq!(status, 200, "{one}");
    assert!(
        one.to_string()
            .contains(&huoltosync::domain::time::fmt(soon)),
        "{one}"
    );
    // The view the contractor's systems read has it too.
    let start: Option<String> = env
        .db()
        .query_row(
            "SELECT next_visit_start FROM open_tickets WHERE id = ?1",
            [ids[0]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(start, Some(huoltosync::domain::time::fmt(soon)));

    // `visits --json`: from the start of today by default, so the visit of two days ago is out.
    let (code, out, err) = env.cli(&["visits", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let visits: Value = serde_json::from_str(&out).unwrap();
    let visits = visits.as_array().unwrap();
    assert_eq!(visits.len(), 1, "{visits:?}");
    let v = &visits[0];
    assert_eq!(
        (
            &v["account"],
            &v["ticket_id"],
            &v["booking_guid"],
            &v["technician"],
            &v["service"],
            &v["status"]
        ),
        (
            &Value::from(ACCOUNT),
            &Value::from(ids[0]),
            &Value::from("g-a"),
            &Value::from("Asentaja 1"),
            &Value::from("Huoltokäynti 30 min"),
            &Value::from("moved")
        )
    );
    assert_eq!(v["start"], huoltosync::domain::time::fmt(soon));
    let history: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["what"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["booked", "moved"]);
    assert!(
        !out.contains(PHONE) && !out.contains("Meikäläinen"),
        "no customer data in the listing"
    );
    // A range that holds yesterday lists both; the table reads local time.
    let yesterday = (now - Duration::days(2)).format("%Y-%m-%d").to_string();
    let (code, out, err) = env.cli(&["visits", "--from", &yesterday]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines().nth(1).unwrap().contains("klo 9.00–9.30") && out.contains("g-b"),
        "{out}"
    );
    assert!(
        err.trim_end().ends_with("\n2 visits") || err.trim() == "2 visits",
        "{err}"
    );
    // Bad usage is named.
    for (args, says) in [
        (&["visits", "--from", "huomenna"][..], "--from \"huomenna\""),
        (&["visits", "--account", "sim-9"][..], "--account \"sim-9\""),
        (
            &["visits", "--from", "2026-05-02", "--to", "2026-05-01"][..],
            "--to is not after --from",
        ),
    ] {
        let (code, _, err) = env.cli(args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_subscriber_may_ask_for_visit_events() {
    use base64::Engine as _;
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let setup = Setup::tickets(1).sections(&format!(
        "[[api.subscribers]]\nurl = \"http://127.0.0.1:9/e\"\nsecret = \"{secret}\"\nevents = [\"visit.booked\", \"visit.moved\", \"visit.cancelled\"]\n"
    ));
    std::fs::write(
        &path,
        crate::helpers::config_text(
            "http://127.0.0.1:9/v10/api/",
            &dir.path().join("s.db"),
            &setup,
        ),
    )
    .unwrap();
    let config = huoltosync::config::Config::load(&path).unwrap().config;
    let s = &config.subscribers[0];
    assert!(s.wants("visit.moved") && s.wants("visit.cancelled") && !s.wants("ticket.new"));
}

#[tokio::test]
async fn visits_in_the_weeks_of_the_daylight_saving_changes_show_the_local_hour() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store_path) = (dir.path().join("c.toml"), dir.path().join("s.db"));
    std::fs::write(
        &path,
        crate::helpers::config_text(
            "http://127.0.0.1:9/v10/api/",
            &store_path,
            &Setup::tickets(1),
        ),
    )
    .unwrap();
    let mut store = Store::open(&store_path).unwrap();
    let now = t("2026-03-01T00:00:00Z");
    // 9.00 on the Friday before and the Monday after each change, in 2026 and 2027.
    for (ticket, start) in [
        (1, "2026-03-27T07:00:00Z"),
        (2, "2026-03-30T06:00:00Z"),
        (3, "2026-10-23T06:00:00Z"),
        (4, "2026-10-26T07:00:00Z"),
        (5, "2027-03-26T07:00:00Z"),
        (6, "2027-03-29T06:00:00Z"),
        (7, "2027-10-29T06:00:00Z"),
        (8, "2027-11-01T07:00:00Z"),
    ] {
        new_change(
            store
                .visits()
                .insert_visit(&booking(ticket, &format!("g-{ticket}"), t(start)), now)
                .unwrap(),
        );
    }
    drop(store);
    let (code, out, err) = crate::helpers::run_cli(
        &path,
        &["visits", "--from", "2026-03-01", "--to", "2027-11-30"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let days: Vec<&str> = out
        .lines()
        .map(|l| l.split(" klo ").next().unwrap())
        .collect();
    assert_eq!(
        days,
        [
            "pe 27.3.",
            "ma 30.3.",
            "pe 23.10.",
            "ma 26.10.",
            "pe 26.3.",
            "ma 29.3.",
            "pe 29.10.",
            "ma 1.11."
        ]
    );
    assert!(
        out.lines().all(|l| l.contains(" klo 9.00–9.30 ")),
        "every visit at 9.00 local:\n{out}"
    );
    // A local day is a Helsinki day: the visit of Monday 30 March alone.
    let (code, out, _) = crate::helpers::run_cli(
        &path,
        &["visits", "--from", "2026-03-30", "--to", "2026-03-30"],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("g-2"), "{out}");
}

#[test]
fn another_technician_at_the_same_time_is_recorded_but_is_no_change_to_tell() {
    let (_dir, _path, mut store) = open_store();
    let now = t("2026-04-01T10:00:00Z");
    let start = t("2026-04-07T06:00:00Z");
    new_change(
        store
            .visits()
            .insert_visit(&booking(1001, "g-1", start), now)
            .unwrap(),
    );
    let same_time = SeenBooking {
        technician_guid: Some("res-2"),
        technician_name: Some("Asentaja 2"),
        ..seen("g-1", start, start + Duration::minutes(30), "{}")
    };
    assert_eq!(
        store
            .visits()
            .record_visit_seen(&same_time, VisitSource::Reconcile, now)
            .unwrap(),
        VisitSeen::Unchanged
    );
    let v = store.visits().visit_by_guid("g-1").unwrap().unwrap();
    assert_eq!(
        (
            v.technician_guid.as_deref(),
            v.technician.as_deref(),
            v.status.as_str()
        ),
        (Some("res-2"), Some("Asentaja 2"), "booked")
    );
    assert_eq!(
        store.visits().untold_visit_changes().unwrap().len(),
        1,
        "only the booking"
    );
    // Moved to a third technician whose name the caller does not know: the move is told, and
    // no stale name stays.
    let moved = SeenBooking {
        technician_guid: Some("res-3"),
        technician_name: None,
        ..seen(
            "g-1",
            start + Duration::hours(2),
            start + Duration::hours(3),
            "{}",
        )
    };
    assert!(matches!(
        store
            .visits()
            .record_visit_seen(&moved, VisitSource::Webhook, now)
            .unwrap(),
        VisitSeen::Changed { .. }
    ));
    let v = store.visits().visit_by_guid("g-1").unwrap().unwrap();
    assert_eq!(
        (v.technician_guid.as_deref(), v.technician.as_deref()),
        (Some("res-3"), None)
    );
}
