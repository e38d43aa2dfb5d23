//! When mail cannot be delivered: notifications, dead letters, error reports, TestMode,
//! extended retry across restarts. What the receiving servers saw and what is on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cssmtp::sink::{Received, SinkOptions};
use cssmtp::spool::report::Disposition;
use mail_parser::{MessageParser, MimeHeaders};

use crate::support::{Env, mail, notifications, originals, sink, target, text_with_ids};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
    });
    found.sort();
    found
}

/// The parts of an RFC 3464 report: (content types, the delivery-status text).
fn report_parts(notification: &Received) -> (Vec<String>, String) {
    let message = MessageParser::default()
        .parse(&notification.data)
        .expect("a MIME message");
    let top = message.content_type().expect("a content type");
    assert_eq!((top.ctype(), top.subtype()), ("multipart", Some("report")));
    assert_eq!(top.attribute("report-type"), Some("delivery-status"));
    let types: Vec<String> = message
        .parts
        .iter()
        .skip(1)
        .filter_map(|p| {
            p.content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
        })
        .collect();
    let status = message
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.subtype() == Some("delivery-status"))
        })
        .map(|p| String::from_utf8_lossy(p.contents()).into_owned())
        .unwrap_or_default();
    (types, status)
}

#[tokio::test]
async fn only_the_rejected_recipient_is_returned_in_an_rfc3464_report() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    env.submit(
        "PAYROLL",
        &format!(
            "HELO zos1.example\n{}",
            mail(
                "payroll@zos1.example",
                &[
                    "one@example.com",
                    "reject-two@example.com",
                    "three@example.com"
                ],
                &text_with_ids("totals", "b")
            )
        ),
    );
    let report = env.drain().await;
    assert_eq!(
        originals(&sink)[0].rcpt_to,
        ["one@example.com", "three@example.com"]
    );
    let returned = notifications(&sink);
    assert_eq!(returned.len(), 1);
    let dsn = &returned[0];
    assert_eq!(
        (dsn.mail_from.as_str(), dsn.rcpt_to.as_slice()),
        ("", ["payroll@zos1.example".to_string()].as_slice())
    );
    assert_eq!(
        dsn.header("Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert_eq!(
        dsn.header("Subject").as_deref(),
        Some("Undeliverable mail: totals")
    );
    let (types, status) = report_parts(dsn);
    assert_eq!(
        types,
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    assert!(
        status.contains(
            "Final-Recipient: rfc822; reject-two@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ),
        "{status}"
    );
    assert!(
        status.contains("Diagnostic-Code: smtp; 550 5.1.1 No such user here (scripted)"),
        "{status}"
    );
    assert!(!status.contains("one@example.com") && !status.contains("three@example.com"));
    assert!(
        dsn.text().contains("Message-ID: <totals@test>"),
        "the original header is returned"
    );
    assert!(
        !dsn.text().contains("\r\nb\r\n"),
        "not its body (ReturnContent Headers)"
    );
    assert_eq!(
        report.files[0].disposition,
        Disposition::Deleted,
        "only undeliverable recipients: deleted"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retry_limit_exhausted_then_one_notification_naming_each_recipient() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 2\n  Interval 1\n}}\n",
        target(sink.addr, "")
    ));
    env.submit(
        "RETRY",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &[
                    "tempfail-a@example.com",
                    "ok@example.com",
                    "tempfail-b@example.com"
                ],
                &text_with_ids("r", "b")
            )
        ),
    );
    let report = env.drain().await;
    assert_eq!(
        report.stats.rcpts_retried, 4,
        "two recipients, two retries each"
    );
    let returned = notifications(&sink);
    assert_eq!(returned.len(), 1, "one notification for the mail");
    let (_, status) = report_parts(&returned[0]);
    for rcpt in ["tempfail-a@example.com", "tempfail-b@example.com"] {
        assert!(
            status.contains(&format!(
                "Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 4.2.1"
            )),
            "{status}"
        );
    }
    assert!(
        returned[0]
            .text()
            .contains("RetryLimit of 2 retries exhausted")
    );
}

