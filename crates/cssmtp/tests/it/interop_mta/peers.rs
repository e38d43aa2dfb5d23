//! The peers: Exim and OpenSMTPD started privately on loopback (see the module above),
//! and the scratch directories and ports they use.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The user the servers deliver as (created by `.ci/install-peers`).
pub(super) const MAILBOX_OWNER: &str = "cssmtp-peer";

/// Prepares a peer with `.ci/install-peers` (idempotent); its extracted root, or None
/// (with a printed note) if it cannot be set up here.
pub(super) fn prepare(peer: &str) -> Option<PathBuf> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: the {peer} interop test runs the server as root; not root");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/install-peers");
    let out = match Command::new(&script).arg(peer).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIPPED: {} {peer}: {e}", script.display());
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(root) if out.status.success() => Some(PathBuf::from(root.trim())),
        _ => {
            eprintln!(
                "SKIPPED: .ci/install-peers {peer} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
    }
}

/// A loopback port free at the time of asking.
pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory the servers' unprivileged users can traverse.
pub(super) fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Makes `path` (created) belong to `user`.
pub(super) fn owned_dir(path: &Path, user: &str) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    let status = Command::new("chown")
        .arg(format!("{user}:{user}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown {user} {}", path.display());
    path.to_path_buf()
}

/// A running third-party server, in its own process group (under `timeout`, so it
/// dies within two minutes even if this test process is killed outright). Dropping
/// it kills the whole group: the daemon and every process it forked.
pub(super) struct Peer {
    pub(super) name: &'static str,
    pub(super) child: std::process::Child,
    pub(super) addr: SocketAddr,
    pub(super) log: PathBuf,
}

impl Peer {
    /// Starts the command `command(port)` returns for a free loopback port (a `timeout`
    /// wrapper is added) and waits for its greeting. A server that exits before
    /// greeting (its port taken meanwhile) is started again on another port, twice.
    pub(super) async fn start(
        name: &'static str,
        log: PathBuf,
        command: impl Fn(u16) -> Vec<String>,
    ) -> Self {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new("timeout")
                .args(["--kill-after=5", "120"])
                .args(command(port))
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .process_group(0)
                .spawn()
                .unwrap();
            let mut peer = Self {
                name,
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                log: log.clone(),
            };
            match peer.wait_for_greeting().await {
                Ok(()) => return peer,
                Err(status) if attempt < 3 => {
                    eprintln!(
                        "{name} exited ({status}), started again: {}",
                        peer.log_text()
                    );
                }
                Err(status) => panic!("{name} exited ({status}): {}", peer.log_text()),
            }
        }
    }

    /// Polls (bounded) until the server greets; its exit status if it exited.
    pub(super) async fn wait_for_greeting(&mut self) -> Result<(), std::process::ExitStatus> {
        use tokio::io::AsyncReadExt;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(status);
            }
            if let Ok(mut s) = tokio::net::TcpStream::connect(self.addr).await {
                let mut buf = [0u8; 3];
                if tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
                    .await
                    .is_ok_and(|r| r.is_ok())
                    && &buf == b"220"
                {
                    return Ok(());
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} did not greet on {}: {}",
                self.name,
                self.addr,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    pub(super) fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The group is the daemon's own (process_group(0) above): its leader is our
        // child, which is not reaped before the wait below, so the id is not reused.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }
}

/// OpenSMTPD 6.8 with its defaults (100 mails per session, a listen backlog of 5),
/// delivering every mail to a maildir.
pub(super) struct OpenSmtpd {
    pub(super) peer: Peer,
    pub(super) maildir: PathBuf,
}

impl OpenSmtpd {
    pub(super) async fn start(dir: &Path, trace: bool) -> Option<Self> {
        let root = prepare("opensmtpd")?;
        let maildir = owned_dir(&dir.join("maildir"), MAILBOX_OWNER);
        let spool = dir.join("smtpd-spool");
        std::fs::create_dir_all(&spool).unwrap();
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o711)).unwrap();
        let config = dir.join("smtpd.conf");
        let smtpd = root.join("usr/sbin/smtpd");
        let script = format!(
            "set -e\n\
             mount --bind '{spool}' /var/spool/smtpd\n\
             mount --bind '{libexec}' /usr/libexec/opensmtpd\n\
             mount -o remount,bind,ro /usr/libexec/opensmtpd\n\
             mount -t tmpfs cssmtp-peer /run\n\
             exec '{smtpd}' -d {trace} -f '{config}'\n",
            spool = spool.display(),
            libexec = root.join("usr/libexec/opensmtpd").display(),
            smtpd = smtpd.display(),
            trace = if trace { "-T smtp" } else { "" },
            config = config.display(),
        );
        let peer = Peer::start("OpenSMTPD", dir.join("smtpd.log"), |port| {
            std::fs::write(
                &config,
                format!(
                    "table recipients {{ \"@\" = \"{MAILBOX_OWNER}\" }}\n\
                     listen on 127.0.0.1 port {port}\n\
                     action \"deliver\" maildir \"{}\" user {MAILBOX_OWNER} virtual <recipients>\n\
                     match from any for any action \"deliver\"\n",
                    maildir.display()
                ),
            )
            .unwrap();
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                &script,
            ]
            .map(String::from)
            .to_vec()
        })
        .await;
        Some(Self { peer, maildir })
    }
}

