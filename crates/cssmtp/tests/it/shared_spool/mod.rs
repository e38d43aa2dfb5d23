//! The shared spool on PostgreSQL (`SpoolDatabase`) through the real binary: `cssmtp
//! submit` into the database (once, however often retried), `cssmtp run` from it, and
//! several instances sharing it (failover after SIGKILL, a stale instance fenced out,
//! the database stopped mid-run). Each test has a database of its own on the test
//! process's throwaway server (`cssmtp::storage::pg::testdb`), or a server of its own
//! when it stops it.

mod cluster;
mod parked;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cssmtp::sink::Sink;
use cssmtp::storage::pg::testdb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::task::JoinHandle;

use crate::support::{Env, cssmtp, sink, target};

/// A configuration on database `url` as instance `instance`.
fn env_on(url: &str, instance: &str, sink: &Sink, extra: &str) -> Env {
    Env::new(&format!(
        "SpoolDatabase {url}\nSpoolDatabaseInstance {instance}\n{extra}\n{}",
        target(sink.addr, "")
    ))
}

/// A spool file's text: `mails` mails of 1 to 3 recipients, every address unique.
fn spool_text(file: usize, mails: usize, expected: &mut BTreeSet<String>) -> String {
    crate::support::spool_text(file, mails, 3, "shared", expected)
}

/// `cssmtp submit` (the real binary) of `text` as job `job`; its exit code and output.
async fn submit_binary(env: &Env, job: &str, text: &str) -> (Option<i32>, String) {
    let file = env.dir.path().join(format!("{job}.txt"));
    std::fs::write(&file, text).unwrap();
    let out = cssmtp()
        .arg("submit")
        .arg("-c")
        .arg(&env.config_path)
        .arg(&file)
        .env("CSSMTP_JOBNAME", job)
        .env("CSSMTP_JOBID", "J0000077")
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A `cssmtp run` daemon; its log lines collected as they come.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    log: JoinHandle<()>,
}

impl Daemon {
    fn start(env: &Env, extra: &[&str]) -> Self {
        let mut child = cssmtp()
            .arg("run")
            .arg("-c")
            .arg(&env.config_path)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&lines);
        let log = tokio::spawn(async move {
            let mut read = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = read.next_line().await {
                into.lock().unwrap().push(line);
            }
        });
        Self { child, lines, log }
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(i32::try_from(self.child.id().unwrap()).unwrap())
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).unwrap();
    }

    /// Log lines so far holding `text`.
    fn count(&self, text: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    async fn end(mut self) -> (Option<i32>, Vec<String>) {
        let status = self.child.wait().await.unwrap();
        let _ = self.log.await;
        let lines = self.lines.lock().unwrap().clone();
        (status.code(), lines)
    }

    /// SIGKILL; returns the log.
    async fn kill(mut self) -> Vec<String> {
        self.child.start_kill().unwrap();
        self.end().await.1
    }

    /// SIGTERM, then waits for it to end; returns the exit code and the log.
    async fn stop(self) -> (Option<i32>, Vec<String>) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.end().await
    }

    /// Waits for a `--drain` run to end by itself; returns the exit code and the log.
    async fn stop_when_done(self) -> (Option<i32>, Vec<String>) {
        self.end().await
    }
}

/// Waits (polling: real processes are at work) until `done`, at most `limit`; returns
/// how long it took.
async fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// How many times the sink received each recipient.
fn deliveries(sink: &Sink) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for mail in sink.received() {
        for rcpt in mail.rcpt_to {
            *counts.entry(rcpt).or_insert(0) += 1;
        }
    }
    counts
}

/// The recipients flagged "possibly delivered" (CSM2301W) in a log.
fn flagged(log: &[String]) -> BTreeSet<String> {
    log.iter()
        .filter(|l| l.contains("CSM2301W"))
        .filter_map(|l| l.split("delivered to <").nth(1))
        .filter_map(|rest| rest.split('>').next())
        .map(str::to_owned)
        .collect()
}

