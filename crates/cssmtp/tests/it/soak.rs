//! Fault-injecting soak: thousands of recipients through a target server that fails at
//! random (4xx and 5xx at every stage, 421 greetings, connections dropped before and
//! after the final ".", TLS handshakes abandoned, slow replies), with files arriving
//! while the daemon runs and the daemon restarted on the way. The accounting must
//! close: every recipient delivered, returned (in a notification or a dead letter) or
//! both only where the server dropped the connection after keeping the mail; the
//! daemon's counters (DISPLAY TARGETS and each run's statistics) and the accounting
//! records agree with what the server saw.
//!
//! The daemon runs in the test's runtime on tokio's paused clock, so retry intervals and
//! injected delays cost no real time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cssmtp::app::RunReport;
use cssmtp::control;
use cssmtp::sink::{Faults, Received, SinkOptions};
use cssmtp::spool::submit::{JobInfo, submit};
use serde_json::Value;

use crate::support::{Daemon, Env, TestPki, eventually, sink, target};

/// Files and their shape: 72 files × 5 mails × 9 recipients = 3,240 recipients, times
/// `CSSMTP_SOAK_SCALE` (default 1) for longer runs by hand.
const FILES_PER_SCALE: usize = 72;
const MAILS: usize = 5;
const RCPTS: usize = 9;

/// Recipient `r` of mail `m` of file `f`: unique, so each can be followed.
fn rcpt(f: usize, m: usize, r: usize) -> String {
    format!("u{f:03}m{m}r{r}@soak.example")
}

/// A spool file; every third one asks for TLS.
fn spool_text(f: usize) -> String {
    let mut text = String::from("EHLO soak.example\n");
    if f.is_multiple_of(3) {
        text.push_str("STARTTLS\n");
    }
    for m in 0..MAILS {
        text.push_str(&format!("MAIL FROM:<owner{f:03}@soak.example>\n"));
        for r in 0..RCPTS {
            text.push_str(&format!("RCPT TO:<{}>\n", rcpt(f, m, r)));
        }
        text.push_str(&format!(
            "DATA\nMessage-ID: <f{f}m{m}@soak.example>\nSubject: soak {f} {m}\n\nline one\n..dotted\n.\n"
        ));
    }
    text
}

fn submit_file(env: &Env, f: usize) {
    let job = JobInfo {
        job_name: format!("SOAK{f:03}"),
        job_id: "J0000099".into(),
    };
    submit(&env.layout().incoming, &job, f, spool_text(f).as_bytes()).unwrap();
}

/// The recipients a notification or dead letter text says were not delivered.
fn final_recipients(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("Final-Recipient: rfc822; "))
        .map(|a| a.trim().to_owned())
        .collect()
}