/// Exim 4.96 (its SMTP receiver, with `extra` settings) queueing what it accepts;
/// [`Exim::deliver`] runs the queue into a maildir.
pub(super) struct Exim {
    pub(super) peer: Peer,
    pub(super) root: PathBuf,
    pub(super) config: PathBuf,
    pub(super) maildir: PathBuf,
    pub(super) mainlog: PathBuf,
}

impl Exim {
    pub(super) async fn start(dir: &Path, extra: &str) -> Option<Self> {
        let root = prepare("exim")?;
        let maildir = owned_dir(&dir.join("maildir"), MAILBOX_OWNER);
        let spool = owned_dir(&dir.join("exim-spool"), "Debian-exim");
        let logs = owned_dir(&dir.join("exim-log"), "Debian-exim");
        let exim = root.join("usr/sbin/exim4");
        let config = dir.join("exim.conf");
        // The receiving process runs as Debian-exim and cannot re-execute the
        // extracted binary with its library: mails are queued (queue_only) and
        // delivered by a queue run as root (`deliver`).
        let library = format!(
            "LD_LIBRARY_PATH={}",
            root.join("usr/lib/x86_64-linux-gnu").display()
        );
        let peer = Peer::start("Exim", dir.join("exim.out"), |port| {
            std::fs::write(
                &config,
                format!(
                    "exim_path = {exim}\n\
                     keep_environment = LD_LIBRARY_PATH\n\
                     spool_directory = {spool}\n\
                     log_file_path = {logs}/%slog\n\
                     pid_file_path = {dir}/exim.pid\n\
                     daemon_smtp_ports = {port}\n\
                     daemon_startup_retries = 0\n\
                     local_interfaces = 127.0.0.1\n\
                     primary_hostname = exim.localhost\n\
                     exim_user = Debian-exim\n\
                     exim_group = Debian-exim\n\
                     never_users = root\n\
                     host_lookup =\n\
                     rfc1413_hosts =\n\
                     tls_advertise_hosts =\n\
                     queue_only = true\n\
                     acl_smtp_mail = acl_mail\n\
                     acl_smtp_rcpt = acl_rcpt\n\
                     {extra}\n\
                     begin acl\n\
                     acl_mail:\n  warn logwrite = MAILCMD $smtp_command\n  accept\n\
                     acl_rcpt:\n  accept\n\
                     begin routers\n\
                     all:\n  driver = accept\n  transport = store\n\
                     begin transports\n\
                     store:\n  driver = appendfile\n  directory = {maildir}\n  maildir_format\n  return_path_add\n  \
                     user = {MAILBOX_OWNER}\n  group = {MAILBOX_OWNER}\n",
                    exim = exim.display(),
                    spool = spool.display(),
                    logs = logs.display(),
                    dir = dir.display(),
                    maildir = maildir.display(),
                ),
            )
            .unwrap();
            vec![
                "env".to_string(),
                library.clone(),
                exim.display().to_string(),
                "-C".to_string(),
                config.display().to_string(),
                "-bdf".to_string(),
            ]
        })
        .await;
        Some(Self {
            peer,
            root,
            config,
            maildir,
            mainlog: logs.join("mainlog"),
        })
    }

    /// Delivers the queue (a queue run as root, to its end).
    pub(super) fn deliver(&self) {
        let out = Command::new("timeout")
            .args(["60"])
            .arg(self.root.join("usr/sbin/exim4"))
            .arg("-C")
            .arg(&self.config)
            .arg("-qf")
            .env(
                "LD_LIBRARY_PATH",
                self.root.join("usr/lib/x86_64-linux-gnu"),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "exim -qf: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(super) fn mainlog(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.mainlog).unwrap_or_default()).into_owned()
    }
}
