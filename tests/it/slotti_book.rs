//! Booking visits in Slotti (`task book`, the relay's `book` actions, telling Tampuuri) against
//! the in-process simulator with Slotti: one `run --once` books and tells, a dry run books
//! nothing, a second booking is refused, a taken slot gives the next one, a lost answer is
//! found by its marker, SIGKILLs never make two bookings, a moved visit is told once (re-accept
//! first when the ticket waits), a ticket that left is not told.

use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use huoltosync::config::Config;
use huoltosync::store::{Store, VisitSource};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::helpers::{Setup, TestEnv};

/// A simulator with Slotti, a config with `[slotti]` (plus `extra` in it), the mirror synced.
async fn env_with(tickets: u64, extra: &str) -> TestEnv {
    let env = unsynced(tickets, extra).await;
    env.sync_ok().await;
    env
}

/// [`env_with`] with an empty mirror.
async fn unsynced(tickets: u64, extra: &str) -> TestEnv {
    let mut env = Setup::tickets(tickets).slotti().start().await;
    let path = env.config_path();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "\n[slotti]\nbase_url = {:?}\nbooking_account = \"huoltosim\"\napi_key = \"slotti-key\"\n\
         default_service = \"Huoltokäynti 30 min\"\n{extra}\n",
        env.slotti_url()
    ));
    std::fs::write(&path, text).unwrap();
    env.config = Config::load(&path).expect("config with [slotti]").config;
    env
}

async fn env(tickets: u64) -> TestEnv {
    env_with(tickets, "").await
}

#[tokio::test]
async fn auto_book_books_each_new_ticket_a_rule_matches_once() {
    let env = unsynced(
        12,
        "auto_book = true\n[[slotti.rules]]\naccount = \"sim-1\"\ntechnicians = [\"Asentaja 2\"]",
    )
    .await;
    run_once(&env).await;
    let ids = bookable(&env);
    // Booked and told in the run that first saw them (they are Odottaa now, so `bookable`
    // lists the ones the rule could not book: none).
    let booked: Vec<i64> = {
        let db = env.db();
        let mut s = db
            .prepare("SELECT ticket_id FROM outbox WHERE kind = 'book' AND status = 'delivered' ORDER BY ticket_id")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(!booked.is_empty(), "{:?}", env.outbox());
    assert!(
        ids.is_empty(),
        "Avoin with a contact and not booked: {ids:?}"
    );
    for id in &booked {
        let mine = ours(&env, *id);
        assert_eq!(mine.len(), 1, "ticket {id}");
        assert_eq!(holds(&env, *id).len(), 1, "ticket {id}");
    }
    // The rule's technician.
    assert_eq!(
        env.count("SELECT count(*) FROM visits WHERE technician_name <> 'Asentaja 2'"),
        0
    );
    // Not again.
    run_once(&env).await;
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'book'"),
        booked.len() as i64
    );
}

#[tokio::test]
async fn auto_book_leaves_tickets_no_rule_matches() {
    let env = unsynced(
        12,
        "auto_book = true\n[[slotti.rules]]\nfault_class = \"ei tällaista\"",
    )
    .await;
    run_once(&env).await;
    assert!(!bookable(&env).is_empty());
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'book'"),
        0
    );
    assert!(
        env.sim()
            .slotti_bookings()
            .iter()
            .all(|b| !b["info"].as_str().unwrap_or("").contains("[huoltosync:"))
    );
}

