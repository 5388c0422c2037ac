//! Visits on the web board: the next visit on the board's rows, a ticket's visits with their
//! history, and booking a visit from the ticket page through the path of `huoltosync task
//! book` (`visits::book::book`), against the in-process simulator with Slotti.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use huoltosync::config::Config;
use huoltosync::faces::board::Lang;

use crate::api::{Served, api_toml, serve};
use crate::board::{
    PASSWORD, VIEWER_PASSWORD, board_env, board_toml, csrf, outbox_rows, page, sign_in, text,
};
use crate::helpers::{Setup, TestEnv};

/// A simulator with Slotti, the board served, a config with `[slotti]`, the mirror synced.
async fn slotti_board(tickets: u64) -> (TestEnv, Served, String) {
    let mut env = Setup::tickets(tickets)
        .slotti()
        .sections(&format!("{}{}", api_toml(""), board_toml(true)))
        .start()
        .await;
    let path = env.config_path();
    let mut toml = std::fs::read_to_string(&path).unwrap();
    toml.push_str(&format!(
        "\n[slotti]\nbase_url = {:?}\nbooking_account = \"huoltosim\"\napi_key = \"slotti-key\"\n\
         default_service = \"Huoltokäynti 30 min\"\n[[slotti.rules]]\naccount = \"sim-1\"\n\
         technicians = [\"Asentaja 1\", \"Asentaja 2\"]\n",
        env.slotti_url()
    ));
    std::fs::write(&path, toml).unwrap();
    env.config = Config::load(&path).expect("config with [slotti]").config;
    env.sync_ok().await;
    let served = serve(&env).await;
    let root = served.base.trim_end_matches("/api/v1").to_owned();
    (env, served, root)
}

