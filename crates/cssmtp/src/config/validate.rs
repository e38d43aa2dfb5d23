//! Statements → [`Config`], with every diagnostic at once. Pure: no I/O.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::syntax::{self, Param, Statement, Word};
use super::{
    BadSpoolDisp, Config, DEFAULT_EXT_WRT_NAME, DEFAULT_RUN_DIRECTORY, DEFAULT_SPOOL_DIRECTORY,
    DeadLetterAction, Diagnostic, ExtendedRetry, Header, Options, PossiblyDelivered, Report,
    RetryLimit, ReturnContent, Severity, TargetHost, TargetSpec, Targets, Timeouts, Undeliverable,
};

/// Top-level statements cssmtp knows, in their documented spelling.
const STATEMENTS: &[&str] = &[
    "ExtWrtName",
    "SpoolDirectory",
    "RunDirectory",
    "HostName",
    "TargetServer",
    "Timeout",
    "Header",
    "JESSyntaxErrLimit",
    "JESMsgSize",
    "JESJobSize",
    "RetryLimit",
    "Options",
    "BadSpoolDisp",
    "SpoolTasks",
    "MaxConnections",
    "TlsCaFile",
    "NameServer",
    "ExtendedRetry",
    "Undeliverable",
    "MailAdministrator",
    "Report",
    "ReportMailFrom",
    "NotifyLimit",
    "ChkPoint",
    "ChkPointDirectory",
    "ChkPointSizeLimit",
    "PossiblyDelivered",
    "ChkPointSync",
    "LogLevel",
    "SMF119",
    "AccountingFile",
    "StatsInterval",
    "MetricsListen",
];

/// CSSMTP statements that are recognised but have no effect yet.
const NOT_YET: &[&str] = &["Translate", "MBCS", "UserExit"];

/// Validates the text of a configuration file read from `file`.
///
/// Returns the configuration when there is no error, and every diagnostic (errors and
/// warnings) in line order.
pub fn validate(file: &Path, text: &str) -> (Option<Config>, Vec<Diagnostic>) {
    let (statements, problems) = syntax::parse(text);
    let mut v = Validator::new(file);
    for problem in problems {
        v.error(problem.line, problem.message);
    }
    for statement in &statements {
        v.statement(statement);
    }
    v.finish()
}

struct Validator {
    file: PathBuf,
    base: PathBuf,
    diagnostics: Vec<Diagnostic>,
    seen: HashSet<String>,
    ext_wrt_name: Option<String>,
    spool_directory: Option<PathBuf>,
    run_directory: Option<PathBuf>,
    host_name: Option<String>,
    hosts: Vec<TargetSpec>,
    mx: Vec<TargetSpec>,
    target_statements: u32,
    timeouts: Timeouts,
    header: Header,
    jes_syntax_err_limit: u32,
    jes_msg_size: u64,
    jes_job_size: u64,
    retry_limit: RetryLimit,
    options: Options,
    bad_spool_disp: BadSpoolDisp,
    spool_tasks: usize,
    max_connections: usize,
    tls_ca_files: Vec<PathBuf>,
    name_servers: Vec<SocketAddr>,
    undeliverable: Undeliverable,
    extended_retry: Option<ExtendedRetry>,
    mail_administrators: Vec<(String, u32)>,
    report: Option<(Report, u32)>,
    report_mail_from: Option<String>,
    notify_limit: u32,
    chk_point: bool,
    chk_point_directory: Option<PathBuf>,
    chk_point_size_limit: u32,
    possibly_delivered: PossiblyDelivered,
    chk_point_sync_each_mail: bool,
    log_level: u32,
    smf119: super::Smf119,
    accounting_file: Option<PathBuf>,
    stats_interval: Duration,
    metrics_listen: Option<SocketAddr>,
}

