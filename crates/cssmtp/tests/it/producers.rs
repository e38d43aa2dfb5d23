//! Producers are untrusted: the attacks of issue 9 (points 1, 2 and 9), run as an
//! unprivileged member of the spool's group against the real `cssmtp` binary.
//!
//! Each test creates (idempotently) the group `cssmtp-spool` and its users, and is
//! skipped with a note when the tests do not run as root.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cssmtp::sink::SinkOptions;

use crate::support::{Env, cssmtp, mail, producer, sink, target, text_with_ids};

/// Bounds a run of the real binary: a daemon that hangs (on a FIFO, say) fails the
/// test instead of hanging it (the child is killed when dropped).
const HANG: Duration = Duration::from_secs(60);

async fn run_drain(env: &Env) -> Output {
    tokio::time::timeout(
        HANG,
        cssmtp()
            .args(["run", "--drain", "-c"])
            .arg(&env.config_path)
            .output(),
    )
    .await
    .expect("cssmtp run --drain hung")
    .unwrap()
}

async fn check(env: &Env) -> Output {
    cssmtp()
        .args(["check", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn job(subject: &str) -> String {
    format!(
        "HELO h.example\n{}",
        mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids(subject, "body")
        )
    )
}

/// A root-only file (mode 0600) whose content is a valid spool file: if cssmtp ever
/// read it for a producer, the target would receive it.
fn secret(env: &Env) -> std::path::PathBuf {
    let path = env.dir.path().join("secret");
    std::fs::write(&path, job("SECRET of root")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[tokio::test]
async fn a_producer_cannot_swap_active_nor_plant_the_lock() {
    let Some(p) = producer("cssmtp-producer") else {
        return;
    };
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}ChkPoint No\n", target(sink.addr, "")));
    let layout = env.open_to_producers(p);
    // The daemon's directories are its own: its group (not the spool's, which the
    // setgid writer directory would hand down), no setgid bit.
    for (name, mode_) in cssmtp::spool::layout::PRIVATE_DIRS {
        let meta = std::fs::symlink_metadata(layout.incoming.join(name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{name}");
        assert_eq!(meta.mode() & 0o7777, mode_, "{name}");
    }
    assert_eq!(mode(&layout.incoming), 0o3730);
    let secret = secret(&env);
    let before = std::fs::read(&secret).unwrap();
    let w = layout.incoming.display();
    // Replace active/ by a directory of the producer's whose .lock leads to the secret.
    let (ok, err) = p.sh(&format!(
        "mkdir {w}/evil && ln -s {} {w}/evil/.lock && mv {w}/active {w}/old && mv {w}/evil {w}/active",
        secret.display()
    ));
    assert!(!ok, "a producer renamed active/");
    assert!(
        err.contains("Operation not permitted") || err.contains("Permission denied"),
        "{err}"
    );
    // Nor can it write into active/ itself.
    let (ok, _) = p.sh(&format!("ln -s {} {w}/active/.lock", secret.display()));
    assert!(!ok, "a producer planted active/.lock");
    let out = run_drain(&env).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        before,
        "the secret was written"
    );
    let lock = std::fs::symlink_metadata(layout.active.join(".lock")).unwrap();
    assert!(lock.file_type().is_file());
    assert_eq!(lock.mode() & 0o777, 0o600);
    // The producer's directory is left alone, and said so once.
    let log = stderr(&out);
    assert_eq!(
        log.matches("CSM1061W Spool entry evil ").count(),
        1,
        "{log}"
    );
}

#[tokio::test]
async fn a_private_directory_made_by_a_producer_is_refused_at_start() {
    let Some(p) = producer("cssmtp-producer") else {
        return;
    };
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}ChkPoint No\n", target(sink.addr, "")));
    let layout = env.open_to_producers(p);
    let secret = secret(&env);
    let before = std::fs::read(&secret).unwrap();
    // Before the daemon ever ran, active/ was made by a producer (here: it was removed
    // by the administrator, and a producer was quicker than the daemon).
    std::fs::remove_dir_all(&layout.active).unwrap();
    let w = layout.incoming.display();
    let (ok, err) = p.sh(&format!(
        "mkdir -m 0777 {w}/active && ln -s {} {w}/active/.lock",
        secret.display()
    ));
    assert!(ok, "{err}");
    let out = run_drain(&env).await;
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains(&format!(
            "CSM1060E Unsafe directory {}/active (a directory of the daemon): another user owns it; it is owned by cssmtp-producer (uid {}) with mode 2777; expected: owned by root",
            layout.incoming.display(),
            p.uid
        )),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        before,
        "the secret was written"
    );
    let out = check(&env).await;
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("CSM1060E Unsafe directory "));
}

#[tokio::test]
async fn a_producer_cannot_swap_checkpoint_nor_write_the_journal() {
    let Some(p) = producer("cssmtp-producer") else {
        return;
    };
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let layout = env.open_to_producers(p);
    // A first run makes the journal.
    let out = run_drain(&env).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let checkpoint = layout.incoming.join("checkpoint");
    let journal = checkpoint.join("TESTWTR.journal");
    assert!(journal.is_file());
    let before = std::fs::read(&journal).unwrap();
    let w = layout.incoming.display();
    for attack in [
        format!("mv {w}/checkpoint {w}/old"),
        format!("mkdir {w}/ck && mv {w}/ck {w}/checkpoint"),
        format!("echo forged >> {}", journal.display()),
        format!("echo forged > {}/forged.journal", checkpoint.display()),
        format!("rm -f {}", journal.display()),
    ] {
        let (ok, _) = p.sh(&attack);
        assert!(!ok, "a producer succeeded: {attack}");
    }
    assert_eq!(std::fs::read(&journal).unwrap(), before);
    assert_eq!(mode(&journal) & 0o777, 0o600);
    assert_eq!(mode(&checkpoint), 0o700);
    let out = run_drain(&env).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test]
async fn a_producer_cannot_remove_or_take_another_producers_file() {
    let (Some(alice), Some(mallory)) = (producer("cssmtp-producer2"), producer("cssmtp-producer"))
    else {
        return;
    };
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}ChkPoint No\n", target(sink.addr, "")));
    let layout = env.open_to_producers(alice);
    let spooled = alice.submit(&env.config_path, "ALICE", &job("alice's mail"));
    assert_eq!(spooled.parent().unwrap(), layout.incoming);
    assert_eq!(mode(&spooled), 0o640);
    let name = spooled.file_name().unwrap().to_str().unwrap().to_owned();
    let w = layout.incoming.display();
    for attack in [
        format!("ls {w}"),
        format!("rm -f {w}/{name}"),
        format!("mv {w}/{name} {w}/.stolen.tmp"),
        format!("echo x >> {w}/{name}"),
    ] {
        let (ok, _) = mallory.sh(&attack);
        assert!(!ok, "another producer succeeded: {attack}");
    }
    // The name cannot be guessed: 64 random bits at its end (the file is readable by
    // the spool's group, for a daemon that is not root: only by name, which another
    // producer can neither list nor guess).
    let random = name.rsplit('-').next().unwrap();
    assert_eq!(random.len(), 16, "{name}");
    let out = run_drain(&env).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].text().contains("Subject: alice's mail"));
}

