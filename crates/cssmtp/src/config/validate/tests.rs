use super::*;

fn check(text: &str) -> (Option<Config>, Vec<String>) {
    let (config, diagnostics) = validate(Path::new("/etc/cssmtp/cssmtp.conf"), text);
    (
        config,
        diagnostics.iter().map(ToString::to_string).collect(),
    )
}

#[test]
fn a_full_configuration() {
    let (config, diags) = check(
        "# IBM-style configuration
ExtWrtName        mailfwd1
JESSyntaxErrLimit 10
JESMsgSize        20480
BadSpoolDisp      delete
SpoolDirectory    spool
Header
{
  Date     NO
  UserInfo YES
}
TargetServer
{
  TargetIp   192.0.2.25
  TargetName relay2.corp.example
  ConnectPort 2525
  Secure     Yes
}
TargetServer
{
  TargetIp 2001:db8::25
}
Timeout
{
  InitialMsg   30
  ConnectRetry 60
  dataterm     1200
}
RetryLimit
{
  Count    12
  Interval 10
}
Options
{
  NullTrnc YES
}
NameServer 127.0.0.1:5353
",
    );
    assert_eq!(diags, Vec::<String>::new());
    let config = config.unwrap();
    assert_eq!(config.ext_wrt_name, "MAILFWD1");
    assert_eq!(
        config.writer_spool(),
        Path::new("/etc/cssmtp/spool/MAILFWD1")
    );
    assert_eq!(config.jes_syntax_err_limit, 10);
    assert!(!config.header.date && config.header.user_info);
    assert_eq!(config.bad_spool_disp, BadSpoolDisp::Delete);
    let Targets::Hosts(hosts) = &config.targets else {
        panic!("hosts expected")
    };
    assert_eq!(hosts.len(), 3);
    assert_eq!(
        hosts[1].host,
        TargetHost::Name("relay2.corp.example".into())
    );
    assert_eq!((hosts[1].port, hosts[1].secure), (2525, true));
    assert_eq!((hosts[2].port, hosts[2].secure), (25, false));
    assert_eq!(config.timeouts.initial_msg, Duration::from_secs(30));
    assert_eq!(config.timeouts.data_term, Duration::from_secs(1200));
    assert_eq!(
        config.timeouts.any_cmd,
        Duration::from_secs(300),
        "default kept"
    );
    assert_eq!(config.retry_limit.interval, Duration::from_secs(600));
    assert!(config.options.null_trnc);
    assert_eq!(config.name_servers, vec!["127.0.0.1:5353".parse().unwrap()]);
}

#[test]
fn every_error_is_reported_with_its_line() {
    let (config, diags) = check(
        "ExtWrtName bad/name
TargetServr
{
}
TargetServer
{
  TargetIp 300.1.1.1
  ConnectPort 0
  Secure maybe
  Colour blue
}
Timeout
{
  AnyCmd 10
}
JESSyntaxErrLimit 1000
Header {
  Date
}
RetryLimit
{
  Count 200
  Interval 60
}
",
    );
    assert!(config.is_none());
    assert_eq!(
        diags,
        vec![
            "/etc/cssmtp/cssmtp.conf:1: error: ExtWrtName \"bad/name\" must be 1 to 32 letters, digits or $ # @ _ -",
            "/etc/cssmtp/cssmtp.conf:2: error: unknown statement TargetServr (did you mean TargetServer?)",
            "/etc/cssmtp/cssmtp.conf:5: error: TargetServer needs a TargetIp, TargetName or TargetMx parameter",
            "/etc/cssmtp/cssmtp.conf:7: error: TargetIp \"300.1.1.1\" is not an IPv4 or IPv6 address",
            "/etc/cssmtp/cssmtp.conf:8: error: ConnectPort must be a whole number from 1 to 65535, not \"0\"",
            "/etc/cssmtp/cssmtp.conf:9: error: Secure must be Yes or No, not \"maybe\"",
            "/etc/cssmtp/cssmtp.conf:10: error: unknown parameter Colour in TargetServer (known: TargetIp, TargetName, TargetMx, ConnectPort, Secure, MessageSize, MaxMailsPerSession, MaxRcptsPerMail, MaxConnections, TlsName, Chunking, SourceAddress, TlsMode, TlsMinVersion, TlsCaFile, TlsFingerprint, TlsClientCert, TlsClientKey, AuthUser, AuthSecretFile, AuthSecretCommand, AuthMechanism, InsecureAuth, Charset, MBCharset)",
            "/etc/cssmtp/cssmtp.conf:14: error: Timeout AnyCmd must be a whole number from 30 to 1200, not \"10\"",
            "/etc/cssmtp/cssmtp.conf:16: error: JESSyntaxErrLimit must be a whole number from 0 to 999, not \"1000\"",
            "/etc/cssmtp/cssmtp.conf:18: error: Date in Header needs a value",
            "/etc/cssmtp/cssmtp.conf:20: error: RetryLimit Count × Interval is 12000 minutes; at most 7200 (5 days) is allowed",
        ]
    );
}

