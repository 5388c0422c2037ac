//! A server that lies: pages smaller than asked, no `Total`, a `Total` of 10^18, a list that
//! never ends, a filter that is not applied. Every sweep ends, within its bounds, and mirrors
//! exactly our open tickets or changes nothing.

use serde_json::json;

use crate::helpers::{Setup, TestEnv};

/// The error of a sync that must fail, and the proof that it changed nothing.
async fn failed_sync(env: &TestEnv) -> String {
    huoltosync::store::Store::open(&env.config.store.path).unwrap();
    let before = env.snapshot();
    let r = env.sync().await;
    let e = format!("{:#}", r[0].error.as_ref().expect("the sync fails"));
    assert_eq!(env.snapshot(), before, "a failed sync changes nothing: {e}");
    e
}

#[tokio::test]
async fn a_server_capping_pages_at_100_is_mirrored_in_full_with_a_total_and_prefetching() {
    let env = Setup::tickets(600)
        .sections("[sync]\npages_in_flight = 3")
        .start()
        .await;
    env.faults(json!({"page_cap": 100, "latency_ms": 20}));
    let r = env.sync_ok().await;
    assert_eq!(env.open_ids("sim-1"), env.truth("sim-1"));
    assert_eq!(env.open_ids("sim-1").len(), 600);
    assert_eq!(
        (env.selaa_calls(), r[0].sweeps),
        (6, 1),
        "six pages of 100, planned from the first page's size, one sweep"
    );
    assert!(
        env.sim().max_in_flight() >= 2,
        "pages are still fetched ahead ({} at once)",
        env.sim().max_in_flight()
    );
    // An unchanged re-sync costs the same six calls and writes nothing.
    env.watch_ticket_writes();
    env.sync_ok().await;
    assert_eq!((env.selaa_calls(), env.ticket_writes()), (12, 0));
}

#[tokio::test]
async fn a_capped_server_without_total_is_paged_until_an_empty_page() {
    for (n, expected_calls) in [(600, 7), (650, 8), (0, 1), (99, 2)] {
        let env = Setup::tickets(n).start().await;
        env.faults(json!({"page_cap": 100, "no_total": true}));
        env.sync_ok().await;
        assert_eq!(
            env.open_ids("sim-1"),
            env.truth("sim-1"),
            "{n} tickets: all mirrored"
        );
        assert_eq!(env.open_ids("sim-1").len() as u64, n);
        assert_eq!(
            env.selaa_calls(),
            expected_calls,
            "{n} tickets at 100 a page without Total: every page, then one empty page"
        );
    }
}

#[tokio::test]
async fn a_total_of_10_to_the_18_fails_at_once_naming_the_account_and_the_figure() {
    let env = Setup::tickets(30).start().await;
    env.sync_ok().await;
    env.faults(json!({"lie_total": 1_000_000_000_000_000_000u64}));
    let calls = env.selaa_calls();
    let e = failed_sync(&env).await;
    assert!(
        e.contains("sim-1") && e.contains("1000000000000000000") && e.contains("max_pages"),
        "{e}"
    );
    assert_eq!(env.selaa_calls() - calls, 1, "one call, no resweeps");
}

#[tokio::test]
async fn a_sweep_needing_more_than_max_pages_fails_at_once_with_or_without_total() {
    let env = Setup::tickets(600)
        .tampuuri_toml("page_size = 10")
        .sections("[sync]\nmax_pages = 20")
        .start()
        .await;
    // Total 600 at 10 a page is 60 pages: refused after the first page.
    let e = failed_sync(&env).await;
    assert!(
        e.contains("sim-1") && e.contains("60 pages") && e.contains("max_pages = 20"),
        "{e}"
    );
    assert_eq!(env.selaa_calls(), 1);
    // Without Total: stopped at the 20th page, not resweeped.
    env.faults(json!({"no_total": true}));
    let e = failed_sync(&env).await;
    assert!(
        e.contains("sim-1") && e.contains("max_pages = 20") && e.contains("200 tickets"),
        "{e}"
    );
    assert_eq!(env.selaa_calls(), 1 + 20);
    assert_eq!(env.count("SELECT count(*) FROM tickets"), 0);
}

#[tokio::test]
async fn a_server_that_ignores_offset_is_stopped_at_the_first_repeated_page() {
    let env = Setup::tickets(600).start().await;
    env.faults(json!({"ignore_offset": true, "no_total": true}));
    let e = failed_sync(&env).await;
    assert!(
        e.contains("sim-1") && e.contains("offset 250") && e.contains("repeats 250"),
        "{e}"
    );
    assert_eq!(env.selaa_calls(), 2);
    // With a Total the same server fails as well, without resweeps.
    env.faults(json!({"no_total": false}));
    let e = failed_sync(&env).await;
    assert!(e.contains("repeats"), "{e}");
    assert!(env.selaa_calls() <= 2 + 3, "{} calls", env.selaa_calls());
}

#[tokio::test]
async fn one_slow_account_gives_up_at_its_deadline_and_changes_nothing() {
    // 1 000 tickets at 50 a page and 300 ms a call: about 20 pages, several seconds.
    let env = Setup::tickets(1000)
        .tampuuri_toml("page_size = 50")
        .sections("[sync]\naccount_deadline_secs = 1")
        .start()
        .await;
    env.faults(json!({"latency_ms": 300}));
    let e = failed_sync(&env).await;
    assert!(
        e.contains("sim-1") && e.contains("account_deadline_secs = 1"),
        "{e}"
    );
    assert!(
        env.selaa_calls() < 20,
        "the sweep stopped early ({} calls)",
        env.selaa_calls()
    );
    assert_eq!(env.count("SELECT count(*) FROM tickets"), 0);
    let outcome: String = env
        .db()
        .query_row("SELECT outcome FROM sync_runs", [], |r| r.get(0))
        .unwrap();
    assert_ne!(outcome, "ok");
}

#[tokio::test]
async fn listed_tickets_that_are_not_ours_or_not_open_are_never_mirrored_as_open() {
    let env = Setup::tickets(12).start().await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    env.patch("sim-1", ids[0], json!({"TyonsuorittajaId": 5020}));
    env.patch("sim-1", ids[1], json!({"Tila": "Valmis"}));
    // The server now lists every ticket of the account: other contractors', finished ones…
    env.faults(json!({"ignore_filter": true}));
    let gets = env.get_calls();
    let r = env.sync_ok().await;
    assert_eq!(env.open_ids("sim-1"), env.truth("sim-1"));
    assert_eq!(
        env.count("SELECT count(*) FROM tickets"),
        12,
        "noise tickets are not mirrored at all"
    );
    assert_eq!(r[0].counts.gone, 2);
    assert_eq!(
        env.get_calls() - gets,
        2,
        "each one that was mirrored as open is checked by id, as any unseen ticket"
    );
    let reasons: Vec<(i64, String)> = {
        let db = env.db();
        let mut s = db
            .prepare("SELECT id, left_reason FROM tickets WHERE open = 0 ORDER BY id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        reasons,
        vec![(ids[0], "reassigned".into()), (ids[1], "state".into())]
    );
    // Listed again and again, they cost nothing more: they are no longer in the open set.
    let gets = env.get_calls();
    env.sync_ok().await;
    assert_eq!(env.get_calls(), gets);
    assert_eq!(env.open_ids("sim-1"), env.truth("sim-1"));
}
