//! Config validation: every problem reported at once, each naming its key; secrets from files
//! and the environment; nothing secret ever printed.

use std::path::Path;

use huoltosync::config::Config;

const GOOD: &str = r#"
[store]
path = "store.db"
[tampuuri]
base_url = "http://127.0.0.1:9/v10/api/"
api_key = "k"
customer_name = "C"
[[accounts]]
name = "a"
username = "u"
password = "p"
contractor_id = 4711
"#;

/// Loads `text` from a file in a temporary folder; returns the keys of the reported errors.
fn error_keys(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    match Config::load(&path) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors.into_iter().map(|i| i.key).collect(),
    }
}

fn check(text: &str, expected: &[&str]) {
    assert_eq!(error_keys(text), expected, "config:\n{text}");
}

#[test]
fn a_good_config_loads() {
    check(GOOD, &[]);
}

#[test]
fn each_broken_config_names_the_key_at_fault() {
    check(
        &GOOD.replace("[store]", "[store]\npathh = 1"),
        &["store.pathh"],
    );
    check(
        &GOOD.replace("contractor_id = 4711", ""),
        &["accounts[0].contractor_id"],
    );
    check(
        &GOOD.replace("contractor_id = 4711", "contractor_id = \"x\""),
        &["accounts[0].contractor_id"],
    );
    check(
        &GOOD.replace("username = \"u\"", ""),
        &["accounts[0].username"],
    );
    check(
        &GOOD.replace("password = \"p\"", ""),
        &["accounts[0].password"],
    );
    check(
        &GOOD.replace(
            "customer_name = \"C\"",
            "customer_name = \"C\"\npage_size = 251",
        ),
        &["tampuuri.page_size"],
    );
    check(
        &GOOD.replace(
            "base_url = \"http://127.0.0.1:9/v10/api/\"",
            "base_url = \"ftp://x\"",
        ),
        &["tampuuri.base_url"],
    );
    check(
        &GOOD.replace("password = \"p\"", "password_file = \"/nonexistent/pw\""),
        &["accounts[0].password_file"],
    );
    check(
        &GOOD.replace("password = \"p\"", "password = \"p\"\npassword_env = \"X\""),
        &["accounts[0].password"],
    );
    check(
        &GOOD.replace(
            "password = \"p\"",
            "password_env = \"HUOLTOSYNC_TEST_SURELY_UNSET\"",
        ),
        &["accounts[0].password_env"],
    );
    check(
        &GOOD.replace(
            "contractor_id = 4711",
            "contractor_id = 4711\nstate_filter = \"each\"",
        ),
        &["accounts[0].state_filter"],
    );
    check(
        &GOOD.replace("contractor_id = 4711", "contractor_id = 4711\nstates = []"),
        &["accounts[0].states"],
    );
    check(
        &GOOD.replace(
            "contractor_id = 4711",
            "contractor_id = 4711\n[accounts.extra_filter]\nLimit = 5",
        ),
        &["accounts[0].extra_filter.Limit"],
    );
    check(
        &format!(
            "{GOOD}\n[[accounts]]\nname = \"a\"\nusername = \"u\"\npassword = \"p\"\ncontractor_id = 1\n"
        ),
        &["accounts[1].name"],
    );
    check(&GOOD.replace("[[accounts]]\nname = \"a\"\nusername = \"u\"\npassword = \"p\"\ncontractor_id = 4711\n", ""), &["accounts"]);
    check(
        &GOOD.replace("api_key = \"k\"\n", ""),
        &["accounts[0].api_key"],
    );
    check("[tampuuri\n", &[""]);
    check(
        &GOOD.replace(
            "customer_name = \"C\"",
            "customer_name = \"C\"\nmax_response_bytes = 10",
        ),
        &["tampuuri.max_response_bytes"],
    );
}

#[test]
fn max_response_bytes_defaults_to_16_mib_and_can_be_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, GOOD).unwrap();
    let c = Config::load(&path).unwrap().config;
    assert_eq!(c.tampuuri.max_response_bytes, 16 << 20);
    std::fs::write(
        &path,
        GOOD.replace(
            "customer_name = \"C\"",
            "customer_name = \"C\"\nmax_response_bytes = 65536",
        ),
    )
    .unwrap();
    let c = Config::load(&path).unwrap().config;
    assert_eq!(c.tampuuri.max_response_bytes, 65536);
}

