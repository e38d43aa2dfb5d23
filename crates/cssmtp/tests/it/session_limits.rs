//! Session limits of real servers (issue 10, point 1): a reply about the session, not the
//! mail (421 at any stage, 452 "too many messages" at MAIL FROM, 452 "too many
//! recipients" at RCPT TO) sends the untouched mails and recipients again at once, on a
//! fresh session or in a following transaction: no attempt charged, nothing returned.

use std::path::Path;

use cssmtp::sink::SinkOptions;
use cssmtp::spool::report::Disposition;

use crate::support::{Env, mail, notifications, originals, sink, target, text_with_ids};

/// RetryLimit of these tests: a mail that waited a retry interval shows in the time.
const RETRY: &str = "RetryLimit\n{\n  Count 2\n  Interval 30\n}\n";

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// `n` mails of one recipient each, in one spool file.
fn many_mails(n: usize) -> String {
    let mut file = String::from("HELO h.example\n");
    for i in 0..n {
        file.push_str(&mail(
            "a@h.example",
            &[&format!("r{i}@example.com")],
            &text_with_ids(&format!("mail {i}"), "b"),
        ));
    }
    file
}

/// 200 mails (two spool files) through a server taking 10 mails per session, with
/// `connections` workers: all delivered at once, none returned.
async fn through_a_session_limit(close_at_limit: bool, connections: u32) {
    through_a_limit(close_at_limit, connections, true).await;
}

