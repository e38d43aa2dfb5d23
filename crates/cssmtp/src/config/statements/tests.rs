//! The table against itself and against the README, so the documentation cannot drift.

use std::collections::BTreeSet;

use super::STATEMENTS;
use crate::config::running::{render, restart_only_names};
use crate::config::table::Form;
use crate::config::validate::{default_diagnostics, defaults};

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    std::fs::read_to_string(path).unwrap()
}

/// The README's Configuration section.
fn configuration_section(readme: &str) -> &str {
    let start = readme.find("\n## Configuration\n").unwrap();
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    &rest[..end]
}

/// The rows of the statement table: (statement, default cell).
fn readme_rows(section: &str) -> Vec<(String, String)> {
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let name = cells[0]
                .trim_start_matches("| `")
                .split([' ', '`'])
                .next()
                .unwrap();
            (name.to_owned(), cells[1].to_owned())
        })
        .collect()
}

fn implemented() -> impl Iterator<Item = &'static super::Def> {
    STATEMENTS
        .iter()
        .filter(|d| !matches!(d.form, Form::NotYet))
}

#[test]
fn the_defaults_obey_their_own_ranges() {
    assert_eq!(default_diagnostics(), vec![]);
    assert_eq!(defaults().log_level, crate::logging::DEFAULT);
}

#[test]
fn every_statement_is_declared_once() {
    let mut names = BTreeSet::new();
    for def in STATEMENTS {
        assert!(
            names.insert(def.name.to_ascii_lowercase()),
            "{} twice",
            def.name
        );
    }
}

#[test]
fn the_readme_table_lists_exactly_the_statements_of_the_table() {
    let readme = readme();
    let section = configuration_section(&readme);
    let documented: BTreeSet<String> = readme_rows(section).into_iter().map(|(n, _)| n).collect();
    let declared: BTreeSet<String> = implemented().map(|d| d.name.to_owned()).collect();
    assert_eq!(documented, declared);
    let not_yet = section
        .split("**not implemented yet**")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .unwrap();
    let listed: BTreeSet<&str> = not_yet.split('`').skip(1).step_by(2).collect();
    let declared: BTreeSet<&str> = STATEMENTS
        .iter()
        .filter(|d| matches!(d.form, Form::NotYet))
        .map(|d| d.name)
        .collect();
    assert_eq!(listed, declared);
}

#[test]
fn the_readme_defaults_are_the_table_defaults() {
    let readme = readme();
    let section = configuration_section(&readme);
    let rows = readme_rows(section);
    let cell = |name: &str| {
        let (_, cell) = rows.iter().find(|(n, _)| n == name).unwrap();
        cell.replace('`', "")
    };
    for def in implemented() {
        match &def.form {
            Form::Value(_) => {
                if let Some(default) = def.default {
                    assert!(
                        cell(def.name).eq_ignore_ascii_case(default),
                        "{}: README says {:?}, the table {default:?}",
                        def.name,
                        cell(def.name)
                    );
                }
            }
            // "5, 1", "Yes, Store, <spool>/<W>/deadletter, Headers", "inactive; 5, 30, …":
            // one item for each parameter (when the README lists them all).
            Form::Block(block) => {
                let cell = cell(def.name);
                let items: Vec<&str> = cell.rsplit("; ").next().unwrap().split(", ").collect();
                if items.len() != block.params.len() {
                    continue;
                }
                for (param, item) in block.params.iter().zip(items) {
                    if let Some(default) = param.default {
                        assert!(
                            item.eq_ignore_ascii_case(default),
                            "{} {}: README says {item:?}, the table {default:?}",
                            def.name,
                            param.name
                        );
                    }
                }
            }
            _ => {}
        }
    }
    // The Timeout parameters are listed in a paragraph of their own.
    let Some(Form::Block(timeout)) = STATEMENTS
        .iter()
        .find(|d| d.name == "Timeout")
        .map(|d| &d.form)
    else {
        panic!("no Timeout")
    };
    for p in timeout.params {
        let text = format!("`{} {}`", p.name, p.default.unwrap());
        assert!(section.contains(&text), "README lacks {text}");
    }
}

#[test]
fn the_readme_names_exactly_the_restart_only_statements() {
    let readme = readme().split_whitespace().collect::<Vec<_>>().join(" ");
    let list = readme
        .split("each with a CSM5013W line: ")
        .nth(1)
        .and_then(|s| s.split(". ").next())
        .unwrap();
    let documented: BTreeSet<&str> = list.split(", ").collect();
    let declared: BTreeSet<String> = restart_only_names()
        .into_iter()
        .map(|n| {
            if n.starts_with("ChkPoint") {
                "the ChkPoint statements".to_owned()
            } else if n.starts_with("SpoolDatabase") {
                "the SpoolDatabase statements".to_owned()
            } else {
                n
            }
        })
        .collect();
    let declared: BTreeSet<&str> = declared.iter().map(String::as_str).collect();
    assert_eq!(documented, declared);
    // Every ChkPoint statement is restart-only, as "the ChkPoint statements" says.
    for def in STATEMENTS.iter().filter(|d| d.name.starts_with("ChkPoint")) {
        assert!(
            restart_only_names().iter().any(|n| n == def.name),
            "{}",
            def.name
        );
    }
}

#[test]
fn display_config_shows_every_statement() {
    let (config, diagnostics) = crate::config::validate(
        std::path::Path::new("/etc/cssmtp/cssmtp.conf"),
        "TargetServer { TargetIp 192.0.2.1 }\nMailAdministrator ops@corp.example\nTlsCaFile ca.pem\nNameServer 127.0.0.1\nDkimKey { Domain corp.example Selector s KeyFile k.pem }\n",
    );
    let lines = render(&config.unwrap_or_else(|| panic!("{diagnostics:?}")));
    for def in implemented() {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{} ", def.name))),
            "{} not shown: {lines:#?}",
            def.name
        );
    }
}