#[test]
fn target_server_rules() {
    let (config, diags) = check("ExtWrtName X\n");
    assert!(config.is_none());
    assert_eq!(
        diags,
        vec![
            "/etc/cssmtp/cssmtp.conf: error: a TargetServer statement with a TargetIp, TargetName or TargetMx parameter is required"
        ]
    );

    let (config, diags) =
        check("TargetServer\n{\n TargetMx a.example\n}\nTargetServer\n{\n TargetIp 192.0.2.1\n}\n");
    assert!(config.is_none());
    assert_eq!(
        diags,
        vec![
            "/etc/cssmtp/cssmtp.conf:7: error: TargetMx cannot be combined with TargetIp or TargetName"
        ]
    );

    let (config, diags) = check("TargetServer\n{\n TargetMx a.example\n TargetMx b.example\n}\n");
    assert!(config.is_none());
    assert_eq!(
        diags,
        vec!["/etc/cssmtp/cssmtp.conf:4: error: only one TargetMx parameter is allowed"]
    );

    let (config, diags) = check(
        "TargetServer\n{\n TargetIp 192.0.2.1\n TargetIp 192.0.2.2\n TargetIp 192.0.2.1\n TargetName a.example\n TargetIp 192.0.2.3\n TargetIp 192.0.2.4\n}\n",
    );
    assert_eq!(
        diags,
        vec![
            "/etc/cssmtp/cssmtp.conf:5: warning: TargetIp 192.0.2.1 port 25 duplicates line 3; ignored",
            "/etc/cssmtp/cssmtp.conf:8: warning: only the first four TargetIp/TargetName values are used; ignoring TargetIp 192.0.2.4",
        ]
    );
    let Some(Config {
        targets: Targets::Hosts(hosts),
        ..
    }) = config
    else {
        panic!()
    };
    assert_eq!(hosts.len(), 4);

    let (config, diags) = check(
        "TargetServer\n{\n TargetIp 192.0.2.1\n}\nTargetServer\n{\n TargetIp 192.0.2.1\n ConnectPort 2525\n}\n",
    );
    assert!(
        diags.is_empty(),
        "same address, another port: another target"
    );
    let Some(Config {
        targets: Targets::Hosts(hosts),
        ..
    }) = config
    else {
        panic!()
    };
    assert_eq!(hosts.len(), 2);

    let (config, _) = check("TargetServer { \n TargetMx Example.COM\n MessageSize 1000\n}\n");
    let Some(Config {
        targets: Targets::Mx(mx),
        ..
    }) = config
    else {
        panic!()
    };
    assert_eq!(mx.host, TargetHost::Mx("example.com".into()));
    assert_eq!(mx.message_size, 1000);
}

#[test]
fn recognised_but_not_implemented_statements_warn() {
    let (config, diags) = check("TargetServer\n{\n TargetIp 192.0.2.1\n}\nMBCS YES\nLogLevel 7\n");
    assert!(config.is_some());
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].contains(":5: warning: MBCS is a CSSMTP statement cssmtp does not implement yet")
    );
}

