//! `cargo bench --bench api`: the HTTP API and the subscribers against 100 000 mirrored
//! tickets, on loopback, printed as the "HTTP API" section of BENCHMARKS.md.
//!
//! The simulator runs in its own process (`huoltosync sim`, 100 000 tickets); a child
//! `huoltosync run --once` mirrors them into a fresh store; then a `huoltosync run` daemon
//! serves the API (`[api]`, a read token), delivers the feed to one subscriber (a receiver in
//! this process that answers 204 at once) and listens for the simulator's webhooks. Measured:
//!
//! - paging: `GET /api/v1/tickets?limit=1000` following `next_cursor` through every ticket,
//!   each page timed from request to its last body byte (keep-alive client), twice;
//! - commit to long poll and commit to subscriber: a ticket created in the simulator is
//!   delivered by webhook to the daemon, whose sync commits it (`ticket.new`); a long poll
//!   (`changes?after=<end>&wait=30`) already waiting and the subscriber each get the event.
//!   Latency is the arrival time (this process's wall clock) minus the event's `at`, which
//!   the feed trigger sets inside the committing transaction (millisecond resolution);
//! - throughput: 20 000 tickets patched in the simulator, one `run --once` commits 20 000
//!   `ticket.changed` events; events per second from the subscriber's first to last arrival.
//!
//! Timings are reported, never asserted. `BENCH_QUICK=1` uses 10 000 tickets, 20 samples and
//! 2 000 events.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_huoltosync");
const TOKEN: &str = "bench-read-token-0123456789";
/// `whsec_` + base64 of 24 bytes.
const SECRET: &str = "whsec_YmVuY2gtc3Vic2NyaWJlci1zZWNyZXQtMjQ=";
const HOOK_SECRET: &str = "bench";

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The simulator with `tickets` tickets delivering webhooks to `hook`: (process, root, base).
fn start_sim(tickets: u64, hook: &str) -> (Proc, String, String) {
    let mut child = Command::new(BIN)
        .args(["sim", "--listen", "127.0.0.1:0", "--seed", "9"])
        .args(["--tickets", &tickets.to_string(), "--latency-ms", "0"])
        .args(["--webhook-url", hook, "--webhook-secret", HOOK_SECRET])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the simulator starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().trim_start_matches("listening on ").to_owned();
    let root = base.trim_end_matches("/v10/api/").to_owned();
    (Proc(child), root, base)
}

fn write_config(dir: &Path, base: &str, api_port: u16, hook_port: u16, sub: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\npath = \"store.db\"\n\
             [tampuuri]\nbase_url = \"{base}\"\napi_key = \"sim-key\"\ncustomer_name = \"Simulaattori Oy\"\nmax_requests_per_second = 0\n\
             [schedule]\npoll = \"0 0 0 1 1 *\"\n\
             [webhook]\nlisten = \"127.0.0.1:{hook_port}\"\nhmac_secret = \"{HOOK_SECRET}\"\nreconcile = \"0 0 0 1 1 *\"\n\
             [api]\nlisten = \"127.0.0.1:{api_port}\"\n\
             [[api.tokens]]\nname = \"bench\"\ntoken = \"{TOKEN}\"\nscope = \"read\"\n\
             [[api.subscribers]]\nname = \"bench\"\nurl = \"{sub}\"\nsecret = \"{SECRET}\"\n\
             [[accounts]]\nname = \"sim-1\"\nusername = \"huolto\"\npassword = \"sim-password\"\ncontractor_id = 4711\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
}