#[test]
fn a_secret_http_cannot_carry_is_named_by_its_key_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "XYZZY\nmore\n").unwrap();
    let path = dir.path().join("c.toml");
    // An account's own secret: that account is unusable, the config still loads for the others.
    std::fs::write(
        &path,
        GOOD.replace("password = \"p\"", "password_file = \"pw\""),
    )
    .unwrap();
    let loaded = Config::load(&path).unwrap();
    let keys: Vec<&str> = loaded
        .account_errors
        .iter()
        .map(|i| i.key.as_str())
        .collect();
    assert_eq!(keys, ["accounts[0].password_file"]);
    assert!(!format!("{:?}", loaded.account_errors).contains("XYZZY"));
    // The global key spoils every account: the config is invalid.
    std::fs::write(
        &path,
        GOOD.replace("api_key = \"k\"", "api_key_file = \"pw\""),
    )
    .unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(e.errors[0].key, "tampuuri.api_key_file");
    assert!(!e.to_string().contains("XYZZY"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("[store]", "[store]\nbogus = true")
        .replace("contractor_id = 4711", "contractor_id = 0\nwhat = 1")
        .replace(
            "customer_name = \"C\"",
            "customer_name = \"C\"\npage_size = 0\ntimeout_secs = \"10\"",
        );
    let mut keys = error_keys(&text);
    keys.sort();
    assert_eq!(
        keys,
        [
            "accounts[0].contractor_id",
            "accounts[0].what",
            "store.bogus",
            "tampuuri.page_size",
            "tampuuri.timeout_secs"
        ]
    );
}

#[test]
fn accounts_override_the_global_key_customer_and_url() {
    let text = GOOD.replace(
        "contractor_id = 4711",
        "contractor_id = 4711\nbase_url = \"https://qa-api.tampuuri.fi/v10/api\"\ncustomer_name = \"Isännöinti Oy\"",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let c = Config::load(&path).unwrap().config;
    assert_eq!(
        c.accounts[0].base_url,
        "https://qa-api.tampuuri.fi/v10/api/"
    );
    assert_eq!(c.accounts[0].customer_name, "Isännöinti Oy");
    assert_eq!(
        c.store.path,
        dir.path().join("store.db"),
        "relative to the config file"
    );
}

#[test]
fn secrets_come_from_files_relative_to_credentials_directory_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tampuuri-key"), "from-file-key\n").unwrap();
    std::fs::write(dir.path().join("pw"), "from-file-pw\n").unwrap();
    let text = GOOD
        .replace("api_key = \"k\"", "api_key_file = \"tampuuri-key\"")
        .replace("password = \"p\"", "password_file = \"pw\"");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &text).unwrap();
    // Without $CREDENTIALS_DIRECTORY, relative names resolve beside the config file.
    let c = Config::load(&path).unwrap().config;
    use secrecy::ExposeSecret;
    assert_eq!(
        c.accounts[0].api_key.expose_secret(),
        "from-file-key",
        "trailing newline trimmed"
    );
    assert_eq!(c.accounts[0].password.expose_secret(), "from-file-pw");
    assert!(
        !format!("{c:?}").contains("from-file"),
        "secrets never print"
    );
}

#[test]
fn an_inline_secret_in_a_world_readable_file_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, GOOD).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warnings = Config::load(&path).unwrap().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.message.contains("readable by others")),
        "{warnings:?}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Config::load(&path).unwrap().warnings.is_empty());
    // root:huoltosync 0640 is how the service reads it: no other user can, so no warning.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(Config::load(&path).unwrap().warnings.is_empty());
}