async fn through_a_limit(close_at_limit: bool, connections: u32, pipelining: bool) {
    let server = sink(SinkOptions {
        max_mails_per_session: Some(10),
        close_at_limit,
        pipelining,
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&format!(
        "MaxConnections {connections}\n{RETRY}{}",
        target(server.addr, "")
    ));
    env.submit("LIMITA", &many_mails(120));
    env.submit("LIMITB", &many_mails(80));
    let started = tokio::time::Instant::now();
    let report = env.drain().await;
    let received = originals(&server);
    assert_eq!(received.len(), 200, "every mail delivered once");
    assert!(notifications(&server).is_empty(), "nothing returned");
    assert!(files(&env.config().dead_letter_directory()).is_empty());
    assert_eq!(report.stats.rcpts_retried, 0, "no recipient in long retry");
    assert_eq!(report.stats.mails_total_retry, 0, "no mail in long retry");
    assert_eq!(report.stats.rcpts_undeliverable, 0);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30 * 60),
        "no mail waited a retry interval ({:?})",
        started.elapsed()
    );
    assert!(
        server.sessions() >= 20,
        "a fresh session every 10 mails ({} sessions)",
        server.sessions()
    );
    for file in &report.files {
        assert_eq!(file.disposition, Disposition::Deleted);
        assert_eq!(file.undeliverable_count, 0);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_452_too_many_messages_opens_a_fresh_session_on_one_connection() {
    through_a_session_limit(false, 1).await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_452_too_many_messages_opens_a_fresh_session_on_four_connections() {
    through_a_session_limit(false, 4).await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_421_and_close_at_mail_from_opens_a_fresh_session() {
    through_a_session_limit(true, 1).await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_421_and_close_at_mail_from_on_three_connections() {
    through_a_session_limit(true, 3).await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn session_limits_without_pipelining() {
    through_a_limit(false, 2, false).await;
    through_a_limit(true, 2, false).await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn recipients_beyond_a_transaction_limit_go_in_following_transactions() {
    let server = sink(SinkOptions {
        max_rcpts: Some(20),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&format!("{RETRY}{}", target(server.addr, "")));
    let rcpts: Vec<String> = (0..50).map(|i| format!("r{i}@example.com")).collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    env.submit(
        "RCPTS",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &refs, &text_with_ids("fifty", "b"))
        ),
    );
    let started = tokio::time::Instant::now();
    let report = env.drain().await;
    let received = originals(&server);
    let sizes: Vec<usize> = received.iter().map(|m| m.rcpt_to.len()).collect();
    assert_eq!(sizes, [20, 20, 10], "three transactions");
    let mut got: Vec<String> = received.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    got.sort();
    let mut want = rcpts.clone();
    want.sort();
    assert_eq!(got, want, "each recipient once");
    assert!(notifications(&server).is_empty());
    assert_eq!(report.stats.rcpts_retried, 0, "none in long retry");
    assert_eq!(report.stats.rcpts_delivered, 50);
    assert!(started.elapsed() < std::time::Duration::from_secs(30 * 60));
    assert_eq!(report.files[0].disposition, Disposition::Deleted);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_421_keeps_its_text_and_stage_in_the_diagnostics() {
    // A server that closes every session at the first MAIL FROM: the mail goes again
    // at once a few times, then is an ordinary temporary failure (no loop), and its
    // reason names the 421 and MAIL FROM, not a closed connection at RCPT TO.
    let server = sink(SinkOptions {
        max_mails_per_session: Some(0),
        close_at_limit: true,
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&format!(
        "RetryLimit\n{{\n  Count 0\n  Interval 1\n}}\n{}",
        target(server.addr, "")
    ));
    env.submit(
        "CLOSING",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["x@example.com"], &text_with_ids("c", "b"))
        ),
    );
    let report = env.drain().await;
    assert!(originals(&server).is_empty());
    let sessions = server.sessions();
    assert!(
        (2..=8).contains(&sessions),
        "sent again at once, a bounded number of times ({sessions} sessions)"
    );
    let file = &report.files[0];
    assert_eq!(file.undeliverable.len(), 1, "{file:?}");
    let reason = &file.undeliverable[0].reason;
    assert!(
        reason.contains("421 4.7.0 Too many messages in this session, closing")
            && reason.contains("at MAIL FROM"),
        "{reason}"
    );
    assert!(!reason.contains("closed by the server"), "{reason}");
}

/// A 421 at DATA, or in reply to the final "." (the server did not take the mail): the
/// mail goes again at once on a fresh session, to all its recipients.
async fn closed_at(script: &str) {
    let server = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{RETRY}{}", target(server.addr, "")));
    let closer = format!("{script}-once@example.com");
    env.submit(
        "CLOSER",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["ok@example.com", &closer],
                &text_with_ids(script, "b")
            )
        ),
    );
    let started = tokio::time::Instant::now();
    let report = env.drain().await;
    let received = originals(&server);
    assert_eq!(received.len(), 1, "{script}: delivered once");
    assert_eq!(received[0].rcpt_to, ["ok@example.com", closer.as_str()]);
    assert!(notifications(&server).is_empty());
    assert_eq!(
        report.stats.rcpts_retried, 0,
        "{script}: none in long retry"
    );
    assert_eq!(report.stats.rcpts_delivered, 2);
    assert!(server.sessions() >= 2, "{script}: a fresh session");
    assert!(started.elapsed() < std::time::Duration::from_secs(30 * 60));
    assert_eq!(report.files[0].disposition, Disposition::Deleted);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_421_at_data_sends_the_mail_again_at_once() {
    closed_at("close-at-data").await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_421_after_the_text_sends_the_mail_again_at_once() {
    closed_at("close-after-dot").await;
}

/// Issue 10 point 2: `MaxMailsPerSession 10` ends each session after 10 mails, before the
/// server has to refuse one: 50 mails go with no 452 ever sent.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_mails_per_session_rotates_before_the_server_refuses() {
    let server = sink(SinkOptions {
        max_mails_per_session: Some(10),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&format!(
        "MaxConnections 1\n{RETRY}{}",
        target(server.addr, "  MaxMailsPerSession 10")
    ));
    env.submit("CONFMAX", &many_mails(50));
    let report = env.drain().await;
    assert_eq!(originals(&server).len(), 50, "every mail delivered once");
    assert_eq!(server.limit_refusals(), 0, "no 452 ever sent");
    assert!(server.sessions() >= 5, "{} sessions", server.sessions());
    assert_eq!(report.stats.mails_total_retry, 0);
}

/// Issue 10 point 2: `MaxRcptsPerMail 20` sends a 50-recipient mail in three
/// transactions of at most 20 recipients, with no 452 ever sent.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_rcpts_per_mail_splits_before_the_server_refuses() {
    let server = sink(SinkOptions {
        max_rcpts: Some(20),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&format!(
        "{RETRY}{}",
        target(server.addr, "  MaxRcptsPerMail 20")
    ));
    let rcpts: Vec<String> = (0..50).map(|i| format!("r{i}@example.com")).collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    env.submit(
        "CONFRCPT",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &refs, &text_with_ids("fifty", "b"))
        ),
    );
    let report = env.drain().await;
    let received = originals(&server);
    let sizes: Vec<usize> = received.iter().map(|m| m.rcpt_to.len()).collect();
    assert_eq!(sizes, [20, 20, 10], "three transactions");
    let mut got: Vec<String> = received.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    got.sort();
    let mut want = rcpts.clone();
    want.sort();
    assert_eq!(got, want, "each recipient once");
    assert_eq!(server.limit_refusals(), 0, "no 452 ever sent");
    assert_eq!(report.stats.rcpts_delivered, 50);
    assert_eq!(report.stats.rcpts_retried, 0);
}

/// 40 mails in four spool files through one sink with `MaxConnections 8` globally;
/// `per_target` is the extra statement in its TargetServer block. Returns the most
/// sessions the sink saw open at once.
async fn concurrent_sessions(per_target: &str) -> u64 {
    let server = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "MaxConnections 8\n{RETRY}{}",
        target(server.addr, per_target)
    ));
    for name in ["CONNA", "CONNB", "CONNC", "CONND"] {
        env.submit(name, &many_mails(10));
    }
    let report = env.drain().await;
    assert_eq!(originals(&server).len(), 40, "every mail delivered once");
    assert!(notifications(&server).is_empty(), "nothing returned");
    assert_eq!(report.stats.mails_total_retry, 0, "no mail in long retry");
    assert_eq!(report.stats.rcpts_undeliverable, 0);
    server.max_concurrent()
}

/// Issue 10 point 2: a per-target `MaxConnections 2` keeps at most 2 sessions open to
/// the target at once (the global limit alone lets more in); every mail is delivered.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn per_target_max_connections_caps_open_sessions() {
    let capped = concurrent_sessions("  MaxConnections 2").await;
    assert!(capped <= 2, "{capped} sessions open at once");
    let free = concurrent_sessions("").await;
    assert!(free > 2, "without it, {free} sessions open at once");
}

