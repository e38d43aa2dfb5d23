//! A dead letter, an extended-retry copy or a report that cannot be written keeps the
//! spool file; a mail that cannot be returned stays where it is (issue 9, point 4).

use super::*;

#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_keeps_the_spool_file() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Undeliverable\n{{\n  DeadLetterDirectory dead\n}}\n",
        target(sink.addr, "")
    ));
    let Some(full) = Mount::tmpfs(&env.dir.path().join("dead")) else {
        return;
    };
    let filler = full.fill();
    // No originator: the failed mail goes straight to a dead letter.
    env.submit(
        "NOORIG",
        &format!(
            "HELO h.example\n{}",
            mail(
                "",
                &["reject-x@example.com", "ok@example.com"],
                &text_with_ids("only copy", "b")
            )
        ),
    );
    let report = env.drain().await;
    let file = &report.files[0];
    assert_eq!(
        file.disposition,
        cssmtp::spool::report::Disposition::LeftActive
    );
    assert_eq!(file.unreturned.len(), 1, "{file:?}");
    assert!(file.unreturned[0].1.contains("No space left"), "{file:?}");
    assert_eq!(env.files_in("active").len(), 1, "the only copy stays");
    assert_eq!(originals(&sink).len(), 0);
    assert_eq!(sink.received().len(), 1, "delivered to ok@ once");

    // Space returns; the next start returns the mail, and sends nothing again.
    std::fs::remove_file(filler).unwrap();
    let report = env.drain().await;
    assert!(env.files_in("active").is_empty(), "{:?}", report.files);
    let dead = files(&env.dir.path().join("dead"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        std::fs::read_to_string(&dead[0])
            .unwrap()
            .contains("Subject: only copy")
    );
    assert_eq!(sink.received().len(), 1, "ok@ is not sent it again");
}

#[tokio::test]
async fn a_mail_that_cannot_be_kept_for_extended_retry_keeps_the_spool_file() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 0\n}}\nExtendedRetry\n{{\n  Age 5\n  Interval 600\n  MailDirectory maildir\n}}\n",
        target(sink.addr, "")
    ));
    let Some(ro) = Mount::tmpfs(&env.dir.path().join("maildir")) else {
        return;
    };
    ro.remount("ro");
    env.submit(
        "EXTRO",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["tempfail-x@example.com"],
                &text_with_ids("later", "b")
            )
        ),
    );
    let report = env.drain().await;
    let file = &report.files[0];
    assert_eq!(
        file.disposition,
        cssmtp::spool::report::Disposition::LeftActive
    );
    assert!(file.unreturned[0].1.contains("extended retry"), "{file:?}");
    assert!(
        notifications(&sink).is_empty(),
        "not returned as undeliverable either"
    );
    assert_eq!(env.files_in("active").len(), 1, "the only copy stays");

    // Writable again: the next start sends it again and keeps it for extended retry.
    ro.remount("rw");
    env.drain().await;
    assert!(env.files_in("active").is_empty());
    assert_eq!(files(&env.dir.path().join("maildir")).len(), 1);
    assert!(notifications(&sink).is_empty());
}

#[tokio::test]
async fn a_report_that_cannot_be_written_holds_the_spool_file() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    // The reports directory on a read-only file system: every report write fails.
    let Some(ro) = Mount::tmpfs(&env.config().report_directory()) else {
        return;
    };
    ro.remount("ro");
    env.submit(
        "NOREPORT",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["reject-x@example.com"],
                &text_with_ids("r", "b")
            )
        ),
    );
    let report = env.drain().await;
    assert!(
        matches!(
            report.files[0].disposition,
            cssmtp::spool::report::Disposition::Held(_)
        ),
        "{:?}",
        report.files[0]
    );
    assert_eq!(
        env.files_in("hold").len(),
        2,
        "the file and its report beside it"
    );
    assert_eq!(
        notifications(&sink).len(),
        1,
        "the mail itself was returned"
    );
}

