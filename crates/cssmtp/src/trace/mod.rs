//! `cssmtp trace`: where is my mail? Finds mail by job name, job ID, spool file,
//! Message-ID, sender, recipient or owner in the trace records ([`index`]: the MAIL and
//! MAIL_EVENT accounting records, by day, indexed) and in the running daemon's spool
//! tasks (DISPLAY SPOOLSTATUS over the control socket), and tells each mail's life:
//! its spool file, when it was taken, each try with its target and reply, and what
//! became of it (delivered, returned with the notification's Message-ID, a dead letter,
//! in extended retry until when).

pub mod index;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

/// A record's field (null when it has none).
fn at<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}

/// What to look for and where.
#[derive(Debug, Clone)]
pub struct Query {
    /// The value (a job name, job ID, spool file, Message-ID, address or owner).
    pub needle: String,
    /// Only days from this one (`YYYY-MM-DD`).
    pub since: Option<String>,
    /// Most mails shown (the most recent).
    pub limit: usize,
    /// First index the past days that have no index yet.
    pub index: bool,
}

/// One mail found: its MAIL record (when final) and what happened to it afterwards.
#[derive(Debug, Default)]
struct Found {
    mail: Option<Value>,
    events: Vec<Value>,
}

/// What `trace` found.
#[derive(Debug)]
pub struct Answer {
    /// Each mail, oldest first, as JSON (see [`mail_json`]).
    pub mails: Vec<Value>,
    /// Mails found beyond the limit (the oldest are left out).
    pub more: usize,
    /// The daemon's spool tasks that match (DISPLAY SPOOLSTATUS).
    pub in_progress: Vec<Value>,
    /// Whether the daemon answered (or why not).
    pub daemon: Result<(), String>,
}

impl Default for Answer {
    fn default() -> Self {
        Self {
            mails: Vec::new(),
            more: 0,
            in_progress: Vec::new(),
            daemon: Ok(()),
        }
    }
}

impl Answer {
    /// Whether anything was found.
    pub fn is_empty(&self) -> bool {
        self.mails.is_empty() && self.in_progress.is_empty()
    }
}

/// Looks the needle up in the trace directory `dir`.
///
/// # Errors
/// An I/O error reading a day's records.
pub fn search(dir: &Path, query: &Query) -> std::io::Result<BTreeMap<(String, u64), Value>> {
    let needle = index::normalize(&query.needle);
    if query.index {
        index::index_missing(dir, &index::today());
    }
    let mut found: BTreeMap<(String, u64), Value> = BTreeMap::new();
    let days: Vec<String> = index::days(dir)
        .into_iter()
        .filter(|d| query.since.as_deref().is_none_or(|s| d.as_str() >= s))
        .collect();
    for day in &days {
        for (offset, record) in index::lookup(dir, day, &needle)? {
            found.insert((day.clone(), offset), record);
        }
    }
    // A mail returned or kept for extended retry: what happened later is recorded under
    // its spool file.
    let later: BTreeSet<(String, String)> = found
        .iter()
        .filter(|(_, r)| {
            at(r, "type").as_str() == Some("mail_event")
                || at(r, "undeliverable").as_u64().unwrap_or(0) > 0
                || at(r, "extended_retry").as_u64().unwrap_or(0) > 0
        })
        .filter_map(|((day, _), r)| {
            Some((day.clone(), index::normalize(at(r, "spool_file").as_str()?)))
        })
        .collect();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for (day, file) in later {
        let first = files.entry(file).or_insert_with(|| day.clone());
        if day < *first {
            *first = day;
        }
    }
    for (file, first) in files {
        for day in days.iter().filter(|d| **d >= first) {
            for (offset, record) in index::lookup(dir, day, &file)? {
                found.insert((day.clone(), offset), record);
            }
        }
    }
    Ok(found)
}

