//! Writing fetched tickets into the mirror, on the store alone: one fetched ticket upserted
//! directly (new, changed, left, back, deleted), a sweep staged in a `Staging` that owns its
//! connection and applied once, and the purge's retention values passed as plain data.

use huoltosync::domain::model::{
    Departure, LeftReason, Reporter, Ticket, TicketState, content_hash,
};
use huoltosync::store::{ApplyCounts, Retention, RunTally, Staging, Store};
use huoltosync::tampuuri::changed_fields;

const ACCOUNT: &str = "sim-1";
const T1: &str = "2026-01-01T10:00:00.000Z";
const T2: &str = "2026-01-02T10:00:00.000Z";
const T3: &str = "2026-01-03T10:00:00.000Z";

/// A ticket as a fetch would bring it: its raw JSON names the state and the title.
fn ticket(id: i64, state: &str, title: &str) -> Ticket {
    let raw_json = serde_json::json!({
        "Id": id,
        "Tila": state,
        "Otsikko": title,
        "Ilmoittaja": {"Nimi": "Maija Meikäläinen"},
    })
    .to_string();
    Ticket {
        id,
        state: TicketState::from_name(state),
        title: Some(title.to_owned()),
        description: None,
        address: None,
        extra_info: None,
        assignee_id: Some(55),
        cost_centre_id: None,
        space_id: None,
        room_id: None,
        parent_id: None,
        urgency: None,
        access: None,
        fault_class: None,
        earliest: None,
        latest: None,
        reporter: Reporter {
            name: Some("Maija Meikäläinen".into()),
            phone: None,
            email: None,
        },
        remote_created: None,
        remote_modified: None,
        content_hash: content_hash(&raw_json),
        raw_json,
    }
}

fn counts(new: u64, changed: u64, gone: u64, rows_written: u64) -> ApplyCounts {
    ApplyCounts {
        new,
        changed,
        gone,
        rows_written,
    }
}

