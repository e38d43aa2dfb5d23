//! The operator interface: every MODIFY command through the real control socket of a
//! running daemon, checked against what the daemon really did; accounting records; the
//! metrics endpoint scraped over HTTP; SIGHUP and `cssmtp modify` on the real binary.
//!
//! The daemon runs in the test's runtime on tokio's paused clock: waiting (for retry
//! intervals, or for work to settle) costs no real time, and "eventually" below steps
//! the virtual clock, never the wall clock.

use std::collections::BTreeMap;
use std::time::Duration;

use cssmtp::sink::{Sink, SinkOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    Daemon, Env, closed_port, cssmtp, eventually, mail, notifications, sink, target, text_with_ids,
};

/// Waits until no spool task is active and the spool's intake directory is empty.
async fn settled(daemon: &Daemon, env: &Env) {
    eventually(|| async {
        let reply = daemon.cmd("D,SP").await;
        reply.data["tasks"].as_array().is_some_and(Vec::is_empty)
            && env.files_in("").is_empty()
            && env.files_in("active").is_empty()
    })
    .await;
}

fn one_mail(rcpts: &[&str]) -> String {
    format!(
        "HELO zos.example\n{}",
        mail("batch@zos.example", rcpts, &text_with_ids("op", "b"))
    )
}

