//! The sendmail bridge (issue 14 point 2) through the real `cssmtp` binary: invoked as
//! `sendmail`/`mailq` through symbolic links, installed setgid to the spool's group,
//! run as unprivileged users created by the test, the way cron, PHP's `mail()`, shell
//! scripts and Debian's `mail(1)` (bsd-mailx) call it; then `cssmtp run --drain`
//! forwards the spool to a loopback sink and the mail is checked byte for byte.
//!
//! The setgid cases run in a private mount namespace (`unshare -m`): an overlay on
//! `/etc` holds the test's `/etc/cssmtp/cssmtp.conf` (the configuration a privileged
//! bridge reads, whatever the caller says) and a tmpfs on `/usr/sbin` the `sendmail`
//! link, so the machine's own files are never touched. Skipped (with a note) without
//! root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::{cssmtp, without_added_headers};

mod bridge;
use bridge::*;
pub(crate) use bridge::{Bridge, outsider};

#[tokio::test]
async fn cron_t_oi_through_the_setgid_sendmail_link_by_a_user_outside_the_spool_group() {
    let Some(bridge) = Bridge::new("").await else {
        return;
    };
    let Some(caller) = outsider() else {
        return;
    };
    // The caller cannot write the spool by itself...
    let incoming = bridge.layout.incoming.display().to_string();
    let (ok, _) = caller.sh(&format!("echo x > {incoming}/DIRECT"));
    assert!(!ok, "a user outside the spool group wrote the spool");
    // ...but through /usr/sbin/sendmail, as cron calls it (headers on stdin, -t -oi:
    // a lone "." is text).
    let message = "From: root (Cron Daemon)\nTo: ops@example.com\nSubject: Cron <root@host> /usr/local/bin/backup\nContent-Type: text/plain; charset=UTF-8\nX-Cron-Env: <SHELL=/bin/sh>\n\nbackup done\n.\n.. and a line after a lone dot\n";
    let out = bridge.run(
        caller,
        true,
        Path::new("/usr/sbin/sendmail"),
        &["-t", "-oi"],
        &[],
        message.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stderr.is_empty(), "{}", text(&out));
    // One spool file, owned by the caller, of the spool's group, mode 640.
    let files = bridge.waiting();
    assert_eq!(files.len(), 1, "{files:?}");
    let meta = std::fs::metadata(&files[0]).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (caller.uid, bridge.producer.gid, 0o640)
    );
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("CSSMTP-CALLER.J"), "{name}");
    let received = bridge.drain().await;
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.mail_from, "cssmtp-caller@cssmtp.test");
    assert_eq!(mail.rcpt_to, ["ops@example.com"]);
    let data = String::from_utf8(mail.data.clone()).unwrap();
    // The owner of the spool file is the caller (Received: ... for <owner@host>).
    assert!(
        data.contains("\tfor <cssmtp-caller@cssmtp.test>;"),
        "{data}"
    );
    let rest = without_added_headers(&mail.data);
    let header = "From: root (Cron Daemon)\r\nTo: ops@example.com\r\nSubject: Cron <root@host> /usr/local/bin/backup\r\nContent-Type: text/plain; charset=UTF-8\r\nX-Cron-Env: <SHELL=/bin/sh>\r\n";
    let rest = rest
        .strip_prefix(header)
        .unwrap_or_else(|| panic!("{rest:?}"));
    let rest = after_added(rest, None, "CSSMTP-CALLER");
    assert_eq!(
        rest,
        "\r\nbackup done\r\n.\r\n.. and a line after a lone dot\r\n"
    );
}