/// `(open, state, title, left_reason, left_at, last_changed)` of a mirrored ticket.
type Row = (
    bool,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

fn row(store: &Store, id: i64) -> Row {
    store
        .connection()
        .query_row(
            "SELECT open, state, title, left_reason, left_at, last_changed FROM tickets
             WHERE account = ?1 AND id = ?2",
            rusqlite::params![ACCOUNT, id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .unwrap()
}

/// `(kind, fields, old_state, new_state, run_id)` of every history row of ticket `id`, in order.
type History = Vec<(
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
)>;

fn history(store: &Store, id: i64) -> History {
    let db = store.connection();
    let mut stmt = db
        .prepare(
            "SELECT kind, fields, old_state, new_state, run_id FROM ticket_changes
             WHERE account = ?1 AND ticket_id = ?2 ORDER BY rowid",
        )
        .unwrap();
    stmt.query_map(rusqlite::params![ACCOUNT, id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn h(kind: &str, fields: Option<&str>, old: Option<&str>, new: Option<&str>) -> History {
    vec![(
        kind.into(),
        fields.map(Into::into),
        old.map(Into::into),
        new.map(Into::into),
        None,
    )]
}

/// Tables the connection holds in its TEMP schema.
fn temp_tables(store: &Store) -> i64 {
    store
        .connection()
        .query_row("SELECT count(*) FROM temp.sqlite_master", [], |r| r.get(0))
        .unwrap()
}

fn open_store() -> (tempfile::TempDir, std::path::PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open(&path).unwrap();
    (dir, path, store)
}

#[test]
fn a_fetched_ticket_is_upserted_directly_with_its_history() {
    let (_dir, _path, mut store) = open_store();

    // New: inserted open, `appeared`.
    let n = store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(7, "Avoin", "Vuotava hana"),
            Ok(()),
            T1,
            changed_fields,
        )
        .unwrap();
    assert_eq!(n, counts(1, 0, 0, 1));
    assert_eq!(
        row(&store, 7),
        (
            true,
            "Avoin".into(),
            Some("Vuotava hana".into()),
            None,
            None,
            T1.into()
        )
    );
    let mut want = h("appeared", None, None, Some("Avoin"));
    assert_eq!(history(&store, 7), want);

    // The same content again: nothing written, no history.
    let n = store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(7, "Avoin", "Vuotava hana"),
            Ok(()),
            T2,
            changed_fields,
        )
        .unwrap();
    assert_eq!(n, ApplyCounts::default());
    assert_eq!(
        row(&store, 7).5,
        T1,
        "an unchanged ticket's row is not written"
    );
    assert_eq!(history(&store, 7), want);

    // Changed: updated, `changed` naming the fields that changed.
    let n = store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(7, "Vastaanotettu", "Vuotava keittiön hana"),
            Ok(()),
            T2,
            changed_fields,
        )
        .unwrap();
    assert_eq!(n, counts(0, 1, 0, 1));
    assert_eq!(
        row(&store, 7),
        (
            true,
            "Vastaanotettu".into(),
            Some("Vuotava keittiön hana".into()),
            None,
            None,
            T2.into()
        )
    );
    want.extend(h(
        "changed",
        Some(r#"["state","title"]"#),
        Some("Avoin"),
        Some("Vastaanotettu"),
    ));
    assert_eq!(history(&store, 7), want);

    // Left: out of the open set with its reason and new content, `left`.
    let n = store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(7, "Tehty", "Vuotava keittiön hana"),
            Err(LeftReason::State),
            T3,
            changed_fields,
        )
        .unwrap();
    assert_eq!(n, counts(0, 0, 1, 1));
    assert_eq!(
        row(&store, 7),
        (
            false,
            "Tehty".into(),
            Some("Vuotava keittiön hana".into()),
            Some("state".into()),
            Some(T3.into()),
            T3.into()
        )
    );
    want.extend(h(
        "left",
        Some(r#"["state"]"#),
        Some("Vastaanotettu"),
        Some("Tehty"),
    ));
    assert_eq!(history(&store, 7), want);

    // The same departure again changes nothing.
    let n = store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(7, "Tehty", "Vuotava keittiön hana"),
            Err(LeftReason::State),
            T3,
            changed_fields,
        )
        .unwrap();
    assert_eq!(n, ApplyCounts::default());
    assert_eq!(history(&store, 7), want);

    // Back in the open set: `returned`, the departure cleared.
    let n = store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(7, "Avoin", "Vuotava keittiön hana"),
            Ok(()),
            T3,
            changed_fields,
        )
        .unwrap();
    assert_eq!(n, counts(1, 0, 0, 1));
    assert!(row(&store, 7).0, "back in the open set");
    assert_eq!(row(&store, 7).3, None);
    want.extend(h(
        "returned",
        Some(r#"["state"]"#),
        Some("Tehty"),
        Some("Avoin"),
    ));
    assert_eq!(history(&store, 7), want);

    // Deleted in Tampuuri: left, no new state.
    let n = store.mirror().record_deleted(ACCOUNT, 7, T3).unwrap();
    assert_eq!(n, counts(0, 0, 1, 1));
    assert_eq!(row(&store, 7).3.as_deref(), Some("deleted"));
    want.extend(h("left", Some("[]"), Some("Avoin"), None));
    assert_eq!(history(&store, 7), want);

    // A ticket the mirror never held, fetched as not ours, is not written.
    let n = store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(8, "Avoin", "Ovi"),
            Err(LeftReason::Reassigned),
            T3,
            changed_fields,
        )
        .unwrap();
    assert_eq!(n, ApplyCounts::default());
    assert!(history(&store, 8).is_empty());

    // None of it went through a sweep's staging tables.
    assert_eq!(
        temp_tables(&store),
        0,
        "no TEMP table on the store's connection"
    );
}

#[test]
fn a_ticket_that_had_left_is_relabelled_when_fetched_again_for_another_reason() {
    let (_dir, _path, mut store) = open_store();
    store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(9, "Avoin", "Lukko"),
            Ok(()),
            T1,
            changed_fields,
        )
        .unwrap();
    store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(9, "Avoin", "Lukko"),
            Err(LeftReason::Reassigned),
            T2,
            changed_fields,
        )
        .unwrap();
    let n = store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(9, "Valmis", "Lukko"),
            Err(LeftReason::State),
            T3,
            changed_fields,
        )
        .unwrap();
    assert_eq!(n, counts(0, 0, 0, 1));
    let (open, state, _, reason, left_at, last_changed) = row(&store, 9);
    assert_eq!(
        (
            open,
            state.as_str(),
            reason.as_deref(),
            left_at.as_deref(),
            last_changed.as_str()
        ),
        (false, "Valmis", Some("state"), Some(T2), T3),
        "left_at stays when it left; the reason and content are the latest"
    );
    assert_eq!(
        history(&store, 9).last().unwrap(),
        &(
            "changed".into(),
            Some(r#"["state"]"#.into()),
            Some("Avoin".into()),
            Some("Valmis".into()),
            None
        )
    );
}

