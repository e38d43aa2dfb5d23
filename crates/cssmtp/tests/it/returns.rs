//! Returns keep the mail's protection and never cost the only copy: notifications and
//! error reports about mail that needed TLS travel over TLS or become dead letters that
//! keep `STARTTLS`; a dead letter, an extended-retry copy or a report that cannot be
//! written keeps the spool file (issue 9, points 4 and 5).

use std::path::{Path, PathBuf};

use cssmtp::sink::SinkOptions;

use crate::support::{Env, TestPki, mail, notifications, originals, sink, target, text_with_ids};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
    });
    found.sort();
    found
}

/// A batch-SMTP file that asks for TLS, with one mail to `rcpt`.
fn tls_file(rcpt: &str) -> String {
    format!(
        "EHLO h.example\nSTARTTLS\n{}",
        mail(
            "a@h.example",
            &[rcpt],
            &text_with_ids("secret", "the secret")
        )
    )
}

#[tokio::test]
async fn a_notification_about_a_tls_mail_travels_over_tls() {
    let pki = TestPki::new("cssmtp test CA");
    let tls_sink = sink(SinkOptions {
        tls: Some(pki.server(&["127.0.0.1"])),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(
        &pki,
        &format!(
            "{}Undeliverable\n{{\n  ReturnContent Full\n}}\n",
            target(tls_sink.addr, "")
        ),
    );
    env.submit("TLSRET", &tls_file("reject-x@example.com"));
    let report = env.drain().await;
    assert_eq!(report.stats.rcpts_undeliverable, 1);
    let returned = notifications(&tls_sink);
    assert_eq!(returned.len(), 1, "{:?}", tls_sink.received());
    assert!(
        returned[0].tls,
        "the notification carries the TLS mail's text: over TLS only"
    );
    assert!(returned[0].text().contains("the secret"));
}

#[tokio::test]
async fn a_notification_about_a_tls_mail_is_never_sent_in_clear() {
    let plain = sink(SinkOptions::default()).await;
    let env = Env::new(&target(plain.addr, ""));
    env.submit("NOTLS", &tls_file("x@example.com"));
    let report = env.drain().await;
    assert!(originals(&plain).is_empty(), "never in clear");
    assert!(
        notifications(&plain).is_empty(),
        "its notification (the mail's header) is not sent in clear either"
    );
    assert_eq!(report.stats.rcpts_undeliverable, 1);
    let dead = files(&env.config().dead_letter_directory());
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = std::fs::read_to_string(&dead[0]).unwrap();
    assert!(
        letter.lines().any(|l| l == "STARTTLS"),
        "re-submitting the dead letter requires TLS again: {letter}"
    );
    assert!(letter.contains("Subject: secret"), "{letter}");
}

#[tokio::test]
async fn an_error_report_about_a_tls_spool_file_keeps_tls() {
    let pki = TestPki::new("cssmtp test CA");
    let admin = "MailAdministrator mailops@corp.example\nReportMailFrom cssmtp@corp.example\nReport Admin\n";
    // Over TLS when the target offers it.
    let tls_sink = sink(SinkOptions {
        tls: Some(pki.server(&["127.0.0.1"])),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(&pki, &format!("{}{admin}", target(tls_sink.addr, "")));
    env.submit("TLSREP", &tls_file("reject-x@example.com"));
    env.drain().await;
    let reports: Vec<_> = tls_sink
        .received()
        .into_iter()
        .filter(|m| m.mail_from == "cssmtp@corp.example")
        .collect();
    assert_eq!(reports.len(), 1, "{:?}", tls_sink.received());
    assert!(
        reports[0].tls,
        "the report about a TLS spool file: over TLS"
    );

    // A dead letter that keeps STARTTLS when no target offers it.
    let plain = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}{admin}", target(plain.addr, "")));
    env.submit("TLSREP", &tls_file("x@example.com"));
    env.drain().await;
    assert!(plain.received().is_empty(), "never in clear");
    let dead = files(&env.config().dead_letter_directory());
    let report = dead
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".0R"))
        .expect("the report became a dead letter");
    let letter = std::fs::read_to_string(report).unwrap();
    assert!(letter.lines().any(|l| l == "STARTTLS"), "{letter}");
}

/// A tmpfs of 64 KiB mounted at `dir` (created), unmounted when dropped; None (with a
/// note) when this process cannot mount (not root).
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("note: not root, cannot mount a small file system; test skipped");
            return None;
        }
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0750", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("note: mount -t tmpfs failed; test skipped");
            return None;
        }
        Some(Self(dir.to_owned()))
    }

    /// Fills the file system: every write after this fails with ENOSPC.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.0.join(".filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = [0u8; 4096];
        while f.write_all(&block).and_then(|()| f.sync_all()).is_ok() {}
        filler
    }

    /// Remounts it read-only (`ro`) or read-write.
    fn remount(&self, how: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_keeps_the_spool_file() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Undeliverable\n{{\n  DeadLetterDirectory dead\n}}\n",
        target(sink.addr, "")
    ));
    let Some(full) = Mount::tmpfs(&env.dir.path().join("dead")) else {
        return;
    };
    let filler = full.fill();
    // No originator: the failed mail goes straight to a dead letter.
    env.submit(
        "NOORIG",
        &format!(
            "HELO h.example\n{}",
            mail(
                "",
                &["reject-x@example.com", "ok@example.com"],
                &text_with_ids("only copy", "b")
            )
        ),
    );
    let report = env.drain().await;
    let file = &report.files[0];
    assert_eq!(
        file.disposition,
        cssmtp::spool::report::Disposition::LeftActive
    );
    assert_eq!(file.unreturned.len(), 1, "{file:?}");
    assert!(file.unreturned[0].1.contains("No space left"), "{file:?}");
    assert_eq!(env.files_in("active").len(), 1, "the only copy stays");
    assert_eq!(originals(&sink).len(), 0);
    assert_eq!(sink.received().len(), 1, "delivered to ok@ once");

    // Space returns; the next start returns the mail, and sends nothing again.
    std::fs::remove_file(filler).unwrap();
    let report = env.drain().await;
    assert!(env.files_in("active").is_empty(), "{:?}", report.files);
    let dead = files(&env.dir.path().join("dead"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        std::fs::read_to_string(&dead[0])
            .unwrap()
            .contains("Subject: only copy")
    );
    assert_eq!(sink.received().len(), 1, "ok@ is not sent it again");
}

