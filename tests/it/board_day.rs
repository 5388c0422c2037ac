//! The board for a dispatcher's day (`src/faces/board/pages/list.rs`, `src/store/board_page.rs`):
//! urgent tickets first, then the latest completion time, then the oldest reported; the age
//! from when the ticket was reported; pages of 100 whose links keep the filters, and a count
//! that is every match. And a failed action looks failed: never queued, with its reason and
//! retry and cancel above the forms, which follow the state Tampuuri has.

use serde_json::json;

use crate::board::{PASSWORD, board_env, csrf, page, sign_in, text};

/// The ids of the rows of a board page, in order.
fn row_ids(html: &str) -> Vec<i64> {
    html.split("<tr id=\"t-sim-1-")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// The `href` of the link with `rel`, entities undone.
fn link(html: &str, rel: &str) -> Option<String> {
    let at = html.find(&format!("rel=\"{rel}\" href=\""))? + rel.len() + 13;
    Some(text(&html[at..][..html[at..].find('"').unwrap()]))
}

#[tokio::test]
async fn urgent_first_then_the_latest_completion_then_the_oldest_reported_with_its_age() {
    let (env, _served, root) = board_env(0, true).await;
    let add = |fields: serde_json::Value| {
        env.sim()
            .insert("sim-1", fields.as_object().unwrap())
            .unwrap()
    };
    let reported = |day: u32| format!("2026-02-{day:02}T08:00:00.000000+02:00");
    let old_normal =
        add(json!({"Otsikko": "Vanha", "Kiireellisyys": "Normaali", "Luotu": reported(1)}));
    let new_normal =
        add(json!({"Otsikko": "Uusi", "Kiireellisyys": "Normaali", "Luotu": reported(20)}));
    let due_late = add(
        json!({"Otsikko": "Myöhemmin", "Kiireellisyys": "Normaali", "Luotu": reported(25),
        "SuoritusaikaViimeistaan": "2099-03-01T16:00:00+02:00"}),
    );
    let due_past = add(
        json!({"Otsikko": "Myöhässä", "Kiireellisyys": "Ei kiireellinen", "Luotu": reported(26),
        "SuoritusaikaViimeistaan": "2026-02-27T16:00:00+02:00"}),
    );
    let urgent_new =
        add(json!({"Otsikko": "Vuoto", "Kiireellisyys": "Kiireellinen", "Luotu": reported(27)}));
    let urgent_old =
        add(json!({"Otsikko": "Tulva", "Kiireellisyys": "Kiireellinen", "Luotu": reported(3)}));
    env.sync_ok().await;
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let (status, html) = page(&b, &format!("{root}/")).await;
    assert_eq!(status, 200);
    assert_eq!(
        row_ids(&html),
        [
            urgent_old, urgent_new, due_past, due_late, old_normal, new_normal
        ],
        "{html}"
    );
    // Urgent and overdue rows are marked; the age counts from Luotu, not from the sync.
    let row = |id: i64| {
        let at = html.find(&format!("<tr id=\"t-sim-1-{id}\"")).unwrap();
        html[at..][..html[at..].find("</tr>").unwrap()].to_owned()
    };
    assert!(row(urgent_old).contains("urgent") && row(urgent_old).contains("urgent-mark"));
    assert!(row(due_past).contains("overdue") && row(due_past).contains("myöhässä"));
    assert!(!row(due_late).contains("overdue-mark"));
    assert!(!row(new_normal).contains("urgent"));
    let age = |id: i64| {
        let r = row(id);
        let at = r.find("<time datetime=\"").unwrap();
        let r = &r[at..];
        r[r.find('>').unwrap() + 1..r.find("</time>").unwrap()].to_owned()
    };
    assert!(age(old_normal).ends_with(" pv"), "{}", age(old_normal));
    let days = |id: i64| age(id).trim_end_matches(" pv").parse::<i64>().unwrap();
    assert_eq!(days(old_normal) - days(new_normal), 19);
}

#[tokio::test]
async fn pages_of_a_hundred_keep_the_filters_and_the_heading_counts_every_match() {
    let (env, _served, root) = board_env(260, true).await;
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let count = |html: &str| -> i64 {
        let at = html.find("id=\"count\">").unwrap() + 11;
        html[at..][..html[at..].find('<').unwrap()].parse().unwrap()
    };
    let (_, first) = page(&b, &format!("{root}/")).await;
    assert_eq!(count(&first), 260);
    assert_eq!(row_ids(&first).len(), 100);
    assert!(link(&first, "prev").is_none());
    assert_eq!(link(&first, "next").as_deref(), Some("/?page=2"));
    assert!(text(&first).contains("Seuraava"));
    // Every open ticket once over the three pages.
    let mut seen = row_ids(&first);
    let (_, second) = page(&b, &format!("{root}/?page=2")).await;
    let (_, third) = page(&b, &format!("{root}/?page=3")).await;
    assert_eq!(link(&third, "prev").as_deref(), Some("/?page=2"));
    assert!(link(&third, "next").is_none() && text(&second).contains("Edellinen"));
    seen.extend(row_ids(&second));
    seen.extend(row_ids(&third));
    assert_eq!(seen.len(), 260);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 260);

    // A filter is in the query: its count is every urgent ticket, its pages only urgent ones.
    let urgent =
        env.count("SELECT count(*) FROM tickets WHERE open = 1 AND urgency = 'Kiireellinen'");
    assert!(urgent > 0);
    let (_, html) = page(&b, &format!("{root}/?urgency=Kiireellinen")).await;
    assert_eq!(count(&html), urgent);
    let mut ids = row_ids(&html);
    let mut next = link(&html, "next");
    while let Some(href) = next {
        assert!(href.contains("urgency=Kiireellinen"), "{href}");
        let (_, html) = page(&b, &format!("{root}{href}")).await;
        ids.extend(row_ids(&html));
        next = link(&html, "next");
        assert!(ids.len() <= 260, "the pages end");
    }
    assert_eq!(ids.len() as i64, urgent);
    let db = env.db();
    for id in ids {
        let u: String = db
            .query_row(
                "SELECT urgency FROM tickets WHERE account = 'sim-1' AND id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(u, "Kiireellinen");
    }
    // A page past the end is empty, and says so; a page that is no number is the first.
    let (status, html) = page(&b, &format!("{root}/?page=999")).await;
    assert_eq!(status, 200);
    assert!(row_ids(&html).is_empty() && link(&html, "prev").is_some());
    let (_, html) = page(&b, &format!("{root}/?page=x")).await;
    assert_eq!(row_ids(&html), row_ids(&first));
}

#[tokio::test]
async fn a_rejected_accept_looks_failed_with_retry_and_cancel_above_the_forms() {
    let (env, _served, root) = board_env(0, true).await;
    let id = env
        .sim()
        .insert(
            "sim-1",
            json!({"Otsikko": "Ovi jumissa"}).as_object().unwrap(),
        )
        .unwrap();
    env.sync_ok().await;
    let url = format!("{root}/tickets/sim-1/{id}");
    let b = sign_in(&root, "kaisa", PASSWORD).await;
    let (_, html) = page(&b, &url).await;
    let r = b
        .post(format!("{url}/accept"))
        .form(&[("csrf", csrf(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    env.faults(json!({"reject_next": 1}));
    env.push().await;
    let dead: i64 = env.count("SELECT id FROM outbox WHERE status = 'dead'");
    let (_, html) = page(&b, &url).await;
    let shown = text(&html);
    let main = &shown[shown.find("<main").unwrap()..];
    assert!(!main.contains("(jonossa)"), "{main}");
    let failed = main.find("epäonnistui").expect("the page says it failed");
    let retry = main
        .find(&format!("id=\"retry-{dead}\""))
        .expect("retry here");
    let cancel = main
        .find(&format!("id=\"cancel-{dead}\""))
        .expect("cancel here");
    let form = main
        .find("id=\"form-accept\"")
        .expect("accept again: Tampuuri has Avoin");
    assert!(failed < form && retry < form && cancel < form, "{main}");
    assert!(
        main.contains("Tampuuri hylkäsi toimenpiteen (HTTP "),
        "{main}"
    );
    // The forms follow the state Tampuuri has: no hold of an Avoin ticket.
    assert!(!main.contains("/hold\""), "{main}");
    for english in [
        "dead-lettered",
        "action(s)",
        "rejected it",
        "queued",
        "pending",
    ] {
        assert!(!visible(main).contains(english), "{english}: {main}");
    }
    // The board's row says so too, and not "queued".
    let (_, board) = page(&b, &format!("{root}/")).await;
    let at = board.find(&format!("<tr id=\"t-sim-1-{id}\"")).unwrap();
    let row = text(&board[at..][..board[at..].find("</tr>").unwrap()]);
    assert!(
        row.contains("epäonnistui") && !row.contains("jonossa"),
        "{row}"
    );
    // Retry from the ticket's page queues it again.
    let r = b
        .post(format!("{root}/outbox/{dead}/retry"))
        .form(&[("csrf", csrf(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (_, html) = page(&b, &url).await;
    let main = text(&html[html.find("<main").unwrap()..]);
    assert!(
        !main.contains("epäonnistui") && main.contains("(jonossa)"),
        "{main}"
    );
}

/// What a reader sees of a page: its text without the tags (ids and classes are not text).
fn visible(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    text(&out)
}