fn accounting(env: &Env) -> Vec<Value> {
    let path = env.config().accounting_path();
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn display_targets_iplist_config_and_spool_match_what_happened() {
    let sink = sink(SinkOptions::default()).await;
    let down = closed_port();
    let env = Env::new(&format!(
        "{}{}SMF119\n{{\n  Config\n  Connect\n  Mail\n  Spool\n  Stats\n}}\nStatsInterval 1\n",
        target(sink.addr, ""),
        target(down, "")
    ));
    let daemon = Daemon::start(&env).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "only the daemon's user (and root) may connect"
    );
    env.submit("ONE", &one_mail(&["a@example.com", "b@example.com"]));
    env.submit("TWO", &one_mail(&["c@example.com"]));
    env.submit("THREE", &one_mail(&["reject-d@example.com"]));
    sink.wait_for(3).await;
    settled(&daemon, &env).await;

    let reply = daemon.ok("DISPLAY,TARGETS").await;
    let global = &reply.data["global"];
    assert_eq!(global["mail_sent"], 2, "{:#?}", reply.lines);
    assert_eq!(global["undeliver"], 1);
    assert_eq!(global["current_retry"], 0);
    assert_eq!(global["rcpts_delivered"], 3);
    let targets = reply.data["targets"].as_array().unwrap();
    let up = targets
        .iter()
        .find(|t| t["address"] == sink.addr.to_string())
        .unwrap();
    assert_eq!(up["state"], "ready");
    assert_eq!(up["protocol"], "esmtp");
    // Three mails and one notification (to batch@zos.example); all accepted but
    // THREE, whose only recipient was refused.
    assert_eq!(up["mail_attempts"], 4, "{:#?}", reply.lines);
    assert_eq!(up["mail_sent"], 3);
    // The down target, when it was tried, failed to connect.
    let dead = targets
        .iter()
        .find(|t| t["address"] == down.to_string())
        .unwrap();
    assert_eq!(dead["mail_sent"], 0);
    assert!(reply.lines[0].starts_with("CSM5001I DISPLAY TARGETS"));
    assert!(
        reply.lines.iter().any(|l| l.contains("MAIL SENT: 2")),
        "{:#?}",
        reply.lines
    );

    let only = daemon.ok(&format!("D,TAR,ADDR={}", sink.addr.ip())).await;
    assert_eq!(
        only.data["targets"].as_array().unwrap().len(),
        2,
        "same IP, two ports"
    );
    assert!(!daemon.cmd("D,TAR,ADDR=192.0.2.99").await.ok);

    let ip = daemon.ok("D,IP").await;
    assert_eq!(ip.data["targets"].as_array().unwrap().len(), 2);
    assert!(
        ip.lines[1].contains(&sink.addr.to_string()),
        "{:#?}",
        ip.lines
    );

    let config = daemon.ok("Display,CONFig").await;
    let statements: Vec<String> =
        serde_json::from_value(config.data["statements"].clone()).unwrap();
    assert!(statements.contains(&"ExtWrtName TESTWTR".to_string()));
    assert!(statements.contains(&"SMF119 { Config Connect Mail Spool Stats }".to_string()));

    // Accounting: a spool record per file, a mail record per mail, with their counts.
    let records = accounting(&env);
    let kinds = |t: &str| records.iter().filter(|r| r["type"] == t).count();
    assert_eq!(kinds("spool"), 3, "{records:#?}");
    assert_eq!(kinds("mail"), 3);
    assert!(kinds("config") >= 1);
    let one = records
        .iter()
        .find(|r| r["type"] == "mail" && r["job_name"] == "ONE")
        .unwrap();
    assert_eq!(one["delivered"], 2);
    assert_eq!(one["undeliverable"], 0);
    let three = records
        .iter()
        .find(|r| r["type"] == "spool" && r["job_name"] == "THREE")
        .unwrap();
    assert_eq!(three["rcpts_undeliverable"], 1);
    assert_eq!(three["disposition"], "deleted");
    // A virtual minute later, a STATS record with the counters.
    tokio::time::sleep(Duration::from_secs(61)).await;
    daemon.end().await;
    let records = accounting(&env);
    let stats = records.iter().find(|r| r["type"] == "stats").unwrap();
    assert_eq!(stats["subtype"], 52);
    assert_eq!(stats["counters"]["mails_all_sent"], 2, "{stats:#?}");
    assert_eq!(stats["counters"]["rcpts_delivered"], 3);
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "connect" && r["target"] == sink.addr.to_string()),
        "a connect record when the session ends"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn suspend_stops_intake_and_resume_restarts_it() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let daemon = Daemon::start(&env).await;
    let reply = daemon.ok("SUSPEND").await;
    assert!(reply.lines[0].starts_with("CSM5017I SUSPEND IMMEDIATE"));
    env.submit("WAITS", &one_mail(&["a@example.com"]));
    // A virtual minute: a dozen rescans of the spool, none of which takes the file.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(env.files_in("").len(), 1, "still waiting in the spool");
    let spool = daemon.ok("D,SP").await;
    assert_eq!(spool.data["intake"], "immediate");
    assert!(spool.data["tasks"].as_array().unwrap().is_empty());
    assert_eq!(sink.count(), 0);

    daemon.ok("RES").await;
    sink.wait_for(1).await;
    settled(&daemon, &env).await;
    assert_eq!(daemon.ok("D,SP").await.data["intake"], "running");

    // SUSPEND,DELAY also keeps new files out.
    daemon.ok("SUS,DELAY").await;
    env.submit("LATER", &one_mail(&["b@example.com"]));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(env.files_in("").len(), 1);
    daemon.ok("RESUME").await;
    sink.wait_for(2).await;

    // SUSPEND (IMMEDIATE) also holds mail of spool files in progress: a mail waiting
    // in long retry is not tried again until RESUME.
    env.submit("RETRYING", &one_mail(&["tempfail-once@example.com"]));
    eventually(|| async { daemon.cmd("D,TAR").await.data["global"]["current_retry"] == 1 }).await;
    daemon.ok("SUSPEND,IMMEDIATE").await;
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(
        sink.count(),
        2,
        "five RetryLimit intervals later, not tried again"
    );
    // The task holding it still answers (it is not blocked waiting for RESUME).
    let tkid = daemon.ok("D,SP").await.data["tasks"][0]["tkid"]
        .as_u64()
        .unwrap();
    daemon.ok(&format!("FLUSHRETRY,TKID={tkid}")).await;
    daemon.ok("RESUME").await;
    sink.wait_for(3).await;
    assert_eq!(sink.received()[2].rcpt_to, ["tempfail-once@example.com"]);
    daemon.end().await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn refresh_with_a_broken_file_changes_nothing_and_a_new_target_takes_the_mail() {
    let first = sink(SinkOptions::default()).await;
    let second = sink(SinkOptions {
        scripted: false,
        ..SinkOptions::default()
    })
    .await;
    let body = |t: &Sink| {
        format!(
            "{}RetryLimit\n{{\n  Count 10\n  Interval 10\n}}\nLogLevel 7\n",
            target(t.addr, "")
        )
    };
    let env = Env::new(&body(&first));
    let daemon = Daemon::start(&env).await;
    // A mail into long retry at the first target (it refuses tempfail@ with 451).
    env.submit("RETRIED", &one_mail(&["tempfail@example.com"]));
    eventually(|| async { daemon.cmd("D,TAR").await.data["global"]["current_retry"] == 1 }).await;
    let before = daemon.ok("D,CONFIG").await.data;

    // A broken file: nothing changes.
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        format!("{text}\nBogusStatement 1\nSpoolTasks 0\n"),
    )
    .unwrap();
    let reply = daemon.cmd("REFRESH").await;
    assert!(!reply.ok);
    assert!(
        reply.lines[0].starts_with("CSM5014E REFRESH"),
        "{:#?}",
        reply.lines
    );
    assert!(
        reply
            .lines
            .iter()
            .any(|l| l.contains("unknown statement BogusStatement")),
        "{:#?}",
        reply.lines
    );
    assert_eq!(daemon.ok("D,CONFIG").await.data, before);
    assert_eq!(
        daemon.ok("D,IP").await.data["targets"][0]["address"],
        first.addr.to_string()
    );

    // The second target instead, a LogLevel change, and a statement that needs a
    // restart.
    let changed = format!(
        "{}SpoolTasks 3\n",
        body(&second).replace("LogLevel 7", "LogLevel 15")
    );
    std::fs::write(&env.config_path, text.replace(&body(&first), &changed)).unwrap();
    let reply = daemon.ok("REFRESH").await;
    assert!(
        reply
            .lines
            .iter()
            .any(|l| l.starts_with("CSM5013W") && l.contains("SpoolTasks")),
        "{:#?}",
        reply.lines
    );
    assert_eq!(
        daemon.ok("D,IP").await.data["targets"][0]["address"],
        second.addr.to_string()
    );
    assert_eq!(daemon.ok("D,LOG").await.data["level"], 15);
    // The mail waiting in retry goes to the new target at its next attempt.
    second.wait_for(1).await;
    assert_eq!(second.received()[0].rcpt_to, ["tempfail@example.com"]);
    // New mail too.
    env.submit("NEW", &one_mail(&["new@example.com"]));
    second.wait_for(2).await;
    assert_eq!(first.count(), 0);
    daemon.ok("LOGLEVEL,LEVEL=7").await;
    daemon.end().await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn flushretry_takes_mail_out_of_long_retry() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 100\n  Interval 60\n}}\n",
        target(sink.addr, "")
    ));
    let daemon = Daemon::start(&env).await;
    env.submit("STUCK", &one_mail(&["tempfail@example.com"]));
    eventually(|| async { daemon.cmd("D,SP,DETAIL").await.data["tasks"][0]["mails_retry"] == 1 })
        .await;
    let tkid = daemon.ok("D,SP").await.data["tasks"][0]["tkid"]
        .as_u64()
        .unwrap();
    let detail = daemon.ok(&format!("D,SP,D,TKID={tkid}")).await;
    assert!(
        detail.lines.iter().any(|l| l.contains("IN RETRY 1")),
        "{:#?}",
        detail.lines
    );
    assert!(!daemon.cmd("D,SP,D,TKID=999").await.ok);
    let reply = daemon.ok(&format!("FLUSHRETRY,TKID={tkid}")).await;
    assert_eq!(reply.data["mails"], 1, "{:#?}", reply.lines);
    // Out of long retry, undeliverable (no extended retry): returned to its sender.
    sink.wait_for(1).await;
    let notes = notifications(&sink);
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].text().contains("FLUSHRETRY"),
        "{}",
        notes[0].text()
    );
    settled(&daemon, &env).await;
    let targets = daemon.ok("D,TAR").await;
    assert_eq!(targets.data["global"]["undeliver"], 1);
    assert_eq!(targets.data["global"]["total_retry"], 1);
    assert_eq!(targets.data["global"]["current_retry"], 0);
    assert!(
        !daemon.cmd("FLUSHRETRY,AGE=1").await.ok,
        "no extended retry here"
    );
    daemon.end().await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn flushretry_age_returns_mail_from_extended_retry() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 0\n}}\nExtendedRetry\n{{\n  Age 5\n  Interval 600\n}}\n",
        target(sink.addr, "")
    ));
    let daemon = Daemon::start(&env).await;
    env.submit("LONGER", &one_mail(&["tempfail@example.com"]));
    eventually(|| async {
        daemon.cmd("D,TAR").await.data["global"]["extended_retry_current"] == 1
    })
    .await;
    let reply = daemon.ok("FLUSHR,AGE=0").await;
    assert_eq!(reply.data["mails"], 1, "{:#?}", reply.lines);
    sink.wait_for(1).await;
    assert_eq!(notifications(&sink).len(), 1);
    eventually(|| async {
        daemon.cmd("D,TAR").await.data["global"]["extended_retry_current"] == 0
    })
    .await;
    daemon.end().await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn refreshtargets_and_refreshiplist_loglevel_stop_and_bad_requests() {
    let sink = sink(SinkOptions::default()).await;
    let down = closed_port();
    let env = Env::new(&target(down, ""));
    let daemon = Daemon::start(&env).await;
    env.submit("WAITING", &one_mail(&["a@example.com"]));
    eventually(|| async { daemon.cmd("D,TAR").await.data["targets"][0]["state"] == "not_ready" })
        .await;
    let reply = daemon.ok("REFRESHT").await;
    assert_eq!(reply.data["targets"], 1);
    // Tried again at once (and failing again, since nothing listens there).
    let fails = daemon.ok("D,TAR").await.data["targets"][0]["connect_failures"]
        .as_u64()
        .unwrap();
    eventually(|| async {
        daemon.cmd("D,TAR").await.data["targets"][0]["connect_failures"]
            .as_u64()
            .unwrap()
            > fails
    })
    .await;

    // REFRESHIPLIST resolves the file's targets again: point them at the sink first.
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text.replace(&down.port().to_string(), &sink.addr.port().to_string()),
    )
    .unwrap();
    let reply = daemon.ok("REFRESHIPLIST").await;
    assert_eq!(
        reply.data["targets"][0]["address"],
        down.to_string(),
        "REFRESHIPLIST re-resolves the running configuration, not the file"
    );
    daemon.ok("REFRESH").await;
    sink.wait_for(1).await;

    daemon.ok("LOG,LEVEL=31").await;
    let level = daemon.ok("D,LOG").await;
    assert_eq!(level.data["level"], 31);
    assert!(level.lines[0].contains("error, warning, event, detail, trace"));
    daemon.ok("LOG,LEVEL=7").await;

    // Bad requests are answered, never fatal.
    let reply = daemon.cmd("DISPLAY,NOTHING").await;
    assert!(
        !reply.ok && reply.lines[0].starts_with("CSM5090E"),
        "{:#?}",
        reply.lines
    );
    let mut raw = tokio::net::UnixStream::connect(&daemon.socket)
        .await
        .unwrap();
    raw.write_all(b"this is not json\n").await.unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    assert!(answer.contains("CSM5091E"), "{answer}");
    let mut raw = tokio::net::UnixStream::connect(&daemon.socket)
        .await
        .unwrap();
    raw.write_all(&vec![b'x'; 100_000]).await.unwrap_or(());
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap_or(0);
    assert!(answer.contains("CSM5091E"), "{answer}");
    daemon.ok("D,TAR").await;

    // STOP ends the daemon as SIGTERM does.
    let reply = daemon.ok("STOP").await;
    assert!(reply.lines[0].starts_with("CSM5019I"));
    let report = daemon.run.await.unwrap().unwrap();
    assert!(report.stopped);
    assert!(!daemon.socket.exists(), "the socket goes with the daemon");
}