/// Groups records by mail (spool file and mail number), oldest first, and tells each
/// mail's life.
pub fn mails(records: BTreeMap<(String, u64), Value>, limit: usize) -> (Vec<Value>, usize) {
    let mut order: Vec<(String, u64)> = Vec::new();
    let mut by_mail: BTreeMap<(String, u64), Found> = BTreeMap::new();
    for record in records.into_values() {
        let (Some(file), Some(mail)) = (
            at(&record, "spool_file").as_str(),
            at(&record, "mail").as_u64(),
        ) else {
            continue;
        };
        let key = (file.to_owned(), mail);
        let entry = by_mail.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Found::default()
        });
        if at(&record, "type").as_str() == Some("mail") {
            entry.mail = Some(record);
        } else {
            entry.events.push(record);
        }
    }
    let mut lives: Vec<Value> = order
        .into_iter()
        .filter_map(|key| by_mail.remove(&key).map(|f| mail_json(&key.0, key.1, f)))
        .collect();
    lives.sort_by(|a, b| {
        at(a, "taken")
            .as_str()
            .unwrap_or("")
            .cmp(at(b, "taken").as_str().unwrap_or(""))
    });
    let more = lives.len().saturating_sub(limit);
    lives.drain(..more);
    (lives, more)
}

/// One mail's life as JSON.
fn mail_json(file: &str, mail: u64, found: Found) -> Value {
    let m = &found.mail.unwrap_or(Value::Null);
    let mut outcome = Vec::new();
    let delivered = at(m, "delivered").as_u64().unwrap_or(0);
    if delivered > 0 {
        outcome.push(json!({"what": "delivered", "rcpts": delivered, "time": at(m, "time")}));
    }
    if at(m, "held").as_u64().unwrap_or(0) > 0 {
        outcome.push(json!({"what": "held", "rcpts": at(m, "held"), "time": at(m, "time")}));
    }
    let mut returned = false;
    for e in &found.events {
        let what = at(e, "event").as_str().unwrap_or("");
        returned |= matches!(what, "notified" | "dead_letter");
        outcome.push(match what {
            "extended_retry" => json!({"what": "extended_retry", "rcpts": at(e, "rcpts"),
                "until": at(e, "until"), "kept_as": at(e, "kept_as"), "time": at(e, "time")}),
            "delivered_from_extended_retry" => json!({"what": "delivered_from_extended_retry",
                "rcpts": at(e, "rcpts"), "time": at(e, "time")}),
            "notified" => json!({"what": "returned", "notification_id": at(e, "notification_id"),
                "to": at(e, "to"), "time": at(e, "time")}),
            "dead_letter" => json!({"what": "dead_letter", "dead_letter": at(e, "dead_letter"),
                "notes": at(e, "notes"), "time": at(e, "time")}),
            _ => e.clone(),
        });
    }
    if at(m, "undeliverable").as_u64().unwrap_or(0) > 0 && !returned {
        outcome.push(
            json!({"what": "undeliverable", "rcpts": at(m, "undeliverable"),
            "note": "not returned yet", "time": at(m, "time")}),
        );
    }
    if m.is_null() {
        outcome.push(json!({"what": "unknown", "note": "no MAIL record found"}));
    }
    json!({
        "spool_file": file,
        "mail": mail,
        "job_name": at(m, "job_name"),
        "job_id": at(m, "job_id"),
        "owner": at(m, "owner"),
        "message_id": at(m, "message_id"),
        "from": at(m, "from"),
        "size": at(m, "size"),
        "taken": at(m, "arrival"),
        "final": at(m, "time"),
        "attempts": at(m, "attempts"),
        "tries": at(m, "tries"),
        "recipients": at(m, "recipients"),
        "outcome": outcome,
    })
}

/// The daemon's spool tasks that match the needle (job name, job ID, spool file or
/// owner), from DISPLAY SPOOLSTATUS's data.
pub fn tasks_matching(data: &Value, needle: &str) -> Vec<Value> {
    let needle = index::normalize(needle);
    at(data, "tasks")
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| {
            ["file", "job_name", "job_id", "owner"]
                .iter()
                .any(|f| t[f].as_str().is_some_and(|v| index::normalize(v) == needle))
        })
        .cloned()
        .collect()
}