/// Open Avoin tickets whose reporter has a name and a phone or e-mail, by id.
fn bookable(env: &TestEnv) -> Vec<i64> {
    let db = env.db();
    let mut s = db
        .prepare(
            "SELECT id FROM tickets WHERE open = 1 AND state = 'Avoin' AND reporter_name IS NOT NULL
               AND (reporter_phone IS NOT NULL OR reporter_email IS NOT NULL) ORDER BY id",
        )
        .unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The simulator's bookings carrying our marker and naming ticket `id`.
fn ours(env: &TestEnv, id: i64) -> Vec<Value> {
    env.sim()
        .slotti_bookings()
        .into_iter()
        .filter(|b| {
            let info = b["info"].as_str().unwrap_or("");
            info.contains("[huoltosync:") && info.contains(&format!("#{id}"))
        })
        .collect()
}

/// The Tampuuri actions applied to ticket `id`, in order, with their bodies.
fn applied(env: &TestEnv, id: i64) -> Vec<(String, Value)> {
    env.sim()
        .log()
        .into_iter()
        .filter(|e| e.ticket_id == id)
        .map(|e| (e.action, e.body))
        .collect()
}

fn holds(env: &TestEnv, id: i64) -> Vec<String> {
    applied(env, id)
        .into_iter()
        .filter(|(a, _)| a == "odotukseen")
        .map(|(_, b)| b.to_string())
        .collect()
}

/// `klo H.MM` of a booking's start on Helsinki's wall clock.
fn klo(booking: &Value) -> String {
    let start: DateTime<Utc> = booking["start"].as_str().unwrap().parse().unwrap();
    let local = start.with_timezone(&chrono_tz::Europe::Helsinki);
    format!("klo {}", local.format("%-H.%M"))
}

async fn run_once(env: &TestEnv) {
    let (code, out, err) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 0, "run --once:\n{out}\n{err}");
}

#[tokio::test]
async fn one_run_books_the_visit_and_tells_tampuuri_the_local_time() {
    let env = env(12).await;
    let id = bookable(&env)[0];
    let out = env.task_ok(&["book", &id.to_string()]).await;
    assert!(
        out.contains("queued #") && out.contains("book a visit"),
        "{out}"
    );
    run_once(&env).await;
    let mine = ours(&env, id);
    assert_eq!(mine.len(), 1, "{mine:?}");
    let actions: Vec<String> = applied(&env, id).into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions, ["vastaanota", "odotukseen"]);
    let (_, body) = applied(&env, id).pop().unwrap();
    let text = body.to_string();
    assert!(
        text.contains(&klo(&mine[0])),
        "{text} lacks {}",
        klo(&mine[0])
    );
    assert!(text.contains("Huoltokäynti varattu"), "{text}");
    assert!(text.contains("true"), "notify: {text}");
    // The visit is in the mirror, its change told by the hold.
    let guid = mine[0]["guid"].as_str().unwrap();
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM visits v JOIN visit_changes c ON c.visit_id = v.id
             JOIN outbox o ON o.id = c.told_outbox_id AND o.kind = 'hold'
             WHERE v.booking_guid = '{guid}' AND v.ticket_id = {id}"
        )),
        1
    );
    // Another run tells nothing again.
    run_once(&env).await;
    assert_eq!(holds(&env, id).len(), 1);
    assert_eq!(ours(&env, id).len(), 1);
    // The calls to Slotti are metered.
    assert!(
        env.count("SELECT coalesce(sum(calls), 0) FROM api_calls WHERE account = 'slotti'") >= 3
    );
}

