//! Dead letters (a notification that fails, a null sender, `ReturnToMailFrom No`) and
//! error reports to the administrators.

use super::*;

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
