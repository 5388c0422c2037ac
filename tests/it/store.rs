//! The store's life: migrations with a copy first, and refusing a newer schema.

use huoltosync::store::Store;

/// How many pre-migration copies lie beside the store.
fn backup_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".bak")
        })
        .count()
}

#[test]
fn a_migration_writes_a_copy_of_the_store_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        // A store as version 1 left it, with a ticket in it.
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(include_str!("../../sql/001_read_path.sql"))
            .unwrap();
        db.execute_batch(
            "INSERT INTO tickets (account, id, state, raw_json, content_hash, first_seen, last_changed, open)
             VALUES ('sim-1', 1001, 'Avoin', '{\"Id\":1001}', 1, 'x', 'x', 1);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let version: i64 = store
        .connection()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let latest = std::fs::read_dir(crate::helpers::repo().join("sql"))
        .unwrap()
        .filter(|e| {
            let n = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned();
            n.ends_with(".sql") && n.starts_with(|c: char| c.is_ascii_digit())
        })
        .count() as i64;
    assert_eq!(version, latest, "every migration in sql/ is applied");
    let backups: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("store.pre-v{latest}.")) && n.ends_with(".bak"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let copy = rusqlite::Connection::open(dir.path().join(&backups[0])).unwrap();
    let (n, v): (i64, i64) = copy
        .query_row(
            "SELECT (SELECT count(*) FROM tickets), (SELECT user_version FROM pragma_user_version)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (n, v),
        (1, 1),
        "the copy is the store as it was before the migration"
    );
    // Opening again migrates nothing and copies nothing.
    drop(store);
    Store::open(&path).unwrap();
    assert_eq!(backup_count(dir.path()), 1);
}

#[test]
fn a_fresh_store_needs_no_copy_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(Store::open(&path).unwrap());
    assert_eq!(backup_count(dir.path()), 0);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let err = format!("{:#}", Store::open(&path).err().expect("refused"));
    assert!(
        err.contains("schema version 99") && err.contains("newer"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    std::fs::write(
        &path,
        b"this is not sqlite, it is a text file with enough bytes to look like a header",
    )
    .unwrap();
    let err = format!("{:#}", Store::open(&path).err().expect("refused"));
    assert!(err.contains("store.db"), "{err}");
    assert!(err.contains("not an SQLite database"), "{err}");
}

/// A store as version 1 left it, with an `outbox` table in the way of migration 002.
fn v1_store_that_cannot_migrate(path: &std::path::Path) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(include_str!("../../sql/001_read_path.sql"))
        .unwrap();
    db.execute_batch("CREATE TABLE outbox (x); PRAGMA user_version = 1;")
        .unwrap();
}

#[test]
fn a_failing_migration_keeps_one_copy_and_names_its_file_not_its_sql() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    v1_store_that_cannot_migrate(&path);
    for attempt in 1..=3 {
        let err = format!("{:#}", Store::open(&path).err().expect("migration fails"));
        assert!(
            err.contains("store.db")
                && err.contains("sql/002_outbox.sql")
                && err.contains("line 4: table outbox already exists"),
            "attempt {attempt}: {err}"
        );
        assert!(
            !err.contains("CREATE") && err.len() < 400,
            "attempt {attempt}: the SQL text is not repeated: {err}"
        );
        assert_eq!(backup_count(dir.path()), 1, "attempt {attempt}");
    }
    // The copy is the store before the first attempt; no partial copy lies around.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("partial")), "{names:?}");
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1, "a failed migration changes nothing");
}

#[test]
fn a_store_with_a_corrupted_page_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    fill_and_corrupt(&path);
    let err = format!("{:#}", Store::open(&path).err().expect("refused"));
    assert!(err.contains("store.db") && err.contains("corrupt"), "{err}");
    assert!(Store::open_existing(&path).is_err());
}

/// A store with enough tickets for `tickets` to span pages; then its root page overwritten.
pub fn fill_and_corrupt(path: &std::path::Path) {
    {
        let store = Store::open(path).unwrap();
        let db = store.connection();
        for id in 0..400 {
            db.execute(
                "INSERT INTO tickets (account, id, state, raw_json, content_hash, first_seen, last_changed, open)
                 VALUES ('sim-1', ?1, 'Avoin', ?2, 1, 'x', 'x', 1)",
                rusqlite::params![id, format!("{{\"Id\":{id},\"Otsikko\":\"{}\"}}", "x".repeat(200))],
            )
            .unwrap();
        }
    }
    corrupt_table_root(path, "tickets");
}

/// Overwrites the root page of `table` with garbage (the store closed, its WAL checkpointed).
pub fn corrupt_table_root(path: &std::path::Path, table: &str) {
    let (page_size, root): (u64, u64) = {
        let db = rusqlite::Connection::open(path).unwrap();
        let root = db
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        (
            db.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap(),
            root,
        )
    };
    assert!(
        !std::path::Path::new(&format!("{}-wal", path.display())).exists(),
        "the WAL is checkpointed when the last connection closes"
    );
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start((root - 1) * page_size)).unwrap();
    f.write_all(&vec![0xa5; page_size as usize]).unwrap();
}