#[tokio::test]
async fn a_setgid_bridge_cannot_be_pointed_at_another_spool() {
    let Some(bridge) = Bridge::new("").await else {
        return;
    };
    let Some(caller) = outsider() else {
        return;
    };
    // A spool the caller would like to fill: a directory writable by the spool's group
    // that is not the configured writer directory, and a configuration naming it.
    let evil = bridge.env.dir.path().join("evil");
    std::fs::create_dir_all(evil.join("TESTWTR")).unwrap();
    for dir in [evil.clone(), evil.join("TESTWTR")] {
        nix::unistd::chown(
            &dir,
            None,
            Some(nix::unistd::Gid::from_raw(bridge.producer.gid)),
        )
        .unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2775)).unwrap();
    }
    let evil_config = bridge.env.dir.path().join("evil.conf");
    std::fs::write(
        &evil_config,
        format!(
            "ExtWrtName TESTWTR\nSpoolDirectory {}\nTargetServer {{ TargetIp 127.0.0.1 }}\n",
            evil.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&evil_config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let evil_str = evil_config.display().to_string();
    let message = b"Subject: where\n\nto\n";
    // The environment is not read: the mail goes to the configured spool.
    let out = bridge.run(
        caller,
        true,
        Path::new("/usr/sbin/sendmail"),
        &["a@example.com"],
        &[("CSSMTP_CONFIG", &evil_str)],
        message,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(bridge.waiting().len(), 1);
    // -C gives up the privilege first: the caller may not write that directory.
    let out = bridge.run(
        caller,
        true,
        Path::new("/usr/sbin/sendmail"),
        &["-C", &evil_str, "a@example.com"],
        &[],
        message,
    );
    assert_eq!(out.status.code(), Some(73), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CSM4012E cannot write the mail into "),
        "{}",
        text(&out)
    );
    // Every other command of the setgid binary runs without the privilege.
    let out = bridge.run(
        caller,
        true,
        &bridge.setgid,
        &["submit", "-c", &evil_str],
        &[],
        b"HELO h.example\nMAIL FROM:<a@h.example>\nRCPT TO:<b@example.com>\nDATA\n\nx\n.\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        std::fs::read_dir(evil.join("TESTWTR"))
            .unwrap()
            .next()
            .is_none(),
        "something was written into the other spool"
    );
    assert_eq!(bridge.waiting().len(), 1);
}

#[tokio::test]
async fn php_mail_t_i_f_sender() {
    let Some(bridge) = Bridge::new("").await else {
        return;
    };
    // PHP's mail() with sendmail_path "sendmail -t -i" and -f from its 5th parameter:
    // To: and Subject: first, then the extra headers, LF line ends.
    let message = "To: customer@example.com\nSubject: Your order 1042\nX-PHP-Originating-Script: 33:order.php\nFrom: Shop <webmaster@shop.example>\nMIME-Version: 1.0\nContent-Type: text/html; charset=UTF-8\n\n<p>Thank you.</p>\n.\n";
    let config = bridge.env.config_path.display().to_string();
    let out = bridge.run(
        bridge.producer,
        false,
        env!("CARGO_BIN_EXE_cssmtp").as_ref(),
        &[
            "sendmail",
            "-C",
            &config,
            "-t",
            "-i",
            "-f",
            "webmaster@shop.example",
        ],
        &[],
        message.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let received = bridge.drain().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].mail_from, "webmaster@shop.example");
    assert_eq!(received[0].rcpt_to, ["customer@example.com"]);
    let rest = without_added_headers(&received[0].data);
    let header = "To: customer@example.com\r\nSubject: Your order 1042\r\nX-PHP-Originating-Script: 33:order.php\r\nFrom: Shop <webmaster@shop.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=UTF-8\r\n";
    let rest = rest
        .strip_prefix(header)
        .unwrap_or_else(|| panic!("{rest:?}"));
    assert_eq!(
        after_added(rest, None, "CSSMTP-PRODUCER"),
        "\r\n<p>Thank you.</p>\r\n.\r\n"
    );
}

#[tokio::test]
async fn a_script_recipients_as_arguments_a_dot_ends_the_message() {
    let Some(bridge) = Bridge::new("").await else {
        return;
    };
    // No header at all, no -i: a lone "." ends the message (the rest is not sent); a
    // bare local part gets the HostName; a Bcc-less, To-less message still goes.
    let message = "Nightly report\n\nAll fine.\n.\nnever sent\n";
    let config = bridge.env.config_path.display().to_string();
    let out = bridge.run(
        bridge.producer,
        false,
        &bridge.bin("sendmail"),
        &[
            "-C",
            &config,
            "-F",
            "Report Bot",
            "--",
            "ops@example.com,root",
            "x@example.org",
        ],
        &[],
        message.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let received = bridge.drain().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].mail_from, "cssmtp-producer@cssmtp.test");
    assert_eq!(
        received[0].rcpt_to,
        ["ops@example.com", "root@cssmtp.test", "x@example.org"]
    );
    let rest = without_added_headers(&received[0].data);
    assert_eq!(
        after_added(
            &rest,
            Some("\"Report Bot\" <cssmtp-producer@cssmtp.test>"),
            "CSSMTP-PRODUCER"
        ),
        "\r\nNightly report\r\n\r\nAll fine.\r\n"
    );
}