/// Scrapes `/metrics` with a plain HTTP/1.1 request; returns `name{labels}` → value.
async fn scrape(addr: std::net::SocketAddr) -> BTreeMap<String, f64> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_metrics_endpoint_matches_display_targets() {
    let sink = sink(SinkOptions::default()).await;
    let metrics_addr = closed_port();
    let env = Env::new(&format!(
        "{}MetricsListen {metrics_addr}\n",
        target(sink.addr, "")
    ));
    let daemon = Daemon::start(&env).await;
    env.submit("M1", &one_mail(&["a@example.com", "b@example.com"]));
    env.submit("M2", &one_mail(&["c@example.com"]));
    sink.wait_for(2).await;
    settled(&daemon, &env).await;
    let metrics = scrape(metrics_addr).await;
    let t = sink.addr.to_string();
    assert_eq!(metrics["cssmtp_mails_all_sent_total"], 2.0, "{metrics:#?}");
    assert_eq!(
        metrics["cssmtp_recipients_total{outcome=\"delivered\"}"],
        3.0
    );
    assert_eq!(
        metrics[&format!("cssmtp_target_mails_sent_total{{target=\"{t}\"}}")],
        2.0
    );
    assert_eq!(metrics[&format!("cssmtp_target_up{{target=\"{t}\"}}")], 1.0);
    assert_eq!(metrics["cssmtp_spool_tasks"], 0.0);
    assert_eq!(metrics["cssmtp_suspended"], 0.0);
    let display = daemon.ok("D,TAR").await;
    assert_eq!(
        display.data["targets"][0]["mail_sent"].as_f64().unwrap(),
        metrics[&format!("cssmtp_target_mails_sent_total{{target=\"{t}\"}}")]
    );
    assert!(
        metrics.keys().all(|k| !k.contains("example.com")),
        "never a recipient in a label"
    );
    daemon.ok("SUSPEND").await;
    assert_eq!(scrape(metrics_addr).await["cssmtp_suspended"], 1.0);
    // Anything but /metrics is a 404.
    let mut stream = tokio::net::TcpStream::connect(metrics_addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    daemon.end().await;
}

/// The real binary: `cssmtp modify` prints the reply and says by its exit status how it
/// went; SIGHUP is REFRESH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cssmtp_modify_and_sighup_on_the_real_binary() {
    use std::process::Stdio;
    use tokio::io::AsyncBufReadExt;

    let first = sink(SinkOptions::default()).await;
    let second = sink(SinkOptions::default()).await;
    let env = Env::new(&target(first.addr, ""));
    let mut daemon = cssmtp()
        .args(["run", "-c"])
        .arg(&env.config_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stderr = daemon.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut wait_line = async |needle: &str| -> String {
        while let Some(line) = lines.recv().await {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("the daemon ended before logging {needle:?}");
    };
    wait_line("CSM1043I").await;
    let modify = |args: &[&str]| {
        let mut c = cssmtp();
        c.arg("modify").arg("-c").arg(&env.config_path).args(args);
        c.output()
    };

    let out = modify(&["DISPLAY,TARGETS"]).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("CSM5001I DISPLAY TARGETS"), "{text}");
    assert!(
        text.contains(&format!("TARGET SERVER: {}", first.addr)),
        "{text}"
    );

    let out = modify(&["BOGUS"]).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a command the daemon would refuse"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command"));

    let out = modify(&["d", "tar,addr=192.0.2.7"]).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "refused by the daemon");
    assert!(String::from_utf8_lossy(&out.stderr).contains("CSM5090E"));

    // SIGHUP: the file now names the second sink.
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text.replace(
            &first.addr.port().to_string(),
            &second.addr.port().to_string(),
        ),
    )
    .unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(daemon.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let line = wait_line("target address(es)").await;
    assert!(line.contains(&second.addr.to_string()), "{line}");

    let out = modify(&["--json", "D,IP"]).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["ok"], true);
    assert_eq!(
        reply["data"]["targets"][0]["address"],
        second.addr.to_string()
    );

    let out = modify(&["STOP"]).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(daemon.wait().await.unwrap().code(), Some(0));
    let out = modify(&["D,TAR"]).await.unwrap();
    assert_eq!(out.status.code(), Some(69), "no daemon to reach");
}

