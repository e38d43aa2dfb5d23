//! Several instances of the real binary on one database and one loopback target:
//! files spread over all of them; an instance killed (SIGKILL) mid-run has its files
//! finished by the others within the lease plus a margin; one stopped (SIGSTOP) past
//! its lease changes nothing when it wakes; the database stopped mid-run loses and
//! doubles nothing. Every recipient is delivered, and only those flagged possibly
//! delivered (CSM2301W) may be delivered twice.

use super::*;
use cssmtp::sink::Gate;
use cssmtp::storage::pg::submit::submit_named;

/// SpoolDatabaseLease of these tests (its minimum).
const LEASE: Duration = Duration::from_secs(5);

/// Each instance's settings: few files and connections at once, so that every instance
/// gets files and each has some in flight at any moment.
const SETTINGS: &str = "SpoolTasks 2\nMaxConnections 2\nSpoolDatabaseLease 5";

/// Submits `files` files of `mails` mails into the database of `env`; the recipients.
async fn fill(env: &Env, files: usize, mails: usize) -> BTreeSet<String> {
    let settings = env.config().spool_database().unwrap();
    let mut expected = BTreeSet::new();
    for file in 0..files {
        let text = spool_text(file, mails, &mut expected);
        submit_named(
            &settings,
            "TESTWTR",
            &format!("CLUSTER{file:03}.J0000001.x"),
            text.as_bytes(),
        )
        .await
        .unwrap();
    }
    expected
}

/// Checks the sink's record: every recipient of `expected` delivered, nothing else, and
/// a recipient delivered more than once only if flagged possibly delivered.
fn check(sink: &Sink, expected: &BTreeSet<String>, logs: &[Vec<String>]) {
    let counts = deliveries(sink);
    let missing: Vec<_> = expected
        .iter()
        .filter(|r| !counts.contains_key(*r))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(
        counts.keys().all(|r| expected.contains(r)),
        "only the spool's"
    );
    let flagged: BTreeSet<String> = logs.iter().flat_map(|l| flagged(l)).collect();
    for (rcpt, n) in &counts {
        assert!(
            *n == 1 || flagged.contains(rcpt),
            "{rcpt} received {n} times without being flagged possibly delivered"
        );
    }
}

/// Every file `owner` holds has an expired lease.
async fn leases_expired(url: &str, owner: &str) -> bool {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let live: i64 = client
        .query_one(
            "SELECT count(*) FROM cssmtp_spool_file
             WHERE lease_owner = $1 AND state = 'claimed' AND lease_until >= now()",
            &[&owner],
        )
        .await
        .unwrap()
        .get(0);
    drop(client);
    let _ = conn.await;
    live == 0
}