#[tokio::test]
async fn a_notification_that_fails_becomes_exactly_one_dead_letter() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    // The originator's own address is refused, so its notification cannot be delivered.
    env.submit(
        "DEAD",
        &format!(
            "HELO h.example\n{}",
            mail(
                "permfail-me@h.example",
                &["reject-x@example.com"],
                &text_with_ids("d", "b")
            )
        ),
    );
    let report = env.drain().await;
    assert!(notifications(&sink).is_empty());
    let dead = files(&env.config().dead_letter_directory());
    assert_eq!(dead.len(), 1, "{dead:?}");
    let name = dead[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("DEAD.J0000001.") && name.ends_with(".1U"),
        "{name}"
    );
    let content = std::fs::read(&dead[0]).unwrap();
    let (mails, summary) = cssmtp_batch::parse_bytes(&content, cssmtp_batch::Limits::default());
    assert!(
        summary.errors.is_empty(),
        "a dead letter is valid batch SMTP: {:?}",
        summary.errors
    );
    assert_eq!(mails[0].reverse_path, "", "it is the notification");
    assert_eq!(mails[0].recipients[0].address, "permfail-me@h.example");
    let text = String::from_utf8_lossy(&content);
    assert!(
        text.contains("NOOP undeliverable notification for mail 1 of spool file DEAD.J0000001.")
    );
    assert!(text.contains("Final-Recipient: rfc822; reject-x@example.com"));
    assert_eq!(report.stats.dead_letters, 1);
    assert!(
        report.files[0].returns[0].1.starts_with("dead letter "),
        "{:?}",
        report.files[0].returns
    );
}

#[tokio::test]
async fn a_null_sender_mail_goes_straight_to_a_dead_letter() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    env.submit(
        "NULL",
        &format!(
            "HELO h.example\n{}",
            mail(
                "",
                &["reject-x@example.com"],
                &text_with_ids("null", "the body")
            )
        ),
    );
    env.submit(
        "AUTO",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["reject-y@example.com"],
                "Auto-Submitted: auto-replied\nSubject: auto\n\nvacation"
            )
        ),
    );
    env.drain().await;
    assert!(
        notifications(&sink).is_empty(),
        "no notification for <> or Auto-Submitted mail"
    );
    let dead = files(&env.config().dead_letter_directory());
    assert_eq!(dead.len(), 2);
    for letter in &dead {
        let text = String::from_utf8(std::fs::read(letter).unwrap()).unwrap();
        assert!(text.contains("not returned: "), "{text}");
        // The original mail itself is kept, body included.
        assert!(
            text.contains("the body") || text.contains("vacation"),
            "{text}"
        );
    }
}

/// A mail that had to travel over TLS keeps that requirement in its dead letter: sent
/// again, it is still never sent in the clear.
#[tokio::test]
async fn a_dead_letter_keeps_the_tls_requirement() {
    // The target offers no STARTTLS: a mail requiring TLS is undeliverable.
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    env.submit(
        "SECRET",
        &format!(
            "EHLO h.example\nSTARTTLS\n{}",
            mail("", &["x@example.com"], &text_with_ids("tls", "secret body"))
        ),
    );
    env.drain().await;
    assert!(sink.received().is_empty(), "never sent in the clear");
    let dead = files(&env.config().dead_letter_directory());
    assert_eq!(dead.len(), 1);
    let letter = std::fs::read(&dead[0]).unwrap();
    let (mails, summary) = cssmtp_batch::parse_bytes(&letter, cssmtp_batch::Limits::default());
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert!(mails[0].starttls, "{}", String::from_utf8_lossy(&letter));
}

#[tokio::test]
async fn dead_letters_can_be_submitted_again() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 0\n}}\n",
        target(sink.addr, "")
    ));
    env.submit(
        "AGAIN",
        &format!(
            "HELO h.example\n{}",
            mail(
                "",
                &["tempfail-once@example.com"],
                &text_with_ids("again", "b")
            )
        ),
    );
    env.drain().await;
    let dead = files(&env.config().dead_letter_directory());
    assert_eq!(dead.len(), 1);
    assert!(originals(&sink).is_empty() && sink.received().is_empty());
    // The cause is gone (tempfail-once): the operator re-submits the dead letter.
    let letter = std::fs::read_to_string(&dead[0]).unwrap();
    env.submit("RESENT", &letter);
    let report = env.drain().await;
    assert!(report.all_delivered());
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_to, ["tempfail-once@example.com"]);
    assert_eq!(received[0].header("Subject").as_deref(), Some("again"));
}

