//! Against servers we did not write: aiosmtpd (Debian's python3-aiosmtpd, installed by
//! `.ci/install-peers`), run on loopback by the test itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use crate::support::{Env, cssmtp, mail, text_with_ids};

/// A running aiosmtpd; stopped when dropped (its standard input closes, and it is
/// killed).
pub struct Aiosmtpd {
    _child: tokio::process::Child,
    pub port: u16,
    record: PathBuf,
}

/// Starts a test peer whose first line on standard output is `port N`; the child (killed
/// when dropped) and its port.
pub(crate) async fn start_peer(
    mut command: tokio::process::Command,
    name: &str,
) -> (tokio::process::Child, u16) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{name} did not start"))
        .unwrap()
        .unwrap();
    let port = first.strip_prefix("port ").unwrap().parse().unwrap();
    (child, port)
}

impl Aiosmtpd {
    pub async fn start(dir: &Path, args: &[&str]) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let installed = std::process::Command::new(root.join("../../.ci/install-peers"))
            .arg("aiosmtpd")
            .status()
            .unwrap();
        assert!(installed.success(), ".ci/install-peers aiosmtpd failed");
        let record = dir.join("aiosmtpd.jsonl");
        let mut command = tokio::process::Command::new("/usr/bin/python3");
        command
            .arg(root.join("tests/peers/aiosmtpd_server.py"))
            .args(args)
            .arg("--record")
            .arg(&record);
        let (child, port) = start_peer(command, "aiosmtpd").await;
        Self {
            _child: child,
            port,
            record,
        }
    }

    /// The mails it accepted.
    pub fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// 2,000 mails through a server that takes 100 mails per session (452 at the next
/// MAIL FROM, as OpenSMTPD; aiosmtpd itself also answers a 21st MAIL in a session with
/// 421 and closes) and has OpenSMTPD's listen backlog of 5 (a connection the server's
/// kernel drops never gets a greeting): all delivered, none returned, none waited a
/// retry interval or a greeting time-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_mails_through_a_server_with_session_limits() {
    let scratch = tempfile::tempdir().unwrap();
    let server = Aiosmtpd::start(scratch.path(), &["--limit", "100", "--backlog", "5"]).await;
    let env = Env::new(&format!(
        "RetryLimit\n{{\n  Count 3\n  Interval 1\n}}\n\
         TargetServer\n{{\n  TargetIp 127.0.0.1\n  ConnectPort {}\n}}\n",
        server.port
    ));
    for file in 0..200 {
        let mut text = String::from("HELO zos.example\n");
        for m in 0..10 {
            text.push_str(&mail(
                "batch@zos.example",
                &[&format!("u{file}m{m}@example.com")],
                &text_with_ids(&format!("interop {file} {m}"), "b"),
            ));
        }
        env.submit(&format!("LIMITS{file:03}"), &text);
    }
    // A mail that waited a retry interval (a minute) would pass this bound.
    let out = tokio::time::timeout(
        Duration::from_secs(50),
        cssmtp()
            .args(["run", "--drain", "-c"])
            .arg(&env.config_path)
            .output(),
    )
    .await
    .expect("run --drain did not end: some mail waited for a retry")
    .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let received = server.received();
    let originals = received.iter().filter(|m| m["mail_from"] != "").count();
    assert_eq!(originals, 2000, "every mail delivered");
    assert_eq!(received.len(), 2000, "no notification: nothing returned");
    assert!(!log.contains("CSM2103I"), "no mail waited a retry interval");
    assert!(
        std::fs::read_dir(env.config().dead_letter_directory())
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "no dead letter"
    );
}
