//! The status page (`GET /` or `/status` on the metrics listener): one read-only HTML
//! page, no script, for a person at a browser: the target servers and their state,
//! the spool's backlog and the spool tasks at work, and the recent failures (each
//! target's last failure and reply, and the counts of what was not delivered). It
//! refreshes itself every 30 seconds (a `<meta>` refresh, not a script); the
//! Content-Security-Policy forbids scripts, frames and fetches.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::Sources;
use super::spool::View;
use crate::spool::status::Suspend;

/// The page's Content-Security-Policy: nothing but its own inline style.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'";

/// Text as HTML.
fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `3 h 12 min`, `45 s`.
fn age(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..86_400 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#eee}.up{color:#060;font-weight:bold}.down{color:#a00;font-weight:bold}\
.warn{color:#a60;font-weight:bold}.num{text-align:right}small{color:#666}";

/// The page.
pub fn page(sources: &Sources, view: &View) -> String {
    let now = tokio::time::Instant::now();
    let wall = SystemTime::now();
    let stats = sources.telemetry.snapshot();
    let writer = html(&sources.places.writer);
    let mut p = String::new();
    let _ = write!(
        p,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"30\"><title>cssmtp {writer}</title>\
<style>{STYLE}</style></head><body>\n<h1>cssmtp {} &mdash; writer {writer}</h1>\n\
<p><small>{} &middot; refreshed every 30 s &middot; <a href=\"/metrics\">metrics</a></small></p>\n",
        env!("CARGO_PKG_VERSION"),
        chrono::DateTime::<chrono::Utc>::from(wall).format("%Y-%m-%d %H:%M:%S UTC"),
    );

    // Target servers.
    p.push_str("<h2>Target servers</h2>\n<table id=\"targets\"><tr><th>Target</th><th>From</th><th>State</th><th>Protocol</th><th>Connections</th><th>Mails sent</th><th>Connect failures</th><th>Last reply</th></tr>\n");
    let targets = sources.router.targets();
    for t in targets.iter() {
        let st = t.state();
        let state = match st.down_until {
            Some(until) if until > now => format!(
                "<span class=\"down\">DOWN</span> <small>tried again in {}</small>",
                age(until.duration_since(now).as_secs())
            ),
            _ => "<span class=\"up\">READY</span>".to_owned(),
        };
        let protocol = st
            .caps
            .as_ref()
            .map_or("(not yet connected)".to_owned(), |c| {
                format!(
                    "{}{}",
                    if c.esmtp { "ESMTP" } else { "SMTP" },
                    if c.starttls { ", STARTTLS" } else { "" }
                )
            });
        let _ = writeln!(
            p,
            "<tr><td>{}</td><td>{}</td><td>{state}</td><td>{protocol}</td><td class=\"num\">{}</td>\
<td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            html(&t.addr.to_string()),
            html(&t.origin),
            st.connections,
            st.mail_sent,
            st.connect_failures,
            html(st.last_reply.as_deref().unwrap_or("")),
        );
    }
    p.push_str("</table>\n");

    // The spool.
    let tasks = sources.tasks.all();
    let suspended = *sources.suspend.borrow() != Suspend::Running;
    let _ = writeln!(
        p,
        "<h2>Spool</h2>\n<table id=\"spool\">\
<tr><th>Intake</th><td>{}</td></tr>\
<tr><th>Files waiting for intake</th><td class=\"num\">{}</td></tr>\
<tr><th>Oldest waiting</th><td class=\"num\">{}</td></tr>\
<tr><th>Spool tasks at work</th><td class=\"num\">{}</td></tr>\
<tr><th>Mails in long retry</th><td class=\"num\">{}</td></tr>\
<tr><th>Mails in extended retry</th><td class=\"num\">{}</td></tr>",
        if suspended {
            "<span class=\"warn\">SUSPENDED</span>"
        } else {
            "running"
        },
        view.backlog_files,
        if view.backlog_files == 0 {
            "&mdash;".to_owned()
        } else {
            age(view.oldest_seconds)
        },
        tasks.len(),
        tasks
            .iter()
            .map(|t| t.mails_retry.load(Ordering::Relaxed))
            .sum::<u64>(),
        sources.extended_current.load(Ordering::Relaxed),
    );
    for (label, used) in &view.used {
        let percent = (used * 100.0).round();
        let class = if percent >= 90.0 {
            " class=\"warn\""
        } else {
            ""
        };
        let _ = writeln!(
            p,
            "<tr><th>File system of the {label} directory</th><td{class}>{percent}% used</td></tr>"
        );
    }
    p.push_str("</table>\n");
    if !tasks.is_empty() {
        p.push_str("<table id=\"tasks\"><tr><th>TKID</th><th>Spool file</th><th>Job</th><th>Pending</th><th>In retry</th><th>Since</th></tr>\n");
        for t in &tasks {
            let since = wall
                .duration_since(t.started)
                .map(|d| age(d.as_secs()))
                .unwrap_or_default();
            let _ = writeln!(
                p,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{} {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{since}</td></tr>",
                t.tkid,
                html(&t.file),
                html(&t.job_name),
                html(&t.job_id),
                t.mails_pending.load(Ordering::Relaxed),
                t.mails_retry.load(Ordering::Relaxed),
            );
        }
        p.push_str("</table>\n");
    }

    // Recent failures.
    p.push_str(
        "<h2>Failures</h2>\n<table id=\"failures\"><tr><th>Target</th><th>Last failure</th></tr>\n",
    );
    let mut any = false;
    for t in targets.iter() {
        if let Some(failure) = t.state().last_failure {
            any = true;
            let _ = writeln!(
                p,
                "<tr><td>{}</td><td>{}</td></tr>",
                html(&t.addr.to_string()),
                html(&failure.to_string())
            );
        }
    }
    if !any {
        p.push_str("<tr><td colspan=\"2\">none since start</td></tr>\n");
    }
    let _ = writeln!(
        p,
        "</table>\n<table id=\"counts\"><tr><th>Since start</th><th></th></tr>\
<tr><td>Recipients delivered</td><td class=\"num\">{}</td></tr>\
<tr><td>Recipients undeliverable (returned)</td><td class=\"num\">{}</td></tr>\
<tr><td>Recipients retried</td><td class=\"num\">{}</td></tr>\
<tr><td>Dead letters</td><td class=\"num\">{}</td></tr>\
<tr><td>Spool files held</td><td class=\"num\">{}</td></tr>\
</table>\n</body></html>",
        stats.rcpts_delivered,
        stats.rcpts_undeliverable,
        stats.rcpts_retried,
        stats.dead_letters,
        stats.files_held,
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            html("<script>\"x\"&'y'\n"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;\u{fffd}"
        );
        assert_eq!(age(59), "59 s");
        assert_eq!(age(3 * 3600 + 720), "3 h 12 min");
        assert_eq!(age(2 * 86_400 + 3600), "2 d 1 h");
    }
}