fn accounting(env: &Env) -> Vec<Value> {
    std::fs::read_to_string(env.config().accounting_path())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn is_original(m: &Received) -> bool {
    !m.mail_from.is_empty()
}

fn files() -> usize {
    let scale = std::env::var("CSSMTP_SOAK_SCALE")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    FILES_PER_SCALE * scale
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn faults_restarts_and_concurrent_intake_lose_nothing_and_the_accounting_closes() {
    let files = files();
    let (first_wave, second_wave) = (files / 3, 2 * files / 3);
    let pki = TestPki::new("soak CA");
    let faults = Faults {
        seed: 0x5eed,
        greeting_421: 20,
        temp_fail: 25,
        perm_fail: 4,
        delay: 60,
        max_delay_ms: 3_000,
        drop_before_dot: 15,
        drop_after_dot: 8,
        tls_fail: 60,
    };
    let server = sink(SinkOptions {
        tls: Some(pki.server(&["127.0.0.1"])),
        faults: Some(faults),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::with_ca(
        &pki,
        &format!(
            "SpoolTasks 6\nMaxConnections 8\nRetryLimit\n{{\n  Count 4\n  Interval 1\n}}\n\
             Timeout\n{{\n  ConnectRetry 30\n}}\nNotifyLimit 0\n\
             SMF119\n{{\n  Mail\n  Spool\n}}\n{}",
            target(server.addr, "")
        ),
    );

    // Files arrive in three waves: before the first start, while the first run works,
    // and while the last run works; the daemon is stopped and started twice between.
    let mut reports = Vec::new();
    for f in 0..first_wave {
        submit_file(&env, f);
    }
    let daemon = Daemon::start(&env).await;
    for f in first_wave..second_wave {
        submit_file(&env, f);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eventually(|| async { server.count() as usize >= files * MAILS / 4 }).await;
    reports.push(daemon.end().await);

    let daemon = Daemon::start(&env).await;
    let so_far = server.count();
    eventually(|| async { server.count() as usize >= so_far as usize + files * MAILS / 4 }).await;
    reports.push(daemon.end().await);

    let daemon = Daemon::start(&env).await;
    for f in second_wave..files {
        submit_file(&env, f);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Settled: no task active, nothing waiting, nothing claimed.
    eventually(|| async {
        let reply = control::request(&daemon.socket, "D,SP").await.unwrap();
        reply.data["tasks"].as_array().is_some_and(Vec::is_empty)
            && env.files_in("").is_empty()
            && env.files_in("active").is_empty()
    })
    .await;
    let display = control::request(&daemon.socket, "D,TAR").await.unwrap();
    let last = daemon.end().await;

    let log = server.fault_log();
    let received = server.received();
    // Faults of every kind happened.
    assert!(
        log.greetings_421 > 0
            && log.temp_fails > 0
            && log.perm_fails > 0
            && log.delays > 0
            && log.drops_before_dot > 0
            && log.tls_fails > 0,
        "{log:#?}"
    );

    // 1. Nothing lost: each recipient delivered or returned.
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    for m in received.iter().filter(|m| is_original(m)) {
        for r in &m.rcpt_to {
            *delivered.entry(r.clone()).or_insert(0) += 1;
        }
    }
    let dead_letters: Vec<String> = std::fs::read_dir(env.config().dead_letter_directory())
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| std::fs::read_to_string(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    // A notification the server kept but cut off after its "." failed as far as
    // cssmtp knows: it became a dead letter too. Such ones are not counted twice.
    let cut_ids: BTreeSet<u64> = log.dropped_after_dot.iter().map(|c| c.id).collect();
    let mut returned: BTreeMap<String, usize> = BTreeMap::new();
    let mut returned_in_cut: BTreeSet<String> = BTreeSet::new();
    for m in received.iter().filter(|m| !is_original(m)) {
        if cut_ids.contains(&m.id) {
            returned_in_cut.extend(final_recipients(&m.text()));
        } else {
            for r in final_recipients(&m.text()) {
                *returned.entry(r).or_insert(0) += 1;
            }
        }
    }
    for text in &dead_letters {
        for r in final_recipients(text) {
            *returned.entry(r).or_insert(0) += 1;
        }
    }
    assert!(
        returned_in_cut.iter().all(|r| returned.contains_key(r)),
        "a notification cut after its \".\" is kept as a dead letter"
    );
    let dropped_after_dot: BTreeSet<String> = log
        .dropped_after_dot
        .iter()
        .flat_map(|c| c.rcpt_to.iter().cloned())
        .collect();
    let mut all = BTreeSet::new();
    for f in 0..files {
        for m in 0..MAILS {
            for r in 0..RCPTS {
                all.insert(rcpt(f, m, r));
            }
        }
    }
    let lost: Vec<_> = all
        .iter()
        .filter(|r| !delivered.contains_key(*r) && !returned.contains_key(*r))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        delivered
            .keys()
            .chain(returned.keys())
            .all(|r| all.contains(r))
    );
    // 2. Twice only where the server cut the connection after keeping the mail (the
    //    client could not know it was delivered); returned at most once.
    for (r, n) in &delivered {
        assert!(
            *n == 1 || dropped_after_dot.contains(r),
            "{r} delivered {n} times"
        );
        if returned.contains_key(r) {
            assert!(dropped_after_dot.contains(r), "{r} delivered and returned");
        }
    }
    for (r, n) in &returned {
        if *n > 1 {
            let notes: Vec<String> = received
                .iter()
                .filter(|m| !is_original(m) && final_recipients(&m.text()).contains(r))
                .map(|m| format!("notification {} to {:?}", m.id, m.rcpt_to))
                .chain(
                    dead_letters
                        .iter()
                        .filter(|t| final_recipients(t).contains(r))
                        .map(|t| t.lines().take(4).collect::<Vec<_>>().join(" | ")),
                )
                .collect();
            panic!("{r} returned {n} times: {notes:#?}");
        }
    }
    assert!(
        !returned.is_empty(),
        "the fault mix makes some mail undeliverable"
    );

    // 3. The daemon's counters agree with what the server saw: recipients counted
    //    delivered by the three runs are the server's deliveries, less those it kept
    //    and then cut off; recipients counted undeliverable are the returned ones.
    let sum = |f: fn(&RunReport) -> u64| -> u64 { reports.iter().chain([&last]).map(f).sum() };
    let cut_rcpts: u64 = log
        .dropped_after_dot
        .iter()
        .filter(|c| c.rcpt_to.iter().all(|r| all.contains(r)))
        .map(|c| c.rcpt_to.len() as u64)
        .sum();
    let server_rcpts: u64 = delivered.values().map(|n| *n as u64).sum();
    assert_eq!(
        sum(|r| r.stats.rcpts_delivered) + cut_rcpts,
        server_rcpts,
        "recipients counted delivered"
    );
    assert_eq!(
        sum(|r| r.stats.rcpts_undeliverable),
        returned.len() as u64,
        "recipients counted undeliverable"
    );
    let notifications = received.iter().filter(|m| !is_original(m)).count() as u64;
    let cut_notifications = log
        .dropped_after_dot
        .iter()
        .filter(|c| c.rcpt_to.iter().any(|r| !all.contains(r)))
        .count() as u64;
    assert_eq!(
        sum(|r| r.stats.notifications) + cut_notifications,
        notifications,
        "notifications counted"
    );
    assert_eq!(
        sum(|r| r.stats.dead_letters),
        dead_letters.len() as u64,
        "dead letters counted"
    );
    // DISPLAY TARGETS of the last run, taken once it had settled, says what its
    // statistics say.
    let global = &display.data["global"];
    assert_eq!(
        global["rcpts_delivered"], last.stats.rcpts_delivered,
        "{:#?}",
        display.lines
    );
    assert_eq!(
        global["rcpts_undeliverable"],
        last.stats.rcpts_undeliverable
    );
    assert_eq!(global["dead_letter"], last.stats.dead_letters);
    assert_eq!(global["mail_sent"], last.stats.mails_all_sent);
    assert_eq!(global["current_retry"], 0);
    let target_sent: u64 = display.data["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["mail_sent"].as_u64().unwrap())
        .sum();
    assert_eq!(target_sent, last.stats.mails_sent, "{:#?}", display.lines);

    // 4. Accounting records: every mail closed once (its last record), with its
    //    recipients split into delivered and undeliverable as the server saw them.
    let records = accounting(&env);
    let mut last_record: BTreeMap<(String, u64), &Value> = BTreeMap::new();
    for r in records.iter().filter(|r| r["type"] == "mail") {
        let key = (
            r["job_name"].as_str().unwrap().to_owned(),
            r["mail"].as_u64().unwrap(),
        );
        last_record.insert(key, r);
    }
    assert_eq!(
        last_record.len(),
        files * MAILS,
        "a mail record for every mail"
    );
    let mut acct_delivered = 0;
    let mut acct_undeliverable = 0;
    for ((job, mail), r) in &last_record {
        let d = r["delivered"].as_u64().unwrap();
        let u = r["undeliverable"].as_u64().unwrap();
        assert_eq!(d + u, RCPTS as u64, "{job} mail {mail}: {r}");
        acct_delivered += d;
        acct_undeliverable += u;
    }
    assert_eq!(acct_undeliverable, returned.len() as u64);
    assert_eq!(acct_delivered + acct_undeliverable, all.len() as u64);
    let spool_records: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["type"] == "spool")
        .map(|r| r["job_name"].as_str().unwrap())
        .collect();
    assert_eq!(spool_records.len(), files, "a spool record for every file");
    assert!(
        env.files_in("hold").is_empty(),
        "{:?}",
        env.files_in("hold")
    );
    eprintln!(
        "soak: {} recipients, {} deliveries, {} returned, {} notifications, {} dead letters; faults {log:?}",
        all.len(),
        server_rcpts,
        returned.len(),
        notifications,
        dead_letters.len()
    );
}
