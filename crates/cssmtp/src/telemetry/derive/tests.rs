use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cssmtp_wire::Reply;
use serde_json::Value;

use crate::config::Smf119;
use crate::domain::failure::{Failure, Problem, Stage};
use crate::domain::job::JobIdentity;
use crate::domain::outcome::{MailLife, MailSummary, MailTry};
use crate::domain::report::{Disposition, FileReport};
use crate::telemetry::{Accounting, At, ConfigEvent, Event, SessionEnd, Snapshot, Telemetry};

/// The log lines written in this thread.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut log) = self.0.lock() {
            log.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default()
    }
}

fn job() -> JobIdentity {
    JobIdentity {
        file_name: "PAYROLL.J0000001.x".into(),
        job_name: "PAYROLL".into(),
        job_id: "J0000001".into(),
    }
}

fn at(mail: u32) -> At<'static> {
    At {
        tkid: Some(7),
        file: "PAYROLL.J0000001.x",
        mail,
    }
}

fn report(disposition: Disposition, undeliverable: u64) -> FileReport {
    FileReport {
        tkid: 7,
        job: job(),
        owner: "alice".into(),
        mails: 2,
        rcpts_delivered: 3,
        undeliverable_count: undeliverable,
        undeliverable: Vec::new(),
        rcpts_extended: 0,
        possibly_delivered_held: 0,
        returns: Vec::new(),
        errors: Vec::new(),
        file_problem: None,
        test_mode: false,
        needs_tls: false,
        unreturned: Vec::new(),
        disposition,
        report: None,
        must_hold: false,
    }
}

/// Emits one of every event to a telemetry writing every record type; returns the log,
/// the counters and the records.
fn emit_all() -> (String, Snapshot, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acct.jsonl");
    let all = Smf119 {
        config: true,
        connect: true,
        mail: true,
        spool: true,
        stats: true,
    };
    let (accounting, writer) = Accounting::open(&path, all).unwrap();
    let telemetry = Telemetry::new(accounting);
    let log = Log::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let reply = Reply::new(250, None, "ok");
    let failure = Failure::new(
        Stage::RcptTo,
        Some("127.0.0.1:25".parse().unwrap()),
        Problem::Reply(Reply::new(451, None, "later")),
    );
    let summary = MailSummary {
        line: 3,
        reverse_path: "payroll@example.com".into(),
        rcpts: 3,
        delivered: 3,
        undeliverable: 0,
        extended: 0,
        held: 0,
        size: 100,
        attempts: 1,
        fates: Vec::new(),
    };
    let config = crate::config::validate::defaults();
    let notes = vec!["why".to_owned()];
    let life = MailLife {
        message_id: Some("<m1@example.com>".into()),
        tries: vec![MailTry {
            time: SystemTime::UNIX_EPOCH,
            target: "127.0.0.1:25".into(),
            result: "accepted",
            address: None,
            count: 3,
            reply: "250 ok".into(),
        }],
        tries_dropped: 0,
    };
    tracing::subscriber::with_default(subscriber, || {
        let events = [
            Event::Connected,
            Event::Attempted { sent: true },
            Event::Delivered {
                at: at(1),
                count: 3,
                target: "127.0.0.1:25",
                reply: &reply,
            },
            Event::DeliveredFromParked {
                at: at(2),
                count: 2,
            },
            Event::DeliveredAtStop { count: 1 },
            Event::Retrying {
                at: at(2),
                address: "bob@example.net",
                attempt: 1,
                attempts: 3,
                interval: Duration::from_secs(30),
                failure: &failure,
            },
            Event::Undeliverable {
                at: at(2),
                line: 9,
                address: "carol@example.net",
                reason: "550 no",
            },
            Event::ExpiredInParked,
            Event::ToExtended {
                at: at(2),
                address: "dave@example.net",
                failure: &failure,
            },
            Event::Parked {
                at: at(2),
                count: 2,
                shown: "maildir/x",
                until: Some(SystemTime::UNIX_EPOCH),
            },
            Event::IntoRetry,
            Event::Returning,
            Event::MailFinal {
                job: &job(),
                owner: "alice",
                tkid: 7,
                mail: 1,
                summary: &summary,
                life: &life,
                arrival: SystemTime::UNIX_EPOCH,
            },
            Event::FileFinished(&report(Disposition::Held("hold/x".into()), 1)),
            Event::FileFinished(&report(Disposition::Deleted, 0)),
            Event::Notified {
                at: at(2),
                to: "payroll@example.com",
                id: "<n1@host>",
            },
            Event::Reported {
                file: "PAYROLL.J0000001.x",
                how: "written to /reports/x.report",
            },
            Event::DeadLetter {
                at: Some(at(2)),
                stored: Some(std::path::Path::new("/dead/x")),
                notes: &notes,
            },
            Event::DeadLetter {
                at: None,
                stored: None,
                notes: &notes,
            },
            Event::SessionEnded(SessionEnd {
                target: "127.0.0.1:25".parse().unwrap(),
                origin: "TargetServer",
                opened: SystemTime::UNIX_EPOCH,
                mails: 4,
                tls: false,
                esmtp: true,
                auth: None,
                tls_protocol: None,
                tls_cipher: None,
                how: "quit",
            }),
            Event::Interval {
                interval: Duration::from_secs(60),
                spool_tasks: 1,
                mails_in_retry: 2,
                mails_in_extended_retry: 3,
            },
            Event::Config {
                event: ConfigEvent::Refresh,
                config: &config,
            },
        ];
        for event in events {
            telemetry.emit(event);
        }
    });
    let snapshot = telemetry.snapshot();
    drop(telemetry);
    writer.join();
    let records = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (log.text(), snapshot, records)
}

