//! Each event's log line, counters and accounting record, in one place.

use serde_json::json;

use super::accounting::{Accounting, Kind, time};
use super::stats::Stats;
use super::{At, Event, SessionEnd};
use crate::domain::report::{Disposition, FileReport};
use crate::escape;

/// Derives what `event` tells: its log line, its counters, its accounting record.
pub(super) fn emit(stats: &Stats, accounting: &Accounting, event: Event<'_>) {
    mail_event(accounting, &event);
    match event {
        Event::Connected => stats.connection_opened(),
        Event::SessionEnded(end) => session_ended(accounting, &end),
        Event::Attempted { sent } => stats.mail_attempted(sent),
        Event::DeliveredAtStop { count } => stats.rcpts_delivered(count as u64),
        Event::ExpiredInParked => stats.rcpt_undeliverable(),
        Event::IntoRetry => stats.mail_into_retry(),
        Event::Returning => stats.mail_undeliverable(),
        Event::Delivered { .. }
        | Event::DeliveredFromParked { .. }
        | Event::Retrying { .. }
        | Event::Undeliverable { .. }
        | Event::ToExtended { .. }
        | Event::Parked { .. } => recipients(stats, event),
        Event::MailFinal {
            job,
            owner,
            tkid,
            mail,
            summary,
            life,
            arrival,
        } => {
            if summary.all_sent() {
                stats.mail_all_sent();
            }
            accounting.record_with(Kind::Mail, || {
                json!({
                    "spool_file": job.file_name,
                    "job_name": job.job_name,
                    "job_id": job.job_id,
                    "tkid": tkid,
                    "mail": mail,
                    "line": summary.line,
                    "from": summary.reverse_path,
                    "rcpts": summary.rcpts,
                    "delivered": summary.delivered,
                    "undeliverable": summary.undeliverable,
                    "extended_retry": summary.extended,
                    "held": summary.held,
                    "size": summary.size,
                    "attempts": summary.attempts,
                    "arrival": time(arrival),
                    "owner": owner,
                    "message_id": life.message_id,
                    "recipients": summary.fates.iter().map(|f| json!({
                        "address": f.address,
                        "fate": f.fate,
                        "reason": f.reason,
                    })).collect::<Vec<_>>(),
                    "tries": life.tries.iter().map(|t| json!({
                        "time": time(t.time),
                        "target": t.target,
                        "result": t.result,
                        "rcpt": t.address,
                        "count": t.count,
                        "reply": t.reply,
                    })).collect::<Vec<_>>(),
                    "tries_dropped": life.tries_dropped,
                })
            });
        }
        Event::FileFinished(report) => file_finished(stats, accounting, report),
        Event::Notified { .. } | Event::Reported { .. } | Event::DeadLetter { .. } => {
            returns(stats, event);
        }
        Event::Interval {
            interval,
            spool_tasks,
            mails_in_retry,
            mails_in_extended_retry,
        } => interval_record(
            stats,
            accounting,
            interval,
            spool_tasks,
            (mails_in_retry, mails_in_extended_retry),
        ),
        Event::Config { event, config } => accounting.record_with(Kind::Config, || {
            json!({
                "event": event.as_str(),
                "writer": config.ext_wrt_name,
                "log_level": crate::logging::mask(),
                "statements": crate::config::running::render(config),
            })
        }),
    }
}

/// A MAIL_EVENT record: what happened to a mail after it was final.
fn mail_event(accounting: &Accounting, event: &Event<'_>) {
    let record = |at: &At<'_>, what: &str, fields: serde_json::Value| {
        accounting.record_with(Kind::MailEvent, || {
            let mut record = json!({
                "event": what,
                "spool_file": at.file,
                "mail": at.mail,
            });
            if let (Some(r), serde_json::Value::Object(f)) = (record.as_object_mut(), fields) {
                r.extend(f);
            }
            record
        });
    };
    match event {
        Event::Parked {
            at,
            count,
            shown,
            until,
        } => record(
            at,
            "extended_retry",
            json!({
                "rcpts": count,
                "kept_as": shown,
                "until": until.map(time),
            }),
        ),
        Event::DeliveredFromParked { at, count } => {
            record(at, "delivered_from_extended_retry", json!({"rcpts": count}));
        }
        Event::Notified { at, to, id } => record(
            at,
            "notified",
            json!({
                "to": to,
                "notification_id": id,
            }),
        ),
        Event::DeadLetter {
            at: Some(at),
            stored,
            notes,
        } => record(
            at,
            "dead_letter",
            json!({
                "dead_letter": stored.map(|p| p.display().to_string()),
                "notes": notes,
            }),
        ),
        _ => {}
    }
}

