//! Returns keep the mail's protection and never cost the only copy: notifications and
//! error reports about mail that needed TLS travel over TLS or become dead letters that
//! keep `STARTTLS`; a dead letter, an extended-retry copy or a report that cannot be
//! written keeps the spool file (issue 9, points 4 and 5).

use std::path::{Path, PathBuf};

use cssmtp::sink::SinkOptions;

use crate::support::{Env, TestPki, mail, notifications, originals, sink, target, text_with_ids};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
    });
    found.sort();
    found
}

/// A batch-SMTP file that asks for TLS, with one mail to `rcpt`.
fn tls_file(rcpt: &str) -> String {
    format!(
        "EHLO h.example\nSTARTTLS\n{}",
        mail("a@h.example", &[rcpt], &text_with_ids("secret", "the secret"))
    )
}

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
    assert!(reports[0].tls, "the report about a TLS spool file: over TLS");

    // A dead letter that keeps STARTTLS when no target offers it.
    let plain = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}{admin}", target(plain.addr, "")));
    env.submit("TLSREP", &tls_file("x@example.com"));
    env.drain().await;
    assert!(plain.received().is_empty(), "{:?}", plain.received());
    let dead = files(&env.config().dead_letter_directory());
    let report = dead
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".0R"))
        .expect("the report became a dead letter");
    let letter = std::fs::read_to_string(report).unwrap();
    assert!(letter.lines().any(|l| l == "STARTTLS"), "{letter}");
}
