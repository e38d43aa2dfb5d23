//! Notifications and error reports about mail that needed TLS travel over TLS, or
//! become dead letters that keep `STARTTLS` (issue 9, point 5).

use super::*;

#[tokio::test]
async fn a_notification_about_a_tls_mail_travels_over_tls() {
    let pki = TestPki::new("cssmtp test CA");
    let tls_sink = sink(SinkOptions {
        tls: Some(pki.server(&["127.0.0.1"])),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(
        &pki,
        &format!(
            "{}Undeliverable\n{{\n  ReturnContent Full\n}}\n",
            target(tls_sink.addr, "")
        ),
    );
    env.submit("TLSRET", &tls_file("reject-x@example.com"));
    let report = env.drain().await;
    assert_eq!(report.stats.rcpts_undeliverable, 1);
    let returned = notifications(&tls_sink);
    assert_eq!(returned.len(), 1, "{:?}", tls_sink.received());
    assert!(
        returned[0].tls,
        "the notification carries the TLS mail's text: over TLS only"
    );
    assert!(returned[0].text().contains("the secret"));
}

#[tokio::test]
async fn a_notification_about_a_tls_mail_is_never_sent_in_clear() {
    let plain = sink(SinkOptions::default()).await;
    let env = Env::new(&target(plain.addr, ""));
    env.submit("NOTLS", &tls_file("x@example.com"));
    let report = env.drain().await;
    assert!(originals(&plain).is_empty(), "never in clear");
    assert!(
        notifications(&plain).is_empty(),
        "its notification (the mail's header) is not sent in clear either"
    );
    assert_eq!(report.stats.rcpts_undeliverable, 1);
    let dead = files(&env.config().dead_letter_directory());
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = std::fs::read_to_string(&dead[0]).unwrap();
    assert!(
        letter.lines().any(|l| l == "STARTTLS"),
        "re-submitting the dead letter requires TLS again: {letter}"
    );
    assert!(letter.contains("Subject: secret"), "{letter}");
}

#[tokio::test]
async fn an_error_report_about_a_tls_spool_file_keeps_tls() {
    let pki = TestPki::new("cssmtp test CA");
    let admin = "MailAdministrator mailops@corp.example\nReportMailFrom cssmtp@corp.example\nReport Admin\n";
    // Over TLS when the target offers it.
    let tls_sink = sink(SinkOptions {
        tls: Some(pki.server(&["127.0.0.1"])),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(&pki, &format!("{}{admin}", target(tls_sink.addr, "")));
    env.submit("TLSREP", &tls_file("reject-x@example.com"));
    env.drain().await;
    let reports: Vec<_> = tls_sink
        .received()
        .into_iter()
        .filter(|m| m.mail_from == "cssmtp@corp.example")
        .collect();
    assert_eq!(reports.len(), 1, "{:?}", tls_sink.received());
    assert!(
        reports[0].tls,
        "the report about a TLS spool file: over TLS"
    );

    // A dead letter that keeps STARTTLS when no target offers it.
    let plain = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}{admin}", target(plain.addr, "")));
    env.submit("TLSREP", &tls_file("x@example.com"));
    env.drain().await;
    assert!(plain.received().is_empty(), "never in clear");
    let dead = files(&env.config().dead_letter_directory());
    let report = dead
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".0R"))
        .expect("the report became a dead letter");
    let letter = std::fs::read_to_string(report).unwrap();
    assert!(letter.lines().any(|l| l == "STARTTLS"), "{letter}");
}

#[tokio::test]
async fn a_notification_about_a_mail_refused_by_a_secure_target_travels_over_tls() {
    let pki = TestPki::new("cssmtp test CA");
    // The plain target takes small mails only: the mail can go only to the Secure one,
    // which refuses it; its (small) notification would fit the plain one.
    let plain = sink(SinkOptions::default()).await;
    let secure = sink(SinkOptions {
        tls: Some(pki.server(&["127.0.0.1"])),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(
        &pki,
        &format!(
            "{}{}",
            target(plain.addr, "  MessageSize 8000"),
            target(secure.addr, "  Secure Yes")
        ),
    );
    let body = "confidential line of text\n".repeat(1000);
    env.submit(
        "SECRET",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["reject-x@example.com"],
                &text_with_ids("secret", &body)
            )
        ),
    );
    let report = env.drain().await;
    assert_eq!(report.stats.rcpts_undeliverable, 1);
    assert!(plain.received().is_empty(), "never in clear");
    let returned = notifications(&secure);
    assert_eq!(returned.len(), 1);
    assert!(returned[0].tls);
}

/// Point 5 through the real binary: the notification about a TLS mail goes over TLS to
/// a target that offers STARTTLS; where no target does, it becomes a dead letter that
/// keeps `STARTTLS`, and nothing goes in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_returns_tls_mail_over_tls_only() {
    let pki = TestPki::new("cssmtp test CA");
    let tls_sink = sink(SinkOptions {
        tls: Some(pki.server(&["127.0.0.1"])),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(
        &pki,
        &format!(
            "{}Undeliverable\n{{\n  ReturnContent Full\n}}\n",
            target(tls_sink.addr, "")
        ),
    );
    env.submit("TLSRET", &tls_file("reject-x@example.com"));
    let run = |env: &Env| {
        crate::support::cssmtp()
            .args(["run", "--drain", "-c"])
            .arg(&env.config_path)
            .output()
    };
    let out = run(&env).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let returned = notifications(&tls_sink);
    assert_eq!(returned.len(), 1, "{:?}", tls_sink.received());
    assert!(returned[0].tls, "the notification went over TLS");
    assert!(returned[0].text().contains("the secret"));

    let plain = sink(SinkOptions::default()).await;
    let env = Env::new(&target(plain.addr, ""));
    env.submit("NOTLS", &tls_file("x@example.com"));
    let out = run(&env).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        plain.received().is_empty(),
        "nothing in clear: {:?}",
        plain.received()
    );
    let dead = files(&env.config().dead_letter_directory());
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = std::fs::read_to_string(&dead[0]).unwrap();
    assert!(letter.lines().any(|l| l == "STARTTLS"), "{letter}");
}
