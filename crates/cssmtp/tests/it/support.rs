//! Shared test helpers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::future::Future;
use std::time::Duration;

use cssmtp::app::{self, RunOptions, RunReport};
use cssmtp::config::{self, Config};
use cssmtp::control::{self, Reply};
use cssmtp::sink::{Sink, SinkOptions};
use cssmtp::spool::SpoolLayout;
use cssmtp::spool::submit::{JobInfo, submit};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A scratch installation: configuration file and spool in a temporary directory.
pub struct Env {
    pub dir: TempDir,
    pub config_path: PathBuf,
}

impl Env {
    /// Writes a configuration: spool and run directories inside the scratch directory,
    /// plus `body` (TargetServer statements and whatever the test needs).
    /// Like [`Env::new`], trusting the CA of `pki` (written as `ca.pem` beside the
    /// configuration, named by a relative `TlsCaFile`).
    pub fn with_ca(pki: &TestPki, body: &str) -> Self {
        let env = Self::new(&format!("TlsCaFile ca.pem\n{body}"));
        pki.write_ca(env.dir.path(), "ca.pem");
        env
    }

    pub fn new(body: &str) -> Self {
        // cssmtp's log, shown for failing tests (CSSMTP_LOG=debug for more).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("CSSMTP_LOG")
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("cssmtp.conf");
        let text = format!(
            "ExtWrtName     TESTWTR\nSpoolDirectory spool\nRunDirectory   run\nHostName       cssmtp.test\n{body}\n"
        );
        std::fs::write(&config_path, text).unwrap();
        Self { dir, config_path }
    }

    pub fn config(&self) -> Config {
        let (config, _) = config::load(&self.config_path).unwrap();
        config
    }

    pub fn layout(&self) -> SpoolLayout {
        let layout = SpoolLayout::new(self.config().writer_spool());
        layout.create().unwrap();
        layout
    }

    /// Submits a batch-SMTP file as job `job_name`.
    pub fn submit(&self, job_name: &str, text: &str) -> PathBuf {
        let job = JobInfo {
            job_name: job_name.into(),
            job_id: "J0000001".into(),
        };
        submit(&self.layout().incoming, &job, 1, text.as_bytes()).unwrap()
    }

    /// Runs cssmtp until the spool is drained.
    pub async fn drain(&self) -> RunReport {
        app::run(
            self.config(),
            RunOptions::drain().keep_reports(),
            CancellationToken::new(),
        )
        .await
        .unwrap()
    }

    /// Files in a spool subdirectory (`""` for the intake directory itself).
    pub fn files_in(&self, sub: &str) -> Vec<String> {
        let layout = self.layout();
        let dir = match sub {
            "active" => layout.active,
            "hold" => layout.hold,
            _ => layout.incoming,
        };
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }
}

/// A TargetServer block for one address.
pub fn target(addr: SocketAddr, extra: &str) -> String {
    format!(
        "TargetServer\n{{\n  TargetIp {}\n  ConnectPort {}\n{extra}\n}}\n",
        addr.ip(),
        addr.port()
    )
}

/// Starts a sink on 127.0.0.1 with `options`.
pub async fn sink(options: SinkOptions) -> Sink {
    Sink::bind(SocketAddr::from(([127, 0, 0, 1], 0)), options)
        .await
        .unwrap()
}

/// A loopback port nothing listens on.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Removes the header fields cssmtp adds in front of a mail (Received: and its two
/// continuation lines, then Date:/Message-ID: when added).
pub fn without_added_headers(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data).into_owned();
    let mut rest = text.as_str();
    assert!(
        rest.starts_with("Received: from "),
        "mail must start with cssmtp's Received: {text:?}"
    );
    for _ in 0..3 {
        rest = rest.split_once("\r\n").map(|(_, r)| r).unwrap();
    }
    rest.to_owned()
}

/// A certificate authority made for one test, and server configurations it signs.
pub struct TestPki {
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub ca_pem: String,
}

