//! Extended retry: across a restart, and ending at its age with a notification.

use super::*;

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
