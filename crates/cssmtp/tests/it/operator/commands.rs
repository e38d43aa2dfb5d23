//! The commands that change something: SUSPEND/RESUME, REFRESH, FLUSHRETRY,
//! REFRESHTARGETS, REFRESHIPLIST, LOGLEVEL, STOP; `cssmtp modify` and SIGHUP on the real
//! binary.

use super::*;

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
    // The job and the owner of the file (issue 14 point 3).
    assert!(
        detail
            .lines
            .iter()
            .any(|l| l.starts_with("    JOB STUCK J0000001   OWNER root   STARTED ")),
        "{:#?}",
        detail.lines
    );
    assert_eq!(detail.data["tasks"][0]["owner"], "root");
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
