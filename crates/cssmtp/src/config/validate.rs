//! Statements → [`Config`], with every diagnostic at once. Pure: no I/O.
//!
//! A driver over the statement table ([`STATEMENTS`]): it finds each statement's entry,
//! reads its value or its block by the entry's [`Kind`]s, and starts from the entries'
//! defaults. What is particular to a statement lives in its entry, not here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::draft::{Diags, Draft, Gathered, TargetDraft, mailbox};
use super::statements::STATEMENTS;
use super::syntax::{self, Param as Line, Statement, Word};
use super::table::{Block, Form, Kind, Param};
use super::{Config, Diagnostic, Report, Severity};

/// Validates the text of a configuration file read from `file`.
///
/// Returns the configuration when there is no error, and every diagnostic (errors and
/// warnings) in line order.
pub fn validate(file: &Path, text: &str) -> (Option<Config>, Vec<Diagnostic>) {
    let (statements, problems) = syntax::parse(text);
    let mut v = Validator::new(file);
    for problem in problems {
        v.diags.error(problem.line, problem.message);
    }
    for statement in &statements {
        v.statement(statement);
    }
    v.finish()
}

/// The configuration of a file that has only a target: every statement's default.
pub(crate) fn defaults() -> Config {
    new_draft(Path::new("")).0.c
}

/// The problems of the defaults themselves (a test checks there are none).
#[cfg(test)]
pub(crate) fn default_diagnostics() -> Vec<Diagnostic> {
    new_draft(Path::new("")).1
}

/// Every field empty, then every default of the table applied; the problems of the
/// defaults themselves (a test checks there are none).
fn new_draft(file: &Path) -> (Draft, Vec<Diagnostic>) {
    {
        let mut draft = Draft {
            c: Config::blank(file),
            admin_lines: Vec::new(),
            targets: Gathered::default(),
            dkim_key: None,
        };
        let mut diags = Diags {
            file: file.to_owned(),
            list: Vec::new(),
        };
        for def in STATEMENTS {
            match &def.form {
                Form::Value(kind) => {
                    if let Some(text) = def.default {
                        read(
                            &mut diags,
                            Path::new("/"),
                            def.name,
                            kind,
                            &mut draft,
                            &word(text),
                        );
                    }
                }
                Form::Block(block) if !block.optional => {
                    apply_defaults(&mut diags, block.params, &mut draft);
                }
                _ => {}
            }
        }
        (draft, diags.list)
    }
}

fn word(text: &str) -> Word {
    Word {
        text: text.to_owned(),
        line: 0,
    }
}

fn apply_defaults<S, R>(diags: &mut Diags, params: &[Param<S, R>], scope: &mut S) {
    for p in params {
        if let Some(text) = p.default {
            read(diags, Path::new("/"), p.name, &p.kind, scope, &word(text));
        }
    }
}

struct Validator {
    diags: Diags,
    draft: Draft,
    /// The configuration file's directory: relative paths start there.
    base: PathBuf,
    /// The last line of each statement given.
    seen: HashMap<&'static str, u32>,
}

impl Validator {
    fn new(file: &Path) -> Self {
        let (draft, _) = new_draft(file);
        Self {
            diags: Diags {
                file: file.to_owned(),
                list: Vec::new(),
            },
            draft,
            base: file
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            seen: HashMap::new(),
        }
    }

    fn statement(&mut self, s: &Statement) {
        let line = s.keyword.line;
        let Some(def) = STATEMENTS
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(&s.keyword.text))
        else {
            let hint = suggest(&s.keyword.text, STATEMENTS.iter().map(|d| d.name));
            let message = format!("unknown statement {}{hint}", s.keyword.text);
            self.diags.error(line, message);
            return;
        };
        let name = def.name;
        if self.seen.insert(name, line).is_some() && !def.repeatable {
            let message = format!("{name} given again; this later one is used");
            self.diags.warning(line, message);
        }
        let (diags, base) = (&mut self.diags, self.base.as_path());
        match &def.form {
            Form::NotYet => diags.warning(
                line,
                format!(
                    "{name} is a CSSMTP statement cssmtp does not implement yet; it is ignored"
                ),
            ),
            Form::Value(kind) => {
                if let Some(value) = one_value(diags, name, s) {
                    read(diags, base, name, kind, &mut self.draft, value);
                }
            }
            Form::Block(block) => read_block(diags, base, name, block, s, &mut self.draft),
            Form::Targets(block) => {
                self.draft.targets.statement();
                let mut target = TargetDraft::blank();
                apply_defaults(diags, block.params, &mut target);
                read_block(diags, base, name, block, s, &mut target);
                self.draft.targets.add(diags, target);
            }
        }
    }

    /// The rules across statements, then the configuration when nothing is wrong.
    fn finish(self) -> (Option<Config>, Vec<Diagnostic>) {
        let Self {
            mut diags,
            draft,
            seen,
            ..
        } = self;
        let targets = draft.targets.finish(&mut diags);
        let report_line = seen.get("Report").copied().unwrap_or(0);
        let c = draft.c;
        if c.report == Report::Admin && c.mail_administrators.is_empty() {
            diags.error(
                report_line,
                "Report Admin needs at least one MailAdministrator statement",
            );
        }
        if c.options.test_mode && c.report == Report::None {
            diags.warning(
                report_line,
                "Options TestMode YES with Report None: test results are only logged",
            );
        }
        let mut list = diags.list;
        list.sort_by_key(|d| d.line);
        let has_errors = list.iter().any(|d| d.severity == Severity::Error);
        let config = match targets {
            Some(targets) if !has_errors => Some(Config { targets, ..c }),
            _ => None,
        };
        (config, list)
    }
}

