//! DISPLAY TARGETS, IPLIST, CONFIG and SPOOLSTATUS against what happened; the metrics
//! endpoint against DISPLAY TARGETS.

use super::*;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn display_targets_iplist_config_and_spool_match_what_happened() {
    let sink = sink(SinkOptions::default()).await;
    let down = closed_port();
    let env = Env::new(&format!(
        "{}{}SMF119\n{{\n  Config\n  Connect\n  Mail\n  Spool\n  Stats\n}}\nStatsInterval 1\n",
        target(sink.addr, ""),
        target(down, "")
    ));
    let daemon = Daemon::start(&env).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "only the daemon's user (and root) may connect"
    );
    env.submit("ONE", &one_mail(&["a@example.com", "b@example.com"]));
    env.submit("TWO", &one_mail(&["c@example.com"]));
    env.submit("THREE", &one_mail(&["reject-d@example.com"]));
    sink.wait_for(3).await;
    settled(&daemon, &env).await;

    let reply = daemon.ok("DISPLAY,TARGETS").await;
    let global = &reply.data["global"];
    assert_eq!(global["mail_sent"], 2, "{:#?}", reply.lines);
    assert_eq!(global["undeliver"], 1);
    assert_eq!(global["current_retry"], 0);
    assert_eq!(global["rcpts_delivered"], 3);
    let targets = reply.data["targets"].as_array().unwrap();
    let up = targets
        .iter()
        .find(|t| t["address"] == sink.addr.to_string())
        .unwrap();
    assert_eq!(up["state"], "ready");
    assert_eq!(up["protocol"], "esmtp");
    // Three mails and one notification (to batch@zos.example); all accepted but
    // THREE, whose only recipient was refused.
    assert_eq!(up["mail_attempts"], 4, "{:#?}", reply.lines);
    assert_eq!(up["mail_sent"], 3);
    // The down target, when it was tried, failed to connect.
    let dead = targets
        .iter()
        .find(|t| t["address"] == down.to_string())
        .unwrap();
    assert_eq!(dead["mail_sent"], 0);
    assert!(reply.lines[0].starts_with("CSM5001I DISPLAY TARGETS"));
    assert!(
        reply.lines.iter().any(|l| l.contains("MAIL SENT: 2")),
        "{:#?}",
        reply.lines
    );

    let only = daemon.ok(&format!("D,TAR,ADDR={}", sink.addr.ip())).await;
    assert_eq!(
        only.data["targets"].as_array().unwrap().len(),
        2,
        "same IP, two ports"
    );
    assert!(!daemon.cmd("D,TAR,ADDR=192.0.2.99").await.ok);

    let ip = daemon.ok("D,IP").await;
    assert_eq!(ip.data["targets"].as_array().unwrap().len(), 2);
    assert!(
        ip.lines[1].contains(&sink.addr.to_string()),
        "{:#?}",
        ip.lines
    );

    let config = daemon.ok("Display,CONFig").await;
    let statements: Vec<String> =
        serde_json::from_value(config.data["statements"].clone()).unwrap();
    assert!(statements.contains(&"ExtWrtName TESTWTR".to_string()));
    assert!(statements.contains(&"SMF119 { Config Connect Mail Spool Stats }".to_string()));

    // Accounting: a spool record per file, a mail record per mail, with their counts.
    let records = accounting(&env);
    let kinds = |t: &str| records.iter().filter(|r| r["type"] == t).count();
    assert_eq!(kinds("spool"), 3, "{records:#?}");
    assert_eq!(kinds("mail"), 3);
    assert!(kinds("config") >= 1);
    let one = records
        .iter()
        .find(|r| r["type"] == "mail" && r["job_name"] == "ONE")
        .unwrap();
    assert_eq!(one["delivered"], 2);
    assert_eq!(one["undeliverable"], 0);
    let three = records
        .iter()
        .find(|r| r["type"] == "spool" && r["job_name"] == "THREE")
        .unwrap();
    assert_eq!(three["rcpts_undeliverable"], 1);
    assert_eq!(three["disposition"], "deleted");
    // A virtual minute later, a STATS record with the counters.
    tokio::time::sleep(Duration::from_secs(61)).await;
    daemon.end().await;
    let records = accounting(&env);
    let stats = records.iter().find(|r| r["type"] == "stats").unwrap();
    assert_eq!(stats["subtype"], 52);
    assert_eq!(stats["counters"]["mails_all_sent"], 2, "{stats:#?}");
    assert_eq!(stats["counters"]["rcpts_delivered"], 3);
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "connect" && r["target"] == sink.addr.to_string()),
        "a connect record when the session ends"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_metrics_endpoint_matches_display_targets() {
    let sink = sink(SinkOptions::default()).await;
    let metrics_addr = closed_port();
    let env = Env::new(&format!(
        "{}MetricsListen {metrics_addr}\n",
        target(sink.addr, "")
    ));
    let daemon = Daemon::start(&env).await;
    env.submit("M1", &one_mail(&["a@example.com", "b@example.com"]));
    env.submit("M2", &one_mail(&["c@example.com"]));
    sink.wait_for(2).await;
    settled(&daemon, &env).await;
    let metrics = scrape(metrics_addr).await;
    let t = sink.addr.to_string();
    assert_eq!(metrics["cssmtp_mails_all_sent_total"], 2.0, "{metrics:#?}");
    assert_eq!(
        metrics["cssmtp_recipients_total{outcome=\"delivered\"}"],
        3.0
    );
    assert_eq!(
        metrics[&format!("cssmtp_target_mails_sent_total{{target=\"{t}\"}}")],
        2.0
    );
    assert_eq!(metrics[&format!("cssmtp_target_up{{target=\"{t}\"}}")], 1.0);
    assert_eq!(metrics["cssmtp_spool_tasks"], 0.0);
    assert_eq!(metrics["cssmtp_suspended"], 0.0);
    let display = daemon.ok("D,TAR").await;
    assert_eq!(
        display.data["targets"][0]["mail_sent"].as_f64().unwrap(),
        metrics[&format!("cssmtp_target_mails_sent_total{{target=\"{t}\"}}")]
    );
    assert!(
        metrics.keys().all(|k| !k.contains("example.com")),
        "never a recipient in a label"
    );
    daemon.ok("SUSPEND").await;
    assert_eq!(scrape(metrics_addr).await["cssmtp_suspended"], 1.0);
    // Anything but /metrics and the status page is a 404.
    let mut stream = tokio::net::TcpStream::connect(metrics_addr).await.unwrap();
    stream
        .write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    daemon.end().await;
}