#[test]
fn a_staged_sweep_changes_nothing_until_it_is_applied_once() {
    let (_dir, path, mut store) = open_store();
    for (id, title) in [(1, "Hana"), (2, "Ovi"), (3, "Valo")] {
        store
            .mirror()
            .upsert_fetched(
                ACCOUNT,
                ticket(id, "Avoin", title),
                Ok(()),
                T1,
                changed_fields,
            )
            .unwrap();
    }

    let run = store.runs().begin_run(ACCOUNT, T2, "poll").unwrap();
    let before: i64 = store
        .connection()
        .query_row("SELECT total_changes()", [], |r| r.get(0))
        .unwrap();
    let mut staging = Staging::begin(Store::open(&path).unwrap(), ACCOUNT, changed_fields).unwrap();
    assert_eq!(staging.account(), ACCOUNT);
    // A page that will be forgotten: the list moved, the sweep starts again.
    staging
        .stage_page(&[ticket(1, "Avoin", "Hana (vanha sivu)")])
        .unwrap();
    staging.restart().unwrap();
    assert_eq!(
        staging.seen_count().unwrap(),
        0,
        "restart forgets the pages"
    );
    // 1 unchanged, 2 changed, 4 new; 3 not listed.
    staging
        .stage_page(&[
            ticket(1, "Avoin", "Hana"),
            ticket(2, "Avoin", "Ovi jumissa"),
        ])
        .unwrap();
    staging.stage_page(&[ticket(4, "Avoin", "Ikkuna")]).unwrap();
    assert_eq!(staging.seen_count().unwrap(), 3);
    assert_eq!(staging.unseen_open().unwrap(), vec![3]);

    // Staging wrote nothing the store's other connections see.
    assert_eq!(row(&store, 2).2.as_deref(), Some("Ovi"));
    assert!(history(&store, 4).is_empty());
    assert_eq!(temp_tables(&store), 0);

    // The by-id check found 3 done.
    let n = staging
        .apply(
            Some(run),
            T2,
            &[],
            &[Departure::Left {
                ticket: Box::new(ticket(3, "Tehty", "Valo")),
                reason: LeftReason::State,
            }],
        )
        .unwrap();
    assert_eq!(n, counts(1, 1, 1, 3));
    assert_eq!(
        row(&store, 1).5,
        T1,
        "an unchanged ticket's row is not written"
    );
    assert_eq!(row(&store, 2).2.as_deref(), Some("Ovi jumissa"));
    assert_eq!(
        history(&store, 2).last().unwrap(),
        &(
            "changed".into(),
            Some(r#"["title"]"#.into()),
            Some("Avoin".into()),
            Some("Avoin".into()),
            Some(run)
        )
    );
    assert_eq!(history(&store, 4)[0].0, "appeared");
    assert_eq!(history(&store, 4)[0].4, Some(run));
    assert_eq!(
        (row(&store, 3).0, row(&store, 3).3.as_deref()),
        (false, Some("state"))
    );
    let after: i64 = store
        .connection()
        .query_row("SELECT total_changes()", [], |r| r.get(0))
        .unwrap();
    assert_eq!(before, after, "the store's own connection wrote nothing");
}

#[test]
fn a_ticket_the_by_id_check_found_still_open_is_upserted_with_the_sweep() {
    let (_dir, path, mut store) = open_store();
    store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(5, "Avoin", "Hana"),
            Ok(()),
            T1,
            changed_fields,
        )
        .unwrap();
    let run = store.runs().begin_run(ACCOUNT, T2, "poll").unwrap();
    let staging = Staging::begin(Store::open(&path).unwrap(), ACCOUNT, changed_fields).unwrap();
    assert_eq!(staging.unseen_open().unwrap(), vec![5]);
    let n = staging
        .apply(Some(run), T2, &[ticket(5, "Odottaa", "Hana")], &[])
        .unwrap();
    assert_eq!(n, counts(0, 1, 0, 1));
    assert_eq!(row(&store, 5).1, "Odottaa");
    assert_eq!(history(&store, 5).last().unwrap().0, "changed");
}

