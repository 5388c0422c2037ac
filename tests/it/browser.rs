//! The board in a real browser: headless Chromium driven over WebDriver (`fantoccini` and
//! `chromedriver` on a loopback port) against the board served in-process. One browser session
//! walks the whole scenario: password sign-in, the board, accept and hold through the forms
//! (pending state on the page, one outbox row each in the user's name), a ticket created in the
//! simulator appearing without a reload (server-sent events), a form without its CSRF token
//! refused, sign-out, a viewer signed in by a login link who sees no forms and whose POST is
//! refused, and on every page a label for every form control and no horizontal scroll at 360 px.
//!
//! The tests need Chromium and chromedriver (Debian: `apt-get install chromium chromium-driver`;
//! `.ci/run` installs them). Without them the browser tests pass without running and print one
//! line saying how to run them, so `cargo test --release --workspace` needs no browser; with
//! `HUOLTOSYNC_BROWSER_TESTS=required` (as `.ci/run` sets it) a missing browser fails them.
//!
//! `browser::screenshots` (ignored by default) writes the README's screenshots:
//! `SCREENSHOTS=docs/screenshots cargo test --release -p huoltosync-it browser::screenshots -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::api::{Served, WRITE, api_toml, serve};
use crate::helpers::{Setup, TestEnv};

const PASSWORD: &str = "Salasana-kaisa-1";
const VIEWER_PASSWORD: &str = "Salasana-ville-1";

/// The longest any wait in these tests lasts (a page, an element, chromedriver's start).
const WAIT: Duration = Duration::from_secs(10);

/// Desktop and phone viewports (CSS pixels).
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (360, 780);

/// `program` on the `PATH`, if there.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The variable that makes a missing browser a failure instead of a skip.
const REQUIRED_VAR: &str = "HUOLTOSYNC_BROWSER_TESTS";

/// What is missing to run the browser tests here (chromedriver, Chromium), if anything.
fn missing_browser() -> Option<&'static str> {
    if which("chromedriver").is_none() {
        return Some("chromedriver");
    }
    CHROMIUMS
        .into_iter()
        .find_map(which)
        .is_none()
        .then_some("Chromium")
}

/// The browsers tried, in order.
const CHROMIUMS: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// Whether the browser tests run here: yes when chromedriver and Chromium are installed. Else
/// one line on the terminal (past the test harness's capture) saying how to run them, and no;
/// with `HUOLTOSYNC_BROWSER_TESTS=required` a missing browser is a failure instead.
fn browser_tests_run(test: &str) -> bool {
    let Some(missing) = missing_browser() else {
        return true;
    };
    let how = "the browser tests need Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)";
    if std::env::var(REQUIRED_VAR).is_ok_and(|v| v == "required") {
        panic!("{missing} is not installed, and {REQUIRED_VAR}=required: {how}");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "browser::{test} skipped: {missing} is not installed; {how}, then run them with {REQUIRED_VAR}=required cargo test --release -p huoltosync-it browser::"
    );
    false
}