#[tokio::test]
async fn a_mail_that_cannot_be_kept_for_extended_retry_keeps_the_spool_file() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 0\n}}\nExtendedRetry\n{{\n  Age 5\n  Interval 600\n  MailDirectory maildir\n}}\n",
        target(sink.addr, "")
    ));
    let Some(ro) = Mount::tmpfs(&env.dir.path().join("maildir")) else {
        return;
    };
    ro.remount("ro");
    env.submit(
        "EXTRO",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["tempfail-x@example.com"],
                &text_with_ids("later", "b")
            )
        ),
    );
    let report = env.drain().await;
    let file = &report.files[0];
    assert_eq!(
        file.disposition,
        cssmtp::spool::report::Disposition::LeftActive
    );
    assert!(file.unreturned[0].1.contains("extended retry"), "{file:?}");
    assert!(
        notifications(&sink).is_empty(),
        "not returned as undeliverable either"
    );
    assert_eq!(env.files_in("active").len(), 1, "the only copy stays");

    // Writable again: the next start sends it again and keeps it for extended retry.
    ro.remount("rw");
    env.drain().await;
    assert!(env.files_in("active").is_empty());
    assert_eq!(files(&env.dir.path().join("maildir")).len(), 1);
    assert!(notifications(&sink).is_empty());
}

