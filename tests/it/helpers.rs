//! Shared test set-up: a simulator on 127.0.0.1:0, a temporary folder with a store and a
//! config written through the real loader, and ways to look at both.

use std::path::{Path, PathBuf};

use huoltosync::config::Config;
use huoltosync::engine::sync::SyncReport;
use huoltosync::sim::{Running, Sim, SimOptions};
use huoltosync::tampuuri::Api;
use rusqlite::Connection;
use serde_json::{Value, json};

pub struct TestEnv {
    pub sim: Running,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

/// What to start: simulator options, and TOML lines added to the config.
pub struct Setup {
    pub sim: SimOptions,
    /// Account names to configure (each with the simulator's credentials).
    pub accounts: Vec<String>,
    /// Extra TOML appended to the `[tampuuri]` section (before the accounts).
    pub tampuuri: String,
    /// Extra TOML appended to every `[[accounts]]` entry.
    pub account: String,
    /// Extra TOML appended to the `[push]` section.
    pub push: String,
    /// Extra top-level sections (`[schedule]`, `[service]`…), before the accounts.
    pub sections: String,
    /// The simulator also serves Slotti (`TestEnv::slotti_url`).
    pub slotti: bool,
}

impl Setup {
    pub fn tickets(n: u64) -> Setup {
        Setup {
            sim: SimOptions {
                tickets: n,
                accounts: 1,
                seed: 7,
                latency_ms: 0,
                webhook: None,
            },
            accounts: vec!["sim-1".into()],
            tampuuri: String::new(),
            account: String::new(),
            push: String::new(),
            sections: String::new(),
            slotti: false,
        }
    }

    /// The simulator also serves Slotti, at `TestEnv::slotti_url()`.
    pub fn slotti(mut self) -> Setup {
        self.slotti = true;
        self
    }

    pub fn sections(mut self, toml: &str) -> Setup {
        self.sections = toml.into();
        self
    }

    pub fn accounts(mut self, k: u32) -> Setup {
        self.sim.accounts = k;
        self.accounts = (1..=k).map(|i| format!("sim-{i}")).collect();
        self
    }

    pub fn account_toml(mut self, toml: &str) -> Setup {
        self.account = toml.into();
        self
    }

    #[allow(dead_code)]
    pub fn push_toml(mut self, toml: &str) -> Setup {
        self.push = toml.into();
        self
    }

    pub fn tampuuri_toml(mut self, toml: &str) -> Setup {
        self.tampuuri = toml.into();
        self
    }

    pub async fn start(self) -> TestEnv {
        // Tests build their own reqwest clients too; reqwest has no provider of its own.
        huoltosync::tampuuri::install_tls_provider();
        let sim = Sim::new(&self.sim);
        let sim = if self.slotti { sim.with_slotti() } else { sim };
        let sim = sim.start("127.0.0.1:0").await.expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            config_text(&sim.base_url(), &dir.path().join("store.db"), &self),
        )
        .unwrap();
        let config = Config::load(&path).expect("test config is valid").config;
        TestEnv { sim, dir, config }
    }
}

/// The binary under test: the project's src/main.rs, built by this package as
/// `huoltosync-under-test` (see tests/it/Cargo.toml), before these tests run.
pub const BIN: &str = env!("CARGO_BIN_EXE_huoltosync-under-test");

/// The project's root (this package lives in tests/it): for the files the tests read (sql/,
/// systemd/, src/, docs/, config.example.toml).
pub fn repo() -> &'static Path {
    static ROOT: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .expect("the project's root above tests/it")
    });
    &ROOT
}