/// `(outcome, seen_count, new_count, changed_count, api_calls)` of sync run `id`.
fn run_row(store: &Store, id: i64) -> (String, i64, i64, i64, i64) {
    store
        .connection()
        .query_row(
            "SELECT outcome, seen_count, new_count, changed_count, api_calls FROM sync_runs WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
}

#[test]
fn a_sweep_and_its_finished_run_commit_together_so_a_kill_leaves_both_or_neither() {
    let (_dir, path, mut store) = open_store();
    store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(1, "Avoin", "Hana"),
            Ok(()),
            T1,
            changed_fields,
        )
        .unwrap();
    let tally = RunTally {
        sweeps: 1,
        pages: 1,
        api_calls: 2,
    };

    // Both: the apply commits the changes with the run finished `ok` and counted. A process
    // killed right after that commit leaves the run as it is; the next run of the account
    // (which closes runs a killed process left `running`) does not call it interrupted.
    let run = store.runs().begin_run(ACCOUNT, T2, "poll").unwrap();
    let mut staging = Staging::begin(Store::open(&path).unwrap(), ACCOUNT, changed_fields).unwrap();
    staging
        .stage_page(&[ticket(1, "Avoin", "Hana vuotaa"), ticket(2, "Avoin", "Ovi")])
        .unwrap();
    let n = staging.apply_finishing(run, tally, T2, &[], &[]).unwrap();
    assert_eq!(n, counts(1, 1, 0, 2));
    // (the kill: nothing else is written for this run)
    store.runs().begin_run(ACCOUNT, T3, "poll").unwrap();
    assert_eq!(run_row(&store, run), ("ok".into(), 2, 1, 1, 2));
    assert_eq!(row(&store, 1).2.as_deref(), Some("Hana vuotaa"));

    // Neither: when the run's row cannot be finished (the kill before the commit, played by a
    // trigger that aborts it), the sweep's changes roll back with it.
    let run = store.runs().begin_run(ACCOUNT, T3, "poll").unwrap();
    store
        .connection()
        .execute_batch(
            "CREATE TRIGGER test_kill BEFORE UPDATE OF outcome ON sync_runs
             WHEN NEW.outcome = 'ok' BEGIN SELECT RAISE(ABORT, 'killed'); END;",
        )
        .unwrap();
    let mut staging = Staging::begin(Store::open(&path).unwrap(), ACCOUNT, changed_fields).unwrap();
    staging
        .stage_page(&[
            ticket(1, "Avoin", "Hana korjattu"),
            ticket(3, "Avoin", "Valo"),
        ])
        .unwrap();
    let err = staging
        .apply_finishing(run, tally, T3, &[], &[])
        .unwrap_err();
    assert!(format!("{err:#}").contains("killed"), "{err:#}");
    assert_eq!(row(&store, 1).2.as_deref(), Some("Hana vuotaa"));
    assert!(history(&store, 3).is_empty(), "ticket 3 was not written");
    assert_eq!(run_row(&store, run).0, "running");
}

#[test]
fn a_sweep_that_is_dropped_unapplied_changes_nothing_and_sweeps_do_not_share_pages() {
    let (_dir, path, mut store) = open_store();
    store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(1, "Avoin", "Hana"),
            Ok(()),
            T1,
            changed_fields,
        )
        .unwrap();
    let mut other = Staging::begin(Store::open(&path).unwrap(), "sim-2", changed_fields).unwrap();
    other
        .stage_page(&[ticket(1, "Avoin", "Toisen tili")])
        .unwrap();
    {
        let mut failed =
            Staging::begin(Store::open(&path).unwrap(), ACCOUNT, changed_fields).unwrap();
        failed
            .stage_page(&[ticket(1, "Avoin", "Muuttunut")])
            .unwrap();
        failed.stage_page(&[ticket(2, "Avoin", "Uusi")]).unwrap();
        assert_eq!(failed.seen_count().unwrap(), 2, "its own pages only");
        // The sweep fails here (say, the deadline): the staging is dropped.
    }
    assert_eq!(row(&store, 1).2.as_deref(), Some("Hana"));
    let tickets: i64 = store
        .connection()
        .query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tickets, 1);
    assert_eq!(
        other.seen_count().unwrap(),
        1,
        "another sweep keeps its pages"
    );
    let n = other.apply(None, T2, &[], &[]).unwrap();
    assert_eq!(n, counts(1, 0, 0, 1), "sim-2's ticket 1 is its own");
}

#[test]
fn the_purge_erases_the_personal_fields_it_is_given() {
    let (_dir, _path, mut store) = open_store();
    store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(1, "Avoin", "Hana"),
            Ok(()),
            T1,
            changed_fields,
        )
        .unwrap();
    store
        .mirror()
        .upsert_fetched(
            ACCOUNT,
            ticket(1, "Tehty", "Hana"),
            Err(LeftReason::State),
            T1,
            changed_fields,
        )
        .unwrap();
    let retention = Retention {
        personal_days: 30,
        sync_runs_days: 400,
        api_calls_days: 400,
        outbox_days: 400,
        webhook_events_days: 400,
        feed_days: 400,
        idempotency_keys: std::time::Duration::from_secs(400 * 86_400),
        // A name with a quote is a JSON path bound as a parameter, never SQL.
        personal_fields: &["Ilmoittaja", "Tilaaja') --"],
        booking_personal_fields: &[],
    };
    let now = chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let r = store.purge(&retention, now, false).unwrap();
    assert_eq!(r.tickets_erased, 1);
    let raw: String = store
        .connection()
        .query_row("SELECT raw_json FROM tickets WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert!(raw.get("Ilmoittaja").is_none(), "{raw}");
    assert_eq!(raw["Otsikko"], "Hana", "other fields stay: {raw}");
}
