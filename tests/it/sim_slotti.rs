//! The simulator's Slotti (`Sim::with_slotti`, `sim --slotti`): the seed's shapes on both
//! APIs, the key, the 30-day window, taken slots (409 and `slot_taken_next`), offsets in the
//! weeks of a daylight-saving change, and signed webhooks with Shot-IDs from the admin routes.

use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as Days, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Europe::Helsinki;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::helpers::{Setup, TestEnv};

const SERVICE_30: &str = "9b2e4c61-7a0d-4f3e-8c55-2d1a6e7b3f30";
const KEY: &str = "slotti-key";

async fn env() -> TestEnv {
    Setup::tickets(1).slotti().start().await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// `{slotti}booking/huoltosim/api/v2/{path}`.
fn v2(env: &TestEnv, path: &str) -> String {
    format!("{}booking/huoltosim/api/v2/{path}", env.slotti_url())
}

/// A request to `{slotti}api/v1/{path}` with the key as the Basic user and no password.
fn v1(env: &TestEnv, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    http()
        .request(method, format!("{}api/v1/{path}", env.slotti_url()))
        .basic_auth(KEY, Some(""))
}

/// `path?k=v&…`, encoded.
fn qs<K: AsRef<str>, V: AsRef<str>>(path: &str, pairs: &[(K, V)]) -> String {
    let mut u = reqwest::Url::parse("http://x/")
        .unwrap()
        .join(path)
        .unwrap();
    u.query_pairs_mut()
        .extend_pairs(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
    format!("{}?{}", path, u.query().unwrap_or_default())
}

/// The Helsinki midnight starting `date`, in UTC.
fn midnight(date: NaiveDate) -> DateTime<Utc> {
    Helsinki
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

/// The first Monday at least three days from now (Helsinki).
fn next_monday() -> NaiveDate {
    let mut d = Utc::now().with_timezone(&Helsinki).date_naive() + Days::days(3);
    while d.weekday() != Weekday::Mon {
        d += Days::days(1);
    }
    d
}

/// The free slots of the 30-minute service from `from` for `days` days, as
/// `(date, availableTimes)` per day.
async fn availability(
    env: &TestEnv,
    from: NaiveDate,
    days: i64,
    resource: Option<i64>,
) -> Vec<(String, Vec<Value>)> {
    let mut params = json!({
        "start": midnight(from).to_rfc3339(),
        "end": midnight(from + Days::days(days)).to_rfc3339(),
        "serviceLinks": [{ "type": "primary", "serviceGuid": SERVICE_30, "durationMinutes": 30 }],
    });
    if let Some(r) = resource {
        params["resourceId"] = r.into();
    }
    let r = http()
        .post(v2(env, "bookings/serviceavailability"))
        .json(&json!({ "params": params }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_owned(),
                d["availableTimes"].as_array().unwrap().clone(),
            )
        })
        .collect()
}

/// A booking request for a slot as availability lists it.
fn booking(slot: &Value, info: &str) -> Value {
    json!({
        "resourceId": slot["resourceId"],
        "start": slot["start"],
        "end": slot["end"],
        "customerLink": { "personCount": 1, "customer": {
            "firstName": "Liisa", "lastName": "Asukas", "email": "liisa@example.com",
            "phone": "040-1234567", "language": "fi" } },
        "info": info,
        "serviceLinks": [{ "type": "primary", "serviceGuid": SERVICE_30, "durationMinutes": 30 }],
        "anyProvider": false,
    })
}

async fn book(env: &TestEnv, body: &Value) -> reqwest::Response {
    http()
        .post(v2(env, "bookings/"))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn set_faults(env: &TestEnv, faults: Value) {
    let r = http()
        .post(format!("{}/_sim/faults", env.sim.root()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// The first free slot of the next Monday on technician `resource`.
async fn first_slot(env: &TestEnv, resource: i64) -> Value {
    let days = availability(env, next_monday(), 1, Some(resource)).await;
    days[0].1[0].clone()
}

#[tokio::test]
async fn the_booking_api_serves_services_and_technicians_in_the_seeds_shape() {
    let env = env().await;
    let services: Value = http()
        .get(v2(&env, "services"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["translations"][0]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Huoltokäynti 30 min", "Huoltokäynti 60 min"]);
    let s = &services[0];
    for key in [
        "categoryGuid",
        "providerGuids",
        "ordinal",
        "price",
        "translations",
        "durationMinutes",
        "onlyBookableByPhone",
        "guid",
    ] {
        assert!(s.get(key).is_some(), "services lack {key}: {s}");
    }
    assert_eq!(
        (s["guid"].as_str(), s["durationMinutes"].as_u64()),
        (Some(SERVICE_30), Some(30))
    );
    assert_eq!(s["translations"][0]["languageCode"], "fi");
    // With and without the trailing slash.
    let resources: Value = http()
        .get(v2(&env, "resources/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = resources.as_array().unwrap();
    assert_eq!(r.len(), 3);
    for (i, t) in r.iter().enumerate() {
        assert_eq!(t["name"], format!("Asentaja {}", i + 1));
        assert!(
            t["guid"].is_string() && t["id"].is_i64() && t["imgUrl"].is_null(),
            "{t}"
        );
        assert_eq!(s["providerGuids"][i], t["guid"]);
    }
    let unknown = format!("{}booking/muutili/api/v2/services", env.slotti_url());
    assert_eq!(http().get(unknown).send().await.unwrap().status(), 404);
    assert_eq!(env.sim().slotti_stats().calls["GET services"], 2);
}

#[tokio::test]
async fn a_booked_slot_leaves_availability_and_booking_it_again_is_409() {
    let env = env().await;
    let monday = next_monday();
    let days = availability(&env, monday, 2, Some(12)).await;
    assert_eq!(days.len(), 3, "two days and the end's date: {days:?}");
    assert_eq!(days[0].0, monday.to_string());
    let slots = &days[0].1;
    assert!(!slots.is_empty());
    let week: usize = availability(&env, monday, 5, None)
        .await
        .iter()
        .map(|(_, t)| t.len())
        .sum();
    assert!(
        week < 5 * 16 * 3,
        "other customers took some slots: {week} free"
    );
    assert!(slots.iter().all(|s| s["resourceId"] == 12), "{slots:?}");
    let slot = slots[0].clone();
    for key in ["resourceGuid", "resourceId", "start", "end"] {
        assert!(slot.get(key).is_some(), "{slot}");
    }
    let r = book(
        &env,
        &booking(&slot, "sim-1 #1001 Vuotava hana [huoltosync:t1]"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let made: Value = r.json().await.unwrap();
    for key in [
        "guid",
        "resourceGuid",
        "created",
        "modified",
        "warmupStart",
        "start",
        "end",
        "cooldownEnd",
        "info",
        "privateNotes",
        "busyTime",
        "busyTimeTitle",
        "anyProvider",
        "customerLinks",
        "serviceLinks",
        "attributes",
    ] {
        assert!(made.get(key).is_some(), "the booking lacks {key}: {made}");
    }
    assert_eq!(made["resourceGuid"], slot["resourceGuid"]);
    let start = DateTime::parse_from_rfc3339(made["start"].as_str().unwrap()).unwrap();
    assert_eq!(
        start,
        DateTime::parse_from_rfc3339(slot["start"].as_str().unwrap()).unwrap()
    );
    assert!(
        made["start"].as_str().unwrap().ends_with('Z'),
        "UTC as GET bookings: {made}"
    );
    assert_eq!(made["customerLinks"][0]["customer"]["firstName"], "Liisa");
    assert_eq!(made["serviceLinks"][0]["service"]["guid"], SERVICE_30);
    // The slot is gone, and taking it again is refused.
    let again = availability(&env, monday, 2, Some(12)).await;
    assert!(
        !again[0].1.contains(&slot),
        "the booked slot is still offered"
    );
    assert_eq!(again[0].1.len(), slots.len() - 1);
    assert_eq!(book(&env, &booking(&slot, "toinen")).await.status(), 409);
    // The customer link shows the time, never the customer.
    let link = made["customerLinks"][0]["guid"].as_str().unwrap();
    let basic: Value = http()
        .get(v2(&env, &format!("bookings/customerlink/{link}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(basic["guid"], made["guid"]);
    assert_eq!(basic["start"], made["start"]);
    assert!(!basic.to_string().contains("Liisa"), "{basic}");
    // The Slotti API lists it with the other customers' bookings of the day.
    let from = midnight(monday).to_rfc3339();
    let to = midnight(monday + Days::days(1)).to_rfc3339();
    let listed: Value = v1(
        &env,
        reqwest::Method::GET,
        &qs("bookings", &[("from", &from), ("to", &to)]),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let listed = listed.as_array().unwrap();
    assert!(
        listed.iter().any(|b| b == &made),
        "GET bookings lacks the booking"
    );
    assert!(listed.len() > 1, "other customers' bookings too");
    assert_eq!(
        env.sim()
            .slotti_bookings()
            .iter()
            .filter(|b| b["guid"] == made["guid"])
            .count(),
        1
    );
}

#[tokio::test]
async fn a_booking_outside_working_hours_or_with_a_field_missing_is_400_naming_it() {
    let env = env().await;
    let slot = first_slot(&env, 11).await;
    let monday = next_monday();
    let at = |d: NaiveDate, h: u32, m: u32| {
        Helsinki
            .from_local_datetime(&d.and_hms_opt(h, m, 0).unwrap())
            .single()
            .unwrap()
            .to_rfc3339()
    };
    let mut cases = Vec::new();
    for (start, end, why) in [
        (at(monday, 7, 30), at(monday, 8, 0), "working hours"),
        (at(monday, 15, 45), at(monday, 16, 15), "working hours"),
        (at(monday, 9, 10), at(monday, 9, 40), "grid"),
        (
            at(monday - Days::days(1), 9, 0),
            at(monday - Days::days(1), 9, 30),
            "working day",
        ),
        (at(monday, 9, 0), at(monday, 10, 0), "30"),
    ] {
        let mut b = booking(&slot, "x");
        b["start"] = start.into();
        b["end"] = end.into();
        cases.push((b, why));
    }
    for path in [
        "customerLink.customer.firstName",
        "start",
        "serviceLinks",
        "resourceId",
    ] {
        let mut b = booking(&slot, "x");
        let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
        let mut obj = &mut b;
        for p in parent.split('.').filter(|p| !p.is_empty()) {
            obj = &mut obj[p];
        }
        obj.as_object_mut().unwrap().remove(key);
        cases.push((b, path));
    }
    let mut unknown = booking(&slot, "x");
    unknown["resourceId"] = 99.into();
    cases.push((unknown, "resourceId"));
    for (body, why) in cases {
        let r = book(&env, &body).await;
        assert_eq!(r.status(), 400, "{why}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains(why),
            "the refusal does not name {why}: {text}"
        );
    }
    let r = http()
        .post(v2(&env, "bookings"))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Nothing was booked; the slot is still free.
    assert_eq!(book(&env, &booking(&slot, "x")).await.status(), 200);
}

#[tokio::test]
async fn the_slotti_api_takes_the_key_as_the_basic_user_and_nothing_else() {
    let env = env().await;
    let url = format!("{}api/v1/webhooks", env.slotti_url());
    assert_eq!(http().get(&url).send().await.unwrap().status(), 401);
    let wrong = http()
        .get(&url)
        .basic_auth("sim-key", Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));
    let bearer = http().get(&url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(bearer.status(), 401);
    let ok = v1(&env, reqwest::Method::GET, "webhooks")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap(), json!([]));
    // The booking API needs no key.
    assert_eq!(
        http()
            .get(v2(&env, "services"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn bookings_are_asked_for_at_most_thirty_days_with_both_ends() {
    let env = env().await;
    let from = Utc::now();
    let q = |to: DateTime<Utc>| vec![("from", from.to_rfc3339()), ("to", to.to_rfc3339())];
    let get = |q: Vec<(&'static str, String)>| {
        v1(&env, reqwest::Method::GET, &qs("bookings/", &q)).send()
    };
    assert_eq!(get(q(from + Days::days(30))).await.unwrap().status(), 200);
    let over = get(q(from + Days::days(30) + Days::seconds(1)))
        .await
        .unwrap();
    assert_eq!(over.status(), 400);
    assert!(over.text().await.unwrap().contains("30 days"));
    let only_from = get(vec![("from", from.to_rfc3339())]).await.unwrap();
    assert_eq!(only_from.status(), 400);
    assert!(only_from.text().await.unwrap().contains("to"));
    assert_eq!(
        get(vec![("to", from.to_rfc3339())]).await.unwrap().status(),
        400
    );
    assert_eq!(
        get(vec![("from", "eilen".into()), ("to", from.to_rfc3339())])
            .await
            .unwrap()
            .status(),
        400
    );
}

#[tokio::test]
async fn customers_come_in_pages_of_at_most_twenty_with_their_count() {
    let env = env().await;
    let page = |q: Vec<(&'static str, String)>| {
        v1(&env, reqwest::Method::GET, &qs("customers", &q)).send()
    };
    let all: Value = page(vec![]).await.unwrap().json().await.unwrap();
    let count = all["count"].as_u64().unwrap();
    assert!(count > 20, "the drawn calendar has customers: {count}");
    assert_eq!(all["items"].as_array().unwrap().len(), 20);
    let c = &all["items"][0];
    for key in [
        "guid",
        "firstName",
        "lastName",
        "language",
        "phone",
        "email",
        "company",
        "finvoiceAddress",
    ] {
        assert!(c.get(key).is_some(), "a customer lacks {key}: {c}");
    }
    let next: Value = page(vec![("limit", "5".into()), ("offset", "20".into())])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(next["count"], count);
    assert_eq!(next["items"].as_array().unwrap().len(), 5);
    assert_ne!(next["items"][0], all["items"][0]);
    assert_eq!(
        page(vec![("limit", "21".into())]).await.unwrap().status(),
        400
    );
    // Our resident, found by name once booked.
    let slot = first_slot(&env, 13).await;
    assert_eq!(book(&env, &booking(&slot, "x")).await.status(), 200);
    let found: Value = page(vec![("searchTerm", "asukas".into())])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["count"], 1);
    assert_eq!(found["items"][0]["email"], "liisa@example.com");
}

#[tokio::test]
async fn slot_taken_next_books_the_slot_for_someone_else_and_refuses_ours() {
    let env = env().await;
    let slot = first_slot(&env, 11).await;
    set_faults(&env, json!({ "slot_taken_next": 1 })).await;
    let before = env.sim().slotti_bookings().len();
    let r = book(&env, &booking(&slot, "ours [huoltosync:t2]")).await;
    assert_eq!(r.status(), 409);
    let all = env.sim().slotti_bookings();
    assert_eq!(all.len(), before + 1, "someone else booked the slot");
    let start = DateTime::parse_from_rfc3339(slot["start"].as_str().unwrap()).unwrap();
    let theirs: Vec<&Value> = all
        .iter()
        .filter(|b| {
            DateTime::parse_from_rfc3339(b["start"].as_str().unwrap()).unwrap() == start
                && b["resourceGuid"] == slot["resourceGuid"]
        })
        .collect();
    assert_eq!(theirs.len(), 1);
    assert!(
        !theirs[0]["info"]
            .as_str()
            .unwrap_or_default()
            .contains("huoltosync")
    );
    // Availability changed as in real life; the next slot books.
    let next = first_slot(&env, 11).await;
    assert_ne!(next, slot);
    assert_eq!(
        book(&env, &booking(&next, "ours [huoltosync:t2]"))
            .await
            .status(),
        200
    );
    // Faults of Tampuuri stay as they were: none of these calls touched them.
    assert_eq!(env.sim().total_calls(), 0);
}

#[tokio::test]
async fn errors_rate_limits_and_a_lost_answer_after_the_booking_was_made() {
    let env = env().await;
    let slot = first_slot(&env, 12).await;
    set_faults(&env, json!({ "slotti_error_next": 1, "slotti_rate_limit_next": 1, "slotti_retry_after_secs": 7 })).await;
    let r = book(&env, &booking(&slot, "x")).await;
    assert_eq!(r.status(), 500);
    let r = http().get(v2(&env, "services")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    set_faults(&env, json!({ "slotti_drop_after_apply_next": 1 })).await;
    let lost = http()
        .post(v2(&env, "bookings/"))
        .json(&booking(&slot, "lost answer [huoltosync:t3]"))
        .send()
        .await;
    assert!(lost.is_err(), "the answer was lost: {lost:?}");
    let made: Vec<Value> = env
        .sim()
        .slotti_bookings()
        .into_iter()
        .filter(|b| b["info"] == "lost answer [huoltosync:t3]")
        .collect();
    assert_eq!(made.len(), 1, "the booking was made");
    assert_eq!(book(&env, &booking(&slot, "x")).await.status(), 409);
    // A connection closed before the call is applied books nothing.
    let other = first_slot(&env, 12).await;
    set_faults(&env, json!({ "slotti_drop_next": 1 })).await;
    let dropped = http()
        .post(v2(&env, "bookings/"))
        .json(&booking(&other, "x"))
        .send()
        .await;
    assert!(dropped.is_err(), "{dropped:?}");
    assert_eq!(first_slot(&env, 12).await, other, "nothing was booked");
    // Latency delays the answer by at least as much.
    set_faults(&env, json!({ "slotti_latency_ms": 300 })).await;
    let t = std::time::Instant::now();
    assert_eq!(
        http()
            .get(v2(&env, "services"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    // Clearing the faults clears Slotti's too.
    let r = http()
        .delete(format!("{}/_sim/faults", env.sim.root()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(book(&env, &booking(&other, "x")).await.status(), 200);
    let stats = env.sim().slotti_stats();
    assert_eq!(stats.calls["POST bookings/"], 5);
}

/// `daylight-saving change`: the first such Sunday (last of `month`) at least three days ahead.
fn next_change(month: u32) -> NaiveDate {
    let today = Utc::now().with_timezone(&Helsinki).date_naive();
    (today.year()..=today.year() + 1)
        .map(|y| {
            let mut d = NaiveDate::from_ymd_opt(y, month, 31).unwrap();
            while d.weekday() != Weekday::Sun {
                d -= Days::days(1);
            }
            d
        })
        .find(|d| *d - Days::days(2) > today + Days::days(1))
        .unwrap()
}

#[tokio::test]
async fn slots_in_the_weeks_of_a_daylight_saving_change_carry_that_days_offset() {
    let env = env().await;
    for (month, before, after) in [(3, "+02:00", "+03:00"), (10, "+03:00", "+02:00")] {
        let sunday = next_change(month);
        let friday = sunday - Days::days(2);
        let days = availability(&env, friday, 4, Some(11)).await;
        let on = |date: NaiveDate| {
            days.iter()
                .find(|(d, _)| *d == date.to_string())
                .unwrap()
                .1
                .clone()
        };
        let (fri, sat, mon) = (
            on(friday),
            on(sunday - Days::days(1)),
            on(sunday + Days::days(1)),
        );
        assert!(sat.is_empty(), "no weekend slots");
        for (slots, offset) in [(&fri, before), (&mon, after)] {
            assert!(!slots.is_empty());
            for s in slots.iter() {
                let start = s["start"].as_str().unwrap();
                assert!(
                    start.ends_with(offset),
                    "{start} in the {month} change week: want {offset}"
                );
                let hour: u32 = start[11..13].parse().unwrap();
                assert!((8..16).contains(&hour), "{start} is outside 8–16 local");
            }
        }
        // The seed's own form, without seconds, is one fault away.
        set_faults(&env, json!({ "slotti_short_times": true })).await;
        let short = availability(&env, sunday + Days::days(1), 1, Some(11)).await;
        let first = short[0].1[0]["start"].as_str().unwrap().to_owned();
        assert_eq!(first.len(), "2026-03-30T08:00+03:00".len(), "{first}");
        assert!(first.ends_with(after), "{first}");
        set_faults(&env, json!({ "slotti_short_times": false })).await;
        // Booked on the Monday at what availability said; GET bookings answers the same instant in UTC.
        let r = book(&env, &booking(&mon[0], "dst")).await;
        assert_eq!(r.status(), 200);
        let made: Value = r.json().await.unwrap();
        let local = DateTime::parse_from_rfc3339(mon[0]["start"].as_str().unwrap()).unwrap();
        let utc = DateTime::parse_from_rfc3339(made["start"].as_str().unwrap()).unwrap();
        assert_eq!(local, utc);
        let hours = if after == "+03:00" { 3 } else { 2 };
        assert_eq!(
            utc.with_timezone(&Utc).format("%H:%M").to_string(),
            (local.naive_local() - Days::hours(hours))
                .format("%H:%M")
                .to_string()
        );
    }
}

/// A webhook receiver on loopback: every delivery's headers and body, in order.
async fn receiver() -> (
    String,
    mpsc::UnboundedReceiver<(axum::http::HeaderMap, String)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let _ = tx.send((headers, body));
            async { axum::http::StatusCode::OK }
        }),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(tcp, app).await });
    (format!("http://{addr}/hook"), rx)
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<(axum::http::HeaderMap, String)>,
) -> (axum::http::HeaderMap, String) {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a delivery within 20 s")
        .expect("the receiver runs")
}

/// The delivery's event, Shot-ID and body, after checking its digest and Basic credentials.
fn checked(d: &(axum::http::HeaderMap, String), secret: &str) -> (String, String, Value) {
    let (h, body) = d;
    let header = |n: &str| {
        h.get(n)
            .unwrap_or_else(|| panic!("no {n}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    assert_eq!(
        header("x-slotti-digest"),
        hex::encode(mac.finalize().into_bytes()),
        "the digest of {body}"
    );
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("huolto-hook:hook-pw");
    assert_eq!(header("authorization"), format!("Basic {basic}"));
    (
        header("x-slotti-event"),
        header("x-slotti-shot-id"),
        serde_json::from_str(body).unwrap(),
    )
}

/// The simulator's Slotti counters once `done` holds of them (the sender counts a delivery
/// after the receiver's answer, which the test may see first); at most 10 s.
async fn settled(
    env: &TestEnv,
    done: impl Fn(&huoltosync::sim::SlottiStats) -> bool,
) -> huoltosync::sim::SlottiStats {
    for _ in 0..200 {
        let stats = env.sim().slotti_stats();
        if done(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the counters never settled: {:?}", env.sim().slotti_stats());
}

async fn register(env: &TestEnv, url: &str, topics: Value) -> String {
    let r = v1(env, reqwest::Method::POST, "webhooks/")
        .json(
            &json!({ "deliveryUrl": url, "topics": topics, "secret": "salaisuus",
                       "authUser": "huolto-hook", "authPassword": "hook-pw" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>()
        .await
        .unwrap()
        .as_str()
        .expect("the new webhook's id")
        .to_owned()
}

#[tokio::test]
async fn a_move_and_a_deletion_by_a_dispatcher_fire_signed_webhooks_with_fresh_shot_ids() {
    let env = env().await;
    let (url, mut rx) = receiver().await;
    let hook = register(
        &env,
        &url,
        json!(["booking.created", "booking.modified", "booking.deleted"]),
    )
    .await;
    let listed: Value = v1(&env, reqwest::Method::GET, "webhooks")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["guid"], hook.as_str());
    assert_eq!(listed[0]["deliveryUrl"], url.as_str());
    assert!(!listed.to_string().contains("salaisuus") && !listed.to_string().contains("hook-pw"));
    let bad = v1(&env, reqwest::Method::POST, "webhooks")
        .json(&json!({ "deliveryUrl": url, "topics": ["booking.moved"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("topics[0]"));
    let away = v1(&env, reqwest::Method::POST, "webhooks/")
        .json(
            &json!({ "deliveryUrl": "https://huolto.example.fi/slotti/webhook", "topics": ["*"] }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        away.status(),
        400,
        "the simulator delivers to loopback only"
    );

    let slot = first_slot(&env, 13).await;
    let made: Value = book(&env, &booking(&slot, "[huoltosync:t4]"))
        .await
        .json()
        .await
        .unwrap();
    let guid = made["guid"].as_str().unwrap().to_owned();
    let (event, created_shot, body) = checked(&next(&mut rx).await, "salaisuus");
    assert_eq!((event.as_str(), &body), ("booking.created", &made));

    // Moved by a dispatcher to a Saturday evening: unchecked, as in Slotti.
    let new_start = "2031-05-03T15:00:00Z";
    let r = http()
        .patch(format!("{}/_sim/slotti/bookings/{guid}", env.sim.root()))
        .json(&json!({ "start": new_start, "end": "2031-05-03T15:30:00+00:00", "privateNotes": "siirretty" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let moved: Value = r.json().await.unwrap();
    assert_eq!(moved["start"], new_start);
    assert_eq!(moved["warmupStart"], new_start);
    assert_eq!(moved["end"], "2031-05-03T15:30:00Z");
    assert!(moved["modified"].as_str() > made["modified"].as_str());
    let (event, moved_shot, body) = checked(&next(&mut rx).await, "salaisuus");
    assert_eq!((event.as_str(), &body), ("booking.modified", &moved));
    let listed = env.sim().slotti_bookings();
    assert_eq!(
        listed.iter().find(|b| b["guid"] == guid.as_str()),
        Some(&moved)
    );

    let r = http()
        .delete(format!("{}/_sim/slotti/bookings/{guid}", env.sim.root()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (event, deleted_shot, body) = checked(&next(&mut rx).await, "salaisuus");
    assert_eq!(
        (event.as_str(), body),
        ("booking.deleted", Value::String(guid.clone()))
    );
    assert!(
        created_shot != moved_shot && moved_shot != deleted_shot && created_shot != deleted_shot
    );
    assert!(
        !env.sim()
            .slotti_bookings()
            .iter()
            .any(|b| b["guid"] == guid.as_str())
    );
    let root = env.sim.root();
    let again = http()
        .delete(format!("{root}/_sim/slotti/bookings/{guid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let bad_patch = http()
        .patch(format!(
            "{root}/_sim/slotti/bookings/{}",
            listed[0]["guid"].as_str().unwrap()
        ))
        .json(&json!({ "stat": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_patch.status(), 400);
    assert!(bad_patch.text().await.unwrap().contains("stat"));

    let r = v1(&env, reqwest::Method::DELETE, &format!("webhooks/{hook}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        v1(&env, reqwest::Method::GET, "webhooks")
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
        json!([])
    );
    settled(&env, |s| s.webhooks_delivered == 3).await;
}

#[tokio::test]
async fn a_redelivery_repeats_the_shot_id_and_a_dropped_event_is_never_sent() {
    let env = env().await;
    let (url, mut rx) = receiver().await;
    register(&env, &url, json!(["*"])).await;
    let others = env.sim().slotti_bookings();
    let guid = others[0]["guid"].as_str().unwrap().to_owned();
    let patch = |notes: &'static str| {
        http()
            .patch(format!("{}/_sim/slotti/bookings/{guid}", env.sim.root()))
            .json(&json!({ "privateNotes": notes }))
            .send()
    };
    set_faults(&env, json!({ "slotti_webhook_redeliver_next": 1 })).await;
    assert_eq!(patch("eka").await.unwrap().status(), 200);
    let first = checked(&next(&mut rx).await, "salaisuus");
    let second = checked(&next(&mut rx).await, "salaisuus");
    assert_eq!(
        first, second,
        "a redelivery is the same event with the same Shot-ID"
    );
    assert_eq!(first.2["privateNotes"], "eka");

    set_faults(&env, json!({ "slotti_webhook_drop_next": 1 })).await;
    assert_eq!(patch("toka").await.unwrap().status(), 200);
    assert_eq!(patch("kolmas").await.unwrap().status(), 200);
    let third = checked(&next(&mut rx).await, "salaisuus");
    assert_eq!(
        third.2["privateNotes"], "kolmas",
        "the dropped event never came"
    );
    assert_ne!(third.1, first.1);
    let stats = env.sim().slotti_stats();
    assert_eq!((stats.webhooks_dropped, stats.webhooks_redelivered), (1, 1));
}

#[tokio::test]
async fn without_slotti_the_simulator_serves_none_of_it() {
    let env = Setup::tickets(1).start().await;
    let r = http().get(v2(&env, "services")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http()
        .get(format!("{}/_sim/slotti/bookings", env.sim.root()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(env.sim().slotti_bookings().is_empty());
}

#[tokio::test]
async fn sim_slotti_prints_a_second_line_with_the_slotti_url() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(crate::helpers::BIN)
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--tickets",
            "2",
            "--seed",
            "11",
            "--slotti",
        ])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut read = async || {
        tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    let first = read().await;
    let second = read().await;
    let port = first
        .strip_prefix("listening on http://127.0.0.1:")
        .unwrap()
        .strip_suffix("/v10/api/")
        .unwrap();
    assert_eq!(second, format!("slotti on http://127.0.0.1:{port}/slotti/"));
    let url = second.strip_prefix("slotti on ").unwrap();
    let r = http()
        .get(format!("{url}booking/huoltosim/api/v2/resources"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The same seed draws the same calendar as in process.
    let listed: Value = http()
        .get(format!("http://127.0.0.1:{port}/_sim/slotti/bookings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let in_process = huoltosync::sim::Sim::new(&huoltosync::sim::SimOptions {
        seed: 11,
        ..Default::default()
    })
    .with_slotti();
    let starts = |v: &[Value]| {
        v.iter()
            .map(|b| (b["resourceGuid"].clone(), b["start"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        starts(listed.as_array().unwrap()),
        starts(&in_process.slotti_bookings())
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_slow_or_failing_receiver_never_holds_up_the_api_and_a_retry_keeps_the_shot_id() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let env = env().await;
    // The receiver holds its first request until released, then fails it once with a 500.
    let release = Arc::new(tokio::sync::Notify::new());
    let seen = Arc::new(AtomicU32::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let (release, seen) = (Arc::clone(&release), Arc::clone(&seen));
            move |headers: axum::http::HeaderMap, body: String| {
                let (release, seen, tx) = (Arc::clone(&release), Arc::clone(&seen), tx.clone());
                async move {
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send((headers, body));
                    if n == 0 {
                        release.notified().await;
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(tcp, app).await });
    register(
        &env,
        &format!("http://{addr}/hook"),
        json!(["booking.modified"]),
    )
    .await;
    let guid = env.sim().slotti_bookings()[0]["guid"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{}/_sim/slotti/bookings/{guid}", env.sim.root());
    let first = http()
        .patch(&url)
        .json(&json!({ "privateNotes": "yksi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let held = next(&mut rx).await;
    // The receiver still holds the first delivery: the API answers all the same.
    let second = tokio::time::timeout(
        Duration::from_secs(20),
        http()
            .patch(&url)
            .json(&json!({ "privateNotes": "kaksi" }))
            .send(),
    )
    .await
    .expect("the API answers while a delivery hangs")
    .unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "deliveries go one at a time"
    );
    release.notify_one();
    // The failed delivery is tried again, the same event with the same Shot-ID; then the next.
    let retried = next(&mut rx).await;
    assert_eq!(checked(&retried, "salaisuus"), checked(&held, "salaisuus"));
    let then = checked(&next(&mut rx).await, "salaisuus");
    assert_eq!(then.2["privateNotes"], "kaksi");
    assert_ne!(then.1, checked(&held, "salaisuus").1);
    let stats = settled(&env, |s| s.webhooks_delivered == 2).await;
    assert_eq!(stats.webhooks_failed, 0);
}
