//! The TLS policy of a target (TlsMode, TlsMinVersion, TlsFingerprint, a client
//! certificate) against rustls servers made at test time, with what DISPLAY TARGETS,
//! the metrics and the CONNECT accounting records show.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::support::TestPki;

/// A configuration trusting `pki`'s CA, with accounting of connections and metrics.
fn env_with(pki: &TestPki, body: &str) -> (Env, std::net::SocketAddr) {
    let metrics_addr = closed_port();
    let env = Env::with_ca(
        pki,
        &format!("MaxConnections 1\nSMF119 {{ Connect }}\nMetricsListen {metrics_addr}\n{body}"),
    );
    (env, metrics_addr)
}

async fn daemon_with(pki: &TestPki, body: &str) -> (Env, Daemon, std::net::SocketAddr) {
    let (env, metrics_addr) = env_with(pki, body);
    let daemon = Daemon::start(&env).await;
    (env, daemon, metrics_addr)
}

fn target_answer(reply: &cssmtp::control::Reply, addr: std::net::SocketAddr) -> Value {
    reply.data["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["address"] == addr.to_string())
        .unwrap()
        .clone()
}

/// TlsMode Opportunistic: STARTTLS where offered (the protocol and cipher in the
/// CONNECT record); a server offering none gets the mail in clear, and that session is
/// counted (DISPLAY TARGETS, metrics).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn opportunistic_tls_is_used_when_offered_and_counted_when_not() {
    let pki = TestPki::new("tls policy CA");
    let (config, _) = pki.server_with(&["127.0.0.1"], false, false);
    let with_tls = sink(SinkOptions {
        tls: Some(config),
        ..SinkOptions::default()
    })
    .await;
    let without = sink(SinkOptions::default()).await;
    // Over TLS where offered.
    let (env, daemon, _) =
        daemon_with(&pki, &target(with_tls.addr, "  TlsMode Opportunistic")).await;
    env.submit("OPP", &one_mail(&["a@example.com"]));
    with_tls.wait_for(1).await;
    settled(&daemon, &env).await;
    let reply = daemon.ok("DISPLAY,TARGETS").await;
    let tls = target_answer(&reply, with_tls.addr);
    assert!(tls["tls_not_used"].is_null(), "{tls}");
    assert_eq!(tls["opportunistic"], true);
    daemon.end().await;
    let records = accounting(&env);
    let connects: Vec<&Value> = records.iter().filter(|r| r["type"] == "connect").collect();
    assert_eq!(connects.len(), 1, "{records:#?}");
    assert_eq!(connects[0]["tls"], true);
    assert_eq!(connects[0]["tls_protocol"], "TLSv1_3", "{}", connects[0]);
    assert!(
        connects[0]["tls_cipher"]
            .as_str()
            .unwrap()
            .starts_with("TLS13_"),
        "{}",
        connects[0]
    );
    // In clear where not, counted.
    let (env, daemon, metrics_addr) =
        daemon_with(&pki, &target(without.addr, "  TlsMode Opportunistic")).await;
    env.submit("OPP", &one_mail(&["b@example.com"]));
    without.wait_for(1).await;
    settled(&daemon, &env).await;
    assert!(with_tls.received().iter().all(|m| m.tls));
    assert!(without.received().iter().all(|m| !m.tls));
    let reply = daemon.ok("DISPLAY,TARGETS").await;
    let plain = target_answer(&reply, without.addr);
    assert_eq!(plain["tls_not_used"], 1, "{:#?}", reply.lines);
    assert!(
        reply
            .lines
            .iter()
            .any(|l| l.contains("TLS MODE: OPPORTUNISTIC   TLS FAIL: 0   WITHOUT TLS: 1")),
        "{:#?}",
        reply.lines
    );
    let metrics = scrape(metrics_addr).await;
    assert_eq!(
        metrics[&format!(
            "cssmtp_target_sessions_without_tls_total{{target=\"{}\"}}",
            without.addr
        )],
        1.0,
        "{metrics:#?}"
    );
    daemon.end().await;
    let records = accounting(&env);
    let connect = records.iter().find(|r| r["type"] == "connect").unwrap();
    assert_eq!(connect["tls"], false);
    assert!(connect["tls_protocol"].is_null());
}

/// TlsMinVersion 1.3 refuses a server that speaks only TLS 1.2: a TLS failure counted
/// for that target, and the mail goes to the other one. TlsFingerprint trusts a server
/// whose certificate no trusted CA signed, and refuses one whose fingerprint differs.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn minimum_version_and_pinning_are_enforced_and_counted() {
    let pki = TestPki::new("tls policy CA");
    let stranger = TestPki::new("a CA nobody trusts");
    let (tls12, _) = pki.server_with(&["127.0.0.1"], true, false);
    let old = sink(SinkOptions {
        tls: Some(tls12),
        ..SinkOptions::default()
    })
    .await;
    let (pinned_config, pinned_der) = stranger.server_with(&["127.0.0.1"], false, false);
    let pinned = sink(SinkOptions {
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
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pinned_der);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let (env, daemon, _) = daemon_with(
        &pki,
        &format!(
            "{}{}{}",
            target(old.addr, "  Secure Yes\n  TlsMinVersion 1.3"),
            target(
                mismatched.addr,
                &format!("  Secure Yes\n  TlsFingerprint sha256:{hex}")
            ),
            target(
                pinned.addr,
                &format!("  Secure Yes\n  TlsFingerprint sha256:{hex}")
            ),
        ),
    )
    .await;
    env.submit("PIN", &one_mail(&["a@example.com"]));
    pinned.wait_for(1).await;
    settled(&daemon, &env).await;
    assert!(old.received().is_empty(), "TLS 1.2 server refused");
    assert!(
        mismatched.received().is_empty(),
        "wrong fingerprint refused"
    );
    assert!(pinned.received()[0].tls);
    let reply = daemon.ok("DISPLAY,TARGETS").await;
    for addr in [old.addr, mismatched.addr] {
        let t = target_answer(&reply, addr);
        assert_eq!(t["tls_failures"], 1, "{:#?}", reply.lines);
    }
    assert!(
        target_answer(&reply, old.addr)["last_failure"]
            .as_str()
            .unwrap()
            .contains("TLS failed"),
        "{:#?}",
        reply.lines
    );
    assert!(
        target_answer(&reply, mismatched.addr)["last_failure"]
            .as_str()
            .unwrap()
            .contains("does not match TlsFingerprint"),
        "{:#?}",
        reply.lines
    );
    daemon.end().await;
}

/// A client certificate (TlsClientCert, TlsClientKey) is presented to a server that
/// requires one.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_client_certificate_is_accepted_by_a_server_that_requires_one() {
    let pki = TestPki::new("tls policy CA");
    let (config, _) = pki.server_with(&["127.0.0.1"], false, true);
    let strict = sink(SinkOptions {
        tls: Some(config),
        ..SinkOptions::default()
    })
    .await;
    let (env, _) = env_with(
        &pki,
        &target(
            strict.addr,
            "  Secure Yes\n  TlsClientCert client.pem\n  TlsClientKey client.key",
        ),
    );
    let (cert, key) = pki.server_pem(&["cssmtp.test"]);
    std::fs::write(env.dir.path().join("client.pem"), cert).unwrap();
    let key_path = env.dir.path().join("client.key");
    std::fs::write(&key_path, key).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = Daemon::start(&env).await;
    env.submit("CLIENT", &one_mail(&["a@example.com"]));
    strict.wait_for(1).await;
    assert!(strict.received()[0].tls);
    daemon.end().await;
}
