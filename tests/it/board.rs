//! The dispatcher's web board (`src/faces/board/`): `board passwd` and `board login-link`, sign-in by
//! password and by link (cookie flags, rate limit, one use, expiry), CSRF and roles on every
//! form, actions queued through the outbox as the CLI queues them, Finnish and English pages,
//! and the live event stream.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

pub(crate) const PASSWORD: &str = "Salasana-kaisa-1";

/// Runs `huoltosync board passwd ARGS` with `stdin` piped in: exit code, stdout, stderr.
async fn passwd(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(crate::helpers::BIN)
        .args(["board", "passwd"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn board_passwd_prints_only_a_users_entry_that_verifies() {
    let (code, out, err) = passwd(
        &["kaisa", "--role", "dispatcher"],
        &format!("{PASSWORD}\n{PASSWORD}\n"),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
    let t: toml::Table = out.parse().expect("stdout is TOML");
    let user = &t["board"]["users"][0];
    assert_eq!(user["name"].as_str(), Some("kaisa"));
    assert_eq!(user["role"].as_str(), Some("dispatcher"));
    let hash = user["password_hash"].as_str().unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(huoltosync::faces::board::verify_password(PASSWORD, hash));
    assert!(!huoltosync::faces::board::verify_password(
        "Salasana-kaisa-2",
        hash
    ));
    // Hints go to stderr.
    assert!(err.contains("config"), "{err}");
}

#[tokio::test]
async fn board_passwd_refuses_a_mismatch_an_empty_or_short_password_and_a_bad_role() {
    for (args, input) in [
        (&["kaisa"][..], format!("{PASSWORD}\n{PASSWORD}x\n")),
        (&["kaisa"][..], "\n\n".to_owned()),
        (&["kaisa"][..], String::new()),
        (&["kaisa"][..], "lyhyt\nlyhyt\n".to_owned()),
        (
            &["kaisa", "--role", "admin"][..],
            format!("{PASSWORD}\n{PASSWORD}\n"),
        ),
    ] {
        let (code, out, err) = passwd(args, &input).await;
        assert_eq!(code, 2, "{args:?} {input:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert!(err.starts_with("error: "), "{err}");
    }
}

// ---- the web board ---------------------------------------------------------------------------

use std::time::Duration;

use huoltosync::store::Store;
use serde_json::json;

use crate::api::{Served, WRITE, api_toml, serve};
use crate::helpers::{Setup, TestEnv};

pub(crate) const VIEWER_PASSWORD: &str = "Salasana-ville-1";

/// `[board]` with kaisa (dispatcher) and ville (viewer).
pub(crate) fn board_toml(insecure: bool) -> String {
    let kaisa = huoltosync::faces::board::hash_password(PASSWORD).unwrap();
    let ville = huoltosync::faces::board::hash_password(VIEWER_PASSWORD).unwrap();
    format!(
        "[board]\nenabled = true\ninsecure_cookies = {insecure}\n[[board.users]]\nname = \"kaisa\"\npassword_hash = \"{kaisa}\"\nrole = \"dispatcher\"\n[[board.users]]\nname = \"ville\"\npassword_hash = \"{ville}\"\nrole = \"viewer\"\n"
    )
}

/// A synced mirror of `tickets` tickets with the board served in-process.
pub(crate) async fn board_env(tickets: u64, insecure: bool) -> (TestEnv, Served, String) {
    let env = Setup::tickets(tickets)
        .sections(&format!("{}{}", api_toml(""), board_toml(insecure)))
        .start()
        .await;
    env.sync_ok().await;
    let served = serve(&env).await;
    let root = served.base.trim_end_matches("/api/v1").to_owned();
    (env, served, root)
}

/// A browser: a cookie store, no redirects followed (the tests look at them).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub(crate) async fn sign_in(root: &str, user: &str, password: &str) -> reqwest::Client {
    let b = browser();
    let r = b
        .post(format!("{root}/login"))
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    b
}

pub(crate) async fn page(b: &reqwest::Client, url: &str) -> (u16, String) {
    let r = b.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The text of a page as a reader sees it (the entities the templates write, undone).
pub(crate) fn text(html: &str) -> String {
    html.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of the first hidden `csrf` field of a page.
pub(crate) fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..][..html[at..].find('"').unwrap()].to_owned()
}

/// A new ticket in the simulator (state Avoin), mirrored; its id.
async fn new_ticket(env: &TestEnv, title: &str) -> i64 {
    let id = env
        .sim()
        .insert("sim-1", json!({"Otsikko": title}).as_object().unwrap())
        .unwrap();
    env.sync_ok().await;
    id
}

pub(crate) fn outbox_rows(env: &TestEnv) -> Vec<(String, Option<String>)> {
    let db = env.db();
    let mut st = db
        .prepare("SELECT kind, requested_by FROM outbox ORDER BY id")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn first_title(env: &TestEnv) -> String {
    env.db()
        .query_row(
            "SELECT title FROM tickets WHERE open = 1 ORDER BY account, id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn without_a_session_every_page_sends_to_sign_in_and_the_api_keeps_its_tokens() {
    let (env, _served, root) = board_env(3, true).await;
    let b = browser();
    for path in ["/", "/tickets/sim-1/1", "/outbox", "/status", "/events"] {
        let r = b.get(format!("{root}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/login", "{path}");
    }
    let (s, login) = page(&b, &format!("{root}/login")).await;
    assert_eq!(s, 200);
    assert!(login.contains("name=\"username\"") && login.contains("name=\"password\""));
    assert!(!login.contains(&first_title(&env)));
    // A form without a session: refused, nothing queued.
    let r = b
        .post(format!("{root}/tickets/sim-1/1/accept"))
        .form(&[("comment", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(outbox_rows(&env).is_empty());
    // The API under /api/v1 still wants its bearer token, and only that.
    let r = b
        .get(format!("{root}/api/v1/tickets"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = b
        .get(format!("{root}/api/v1/tickets"))
        .bearer_auth(WRITE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn password_sign_in_sets_a_safe_cookie_and_a_wrong_password_gets_none() {
    let (env, _served, root) = board_env(3, false).await;
    let title = first_title(&env);
    let b = browser();
    let r = b
        .post(format!("{root}/login"))
        .form(&[("username", "kaisa"), ("password", "väärä-salasana")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let body = r.text().await.unwrap();
    assert!(!body.contains(&title));
    assert!(
        text(&body).contains("Käyttäjätunnus tai salasana on väärä"),
        "{body}"
    );
    // An unknown user reads the same.
    let r = b
        .post(format!("{root}/login"))
        .form(&[("username", "nobody"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = b
        .post(format!("{root}/login"))
        .form(&[("username", "kaisa"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains(PASSWORD));
    // Over plain HTTP with insecure_cookies, no Secure (else the browser would drop it).
    let (_env2, _served2, root2) = board_env(1, true).await;
    let r = browser()
        .post(format!("{root2}/login"))
        .form(&[("username", "kaisa"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && !cookie.contains("Secure"),
        "{cookie}"
    );
}

#[tokio::test]
async fn a_signed_in_board_shows_the_open_tickets_and_is_never_cached() {
    let (env, _served, root) = board_env(4, true).await;
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let r = b.get(format!("{root}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    let titles: Vec<String> = {
        let db = env.db();
        let mut st = db
            .prepare("SELECT title FROM tickets WHERE open = 1")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(titles.len(), 4);
    for t in &titles {
        assert!(text(&html).contains(t.as_str()), "{t} not on the board");
    }
    assert!(html.contains("<main") && html.contains("<th scope=\"col\">"));
    assert!(html.contains("lang=\"fi\"") && html.contains("Avoimet tehtävät"));
    // The search narrows the board.
    let (_, one) = page(&b, &format!("{root}/?q={}", titles[0])).await;
    assert!(text(&one).contains(titles[0].as_str()));
    let (_, none) = page(&b, &format!("{root}/?q=ei-tällaista-tekstiä")).await;
    assert!(!text(&none).contains(titles[0].as_str()));
    for p in [
        "/outbox",
        "/status",
        "/static/board.css",
        "/static/board.js",
    ] {
        let (s, _) = page(&b, &format!("{root}{p}")).await;
        assert_eq!(s, 200, "{p}");
    }
    // Sign-out (with the form's token) ends the session: the board sends to sign-in again.
    let r = b
        .post(format!("{root}/logout"))
        .form(&[("csrf", csrf(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?m=out");
    let (_, login) = page(&b, &format!("{root}/login?m=out")).await;
    assert!(text(&login).contains("Olet kirjautunut ulos"));
    let r = b.get(format!("{root}/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(env.count("SELECT count(*) FROM board_sessions"), 0);
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_user_and_per_address() {
    let (_env, _served, root) = board_env(1, true).await;
    let b = browser();
    let attempt = |user: &'static str, password: &'static str| {
        let b = b.clone();
        let root = root.clone();
        async move {
            b.post(format!("{root}/login"))
                .form(&[("username", user), ("password", password)])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for _ in 0..huoltosync::faces::board::auth::USER_FAILURES {
        assert_eq!(attempt("kaisa", "väärä-salasana").await, 401);
    }
    // kaisa is locked for the window, even with her password; ville is not.
    assert_eq!(attempt("kaisa", PASSWORD).await, 429);
    assert_eq!(attempt("ville", VIEWER_PASSWORD).await, 303);
    // The address: failures under any names add up.
    let names = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o",
    ];
    let mut statuses = Vec::new();
    for n in names {
        statuses.push(attempt(n, "väärä-salasana").await);
    }
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(
        huoltosync::faces::board::auth::USER_FAILURES + names.len(),
        huoltosync::faces::board::auth::ADDRESS_FAILURES
    );
    assert_eq!(attempt("ville", VIEWER_PASSWORD).await, 429);
}

#[tokio::test]
async fn a_login_link_signs_in_once_and_expires_after_five_minutes() {
    let (env, _served, root) = board_env(2, true).await;
    let title = first_title(&env);
    let (code, out, err) = env.cli(&["board", "login-link", "--user", "kaisa"]).await;
    assert_eq!(code, 0, "{err}");
    let url = out.trim().to_owned();
    assert_eq!(out.lines().count(), 1, "stdout is the URL only: {out}");
    // The link names the [api] listen address of the config; the test serves on another port.
    let path = &url[url.find("/login/").expect("a login link")..];
    let b = browser();
    let r = b.get(format!("{root}{path}")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let (s, html) = page(&b, &format!("{root}/")).await;
    assert_eq!(s, 200);
    assert!(text(&html).contains(&title));
    // A second open: the sign-in page, with why.
    let other = browser();
    let r = other.get(format!("{root}{path}")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("jo käytetty"));
    let r = other.get(format!("{root}/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    // A link made six minutes ago has expired.
    let token = {
        let mut store = Store::open(&env.config.store.path).unwrap();
        let then = chrono::Utc::now() - chrono::Duration::minutes(6);
        huoltosync::faces::board::create_login_link(&mut store, "kaisa", then).unwrap()
    };
    let r = other
        .get(format!("{root}/login/{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("vanhentunut"));
    // Without --user: the first dispatcher.
    let (code, out, err) = env.cli(&["board", "login-link"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("/login/") && err.contains("kaisa"),
        "{out} {err}"
    );
    let (code, _, err) = env.cli(&["board", "login-link", "--user", "nobody"]).await;
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn a_form_without_its_csrf_token_or_from_a_viewer_is_refused_and_queues_nothing() {
    let (env, _served, root) = board_env(1, true).await;
    let id = new_ticket(&env, "Ovikello rikki").await;
    let url = format!("{root}/tickets/sim-1/{id}");
    let kaisa = sign_in(&root, "kaisa", PASSWORD).await;
    let (_, html) = page(&kaisa, &url).await;
    let token = csrf(&html);
    for form in [
        vec![("comment", "x".to_owned())],
        vec![("comment", "x".to_owned()), ("csrf", "wrong".to_owned())],
        vec![("comment", "x".to_owned()), ("csrf", String::new())],
    ] {
        let r = kaisa
            .post(format!("{url}/accept"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{form:?}");
    }
    // The follow-up form too (multipart).
    let r = kaisa
        .post(format!("{url}/followup"))
        .multipart(
            reqwest::multipart::Form::new()
                .text("title", "Jatko")
                .text("description", "x"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A viewer with her own valid token.
    let ville = sign_in(&root, "ville", VIEWER_PASSWORD).await;
    let (_, html) = page(&ville, &url).await;
    assert!(
        !html.contains("id=\"form-accept\""),
        "a viewer sees no action form"
    );
    let r = ville
        .post(format!("{url}/accept"))
        .form(&[("csrf", csrf(&html)), ("comment", "x".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = ville
        .post(format!("{root}/outbox/1/cancel"))
        .form(&[("csrf", csrf(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Sign-out needs the token as well.
    let r = kaisa.post(format!("{root}/logout")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(outbox_rows(&env).is_empty());
    assert!(env.count("SELECT count(*) FROM outbox") == 0);
    let _ = token;
}

#[tokio::test]
async fn accept_and_hold_through_the_forms_queue_one_row_each_as_the_board_user() {
    let (env, _served, root) = board_env(1, true).await;
    let id = new_ticket(&env, "Patteri kylmä").await;
    let url = format!("{root}/tickets/sim-1/{id}");
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let (_, html) = page(&b, &url).await;
    assert!(html.contains("id=\"form-accept\"") && !html.contains("id=\"form-hold\""));
    let r = b
        .post(format!("{url}/accept"))
        .form(&[("csrf", csrf(&html)), ("comment", "Tulossa".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        to.starts_with(&format!("/tickets/sim-1/{id}?queued=")),
        "{to}"
    );
    let (_, html) = page(&b, &format!("{root}{to}")).await;
    assert!(
        text(&html).contains("Toimenpide lisättiin lähtevien jonoon"),
        "{html}"
    );
    // Accepted (pending): now the hold form is there, with the preview.
    assert!(html.contains("id=\"form-hold\"") && html.contains("id=\"hold-preview\""));
    let r = b
        .post(format!("{url}/hold"))
        .form(&[
            ("csrf", csrf(&html)),
            ("reason", "Odotetaan varaosaa".into()),
            ("notify", "1".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        outbox_rows(&env),
        vec![
            ("accept".to_owned(), Some("board:kaisa".to_owned())),
            ("hold".to_owned(), Some("board:kaisa".to_owned())),
        ]
    );
    // The board shows the pending state; the outbox page lists both.
    let (_, board) = page(&b, &format!("{root}/")).await;
    assert!(
        board.contains("class=\"pending\"") && board.contains("Odottaa"),
        "{board}"
    );
    let (_, outbox) = page(&b, &format!("{root}/outbox")).await;
    assert!(outbox.contains("taulu: kaisa") && outbox.contains("Odotukseen"));
    // The action reaches Tampuuri with the next push, as any queued action.
    env.push().await;
    assert_eq!(env.sim().ticket("sim-1", id).unwrap().tila, "Odottaa");
}

#[tokio::test]
async fn a_refused_action_shows_the_clis_message_and_queues_nothing() {
    let (env, _served, root) = board_env(1, true).await;
    let id = new_ticket(&env, "Hana vuotaa").await;
    let url = format!("{root}/tickets/sim-1/{id}");
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let (_, html) = page(&b, &url).await;
    // Hold of an Avoin ticket: the workflow refuses it, as for `huoltosync task hold`.
    let r = b
        .post(format!("{url}/hold"))
        .form(&[("csrf", csrf(&html)), ("reason", "Varaosa".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let shown = text(&r.text().await.unwrap());
    let (code, _, err) = env
        .cli(&["task", "hold", &id.to_string(), "--reason", "Varaosa"])
        .await;
    assert_ne!(code, 0);
    let cli = err
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .expect("the CLI's error line");
    assert!(shown.contains(cli), "board: {shown}\ncli: {cli}");
    assert!(shown.contains("Toimenpidettä ei lisätty"));
    assert_eq!(env.count("SELECT count(*) FROM outbox"), 0);
}

#[tokio::test]
async fn english_when_the_browser_prefers_it_and_finnish_dates_by_default() {
    let (env, _served, root) = board_env(1, true).await;
    let id = new_ticket(&env, "Lamppu").await;
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let r = b
        .get(format!("{root}/"))
        .header("accept-language", "en-GB,en;q=0.9,fi;q=0.5")
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(
        html.contains("lang=\"en\"") && html.contains("Open tickets"),
        "{html}"
    );
    assert!(!html.contains("Avoimet tehtävät"));
    let (_, fi) = page(&b, &format!("{root}/tickets/sim-1/{id}")).await;
    assert!(fi.contains("Historia") && fi.contains("Vastaanota"));
    // `ti 7.4. klo 9.00`: weekday, day.month., klo hour.minutes (Helsinki).
    let re_fi = regex_like_finnish_time(&fi);
    assert!(re_fi, "no Finnish time on the ticket page: {fi}");
    let en = b
        .get(format!("{root}/tickets/sim-1/{id}"))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(en.contains("History") && en.contains("Accept") && !en.contains(" klo "));
}

/// Whether `html` holds a time like `ti 7.4. klo 9.00`.
fn regex_like_finnish_time(html: &str) -> bool {
    html.match_indices(" klo ").any(|(i, _)| {
        let before = &html[..i];
        let after = &html[i + 5..];
        let date = before.rsplit(' ').next().unwrap_or("");
        let weekday = before[..before.len() - date.len()].trim_end();
        let weekday = weekday.rsplit([' ', '>']).next().unwrap_or("");
        let parts: Vec<&str> = date.split('.').collect();
        let time: String = after
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        ["ma", "ti", "ke", "to", "pe", "la", "su"].contains(&weekday)
            && parts.len() == 3
            && parts[2].is_empty()
            && parts[..2]
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            && time
                .split_once('.')
                .is_some_and(|(h, m)| (1..=2).contains(&h.len()) && m.len() == 2)
    })
}

#[tokio::test]
async fn the_event_stream_delivers_a_new_tickets_event_and_its_row() {
    let (env, _served, root) = board_env(2, true).await;
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let (_, html) = page(&b, &format!("{root}/")).await;
    let at = html.find("data-seq=\"").unwrap() + 10;
    let seq: i64 = html[at..][..html[at..].find('"').unwrap()].parse().unwrap();
    let mut events = b
        .get(format!("{root}/events?after={seq}"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let id = new_ticket(&env, "Uusi vuoto").await;
    let mut got = String::new();
    let wanted = format!("\"ticket_id\":{id}");
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = events.chunk().await.unwrap() {
            got.push_str(&String::from_utf8_lossy(&chunk));
            if got
                .lines()
                .any(|l| l.contains("\"ticket.new\"") && l.contains(&wanted))
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{got}");
    // The row the script inserts.
    let (s, row) = page(&b, &format!("{root}/fragments/row/sim-1/{id}")).await;
    assert_eq!(s, 200);
    assert!(row.contains("Uusi vuoto") && row.contains(&format!("id=\"t-sim-1-{id}\"")));
    // Left out by the filters: no row.
    let (s, _) = page(&b, &format!("{root}/fragments/row/sim-1/{id}?q=ei-tätä")).await;
    assert_eq!(s, 204);
}

#[tokio::test]
async fn a_follow_up_with_photos_and_outbox_cancel_go_through_the_queue() {
    let (env, _served, root) = board_env(1, true).await;
    let id = new_ticket(&env, "Ikkuna rikki").await;
    let url = format!("{root}/tickets/sim-1/{id}");
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let (_, html) = page(&b, &url).await;
    assert!(html.contains("accept=\"image/*\" capture"));
    let photo = reqwest::multipart::Part::bytes(b"\x89PNG\r\n\x1a\nkuva".to_vec())
        .file_name("ikkuna.png")
        .mime_str("image/png")
        .unwrap();
    let r = b
        .post(format!("{url}/followup"))
        .multipart(
            reqwest::multipart::Form::new()
                .text("csrf", csrf(&html))
                .text("title", "Lasi vaihdettava")
                .text("description", "Ikkunalasi on haljennut")
                .part("photos", photo),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let (kind, by, attachments): (String, String, i64) = env
        .db()
        .query_row(
            "SELECT kind, requested_by, (SELECT count(*) FROM outbox_attachments) FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (kind.as_str(), by.as_str(), attachments),
        ("create", "board:kaisa", 1)
    );
    // The outbox page lists it; retry of a pending action is refused with the CLI's words,
    // cancel drops it.
    let (_, outbox) = page(&b, &format!("{root}/outbox")).await;
    assert!(outbox.contains("Uusi tehtävä") && outbox.contains("id=\"cancel-1\""));
    let r = b
        .post(format!("{root}/outbox/1/retry"))
        .form(&[("csrf", csrf(&outbox))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let shown = text(&r.text().await.unwrap());
    let (_, _, err) = env.cli(&["outbox", "retry", "1"]).await;
    let cli = err
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .expect("the CLI's error line");
    assert!(shown.contains(cli), "board: {shown}\ncli: {cli}");
    let r = b
        .post(format!("{root}/outbox/1/cancel"))
        .form(&[("csrf", csrf(&outbox))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE status = 'cancelled'"),
        1
    );
    let (_, outbox) = page(&b, &format!("{root}/outbox")).await;
    assert!(outbox.contains("id=\"outbox-empty\""));
}

#[tokio::test]
async fn the_status_page_shows_what_status_judges() {
    let (env, _served, root) = board_env(2, true).await;
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let (s, html) = page(&b, &format!("{root}/status")).await;
    assert_eq!(s, 200);
    let (code, _, _) = env.cli(&["status"]).await;
    assert_eq!(code, 0, "synced just now: healthy");
    assert!(html.contains("id=\"verdict\" class=\"verdict ok\"") && html.contains("Kunnossa"));
    assert!(html.contains("id=\"account-sim-1\""));
    // Past the staleness threshold without a sync: the same verdict as `huoltosync status`.
    env.db()
        .execute(
            "UPDATE sync_runs SET started_at = '2020-01-01T00:00:00.000Z', finished_at = '2020-01-01T00:00:01.000Z'",
            [],
        )
        .unwrap();
    let (code, _, _) = env.cli(&["status"]).await;
    assert_eq!(code, 1);
    let (_, html) = page(&b, &format!("{root}/status")).await;
    assert!(
        html.contains("verdict bad") && html.contains("sitten, yli rajan 45 min"),
        "{html}"
    );
}

#[tokio::test]
async fn live_boards_are_bounded() {
    let (_env, _served, root) = board_env(1, true).await;
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let mut open = Vec::new();
    for _ in 0..huoltosync::faces::board::MAX_STREAMS {
        let r = b.get(format!("{root}/events")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let r = b.get(format!("{root}/events")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    // Pages are still served.
    let (s, _) = page(&b, &format!("{root}/")).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn board_passwd_without_a_role_makes_a_viewer_as_an_entry_without_role_is() {
    let (code, out, err) = passwd(&["ville"], &format!("{PASSWORD}\n{PASSWORD}\n")).await;
    assert_eq!(code, 0, "{err}");
    let t: toml::Table = out.parse().expect("stdout is TOML");
    assert_eq!(t["board"]["users"][0]["role"].as_str(), Some("viewer"));
    // The example config says the same of its commented entry.
    let example = include_str!("../../config.example.toml");
    assert!(
        example.contains("\"viewer\" (read\n# only; the default)"),
        "config.example.toml no longer says viewer is the default role"
    );
}