#[tokio::test]
async fn a_report_that_cannot_be_written_holds_the_spool_file() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    // The reports directory on a read-only file system: every report write fails.
    let Some(ro) = Mount::tmpfs(&env.config().report_directory()) else {
        return;
    };
    ro.remount("ro");
    env.submit(
        "NOREPORT",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["reject-x@example.com"],
                &text_with_ids("r", "b")
            )
        ),
    );
    let report = env.drain().await;
    assert!(
        matches!(
            report.files[0].disposition,
            cssmtp::spool::report::Disposition::Held(_)
        ),
        "{:?}",
        report.files[0]
    );
    assert_eq!(
        env.files_in("hold").len(),
        2,
        "the file and its report beside it"
    );
    assert_eq!(
        notifications(&sink).len(),
        1,
        "the mail itself was returned"
    );
}

/// `cssmtp -q run` (warnings and errors on standard error, sent line by line).
struct Daemon {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    log: Vec<String>,
}

impl Daemon {
    fn start(env: &Env, extra: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = crate::support::cssmtp()
            .arg("-q")
            .arg("run")
            .arg("-c")
            .arg(&env.config_path)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits (at most a minute: a real child process) for a log line containing `id`.
    async fn wait_for(&mut self, id: &str) -> String {
        let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while let Some(line) = self.lines.recv().await {
                self.log.push(line.clone());
                if line.contains(id) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!("no {id} in the log: {:#?}", self.log),
        }
    }
}

/// Waits (bounded: a real child process) until `sink` has received `n` mails.
async fn received(sink: &cssmtp::sink::Sink, n: usize) {
    for _ in 0..600 {
        if sink.received().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{} mail(s) received, {n} expected", sink.received().len());
}

#[tokio::test]
async fn a_full_checkpoint_file_system_at_start_pauses_intake_until_space_returns() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "ChkPointDirectory ckpt\n{}",
        target(sink.addr, "")
    ));
    let Some(full) = Mount::tmpfs(&env.dir.path().join("ckpt")) else {
        return;
    };
    let filler = full.fill();
    env.submit(
        "FULLCK",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["x@example.com"],
                &text_with_ids("waits", "b")
            )
        ),
    );
    let mut daemon = Daemon::start(&env, &["--drain"]);
    let warning = daemon.wait_for("CSM2310W").await;
    assert!(warning.contains("No space left"), "{warning}");
    assert!(sink.received().is_empty());
    assert_eq!(env.files_in("").len(), 1, "the file waits in the spool");
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon runs on"
    );

    // Space returns: the journal opens, the mail goes, the drain ends.
    std::fs::remove_file(filler).unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), daemon.child.wait())
        .await
        .expect("the drain ends")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(sink.received().len(), 1);
    let journal = std::fs::read_to_string(env.config().journal_path()).unwrap();
    assert!(journal.contains(r#""t":"sent""#), "{journal}");
}

#[tokio::test]
async fn a_checkpoint_journal_that_fills_up_while_running_holds_mail_back_until_space_returns() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "ChkPointDirectory ckpt\n{}",
        target(sink.addr, "")
    ));
    let Some(fs) = Mount::tmpfs(&env.dir.path().join("ckpt")) else {
        return;
    };
    let job = |subject: &str| {
        format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["x@example.com"],
                &text_with_ids(subject, "b")
            )
        )
    };
    let mut daemon = Daemon::start(&env, &[]);
    env.submit("FIRST", &job("first"));
    received(&sink, 1).await;

    // The file system fills up, the journal's last page too.
    let filler = fs.fill();
    {
        use std::io::Write;
        let mut journal = std::fs::OpenOptions::new()
            .append(true)
            .open(env.config().journal_path())
            .unwrap();
        while journal.write_all(b"\n").is_ok() {}
    }
    env.submit("SECOND", &job("second"));
    let error = daemon.wait_for("CSM2303E").await;
    assert!(error.contains("No space left"), "{error}");
    assert_eq!(
        sink.received().len(),
        1,
        "no final \".\" without its journal record"
    );

    // Space returns: the mail goes, once.
    std::fs::remove_file(filler).unwrap();
    received(&sink, 2).await;
    let subjects: Vec<String> = sink
        .received()
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    assert_eq!(subjects, ["first", "second"]);
    let journal = std::fs::read_to_string(env.config().journal_path()).unwrap();
    assert_eq!(journal.matches(r#""t":"sent""#).count(), 2, "{journal}");
    daemon.child.start_kill().unwrap();
    daemon.child.wait().await.unwrap();
}

#[tokio::test]
async fn a_notification_about_a_mail_refused_by_a_secure_target_travels_over_tls() {
    let pki = TestPki::new("cssmtp test CA");
    // The plain target takes small mails only: the mail can go only to the Secure one,
    // which refuses it; its (small) notification would fit the plain one.
    let plain = sink(SinkOptions::default()).await;
    let secure = sink(SinkOptions {
        tls: Some(pki.server(&["127.0.0.1"])),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(
        &pki,
        &format!(
            "{}{}",
            target(plain.addr, "  MessageSize 8000"),
            target(secure.addr, "  Secure Yes")
        ),
    );
    let body = "confidential line of text\n".repeat(1000);
    env.submit(
        "SECRET",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["reject-x@example.com"],
                &text_with_ids("secret", &body)
            )
        ),
    );
    let report = env.drain().await;
    assert_eq!(report.stats.rcpts_undeliverable, 1);
    assert!(plain.received().is_empty(), "never in clear");
    let returned = notifications(&secure);
    assert_eq!(returned.len(), 1);
    assert!(returned[0].tls);
}

#[tokio::test]
async fn a_mail_in_extended_retry_that_cannot_be_returned_stays_in_the_mail_directory() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}ExtendedRetry\n{{\n  Age 5\n  Interval 30\n  MailDirectory maildir\n}}\nUndeliverable\n{{\n  DeadLetterDirectory dead\n}}\n",
        target(sink.addr, "")
    ));
    let Some(full) = Mount::tmpfs(&env.dir.path().join("dead")) else {
        return;
    };
    let filler = full.fill();
    // A mail 30 days in extended retry (Age 5), last tried a day ago: due, and expired.
    // Its reverse path is null: returning it means storing a dead letter.
    let month_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86_400);
    let meta = cssmtp::retry::extended::Meta {
        spool_file: "OLDJOB.J0000009.x".into(),
        job_name: "OLDJOB".into(),
        job_id: "J0000009".into(),
        mail: 1,
        line: 2,
        first_attempt: month_ago,
        rcpt_lines: vec![3],
    };
    let maildir = env.dir.path().join("maildir");
    let due_now = |path: &Path| {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    };
    // A MailDirectory file as cssmtp writes it.
    let content = cssmtp::retry::extended::mail_file(
        "cssmtp.test",
        &meta,
        false,
        "",
        &["x@example.com".to_string()],
        b"Subject: kept\r\n\r\nbody\r\n",
    );
    std::fs::create_dir_all(&maildir).unwrap();
    let path = maildir.join(cssmtp::retry::extended::file_name(&meta));
    std::fs::write(&path, content).unwrap();
    due_now(&path);
    env.drain().await;
    assert!(path.exists(), "not returned: the only copy stays");
    assert!(files(&env.dir.path().join("dead")).is_empty());

    // Space returns; at its next attempt it is returned (a dead letter) and goes.
    std::fs::remove_file(filler).unwrap();
    due_now(&path);
    env.drain().await;
    assert!(!path.exists());
    let dead = files(&env.dir.path().join("dead"));
    assert_eq!(dead.len(), 1);
    assert!(
        std::fs::read_to_string(&dead[0])
            .unwrap()
            .contains("Subject: kept")
    );
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn without_a_journal_a_mail_that_cannot_be_returned_holds_its_spool_file() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "ChkPoint No\n{}Undeliverable\n{{\n  DeadLetterDirectory dead\n}}\n",
        target(sink.addr, "")
    ));
    let Some(full) = Mount::tmpfs(&env.dir.path().join("dead")) else {
        return;
    };
    full.fill();
    env.submit(
        "NOJRNL",
        &format!(
            "HELO h.example\n{}",
            mail(
                "",
                &["reject-x@example.com"],
                &text_with_ids("only copy", "b")
            )
        ),
    );
    let report = env.drain().await;
    assert!(
        matches!(
            report.files[0].disposition,
            cssmtp::spool::report::Disposition::Held(_)
        ),
        "{:?}",
        report.files[0]
    );
    assert!(
        env.files_in("active").is_empty(),
        "a restart would send it again"
    );
    let hold = env.files_in("hold");
    assert_eq!(hold.len(), 2, "{hold:?}");
    let text = std::fs::read_to_string(env.layout().hold.join(&hold[1])).unwrap();
    assert!(
        text.contains("Not returned (the spool file is kept):"),
        "{text}"
    );
}

