//! The configuration as it runs: shown as statements (DISPLAY CONFIG), and merged with a
//! newly read file (REFRESH). Pure.

use std::fmt::Write as _;
use std::time::Duration;

use super::{BadSpoolDisp, Config, DeadLetterAction, Report, ReturnContent, Targets};

fn yes(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// The configuration in force as statements, one per line (blocks on one line).
pub fn render(c: &Config) -> Vec<String> {
    let mut out = vec![
        format!("ExtWrtName {}", c.ext_wrt_name),
        format!("SpoolDirectory {}", c.spool_directory.display()),
        format!("RunDirectory {}", c.run_directory.display()),
        format!(
            "HostName {}",
            c.host_name.as_deref().unwrap_or("(the system's name)")
        ),
    ];
    let targets = match &c.targets {
        Targets::Hosts(hosts) => hosts.clone(),
        Targets::Mx(mx) => vec![mx.clone()],
    };
    for t in targets {
        let mut line = format!(
            "TargetServer {{ {} ConnectPort {} Secure {} MessageSize {} MaxMailsPerSession {} MaxRcptsPerMail {}",
            t.host,
            t.port,
            yes(t.secure),
            t.message_size,
            t.max_mails,
            t.max_rcpts
        );
        if t.max_connections > 0 {
            let _ = write!(line, " MaxConnections {}", t.max_connections);
        }
        if let Some(name) = &t.tls_name {
            let _ = write!(line, " TlsName {name}");
        }
        line.push_str(" }");
        out.push(line);
    }
    let t = &c.timeouts;
    out.push(format!(
        "Timeout {{ InitialMsg {} AnyCmd {} MAILCmd {} RCPTCmd {} DATACmd {} DataBlock {} DataTerm {} ConnectRetry {} }}",
        secs(t.initial_msg),
        secs(t.any_cmd),
        secs(t.mail_cmd),
        secs(t.rcpt_cmd),
        secs(t.data_cmd),
        secs(t.data_block),
        secs(t.data_term),
        secs(t.connect_retry)
    ));
    out.push(format!(
        "Header {{ Date {} UserInfo {} }}",
        yes(c.header.date),
        yes(c.header.user_info)
    ));
    out.push(format!("JESSyntaxErrLimit {}", c.jes_syntax_err_limit));
    out.push(format!("JESMsgSize {}", c.jes_msg_size));
    out.push(format!("JESJobSize {}", c.jes_job_size));
    out.push(format!(
        "RetryLimit {{ Count {} Interval {} }}",
        c.retry_limit.count,
        c.retry_limit.interval.as_secs() / 60
    ));
    out.push(format!(
        "Options {{ NullTrnc {} DataLineTrunc {} BlankTrnc {} TestMode {} }}",
        yes(c.options.null_trnc),
        yes(c.options.data_line_trunc),
        match c.options.blank_trnc {
            cssmtp_batch::BlankTrnc::Auto => "Auto",
            cssmtp_batch::BlankTrnc::Yes => "Yes",
            cssmtp_batch::BlankTrnc::No => "No",
        },
        yes(c.options.test_mode)
    ));
    out.push(format!(
        "BadSpoolDisp {}",
        match c.bad_spool_disp {
            BadSpoolDisp::Hold => "Hold",
            BadSpoolDisp::Delete => "Delete",
        }
    ));
    let u = &c.undeliverable;
    out.push(format!(
        "Undeliverable {{ ReturnToMailFrom {} DeadLetterAction {} DeadLetterDirectory {} ReturnContent {} }}",
        yes(u.return_to_mail_from),
        match u.dead_letter_action {
            DeadLetterAction::Store => "Store",
            DeadLetterAction::Delete => "Delete",
        },
        c.dead_letter_directory().display(),
        match u.return_content {
            ReturnContent::Headers => "Headers",
            ReturnContent::Full => "Full",
        }
    ));
    match &c.extended_retry {
        Some(e) => out.push(format!(
            "ExtendedRetry {{ Age {} Interval {} MailDirectory {} }}",
            e.age.as_secs() / 86_400,
            e.interval.as_secs() / 60,
            c.mail_directory().display()
        )),
        None => out.push("ExtendedRetry (inactive)".into()),
    }
    for admin in &c.mail_administrators {
        out.push(format!("MailAdministrator {admin}"));
    }
    out.push(format!(
        "Report {}",
        match c.report {
            Report::Admin => "Admin",
            Report::File => "File",
            Report::None => "None",
        }
    ));
    out.push(format!(
        "ReportMailFrom <{}>",
        c.report_mail_from.as_deref().unwrap_or("")
    ));
    out.push(format!("NotifyLimit {}", c.notify_limit));
    out.push(format!("SpoolTasks {}", c.spool_tasks));
    out.push(format!("MaxConnections {}", c.max_connections));
    for ca in &c.tls_ca_files {
        out.push(format!("TlsCaFile {}", ca.display()));
    }
    for ns in &c.name_servers {
        out.push(format!("NameServer {ns}"));
    }
    out.push(format!("ChkPoint {}", yes(c.chk_point)));
    out.push(format!(
        "ChkPointDirectory {}",
        c.journal_path()
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    ));
    out.push(format!("ChkPointSizeLimit {}", c.chk_point_size_limit));
    out.push(format!(
        "ChkPointSync {}",
        if c.chk_point_sync_each_mail {
            "Mail"
        } else {
            "Interval"
        }
    ));
    out.push(format!(
        "PossiblyDelivered {}",
        match c.possibly_delivered {
            super::PossiblyDelivered::Resend => "Resend",
            super::PossiblyDelivered::Hold => "Hold",
        }
    ));
    out.push(format!("LogLevel {}", c.log_level));
    let s = &c.smf119;
    let records: Vec<&str> = [
        (s.config, "Config"),
        (s.connect, "Connect"),
        (s.mail, "Mail"),
        (s.spool, "Spool"),
        (s.stats, "Stats"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| *name)
    .collect();
    out.push(format!("SMF119 {{ {} }}", records.join(" ")));
    out.push(format!("AccountingFile {}", c.accounting_path().display()));
    out.push(format!("StatsInterval {}", c.stats_interval.as_secs() / 60));
    out.push(format!(
        "MetricsListen {}",
        c.metrics_listen
            .map_or_else(|| "(none)".to_owned(), |a| a.to_string())
    ));
    out
}

/// Merges a newly read configuration into the running one for REFRESH: statements that
/// cannot change without a restart keep their running value, each with a warning.
pub fn merge(running: &Config, mut new: Config) -> (Config, Vec<String>) {
    let mut warnings = Vec::new();
    macro_rules! keep {
        ($($field:ident).+, $name:expr) => {
            if new.$($field).+ != running.$($field).+ {
                warnings.push(format!(
                    "{} cannot change without a restart; the running value is kept",
                    $name
                ));
                new.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    keep!(ext_wrt_name, "ExtWrtName");
    keep!(spool_directory, "SpoolDirectory");
    keep!(run_directory, "RunDirectory");
    keep!(host_name, "HostName");
    keep!(timeouts, "Timeout");
    keep!(spool_tasks, "SpoolTasks");
    keep!(max_connections, "MaxConnections");
    keep!(tls_ca_files, "TlsCaFile");
    keep!(name_servers, "NameServer");
    keep!(extended_retry, "ExtendedRetry");
    keep!(notify_limit, "NotifyLimit");
    keep!(chk_point, "ChkPoint");
    keep!(chk_point_directory, "ChkPointDirectory");
    keep!(chk_point_size_limit, "ChkPointSizeLimit");
    keep!(chk_point_sync_each_mail, "ChkPointSync");
    keep!(options.test_mode, "Options TestMode");
    keep!(accounting_file, "AccountingFile");
    keep!(stats_interval, "StatsInterval");
    keep!(metrics_listen, "MetricsListen");
    (new, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        let (config, diagnostics) = super::super::validate(
            Path::new("/etc/cssmtp/cssmtp.conf"),
            &format!("TargetServer\n{{\n  TargetIp 192.0.2.1\n}}\n{text}"),
        );
        config.unwrap_or_else(|| panic!("{diagnostics:?}"))
    }

    #[test]
    fn refresh_keeps_what_needs_a_restart() {
        let running = config("SpoolTasks 8\nRetryLimit\n{\n  Count 3\n}\n");
        let new = config("SpoolTasks 2\nRetryLimit\n{\n  Count 9\n}\nLogLevel 31\n");
        let (merged, warnings) = merge(&running, new);
        assert_eq!(merged.spool_tasks, 8);
        assert_eq!(merged.retry_limit.count, 9);
        assert_eq!(merged.log_level, 31);
        assert_eq!(
            warnings,
            ["SpoolTasks cannot change without a restart; the running value is kept"]
        );
    }

    #[test]
    fn rendered_statements_read_back() {
        let lines = render(&config("LogLevel 15\nSMF119\n{\n  Mail\n  Spool\n}\n"));
        assert!(lines.contains(&"LogLevel 15".to_string()), "{lines:#?}");
        assert!(
            lines.contains(&"SMF119 { Mail Spool }".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("TargetServer { TargetIp 192.0.2.1 ConnectPort 25")),
            "{lines:#?}"
        );
    }
}
