//! User exits (`UserExit`, issue 14 point 5) through the real binary: an exit that
//! changes the text (the target gets its text byte for byte), one that rejects (the
//! sender is told, the recipient never contacted), one that hangs (killed with its
//! process group at `TimeLimit`; the mail is kept, and delivered once `MODIFY
//! USEREXIT,LEVEL=NONE` turns the exit off), one that crashes (kept, never sent
//! unchecked).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cssmtp::sink::SinkOptions;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;

use crate::support::{Env, cssmtp, mail, notifications, originals, sink, target};

/// Writes an executable shell script `name` into the test's directory.
fn script(env: &Env, name: &str, body: &str) -> PathBuf {
    let path = env.dir.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn exit_config(program: &Path, extra: &str) -> String {
    format!(
        "UserExit\n{{\n  Program {}\n  TimeLimit 1\n{extra}}}\nChkPoint No\n",
        program.display()
    )
}

const SPOOL: &str = "Subject: totals\r\n\r\n..dotted\r\nNet pay: 100\r\n";

async fn submit(env: &Env) {
    let path = env.dir.path().join("job.bsmtp");
    let text = format!(
        "HELO zos1.example\n{}",
        mail("payroll@zos1.example", &["alice@example.com"], SPOOL)
    );
    std::fs::write(&path, text).unwrap();
    let out = cssmtp()
        .args([
            "submit",
            "--job-name",
            "PAYROLL",
            "--job-id",
            "J0012345",
            "-c",
        ])
        .arg(&env.config_path)
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn drain(env: &Env) -> (Option<i32>, String) {
    let out = cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_exit_that_changes_the_text_has_its_text_sent_byte_for_byte() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let input = env.dir.path().join("input");
    let exit = script(
        &env,
        "rewrite",
        &format!(
            "cat > {}\nprintf 'From: payroll@zos1.example\\nSubject: changed\\n\\n.dot line\\r\\nbody \\n'\nexit 10",
            input.display()
        ),
    );
    std::fs::write(
        &env.config_path,
        format!(
            "{}{}",
            std::fs::read_to_string(&env.config_path).unwrap(),
            exit_config(&exit, "")
        ),
    )
    .unwrap();
    submit(&env).await;
    let (code, log) = drain(&env).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("CSM2701I Mail 1 of PAYROLL.J0012345."),
        "{log}"
    );
    let received = sink.received();
    assert_eq!(received.len(), 1, "{log}");
    assert_eq!(received[0].rcpt_to, ["alice@example.com"]);
    assert_eq!(
        String::from_utf8_lossy(&received[0].data),
        "From: payroll@zos1.example\r\nSubject: changed\r\n\r\n.dot line\r\nbody \r\n"
    );
    // What the exit read: version line, envelope, job, a blank line, the mail as the
    // target would get it (cssmtp's headers too), LF lines, no dot-stuffing.
    let input = std::fs::read_to_string(&input).unwrap();
    let (head, text) = input.split_once("\n\n").unwrap();
    let head: Vec<&str> = head.lines().collect();
    assert_eq!(head[0], "cssmtp-exit 1");
    assert!(
        head[1].starts_with("Spool-File: PAYROLL.J0012345."),
        "{input}"
    );
    assert_eq!(
        head[2..],
        [
            "Job-Name: PAYROLL",
            "Job-Id: J0012345",
            "Mail: 1",
            "MAIL FROM:<payroll@zos1.example>",
            "RCPT TO:<alice@example.com>",
        ]
    );
    assert!(text.starts_with("Received: from "), "{input}");
    assert!(
        text.ends_with("Subject: totals\n\n.dotted\nNet pay: 100\n"),
        "{input}"
    );
}

#[tokio::test]
async fn an_exit_that_rejects_returns_the_mail_with_its_reason() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let exit = script(
        &env,
        "reject",
        "cat > /dev/null\necho 'payroll mail needs approval by FIN'\nexit 20",
    );
    std::fs::write(
        &env.config_path,
        format!(
            "{}{}",
            std::fs::read_to_string(&env.config_path).unwrap(),
            exit_config(&exit, "")
        ),
    )
    .unwrap();
    submit(&env).await;
    let (code, log) = drain(&env).await;
    assert_eq!(code, Some(3), "{log}");
    assert!(
        log.contains("CSM2702W Mail 1 of PAYROLL.J0012345.")
            && log.contains("was rejected by the user exit: payroll mail needs approval by FIN"),
        "{log}"
    );
    // The recipient's server never saw the mail; the sender got an RFC 3464 notification
    // with the exit's reason.
    assert!(originals(&sink).is_empty(), "{log}");
    let returned = notifications(&sink);
    assert_eq!(returned.len(), 1, "{log}");
    assert_eq!(returned[0].rcpt_to, ["payroll@zos1.example"]);
    let text = returned[0].text();
    assert!(
        text.contains("Final-Recipient: rfc822; alice@example.com"),
        "{text}"
    );
    assert!(text.contains("Status: 5.7.1"), "{text}");
    assert!(
        text.contains("Rejected by the user exit: payroll mail needs approval by FIN"),
        "{text}"
    );
}

