//! The real binary at its edges: local clients of the metrics endpoint and the control
//! socket cannot stop the daemon (connection caps, time-outs, running out of file
//! descriptors), and configuration files must be files (issue 9, points 8 and 10).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use cssmtp::sink::SinkOptions;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::support::{Env, cssmtp, mail, sink, target, text_with_ids};

/// The bound on every wait for the daemon: generous, so only a hang reaches it.
const BOUND: Duration = Duration::from_secs(60);

/// The daemon `cssmtp run -c <config>`, started through `prlimit` with `nofile`
/// (`soft:hard`) when given, its standard error read line by line.
struct Daemon {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Daemon {
    fn start(config: &Path, nofile: Option<&str>) -> Self {
        let mut command = match nofile {
            Some(limits) => {
                let mut c = tokio::process::Command::new("prlimit");
                c.arg(format!("--nofile={limits}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_cssmtp"));
                c.env_remove("CSSMTP_CONFIG")
                    .env_remove("CSSMTP_LOG")
                    .env_remove("JOURNAL_STREAM")
                    .kill_on_drop(true);
                c
            }
            None => cssmtp(),
        };
        let mut child = command
            .args(["-v", "run", "-c"])
            .arg(config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("daemon: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Waits (bounded) for a log line containing `needle`.
    async fn line(&mut self, needle: &str) -> String {
        tokio::time::timeout(BOUND, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("the daemon ended before logging {needle:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} within {BOUND:?}"))
    }

    fn still_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the daemon exited"
        );
    }

    async fn stop(mut self) {
        self.still_running();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(BOUND, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(0));
    }
}

/// `GET /metrics` once: the body on a 200, `None` when the connection was refused or
/// closed without an answer.
async fn scrape_once(addr: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response
        .starts_with("HTTP/1.1 200")
        .then(|| response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))
        .flatten()
}

/// Scrapes until it works (bounded: the daemon must answer again, not just stay up).
async fn scrape(addr: &str) -> String {
    tokio::time::timeout(BOUND, async {
        loop {
            if let Some(body) = scrape_once(addr).await {
                return body;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the metrics endpoint answers again")
}

/// Opens `n` connections that never send anything; each reports on `closed` when the
/// server closes it.
async fn idle_tcp(addr: &str, n: usize, closed: &mpsc::UnboundedSender<usize>) {
    for i in 0..n {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            // The backlog is full: as good as closed for this client.
            let _ = closed.send(i);
            continue;
        };
        let closed = closed.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            let _ = closed.send(i);
        });
    }
}

async fn count_closed(closed: &mut mpsc::UnboundedReceiver<usize>, at_least: usize) {
    tokio::time::timeout(BOUND, async {
        for _ in 0..at_least {
            closed.recv().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("fewer than {at_least} connections were closed by the daemon"));
}

fn one_mail(subject: &str) -> String {
    format!(
        "HELO h.example\n{}",
        mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids(subject, "b")
        )
    )
}

/// Open files of process `pid`.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_local_clients_neither_block_nor_stop_the_daemon() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}MetricsListen 127.0.0.1:0\n",
        target(sink.addr, "")
    ));
    // A soft limit of 48 open files: the daemon raises it to the hard limit, 256.
    let mut daemon = Daemon::start(&env.config_path, Some("48:256"));
    let limit = daemon.line("CSM1070I").await;
    assert!(limit.contains("Up to 256 open files"), "{limit}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("256")),
        "{limits}"
    );
    let line = daemon.line("CSM1044I").await;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();

    // 100 idle connections: at most 64 are served, the others are closed at once.
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    idle_tcp(&addr, 100, &closed_tx).await;
    count_closed(&mut closed, 100 - cssmtp::metrics::MAX_CONNECTIONS).await;