#[test]
fn operator_statements() {
    let (config, diags) = check(
        "TargetServer\n{\n TargetIp 192.0.2.1\n}\nLogLevel 15\nSMF119\n{\n Config\n Mail Yes\n Spool No\n}\nStatsInterval 5\nMetricsListen 9464\nAccountingFile /var/log/cssmtp/acct.jsonl\n",
    );
    assert!(diags.is_empty(), "{diags:?}");
    let config = config.unwrap();
    assert_eq!(config.log_level, 15);
    assert!(config.smf119.config && config.smf119.mail && !config.smf119.spool);
    assert_eq!(config.stats_interval, Duration::from_secs(300));
    assert_eq!(
        config.metrics_listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(
        config.accounting_path(),
        Path::new("/var/log/cssmtp/acct.jsonl")
    );
    let (_, diags) = check(
        "TargetServer\n{\n TargetIp 192.0.2.1\n}\nLogLevel 99\nSMF119\n{\n Bogus\n}\nMetricsListen nowhere\n",
    );
    assert_eq!(diags.len(), 3, "{diags:?}");
}

#[test]
fn defaults() {
    let (config, diags) = check("TargetServer\n{\n TargetIp 192.0.2.1\n}\n");
    assert!(diags.is_empty());
    let config = config.unwrap();
    assert_eq!(config.ext_wrt_name, "CSSMTP");
    assert_eq!(config.spool_directory, Path::new("/var/spool/cssmtp"));
    assert_eq!(config.jes_syntax_err_limit, 5);
    assert_eq!(config.timeouts, Timeouts::default());
    assert_eq!(config.retry_limit.count, 5);
    assert_eq!(config.bad_spool_disp, BadSpoolDisp::Hold);
    assert!(config.header.date && config.header.user_info);
}

proptest::proptest! {
    #[test]
    fn no_configuration_text_panics(text in "[ -~\\t\\n{}#;\"]{0,400}") {
        let _ = check(&text);
    }

    #[test]
    fn statement_soup_never_panics(lines in proptest::collection::vec(proptest::sample::select(vec![
        "TargetServer", "{", "}", "TargetIp 127.0.0.1", "TargetName a.example", "TargetMx b.example",
        "ConnectPort 2525", "Secure Yes", "Timeout", "AnyCmd 30", "Header", "Date NO", "RetryLimit",
        "Count 9", "Interval 800", "ExtWrtName X", "JESMsgSize 1", "Options", "NullTrnc YES", "Bogus",
        "\"unterminated", "# comment",
    ]), 0..40)) {
        let _ = check(&lines.join("\n"));
    }
}

#[test]
fn undeliverable_extended_retry_and_reports() {
    let (config, diags) = check(
        "TargetServer\n{\n TargetIp 192.0.2.1\n}\n\
         Undeliverable\n{\n  ReturnToMailFrom No\n  DeadLetterAction Delete\n  DeadLetterDirectory dead\n  ReturnContent Full\n}\n\
         ExtendedRetry\n{\n  Age 3\n  Interval 60\n  MailDirectory /var/cssmtp/MAILFWD1/mail\n}\n\
         MailAdministrator ops@corp.example\nMailAdministrator <Zos-Team@corp.example>\n\
         MailAdministrator ops@corp.example\nReport Admin\nReportMailFrom mailfwd1@zos1.corp.example\nNotifyLimit 100\n",
    );
    assert_eq!(
        diags,
        vec![
            "/etc/cssmtp/cssmtp.conf:20: warning: MailAdministrator ops@corp.example duplicates line 18; ignored"
        ]
    );
    let config = config.unwrap();
    assert!(!config.undeliverable.return_to_mail_from);
    assert_eq!(
        config.undeliverable.dead_letter_action,
        DeadLetterAction::Delete
    );
    assert_eq!(
        config.dead_letter_directory(),
        Path::new("/etc/cssmtp/dead")
    );
    assert_eq!(config.undeliverable.return_content, ReturnContent::Full);
    let extended = config.extended_retry.clone().unwrap();
    assert_eq!(extended.age, Duration::from_secs(3 * 86_400));
    assert_eq!(extended.interval, Duration::from_secs(3600));
    assert_eq!(
        config.mail_directory(),
        Path::new("/var/cssmtp/MAILFWD1/mail")
    );
    assert_eq!(
        config.mail_administrators,
        ["ops@corp.example", "Zos-Team@corp.example"],
        "case kept"
    );
    assert_eq!(config.report, Report::Admin);
    assert_eq!(
        config.report_mail_from.as_deref(),
        Some("mailfwd1@zos1.corp.example")
    );
    assert_eq!(config.notify_limit, 100);
}

#[test]
fn undeliverable_defaults_and_rules() {
    let (config, _) = check("ExtWrtName W\nTargetServer\n{\n TargetIp 192.0.2.1\n}\n");
    let config = config.unwrap();
    assert!(config.undeliverable.return_to_mail_from);
    assert_eq!(
        config.undeliverable.dead_letter_action,
        DeadLetterAction::Store
    );
    assert_eq!(
        config.dead_letter_directory(),
        Path::new("/var/spool/cssmtp/W/deadletter")
    );
    assert!(config.extended_retry.is_none(), "inactive when absent");
    assert_eq!(config.report, Report::File);
    assert_eq!(config.notify_limit, 600);

    let (config, _) =
        check("TargetServer\n{\n TargetIp 192.0.2.1\n}\nExtendedRetry\n{\n  Interval 0\n}\n");
    assert!(
        config.unwrap().extended_retry.is_none(),
        "Interval 0 bypasses extended retry"
    );

    let (config, diags) = check(
        "TargetServer\n{\n TargetIp 192.0.2.1\n}\nReport Admin\nMailAdministrator not-a-mailbox\n",
    );
    assert!(config.is_none());
    assert_eq!(
        diags,
        vec![
            "/etc/cssmtp/cssmtp.conf:5: error: Report Admin needs at least one MailAdministrator statement",
            "/etc/cssmtp/cssmtp.conf:6: error: MailAdministrator \"not-a-mailbox\" is not a mailbox (user@host.domain)",
        ]
    );
}

/// Several parameters on one line, as the README's table shows, alone or mixed with
/// CSSMTP's one-per-line form.
#[test]
fn several_parameters_on_one_line() {
    let (config, diags) = check(
        "TargetServer { TargetIp 192.0.2.1  ConnectPort 2525 }
TargetServer
{
  TargetName relay2.corp.example  Secure Yes
  ConnectPort 587
}
RetryLimit { Count 5  Interval 1 }
Header { Date YES  UserInfo NO }
Timeout { DataTerm 600 ConnectRetry 60 }
Timeout {
  AnyCmd 60  MAILCmd 90
  RCPTCmd 120
}
Undeliverable { ReturnToMailFrom No DeadLetterAction Delete }
Options { NullTrnc DataLineTrunc }
SMF119 { Config Connect Mail No Stats yes }
",
    );
    assert!(diags.iter().all(|d| d.contains("given again")), "{diags:?}");
    let config = config.unwrap();
    let Targets::Hosts(hosts) = &config.targets else {
        panic!("hosts expected")
    };
    assert_eq!(hosts[0].host, TargetHost::Ip("192.0.2.1".parse().unwrap()));
    assert_eq!(hosts[0].port, 2525);
    assert_eq!((hosts[1].port, hosts[1].secure), (587, true));
    assert_eq!(config.retry_limit.count, 5);
    assert_eq!(config.retry_limit.interval, Duration::from_secs(60));
    assert!(config.header.date && !config.header.user_info);
    // The second Timeout statement is the one used.
    assert_eq!(config.timeouts.any_cmd, Duration::from_secs(60));
    assert_eq!(config.timeouts.mail_cmd, Duration::from_secs(90));
    assert_eq!(config.timeouts.rcpt_cmd, Duration::from_secs(120));
    assert!(!config.undeliverable.return_to_mail_from);
    assert_eq!(
        config.undeliverable.dead_letter_action,
        DeadLetterAction::Delete
    );
    assert!(config.options.null_trnc && config.options.data_line_trunc);
    assert!(!config.options.test_mode);
    let smf = &config.smf119;
    assert!(smf.config && smf.connect && !smf.mail && smf.stats && !smf.spool);

    let (config, diags) =
        check("TargetServer { TargetIp 192.0.2.1 }\nTimeout { DataTerm 600 ConnectRetry 60 }\n");
    assert!(diags.is_empty(), "{diags:?}");
    let config = config.unwrap();
    assert_eq!(config.timeouts.data_term, Duration::from_secs(600));
    assert_eq!(config.timeouts.connect_retry, Duration::from_secs(60));
}

/// A wrong keyword in the middle of a line is named, with its line and a suggestion;
/// a missing value at the end of a line too.
#[test]
fn one_line_blocks_report_each_problem_with_its_line() {
    let (config, diags) = check(
        "TargetServer { TargetIp 192.0.2.1 }
RetryLimit { Count 5  Intreval 1 }
Header { Date YES  UserInfo }
Undeliverable
{
  ReturnToMailFrom Yes DeadLetterAktion Store
}
Options { NullTrnc Maybe }
",
    );
    assert!(config.is_none());
    assert_eq!(
        diags,
        vec![
            "/etc/cssmtp/cssmtp.conf:2: error: unknown parameter Intreval in RetryLimit (did you mean Interval?) (known: Count, Interval)",
            "/etc/cssmtp/cssmtp.conf:3: error: UserInfo in Header needs a value",
            "/etc/cssmtp/cssmtp.conf:6: error: unknown parameter DeadLetterAktion in Undeliverable (did you mean DeadLetterAction?) (known: ReturnToMailFrom, DeadLetterAction, DeadLetterDirectory, ReturnContent)",
            "/etc/cssmtp/cssmtp.conf:8: error: unknown parameter Maybe in Options (known: NullTrnc, TestMode, DataLineTrunc, BlankTrnc, AtSign, ReplaceSubjectAtSign, SmtpUtf8, TLSEhlo)",
        ]
    );
}

#[test]
fn blank_trnc_choices() {
    let (config, diags) = check("TargetServer { TargetIp 192.0.2.1 }\n");
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(
        config.unwrap().options.blank_trnc,
        cssmtp_batch::BlankTrnc::Auto
    );
    for (word, value) in [
        ("yes", cssmtp_batch::BlankTrnc::Yes),
        ("No", cssmtp_batch::BlankTrnc::No),
        ("AUTO", cssmtp_batch::BlankTrnc::Auto),
    ] {
        let (config, diags) = check(&format!(
            "TargetServer {{ TargetIp 192.0.2.1 }}\nOptions {{ NullTrnc BlankTrnc {word} }}\n"
        ));
        assert!(diags.is_empty(), "{diags:?}");
        let config = config.unwrap();
        assert_eq!(config.options.blank_trnc, value);
        assert!(config.options.null_trnc);
    }
    let (config, diags) =
        check("TargetServer { TargetIp 192.0.2.1 }\nOptions { BlankTrnc Sometimes }\n");
    assert!(config.is_none());
    assert_eq!(
        diags,
        vec![
            "/etc/cssmtp/cssmtp.conf:2: error: Options BlankTrnc must be Auto, Yes or No, not \"Sometimes\""
        ]
    );
}

#[test]
fn per_target_session_limits() {
    let (config, _) = check(
        "TargetServer {\n TargetIp 192.0.2.1\n MaxMailsPerSession 10\n MaxRcptsPerMail 20\n}\n",
    );
    let Some(Config {
        targets: Targets::Hosts(hosts),
        ..
    }) = config
    else {
        panic!()
    };
    assert_eq!((hosts[0].max_mails, hosts[0].max_rcpts), (10, 20));
    let (config, diags) =
        check("TargetServer {\n TargetIp 192.0.2.1\n MaxRcptsPerMail 100001\n}\n");
    assert!(config.is_none(), "{diags:?}");
}

#[test]
fn per_target_max_connections() {
    let (config, _) = check("TargetServer {\n TargetIp 192.0.2.1\n MaxConnections 2\n}\n");
    let Some(Config {
        targets: Targets::Hosts(hosts),
        ..
    }) = config
    else {
        panic!()
    };
    assert_eq!(hosts[0].max_connections, 2);
    let (config, _) = check("TargetServer {\n TargetIp 192.0.2.1\n}\n");
    let Some(Config {
        targets: Targets::Hosts(hosts),
        ..
    }) = config
    else {
        panic!()
    };
    assert_eq!(
        hosts[0].max_connections, 0,
        "no per-target limit by default"
    );
    for bad in ["0", "1025", "many"] {
        let (config, diags) = check(&format!(
            "TargetServer {{\n TargetIp 192.0.2.1\n MaxConnections {bad}\n}}\n"
        ));
        assert!(config.is_none(), "{bad}: {diags:?}");
    }
    let (config, _) = check("TargetServer {\n TargetIp 192.0.2.1\n MaxConnections 1024\n}\n");
    assert!(config.is_some());
}
