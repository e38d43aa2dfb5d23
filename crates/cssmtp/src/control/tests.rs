//! The replies' wire format: console lines and JSON `data` made from one typed value,
//! byte for byte as `cssmtp modify` and programs reading `--json` have always seen them.

use super::*;
use crate::delivery::router::LimitSource;
use crate::spool::status::Suspend;

fn target(last_failure: Option<&str>) -> TargetAnswer {
    TargetAnswer {
        address: "192.0.2.1:25".into(),
        origin: "TargetIp 192.0.2.1".into(),
        state: Readiness::NotReady,
        protocol: Protocol::Esmtp,
        starttls: true,
        secure: false,
        size: 1000,
        size_from: SizeSource::Ehlo,
        max_mails_per_session: Limit {
            value: 3,
            source: LimitSource::Learned,
        },
        max_rcpts_per_mail: Limit {
            value: 0,
            source: LimitSource::None,
        },
        max_connections: Limit {
            value: 2,
            source: LimitSource::Configured,
        },
        mail_attempts: 4,
        mail_sent: 3,
        connect_failures: 1,
        auth: None,
        auth_failures: 0,
        opportunistic: false,
        tls_failures: 0,
        tls_not_used: 0,
        connections: 1,
        last_reply: None,
        last_failure: last_failure.map(str::to_owned),
    }
}

#[test]
fn display_targets_console_and_json_come_from_one_value() {
    let answer = TargetsAnswer {
        started: "2026-11-30T14:00:00.000Z".into(),
        global: Global {
            mail_sent: 2,
            total_retry: 1,
            current_retry: 0,
            extended_retry_current: 0,
            dead_letter: 0,
            undeliver: 1,
            rcpts_delivered: 3,
            rcpts_undeliverable: 1,
        },
        targets: vec![target(Some("refused (at connect)"))],
        cluster: None,
    };
    let reply = answer.reply();
    assert!(reply.ok);
    assert_eq!(
        reply.lines,
        [
            "CSM5001I DISPLAY TARGETS",
            "GLOBAL INFORMATION (since start, 2026-11-30T14:00:00.000Z):",
            "  MAIL SENT: 2          TOTAL RETRY: 1          CURRENT RETRY: 0",
            "  EXTENDED RETRY CURRENT: 0          DEADLETTER: 0          UNDELIVER: 1",
            "TARGET SERVER: 192.0.2.1:25 (TargetIp 192.0.2.1)",
            "  STATE: NOT READY  PROTOCOL: ESMTP   STARTTLS: YES   SECURE: NO   SIZE: 1000 (EHLO; 0 = unlimited)",
            "  MAIL ATTEMPTS: 4          MAIL SENT: 3          CONNECT FAIL: 1          CONNECTIONS: 1",
            "  MAILS PER SESSION: 3 (learned)   RCPTS PER MAIL: 0 (none)   MAX CONNECTIONS: 2 (configured)   (0 = unlimited)",
            "  LAST REPLY: (none)",
            "  LAST FAILURE: refused (at connect)",
        ]
    );
    assert_eq!(
        serde_json::to_string(&reply.data).unwrap(),
        concat!(
            r#"{"started":"2026-11-30T14:00:00.000Z","global":{"mail_sent":2,"total_retry":1,"#,
            r#""current_retry":0,"extended_retry_current":0,"dead_letter":0,"undeliver":1,"#,
            r#""rcpts_delivered":3,"rcpts_undeliverable":1},"targets":[{"address":"192.0.2.1:25","#,
            r#""origin":"TargetIp 192.0.2.1","state":"not_ready","protocol":"esmtp","starttls":true,"#,
            r#""secure":false,"size":1000,"size_from":"EHLO","#,
            r#""max_mails_per_session":{"value":3,"source":"learned"},"#,
            r#""max_rcpts_per_mail":{"value":0,"source":"none"},"#,
            r#""max_connections":{"value":2,"source":"configured"},"mail_attempts":4,"mail_sent":3,"#,
            r#""connect_failures":1,"connections":1,"last_reply":null,"#,
            r#""last_failure":"refused (at connect)"}]}"#
        )
    );
}

#[test]
fn a_target_never_reached_shows_an_unknown_protocol() {
    let mut t = target(None);
    t.state = Readiness::Ready;
    t.protocol = Protocol::Unknown;
    t.size_from = SizeSource::Configured;
    let mut lines = Vec::new();
    t.lines(&mut lines);
    assert_eq!(
        lines[1],
        "  STATE: READY      PROTOCOL: UNKNOWN (not connected yet)   STARTTLS: YES   SECURE: NO   SIZE: 1000 (configured; 0 = unlimited)"
    );
    assert_eq!(lines.len(), 5, "no LAST FAILURE line without a failure");
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["state"], "ready");
    assert_eq!(json["protocol"], "unknown");
    assert_eq!(json["size_from"], "configured");
}