#[tokio::test]
async fn every_inline_secret_is_warned_about_by_its_key_and_never_by_its_value() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (f, v) in [
        ("key", "file-key"),
        ("pw", "file-pw"),
        ("other", "file-other"),
    ] {
        std::fs::write(dir.path().join(f), v).unwrap();
    }
    let files_only = GOOD
        .replace("api_key = \"k\"", "api_key_file = \"key\"")
        .replace("password = \"p\"", "password_file = \"pw\"");
    let path = dir.path().join("c.toml");
    for (key, value, other) in [
        ("basic_password", "inline-basic-pass", "path_token"),
        ("path_token", "inline-path-token-123", "basic_password"),
        ("hmac_secret", "inline-hmac", "basic_password"),
    ] {
        let text = format!(
            "{files_only}[webhook]\nlisten = \"127.0.0.1:0\"\nbasic_username = \"tampuuri\"\n{key} = \"{value}\"\n{other}_file = \"other\"\n"
        );
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loaded = Config::load(&path).unwrap();
        assert_eq!(loaded.inline_secrets, [format!("webhook.{key}")]);
        let warnings = format!("{:?}", loaded.warnings);
        assert!(warnings.contains(&format!("webhook.{key}")), "{warnings}");
        assert!(
            !warnings.contains(&format!("webhook.{other}")),
            "{warnings}"
        );
        let (_, out, err) = crate::helpers::run_cli(&path, &["check-config"]).await;
        assert!(out.contains(&format!("webhook.{key}")), "{out}{err}");
        assert!(!out.contains(value) && !err.contains(value), "{out}{err}");
    }
    // Only what is inline, in a file others can read: no warning for secrets in files.
    std::fs::write(&path, &files_only).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(Config::load(&path).unwrap().warnings.is_empty());
}

#[tokio::test]
async fn check_config_prints_every_error_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        GOOD.replace("contractor_id = 4711", "")
            .replace("[store]", "[store]\nx = 1"),
    )
    .unwrap();
    let (code, out, _) = crate::helpers::run_cli(&path, &["check-config"]).await;
    assert_eq!(code, 2);
    assert!(
        out.contains("accounts[0].contractor_id") && out.contains("store.x: unknown key"),
        "{out}"
    );
    let (code, out, _) =
        crate::helpers::run_cli(Path::new("/nonexistent/c.toml"), &["check-config"]).await;
    assert_eq!(code, 2);
    assert!(
        out.contains("/nonexistent/c.toml") && out.contains("cannot read"),
        "{out}"
    );
}

#[tokio::test]
async fn the_example_config_is_valid_with_its_credentials_in_place() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("tampuuri-api-key"), "k\n").unwrap();
    std::fs::write(creds.path().join("isannointi-esimerkki-password"), "p\n").unwrap();
    let out = tokio::process::Command::new(crate::helpers::BIN)
        .arg("--config")
        .arg(crate::helpers::repo().join("config.example.toml"))
        .arg("check-config")
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("is valid: 1 account(s): isannointi-esimerkki"),
        "{text}"
    );
}

#[test]
fn a_webhook_path_the_listener_cannot_serve_is_refused_by_key() {
    let with = |lines: &str| {
        format!("{GOOD}\n[webhook]\nlisten = \"127.0.0.1:8787\"\npath_token = \"t0k3n\"\n{lines}\n")
    };
    for path in [
        "/",
        "//",
        "/a//b",
        "/a/*rest",
        "/a/{x}",
        "/a/:x",
        "/with space",
        "no-slash",
        "/a?b",
    ] {
        check(&with(&format!("path = {path:?}")), &["webhook.path"]);
    }
    for path in [
        "/tampuuri/webhook",
        "/tampuuri/webhook/",
        "/hooks/tampuuri-v1.0",
    ] {
        check(&with(&format!("path = {path:?}")), &[]);
    }
    // Bodies are buffered before an HMAC can be checked: at most 4 MiB.
    check(
        &with("max_body_bytes = 67108864"),
        &["webhook.max_body_bytes"],
    );
    check(&with("max_body_bytes = 4194304"), &[]);
    check(&with("max_connections = 0"), &["webhook.max_connections"]);
    check(
        &with("max_fetches_per_minute = -1"),
        &["webhook.max_fetches_per_minute"],
    );
    check(&with("max_fetches_per_minute = 0"), &[]);
    check(
        &with("debounce_ms = 2000\ndebounce_max_ms = 1000"),
        &["webhook.debounce_max_ms"],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        with("max_connections = 64\ndebounce_ms = 250\ndebounce_max_ms = 3000"),
    )
    .unwrap();
    let w = Config::load(&path).unwrap().config.webhook.unwrap();
    assert_eq!(
        (w.max_connections, w.debounce, w.debounce_max),
        (
            64,
            std::time::Duration::from_millis(250),
            std::time::Duration::from_secs(3)
        )
    );
    std::fs::write(&path, with("")).unwrap();
    let w = Config::load(&path).unwrap().config.webhook.unwrap();
    assert_eq!(
        (
            w.max_body_bytes,
            w.max_connections,
            w.debounce,
            w.debounce_max
        ),
        (
            262_144,
            256,
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(5)
        )
    );
    assert_eq!(w.max_fetches_per_minute, 60);
}