fn run_once(config: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(["run", "--once"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "huoltosync run --once failed");
    started.elapsed()
}

/// What the subscriber receiver saw: per event, its `seq`, `at` and when it arrived.
#[derive(Default)]
struct Received {
    events: Vec<(i64, DateTime<Utc>, DateTime<Utc>, Instant)>,
}

async fn receiver(seen: Arc<Mutex<Received>>) -> u16 {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/events",
        post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let (now, instant) = (Utc::now(), Instant::now());
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    let seq = v["seq"].as_i64().unwrap_or(-1);
                    let at = parse_at(v["at"].as_str().unwrap_or(""));
                    seen.lock().unwrap().events.push((seq, at, now, instant));
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

fn parse_at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|_| panic!("an event's at {s:?} is RFC 3339"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50, p95 and max of `xs` (milliseconds), nearest rank.
fn summary(xs: &mut [f64]) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    let pct = |p: f64| xs[((xs.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    (pct(0.50), pct(0.95), xs[xs.len() - 1])
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    // `cargo bench` passes --bench; anything else (cargo test --benches) just checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    huoltosync::tampuuri::install_tls_provider();
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (tickets, samples, burst) = if quick {
        (10_000u64, 20usize, 2_000u64)
    } else {
        (100_000, 60, 20_000)
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = Arc::new(Mutex::new(Received::default()));
    let sub_port = rt.block_on(receiver(seen.clone()));
    let (api_port, hook_port) = (free_port(), free_port());
    let (_sim, root, base) = start_sim(
        tickets,
        &format!("http://127.0.0.1:{hook_port}/tampuuri/webhook"),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &base,
        api_port,
        hook_port,
        &format!("http://127.0.0.1:{sub_port}/events"),
    );
    println!(
        "Machine: {} cores; load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let first = run_once(&cfg);
    println!("Mirrored {tickets} tickets in {:.0} ms.", ms(first));
    let _daemon = Proc(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for port in [api_port, hook_port] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the daemon does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let api = format!("http://127.0.0.1:{api_port}/api/v1");
    let client = reqwest::Client::new();
    rt.block_on(async {
        // a. Paging.
        println!();
        println!("| pass | pages | tickets | page p50 | page p95 | page max | all pages |");
        println!("|---|---|---|---|---|---|---|");
        let mut ids: Vec<i64> = Vec::new();
        for pass in 1..=2 {
            let mut cursor: Option<String> = None;
            let (mut lat, mut count) = (Vec::new(), 0usize);
            let all = Instant::now();
            loop {
                // The cursor is base64url: nothing to escape.
                let url = match &cursor {
                    Some(c) => format!("{api}/tickets?limit=1000&cursor={c}"),
                    None => format!("{api}/tickets?limit=1000"),
                };
                let req = client.get(url).bearer_auth(TOKEN);
                let started = Instant::now();
                let resp = req.send().await.unwrap();
                assert!(resp.status().is_success(), "tickets: {}", resp.status());
                let body = resp.bytes().await.unwrap();
                lat.push(ms(started.elapsed()));
                let page: Value = serde_json::from_slice(&body).unwrap();
                let items = page["items"].as_array().unwrap();
                count += items.len();
                if pass == 1 {
                    ids.extend(items.iter().filter(|t| t["open"] == true).filter_map(|t| t["id"].as_i64()));
                }
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
                assert!(lat.len() <= 1000, "paging does not end");
            }
            let all = all.elapsed();
            let pages = lat.len();
            let (p50, p95, max) = summary(&mut lat);
            println!(
                "| {pass} | {pages} | {count} | {p50:.1} ms | {p95:.1} ms | {max:.1} ms | {:.0} ms |",
                ms(all)
            );
        }

        // b, c. Commit to long poll, commit to subscriber.
        let head = |after: i64| {
            let client = client.clone();
            let api = api.clone();
            async move {
                let v: Value = client
                    .get(format!("{api}/changes?after={after}&limit=1000"))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v["next_after"].as_i64().unwrap()
            }
        };
        let mut end = 0;
        loop {
            let next = head(end).await;
            if next == end {
                break;
            }
            end = next;
        }
        let (mut poll_lat, mut sub_lat) = (Vec::new(), Vec::new());
        for i in 0..samples {
            let waiting = {
                let client = client.clone();
                let url = format!("{api}/changes?after={end}&wait=30");
                tokio::spawn(async move {
                    let v: Value = client
                        .get(url)
                        .bearer_auth(TOKEN)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    (Utc::now(), v)
                })
            };
            // Let the long poll reach the server and wait.
            tokio::time::sleep(Duration::from_millis(50)).await;
            client
                .post(format!("{root}/_sim/tickets"))
                .json(&json!({"account": "sim-1", "Otsikko": format!("Vika {i}"), "TyotehtavanKuvaus": "Kuvaus"}))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
            let (arrived, v) = tokio::time::timeout(Duration::from_secs(35), waiting)
                .await
                .expect("the long poll answers")
                .unwrap();
            let events = v["events"].as_array().unwrap();
            assert!(!events.is_empty(), "the long poll timed out without an event");
            let seq = events[0]["seq"].as_i64().unwrap();
            let at = parse_at(events[0]["at"].as_str().unwrap());
            poll_lat.push((arrived - at).num_microseconds().unwrap() as f64 / 1000.0);
            end = v["next_after"].as_i64().unwrap();
            // The subscriber's copy of the same event.
            let deadline = Instant::now() + Duration::from_secs(30);
            let sub_arrived = loop {
                let found = seen
                    .lock()
                    .unwrap()
                    .events
                    .iter()
                    .find(|e| e.0 == seq)
                    .map(|e| e.2);
                if let Some(t) = found {
                    break t;
                }
                assert!(Instant::now() < deadline, "the subscriber never got seq {seq}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            sub_lat.push((sub_arrived - at).num_microseconds().unwrap() as f64 / 1000.0);
        }
        println!();
        println!("| commit → arrival | samples | p50 | p95 | max |");
        println!("|---|---|---|---|---|");
        for (name, xs) in [("long poll (`wait=30`)", &mut poll_lat), ("subscriber", &mut sub_lat)] {
            let (p50, p95, max) = summary(xs);
            println!("| {name} | {} | {p50:.1} ms | {p95:.1} ms | {max:.1} ms |", xs.len());
        }

        // d. Throughput: `burst` tickets changed, one sync, every event to the subscriber.
        {
            use futures::StreamExt;
            assert!(ids.len() as u64 >= burst, "only {} open tickets", ids.len());
            let reqs = ids.iter().take(burst as usize).enumerate().map(|(k, id)| {
                client
                    .patch(format!("{root}/_sim/tickets/sim-1/{id}"))
                    .json(&json!({"Otsikko": format!("Muutettu {k}")}))
            });
            futures::stream::iter(reqs)
                .map(|r| async move { r.send().await.map(|_| ()) })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await;
        }
        let before = head(end).await;
        assert_eq!(before, end, "the feed moved before the burst");
        let mark = seen.lock().unwrap().events.len();
        let cfg2 = cfg.clone();
        let sync = tokio::task::spawn_blocking(move || run_once(&cfg2)).await.unwrap();
        let last = {
            let mut a = end;
            loop {
                let next = head(a).await;
                if next == a {
                    break a;
                }
                a = next;
            }
        };
        let changed = last - end;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let got = seen.lock().unwrap().events[mark..]
                .iter()
                .filter(|e| e.0 > end && e.0 <= last)
                .count() as i64;
            if got >= changed {
                break;
            }
            assert!(Instant::now() < deadline, "the subscriber got {got} of {changed} events");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seen = seen.lock().unwrap();
        let burst_events: Vec<_> = seen.events[mark..]
            .iter()
            .filter(|e| e.0 > end && e.0 <= last)
            .collect();
        let first_at = burst_events.iter().map(|e| e.1).min().unwrap();
        let first_in = burst_events.iter().map(|e| e.3).min().unwrap();
        let last_in = burst_events.iter().map(|e| e.3).max().unwrap();
        let first_arrival = burst_events.iter().map(|e| e.2).min().unwrap();
        let span = last_in - first_in;
        println!();
        println!(
            "Throughput: {burst} tickets changed in the simulator, one `run --once` ({:.0} ms) committed {changed} events; \
             the subscriber got them from {:.0} ms after the first commit, first to last in {:.0} ms: {:.0} events/s.",
            ms(sync),
            (first_arrival - first_at).num_milliseconds(),
            ms(span),
            (burst_events.len() - 1) as f64 / span.as_secs_f64()
        );
    });
    println!("Load average at the end {}", loadavg());
}
