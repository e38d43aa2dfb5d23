//! cssmtp.conf(5), generated from the statement table: every statement with its form,
//! default, range and whether REFRESH applies it; each block's parameters the same.
//! What a statement means is taken from the README's table (the one a test keeps in
//! step with [`super::statements::STATEMENTS`]), so that neither can drift.

use roff::{Roff, bold, italic, line_break, roman};

use super::statements::STATEMENTS;
use super::table::{Block, Def, Form, Kind, Refresh};

/// The README, whose Configuration table says what each statement is for.
const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));

/// The README's row for `name`: its form (`ExtWrtName name`), default and meaning, as
/// plain text.
fn readme_row(name: &str) -> Option<(String, String, String)> {
    README.lines().find_map(|line| {
        let row = line.strip_prefix("| `")?;
        let (form, rest) = row.split_once("` |")?;
        let keyword = form.split([' ', '{']).next()?;
        if !keyword.eq_ignore_ascii_case(name) {
            return None;
        }
        let cells: Vec<&str> = split_cells(rest);
        let default = cells.first().copied().unwrap_or_default();
        let meaning = cells.get(1).copied().unwrap_or_default();
        Some((plain(form), plain(default), plain(meaning)))
    })
}

/// The cells of the rest of a table row (`\|` is a bar inside a cell).
fn split_cells(rest: &str) -> Vec<&str> {
    let mut cells = Vec::new();
    let mut start = 0;
    let bytes = rest.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'|' && (i == 0 || bytes.get(i - 1) != Some(&b'\\')) {
            cells.push(rest.get(start..i).unwrap_or_default().trim());
            start = i + 1;
        }
    }
    cells
}

/// Markdown to plain text: no backquotes, emphasis or link targets.
fn plain(markdown: &str) -> String {
    let mut text = markdown.replace("\\|", "|").replace(['`', '*'], "");
    // [label](target) → label
    while let Some(open) = text.find("](") {
        let Some(close) = text.get(open..).and_then(|t| t.find(')')) else {
            break;
        };
        text.replace_range(open..open + close + 1, "");
        if let Some(bracket) = text.get(..open).and_then(|t| t.rfind('[')) {
            text.replace_range(bracket..bracket + 1, "");
        }
    }
    text.trim().to_owned()
}

/// What a value of this kind is.
fn kind_text<S>(kind: &Kind<S>) -> Option<String> {
    Some(match kind {
        Kind::Number { min, max, unit, .. } => {
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" ({unit})")
            };
            format!("a whole number from {min} to {max}{unit}")
        }
        Kind::YesNo(_) => "Yes or No".to_owned(),
        Kind::Flag(_) => "the name alone (Yes), or followed by Yes or No".to_owned(),
        Kind::Choice(words, others) => {
            let words: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
            let mut text = format!("one of {}", words.join(", "));
            for (other, means) in others.iter() {
                text.push_str(&format!(" ({other} is read as {means})"));
            }
            text
        }
        Kind::Path(_) => {
            "a path (a relative one is taken from the configuration file's directory)".to_owned()
        }
        Kind::Mailbox(_) => "a mailbox, user@host.domain (angle brackets optional)".to_owned(),
        Kind::Custom(_) => return None,
    })
}

/// What the parameters read by code of their own take (the statements' own rows in the
/// README say it for them).
fn custom_text(name: &str) -> Option<&'static str> {
    Some(match name {
        "TargetIp" => {
            "an IPv4 or IPv6 address; repeatable and mixed with TargetName, the first four \
addresses are used"
        }
        "TargetName" => "a host name, resolved to its A and AAAA records; repeatable",
        "TargetMx" => {
            "a domain, its MX records in preference order (its own address when it has no \
MX); not combined with TargetIp or TargetName"
        }
        "TlsName" => {
            "the name the target's certificate must carry (default: the target's name, or \
its address for TargetIp)"
        }
        "Charset" => {
            "ISO8859-1 (the default) or UTF-8: the code page text translated from EBCDIC \
(Translate) is sent in; a character ISO8859-1 cannot represent returns the mail"
        }
        "MBCharset" => "accepted for compatibility and ignored",
        "AtSign" => "@ only (another character is not implemented yet: a warning)",
        _ => return None,
    })
}

fn refresh_text(refresh: &Refresh) -> &'static str {
    match refresh {
        Refresh::Live => "REFRESH applies a new value",
        Refresh::Restart { .. } => {
            "restart only: REFRESH keeps the running value (CSM5013W) until cssmtp restarts"
        }
    }
}

/// One line: `Value: … Default: … REFRESH …` (no word on REFRESH: `refresh` None).
fn facts(
    kind: Option<String>,
    default: Option<&str>,
    refresh: Option<&Refresh>,
) -> Vec<roff::Inline> {
    let mut parts = Vec::new();
    if let Some(kind) = kind {
        parts.push(format!("Value: {kind}."));
    }
    if let Some(default) = default {
        parts.push(format!("Default: {default}."));
    }
    if let Some(refresh) = refresh {
        parts.push(format!("{}.", capital(refresh_text(refresh))));
    }
    vec![roman(parts.join(" "))]
}

fn capital(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().collect::<String>() + chars.as_str()
    })
}

/// A block's parameters; each says it is restart-only when the statement as a whole
/// is not (`Options TestMode`).
fn params<S, R>(roff: &mut Roff, block: &Block<S, R>, statement: &Refresh) {
    if block.params.is_empty() {
        return;
    }
    roff.control("RS", []);
    for p in block.params {
        let refresh = match (statement, &p.refresh) {
            (Refresh::Live, Refresh::Restart { .. }) => Some(&p.refresh),
            _ => None,
        };
        roff.control("TP", []);
        roff.text([bold(p.name)]);
        let kind = kind_text(&p.kind).or_else(|| custom_text(p.name).map(str::to_owned));
        roff.text(facts(kind, p.default, refresh));
    }
    roff.control("RE", []);
}