#[tokio::test]
async fn nothing_a_caller_gives_becomes_a_batch_smtp_command() {
    let Some(bridge) = Bridge::new("").await else {
        return;
    };
    let Some(caller) = outsider() else {
        return;
    };
    let sendmail = Path::new("/usr/sbin/sendmail");
    let ok_message = b"Subject: s\n\nbody\n".as_slice();
    let cases: [(&[&str], &[u8], i32, &str); 9] = [
        // Recipients with a line break, '>' or a leading '-'.
        (
            &["a@example.com\r\nRCPT TO:<evil@example.net>"],
            ok_message,
            67,
            "CSM4014E recipient \"a@example.com\\r\\nRCPT TO:<evil@example.net>\" refused: it holds a control character",
        ),
        (&["a@example.com>x"], ok_message, 67, "it holds '<' or '>'"),
        (
            &["--", "-oQ/tmp/x@example.com"],
            ok_message,
            67,
            "it starts with '-'",
        ),
        // From the header with -t.
        (
            &["-t"],
            b"To: a@example.com>, <b@example.com\nSubject: s\n\nbody\n",
            67,
            "CSM4014E recipient",
        ),
        // A sender with a line break or parameters.
        (
            &[
                "-f",
                "a@example.com>\nRCPT TO:<evil@example.net",
                "b@example.com",
            ],
            ok_message,
            64,
            "CSM4009E sender",
        ),
        (
            &["-f", "<a@example.com> SIZE=1", "b@example.com"],
            ok_message,
            64,
            "CSM4009E sender",
        ),
        // A bare CR in the text.
        (
            &["b@example.com"],
            b"Subject: s\n\nline\r.\r\nMAIL FROM:<x@y>\n",
            65,
            "CSM4013E the message is refused: line 3 holds a carriage return",
        ),
        // SMTP on standard input, an unknown option, no recipient.
        (
            &["-bs"],
            b"EHLO x\n",
            64,
            "CSM4001E -bs (SMTP on standard input) is not supported",
        ),
        (
            &["-k", "b@example.com"],
            ok_message,
            64,
            "CSM4001E illegal option -- k",
        ),
    ];
    for (args, stdin, status, says) in cases {
        let out = bridge.run(caller, true, sendmail, args, &[], stdin);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out)
        );
        assert!(
            bridge.waiting().is_empty(),
            "{args:?}: something was spooled"
        );
    }
    let out = bridge.run(caller, true, sendmail, &["-t"], &[], ok_message);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CSM4016E no recipient addresses"));
    // -oem: the refusal is also mailed back to the sender.
    let out = bridge.run(
        caller,
        true,
        sendmail,
        &["-oem", "bad>x@example.com"],
        &[],
        ok_message,
    );
    assert_eq!(out.status.code(), Some(67), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("CSM4017I the refusal was mailed to <cssmtp-caller@cssmtp.test>"),
        "{}",
        text(&out)
    );
    // And a good call still works (so the refusals above are about the input).
    let out = bridge.run(caller, true, sendmail, &["b@example.com"], &[], ok_message);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let received = bridge.drain().await;
    assert_eq!(received.len(), 2);
    let notice = received.iter().find(|m| m.mail_from.is_empty()).unwrap();
    assert_eq!(notice.rcpt_to, ["cssmtp-caller@cssmtp.test"]);
    let notice = String::from_utf8_lossy(&notice.data);
    assert!(
        notice.contains("CSM4014E recipient \"bad>x@example.com\" refused"),
        "{notice}"
    );
    let sent = received.iter().find(|m| !m.mail_from.is_empty()).unwrap();
    assert_eq!(sent.rcpt_to, ["b@example.com"]);
}