#[test]
fn each_event_is_counted_once() {
    let (_, s, _) = emit_all();
    let expected = Snapshot {
        mails_attempted: 1,
        mails_sent: 1,
        rcpts_delivered: 3 + 2 + 1,
        rcpts_undeliverable: 2,
        rcpts_retried: 1,
        files_done: 2,
        files_held: 1,
        files_with_errors: 1,
        notifications: 1,
        dead_letters: 2,
        reports: 1,
        rcpts_extended: 2,
        mails_all_sent: 1,
        mails_total_retry: 1,
        mails_undeliverable: 1,
        connections: 1,
    };
    assert_eq!(s, expected);
}

#[test]
fn each_event_has_its_log_line() {
    let (log, _, _) = emit_all();
    for (id, count) in [
        ("CSM2100I", 1),
        ("CSM2203I", 1),
        ("CSM2103I", 1),
        ("CSM2102W", 1),
        ("CSM2111I", 1),
        ("CSM2113I", 1),
        ("CSM2003W", 1),
        ("CSM2002I", 1),
        ("CSM2105I", 1),
        ("CSM2106I", 1),
        ("CSM2107W", 1),
        ("CSM2108W", 1),
    ] {
        assert_eq!(log.matches(id).count(), count, "{id} in:\n{log}");
    }
    assert!(log.contains("CSM2103I Mail 2 of PAYROLL.J0000001.x to <bob@example.net> will be tried again in 30 s (attempt 1 of 3)"), "{log}");
    assert!(
        log.contains("CSM2106I Error report for PAYROLL.J0000001.x written to /reports/x.report"),
        "{log}"
    );
}

#[test]
fn accounting_records_come_from_the_same_events() {
    let (_, _, records) = emit_all();
    let types: Vec<&str> = records.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "mail_event",
            "mail_event",
            "mail",
            "spool",
            "spool",
            "mail_event",
            "mail_event",
            "connect",
            "stats",
            "config"
        ],
        "{records:?}"
    );
    // What `cssmtp trace` reads: the mail's life, and what became of it after.
    let events: Vec<&str> = records.iter().filter_map(|r| r["event"].as_str()).collect();
    assert_eq!(
        &events[..4],
        [
            "delivered_from_extended_retry",
            "extended_retry",
            "notified",
            "dead_letter"
        ]
    );
    assert_eq!(records[1]["until"], "1970-01-01T00:00:00.000Z");
    assert_eq!(records[2]["message_id"], "<m1@example.com>");
    assert_eq!(records[2]["owner"], "alice");
    assert_eq!(records[2]["tries"][0]["target"], "127.0.0.1:25");
    assert_eq!(records[2]["tries"][0]["reply"], "250 ok");
    assert_eq!(records[5]["notification_id"], "<n1@host>");
    assert_eq!(records[6]["dead_letter"], "/dead/x");
    let records: Vec<Value> = records
        .into_iter()
        .filter(|r| r["type"] != "mail_event")
        .collect();
    let stats = &records[4];
    assert_eq!(stats["counters"]["rcpts_delivered"], 6);
    assert_eq!(stats["counters"]["dead_letters"], 2);
    assert_eq!(stats["mails_in_extended_retry"], 3);
    assert_eq!(records[1]["disposition"], "held hold/x");
    assert_eq!(records[3]["mails"], 4);
    assert_eq!(records[5]["event"], "refresh");
}
