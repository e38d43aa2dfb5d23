//! The configuration as it runs: shown as statements (DISPLAY CONFIG), and merged with a
//! newly read file (REFRESH). Pure.

use super::Config;
use super::statements::STATEMENTS;
use super::table::{Form, Refresh, Show, block_line};

/// The configuration in force as statements, one per line (blocks on one line), in the
/// order of the statement table.
pub fn render(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for def in STATEMENTS {
        match (&def.show, &def.form) {
            (Show::Value(value), _) => out.push(format!("{} {}", def.name, value(c))),
            (Show::Each(values), _) => {
                out.extend(values(c).into_iter().map(|v| format!("{} {v}", def.name)));
            }
            (Show::Params, Form::Block(block)) => out.push(block_line(def.name, block.params, c)),
            (Show::Lines(lines), _) => out.extend(lines(c)),
            _ => {}
        }
    }
    out
}

/// The statements (and block parameters) REFRESH cannot change, with how to compare
/// and keep them, in table order.
fn restart_only() -> impl Iterator<Item = (String, &'static Refresh)> {
    STATEMENTS.iter().flat_map(|def| {
        let params: Vec<(String, &'static Refresh)> = match &def.form {
            Form::Block(block) => block
                .params
                .iter()
                .map(|p| (format!("{} {}", def.name, p.name), &p.refresh))
                .collect(),
            _ => Vec::new(),
        };
        std::iter::once((def.name.to_owned(), &def.refresh))
            .chain(params)
            .filter(|(_, refresh)| matches!(refresh, Refresh::Restart { .. }))
    })
}

/// The names of the statements (`Options TestMode` for a parameter) that REFRESH
/// cannot change, in table order.
#[cfg(test)]
pub fn restart_only_names() -> Vec<String> {
    restart_only().map(|(name, _)| name).collect()
}

/// Merges a newly read configuration into the running one for REFRESH: statements that
/// cannot change without a restart keep their running value, each with a warning.
pub fn merge(running: &Config, mut new: Config) -> (Config, Vec<String>) {
    let mut warnings = Vec::new();
    for (name, refresh) in restart_only() {
        if let Refresh::Restart { same, keep } = refresh
            && !same(&new, running)
        {
            warnings.push(format!(
                "{name} cannot change without a restart; the running value is kept"
            ));
            keep(&mut new, running);
        }
    }
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

    /// A change of each statement (and restart-only parameter) in the file: a
    /// restart-only one is kept with its warning, a live one is taken. Every statement
    /// of the table must have a sample here, so a new one is checked too.
    #[test]
    fn each_statement_is_live_or_kept_as_the_table_says() {
        let samples = [
            ("ExtWrtName", "ExtWrtName OTHER"),
            ("SpoolDirectory", "SpoolDirectory /srv/spool"),
            ("RunDirectory", "RunDirectory /srv/run"),
            ("HostName", "HostName other.example"),
            ("TargetServer", "TargetServer { TargetIp 192.0.2.9 }"),
            ("Timeout", "Timeout { AnyCmd 60 }"),
            ("Header", "Header { Date No }"),
            ("JESSyntaxErrLimit", "JESSyntaxErrLimit 9"),
            ("JESMsgSize", "JESMsgSize 10"),
            ("JESJobSize", "JESJobSize 10"),
            ("RetryLimit", "RetryLimit { Count 2 }"),
            ("Options", "Options { NullTrnc }"),
            ("Options TestMode", "Options { TestMode }"),
            ("BadSpoolDisp", "BadSpoolDisp Delete"),
            ("Undeliverable", "Undeliverable { ReturnContent Full }"),
            ("ExtendedRetry", "ExtendedRetry { Interval 60 }"),
            ("MailAdministrator", "MailAdministrator a@b.example"),
            ("PermitUser", "PermitUser alice"),
            ("PermitGroup", "PermitGroup batch"),
            ("Report", "Report None"),
            ("ReportMailFrom", "ReportMailFrom x@y.example"),
            ("NotifyLimit", "NotifyLimit 5"),
            ("SendmailStartTls", "SendmailStartTls Yes"),
            ("Translate", "Translate IBM-037"),
            ("RecordLength", "RecordLength 133"),
            (
                "UserExit",
                "UserExit { Program /usr/local/lib/cssmtp/exit }",
            ),
            ("SpoolTasks", "SpoolTasks 2"),
            ("MaxConnections", "MaxConnections 3"),
            ("TlsCaFile", "TlsCaFile /etc/ca.pem"),
            ("NameServer", "NameServer 127.0.0.2"),
            ("SourceAddress", "SourceAddress 127.0.0.3"),
            (
                "DkimKey",
                "DkimKey { Domain a.example Selector s KeyFile /etc/k.pem }",
            ),
            ("DkimHeaders", "DkimHeaders From:Subject"),
            ("DkimCanonicalization", "DkimCanonicalization simple/simple"),
            ("ChkPoint", "ChkPoint No"),
            ("ChkPointDirectory", "ChkPointDirectory /srv/cp"),
            ("ChkPointSizeLimit", "ChkPointSizeLimit 200"),
            ("ChkPointSync", "ChkPointSync Mail"),
            ("PossiblyDelivered", "PossiblyDelivered Hold"),
            ("LogLevel", "LogLevel 31"),
            ("SMF119", "SMF119 { Mail }"),
            ("AccountingFile", "AccountingFile /srv/acct"),
            ("StatsInterval", "StatsInterval 5"),
            ("MetricsListen", "MetricsListen 9999"),
            (
                "SpoolDatabase",
                "SpoolDatabase postgresql://cssmtp@db.example/spool",
            ),
            (
                "SpoolDatabasePasswordFile",
                "SpoolDatabasePasswordFile /etc/pw",
            ),
            ("SpoolDatabaseLease", "SpoolDatabaseLease 30"),
            ("SpoolDatabaseInstance", "SpoolDatabaseInstance host-b"),
        ];
        let restart = restart_only_names();
        let mut names: Vec<String> = STATEMENTS
            .iter()
            .filter(|d| !matches!(d.form, Form::NotYet))
            .map(|d| d.name.to_owned())
            .chain(restart.iter().filter(|n| n.contains(' ')).cloned())
            .collect();
        let mut sampled: Vec<String> = samples.iter().map(|(n, _)| (*n).to_owned()).collect();
        names.sort();
        sampled.sort();
        assert_eq!(names, sampled, "a sample for each statement");
        let running = config("");
        for (name, text) in samples {
            let new = config(&format!("{text}\n"));
            assert_ne!(new, running, "{name}: the sample changes nothing");
            let (merged, warnings) = merge(&running, new.clone());
            if restart.iter().any(|n| n == name) {
                assert_eq!(
                    warnings,
                    [format!(
                        "{name} cannot change without a restart; the running value is kept"
                    )]
                );
                assert_eq!(merged, running, "{name} is kept");
            } else {
                assert_eq!(warnings, Vec::<String>::new(), "{name} is live");
                assert_eq!(merged, new, "{name} is taken");
            }
        }
    }
}
