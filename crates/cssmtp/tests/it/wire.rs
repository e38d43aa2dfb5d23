//! What goes on the wire is checked as it is written, and replies are taken only when due
//! (issue 9, points 3 and 6). Real loopback SMTP against `cssmtp::sink`, through
//! `cssmtp::app::run`.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use cssmtp::sink::{Gate, SinkOptions};
use cssmtp::spool::report::Disposition;

use crate::support::{Env, mail, notifications, originals, sink, target, text_with_ids};

/// The body line of the first mail that the producer later overwrites.
const FILLER_LEN: usize = 400;

/// Runs a spool file whose first mail's text the producer rewrites (through a file
/// descriptor it kept open since it wrote the file) after cssmtp parsed the mail and
/// while its session waits at DATA: `rewrite` replaces the filler line of that mail by
/// bytes of the same length. Returns the sink, the file's report and the text of the
/// report beside the held file (empty when the file is not held).
async fn rewritten_after_parsing(
    rewrite: &[u8],
    config: &str,
) -> (
    cssmtp::sink::Sink,
    cssmtp::spool::report::FileReport,
    String,
) {
    assert!(rewrite.len() <= FILLER_LEN);
    let strict = sink(SinkOptions {
        strict_line_ends: true,
        ..SinkOptions::default()
    })
    .await;
    strict.arm(Gate::PauseAtData);
    let env = Env::new(&format!(
        "MaxConnections 1\n{config}\n{}",
        target(strict.addr, "")
    ));
    let filler = "x".repeat(FILLER_LEN);
    let content = format!(
        "HELO h.example\n{}{}",
        mail(
            "a@h.example",
            &["first@example.com"],
            &text_with_ids("first", &format!("hello\n{filler}\nbye"))
        ),
        mail(
            "a@h.example",
            &["second@example.com"],
            &text_with_ids("second", "clean")
        ),
    );
    let offset = content.find(&filler).unwrap() as u64;
    let path = env.submit("REWRITE", &content);
    // The producer keeps its file open: it can write it wherever cssmtp moves it.
    let kept = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut bytes = rewrite.to_vec();
    bytes.resize(FILLER_LEN, b'y');
    let producer = async {
        let held = strict.wait_held(1).await;
        assert_eq!(held[0].rcpt_to, ["first@example.com"], "parsed, at DATA");
        kept.write_all_at(&bytes, offset).unwrap();
        kept.sync_all().unwrap();
        strict.release();
    };
    let (report, ()) = tokio::join!(env.drain(), producer);
    let file = report.files.into_iter().next().unwrap();
    let beside = match &file.disposition {
        Disposition::Held(held) => {
            std::fs::read_to_string(format!("{}.report", held.display())).unwrap()
        }
        _ => String::new(),
    };
    (strict, file, beside)
}

/// Asserts what every rewrite case must show: the rewritten mail never reached the
/// server (no "." was sent for it), no other transaction appeared, the other mail went
/// out, and the file is held with a report naming the problem.
fn assert_held_not_sent(
    sink: &cssmtp::sink::Sink,
    file: &cssmtp::spool::report::FileReport,
    beside: &str,
) {
    let received = sink.received();
    for m in &received {
        assert!(
            !m.mail_from.contains("evil") && !m.rcpt_to.iter().any(|r| r.contains("victim")),
            "a smuggled transaction reached the server: {m:?}"
        );
        assert!(!m.text().contains("pwned") && !m.text().contains("hello"));
    }
    let subjects: Vec<String> = originals(sink)
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    assert_eq!(
        subjects,
        ["second"],
        "only the untouched mail was delivered"
    );
    assert!(
        notifications(sink).is_empty(),
        "the mail is held, not returned"
    );
    assert_eq!(file.rcpts_delivered, 1);
    assert_eq!(file.undeliverable_count, 0);
    let problem = file.file_problem.clone().unwrap_or_default();
    assert!(
        problem.contains("mail 1") && problem.contains("changed"),
        "{problem}"
    );
    assert!(
        matches!(file.disposition, Disposition::Held(_)),
        "the file must be held: {:?}",
        file.disposition
    );
    assert!(beside.contains(&problem), "{beside}");
}

