//! STARTTLS: verified TLS with a CA made at test time; bad certificates refused; mail
//! that requires TLS never sent in clear.

use cssmtp::sink::SinkOptions;

use crate::support::{Env, TestPki, mail, notifications, originals, sink, target, text_with_ids};

#[tokio::test]
async fn starttls_with_a_private_ca() {
    let pki = TestPki::new("cssmtp test CA");
    let tls_sink = sink(SinkOptions {
        tls: Some(pki.server(&["127.0.0.1", "localhost"])),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(&pki, &target(tls_sink.addr, ""));
    let file = format!(
        "EHLO h.example\nSTARTTLS\n{}EHLO h.example\n{}",
        mail(
            "a@h.example",
            &["secret@example.com"],
            &text_with_ids("over tls", "b")
        ),
        mail(
            "a@h.example",
            &["plain@example.com"],
            &text_with_ids("in clear", "b")
        )
    );
    env.submit("TLS", &file);
    let report = env.drain().await;
    assert!(report.all_delivered(), "{:?}", report.files);
    let received = tls_sink.received();
    let tls_mail = received
        .iter()
        .find(|m| m.header("Subject").unwrap() == "over tls")
        .unwrap();
    assert!(tls_mail.tls, "the STARTTLS mail travelled over TLS");
    assert_eq!(received.len(), 2);
}

#[tokio::test]
async fn secure_targets_get_every_mail_over_tls_and_tls_mail_avoids_plain_targets() {
    let pki = TestPki::new("cssmtp test CA");
    let plain = sink(SinkOptions::default()).await;
    let secure = sink(SinkOptions {
        tls: Some(pki.server(&["127.0.0.1"])),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(
        &pki,
        &format!(
            "MaxConnections 4\nSpoolTasks 4\n{}{}",
            target(plain.addr, ""),
            target(secure.addr, "  Secure Yes")
        ),
    );
    for i in 0..6 {
        let tls = if i % 2 == 0 { "STARTTLS\n" } else { "" };
        env.submit(
            "SEC",
            &format!(
                "EHLO h.example\n{tls}{}",
                mail(
                    "a@h.example",
                    &["x@example.com"],
                    &text_with_ids(&format!("{tls}m{i}"), "b")
                )
            ),
        );
    }
    let report = env.drain().await;
    assert!(report.all_delivered());
    assert!(
        secure.received().iter().all(|m| m.tls),
        "Secure Yes: every mail over TLS"
    );
    assert!(
        plain
            .received()
            .iter()
            .all(|m| !m.header("Subject").unwrap().starts_with("STARTTLS")),
        "mail that requires TLS never reached the plain target"
    );
    assert_eq!(plain.received().len() + secure.received().len(), 6);
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let trusted = TestPki::new("trusted CA");
    let other = TestPki::new("someone else's CA");
    let tls_sink = sink(SinkOptions {
        tls: Some(other.server(&["127.0.0.1"])),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(
        &trusted,
        &format!(
            "RetryLimit\n{{\n  Count 0\n}}\n{}",
            target(tls_sink.addr, "")
        ),
    );
    env.submit(
        "BADCERT",
        &format!(
            "EHLO h.example\nSTARTTLS\n{}",
            mail("a@h.example", &["x@example.com"], "Subject: s\n\nb")
        ),
    );
    let report = env.drain().await;
    assert!(originals(&tls_sink).is_empty(), "the mail was not sent");
    // Its notification needs TLS too: never in clear, so a dead letter that keeps
    // STARTTLS.
    assert!(notifications(&tls_sink).is_empty());
    let dead = std::fs::read_dir(env.config().dead_letter_directory())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].lines().any(|l| l == "STARTTLS"), "{}", dead[0]);
    let undeliverable = &report.files[0].undeliverable;
    assert_eq!(undeliverable.len(), 1);
    assert!(
        undeliverable[0].reason.contains("TLS failed")
            && undeliverable[0].reason.contains("certificate"),
        "{}",
        undeliverable[0].reason
    );
    assert!(
        undeliverable[0].reason.contains("no retry"),
        "{}",
        undeliverable[0].reason
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let pki = TestPki::new("cssmtp test CA");
    let tls_sink = sink(SinkOptions {
        tls: Some(pki.server(&["other.example"])),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(
        &pki,
        &format!(
            "RetryLimit\n{{\n  Count 0\n}}\n{}",
            target(tls_sink.addr, "  Secure Yes")
        ),
    );
    env.submit(
        "WRONGNAME",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["x@example.com"], "Subject: s\n\nb")
        ),
    );
    let report = env.drain().await;
    assert!(tls_sink.received().is_empty());
    assert_eq!(report.stats.rcpts_undeliverable, 1);
}

#[tokio::test]
async fn mail_requiring_tls_is_never_sent_in_clear() {
    let plain = sink(SinkOptions::default()).await;
    let env = Env::new(&target(plain.addr, ""));
    env.submit(
        "NOTLS",
        &format!(
            "EHLO h.example\nSTARTTLS\n{}",
            mail("a@h.example", &["x@example.com"], "Subject: s\n\nb")
        ),
    );
    let report = env.drain().await;
    assert!(originals(&plain).is_empty(), "never in clear");
    assert!(
        notifications(&plain).is_empty(),
        "nor its notification: it becomes a dead letter (returns::a_notification_about_a_tls_mail_is_never_sent_in_clear)"
    );
    let reason = &report.files[0].undeliverable[0].reason;
    assert!(
        reason.contains("requires TLS and no target server offers STARTTLS"),
        "{reason}"
    );
}