pub fn config_text(base_url: &str, store: &std::path::Path, s: &Setup) -> String {
    let mut c = format!(
        "[store]\npath = {store:?}\n[tampuuri]\nbase_url = {base_url:?}\napi_key = \"sim-key\"\n\
         customer_name = \"Simulaattori Oy\"\nmax_requests_per_second = 0\n{}\n\
         [tampuuri.retry]\nmax_attempts = 3\ninitial_delay_ms = 5\nmax_delay_ms = 50\n\
         [push]\nretry_initial_ms = 10\nretry_max_ms = 40\nlinger_secs = 5\n{}\n{}\n",
        s.tampuuri, s.push, s.sections
    );
    for name in &s.accounts {
        c.push_str(&format!(
            "[[accounts]]\nname = {name:?}\nusername = \"huolto\"\npassword = \"sim-password\"\ncontractor_id = 4711\n{}\n",
            s.account
        ));
    }
    c
}

impl TestEnv {
    pub fn sim(&self) -> &Sim {
        &self.sim.sim
    }

    /// The simulator's Slotti base URL (`http://127.0.0.1:PORT/slotti/`; see `Setup::slotti`).
    #[allow(dead_code)]
    pub fn slotti_url(&self) -> String {
        self.sim.slotti_url()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// One sync of every account.
    pub async fn sync(&self) -> Vec<SyncReport> {
        let api = Api::new(&self.config).unwrap();
        huoltosync::engine::sync::sync_all(&self.config, &api).await
    }

    /// One sync that must succeed for every account.
    pub async fn sync_ok(&self) -> Vec<SyncReport> {
        let reports = self.sync().await;
        for r in &reports {
            assert!(r.ok(), "{}: {:#}", r.account, r.error.as_ref().unwrap());
        }
        reports
    }

    /// One push pass through the library.
    pub async fn push(&self) -> huoltosync::engine::push::PushReport {
        let api = Api::new(&self.config).unwrap();
        let store = huoltosync::store::Handle::open(self.config.store.path.clone())
            .await
            .unwrap();
        huoltosync::engine::push::push_pending(&self.config, &api, &store)
            .await
            .unwrap()
    }

    /// `(id, status, kind, ticket_id)` of every outbox row, by id.
    pub fn outbox(&self) -> Vec<(i64, String, String, Option<i64>)> {
        let db = self.db();
        let mut s = db
            .prepare("SELECT id, status, kind, ticket_id FROM outbox ORDER BY id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Runs `huoltosync task ARGS…`; panics with its output unless it exits 0.
    pub async fn task_ok(&self, args: &[&str]) -> String {
        let mut all = vec!["task"];
        all.extend_from_slice(args);
        let (code, out, err) = self.cli(&all).await;
        assert_eq!(code, 0, "task {args:?} failed:\n{out}\n{err}");
        out
    }

    /// Runs `huoltosync task ARGS…`, which must fail; returns its stderr.
    pub async fn task_err(&self, args: &[&str]) -> String {
        let mut all = vec!["task"];
        all.extend_from_slice(args);
        let (code, out, err) = self.cli(&all).await;
        assert_ne!(code, 0, "task {args:?} was accepted:\n{out}");
        err
    }

    /// The simulator's log as (ticket, action) pairs.
    pub fn applied(&self) -> Vec<(i64, String)> {
        self.sim()
            .log()
            .into_iter()
            .map(|e| (e.ticket_id, e.action))
            .collect()
    }

    /// A connection to the store, as the contractor's own systems would open it.
    pub fn db(&self) -> Connection {
        Connection::open(&self.config.store.path).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Ids in the mirror's open set for an account, sorted.
    pub fn open_ids(&self, account: &str) -> Vec<i64> {
        let db = self.db();
        let mut s = db
            .prepare("SELECT id FROM tickets WHERE account = ?1 AND open = 1 ORDER BY id")
            .unwrap();
        s.query_map([account], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Ids the simulator holds as ours and unfinished, sorted: what the mirror must equal.
    pub fn truth(&self, account: &str) -> Vec<i64> {
        self.sim()
            .tickets(account)
            .into_iter()
            .filter(|t| {
                t.tyonsuorittaja_id == Some(4711)
                    && ["Avoin", "Vastaanotettu", "Odottaa"].contains(&t.tila.as_str())
            })
            .map(|t| t.id)
            .collect()
    }

    /// Every column of every ticket row, to compare the store before and after.
    pub fn snapshot(&self) -> Vec<Vec<Value>> {
        let db = self.db();
        let mut s = db
            .prepare("SELECT * FROM tickets ORDER BY account, id")
            .unwrap();
        let n = s.column_count();
        s.query_map([], |r| {
            Ok((0..n)
                .map(|i| match r.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Null => Value::Null,
                    rusqlite::types::ValueRef::Integer(x) => json!(x),
                    rusqlite::types::ValueRef::Real(x) => json!(x),
                    rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                    rusqlite::types::ValueRef::Blob(b) => json!(b),
                })
                .collect())
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// Counts every later INSERT, UPDATE and DELETE on `tickets` (independent of huoltosync's
    /// own reports).
    pub fn watch_ticket_writes(&self) {
        self.db()
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS test_ticket_writes (op TEXT);
                 CREATE TRIGGER IF NOT EXISTS tw_i AFTER INSERT ON tickets BEGIN INSERT INTO test_ticket_writes VALUES ('i'); END;
                 CREATE TRIGGER IF NOT EXISTS tw_u AFTER UPDATE ON tickets BEGIN INSERT INTO test_ticket_writes VALUES ('u'); END;
                 CREATE TRIGGER IF NOT EXISTS tw_d AFTER DELETE ON tickets BEGIN INSERT INTO test_ticket_writes VALUES ('d'); END;",
            )
            .unwrap();
    }

    pub fn ticket_writes(&self) -> i64 {
        self.count("SELECT count(*) FROM test_ticket_writes")
    }

    pub fn faults(&self, f: Value) {
        self.sim().set_faults(&f).unwrap();
    }

    pub fn patch(&self, account: &str, id: i64, fields: Value) {
        self.sim()
            .patch(account, id, fields.as_object().unwrap())
            .unwrap();
    }

    pub fn selaa_calls(&self) -> u64 {
        self.sim().calls("POST ilmoitukset/selaa")
    }

    pub fn get_calls(&self) -> u64 {
        self.sim().calls("GET ilmoitukset/{id}")
    }

    /// Runs the binary with this env's config; returns (exit code, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        run_cli(&self.config_path(), args).await
    }
}

/// A daemon (`huoltosync run`) as a child process, its stderr in a file.
pub struct Daemon {
    pub child: tokio::process::Child,
    pub log: PathBuf,
}

impl TestEnv {
    pub async fn daemon(&self, args: &[&str]) -> Daemon {
        let log = self
            .dir
            .path()
            .join(format!("daemon-{}.log", rand_suffix()));
        let child = tokio::process::Command::new(crate::helpers::BIN)
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .arg("run")
            .env_remove("RUST_LOG")
            .stdout(std::fs::File::create(self.dir.path().join("daemon.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    /// Sync runs of an account, as (started_at, finished_at, outcome), oldest first.
    pub fn runs(&self, account: &str) -> Vec<(String, Option<String>, String)> {
        let db = self.db();
        // The daemon may not have created the schema yet: no table, no runs.
        let Ok(mut s) = db.prepare(
            "SELECT started_at, finished_at, outcome FROM sync_runs WHERE account = ?1 ORDER BY id",
        ) else {
            return Vec::new();
        };
        s.query_map([account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends a signal by name (`HUP`, `TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code (within `limit`).
    pub async fn stop(mut self, limit: std::time::Duration) -> (i32, String) {
        self.signal("TERM");
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the daemon stops in time")
            .unwrap();
        (status.code().unwrap_or(-1), self.log())
    }
}

/// Waits until `cond` holds, checking every 50 ms, for at most `limit`.
pub async fn wait_for(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    cond()
}

pub async fn run_cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(crate::helpers::BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}
