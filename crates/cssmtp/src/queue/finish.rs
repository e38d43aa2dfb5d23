//! The disposition of a released spool file: deleted, removed, held or left in
//! `active/`, and its error report; what people are told of it comes from
//! [`crate::telemetry`].

use super::task::TaskShared;
use crate::config::BadSpoolDisp;
use crate::notify::report;
use crate::spool::report::{Disposition, FileReport};
use crate::storage::{FileStore, Finished, SpoolClaim};

/// Disposes of the file, sends its error report and logs the result. Nothing that was
/// neither delivered nor returned goes: a file with mails that could not be returned
/// stays in `active/` (the journal says what is left), and a file whose error report
/// could be neither written nor sent is held.
pub(super) async fn finish(
    shared: &TaskShared,
    claim: &dyn SpoolClaim,
    mut report: FileReport,
    store: Option<&dyn FileStore>,
) -> FileReport {
    let name = report.job.file_name.clone();
    for e in report.errors.iter().filter(|e| !e.is_recipient_error()) {
        tracing::warn!(tkid = report.tkid, "CSM2010W {name} line {}: {e}", e.line);
    }
    let config = shared.config.current();
    let problems = report.has_problems();
    let unreturned = report
        .unreturned
        .iter()
        .map(|(m, why)| format!("mail {m}: {why}"))
        .collect::<Vec<_>>()
        .join("; ");
    if !report.unreturned.is_empty() && store.is_some() {
        // The journal knows what was delivered: the next start returns (or sends) the
        // rest, and nothing else.
        tracing::error!(
            tkid = report.tkid,
            "CSM2130E Spool file {name} is kept in active/: {unreturned}; once the cause is fixed, the next start of cssmtp returns (or sends) what is left"
        );
        report.disposition = Disposition::LeftActive;
        if problems {
            report.report = shared.notifier.report(&report).await.unwrap_or_else(Some);
        }
        return logged(shared, report);
    }
    // Without a journal a restart would send the whole file again: it is held instead,
    // for the operator (its report lists what was not returned).
    let kept = !report.unreturned.is_empty();
    if kept {
        tracing::error!(
            tkid = report.tkid,
            "CSM2130E Spool file {name} is held (no checkpoint journal): {unreturned}; its report lists what was not returned"
        );
    }
    let mut hold = kept
        || (report.is_bad() && (config.bad_spool_disp == BadSpoolDisp::Hold || report.must_hold));
    let reported = !hold && problems;
    if reported {
        // The report before the file goes: a report that cannot be made keeps it.
        report.disposition = if report.is_bad() {
            Disposition::Removed
        } else {
            Disposition::Deleted
        };
        match shared.notifier.report(&report).await {
            Ok(done) => report.report = done,
            Err(why) => {
                tracing::error!(
                    tkid = report.tkid,
                    "CSM2131E The error report for spool file {name} could not be made ({why}); the file is held instead of deleted"
                );
                report.report = Some(why);
                hold = true;
            }
        }
    }
    let disposition = if !hold {
        // Every recipient is final. The reaper makes that durable (with every record
        // before) before the file goes, so that a file a power failure brings back is
        // not sent again. (A failing journal has said so, CSM2303E; the file goes all
        // the same: keeping it would send it all again.)
        if let Some(store) = store {
            store.finished(if report.is_bad() {
                Finished::Removed
            } else {
                Finished::Deleted
            });
        }
        claim.delete(store);
        Ok(if report.is_bad() {
            Disposition::Removed
        } else {
            Disposition::Deleted
        })
    } else {
        // Moved, then recorded (a file back in active/ after `held` is a released one,
        // so the move must be durable first). The move and the directory syncs run on a
        // blocking thread.
        claim.hold().await.map(Disposition::Held)
    };
    report.disposition = match disposition {
        Ok(d) => {
            if let Some(store) = store.filter(|_| hold) {
                store.finished(Finished::Held);
            }
            d
        }
        Err(e) => {
            tracing::error!(
                "CSM2008E Cannot dispose of spool file {}: {e}; it stays in active/",
                claim.shown()
            );
            Disposition::LeftActive
        }
    };
    if let Disposition::Held(held) = &report.disposition {
        // The report beside the held file, whatever `Report` says: the operator who
        // finds the file finds why.
        let text = report::text(&report, &shared.host_name, &config.ext_wrt_name);
        claim.keep_beside(held, text.into_bytes()).await;
    }
    if problems && !reported {
        // A held file: it stays whatever becomes of its report.
        report.report = shared.notifier.report(&report).await.unwrap_or_else(Some);
    }
    logged(shared, report)
}

/// Tells people about a finished file (its log line, counters and SPOOL record).
fn logged(shared: &TaskShared, report: FileReport) -> FileReport {
    shared
        .telemetry
        .emit(crate::telemetry::Event::FileFinished(&report));
    report
}
