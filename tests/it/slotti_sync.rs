//! Staying right with Slotti: its webhook deliveries at `[slotti.webhook] path` on the
//! `[webhook]` listener (authenticated by `X-Slotti-Digest`, recorded once per Shot-ID before
//! the 2xx), their processing, and the reconciliation of `GET bookings` over the horizon, all
//! against the simulator's Slotti. A change seen by both is recorded once.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Datelike, Duration as Days, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Europe::Helsinki;
use hmac::{Hmac, Mac};
use huoltosync::config::Config;
use huoltosync::store::{Handle, NewVisit, Store, VisitCustomer, VisitInsert};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Setup, TestEnv, wait_for};

const HOOK_SECRET: &str = "slottisecret";
const SERVICE_30: &str = "9b2e4c61-7a0d-4f3e-8c55-2d1a6e7b3f30";
const SECTIONS: &str = "[schedule]\npoll = \"0 0 0 1 1 *\"\n[webhook]\nlisten = \"127.0.0.1:9\"\nhmac_secret = \"whsecret\"\nreconcile = \"0 0 0 1 1 *\"\n";

/// The simulator with Slotti, and a config with `[webhook]` and `[slotti]` (horizon `horizon`
/// days, `[slotti.webhook] secret`) on it.
pub(crate) async fn env(horizon: u32) -> TestEnv {
    let mut env = Setup::tickets(3).slotti().sections(SECTIONS).start().await;
    let path = env.config_path();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "[slotti]\nbase_url = {:?}\nbooking_account = \"huoltosim\"\napi_key = \"slotti-key\"\n\
         default_service = \"Huoltokäynti 30 min\"\nhorizon_days = {horizon}\n\
         [slotti.webhook]\nsecret = \"{HOOK_SECRET}\"\n",
        env.slotti_url()
    ));
    std::fs::write(&path, text).unwrap();
    env.config = Config::load(&path).expect("the config is valid").config;
    env
}

async fn handle(env: &TestEnv) -> Handle {
    Handle::open(env.config.store.path.clone()).await.unwrap()
}

/// The `[webhook]` listener with Slotti's route, served in this process on a free port;
/// answers the URL of Slotti's path.
async fn listener(env: &TestEnv) -> String {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let slotti = env.config.slotti.clone().unwrap().webhook;
    let path = slotti.path.clone();
    tokio::spawn(huoltosync::faces::webhook::serve_with_slotti(
        tcp,
        env.config.webhook.clone().unwrap(),
        Some(slotti),
        handle(env).await,
        Arc::new(tokio::sync::Notify::new()),
        std::future::pending(),
    ));
    format!("http://{addr}{path}")
}

