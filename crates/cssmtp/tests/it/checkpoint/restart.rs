//! What a warm start carries over (final recipients, retry counts) and what a cold start
//! discards.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_discards_the_checkpoint() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    crashed_mid_data(&env).await;
    let (code, log) = Daemon::start(&env, &["--drain", "-f"])
        .stop_when_done()
        .await;
    assert_eq!(code, Some(0), "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("CSM1007W")
            && l.contains("1 spool file(s) left in active/ are sent again in full")),
        "{log:#?}"
    );
    assert!(!log.iter().any(|l| l.contains("CSM2301W")));
    let rcpts: usize = sink.received().iter().map(|m| m.rcpt_to.len()).sum();
    assert_eq!(rcpts, 4, "everything again");
}

/// What the journal says is final stays final after a restart (delivered, returned,
/// in extended retry), and long retry goes on counting from where it was.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn final_recipients_and_retry_counts_survive_a_restart() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "RetryLimit\n{{\n  Count 1\n  Interval 600\n}}\n{}",
        target(sink.addr, "")
    ));
    let text = format!(
        "EHLO zos.example\n{}{}QUIT\n",
        mail(
            "batch@zos.example",
            &[
                "done@example.com",
                "failed@example.com",
                "extended@example.com"
            ],
            "Subject: one\r\n\r\nOne.\r\n"
        ),
        mail(
            "batch@zos.example",
            &["tempfail@example.com"],
            "Subject: two\r\n\r\nTwo.\r\n"
        )
    );
    let key = left_active(&env, &text);
    let failed = journal::FailedRcpt {
        i: 1,
        status: "5.1.1".parse().unwrap(),
        diagnostic: Some("550 5.1.1 No such user".into()),
        remote: Some("127.0.0.1:25".parse().unwrap()),
        reason: "550 5.1.1 No such user (at RCPT TO)".into(),
    };
    write_journal(
        &env,
        &[
            Record::Result {
                f: key.clone(),
                m: 1,
                o: Outcome {
                    a: 1,
                    d: vec![0],
                    retry: vec![2],
                    u: vec![failed],
                    ..Outcome::default()
                },
            },
            Record::Result {
                f: key.clone(),
                m: 1,
                o: Outcome {
                    a: 1,
                    x: vec![2],
                    ..Outcome::default()
                },
            },
            Record::Returned {
                f: key.clone(),
                m: 1,
            },
            Record::Result {
                f: key.clone(),
                m: 2,
                o: Outcome {
                    a: 1,
                    retry: vec![0],
                    ..Outcome::default()
                },
            },
        ],
    )
    .await;
    let report = env.drain().await;
    // Mail 1: nothing sent, nothing returned again. Mail 2: its second and last attempt
    // (RetryLimit Count 1) fails at once, and it is returned.
    assert_eq!(
        report.stats.rcpts_retried, 0,
        "the attempt before the restart counts"
    );
    assert_eq!(report.stats.mails_sent, 1, "only the notification");
    assert_eq!(report.stats.notifications, 1);
    let received = sink.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(received[0].rcpt_to, ["batch@zos.example"]);
    assert!(received[0].text().contains("tempfail@example.com"));
    assert!(!received[0].text().contains("failed@example.com"));
    let file = &report.files[0];
    assert_eq!(file.mails, 2);
    assert_eq!(file.rcpts_delivered, 1);
    assert_eq!(file.rcpts_extended, 1);
    assert_eq!(
        file.undeliverable_count, 2,
        "both returned, one of them before the restart"
    );
    assert!(env.files_in("active").is_empty());
}
