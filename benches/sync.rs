//! `cargo bench`: huoltosync's performance against the simulator on loopback, printed as the
//! tables of BENCHMARKS.md.
//!
//! The simulator runs in its own process, and every sync is a child `huoltosync run --once`,
//! so the figures (wall time, peak RSS from `wait4`) are huoltosync's alone and per run. Call
//! counts come from the simulator's `/_sim/stats`. Timings are reported, never asserted: the
//! exact call counts and the zero-write property are asserted in the ordinary tests.
//!
//! `BENCH_QUICK=1 cargo bench` skips the 100 000-ticket and 30-day runs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_huoltosync");

/// A simulator process.
struct Sim {
    child: Child,
    root: String,
    base: String,
}

impl Sim {
    fn start(tickets: u64, latency_ms: u64) -> Sim {
        Sim::start_with(tickets, latency_ms, &[])
    }

    /// A simulator with extra `sim` arguments (e.g. `--webhook-url`).
    fn start_with(tickets: u64, latency_ms: u64, extra: &[&str]) -> Sim {
        let mut child = Command::new(BIN)
            .args(["sim", "--listen", "127.0.0.1:0", "--seed", "9"])
            .args([
                "--tickets",
                &tickets.to_string(),
                "--latency-ms",
                &latency_ms.to_string(),
            ])
            .args(extra)
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
        Sim { child, root, base }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn total_calls(sim: &Sim) -> u64 {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(total_calls_async(sim))
}

fn config(dir: &Path, sim: &Sim, max_rps: f64) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\npath = \"store.db\"\n[tampuuri]\nbase_url = \"{}\"\napi_key = \"sim-key\"\ncustomer_name = \"Simulaattori Oy\"\n\
             max_requests_per_second = {max_rps}\n[[accounts]]\nname = \"sim-1\"\nusername = \"huolto\"\npassword = \"sim-password\"\ncontractor_id = 4711\n",
            sim.base
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
}

/// Runs `huoltosync ARGS` to the end: wall time and peak resident memory (kB) of that process.
// The child is reaped by wait4 (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn measure(config: &Path, args: &[&str]) -> (Duration, u64) {
    let started = Instant::now();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let elapsed = started.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "huoltosync {args:?} failed"
    );
    (elapsed, usage.ru_maxrss as u64)
}

