//! The read path: a mirror of exactly our unfinished tickets, at the fewest API calls, that
//! never changes on a failed or inconsistent sweep.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Setup, TestEnv};

async fn mirrors_all_at_minimum_calls(n: u64, per_state: bool) {
    let setup = Setup::tickets(n);
    let setup = if per_state {
        setup.account_toml("state_filter = \"per_state\"")
    } else {
        setup
    };
    let env: TestEnv = setup.start().await;
    let reports = env.sync_ok().await;
    assert_eq!(
        env.open_ids("sim-1"),
        env.truth("sim-1"),
        "N = {n}: the mirror equals the simulator's open set"
    );
    assert_eq!(
        env.open_ids("sim-1").len() as u64,
        n,
        "N = {n}: noise tickets are not mirrored"
    );
    let pages = n.div_ceil(250).max(1);
    // per_state: Avoin holds all N; Vastaanotettu and Odottaa are empty but cost one call each.
    let expected = if per_state { pages + 2 } else { pages };
    assert_eq!(
        env.selaa_calls(),
        expected,
        "N = {n}, per_state = {per_state}: selaa calls"
    );
    assert_eq!(env.sim().total_calls(), expected, "N = {n}: no other calls");
    assert_eq!(
        reports[0].api_calls, expected,
        "N = {n}: the run meters what it sent"
    );
    let metered = env.count("SELECT sum(calls) FROM api_calls WHERE account = 'sim-1'");
    assert_eq!(metered as u64, expected, "N = {n}: api_calls table");
}

#[tokio::test]
async fn every_open_ticket_is_mirrored_at_ceil_n_over_250_calls() {
    for n in [0, 1, 249, 250, 251, 1000] {
        mirrors_all_at_minimum_calls(n, false).await;
    }
}

#[tokio::test]
async fn per_state_sweeps_cost_the_sum_over_states() {
    for n in [0, 1, 249, 250, 251, 1000] {
        mirrors_all_at_minimum_calls(n, true).await;
    }
}

#[tokio::test]
async fn accepted_and_held_tickets_stay_and_a_done_one_leaves() {
    let env = Setup::tickets(10).start().await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    env.patch("sim-1", ids[0], json!({"Tila": "Vastaanotettu"}));
    env.patch("sim-1", ids[1], json!({"Tila": "Odottaa"}));
    env.patch("sim-1", ids[2], json!({"Tila": "Tehty"}));
    let (selaa, gets) = (env.selaa_calls(), env.get_calls());
    let r = env.sync_ok().await;
    assert_eq!(env.open_ids("sim-1"), env.truth("sim-1"));
    assert_eq!(env.open_ids("sim-1").len(), 9);
    assert_eq!((r[0].counts.changed, r[0].counts.gone), (2, 1));
    assert_eq!(env.selaa_calls() - selaa, 1, "one page");
    assert_eq!(
        env.get_calls() - gets,
        1,
        "one fetch for the ticket that left, none for the others"
    );
    let (state, open, reason): (String, bool, String) = env
        .db()
        .query_row(
            "SELECT state, open, left_reason FROM tickets WHERE id = ?1",
            [ids[2]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), open, reason.as_str()),
        ("Tehty", false, "state")
    );
    let held: String = env
        .db()
        .query_row("SELECT state FROM tickets WHERE id = ?1", [ids[1]], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(held, "Odottaa");
}

#[tokio::test]
async fn an_unchanged_resync_writes_no_ticket_rows_and_no_history() {
    let env = Setup::tickets(600).accounts(2).start().await;
    env.sync_ok().await;
    let history = env.count("SELECT count(*) FROM ticket_changes");
    assert_eq!(history, 1200, "one 'appeared' row per ticket");
    let before = env.snapshot();
    env.watch_ticket_writes();
    let reports = env.sync_ok().await;
    assert_eq!(env.ticket_writes(), 0, "no INSERT/UPDATE/DELETE on tickets");
    assert_eq!(env.count("SELECT count(*) FROM ticket_changes"), history);
    assert_eq!(env.snapshot(), before);
    assert!(
        reports
            .iter()
            .all(|r| r.counts.rows_written == 0 && r.api_calls == 3)
    );
}