#[tokio::test]
async fn links_fifos_devices_and_hard_links_are_never_read() {
    let Some(p) = producer("cssmtp-producer") else {
        return;
    };
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}ChkPoint No\n", target(sink.addr, "")));
    let layout = env.open_to_producers(p);
    let secret = secret(&env);
    let w = layout.incoming.display();
    let (ok, err) = p.sh(&format!(
        "ln -s {s} {w}/LINK.J1.x && mkfifo {w}/FIFO.J2.x && ln -s /dev/zero {w}/ZERO.J3.x",
        s = secret.display()
    ));
    assert!(ok, "{err}");
    // A hard link to the root-only file: fs.protected_hardlinks stops the producer
    // here, so root makes it (as a system where the protection is off would let the
    // producer do).
    std::fs::hard_link(&secret, layout.incoming.join("HARD.J4.x")).unwrap();
    // A device node (/dev/null's numbers).
    let made = std::process::Command::new("mknod")
        .arg(layout.incoming.join("DEV.J5.x"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success());
    // And a good file, which is delivered all the same.
    p.submit(&env.config_path, "GOOD", &job("good mail"));

    let out = run_drain(&env).await;
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let received = sink.received();
    assert_eq!(received.len(), 1, "only the good mail: {received:?}");
    assert!(received[0].text().contains("Subject: good mail"));
    for (name, kind) in [
        ("LINK.J1.x", "it is a symbolic link"),
        ("FIFO.J2.x", "it is a FIFO"),
        ("ZERO.J3.x", "it is a symbolic link"),
        ("HARD.J4.x", "it has 2 hard links"),
        ("DEV.J5.x", "it is a device"),
    ] {
        assert_eq!(
            log.matches(&format!("CSM1061W Spool entry {name} is not read: {kind}"))
                .count(),
            1,
            "{name}: {log}"
        );
        // Held, unopened, as it was.
        let held = std::fs::symlink_metadata(layout.hold.join(name)).unwrap();
        match name {
            "LINK.J1.x" | "ZERO.J3.x" => assert!(held.file_type().is_symlink()),
            "FIFO.J2.x" => assert!(held.file_type().is_fifo()),
            "DEV.J5.x" => assert!(held.file_type().is_char_device()),
            _ => assert_eq!(held.ino(), std::fs::metadata(&secret).unwrap().ino()),
        }
        let report = std::fs::read_to_string(layout.hold.join(format!("{name}.report"))).unwrap();
        assert!(report.contains(kind), "{report}");
    }
    assert!(std::fs::read(&secret).unwrap().starts_with(b"HELO"));
}

