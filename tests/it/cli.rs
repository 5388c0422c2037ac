//! The commands as an operator or a script uses them: exit codes, stdout for output only,
//! and secrets never printed.

use serde_json::Value;

use crate::helpers::Setup;

#[tokio::test]
async fn run_once_then_tasks_and_status_as_json() {
    let env = Setup::tickets(7).accounts(2).start().await;
    let (code, out, _) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().count() == 2
            && out.contains("sim-1: ok: 7 open")
            && out.contains("sim-2: ok: 7 open"),
        "{out}"
    );
    // --config after the subcommand works too.
    let out = tokio::process::Command::new(crate::helpers::BIN)
        .args(["tasks", "--json", "--account", "sim-2", "--config"])
        .arg(env.config_path())
        .output()
        .await
        .unwrap();
    let tasks: Vec<Value> =
        serde_json::from_slice(&out.stdout).expect("tasks --json prints JSON on stdout only");
    assert_eq!(tasks.len(), 7);
    for t in &tasks {
        assert_eq!(t["account"], "sim-2");
        assert!(
            t["id"].is_i64()
                && t["state"] == "Avoin"
                && t["title"].is_string()
                && t["open"] == true,
            "{t}"
        );
    }
    let (code, out, _) = env.cli(&["status", "--json"]).await;
    assert_eq!(code, 0);
    let status: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(status[0]["open_tickets"], 7);
    assert_eq!(status[0]["calls_today"], 1);
    assert_eq!(status[0]["last_run"]["outcome"], "ok");
    assert!(status[0]["last_success"].is_string());
}

#[tokio::test]
async fn three_accounts_one_failing_exit_nonzero_and_status_names_it() {
    let env = Setup::tickets(4).accounts(3).start().await;
    env.faults(serde_json::json!({"error_rate": 1.0, "only_account": "sim-2"}));
    let (code, out, _) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 1);
    assert!(
        out.contains("sim-1: ok") && out.contains("sim-3: ok") && out.contains("sim-2: FAILED"),
        "{out}"
    );
    let (_, text, _) = env.cli(&["status"]).await;
    let sim2 = text
        .split("sim-3:")
        .next()
        .unwrap()
        .split("sim-2:")
        .nth(1)
        .unwrap();
    assert!(
        sim2.contains("last successful sync: never") && sim2.contains("failed"),
        "{text}"
    );
    assert_eq!(env.open_ids("sim-1").len(), 4);
    assert_eq!(env.open_ids("sim-3").len(), 4);
}

#[tokio::test]
async fn tasks_filters_by_state_and_all_includes_tickets_that_left() {
    let env = Setup::tickets(4).start().await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    env.patch("sim-1", ids[0], serde_json::json!({"Tila": "Tehty"}));
    env.patch(
        "sim-1",
        ids[1],
        serde_json::json!({"Tila": "Vastaanotettu"}),
    );
    env.sync_ok().await;
    let json = |out: String| serde_json::from_str::<Vec<Value>>(&out).unwrap();
    assert_eq!(json(env.cli(&["tasks", "--json"]).await.1).len(), 3);
    assert_eq!(
        json(env.cli(&["tasks", "--json", "--all"]).await.1).len(),
        4
    );
    assert_eq!(
        json(
            env.cli(&["tasks", "--json", "--state", "vastaanotettu"])
                .await
                .1
        )
        .len(),
        1
    );
    let (code, _, err) = env.cli(&["tasks", "--account", "nope"]).await;
    assert_eq!(code, 2, "an unknown account is bad usage: {err}");
    assert!(err.contains("nope") && err.contains("sim-1"), "{err}");
}

#[tokio::test]
async fn bad_usage_exits_2_and_names_what_is_wrong() {
    let env = Setup::tickets(3).start().await;
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[0].to_string();
    for (args, names) in [
        (&["tasks", "--state", "Bogus"][..], "Bogus"),
        (&["cost", "--month", "2026-13"], "2026-13"),
        (&["cost", "--month", "262142-12"], "262142-12"),
        // The calendar's first month has no Helsinki midnight in range: an error, not a panic.
        (&["cost", "--month=-262143-01"], "-262143-01"),
        (&["task", "hold", &id], "--reason"),
        (&["task", "accept", &id, "--account", "nosuch"], "nosuch"),
        (
            &[
                "task",
                "new",
                "--title",
                "T",
                "--description",
                "D",
                "--cost-centre",
                "1",
            ],
            "--account",
        ),
    ] {
        let (code, out, err) = env.cli(args).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(names), "{args:?}: {err}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM outbox"),
        0,
        "nothing queued"
    );
    // A known state in any case is no error, even when no ticket is in it.
    let (code, out, _) = env.cli(&["tasks", "--state", "odottaa", "--json"]).await;
    assert_eq!((code, out.trim()), (0, "[]"));
}

