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

/// The board's search (through the covering index of `sql/020_board_search_covered.sql`)
/// counts and pages exactly the open tickets whose title, description or address contains the
/// text, ASCII case folded, with `%`, `_` and `\` taken as they are, alone and beside the other
/// filters; a ticket that left the open set is not found, and one edited is found by its new
/// text at once. The truth is worked out here in Rust from the mirror's columns.
#[tokio::test]
async fn a_search_counts_and_pages_every_open_ticket_whose_text_holds_it() {
    use huoltosync::store::{BoardQuery, Store};
    let env = crate::helpers::Setup::tickets(300).start().await;
    let sim = env.sim();
    let add = |title: &str, description: &str, address: &str, urgency: &str| {
        sim.insert(
            "sim-1",
            json!({"Otsikko": title, "TyotehtavanKuvaus": description, "Kohde": address,
                   "Kiireellisyys": urgency})
            .as_object()
            .unwrap(),
        )
        .unwrap()
    };
    add("100% valmis", "ei mitään", "Koivutie 1", "Normaali");
    add("a_b", "vesi\\vuoto", "Koivutie 2", "Kiireellinen");
    add("Vuoto KEITTIÖSSÄ", "", "", "Normaali");
    let closed = add("Koivutie suljettu", "", "Koivutie 9", "Normaali");
    env.sync_ok().await;
    sim.patch(
        "sim-1",
        closed,
        json!({"Tila": "Valmis"}).as_object().unwrap(),
    )
    .unwrap();
    let edited = env.open_ids("sim-1")[0];
    sim.patch(
        "sim-1",
        edited,
        json!({"Otsikko": "Uusi otsikko Xyzzy"})
            .as_object()
            .unwrap(),
    )
    .unwrap();
    env.sync_ok().await;

    let open: Vec<(i64, String, [String; 3])> = {
        let db = env.db();
        let mut st = db
            .prepare(
                "SELECT id, coalesce(urgency, ''), coalesce(title, ''), coalesce(description, ''),
                        coalesce(address, '') FROM tickets WHERE open = 1",
            )
            .unwrap();
        st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, [r.get(2)?, r.get(3)?, r.get(4)?]))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    assert_eq!(open.len(), 303, "300 and four added, one closed");
    let mut store = Store::open(&env.dir.path().join("store.db")).unwrap();
    for (q, urgency) in [
        ("Koivutie", None),
        ("koivutie", Some("Kiireellinen")),
        ("100%", None),
        ("%", None),
        ("a_b", None),
        ("_", None),
        ("e\\v", None),
        ("keittiössä", None),
        ("KEITTIÖSSÄ", None),
        ("xyzzy", None),
        ("Koivutie 9", None),
        ("e", None),
    ] {
        let holds = |text: &str| text.to_ascii_lowercase().contains(&q.to_ascii_lowercase());
        let mut want: Vec<i64> = open
            .iter()
            .filter(|(_, u, texts)| {
                urgency.is_none_or(|want| u == want) && texts.iter().any(|t| holds(t))
            })
            .map(|(id, ..)| *id)
            .collect();
        want.sort();
        let mut query = BoardQuery {
            q: Some(q.to_owned()),
            urgency: urgency.map(str::to_owned),
            limit: 100,
            ..BoardQuery::default()
        };
        let board = store.board();
        let first = board.board_page(&query).unwrap();
        assert_eq!(
            first.total,
            want.len() as u64,
            "count for {q:?} {urgency:?}"
        );
        let mut got: Vec<i64> = first.rows.iter().map(|r| r.ticket.id).collect();
        while (got.len() as u64) < first.total {
            query.offset += 100;
            let next = board.board_page(&query).unwrap();
            assert!(!next.rows.is_empty(), "pages end early for {q:?}");
            got.extend(next.rows.iter().map(|r| r.ticket.id));
        }
        got.sort();
        assert_eq!(got, want, "rows for {q:?} {urgency:?}");
    }
    // The cases above are not vacuous.
    let mut total = |q: &str| {
        store
            .board()
            .board_page(&BoardQuery {
                q: Some(q.to_owned()),
                limit: 100,
                ..BoardQuery::default()
            })
            .unwrap()
            .total
    };
    assert_eq!(total("Xyzzy"), 1);
    assert_eq!(total("Koivutie 9"), 0);
    assert_eq!(total("100%"), 1);
    assert_eq!(total("a_b"), 1);
    assert_eq!(
        total("keittiössä"),
        0,
        "LIKE folds ASCII only, as BoardQuery says"
    );
    assert_eq!(total("KEITTIÖSSÄ"), 1);
}
