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
    let latest = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql"))
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
}
