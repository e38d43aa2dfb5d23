//! The real `cssmtp` executable: check, submit, run --drain, one instance per writer.

use std::process::Stdio;

use cssmtp::sink::SinkOptions;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::{Env, cssmtp, mail, sink, target, text_with_ids};

#[tokio::test]
async fn check_prints_every_error_with_its_line() {
    let env = Env::new(
        "Timeout\n{\n  AnyCmd 5\n}\nTargetServer\n{\n  TargetMx a.example\n  TargetIp 192.0.2.1\n}\nBogus 1\n",
    );
    let out = cssmtp()
        .arg("check")
        .arg("-c")
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let file = env.config_path.display();
    assert!(
        stderr.contains(&format!(
            "{file}:7: error: Timeout AnyCmd must be a whole number from 30 to 1200, not \"5\""
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:12: error: TargetMx cannot be combined with TargetIp or TargetName"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:14: error: unknown statement Bogus")),
        "{stderr}"
    );
    assert!(stderr.contains("has 3 error(s)"), "{stderr}");

    let good = Env::new("TargetServer\n{\n  TargetIp 192.0.2.1\n}\n");
    let out = cssmtp()
        .arg("check")
        .arg("-c")
        .arg(&good.config_path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains(": OK (0 warning(s))")
    );

    let out = cssmtp()
        .args(["check", "-c", "/nonexistent/cssmtp.conf"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("cannot read configuration file /nonexistent/cssmtp.conf")
    );
}

/// Blocks with several parameters on one line, as the README's table shows, pass
/// `cssmtp check`: the README's own example verbatim, and the brief's forms mixed with
/// the one-per-line form.
#[tokio::test]
async fn check_accepts_several_parameters_on_one_line() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let example = readme
        .split("<!-- one-line-example:")
        .nth(1)
        .and_then(|rest| rest.split("```text\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the README's one-line example");
    let mixed = "TargetServer { TargetIp 192.0.2.1  ConnectPort 25 }
RetryLimit { Count 5  Interval 1 }
Header { Date YES  UserInfo NO }
Timeout
{
  DataTerm 600 ConnectRetry 60
  AnyCmd 120
}
Undeliverable { ReturnToMailFrom Yes DeadLetterAction Store }
Options { NullTrnc DataLineTrunc }
SMF119 { Config Connect }
";
    for body in [example, mixed] {
        let env = Env::new(body);
        let out = cssmtp()
            .arg("check")
            .arg("-c")
            .arg(&env.config_path)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{body}\n{stdout}{stderr}");
        assert!(stdout.contains(": OK (0 warning(s))"), "{stdout}{stderr}");
    }

    // A wrong keyword in the middle of a line is named with its line.
    let env = Env::new("TargetServer { TargetIp 192.0.2.1  ConectPort 25 }\n");
    let out = cssmtp()
        .arg("check")
        .arg("-c")
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:5: error: unknown parameter ConectPort in TargetServer (did you mean ConnectPort?)",
            env.config_path.display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn submit_and_run_drain_with_exit_codes() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let mut child = cssmtp()
        .args([
            "submit",
            "--job-name",
            "nightly",
            "--job-id",
            "J0000042",
            "-c",
        ])
        .arg(&env.config_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let file = format!(
        "HELO h.example\n{}",
        mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids("via stdin", "b")
        )
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(file.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("-: 1 mail(s) spooled as ")
    );
    let spooled = env.files_in("");
    assert_eq!(spooled.len(), 1);
    assert!(spooled[0].starts_with("NIGHTLY.J0000042."), "{spooled:?}");

    let out = cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].text().contains(" id NIGHTLY.J0000042.1\r\n"));

    // Some mail not delivered: exit status 3.
    env.submit(
        "FAILS",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["reject-x@example.com"], "Subject: s\n\nb")
        ),
    );
    let out = cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("CSM2102W Mail 1 (line 3) of FAILS.J0000001.")
    );
}