#[tokio::test]
async fn the_binary_logs_a_dead_letter_it_cannot_store_and_keeps_the_file_for_the_next_start() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Undeliverable\n{{\n  DeadLetterDirectory dead\n}}\n",
        target(sink.addr, "")
    ));
    let Some(full) = Mount::tmpfs(&env.dir.path().join("dead")) else {
        return;
    };
    let filler = full.fill();
    env.submit(
        "BINDEAD",
        &format!(
            "HELO h.example\n{}",
            mail("", &["reject-x@example.com"], &text_with_ids("kept", "b"))
        ),
    );
    let mut daemon = Daemon::start(&env, &["--drain"]);
    let error = daemon.wait_for("CSM2109E").await;
    assert!(error.contains("No space left"), "{error}");
    let kept = daemon.wait_for("CSM2130E").await;
    assert!(kept.contains("BINDEAD.J0000001"), "{kept}");
    let status = daemon.child.wait().await.unwrap();
    assert_ne!(status.code(), Some(0), "not everything was done");
    assert_eq!(env.files_in("active").len(), 1);

    std::fs::remove_file(filler).unwrap();
    let mut daemon = Daemon::start(&env, &["--drain"]);
    daemon.wait_for("CSM2107W").await;
    daemon.child.wait().await.unwrap();
    assert!(env.files_in("active").is_empty());
    assert_eq!(files(&env.dir.path().join("dead")).len(), 1);
}

