//! `check-config --online` as the first-contact report: what the server really does, learned
//! with one call per account, and metered like any other call.

use serde_json::json;

use crate::helpers::Setup;

fn line<'a>(out: &'a str, start: &str) -> &'a str {
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{out}"))
}

#[tokio::test]
async fn the_online_check_reports_page_size_envelope_states_dates_and_unknown_fields() {
    let env = Setup::tickets(600).start().await;
    env.faults(json!({"page_cap": 100, "int_states": true, "extra_fields": true}));
    let (code, out, err) = env.cli(&["check-config", "--online"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("sim-1: credentials work; 600 unfinished tickets"),
        "{out}"
    );
    assert_eq!(
        line(&out, "page size:"),
        "page size: 100 (asked 250): the server serves fewer than asked; sweeps page by 100, 6 calls a poll for 600 tickets"
    );
    assert_eq!(line(&out, "envelope:"), "envelope: Total at the top level");
    assert_eq!(
        line(&out, "Tila list:"),
        "Tila list: accepted, and the listed tickets are all in the states asked"
    );
    assert!(
        line(&out, "states:").starts_with("states: as numbers (1"),
        "{out}"
    );
    assert!(
        line(&out, "dates:").starts_with("dates: ISO 8601 with a UTC offset, e.g. 20")
            && !line(&out, "dates:").contains(';'),
        "{out}"
    );
    assert_eq!(
        line(&out, "ticket fields the mirror does not read"),
        "ticket fields the mirror does not read (kept in raw_json): Laskutettava, SimUusiKentta"
    );
    assert_eq!(env.sim().total_calls(), 1, "one call learned all that");
    // No store yet: the call is reported, and no store is created by a check.
    assert!(
        line(&out, "calls made:").contains("1 (not metered: no store yet"),
        "{out}"
    );
    assert!(!env.config.store.path.exists());
}

#[tokio::test]
async fn the_online_check_meters_its_calls_in_an_existing_store() {
    let env = Setup::tickets(5).start().await;
    env.sync_ok().await;
    let metered = || env.count("SELECT sum(calls) FROM api_calls WHERE account = 'sim-1'");
    let before = metered();
    let (code, out, _) = env.cli(&["check-config", "--online"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "calls made:").contains("1 (metered in the store)"),
        "{out}"
    );
    assert_eq!(metered(), before + 1);
}

#[tokio::test]
async fn a_server_refusing_a_tila_list_gets_a_per_state_recommendation() {
    let env = Setup::tickets(40).start().await;
    env.faults(json!({"no_state_list": true}));
    let (code, out, _) = env.cli(&["check-config", "--online"]).await;
    assert_eq!(code, 0, "{out}");
    let tila = line(&out, "Tila list:");
    assert!(
        tila.starts_with("Tila list: refused (HTTP 400") && tila.contains("per_state"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "credentials work; {} unfinished tickets",
            env.truth("sim-1").len()
        )),
        "the count is the sum over the states: {out}"
    );
    assert_eq!(
        env.sim().total_calls(),
        4,
        "the refused list, then one call per state"
    );
}

#[tokio::test]
async fn without_total_the_check_says_so_and_takes_the_echoed_limit_as_page_size() {
    let env = Setup::tickets(600).start().await;
    env.faults(json!({"page_cap": 100, "no_total": true}));
    let (code, out, _) = env.cli(&["check-config", "--online"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "envelope:").starts_with("envelope: no Total"),
        "{out}"
    );
    assert_eq!(
        line(&out, "page size:"),
        "page size: 100 (asked 250; the server echoed Limit 100)"
    );
    assert!(out.contains("is unknown (no Total)"), "{out}");
}