impl TestPki {
    pub fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self {
            ca_pem: cert.pem(),
            ca: rcgen::Issuer::new(params, key),
        }
    }

    /// A rustls server configuration with a certificate for `names` (IPs allowed).
    pub fn server(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(cssmtp::delivery::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        Arc::new(config)
    }

    /// A rustls server configuration for `names` (TLS 1.2 only when `tls12_only`;
    /// requiring a client certificate signed by this CA when `client_auth`), and the DER
    /// of its certificate.
    pub fn server_with(
        &self,
        names: &[&str],
        tls12_only: bool,
        client_auth: bool,
    ) -> (Arc<rustls::ServerConfig>, Vec<u8>) {
        use rustls::pki_types::pem::PemObject;
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let der = cert.der().to_vec();
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let provider = cssmtp::delivery::tls::provider();
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider));
        let builder = if tls12_only {
            builder.with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            builder.with_safe_default_protocol_versions()
        }
        .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(
                    rustls::pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
                        .unwrap(),
                )
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        (Arc::new(config), der)
    }

    /// A certificate for `names` and its private key, PEM (for servers not in Rust).
    pub fn server_pem(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA certificate to `dir/name` and returns its path.
    pub fn write_ca(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }
}

/// One mail of a batch file.
pub fn mail(from: &str, rcpts: &[&str], text: &str) -> String {
    let mut out = format!("MAIL FROM:<{from}>\n");
    for r in rcpts {
        out.push_str(&format!("RCPT TO:<{r}>\n"));
    }
    out.push_str("DATA\n");
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(".\n");
    out
}

/// A text with a Date: and a Message-ID: (so cssmtp adds only Received:).
pub fn text_with_ids(subject: &str, body: &str) -> String {
    format!(
        "Date: Sat, 28 Nov 2026 10:00:00 +0000\nMessage-ID: <{}@test>\nSubject: {subject}\n\n{body}",
        subject.replace(' ', "-")
    )
}

/// The mails a sink received that are not notifications (non-null reverse path).
pub fn originals(sink: &cssmtp::sink::Sink) -> Vec<cssmtp::sink::Received> {
    sink.received()
        .into_iter()
        .filter(|m| !m.mail_from.is_empty())
        .collect()
}

/// The undeliverable notifications a sink received (null reverse path).
pub fn notifications(sink: &cssmtp::sink::Sink) -> Vec<cssmtp::sink::Received> {
    sink.received()
        .into_iter()
        .filter(|m| m.mail_from.is_empty())
        .collect()
}

/// The real `cssmtp` executable, with none of the caller's cssmtp environment (config
/// path, log filter, systemd journal stream); killed if the test drops it.
pub fn cssmtp() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cssmtp"));
    command
        .env_remove("CSSMTP_CONFIG")
        .env_remove("CSSMTP_LOG")
        .env_remove("JOURNAL_STREAM")
        .kill_on_drop(true);
    command
}

/// An unprivileged local user, member (primary group) of the spool's group: what a
/// producer is. Tests about producers run their attacks as such users.
#[derive(Debug, Clone, Copy)]
pub struct Producer {
    pub uid: u32,
    pub gid: u32,
}

/// The spool's group of the tests.
pub const SPOOL_GROUP: &str = "cssmtp-spool";