    // 40 idle clients of the control socket: at most 16 are served, the others are
    // told so and closed at once.
    let socket = env.dir.path().join("run/TESTWTR.sock");
    let (told_tx, mut told) = mpsc::unbounded_channel();
    for _ in 0..40 {
        let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let told_tx = told_tx.clone();
        tokio::spawn(async move {
            let mut reply = String::new();
            let _ = stream.read_to_string(&mut reply).await;
            let _ = told_tx.send(reply);
        });
    }
    tokio::time::timeout(BOUND, async {
        for _ in 0..40 - cssmtp::control::server::MAX_CONNECTIONS {
            let reply = told.recv().await.unwrap();
            assert!(
                reply.contains("CSM5093E Too many control connections"),
                "{reply}"
            );
        }
    })
    .await
    .expect("the control connections beyond the cap are refused at once");

    // Meanwhile mail still goes out.
    env.submit("IDLE", &one_mail("while idle clients wait"));
    tokio::time::timeout(BOUND, sink.wait_for(1)).await.unwrap();
    daemon.still_running();

    // The idle connections time out (HEADER_TIMEOUT), and a scrape is answered again
    // while the clients still hold theirs.
    count_closed(&mut closed, cssmtp::metrics::MAX_CONNECTIONS).await;
    let body = scrape(&addr).await;
    assert!(body.contains("cssmtp_mails_all_sent_total 1"), "{body}");
    // The idle control clients are timed out too (told so), and operator commands
    // work again.
    tokio::time::timeout(BOUND, async {
        for _ in 0..cssmtp::control::server::MAX_CONNECTIONS {
            let reply = told.recv().await.unwrap();
            assert!(
                reply.contains("CSM5091E No request came in time"),
                "{reply}"
            );
        }
    })
    .await
    .expect("idle control clients are timed out");
    let display = tokio::time::timeout(BOUND, async {
        loop {
            let out = cssmtp()
                .args(["modify", "-c"])
                .arg(&env.config_path)
                .arg("D,TAR")
                .output()
                .await
                .unwrap();
            if out.status.success() {
                return String::from_utf8(out.stdout).unwrap();
            }
        }
    })
    .await
    .expect("cssmtp modify is answered again");
    assert!(display.contains(&sink.addr.to_string()), "{display}");
    daemon.still_running();
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_on_accept_pauses_and_recovers() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}MetricsListen 127.0.0.1:0\n",
        target(sink.addr, "")
    ));
    let mut daemon = Daemon::start(&env.config_path, None);
    let line = daemon.line("CSM1044I").await;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    // One mail first, and its spool task finished. Intake stays on: its rescans meet
    // the shortage too, and back off as the listeners do.
    env.submit("BEFORE", &one_mail("before the descriptors run out"));
    tokio::time::timeout(BOUND, sink.wait_for(1)).await.unwrap();
    tokio::time::timeout(BOUND, async {
        while !scrape(&addr).await.contains("cssmtp_spool_files_total 1") {}
    })
    .await
    .unwrap();
    // Leave the running daemon only a few descriptors more than it has open.
    let low = open_files(daemon.pid()) + 6;
    let status = tokio::process::Command::new("prlimit")
        .arg("--pid")
        .arg(daemon.pid().to_string())
        .arg(format!("--nofile={low}:{low}"))
        .status()
        .await
        .unwrap();
    assert!(status.success());

    // Idle clients take the rest: accepting fails with EMFILE, and the endpoint pauses.
    let mut idle = Vec::new();
    for _ in 0..40 {
        if let Ok(stream) = tokio::net::TcpStream::connect(&addr).await {
            idle.push(stream);
        }
    }
    let paused = daemon.line("CSM1071W").await;
    assert!(paused.contains("metrics endpoint"), "{paused}");
    assert!(paused.contains("Too many open files"), "{paused}");
    daemon.still_running();

    // They go away: the endpoint accepts again and answers, and mail still goes out,
    // with the limit still as low.
    drop(idle);
    daemon.line("CSM1072I").await;
    let body = scrape(&addr).await;
    assert!(body.contains("cssmtp_mails_all_sent_total 1"), "{body}");
    env.submit("AFTER", &one_mail("after the descriptors ran out"));
    tokio::time::timeout(BOUND, sink.wait_for(2)).await.unwrap();
    daemon.stop().await;
}