#[tokio::test]
async fn an_error_report_goes_to_two_administrators() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Report Admin\nMailAdministrator mailops@corp.example\nMailAdministrator zos-team@corp.example\nReportMailFrom cssmtp@corp.example\n",
        target(sink.addr, "")
    ));
    env.submit(
        "BADJOB",
        &format!(
            "HELO h.example 11/28/26\nHELO h.example\n{}",
            mail(
                "a@h.example",
                &["x@example.com"],
                &text_with_ids("fine", "b")
            )
        ),
    );
    let report = env.drain().await;
    let reports: Vec<Received> = sink
        .received()
        .into_iter()
        .filter(|m| m.mail_from == "cssmtp@corp.example")
        .collect();
    assert_eq!(reports.len(), 1, "one report per spool file");
    assert_eq!(
        reports[0].rcpt_to,
        ["mailops@corp.example", "zos-team@corp.example"],
        "one mail to all administrators"
    );
    assert_eq!(
        reports[0].header("Subject").as_deref(),
        Some("cssmtp error report: job BADJOB J0000001")
    );
    let text = reports[0].text();
    assert!(
        text.contains("line 1: 501 5.5.4 JES Syntax error. Too many args after 'HELO' command"),
        "{text}"
    );
    assert!(text.contains("Result:      held as "), "{text}");
    assert!(matches!(report.files[0].disposition, Disposition::Held(_)));
    assert_eq!(report.stats.reports, 1);
}

#[tokio::test]
async fn an_undeliverable_report_becomes_a_dead_letter() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Report Admin\nMailAdministrator reject-admin@corp.example\n",
        target(sink.addr, "")
    ));
    env.submit("BADJOB", "HELO h.example 11/28/26\n");
    env.drain().await;
    let dead = files(&env.config().dead_letter_directory());
    assert_eq!(dead.len(), 1);
    assert!(dead[0].to_string_lossy().ends_with(".0R"), "{dead:?}");
    assert!(
        std::fs::read_to_string(&dead[0])
            .unwrap()
            .contains("error report for spool file BADJOB.J0000001.")
    );
}

#[tokio::test]
async fn test_mode_sends_nothing() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Options\n{{\n  TestMode YES\n}}\n",
        target(sink.addr, "")
    ));
    env.submit(
        "CLEAN",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["x@example.com"], &text_with_ids("t", "b"))
        ),
    );
    env.submit(
        "BAD",
        &format!(
            "HELO h.example\nBOGUS\n{}",
            mail(
                "a@h.example",
                &["reject-y@example.com"],
                &text_with_ids("u", "b")
            )
        ),
    );
    let report = env.drain().await;
    assert!(
        sink.received().is_empty(),
        "TestMode never delivers, never notifies"
    );
    assert_eq!(sink.sessions(), 0);
    let mut files = report.files.clone();
    files.sort_by(|a, b| a.job.job_name.cmp(&b.job.job_name));
    assert!(
        matches!(files[0].disposition, Disposition::Held(_)),
        "the bad file follows BadSpoolDisp"
    );
    assert_eq!(
        files[1].disposition,
        Disposition::Deleted,
        "the clean file is deleted"
    );
    let reports = files_in_reports(&env);
    assert_eq!(
        reports.len(),
        1,
        "the only output: error reports ({reports:?})"
    );
    let text = std::fs::read_to_string(&reports[0]).unwrap();
    assert!(
        text.contains("TestMode: nothing was sent")
            && text.contains("Unrecognized command 'BOGUS'"),
        "{text}"
    );
}

fn files_in_reports(env: &Env) -> Vec<PathBuf> {
    files(&env.config().report_directory())
}

