//! Extended retry on the shared spool: a mail parked by one instance is the cluster's.
//! The instance that parked it is killed (SIGKILL); once its turn is due, another
//! instance gives it (exactly one, of two started together): the recipient left is
//! delivered once, and a mail whose Age is over is returned with one notification.

use super::*;
use cssmtp::storage::pg::submit::submit_named;

/// No long retry (a failed recipient is parked at once); extended retry every minute.
const PARKING: &str = "SpoolDatabaseLease 5\nRetryLimit\n{\n  Count 0\n}\nExtendedRetry\n{\n  Age 5\n  Interval 1\n}\n";

/// Runs `statement` on the database at `url`; the rows it changed.
async fn sql(url: &str, statement: &str) -> u64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let n = client.execute(statement, &[]).await.unwrap();
    drop(client);
    let _ = conn.await;
    n
}

/// A count in the database at `url`.
async fn count(url: &str, query: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let n = client.query_one(query, &[]).await.unwrap().get(0);
    drop(client);
    let _ = conn.await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_parked_by_a_killed_instance_is_finished_once_by_another_with_one_notification() {
    let url = testdb::shared().database().await.unwrap();
    let sink = sink(Default::default()).await;
    let envs: Vec<Env> = ["host-a", "host-b", "host-c"]
        .iter()
        .map(|name| env_on(&url, name, &sink, PARKING))
        .collect();
    // Mail 1: delivered at once to one recipient, refused once by the other (parked,
    // delivered at its next turn). Mail 2: refused always (parked, returned at the end
    // of its Age).
    let text = format!(
        "HELO h.example\n{}{}",
        crate::support::mail(
            "payroll@h.example",
            &["now@example.com", "tempfail1-later@example.com"],
            &crate::support::text_with_ids("one", "b")
        ),
        crate::support::mail(
            "payroll@h.example",
            &["tempfail-never@example.com"],
            &crate::support::text_with_ids("two", "b")
        ),
    );
    let settings = envs[0].config().spool_database().unwrap();
    submit_named(&settings, "TESTWTR", "PARK.J0000001.x", text.as_bytes())
        .await
        .unwrap();
    let parker = Daemon::start(&envs[0], &[]);
    let parked = "SELECT count(*) FROM cssmtp_parked WHERE parked_by = 'host-a'";
    let start = std::time::Instant::now();
    while count(&url, parked).await < 2 || rows_left(&url).await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "host-a parks both mails and finishes the file"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let parker_log = parker.kill().await;
    assert!(
        parker_log.iter().any(|l| l.contains("cssmtp_parked/")),
        "parked in the database: {parker_log:#?}"
    );
    assert_eq!(deliveries(&sink).get("now@example.com"), Some(&1));
    // An Interval passes (host-a, dead, lets the turns go by), and mail 2's Age is
    // over: the database's clock moved instead of waiting.
    sql(
        &url,
        "UPDATE cssmtp_parked SET tried = tried - interval '2 minutes',
             lease_until = now() - interval '1 second'",
    )
    .await;
    assert_eq!(
        sql(
            &url,
            "UPDATE cssmtp_parked SET first_attempt = now() - interval '6 days' WHERE mail = 2",
        )
        .await,
        1
    );
    // Two instances give the turns, together: each turn is given once.
    let takers = [
        Daemon::start(&envs[1], &["--drain"]),
        Daemon::start(&envs[2], &["--drain"]),
    ];
    let (mut logs, mut codes) = (Vec::new(), Vec::new());
    for d in takers {
        let (code, log) = d.stop_when_done().await;
        codes.push(code);
        logs.push(log);
    }
    // The instance that returned mail 2 says so (exit 3: some mail undeliverable).
    codes.sort();
    assert_eq!(codes, [Some(0), Some(3)], "{logs:#?}");
    let counts = deliveries(&sink);
    assert_eq!(
        counts.get("tempfail1-later@example.com"),
        Some(&1),
        "delivered once from extended retry: {counts:?} {logs:#?}"
    );
    assert_eq!(counts.get("now@example.com"), Some(&1), "{counts:?}");
    assert!(!counts.contains_key("tempfail-never@example.com"));
    let returned = crate::support::notifications(&sink);
    assert_eq!(returned.len(), 1, "one notification: {logs:#?}");
    assert!(
        returned[0].text().contains("tempfail-never@example.com"),
        "{}",
        returned[0].text()
    );
    let returns: usize = logs
        .iter()
        .map(|l| l.iter().filter(|l| l.contains("CSM2205I")).count())
        .sum();
    assert_eq!(returns, 1, "returned by one instance: {logs:#?}");
    assert_eq!(count(&url, "SELECT count(*) FROM cssmtp_parked").await, 0);
}