#[tokio::test]
async fn entries_left_in_active_that_are_not_files_are_held_at_a_warm_start() {
    let Some(p) = producer("cssmtp-producer") else {
        return;
    };
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let layout = env.open_to_producers(p);
    let secret = secret(&env);
    // As an older version, or a swap before the upgrade, may have left them.
    std::os::unix::fs::symlink(&secret, layout.active.join("LINK.J1.x")).unwrap();
    nix::unistd::mkfifo(
        &layout.active.join("FIFO.J2.x"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let out = run_drain(&env).await;
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(sink.received().is_empty());
    assert_eq!(
        log.matches("CSM1061W Spool entry LINK.J1.x is not read: it is a symbolic link")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("CSM1061W Spool entry FIFO.J2.x is not read: it is a FIFO")
            .count(),
        1,
        "{log}"
    );
    assert!(layout.hold.join("FIFO.J2.x").exists());
}

#[tokio::test]
async fn names_with_a_line_feed_or_not_utf8_are_delivered_and_logged_escaped() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let layout = env.layout();
    let forged = "NL\nCSM2002I Spool file FORGED complete";
    std::fs::write(layout.incoming.join(forged), job("line feed")).unwrap();
    std::fs::write(
        layout.incoming.join(OsStr::from_bytes(b"BAD\xff\xfe.J2.x")),
        job("not utf-8"),
    )
    .unwrap();
    let out = run_drain(&env).await;
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let mut subjects: Vec<String> = sink
        .received()
        .iter()
        .map(|m| {
            m.text()
                .lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap()
                .to_owned()
        })
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["Subject: line feed", "Subject: not utf-8"]);
    assert!(
        log.contains("CSM2002I Spool file NL\\nCSM2002I Spool file FORGED complete complete"),
        "{log}"
    );
    assert!(
        log.contains("CSM2002I Spool file BAD\\xff\\xfe.J2.x complete"),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.starts_with("CSM2002I Spool file FORGED")),
        "a forged log line: {log}"
    );
    assert!(env.files_in("").is_empty() && env.files_in("active").is_empty());
}

#[tokio::test]
async fn unsafe_directories_stop_the_start_with_exit_78() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let layout = env.layout();
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // The writer directory group-writable without the sticky bit (the old 2770).
    chmod(&layout.incoming, 0o2770);
    let expected = format!(
        "CSM1060E Unsafe directory {} (the writer directory): group or others may write it without the sticky bit",
        layout.incoming.display()
    );
    for out in [run_drain(&env).await, check(&env).await] {
        assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
        assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
        assert!(stderr(&out).contains("with mode 2770; expected: mode 3730"));
    }
    // Not changed behind the administrator's back.
    assert_eq!(mode(&layout.incoming), 0o2770);
    chmod(&layout.incoming, 0o3730);
    // A group-writable active/.
    chmod(&layout.active, 0o770);
    let out = run_drain(&env).await;
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains(&format!(
            "CSM1060E Unsafe directory {} (a directory of the daemon): group or others may write it",
            layout.active.display()
        )),
        "{}",
        stderr(&out)
    );
    chmod(&layout.active, 0o750);
    // A group-writable ancestor.
    let spool = layout.incoming.parent().unwrap();
    chmod(spool, 0o775);
    let out = run_drain(&env).await;
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains(&format!(
            "CSM1060E Unsafe directory {} (on the way to a directory of the daemon)",
            spool.display()
        )),
        "{}",
        stderr(&out)
    );
    chmod(spool, 0o755);
    // Safe again: it runs, and `check` says OK.
    let out = run_drain(&env).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(check(&env).await.status.code(), Some(0));
}

/// Running out of file descriptors (issue 9, point 8, for intake): with a low limit and
/// many spool files, cssmtp takes fewer files at once, never fails or holds a file for
/// it, and delivers everything.
#[tokio::test]
async fn a_low_descriptor_limit_slows_intake_and_loses_nothing() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}SpoolTasks 64\nMaxConnections 1\nChkPoint No\n",
        target(sink.addr, "")
    ));
    let layout = env.layout();
    for i in 0..100 {
        std::fs::write(
            layout.incoming.join(format!("MANY.J{i:07}.x")),
            job(&format!("mail {i}")),
        )
        .unwrap();
    }
    let out = tokio::time::timeout(
        HANG,
        tokio::process::Command::new("prlimit")
            .arg("--nofile=64:64")
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_cssmtp"))
            .args(["run", "--drain", "-c"])
            .arg(&env.config_path)
            .env_remove("CSSMTP_LOG")
            .env_remove("JOURNAL_STREAM")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("cssmtp run --drain hung")
    .unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(sink.received().len(), 100);
    assert!(
        log.contains("CSM1064W The file-descriptor limit (64, "),
        "{log}"
    );
    assert!(
        !log.contains("CSM1006E") && !log.contains("CSM2003W"),
        "{log}"
    );
    assert!(env.files_in("hold").is_empty() && env.files_in("active").is_empty());
}
