//! Mail cut between its final "." and the reply (possibly delivered): the
//! `PossiblyDelivered` policy (Resend, Hold), a held mail's TLS requirement, a released
//! held file.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn possibly_delivered_resend_sends_only_the_recipients_in_doubt() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    crashed_mid_data(&env).await;
    let daemon = Daemon::start(&env, &["--drain"]);
    let (code, log) = daemon.stop_when_done().await;
    assert_eq!(code, Some(0), "{log:#?}");
    let received = sink.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(
        received[0].rcpt_to,
        ["doubt1@example.com", "doubt2@example.com"]
    );
    let (flagged, mails) = flagged(&log);
    assert_eq!(
        flagged,
        [
            "doubt1@example.com".to_string(),
            "doubt2@example.com".to_string()
        ]
        .into()
    );
    assert_eq!(mails.len(), 1);
    assert!(env.files_in("active").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn possibly_delivered_hold_keeps_them_for_the_operator() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "PossiblyDelivered Hold\n{}",
        target(sink.addr, "")
    ));
    crashed_mid_data(&env).await;
    let (code, log) = Daemon::start(&env, &["--drain"]).stop_when_done().await;
    // Held mail is mail not (yet) delivered: --drain says so.
    assert_eq!(code, Some(3), "{log:#?}");
    assert!(sink.received().is_empty(), "nothing sent again");
    assert!(log.iter().any(|l| l.contains("CSM2302W")), "{log:#?}");
    let held = env.files_in("hold");
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].ends_with(".mail1.possibly-delivered"), "{held:?}");
    // The held file is batch SMTP for exactly those recipients: the operator releases
    // it into incoming/ and it goes.
    let layout = env.layout();
    std::fs::rename(layout.hold.join(&held[0]), layout.incoming.join(&held[0])).unwrap();
    let (code, log) = Daemon::start(&env, &["--drain"]).stop_when_done().await;
    assert_eq!(code, Some(0), "{log:#?}");
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].rcpt_to,
        ["doubt1@example.com", "doubt2@example.com"]
    );
    assert!(received[0].text().contains("One."));
}

/// A held mail that had to travel over TLS still has to when released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_mail_keeps_the_tls_requirement() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "PossiblyDelivered Hold\n{}",
        target(sink.addr, "")
    ));
    let text = format!(
        "EHLO zos.example\nSTARTTLS\n{}QUIT\n",
        mail(
            "batch@zos.example",
            &["doubt@example.com"],
            "Subject: s\r\n\r\nSecret.\r\n"
        )
    );
    let key = left_active(&env, &text);
    write_journal(
        &env,
        &[Record::Sent {
            f: key,
            m: 1,
            r: vec![0],
        }],
    )
    .await;
    let (code, log) = Daemon::start(&env, &["--drain"]).stop_when_done().await;
    assert_eq!(code, Some(3), "{log:#?}");
    assert!(sink.received().is_empty());
    let held = env.files_in("hold");
    assert_eq!(held.len(), 1, "{held:?}");
    let bytes = std::fs::read(env.layout().hold.join(&held[0])).unwrap();
    let (mails, summary) = cssmtp_batch::parse_bytes(&bytes, cssmtp_batch::Limits::default());
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert!(mails[0].starttls, "{}", String::from_utf8_lossy(&bytes));
}

/// A held file an operator releases (moved back, same name and inode) is a new file:
/// what the journal recorded of it before it was held does not apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_held_file_is_sent_afresh() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    env.submit(
        "HELD",
        &format!(
            "HELO h.example\nBOGUS\n{}",
            mail(
                "batch@zos.example",
                &["a@example.com"],
                "Subject: x\r\n\r\nx\r\n"
            )
        ),
    );
    let report = env.drain().await;
    assert!(matches!(
        report.files[0].disposition,
        cssmtp::spool::report::Disposition::Held(_)
    ));
    assert_eq!(sink.received().len(), 1);
    let layout = env.layout();
    let held = env
        .files_in("hold")
        .into_iter()
        .find(|n| !n.ends_with(".report"))
        .unwrap();
    // Released as it is (same inode), and claimed by a run that crashed at once: it
    // is in active/ with the journal's records of its first claim.
    std::fs::rename(layout.hold.join(&held), layout.active.join(&held)).unwrap();
    let journal = std::fs::read_to_string(env.config().journal_path()).unwrap();
    assert!(journal.contains("\"disp\":\"held\""), "{journal}");
    env.drain().await;
    assert_eq!(
        sink.received().len(),
        2,
        "sent again, as the operator asked"
    );
}