#[test]
fn a_missing_store_is_not_created_by_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nosuch").join("store.db");
    let err = format!("{:#}", Store::open_existing(&path).err().expect("refused"));
    assert!(
        err.contains(&format!("no store at {}", path.display())) && err.contains("run --once"),
        "{err}"
    );
    assert!(!dir.path().join("nosuch").exists());
}

#[tokio::test]
async fn a_full_disk_is_named_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = huoltosync::store::Handle::open(path.clone()).await.unwrap();
    let err = store
        .call(|s| {
            // The file may not grow: SQLite answers as it does when the disk is full.
            let db = s.connection();
            let pages: i64 = db.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            db.pragma_update(None, "max_page_count", pages)?;
            s.runs()
                .begin_run(&"x".repeat(200_000), "2026-01-01T00:00:00Z", "poll")
        })
        .await
        .expect_err("the disk is full");
    let err = format!("{err:#}");
    assert!(
        err.contains("store.db") && err.contains("the disk is full"),
        "{err}"
    );
}

#[test]
fn migration_016_fills_the_address_column_from_the_stored_raw_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(include_str!("../../sql/001_read_path.sql"))
            .unwrap();
        db.execute_batch(
            r#"INSERT INTO tickets (account, id, state, raw_json, content_hash, first_seen, last_changed, open) VALUES
               ('sim-1', 1, 'Avoin', '{"Id":1,"Kohde":"As Oy Koivu, Koivutie 3"}', 1, 'x', 'x', 1),
               ('sim-1', 2, 'Avoin', '{"Id":2,"Kohde":{"Katu":"Koivutie 3"}}', 1, 'x', 'x', 1),
               ('sim-1', 3, 'Avoin', '{"Id":3,"Kohde":7}', 1, 'x', 'x', 1),
               ('sim-1', 4, 'Avoin', '{"Id":4}', 1, 'x', 'x', 1),
               ('sim-1', 5, 'Avoin', 'not json', 1, 'x', 'x', 1);
             PRAGMA user_version = 1;"#,
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let mut st = store
        .connection()
        .prepare("SELECT address FROM tickets ORDER BY id")
        .unwrap();
    let addresses: Vec<Option<String>> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        addresses,
        [
            Some("As Oy Koivu, Koivutie 3".to_owned()),
            Some(r#"{"Katu":"Koivutie 3"}"#.to_owned()),
            None,
            None,
            None
        ]
    );
}

#[test]
fn migration_019_names_the_changed_fields_of_history_and_feed_in_the_models_terms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        // A store as version 18 left it, with history and feed rows in Tampuuri's names.
        let sql = crate::helpers::repo().join("sql");
        let mut files: Vec<_> = std::fs::read_dir(&sql)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f.ends_with(".sql") && f.as_str() < "019")
            .collect();
        files.sort();
        assert_eq!(files.len(), 18, "{files:?}");
        let db = rusqlite::Connection::open(&path).unwrap();
        for f in &files {
            db.execute_batch(&std::fs::read_to_string(sql.join(f)).unwrap())
                .unwrap();
        }
        db.execute_batch(
            r#"INSERT INTO ticket_changes (account, ticket_id, at, kind, fields, old_state, new_state) VALUES
               ('sim-1', 1, 'x', 'changed', '["Muokattu","Otsikko","Tila"]', 'Avoin', 'Odottaa'),
               ('sim-1', 2, 'x', 'changed', '["Kiireellisyys","Kohde","Tilaaja","muokattu"]', 'Avoin', 'Avoin'),
               ('sim-1', 3, 'x', 'appeared', NULL, NULL, 'Avoin'),
               ('sim-1', 4, 'x', 'left', '[]', 'Avoin', 'Valmis');
             PRAGMA user_version = 18;"#,
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let column = |sql: &str| -> Vec<Option<String>> {
        let mut st = store.connection().prepare(sql).unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        column("SELECT fields FROM ticket_changes ORDER BY ticket_id"),
        [
            Some(r#"["modified","state","title"]"#.to_owned()),
            Some(r#"["Tilaaja","address","modified","urgency"]"#.to_owned()),
            None,
            Some("[]".to_owned()),
        ],
        "sorted as the sync sorts them, a field the mirror does not read as Tampuuri named it"
    );
    // The feed's events of those rows (written by its trigger) carry the same names.
    let feed = column("SELECT data FROM feed WHERE type = 'ticket.changed' ORDER BY ticket_id");
    let fields: Vec<serde_json::Value> = feed
        .iter()
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(d.as_deref().unwrap()).unwrap()["fields"]
                .clone()
        })
        .collect();
    assert_eq!(
        fields,
        [
            serde_json::json!(["modified", "state", "title"]),
            serde_json::json!(["Tilaaja", "address", "modified", "urgency"]),
        ]
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(feed[0].as_deref().unwrap()).unwrap()["old_state"],
        "Avoin",
        "the rest of the event stays"
    );
}
