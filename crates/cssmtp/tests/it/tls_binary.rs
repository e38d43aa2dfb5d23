//! The TLS policy of a target (issue 15 point 4) through the real binary: `cssmtp run`
//! forwards to loopback sinks with TLS made at test time (rcgen), and what it counted is
//! read the operator's way: `cssmtp modify … D,TARGETS`, the metrics endpoint and the
//! CONNECT accounting records.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use cssmtp::sink::SinkOptions;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::support::{Env, TestPki, closed_port, cssmtp, mail, sink, target, text_with_ids};

/// `cssmtp run` on an environment, its log collected; stopped by SIGTERM in [`stop`].
pub(crate) struct Running {
    child: tokio::process::Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub(crate) async fn start(env: &Env) -> Self {
        let mut child = cssmtp()
            .arg("run")
            .arg("-c")
            .arg(&env.config_path)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let collected = Arc::clone(&log);
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("CSM1001I")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(());
                }
                collected.lock().unwrap().push(line);
            }
        });
        ready_rx.await.expect("cssmtp run started (CSM1001I)");
        Self { child, log }
    }

    /// `cssmtp modify -c CONF <command>`: its standard output.
    async fn modify(env: &Env, command: &str) -> String {
        let out = cssmtp()
            .args(["modify", "-c"])
            .arg(&env.config_path)
            .arg(command)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGTERM, then the exit; the log.
    pub(crate) async fn stop(mut self) -> Vec<String> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id().unwrap()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = self.child.wait().await.unwrap();
        assert_eq!(status.code(), Some(0));
        self.log.lock().unwrap().clone()
    }
}

/// Scrapes `/metrics`: `name{labels}` → value.
async fn scrape(addr: std::net::SocketAddr) -> BTreeMap<String, f64> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse::<f64>().ok()?))
        })
        .collect()
}