#[tokio::test]
async fn a_changed_ticket_gets_a_history_row_naming_its_fields() {
    let env = Setup::tickets(5).start().await;
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[3];
    env.patch(
        "sim-1",
        id,
        json!({"Otsikko": "Vuoto pahentunut", "Kiireellisyys": "Hätätapaus"}),
    );
    env.watch_ticket_writes();
    let r = env.sync_ok().await;
    assert_eq!(r[0].counts.changed, 1);
    assert_eq!(env.ticket_writes(), 1, "only the changed ticket is written");
    let (kind, fields): (String, String) = env
        .db()
        .query_row("SELECT kind, fields FROM ticket_changes WHERE ticket_id = ?1 ORDER BY seq DESC LIMIT 1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(kind, "changed");
    let fields: Vec<String> = serde_json::from_str(&fields).unwrap();
    assert!(
        fields.contains(&"title".to_owned()) && fields.contains(&"urgency".to_owned()),
        "{fields:?}"
    );
    let title: String = env
        .db()
        .query_row("SELECT title FROM tickets WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(title, "Vuoto pahentunut");
}

#[tokio::test]
async fn closed_reassigned_and_deleted_tickets_are_marked_left_never_deleted() {
    let env = Setup::tickets(6).start().await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    env.patch("sim-1", ids[0], json!({"Tila": "Valmis"}));
    env.patch("sim-1", ids[1], json!({"TyonsuorittajaId": 5020}));
    assert!(env.sim().delete("sim-1", ids[2]));
    let r = env.sync_ok().await;
    assert_eq!(r[0].counts.gone, 3);
    assert_eq!(
        env.count("SELECT count(*) FROM tickets"),
        6,
        "nothing deleted"
    );
    let reasons: Vec<(i64, String, String)> = {
        let db = env.db();
        let mut s = db
            .prepare("SELECT id, left_reason, state FROM tickets WHERE open = 0 ORDER BY id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        reasons,
        vec![
            (ids[0], "state".into(), "Valmis".into()),
            (ids[1], "reassigned".into(), "Avoin".into()),
            (ids[2], "deleted".into(), "Avoin".into())
        ]
    );
    let left = env.count("SELECT count(*) FROM ticket_changes WHERE kind = 'left'");
    assert_eq!(left, 3);
    // A ticket that comes back is mirrored again, with history.
    env.patch("sim-1", ids[1], json!({"TyonsuorittajaId": 4711}));
    let r = env.sync_ok().await;
    assert_eq!(r[0].counts.new, 1);
    assert_eq!(env.open_ids("sim-1"), env.truth("sim-1"));
    assert_eq!(
        env.count("SELECT count(*) FROM ticket_changes WHERE kind = 'returned'"),
        1
    );
}

#[tokio::test]
async fn a_ticket_inserted_between_pages_is_mirrored_and_nothing_is_marked_left() {
    let env = Setup::tickets(600).start().await;
    env.faults(json!({"drift": "insert"}));
    let r = env.sync_ok().await;
    assert_eq!(r[0].sweeps, 2, "Total moved: swept again");
    assert_eq!(env.open_ids("sim-1"), env.truth("sim-1"));
    assert_eq!(env.open_ids("sim-1").len(), 601);
    assert_eq!(
        env.count("SELECT count(*) FROM ticket_changes WHERE kind = 'left'"),
        0
    );
    assert_eq!(env.get_calls(), 0);
    assert_eq!(env.count("SELECT sweeps FROM sync_runs"), 2);
}

#[tokio::test]
async fn a_ticket_skipped_by_offset_paging_stays_open_and_the_closed_one_leaves() {
    let env = Setup::tickets(600).start().await;
    env.sync_ok().await;
    // Between page 1 and page 2: the first listed ticket closes and one is added at the end.
    // Total stays 600, so page 2 starts one ticket late and skips one.
    let first = env.open_ids("sim-1")[0];
    env.faults(json!({"drift": "swap"}));
    let (selaa, gets) = (env.selaa_calls(), env.get_calls());
    let r = env.sync_ok().await;
    assert_eq!(r[0].sweeps, 1, "Total did not move");
    assert_eq!(env.selaa_calls() - selaa, 3);
    assert_eq!(
        env.get_calls() - gets,
        1,
        "one fetch, for the skipped ticket"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM ticket_changes WHERE kind = 'left'"),
        0,
        "the skipped ticket is not marked left"
    );
    let truth = env.truth("sim-1");
    let mirrored = env.open_ids("sim-1");
    assert!(
        truth.iter().all(|id| mirrored.contains(id)),
        "every open ticket is mirrored, the new one included"
    );
    // The ticket that closed after page 1 was read is caught by the next poll.
    let r = env.sync_ok().await;
    assert_eq!(r[0].counts.gone, 1);
    assert_eq!(env.open_ids("sim-1"), env.truth("sim-1"));
    let state: String = env
        .db()
        .query_row("SELECT state FROM tickets WHERE id = ?1", [first], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(state, "Tehty");
}

#[tokio::test]
async fn a_list_that_keeps_moving_fails_the_run_without_applying_anything() {
    let env = Setup::tickets(600).start().await;
    env.sync_ok().await;
    let first = env.open_ids("sim-1")[0];
    env.patch("sim-1", first, json!({"Otsikko": "muuttunut"}));
    let before = env.snapshot();
    // max_resweeps = 2 by default: three sweeps, each hit by an insertion between its pages.
    env.faults(json!({"drift": "insert", "drift_sweeps": 3}));
    let r = env.sync().await;
    let err = format!("{:#}", r[0].error.as_ref().expect("the run fails"));
    assert!(
        err.contains("kept moving") && err.contains("3 sweeps"),
        "{err}"
    );
    assert_eq!(r[0].sweeps, 3);
    assert_eq!(
        env.snapshot(),
        before,
        "nothing applied: neither the change nor the new tickets"
    );
    // The list is calm again: the next run applies everything.
    let r = env.sync_ok().await;
    assert_eq!((r[0].counts.new, r[0].counts.changed), (3, 1));
    assert_eq!(env.open_ids("sim-1"), env.truth("sim-1"));
}

#[tokio::test]
async fn a_transient_5xx_is_retried_and_the_sync_succeeds() {
    let env = Setup::tickets(300).start().await;
    env.faults(json!({"error_next": 1}));
    let r = env.sync_ok().await;
    assert_eq!(env.open_ids("sim-1").len(), 300);
    assert_eq!(r[0].api_calls, 3, "two pages and one retry, all metered");
    assert_eq!(env.selaa_calls(), 3);
}

#[tokio::test]
async fn a_429_waits_at_least_retry_after() {
    let env = Setup::tickets(10).start().await;
    env.faults(json!({"rate_limit_next": 1, "retry_after_secs": 1}));
    let started = Instant::now();
    env.sync_ok().await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(env.selaa_calls(), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_fails_the_sync_at_once_and_the_next_one_succeeds() {
    let env = Setup::tickets(10).start().await;
    env.faults(json!({"rate_limit_next": 1, "retry_after_secs": 3600}));
    let started = Instant::now();
    let reports = env.sync().await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited {:?} on a Retry-After of an hour",
        started.elapsed()
    );
    let err = format!(
        "{:#}",
        reports[0]
            .error
            .as_ref()
            .expect("the sync fails this cycle")
    );
    assert!(
        err.contains("sim-1") && err.contains("HTTP 429, Retry-After 3600 s"),
        "{err}"
    );
    assert_eq!(env.selaa_calls(), 1, "not tried again in this cycle");
    env.sync_ok().await;
    assert_eq!(env.open_ids("sim-1").len(), 10, "the next cycle syncs");
}

#[tokio::test]
async fn a_permanent_500_fails_the_run_leaves_the_store_unchanged_and_other_accounts_sync() {
    let env = Setup::tickets(300).accounts(3).start().await;
    env.sync_ok().await;
    env.patch(
        "sim-2",
        env.open_ids("sim-2")[0],
        json!({"Otsikko": "muuttunut"}),
    );
    env.patch(
        "sim-1",
        env.open_ids("sim-1")[0],
        json!({"Otsikko": "muuttunut"}),
    );
    let before: Vec<_> = env
        .snapshot()
        .into_iter()
        .filter(|r| r[0] == "sim-2")
        .collect();
    env.faults(json!({"error_rate": 1.0, "only_account": "sim-2"}));
    let reports = env.sync().await;
    assert!(reports[0].ok() && reports[2].ok(), "sim-1 and sim-3 sync");
    assert_eq!(reports[0].counts.changed, 1);
    let err = format!("{:#}", reports[1].error.as_ref().expect("sim-2 fails"));
    assert!(err.contains("sim-2") && err.contains("500"), "{err}");
    assert_eq!(reports[1].api_calls, 3, "bounded: max_attempts = 3");
    let after: Vec<_> = env
        .snapshot()
        .into_iter()
        .filter(|r| r[0] == "sim-2")
        .collect();
    assert_eq!(before, after, "sim-2's mirror is unchanged");
    let outcome: (String, String) = env
        .db()
        .query_row(
            "SELECT outcome, error FROM sync_runs WHERE account = 'sim-2' ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(outcome.0, "failed");
    assert!(outcome.1.contains("500"));
}

#[tokio::test]
async fn a_sweep_that_fails_on_a_later_page_changes_nothing() {
    let env = Setup::tickets(600).start().await;
    env.sync_ok().await;
    let first = env.open_ids("sim-1")[0];
    env.patch(
        "sim-1",
        first,
        json!({"Otsikko": "muuttunut ensimmäisellä sivulla"}),
    );
    let before = env.snapshot();
    env.watch_ticket_writes();
    // Page 1 answers, every later call fails.
    env.faults(json!({"error_from_call": env.sim().total_calls() + 2}));
    let r = env.sync().await;
    assert!(!r[0].ok());
    assert_eq!(env.ticket_writes(), 0);
    assert_eq!(env.snapshot(), before);
}

#[tokio::test]
async fn wrong_password_is_one_clear_error_without_retries() {
    let env = Setup::tickets(5).accounts(2).start().await;
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replacen("sim-password", "väärä-salasana-123", 1);
    std::fs::write(env.config_path(), text).unwrap();
    let (code, out, err) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 1);
    let all = format!("{out}{err}");
    assert!(
        all.contains("sim-1") && all.contains("credentials"),
        "{all}"
    );
    assert!(
        !all.contains("väärä-salasana-123"),
        "the password never appears: {all}"
    );
    assert!(out.contains("sim-2: ok"), "the other account syncs: {out}");
    assert_eq!(env.sim().total_calls(), 2, "one call each, no retry on 403");
}

#[tokio::test]
async fn malformed_json_is_a_clear_error_and_the_store_is_unchanged() {
    let env = Setup::tickets(5).start().await;
    env.sync_ok().await;
    let before = env.snapshot();
    env.faults(json!({"malformed_rate": 1.0}));
    let r = env.sync().await;
    let err = format!("{:#}", r[0].error.as_ref().expect("fails"));
    assert!(
        err.contains("sim-1") && err.contains("invalid JSON"),
        "{err}"
    );
    assert_eq!(env.snapshot(), before);
}

#[tokio::test]
async fn unknown_fields_are_kept_and_integer_states_and_metadata_totals_work() {
    let env = Setup::tickets(300).start().await;
    env.faults(json!({"extra_fields": true, "int_states": true, "meta_envelope": true}));
    env.sync_ok().await;
    assert_eq!(env.open_ids("sim-1"), env.truth("sim-1"));
    assert_eq!(
        env.selaa_calls(),
        2,
        "the total inside metadata ends paging"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM tickets WHERE state = 'Avoin'"),
        300,
        "integer states stored as names"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM tickets WHERE raw_json LIKE '%SimUusiKentta%'"),
        300
    );
    // Back to names and no extra fields: the raw JSON changed, so rows are refreshed, but the
    // state did not change, so no history names the state.
    env.faults(json!({"int_states": false}));
    env.sync_ok().await;
    assert_eq!(
        env.count("SELECT count(*) FROM ticket_changes WHERE fields LIKE '%\"state\"%'"),
        0
    );
}

#[tokio::test]
async fn extra_filter_fields_reach_the_selaa_body() {
    // The simulator ignores filter fields it does not know; the call still succeeds.
    let env = Setup::tickets(3)
        .account_toml("[accounts.extra_filter]\nKustannuspaikkaId = 120")
        .start()
        .await;
    env.sync_ok().await;
    assert_eq!(env.open_ids("sim-1").len(), 3);
}

#[tokio::test]
async fn a_killed_run_is_closed_as_interrupted_by_the_next_one() {
    let env = Setup::tickets(3).start().await;
    {
        let mut store = huoltosync::store::Store::open(&env.config.store.path).unwrap();
        store
            .runs()
            .begin_run("sim-1", "2026-01-01T00:00:00.000Z", "poll")
            .unwrap();
    }
    env.sync_ok().await;
    assert_eq!(
        env.count("SELECT count(*) FROM sync_runs WHERE outcome = 'interrupted'"),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM sync_runs WHERE outcome = 'ok'"),
        1
    );
}

#[tokio::test]
async fn the_client_side_throttle_spaces_the_calls() {
    // 10 calls a second: five pages need at least 0.4 s after the first.
    let env = Setup::tickets(1001).tampuuri_toml("").start().await;
    let text = std::fs::read_to_string(env.config_path()).unwrap().replace(
        "max_requests_per_second = 0",
        "max_requests_per_second = 10",
    );
    std::fs::write(env.config_path(), text).unwrap();
    let config = huoltosync::config::Config::load(&env.config_path())
        .unwrap()
        .config;
    let api = huoltosync::tampuuri::Api::new(&config).unwrap();
    let started = Instant::now();
    let reports = huoltosync::engine::sync::sync_all(&config, &api).await;
    assert!(reports[0].ok());
    assert_eq!(reports[0].api_calls, 5);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_dropped_connection_on_a_read_is_retried() {
    let env = Setup::tickets(300).start().await;
    env.faults(json!({"drop_next": 1}));
    let r = env.sync_ok().await;
    assert_eq!(env.open_ids("sim-1").len(), 300);
    assert_eq!(r[0].api_calls, 3);
}

#[tokio::test]
async fn a_timeout_is_retried_then_fails_clearly_with_the_store_unchanged() {
    let env = Setup::tickets(3)
        .tampuuri_toml("timeout_secs = 1")
        .start()
        .await;
    env.sync_ok().await;
    let before = env.snapshot();
    env.faults(json!({"latency_ms": 1500}));
    let r = env.sync().await;
    let err = format!("{:#}", r[0].error.as_ref().expect("times out"));
    assert!(err.contains("sim-1") && err.contains("timed out"), "{err}");
    assert_eq!(r[0].api_calls, 3, "max_attempts = 3");
    assert_eq!(env.snapshot(), before);
}

#[tokio::test]
async fn when_every_ticket_changes_at_once_each_is_recorded_once() {
    // More changed tickets than one apply chunk (1 000).
    let env = Setup::tickets(1200).start().await;
    env.sync_ok().await;
    env.faults(json!({"extra_fields": true}));
    let r = env.sync_ok().await;
    assert_eq!(
        (r[0].counts.changed, r[0].counts.rows_written),
        (1200, 1200)
    );
    assert_eq!(env.count("SELECT count(*) FROM ticket_changes WHERE kind = 'changed' AND fields LIKE '%SimUusiKentta%'"), 1200);
    assert_eq!(
        env.count("SELECT count(DISTINCT ticket_id) FROM ticket_changes WHERE kind = 'changed'"),
        1200
    );
}