fn statement(roff: &mut Roff, def: &Def) {
    let row = readme_row(def.name);
    roff.control("TP", []);
    match &row {
        Some((form, _, _)) => {
            let rest = form.get(def.name.len()..).unwrap_or_default();
            roff.text([bold(def.name), italic(rest)]);
        }
        None => {
            roff.text([bold(def.name)]);
        }
    }
    let mut text = Vec::new();
    if let Some((_, _, meaning)) = &row {
        text.push(roman(format!("{meaning}.")));
        text.push(line_break());
    }
    let kind = match &def.form {
        Form::Value(kind) => kind_text(kind),
        Form::Block(_) | Form::Targets(_) => Some("a block of parameters, below".to_owned()),
        Form::NotYet => None,
    };
    if let Form::NotYet = def.form {
        text.push(roman(
            "Recognised and not implemented yet: a warning says so and the statement is ignored.",
        ));
        roff.text(text);
        return;
    }
    let default = def.default.map(str::to_owned).or_else(|| {
        row.as_ref()
            .map(|(_, default, _)| default.clone())
            .filter(|d| !d.is_empty() && d != "—")
    });
    text.extend(facts(kind, default.as_deref(), Some(&def.refresh)));
    if def.repeatable {
        text.push(roman(" Repeatable."));
    }
    roff.text(text);
    match &def.form {
        Form::Block(block) => params(roff, block, &def.refresh),
        Form::Targets(block) => params(roff, block, &def.refresh),
        Form::Value(_) | Form::NotYet => {}
    }
}

/// The page, in roff.
pub fn page(version: &str) -> String {
    let mut roff = Roff::new();
    roff.control(
        "TH",
        [
            "CSSMTP.CONF",
            "5",
            "",
            &format!("cssmtp {version}"),
            "File Formats",
        ],
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman(
        "cssmtp.conf - configuration file of cssmtp, the spool-driven mail forwarder",
    )]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([roman("/etc/cssmtp/cssmtp.conf")]);
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(
        "The file uses the statements of z/OS Communications Server CSSMTP: a keyword \
followed by a value (Keyword value), or by a block of parameters in braces \
(Keyword { Param value ... }), one parameter per line or several on a line. Keywords are \
not case sensitive; # and ; start comments. Relative paths are relative to the \
configuration file. The file must be a regular file of at most 1 MiB, in UTF-8.",
    )]);
    roff.control("PP", []);
    roff.text([
        roman("Check a file with "),
        bold("cssmtp check -c"),
        roman(" "),
        italic("FILE"),
        roman(
            ": it prints every problem with its line and exits 78 when there is an error. \
A running daemon reads the file again on REFRESH (cssmtp modify REFRESH, or SIGHUP, or \
systemctl reload): statements REFRESH applies take their new value at once; for the \
others the running value is kept, with a CSM5013W warning, until cssmtp restarts.",
        ),
    ]);
    roff.control("SH", ["STATEMENTS"]);
    for def in STATEMENTS {
        statement(&mut roff, def);
    }
    roff.control("SH", ["EXAMPLE"]);
    roff.control("nf", []);
    for line in [
        "ExtWrtName CSSMTP",
        "TargetServer { TargetIp 192.0.2.1  ConnectPort 25 }",
        "RetryLimit { Count 5  Interval 1 }",
        "Undeliverable { ReturnToMailFrom Yes  DeadLetterAction Store }",
        "MailAdministrator postmaster@example.com",
    ] {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    roff.control("SH", ["FILES"]);
    roff.text([roman(
        "/etc/cssmtp/cssmtp.conf, the default; /usr/share/doc/cssmtp/examples/cssmtp.conf, \
a complete example.",
    )]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([bold("cssmtp"), roman("(8)")]);
    roff.render()
}

/// Every statement's name, in the table's order (for the tests of the page).
pub fn statement_names() -> Vec<&'static str> {
    STATEMENTS.iter().map(|d| d.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_plain_text() {
        assert_eq!(
            plain("*Linux*: see [Restarts](#restarts-and-the-checkpoint-journal), `Yes\\|No`"),
            "Linux: see Restarts, Yes|No"
        );
    }

    #[test]
    fn every_statement_has_its_readme_row_default_and_refresh() {
        let page = page("0");
        for def in STATEMENTS {
            assert!(
                matches!(def.form, Form::NotYet) || readme_row(def.name).is_some(),
                "{} has no README row",
                def.name
            );
            assert!(
                page.contains(&format!("\\fB{}\\fR", def.name)),
                "{}",
                def.name
            );
        }
        // A range, a default, live and restart-only, and a block's parameter.
        assert!(page.contains("a whole number from 0 to 999"), "{page}");
        assert!(page.contains("Default: 5."), "{page}");
        assert!(page.contains("REFRESH applies a new value"), "{page}");
        assert!(page.contains("Restart only"), "{page}");
        // Parameters read by code of their own say what they take.
        for name in [
            "TargetIp",
            "TargetName",
            "TargetMx",
            "TlsName",
            "Charset",
            "AtSign",
        ] {
            assert!(custom_text(name).is_some(), "{name}");
        }
        assert!(page.contains("\\fBConnectRetry\\fR"), "{page}");
        assert!(page.contains("\\fBTargetIp\\fR"), "{page}");
        // Options is live, its TestMode restart-only.
        let test_mode = page.split("\\fBTestMode\\fR").nth(1).unwrap_or_default();
        let test_mode = test_mode.split(".TP").next().unwrap_or_default();
        assert!(test_mode.contains("Restart only"), "{test_mode}");
    }
}