#[tokio::test]
async fn commands_that_do_not_call_tampuuri_need_no_secret_but_those_that_do_say_which() {
    let env = Setup::tickets(3).start().await;
    env.sync_ok().await;
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace(
            "api_key = \"sim-key\"",
            "api_key_file = \"/nonexistent/api-key\"",
        )
        .replace(
            "password = \"sim-password\"",
            "password_env = \"HUOLTOSYNC_TEST_UNSET\"",
        );
    std::fs::write(env.config_path(), text).unwrap();
    let id = env.open_ids("sim-1")[0].to_string();
    for args in [
        &["tasks", "--json"][..],
        &["cost", "--json"],
        &["outbox", "--json"],
        &["purge", "--dry-run"],
        &["task", "accept", &id],
    ] {
        let (code, out, err) = env.cli(args).await;
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    let (code, out, err) = env.cli(&["status", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Value>(&out).expect("status --json prints JSON");
    for args in [
        &["check-config"][..],
        &["run", "--once"],
        &["task", "accept", &id, "--now"],
    ] {
        let (code, out, err) = env.cli(args).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        let said = format!("{out}{err}");
        assert!(
            said.contains("tampuuri.api_key_file") && said.contains("/nonexistent/api-key"),
            "{args:?}: {said}"
        );
        assert!(
            said.contains("accounts[0].password_env"),
            "{args:?}: {said}"
        );
    }
    assert_eq!(env.sim().log().len(), 0, "nothing was pushed");
    // A config loaded without its secrets cannot be used to call Tampuuri.
    let loaded = huoltosync::config::Config::load_without_secrets(&env.config_path()).unwrap();
    let err = huoltosync::tampuuri::Api::new(&loaded.config)
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("tampuuri.api_key_file"),
        "{err:#}"
    );
}

#[tokio::test]
async fn root_is_refused_on_a_store_that_belongs_to_another_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !nix_is_root() {
        eprintln!("skipped: only root can be refused");
        return;
    }
    let env = Setup::tickets(2).start().await;
    let folder = env.config.store.path.parent().unwrap().to_owned();
    // The service's folder: owned by nobody (65534), as /var/lib/huoltosync by huoltosync.
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&folder, Some(65534), Some(65534)).unwrap();
    let before: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for args in [&["run", "--once"][..], &["status"], &["tasks"], &["purge"]] {
        let (code, out, err) = env.cli(args).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains(&folder.display().to_string()) && err.contains("run this command as"),
            "{args:?}: {err}"
        );
    }
    let after: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "no lock, store or -wal file made by root");
    assert_eq!(env.sim().total_calls(), 0);
    assert_eq!(std::fs::metadata(&folder).unwrap().uid(), 65534);
    // Root's own store is root's business.
    std::os::unix::fs::chown(&folder, Some(0), Some(0)).unwrap();
    let (code, out, err) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 0, "{out}{err}");
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn one_is_not_many_in_a_sync_line() {
    let mut r = huoltosync::engine::sync::SyncReport {
        account: "sim-1".into(),
        sweeps: 1,
        pages: 1,
        api_calls: 1,
        unreached: 0,
        seen: 1,
        counts: Default::default(),
        elapsed: std::time::Duration::ZERO,
        error: None,
    };
    let line = huoltosync::cli::summary_line(&r);
    assert!(line.contains(", 1 page, 1 API call,"), "{line}");
    r.error = Some(anyhow::anyhow!(
        "account sim-1: ilmoitukset/selaa: Tampuuri failed (HTTP 500)"
    ));
    assert_eq!(
        huoltosync::cli::summary_line(&r),
        "sim-1: FAILED after 1 API call: ilmoitukset/selaa: Tampuuri failed (HTTP 500)",
        "the account is named once"
    );
}