#[tokio::test]
async fn check_config_refuses_the_root_as_webhook_path_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "{GOOD}\n[webhook]\nlisten = \"127.0.0.1:0\"\npath = \"/\"\npath_token = \"t0k3n\"\n"
        ),
    )
    .unwrap();
    let (code, out, err) = crate::helpers::run_cli(&path, &["check-config"]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("webhook.path"), "{out}{err}");
}

#[test]
fn sweep_bounds_have_defaults_and_refuse_nonsense_by_key() {
    let load = |text: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap().config
    };
    let c = load(GOOD);
    assert_eq!(c.sync.max_pages, 2000);
    assert_eq!(c.sync.account_deadline, std::time::Duration::from_secs(600));
    let c = load(&format!(
        "{GOOD}[sync]\nmax_pages = 20\naccount_deadline_secs = 30\n"
    ));
    assert_eq!(c.sync.max_pages, 20);
    assert_eq!(c.sync.account_deadline, std::time::Duration::from_secs(30));
    check(
        &format!("{GOOD}[sync]\nmax_pages = 0\naccount_deadline_secs = -1\n"),
        &["sync.max_pages", "sync.account_deadline_secs"],
    );
}

#[test]
fn without_secrets_the_file_is_validated_but_no_credential_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let text = GOOD
        .replace("api_key = \"k\"", "api_key_file = \"/nonexistent/key\"")
        .replace(
            "password = \"p\"",
            "password_env = \"HUOLTOSYNC_TEST_NO_SUCH_VAR\"",
        );
    std::fs::write(&path, &text).unwrap();
    let strict = Config::load(&path).unwrap_err();
    let keys: Vec<&str> = strict.errors.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        ["tampuuri.api_key_file", "accounts[0].password_env"],
        "{strict}"
    );
    let c = Config::load_without_secrets(&path).unwrap().config;
    assert_eq!(
        c.unread_secrets,
        ["tampuuri.api_key_file", "accounts[0].password_env"]
    );
    assert_eq!(c.accounts[0].name, "a");
    // Everything else is checked as before.
    std::fs::write(&path, text.replace("contractor_id = 4711", "")).unwrap();
    let err = Config::load_without_secrets(&path).unwrap_err();
    assert_eq!(err.errors[0].key, "accounts[0].contractor_id");
    // A config with its secrets has none unread.
    assert!(
        Config::load(&error_keys_config(dir.path()))
            .unwrap()
            .config
            .unread_secrets
            .is_empty()
    );
}

fn error_keys_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("good.toml");
    std::fs::write(&path, GOOD).unwrap();
    path
}

#[test]
fn schedules_are_read_in_schedule_timezone_helsinki_by_default() {
    let load = |text: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap().config
    };
    let c = load(GOOD);
    assert_eq!(c.schedule.timezone, chrono_tz::Europe::Helsinki);
    assert_eq!(c.schedule.poll.zone(), chrono_tz::Europe::Helsinki);
    let office = "[schedule]\npoll = \"0 */15 7-17 * * Mon-Fri\"\ntimezone = \"UTC\"\n";
    let c = load(&format!(
        "{GOOD}{office}[webhook]\nlisten = \"127.0.0.1:9\"\nhmac_secret = \"s\"\nreconcile = \"0 0 6 * * *\"\n"
    ));
    assert_eq!(c.schedule.timezone, chrono_tz::UTC);
    assert_eq!(c.schedule.poll.expr(), "0 */15 7-17 * * Mon-Fri");
    assert_eq!(
        c.webhook.expect("a webhook").reconcile.zone(),
        chrono_tz::UTC,
        "[webhook] reconcile is read in the same zone"
    );
    check(
        &format!("{GOOD}[schedule]\ntimezone = \"Mars/Olympus\"\n"),
        &["schedule.timezone"],
    );
    check(
        &format!("{GOOD}[schedule]\ntimezone = 2\npoll = \"0 61 * * * *\"\n"),
        &["schedule.timezone", "schedule.poll"],
    );
}