/// Rows left in the spool database.
async fn rows_left(url: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let n = client
        .query_one("SELECT count(*) FROM cssmtp_spool_file", &[])
        .await
        .unwrap()
        .get(0);
    drop(client);
    let _ = conn.await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_submits_once_into_the_database_and_drains_it() {
    let url = testdb::shared().database().await.unwrap();
    let sink = sink(Default::default()).await;
    let env = env_on(&url, "host-a", &sink, "");
    let mut expected = BTreeSet::new();
    let text = spool_text(1, 3, &mut expected);
    let (code, out) = submit_binary(&env, "PAYROLL", &text).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("spooled as PAYROLL.J0000077."), "{out}");
    assert!(out.contains("in the spool database"), "{out}");
    // A retried step submits the same file again: nothing is added.
    let (code, again) = submit_binary(&env, "PAYROLL", &text).await;
    assert_eq!(code, Some(0), "{again}");
    assert!(again.contains("already spooled"), "{again}");
    // Nothing went to the directory spool.
    assert!(env.files_in("").is_empty());
    let (code, log) = Daemon::start(&env, &["--drain"]).stop_when_done().await;
    assert_eq!(code, Some(0), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("CSM2600I")), "{log:#?}");
    let counts = deliveries(&sink);
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(counts.values().all(|&n| n == 1), "once each: {counts:?}");
    assert_eq!(rows_left(&url).await, 0, "the finished file is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_of_the_same_name_does_not_start() {
    let url = testdb::shared().database().await.unwrap();
    let sink = sink(Default::default()).await;
    let first_env = env_on(&url, "host-a", &sink, "");
    let first = Daemon::start(&first_env, &[]);
    until(Duration::from_secs(30), "started", || {
        first.count("CSM2600I") > 0
    })
    .await;
    let twin = env_on(&url, "host-a", &sink, "");
    let (code, log) = Daemon::start(&twin, &[]).stop_when_done().await;
    assert_ne!(code, Some(0), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("CSM2609E") && l.contains("another instance named host-a")),
        "{log:#?}"
    );
    // Another name starts beside it.
    let other_env = env_on(&url, "host-b", &sink, "");
    let other = Daemon::start(&other_env, &[]);
    until(Duration::from_secs(30), "started", || {
        other.count("CSM2600I") > 0
    })
    .await;
    for d in [first, other] {
        let (code, log) = d.stop().await;
        assert_eq!(code, Some(0), "{log:#?}");
    }
}

/// The README's plain-SQL submit, as a program in any language would run it.
fn readme_sql() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let block = readme.split("<!-- plain-sql -->\n```sql\n").nth(1).unwrap();
    block.split("```").next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_plain_sql_submit_is_forwarded_once() {
    let url = testdb::shared().database().await.unwrap();
    let sink = sink(Default::default()).await;
    let env = env_on(&url, "host-a", &sink, "");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    cssmtp::storage::pg::schema::migrate(&client).await.unwrap();
    // The README's writer is the default ExtWrtName; these tests' is TESTWTR.
    let sql = readme_sql().replace("'CSSMTP'", "'TESTWTR'");
    client.batch_execute(&sql).await.unwrap();
    // Run twice (a retried program): the same name, nothing added.
    client.batch_execute(&sql).await.unwrap();
    drop(client);
    let _ = conn.await;
    let (code, log) = Daemon::start(&env, &["--drain"]).stop_when_done().await;
    assert_eq!(code, Some(0), "{log:#?}");
    let received = sink.received();
    assert_eq!(received.len(), 1, "{log:#?}");
    assert_eq!(received[0].rcpt_to, ["clerk@example.com"]);
    let text = String::from_utf8_lossy(&received[0].data).into_owned();
    assert!(text.contains("Subject: Payroll"), "{text}");
    assert!(
        log.iter()
            .any(|l| l.contains("CSM2001I") && l.contains("PAYROLL.J0012345.20261130-0001")),
        "{log:#?}"
    );
    assert_eq!(rows_left(&url).await, 0);
}