/// Creates (once, idempotently) the spool group and the producer user `name` in it, and
/// returns it; `None` (with a note) when the tests do not run as root.
pub fn producer(name: &str) -> Option<Producer> {
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if !nix::unistd::geteuid().is_root() {
        eprintln!("note: not root, the producer tests are skipped");
        return None;
    }
    let _serial = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    // Other test processes may create users at the same time: useradd then fails to
    // lock /etc/passwd for a moment, and is tried again (bounded).
    for _ in 0..100 {
        let group = nix::unistd::Group::from_name(SPOOL_GROUP).unwrap();
        let Some(group) = group else {
            let _ = std::process::Command::new("groupadd")
                .args(["-f", "-r", SPOOL_GROUP])
                .status();
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        };
        if let Some(user) = nix::unistd::User::from_name(name).unwrap() {
            assert_eq!(
                user.gid, group.gid,
                "{name} must have {SPOOL_GROUP} as its group"
            );
            return Some(Producer {
                uid: user.uid.as_raw(),
                gid: group.gid.as_raw(),
            });
        }
        let _ = std::process::Command::new("useradd")
            .args([
                "-r",
                "-M",
                "-N",
                "-g",
                SPOOL_GROUP,
                "-s",
                "/usr/sbin/nologin",
                "-d",
                "/nonexistent",
                name,
            ])
            .status();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("cannot create the user {name}");
}

impl Producer {
    /// Runs `script` with `sh -c` as this producer (its own user and the spool's group
    /// only); returns its exit status and what it wrote to standard error.
    pub fn sh(&self, script: &str) -> (bool, String) {
        let out = std::process::Command::new("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .args(["--", "sh", "-c", script])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `cssmtp submit` as this producer; returns the path it printed.
    pub fn submit(&self, config: &Path, job_name: &str, text: &str) -> PathBuf {
        use std::io::Write;
        let mut child = std::process::Command::new("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_cssmtp"))
            .args(["submit", "--job-name", job_name, "-c"])
            .arg(config)
            .env_remove("CSSMTP_LOG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "submit as producer: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(stdout.trim().rsplit_once(" spooled as ").unwrap().1)
    }
}

impl Env {
    /// Makes the scratch installation usable by producers, as an administrator would:
    /// the scratch directory searchable, the configuration readable, the spool created
    /// (by cssmtp's rules) and the writer directory given to the spool's group.
    pub fn open_to_producers(&self, producer: Producer) -> SpoolLayout {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        chmod(self.dir.path(), 0o755);
        chmod(&self.config_path, 0o644);
        // The directories as cssmtp makes them (its modes are kept: chown keeps them).
        let layout = self.layout();
        chmod(layout.incoming.parent().unwrap(), 0o755);
        nix::unistd::chown(
            &layout.incoming,
            None,
            Some(nix::unistd::Gid::from_raw(producer.gid)),
        )
        .unwrap();
        layout
    }
}

/// A daemon running in this runtime.
pub struct Daemon {
    pub socket: PathBuf,
    stop: CancellationToken,
    pub run: JoinHandle<anyhow::Result<RunReport>>,
}

impl Daemon {
    pub async fn start(env: &Env) -> Self {
        let config = env.config();
        let socket = config.control_socket();
        let stop = CancellationToken::new();
        let run = tokio::spawn(app::run(config, RunOptions::daemon(), stop.clone()));
        let daemon = Self { socket, stop, run };
        // Ready once it answers.
        eventually(|| async { control::request(&daemon.socket, "D,LOG").await.is_ok() }).await;
        daemon
    }

    /// One command; panics when the daemon cannot be reached.
    pub async fn cmd(&self, command: &str) -> Reply {
        control::request(&self.socket, command).await.unwrap()
    }

    /// One command that must succeed.
    pub async fn ok(&self, command: &str) -> Reply {
        let reply = self.cmd(command).await;
        assert!(reply.ok, "{command}: {:#?}", reply.lines);
        reply
    }

    pub async fn end(self) -> RunReport {
        self.stop.cancel();
        self.run.await.unwrap().unwrap()
    }
}

/// Waits until `check` holds, stepping the paused clock 100 ms at a time (so that the
/// daemon's own work, timers included, runs in between). Panics after a virtual day.
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..864_000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached within a virtual day");
}

/// A spool file's text: `mails` mails, mail `k` of file `file` to 1 to `most` recipients
/// (every address unique, added to `expected`), subject `"{subject} {file}/{k}"`.
pub fn spool_text(
    file: usize,
    mails: usize,
    most: usize,
    subject: &str,
    expected: &mut std::collections::BTreeSet<String>,
) -> String {
    let mut text = String::from("EHLO zos.example\n");
    for k in 0..mails {
        let rcpts: Vec<String> = (0..=(file + k) % most)
            .map(|i| format!("r{file}-{k}-{i}@example.com"))
            .collect();
        expected.extend(rcpts.iter().cloned());
        let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        text.push_str(&mail(
            "batch@zos.example",
            &refs,
            &format!("Subject: {subject} {file}/{k}\r\n\r\nBody of mail {k} of file {file}.\r\n"),
        ));
    }
    text.push_str("QUIT\n");
    text
}
