//! The Tampuuri boundary holds: the wire format (request bodies, field names) is private to
//! `src/tampuuri/`. Outside it (and the simulator, which speaks the wire format), no code line
//! names a Tampuuri field; comments and help text may. And every call is metered in one place,
//! by the client. The store imports neither the API module nor the config.

use std::path::{Path, PathBuf};

use huoltosync::store::Handle;
use huoltosync::tampuuri::Api;

use crate::helpers::{Setup, TestEnv};

/// Field names that only `src/tampuuri/` may use in code, as substrings of a line.
const FIELDS: [&str; 8] = [
    "TyonsuorittajaId",
    "ReferenceJson",
    "\"Ilmoittaja\"",
    "\"Tilaaja\"",
    "\"Maksaja\"",
    "\"IlmoitaOsallisille\"",
    "\"TyotehtavanLisatiedot\"",
    "\"ReferenceId\"",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `file:line: text` for every code line (not a `//` comment) of `src/` outside the exempt
/// folders that holds one of `needles`.
fn offending_lines(needles: &[&str], exempt: &[&str]) -> (usize, Vec<String>) {
    let root = crate::helpers::repo();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut scanned = 0;
    let mut found = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if exempt.iter().any(|e| rel.starts_with(e)) {
            continue;
        }
        scanned += 1;
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if needles.iter().any(|f| line.contains(f)) {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    (scanned, found)
}

/// Slotti's JSON field names (the seed's), which only `src/slotti/` may use in code.
const SLOTTI_FIELDS: [&str; 9] = [
    "serviceLinks",
    "customerLink",
    "availableTimes",
    "durationMinutes",
    "serviceGuid",
    "resourceGuid",
    "deliveryUrl",
    "authPassword",
    "privateNotes",
];

#[test]
fn slotti_field_names_stay_inside_the_slotti_module() {
    let (scanned, found) = offending_lines(&SLOTTI_FIELDS, &["src/slotti/", "src/sim/"]);
    assert!(scanned >= 20, "only {scanned} files scanned");
    assert!(
        found.is_empty(),
        "Slotti field names outside src/slotti (build bodies and parse answers there):\n{}",
        found.join("\n")
    );
}

#[test]
fn tampuuri_field_names_stay_inside_the_tampuuri_module() {
    let (scanned, found) = offending_lines(&FIELDS, &["src/tampuuri/", "src/sim/"]);
    assert!(
        scanned >= 20,
        "only {scanned} files scanned: is src/ where it was?"
    );
    assert!(
        found.is_empty(),
        "Tampuuri field names outside src/tampuuri (build bodies and parse payloads there):\n{}",
        found.join("\n")
    );
}

#[test]
fn no_json_extract_on_the_raw_json_outside_the_purge() {
    // Every field a face shows is a column the Tampuuri module parsed (migration 016 filled the
    // address of the tickets stored before): SQL reads columns, not Tampuuri's raw JSON.
    let (scanned, found) = offending_lines(&["json_extract"], &["src/store/purge.rs", "src/sim/"]);
    assert!(scanned >= 20, "only {scanned} files scanned");
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// No face (the API, the board, the webhook listener) imports `tampuuri`. The webhook's
/// processing, which fetches from Tampuuri, is the engine's (`src/engine/webhook/`).
#[test]
fn the_board_and_the_api_do_not_import_tampuuri() {
    let root = crate::helpers::repo();
    let mut files = vec![root.join("src/faces/webhook.rs")];
    rust_files(&root.join("src/faces/board"), &mut files);
    rust_files(&root.join("src/faces/api"), &mut files);
    assert!(
        files.len() >= 9,
        "only {} files in src/board and src/api",
        files.len()
    );
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && code.contains("tampuuri::") {
                found.push(format!("{}:{}: {}", file.display(), n + 1, code));
            }
        }
    }
    assert!(
        found.is_empty(),
        "a face reads the mirror's columns, never Tampuuri's format:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_wire_module_is_private() {
    let (scanned, found) = offending_lines(&["pub mod wire", "pub(crate) mod wire"], &[]);
    assert!(scanned >= 20, "only {scanned} files scanned");
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_store_imports_neither_the_api_module_nor_the_config() {
    let root = crate::helpers::repo().join("src/store");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() >= 5, "only {} files in src/store", files.len());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//")
                && ["crate::tampuuri", "crate::config"]
                    .iter()
                    .any(|m| code.contains(m))
            {
                found.push(format!("{}:{}: {}", file.display(), n + 1, code));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the store takes plain values (a Retention, (endpoint, calls) pairs):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_library_does_not_call_into_the_command_line() {
    // The CLI parses and prints; the demo (and the coming HTTP API) call the library as the
    // CLI does: `queue::queue`, `report`, `escape`. Only the binary starts the CLI.
    let (scanned, found) =
        offending_lines(&["crate::cli", "super::cli"], &["src/cli/", "src/main.rs"]);
    assert!(scanned >= 20, "only {scanned} files scanned");
    assert!(
        found.is_empty(),
        "library code that reaches into cli:\n{}",
        found.join("\n")
    );
}

/// Calls in the store's meter for one endpoint.
fn metered(env: &TestEnv, endpoint: &str) -> i64 {
    env.count(&format!(
        "SELECT coalesce(sum(calls), 0) FROM api_calls WHERE account = 'sim-1' AND endpoint = '{endpoint}'"
    ))
}

#[tokio::test]
async fn every_call_is_metered_once_by_the_client_whoever_made_it() {
    let env = Setup::tickets(3).start().await;
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[0].to_string();
    env.task_ok(&["accept", &id]).await;
    let report = env.push().await;
    assert_eq!(report.delivered.len(), 1);
    for endpoint in [
        "POST ilmoitukset/selaa",
        "GET ilmoitukset/{id}",
        "POST ilmoitukset/{id}/vastaanota",
    ] {
        assert_eq!(
            metered(&env, endpoint) as u64,
            env.sim().calls(endpoint),
            "{endpoint}"
        );
    }
    assert_eq!(
        env.count("SELECT sum(calls) FROM api_calls") as u64,
        env.sim().total_calls()
    );
    assert_eq!(
        report.api_calls,
        env.sim().total_calls() - env.selaa_calls()
    );
}

/// Every outgoing HTTP call goes through `src/remote/`: it is the one place (the simulator
/// aside, which must use none of our code) that builds an HTTP client, so one pool, throttle,
/// timeout, redirect policy and Retry-After rule hold for every remote.
#[test]
fn one_place_builds_http_clients() {
    let needles = [
        "Client::builder(",
        "ClientBuilder::new(",
        "reqwest::Client::new(",
        "reqwest::Client::default(",
    ];
    let (scanned, found) = offending_lines(&needles, &["src/sim/"]);
    assert!(scanned >= 20, "only {scanned} files scanned");
    assert!(
        found.len() == 1 && found[0].starts_with("src/remote/mod.rs:"),
        "HTTP clients are built in src/remote/mod.rs only:\n{}",
        found.join("\n")
    );
}

/// Code lines (not `//` comments) of the files under `dir` that hold one of `needles`.
fn lines_naming(dir: &str, needles: &[&str]) -> (Vec<PathBuf>, Vec<String>) {
    let mut files = Vec::new();
    rust_files(&crate::helpers::repo().join(dir), &mut files);
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if needles.iter().any(|m| code.contains(m)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    (files, found)
}

/// The remote clients are handed a meter; they know nothing of the store.
#[test]
fn tampuuri_and_slotti_import_nothing_from_the_store() {
    let needles = ["crate::store", "store::Handle"];
    let (tampuuri, mut found) = lines_naming("src/tampuuri", &needles);
    let (slotti, more) = lines_naming("src/slotti", &needles);
    found.extend(more);
    assert!(
        tampuuri.len() >= 2 && slotti.len() >= 2,
        "{tampuuri:?} {slotti:?}"
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// `src/slotti/` is a client and a wire format, like `src/tampuuri/`: what is done with visits
/// (booking, telling Tampuuri, reconciling, processing deliveries) is `src/engine/visits/`'s, the
/// delivery of a queued booking the relay's (`src/engine/push/`), the webhook receiver the listener's.
#[test]
fn slotti_is_a_client_and_a_wire_format_without_visit_logic() {
    let (files, found) = lines_naming(
        "src/slotti",
        &[
            "crate::store",
            "crate::engine",
            "crate::faces",
            "crate::service",
            "pub mod book",
            "pub mod tell",
            "pub mod reconcile",
            "pub mod relay",
            "pub mod sync",
            "pub mod webhook",
        ],
    );
    assert!(files.len() >= 2, "{files:?}");
    let visit_logic: Vec<_> = files
        .iter()
        .filter(|f| {
            let name = f.file_stem().unwrap().to_string_lossy();
            ["book", "tell", "reconcile", "relay", "sync", "webhook"].contains(&name.as_ref())
        })
        .collect();
    assert!(
        visit_logic.is_empty(),
        "visit logic in src/slotti/: {visit_logic:?}"
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// One exchange per process: the daemon's runtime owns one for its life (a reload hands it the
/// new config), and Tampuuri, Slotti, the subscribers and the board call through it. An
/// exchange is built only where a process starts its work: a command (`src/cli/`), `Api::new`
/// (which the commands call), and `huoltosync serve`.
#[test]
fn an_exchange_is_built_once_per_process() {
    let (scanned, found) = offending_lines(
        &["Exchange::new("],
        &[
            "src/remote/",
            "src/sim/",
            "src/cli/",
            "src/tampuuri/mod.rs",
            "src/faces/api/lifecycle.rs",
        ],
    );
    assert!(scanned >= 20, "only {scanned} files scanned");
    assert!(
        found.is_empty(),
        "an exchange built beside the process's one (pass it down instead):\n{}",
        found.join("\n")
    );
}

#[tokio::test]
async fn calls_the_store_cannot_take_stay_counted_in_the_client() {
    let env = Setup::tickets(2).start().await;
    env.sync_ok().await;
    let before = env.sim().total_calls();
    let api = Api::new(&env.config).unwrap();
    let client = api.client(&env.config.accounts[0]).unwrap();
    let id = env.open_ids("sim-1")[0];
    assert!(client.get_ticket(id).await.unwrap().is_some());
    assert_eq!(client.unrecorded_calls(), 1);
    let store = Handle::open(env.config.store.path.clone()).await.unwrap();
    let db = env.db();
    db.execute_batch("ALTER TABLE api_calls RENAME TO api_calls_away")
        .unwrap();
    let e = format!("{:#}", client.meter().record(&store).await.unwrap_err());
    assert!(
        e.contains("sim-1") && e.contains("cannot meter 1 API call"),
        "{e}"
    );
    assert_eq!(client.unrecorded_calls(), 1, "kept for the next time");
    db.execute_batch("ALTER TABLE api_calls_away RENAME TO api_calls")
        .unwrap();
    assert_eq!(client.meter().record(&store).await.unwrap(), 1);
    assert_eq!(client.unrecorded_calls(), 0);
    assert_eq!(
        client.meter().record(&store).await.unwrap(),
        0,
        "recorded once"
    );
    assert_eq!(metered(&env, "GET ilmoitukset/{id}"), 1);
    assert_eq!(env.sim().total_calls(), before + 1);
}

/// The simulator is the independent oracle the tests judge huoltosync by: it names no module
/// of huoltosync (`crate::…`), so a mistake in our signing or parsing cannot hide in both.
#[test]
fn the_simulator_uses_no_code_of_huoltosync() {
    let root = crate::helpers::repo();
    let mut files = Vec::new();
    rust_files(&root.join("src/sim"), &mut files);
    assert!(files.len() >= 6, "only {} files in src/sim", files.len());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if !line.trim_start().starts_with("//") && line.contains("crate::") {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the simulator uses huoltosync's own code:\n{}",
        found.join("\n")
    );
}

/// `file:line: text` for every code line (comments aside) of the named files and folders of
/// `src/` that holds one of `needles`; with how many files were read.
fn lines_in(paths: &[&str], needles: &[&str]) -> (usize, Vec<String>) {
    let root = crate::helpers::repo();
    let mut files = Vec::new();
    for p in paths {
        let path = root.join("src").join(p);
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            assert!(path.is_file(), "src/{p} is not where it was");
            files.push(path);
        }
    }
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if needles.iter().any(|m| code.contains(m)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    (files.len(), found)
}

/// The domain (`src/domain/`: the model, the actions, the cost, time, escaping, backoff) is in
/// the model's terms and stands alone: what Tampuuri calls a field is the Tampuuri module's
/// business (it hands the store [`huoltosync::domain::model::ChangedFields`]), and the domain
/// reads no config, no store, no integration and nothing above it.
#[test]
fn the_domain_imports_neither_tampuuri_nor_the_config() {
    let (n, found) = lines_in(
        &["domain"],
        &[
            "tampuuri::",
            "slotti::",
            "config::",
            "crate::store",
            "crate::engine",
            "crate::faces",
            "crate::service",
            "crate::cli",
        ],
    );
    assert!(n >= 7, "only {n} files in src/domain");
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The engine (`src/engine/`: sync, queue, push, visits, webhook processing, status) knows
/// nothing of the service that runs it (no cron schedule, no daemon) nor of the faces that
/// show it. The cost estimate takes the month's ticks as numbers
/// (`schedule::month_ticks`, called by whoever shows the cost).
#[test]
fn the_engine_imports_nothing_from_the_service() {
    let (n, found) = lines_in(
        &["engine"],
        &[
            "service::",
            "schedule::",
            "Schedule",
            "crate::faces",
            "crate::cli",
        ],
    );
    assert!(n >= 15, "only {n} files in src/engine");
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The config reads every section itself and imports no face: the API, the board, the outgoing
/// events, the webhook listener and Slotti take their section types from `crate::config`
/// (issue 20, item 8). Nothing of theirs is config-free enough to be worth the exception.
#[test]
fn the_config_imports_no_face() {
    let root = crate::helpers::repo();
    let mut files = Vec::new();
    rust_files(&root.join("src/config"), &mut files);
    assert!(files.len() >= 6, "only {} files in src/config", files.len());
    let faces = [
        "crate::faces",
        "crate::engine",
        "crate::slotti",
        "crate::cli",
    ];
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if faces.iter().any(|f| code.contains(f)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the config declares every section to its one reader; a face imports from the config, not the other way:\n{}",
        found.join("\n")
    );
}

/// One reader walks the TOML: `src/config/reader.rs` and the sections read through it. No other
/// code parses the file or walks its tables (`huoltosync serve` asks the config for `[api]`).
#[test]
fn one_reader_walks_the_toml() {
    let needles = [
        "toml::Table",
        "toml::de::",
        "&toml::Value",
        "use toml::{",
        "use toml::Table",
        "use toml::Value",
        "as_table(",
        "as_table_mut(",
    ];
    let (scanned, found) = offending_lines(&needles, &["src/config/", "src/sim/"]);
    assert!(scanned >= 20, "only {scanned} files scanned");
    assert!(
        found.is_empty(),
        "TOML walked outside src/config (read it with config::reader::Reader):\n{}",
        found.join("\n")
    );
}

/// `(file:line, the names of its `pub fn`s)` of an `impl Store {` block.
type ImplBlock = (String, Vec<String>);

/// The `pub fn`s of every `impl Store {` block in `src/store/`, and each file's production
/// lines (up to its `#[cfg(test)]`).
fn store_impls() -> (Vec<ImplBlock>, Vec<(String, usize)>) {
    let root = crate::helpers::repo();
    let mut files = Vec::new();
    rust_files(&root.join("src/store"), &mut files);
    files.sort();
    let (mut blocks, mut sizes) = (Vec::new(), Vec::new());
    for file in files {
        let rel = file.strip_prefix(root).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let production: Vec<&str> = text
            .lines()
            .take_while(|l| !l.starts_with("#[cfg(test)]"))
            .collect();
        sizes.push((rel.clone(), production.len()));
        let mut open: Option<(String, Vec<String>)> = None;
        for (n, line) in production.iter().enumerate() {
            if *line == "impl Store {" {
                open = Some((format!("{rel}:{}", n + 1), Vec::new()));
            } else if *line == "}" {
                blocks.extend(open.take());
            } else if let Some((_, names)) = &mut open
                && let Some(rest) = line
                    .strip_prefix("    pub fn ")
                    .or_else(|| line.strip_prefix("    pub async fn "))
            {
                names.push(rest.split(['(', '<']).next().unwrap_or_default().to_owned());
            }
        }
    }
    (blocks, sizes)
}

/// The store is reached through its areas' handles (`store.outbox().enqueue(..)`), not as one
/// type with a method for everything: `Store` keeps opening, its file, its errors, the purge
/// and the handle accessors; each area's file stays a room one can hold in mind.
#[test]
fn the_store_is_reached_through_its_areas() {
    let (blocks, sizes) = store_impls();
    assert!(sizes.len() >= 10, "only {} files in src/store", sizes.len());
    assert!(!blocks.is_empty(), "no `impl Store {{` block in src/store");
    let big: Vec<String> = blocks
        .iter()
        .filter(|(_, names)| names.len() > 12)
        .map(|(at, names)| format!("{at}: {} public methods: {}", names.len(), names.join(", ")))
        .collect();
    assert!(
        big.is_empty(),
        "an `impl Store` block with more than 12 public methods (give them an area's handle):\n{}",
        big.join("\n")
    );
    let all: Vec<&String> = blocks.iter().flat_map(|(_, n)| n).collect();
    assert!(
        all.len() <= 20,
        "Store has {} public methods; an area's methods belong on its handle: {all:?}",
        all.len()
    );
    let long: Vec<String> = sizes
        .iter()
        .filter(|(_, n)| *n >= 900)
        .map(|(f, n)| format!("{f}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "{}", long.join("\n"));
}

/// The tests' package (tests/it/Cargo.toml) asks for nothing without its default feature:
/// every dependency optional, every target requiring `tests`. cargo-deb builds the Debian
/// package with `--no-default-features --workspace`; a dependency of this package left on
/// there would be unified into the packaged binary (`huoltosync/sim` put the simulator in it).
#[test]
fn the_tests_package_adds_nothing_to_a_build_without_default_features() {
    let text = std::fs::read_to_string(crate::helpers::repo().join("tests/it/Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    let deps = manifest["dependencies"].as_table().unwrap();
    assert!(
        deps.contains_key("huoltosync") && deps.len() > 10,
        "{deps:?}"
    );
    let always: Vec<&String> = deps
        .iter()
        .filter(|(_, spec)| spec.get("optional").and_then(toml::Value::as_bool) != Some(true))
        .map(|(name, _)| name)
        .collect();
    assert!(always.is_empty(), "not optional: {always:?}");
    assert!(
        !manifest.contains_key("dev-dependencies") && !manifest.contains_key("build-dependencies")
    );
    for kind in ["bin", "test"] {
        for target in manifest[kind].as_array().unwrap() {
            let required = target
                .get("required-features")
                .and_then(toml::Value::as_array)
                .cloned()
                .unwrap_or_default();
            assert!(
                required.iter().any(|f| f.as_str() == Some("tests")),
                "{kind} {:?} does not require `tests`",
                target.get("name")
            );
        }
    }
    let features = manifest["features"].as_table().unwrap();
    assert_eq!(features["default"].as_array().unwrap().len(), 1);
    assert_eq!(features["default"][0].as_str(), Some("tests"));
}