/// `[[api.subscribers]]`: a good entry gets its defaults; every bad key is named, the secret
/// never shown.
#[test]
fn subscribers_are_validated_by_key_and_their_secret_never_shown() {
    use base64::Engine as _;
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([42u8; 32])
    );
    let sub = |body: &str| format!("{GOOD}\n[[api.subscribers]]\n{body}\n");
    let good = sub(&format!(
        "url = \"https://erp.example.fi/hooks\"\nsecret = \"{secret}\"\nevents = [\"ticket.new\", \"ticket.left\"]"
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &good).unwrap();
    let loaded = Config::load(&path).unwrap();
    let s = &loaded.config.subscribers[0];
    assert_eq!(s.name, "erp.example.fi/hooks");
    assert_eq!(s.deadline, std::time::Duration::from_secs(24 * 3600));
    assert!(s.wants("ticket.left") && !s.wants("action.queued"));
    assert_eq!(s.signing_key().unwrap(), [42u8; 32]);
    assert!(
        loaded
            .inline_secrets
            .contains(&"api.subscribers[0].secret".to_owned())
    );
    assert!(!format!("{:?}", loaded.config).contains(&secret));
    let all = sub(&format!(
        "name = \"erp\"\nurl = \"http://127.0.0.1:9/e\"\nsecret = \"{secret}\"\nevents = [\"*\"]\ndeadline_hours = 2"
    ));
    std::fs::write(&path, &all).unwrap();
    let s = &Config::load(&path).unwrap().config.subscribers[0];
    assert!(s.wants("action.dead") && s.name == "erp");
    assert_eq!(s.deadline, std::time::Duration::from_secs(2 * 3600));

    let u = "url = \"http://127.0.0.1:9/e\"";
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            sub(&format!("{u}\nsecret = \"not-a-whsec-secret-at-all\"")),
            vec!["api.subscribers[0].secret"],
        ),
        (
            sub(&format!("{u}\nsecret = \"whsec_c2hvcnQ=\"")),
            vec!["api.subscribers[0].secret"],
        ),
        (sub(u), vec!["api.subscribers[0].secret"]),
        (
            sub(&format!(
                "{u}\nsecret = \"{secret}\"\nevents = [\"ticket.new\", \"ticket.exploded\"]"
            )),
            vec!["api.subscribers[0].events[1]"],
        ),
        (
            sub(&format!("{u}\nsecret = \"{secret}\"\nevents = []")),
            vec!["api.subscribers[0].events"],
        ),
        (
            sub(&format!("url = \"ftp://x/e\"\nsecret = \"{secret}\"")),
            vec!["api.subscribers[0].url"],
        ),
        (
            sub(&format!("secret = \"{secret}\"")),
            vec!["api.subscribers[0].url"],
        ),
        (
            sub(&format!("{u}\nsecret = \"{secret}\"\ndeadline_hours = 0")),
            vec!["api.subscribers[0].deadline_hours"],
        ),
        (
            sub(&format!("{u}\nsecret = \"{secret}\"\nsecrett = 1")),
            vec!["api.subscribers[0].secrett"],
        ),
        (
            format!(
                "{}\n[[api.subscribers]]\n{u}\nsecret = \"{secret}\"\n",
                sub(&format!("{u}\nsecret = \"{secret}\""))
            ),
            vec!["api.subscribers[1].name"],
        ),
    ];
    for (text, keys) in cases {
        std::fs::write(&path, &text).unwrap();
        let err = Config::load(&path).unwrap_err();
        let got: Vec<String> = err.errors.iter().map(|i| i.key.clone()).collect();
        assert_eq!(got, keys, "{text}");
        assert!(!err.to_string().contains(&secret), "{err}");
        assert!(
            !err.to_string().contains("not-a-whsec-secret-at-all"),
            "{err}"
        );
    }

    // From a file or the environment; without secrets, neither is read.
    std::fs::write(dir.path().join("whsec"), format!("{secret}\n")).unwrap();
    std::fs::write(&path, sub(&format!("{u}\nsecret_file = \"whsec\""))).unwrap();
    let c = Config::load(&path).unwrap().config;
    assert_eq!(c.subscribers[0].signing_key().unwrap(), [42u8; 32]);
    std::fs::write(
        &path,
        sub(&format!(
            "{u}\nsecret_env = \"HUOLTOSYNC_TEST_UNSET_WHSEC\""
        )),
    )
    .unwrap();
    assert_eq!(
        error_keys(&std::fs::read_to_string(&path).unwrap()),
        ["api.subscribers[0].secret_env"]
    );
    let c = Config::load_without_secrets(&path).unwrap().config;
    assert_eq!(c.unread_secrets, ["api.subscribers[0].secret_env"]);
}