#[tokio::test]
async fn a_dry_run_lists_five_local_times_and_books_nothing_and_a_second_booking_is_refused() {
    let env = env(12).await;
    let id = bookable(&env)[0].to_string();
    let out = env.task_ok(&["book", &id, "--dry-run"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for l in &lines {
        assert!(l.contains(" klo ") && l.contains("Asentaja"), "{l}");
    }
    assert!(env.outbox().is_empty());
    assert!(ours(&env, id.parse().unwrap()).is_empty());

    env.task_ok(&["book", &id]).await;
    let err = env.task_err(&["book", &id]).await;
    assert!(
        err.contains("already has a visit booking queued as outbox action #1"),
        "{err}"
    );
    run_once(&env).await;
    let guid = ours(&env, id.parse().unwrap())[0]["guid"]
        .as_str()
        .unwrap()
        .to_owned();
    let err = env.task_err(&["book", &id]).await;
    assert!(
        err.contains(&guid) && err.contains(" klo "),
        "names the visit: {err}"
    );
    assert_eq!(env.outbox().iter().filter(|r| r.2 == "book").count(), 1);
}

#[tokio::test]
async fn without_a_slotti_section_task_book_is_bad_usage() {
    let env = Setup::tickets(3).start().await;
    env.sync_ok().await;
    let (code, _, err) = env.cli(&["task", "book", "1"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[slotti]"), "{err}");
}

#[tokio::test]
async fn a_slot_taken_meanwhile_books_the_next_one_once() {
    let env = env(12).await;
    let id = bookable(&env)[0];
    env.task_ok(&["book", &id.to_string()]).await;
    env.faults(json!({ "slot_taken_next": 2 }));
    let report = env.push().await;
    assert_eq!(report.dead.len(), 0);
    let mine = ours(&env, id);
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(
        env.outbox().iter().filter(|r| r.1 == "delivered").count(),
        3,
        "book, accept, hold: {:?}",
        env.outbox()
    );
    assert_eq!(holds(&env, id).len(), 1);
}

#[tokio::test]
async fn a_lost_answer_is_found_by_its_marker_not_booked_again() {
    let env = env(12).await;
    let id = bookable(&env)[0];
    env.task_ok(&["book", &id.to_string()]).await;
    env.faults(json!({ "slotti_drop_after_apply_next": 1 }));
    let report = env.push().await;
    assert_eq!(report.dead.len(), 0);
    assert_eq!(ours(&env, id).len(), 1);
    let outcome: String = env
        .db()
        .query_row("SELECT outcome FROM outbox WHERE kind = 'book'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(outcome, "already applied");
    assert_eq!(holds(&env, id).len(), 1, "told once");
}

#[tokio::test]
async fn a_moved_visit_is_told_once_and_the_waiting_ticket_is_accepted_again_first() {
    let env = env(12).await;
    let id = bookable(&env)[0];
    env.task_ok(&["book", &id.to_string()]).await;
    run_once(&env).await;
    let guid = ours(&env, id)[0]["guid"].as_str().unwrap().to_owned();
    // The ticket now waits (Odottaa); a dispatcher moves the visit in Slotti a day and an
    // hour later, and the reconciliation of the next run sees it.
    let mut store = Store::open(&env.config.store.path).unwrap();
    let visit = store.visits().visit_by_guid(&guid).unwrap().unwrap();
    drop(store);
    let shift = chrono::Duration::hours(25);
    let start = huoltosync::domain::time::parse(&visit.start).unwrap() + shift;
    let end = huoltosync::domain::time::parse(&visit.end).unwrap() + shift;
    let r = reqwest::Client::new()
        .patch(format!("{}/_sim/slotti/bookings/{guid}", env.sim.root()))
        .json(&json!({ "start": huoltosync::domain::time::fmt(start), "end": huoltosync::domain::time::fmt(end) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    run_once(&env).await;
    run_once(&env).await;
    let actions: Vec<String> = applied(&env, id).into_iter().map(|(a, _)| a).collect();
    assert_eq!(
        actions,
        ["vastaanota", "odotukseen", "vastaanota", "odotukseen"]
    );
    let moved = holds(&env, id).pop().unwrap();
    let local = start.with_timezone(&chrono_tz::Europe::Helsinki);
    assert!(
        moved.contains("siirretty") && moved.contains(&format!("klo {}", local.format("%-H.%M"))),
        "{moved}"
    );
}

#[tokio::test]
async fn a_change_of_a_ticket_that_left_is_not_told() {
    let env = env(12).await;
    let id = bookable(&env)[0];
    env.task_ok(&["book", &id.to_string()]).await;
    run_once(&env).await;
    let guid = ours(&env, id)[0]["guid"].as_str().unwrap().to_owned();
    // Re-assigned away from us in Tampuuri, then the visit is cancelled in Slotti.
    env.patch("sim-1", id, json!({ "TyonsuorittajaId": 999 }));
    run_once(&env).await;
    let mut store = Store::open(&env.config.store.path).unwrap();
    store
        .visits()
        .record_visit_cancelled(&guid, VisitSource::Webhook, Utc::now())
        .unwrap();
    drop(store);
    run_once(&env).await;
    assert_eq!(holds(&env, id).len(), 1, "only the booking was told");
    let why: String = env
        .db()
        .query_row(
            "SELECT not_told FROM visit_changes WHERE what = 'cancelled'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(why.contains("left our open set"), "{why}");
}

#[tokio::test]
async fn sigkills_during_booking_leave_one_booking_per_ticket_and_one_hold_per_change() {
    let env = env(12).await;
    let ids: Vec<i64> = bookable(&env).into_iter().take(3).collect();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        env.task_ok(&["book", &id.to_string()]).await;
    }
    env.faults(json!({
        "slotti_latency_ms": 40,
        "slotti_drop_after_apply_rate": 0.3,
        "latency_ms": 5,
    }));
    let mut rng = StdRng::seed_from_u64(13);
    let pending = || env.count("SELECT count(*) FROM outbox WHERE status = 'pending'");
    for _ in 0..40 {
        if pending() == 0 {
            break;
        }
        let mut child = tokio::process::Command::new(crate::helpers::BIN)
            .arg("--config")
            .arg(env.config_path())
            .args(["run", "--once"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let life = Duration::from_millis(rng.random_range(20..400));
        if tokio::time::timeout(life, child.wait()).await.is_err() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }
    env.sim().clear_faults();
    for _ in 0..10 {
        if pending() == 0 {
            break;
        }
        env.cli(&["run", "--once"]).await;
    }
    assert_eq!(pending(), 0, "{:?}", env.outbox());
    for id in &ids {
        assert_eq!(ours(&env, *id).len(), 1, "ticket {id}: one booking");
        assert_eq!(holds(&env, *id).len(), 1, "ticket {id}: told once");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM visit_changes WHERE told_outbox_id IS NULL"),
        0
    );
}

#[tokio::test]
async fn the_purge_erases_a_delivered_bookings_resident_from_the_outbox() {
    let env = env(12).await;
    let id = bookable(&env)[0];
    let (phone, email): (Option<String>, Option<String>) = env
        .db()
        .query_row(
            &format!("SELECT reporter_phone, reporter_email FROM tickets WHERE id = {id}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    env.task_ok(&["book", &id.to_string()]).await;
    run_once(&env).await;
    let payload = || -> String {
        env.db()
            .query_row("SELECT payload FROM outbox WHERE kind = 'book'", [], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let contact = phone.or(email).unwrap();
    assert!(payload().contains(&contact));
    let mut retention = huoltosync::service::retention::from_config(&env.config);
    retention.outbox_days = 100_000;
    let later = Utc::now() + chrono::Duration::days(i64::from(retention.personal_days) + 1);
    let mut store = Store::open(&env.config.store.path).unwrap();
    store.purge(&retention, later, false).unwrap();
    drop(store);
    let erased = payload();
    assert!(!erased.contains(&contact), "{erased}");
    let v: Value = serde_json::from_str(&erased).unwrap();
    assert_eq!(
        (v["customer"].clone(), v["info"].clone()),
        (Value::Null, json!("[erased]"))
    );
    // What was kept still reads as a booking (the relay dead-letters a retried one, naming why).
    assert_eq!(v["kind"], "book");
    assert!(v["marker"].as_str().unwrap().starts_with("[huoltosync:"));
}

/// The visits recorded for ticket `id`: `(booking guid, start, status)`.
fn visits_of(env: &TestEnv, id: i64) -> Vec<(String, String, String)> {
    let db = env.db();
    let mut s = db
        .prepare(
            "SELECT booking_guid, start_at, status FROM visits WHERE ticket_id = ?1 ORDER BY id",
        )
        .unwrap();
    s.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The marker of the queued booking.
fn queued_marker(env: &TestEnv) -> String {
    let payload: String = env
        .db()
        .query_row("SELECT payload FROM outbox WHERE kind = 'book'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let v: Value = serde_json::from_str(&payload).unwrap();
    v["marker"].as_str().unwrap().to_owned()
}

/// Checks that what was recorded and told for ticket `id` is the one booking carrying our
/// marker in the calendar (`not`: the booking Slotti answered with instead).
fn recorded_and_told_the_booking_made(env: &TestEnv, id: i64, not: &str) {
    let mine: Vec<Value> = ours(env, id)
        .into_iter()
        .filter(|b| b["guid"] != not)
        .collect();
    assert_eq!(mine.len(), 1, "one booking made: {mine:?}");
    let guid = mine[0]["guid"].as_str().unwrap();
    let visits = visits_of(env, id);
    assert_eq!(visits.len(), 1, "{visits:?}");
    assert_eq!(visits[0].0, guid, "the visit recorded is the booking made");
    let start: DateTime<Utc> = mine[0]["start"].as_str().unwrap().parse().unwrap();
    assert_eq!(huoltosync::domain::time::parse(&visits[0].1), Some(start));
    assert!(start > Utc::now(), "{start}");
    let told = holds(env, id);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains(&klo(&mine[0])),
        "{} lacks {}",
        told[0],
        klo(&mine[0])
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM visits WHERE booking_guid = '{not}'"
        )),
        0,
        "the booking answered instead is not recorded"
    );
}

#[tokio::test]
async fn an_answer_with_another_bookings_object_records_and_tells_the_booking_made() {
    let env = env(12).await;
    let id = bookable(&env)[0];
    env.task_ok(&["book", &id.to_string()]).await;
    env.faults(json!({ "slotti_answer_other_next": 1 }));
    let report = env.push().await;
    assert_eq!(report.dead.len(), 0, "{:?}", report.dead);
    // The simulator answered with the earliest booking other than ours.
    let made = ours(&env, id);
    let other = env
        .sim()
        .slotti_bookings()
        .into_iter()
        .find(|b| made.iter().all(|m| m["guid"] != b["guid"]))
        .expect("another booking in the calendar");
    recorded_and_told_the_booking_made(&env, id, other["guid"].as_str().unwrap());
    let outcome: String = env
        .db()
        .query_row("SELECT outcome FROM outbox WHERE kind = 'book'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(outcome, "sent");
}

#[tokio::test]
async fn an_answer_with_our_marker_and_a_start_in_2020_tells_the_time_the_calendar_holds() {
    let env = env(12).await;
    let id = bookable(&env)[0];
    env.task_ok(&["book", &id.to_string()]).await;
    let marker = queued_marker(&env);
    // The booking Slotti will answer with (the earliest other one) now starts in 2020 and
    // carries our marker: only its time and resource give it away.
    let bookings = env.sim().slotti_bookings();
    let liar = bookings[0]["guid"].as_str().unwrap().to_owned();
    let fields = json!({
        "start": "2020-03-02T08:00:00Z",
        "end": "2020-03-02T08:30:00Z",
        "info": format!("sim-1 #{id}: huijaus {marker}"),
    });
    env.sim()
        .slotti_patch(&liar, fields.as_object().unwrap())
        .unwrap();
    env.faults(json!({ "slotti_answer_other_next": 1 }));
    run_once(&env).await;
    recorded_and_told_the_booking_made(&env, id, &liar);
    // Another run tells nothing more, and books nothing more.
    run_once(&env).await;
    assert_eq!(holds(&env, id).len(), 1);
}

#[tokio::test]
async fn task_book_says_when_the_visit_starts_on_the_local_clock() {
    let env = env(6).await;
    let id = bookable(&env)[0];
    let out = env.task_ok(&["book", &id.to_string()]).await;
    assert!(
        out.contains("Europe/Helsinki") && !out.contains("UTC"),
        "{out}"
    );
    run_once(&env).await;
    let start: DateTime<Utc> = ours(&env, id)[0]["start"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let local = start.with_timezone(&chrono_tz::Europe::Helsinki);
    let shown = format!("{} Europe/Helsinki", local.format("%Y-%m-%d %H:%M"));
    assert!(out.contains(&shown), "{out} lacks {shown}");
}