/// Issue 10 (points 1 and 6): a server closing with 421 at MAIL FROM. DISPLAY TARGETS
/// keeps its words and the stage, not "closed by the server at RCPT TO".
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn display_targets_keeps_a_421_and_its_stage() {
    let sink = sink(SinkOptions {
        max_mails_per_session: Some(0),
        close_at_limit: true,
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&format!(
        "RetryLimit\n{{\n  Count 0\n  Interval 1\n}}\n{}",
        target(sink.addr, "")
    ));
    let daemon = Daemon::start(&env).await;
    env.submit("CLOSING", &one_mail(&["a@example.com"]));
    settled(&daemon, &env).await;
    let reply = daemon.ok("DISPLAY,TARGETS").await;
    let targets = reply.data["targets"].as_array().unwrap();
    let up = targets
        .iter()
        .find(|t| t["address"] == sink.addr.to_string())
        .unwrap();
    let last = up["last_reply"].as_str().unwrap_or_default();
    assert!(
        last.contains("421 4.7.0 Too many messages in this session, closing")
            && last.contains("(at MAIL FROM)"),
        "{:#?}",
        reply.lines
    );
    assert!(
        reply
            .lines
            .iter()
            .any(|l| l.contains("LAST REPLY: 421 4.7.0") && l.contains("at MAIL FROM")),
        "{:#?}",
        reply.lines
    );
    daemon.end().await;
}

/// Issue 10 point 2: a limit met is learned and shown. A server taking 10 mails per
/// session and 5 recipients per transaction, nothing configured: DISPLAY TARGETS shows
/// the learned limits, and later sessions keep within them (the server refuses only
/// while they are being learned).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn display_targets_shows_learned_limits() {
    let sink = sink(SinkOptions {
        max_mails_per_session: Some(10),
        max_rcpts: Some(5),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&format!(
        "MaxConnections 1\n{}",
        target(sink.addr, "  MaxConnections 3")
    ));
    let daemon = Daemon::start(&env).await;
    let rcpts: Vec<String> = (0..7).map(|i| format!("r{i}@example.com")).collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let mut file = String::from("HELO zos.example\n");
    for i in 0..40 {
        file.push_str(&mail(
            "batch@zos.example",
            if i == 0 { &refs } else { &refs[..1] },
            &text_with_ids(&format!("m{i}"), "b"),
        ));
    }
    env.submit("LEARN", &file);
    settled(&daemon, &env).await;
    let reply = daemon.ok("DISPLAY,TARGETS").await;
    let targets = reply.data["targets"].as_array().unwrap();
    let t = targets
        .iter()
        .find(|t| t["address"] == sink.addr.to_string())
        .unwrap();
    assert_eq!(t["max_mails_per_session"]["value"], 10, "{t:#}");
    assert_eq!(t["max_mails_per_session"]["source"], "learned");
    assert_eq!(t["max_rcpts_per_mail"]["value"], 5, "{t:#}");
    assert_eq!(t["max_rcpts_per_mail"]["source"], "learned");
    assert_eq!(t["max_connections"]["value"], 3, "{t:#}");
    assert_eq!(t["max_connections"]["source"], "configured");
    assert!(
        reply.lines.iter().any(|l| l.contains(
            "MAILS PER SESSION: 10 (learned)   RCPTS PER MAIL: 5 (learned)   MAX CONNECTIONS: 3 (configured)"
        )),
        "{:#?}",
        reply.lines
    );
    // While learning: 452 to the 6th and 7th RCPT of the first mail (pipelined) and to
    // the 11th MAIL FROM of the first session; none after.
    assert_eq!(sink.limit_refusals(), 3, "limits kept once learned");
    let config = daemon.ok("D,CONFIG").await;
    assert!(
        config.lines.iter().any(|l| l.contains(" MaxConnections 3")),
        "{:#?}",
        config.lines
    );
    daemon.end().await;
}
