//! The message table (docs/messages.md) lists every message ID the source logs, and
//! nothing else.

use std::collections::BTreeSet;
use std::path::Path;

/// Every `CSMnnnnX` in `text`.
fn ids(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices("CSM") {
        let Some(id) = bytes.get(i..i + 8) else {
            continue;
        };
        let digits = id
            .get(3..7)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit));
        let kind = id.get(7).is_some_and(|k| matches!(k, b'I' | b'W' | b'E'));
        if digits && kind {
            found.insert(String::from_utf8_lossy(id).into_owned());
        }
    }
    found
}

fn source_ids(dir: &Path, into: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_ids(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.extend(ids(&std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn every_message_id_in_the_source_is_in_the_table_and_no_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut in_source = BTreeSet::new();
    source_ids(&root.join("src"), &mut in_source);
    let table = std::fs::read_to_string(root.join("../../docs/messages.md")).unwrap();
    let in_table: BTreeSet<String> = table
        .lines()
        .filter(|l| l.starts_with("| CSM"))
        .flat_map(ids)
        .collect();
    let missing: Vec<_> = in_source.difference(&in_table).collect();
    let stale: Vec<_> = in_table.difference(&in_source).collect();
    assert!(
        missing.is_empty(),
        "logged but not in docs/messages.md: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "in docs/messages.md but never logged: {stale:?}"
    );
    // One meaning per number: no ID with two severities.
    let numbers: BTreeSet<&str> = in_source.iter().map(|id| &id[..7]).collect();
    assert_eq!(
        numbers.len(),
        in_source.len(),
        "an ID number used with two severities"
    );
}