#[test]
fn suspend_and_resume_answer_by_the_intake_before_and_after() {
    let text = |intake, before| IntakeAnswer { intake, before }.reply();
    let immediate = text(Suspend::Immediate, Suspend::Running);
    assert!(immediate.lines[0].starts_with("CSM5017I SUSPEND IMMEDIATE:"));
    assert_eq!(immediate.data, serde_json::json!({ "intake": "immediate" }));
    let delay = text(Suspend::Delay, Suspend::Immediate);
    assert!(delay.lines[0].starts_with("CSM5017I SUSPEND DELAY:"));
    assert_eq!(
        text(Suspend::Running, Suspend::Running).lines,
        ["CSM5018I RESUME: intake was not suspended"]
    );
    let resumed = text(Suspend::Running, Suspend::Delay);
    assert_eq!(
        resumed.lines,
        ["CSM5018I RESUME: spool files are taken and mail is sent again"]
    );
    assert_eq!(resumed.data, serde_json::json!({ "intake": "running" }));
}

#[test]
fn refusals_are_error_replies_with_their_message() {
    let cases: [(Refusal, &str); 4] = [
        (
            Refusal::NoTarget("192.0.2.9".parse().unwrap()),
            "CSM5090E No target server has address 192.0.2.9",
        ),
        (Refusal::NoTask(7), "CSM5090E No spool task TKID=7"),
        (
            Refusal::Refresh("x.conf could not be read".into()),
            "CSM5014E REFRESH: x.conf could not be read; nothing changed",
        ),
        (
            Refusal::RefreshIplist("no target address could be resolved ()".into()),
            "CSM5014E REFRESHIPLIST: no target address could be resolved (); the list is unchanged",
        ),
    ];
    for (refusal, text) in cases {
        let reply = Reply::from(refusal);
        assert!(!reply.ok);
        assert_eq!(reply.lines, [text]);
        assert_eq!(serde_json::to_string(&reply.data).unwrap(), "null");
    }
}

#[test]
fn a_refresh_with_errors_is_refused_and_says_nothing_changed() {
    let reply = RefreshRefused {
        file: "/etc/cssmtp.conf".into(),
        errors: vec!["cssmtp.conf:3: error: unknown statement".into()],
        changed: false,
    }
    .reply();
    assert!(!reply.ok);
    assert_eq!(
        reply.lines,
        [
            "CSM5014E REFRESH: /etc/cssmtp.conf has errors; nothing changed",
            "  cssmtp.conf:3: error: unknown statement",
        ]
    );
    assert_eq!(
        serde_json::to_string(&reply.data).unwrap(),
        r#"{"changed":false}"#
    );
    let done = RefreshAnswer {
        done: vec!["/etc/cssmtp.conf read".into(), "LOGLEVEL 15".into()],
        warnings: vec!["SpoolDirectory kept until a restart".into()],
        changed: true,
        kept: vec!["SpoolDirectory kept until a restart".into()],
    }
    .reply();
    assert_eq!(
        done.lines,
        [
            "CSM5012I REFRESH: /etc/cssmtp.conf read",
            "CSM5012I REFRESH: LOGLEVEL 15",
            "CSM5013W REFRESH: SpoolDirectory kept until a restart",
        ]
    );
    assert_eq!(
        serde_json::to_string(&done.data).unwrap(),
        r#"{"changed":true,"kept":["SpoolDirectory kept until a restart"]}"#
    );
}

#[test]
fn iplist_heads_with_the_command_answered() {
    let entry = || IplistEntry {
        address: "192.0.2.1:25".into(),
        preference: 10,
        origin: "MX example.com".into(),
        secure: true,
    };
    let display = IplistAnswer {
        refreshed: None,
        targets: vec![entry()],
    }
    .reply();
    assert_eq!(
        display.lines,
        [
            "CSM5002I DISPLAY IPLIST: 1 target address(es)",
            "  192.0.2.1:25                             PREFERENCE 10    MX example.com, Secure",
        ]
    );
    let refreshed = IplistAnswer {
        refreshed: Some(1),
        targets: vec![entry()],
    }
    .reply();
    assert_eq!(
        refreshed.lines[0],
        "CSM5015I REFRESHIPLIST: 1 target address(es)"
    );
    assert_eq!(refreshed.data, display.data);
    assert_eq!(
        serde_json::to_string(&display.data).unwrap(),
        r#"{"targets":[{"address":"192.0.2.1:25","preference":10,"origin":"MX example.com","secure":true}]}"#
    );
}