/// What became of recipients: their counters and log lines.
fn recipients(stats: &Stats, event: Event<'_>) {
    match event {
        Event::Delivered {
            at,
            count,
            target,
            reply,
        } => {
            stats.rcpts_delivered(count as u64);
            tracing::info!(
                tkid = at.tkid,
                "CSM2100I Mail {} of {} sent to {target}: {count} recipient(s) accepted ({})",
                at.mail,
                at.file,
                escape::data(&reply.to_string())
            );
        }
        Event::DeliveredFromParked { at, count } => {
            stats.rcpts_delivered(count as u64);
            tracing::info!(
                "CSM2203I Mail {} of {} delivered from extended retry to {count} recipient(s)",
                at.mail,
                at.file
            );
        }
        Event::Retrying {
            at,
            address,
            attempt,
            attempts,
            interval,
            failure,
        } => {
            stats.rcpt_retried();
            tracing::info!(
                tkid = at.tkid,
                "CSM2103I Mail {} of {} to <{}> will be tried again in {} s (attempt {attempt} of {attempts}): {}",
                at.mail,
                at.file,
                escape::data(address),
                interval.as_secs(),
                escape::data(&failure.to_string())
            );
        }
        Event::Undeliverable {
            at,
            line,
            address,
            reason,
        } => {
            stats.rcpt_undeliverable();
            tracing::warn!(
                tkid = at.tkid,
                "CSM2102W Mail {} (line {line}) of {} is undeliverable to <{}>: {}",
                at.mail,
                at.file,
                escape::data(address),
                escape::data(reason)
            );
        }
        Event::ToExtended {
            at,
            address,
            failure,
        } => tracing::info!(
            tkid = at.tkid,
            "CSM2111I Mail {} of {} to <{}> goes to extended retry: {}",
            at.mail,
            at.file,
            escape::data(address),
            escape::data(&failure.to_string())
        ),
        Event::Parked {
            at, count, shown, ..
        } => {
            stats.rcpts_extended(count);
            tracing::info!(
                tkid = at.tkid,
                "CSM2113I Mail {} of {} kept for extended retry as {shown}",
                at.mail,
                at.file
            );
        }
        _ => {}
    }
}

/// Returns of undeliverable mail (notifications, error reports, dead letters): their
/// counters and log lines.
fn returns(stats: &Stats, event: Event<'_>) {
    match event {
        Event::Notified { at, to, .. } => {
            stats.notification_sent();
            tracing::info!(
                tkid = at.tkid,
                "CSM2105I Undeliverable notification for mail {} of {} sent to <{}>",
                at.mail,
                at.file,
                escape::data(to)
            );
        }
        Event::Reported { file, how } => {
            stats.report_made();
            tracing::info!("CSM2106I Error report for {file} {how}");
        }
        Event::DeadLetter { stored, notes, .. } => {
            stats.dead_letter();
            match stored {
                Some(path) => tracing::warn!(
                    "CSM2107W Dead letter stored as {}: {}",
                    escape::path(path),
                    notes.first().map_or("", String::as_str)
                ),
                None => tracing::warn!(
                    "CSM2108W Dead letter not kept (DeadLetterAction Delete): {}",
                    notes.join("; ")
                ),
            }
        }
        _ => {}
    }
}

