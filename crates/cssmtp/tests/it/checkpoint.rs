//! The checkpoint journal: warm restarts after SIGKILL of the real binary neither lose
//! nor (beyond what the journal flags) duplicate mail; damage to the journal is
//! survived; the `PossiblyDelivered` policy and cold start.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use cssmtp::journal::{self, Journal, JournalOptions, Outcome, Record};
use cssmtp::sink::{Gate, Sink, SinkOptions};
use cssmtp::spool::submit::{JobInfo, submit};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::task::JoinHandle;

use crate::support::{Env, cssmtp, mail, sink, target};

/// MaxConnections of the crash test: at most this many mails are in doubt per crash.
const CONNECTIONS: usize = 4;

/// A `cssmtp run` daemon (warnings and errors logged, collected).
struct Daemon {
    child: Child,
    log: JoinHandle<Vec<String>>,
}

impl Daemon {
    fn start(env: &Env, extra: &[&str]) -> Self {
        let mut child = cssmtp()
            .arg("-q")
            .arg("run")
            .arg("-c")
            .arg(&env.config_path)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut out = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                out.push(line);
            }
            out
        });
        Self { child, log }
    }

    /// SIGKILL; returns the log.
    async fn kill(mut self) -> Vec<String> {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
        self.log.await.unwrap()
    }

    /// Waits for a `--drain` run to end by itself; returns the exit code and the log.
    async fn stop_when_done(mut self) -> (Option<i32>, Vec<String>) {
        let status = self.child.wait().await.unwrap();
        (status.code(), self.log.await.unwrap())
    }
}

/// The recipients flagged "possibly delivered" (CSM2301W) in a log, with the mails
/// (`Mail N of FILE`) they belong to.
fn flagged(log: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut rcpts = BTreeSet::new();
    let mut mails = BTreeSet::new();
    for line in log.iter().filter(|l| l.contains("CSM2301W")) {
        let mail = line
            .split("CSM2301W ")
            .nth(1)
            .and_then(|rest| rest.split(" was possibly").next())
            .unwrap();
        mails.insert(mail.to_owned());
        let rcpt = line
            .split("delivered to <")
            .nth(1)
            .unwrap()
            .split('>')
            .next()
            .unwrap();
        rcpts.insert(rcpt.to_owned());
    }
    (rcpts, mails)
}

/// The mails whose last record in the journal's last run is a `sent` (the final "."
/// may have gone, no result was recorded): `(file key, mail)`.
fn in_doubt_at_crash(env: &Env) -> BTreeSet<(String, u32)> {
    let text = std::fs::read(env.config().journal_path()).unwrap();
    let mut open = BTreeSet::new();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match journal::record::decode(line).unwrap() {
            // A new run: what it inherited is counted at the crash it came from.
            Record::Start { .. } => open.clear(),
            Record::Sent { f, m, .. } => {
                open.insert((f, m));
            }
            Record::Result { f, m, .. } => {
                open.remove(&(f, m));
            }
            _ => {}
        }
    }
    open
}

/// Kills the daemon (SIGKILL); keeps its log and the mails in doubt in the journal.
async fn crashed(
    daemon: Daemon,
    env: &Env,
    logs: &mut Vec<Vec<String>>,
    in_doubt: &mut Vec<BTreeSet<(String, u32)>>,
) {
    logs.push(daemon.kill().await);
    in_doubt.push(in_doubt_at_crash(env));
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

/// A spool file's text: `mails` mails, mail `k` to 1 to 5 recipients, every address
/// unique.
fn spool_text(file: usize, mails: usize, expected: &mut BTreeSet<String>) -> String {
    let mut text = String::from("EHLO zos.example\n");
    for k in 0..mails {
        let rcpts: Vec<String> = (0..=(file + k) % 5)
            .map(|i| format!("r{file}-{k}-{i}@example.com"))
            .collect();
        expected.extend(rcpts.iter().cloned());
        let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        text.push_str(&mail(
            "batch@zos.example",
            &refs,
            &format!("Subject: crash test {file}/{k}\r\n\r\nBody of mail {k} of file {file}.\r\n"),
        ));
    }
    text.push_str("QUIT\n");
    text
}

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

/// Puts a spool file straight into `active/` (as a crashed run leaves it) and returns
/// its journal key.
fn left_active(env: &Env, text: &str) -> String {
    let layout = env.layout();
    let job = JobInfo {
        job_name: "LEFT".into(),
        job_id: "J0000044".into(),
    };
    let path = submit(&layout.active, &job, 1, text.as_bytes()).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    journal::file_key(name, std::fs::metadata(&path).unwrap().ino())
}

/// Writes journal records as a crashed run would have.
async fn write_journal(env: &Env, records: &[Record]) {
    let config = env.config();
    let layout = env.layout();
    let live = layout
        .left_active()
        .unwrap()
        .iter()
        .map(|p| {
            journal::file_key(
                p.file_name().unwrap().to_str().unwrap(),
                std::fs::metadata(p).unwrap().ino(),
            )
        })
        .collect();
    let (journal, _, writer) =
        Journal::open(&config.journal_path(), &live, JournalOptions::default()).unwrap();
    for record in records {
        journal.append_durable(record).await.unwrap();
    }
    drop(journal);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .unwrap();
}

/// Mail 1 to three recipients, mail 2 to one; the journal says: mail 1 delivered to
/// the first, failed for none, "." sent for the second and third with no reply read;
/// mail 2 delivered.
async fn crashed_mid_data(env: &Env) -> String {
    let text = format!(
        "EHLO zos.example\n{}{}QUIT\n",
        mail(
            "batch@zos.example",
            &[
                "done@example.com",
                "doubt1@example.com",
                "doubt2@example.com"
            ],
            "Subject: one\r\n\r\nOne.\r\n"
        ),
        mail(
            "batch@zos.example",
            &["two@example.com"],
            "Subject: two\r\n\r\nTwo.\r\n"
        )
    );
    let key = left_active(env, &text);
    write_journal(
        env,
        &[
            Record::Sent {
                f: key.clone(),
                m: 1,
                r: vec![0],
            },
            Record::Result {
                f: key.clone(),
                m: 1,
                o: Outcome {
                    a: 0,
                    d: vec![0],
                    ..Outcome::default()
                },
            },
            Record::Sent {
                f: key.clone(),
                m: 2,
                r: vec![0],
            },
            Record::Result {
                f: key.clone(),
                m: 2,
                o: Outcome {
                    a: 0,
                    d: vec![0],
                    ..Outcome::default()
                },
            },
            Record::Sent {
                f: key.clone(),
                m: 1,
                r: vec![1, 2],
            },
        ],
    )
    .await;
    key
}

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
