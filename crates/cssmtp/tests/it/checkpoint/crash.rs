//! SIGKILL of the real binary at any point, and a damaged journal: a warm restart loses
//! nothing and sends again only what the journal flags possibly delivered.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_point_then_warm_restart_loses_nothing_and_duplicates_only_flagged_mail() {
    crash_and_restart("ChkPointSync Interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_with_a_sync_before_every_final_dot() {
    crash_and_restart("ChkPointSync Mail").await;
}

/// Spools a few thousand recipients, kills the daemon with SIGKILL four times (at
/// arbitrary instants, after a final "." whose reply never came, at a DATA whose 354
/// never came), restarts warm each time, and checks the sink's record.
async fn crash_and_restart(conf: &str) {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "SpoolTasks 4\nMaxConnections {CONNECTIONS}\n{conf}\n{}",
        target(sink.addr, "")
    ));
    let incoming = env.layout().incoming;
    let mut expected = BTreeSet::new();
    for file in 0..80 {
        let job = JobInfo {
            job_name: format!("CRASH{file:02}"),
            job_id: "J0000042".into(),
        };
        submit(
            &incoming,
            &job,
            file,
            spool_text(file, 15, &mut expected).as_bytes(),
        )
        .unwrap();
    }
    assert!(
        expected.len() > 3000,
        "a few thousand recipients: {}",
        expected.len()
    );

    let mut logs = Vec::new();
    let mut in_doubt = Vec::new();
    // 1. At an arbitrary instant, mail flowing on every connection.
    let daemon = Daemon::start(&env, &[]);
    sink.wait_for(200).await;
    crashed(daemon, &env, &mut logs, &mut in_doubt).await;

    // 2. Mid-DATA: the final "." was sent and the server kept the mail, but its reply
    //    never came.
    let daemon = Daemon::start(&env, &[]);
    sink.arm(Gate::AfterDot);
    let held = sink.wait_held(1).await;
    let after_dot = held[0].rcpt_to.clone();
    crashed(daemon, &env, &mut logs, &mut in_doubt).await;

    // 3. Mid-transaction, before the text: DATA sent, 354 never came.
    let daemon = Daemon::start(&env, &[]);
    sink.arm(Gate::AtData);
    let held = sink.wait_held(2).await;
    let at_data = held[1].rcpt_to.clone();
    crashed(daemon, &env, &mut logs, &mut in_doubt).await;

    // 4. An arbitrary instant again.
    let daemon = Daemon::start(&env, &[]);
    let so_far = usize::try_from(sink.count()).unwrap();
    sink.wait_for(so_far + 200).await;
    crashed(daemon, &env, &mut logs, &mut in_doubt).await;

    // 5. To the end.
    let (code, log) = Daemon::start(&env, &["--drain"]).stop_when_done().await;
    assert_eq!(code, Some(0), "{log:#?}");
    logs.push(log);

    let counts = deliveries(&sink);
    let missing: Vec<_> = expected
        .iter()
        .filter(|r| !counts.contains_key(*r))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(
        counts.keys().all(|r| expected.contains(r)),
        "only the spool's recipients"
    );
    // The journal after each crash: the mails of that run with a `sent` and no result
    // are at most one per connection.
    for (crash, mails) in in_doubt.iter().enumerate() {
        assert!(
            mails.len() <= CONNECTIONS,
            "crash {crash}: at most one mail per connection is in doubt: {mails:#?}"
        );
    }
    // Flagged at the starts: every mail in doubt at a crash, each once per start that
    // reached it before the next crash.
    let mut all_flagged = BTreeSet::new();
    let mut flagged_mails = BTreeSet::new();
    let mut times_flagged: BTreeMap<String, usize> = BTreeMap::new();
    for (run, log) in logs.iter().enumerate() {
        assert!(
            !log.iter()
                .any(|l| l.contains("CSM2303E") || l.contains("CSM1009W")),
            "run {run}: {log:#?}"
        );
        let (rcpts, mails) = flagged(log);
        for rcpt in &rcpts {
            *times_flagged.entry(rcpt.clone()).or_insert(0) += 1;
        }
        all_flagged.extend(rcpts);
        flagged_mails.extend(mails);
    }
    assert!(
        flagged_mails.len() <= in_doubt.len() * CONNECTIONS,
        "{flagged_mails:#?}"
    );
    assert!(
        logs[0].iter().all(|l| !l.contains("CSM2301W")),
        "nothing in doubt at the first start"
    );
    for (rcpt, n) in &counts {
        let allowed = 1 + times_flagged.get(rcpt).copied().unwrap_or(0);
        assert!(
            *n <= allowed,
            "{rcpt} received {n} times, flagged possibly delivered {} times",
            allowed - 1
        );
    }
    // The mail cut after its "." was flagged (once a later run reached it) and sent
    // again. The mail cut before its text, when it was not already in doubt from an
    // earlier crash, was not flagged and went once.
    let flagged_after = |from: usize| -> BTreeSet<String> {
        logs.iter()
            .skip(from)
            .flat_map(|log| flagged(log).0)
            .collect()
    };
    for rcpt in &after_dot {
        assert!(
            flagged_after(2).contains(rcpt),
            "{rcpt} flagged after the cut after the \".\""
        );
        assert!(counts[rcpt] >= 2, "{rcpt}: kept by the server, then resent");
    }
    let flagged_before: BTreeSet<String> =
        logs.iter().take(3).flat_map(|log| flagged(log).0).collect();
    if at_data.iter().all(|r| !flagged_before.contains(r)) {
        for rcpt in &at_data {
            assert!(
                !flagged_after(3).contains(rcpt),
                "{rcpt} was never possibly delivered"
            );
            assert_eq!(counts[rcpt], 1, "{rcpt}");
        }
    }
    assert!(env.files_in("").is_empty() && env.files_in("active").is_empty());
    assert!(
        env.files_in("hold").is_empty(),
        "{:?}",
        env.files_in("hold")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_and_corrupted_journal_is_reported_and_the_daemon_recovers() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("MaxConnections 2\n{}", target(sink.addr, "")));
    let incoming = env.layout().incoming;
    let mut expected = BTreeSet::new();
    for file in 0..6 {
        let job = JobInfo {
            job_name: format!("DAMAGE{file}"),
            job_id: "J0000043".into(),
        };
        submit(
            &incoming,
            &job,
            file,
            spool_text(file, 20, &mut expected).as_bytes(),
        )
        .unwrap();
    }
    let daemon = Daemon::start(&env, &[]);
    sink.wait_for(30).await;
    daemon.kill().await;

    // Flip a byte in the middle of the journal and tear its last record in half.
    let path = env.config().journal_path();
    let mut bytes = std::fs::read(&path).unwrap();
    let lines: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
        .collect();
    assert!(lines.len() > 4, "the journal has records: {}", lines.len());
    let middle = lines[lines.len() / 2] - 3;
    bytes[middle] ^= 0x04;
    let last_start = lines[lines.len() - 2] + 1;
    bytes.truncate(last_start + (lines[lines.len() - 1] - last_start) / 2);
    std::fs::write(&path, &bytes).unwrap();

    let (code, log) = Daemon::start(&env, &["--drain"]).stop_when_done().await;
    assert_eq!(code, Some(0), "{log:#?}");
    let counts = deliveries(&sink);
    assert!(
        expected.iter().all(|r| counts.contains_key(r)),
        "nothing lost"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("CSM1009W") && l.contains("2 damaged record(s) skipped")),
        "{log:#?}"
    );
    assert!(env.files_in("active").is_empty() && env.files_in("").is_empty());
    // The journal was rewritten without the damage and goes on growing normally.
    let rewritten = std::fs::read(&path).unwrap();
    for line in rewritten.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(
            journal::record::decode(line).is_ok(),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}