#[tokio::test]
async fn check_config_online_reports_each_account() {
    let env = Setup::tickets(12).accounts(2).start().await;
    let (code, out, _) = env.cli(&["check-config", "--online"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("sim-1: credentials work; 12 unfinished"),
        "{out}"
    );
    assert_eq!(env.sim().total_calls(), 2, "one Limit 1 call per account");
    // A wrong contractor id is the likeliest mistake: 0 tickets is a warning.
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replacen("contractor_id = 4711", "contractor_id = 4799", 1);
    std::fs::write(env.config_path(), text).unwrap();
    let (code, out, _) = env.cli(&["check-config", "--online"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("warning: 0 unfinished tickets are assigned to contractor_id 4799"),
        "{out}"
    );
    let (code, _, _) = env.cli(&["check-config"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        env.sim().total_calls(),
        4,
        "offline check-config calls nothing"
    );
}

#[tokio::test]
async fn every_command_has_help_and_no_secret_in_it() {
    for cmd in [
        &["--help"][..],
        &["run", "--help"],
        &["tasks", "--help"],
        &["status", "--help"],
        &["check-config", "--help"],
        &["sim", "--help"],
        &["demo", "--help"],
    ] {
        let out = tokio::process::Command::new(crate::helpers::BIN)
            .args(cmd)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{cmd:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage"), "{cmd:?}: {text}");
        assert!(
            !text.contains("sim-password") && !text.contains("sim-key"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn the_demo_runs_with_nothing_configured() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(crate::helpers::BIN)
        .args(["demo", "--tickets", "30", "--accounts", "2", "--dir"])
        .arg(dir.path().join("demo"))
        .env_remove("HUOLTOSYNC_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("INFO") && !err.contains("Migrat"),
        "the demo tells its story on stdout only: {err}"
    );
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("sim-1: ok: 30 open (30 new"), "{text}");
    assert!(text.contains("ticket rows rewritten: 0"), "{text}");
    // A visit booked in the simulator's Slotti, and the hold message Tampuuri got about it.
    assert!(
        text.contains("Tampuuri got odotukseen: Huoltokäynti varattu") && text.contains(" klo "),
        "{text}"
    );
}

/// `demo --serve`: the demo, then the daemon with the API and the board on loopback, with no
/// config at all: the token it prints reads the API, the link it prints signs in, and Ctrl-C
/// (SIGINT) stops it with exit 0, leaving the demo folder.
#[tokio::test]
async fn the_demo_serves_the_api_and_the_board_until_ctrl_c() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let mut child = tokio::process::Command::new(crate::helpers::BIN)
        .args([
            "demo",
            "--serve",
            "--tickets",
            "10",
            "--accounts",
            "1",
            "--dir",
        ])
        .arg(&demo)
        .env_remove("HUOLTOSYNC_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut link, mut curl) = (None, None);
    let mut seen = String::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(std::time::Duration::from_secs(120), lines.next_line()).await
    {
        seen.push_str(&line);
        seen.push('\n');
        if let Some(i) = line.find("http://127.0.0.1:") {
            let url: String = line[i..].split_whitespace().next().unwrap().to_owned();
            if line.trim_start().starts_with("Board:") {
                link = Some(url);
            } else if line.trim_start().starts_with("API:") {
                curl = Some(line.clone());
            }
        }
        if line.starts_with("Ctrl-C stops") {
            break;
        }
    }
    let (Some(link), Some(curl)) = (link, curl) else {
        panic!("demo --serve printed no sign-in link or API line:\n{seen}")
    };
    let token = curl
        .split("Bearer ")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let api = curl.split_whitespace().last().unwrap().to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The listener comes up as the daemon starts: bounded wait for the first answer.
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(r) = http.get(&api).bearer_auth(token).send().await {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let answer = answer.expect("the demo's API never answered");
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["items"].as_array().map(Vec::len), Some(5), "{body}");
    let signed_in = http.get(&link).send().await.unwrap();
    assert_eq!(signed_in.status(), 303, "the one-time link signs in");
    assert!(signed_in.headers().get("set-cookie").is_some());
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    assert_eq!(
        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) },
        0
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("demo --serve did not stop within 30 s of Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(demo.join("config.toml").exists() && demo.join("huoltosync-demo.db").exists());
}

#[test]
fn the_demo_piped_into_head_ends_quietly_with_success() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(crate::helpers::BIN)
        .args(["demo", "--tickets", "5", "--accounts", "1", "--dir"])
        .arg(dir.path().join("demo"))
        .env_remove("HUOLTOSYNC_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `demo | head -1`: read the first line, then close the pipe while the demo still has
    // its syncs and the push ahead of it, and so more to print.
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("huoltosync demo:"), "{first}");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panick"), "{err}");
}

/// Bytes a terminal must never get raw from ticket text.
fn assert_no_raw_controls(what: &str, text: &str) {
    assert!(
        !text.contains(['\x1b', '\r', '\x07', '\u{202e}', '\u{9b}']),
        "{what} prints raw control characters: {text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("sim-1  9999")),
        "{what} prints a forged line: {text:?}"
    );
}

#[tokio::test]
async fn control_characters_in_ticket_text_never_reach_the_terminal_but_json_keeps_them() {
    let env = Setup::tickets(3).start().await;
    let hostile =
        "Vuoto\x1b]0;PWNED\x07\x1b[2J\r\nsim-1  9999  Avoin  forged line \u{202e}gpj.exe\u{9b}";
    let ids = env.truth("sim-1");
    env.patch("sim-1", ids[0], serde_json::json!({ "Otsikko": hostile }));
    env.sync_ok().await;
    let (code, out, err) = env.cli(&["tasks"]).await;
    assert_eq!(code, 0, "{err}");
    assert_no_raw_controls("tasks", &out);
    assert!(
        out.contains("Vuoto\\x1b]0;PWNED\\x07\\x1b[2J\\r\\nsim-1  9999"),
        "the title is shown, escaped: {out}"
    );
    assert_eq!(out.lines().count(), 3, "one line per ticket: {out}");
    let (_, json, _) = env.cli(&["tasks", "--json"]).await;
    let rows: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert!(
        rows.iter().any(|r| r["title"] == hostile),
        "--json keeps the title exactly: {json}"
    );
    // Text the operator typed shows escaped too: the outbox and the queue line.
    let id = ids[1].to_string();
    env.task_ok(&["accept", &id]).await;
    let out = env
        .task_ok(&["hold", &id, "--reason", "odottaa\x1b[2J\r\nsim-1  9999 x"])
        .await;
    assert_no_raw_controls("task hold", &out);
    let (code, out, _) = env.cli(&["outbox"]).await;
    assert_eq!(code, 0);
    assert_no_raw_controls("outbox", &out);
}

#[tokio::test]
async fn read_only_commands_never_create_a_store() {
    let env = Setup::tickets(2).start().await;
    let missing = env.dir.path().join("nosuch").join("store.db");
    let text = std::fs::read_to_string(env.config_path()).unwrap().replace(
        &format!("{:?}", env.config.store.path),
        &format!("{missing:?}"),
    );
    std::fs::write(env.config_path(), text).unwrap();
    for cmd in [
        &["status"][..],
        &["status", "--json"],
        &["tasks"],
        &["tasks", "--json"],
        &["outbox"],
        &["cost"],
        &["visits"],
        &["visits", "--json"],
    ] {
        let (code, out, err) = env.cli(cmd).await;
        assert_eq!(code, 1, "{cmd:?}: {out}{err}");
        assert!(
            err.contains(&format!("no store at {}", missing.display()))
                && err.contains("huoltosync run --once"),
            "{cmd:?}: {err}"
        );
        assert!(out.is_empty(), "{cmd:?}: {out}");
        assert!(
            !missing.parent().unwrap().exists(),
            "{cmd:?} created a folder"
        );
    }
    assert!(!env.config.store.path.exists());
}

#[tokio::test]
async fn status_fails_loudly_on_a_corrupt_store_and_nothing_writes_it() {
    let env = Setup::tickets(300).start().await;
    env.sync_ok().await;
    let (code, _, _) = env.cli(&["status"]).await;
    assert_eq!(code, 0);
    let store = env.config.store.path.clone();
    crate::store::corrupt_table_root(&store, "tickets");
    let before = std::fs::read(&store).unwrap();
    for cmd in [&["status"][..], &["status", "--json"], &["run", "--once"]] {
        let (code, out, err) = env.cli(cmd).await;
        assert_eq!(code, 1, "{cmd:?}: {out}{err}");
        assert!(
            format!("{out}{err}").contains(&format!("the store {} is corrupt", store.display())),
            "{cmd:?}: {out}{err}"
        );
    }
    assert!(
        std::fs::read(&store).unwrap() == before,
        "nothing was written to the corrupt store"
    );
}

#[test]
fn every_argument_of_every_command_has_help() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if arg.get_help().is_none() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&huoltosync::cli::Cli::command(), "huoltosync", &mut missing);
    assert!(missing.is_empty(), "arguments without help: {missing:?}");
}

#[tokio::test]
async fn output_to_a_closed_pipe_ends_quietly_with_success() {
    use std::io::Read;
    let env = Setup::tickets(1000).start().await;
    env.sync_ok().await;
    for args in [&["tasks", "--json"][..], &["tasks"][..]] {
        let mut child = std::process::Command::new(crate::helpers::BIN)
            .arg("--config")
            .arg(env.config_path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -c 100`: read a little, then close the pipe. The output is far larger than a
        // pipe's buffer, so the command is still writing when the pipe closes.
        let mut head = [0u8; 100];
        child.stdout.take().unwrap().read_exact(&mut head).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panick"), "{args:?}: {err}");
    }
}
