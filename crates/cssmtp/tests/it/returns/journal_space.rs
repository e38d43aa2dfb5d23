//! A checkpoint journal that cannot be written (a full file system) pauses intake, at
//! start or while running, until space returns: nothing is sent without it.

use super::*;

#[tokio::test]
async fn a_full_checkpoint_file_system_at_start_pauses_intake_until_space_returns() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "ChkPointDirectory ckpt\n{}",
        target(sink.addr, "")
    ));
    let Some(full) = Mount::tmpfs(&env.dir.path().join("ckpt")) else {
        return;
    };
    let filler = full.fill();
    env.submit(
        "FULLCK",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["x@example.com"],
                &text_with_ids("waits", "b")
            )
        ),
    );
    let mut daemon = Daemon::start(&env, &["--drain"]);
    let warning = daemon.wait_for("CSM2310W").await;
    assert!(warning.contains("No space left"), "{warning}");
    assert!(sink.received().is_empty());
    assert_eq!(env.files_in("").len(), 1, "the file waits in the spool");
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon runs on"
    );

    // Space returns: the journal opens, the mail goes, the drain ends.
    std::fs::remove_file(filler).unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), daemon.child.wait())
        .await
        .expect("the drain ends")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(sink.received().len(), 1);
    let journal = std::fs::read_to_string(env.config().journal_path()).unwrap();
    assert!(journal.contains(r#""t":"sent""#), "{journal}");
}

#[tokio::test]
async fn a_checkpoint_journal_that_fills_up_while_running_holds_mail_back_until_space_returns() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "ChkPointDirectory ckpt\n{}",
        target(sink.addr, "")
    ));
    let Some(fs) = Mount::tmpfs(&env.dir.path().join("ckpt")) else {
        return;
    };
    let job = |subject: &str| {
        format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["x@example.com"],
                &text_with_ids(subject, "b")
            )
        )
    };
    let mut daemon = Daemon::start(&env, &[]);
    env.submit("FIRST", &job("first"));
    received(&sink, 1).await;

    // The file system fills up, the journal's last page too.
    let filler = fs.fill();
    {
        use std::io::Write;
        let mut journal = std::fs::OpenOptions::new()
            .append(true)
            .open(env.config().journal_path())
            .unwrap();
        while journal.write_all(b"\n").is_ok() {}
    }
    env.submit("SECOND", &job("second"));
    let error = daemon.wait_for("CSM2303E").await;
    assert!(error.contains("No space left"), "{error}");
    assert_eq!(
        sink.received().len(),
        1,
        "no final \".\" without its journal record"
    );

    // Space returns: the mail goes, once.
    std::fs::remove_file(filler).unwrap();
    received(&sink, 2).await;
    let subjects: Vec<String> = sink
        .received()
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    assert_eq!(subjects, ["first", "second"]);
    let journal = std::fs::read_to_string(env.config().journal_path()).unwrap();
    assert_eq!(journal.matches(r#""t":"sent""#).count(), 2, "{journal}");
    daemon.child.start_kill().unwrap();
    daemon.child.wait().await.unwrap();
}
