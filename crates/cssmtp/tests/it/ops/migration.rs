//! docs/migration.md stays complete and true: every statement of the table, every
//! MODIFY verb (each cssmtp form in it parses), every accounting record field the
//! daemon writes, and only message IDs that exist.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The lines of the Markdown table under `heading`.
fn table<'a>(doc: &'a str, heading: &str) -> Vec<&'a str> {
    doc.lines()
        .skip_while(|l| *l != heading)
        .skip_while(|l| !l.starts_with('|'))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect()
}

#[test]
fn every_statement_has_its_row() {
    let doc = read("../../docs/migration.md");
    let rows = table(&doc, "## The configuration, statement by statement");
    let named: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.strip_prefix("| `")?.split('`').next())
        .collect();
    for name in cssmtp::config::manual::statement_names() {
        assert!(named.contains(&name), "docs/migration.md lacks {name}");
    }
    assert_eq!(
        named.len(),
        cssmtp::config::manual::statement_names().len(),
        "a row for a statement cssmtp does not know: {named:?}"
    );
}

#[test]
fn every_modify_form_parses() {
    let doc = read("../../docs/migration.md");
    let rows = table(&doc, "## MODIFY commands");
    let mut verbs = std::collections::BTreeSet::new();
    for row in rows {
        let cells: Vec<&str> = row.split(" | ").collect();
        for form in cells.get(1).unwrap().split('`').skip(1).step_by(2) {
            let Some(words) = form.strip_prefix("cssmtp modify ") else {
                continue;
            };
            for words in words.split(" / ") {
                let command = cssmtp::control::parse(words)
                    .unwrap_or_else(|e| panic!("{words:?} does not parse: {e}"));
                let kind = serde_json::to_value(&command).unwrap()["command"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                verbs.insert(kind);
            }
        }
        // The z/OS form has the same words.
        let zos = cells.first().unwrap().trim_start_matches("| ");
        if let Some(words) = zos
            .strip_prefix("`F CSSMTP,")
            .and_then(|w| w.split('`').next())
        {
            let words = words.split(" / ").next().unwrap();
            if !words.starts_with("USEREXIT") {
                cssmtp::control::parse(words)
                    .unwrap_or_else(|e| panic!("z/OS {words:?} does not parse: {e}"));
            }
        }
    }
    for verb in [
        "display_config",
        "display_iplist",
        "display_loglevel",
        "display_spoolstatus",
        "display_targets",
        "flush_retry_task",
        "flush_retry_age",
        "log_level",
        "refresh",
        "refresh_iplist",
        "refresh_targets",
        "resume",
        "suspend",
        "stop",
    ] {
        assert!(verbs.contains(verb), "no example of {verb}: {verbs:?}");
    }
}

/// Every field the daemon writes into an accounting record is in the SMF table, and
/// every field of the table is written.
#[test]
fn every_accounting_field_is_listed() {
    let doc = read("../../docs/migration.md");
    let rows = table(&doc, "## SMF 119 records and their JSON fields").join("\n");
    let source = read("src/telemetry/derive.rs");
    let written: Vec<&str> = source
        .lines()
        .filter_map(|l| {
            let l = l.trim_start().strip_prefix('"')?;
            let (name, rest) = l.split_once('"')?;
            (rest.starts_with(':') && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .then_some(name)
        })
        .collect();
    assert!(written.len() > 40, "{written:?}");
    for field in &written {
        assert!(
            rows.contains(&format!("`{field}`")),
            "{field} is not in the table"
        );
    }
    for field in rows
        .split(" | ")
        .filter(|cell| cell.starts_with('`'))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
    {
        assert!(
            written.contains(&field)
                || [
                    "config",
                    "connect",
                    "mail",
                    "mail_event",
                    "spool",
                    "stats",
                    "type",
                    "subtype",
                    "time"
                ]
                .contains(&field),
            "{field} is not written"
        );
    }
    for kind in ["config", "connect", "mail", "spool", "stats"] {
        assert!(rows.contains(&format!("| `{kind}` |")), "{kind}");
    }
}

#[test]
fn every_message_id_exists() {
    let doc = read("../../docs/migration.md");
    let messages = read("../../docs/messages.md");
    let mut found = 0;
    for (i, _) in doc.match_indices("CSM") {
        let id: String = doc[i..].chars().take(8).collect();
        if id.len() == 8 && id[3..7].chars().all(|c| c.is_ascii_digit()) && "IWE".contains(&id[7..])
        {
            found += 1;
            assert!(
                messages.contains(&format!("| {id} |")),
                "{id} is not in messages.md"
            );
        }
    }
    assert!(found >= 10, "{found}");
}