/// A STATS record: the counters now, and the queue's depth.
fn interval_record(
    stats: &Stats,
    accounting: &Accounting,
    interval: std::time::Duration,
    spool_tasks: usize,
    (mails_in_retry, mails_in_extended_retry): (u64, u64),
) {
    accounting.record_with(Kind::Stats, || {
        let s = stats.snapshot();
        json!({
            "interval_seconds": interval.as_secs(),
            "counters": {
                "mails_attempted": s.mails_attempted,
                "mails_sent": s.mails_sent,
                "mails_all_sent": s.mails_all_sent,
                "mails_total_retry": s.mails_total_retry,
                "mails_undeliverable": s.mails_undeliverable,
                "rcpts_delivered": s.rcpts_delivered,
                "rcpts_undeliverable": s.rcpts_undeliverable,
                "rcpts_retried": s.rcpts_retried,
                "rcpts_extended": s.rcpts_extended,
                "files_done": s.files_done,
                "files_held": s.files_held,
                "notifications": s.notifications,
                "dead_letters": s.dead_letters,
                "reports": s.reports,
                "connections": s.connections,
            },
            "spool_tasks": spool_tasks,
            "mails_in_retry": mails_in_retry,
            "mails_in_extended_retry": mails_in_extended_retry,
            "accounting_records_lost": accounting.lost(),
        })
    });
}

/// A CONNECT record.
fn session_ended(accounting: &Accounting, end: &SessionEnd<'_>) {
    accounting.record_with(Kind::Connect, || {
        let now = std::time::SystemTime::now();
        json!({
            "target": end.target.to_string(),
            "origin": end.origin,
            "start": time(end.opened),
            "end": time(now),
            "seconds": now.duration_since(end.opened).map(|d| d.as_secs_f64()).unwrap_or(0.0),
            "mails": end.mails,
            "tls": end.tls,
            "esmtp": end.esmtp,
            "auth": end.auth,
            "tls_protocol": end.tls_protocol,
            "tls_cipher": end.tls_cipher,
            "ended": end.how,
        })
    });
}

/// A finished spool file: its log line, counters and SPOOL record.
fn file_finished(stats: &Stats, accounting: &Accounting, report: &FileReport) {
    let name = &report.job.file_name;
    let summary = format!(
        "{} mail(s), {} recipient(s) delivered, {} undeliverable, {} in extended retry, {} error(s){}{}",
        report.mails,
        report.rcpts_delivered,
        report.undeliverable_count,
        report.rcpts_extended,
        report.errors.len(),
        report
            .file_problem
            .as_ref()
            .map(|p| format!("; {p}"))
            .unwrap_or_default(),
        if report.test_mode {
            "; TestMode: nothing sent"
        } else {
            ""
        }
    );
    match &report.disposition {
        Disposition::Deleted => tracing::info!(
            tkid = report.tkid,
            "CSM2002I Spool file {name} complete: {summary}; deleted"
        ),
        Disposition::Held(to) => tracing::warn!(
            tkid = report.tkid,
            "CSM2003W Spool file {name} held as {}: {summary}; report in {}.report",
            escape::path(to),
            escape::path(to)
        ),
        Disposition::Removed => tracing::warn!(
            tkid = report.tkid,
            "CSM2004W Spool file {name} removed (BadSpoolDisp Delete): {summary}"
        ),
        Disposition::LeftActive => {}
    }
    stats.file_done(
        matches!(report.disposition, Disposition::Held(_)),
        report.has_problems(),
    );
    accounting.record_with(Kind::Spool, || {
        json!({
            "spool_file": name,
            "job_name": report.job.job_name,
            "job_id": report.job.job_id,
            "owner": report.owner,
            "tkid": report.tkid,
            "mails": report.mails,
            "rcpts_delivered": report.rcpts_delivered,
            "rcpts_undeliverable": report.undeliverable_count,
            "rcpts_extended_retry": report.rcpts_extended,
            "errors": report.errors.len(),
            "problem": report.file_problem,
            "test_mode": report.test_mode,
            "disposition": match &report.disposition {
                Disposition::Deleted => "deleted".to_owned(),
                Disposition::Held(to) => format!("held {}", escape::path(to)),
                Disposition::Removed => "removed".to_owned(),
                Disposition::LeftActive => "left in active/".to_owned(),
            },
        })
    });
}

#[cfg(test)]
mod tests;