/// A file with syntax errors is listed, not spooled, and submit exits 65 (EX_DATAERR);
/// `--force` spools it as it is (exit 0, the errors still listed).
#[tokio::test]
async fn submit_refuses_a_file_with_syntax_errors_unless_forced() {
    let env = Env::new("TargetServer\n{\n  TargetIp 192.0.2.1\n}\n");
    let bad = env.dir.path().join("bad.bsmtp");
    std::fs::write(
        &bad,
        format!(
            "HELO h.example\nFROB the widget\n{}",
            mail("a@h.example", &["x@example.com"], "Subject: s\n\nb")
        ),
    )
    .unwrap();
    let good = env.dir.path().join("good.bsmtp");
    std::fs::write(
        &good,
        format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["x@example.com"], "Subject: s\n\nb")
        ),
    )
    .unwrap();
    let out = cssmtp()
        .args(["submit", "--job-name", "BADJOB", "-c"])
        .arg(&env.config_path)
        .arg(&bad)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2: ", bad.display())),
        "the error is listed with its line: {stderr}"
    );
    assert!(stderr.contains("was not spooled"), "{stderr}");
    assert!(env.files_in("").is_empty(), "nothing spooled");

    // Good and bad files together: the good one is spooled, the status says 65.
    let out = cssmtp()
        .args(["submit", "--job-name", "MIXED", "-c"])
        .arg(&env.config_path)
        .arg(&bad)
        .arg(&good)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    assert_eq!(env.files_in("").len(), 1);

    let out = cssmtp()
        .args(["submit", "--force", "--job-name", "FORCED", "-c"])
        .arg(&env.config_path)
        .arg(&bad)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2: ", bad.display())),
        "{stderr}"
    );

    // A refused RCPT TO is listed, but the file is spooled: the daemon sends the mail to
    // the other recipients and returns it for that one.
    let rcpt = env.dir.path().join("rcpt.bsmtp");
    std::fs::write(
        &rcpt,
        format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["x@example.com", "no-at-sign"],
                "Subject: s\n\nb"
            )
        ),
    )
    .unwrap();
    let before = env.files_in("").len();
    let out = cssmtp()
        .args(["submit", "--job-name", "RCPTERR", "-c"])
        .arg(&env.config_path)
        .arg(&rcpt)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:4: ", rcpt.display())),
        "{stderr}"
    );
    assert_eq!(env.files_in("").len(), before + 1);
    let spooled = env.files_in("");
    assert_eq!(spooled.len(), 3, "{spooled:?}");
    assert!(
        spooled.iter().any(|f| f.starts_with("FORCED.")),
        "{spooled:?}"
    );
}

/// `cssmtp submit` says when it reads a file as fixed-length records (every line the
/// same length), whose trailing blanks it removes from the text; not for a text file.
#[tokio::test]
async fn submit_says_when_a_file_is_read_as_padded_records() {
    let env = Env::new("TargetServer\n{\n  TargetIp 192.0.2.1\n}\n");
    let records = format!(
        "HELO h.example\n{}",
        mail("a@h.example", &["x@example.com"], "Subject: s\n\n-- \nb")
    );
    let padded = env.dir.path().join("padded.bsmtp");
    let text: String = records.lines().map(|l| format!("{l:<80}\n")).collect();
    std::fs::write(&padded, text).unwrap();
    let plain = env.dir.path().join("plain.bsmtp");
    std::fs::write(&plain, &records).unwrap();
    for (file, said) in [(&padded, true), (&plain, false)] {
        let out = cssmtp()
            .args(["submit", "--job-name", "PAD", "-c"])
            .arg(&env.config_path)
            .arg(file)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(
            stderr.contains("fixed-length records"),
            said,
            "{}: {stderr}",
            file.display()
        );
    }
}

#[tokio::test]
async fn a_second_instance_for_the_same_writer_is_refused() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let mut first = cssmtp()
        .arg("run")
        .arg("-c")
        .arg(&env.config_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains("CSM1001I") {
            break;
        }
    }
    let second = cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8(second.stderr).unwrap();
    assert!(
        stderr.contains("ERROR CSM1002E another cssmtp instance (pid "),
        "{stderr}"
    );
    assert!(
        !stderr.contains("CSM1006E"),
        "one message ID per line: {stderr}"
    );
    assert!(
        stderr.contains("is already running for writer name TESTWTR"),
        "{stderr}"
    );

    // The running instance still works, and stops cleanly on SIGTERM.
    env.submit(
        "ALIVE",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["x@example.com"],
                &text_with_ids("alive", "b")
            )
        ),
    );
    sink.wait_for(1).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(first.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = first.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(sink.received().len(), 1);
}

/// `cssmtp sink --help` tells what the local parts script, and what `--faults` takes.
#[tokio::test]
async fn sink_help_lists_the_scripted_local_parts_and_faults() {
    let out = cssmtp().args(["sink", "--help"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for word in [
        "tempfail-once",
        "tempfail2 ... tempfail9",
        "reject, permfail, unknown",
        "data-tempfail",
        "data-reject",
        "drop-at-rcpt",
        "drop-in-data",
        "early-250",
        "extra-reply",
        "MAIL FROM",
        "--faults",
        "drop-after-dot",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    // The example it gives is accepted.
    let example = help
        .lines()
        .find_map(|l| l.trim().strip_prefix("cssmtp sink --faults "))
        .expect("a --faults example");
    cssmtp::sink::Faults::parse(example).unwrap();
}
