//! The Slotti client against a fake Slotti (a tiny axum app on 127.0.0.1:0 answering in the
//! seed's shapes): reads retried on 503 and 429, a booking never resent after a lost answer, a
//! taken slot as its own error, `GET bookings` in windows of at most 30 days, the key as Basic
//! user and never in an error, metering, `check-config --online` and `slotti webhook`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use huoltosync::config::Config;
use huoltosync::slotti::{BookingRequest, Client, Contact, SlottiError};
use serde_json::{Value, json};

use crate::helpers::{Setup, config_text, run_cli};

const KEY: &str = "slotti-secret-key-4711";
const ACCOUNT: &str = "testitili";

/// What the fake Slotti saw and what it answers next.
#[derive(Default)]
struct Fake {
    /// Statuses `GET services` answers before it succeeds.
    services_fail: Mutex<Vec<u16>>,
    /// `POST bookings/` answers 409.
    taken: std::sync::atomic::AtomicBool,
    /// Every request: (method path, Authorization header).
    seen: Mutex<Vec<(String, Option<String>)>>,
    /// `GET bookings` windows asked.
    windows: Mutex<Vec<(String, String)>>,
    hits: AtomicU64,
    /// Bodies of `POST bookings/` and `POST bookings/serviceavailability`.
    bodies: Mutex<Vec<Value>>,
    /// Registered webhooks, as posted, with their guid.
    webhooks: Mutex<Vec<(String, Value)>>,
}

type Shared = Arc<Fake>;

fn note(f: &Fake, what: String, headers: &HeaderMap) {
    f.hits.fetch_add(1, Ordering::SeqCst);
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    f.seen.lock().unwrap().push((what, auth));
}

fn api_auth(headers: &HeaderMap) -> bool {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"))
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

async fn services(State(f): State<Shared>, headers: HeaderMap) -> Response {
    note(&f, "GET services".into(), &headers);
    let next = {
        let mut q = f.services_fail.lock().unwrap();
        (!q.is_empty()).then(|| q.remove(0))
    };
    match next {
        Some(429) => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")], "hidas").into_response(),
        // 429 with a Retry-After of an hour.
        Some(4290) => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "3600")], "huomenna").into_response(),
        Some(s) => (StatusCode::from_u16(s).unwrap(), "kaatui").into_response(),
        None => axum::Json(json!([
            {"categoryGuid": "c1", "providerGuids": ["r-1"], "ordinal": 0, "price": 30,
             "translations": [{"name": "Huoltokäynti 30 min", "languageCode": "fi", "description": null}],
             "durationMinutes": 30, "onlyBookableByPhone": false, "guid": "s-30"}
        ]))
        .into_response(),
    }
}

async fn resources(State(f): State<Shared>, headers: HeaderMap) -> Response {
    note(&f, "GET resources".into(), &headers);
    axum::Json(json!([{"name": "Asentaja 1", "imgUrl": null, "guid": "r-1", "id": 1}]))
        .into_response()
}

async fn book(State(f): State<Shared>, headers: HeaderMap, body: String) -> Response {
    note(&f, "POST bookings".into(), &headers);
    f.bodies
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap());
    if f.taken.load(Ordering::SeqCst) {
        return (StatusCode::CONFLICT, r#"{"message": "Aika ei ole vapaa"}"#).into_response();
    }
    let v: Value = serde_json::from_str(&body).unwrap();
    axum::Json(json!({"guid": "b-new", "start": v["start"], "end": v["end"], "info": v["info"]}))
        .into_response()
}

async fn availability(State(f): State<Shared>, headers: HeaderMap, body: String) -> Response {
    note(&f, "POST availability".into(), &headers);
    f.bodies
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap());
    axum::Json(json!([
        {"availableTimes": [], "date": "2026-04-06"},
        {"availableTimes": [
            {"resourceGuid": "r-1", "resourceId": 1, "start": "2026-04-07T09:30+03:00", "end": "2026-04-07T10:00+03:00"},
            {"resourceGuid": "r-1", "resourceId": 1, "start": "2026-04-07T09:00+03:00", "end": "2026-04-07T09:30+03:00"}
         ], "resourceGuid": "r-1", "date": "2026-04-07"}
    ]))
    .into_response()
}