/// `[api]`: a listen address and at least one token of 16 characters or more, names unique,
/// scopes `read` or `write`; `[[api.subscribers]]` is left to the outgoing events.
const API: &str = "[api]\nlisten = \"127.0.0.1:8788\"\n[[api.tokens]]\nname = \"erp\"\ntoken = \"write-token-123456\"\nscope = \"write\"\n[[api.tokens]]\nname = \"viewer\"\ntoken = \"read-token-123456\"\nscope = \"read\"\n";

#[test]
fn the_api_section_is_read_with_defaults_and_its_errors_are_named_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, format!("{GOOD}{API}")).unwrap();
    let config = Config::load(&path).unwrap().config;
    let api = config.api.expect("[api] is read");
    assert_eq!(api.listen.unwrap().port(), 8788);
    assert_eq!(api.feed_retain_days, 30);
    assert_eq!(api.max_body_bytes, 8 << 20);
    assert_eq!(api.tokens.len(), 2);
    assert_eq!(api.tokens[0].name, "erp");
    assert!(Config::load(&dir.path().join("c.toml")).is_ok());
    assert!(
        Config::from_table(GOOD.parse().unwrap(), &path)
            .unwrap()
            .config
            .api
            .is_none(),
        "no [api]: the API is off"
    );
    // [[api.subscribers]] is read by the outgoing events' own reader, beside the rest of [api].
    check(
        &format!(
            "{GOOD}{API}[[api.subscribers]]\nurl = \"http://127.0.0.1:9/e\"\nsecret = \"whsec_MDEyMzQ1Njc4OWFiY2RlZg==\"\n"
        ),
        &[],
    );
    check(
        &format!("{GOOD}{API}")
            .replace("feed_retain_days", "x")
            .replace(
                "listen = \"127.0.0.1:8788\"",
                "listen = \"127.0.0.1:8788\"\nfeed_retain_days = 7\nmax_body_bytes = 2048",
            ),
        &[],
    );
    check(
        &format!("{GOOD}{API}").replace("127.0.0.1:8788", "localhost"),
        &["api.listen"],
    );
    check(
        &format!("{GOOD}{API}").replace("write-token-123456", "short"),
        &["api.tokens[0].token"],
    );
    check(
        &format!("{GOOD}{API}").replace("name = \"viewer\"", "name = \"erp\""),
        &["api.tokens[1].name"],
    );
    check(
        &format!("{GOOD}{API}").replace("scope = \"read\"", "scope = \"admin\""),
        &["api.tokens[1].scope"],
    );
    check(
        &format!("{GOOD}{API}").replace(
            "listen = \"127.0.0.1:8788\"",
            "listen = \"127.0.0.1:8788\"\nfeed_retain_days = 0\nport = 1",
        ),
        &["api.feed_retain_days", "api.port"],
    );
    check(
        &format!("{GOOD}[api]\nlisten = \"127.0.0.1:8788\"\n"),
        &["api.tokens"],
    );
    // Without listen the API is not served, and needs no token.
    check(&format!("{GOOD}[api]\nfeed_retain_days = 7\n"), &[]);
    check(
        &format!("{GOOD}{API}").replace(
            "token = \"read-token-123456\"",
            "token = \"read-token-123456\"\ntoken_env = \"HS_TEST_UNSET_TOKEN_VAR\"",
        ),
        &["api.tokens[1].token"],
    );
}

#[tokio::test]
async fn api_tokens_come_from_files_and_inline_ones_are_warned_about_by_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("erp.token"), "file-token-0123456789\n").unwrap();
    let path = dir.path().join("c.toml");
    let text = format!("{GOOD}{API}").replace(
        "token = \"write-token-123456\"",
        "token_file = \"erp.token\"",
    );
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loaded = Config::load(&path).unwrap();
    let api = loaded.config.api.unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&api.tokens[0].token),
        "file-token-0123456789"
    );
    assert!(
        loaded
            .inline_secrets
            .contains(&"api.tokens[1].token".to_owned())
    );
    assert!(
        !loaded
            .inline_secrets
            .contains(&"api.tokens[0].token".to_owned())
    );
    let (code, out, err) = crate::helpers::run_cli(&path, &["check-config"]).await;
    assert!(out.contains("api.tokens[1].token"), "{out}{err}");
    assert!(!out.contains("read-token-123456") && !err.contains("read-token-123456"));
    assert_eq!(code, 0, "{out}{err}");
    // A short token is refused by its key, never printed, with exit 2.
    std::fs::write(dir.path().join("erp.token"), "tiny-secret\n").unwrap();
    let (code, out, err) = crate::helpers::run_cli(&path, &["check-config"]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("api.tokens[0].token_file") && out.contains("at least 16"),
        "{out}"
    );
    assert!(!out.contains("tiny-secret") && !err.contains("tiny-secret"));
}