#[tokio::test]
async fn a_rewritten_dot_line_never_smuggles_a_second_transaction() {
    let (sink, file, beside) = rewritten_after_parsing(
        b".\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\npwned\r\n.\r\n",
        "",
    )
    .await;
    assert_held_not_sent(&sink, &file, &beside);
    assert_eq!(sink.count(), 1, "no second transaction");
}

#[tokio::test]
async fn a_rewritten_bare_cr_or_lf_never_reaches_the_server() {
    for rewrite in [&b"bare\rcarriage return"[..], b"bare\nline feed"] {
        let (sink, file, beside) = rewritten_after_parsing(rewrite, "").await;
        assert_held_not_sent(&sink, &file, &beside);
    }
}

#[tokio::test]
async fn a_text_changed_after_parsing_is_held_before_its_final_dot() {
    // Same lines, same length, same structure: only the digest can tell.
    let (sink, file, beside) = rewritten_after_parsing(b"a harmless looking change", "").await;
    assert_held_not_sent(&sink, &file, &beside);
    assert!(
        file.file_problem.unwrap().contains("differs"),
        "the report says the text differs from what was read"
    );
}

#[tokio::test]
async fn a_changed_text_is_held_even_with_bad_spool_disp_delete() {
    // The operator chose to delete bad files; this mail was never sent, so the file
    // (its only copy) is held all the same.
    let (sink, file, beside) =
        rewritten_after_parsing(b"another change", "BadSpoolDisp Delete").await;
    assert_held_not_sent(&sink, &file, &beside);
}