/// Point 5 through the real binary: the notification about a TLS mail goes over TLS to
/// a target that offers STARTTLS; where no target does, it becomes a dead letter that
/// keeps `STARTTLS`, and nothing goes in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_returns_tls_mail_over_tls_only() {
    let pki = TestPki::new("cssmtp test CA");
    let tls_sink = sink(SinkOptions {
        tls: Some(pki.server(&["127.0.0.1"])),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(
        &pki,
        &format!(
            "{}Undeliverable\n{{\n  ReturnContent Full\n}}\n",
            target(tls_sink.addr, "")
        ),
    );
    env.submit("TLSRET", &tls_file("reject-x@example.com"));
    let run = |env: &Env| {
        crate::support::cssmtp()
            .args(["run", "--drain", "-c"])
            .arg(&env.config_path)
            .output()
    };
    let out = run(&env).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let returned = notifications(&tls_sink);
    assert_eq!(returned.len(), 1, "{:?}", tls_sink.received());
    assert!(returned[0].tls, "the notification went over TLS");
    assert!(returned[0].text().contains("the secret"));

    let plain = sink(SinkOptions::default()).await;
    let env = Env::new(&target(plain.addr, ""));
    env.submit("NOTLS", &tls_file("x@example.com"));
    let out = run(&env).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        plain.received().is_empty(),
        "nothing in clear: {:?}",
        plain.received()
    );
    let dead = files(&env.config().dead_letter_directory());
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = std::fs::read_to_string(&dead[0]).unwrap();
    assert!(letter.lines().any(|l| l == "STARTTLS"), "{letter}");
}
