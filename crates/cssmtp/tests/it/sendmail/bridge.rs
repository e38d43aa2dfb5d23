//! The bridge under test: its setgid install, its callers, its output.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use cssmtp::sink::{Received, Sink, SinkOptions};
use cssmtp::spool::SpoolLayout;

use crate::support::{Env, Producer, cssmtp, producer, sink, target};

/// The test's users: `cssmtp-producer` (in the spool's group) and `cssmtp-caller`
/// (not in it: it may only write the spool through the setgid bridge).
pub(super) const OUTSIDER: &str = "cssmtp-caller";
pub(super) const OUTSIDER_NAME: &str = "Cron Caller";

/// Creates (idempotently) a user with a group of its own, not the spool's.
pub(crate) fn outsider() -> Option<Producer> {
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if !nix::unistd::geteuid().is_root() {
        eprintln!("note: not root, the sendmail bridge tests are skipped");
        return None;
    }
    let _serial = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        if let Some(user) = nix::unistd::User::from_name(OUTSIDER).unwrap() {
            return Some(Producer {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            });
        }
        let _ = std::process::Command::new("useradd")
            .args([
                "-r",
                "-M",
                "-U",
                "-s",
                "/usr/sbin/nologin",
                "-d",
                "/nonexistent",
            ])
            .args(["-c", OUTSIDER_NAME, OUTSIDER])
            .status();
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("cannot create the user {OUTSIDER}");
}

/// A scratch installation with a sink, the spool open to producers, and a setgid copy
/// of cssmtp (group: the spool's) with `sendmail` and `mailq` links to it.
pub(crate) struct Bridge {
    pub env: Env,
    pub sink: Sink,
    pub layout: SpoolLayout,
    /// The setgid copy of the binary.
    pub setgid: PathBuf,
    /// The configuration with absolute paths, for `/etc/cssmtp/cssmtp.conf`.
    pub etc_config: PathBuf,
    pub producer: Producer,
}

impl Bridge {
    pub async fn new(extra: &str) -> Option<Self> {
        let producer = producer("cssmtp-producer")?;
        let sink = sink(SinkOptions::default()).await;
        let env = Env::new(&format!("{}ChkPoint No\n{extra}", target(sink.addr, "")));
        let layout = env.open_to_producers(producer);
        let bin = env.dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let setgid = bin.join("cssmtp");
        std::fs::copy(env!("CARGO_BIN_EXE_cssmtp"), &setgid).unwrap();
        nix::unistd::chown(
            &setgid,
            Some(nix::unistd::Uid::from_raw(0)),
            Some(nix::unistd::Gid::from_raw(producer.gid)),
        )
        .unwrap();
        std::fs::set_permissions(&setgid, std::fs::Permissions::from_mode(0o2755)).unwrap();
        for link in ["sendmail", "mailq"] {
            std::os::unix::fs::symlink("cssmtp", bin.join(link)).unwrap();
        }
        let dir = env.dir.path().display().to_string();
        let text = std::fs::read_to_string(&env.config_path)
            .unwrap()
            .replace(
                "SpoolDirectory spool",
                &format!("SpoolDirectory {dir}/spool"),
            )
            .replace("RunDirectory   run", &format!("RunDirectory   {dir}/run"));
        let etc_config = env.dir.path().join("etc-cssmtp.conf");
        std::fs::write(&etc_config, text).unwrap();
        Some(Self {
            env,
            sink,
            layout,
            setgid,
            etc_config,
            producer,
        })
    }

    pub(super) fn bin(&self, name: &str) -> PathBuf {
        self.setgid.with_file_name(name)
    }

    /// Runs `program args` as `user` with `stdin`; `installed`: in a private mount
    /// namespace where `/usr/sbin/sendmail` and `/usr/sbin/mailq` lead to the setgid
    /// binary and `/etc/cssmtp/cssmtp.conf` is the test's.
    pub fn run(
        &self,
        user: Producer,
        installed: bool,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: &[u8],
    ) -> Output {
        const SCRIPT: &str = r#"set -e
up=$1 work=$2 conf=$3 bin=$4 uid=$5 gid=$6; shift 6
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$up,workdir=$work" /etc
mkdir -p /etc/cssmtp
cp "$conf" /etc/cssmtp/cssmtp.conf
chmod 644 /etc/cssmtp/cssmtp.conf
mount -t tmpfs -o mode=755 tmpfs /usr/sbin
ln -s "$bin" /usr/sbin/sendmail
ln -s "$bin" /usr/sbin/mailq
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@""#;
        let mut command = if installed {
            let scratch = tempfile::tempdir_in(self.env.dir.path()).unwrap();
            let (up, work) = (scratch.path().join("up"), scratch.path().join("work"));
            std::fs::create_dir(&up).unwrap();
            std::fs::create_dir(&work).unwrap();
            let mut c = std::process::Command::new("unshare");
            c.args([
                "-m",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                SCRIPT,
                "sh",
            ])
            .arg(&up)
            .arg(&work)
            .arg(&self.etc_config)
            .arg(&self.setgid)
            .arg(user.uid.to_string())
            .arg(user.gid.to_string());
            // Kept until the command ends.
            std::mem::forget(scratch);
            c
        } else {
            let mut c = std::process::Command::new("setpriv");
            c.arg(format!("--reuid={}", user.uid))
                .arg(format!("--regid={}", user.gid))
                .args(["--clear-groups", "--"]);
            c
        };
        command
            .arg(program)
            .args(args)
            .env_remove("CSSMTP_CONFIG")
            .env_remove("CSSMTP_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        // A refusing bridge may exit before reading everything.
        let _ = input.write_all(stdin);
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Spool files waiting (as root sees the writer directory).
    pub fn waiting(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.layout.incoming)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    }

    /// `cssmtp run --drain` (as root, the daemon); returns what the sink received.
    pub(super) async fn drain(&self) -> Vec<Received> {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            cssmtp()
                .args(["run", "--drain", "-c"])
                .arg(&self.env.config_path)
                .output(),
        )
        .await
        .expect("cssmtp run --drain hung")
        .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.sink.received()
    }
}

pub(super) fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Checks the fields the bridge added after the caller's header (`Date:`,
/// `Message-ID:` with the job name) and returns what follows them.
pub(super) fn after_added<'a>(rest: &'a str, from: Option<&str>, job: &str) -> &'a str {
    let mut rest = rest;
    if let Some(from) = from {
        rest = rest
            .strip_prefix(&format!("From: {from}\r\n"))
            .unwrap_or_else(|| panic!("From: {from} expected: {rest:?}"));
    }
    let (date, after) = rest.split_once("\r\n").unwrap();
    assert!(
        date.starts_with("Date: ") && chrono::DateTime::parse_from_rfc2822(&date[6..]).is_ok(),
        "{date:?}"
    );
    let (id, after) = after.split_once("\r\n").unwrap();
    assert!(
        id.starts_with(&format!("Message-ID: <{job}.J")) && id.ends_with("@cssmtp.test>"),
        "{id:?}"
    );
    after
}