/// A file of two mails: the first to `first`, the second to an ordinary recipient.
fn two_mails(first: &str) -> String {
    format!(
        "HELO h.example\n{}{}",
        mail(
            "a@h.example",
            &[first],
            &text_with_ids("misbehaving", "first")
        ),
        mail(
            "a@h.example",
            &["fine@example.com"],
            &text_with_ids("next", "second")
        ),
    )
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_reply_sent_before_the_text_is_a_protocol_error() {
    for pipelining in [true, false] {
        let sink = sink(SinkOptions {
            pipelining,
            ..SinkOptions::default()
        })
        .await;
        let env = Env::new(&format!(
            "MaxConnections 1\nRetryLimit\n{{\n  Count 2\n  Interval 1\n}}\n{}",
            target(sink.addr, "")
        ));
        env.submit("EARLY", &two_mails("early-250-once@example.com"));
        let report = env.drain().await;
        let file = &report.files[0];
        let got: Vec<(Vec<String>, String)> = originals(&sink)
            .iter()
            .map(|m| (m.rcpt_to.clone(), m.header("Subject").unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (vec!["fine@example.com".to_owned()], "next".to_owned()),
                (
                    vec!["early-250-once@example.com".to_owned()],
                    "misbehaving".to_owned()
                ),
            ],
            "the next mail went out with its own reply, then the first was retried (pipelining {pipelining})"
        );
        assert_eq!(file.undeliverable_count, 0, "{:?}", file.undeliverable);
        assert_eq!(file.rcpts_delivered, 2);
        assert_eq!(
            report.stats.rcpts_retried, 1,
            "the early 250 did not count as delivered"
        );
        assert!(notifications(&sink).is_empty());
        assert!(
            sink.sessions() >= 2,
            "the session was dropped, the next mail went on a fresh one"
        );
        assert_eq!(file.disposition, Disposition::Deleted);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unsolicited_reply_is_never_charged_to_the_next_mail() {
    for pipelining in [true, false] {
        let sink = sink(SinkOptions {
            pipelining,
            ..SinkOptions::default()
        })
        .await;
        let env = Env::new(&format!(
            "MaxConnections 1\nRetryLimit\n{{\n  Count 2\n  Interval 1\n}}\n{}",
            target(sink.addr, "")
        ));
        env.submit("EXTRA", &two_mails("extra-reply-once@example.com"));
        let report = env.drain().await;
        let file = &report.files[0];
        assert_eq!(
            file.undeliverable_count, 0,
            "the stray 554 was charged to a mail: {:?}",
            file.undeliverable
        );
        assert_eq!(file.rcpts_delivered, 2);
        assert_eq!(originals(&sink).len(), 2, "each mail delivered once");
        assert_eq!(
            report.stats.rcpts_retried, 0,
            "the first mail's due 250 stands; the next mail had its own session"
        );
        assert_eq!(
            sink.sessions(),
            2,
            "the session with stray bytes was dropped"
        );
        assert_eq!(file.disposition, Disposition::Deleted);
    }
}

/// Lines of a child's standard error, as they come.
fn log_lines(stderr: tokio::process::ChildStderr) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use tokio::io::AsyncBufReadExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for a line containing `id`; returns it and every line before it.
async fn wait_line(
    log: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: &mut Vec<String>,
    id: &str,
) -> String {
    let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = log.recv().await {
            seen.push(line.clone());
            if line.contains(id) {
                return line;
            }
        }
        panic!("the daemon ended without {id}: {seen:#?}");
    })
    .await;
    found.unwrap_or_else(|_| panic!("no {id} within the bound: {seen:#?}"))
}

/// Point 3 through the real binary, with the attack made by an unprivileged producer:
/// it writes its spool file into the writer directory, keeps it open, and once cssmtp
/// has parsed it (the session waits at DATA) rewrites a line into `.` followed by a
/// second transaction. Nothing smuggled reaches the strict server, the mail gets no
/// final ".", and the file is held (CSM2140W).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_rewriting_its_open_file_smuggles_nothing_through_the_binary() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let Some(producer) = crate::support::producer("cssmtp-producer") else {
        return;
    };
    let strict = sink(SinkOptions {
        strict_line_ends: true,
        ..SinkOptions::default()
    })
    .await;
    strict.arm(Gate::PauseAtData);
    let env = Env::new(&format!("MaxConnections 1\n{}", target(strict.addr, "")));
    let layout = env.open_to_producers(producer);
    let filler = "x".repeat(FILLER_LEN);
    let content = format!(
        "HELO h.example\n{}{}",
        mail(
            "a@h.example",
            &["first@example.com"],
            &text_with_ids("first", &format!("hello\n{filler}\nbye"))
        ),
        mail(
            "a@h.example",
            &["second@example.com"],
            &text_with_ids("second", "clean")
        ),
    );
    let offset = content.find(&filler).unwrap();
    let source = env.dir.path().join("content.bsmtp");
    std::fs::write(&source, &content).unwrap();
    std::fs::set_permissions(&source, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut smuggled =
        b".\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n\r\npwned\r\n.\r\n"
            .to_vec();
    smuggled.resize(FILLER_LEN, b'y');
    // The producer: its own user, the spool's group only; the file stays open on fd 3.
    let script = r#"set -e
exec 3<>"$W/.REWRITE.tmp"
cat "$C" >&3
mv "$W/.REWRITE.tmp" "$W/REWRITE.J0000001.open"
echo ready
read go
printf '%s' "$BYTES" | dd of=/dev/fd/3 bs=1 seek="$OFF" conv=notrunc status=none
echo done
read end
"#;
    let mut writer = tokio::process::Command::new("setpriv")
        .arg(format!("--reuid={}", producer.uid))
        .arg(format!("--regid={}", producer.gid))
        .arg("--clear-groups")
        .args(["--", "sh", "-c", script])
        .env("W", &layout.incoming)
        .env("C", &source)
        .env("OFF", offset.to_string())
        .env("BYTES", std::ffi::OsStr::from_bytes(&smuggled))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut to_writer = writer.stdin.take().unwrap();
    let mut from_writer = tokio::io::BufReader::new(writer.stdout.take().unwrap()).lines();
    assert_eq!(
        from_writer.next_line().await.unwrap().as_deref(),
        Some("ready")
    );

    let mut daemon = crate::support::cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = log_lines(daemon.stderr.take().unwrap());
    let held = strict.wait_held(1).await;
    assert_eq!(held[0].rcpt_to, ["first@example.com"], "parsed, at DATA");
    to_writer.write_all(b"go\n").await.unwrap();
    assert_eq!(
        from_writer.next_line().await.unwrap().as_deref(),
        Some("done")
    );
    strict.release();
    let mut seen = Vec::new();
    let warning = wait_line(&mut log, &mut seen, "CSM2140W").await;
    assert!(warning.contains("mail 1"), "{warning}");
    let status = daemon.wait().await.unwrap();
    while let Some(line) = log.recv().await {
        seen.push(line);
    }
    assert_eq!(
        status.code(),
        Some(3),
        "drained, not all delivered: {seen:#?}"
    );
    let _ = to_writer.write_all(b"end\n").await;
    let _ = writer.wait().await;

    for m in strict.received() {
        assert!(
            !m.mail_from.contains("evil") && !m.rcpt_to.iter().any(|r| r.contains("victim")),
            "a smuggled transaction reached the server: {m:?}"
        );
        assert!(!m.text().contains("pwned") && !m.text().contains("hello"));
    }
    let subjects: Vec<String> = originals(&strict)
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    assert_eq!(
        subjects,
        ["second"],
        "only the untouched mail was delivered"
    );
    assert!(notifications(&strict).is_empty(), "held, not returned");
    let held_files: Vec<_> = std::fs::read_dir(&layout.hold)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        held_files.iter().any(|n| n == "REWRITE.J0000001.open"),
        "the file is held: {held_files:?}"
    );
}