/// `cssmtp modify` (the real binary) against the daemon of `env`: its exit code and
/// output.
async fn modify(env: &Env, args: &[&str]) -> (Option<i32>, String) {
    let out = cssmtp()
        .arg("modify")
        .arg("-c")
        .arg(&env.config_path)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_spoolstatus_shows_the_cluster() {
    let url = testdb::shared().database().await.unwrap();
    let sink = sink(Default::default()).await;
    let envs: Vec<Env> = ["host-a", "host-b"]
        .iter()
        .map(|name| env_on(&url, name, &sink, ""))
        .collect();
    let daemons: Vec<Daemon> = envs.iter().map(|e| Daemon::start(e, &[])).collect();
    for (d, e) in daemons.iter().zip(&envs) {
        until(Duration::from_secs(30), "ready", || d.count("CSM1001I") > 0).await;
        let (code, out) = modify(e, &["SUSPEND"]).await;
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("(this instance only: host-"), "{out}");
    }
    // Three files wait: intake is suspended on both.
    let mut expected = BTreeSet::new();
    for job in ["JOBA", "JOBB", "JOBC"] {
        let (code, out) = submit_binary(&envs[0], job, &spool_text(1, 1, &mut expected)).await;
        assert_eq!(code, Some(0), "{out}");
    }
    let (code, text) = modify(&envs[1], &["DISPLAY,SPOOLSTATUS"]).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("CSM5005I DISPLAY SPOOLSTATUS"), "{text}");
    assert!(
        text.contains("CLUSTER: 2 instance(s) alive; the tasks above are this instance's (host-b)"),
        "{text}"
    );
    assert!(text.contains("INSTANCE host-a WRITER TESTWTR"), "{text}");
    assert!(text.contains("INSTANCE host-b WRITER TESTWTR"), "{text}");
    assert!(
        text.contains("WRITER TESTWTR   WAITING 3   CLAIMED 0"),
        "{text}"
    );
    let (code, json) = modify(&envs[0], &["--json", "D,SPOOLSTATUS"]).await;
    assert_eq!(code, Some(0), "{json}");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let cluster = &value["data"]["cluster"]["Ok"];
    assert_eq!(cluster["this"], "host-a", "{json}");
    assert_eq!(cluster["instances"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(cluster["writers"][0]["waiting"], 3, "{json}");
    // RESUME: the files go.
    for e in &envs {
        let (code, out) = modify(e, &["RESUME"]).await;
        assert_eq!(code, Some(0), "{out}");
    }
    until(Duration::from_secs(30), "delivered", || {
        deliveries(&sink).len() == expected.len()
    })
    .await;
    for d in daemons {
        let (code, log) = d.stop().await;
        assert_eq!(code, Some(0), "{log:#?}");
    }
    // Stopped cleanly: no instance is shown alive any more.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let alive: i64 = client
        .query_one("SELECT count(*) FROM cssmtp_instance", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(alive, 0);
    drop(client);
    let _ = conn.await;
}

/// `GET /metrics` of the daemon whose log announced its endpoint (CSM1044I): the body,
/// or `None` when it cannot be read now.
async fn scrape(daemon: &Daemon) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = daemon
        .lines
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            l.split("CSM1044I Metrics at http://")
                .nth(1)
                .map(str::to_owned)
        })?
        .split('/')
        .next()?
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_targets_and_the_metrics_show_the_cluster() {
    let url = testdb::shared().database().await.unwrap();
    let sink = sink(Default::default()).await;
    let envs: Vec<Env> = ["node-a", "node-b"]
        .iter()
        .map(|name| env_on(&url, name, &sink, "MetricsListen 127.0.0.1:0"))
        .collect();
    let daemons: Vec<Daemon> = envs.iter().map(|e| Daemon::start(e, &[])).collect();
    for (d, e) in daemons.iter().zip(&envs) {
        until(Duration::from_secs(30), "ready", || d.count("CSM1001I") > 0).await;
        let (code, out) = modify(e, &["SUSPEND"]).await;
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("(this instance only: node-"), "{out}");
    }
    // Two files wait: intake is suspended on both.
    let mut expected = BTreeSet::new();
    for job in ["JOBA", "JOBB"] {
        let (code, out) = submit_binary(&envs[0], job, &spool_text(1, 1, &mut expected)).await;
        assert_eq!(code, Some(0), "{out}");
    }
    // DISPLAY TARGETS on one instance shows both, and the queue.
    let (code, text) = modify(&envs[1], &["DISPLAY,TARGETS"]).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("CSM5001I DISPLAY TARGETS"), "{text}");
    assert!(
        text.contains(
            "CLUSTER: 2 instance(s) alive; the counters above are this instance's (node-b)"
        ),
        "{text}"
    );
    assert!(
        text.contains("INSTANCE node-a WRITER TESTWTR   FILES HELD 0"),
        "{text}"
    );
    assert!(
        text.contains("INSTANCE node-b WRITER TESTWTR   FILES HELD 0"),
        "{text}"
    );
    assert!(
        text.contains("WRITER TESTWTR   WAITING 2   CLAIMED 0   HELD 0   OLDEST WAITING 20"),
        "{text}"
    );
    let (code, json) = modify(&envs[0], &["--json", "D,TARGETS"]).await;
    assert_eq!(code, Some(0), "{json}");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let cluster = &value["data"]["cluster"]["Ok"];
    assert_eq!(cluster["this"], "node-a", "{json}");
    let names: Vec<_> = cluster["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["node-a", "node-b"], "{json}");
    assert_eq!(cluster["instances"][0]["files_held"], 0, "{json}");
    assert!(
        cluster["instances"][0]["seen"].as_i64().unwrap() > 0,
        "{json}"
    );
    assert_eq!(cluster["writers"][0]["waiting"], 2, "{json}");
    assert!(
        cluster["writers"][0]["oldest_waiting"].as_i64().unwrap() > 0,
        "{json}"
    );
    // The metrics of either instance: the refresher's view, within a few seconds.
    for d in &daemons {
        // Polling: real processes are at work.
        let start = std::time::Instant::now();
        let body = loop {
            let body = scrape(d).await.unwrap_or_default();
            if body.contains("cssmtp_cluster_queue_depth{writer=\"TESTWTR\"} 2") {
                break body;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for line in [
            "cssmtp_cluster_instances_alive 2",
            "cssmtp_cluster_files_held{writer=\"TESTWTR\",instance=\"node-a\"} 0",
            "cssmtp_cluster_files_held{writer=\"TESTWTR\",instance=\"node-b\"} 0",
            "cssmtp_cluster_oldest_waiting_seconds{writer=\"TESTWTR\"} ",
            "cssmtp_cluster_view_age_seconds ",
        ] {
            assert!(body.contains(line), "{line} in {body}");
        }
    }
    // RESUME, on this instance only: the files go.
    for e in &envs {
        let (code, out) = modify(e, &["RESUME"]).await;
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("(this instance only: node-"), "{out}");
    }
    until(Duration::from_secs(30), "delivered", || {
        deliveries(&sink).len() == expected.len()
    })
    .await;
    for d in daemons {
        let (code, log) = d.stop().await;
        assert_eq!(code, Some(0), "{log:#?}");
    }
}