fn epoch(v: &Value) -> String {
    v.as_u64()
        .and_then(|s| chrono::DateTime::from_timestamp(i64::try_from(s).ok()?, 0))
        .map_or_else(
            || "-".to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}

fn text(v: &Value) -> String {
    crate::escape::data(v.as_str().unwrap_or("-")).to_string()
}

/// The answer for people.
pub fn render(answer: &Answer) -> String {
    let mut out = String::new();
    if answer.more > 0 {
        let _ = writeln!(
            out,
            "({} older mail(s) not shown; see --limit and --since)",
            answer.more
        );
    }
    for m in &answer.mails {
        let _ = writeln!(
            out,
            "Mail {} of spool file {} (job {} {}, owner {})",
            at(m, "mail"),
            text(at(m, "spool_file")),
            text(at(m, "job_name")),
            text(at(m, "job_id")),
            text(at(m, "owner"))
        );
        let _ = writeln!(out, "  Message-ID: {}", text(at(m, "message_id")));
        let _ = writeln!(
            out,
            "  From:       <{}>, {} byte(s)",
            text(at(m, "from")),
            at(m, "size")
        );
        let _ = writeln!(out, "  Taken:      {}", text(at(m, "taken")));
        for t in at(m, "tries").as_array().into_iter().flatten() {
            let who = match at(t, "rcpt").as_str() {
                Some(r) => format!("<{}>", crate::escape::data(r)),
                None => format!("{} recipient(s)", at(t, "count")),
            };
            let target = at(t, "target")
                .as_str()
                .filter(|t| !t.is_empty())
                .unwrap_or("-");
            let _ = writeln!(
                out,
                "  Try:        {} {} {} {}: {}",
                text(at(t, "time")),
                target,
                text(at(t, "result")),
                who,
                text(at(t, "reply"))
            );
        }
        for r in at(m, "recipients").as_array().into_iter().flatten() {
            let reason = at(r, "reason")
                .as_str()
                .map(|why| format!(": {}", crate::escape::data(why)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  Recipient:  <{}> {}{reason}",
                text(at(r, "address")),
                text(at(r, "fate"))
            );
        }
        for o in at(m, "outcome").as_array().into_iter().flatten() {
            let line = match at(o, "what").as_str().unwrap_or("") {
                "delivered" => format!("delivered to {} recipient(s)", at(o, "rcpts")),
                "held" => format!("held for the operator: {} recipient(s)", at(o, "rcpts")),
                "extended_retry" => format!(
                    "in extended retry ({} recipient(s), kept as {}) until {}",
                    at(o, "rcpts"),
                    text(at(o, "kept_as")),
                    at(o, "until").as_str().unwrap_or("no limit")
                ),
                "delivered_from_extended_retry" => format!(
                    "delivered from extended retry to {} recipient(s)",
                    at(o, "rcpts")
                ),
                "returned" => format!(
                    "returned: notification {} sent to <{}>",
                    text(at(o, "notification_id")),
                    text(at(o, "to"))
                ),
                "dead_letter" => match at(o, "dead_letter").as_str() {
                    Some(p) => format!("dead letter {}", crate::escape::data(p)),
                    None => "dead letter not kept (DeadLetterAction Delete)".to_owned(),
                },
                "undeliverable" => format!(
                    "undeliverable to {} recipient(s), not returned yet",
                    at(o, "rcpts")
                ),
                _ => "no MAIL record found (only what happened later)".to_owned(),
            };
            let at = at(o, "time")
                .as_str()
                .map(|t| format!(" at {t}"))
                .unwrap_or_default();
            let _ = writeln!(out, "  Outcome:    {line}{at}");
        }
    }
    for t in &answer.in_progress {
        let _ = writeln!(
            out,
            "Spool file {} (job {} {}, owner {}): in progress in spool task {} since {}: {} mail(s) read, {} pending, {} waiting to retry (next {}), {} recipient(s) delivered",
            text(at(t, "file")),
            text(at(t, "job_name")),
            text(at(t, "job_id")),
            text(at(t, "owner")),
            at(t, "tkid"),
            epoch(at(t, "started")),
            at(t, "mails_read"),
            at(t, "mails_pending"),
            at(t, "mails_retry"),
            epoch(at(t, "next_retry")),
            at(t, "rcpts_delivered"),
        );
    }
    if let Err(why) = &answer.daemon {
        let _ = writeln!(out, "(the running daemon was not asked: {why})");
    }
    out
}

/// The answer for programs.
pub fn to_json(answer: &Answer) -> Value {
    json!({
        "mails": answer.mails,
        "more": answer.more,
        "in_progress": answer.in_progress,
        "daemon": match &answer.daemon {
            Ok(()) => json!({"asked": true}),
            Err(why) => json!({"asked": false, "why": why}),
        },
    })
}