const SLOTTI: &str = r#"
[slotti]
booking_account = "huoltosim"
api_key = "slotti-key"
default_service = "Huoltokäynti 30 min"
"#;

#[test]
fn a_slotti_section_is_optional_and_checked_by_key() {
    check(&format!("{GOOD}{SLOTTI}"), &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, GOOD).unwrap();
    assert!(Config::load(&path).unwrap().config.slotti.is_none());
    std::fs::write(&path, format!("{GOOD}{SLOTTI}")).unwrap();
    let s = Config::load(&path).unwrap().config.slotti.unwrap();
    assert_eq!(
        (
            s.base_url.as_str(),
            s.horizon_days,
            s.lead_hours,
            s.auto_book
        ),
        ("https://slotti.fi/", 14, 24, false)
    );
    assert!(
        !format!("{s:?}").contains("slotti-key"),
        "the key never prints"
    );

    let bad = |extra: &str, section: &str| {
        format!(
            "{GOOD}{}{section}",
            SLOTTI.replace("[slotti]\n", &format!("[slotti]\n{extra}\n"))
        )
    };
    check(
        &bad("timezone = \"Europe/Helsinkii\"", ""),
        &["slotti.timezone"],
    );
    check(&bad("horizon_days = 0", ""), &["slotti.horizon_days"]);
    check(&bad("api_key_env = \"X\"", ""), &["slotti.api_key"]);
    check(&bad("reconcile = 5", ""), &["slotti.reconcile"]);
    check(&bad("colour = \"red\"", ""), &["slotti.colour"]);
    check(
        &bad("", "[slotti.messages]\nbooked = \"klo {kello}\"\n"),
        &["slotti.messages.booked"],
    );
    check(
        &bad("", "[[slotti.rules]]\naccount = \"nobody\"\n"),
        &["slotti.rules[0].account"],
    );
    check(
        &bad("", "[[slotti.rules]]\naccount = \"a\"\ntechnicians = [1]\n"),
        &["slotti.rules[0].technicians"],
    );
    // [slotti.webhook] path must not be the listener's.
    let listener = "[webhook]\nlisten = \"127.0.0.1:0\"\nhmac_secret = \"s\"\npath = \"/hooks\"\n";
    check(
        &format!(
            "{listener}{}",
            bad("", "[slotti.webhook]\npath = \"/hooks/\"\n")
        ),
        &["slotti.webhook.path"],
    );
    // Slotti's calls are metered as "slotti": no Tampuuri account may be called so.
    check(
        &format!("{GOOD}{SLOTTI}").replace("name = \"a\"", "name = \"slotti\""),
        &["accounts[0].name"],
    );
    check(&GOOD.replace("name = \"a\"", "name = \"slotti\""), &[]);
}

#[tokio::test]
async fn check_config_names_each_bad_slotti_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let text = format!(
        "{GOOD}{}[slotti.webhook]\nbasic_user = \"u\"\n",
        SLOTTI
            .replace("booking_account = \"huoltosim\"\n", "")
            .replace(
                "[slotti]\n",
                "[slotti]\nlead_hours = \"24\"\nbase_url = \"slotti.fi\"\n"
            )
    );
    std::fs::write(&path, text).unwrap();
    let (code, out, _) = crate::helpers::run_cli(&path, &["check-config"]).await;
    assert_eq!(code, 2, "{out}");
    for key in [
        "slotti.booking_account: missing",
        "slotti.lead_hours: must be an integer",
        "slotti.base_url:",
        "slotti.webhook.basic_user: give both",
    ] {
        assert!(out.contains(key), "{key}: {out}");
    }
    assert!(!out.contains("slotti-key"), "{out}");
}