/// Issue 10 point 6: a mail whose server closes with a 421 (at DATA, or in reply to the
/// final ".") every time is returned once its attempts are used up, and the notification
/// (RFC 3464) keeps the server's 421 text and the stage it came at, not a closed
/// connection.
async fn returned_after_421(script: &str, stage: &str) {
    let server = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "RetryLimit\n{{\n  Count 0\n  Interval 1\n}}\n{}",
        target(server.addr, "")
    ));
    let rcpt = format!("{script}@example.com");
    env.submit(
        "RETURN421",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &[&rcpt], &text_with_ids(script, "b"))
        ),
    );
    let report = env.drain().await;
    assert!(originals(&server).is_empty(), "{script}: never taken");
    assert_eq!(report.stats.rcpts_undeliverable, 1, "{script}");
    let returned = notifications(&server);
    assert_eq!(returned.len(), 1, "{script}: one notification");
    assert_eq!(returned[0].rcpt_to, ["a@h.example"]);
    let text = returned[0].text();
    assert!(
        text.contains("421 4.3.2"),
        "{script}: the server's 421 is in the notification:\n{text}"
    );
    assert!(
        text.contains(&format!("at {stage}")),
        "{script}: its stage is in the notification:\n{text}"
    );
    assert!(
        text.contains("Diagnostic-Code: smtp; 421 4.3.2"),
        "{script}: the 421 is the DSN's diagnostic code:\n{text}"
    );
    assert!(
        !text.contains("closed by the server"),
        "{script}: not a closed connection:\n{text}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_notification_after_a_421_at_data_keeps_its_text_and_stage() {
    returned_after_421("close-at-data", "DATA").await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_notification_after_a_421_to_the_final_dot_keeps_its_text_and_stage() {
    returned_after_421("close-after-dot", "end of mail text").await;
}
