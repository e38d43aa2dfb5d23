//! SMTP AUTH failures in DISPLAY TARGETS and the metrics: a target with `AuthUser` whose
//! server offers no AUTH is counted (AUTH FAIL), out of service, and its mail goes to the
//! other target.

use super::*;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn auth_failures_are_counted_in_display_targets_and_metrics() {
    // `cssmtp sink` offers no AUTH.
    let no_auth = sink(SinkOptions::default()).await;
    let good = sink(SinkOptions::default()).await;
    let metrics_addr = closed_port();
    let env = Env::new(&format!(
        "MaxConnections 1\nMetricsListen {metrics_addr}\n{}{}",
        target(
            no_auth.addr,
            "  AuthUser relay\n  AuthSecretFile relay.secret\n  InsecureAuth Yes"
        ),
        target(good.addr, "")
    ));
    let secret = env.dir.path().join("relay.secret");
    std::fs::write(&secret, "pw\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let daemon = Daemon::start(&env).await;
    env.submit("ONE", &one_mail(&["a@example.com"]));
    good.wait_for(1).await;
    settled(&daemon, &env).await;
    assert!(no_auth.received().is_empty(), "never sent unauthenticated");

    let reply = daemon.ok("DISPLAY,TARGETS").await;
    let targets = reply.data["targets"].as_array().unwrap();
    let failed = targets
        .iter()
        .find(|t| t["address"] == no_auth.addr.to_string())
        .unwrap();
    assert_eq!(failed["auth_failures"], 1, "{:#?}", reply.lines);
    assert_eq!(failed["auth"], "relay (Auto, InsecureAuth)");
    assert_eq!(failed["state"], "not_ready");
    assert!(
        failed["last_failure"]
            .as_str()
            .unwrap()
            .contains("the server does not offer AUTH (at AUTH with"),
        "{failed}"
    );
    assert!(
        reply
            .lines
            .iter()
            .any(|l| l.contains("AUTH: relay (Auto, InsecureAuth)   AUTH FAIL: 1")),
        "{:#?}",
        reply.lines
    );
    let other = targets
        .iter()
        .find(|t| t["address"] == good.addr.to_string())
        .unwrap();
    assert!(other["auth"].is_null());
    assert_eq!(other["mail_sent"], 1);

    let metrics = scrape(metrics_addr).await;
    let key = |addr: std::net::SocketAddr| {
        format!("cssmtp_target_auth_failures_total{{target=\"{addr}\"}}")
    };
    assert_eq!(metrics[&key(no_auth.addr)], 1.0, "{metrics:#?}");
    assert_eq!(metrics[&key(good.addr)], 0.0);
    daemon.end().await;
}
