//! `cargo bench --bench board`: pages of the web board over 10 000 and 100 000 open tickets, on
//! loopback, printed as the "Board" section of BENCHMARKS.md.
//!
//! For each size, the simulator runs in its own process (`huoltosync sim`, that many open
//! tickets of ours); a child `huoltosync run --once` mirrors them into a fresh store; then a
//! `huoltosync run` daemon serves the API and the board (`[api]`, `[board]` with one
//! dispatcher). This process signs in with the password form and fetches pages of the board
//! over one keep-alive connection, as a browser asks for them (`Accept-Encoding: gzip, deflate,
//! br, zstd`), each request timed from sending to its last body byte: the first page, the first
//! page filtered to urgent tickets, a page in the middle, and a search. Every page must hold
//! 100 rows (the board's page) and say how many tickets match.
//!
//! Timings are reported, never asserted. `BENCH_QUICK=1` takes 20 samples instead of 200;
//! `BOARD_SIZES=10000` measures only the sizes named (comma-separated).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_huoltosync");
/// The board's page.
const PAGE_ROWS: usize = 100;
const PASSWORD: &str = "Salasana-bench-1";
/// What Chromium sends.
const BROWSER_ENCODINGS: &str = "gzip, deflate, br, zstd";
/// The open tickets measured, unless `BOARD_SIZES` says.
const SIZES: [u64; 2] = [10_000, 100_000];

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

/// The simulator with `tickets` open tickets of ours: (process, API base URL).
fn start_sim(tickets: u64) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(["sim", "--listen", "127.0.0.1:0", "--seed", "11"])
        .args(["--tickets", &tickets.to_string(), "--latency-ms", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the simulator starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().trim_start_matches("listening on ").to_owned();
    (Proc(child), base)
}

fn write_config(dir: &Path, base: &str, api_port: u16) -> PathBuf {
    let hash = huoltosync::faces::board::hash_password(PASSWORD).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\npath = \"store.db\"\n\
             [tampuuri]\nbase_url = \"{base}\"\napi_key = \"sim-key\"\ncustomer_name = \"Simulaattori Oy\"\nmax_requests_per_second = 0\n\
             [schedule]\npoll = \"0 0 0 1 1 *\"\n\
             [api]\nlisten = \"127.0.0.1:{api_port}\"\n\
             [[api.tokens]]\nname = \"bench\"\ntoken = \"bench-read-token-0123456789\"\nscope = \"read\"\n\
             [board]\nenabled = true\ninsecure_cookies = true\n\
             [[board.users]]\nname = \"bench\"\npassword_hash = \"{hash}\"\nrole = \"dispatcher\"\n\
             [[accounts]]\nname = \"sim-1\"\nusername = \"huolto\"\npassword = \"sim-password\"\ncontractor_id = 4711\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
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

/// One measured fetch of the board: time to the last byte, the body's bytes as sent, its
/// `Content-Encoding`, and the header block's size.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    encodings: Option<&str>,
) -> (f64, Vec<u8>, Option<String>, usize) {
    let mut req = client.get(url);
    if let Some(e) = encodings {
        req = req.header("accept-encoding", e);
    }
    let started = Instant::now();
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "the board answered {}", resp.status());
    let encoding = resp
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    let header_bytes = resp
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + 17;
    // reqwest here decodes no content encoding: these are the bytes the server sent.
    let body = resp.bytes().await.unwrap().to_vec();
    (ms(started.elapsed()), body, encoding, header_bytes)
}

/// The rows of a rendered (uncompressed) board page.
fn rows(page: &[u8]) -> usize {
    String::from_utf8_lossy(page).matches("<tr id=\"t-").count()
}

/// The count in the heading of a rendered board page.
fn count(page: &[u8]) -> u64 {
    let page = String::from_utf8_lossy(page);
    let at = page.find("id=\"count\">").expect("a count") + 11;
    page[at..][..page[at..].find('<').unwrap()].parse().unwrap()
}

fn main() {
    // `cargo bench` passes --bench; anything else (cargo test --benches) just checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    huoltosync::tampuuri::install_tls_provider();
    let samples = if std::env::var_os("BENCH_QUICK").is_some() {
        20
    } else {
        200
    };
    let sizes: Vec<u64> = match std::env::var("BOARD_SIZES") {
        Ok(s) => s.split(',').map(|n| n.trim().parse().unwrap()).collect(),
        Err(_) => SIZES.to_vec(),
    };
    println!(
        "Machine: {} cores; load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    println!();
    println!(
        "{samples} requests each after 5 warm-up requests, one keep-alive connection, as Chromium asks (gzip):"
    );
    println!();
    println!("| open tickets | page | matching | body bytes (gzip) | p50 | p95 | max |");
    println!("|---|---|---|---|---|---|---|");
    for size in sizes {
        measure(size, samples);
    }
    println!();
    println!("Load average at end {}", loadavg());
}

/// Mirrors `size` open tickets, serves the board and prints one table row per page measured.
fn measure(size: u64, samples: usize) {
    let api_port = free_port();
    let (_sim, base) = start_sim(size);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &base, api_port);
    let status = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["run", "--once"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "huoltosync run --once failed");
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
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", api_port)).is_err() {
        assert!(Instant::now() < deadline, "the daemon does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let root = format!("http://127.0.0.1:{api_port}");
    let client = reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = client
            .post(format!("{root}/login"))
            .form(&[("username", "bench"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "sign-in failed");
        let middle = size / PAGE_ROWS as u64 / 2;
        for (label, path) in [
            ("first", "/".to_owned()),
            ("urgent only", "/?urgency=Kiireellinen".to_owned()),
            ("middle", format!("/?page={middle}")),
            ("search \"Koivutie\"", "/?q=Koivutie".to_owned()),
        ] {
            let url = format!("{root}{path}");
            let (_, page, _, _) = fetch(&client, &url, None).await;
            assert_eq!(rows(&page), PAGE_ROWS, "{path}: not a full page");
            let matching = count(&page);
            assert!(matching <= size, "{path}: counts {matching}");
            if path == "/" {
                assert_eq!(matching, size, "the board does not count every ticket");
            }
            for _ in 0..5 {
                fetch(&client, &url, Some(BROWSER_ENCODINGS)).await;
            }
            let (mut lat, mut sizes) = (Vec::new(), Vec::new());
            for _ in 0..samples {
                let (t, body, _, _) = fetch(&client, &url, Some(BROWSER_ENCODINGS)).await;
                lat.push(t);
                sizes.push(body.len());
            }
            sizes.sort_unstable();
            let (p50, p95, max) = summary(&mut lat);
            println!(
                "| {size} | {label} (`{path}`) | {matching} | {} | {p50:.1} ms | {p95:.1} ms | {max:.1} ms |",
                sizes[sizes.len() / 2],
            );
        }
    });
}
