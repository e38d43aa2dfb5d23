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

/// Through the real binary, with `Options SmtpUtf8 Yes`: a mail between UTF-8 addresses
/// with a UTF-8 header reaches aiosmtpd offering SMTPUTF8 with `SMTPUTF8` and
/// `BODY=8BITMIME`, its envelope and text exactly as written; the same mail to an
/// aiosmtpd without SMTPUTF8 is returned with 5.6.7, never sent mangled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtputf8_and_8bitmime_with_aiosmtpd() {
    let scratch = tempfile::tempdir().unwrap();
    let with = Aiosmtpd::start(scratch.path(), &["--smtputf8"]).await;
    let text = "Date: Sat, 28 Nov 2026 10:00:00 +0000\nMessage-ID: <utf8@test>\n\
                Subject: Gr\u{fc}\u{df}e\nFrom: J\u{f6}rg <j\u{f6}rg@b\u{fc}cher.example>\n\
                To: \u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}\n\n\
                \u{c0} bient\u{f4}t\n";
    let spool = format!(
        "HELO zos.example\n{}",
        mail(
            "j\u{f6}rg@b\u{fc}cher.example",
            &["\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}"],
            text
        )
    );
    let run = |env: &Env| {
        let mut command = cssmtp();
        command.args(["run", "--drain", "-c"]).arg(&env.config_path);
        command
    };
    let env = Env::new(&format!(
        "Options\n{{\n  SmtpUtf8 Yes\n}}\n\
         TargetServer\n{{\n  TargetIp 127.0.0.1\n  ConnectPort {}\n}}\n",
        with.port
    ));
    env.submit("UTF8", &spool);
    let out = tokio::time::timeout(Duration::from_secs(50), run(&env).output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let received = with.received();
    assert_eq!(received.len(), 1, "{log}");
    let m = &received[0];
    assert_eq!(m["mail_from"], "j\u{f6}rg@b\u{fc}cher.example");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}"])
    );
    let options: Vec<&str> = m["mail_options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert!(options.contains(&"SMTPUTF8"), "{options:?}");
    assert!(options.contains(&"BODY=8BITMIME"), "{options:?}");
    use base64::Engine as _;
    let content = base64::engine::general_purpose::STANDARD
        .decode(m["content"].as_str().unwrap())
        .unwrap();
    let stored = String::from_utf8(content).expect("UTF-8, unmangled");
    assert!(
        stored.ends_with(&text.replace('\n', "\r\n")),
        "the text as written:\n{stored}"
    );

    // A server without SMTPUTF8: returned, with the precise reason.
    let other = scratch.path().join("b");
    std::fs::create_dir_all(&other).unwrap();
    let without = Aiosmtpd::start(&other, &[]).await;
    let env = Env::new(&format!(
        "Options\n{{\n  SmtpUtf8 Yes\n}}\n\
         TargetServer\n{{\n  TargetIp 127.0.0.1\n  ConnectPort {}\n}}\n",
        without.port
    ));
    env.submit("UTF8", &spool);
    let out = tokio::time::timeout(Duration::from_secs(50), run(&env).output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    // Exit 3: a dead letter was written (the notification could not be sent either).
    assert_eq!(out.status.code(), Some(3), "{log}");
    assert!(log.contains("CSM2107W"), "{log}");
    assert!(
        log.contains("553 5.6.7 mail has a non-ASCII address and no target server offers SMTPUTF8"),
        "{log}"
    );
    // Nothing was sent mangled (the notification to the UTF-8 sender cannot go to this
    // server either: it is a dead letter).
    assert!(without.received().is_empty(), "{:?}", without.received());
}