fn accounting(env: &Env) -> Vec<Value> {
    std::fs::read_to_string(env.config().accounting_path())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn one_mail(rcpt: &str) -> String {
    format!(
        "HELO zos.example\n{}",
        mail("batch@zos.example", &[rcpt], &text_with_ids("tls", "b"))
    )
}

/// The lines DISPLAY TARGETS shows for `addr` (from its TARGET SERVER line to the next).
fn target_lines(display: &str, addr: std::net::SocketAddr) -> String {
    let start = format!("TARGET SERVER: {addr} ");
    display
        .split("TARGET SERVER: ")
        .map(|part| format!("TARGET SERVER: {part}"))
        .find(|part| part.starts_with(&start))
        .unwrap_or_else(|| panic!("{addr} not in {display}"))
}

/// DISPLAY TARGETS once `addr` shows the mail sent (polling the real daemon, bounded).
async fn display_when_sent(env: &Env, addr: std::net::SocketAddr) -> String {
    for _ in 0..600 {
        let display = Running::modify(env, "D,TARGETS").await;
        if target_lines(&display, addr).contains("MAIL SENT: 1 ") {
            return display;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{addr} never showed the mail sent");
}

/// Four targets in order: `TlsMinVersion 1.3` with a server of TLS 1.2 only, a pinned
/// fingerprint that does not match, a `TlsMode Required` server that offers no
/// STARTTLS, and a server requiring a client certificate whose certificate (from a CA
/// nobody trusts) is pinned. The mail goes to the last, over TLS with the client
/// certificate; the others never see it, in clear or not, and each refusal is counted
/// for its target in DISPLAY TARGETS and the metrics; the CONNECT record names the
/// protocol and cipher negotiated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_required_tls_and_a_client_certificate_through_the_binary() {
    let pki = TestPki::new("binary tls CA");
    let stranger = TestPki::new("a CA nobody trusts");
    let (pinned_config, pinned_der) = stranger.server_with(&["127.0.0.1"], false, true);
    let strict = sink(SinkOptions {
        tls: Some(pinned_config),
        ..SinkOptions::default()
    })
    .await;
    let (other_config, _) = stranger.server_with(&["127.0.0.1"], false, false);
    let mismatched = sink(SinkOptions {
        tls: Some(other_config),
        ..SinkOptions::default()
    })
    .await;
    let plain = sink(SinkOptions::default()).await;
    let (tls12, _) = pki.server_with(&["127.0.0.1"], true, false);
    let old = sink(SinkOptions {
        tls: Some(tls12),
        ..SinkOptions::default()
    })
    .await;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pinned_der);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let metrics = closed_port();
    let env = Env::with_ca(
        &pki,
        &format!(
            "SMF119 {{ Connect }}\nMetricsListen {metrics}\n{}{}{}{}",
            target(old.addr, "  Secure Yes\n  TlsMinVersion 1.3"),
            target(
                mismatched.addr,
                &format!("  Secure Yes\n  TlsFingerprint sha256:{hex}")
            ),
            target(plain.addr, "  TlsMode Required"),
            target(
                strict.addr,
                &format!(
                    "  Secure Yes\n  TlsFingerprint sha256:{hex}\n  TlsClientCert client.pem\n  TlsClientKey client.key"
                )
            ),
        ),
    );
    // The sink requiring a client certificate trusts `stranger`'s CA.
    let (cert, key) = stranger.server_pem(&["cssmtp.test"]);
    std::fs::write(env.dir.path().join("client.pem"), cert).unwrap();
    let key_path = env.dir.path().join("client.key");
    std::fs::write(&key_path, key).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();

    let daemon = Running::start(&env).await;
    env.submit("TLSBIN", &one_mail("a@example.com"));
    strict.wait_for(1).await;
    assert!(
        strict.received()[0].tls,
        "over TLS, the client certificate accepted"
    );
    assert!(
        mismatched.received().is_empty(),
        "wrong fingerprint refused"
    );
    assert!(
        plain.received().is_empty(),
        "never in clear to a TLS-required target"
    );

    let display = display_when_sent(&env, strict.addr).await;
    for addr in [old.addr, mismatched.addr, plain.addr] {
        let lines = target_lines(&display, addr);
        assert!(
            lines.contains("TLS MODE: REQUIRED   TLS FAIL: 1   WITHOUT TLS: 0"),
            "{lines}"
        );
    }
    assert!(
        target_lines(&display, mismatched.addr).contains("does not match TlsFingerprint"),
        "{display}"
    );
    assert!(
        target_lines(&display, plain.addr).contains("offers no STARTTLS"),
        "{display}"
    );
    let scraped = scrape(metrics).await;
    for addr in [old.addr, mismatched.addr, plain.addr] {
        assert_eq!(
            scraped.get(&format!(
                "cssmtp_target_tls_failures_total{{target=\"{addr}\"}}"
            )),
            Some(&1.0),
            "{scraped:#?}"
        );
    }
    let log = daemon.stop().await;
    assert!(
        log.iter()
            .any(|l| l.contains("CSM3003W") && l.contains(&plain.addr.to_string())),
        "{log:#?}"
    );
    let records = accounting(&env);
    let connect = records
        .iter()
        .find(|r| r["type"] == "connect" && r["tls"] == true)
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(connect["tls_protocol"], "TLSv1_3", "{connect}");
    assert!(
        connect["tls_cipher"]
            .as_str()
            .unwrap()
            .starts_with("TLS13_"),
        "{connect}"
    );
}

/// `TlsMode Opportunistic` with a server offering no STARTTLS: the mail goes in clear
/// and that session is counted (WITHOUT TLS, the metric, a CONNECT record without TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunistic_without_tls_is_counted_through_the_binary() {
    let plain = sink(SinkOptions::default()).await;
    let metrics = closed_port();
    let env = Env::new(&format!(
        "SMF119 {{ Connect }}\nMetricsListen {metrics}\n{}",
        target(plain.addr, "  TlsMode Opportunistic")
    ));
    let daemon = Running::start(&env).await;
    env.submit("OPPBIN", &one_mail("b@example.com"));
    plain.wait_for(1).await;
    assert!(!plain.received()[0].tls);
    let display = display_when_sent(&env, plain.addr).await;
    assert!(
        target_lines(&display, plain.addr)
            .contains("TLS MODE: OPPORTUNISTIC   TLS FAIL: 0   WITHOUT TLS: 1"),
        "{display}"
    );
    let scraped = scrape(metrics).await;
    assert_eq!(
        scraped.get(&format!(
            "cssmtp_target_sessions_without_tls_total{{target=\"{}\"}}",
            plain.addr
        )),
        Some(&1.0),
        "{scraped:#?}"
    );
    let log = daemon.stop().await;
    assert!(log.iter().any(|l| l.contains("CSM3320W")), "{log:#?}");
    let records = accounting(&env);
    let connect = records
        .iter()
        .find(|r| r["type"] == "connect")
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(connect["tls"], false);
    assert!(connect["tls_protocol"].is_null());
}
