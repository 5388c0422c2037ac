//! The board's sign-in and pages under attack (issue 19): parallel guesses, a forged
//! `X-Forwarded-For`, login CSRF, typed names in the log, over-long attachment names and a
//! ticket's bidi and NUL characters. Loopback only; every attack is bounded.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{WRITE, api_toml, serve};
use crate::board::{PASSWORD, VIEWER_PASSWORD, board_env, board_toml, csrf, page, sign_in};
use crate::helpers::{Setup, TestEnv, wait_for};
use huoltosync::faces::board::auth::{ADDRESS_FAILURES, USER_FAILURES};

/// A browser without cookies or redirects, from `source` (a 127.0.0.x address).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// POSTs a sign-in form from `client` with extra `headers`; the status and the answer's headers.
async fn post_login(
    client: &reqwest::Client,
    root: &str,
    user: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap) {
    let mut r = client
        .post(format!("{root}/login"))
        .form(&[("username", user), ("password", password)]);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.headers().clone())
}

/// A board with `[board] extra` keys (after `enabled`), served in-process.
async fn board_env_with(extra: &str) -> (TestEnv, crate::api::Served, String) {
    let board = board_toml(true).replacen("[board]\n", &format!("[board]\n{extra}\n"), 1);
    let env = Setup::tickets(1)
        .sections(&format!("{}{board}", api_toml("")))
        .start()
        .await;
    env.sync_ok().await;
    let served = serve(&env).await;
    let root = served.base.trim_end_matches("/api/v1").to_owned();
    (env, served, root)
}

#[tokio::test]
async fn sixty_wrong_passwords_at_once_get_no_more_checks_than_the_limit() {
    let (_env, _served, root) = board_env(1, true).await;
    let client = client_from("127.0.0.2");
    let attempts = (0..60).map(|i| {
        let (client, root) = (client.clone(), root.clone());
        async move {
            let password = format!("wrong-guess-{i}");
            post_login(&client, &root, "kaisa", &password, &[]).await
        }
    });
    let answers = futures::future::join_all(attempts).await;
    let count = |s: u16| answers.iter().filter(|(status, _)| *status == s).count();
    assert!(count(401) <= USER_FAILURES, "{} checked (401)", count(401));
    assert_eq!(count(401) + count(429) + count(503), 60);
    for (status, headers) in &answers {
        if *status != 401 {
            assert!(
                headers.contains_key("retry-after"),
                "{status} without Retry-After"
            );
            assert!(!headers.contains_key("set-cookie"));
        }
    }
    // kaisa is locked now, even with her password; ville from the same address is not.
    let (s, _) = post_login(&client, &root, "kaisa", PASSWORD, &[]).await;
    assert_eq!(s, 429);
    let (s, _) = post_login(&client, &root, "ville", VIEWER_PASSWORD, &[]).await;
    assert_eq!(s, 303);
}