#[tokio::test]
async fn return_to_mail_from_no_and_dead_letter_action_delete() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Undeliverable\n{{\n  ReturnToMailFrom No\n}}\n",
        target(sink.addr, "")
    ));
    env.submit(
        "QUIET",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["reject-x@example.com"], "Subject: q\n\nb")
        ),
    );
    let report = env.drain().await;
    assert!(sink.received().is_empty());
    assert_eq!(
        report.files[0].returns,
        [(1, "not returned (ReturnToMailFrom No)".to_string())]
    );
    assert_eq!(report.files[0].disposition, Disposition::Deleted);

    let env = Env::new(&format!(
        "{}Undeliverable\n{{\n  DeadLetterAction Delete\n}}\n",
        target(sink.addr, "")
    ));
    env.submit(
        "GONE",
        &format!(
            "HELO h.example\n{}",
            mail("", &["reject-x@example.com"], "Subject: g\n\nb")
        ),
    );
    let report = env.drain().await;
    assert!(files(&env.config().dead_letter_directory()).is_empty());
    assert_eq!(report.stats.dead_letters, 1, "counted and logged");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn notifications_are_rate_limited() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}NotifyLimit 1\n", target(sink.addr, "")));
    let mut file = String::from("HELO h.example\n");
    for i in 0..3 {
        file.push_str(&mail(
            "a@h.example",
            &[&format!("reject-{i}@example.com")],
            &text_with_ids(&format!("m{i}"), "b"),
        ));
    }
    env.submit("MANY", &file);
    let started = tokio::time::Instant::now();
    env.drain().await;
    assert_eq!(notifications(&sink).len(), 3, "all sent, none dropped");
    assert!(
        started.elapsed() >= Duration::from_secs(120),
        "one per minute: {:?}",
        started.elapsed()
    );
}

const EXTENDED: &str =
    "RetryLimit\n{\n  Count 1\n  Interval 1\n}\nExtendedRetry\n{\n  Age 1\n  Interval 30\n}\n";

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn extended_retry_survives_a_restart() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}{EXTENDED}", target(sink.addr, "")));
    env.submit(
        "EXT",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["ok@example.com", "tempfail2-x@example.com"],
                &text_with_ids("ext", "b")
            )
        ),
    );
    // First run: two attempts (long retry) fail for one recipient; the mail moves to the
    // MailDirectory and the spool file is released.
    let report = env.drain().await;
    assert_eq!(report.stats.rcpts_extended, 1);
    assert!(!report.all_delivered());
    assert_eq!(report.files[0].disposition, Disposition::Deleted);
    assert!(env.files_in("active").is_empty() && env.files_in("").is_empty());
    let kept = files(&env.config().mail_directory());
    assert_eq!(kept.len(), 1);
    let text = std::fs::read_to_string(&kept[0]).unwrap();
    assert!(
        text.starts_with("NOOP cssmtp-extended-retry v1 spool-file=EXT.J0000001."),
        "{text}"
    );
    assert!(
        text.contains("RCPT TO:<tempfail2-x@example.com>\r\n")
            && !text.contains("RCPT TO:<ok@example.com>"),
        "{text}"
    );

    // A restart before Interval has passed: not due yet.
    tokio::time::advance(Duration::from_secs(10 * 60)).await;
    env.drain().await;
    assert_eq!(files(&env.config().mail_directory()).len(), 1);

    // Another restart after Interval: delivered from extended retry, file removed.
    tokio::time::advance(Duration::from_secs(25 * 60)).await;
    let report = env.drain().await;
    assert_eq!(report.stats.rcpts_delivered, 1);
    assert!(files(&env.config().mail_directory()).is_empty());
    let delivered: Vec<Received> = originals(&sink)
        .into_iter()
        .filter(|m| m.rcpt_to == ["tempfail2-x@example.com"])
        .collect();
    assert_eq!(delivered.len(), 1);
    assert!(
        delivered[0].text().starts_with("Received: from h.example"),
        "sent as first built"
    );
    assert_eq!(
        delivered[0].text().matches("Received: ").count(),
        1,
        "cssmtp's headers are not added twice"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn extended_retry_ends_at_its_age_with_a_notification() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}{EXTENDED}", target(sink.addr, "")));
    env.submit(
        "OLD",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["tempfail-x@example.com"],
                &text_with_ids("old", "b")
            )
        ),
    );
    env.drain().await;
    assert_eq!(files(&env.config().mail_directory()).len(), 1);
    tokio::time::advance(Duration::from_secs(25 * 3600)).await;
    let report = env.drain().await;
    assert!(files(&env.config().mail_directory()).is_empty());
    assert_eq!(report.stats.rcpts_undeliverable, 1);
    let returned = notifications(&sink);
    assert_eq!(returned.len(), 1);
    let (_, status) = report_parts(&returned[0]);
    assert!(
        status.contains(
            "Final-Recipient: rfc822; tempfail-x@example.com\r\nAction: failed\r\nStatus: 4.4.7"
        ),
        "{status}"
    );
    assert!(
        returned[0]
            .text()
            .contains("not delivered within ExtendedRetry Age of 1 day(s)")
    );
}