#[tokio::test]
async fn debian_mailx_through_the_sendmail_link() {
    let Some(bridge) = Bridge::new("").await else {
        return;
    };
    let Some(caller) = outsider() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let installed = std::process::Command::new(root.join("../../.ci/install-peers"))
        .arg("mailx")
        .output()
        .unwrap();
    if !installed.status.success() {
        eprintln!(
            "note: Debian's bsd-mailx is not available here, the mailx test is skipped: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
        return;
    }
    let stdout = String::from_utf8_lossy(&installed.stdout);
    let mailx_root = PathBuf::from(stdout.lines().last().unwrap().trim());
    let mailx = mailx_root.join("usr/bin/bsd-mailx");
    let libs = mailx_root
        .join("usr/lib/x86_64-linux-gnu")
        .display()
        .to_string();
    let out = bridge.run(
        caller,
        true,
        &mailx,
        &["-s", "disk almost full", "ops@example.com"],
        &[("LD_LIBRARY_PATH", &libs), ("HOME", "/nonexistent")],
        b"/var is at 93%\n.\nsee above\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let received = bridge.drain().await;
    assert_eq!(received.len(), 1, "{}", text(&out));
    assert_eq!(received[0].mail_from, "cssmtp-caller@cssmtp.test");
    assert_eq!(received[0].rcpt_to, ["ops@example.com"]);
    let rest = without_added_headers(&received[0].data);
    let rest = rest
        .strip_prefix("To: ops@example.com\r\nSubject: disk almost full\r\n")
        .unwrap_or_else(|| panic!("{rest:?}"));
    // mailx adds its MIME fields; the bridge adds From: (with the account's name),
    // Date: and Message-ID:; mailx calls sendmail with -i, so the "." line is text.
    let (_mime, rest) = rest.split_once("From: ").unwrap();
    let rest = format!("From: {rest}");
    assert_eq!(
        after_added(
            &rest,
            Some(&format!("\"{OUTSIDER_NAME}\" <cssmtp-caller@cssmtp.test>")),
            "CSSMTP-CALLER"
        ),
        "\r\n/var is at 93%\r\n.\r\nsee above\r\n"
    );
}

#[tokio::test]
async fn mailq_lists_the_daemons_spool_for_its_administrator_only() {
    let Some(bridge) = Bridge::new("").await else {
        return;
    };
    let Some(caller) = outsider() else {
        return;
    };
    let mut daemon = cssmtp()
        .args(["run", "-c"])
        .arg(&bridge.env.config_path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = bridge.env.dir.path().join("run/TESTWTR.sock");
    // Waiting on a real child process: bounded.
    for _ in 0..600 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = bridge.env.config_path.display().to_string();
    let out = std::process::Command::new(bridge.bin("mailq"))
        .args(["-C", &config])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!out.stdout.is_empty(), "{}", text(&out));
    let listed = std::process::Command::new(bridge.bin("sendmail"))
        .args(["-bp", "-C", &config])
        .output()
        .unwrap();
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
    // A user who is not the administrator is told so (sendmail's EX_NOPERM).
    let out = bridge.run(caller, true, Path::new("/usr/sbin/mailq"), &[], &[], b"");
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("CSM4005E only the cssmtp administrator may list the queue"),
        "{}",
        text(&out)
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(daemon.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_python_script_with_t_and_sendmail_starttls_yes_travels_only_over_tls() {
    let Some(bridge) = Bridge::new("SendmailStartTls Yes\n").await else {
        return;
    };
    let Some(caller) = outsider() else {
        return;
    };
    // A Python script without smtplib: the message built with the email package, handed
    // to /usr/sbin/sendmail -t -oi on standard input.
    let script = r#"
import email.message, subprocess, sys
m = email.message.EmailMessage()
m["From"] = "Backup <backup@h.example>"
m["To"] = "ops@example.com"
m["Cc"] = "audit@example.org"
m["Bcc"] = "secret@example.net"
m["Subject"] = "backup ok"
m.set_content("3 files\n")
sys.exit(subprocess.run(["/usr/sbin/sendmail", "-t", "-oi"], input=m.as_bytes()).returncode)
"#;
    let out = bridge.run(
        caller,
        true,
        Path::new("/usr/bin/python3"),
        &["-c", script],
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let files = bridge.waiting();
    assert_eq!(files.len(), 1);
    let spooled = String::from_utf8(std::fs::read(&files[0]).unwrap()).unwrap();
    assert!(
        spooled.starts_with(
            "EHLO cssmtp.test\r\nSTARTTLS\r\nMAIL FROM:<cssmtp-caller@cssmtp.test>\r\nRCPT TO:<ops@example.com>\r\nRCPT TO:<audit@example.org>\r\nRCPT TO:<secret@example.net>\r\nDATA\r\n"
        ),
        "{spooled}"
    );
    assert!(!spooled.contains("Bcc:"), "{spooled}");
    assert!(spooled.contains("\r\nSubject: backup ok\r\n"), "{spooled}");
    // The sink offers no STARTTLS: nothing of it goes in the clear (not even its return).
    let out = cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&bridge.env.config_path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(bridge.sink.received().is_empty());
}