/// chromedriver on a loopback port, in a process group of its own: dropping it kills the group,
/// so the Chromium it started goes too, whatever became of the test.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(dir: &Path) -> Driver {
        let Some(bin) = which("chromedriver") else {
            panic!(
                "chromedriver is not installed: the browser tests need Chromium and its WebDriver \
                 (Debian: apt-get install chromium chromium-driver)"
            );
        };
        let port = free_port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(bin)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("chromedriver starts")
        };
        let mut driver = Driver { child, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!(
                    "chromedriver exited ({status}): {}",
                    std::fs::read_to_string(dir.join("chromedriver.log")).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < WAIT,
                "chromedriver did not listen on port {port} within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: a plain kill(2) of the process group this test started (chromedriver's own id).
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// A headless Chromium session (Finnish preferred, as the office's browsers) over chromedriver.
struct Browser {
    c: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let driver = Driver::start(profile.path());
        let chromium = CHROMIUMS
            .into_iter()
            .find_map(which)
            .expect("chromium is not installed (Debian: apt-get install chromium chromium-driver)");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--no-first-run", "--hide-scrollbars",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    format!("--user-data-dir={}", profile.path().join("chromium").display()),
                    "--lang=fi-FI",
                ],
                "prefs": { "intl.accept_languages": "fi-FI,fi" },
            }
        });
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps.as_object().unwrap().clone());
        let c = tokio::time::timeout(
            Duration::from_secs(30),
            builder.connect(&format!("http://127.0.0.1:{}", driver.port)),
        )
        .await
        .expect("chromedriver opened no Chromium session within 30 s")
        .expect("chromedriver opens a Chromium session");
        Browser {
            c,
            _driver: driver,
            _profile: profile,
        }
    }

    async fn close(self) {
        let _ = self.c.close().await;
    }

    async fn goto(&self, url: &str) {
        self.c.goto(url).await.unwrap();
    }

    async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_owned()
    }

    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.c
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The HTTP status of the page now shown.
    async fn status(&self) -> u64 {
        self.js(
            "return performance.getEntriesByType('navigation')[0].responseStatus;",
            vec![],
        )
        .await
        .as_u64()
        .unwrap()
    }

    /// The element with `id`, waiting for it at most [`WAIT`].
    async fn el(&self, id: &str) -> fantoccini::elements::Element {
        match self
            .c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id(id))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!("no #{id} on {} within {WAIT:?}: {e}", self.path().await),
        }
    }

    async fn has(&self, id: &str) -> bool {
        !self.c.find_all(Locator::Id(id)).await.unwrap().is_empty()
    }

    async fn text(&self, id: &str) -> String {
        self.el(id).await.text().await.unwrap()
    }

    async fn fill(&self, id: &str, value: &str) {
        let e = self.el(id).await;
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    /// Clicks the button `id` and waits for the page it leads to (a path unlike `from`'s
    /// document: a new document is loaded once the old one's marker is gone).
    async fn submit(&self, id: &str) {
        self.js("window.__old_page = true;", vec![]).await;
        self.el(id).await.click().await.unwrap();
        self.wait_new_page().await;
    }

    async fn wait_new_page(&self) {
        let started = Instant::now();
        loop {
            let v = self
                .c
                .execute(
                    "return window.__old_page === true ? 'old' : document.readyState;",
                    vec![],
                )
                .await;
            if matches!(v, Ok(Value::String(s)) if s == "complete") {
                return;
            }
            assert!(started.elapsed() < WAIT, "no new page within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sets the viewport (not the window) to `w`×`h` CSS pixels.
    async fn viewport(&self, (w, h): (u32, u32)) {
        self.c.set_window_size(w, h).await.unwrap();
        let inner = self
            .js("return [window.innerWidth, window.innerHeight];", vec![])
            .await;
        let (iw, ih) = (
            inner[0].as_u64().unwrap() as u32,
            inner[1].as_u64().unwrap() as u32,
        );
        if (iw, ih) != (w, h) {
            self.c
                .set_window_size(w + w.saturating_sub(iw), h + h.saturating_sub(ih))
                .await
                .unwrap();
        }
        let inner = self.js("return window.innerWidth;", vec![]).await;
        assert_eq!(
            inner.as_u64(),
            Some(w as u64),
            "the viewport is not {w} px wide"
        );
    }

    /// The accessibility checks of the page shown: every form control has a label (its own
    /// `<label>`, `aria-label` or `aria-labelledby`) and every button a name; at 360 px the
    /// page needs no horizontal scroll. Leaves the desktop viewport.
    async fn check_accessible(&self) {
        let page = self.path().await;
        let unlabelled = self
            .js(
                r#"
                const bad = [];
                for (const el of document.querySelectorAll('input, select, textarea, button')) {
                  if (el.type === 'hidden') continue;
                  const text = (s) => (s || '').trim() !== '';
                  const labelled = Array.from(el.labels || []).some((l) => text(l.textContent))
                    || text(el.getAttribute('aria-label'))
                    || (el.getAttribute('aria-labelledby') || '').split(/\s+/)
                         .some((id) => id && document.getElementById(id) && text(document.getElementById(id).textContent))
                    || (el.tagName === 'BUTTON' && text(el.textContent))
                    || (el.type === 'submit' && text(el.value));
                  if (!labelled) bad.push(el.outerHTML.slice(0, 160));
                }
                return bad;
                "#,
                vec![],
            )
            .await;
        assert_eq!(
            unlabelled,
            json!([]),
            "form controls without a label on {page}"
        );
        self.viewport(PHONE).await;
        let widths = self
            .js(
                "return [document.documentElement.scrollWidth, document.body.scrollWidth];",
                vec![],
            )
            .await;
        let widest = widths
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_u64().unwrap())
            .max()
            .unwrap();
        assert!(
            widest <= PHONE.0 as u64,
            "{page} scrolls sideways at {} px: it is {widest} px wide",
            PHONE.0
        );
        self.viewport(DESKTOP).await;
    }
}

/// `[board]` with kaisa (dispatcher) and ville (viewer), plain-HTTP cookies for loopback.
fn board_toml() -> String {
    let kaisa = huoltosync::faces::board::hash_password(PASSWORD).unwrap();
    let ville = huoltosync::faces::board::hash_password(VIEWER_PASSWORD).unwrap();
    format!(
        "[board]\nenabled = true\ninsecure_cookies = true\n[[board.users]]\nname = \"kaisa\"\npassword_hash = \"{kaisa}\"\nrole = \"dispatcher\"\n[[board.users]]\nname = \"ville\"\npassword_hash = \"{ville}\"\nrole = \"viewer\"\n"
    )
}

/// A synced mirror of `tickets` tickets with the API and the board served in-process: the
/// environment, the server and the board's root URL.
async fn board_env(tickets: u64) -> (TestEnv, Served, String) {
    let env = Setup::tickets(tickets)
        .sections(&format!("{}{}", api_toml(""), board_toml()))
        .start()
        .await;
    env.sync_ok().await;
    let served = serve(&env).await;
    let root = served.base.trim_end_matches("/api/v1").to_owned();
    (env, served, root)
}

/// Creates a ticket through the simulator's admin endpoint (as another process would); its id.
async fn sim_create(env: &TestEnv, fields: Value) -> i64 {
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/_sim/tickets", env.sim.root()))
        .json(&fields)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json::<Value>().await.unwrap()["Id"].as_i64().unwrap()
}

/// `(kind, ticket, requested_by)` of every outbox row.
fn outbox(env: &TestEnv) -> Vec<(String, Option<i64>, Option<String>)> {
    let db = env.db();
    let mut st = db
        .prepare("SELECT kind, ticket_id, requested_by FROM outbox ORDER BY id")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn open_ids(env: &TestEnv) -> Vec<i64> {
    env.open_ids("sim-1")
}

async fn sign_in_with_password(b: &Browser, root: &str, user: &str, password: &str) {
    b.goto(&format!("{root}/")).await;
    assert_eq!(b.path().await, "/login", "no session: the sign-in form");
    b.check_accessible().await;
    b.fill("username", user).await;
    b.fill("password", password).await;
    b.submit("login-button").await;
    assert_eq!(b.path().await, "/");
    assert!(b.text("me").await.contains(user));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_in_headless_chromium() {
    if !browser_tests_run("the_board_in_headless_chromium") {
        return;
    }
    let (env, _served, root) = board_env(3).await;
    // A (Avoin) to accept, B (Vastaanotettu) to hold, C to try a form without its token.
    let a = sim_create(&env, json!({"Otsikko": "Patteri kylmä"})).await;
    let b_id = sim_create(
        &env,
        json!({"Otsikko": "Ovikello rikki", "Tila": "Vastaanotettu"}),
    )
    .await;
    let c_id = sim_create(&env, json!({"Otsikko": "Hana vuotaa"})).await;
    env.sync_ok().await;
    let b = Browser::start().await;

    // Password sign-in, and the board with every open ticket.
    sign_in_with_password(&b, &root, "kaisa", PASSWORD).await;
    let shown: Vec<i64> = serde_json::from_value(
        b.js(
            "return Array.from(document.querySelectorAll('#ticket-rows tr')).map((r) => Number(r.dataset.id));",
            vec![],
        )
        .await,
    )
    .unwrap();
    let mut sorted = shown.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        open_ids(&env),
        "the board's rows are the open tickets"
    );
    assert_eq!(b.text("count").await, shown.len().to_string());
    assert_eq!(
        b.js("return document.documentElement.lang;", vec![]).await,
        "fi"
    );
    b.check_accessible().await;

    // A ticket created in the simulator appears on the open board without a reload.
    b.js("window.__same_page = 42;", vec![]).await;
    let d = sim_create(&env, json!({"Otsikko": "Ilmanvaihto pitää ääntä"})).await;
    env.sync_ok().await;
    let row = b.el(&format!("t-sim-1-{d}")).await;
    assert!(
        row.text()
            .await
            .unwrap()
            .contains("Ilmanvaihto pitää ääntä")
    );
    assert_eq!(
        b.js("return window.__same_page;", vec![]).await,
        42,
        "the page was reloaded"
    );
    assert_eq!(b.text("count").await, (shown.len() + 1).to_string());

    // Accept A through its form.
    b.goto(&format!("{root}/tickets/sim-1/{a}")).await;
    assert!(b.text("ticket-title").await.contains("Patteri kylmä"));
    b.check_accessible().await;
    b.fill("accept-comment", "Tulossa huomenna").await;
    b.submit("accept-button").await;
    assert!(
        b.text("notice")
            .await
            .contains("Toimenpide lisättiin lähtevien jonoon"),
        "no notice after accepting"
    );

    // Hold B with a reason: the preview shows what the resident will read.
    b.goto(&format!("{root}/tickets/sim-1/{b_id}")).await;
    b.check_accessible().await;
    b.fill("hold-reason", "Odotetaan varaosaa").await;
    assert_eq!(b.text("hold-preview").await, "Odotetaan varaosaa");
    b.submit("hold-button").await;
    assert!(
        b.text("notice")
            .await
            .contains("Toimenpide lisättiin lähtevien jonoon")
    );
    assert_eq!(
        outbox(&env),
        vec![
            ("accept".into(), Some(a), Some("board:kaisa".into())),
            ("hold".into(), Some(b_id), Some("board:kaisa".into())),
        ]
    );

    // The board shows both as pending; so does the outbox page, with the user's name.
    b.goto(&format!("{root}/")).await;
    for (id, state) in [(a, "Vastaanotettu"), (b_id, "Odottaa")] {
        let pending =
            b.c.find(Locator::Css(&format!("#t-sim-1-{id} .pending")))
                .await
                .unwrap_or_else(|_| panic!("ticket {id} shows no pending state"))
                .text()
                .await
                .unwrap();
        assert!(
            pending.contains(state) && pending.contains("jonossa"),
            "{pending}"
        );
    }
    b.goto(&format!("{root}/outbox")).await;
    let page = b.text("main").await;
    assert_eq!(page.matches("taulu: kaisa").count(), 2, "{page}");
    b.check_accessible().await;
    b.goto(&format!("{root}/status")).await;
    b.check_accessible().await;

    // A form posted without its CSRF token: refused (403), nothing queued.
    b.goto(&format!("{root}/tickets/sim-1/{c_id}")).await;
    b.js(
        "document.querySelector('#form-accept input[name=csrf]').remove();\
         document.getElementById('accept-comment').value = 'ilman tarkistetta';\
         window.__old_page = true;\
         setTimeout(() => document.getElementById('form-accept').submit(), 0);",
        vec![],
    )
    .await;
    b.wait_new_page().await;
    assert_eq!(b.path().await, format!("/tickets/sim-1/{c_id}/accept"));
    assert_eq!(b.status().await, 403);
    assert!(b.text("main").await.contains("tarkiste puuttuu"));
    assert_eq!(
        outbox(&env).len(),
        2,
        "a form without its token queued an action"
    );

    // Sign out: back to the sign-in form, and the board is gone with the session.
    b.goto(&format!("{root}/")).await;
    b.submit("logout-button").await;
    assert_eq!(b.path().await, "/login");
    assert!(b.text("main").await.contains("Olet kirjautunut ulos"));
    b.goto(&format!("{root}/")).await;
    assert_eq!(b.path().await, "/login");

    // A viewer signs in by a login link (`huoltosync board login-link`), sees the tickets but
    // no action form, and her POST with her own valid token is refused.
    let (code, out, err) = env.cli(&["board", "login-link", "--user", "ville"]).await;
    assert_eq!(code, 0, "{err}");
    // The link names the config's [api] listen address; the test serves on another port.
    let url = out.trim();
    let path = &url[url.find("/login/").expect("a login link")..];
    b.goto(&format!("{root}{path}")).await;
    assert_eq!(b.path().await, "/");
    assert!(b.text("me").await.contains("ville"));
    b.el(&format!("t-sim-1-{c_id}")).await;
    b.goto(&format!("{root}/tickets/sim-1/{c_id}")).await;
    assert!(b.has("viewer-note").await);
    for form in ["form-accept", "form-hold", "form-done", "form-followup"] {
        assert!(!b.has(form).await, "a viewer sees #{form}");
    }
    b.check_accessible().await;
    let status = b
        .c
        .execute_async(
            "const [url, done] = arguments;\
             const csrf = document.querySelector('#logout input[name=csrf]').value;\
             fetch(url, {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'},\
                         body: 'csrf=' + encodeURIComponent(csrf) + '&comment=katsoja'})\
               .then((r) => done(r.status), (e) => done(String(e)));",
            vec![json!(format!("/tickets/sim-1/{c_id}/accept"))],
        )
        .await
        .unwrap();
    assert_eq!(status, 403, "a viewer's POST");
    assert_eq!(outbox(&env).len(), 2, "a viewer's POST queued an action");
    b.submit("logout-button").await;
    assert_eq!(b.path().await, "/login");
    b.close().await;
}

/// The board's pages are gzipped for a client that accepts it (the board of 2 000 tickets is
/// 1 MB of HTML; see "Board" in BENCHMARKS.md); the event stream and the API are not.
#[tokio::test]
async fn the_board_is_gzipped_for_a_browser_and_the_event_stream_and_the_api_are_not() {
    use std::io::Read;
    let (_env, _served, root) = board_env(60).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = http
        .post(format!("{root}/login"))
        .form(&[("username", "kaisa"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let rows = |html: &str| html.matches("<tr id=\"t-sim-1-").count();
    // Without Accept-Encoding: plain HTML.
    let r = http.get(format!("{root}/")).send().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    let plain = r.text().await.unwrap();
    assert_eq!(rows(&plain), 60);
    // As Chromium asks: gzip (this reqwest decodes nothing: these are the bytes sent).
    let browser = "gzip, deflate, br, zstd";
    let r = http
        .get(format!("{root}/"))
        .header("accept-encoding", browser)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let sent = r.bytes().await.unwrap();
    let mut html = String::new();
    flate2::read::GzDecoder::new(&sent[..])
        .read_to_string(&mut html)
        .expect("a gzip body");
    assert_eq!(rows(&html), 60);
    assert!(
        sent.len() * 3 < plain.len(),
        "{} bytes gzipped of {}",
        sent.len(),
        plain.len()
    );
    // The live board's stream is never buffered by a compressor.
    let r = http
        .get(format!("{root}/events"))
        .header("accept-encoding", browser)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-encoding").is_none());
    drop(r);
    // The API keeps its own answers.
    let r = http
        .get(format!("{root}/api/v1/tickets"))
        .bearer_auth(WRITE)
        .header("accept-encoding", browser)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-encoding").is_none());
}

/// On a 375 px phone: the board's header is one line and its filters folded; a ticket's page
/// shows the state, the next visit and the resident's contact (a `tel:` link) within the first
/// screen, above the forms; and no Finnish page shows English.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_phone_the_contact_and_the_visit_come_first_and_finnish_pages_say_nothing_in_english()
{
    use huoltosync::store::{NewVisit, Store, VisitCustomer};
    let (env, _served, root) = board_env(3).await;
    let id = sim_create(
        &env,
        json!({"Otsikko": "Patteri kylmä", "TyotehtavanKuvaus": "Makuuhuoneen patteri on kylmä. ".repeat(12),
               "Ilmoittaja": {"Nimi": "Aino Asukas", "Puhelin": "040 123 4567", "Sahkoposti": "aino@example.fi"}}),
    )
    .await;
    env.sync_ok().await;
    let start = chrono::Utc::now() + chrono::Duration::days(2);
    Store::open(&env.config.store.path)
        .unwrap()
        .visits()
        .insert_visit(
            &NewVisit {
                account: "sim-1".into(),
                ticket_id: id,
                booking_guid: "guid-phone".into(),
                marker: "[huoltosync:guid-phone]".into(),
                technician_guid: None,
                technician_name: Some("Asentaja 1".into()),
                service_guid: None,
                service_name: None,
                start,
                end: start + chrono::Duration::minutes(30),
                customer: VisitCustomer::default(),
                raw_json: "{}".into(),
            },
            chrono::Utc::now(),
        )
        .unwrap();
    let b = Browser::start().await;
    sign_in_with_password(&b, &root, "kaisa", PASSWORD).await;
    b.viewport((375, 740)).await;
    b.goto(&format!("{root}/")).await;
    let top =
        |id: &str| format!("return document.getElementById('{id}').getBoundingClientRect().{{}};");
    let header_height = b.js(&top("main").replace("{}", "top"), vec![]).await;
    assert!(
        header_height.as_f64().unwrap() < 60.0,
        "the header is one line on a phone: main starts at {header_height}"
    );
    assert_eq!(
        b.js("return document.getElementById('filter-box').open;", vec![])
            .await,
        false,
        "the filters are folded"
    );
    b.goto(&format!("{root}/tickets/sim-1/{id}")).await;
    for shown in ["now-state", "now-visit", "reporter-tel"] {
        let bottom = b.js(&top(shown).replace("{}", "bottom"), vec![]).await;
        assert!(
            bottom.as_f64().unwrap() <= 740.0,
            "#{shown} is below the first screen ({bottom} px)"
        );
    }
    let tel = b
        .js(
            "return document.getElementById('reporter-tel').getAttribute('href');",
            vec![],
        )
        .await;
    assert_eq!(tel, "tel:0401234567");
    let (form, details) = (
        b.js(&top("form-accept").replace("{}", "top"), vec![]).await,
        b.js(&top("details").replace("{}", "top"), vec![]).await,
    );
    let visit = b.js(&top("now-visit").replace("{}", "top"), vec![]).await;
    assert!(
        visit.as_f64() < form.as_f64() && form.as_f64() < details.as_f64(),
        "the visit, then the actions, then the details: {visit} {form} {details}"
    );
    b.check_accessible().await;
    for path in ["/", "/outbox", "/status", &format!("/tickets/sim-1/{id}")] {
        b.goto(&format!("{root}{path}")).await;
        let text = b.js("return document.body.innerText;", vec![]).await;
        let text = text.as_str().unwrap();
        for english in [
            "dead-lettered",
            "action(s)",
            "rejected it",
            "queued",
            "pending",
        ] {
            assert!(!text.contains(english), "{path} says {english:?}: {text}");
        }
    }
    b.close().await;
}

/// The README's screenshots: the board, a ticket and the status page at desktop and phone width,
/// into `$SCREENSHOTS` (else a temporary folder, checked and dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the README's screenshots: SCREENSHOTS=docs/screenshots cargo test --release -p huoltosync-it browser::screenshots -- --ignored"]
async fn screenshots() {
    if !browser_tests_run("screenshots") {
        return;
    }
    let (_env, _served, root) = board_env(15).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("SCREENSHOTS").map_or_else(|| tmp.path().to_owned(), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    let b = Browser::start().await;
    sign_in_with_password(&b, &root, "kaisa", PASSWORD).await;
    // The first ticket on the board accepted (queued), so that the pending state shows.
    let ticket = b
        .js(
            "return Number(document.querySelector('#ticket-rows tr').dataset.id);",
            vec![],
        )
        .await;
    b.goto(&format!("{root}/tickets/sim-1/{ticket}")).await;
    b.fill("accept-comment", "Huoltomies tulee tänään").await;
    b.submit("accept-button").await;
    for (name, path) in [
        ("board", "/".to_owned()),
        ("ticket", format!("/tickets/sim-1/{ticket}")),
        ("status", "/status".to_owned()),
    ] {
        for (size, viewport) in [("desktop", DESKTOP), ("phone", PHONE)] {
            b.viewport(viewport).await;
            b.goto(&format!("{root}{path}")).await;
            assert_eq!(b.status().await, 200, "{path}");
            let png = b.c.screenshot().await.unwrap();
            assert!(png.starts_with(b"\x89PNG"), "{name}-{size} is no PNG");
            std::fs::write(dir.join(format!("{name}-{size}.png")), png).unwrap();
        }
    }
    b.close().await;
}