#[tokio::test]
async fn a_forged_x_forwarded_for_counts_only_from_a_trusted_proxy() {
    // No trusted proxy (the default): each guess names another forwarded address and another
    // user, and still the peer's address reaches its limit.
    let (_env, _served, root) = board_env(1, true).await;
    let client = client_from("127.0.0.3");
    let mut statuses = Vec::new();
    for i in 0..ADDRESS_FAILURES + 5 {
        let (name, fwd) = (format!("Salasana-typed-{i}"), format!("10.9.0.{}", i + 1));
        let (s, _) = post_login(
            &client,
            &root,
            &name,
            "wrong-guess",
            &[("x-forwarded-for", &fwd)],
        )
        .await;
        statuses.push(s);
    }
    assert!(
        statuses[..ADDRESS_FAILURES].iter().all(|s| *s == 401),
        "{statuses:?}"
    );
    assert!(
        statuses[ADDRESS_FAILURES..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );

    // 127.0.0.1 is a trusted proxy: its forwarded addresses count each for itself, and a peer
    // that is not one (127.0.0.4) is still counted by its own address.
    let (_env, _served, root) = board_env_with("trusted_proxies = [\"127.0.0.1\"]").await;
    let proxy = client_from("127.0.0.1");
    let other = client_from("127.0.0.4");
    let (mut through_proxy, mut direct) = (Vec::new(), Vec::new());
    for i in 0..ADDRESS_FAILURES + 5 {
        let (name, fwd) = (format!("nobody-{i}"), format!("10.9.1.{}", i + 1));
        let h = [("x-forwarded-for", fwd.as_str())];
        through_proxy.push(post_login(&proxy, &root, &name, "wrong-guess", &h).await.0);
        direct.push(post_login(&other, &root, &name, "wrong-guess", &h).await.0);
    }
    assert!(through_proxy.iter().all(|s| *s == 401), "{through_proxy:?}");
    assert!(
        direct[ADDRESS_FAILURES..].iter().all(|s| *s == 429),
        "{direct:?}"
    );
}

#[tokio::test]
async fn a_sign_in_posted_from_another_origin_is_refused_without_a_cookie() {
    let (_env, _served, root) = board_env(1, true).await;
    let client = client_from("127.0.0.5");
    let evil_referer = "https://evil.example/page";
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")][..],
        &[("referer", evil_referer)][..],
        &[("origin", "http://127.0.0.1:1")][..],
    ] {
        let (s, h) = post_login(&client, &root, "ville", VIEWER_PASSWORD, headers).await;
        assert_eq!(s, 403, "{headers:?}");
        assert!(!h.contains_key("set-cookie"), "{headers:?}");
    }
    // The board's own origin (the browser's sign-in), and the Referer of its own page.
    let (s, h) = post_login(
        &client,
        &root,
        "ville",
        VIEWER_PASSWORD,
        &[("origin", root.as_str())],
    )
    .await;
    assert_eq!(s, 303);
    assert!(h.contains_key("set-cookie"));
    let referer = format!("{root}/login?m=out");
    let (s, _) = post_login(
        &client,
        &root,
        "ville",
        VIEWER_PASSWORD,
        &[("referer", referer.as_str())],
    )
    .await;
    assert_eq!(s, 303);
    // The pages ask for a referrer within the origin only, so that a browser's own POST
    // carries its Origin (under `no-referrer` it would be `null`).
    let r = client.get(format!("{root}/login")).send().await.unwrap();
    assert_eq!(r.headers()["referrer-policy"], "same-origin");
}

