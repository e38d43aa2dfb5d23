//! The service integration: the systemd template unit passes `systemd-analyze verify`
//! and keeps a low exposure; sysusers.d and tmpfiles.d make the user, the groups and
//! the directories with the README's modes; the real binary tells systemd READY=1,
//! WATCHDOG=1 and STOPPING=1 over NOTIFY_SOCKET.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cssmtp::sink::SinkOptions;

use super::have;
use crate::support::{Env, cssmtp, sink, target};

fn packaging(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging")
        .join(path)
}

fn unit_text() -> String {
    std::fs::read_to_string(packaging("systemd/cssmtp@.service")).unwrap()
}

/// The unit's values of `key`, in order.
fn values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

/// What the issue asks of the unit, and that its writable paths are cssmtp's defaults.
#[test]
fn the_unit_says_what_the_service_needs() {
    let unit = unit_text();
    for (key, value) in [
        ("Type", "notify"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RuntimeDirectory", "cssmtp"),
        ("User", "cssmtp"),
        ("RestartPreventExitStatus", "78"),
    ] {
        assert_eq!(values(&unit, key), [value], "{key}");
    }
    assert_eq!(
        values(&unit, "ReadWritePaths"),
        [format!(
            "{} {}",
            cssmtp::config::DEFAULT_SPOOL_DIRECTORY,
            cssmtp::config::DEFAULT_RUN_DIRECTORY
        )]
    );
    assert_eq!(
        values(&unit, "ExecReload"),
        ["/usr/bin/cssmtp modify -c /etc/cssmtp/%i.conf REFRESH"]
    );
    assert!(values(&unit, "WatchdogSec").len() == 1);
}

/// `systemd-analyze verify` finds nothing to say about `cssmtp@CSSMTP.service` (the
/// binary path pointed at this build), and `systemd-analyze security` rates its
/// exposure low.
#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        println!("note: systemd-analyze is missing (Debian: the systemd package); skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_text().replace("/usr/bin/cssmtp", env!("CARGO_BIN_EXE_cssmtp"));
    std::fs::write(dir.path().join("cssmtp@.service"), unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "./cssmtp@CSSMTP.service"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "./cssmtp@CSSMTP.service"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for cssmtp@CSSMTP.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level: {text}"));
    assert!(level <= 2.0, "exposure {level}: {text}");
}

/// systemd-sysusers and systemd-tmpfiles, in a scratch root, make the daemon's user in
/// the spool's group and the directories with the modes the README promises: the
/// writer directory 3730 of the spool's group, the others the daemon's.
#[test]
fn sysusers_and_tmpfiles_make_the_promised_user_and_modes() {
    if !have("systemd-sysusers") || !have("systemd-tmpfiles") {
        println!("note: systemd-sysusers or systemd-tmpfiles is missing; skipping");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("note: not root (tmpfiles sets owners); skipping");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("sysusers.d/cssmtp.conf", "usr/lib/sysusers.d/cssmtp.conf"),
        ("tmpfiles.d/cssmtp.conf", "usr/lib/tmpfiles.d/cssmtp.conf"),
    ] {
        let to = root.path().join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(packaging(from), to).unwrap();
    }
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let root_arg = format!("--root={}", root.path().display());
    for (tool, args) in [
        ("systemd-sysusers", vec![root_arg.as_str()]),
        ("systemd-tmpfiles", vec![root_arg.as_str(), "--create"]),
    ] {
        let out = Command::new(tool).args(&args).output().unwrap();
        assert!(out.status.success(), "{tool}: {out:?}");
    }
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    let id = |table: &str, name: &str| -> u32 {
        table
            .lines()
            .find_map(|l| {
                let mut f = l.split(':');
                (f.next() == Some(name)).then(|| f.nth(1).unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no {name} in {table}"))
    };
    let (user, daemon_group, spool_group) = (
        id(&passwd, "cssmtp"),
        id(&group, "cssmtp"),
        id(&group, "cssmtp-spool"),
    );
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("cssmtp-spool:") && l.ends_with(":cssmtp")),
        "cssmtp reads the producers' files through the spool's group: {group}"
    );
    assert!(passwd.contains(":/usr/sbin/nologin") || passwd.contains(":/sbin/nologin"));
    for (path, mode, gid) in [
        ("var/spool/cssmtp", 0o755, daemon_group),
        ("var/spool/cssmtp/CSSMTP", 0o3730, spool_group),
        ("run/cssmtp", 0o750, daemon_group),
    ] {
        let meta = std::fs::metadata(root.path().join(path)).unwrap();
        assert_eq!(meta.mode() & 0o7777, mode, "{path}: {:o}", meta.mode());
        assert_eq!((meta.uid(), meta.gid()), (user, gid), "{path}");
    }
}

/// The real binary under a fake service manager: READY=1 once the control socket
/// answers, WATCHDOG=1 pings (WATCHDOG_USEC), STOPPING=1 at STOP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tells_systemd_ready_watchdog_and_stopping() {
    let server = sink(SinkOptions::default()).await;
    let env = Env::new(&target(server.addr, ""));
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let mut daemon = cssmtp()
        .args(["run", "-c"])
        .arg(&env.config_path)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut wait_for = async |needle: &str, daemon: &mut tokio::process::Child| -> String {
        loop {
            tokio::select! {
                biased;
                got = socket.recv(&mut buf) => {
                    let n = got.unwrap();
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if text.lines().any(|l| l == needle) {
                        return text;
                    }
                }
                status = daemon.wait() => {
                    // What it sent before it ended may still be queued on the socket.
                    while let Ok(n) = socket.try_recv(&mut buf) {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if text.lines().any(|l| l == needle) {
                            return text;
                        }
                    }
                    panic!("the daemon ended ({status:?}) before {needle}")
                }
            }
        }
    };
    let ready = wait_for("READY=1", &mut daemon).await;
    assert!(ready.contains("STATUS=writer "), "{ready}");
    // Ready means reachable: the operator's commands work at once.
    let out = cssmtp()
        .args(["modify", "d", "tar", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    wait_for("WATCHDOG=1", &mut daemon).await;
    let out = cssmtp()
        .args(["modify", "STOP", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    wait_for("STOPPING=1", &mut daemon).await;
    assert_eq!(daemon.wait().await.unwrap().code(), Some(0));
}