impl Validator {
    fn new(file: &Path) -> Self {
        let base = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self {
            file: file.to_owned(),
            base,
            diagnostics: Vec::new(),
            seen: HashSet::new(),
            ext_wrt_name: None,
            spool_directory: None,
            run_directory: None,
            host_name: None,
            hosts: Vec::new(),
            mx: Vec::new(),
            target_statements: 0,
            timeouts: Timeouts::default(),
            header: Header::default(),
            jes_syntax_err_limit: 5,
            jes_msg_size: 0,
            jes_job_size: 0,
            retry_limit: RetryLimit::default(),
            options: Options::default(),
            bad_spool_disp: BadSpoolDisp::Hold,
            spool_tasks: 8,
            max_connections: 16,
            tls_ca_files: Vec::new(),
            name_servers: Vec::new(),
            undeliverable: Undeliverable::default(),
            extended_retry: None,
            mail_administrators: Vec::new(),
            report: None,
            report_mail_from: None,
            notify_limit: 600,
            chk_point: true,
            chk_point_directory: None,
            chk_point_size_limit: 64_000,
            possibly_delivered: PossiblyDelivered::Resend,
            chk_point_sync_each_mail: false,
            log_level: crate::logging::DEFAULT,
            smf119: super::Smf119::default(),
            accounting_file: None,
            stats_interval: Duration::from_secs(15 * 60),
            metrics_listen: None,
        }
    }

    fn push(&mut self, severity: Severity, line: u32, message: String) {
        self.diagnostics.push(Diagnostic {
            severity,
            file: self.file.clone(),
            line,
            message,
        });
    }

    fn error(&mut self, line: u32, message: impl Into<String>) {
        self.push(Severity::Error, line, message.into());
    }

    fn warning(&mut self, line: u32, message: impl Into<String>) {
        self.push(Severity::Warning, line, message.into());
    }

    fn statement(&mut self, s: &Statement) {
        let key = s.keyword.text.to_ascii_lowercase();
        let line = s.keyword.line;
        let Some(name) = STATEMENTS
            .iter()
            .chain(NOT_YET)
            .find(|n| n.eq_ignore_ascii_case(&key))
        else {
            let hint = suggest(&s.keyword.text, STATEMENTS.iter().chain(NOT_YET));
            self.error(line, format!("unknown statement {}{hint}", s.keyword.text));
            return;
        };
        let repeatable = [
            "targetserver",
            "tlscafile",
            "nameserver",
            "mailadministrator",
        ];
        if !repeatable.contains(&key.as_str()) && !self.seen.insert(key.clone()) {
            self.warning(line, format!("{name} given again; this later one is used"));
        }
        if NOT_YET.contains(name) {
            self.warning(
                line,
                format!(
                    "{name} is a CSSMTP statement cssmtp does not implement yet; it is ignored"
                ),
            );
            return;
        }
        match key.as_str() {
            "targetserver" => self.target_server(s),
            "timeout" => self.timeout(s),
            "header" => self.header(s),
            "retrylimit" => self.retry_limit(s),
            "options" => self.options(s),
            "undeliverable" => self.undeliverable(s),
            "extendedretry" => self.extended_retry(s),
            "smf119" => self.smf119(s),
            _ => self.simple(name, &key, s),
        }
    }