fn mac(body: &str) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    m.update(body.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn hex_digest(body: &str) -> String {
    hex::encode(mac(body))
}

/// POSTs a delivery; `None` leaves a header out. Answers the status.
async fn post(
    url: &str,
    event: Option<&str>,
    shot: Option<&str>,
    body: &str,
    digest: Option<&str>,
) -> u16 {
    let mut req = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in [
        ("X-Slotti-Event", event),
        ("X-Slotti-Shot-ID", shot),
        ("X-Slotti-Digest", digest),
    ] {
        if let Some(v) = value {
            req = req.header(name, v);
        }
    }
    req.send().await.unwrap().status().as_u16()
}

/// The first Monday at least three days from now (Helsinki).
fn next_monday() -> NaiveDate {
    let mut d = Utc::now().with_timezone(&Helsinki).date_naive() + Days::days(3);
    while d.weekday() != Weekday::Mon {
        d += Days::days(1);
    }
    d
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    Helsinki
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Books the `nth` free slot of the next Monday on `Asentaja 1` in the simulator, with `info`;
/// answers the booking as the simulator has it.
async fn book(env: &TestEnv, nth: usize, info: &str) -> Value {
    let day = next_monday();
    let r = http()
        .post(format!(
            "{}booking/huoltosim/api/v2/bookings/serviceavailability",
            env.slotti_url()
        ))
        .json(&json!({ "params": {
            "start": midnight(day).to_rfc3339(),
            "end": midnight(day + Days::days(1)).to_rfc3339(),
            "serviceLinks": [{ "type": "primary", "serviceGuid": SERVICE_30, "durationMinutes": 30 }],
            "resourceId": 11 } }))
        .send()
        .await
        .unwrap();
    let days: Value = r.json().await.unwrap();
    let slot = days[0]["availableTimes"][nth].clone();
    assert!(slot.is_object(), "a free slot: {days}");
    let r = http()
        .post(format!("{}booking/huoltosim/api/v2/bookings/", env.slotti_url()))
        .json(&json!({
            "resourceId": slot["resourceId"], "start": slot["start"], "end": slot["end"],
            "customerLink": { "personCount": 1, "customer": {
                "firstName": "Liisa", "lastName": "Asukas", "email": "liisa@example.com",
                "phone": "040-1234567", "language": "fi" } },
            "info": info,
            "serviceLinks": [{ "type": "primary", "serviceGuid": SERVICE_30, "durationMinutes": 30 }],
            "anyProvider": false,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .to_utc()
}

fn marker(ticket: i64) -> String {
    format!("[huoltosync:{ticket:012x}]")
}

/// Books a visit of ours for `ticket` in the simulator and records it as huoltosync's relay
/// would; answers the booking guid.
pub(crate) async fn book_ours(env: &TestEnv, nth: usize, ticket: i64) -> String {
    let m = marker(ticket);
    let b = book(env, nth, &format!("sim-1 / {ticket}: Vuotava hana\n\n{m}")).await;
    let guid = b["guid"].as_str().unwrap().to_owned();
    let visit = NewVisit {
        account: "sim-1".into(),
        ticket_id: ticket,
        booking_guid: guid.clone(),
        marker: m,
        technician_guid: b["resourceGuid"].as_str().map(Into::into),
        technician_name: Some("Asentaja 1".into()),
        service_guid: Some(SERVICE_30.into()),
        service_name: Some("Huoltokäynti 30 min".into()),
        start: time(&b["start"]),
        end: time(&b["end"]),
        customer: VisitCustomer::default(),
        raw_json: b.to_string(),
    };
    let mut store = Store::open(&env.config.store.path).unwrap();
    assert!(matches!(
        store.visits().insert_visit(&visit, Utc::now()).unwrap(),
        VisitInsert::New { .. }
    ));
    guid
}

/// An outbox row carrying `marker` for `ticket` (what the relay queues for a booking).
fn outbox_row_with_marker(env: &TestEnv, ticket: i64, marker: &str) {
    env.db()
        .execute(
            "INSERT INTO outbox (account, kind, ticket_id, queue_ticket, payload, status, created_at,
                 next_attempt_at, deadline_at, marker)
             VALUES ('sim-1', 'hold', ?1, ?1, '{}', 'delivered', '2026-01-01T00:00:00.000Z',
                 '2026-01-01T00:00:00.000Z', '2026-01-02T00:00:00.000Z', ?2)",
            rusqlite::params![ticket, marker],
        )
        .unwrap();
}

async fn reconcile(env: &TestEnv) -> huoltosync::store::ReconcileRun {
    let slotti = env.config.slotti.as_ref().unwrap();
    let exchange = huoltosync::remote::Exchange::new(&env.config).unwrap();
    huoltosync::engine::visits::reconcile::run(
        &env.config,
        slotti,
        &exchange,
        &handle(env).await,
        Utc::now(),
    )
    .await
    .unwrap()
}

async fn process(env: &TestEnv) -> huoltosync::engine::visits::deliveries::DeliveriesProcessed {
    huoltosync::engine::visits::deliveries::process_deliveries(&handle(env).await, Utc::now())
        .await
        .unwrap()
}

/// `(what, source)` of every visit change, in order.
fn changes(env: &TestEnv) -> Vec<(String, String)> {
    let db = env.db();
    let mut st = db
        .prepare("SELECT what, source FROM visit_changes ORDER BY seq")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Registers the listener with the simulator's Slotti, signed with the secret.
async fn register(env: &TestEnv, url: &str) {
    let r = http()
        .post(format!("{}api/v1/webhooks/", env.slotti_url()))
        .basic_auth("slotti-key", Some(""))
        .json(&json!({ "deliveryUrl": url, "topics": ["*"], "secret": HOOK_SECRET }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn a_delivery_is_recorded_once_when_signed_in_hex_or_base64_and_refused_otherwise() {
    let env = env(14).await;
    let url = listener(&env).await;
    let body = r#""0822b475-73f7-4b3b-8a9b-85da065f2094""#;
    let deleted = Some("booking.deleted");
    let rows = || env.count("SELECT count(*) FROM slotti_deliveries");

    // Refused, and nothing recorded: a bad digest, none, one of another body, another secret.
    let other = hex::encode({
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(b"toinen").unwrap();
        m.update(body.as_bytes());
        m.finalize().into_bytes()
    });
    for digest in [
        Some("00"),
        None,
        Some(hex_digest("\"x\"").as_str()),
        Some(other.as_str()),
    ] {
        assert_eq!(
            post(&url, deleted, Some("x1"), body, digest).await,
            401,
            "{digest:?}"
        );
    }
    assert_eq!(rows(), 0, "a refused delivery records nothing");
    // Signed, but without its event or Shot-ID: 400, nothing recorded.
    let good = hex_digest(body);
    assert_eq!(post(&url, None, Some("x1"), body, Some(&good)).await, 400);
    assert_eq!(post(&url, deleted, None, body, Some(&good)).await, 400);
    assert_eq!(rows(), 0);

    // Hex (any case) and base64 are both taken.
    assert_eq!(
        post(&url, deleted, Some("shot-hex"), body, Some(&good)).await,
        200
    );
    let upper = good.to_uppercase();
    assert_eq!(
        post(&url, deleted, Some("shot-HEX"), body, Some(&upper)).await,
        200
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(mac(body));
    assert_eq!(
        post(&url, deleted, Some("shot-b64"), body, Some(&b64)).await,
        200
    );
    assert_eq!(rows(), 3);
    // A replayed Shot-ID is answered 2xx and recorded once.
    for _ in 0..3 {
        assert_eq!(
            post(&url, deleted, Some("shot-hex"), body, Some(&good)).await,
            200
        );
    }
    assert_eq!(rows(), 3, "a replay records nothing new");
    assert_eq!(
        env.count("SELECT count(*) FROM slotti_deliveries WHERE shot_id = 'shot-hex' AND event = 'booking.deleted'"),
        1
    );

    // The counters `status` shows; refusals reach the store at the next recorded delivery.
    let st = handle(&env)
        .await
        .call(|s| s.visits().slotti_sync_status())
        .await
        .unwrap();
    assert_eq!(st.deliveries_received, 3);
    assert_eq!(st.deliveries_duplicate, 3);
    assert_eq!(st.deliveries_refused, 6);
    assert_eq!(st.deliveries_pending, 3);

    // Processing: a deleted booking that is none of our visits is "unknown"; nothing changes.
    let p = process(&env).await;
    assert_eq!((p.processed, p.cancelled, p.more), (3, 0, false));
    assert_eq!(
        env.count("SELECT count(*) FROM slotti_deliveries WHERE outcome = 'unknown'"),
        3
    );
    assert!(changes(&env).is_empty());
}

#[tokio::test]
async fn a_move_seen_by_webhook_then_by_reconciliation_is_one_moved_change() {
    let env = env(14).await;
    let url = listener(&env).await;
    let guid = book_ours(&env, 0, 1).await;
    register(&env, &url).await;
    // A dispatcher moves the visit by a day and an hour.
    let b = env
        .sim()
        .slotti_bookings()
        .into_iter()
        .find(|b| b["guid"] == guid.as_str())
        .unwrap();
    let (start, end) = (
        time(&b["start"]) + Days::hours(25),
        time(&b["end"]) + Days::hours(25),
    );
    let fields = json!({ "start": start.to_rfc3339(), "end": end.to_rfc3339() });
    env.sim()
        .slotti_patch(&guid, fields.as_object().unwrap())
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || env.count(
            "SELECT count(*) FROM slotti_deliveries WHERE event = 'booking.modified'"
        ) == 1)
        .await,
        "the simulator's booking.modified is recorded"
    );
    let p = process(&env).await;
    assert_eq!(p.moved, 1, "{p:?}");
    assert_eq!(
        changes(&env),
        [
            ("booked".into(), "booking".into()),
            ("moved".into(), "webhook".into())
        ]
    );
    let visit = handle(&env)
        .await
        .call({
            let g = guid.clone();
            move |s| s.visits().visit_by_guid(&g)
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (visit.status.as_str(), visit.start.as_str()),
        ("moved", huoltosync::domain::time::fmt(start).as_str())
    );
    // The reconciliation sees the same move: still one change.
    let before_reconcile = chrono::Utc::now();
    let run = reconcile(&env).await;
    assert!(run.ok, "{run:?}");
    assert_eq!((run.ours, run.moved, run.cancelled), (1, 0, 0), "{run:?}");
    assert!(
        run.listed > run.ours,
        "other customers' bookings are listed and ignored"
    );
    assert_eq!(changes(&env).len(), 2);
    // A delivery processed twice changes nothing either.
    assert_eq!(process(&env).await.processed, 0);

    // `status` shows the reconciliation, the visits and the deliveries.
    let (code, out, err) = env.cli(&["status"]).await;
    assert!(code == 0 || code == 1, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("slotti: last reconciliation"))
        .unwrap_or_else(|| panic!("no Slotti line in:\n{out}"));
    assert!(
        line.contains(" ago)") && line.contains("visits 0 booked, 1 moved, 0 cancelled"),
        "{line}"
    );
    assert!(line.contains("webhook deliveries 1 received"), "{line}");
    let (_, json_out, _) = env.cli(&["status", "--json"]).await;
    let v: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(v["slotti"]["visits_moved"], 1, "{v}");
    assert_eq!(v["slotti"]["last_reconcile"]["ok"], true, "{v}");
    // The age is of the reconciliation above (the store's record of it), not of any other.
    let finished: String = env
        .db()
        .query_row(
            "SELECT finished_at FROM slotti_reconciles WHERE ok = 1 ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        v["slotti"]["last_reconcile_ok_at"],
        finished.as_str(),
        "{v}"
    );
    let finished = chrono::DateTime::parse_from_rfc3339(&finished).unwrap();
    assert!(
        finished >= before_reconcile,
        "{finished} {before_reconcile}"
    );
    let age = v["slotti"]["last_reconcile_ok_age_secs"].as_i64().unwrap();
    let since = (chrono::Utc::now() - before_reconcile).num_seconds();
    assert!(
        (0..=since + 1).contains(&age),
        "the reconciliation finished within the last {since} s, shown {age} s ago"
    );
    assert!(
        v["slotti"]["calls_today"].as_u64().unwrap() >= 1,
        "the reconciliation's calls are metered"
    );
}

#[tokio::test]
async fn a_deletion_whose_delivery_was_dropped_is_cancelled_once_by_reconciliation() {
    let env = env(14).await;
    let url = listener(&env).await;
    let guid = book_ours(&env, 1, 2).await;
    let kept = book_ours(&env, 2, 3).await;
    register(&env, &url).await;
    env.faults(json!({ "slotti_webhook_drop_next": 1 }));
    assert!(env.sim().slotti_delete(&guid));
    assert!(
        wait_for(Duration::from_secs(10), || env
            .sim()
            .slotti_stats()
            .webhooks_dropped
            == 1)
        .await
    );
    assert_eq!(
        env.count("SELECT count(*) FROM slotti_deliveries"),
        0,
        "never delivered"
    );
    let run = reconcile(&env).await;
    assert!(run.ok, "{run:?}");
    assert_eq!((run.cancelled, run.moved), (1, 0), "{run:?}");
    let run = reconcile(&env).await;
    assert_eq!(run.cancelled, 0, "cancelled once");
    let cancelled: Vec<_> = changes(&env)
        .into_iter()
        .filter(|(w, _)| w == "cancelled")
        .collect();
    assert_eq!(cancelled, [("cancelled".into(), "reconcile".into())]);
    let status = |g: &str| {
        env.db()
            .query_row(
                "SELECT status FROM visits WHERE booking_guid = ?1",
                [g],
                |r| r.get::<_, String>(0),
            )
            .unwrap()
    };
    assert_eq!(status(&guid), "cancelled");
    assert_eq!(status(&kept), "booked", "a visit Slotti still lists stays");
    // A late redelivery of the deletion records nothing more.
    let body = format!("{guid:?}");
    assert_eq!(
        post(
            &url,
            Some("booking.deleted"),
            Some("late"),
            &body,
            Some(&hex_digest(&body))
        )
        .await,
        200
    );
    assert_eq!(process(&env).await.cancelled, 0);
    assert_eq!(
        changes(&env)
            .iter()
            .filter(|(w, _)| w == "cancelled")
            .count(),
        1
    );
}

#[tokio::test]
async fn bookings_without_our_marker_are_ignored_and_one_of_ours_unknown_is_recorded_by_its_marker()
{
    let env = env(14).await;
    let url = listener(&env).await;
    // Someone else's booking, delivered and listed: ignored.
    let theirs = book(&env, 0, "Asiakas soitti itse").await;
    let body = theirs.to_string();
    assert_eq!(
        post(
            &url,
            Some("booking.created"),
            Some("s1"),
            &body,
            Some(&hex_digest(&body))
        )
        .await,
        200
    );
    let p = process(&env).await;
    assert_eq!((p.processed, p.ignored, p.recovered), (1, 1, 0));
    assert_eq!(
        env.count("SELECT count(*) FROM slotti_deliveries WHERE outcome = 'not ours'"),
        1
    );
    // A booking of ours whose answer was lost: the outbox row carrying its marker names ticket 2.
    let m = marker(2);
    outbox_row_with_marker(&env, 2, &m);
    let ours = book(&env, 1, &format!("sim-1 / 2: Ovi\n\n{m}")).await;
    let run = reconcile(&env).await;
    assert!(run.ok, "{run:?}");
    assert_eq!((run.ours, run.recovered), (1, 1), "{run:?}");
    assert_eq!(
        env.count("SELECT count(*) FROM visits"),
        1,
        "only our booking became a visit"
    );
    let (ticket, status, marker_of): (i64, String, String) = env
        .db()
        .query_row(
            "SELECT ticket_id, status, marker FROM visits WHERE booking_guid = ?1",
            [ours["guid"].as_str().unwrap()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (ticket, status.as_str(), marker_of.as_str()),
        (2, "booked", m.as_str())
    );
    assert_eq!(changes(&env), [("booked".into(), "booking".into())]);
    // Seen again: nothing new.
    assert_eq!(reconcile(&env).await.recovered, 0);
    assert_eq!(changes(&env).len(), 1);
    // A marker no outbox row carries is not ours to record.
    book(&env, 2, "[huoltosync:ffffffffffff]").await;
    let run = reconcile(&env).await;
    assert_eq!((run.ours, run.recovered), (2, 0), "{run:?}");
    assert_eq!(env.count("SELECT count(*) FROM visits"), 1);
}

#[tokio::test]
async fn a_horizon_of_75_days_is_read_in_three_windows_of_at_most_30_days() {
    let env = env(75).await;
    let before = env.sim().slotti_stats().calls;
    let run = reconcile(&env).await;
    assert!(run.ok, "{run:?}");
    let after = env.sim().slotti_stats().calls;
    let gets = |c: &std::collections::BTreeMap<String, u64>| {
        c.iter()
            .filter(|(k, _)| k.starts_with("GET") && k.contains("bookings"))
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    assert_eq!(gets(&after) - gets(&before), 3, "{after:?}");
    assert_eq!(run.calls, 3);
    let (from, to) = (
        huoltosync::domain::time::parse(run.span_from.as_deref().unwrap()).unwrap(),
        huoltosync::domain::time::parse(run.span_to.as_deref().unwrap()).unwrap(),
    );
    assert_eq!(to - from, Days::days(76), "a day back, 75 ahead");
    // Metered under Slotti's account.
    assert_eq!(
        env.count("SELECT coalesce(sum(calls), 0) FROM api_calls WHERE account = 'slotti'"),
        3
    );
    // A window the simulator refuses (over 30 days) would fail it: every call was accepted.
    assert!(run.error.is_none());
}

#[tokio::test]
async fn a_failed_reconciliation_is_recorded_and_judges_nothing_gone() {
    let env = env(14).await;
    let guid = book_ours(&env, 0, 1).await;
    env.sim().slotti_delete(&guid);
    env.faults(json!({ "slotti_error_next": 10 }));
    let run = reconcile(&env).await;
    assert!(
        !run.ok && run.error.as_deref().unwrap().contains("GET bookings"),
        "{run:?}"
    );
    assert_eq!(
        changes(&env).len(),
        1,
        "nothing judged gone on a failed read"
    );
    let st = handle(&env)
        .await
        .call(|s| s.visits().slotti_sync_status())
        .await
        .unwrap();
    assert!(!st.last_reconcile.unwrap().ok);
    assert_eq!(st.last_reconcile_ok_at, None);
    let (_, out, _) = env.cli(&["status"]).await;
    assert!(out.contains("FAILED: GET bookings"), "{out}");
}

#[tokio::test]
async fn bookings_delivered_in_the_week_of_a_daylight_saving_change_show_their_local_time() {
    let env = env(14).await;
    let url = listener(&env).await;
    // Booked in the week after the spring change (Monday 29 March 2027, 9.00 at +03:00), ours
    // by its marker; then moved to the Friday before the change (9.30 at +02:00), in the
    // seed's minutes-only form.
    let m = marker(3);
    outbox_row_with_marker(&env, 3, &m);
    let created = json!({
        "guid": "dst-1", "resourceGuid": null, "start": "2027-03-29T09:00:00+03:00",
        "end": "2027-03-29T09:30:00+03:00", "info": format!("sim-1 / 3\n\n{m}"),
    })
    .to_string();
    let moved = json!({
        "guid": "dst-1", "start": "2027-03-26T09:30+02:00", "end": "2027-03-26T10:00+02:00",
        "info": format!("sim-1 / 3\n\n{m}"),
    })
    .to_string();
    assert_eq!(
        post(
            &url,
            Some("booking.created"),
            Some("d1"),
            &created,
            Some(&hex_digest(&created))
        )
        .await,
        200
    );
    let p = process(&env).await;
    assert_eq!(p.recovered, 1, "{p:?}");
    let (code, out, err) = env
        .cli(&["visits", "--from", "2027-03-22", "--to", "2027-04-02"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ma 29.3. klo 9.00–9.30"), "{out}");
    assert_eq!(
        post(
            &url,
            Some("booking.modified"),
            Some("d2"),
            &moved,
            Some(&hex_digest(&moved))
        )
        .await,
        200
    );
    assert_eq!(process(&env).await.moved, 1);
    let (_, out, _) = env
        .cli(&["visits", "--from", "2027-03-22", "--to", "2027-04-02"])
        .await;
    assert!(out.contains("pe 26.3. klo 9.30–10.00"), "{out}");
    let start: String = env
        .db()
        .query_row(
            "SELECT start_at FROM visits WHERE booking_guid = 'dst-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(start.starts_with("2027-03-26T07:30:00"), "{start}");
}

#[tokio::test]
async fn run_once_processes_recorded_deliveries_and_reconciles() {
    let env = env(14).await;
    let url = listener(&env).await;
    let moved = book_ours(&env, 0, 1).await;
    let gone = book_ours(&env, 1, 2).await;
    // Moved in Slotti (no webhook registered), and the delivery of that move recorded by the
    // daemon's listener.
    let b = env
        .sim()
        .slotti_bookings()
        .into_iter()
        .find(|b| b["guid"] == moved.as_str())
        .unwrap();
    let later = |v: &Value| (time(v) + Days::hours(2)).to_rfc3339();
    let fields = json!({ "start": later(&b["start"]), "end": later(&b["end"]) });
    let b = env
        .sim()
        .slotti_patch(&moved, fields.as_object().unwrap())
        .unwrap();
    let body = b.to_string();
    assert_eq!(
        post(
            &url,
            Some("booking.modified"),
            Some("m1"),
            &body,
            Some(&hex_digest(&body))
        )
        .await,
        200
    );
    // The second deleted by hand, never delivered.
    assert!(env.sim().slotti_delete(&gone));
    let (code, out, err) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "slotti: 1 webhook deliveries processed (1 moved, 0 cancelled); reconciliation: "
        ) && out.contains(" 1 ours, 0 moved, 1 cancelled, 0 recovered, 1 API call(s)"),
        "{out}"
    );
    assert_eq!(
        changes(&env),
        [
            ("booked".into(), "booking".into()),
            ("booked".into(), "booking".into()),
            ("moved".into(), "webhook".into()),
            ("cancelled".into(), "reconcile".into()),
        ]
    );
    assert_eq!(
        env.count("SELECT count(*) FROM slotti_deliveries WHERE processed_at IS NULL"),
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM slotti_reconciles WHERE ok = 1"),
        1
    );
    // The same state seen again: nothing new.
    let (code, _, _) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 0);
    assert_eq!(changes(&env).len(), 4, "nothing new on a second run");
    assert_eq!(
        env.count("SELECT count(*) FROM slotti_reconciles WHERE ok = 1"),
        2
    );
}

#[tokio::test]
async fn visits_are_shown_in_slotti_timezone() {
    let env = env(14).await;
    let url = listener(&env).await;
    let m = marker(4);
    outbox_row_with_marker(&env, 4, &m);
    let created = json!({
        "guid": "tz-1", "start": "2027-03-29T09:00:00+03:00", "end": "2027-03-29T09:30:00+03:00",
        "info": m,
    })
    .to_string();
    assert_eq!(
        post(
            &url,
            Some("booking.created"),
            Some("t1"),
            &created,
            Some(&hex_digest(&created))
        )
        .await,
        200
    );
    assert_eq!(process(&env).await.recovered, 1);
    let path = env.config_path();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "horizon_days = 14\n",
        "horizon_days = 14\ntimezone = \"Europe/Stockholm\"\n",
    );
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = env
        .cli(&["visits", "--from", "2027-03-22", "--to", "2027-04-02"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ma 29.3. klo 8.00–8.30"),
        "Stockholm is an hour behind: {out}"
    );
}