/// `[board]`: off by default; `enabled` needs `[api] listen`; each `[[board.users]]` entry has a
/// name, an Argon2id PHC hash and a role, each problem named by key.
#[test]
fn the_board_section_is_read_with_defaults_and_its_errors_are_named_by_key() {
    let hash = huoltosync::faces::board::hash_password("Salasana-kaisa-1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let off = Config::from_table(GOOD.parse().unwrap(), &path)
        .unwrap()
        .config;
    assert!(!off.board.enabled && off.board.users.is_empty());
    let board = format!(
        "[board]\nenabled = true\npublic_url = \"https://huolto.example.fi/\"\n[[board.users]]\nname = \"kaisa\"\npassword_hash = \"{hash}\"\nrole = \"dispatcher\"\n[[board.users]]\nname = \"ville\"\npassword_hash = \"{hash}\"\nrole = \"viewer\"\n"
    );
    std::fs::write(&path, format!("{GOOD}{API}{board}")).unwrap();
    let b = Config::load(&path).unwrap().config.board;
    assert!(b.enabled && !b.insecure_cookies);
    assert_eq!(b.session_hours, 12);
    assert_eq!(b.public_url.as_deref(), Some("https://huolto.example.fi"));
    assert_eq!(b.users.len(), 2);
    assert_eq!(b.users[0].role, huoltosync::faces::board::Role::Dispatcher);
    assert_eq!(b.users[1].role, huoltosync::faces::board::Role::Viewer);
    assert!(
        !format!("{b:?}").contains(&hash),
        "the hash stays out of Debug"
    );
    check(&format!("{GOOD}{API}{board}"), &[]);
    // The board is served on the API's listener.
    check(&format!("{GOOD}{board}"), &["board.enabled"]);
    check(
        &format!("{GOOD}[api]\nfeed_retain_days = 7\n{board}"),
        &["board.enabled"],
    );
    check(
        &format!("{GOOD}{API}{board}").replace(&hash, "$2b$12$notanargon2hash"),
        &[
            "board.users[0].password_hash",
            "board.users[1].password_hash",
        ],
    );
    check(
        &format!("{GOOD}{API}{board}").replace("role = \"viewer\"", "role = \"admin\""),
        &["board.users[1].role"],
    );
    check(
        &format!("{GOOD}{API}{board}").replace("name = \"ville\"", "name = \"kaisa\""),
        &["board.users[1].name"],
    );
    check(
        &format!("{GOOD}{API}{board}").replace("name = \"ville\"\n", ""),
        &["board.users[1].name"],
    );
    check(
        &format!("{GOOD}{API}{board}").replace(
            "enabled = true",
            "enabled = true\nsession_hours = 0\nport = 1",
        ),
        &["board.session_hours", "board.port"],
    );
    check(
        &format!("{GOOD}{API}{board}").replace("https://huolto.example.fi/", "huolto"),
        &["board.public_url"],
    );
}

#[tokio::test]
async fn an_unreadable_file_secret_says_where_it_was_looked_for_and_about_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        GOOD.replace("api_key = \"k\"", "api_key_file = \"tampuuri-api-key\""),
    )
    .unwrap();
    let run = |creds: Option<&Path>| {
        let mut cmd = tokio::process::Command::new(crate::helpers::BIN);
        cmd.arg("--config").arg(&path).arg("check-config");
        match creds {
            Some(d) => cmd.env("CREDENTIALS_DIRECTORY", d),
            None => cmd.env_remove("CREDENTIALS_DIRECTORY"),
        };
        async move {
            let out = cmd.output().await.unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.code(), text)
        }
    };
    // Not set: beside the config file, and how systemd and a command by hand set it.
    let (code, text) = run(None).await;
    assert_eq!(code, Some(2), "{text}");
    let beside = dir.path().join("tampuuri-api-key");
    assert!(text.contains(&beside.display().to_string()), "{text}");
    assert!(
        text.contains("$CREDENTIALS_DIRECTORY, which is not set")
            && text.contains("LoadCredential=tampuuri-api-key")
            && text.contains("runuser -u huoltosync -- env CREDENTIALS_DIRECTORY="),
        "{text}"
    );
    // Set: in that folder, and the unit line that puts it there.
    let creds = tempfile::tempdir().unwrap();
    let (code, text) = run(Some(creds.path())).await;
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&creds.path().join("tampuuri-api-key").display().to_string())
            && text.contains(&format!("here {}", creds.path().display()))
            && text.contains(
                "LoadCredential=tampuuri-api-key:/etc/huoltosync/credentials/tampuuri-api-key"
            ),
        "{text}"
    );
}
