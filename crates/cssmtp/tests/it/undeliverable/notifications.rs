//! Notifications (RFC 3464) after a rejection or an exhausted RetryLimit, their rate
//! limit; TestMode sends nothing.

use super::*;

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
