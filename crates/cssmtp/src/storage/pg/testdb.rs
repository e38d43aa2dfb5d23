//! A throwaway PostgreSQL server on loopback, for tests (the library's and the
//! integration tests'): `initdb -A trust` into a fresh temporary directory, then
//! `pg_ctl -w start` on a free port of 127.0.0.1 (no Unix socket outside that
//! directory), run as the `postgres` system user when the tests run as root. The
//! programs come from `.ci/install-postgres` (which installs Debian's package when
//! missing and prints their directory).
//!
//! One server per test process ([`shared`]), a database per test
//! ([`TestServer::database`]). It is always stopped: by [`Drop`] for a
//! [`TestServer::start`]ed one, and for the shared one by a watchdog process started
//! with it, which waits for the test process to end (however it ends: the pipe it
//! reads from closes) and then runs `pg_ctl stop -m immediate` and removes the data
//! directory.

#![allow(
    clippy::expect_used,
    reason = "test support: a server that cannot start fails the test, with why"
)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A PostgreSQL server started for tests.
pub struct TestServer {
    bindir: PathBuf,
    data: PathBuf,
    port: u16,
    /// Run as this user (root runs the server as `postgres`).
    user: Option<String>,
    /// How long the start took.
    pub started_in: Duration,
    /// The shared server's watchdog (its stdin: closed when this process ends).
    watchdog: Option<Child>,
    dir: Option<tempfile::TempDir>,
}

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The directory of `initdb` and `pg_ctl`: `CSSMTP_PG_BINDIR`, else what
/// `.ci/install-postgres` prints (it installs the package when missing).
fn bindir() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CSSMTP_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/install-postgres");
    let out = Command::new(&script).stderr(Stdio::inherit()).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().last() {
        Some(dir) if out.status.success() && !dir.is_empty() => Ok(PathBuf::from(dir.trim())),
        _ => Err(io::Error::other(format!(
            "{} failed ({}): {text}",
            script.display(),
            out.status
        ))),
    }
}

fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl TestServer {
    /// Starts a server (stopped when dropped).
    ///
    /// # Errors
    /// The programs are missing or the server does not start.
    pub fn start() -> io::Result<Self> {
        Self::start_with(None)
    }

    /// Starts a server with `ssl = on`, the certificate and key given (PEM), reached
    /// over TCP only with TLS (`hostssl` lines only in `pg_hba.conf`).
    ///
    /// # Errors
    /// The programs are missing or the server does not start.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> io::Result<Self> {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> io::Result<Self> {
        let began = Instant::now();
        let bindir = bindir()?;
        let root = nix::unistd::geteuid().is_root();
        let dir = tempfile::Builder::new().prefix("cssmtp-pg-").tempdir()?;
        let user = root.then(|| "postgres".to_owned());
        if root {
            let pg = nix::unistd::User::from_name("postgres")
                .map_err(io::Error::from)?
                .ok_or_else(|| io::Error::other("no postgres user (run .ci/install-postgres)"))?;
            nix::unistd::chown(dir.path(), Some(pg.uid), Some(pg.gid)).map_err(io::Error::from)?;
        }
        let data = dir.path().join("data");
        let mut server = Self {
            bindir,
            data,
            port: 0,
            user,
            started_in: Duration::ZERO,
            watchdog: None,
            dir: Some(dir),
        };
        let initdb = server.bindir.join("initdb");
        let data = server.data.display().to_string();
        server.run(
            &initdb.display().to_string(),
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        if let Some((cert, key)) = tls {
            server.write_tls(cert, key)?;
        }
        // A port found free may be taken before the server binds it: a few tries.
        let mut last = None;
        for _ in 0..3 {
            server.port = free_port()?;
            match server.pg_ctl_start() {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
        server.started_in = began.elapsed();
        Ok(server)
    }

    /// The certificate, key, `ssl = on` and a `pg_hba.conf` of `hostssl` lines only.
    fn write_tls(&self, cert: &str, key: &str) -> io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::PermissionsExt as _;
        let owner = match &self.user {
            Some(u) => nix::unistd::User::from_name(u)
                .map_err(io::Error::from)?
                .map(|u| (u.uid, u.gid)),
            None => None,
        };
        let write = |name: &str, text: &str, mode: u32| -> io::Result<()> {
            let path = self.data.join(name);
            std::fs::write(&path, text)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            if let Some((uid, gid)) = owner {
                nix::unistd::chown(&path, Some(uid), Some(gid)).map_err(io::Error::from)?;
            }
            Ok(())
        };
        write("server.crt", cert, 0o644)?;
        write("server.key", key, 0o600)?;
        write(
            "pg_hba.conf",
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
            0o600,
        )?;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))?;
        conf.write_all(b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    }

    fn pg_ctl_start(&self) -> io::Result<()> {
        let pg_ctl = self.bindir.join("pg_ctl").display().to_string();
        let dir = self.dir_path().display().to_string();
        let data = self.data.display().to_string();
        let log = format!("{dir}/log");
        let options = format!(
            "-k {dir} -p {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port
        );
        self.run(
            &pg_ctl,
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        )
    }

    fn dir_path(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// Runs one of the server's programs as the server's user.
    fn run(&self, program: &str, args: &[&str]) -> io::Result<()> {
        let mut cmd = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", program]);
                c
            }
            None => Command::new(program),
        };
        let out = cmd.args(args).stdin(Stdio::null()).output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{program} {args:?}: {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// The command that stops this server, for people and the watchdog.
    pub fn stop_command(&self) -> String {
        let prefix = self
            .user
            .as_ref()
            .map(|u| format!("runuser -u {u} -- "))
            .unwrap_or_default();
        format!(
            "{prefix}{} -D {} stop -m immediate",
            self.bindir.join("pg_ctl").display(),
            self.data.display()
        )
    }

    /// Stops the server now (`pg_ctl stop -m immediate`).
    pub fn stop(&self) {
        let pg_ctl = self.bindir.join("pg_ctl").display().to_string();
        let data = self.data.display().to_string();
        let _ = self.run(&pg_ctl, &["-D", &data, "stop", "-m", "immediate"]);
    }

    /// Starts it again after [`TestServer::stop`], on the same port.
    ///
    /// # Errors
    /// It does not start.
    pub fn restart(&self) -> io::Result<()> {
        self.pg_ctl_start()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` (user `postgres`, no password: `-A trust`).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new, empty database; returns its URL.
    ///
    /// # Errors
    /// It cannot be created.
    pub async fn database(&self) -> io::Result<String> {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .map_err(io::Error::other)?;
        let conn = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(io::Error::other)?;
        drop(client);
        let _ = conn.await;
        Ok(self.url(&name))
    }

    /// Keeps a watchdog that stops the server when this process ends, however.
    fn watch(&mut self) -> io::Result<()> {
        let script = format!(
            "read _ignored; {} >/dev/null 2>&1; rm -rf {}",
            self.stop_command(),
            self.dir_path().display()
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.watchdog = Some(cmd.spawn()?);
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.watchdog.is_none() {
            self.stop();
        }
    }
}

/// This test process's server, started at the first call and stopped when the process
/// ends (by its watchdog). Prints how long the start took.
///
/// # Panics
/// When it cannot start (the tests need it).
pub fn shared() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut server = TestServer::start().expect("a PostgreSQL server for the tests starts");
        if let Err(e) = server.watch() {
            server.stop();
            panic!("cannot start the PostgreSQL watchdog: {e}");
        }
        eprintln!(
            "PostgreSQL for the tests: 127.0.0.1:{}, started in {} ms; stopped at exit by: {}",
            server.port,
            server.started_in.as_millis(),
            server.stop_command()
        );
        server
    })
}
