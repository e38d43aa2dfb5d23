//! What goes on the wire is checked as it is written, and replies are taken only when due
//! (issue 9, points 3 and 6). Real loopback SMTP against `cssmtp::sink`, through
//! `cssmtp::app::run`.

use std::os::unix::fs::FileExt;

use cssmtp::sink::{Gate, SinkOptions};
use cssmtp::spool::task::Disposition;

use crate::support::{Env, mail, notifications, originals, sink, target, text_with_ids};

/// The body line of the first mail that the producer later overwrites.
const FILLER_LEN: usize = 400;

/// Runs a spool file whose first mail's text the producer rewrites (through a file
/// descriptor it kept open since it wrote the file) after cssmtp parsed the mail and
/// while its session waits at DATA: `rewrite` replaces the filler line of that mail by
/// bytes of the same length. Returns the sink, the file's report and the text of the
/// report beside the held file (empty when the file is not held).
async fn rewritten_after_parsing(
    rewrite: &[u8],
    config: &str,
) -> (cssmtp::sink::Sink, cssmtp::spool::task::FileReport, String) {
    assert!(rewrite.len() <= FILLER_LEN);
    let strict = sink(SinkOptions {
        strict_line_ends: true,
        ..SinkOptions::default()
    })
    .await;
    strict.arm(Gate::PauseAtData);
    let env = Env::new(&format!(
        "MaxConnections 1\n{config}\n{}",
        target(strict.addr, "")
    ));
    let filler = "x".repeat(FILLER_LEN);
    let content = format!(
        "HELO h.example\n{}{}",
        mail(
            "a@h.example",
            &["first@example.com"],
            &text_with_ids("first", &format!("hello\n{filler}\nbye"))
        ),
        mail(
            "a@h.example",
            &["second@example.com"],
            &text_with_ids("second", "clean")
        ),
    );
    let offset = content.find(&filler).unwrap() as u64;
    let path = env.submit("REWRITE", &content);
    // The producer keeps its file open: it can write it wherever cssmtp moves it.
    let kept = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut bytes = rewrite.to_vec();
    bytes.resize(FILLER_LEN, b'y');
    let producer = async {
        let held = strict.wait_held(1).await;
        assert_eq!(held[0].rcpt_to, ["first@example.com"], "parsed, at DATA");
        kept.write_all_at(&bytes, offset).unwrap();
        kept.sync_all().unwrap();
        strict.release();
    };
    let (report, ()) = tokio::join!(env.drain(), producer);
    let file = report.files.into_iter().next().unwrap();
    let beside = match &file.disposition {
        Disposition::Held(held) => {
            std::fs::read_to_string(format!("{}.report", held.display())).unwrap()
        }
        _ => String::new(),
    };
    (strict, file, beside)
}

/// Asserts what every rewrite case must show: the rewritten mail never reached the
/// server (no "." was sent for it), no other transaction appeared, the other mail went
/// out, and the file is held with a report naming the problem.
fn assert_held_not_sent(
    sink: &cssmtp::sink::Sink,
    file: &cssmtp::spool::task::FileReport,
    beside: &str,
) {
    let received = sink.received();
    for m in &received {
        assert!(
            !m.mail_from.contains("evil") && !m.rcpt_to.iter().any(|r| r.contains("victim")),
            "a smuggled transaction reached the server: {m:?}"
        );
        assert!(!m.text().contains("pwned") && !m.text().contains("hello"));
    }
    let subjects: Vec<String> = originals(sink)
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    assert_eq!(
        subjects,
        ["second"],
        "only the untouched mail was delivered"
    );
    assert!(
        notifications(sink).is_empty(),
        "the mail is held, not returned"
    );
    assert_eq!(file.rcpts_delivered, 1);
    assert_eq!(file.undeliverable_count, 0);
    let problem = file.file_problem.clone().unwrap_or_default();
    assert!(
        problem.contains("mail 1") && problem.contains("changed"),
        "{problem}"
    );
    assert!(
        matches!(file.disposition, Disposition::Held(_)),
        "the file must be held: {:?}",
        file.disposition
    );
    assert!(beside.contains(&problem), "{beside}");
}

#[tokio::test]
async fn a_rewritten_dot_line_never_smuggles_a_second_transaction() {
    let (sink, file, beside) = rewritten_after_parsing(
        b".\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\npwned\r\n.\r\n",
        "",
    )
    .await;
    assert_held_not_sent(&sink, &file, &beside);
    assert_eq!(sink.count(), 1, "no second transaction");
}