fn all_delivered(sink: &Sink, expected: &BTreeSet<String>) -> bool {
    let counts = deliveries(sink);
    expected.iter().all(|r| counts.contains_key(r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_spool_and_survivors_finish_a_killed_ones_files() {
    let url = testdb::shared().database().await.unwrap();
    let sink = sink(Default::default()).await;
    let envs: Vec<Env> = ["host-a", "host-b", "host-c"]
        .iter()
        .map(|name| env_on(&url, name, &sink, SETTINGS))
        .collect();
    let expected = fill(&envs[0], 150, 10).await;
    let daemons: Vec<Daemon> = envs.iter().map(|e| Daemon::start(e, &[])).collect();
    // Files spread over all three; the victim (the second) has some in flight.
    until(Duration::from_secs(60), "every instance took files", || {
        daemons.iter().all(|d| d.count("CSM2001I") >= 2)
    })
    .await;
    until(Duration::from_secs(60), "mail flowing", || {
        sink.count() >= 100
    })
    .await;
    assert!(
        !all_delivered(&sink, &expected),
        "the kill must come mid-run"
    );
    eprintln!(
        "at the kill: {} mails delivered, files started per instance {:?}",
        sink.count(),
        daemons
            .iter()
            .map(|d| d.count("CSM2001I"))
            .collect::<Vec<_>>()
    );
    let mut daemons = daemons;
    let victim_log = daemons.remove(1).kill().await;
    let took = until(LEASE + Duration::from_secs(30), "survivors finish", || {
        all_delivered(&sink, &expected)
    })
    .await;
    eprintln!("survivors finished {took:?} after the SIGKILL (lease {LEASE:?})");
    let mut logs = vec![victim_log];
    for d in daemons {
        let (code, log) = d.stop().await;
        assert_eq!(code, Some(0), "{log:#?}");
        logs.push(log);
    }
    for log in &logs {
        assert!(
            log.iter().any(|l| l.contains("CSM2001I")),
            "every instance processed files: {log:#?}"
        );
    }
    // The survivors took the victim's files over where its records say.
    assert!(
        logs[1..].iter().flatten().any(|l| l.contains("CSM2300I")),
        "a survivor resumed a file from its recorded state"
    );
    check(&sink, &expected, &logs);
    assert_eq!(rows_left(&url).await, 0, "every file finished and removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_wakes_after_its_lease_expired_changes_nothing() {
    let url = testdb::shared().database().await.unwrap();
    let sink = sink(Default::default()).await;
    let sleeper_env = env_on(&url, "host-a", &sink, SETTINGS);
    let other_env = env_on(&url, "host-b", &sink, SETTINGS);
    let expected = fill(&sleeper_env, 30, 10).await;
    let sleeper = Daemon::start(&sleeper_env, &[]);
    until(Duration::from_secs(60), "the sleeper took files", || {
        sleeper.count("CSM2001I") >= 2 && sink.count() >= 10
    })
    .await;
    // Frozen mid-run (as a host that hangs, or loses the network), its files claimed
    // and mail in flight.
    sleeper.signal(nix::sys::signal::Signal::SIGSTOP);
    let start = std::time::Instant::now();
    while !leases_expired(&url, "host-a").await {
        assert!(start.elapsed() < LEASE * 3, "the sleeper's leases expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The other instance takes the files over (the oldest first: the sleeper's), and is
    // held at the DATA of its first two mails: it holds the files, unfinished.
    sink.arm(Gate::PauseAtData);
    sink.arm(Gate::PauseAtData);
    let other = Daemon::start(&other_env, &[]);
    sink.wait_held(2).await;
    // The sleeper wakes: every write it tries is refused (its fencing token is stale),
    // so no final "." of it goes out.
    sleeper.signal(nix::sys::signal::Signal::SIGCONT);
    until(Duration::from_secs(30), "the sleeper is refused", || {
        sleeper.count("CSM2601E") > 0
    })
    .await;
    // The other instance goes on (a mail of the sleeper's held at the sink by the same
    // gates is let go too), and the sleeper's spool tasks of the files taken over end
    // (their slots take other files).
    sink.release();
    sink.release();
    until(
        Duration::from_secs(30),
        "the sleeper's tasks of the files taken over end",
        || sleeper.count("CSM2613W") >= 1,
    )
    .await;
    until(
        LEASE + Duration::from_secs(60),
        "the other finishes",
        || all_delivered(&sink, &expected),
    )
    .await;
    // Its slots freed, the sleeper may have taken other files meanwhile: every file is
    // finished before the instances stop.
    let start = std::time::Instant::now();
    while rows_left(&url).await > 0 {
        assert!(start.elapsed() < LEASE * 6, "every file finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, sleeper_log) = sleeper.stop().await;
    assert_eq!(code, Some(0), "{sleeper_log:#?}");
    let (code, other_log) = other.stop().await;
    assert_eq!(code, Some(0), "{other_log:#?}");
    // Recipients delivered twice: only those the other instance flagged (the sleeper's
    // mail whose "." went out before it froze).
    check(&sink, &expected, &[other_log]);
    assert_eq!(
        rows_left(&url).await,
        0,
        "the stale instance recreated nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopped_mid_run_loses_and_doubles_nothing() {
    // A server of its own: it is stopped and started again.
    let server = testdb::TestServer::start().unwrap();
    let url = server.database().await.unwrap();
    let sink = sink(Default::default()).await;
    let envs: Vec<Env> = ["host-a", "host-b"]
        .iter()
        .map(|name| env_on(&url, name, &sink, SETTINGS))
        .collect();
    let expected = fill(&envs[0], 150, 10).await;
    let daemons: Vec<Daemon> = envs.iter().map(|e| Daemon::start(e, &[])).collect();
    until(Duration::from_secs(60), "mail flowing", || {
        sink.count() >= 100
    })
    .await;
    server.stop();
    assert!(
        !all_delivered(&sink, &expected),
        "the database must stop mid-run"
    );
    until(Duration::from_secs(30), "the instances notice", || {
        daemons.iter().any(|d| d.count("CSM2602W") > 0)
    })
    .await;
    let during = sink.count();
    server.restart().unwrap();
    until(
        Duration::from_secs(90),
        "all delivered after the database returned",
        || all_delivered(&sink, &expected),
    )
    .await;
    let mut logs = Vec::new();
    for d in daemons {
        let (code, log) = d.stop().await;
        assert_eq!(code, Some(0), "{log:#?}");
        logs.push(log);
    }
    assert!(
        logs.iter().flatten().any(|l| l.contains("CSM2606I")),
        "intake resumed: {logs:#?}"
    );
    assert!(sink.count() > during, "work resumed");
    check(&sink, &expected, &logs);
    assert_eq!(rows_left(&url).await, 0);
}
