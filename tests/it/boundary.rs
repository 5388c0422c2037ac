//! The Tampuuri boundary holds: the wire format (request bodies, field names) is private to
//! `src/tampuuri/`. Outside it (and the simulator, which speaks the wire format), no code line
//! names a Tampuuri field; comments and help text may.

use std::path::{Path, PathBuf};

/// Field names that only `src/tampuuri/` may use in code, as substrings of a line.
const FIELDS: [&str; 8] = [
    "TyonsuorittajaId",
    "ReferenceJson",
    "\"Ilmoittaja\"",
    "\"Tilaaja\"",
    "\"Maksaja\"",
    "\"IlmoitaOsallisille\"",
    "\"TyotehtavanLisatiedot\"",
    "\"ReferenceId\"",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `file:line: text` for every code line (not a `//` comment) of `src/` outside the exempt
/// folders that holds one of `needles`.
fn offending_lines(needles: &[&str], exempt: &[&str]) -> (usize, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut scanned = 0;
    let mut found = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if exempt.iter().any(|e| rel.starts_with(e)) {
            continue;
        }
        scanned += 1;
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if needles.iter().any(|f| line.contains(f)) {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    (scanned, found)
}

#[test]
fn tampuuri_field_names_stay_inside_the_tampuuri_module() {
    let (scanned, found) = offending_lines(&FIELDS, &["src/tampuuri/", "src/sim/"]);
    assert!(
        scanned >= 20,
        "only {scanned} files scanned: is src/ where it was?"
    );
    assert!(
        found.is_empty(),
        "Tampuuri field names outside src/tampuuri (build bodies and parse payloads there):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_wire_module_is_private() {
    let (scanned, found) = offending_lines(&["pub mod wire", "pub(crate) mod wire"], &[]);
    assert!(scanned >= 20, "only {scanned} files scanned");
    assert!(found.is_empty(), "{}", found.join("\n"));
}