#[tokio::test]
async fn a_mail_in_extended_retry_that_cannot_be_returned_stays_in_the_mail_directory() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}ExtendedRetry\n{{\n  Age 5\n  Interval 30\n  MailDirectory maildir\n}}\nUndeliverable\n{{\n  DeadLetterDirectory dead\n}}\n",
        target(sink.addr, "")
    ));
    let Some(full) = Mount::tmpfs(&env.dir.path().join("dead")) else {
        return;
    };
    let filler = full.fill();
    // A mail 30 days in extended retry (Age 5), last tried a day ago: due, and expired.
    // Its reverse path is null: returning it means storing a dead letter.
    let month_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86_400);
    let meta = cssmtp::retry::extended::Meta {
        spool_file: "OLDJOB.J0000009.x".into(),
        job_name: "OLDJOB".into(),
        job_id: "J0000009".into(),
        mail: 1,
        line: 2,
        first_attempt: month_ago,
        rcpt_lines: vec![3],
    };
    let maildir = env.dir.path().join("maildir");
    let due_now = |path: &Path| {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    };
    // A MailDirectory file as cssmtp writes it.
    let content = cssmtp::retry::extended::mail_file(
        "cssmtp.test",
        &meta,
        false,
        "",
        &["x@example.com".to_string()],
        b"Subject: kept\r\n\r\nbody\r\n",
    );
    std::fs::create_dir_all(&maildir).unwrap();
    let path = maildir.join(cssmtp::retry::extended::file_name(&meta));
    std::fs::write(&path, content).unwrap();
    due_now(&path);
    env.drain().await;
    assert!(path.exists(), "not returned: the only copy stays");
    assert!(files(&env.dir.path().join("dead")).is_empty());

    // Space returns; at its next attempt it is returned (a dead letter) and goes.
    std::fs::remove_file(filler).unwrap();
    due_now(&path);
    env.drain().await;
    assert!(!path.exists());
    let dead = files(&env.dir.path().join("dead"));
    assert_eq!(dead.len(), 1);
    assert!(
        std::fs::read_to_string(&dead[0])
            .unwrap()
            .contains("Subject: kept")
    );
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn without_a_journal_a_mail_that_cannot_be_returned_holds_its_spool_file() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "ChkPoint No\n{}Undeliverable\n{{\n  DeadLetterDirectory dead\n}}\n",
        target(sink.addr, "")
    ));
    let Some(full) = Mount::tmpfs(&env.dir.path().join("dead")) else {
        return;
    };
    full.fill();
    env.submit(
        "NOJRNL",
        &format!(
            "HELO h.example\n{}",
            mail(
                "",
                &["reject-x@example.com"],
                &text_with_ids("only copy", "b")
            )
        ),
    );
    let report = env.drain().await;
    assert!(
        matches!(
            report.files[0].disposition,
            cssmtp::spool::report::Disposition::Held(_)
        ),
        "{:?}",
        report.files[0]
    );
    assert!(
        env.files_in("active").is_empty(),
        "a restart would send it again"
    );
    let hold = env.files_in("hold");
    assert_eq!(hold.len(), 2, "{hold:?}");
    let text = std::fs::read_to_string(env.layout().hold.join(&hold[1])).unwrap();
    assert!(
        text.contains("Not returned (the spool file is kept):"),
        "{text}"
    );
}

#[tokio::test]
async fn the_binary_logs_a_dead_letter_it_cannot_store_and_keeps_the_file_for_the_next_start() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Undeliverable\n{{\n  DeadLetterDirectory dead\n}}\n",
        target(sink.addr, "")
    ));
    let Some(full) = Mount::tmpfs(&env.dir.path().join("dead")) else {
        return;
    };
    let filler = full.fill();
    env.submit(
        "BINDEAD",
        &format!(
            "HELO h.example\n{}",
            mail("", &["reject-x@example.com"], &text_with_ids("kept", "b"))
        ),
    );
    let mut daemon = Daemon::start(&env, &["--drain"]);
    let error = daemon.wait_for("CSM2109E").await;
    assert!(error.contains("No space left"), "{error}");
    let kept = daemon.wait_for("CSM2130E").await;
    assert!(kept.contains("BINDEAD.J0000001"), "{kept}");
    let status = daemon.child.wait().await.unwrap();
    assert_ne!(status.code(), Some(0), "not everything was done");
    assert_eq!(env.files_in("active").len(), 1);

    std::fs::remove_file(filler).unwrap();
    let mut daemon = Daemon::start(&env, &["--drain"]);
    daemon.wait_for("CSM2107W").await;
    daemon.child.wait().await.unwrap();
    assert!(env.files_in("active").is_empty());
    assert_eq!(files(&env.dir.path().join("dead")).len(), 1);
}
