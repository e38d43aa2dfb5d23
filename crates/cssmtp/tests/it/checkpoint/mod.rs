//! The checkpoint journal: warm restarts after SIGKILL of the real binary neither lose
//! nor (beyond what the journal flags) duplicate mail; damage to the journal is
//! survived; the `PossiblyDelivered` policy and cold start.
//!
//! `crash` holds the SIGKILL and damaged-journal runs, `in_doubt` the mail cut between
//! its "." and the reply, `restart` warm and cold starts; this file their shared
//! helpers.

mod crash;
mod in_doubt;
mod restart;

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
    crate::support::spool_text(file, mails, 5, "crash test", expected)
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
