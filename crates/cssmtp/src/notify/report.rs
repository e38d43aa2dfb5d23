//! Error reports about spool files: the text (for `Report File` and the `.report` beside a
//! held file) and the mail to the MailAdministrators (`Report Admin`). Pure.

use std::fmt::Write as _;

use chrono::{DateTime, Local};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};

use super::one_line;
use crate::spool::report::{Disposition, FileReport};

/// The report's text: each problem with its line and SMTP-style text.
pub fn text(report: &FileReport, host: &str, writer: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "cssmtp error report\n");
    let _ = writeln!(out, "Spool file:  {}", report.job.file_name);
    let _ = writeln!(
        out,
        "Job:         {} {} (owner {})",
        report.job.job_name, report.job.job_id, report.owner
    );
    let _ = writeln!(out, "Writer:      {writer} on {host}");
    let result = match &report.disposition {
        Disposition::Deleted => "deleted (every recipient delivered or returned)".to_owned(),
        Disposition::Held(path) => format!("held as {}", path.display()),
        Disposition::Removed => "removed (BadSpoolDisp Delete)".to_owned(),
        Disposition::LeftActive if !report.unreturned.is_empty() => {
            "kept in active/ (not every mail could be returned; the next start of cssmtp returns it)"
                .to_owned()
        }
        Disposition::LeftActive => "left in active/ (cssmtp stopped)".to_owned(),
    };
    let _ = writeln!(out, "Result:      {result}");
    if !report.unreturned.is_empty() {
        let _ = writeln!(out, "\nNot returned (the spool file is kept):");
        for (mail, why) in &report.unreturned {
            let _ = writeln!(out, "  mail {mail}: {}", super::one_line(why, 500));
        }
    }
    let _ = writeln!(
        out,
        "Mails:       {} read, {} recipient(s) delivered, {} undeliverable{}",
        report.mails,
        report.rcpts_delivered,
        report.undeliverable_count,
        if report.test_mode {
            " (TestMode: nothing was sent)"
        } else {
            ""
        }
    );
    if report.possibly_delivered_held > 0 {
        let _ = writeln!(
            out,
            "\nPossibly delivered before a restart, held in hold/ (PossiblyDelivered Hold):\n  {} recipient(s); see the *.possibly-delivered files",
            report.possibly_delivered_held
        );
    }
    if let Some(problem) = &report.file_problem {
        let _ = writeln!(out, "\nProblem with the file:\n  {problem}");
    }
    let errors: Vec<_> = report
        .errors
        .iter()
        .filter(|e| !e.is_recipient_error())
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\nErrors:");
        for e in errors {
            let _ = writeln!(out, "  line {}: {e}", e.line);
        }
    }
    if !report.undeliverable.is_empty() {
        let _ = writeln!(out, "\nUndeliverable recipients:");
        for u in &report.undeliverable {
            let _ = writeln!(
                out,
                "  mail {}, line {}, <{}>: {}",
                u.mail,
                u.line,
                u.address,
                one_line(&u.reason, 900)
            );
        }
        let listed = report.undeliverable.len() as u64;
        if report.undeliverable_count > listed {
            let _ = writeln!(
                out,
                "  ... and {} more",
                report.undeliverable_count - listed
            );
        }
    }
    if !report.returns.is_empty() {
        let _ = writeln!(out, "\nReturned to the originators:");
        for (mail, what) in &report.returns {
            let _ = writeln!(out, "  mail {mail}: {what}");
        }
    }
    if let Disposition::Held(path) = &report.disposition {
        release_note(&mut out, report, path);
    }
    out
}

/// How to release a held file, and what releasing it does: every mail in it is sent
/// again, delivered ones included.
fn release_note(out: &mut String, report: &FileReport, held: &std::path::Path) {
    // `<spool>/<W>/hold/<file>` → the writer directory `<spool>/<W>/`.
    let writer_dir = held.parent().and_then(std::path::Path::parent).map_or_else(
        || "<SpoolDirectory>/<ExtWrtName>".to_owned(),
        |d| d.display().to_string(),
    );
    let _ = writeln!(out, "\nReleasing this file:");
    let _ = writeln!(
        out,
        "  To release it, move it back into the writer directory {writer_dir}/\n  \
         (or delete it). A released file is a new file to cssmtp: EVERY mail in it is\n  \
         sent again, in full, including mails already delivered and returned."
    );
    if report.rcpts_delivered > 0 {
        let _ = writeln!(
            out,
            "  {} recipient(s) were already delivered from this file: before releasing,\n  \
             edit out the mails already delivered (the log's CSM2100I lines name each\n  \
             mail sent: \"Mail N of {}\").\n  Fix or remove the lines in error.",
            report.rcpts_delivered,
            one_line(&report.job.file_name, 200)
        );
    } else {
        let _ = writeln!(
            out,
            "  No recipient was delivered from this file; fix or remove the lines in error\n  \
             before releasing it."
        );
    }
    if report.possibly_delivered_held > 0 {
        let _ = writeln!(
            out,
            "  A *.possibly-delivered file holds only the recipients in doubt of one mail:\n  \
             releasing it sends that mail to them alone."
        );
    }
}

/// The report as a mail to the administrators (CRLF lines, not dot-stuffed).
pub fn mail(
    report: &FileReport,
    host: &str,
    writer: &str,
    from: &str,
    to: &[String],
    now: DateTime<Local>,
    message_id: &str,
) -> Vec<u8> {
    let body = text(report, host, writer).replace('\n', "\r\n");
    let from = if from.is_empty() {
        format!("MAILER-DAEMON@{host}")
    } else {
        from.to_owned()
    };
    MessageBuilder::new()
        .from(Address::new_address(Some(format!("cssmtp {writer}")), from))
        .to(Address::new_list(
            to.iter()
                .map(|a| Address::new_address(None::<&str>, a.clone()))
                .collect(),
        ))
        .subject(format!(
            "cssmtp error report: job {} {}",
            report.job.job_name, report.job.job_id
        ))
        .header("Date", Raw::new(now.to_rfc2822()))
        .message_id(MessageId::new(message_id.to_owned()))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        // As is (no quoted-printable), so that it reads well anywhere.
        .body({
            let (charset, encoding) = if body.is_ascii() {
                ("us-ascii", "7bit")
            } else {
                ("utf-8", "8bit")
            };
            MimePart::new(
                ContentType::new("text/plain").attribute("charset", charset),
                BodyPart::Binary(body.into_bytes().into()),
            )
            .header("Content-Transfer-Encoding", Raw::new(encoding))
        })
        .write_to_vec()
        .unwrap_or_default()
}