/// Point 6 through the real binary: a server that sends `250` together with its `354`
/// (then refuses the text) never has that mail counted delivered, and the next mail of
/// the file gets its own reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_reply_is_a_protocol_error_through_the_binary() {
    let server = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "MaxConnections 1\nRetryLimit\n{{\n  Count 2\n  Interval 1\n}}\n{}",
        target(server.addr, "")
    ));
    env.submit("EARLY", &two_mails("early-250@example.com"));
    let mut daemon = crate::support::cssmtp()
        .args(["run", "-c"])
        .arg(&env.config_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = log_lines(daemon.stderr.take().unwrap());
    let mut seen = Vec::new();
    let protocol = wait_line(&mut log, &mut seen, "CSM3020W").await;
    assert!(
        protocol.contains("250"),
        "the early bytes are shown: {protocol}"
    );
    let retry = wait_line(&mut log, &mut seen, "CSM2103I").await;
    assert!(retry.contains("early-250@example.com"), "{retry}");
    tokio::time::timeout(std::time::Duration::from_secs(60), server.wait_for(1))
        .await
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(daemon.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    daemon.wait().await.unwrap();
    while let Some(line) = log.recv().await {
        seen.push(line);
    }
    let got: Vec<(Vec<String>, String)> = originals(&server)
        .iter()
        .map(|m| (m.rcpt_to.clone(), m.header("Subject").unwrap()))
        .collect();
    assert_eq!(
        got,
        [(vec!["fine@example.com".to_owned()], "next".to_owned())],
        "only the next mail, with its own reply"
    );
    assert!(
        !seen.iter().any(|l| l.contains("CSM2100I Mail 1 of EARLY")),
        "the refused mail was never counted sent: {seen:#?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("CSM2002I")),
        "the file is not complete: mail 1 waits for its retry"
    );
}