/// Reads `w` as `kind` into `scope`; `label` names it in errors.
fn read<S>(diags: &mut Diags, base: &Path, label: &str, kind: &Kind<S>, scope: &mut S, w: &Word) {
    match kind {
        Kind::Number {
            min,
            max,
            unit,
            set,
        } => {
            let what = if unit.is_empty() {
                label.to_owned()
            } else {
                format!("{label} ({unit})")
            };
            if let Some(n) = number(diags, w, *min, *max, &what) {
                set(scope, n);
            }
        }
        Kind::YesNo(set) | Kind::Flag(set) => {
            if let Some(b) = yes_no(diags, w, label) {
                set(scope, b);
            }
        }
        Kind::Choice(words, aliases) => {
            let text = aliases
                .iter()
                .find(|(alias, _)| alias.eq_ignore_ascii_case(&w.text))
                .map_or(w.text.as_str(), |(_, word)| word);
            match words
                .iter()
                .find(|(word, _)| word.eq_ignore_ascii_case(text))
            {
                Some((_, set)) => set(scope),
                None => {
                    let names: Vec<&str> = words.iter().map(|(word, _)| *word).collect();
                    let list = match names.split_last() {
                        Some((last, [])) => (*last).to_owned(),
                        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                        None => String::new(),
                    };
                    diags.error(w.line, format!("{label} must be {list}, not {:?}", w.text));
                }
            }
        }
        Kind::Path(set) => {
            if w.text.is_empty() {
                diags.error(w.line, "empty path");
            } else {
                set(scope, base.join(&w.text));
            }
        }
        Kind::Mailbox(set) => {
            if let Some(mailbox) = mailbox(diags, w, label) {
                set(scope, mailbox);
            }
        }
        Kind::Custom(read) => read(diags, scope, w),
    }
}

fn number(diags: &mut Diags, w: &Word, min: u64, max: u64, what: &str) -> Option<u64> {
    match w.text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            diags.error(
                w.line,
                format!(
                    "{what} must be a whole number from {min} to {max}, not {:?}",
                    w.text
                ),
            );
            None
        }
    }
}

fn yes_no(diags: &mut Diags, w: &Word, what: &str) -> Option<bool> {
    match w.text.to_ascii_lowercase().as_str() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => {
            diags.error(
                w.line,
                format!("{what} must be Yes or No, not {:?}", w.text),
            );
            None
        }
    }
}

/// The one value of a `Keyword value` statement.
fn one_value<'s>(diags: &mut Diags, name: &str, s: &'s Statement) -> Option<&'s Word> {
    if s.block.is_some() {
        diags.error(s.keyword.line, format!("{name} takes a value, not a block"));
        return None;
    }
    match s.values.as_slice() {
        [value] => Some(value),
        [] => {
            diags.error(s.keyword.line, format!("{name} needs a value"));
            None
        }
        [_, extra, ..] => {
            diags.error(
                extra.line,
                format!("{name} takes one value; unexpected {:?}", extra.text),
            );
            None
        }
    }
}