fn store_bytes(dir: &Path) -> u64 {
    ["store.db", "store.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

fn count_writes(dir: &Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(dir.join("store.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS bench_writes (op TEXT);
         CREATE TRIGGER IF NOT EXISTS bw_i AFTER INSERT ON tickets BEGIN INSERT INTO bench_writes VALUES ('i'); END;
         CREATE TRIGGER IF NOT EXISTS bw_u AFTER UPDATE ON tickets BEGIN INSERT INTO bench_writes VALUES ('u'); END;",
    )
    .unwrap();
    db
}

struct Row {
    tickets: u64,
    latency_ms: u64,
    max_rps: f64,
    calls: u64,
    pages: u64,
    first: Duration,
    second: Duration,
    second_calls: u64,
    writes: i64,
    rss_first_kb: u64,
    rss_second_kb: u64,
    store_bytes: u64,
}

fn sync_scenario(tickets: u64, latency_ms: u64, max_rps: f64) -> Row {
    let sim = Sim::start(tickets, latency_ms);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, max_rps);
    let (first, rss_first_kb) = measure(&cfg, &["run", "--once"]);
    let calls = total_calls(&sim);
    let db = count_writes(dir.path());
    let (second, rss_second_kb) = measure(&cfg, &["run", "--once"]);
    let second_calls = total_calls(&sim) - calls;
    let writes: i64 = db
        .query_row("SELECT count(*) FROM bench_writes", [], |r| r.get(0))
        .unwrap();
    Row {
        tickets,
        latency_ms,
        max_rps,
        calls,
        pages: tickets.div_ceil(250).max(1),
        first,
        second,
        second_calls,
        writes,
        rss_first_kb,
        rss_second_kb,
        store_bytes: store_bytes(dir.path()),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// 1 000 accept actions queued, then drained by one push pass (in this process).
fn outbox_scenario() -> (Duration, u64, usize) {
    let sim = Sim::start(1000, 0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, 0.0);
    measure(&cfg, &["run", "--once"]);
    let config = huoltosync::config::Config::load(&cfg).unwrap().config;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = huoltosync::store::Handle::open(config.store.path.clone())
            .await
            .unwrap();
        let ids: Vec<i64> = store
            .call(|s| {
                Ok(s.mirror()
                    .tickets(&Default::default())?
                    .iter()
                    .map(|t| t.id)
                    .collect())
            })
            .await
            .unwrap();
        for id in ids.clone() {
            store
                .call(move |s| {
                    let now = huoltosync::domain::time::fmt(huoltosync::domain::time::now());
                    s.outbox().enqueue(
                        "sim-1",
                        Some(id),
                        &now,
                        "2999-01-01T00:00:00.000Z",
                        &[],
                        |f| {
                            huoltosync::domain::action::check_transition(
                                huoltosync::domain::action::Action::Accept { comment: None },
                                "sim-1",
                                id,
                                f,
                                true,
                            )
                        },
                    )
                })
                .await
                .unwrap();
        }
        let before = total_calls_async(&sim).await;
        let api = huoltosync::tampuuri::Api::new(&config).unwrap();
        let started = Instant::now();
        let report = huoltosync::engine::push::push_pending(&config, &api, &store)
            .await
            .unwrap();
        let elapsed = started.elapsed();
        (
            elapsed,
            total_calls_async(&sim).await - before,
            report.delivered.len(),
        )
    })
}

async fn total_calls_async(sim: &Sim) -> u64 {
    let v: Value = reqwest::get(format!("{}/_sim/stats", sim.root))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["total_calls"].as_u64().unwrap()
}

/// 100 000 tickets, then 30 days each with 1 000 changed, 300 finished and 300 new tickets and
/// one sync: the store's size after the first sync and after the 30 days.
fn history_scenario() -> (u64, u64, u64) {
    let sim = Sim::start(100_000, 0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, 0.0);
    measure(&cfg, &["run", "--once"]);
    let initial = store_bytes(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    for day in 0..30u64 {
        rt.block_on(async {
            use futures::StreamExt;
            let mut reqs = Vec::new();
            for k in 0..1300u64 {
                let id = 1001 + (day * 7919 + k * 104_729) % 125_000;
                let body = if k < 1000 { json!({"Otsikko": format!("Muutettu päivänä {day}")}) } else { json!({"Tila": "Tehty"}) };
                reqs.push(client.patch(format!("{}/_sim/tickets/sim-1/{id}", sim.root)).json(&body));
            }
            for _ in 0..300 {
                reqs.push(client.post(format!("{}/_sim/tickets", sim.root)).json(&json!({"account": "sim-1", "Otsikko": "Uusi vika", "TyotehtavanKuvaus": "Kuvaus"})));
            }
            futures::stream::iter(reqs).map(|r| async move { r.send().await.map(|_| ()) }).buffer_unordered(16).collect::<Vec<_>>().await;
        });
        measure(&cfg, &["run", "--once"]);
    }
    let db = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let changes: u64 = db
        .query_row("SELECT count(*) FROM ticket_changes", [], |r| r.get(0))
        .unwrap();
    (initial, store_bytes(dir.path()), changes)
}

/// Webhook latency: 200 tickets created in the simulator (which delivers to a daemon's
/// listener), each timed until it is visible in the store. Returns the latencies, sorted.
fn webhook_latency_scenario() -> Vec<Duration> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/tampuuri/webhook");
    let sim = Sim::start_with(
        100,
        0,
        &["--webhook-url", &url, "--webhook-secret", "bench"],
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, 0.0);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replace(
        "[[accounts]]",
        &format!("[schedule]\npoll = \"0 0 0 1 1 *\"\n[webhook]\nlisten = \"127.0.0.1:{port}\"\nhmac_secret = \"bench\"\nreconcile = \"0 0 0 1 1 *\"\n[[accounts]]"),
    );
    std::fs::write(&cfg, text).unwrap();
    measure(&cfg, &["run", "--once"]);
    let mut daemon = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let db = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    for i in 0..200 {
        let started = Instant::now();
        let id: i64 = rt.block_on(async {
            let v: Value = client
                .post(format!("{}/_sim/tickets", sim.root))
                .json(&json!({"account": "sim-1", "Otsikko": format!("Vika {i}"), "TyotehtavanKuvaus": "Kuvaus"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["Id"].as_i64().unwrap()
        });
        loop {
            let seen: bool = db
                .query_row("SELECT count(*) FROM tickets WHERE id = ?1", [id], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap()
                > 0;
            if seen || started.elapsed() > Duration::from_secs(30) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.push(started.elapsed());
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    latencies.sort();
    latencies
}

fn main() {
    // `cargo bench` passes --bench; anything else (cargo test --benches) just checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // reqwest is built without a TLS provider of its own.
    huoltosync::tampuuri::install_tls_provider();
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let sizes: &[u64] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    println!(
        "Machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!();
    println!(
        "| tickets | latency | throttle | calls (min) | first sync | floor | second sync | 2nd calls | rows written by 2nd | peak RSS 1st / 2nd | tickets/s | store |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut scenarios: Vec<(u64, u64, f64)> = Vec::new();
    for &n in sizes {
        for lat in [0, 20] {
            scenarios.push((n, lat, 0.0));
        }
    }
    scenarios.push((10_000, 0, 5.0));
    for (n, lat, rps) in scenarios {
        let r = sync_scenario(n, lat, rps);
        let floor = Duration::from_millis(r.pages * r.latency_ms);
        println!(
            "| {} | {} ms | {} | {} ({}) | {} | {} | {} | {} | {} | {:.1} / {:.1} MB | {:.0} | {:.1} MB |",
            r.tickets,
            r.latency_ms,
            if r.max_rps == 0.0 {
                "off".to_owned()
            } else {
                format!("{} /s", r.max_rps)
            },
            r.calls,
            r.pages,
            ms(r.first),
            if r.latency_ms == 0 {
                "-".to_owned()
            } else {
                ms(floor)
            },
            ms(r.second),
            r.second_calls,
            r.writes,
            r.rss_first_kb as f64 / 1024.0,
            r.rss_second_kb as f64 / 1024.0,
            r.tickets as f64 / r.first.as_secs_f64(),
            r.store_bytes as f64 / 1_048_576.0
        );
    }
    let lat = webhook_latency_scenario();
    let pct = |p: f64| {
        lat[((lat.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(lat.len() - 1)]
    };
    println!();
    println!(
        "Webhook latency, ticket created in the simulator until visible in the store, over {} tickets: p50 {}, p95 {}, max {}.",
        lat.len(),
        ms(pct(0.50)),
        ms(pct(0.95)),
        ms(*lat.last().unwrap())
    );
    let (took, calls, delivered) = outbox_scenario();
    println!();
    println!(
        "Outbox: {delivered} accept actions drained in {} with {calls} calls (throttle off).",
        ms(took)
    );
    if !quick {
        let (initial, after, changes) = history_scenario();
        println!(
            "Store: {:.1} MB after the first sync of 100 000 tickets; {:.1} MB after 30 simulated days ({} history rows).",
            initial as f64 / 1_048_576.0,
            after as f64 / 1_048_576.0,
            changes
        );
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