    /// Statements of the form `Keyword value`.
    fn simple(&mut self, name: &str, key: &str, s: &Statement) {
        let Some(value) = self.one_value(name, s) else {
            return;
        };
        let text = value.text.as_str();
        let line = value.line;
        match key {
            "extwrtname" => {
                let ok = !text.is_empty()
                    && text.len() <= 32
                    && text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "$#@_-".contains(c));
                if ok {
                    self.ext_wrt_name = Some(text.to_ascii_uppercase());
                } else {
                    self.error(
                        line,
                        format!("ExtWrtName {text:?} must be 1 to 32 letters, digits or $ # @ _ -"),
                    );
                }
            }
            "spooldirectory" => self.spool_directory = self.path(value),
            "rundirectory" => self.run_directory = self.path(value),
            "tlscafile" => {
                if let Some(path) = self.path(value) {
                    self.tls_ca_files.push(path);
                }
            }
            "hostname" => {
                if cssmtp_batch::address::valid_domain(text) {
                    self.host_name = Some(text.to_owned());
                } else {
                    self.error(
                        line,
                        format!("HostName {text:?} is not a valid domain name"),
                    );
                }
            }
            "jessyntaxerrlimit" => {
                if let Some(n) = self.number(value, 0, 999, name) {
                    self.jes_syntax_err_limit = n as u32;
                }
            }
            "jesmsgsize" => {
                if let Some(n) = self.number(value, 0, 2_000_000_000, name) {
                    self.jes_msg_size = n;
                }
            }
            "jesjobsize" => {
                if let Some(n) = self.number(value, 0, 2_000_000_000, name) {
                    self.jes_job_size = n;
                }
            }
            "spooltasks" => {
                if let Some(n) = self.number(value, 1, 256, name) {
                    self.spool_tasks = n as usize;
                }
            }
            "maxconnections" => {
                if let Some(n) = self.number(value, 1, 1024, name) {
                    self.max_connections = n as usize;
                }
            }
            "chkpoint" => {
                if let Some(b) = self.yes_no(value, name) {
                    self.chk_point = b;
                }
            }
            "chkpointdirectory" => self.chk_point_directory = self.path(value),
            "chkpointsizelimit" => {
                if let Some(n) = self.number(value, 100, 10_000_000, name) {
                    self.chk_point_size_limit = n as u32;
                }
            }
            "possiblydelivered" => match text.to_ascii_lowercase().as_str() {
                "resend" => self.possibly_delivered = PossiblyDelivered::Resend,
                "hold" => self.possibly_delivered = PossiblyDelivered::Hold,
                _ => self.error(
                    line,
                    format!("PossiblyDelivered must be Resend or Hold, not {text:?}"),
                ),
            },
            "loglevel" => {
                if let Some(n) = self.number(value, 0, 31, name) {
                    self.log_level = n as u32;
                }
            }
            "accountingfile" => self.accounting_file = self.path(value),
            "statsinterval" => {
                if let Some(n) = self.number(value, 0, 1440, "StatsInterval (minutes)") {
                    self.stats_interval = Duration::from_secs(n * 60);
                }
            }
            "metricslisten" => {
                // `port`, `address:port` or `[v6]:port`; a port alone listens on loopback.
                let addr = text
                    .parse::<u16>()
                    .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
                    .or_else(|_| text.parse::<SocketAddr>());
                match addr {
                    Ok(addr) => self.metrics_listen = Some(addr),
                    Err(_) => self.error(
                        line,
                        format!("MetricsListen must be a port or address:port, not {text:?}"),
                    ),
                }
            }
            "chkpointsync" => match text.to_ascii_lowercase().as_str() {
                "mail" => self.chk_point_sync_each_mail = true,
                "interval" => self.chk_point_sync_each_mail = false,
                _ => self.error(
                    line,
                    format!("ChkPointSync must be Interval or Mail, not {text:?}"),
                ),
            },
            "notifylimit" => {
                if let Some(n) = self.number(value, 0, 1_000_000, name) {
                    self.notify_limit = n as u32;
                }
            }
            "mailadministrator" => {
                if let Some(mailbox) = self.mailbox(value, name) {
                    if let Some((_, first)) =
                        self.mail_administrators.iter().find(|(m, _)| *m == mailbox)
                    {
                        let first = *first;
                        self.warning(
                            line,
                            format!("MailAdministrator {mailbox} duplicates line {first}; ignored"),
                        );
                    } else if self.mail_administrators.len() == 4 {
                        self.warning(line, format!("only the first four MailAdministrator statements are used; ignoring {mailbox}"));
                    } else {
                        self.mail_administrators.push((mailbox, line));
                    }
                }
            }
            "reportmailfrom" => {
                if let Some(mailbox) = self.mailbox(value, name) {
                    self.report_mail_from = Some(mailbox);
                }
            }
            "report" => match text.to_ascii_lowercase().as_str() {
                "admin" => self.report = Some((Report::Admin, line)),
                "file" | "sysout" => self.report = Some((Report::File, line)),
                "none" => self.report = Some((Report::None, line)),
                _ => self.error(
                    line,
                    format!("Report must be Admin, File or None, not {text:?}"),
                ),
            },
            "badspooldisp" => match text.to_ascii_lowercase().as_str() {
                "hold" => self.bad_spool_disp = BadSpoolDisp::Hold,
                "delete" => self.bad_spool_disp = BadSpoolDisp::Delete,
                _ => self.error(
                    line,
                    format!("BadSpoolDisp must be Hold or Delete, not {text:?}"),
                ),
            },
            "nameserver" => {
                let parsed = text.parse::<SocketAddr>().ok().or_else(|| {
                    text.parse::<IpAddr>()
                        .ok()
                        .map(|ip| SocketAddr::new(ip, 53))
                });
                match parsed {
                    Some(addr) => self.name_servers.push(addr),
                    None => self.error(
                        line,
                        format!(
                            "NameServer {text:?} is not an IP address (or ip:port, [ipv6]:port)"
                        ),
                    ),
                }
            }
            _ => self.error(
                line,
                format!("{name} needs a block of parameters in braces"),
            ),
        }
    }

    fn one_value<'s>(&mut self, name: &str, s: &'s Statement) -> Option<&'s Word> {
        if s.block.is_some() {
            self.error(s.keyword.line, format!("{name} takes a value, not a block"));
            return None;
        }
        match s.values.as_slice() {
            [value] => Some(value),
            [] => {
                self.error(s.keyword.line, format!("{name} needs a value"));
                None
            }
            [_, extra, ..] => {
                self.error(
                    extra.line,
                    format!("{name} takes one value; unexpected {:?}", extra.text),
                );
                None
            }
        }
    }

    fn block<'s>(&mut self, name: &str, s: &'s Statement) -> &'s [Param] {
        if !s.values.is_empty() {
            self.error(
                s.keyword.line,
                format!("{name} takes a block of parameters in braces, not values"),
            );
        }
        match &s.block {
            Some(params) => params,
            None => {
                if s.values.is_empty() {
                    self.error(
                        s.keyword.line,
                        format!("{name} needs a block of parameters in braces"),
                    );
                }
                &[]
            }
        }
    }

    fn param_value<'p>(&mut self, owner: &str, p: &Part<'p>) -> Option<&'p Word> {
        match p.values {
            [value] => Some(value),
            [] => {
                self.error(
                    p.keyword.line,
                    format!("{} in {owner} needs a value", p.keyword.text),
                );
                None
            }
            [_, extra, ..] => {
                self.error(
                    extra.line,
                    format!(
                        "{} in {owner} takes one value; unexpected {:?}",
                        p.keyword.text, extra.text
                    ),
                );
                None
            }
        }
    }

    fn unknown_param(&mut self, owner: &str, keyword: &Word, known: &[&str]) {
        let hint = suggest(&keyword.text, known.iter());
        self.error(
            keyword.line,
            format!(
                "unknown parameter {} in {owner}{hint} (known: {})",
                keyword.text,
                known.join(", ")
            ),
        );
    }

    /// The parameters of a block statement, each with its documented name and the words
    /// that are its values. A line may hold several parameters (`Count 5  Interval 1`,
    /// as well as one per line, CSSMTP's form): it is split by each parameter's arity.
    /// An unknown keyword is reported and the rest of its line skipped (its arity, and
    /// so where the next parameter starts, is unknown).
    fn parts<'s>(
        &mut self,
        owner: &str,
        s: &'s Statement,
        known: &[&'static str],
        arity: impl Fn(&str) -> Arity,
    ) -> Vec<(&'static str, Part<'s>)> {
        let mut out = Vec::new();
        for p in self.block(owner, s) {
            let mut keyword = &p.keyword;
            let mut rest = p.values.as_slice();
            loop {
                let Some(name) = known.iter().find(|k| k.eq_ignore_ascii_case(&keyword.text))
                else {
                    self.unknown_param(owner, keyword, known);
                    break;
                };
                let take = match arity(name) {
                    Arity::One => rest.len().min(1),
                    Arity::OptionalYesNo => usize::from(rest.first().is_some_and(|w| {
                        w.text.eq_ignore_ascii_case("yes") || w.text.eq_ignore_ascii_case("no")
                    })),
                };
                let (values, after) = rest.split_at(take);
                out.push((*name, Part { keyword, values }));
                match after.split_first() {
                    Some((next, tail)) => {
                        keyword = next;
                        rest = tail;
                    }
                    None => break,
                }
            }
        }
        out
    }

    /// The parameters of a block whose parameters each take one value; unknown
    /// parameters and missing values are reported.
    fn params<'s>(
        &mut self,
        owner: &str,
        s: &'s Statement,
        known: &[&'static str],
    ) -> Vec<(&'static str, &'s Word)> {
        let mut out = Vec::new();
        for (name, part) in self.parts(owner, s, known, |_| Arity::One) {
            if let Some(value) = self.param_value(owner, &part) {
                out.push((name, value));
            }
        }
        out
    }

    fn number(&mut self, w: &Word, min: u64, max: u64, what: &str) -> Option<u64> {
        match w.text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    w.line,
                    format!(
                        "{what} must be a whole number from {min} to {max}, not {:?}",
                        w.text
                    ),
                );
                None
            }
        }
    }

    fn yes_no(&mut self, w: &Word, what: &str) -> Option<bool> {
        match w.text.to_ascii_lowercase().as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => {
                self.error(
                    w.line,
                    format!("{what} must be Yes or No, not {:?}", w.text),
                );
                None
            }
        }
    }

    fn path(&mut self, w: &Word) -> Option<PathBuf> {
        if w.text.is_empty() {
            self.error(w.line, "empty path");
            return None;
        }
        let path = Path::new(&w.text);
        Some(if path.is_absolute() {
            path.to_owned()
        } else {
            self.base.join(path)
        })
    }

    fn target_server(&mut self, s: &Statement) {
        self.target_statements += 1;
        const KNOWN: &[&str] = &[
            "TargetIp",
            "TargetName",
            "TargetMx",
            "ConnectPort",
            "Secure",
            "MessageSize",
            "MaxMailsPerSession",
            "MaxRcptsPerMail",
            "MaxConnections",
            "TlsName",
            "Charset",
            "MBCharset",
        ];
        let mut hosts: Vec<(TargetHost, u32)> = Vec::new();
        let mut port = 25u16;
        let mut secure = false;
        let mut message_size = 0u64;
        let mut max_mails = 0u32;
        let mut max_rcpts = 0u32;
        let mut max_connections = 0u32;
        let mut tls_name = None;
        for (name, value) in self.params("TargetServer", s, KNOWN) {
            let text = value.text.as_str();
            match name {
                "TargetIp" => match text.parse::<IpAddr>() {
                    Ok(ip) => hosts.push((TargetHost::Ip(ip), value.line)),
                    Err(_) => self.error(
                        value.line,
                        format!("TargetIp {text:?} is not an IPv4 or IPv6 address"),
                    ),
                },
                "TargetName" | "TargetMx" => {
                    if text.parse::<IpAddr>().is_ok() || !cssmtp_batch::address::valid_domain(text)
                    {
                        self.error(value.line, format!("{name} {text:?} is not a host name"));
                    } else if name == "TargetName" {
                        hosts.push((TargetHost::Name(text.to_ascii_lowercase()), value.line));
                    } else {
                        hosts.push((TargetHost::Mx(text.to_ascii_lowercase()), value.line));
                    }
                }
                "ConnectPort" => {
                    if let Some(n) = self.number(value, 1, 65535, "ConnectPort") {
                        port = n as u16;
                    }
                }
                "Secure" => {
                    if let Some(b) = self.yes_no(value, "Secure") {
                        secure = b;
                    }
                }
                "MessageSize" => {
                    if let Some(n) = self.number(value, 0, u64::from(u32::MAX), "MessageSize") {
                        message_size = n;
                    }
                }
                "MaxMailsPerSession" => {
                    if let Some(n) = self.number(value, 0, 100_000, "MaxMailsPerSession") {
                        max_mails = n as u32;
                    }
                }
                "MaxRcptsPerMail" => {
                    if let Some(n) = self.number(value, 0, 100_000, "MaxRcptsPerMail") {
                        max_rcpts = n as u32;
                    }
                }
                "MaxConnections" => {
                    if let Some(n) = self.number(value, 1, 1024, "MaxConnections") {
                        max_connections = n as u32;
                    }
                }
                "TlsName" => {
                    if cssmtp_batch::address::valid_domain(text) {
                        tls_name = Some(text.to_ascii_lowercase());
                    } else {
                        self.error(value.line, format!("TlsName {text:?} is not a host name"));
                    }
                }
                _ => self.warning(
                    value.line,
                    format!(
                        "{name} is accepted for compatibility; cssmtp sends mail text unchanged"
                    ),
                ),
            }
        }
        if hosts.is_empty() && s.block.is_some() {
            self.error(
                s.keyword.line,
                "TargetServer needs a TargetIp, TargetName or TargetMx parameter",
            );
        }
        for (host, line) in hosts {
            let spec = TargetSpec {
                host,
                port,
                secure,
                message_size,
                max_mails,
                max_rcpts,
                max_connections,
                tls_name: tls_name.clone(),
                line,
            };
            if matches!(spec.host, TargetHost::Mx(_)) {
                self.mx.push(spec);
            } else if let Some(previous) = self
                .hosts
                .iter()
                .find(|h| h.host == spec.host && h.port == spec.port)
            {
                // Unique by address and port: on Linux, servers on one IP address may
                // listen on different ports.
                let previous = previous.line;
                self.warning(
                    line,
                    format!(
                        "{} port {} duplicates line {previous}; ignored",
                        spec.host, spec.port
                    ),
                );
            } else {
                self.hosts.push(spec);
            }
        }
    }

    fn timeout(&mut self, s: &Statement) {
        const KNOWN: &[&str] = &[
            "AnyCmd",
            "ConnectRetry",
            "DataBlock",
            "DATACmd",
            "DataTerm",
            "InitialMsg",
            "MAILCmd",
            "RCPTCmd",
        ];
        for (name, value) in self.params("Timeout", s, KNOWN) {
            let Some(secs) = self.number(value, 30, 1200, &format!("Timeout {name}")) else {
                continue;
            };
            let d = Duration::from_secs(secs);
            let t = &mut self.timeouts;
            match name {
                "AnyCmd" => t.any_cmd = d,
                "ConnectRetry" => t.connect_retry = d,
                "DataBlock" => t.data_block = d,
                "DATACmd" => t.data_cmd = d,
                "DataTerm" => t.data_term = d,
                "InitialMsg" => t.initial_msg = d,
                "MAILCmd" => t.mail_cmd = d,
                _ => t.rcpt_cmd = d,
            }
        }
    }

    fn header(&mut self, s: &Statement) {
        for (name, value) in self.params("Header", s, &["Date", "UserInfo"]) {
            let Some(b) = self.yes_no(value, &format!("Header {name}")) else {
                continue;
            };
            if name == "Date" {
                self.header.date = b;
            } else {
                self.header.user_info = b;
            }
        }
    }

    fn retry_limit(&mut self, s: &Statement) {
        let mut count = u64::from(RetryLimit::default().count);
        let mut interval = 1u64;
        for (name, value) in self.params("RetryLimit", s, &["Count", "Interval"]) {
            let Some(n) = self.number(value, 0, 7200, &format!("RetryLimit {name}")) else {
                continue;
            };
            if name == "Count" {
                count = n;
            } else {
                interval = n;
            }
        }
        if count * interval > 7200 {
            self.error(
                s.keyword.line,
                format!(
                    "RetryLimit Count × Interval is {} minutes; at most 7200 (5 days) is allowed",
                    count * interval
                ),
            );
            return;
        }
        self.retry_limit = RetryLimit {
            count: count as u32,
            interval: Duration::from_secs(interval * 60),
        };
    }

    /// `SMF119 { Config Connect Mail Spool Stats }`: each record type named is written
    /// (`Name Yes|No` is also accepted).
    fn smf119(&mut self, s: &Statement) {
        const KNOWN: &[&str] = &["Config", "Connect", "Mail", "Spool", "Stats"];
        for (name, p) in self.parts("SMF119", s, KNOWN, |_| Arity::OptionalYesNo) {
            let on = match p.values {
                [value] => match self.yes_no(value, &format!("SMF119 {name}")) {
                    Some(b) => b,
                    None => continue,
                },
                _ => true,
            };
            match name {
                "Config" => self.smf119.config = on,
                "Connect" => self.smf119.connect = on,
                "Mail" => self.smf119.mail = on,
                "Spool" => self.smf119.spool = on,
                _ => self.smf119.stats = on,
            }
        }
    }

    fn options(&mut self, s: &Statement) {
        const KNOWN: &[&str] = &[
            "NullTrnc",
            "TestMode",
            "DataLineTrunc",
            "AtSign",
            "TLSEhlo",
            "BlankTrnc",
        ];
        let arity = |name: &str| {
            if name == "AtSign" || name == "BlankTrnc" {
                Arity::One
            } else {
                Arity::OptionalYesNo
            }
        };
        for (name, p) in self.parts("Options", s, KNOWN, arity) {
            if name == "AtSign" {
                let Some(value) = self.param_value("Options", &p) else {
                    continue;
                };
                if value.text != "@" {
                    self.warning(
                        value.line,
                        "Options AtSign is not implemented; only '@' is recognised",
                    );
                }
                continue;
            }
            if name == "BlankTrnc" {
                let Some(value) = self.param_value("Options", &p) else {
                    continue;
                };
                self.options.blank_trnc = match value.text.to_ascii_lowercase().as_str() {
                    "auto" => cssmtp_batch::BlankTrnc::Auto,
                    "yes" => cssmtp_batch::BlankTrnc::Yes,
                    "no" => cssmtp_batch::BlankTrnc::No,
                    _ => {
                        self.error(
                            value.line,
                            format!(
                                "Options BlankTrnc must be Auto, Yes or No, not {:?}",
                                value.text
                            ),
                        );
                        continue;
                    }
                };
                continue;
            }
            // A flag alone (`Options { NullTrnc DataLineTrunc }`) means YES.
            let b = match p.values {
                [value] => match self.yes_no(value, &format!("Options {name}")) {
                    Some(b) => b,
                    None => continue,
                },
                _ => true,
            };
            match name {
                "NullTrnc" => self.options.null_trnc = b,
                "DataLineTrunc" => self.options.data_line_trunc = b,
                // cssmtp always sends EHLO again after STARTTLS (RFC 3207 §4.2).
                "TLSEhlo" => {}
                _ => self.options.test_mode = b,
            }
        }
    }

    /// A mailbox (`user@host.domain`), case kept (mailboxes are case sensitive).
    fn mailbox(&mut self, w: &Word, what: &str) -> Option<String> {
        let text = w.text.trim_start_matches('<').trim_end_matches('>');
        match cssmtp_batch::address::parse_path(&format!("<{text}>"), "RCPT TO") {
            Ok(mailbox) if mailbox.contains('@') => Some(mailbox),
            _ => {
                self.error(
                    w.line,
                    format!("{what} {:?} is not a mailbox (user@host.domain)", w.text),
                );
                None
            }
        }
    }

    fn undeliverable(&mut self, s: &Statement) {
        const KNOWN: &[&str] = &[
            "ReturnToMailFrom",
            "DeadLetterAction",
            "DeadLetterDirectory",
            "ReturnContent",
        ];
        for (name, value) in self.params("Undeliverable", s, KNOWN) {
            let text = value.text.to_ascii_lowercase();
            match name {
                "ReturnToMailFrom" => {
                    if let Some(b) = self.yes_no(value, "ReturnToMailFrom") {
                        self.undeliverable.return_to_mail_from = b;
                    }
                }
                "DeadLetterAction" => match text.as_str() {
                    "store" => self.undeliverable.dead_letter_action = DeadLetterAction::Store,
                    "delete" => self.undeliverable.dead_letter_action = DeadLetterAction::Delete,
                    _ => self.error(
                        value.line,
                        format!(
                            "DeadLetterAction must be Store or Delete, not {:?}",
                            value.text
                        ),
                    ),
                },
                "DeadLetterDirectory" => {
                    self.undeliverable.dead_letter_directory = self.path(value)
                }
                _ => match text.as_str() {
                    "headers" => self.undeliverable.return_content = ReturnContent::Headers,
                    "full" => self.undeliverable.return_content = ReturnContent::Full,
                    _ => self.error(
                        value.line,
                        format!(
                            "ReturnContent must be Headers or Full, not {:?}",
                            value.text
                        ),
                    ),
                },
            }
        }
    }

    fn extended_retry(&mut self, s: &Statement) {
        let mut age = 5u64;
        let mut interval = 30u64;
        let mut directory = None;
        for (name, value) in self.params("ExtendedRetry", s, &["Age", "Interval", "MailDirectory"])
        {
            match name {
                "Age" => {
                    if let Some(n) = self.number(value, 0, 3650, "ExtendedRetry Age") {
                        age = n;
                    }
                }
                "Interval" => {
                    if let Some(n) = self.number(value, 0, 10_080, "ExtendedRetry Interval") {
                        interval = n;
                    }
                }
                _ => directory = self.path(value),
            }
        }
        // Interval 0 bypasses extended retry.
        self.extended_retry = (interval > 0).then(|| ExtendedRetry {
            age: Duration::from_secs(age * 86_400),
            interval: Duration::from_secs(interval * 60),
            mail_directory: directory,
        });
    }

    fn finish(mut self) -> (Option<Config>, Vec<Diagnostic>) {
        let targets = self.targets();
        if let Some((Report::Admin, line)) = self.report
            && self.mail_administrators.is_empty()
        {
            self.error(
                line,
                "Report Admin needs at least one MailAdministrator statement",
            );
        }
        if self.options.test_mode && matches!(self.report, Some((Report::None, _))) {
            self.warning(
                self.report.map_or(0, |(_, l)| l),
                "Options TestMode YES with Report None: test results are only logged",
            );
        }
        self.diagnostics.sort_by_key(|d| d.line);
        let has_errors = self
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error);
        let config = match targets {
            Some(targets) if !has_errors => Some(Config {
                file: self.file.clone(),
                ext_wrt_name: self
                    .ext_wrt_name
                    .unwrap_or_else(|| DEFAULT_EXT_WRT_NAME.into()),
                spool_directory: self
                    .spool_directory
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIRECTORY)),
                run_directory: self
                    .run_directory
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIRECTORY)),
                host_name: self.host_name,
                targets,
                timeouts: self.timeouts,
                header: self.header,
                jes_syntax_err_limit: self.jes_syntax_err_limit,
                jes_msg_size: self.jes_msg_size,
                jes_job_size: self.jes_job_size,
                retry_limit: self.retry_limit,
                options: self.options,
                bad_spool_disp: self.bad_spool_disp,
                spool_tasks: self.spool_tasks,
                max_connections: self.max_connections,
                tls_ca_files: self.tls_ca_files,
                name_servers: self.name_servers,
                undeliverable: self.undeliverable,
                extended_retry: self.extended_retry,
                mail_administrators: self
                    .mail_administrators
                    .into_iter()
                    .map(|(m, _)| m)
                    .collect(),
                report: self.report.map_or(Report::File, |(r, _)| r),
                report_mail_from: self.report_mail_from,
                notify_limit: self.notify_limit,
                chk_point: self.chk_point,
                chk_point_directory: self.chk_point_directory,
                chk_point_size_limit: self.chk_point_size_limit,
                possibly_delivered: self.possibly_delivered,
                chk_point_sync_each_mail: self.chk_point_sync_each_mail,
                log_level: self.log_level,
                smf119: self.smf119,
                accounting_file: self.accounting_file,
                stats_interval: self.stats_interval,
                metrics_listen: self.metrics_listen,
            }),
            _ => None,
        };
        (config, self.diagnostics)
    }

    /// The TargetServer rules: at least one target; one TargetMx, alone; four hosts used.
    fn targets(&mut self) -> Option<Targets> {
        if self.hosts.is_empty() && self.mx.is_empty() {
            if self.target_statements == 0 {
                self.error(
                    0,
                    "a TargetServer statement with a TargetIp, TargetName or TargetMx parameter is required",
                );
            }
            return None;
        }
        if self.mx.len() > 1 {
            let line = self.mx.get(1).map_or(0, |m| m.line);
            self.error(line, "only one TargetMx parameter is allowed");
            return None;
        }
        if let Some(mx) = self.mx.first().cloned() {
            if let Some(host) = self.hosts.first() {
                let line = host.line;
                self.error(
                    line,
                    "TargetMx cannot be combined with TargetIp or TargetName",
                );
                return None;
            }
            return Some(Targets::Mx(mx));
        }
        if self.hosts.len() > 4 {
            let extra: Vec<String> = self
                .hosts
                .iter()
                .skip(4)
                .map(|h| h.host.to_string())
                .collect();
            let line = self.hosts.get(4).map_or(0, |h| h.line);
            self.warning(
                line,
                format!(
                    "only the first four TargetIp/TargetName values are used; ignoring {}",
                    extra.join(", ")
                ),
            );
            self.hosts.truncate(4);
        }
        Some(Targets::Hosts(std::mem::take(&mut self.hosts)))
    }
}

/// How many values a block parameter takes.
#[derive(Clone, Copy)]
enum Arity {
    /// Exactly one: the next word is its value, whatever it reads.
    One,
    /// `Yes` or `No`, or nothing (a flag alone means Yes).
    OptionalYesNo,
}

/// One parameter of a block: its keyword and its values (words of the same line).
struct Part<'s> {
    keyword: &'s Word,
    values: &'s [Word],
}

/// ` (did you mean X?)` when a known word is close to `word`.
fn suggest<'a>(word: &str, known: impl Iterator<Item = &'a &'a str>) -> String {
    let lower = word.to_ascii_lowercase();
    known
        .map(|k| (strsim::levenshtein(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
