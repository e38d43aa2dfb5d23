//! Golden files pin the formats of notifications and reports. Volatile parts (the MIME
//! boundary) are normalised; dates and IDs are fixed inputs. `CSSMTP_BLESS=1` rewrites
//! the golden files; a mismatch writes `<golden>.actual` beside them.

use std::path::PathBuf;

use chrono::{Local, TimeZone};

use super::dsn::{self, Returned};
use super::{FailedRecipient, MailOrigin};
use crate::delivery::{Failure, Problem, Stage};
use crate::spool::name::JobIdentity;
use crate::spool::report::{Disposition, FileReport, Undeliverable};

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("CSSMTP_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let mut out = path.clone().into_os_string();
        out.push(".actual");
        std::fs::write(&out, actual).unwrap();
        panic!(
            "{} differs from the golden file; see {:?} (CSSMTP_BLESS=1 to accept)",
            path.display(),
            out
        );
    }
}

/// Replaces MIME boundaries (random) by a fixed word.
fn normalise(text: &str) -> String {
    let mut out = text.to_owned();
    while let Some(start) = out.find("boundary=\"").map(|i| i + 10) {
        let end = out[start..].find('"').map_or(out.len(), |e| start + e);
        let boundary = out[start..end].to_owned();
        if boundary == "BOUNDARY" {
            break;
        }
        out = out.replace(&boundary, "BOUNDARY");
    }
    out
}

fn job() -> JobIdentity {
    JobIdentity::from_file_name("PAYROLL.J0012345.dn76y9aeexdt-7by-0-1")
}

fn failed() -> Vec<FailedRecipient> {
    let reply = cssmtp_wire::Reply::new(
        550,
        Some(cssmtp_wire::EnhancedStatus {
            class: 5,
            subject: 1,
            detail: 1,
        }),
        "No such user here",
    );
    let rejected = Failure::new(
        Stage::RcptTo,
        Some("192.0.2.25:25".parse().unwrap()),
        Problem::Reply(reply),
    );
    let tempfail = Failure::new(
        Stage::RcptTo,
        Some("192.0.2.25:25".parse().unwrap()),
        Problem::Reply(cssmtp_wire::Reply::new(
            451,
            None,
            "Mailbox busy\r\nSubject: injected",
        )),
    );
    let syntax = cssmtp_batch::SyntaxError {
        line: 7,
        kind: cssmtp_batch::ErrorKind::InvalidAddress("RCPT TO", "bad address".into()),
    };
    vec![
        FailedRecipient::from_failure("carol@example.net", 5, &rejected, None),
        FailedRecipient::from_failure(
            "dave@example.com",
            6,
            &tempfail,
            Some("RetryLimit of 5 retries exhausted"),
        ),
        FailedRecipient::from_syntax("<bad address>", &syntax),
        FailedRecipient::from_failure(
            "erin@example.com",
            8,
            &Failure::new(Stage::Route, None, Problem::TooBig { size: 31540 }),
            None,
        ),
    ]
}

#[test]
fn notification_format() {
    let now = Local.with_ymd_and_hms(2026, 11, 28, 22, 0, 47).unwrap();
    let job = job();
    let origin = MailOrigin {
        host: "zlinux1.corp.example",
        job: &job,
        mail: 1,
        line: 2,
        arrival: now,
    };
    let header = b"Received: from zos1.corp.example\r\n\tby zlinux1.corp.example (cssmtp 0.1.0) with ESMTP id PAYROLL.J0012345.1\r\n\tfor <alice@zlinux1.corp.example>; Sat, 28 Nov 2026 22:00:47 +0000\r\nFrom: Payroll batch <payroll@zos1.corp.example>\r\nSubject: November payroll totals\r\n\r\n";
    let bytes = dsn::notification(
        &origin,
        "payroll@zos1.corp.example",
        &failed(),
        Returned::Headers(header),
        now,
        "n1.dsn@zlinux1.corp.example",
    );
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        !text.contains("\r\nSubject: injected"),
        "reply text cannot inject a header"
    );
    golden("notification.eml", &normalise(&text));
}

#[test]
fn notification_with_the_whole_mail() {
    let now = Local.with_ymd_and_hms(2026, 11, 28, 22, 0, 47).unwrap();
    let job = job();
    let origin = MailOrigin {
        host: "zlinux1.corp.example",
        job: &job,
        mail: 2,
        line: 9,
        arrival: now,
    };
    let mail = b"Subject: short\r\n\r\n.line that started with a dot\r\nbody\r\n";
    let bytes = dsn::notification(
        &origin,
        "payroll@zos1.corp.example",
        &failed()[..1],
        Returned::Full(mail),
        now,
        "n2.dsn@zlinux1.corp.example",
    );
    golden(
        "notification-full.eml",
        &normalise(&String::from_utf8(bytes).unwrap()),
    );
}

fn file_report() -> FileReport {
    FileReport {
        tkid: 3,
        job: job(),
        owner: "alice".into(),
        mails: 3,
        rcpts_delivered: 4,
        undeliverable_count: 2,
        undeliverable: vec![
            Undeliverable { mail: 1, line: 5, address: "carol@example.net".into(), reason: "550 5.1.1 No such user here (at RCPT TO with 192.0.2.25:25)".into() },
            Undeliverable { mail: 3, line: 14, address: "bad address".into(), reason: "501 5.1.3 JES Syntax error. Invalid address '<bad address>' in 'RCPT TO' (spool file line 14)".into() },
        ],
        rcpts_extended: 0,
        possibly_delivered_held: 0,
        returns: vec![(1, "notification sent to <payroll@zos1.corp.example>".into()), (3, "dead letter /var/spool/cssmtp/MAILFWD1/deadletter/PAYROLL.J0012345.Nov282026.220047.000000.3U".into())],
        errors: vec![
            cssmtp_batch::SyntaxError { line: 1, kind: cssmtp_batch::ErrorKind::TooManyArgs("HELO") },
            cssmtp_batch::SyntaxError { line: 14, kind: cssmtp_batch::ErrorKind::InvalidAddress("RCPT TO", "bad address".into()) },
        ],
        file_problem: None,
        test_mode: false,
        needs_tls: false,
        unreturned: Vec::new(),
        disposition: Disposition::Held("/var/spool/cssmtp/MAILFWD1/hold/PAYROLL.J0012345.dn76y9aeexdt-7by-0-1".into()),
        report: None,
        must_hold: false,
    }
}

#[test]
fn report_formats() {
    let report = file_report();
    golden(
        "report.txt",
        &super::report::text(&report, "zlinux1.corp.example", "MAILFWD1"),
    );
    let now = Local.with_ymd_and_hms(2026, 11, 28, 22, 0, 47).unwrap();
    let mail = super::report::mail(
        &report,
        "zlinux1.corp.example",
        "MAILFWD1",
        "mailfwd1@zos1.corp.example",
        &[
            "mailops@corp.example".into(),
            "zos-team@corp.example".into(),
        ],
        now,
        "r1.report@zlinux1.corp.example",
    );
    golden("report.eml", &normalise(&String::from_utf8(mail).unwrap()));
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_spaces_events() {
    let limiter = super::Limiter::new(2);
    let start = tokio::time::Instant::now();
    for _ in 0..4 {
        limiter.acquire().await;
    }
    // Two at once (the bucket), then one every 30 s.
    assert_eq!(start.elapsed().as_secs(), 60);
    let unlimited = super::Limiter::new(0);
    let start = tokio::time::Instant::now();
    for _ in 0..100 {
        unlimited.acquire().await;
    }
    assert_eq!(start.elapsed().as_secs(), 0);
}