/// Issue 10 (points 1 and 6): a server closing with 421 at MAIL FROM. DISPLAY TARGETS
/// keeps its words and the stage, not "closed by the server at RCPT TO".
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn display_targets_keeps_a_421_and_its_stage() {
    let sink = sink(SinkOptions {
        max_mails_per_session: Some(0),
        close_at_limit: true,
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&format!(
        "RetryLimit\n{{\n  Count 0\n  Interval 1\n}}\n{}",
        target(sink.addr, "")
    ));
    let daemon = Daemon::start(&env).await;
    env.submit("CLOSING", &one_mail(&["a@example.com"]));
    settled(&daemon, &env).await;
    let reply = daemon.ok("DISPLAY,TARGETS").await;
    let targets = reply.data["targets"].as_array().unwrap();
    let up = targets
        .iter()
        .find(|t| t["address"] == sink.addr.to_string())
        .unwrap();
    let last = up["last_reply"].as_str().unwrap_or_default();
    assert!(
        last.contains("421 4.7.0 Too many messages in this session, closing")
            && last.contains("(at MAIL FROM)"),
        "{:#?}",
        reply.lines
    );
    assert!(
        reply
            .lines
            .iter()
            .any(|l| l.contains("LAST REPLY: 421 4.7.0") && l.contains("at MAIL FROM")),
        "{:#?}",
        reply.lines
    );
    daemon.end().await;
}

/// Issue 10 point 2: a limit met is learned and shown. A server taking 10 mails per
/// session and 5 recipients per transaction, nothing configured: DISPLAY TARGETS shows
/// the learned limits, and later sessions keep within them (the server refuses only
/// while they are being learned).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn display_targets_shows_learned_limits() {
    let sink = sink(SinkOptions {
        max_mails_per_session: Some(10),
        max_rcpts: Some(5),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&format!(
        "MaxConnections 1\n{}",
        target(sink.addr, "  MaxConnections 3")
    ));
    let daemon = Daemon::start(&env).await;
    let rcpts: Vec<String> = (0..7).map(|i| format!("r{i}@example.com")).collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let mut file = String::from("HELO zos.example\n");
    for i in 0..40 {
        file.push_str(&mail(
            "batch@zos.example",
            if i == 0 { &refs } else { &refs[..1] },
            &text_with_ids(&format!("m{i}"), "b"),
        ));
    }
    env.submit("LEARN", &file);
    settled(&daemon, &env).await;
    let reply = daemon.ok("DISPLAY,TARGETS").await;
    let targets = reply.data["targets"].as_array().unwrap();
    let t = targets
        .iter()
        .find(|t| t["address"] == sink.addr.to_string())
        .unwrap();
    assert_eq!(t["max_mails_per_session"]["value"], 10, "{t:#}");
    assert_eq!(t["max_mails_per_session"]["source"], "learned");
    assert_eq!(t["max_rcpts_per_mail"]["value"], 5, "{t:#}");
    assert_eq!(t["max_rcpts_per_mail"]["source"], "learned");
    assert_eq!(t["max_connections"]["value"], 3, "{t:#}");
    assert_eq!(t["max_connections"]["source"], "configured");
    assert!(
        reply.lines.iter().any(|l| l.contains(
            "MAILS PER SESSION: 10 (learned)   RCPTS PER MAIL: 5 (learned)   MAX CONNECTIONS: 3 (configured)"
        )),
        "{:#?}",
        reply.lines
    );
    // While learning: 452 to the 6th and 7th RCPT of the first mail (pipelined) and to
    // the 11th MAIL FROM of the first session; none after.
    assert_eq!(sink.limit_refusals(), 3, "limits kept once learned");
    let config = daemon.ok("D,CONFIG").await;
    assert!(
        config.lines.iter().any(|l| l.contains(" MaxConnections 3")),
        "{:#?}",
        config.lines
    );
    daemon.end().await;
}