/// `cssmtp check -c <config>` and `cssmtp run --drain -c <config>` both end promptly
/// (a hang reaches the bound) with exit status 78 and `expected` on standard error.
async fn both_refuse(config: &Path, expected: &str) {
    for args in [&["check", "-c"][..], &["run", "--drain", "-c"][..]] {
        let out = tokio::time::timeout(BOUND, cssmtp().args(args).arg(config).output())
            .await
            .unwrap_or_else(|_| panic!("cssmtp {args:?} {} hangs", config.display()))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_file_that_is_not_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("cssmtp.conf");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    both_refuse(
        &fifo,
        &format!(
            "cannot read configuration file {}: it is a FIFO, not a regular file",
            fifo.display()
        ),
    )
    .await;
    both_refuse(
        Path::new("/dev/zero"),
        "cannot read configuration file /dev/zero: it is a character device, not a regular file",
    )
    .await;
    both_refuse(
        dir.path(),
        &format!(
            "cannot read configuration file {}: it is a directory, not a regular file",
            dir.path().display()
        ),
    )
    .await;
    let big = dir.path().join("big.conf");
    let mut text = "TargetServer\n{\n  TargetIp 192.0.2.1\n}\n".to_owned();
    while text.len() < 2 * 1024 * 1024 {
        text.push_str("# a long comment to make the file huge\n");
    }
    std::fs::write(&big, &text).unwrap();
    both_refuse(
        &big,
        &format!(
            "cannot read configuration file {}: it is {} bytes long; at most 1048576 bytes are read",
            big.display(),
            text.len()
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_ca_file_that_is_not_a_file_is_refused_at_its_line() {
    let sink = sink(SinkOptions::default()).await;
    // The Env's configuration has four lines before the body.
    let env = Env::new(&format!("TlsCaFile ca.pem\n{}", target(sink.addr, "")));
    let fifo = env.dir.path().join("ca.pem");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let config = env.config_path.display().to_string();
    both_refuse(
        &env.config_path,
        &format!(
            "{config}:5: error: cannot read TlsCaFile {}: it is a FIFO, not a regular file",
            fifo.display()
        ),
    )
    .await;

    let env = Env::new(&format!("TlsCaFile /dev/zero\n{}", target(sink.addr, "")));
    let config = env.config_path.display().to_string();
    both_refuse(
        &env.config_path,
        &format!(
            "{config}:5: error: cannot read TlsCaFile /dev/zero: it is a character device, not a regular file"
        ),
    )
    .await;

    // Not PEM at all: refused by `check` too, not only when `run` reads it.
    let env = Env::new(&format!("TlsCaFile ca.pem\n{}", target(sink.addr, "")));
    std::fs::write(env.dir.path().join("ca.pem"), "not a certificate\n").unwrap();
    let config = env.config_path.display().to_string();
    both_refuse(
        &env.config_path,
        &format!(
            "{config}:5: error: TlsCaFile {}: it holds no PEM certificate",
            env.dir.path().join("ca.pem").display()
        ),
    )
    .await;

    // An AccountingFile that is a FIFO would block the daemon opening it to append.
    let env = Env::new(&format!("AccountingFile acct\n{}", target(sink.addr, "")));
    let fifo = env.dir.path().join("acct");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let config = env.config_path.display().to_string();
    both_refuse(
        &env.config_path,
        &format!(
            "{config}:5: error: AccountingFile {} is a FIFO; it must be a regular file",
            fifo.display()
        ),
    )
    .await;
    assert!(sink.received().is_empty());
}