#[tokio::test]
async fn a_failed_sign_in_logs_the_name_only_when_it_is_a_user() {
    let env = Setup::tickets(1)
        .sections(&format!("{}{}", api_toml(""), board_toml(true)))
        .start()
        .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(env.config_path(), text).unwrap();
    let daemon = env.daemon(&[]).await;
    let root = format!("http://127.0.0.1:{port}");
    let client = client_from("127.0.0.6");
    let mut up = false;
    for _ in 0..100 {
        if client.get(format!("{root}/login")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the board did not answer: {}", daemon.log());
    let typed = "Salasana-typed-kaisa-1";
    assert_eq!(post_login(&client, &root, typed, "x", &[]).await.0, 401);
    assert_eq!(post_login(&client, &root, "kaisa", "x", &[]).await.0, 401);
    let logged = wait_for(Duration::from_secs(10), || {
        daemon.log().matches("Board sign-in failed").count() >= 2
    })
    .await;
    let (_, log) = daemon.stop(Duration::from_secs(15)).await;
    assert!(logged, "no two failed sign-ins in the log: {log}");
    assert!(!log.contains(typed), "a typed name in the log: {log}");
    assert!(
        log.contains("user=kaisa") || log.contains("\"user\":\"kaisa\""),
        "{log}"
    );
}

/// A POST of a new ticket with one attachment named `name`: the status and the body.
async fn new_ticket_attaching(api: &crate::api::Served, name: &str) -> (u16, Value) {
    let body = json!({"account": "sim-1", "title": "Jatkotyö", "description": "Kuva liitteenä",
        "cost_centre_id": 1, "attachments": [{"file_name": name, "content_base64": "a3V2YQ=="}]});
    let r = api
        .http
        .post(format!("{}/tickets", api.base))
        .bearer_auth(WRITE)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_attachment_name_over_255_bytes_is_refused_by_the_api_the_cli_and_the_board() {
    let (env, api, root) = board_env(1, true).await;
    let long = format!("{}.jpg", "kuva".repeat(250));
    let (s, b) = new_ticket_attaching(&api, &long).await;
    let detail = b["detail"].as_str().unwrap_or_default().to_owned();
    assert_eq!(s, 422, "{b}");
    assert!(detail.contains("255") && detail.len() < 400, "{detail}");
    // Path parts are stripped before the name is measured: 255 bytes of name pass.
    let just = format!("../../{}x.jpg", "ä".repeat(125));
    assert_eq!(just.len() - "../../".len(), 255);
    let (s, b) = new_ticket_attaching(&api, &just).await;
    assert_eq!(s, 202, "{b}");
    let sent: String = env
        .db()
        .query_row("SELECT file_name FROM outbox_attachments", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sent, &just["../../".len()..]);

    // `task new --attach`: bad usage, exit 2, and nothing queued.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{}.jpg", "a".repeat(300)));
    let (code, _, err) = env
        .cli(&[
            "task",
            "new",
            "--title",
            "T",
            "--description",
            "D",
            "--cost-centre",
            "1",
            "--attach",
            path.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("255"), "{err}");

    // The board's follow-up form, on a ticket that takes one.
    let fields = json!({"Otsikko": "Ikkuna rikki"});
    let id = env
        .sim()
        .insert("sim-1", fields.as_object().unwrap())
        .unwrap();
    env.sync_ok().await;
    let url = format!("{root}/tickets/sim-1/{id}");
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let (_, html) = page(&b, &url).await;
    let photo = reqwest::multipart::Part::bytes(b"kuva".to_vec())
        .file_name(long.clone())
        .mime_str("image/jpeg")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf(&html))
        .text("title", "Lasi vaihdettava")
        .text("description", "Ikkunalasi on haljennut")
        .part("photos", photo);
    let r = b
        .post(format!("{url}/followup"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("255"));
    assert_eq!(
        env.count("SELECT count(*) FROM outbox"),
        1,
        "only the 255-byte one"
    );
}

#[tokio::test]
async fn a_tickets_bidi_override_and_nul_reach_no_page_raw() {
    let (env, _api, root) = board_env(0, true).await;
    let fields = json!({"Otsikko": "Lasku\u{202e}gpj.exe\u{0} rikki",
        "TyotehtavanKuvaus": "rivi 1\nrivi 2 x\u{202e}y"});
    let id = env
        .sim()
        .insert("sim-1", fields.as_object().unwrap())
        .unwrap();
    env.sync_ok().await;
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    for path in [
        "/".to_owned(),
        format!("/tickets/sim-1/{id}"),
        format!("/fragments/row/sim-1/{id}"),
    ] {
        let (s, html) = page(&b, &format!("{root}{path}")).await;
        assert_eq!(s, 200, "{path}");
        assert!(
            !html.contains('\u{202e}') && !html.contains('\u{0}'),
            "{path}: raw"
        );
        let lower = html.to_ascii_lowercase();
        for reference in ["&#x202e;", "&#8238;", "&#0;", "&#x0;", "&#x00;"] {
            assert!(!lower.contains(reference), "{path}: {reference}");
        }
        assert!(
            html.contains("Lasku\\u{202e}gpj.exe\\x00 rikki"),
            "{path}: {html}"
        );
    }
    // A description keeps its lines.
    let (_, html) = page(&b, &format!("{root}/tickets/sim-1/{id}")).await;
    assert!(html.contains("rivi 1\nrivi 2 x\\u{202e}y"), "{html}");
}

#[tokio::test]
async fn trusted_proxies_that_are_not_addresses_are_refused_by_key_with_exit_2() {
    let env = Setup::tickets(0)
        .sections(&format!("{}{}", api_toml(""), board_toml(true)))
        .start()
        .await;
    let good = std::fs::read_to_string(env.config_path()).unwrap();
    for (value, named) in [
        (
            "[\"127.0.0.1\", \"proxy.local\"]",
            "\"proxy.local\" is not an IP address",
        ),
        ("\"127.0.0.1\"", "must be a list of IP addresses"),
        ("[1]", "1 is not a string"),
    ] {
        let text = good.replacen(
            "[board]\n",
            &format!("[board]\ntrusted_proxies = {value}\n"),
            1,
        );
        std::fs::write(env.config_path(), text).unwrap();
        let (code, out, err) = env.cli(&["check-config"]).await;
        assert_eq!(code, 2, "{value}: {out}{err}");
        assert!(
            (out.clone() + &err).contains("board.trusted_proxies")
                && (out.clone() + &err).contains(named),
            "{value}: {out}{err}"
        );
    }
    let text = good.replacen(
        "[board]\n",
        "[board]\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]\n",
        1,
    );
    std::fs::write(env.config_path(), text).unwrap();
    let (code, out, err) = env.cli(&["check-config"]).await;
    assert_eq!(code, 0, "{out}{err}");
}