async fn bookings(
    State(f): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    note(&f, "GET api/bookings".into(), &headers);
    if !api_auth(&headers) {
        return (StatusCode::UNAUTHORIZED, format!("bad key {KEY}")).into_response();
    }
    let (from, to) = (q["from"].clone(), q["to"].clone());
    f.windows.lock().unwrap().push((from.clone(), to.clone()));
    let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    if t(&to) - t(&from) > chrono::Duration::days(30) {
        return (StatusCode::BAD_REQUEST, "max 30 days").into_response();
    }
    // Every window lists the same long booking, and one of its own.
    let own = t(&from) + chrono::Duration::hours(1);
    axum::Json(json!([
        {"guid": "b-long", "start": "2026-01-01T08:00:00Z", "end": "2026-01-01T09:00:00Z", "serviceLinks": []},
        {"guid": format!("b-{from}"), "start": own.to_rfc3339(), "end": (own + chrono::Duration::minutes(30)).to_rfc3339()}
    ]))
    .into_response()
}

async fn webhooks(State(f): State<Shared>, headers: HeaderMap) -> Response {
    note(&f, "GET webhooks".into(), &headers);
    if !api_auth(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let list: Vec<Value> = f
        .webhooks
        .lock()
        .unwrap()
        .iter()
        .map(|(g, v)| json!({"guid": g, "deliveryUrl": v["deliveryUrl"], "topics": v["topics"]}))
        .collect();
    axum::Json(Value::Array(list)).into_response()
}

async fn create_webhook(State(f): State<Shared>, headers: HeaderMap, body: String) -> Response {
    note(&f, "POST webhooks".into(), &headers);
    if !api_auth(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut list = f.webhooks.lock().unwrap();
    let guid = format!("wh-{}", list.len() + 1);
    list.push((guid.clone(), serde_json::from_str(&body).unwrap()));
    axum::Json(json!(guid)).into_response()
}

async fn delete_webhook(
    State(f): State<Shared>,
    headers: HeaderMap,
    UrlPath(guid): UrlPath<String>,
) -> Response {
    note(&f, format!("DELETE webhooks/{guid}"), &headers);
    if !api_auth(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut list = f.webhooks.lock().unwrap();
    match list.iter().position(|(g, _)| *g == guid) {
        Some(i) => {
            list.remove(i);
            StatusCode::NO_CONTENT.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A fake Slotti on a fresh loopback port.
async fn fake() -> (SocketAddr, Shared) {
    let f: Shared = Default::default();
    let v2 = format!("/booking/{ACCOUNT}/api/v2");
    let app = Router::new()
        .route(&format!("{v2}/services"), get(services))
        .route(&format!("{v2}/resources"), get(resources))
        .route(&format!("{v2}/bookings/"), post(book))
        .route(
            &format!("{v2}/bookings/serviceavailability"),
            post(availability),
        )
        .route(
            "/huge/booking/testitili/api/v2/services",
            get(|| async { "[".repeat(5000) }),
        )
        .route(
            "/bad/booking/testitili/api/v2/services",
            get(|| async { r#"[{"guid": 5}]"# }),
        )
        .route("/api/v1/bookings/", get(bookings))
        .route("/api/v1/webhooks", get(webhooks))
        .route("/api/v1/webhooks/", post(create_webhook))
        .route("/api/v1/webhooks/{guid}", delete(delete_webhook))
        .with_state(f.clone());
    (serve(app).await, f)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A config with `[slotti]` at `base`, written in `dir` through the real loader; `extra` is
/// more TOML after the section.
fn write_config(dir: &Path, base: &str, extra: &str) -> (PathBuf, Config) {
    let slotti = format!(
        "[slotti]\nbase_url = {base:?}\nbooking_account = {ACCOUNT:?}\napi_key = {KEY:?}\n\
         default_service = \"Huoltokäynti 30 min\"\n{extra}\n\
         [slotti.webhook]\nsecret = \"webhook-salaisuus\"\npublic_url = \"https://huolto.example.fi/slotti/webhook\"\n"
    );
    let mut setup = Setup::tickets(0).sections(&slotti);
    setup.accounts = vec!["a".into()];
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        config_text("http://127.0.0.1:9/v10/api/", &dir.join("store.db"), &setup),
    )
    .unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}")).config;
    (path, config)
}

fn client(config: &Config) -> Client {
    let exchange = huoltosync::remote::Exchange::new(config).unwrap();
    Client::new(config, config.slotti.as_ref().unwrap(), &exchange).unwrap()
}

fn metered(config: &Config) -> Vec<(String, String, i64)> {
    let db = rusqlite::Connection::open(&config.store.path).unwrap();
    let mut st = db
        .prepare("SELECT account, endpoint, calls FROM api_calls ORDER BY account, endpoint")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn request(start: &str) -> BookingRequest {
    let start = DateTime::parse_from_rfc3339(start)
        .unwrap()
        .with_timezone(&Utc);
    BookingRequest {
        resource_id: 1,
        start,
        end: start + chrono::Duration::minutes(30),
        customer: Contact {
            first_name: "Testi".into(),
            last_name: "Asukas".into(),
            email: None,
            phone: Some("040-1234567".into()),
            language: "fi".into(),
        },
        info: Some("a / 1001: Hana vuotaa [huoltosync:x]".into()),
        service_guid: "s-30".into(),
        duration_minutes: 30,
        any_provider: false,
    }
}

#[tokio::test]
async fn reads_are_retried_on_503_and_429_then_succeed_and_every_call_is_metered_as_slottis() {
    let (addr, f) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, config) = write_config(dir.path(), &format!("http://{addr}/"), "");
    *f.services_fail.lock().unwrap() = vec![503, 429];
    let c = client(&config);
    let services = c.services().await.unwrap();
    assert_eq!(services[0].name, "Huoltokäynti 30 min");
    assert_eq!(f.hits.load(Ordering::SeqCst), 3);
    assert_eq!(c.unrecorded_calls(), 3);

    // Failing every attempt: as many attempts as [tampuuri.retry] max_attempts (3), then Server.
    *f.services_fail.lock().unwrap() = vec![502, 502, 502, 502];
    let e = c.services().await.unwrap_err();
    assert!(
        matches!(e, SlottiError::Server { status: 502, .. }),
        "{e:?}"
    );
    assert_eq!(f.hits.load(Ordering::SeqCst), 6);
    // A Retry-After beyond [slotti] max_retry_after_secs ends the call at once, with it.
    *f.services_fail.lock().unwrap() = vec![4290];
    let e = c.services().await.unwrap_err();
    assert!(
        matches!(e, SlottiError::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 3600),
        "{e:?}"
    );
    assert_eq!(f.hits.load(Ordering::SeqCst), 7);

    let store = huoltosync::store::Handle::open(config.store.path.clone())
        .await
        .unwrap();
    assert_eq!(c.meter().record(&store).await.unwrap(), 7);
    drop(store);
    assert_eq!(
        metered(&config),
        [("slotti".to_owned(), "GET booking/services".to_owned(), 7)]
    );
    // `status` shows them on a line of their own, and `cost` does not bill them.
    let (_, out, _) = run_cli(&path, &["status"]).await;
    assert!(
        out.contains("slotti: API calls: 7 today, 7 this month")
            && out.contains("GET booking/services 7"),
        "{out}"
    );
    let (_, out, _) = run_cli(&path, &["status", "--json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["slotti"]["calls_today"], 7, "{out}");
    let (code, out, err) = run_cli(&path, &["cost", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("\"slotti\""), "{out}");
}

#[tokio::test]
async fn a_booking_whose_connection_is_reset_is_not_sent_again_and_is_in_doubt() {
    // A server that reads the request and closes the connection without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 64 * 1024];
                let _ = sock.read(&mut buf).await;
                drop(sock);
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = write_config(dir.path(), &format!("http://{addr}/"), "");
    let c = client(&config);
    let e = c.book(&request("2026-04-07T06:00:00Z")).await.unwrap_err();
    assert!(e.in_doubt(), "{e:?}");
    assert!(e.to_string().contains("may have reached Slotti"), "{e}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the booking was sent again"
    );
    assert_eq!(c.unrecorded_calls(), 1);
    // A read on the same server is retried ([tampuuri.retry] max_attempts = 3).
    let e = c.services().await.unwrap_err();
    assert!(!e.in_doubt() && e.is_transient(), "{e:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_taken_slot_is_slot_taken_and_a_free_one_is_booked_once() {
    let (addr, f) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = write_config(dir.path(), &format!("http://{addr}/"), "");
    let c = client(&config);
    f.taken.store(true, Ordering::SeqCst);
    let e = c.book(&request("2026-04-07T06:00:00Z")).await.unwrap_err();
    assert!(
        matches!(e, SlottiError::SlotTaken { status: 409, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("Aika ei ole vapaa"), "{e}");
    assert_eq!(f.hits.load(Ordering::SeqCst), 1);
    f.taken.store(false, Ordering::SeqCst);
    let b = c
        .book(&request("2026-04-07T06:00:00Z"))
        .await
        .unwrap()
        .expect("the answer is a booking");
    assert_eq!(b.guid, "b-new");
    // The body is the seed's, with the times as JavaScript's toISOString() writes them.
    let sent = f.bodies.lock().unwrap()[1].clone();
    assert_eq!(
        sent,
        json!({
            "resourceId": 1,
            "start": "2026-04-07T06:00:00.000Z",
            "end": "2026-04-07T06:30:00.000Z",
            "customerLink": {"personCount": 1, "customer": {"firstName": "Testi", "lastName": "Asukas",
                "email": null, "phone": "040-1234567", "language": "fi"}},
            "info": "a / 1001: Hana vuotaa [huoltosync:x]",
            "serviceLinks": [{"type": "primary", "serviceGuid": "s-30", "durationMinutes": 30}],
            "anyProvider": false
        })
    );
    assert_eq!(b.start.to_rfc3339(), "2026-04-07T06:00:00+00:00");
    assert_eq!(f.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bookings_over_75_days_are_read_in_three_windows_of_at_most_30_days_and_merged() {
    let (addr, f) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = write_config(dir.path(), &format!("http://{addr}/"), "");
    let c = client(&config);
    let from = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let to = from + chrono::Duration::days(75);
    let got = c.bookings(from, to).await.unwrap();
    let windows = f.windows.lock().unwrap().clone();
    assert_eq!(windows.len(), 3, "{windows:?}");
    let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    assert_eq!(t(&windows[0].0), from);
    assert_eq!(t(&windows[2].1), to);
    for (i, (a, b)) in windows.iter().enumerate() {
        assert!(t(b) - t(a) <= chrono::Duration::days(30), "{a}..{b}");
        if i > 0 {
            assert_eq!(t(a), t(&windows[i - 1].1), "windows are contiguous");
        }
    }
    // The booking every window lists is there once; each window's own one too.
    let guids: Vec<&str> = got.iter().map(|b| b.guid.as_str()).collect();
    assert_eq!(
        guids.iter().filter(|g| **g == "b-long").count(),
        1,
        "{guids:?}"
    );
    assert_eq!(got.len(), 4, "{guids:?}");
}

#[tokio::test]
async fn the_key_is_the_basic_user_with_no_password_and_never_in_an_error() {
    let (addr, f) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, config) = write_config(dir.path(), &format!("http://{addr}/"), "");
    let c = client(&config);
    c.webhooks().await.unwrap();
    c.services().await.unwrap();
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"))
    );
    for (what, auth) in f.seen.lock().unwrap().iter() {
        assert_eq!(auth.as_deref(), Some(want.as_str()), "{what}");
    }
    // A server that quotes the key back: the error says 401, never the key.
    let (wrong_path, wrong) = {
        let d = dir.path().join("wrong");
        std::fs::create_dir(&d).unwrap();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(KEY, "another-key-quoted-back");
        std::fs::write(d.join("config.toml"), &text).unwrap();
        let p = d.join("config.toml");
        let c = Config::load(&p).unwrap().config;
        (p, c)
    };
    let e = client(&wrong)
        .bookings(Utc::now(), Utc::now() + chrono::Duration::days(1))
        .await
        .unwrap_err();
    assert!(matches!(e, SlottiError::Auth { status: 401, .. }), "{e:?}");
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains("another-key-quoted-back") && !text.contains(KEY),
        "{text}"
    );
    let (code, out, err) = run_cli(&wrong_path, &["slotti", "webhook", "list"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("api_key") && err.contains("401"), "{err}");
    assert!(
        !err.contains("another-key-quoted-back") && !out.contains("another-key"),
        "{err}"
    );
}

#[tokio::test]
async fn slotti_webhook_register_list_and_delete_manage_the_registration() {
    let (addr, f) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, config) = write_config(dir.path(), &format!("http://{addr}/"), "");
    let (code, out, err) = run_cli(&path, &["slotti", "webhook", "register"]).await;
    assert_eq!((code, out.as_str()), (0, "wh-1\n"), "{err}");
    let posted = f.webhooks.lock().unwrap()[0].1.clone();
    assert_eq!(
        posted["deliveryUrl"],
        "https://huolto.example.fi/slotti/webhook"
    );
    assert_eq!(
        posted["topics"],
        json!(["booking.created", "booking.modified", "booking.deleted"])
    );
    assert_eq!(posted["secret"], "webhook-salaisuus");
    assert_eq!(posted["authUser"], Value::Null);
    let (code, out, err) = run_cli(
        &path,
        &[
            "slotti",
            "webhook",
            "register",
            "--url",
            "https://other.example/hook",
        ],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "wh-2\n"), "{err}");

    let (code, out, _) = run_cli(&path, &["slotti", "webhook", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("wh-1  https://huolto.example.fi/slotti/webhook  booking.created,booking.modified,booking.deleted")
            && out.contains("wh-2  https://other.example/hook"),
        "{out}"
    );
    let (_, out, _) = run_cli(&path, &["slotti", "webhook", "list", "--json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[1]["guid"], "wh-2");
    assert_eq!(v[1]["deliveryUrl"], "https://other.example/hook");

    let (code, out, err) = run_cli(&path, &["slotti", "webhook", "delete", "wh-1"]).await;
    assert_eq!((code, out.as_str()), (0, "deleted webhook wh-1\n"), "{err}");
    let (code, _, err) = run_cli(&path, &["slotti", "webhook", "delete", "wh-1"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let (_, out, _) = run_cli(&path, &["slotti", "webhook", "list", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // With a store in place, the commands' calls are metered in it as Slotti's.
    drop(
        huoltosync::store::Handle::open(config.store.path.clone())
            .await
            .unwrap(),
    );
    let (code, _, _) = run_cli(&path, &["slotti", "webhook", "list"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        metered(&config),
        [("slotti".to_owned(), "GET api/webhooks".to_owned(), 1)]
    );

    // A bad --url is bad usage.
    let (code, _, err) = run_cli(
        &path,
        &["slotti", "webhook", "register", "--url", "ftp://x"],
    )
    .await;
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn slotti_commands_without_the_section_are_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::tickets(0);
    setup.accounts = vec!["a".into()];
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        config_text(
            "http://127.0.0.1:9/v10/api/",
            &dir.path().join("s.db"),
            &setup,
        ),
    )
    .unwrap();
    let (code, _, err) = run_cli(&path, &["slotti", "webhook", "list"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no [slotti] section"), "{err}");
}

#[tokio::test]
async fn check_config_online_names_the_services_and_technicians_slotti_lacks() {
    let (addr, _f) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = "[[slotti.rules]]\nurgency = \"Kiireellinen\"\nservice = \"Huoltokäynti 90 min\"\ntechnicians = [\"Asentaja 1\", \"Asentaja 9\"]\n";
    let (path, _) = write_config(dir.path(), &format!("http://{addr}/"), rules);
    let (code, out, _) = run_cli(&path, &["check-config"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("slotti: booking account testitili"), "{out}");
    let (code, out, _) = run_cli(&path, &["check-config", "--online"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the API key works (GET webhooks: 0 registered)"),
        "{out}"
    );
    assert!(
        out.contains("default_service \"Huoltokäynti 30 min\": service Huoltokäynti 30 min (s-30)"),
        "{out}"
    );
    assert!(
        out.contains("FAILED: slotti.rules[0].service \"Huoltokäynti 90 min\": no such service"),
        "{out}"
    );
    assert!(
        out.contains("slotti.rules[0].technicians \"Asentaja 1\": resource Asentaja 1 (id 1)"),
        "{out}"
    );
    assert!(
        out.contains("FAILED: slotti.rules[0].technicians \"Asentaja 9\": no such technician"),
        "{out}"
    );
    assert!(!out.contains(KEY), "{out}");
}

#[tokio::test]
async fn free_times_are_asked_in_the_seeds_shape_and_read_with_their_offset_in_order() {
    let (addr, f) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = write_config(dir.path(), &format!("http://{addr}/"), "");
    let c = client(&config);
    let start = DateTime::parse_from_rfc3339("2026-04-06T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let slots = c
        .availability(
            start,
            start + chrono::Duration::days(2),
            "s-30",
            30,
            Some(1),
        )
        .await
        .unwrap();
    let starts: Vec<String> = slots.iter().map(|s| s.start.to_rfc3339()).collect();
    assert_eq!(
        starts,
        ["2026-04-07T09:00:00+03:00", "2026-04-07T09:30:00+03:00"]
    );
    assert_eq!(
        f.bodies.lock().unwrap()[0],
        json!({"params": {"start": "2026-04-06T00:00:00.000Z", "end": "2026-04-08T00:00:00.000Z",
            "serviceLinks": [{"type": "primary", "serviceGuid": "s-30", "durationMinutes": 30}],
            "resourceId": 1}})
    );
    // An empty range is refused before anything is sent.
    let e = c
        .availability(start, start, "s-30", 30, None)
        .await
        .unwrap_err();
    assert!(matches!(e, SlottiError::Invalid { .. }), "{e:?}");
    assert_eq!(f.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_huge_or_malformed_answer_is_an_error_naming_the_endpoint() {
    let (addr, _f) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_config(dir.path(), &format!("http://{addr}/huge/"), "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[tampuuri]\n", "[tampuuri]\nmax_response_bytes = 1024\n");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap().config;
    let e = client(&config).services().await.unwrap_err();
    assert!(
        matches!(e, SlottiError::TooLarge { limit: 1024, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("GET booking/services"), "{e}");

    let (_, config) = write_config(dir.path(), &format!("http://{addr}/bad/"), "");
    let e = client(&config).services().await.unwrap_err();
    assert!(matches!(e, SlottiError::Malformed { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("GET booking/services") && text.contains("guid"),
        "{text}"
    );
}

/// A Slotti that answers every request `[]` on a kept-alive connection, and counts the
/// connections it accepted.
async fn counting_slotti() -> (SocketAddr, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
                loop {
                    // A GET's head ends at a blank line, and it has no body.
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    buf.drain(..end);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n[]";
                    if sock.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn clients_on_one_exchange_share_its_pool_across_push_passes() {
    let (addr, accepted) = counting_slotti().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = write_config(dir.path(), &format!("http://{addr}/"), "");
    let slotti = config.slotti.as_ref().unwrap();
    let exchange = huoltosync::remote::Exchange::new(&config).unwrap();
    let pools = exchange.pools();
    // Each push pass makes its Slotti client anew, on the daemon's one exchange.
    for _pass in 0..3 {
        let c = Client::new(&config, slotti, &exchange).unwrap();
        assert!(c.services().await.unwrap().is_empty());
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection, kept alive across the passes"
    );
    assert_eq!(exchange.pools(), pools, "no pool was added");
    // Another exchange is another pool, and so another connection.
    let other = huoltosync::remote::Exchange::new(&config).unwrap();
    let c = Client::new(&config, slotti, &other).unwrap();
    c.services().await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// The daemon keeps one exchange for its life: a reload hands it the new config (here a
/// throttle of 10 calls a second where there was none) and the connection made before the
/// reload serves after it.
#[tokio::test]
async fn a_reloaded_config_reaches_the_exchange_without_dropping_its_pool() {
    let (addr, accepted) = counting_slotti().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, mut config) = write_config(dir.path(), &format!("http://{addr}/"), "");
    config.tampuuri.max_requests_per_second = 0.0;
    let slotti = config.slotti.clone().unwrap();
    let exchange = huoltosync::remote::Exchange::new(&config).unwrap();
    let c = Client::new(&config, &slotti, &exchange).unwrap();
    c.services().await.unwrap();
    let pools = exchange.pools();
    let mut reloaded = config.clone();
    reloaded.tampuuri.max_requests_per_second = 10.0;
    exchange.reconfigure(&reloaded).unwrap();
    let c = Client::new(&reloaded, &slotti, &exchange).unwrap();
    let started = std::time::Instant::now();
    for _ in 0..5 {
        c.services().await.unwrap();
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(350),
        "5 calls in {:?} after a reload to 10 a second",
        started.elapsed()
    );
    assert_eq!(exchange.pools(), pools, "no pool was added or dropped");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the connection of before the reload serves after it"
    );
}

#[tokio::test]
async fn slotti_calls_are_throttled_per_host() {
    let (addr, _) = counting_slotti().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, mut config) = write_config(dir.path(), &format!("http://{addr}/"), "");
    config.tampuuri.max_requests_per_second = 10.0;
    let exchange = huoltosync::remote::Exchange::new(&config).unwrap();
    let c = Client::new(&config, config.slotti.as_ref().unwrap(), &exchange).unwrap();
    let started = std::time::Instant::now();
    for _ in 0..5 {
        c.services().await.unwrap();
    }
    // The first at once, then one every 100 ms.
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(350),
        "5 calls in {:?} at 10 a second",
        started.elapsed()
    );
    assert_eq!(c.unrecorded_calls(), 5);
}

#[tokio::test]
async fn slotti_calls_that_never_connect_are_counted_as_unreached_not_as_calls() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = write_config(dir.path(), &format!("http://127.0.0.1:{port}/"), "");
    let c = client(&config);
    let e = c.services().await.unwrap_err();
    assert!(matches!(e, SlottiError::Unreachable { .. }), "{e:?}");
    assert_eq!(
        c.unrecorded_calls(),
        0,
        "nothing reached Slotti: not billed"
    );
    assert_eq!(
        c.take_unreached(),
        3,
        "each of [tampuuri.retry] max_attempts"
    );
    assert_eq!(c.take_unreached(), 0);
}

#[tokio::test]
async fn a_404_on_the_booking_page_names_booking_account() {
    let (addr, _) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    // No booking page under this prefix: as if booking_account were wrong.
    let (_, config) = write_config(dir.path(), &format!("http://{addr}/elsewhere/"), "");
    let e = client(&config).services().await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, SlottiError::NotFound { .. }), "{e:?}");
    assert!(
        text.contains("HTTP 404")
            && text.contains(&format!("booking_account = \"{ACCOUNT}\""))
            && text.contains("/elsewhere/booking/testitili/api/v2/services"),
        "{text}"
    );
}