/// Reads a block statement's parameters into `scope`, then checks its rules.
fn read_block<S, R>(
    diags: &mut Diags,
    base: &Path,
    name: &str,
    block: &Block<S, R>,
    s: &Statement,
    scope: &mut S,
) {
    if let Some(reset) = block.replace {
        reset(scope);
        apply_defaults(diags, block.params, scope);
    }
    // The whole block's shape first (unknown parameters, missing values), then the
    // values, so that diagnostics of one line keep that order.
    let mut values = Vec::new();
    for (param, part) in parts(diags, name, s, block.params) {
        match (&param.kind, part.values) {
            (Kind::Flag(_), []) => values.push((param, None)),
            _ => values.extend(param_value(diags, name, &part).map(|v| (param, Some(v)))),
        }
    }
    for (param, value) in values {
        let label = if block.qualified {
            format!("{name} {}", param.name)
        } else {
            param.name.to_owned()
        };
        match (&param.kind, value) {
            (_, Some(value)) => read(diags, base, &label, &param.kind, scope, value),
            // A flag alone (`Options { NullTrnc DataLineTrunc }`) means YES.
            (Kind::Flag(set), None) => set(scope, true),
            (_, None) => {}
        }
    }
    if s.block.is_some()
        && let Some(check) = block.check
    {
        check(diags, scope, s.keyword.line);
    }
}

/// One parameter of a block: its keyword and its values (words of the same line).
struct Part<'s> {
    keyword: &'s Word,
    values: &'s [Word],
}

/// The lines of a block statement (none, with an error, when it has no block).
fn block_lines<'s>(diags: &mut Diags, name: &str, s: &'s Statement) -> &'s [Line] {
    if !s.values.is_empty() {
        diags.error(
            s.keyword.line,
            format!("{name} takes a block of parameters in braces, not values"),
        );
    }
    match &s.block {
        Some(params) => params,
        None => {
            if s.values.is_empty() {
                diags.error(
                    s.keyword.line,
                    format!("{name} needs a block of parameters in braces"),
                );
            }
            &[]
        }
    }
}

/// The parameters of a block statement, each with its table entry and the words that
/// are its values. A line may hold several parameters (`Count 5  Interval 1`, as well
/// as one per line, CSSMTP's form): it is split by each parameter's arity (a
/// [`Kind::Flag`] takes a `Yes` or `No` that follows it, anything else one word). An
/// unknown keyword is reported and the rest of its line skipped (its arity, and so
/// where the next parameter starts, is unknown).
fn parts<'s, 'p, S, R>(
    diags: &mut Diags,
    owner: &str,
    s: &'s Statement,
    params: &'p [Param<S, R>],
) -> Vec<(&'p Param<S, R>, Part<'s>)> {
    let mut out = Vec::new();
    for line in block_lines(diags, owner, s) {
        let mut keyword = &line.keyword;
        let mut rest = line.values.as_slice();
        loop {
            let Some(param) = params
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(&keyword.text))
            else {
                unknown_param(diags, owner, keyword, params.iter().map(|p| p.name));
                break;
            };
            let take = match param.kind {
                Kind::Flag(_) => usize::from(rest.first().is_some_and(|w| {
                    w.text.eq_ignore_ascii_case("yes") || w.text.eq_ignore_ascii_case("no")
                })),
                _ => rest.len().min(1),
            };
            let (values, after) = rest.split_at(take);
            out.push((param, Part { keyword, values }));
            match after.split_first() {
                Some((next, tail)) => {
                    keyword = next;
                    rest = tail;
                }
                None => break,
            }
        }
    }
    out
}

fn unknown_param<'a>(
    diags: &mut Diags,
    owner: &str,
    keyword: &Word,
    known: impl Iterator<Item = &'a str> + Clone,
) {
    let hint = suggest(&keyword.text, known.clone());
    let known: Vec<&str> = known.collect();
    diags.error(
        keyword.line,
        format!(
            "unknown parameter {} in {owner}{hint} (known: {})",
            keyword.text,
            known.join(", ")
        ),
    );
}

fn param_value<'p>(diags: &mut Diags, owner: &str, p: &Part<'p>) -> Option<&'p Word> {
    match p.values {
        [value] => Some(value),
        [] => {
            diags.error(
                p.keyword.line,
                format!("{} in {owner} needs a value", p.keyword.text),
            );
            None
        }
        [_, extra, ..] => {
            diags.error(
                extra.line,
                format!(
                    "{} in {owner} takes one value; unexpected {:?}",
                    p.keyword.text, extra.text
                ),
            );
            None
        }
    }
}

/// ` (did you mean X?)` when a known word is close to `word`.
fn suggest<'a>(word: &str, known: impl Iterator<Item = &'a str>) -> String {
    let lower = word.to_ascii_lowercase();
    known
        .map(|k| (strsim::levenshtein(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
use {
    super::{BadSpoolDisp, DeadLetterAction, ReturnContent, TargetHost, Targets, Timeouts},
    std::time::Duration,
};

#[cfg(test)]
mod tests;