#[tokio::test]
async fn a_rewritten_bare_cr_or_lf_never_reaches_the_server() {
    for rewrite in [&b"bare\rcarriage return"[..], b"bare\nline feed"] {
        let (sink, file, beside) = rewritten_after_parsing(rewrite, "").await;
        assert_held_not_sent(&sink, &file, &beside);
    }
}

#[tokio::test]
async fn a_text_changed_after_parsing_is_held_before_its_final_dot() {
    // Same lines, same length, same structure: only the digest can tell.
    let (sink, file, beside) = rewritten_after_parsing(b"a harmless looking change", "").await;
    assert_held_not_sent(&sink, &file, &beside);
    assert!(
        file.file_problem.unwrap().contains("differs"),
        "the report says the text differs from what was read"
    );
}

#[tokio::test]
async fn a_changed_text_is_held_even_with_bad_spool_disp_delete() {
    // The operator chose to delete bad files; this mail was never sent, so the file
    // (its only copy) is held all the same.
    let (sink, file, beside) =
        rewritten_after_parsing(b"another change", "BadSpoolDisp Delete").await;
    assert_held_not_sent(&sink, &file, &beside);
}

/// A file of two mails: the first to `first`, the second to an ordinary recipient.
fn two_mails(first: &str) -> String {
    format!(
        "HELO h.example\n{}{}",
        mail(
            "a@h.example",
            &[first],
            &text_with_ids("misbehaving", "first")
        ),
        mail(
            "a@h.example",
            &["fine@example.com"],
            &text_with_ids("next", "second")
        ),
    )
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_reply_sent_before_the_text_is_a_protocol_error() {
    for pipelining in [true, false] {
        let sink = sink(SinkOptions {
            pipelining,
            ..SinkOptions::default()
        })
        .await;
        let env = Env::new(&format!(
            "MaxConnections 1\nRetryLimit\n{{\n  Count 2\n  Interval 1\n}}\n{}",
            target(sink.addr, "")
        ));
        env.submit("EARLY", &two_mails("early-250-once@example.com"));
        let report = env.drain().await;
        let file = &report.files[0];
        let got: Vec<(Vec<String>, String)> = originals(&sink)
            .iter()
            .map(|m| (m.rcpt_to.clone(), m.header("Subject").unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (vec!["fine@example.com".to_owned()], "next".to_owned()),
                (
                    vec!["early-250-once@example.com".to_owned()],
                    "misbehaving".to_owned()
                ),
            ],
            "the next mail went out with its own reply, then the first was retried (pipelining {pipelining})"
        );
        assert_eq!(file.undeliverable_count, 0, "{:?}", file.undeliverable);
        assert_eq!(file.rcpts_delivered, 2);
        assert_eq!(
            report.stats.rcpts_retried, 1,
            "the early 250 did not count as delivered"
        );
        assert!(notifications(&sink).is_empty());
        assert!(
            sink.sessions() >= 2,
            "the session was dropped, the next mail went on a fresh one"
        );
        assert_eq!(file.disposition, Disposition::Deleted);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unsolicited_reply_is_never_charged_to_the_next_mail() {
    for pipelining in [true, false] {
        let sink = sink(SinkOptions {
            pipelining,
            ..SinkOptions::default()
        })
        .await;
        let env = Env::new(&format!(
            "MaxConnections 1\nRetryLimit\n{{\n  Count 2\n  Interval 1\n}}\n{}",
            target(sink.addr, "")
        ));
        env.submit("EXTRA", &two_mails("extra-reply-once@example.com"));
        let report = env.drain().await;
        let file = &report.files[0];
        assert_eq!(
            file.undeliverable_count, 0,
            "the stray 554 was charged to a mail: {:?}",
            file.undeliverable
        );
        assert_eq!(file.rcpts_delivered, 2);
        assert_eq!(originals(&sink).len(), 2, "each mail delivered once");
        assert_eq!(
            report.stats.rcpts_retried, 0,
            "the first mail's due 250 stands; the next mail had its own session"
        );
        assert_eq!(
            sink.sessions(),
            2,
            "the session with stray bytes was dropped"
        );
        assert_eq!(file.disposition, Disposition::Deleted);
    }
}