/// An open Avoin ticket whose reporter has a name and a phone or e-mail (bookable).
fn bookable(env: &TestEnv) -> i64 {
    env.db()
        .query_row(
            "SELECT id FROM tickets WHERE open = 1 AND state = 'Avoin' AND reporter_name IS NOT NULL
               AND (reporter_phone IS NOT NULL OR reporter_email IS NOT NULL) ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Calls Slotti (the simulator) has received, all routes.
fn slotti_calls(env: &TestEnv) -> u64 {
    let calls: BTreeMap<String, u64> = env.sim().slotti_stats().calls;
    calls.values().sum()
}

/// The CLI's error line for `huoltosync ARGS`, which must fail.
async fn cli_error(env: &TestEnv, args: &[&str]) -> String {
    let (code, _, err) = env.cli(args).await;
    assert_ne!(code, 0, "{args:?} succeeded");
    err.lines()
        .find_map(|l| l.strip_prefix("error: "))
        .expect("the CLI's error line")
        .to_owned()
}

/// Posts the booking form of `url` with `fields` (plus the page's CSRF token unless `csrf`
/// is `None`).
async fn post_book(
    b: &reqwest::Client,
    url: &str,
    csrf: Option<String>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(c) = csrf {
        form.push(("csrf".into(), c));
    }
    b.post(format!("{url}/book"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_booking_form_is_there_only_with_slotti_and_for_a_dispatcher_and_the_page_never_calls_slotti()
 {
    let (env, _served, root) = slotti_board(6).await;
    let id = bookable(&env);
    let url = format!("{root}/tickets/sim-1/{id}");
    let before = slotti_calls(&env);
    let kaisa = sign_in(&root, "kaisa", PASSWORD).await;
    let (s, html) = page(&kaisa, &url).await;
    assert_eq!(s, 200);
    assert!(html.contains("id=\"form-book\""), "{html}");
    assert!(text(&html).contains("Varaa käynti") && html.contains("id=\"book-slots-button\""));
    // The technicians the rules name are offered.
    assert!(html.contains("<option value=\"Asentaja 2\">"), "{html}");
    assert!(html.contains("id=\"visits\"") && text(&html).contains("Ei varattuja käyntejä"));
    let en = kaisa
        .get(&url)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        en.contains("Book a visit") && en.contains("Show free times") && en.contains("Visits"),
        "{en}"
    );
    // A viewer sees no booking form.
    let ville = sign_in(&root, "ville", VIEWER_PASSWORD).await;
    let (_, html) = page(&ville, &url).await;
    assert!(!html.contains("id=\"form-book\""));
    let (_, board) = page(&kaisa, &format!("{root}/")).await;
    assert!(board.contains(&format!("id=\"t-sim-1-{id}\"")));
    assert_eq!(slotti_calls(&env), before, "rendering asked Slotti");
    // Without [slotti]: no form.
    let (env, _served, root) = board_env(1, true).await;
    let id: i64 = env
        .db()
        .query_row("SELECT id FROM tickets WHERE open = 1 LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let kaisa = sign_in(&root, "kaisa", PASSWORD).await;
    let (_, html) = page(&kaisa, &format!("{root}/tickets/sim-1/{id}")).await;
    assert!(html.contains("id=\"form-accept\"") || html.contains("id=\"form-done\""));
    assert!(!html.contains("id=\"form-book\""), "{html}");
}

#[tokio::test]
async fn a_booking_from_the_board_is_queued_as_the_board_user_booked_by_one_run_and_shown() {
    let (env, _served, root) = slotti_board(6).await;
    let id = bookable(&env);
    let url = format!("{root}/tickets/sim-1/{id}");
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let (_, html) = page(&b, &url).await;
    // The free times first: five, in Finnish, nothing queued.
    let r = post_book(&b, &url, Some(csrf(&html)), &[("dry_run", "1")]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let at = html.find("id=\"free-slots\"").expect("the free times");
    let listed = &html[at..][..html[at..].find("</section>").unwrap()];
    assert_eq!(listed.matches("<li>").count(), 5, "{listed}");
    assert_eq!(listed.matches(" klo ").count(), 5, "{listed}");
    assert!(
        listed.contains("Asentaja 1") || listed.contains("Asentaja 2"),
        "{listed}"
    );
    assert!(outbox_rows(&env).is_empty());

    // The booking, with a technician: 303 to the ticket, whose notice names the slot.
    let r = post_book(
        &b,
        &url,
        Some(csrf(&html)),
        &[("technician", "Asentaja 2"), ("after", "")],
    )
    .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        to.starts_with(&format!("/tickets/sim-1/{id}?queued=")),
        "{to}"
    );
    let (_, html) = page(&b, &format!("{root}{to}")).await;
    let shown = text(&html);
    assert!(
        shown.contains("Käynnin varaus lisättiin jonoon:")
            && shown.contains(" klo ")
            && shown.contains("Asentaja 2"),
        "{shown}"
    );
    assert_eq!(
        outbox_rows(&env),
        vec![("book".to_owned(), Some("board:kaisa".to_owned()))]
    );
    assert!(!html.contains("id=\"form-book\""), "a booking is queued");
    assert!(text(&html).contains("Käynnin varaus"), "the queued action");

    // A second post: refused with the CLI's message, nothing more queued.
    let r = post_book(&b, &url, Some(csrf(&html)), &[]).await;
    assert_eq!(r.status(), 409);
    let shown = text(&r.text().await.unwrap());
    let cli = cli_error(&env, &["task", "book", &id.to_string()]).await;
    assert!(
        cli.contains("already has a visit booking queued as outbox action #1"),
        "{cli}"
    );
    assert!(
        shown.contains(&cli) && shown.contains("Toimenpidettä ei lisätty"),
        "board: {shown}\ncli: {cli}"
    );
    assert_eq!(outbox_rows(&env).len(), 1);

    // One run books it in Slotti (and tells Tampuuri); the board shows the next visit.
    let (code, out, err) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let ours: Vec<serde_json::Value> = env
        .sim()
        .slotti_bookings()
        .into_iter()
        .filter(|b| {
            let info = b["info"].as_str().unwrap_or("");
            info.contains("[huoltosync:") && info.contains(&format!("#{id}"))
        })
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let start: DateTime<Utc> = ours[0]["start"].as_str().unwrap().parse().unwrap();
    let end: DateTime<Utc> = ours[0]["end"].as_str().unwrap().parse().unwrap();
    let when = Lang::Fi.time(start);
    let (_, board) = page(&b, &format!("{root}/")).await;
    let row_at = board
        .find(&format!("id=\"t-sim-1-{id}\""))
        .expect("the ticket's row");
    let row = &board[row_at..][..board[row_at..].find("</tr>").unwrap()];
    let cell = &row[row.find("class=\"next-visit\"").unwrap()..];
    assert!(
        cell.contains(&when) && cell.contains("Asentaja 2"),
        "{when} not in {cell}"
    );
    // The ticket page: the visit and its history, and no form while it is live.
    let (_, html) = page(&b, &url).await;
    let at = html.find("id=\"visits\"").unwrap();
    let visits = text(&html[at..][..html[at..].find("</section>").unwrap()]);
    assert!(
        visits.contains("Varattu")
            && visits.contains(&Lang::Fi.span(start, end))
            && visits.contains("Asentaja 2")
            && visits.contains("huoltosync varasi"),
        "{visits}"
    );
    assert!(!html.contains("id=\"form-book\""));
    // Posted anyway: the CLI's refusal naming the visit.
    let r = post_book(&b, &url, Some(csrf(&html)), &[]).await;
    assert_eq!(r.status(), 409);
    let shown = text(&r.text().await.unwrap());
    let cli = cli_error(&env, &["task", "book", &id.to_string()]).await;
    let guid = ours[0]["guid"].as_str().unwrap();
    assert!(cli.contains(guid), "{cli}");
    assert!(shown.contains(&cli), "board: {shown}\ncli: {cli}");
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'book'"),
        1
    );
}

#[tokio::test]
async fn a_booking_without_its_csrf_token_or_from_a_viewer_is_refused_and_asks_slotti_nothing() {
    let (env, _served, root) = slotti_board(6).await;
    let id = bookable(&env);
    let url = format!("{root}/tickets/sim-1/{id}");
    let before = slotti_calls(&env);
    let kaisa = sign_in(&root, "kaisa", PASSWORD).await;
    for csrf in [None, Some("wrong".to_owned()), Some(String::new())] {
        let r = post_book(&kaisa, &url, csrf.clone(), &[("dry_run", "1")]).await;
        assert_eq!(r.status(), 403, "{csrf:?}");
        let r = post_book(&kaisa, &url, csrf.clone(), &[]).await;
        assert_eq!(r.status(), 403, "{csrf:?}");
    }
    let ville = sign_in(&root, "ville", VIEWER_PASSWORD).await;
    let (_, html) = page(&ville, &url).await;
    let r = post_book(&ville, &url, Some(csrf(&html)), &[]).await;
    assert_eq!(r.status(), 403);
    assert!(outbox_rows(&env).is_empty());
    assert_eq!(slotti_calls(&env), before);
    // A time that is not one: the form's field named, nothing queued.
    let (_, html) = page(&kaisa, &url).await;
    let r = post_book(&kaisa, &url, Some(csrf(&html)), &[("after", "huomenna")]).await;
    assert_eq!(r.status(), 422);
    assert!(text(&r.text().await.unwrap()).contains("Aikaisintaan"));
    assert!(outbox_rows(&env).is_empty());
}

#[tokio::test]
async fn a_failing_slotti_is_named_on_the_page_and_nothing_is_queued() {
    let (env, _served, root) = slotti_board(6).await;
    let id = bookable(&env);
    let url = format!("{root}/tickets/sim-1/{id}");
    let kaisa = sign_in(&root, "kaisa", PASSWORD).await;
    let (_, html) = page(&kaisa, &url).await;
    env.faults(serde_json::json!({ "slotti_error_rate": 1.0 }));
    let r = post_book(&kaisa, &url, Some(csrf(&html)), &[]).await;
    assert_eq!(r.status(), 502);
    let shown = text(&r.text().await.unwrap());
    assert!(shown.contains("Slotilta ei saatu vastausta"), "{shown}");
    assert!(!shown.contains("slotti-key"), "{shown}");
    assert!(outbox_rows(&env).is_empty());
    // The form is still there to try again.
    env.sim().clear_faults();
    let (_, html) = page(&kaisa, &url).await;
    assert!(html.contains("id=\"form-book\""));
}

#[tokio::test]
async fn a_tickets_page_shows_its_visits_history_and_the_board_only_a_live_next_visit() {
    use huoltosync::store::{NewVisit, SeenBooking, Store, VisitCustomer, VisitSource};
    let (env, _served, root) = board_env(1, true).await;
    let id: i64 = env
        .db()
        .query_row("SELECT id FROM tickets WHERE open = 1 LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let start = Utc::now() + chrono::Duration::days(3);
    let moved = start + chrono::Duration::hours(26);
    let half = chrono::Duration::minutes(30);
    let mut store = Store::open(&env.config.store.path).unwrap();
    store
        .visits()
        .insert_visit(
            &NewVisit {
                account: "sim-1".into(),
                ticket_id: id,
                booking_guid: "guid-1".into(),
                marker: "[huoltosync:guid-1]".into(),
                technician_guid: Some("res-3".into()),
                technician_name: Some("Asentaja 3".into()),
                service_guid: None,
                service_name: Some("Huoltokäynti 30 min".into()),
                start,
                end: start + half,
                customer: VisitCustomer::default(),
                raw_json: "{}".into(),
            },
            Utc::now(),
        )
        .unwrap();
    let seen = SeenBooking {
        booking_guid: "guid-1",
        start: moved,
        end: moved + half,
        technician_guid: None,
        technician_name: None,
        raw_json: "{}",
    };
    store
        .visits()
        .record_visit_seen(&seen, VisitSource::Webhook, Utc::now())
        .unwrap();
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let (_, board) = page(&b, &format!("{root}/")).await;
    assert!(
        board.contains(&Lang::Fi.time(moved)) && board.contains("Asentaja 3"),
        "the moved visit on the board: {board}"
    );
    let url = format!("{root}/tickets/sim-1/{id}");
    let (_, html) = page(&b, &url).await;
    let at = html.find("id=\"visits\"").unwrap();
    let visits = text(&html[at..][..html[at..].find("</section>").unwrap()]);
    for want in [
        "Siirretty".to_owned(),
        "Varattu".to_owned(),
        Lang::Fi.span(moved, moved + half),
        format!("aiemmin {}", Lang::Fi.span(start, start + half)),
        "Slotin ilmoitus".to_owned(),
        "huoltosync varasi".to_owned(),
        "Asentaja 3".to_owned(),
    ] {
        assert!(visits.contains(&want), "{want:?} not in {visits}");
    }
    // Cancelled in Slotti: in the history, and no next visit on the board.
    store
        .visits()
        .record_visit_cancelled("guid-1", VisitSource::Reconcile, Utc::now())
        .unwrap();
    let (_, html) = page(&b, &url).await;
    assert!(html.contains("class=\"visit cancelled\""));
    assert!(text(&html).contains("Peruttu") && text(&html).contains("Slotin tarkistus"));
    let (_, board) = page(&b, &format!("{root}/")).await;
    assert!(!board.contains(&Lang::Fi.time(moved)), "{board}");
    let en = b
        .get(&url)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(en.contains("Cancelled") && en.contains("Moved") && en.contains("Visits"));
}