/// A `cssmtp run` daemon whose log lines arrive as they are written.
struct Daemon {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    log: Vec<String>,
}

impl Daemon {
    fn start(env: &Env) -> Self {
        let mut child = cssmtp()
            .args(["-q", "run", "-c"])
            .arg(&env.config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits (at most a minute: a real child process) for a log line holding `text`.
    async fn line(&mut self, text: &str) -> String {
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = self.lines.recv().await {
                self.log.push(line.clone());
                if line.contains(text) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!("no log line with {text:?}: {:#?}", self.log),
        }
    }

    async fn modify(&self, env: &Env, command: &str) -> String {
        let out = cssmtp()
            .args(["modify", "-c"])
            .arg(&env.config_path)
            .arg(command)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{command}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Waits (bounded: the daemon is a real child process) until the sink has `n` mails.
async fn received(sink: &cssmtp::sink::Sink, n: usize) {
    for _ in 0..600 {
        if sink.received().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the target did not get {n} mail(s)");
}

/// A process is gone (or a zombie nobody reaped: dead all the same).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn a_hanging_exit_is_killed_with_its_group_and_the_mail_kept_until_the_exit_is_off() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let pids = env.dir.path().join("pids");
    // The exit starts a helper in its group, then never answers.
    let exit = script(
        &env,
        "hang",
        &format!(
            "sleep 3600 &\necho $! > {}\nexec sleep 3600",
            pids.display()
        ),
    );
    std::fs::write(
        &env.config_path,
        format!(
            "{}{}",
            std::fs::read_to_string(&env.config_path).unwrap(),
            exit_config(&exit, "")
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&env);
    submit(&env).await;
    let line = daemon.line("CSM2704E").await;
    assert!(
        line.contains("Mail 1 of PAYROLL.J0012345.")
            && line.contains("gave no answer within TimeLimit 1 second(s); it was killed")
            && line.contains("the mail is kept"),
        "{line}"
    );
    // The helper it started went with it.
    let helper = std::fs::read_to_string(&pids).unwrap();
    let helper = helper.trim();
    for _ in 0..100 {
        if gone(helper) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone(helper), "the exit's helper {helper} outlived it");
    assert!(sink.received().is_empty());
    assert_eq!(env.files_in("active").len(), 1, "the spool file is kept");
    // The operator turns the exit off: the mail goes at once.
    let reply = daemon.modify(&env, "USEREXIT,LEVEL=NONE").await;
    assert!(
        reply.contains("CSM5022I USEREXIT changed from LEVEL=VERSION1 to LEVEL=NONE"),
        "{reply}"
    );
    received(&sink, 1).await;
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, ["alice@example.com"]);
    assert!(
        String::from_utf8_lossy(&got[0].data)
            .ends_with("Subject: totals\r\n\r\n.dotted\r\nNet pay: 100\r\n")
    );
    assert!(notifications(&sink).is_empty());
}

#[tokio::test]
async fn a_crashing_exit_keeps_the_mail_and_sends_nothing_unchecked() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    // Half a new text, then a crash.
    let exit = script(
        &env,
        "crash",
        "cat > /dev/null\nprintf 'Subject: half'\nkill -SEGV $$",
    );
    std::fs::write(
        &env.config_path,
        format!(
            "{}{}",
            std::fs::read_to_string(&env.config_path).unwrap(),
            exit_config(&exit, "")
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&env);
    submit(&env).await;
    let line = daemon.line("CSM2704E").await;
    assert!(
        line.contains("was killed by signal 11") && line.contains("the mail is kept"),
        "{line}"
    );
    assert!(sink.received().is_empty());
    assert_eq!(env.files_in("active").len(), 1, "the spool file is kept");
    // An exit with an unknown status is a failure too (after a REFRESH that names it).
    let odd = script(&env, "odd", "cat > /dev/null\nexit 3");
    std::fs::write(
        &env.config_path,
        std::fs::read_to_string(&env.config_path)
            .unwrap()
            .replace(&exit.display().to_string(), &odd.display().to_string()),
    )
    .unwrap();
    daemon.modify(&env, "REFRESH").await;
    daemon.modify(&env, "USEREXIT,LEVEL=VERSION1").await;
    let line = daemon.line("CSM2704E").await;
    assert!(
        line.contains("ended with status 3, which is not 0, 10, 20 or 30"),
        "{line}"
    );
    assert!(sink.received().is_empty());
    daemon.modify(&env, "USEREXIT,LEVEL=NONE").await;
    received(&sink, 1).await;
    assert_eq!(originals(&sink).len(), 1);
    assert!(notifications(&sink).is_empty());
}
