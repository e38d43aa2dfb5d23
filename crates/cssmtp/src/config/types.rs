//! The validated configuration: what each statement means once read. Built by
//! [`super::validate`] from the statement table ([`super::statements`]), where every
//! default lives.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// `ExtWrtName`: selects the spool (upper-cased: the name is not case sensitive).
    pub ext_wrt_name: String,
    /// `SpoolDirectory`: parent of the per-writer spool directories.
    pub spool_directory: PathBuf,
    /// `RunDirectory`: run-time files.
    pub run_directory: PathBuf,
    /// `HostName`: the name cssmtp gives in EHLO and headers (default: the system's).
    pub host_name: Option<String>,
    /// `TargetServer` statements.
    pub targets: Targets,
    /// `Timeout`.
    pub timeouts: Timeouts,
    /// `Header`.
    pub header: Header,
    /// `JESSyntaxErrLimit` (0 = no limit).
    pub jes_syntax_err_limit: u32,
    /// `JESMsgSize`, thousands of bytes (0 = no limit).
    pub jes_msg_size: u64,
    /// `JESJobSize`, thousands of bytes (0 = no limit).
    pub jes_job_size: u64,
    /// `RetryLimit`.
    pub retry_limit: RetryLimit,
    /// `Options`.
    pub options: Options,
    /// `BadSpoolDisp`.
    pub bad_spool_disp: BadSpoolDisp,
    /// `SpoolTasks`: spool files processed at once (CSSMTP's JES tasks).
    pub spool_tasks: usize,
    /// `MaxConnections`: SMTP connections open at once, over all targets.
    pub max_connections: usize,
    /// `TlsCaFile`: extra trusted CA certificates (PEM), besides the system's.
    pub tls_ca_files: Vec<PathBuf>,
    /// `SourceAddress`: the local address connections to target servers are made
    /// from (None: the system chooses).
    pub source_address: Option<std::net::IpAddr>,
    /// `DkimKey`, `DkimHeaders`, `DkimCanonicalization`: DKIM signing.
    pub dkim: super::dkim::Dkim,
    /// `NameServer`: DNS servers for TargetName/TargetMx (default: /etc/resolv.conf).
    pub name_servers: Vec<SocketAddr>,
    /// `Undeliverable`.
    pub undeliverable: Undeliverable,
    /// `ExtendedRetry` (None: inactive, as when the statement is absent or Interval 0).
    pub extended_retry: Option<ExtendedRetry>,
    /// `MailAdministrator` (at most four).
    pub mail_administrators: Vec<String>,
    /// `PermitUser` and `PermitGroup` (CSSMTP's SERVAUTH profile): when either is given,
    /// only spool files owned by these users, or by members of these groups, are sent
    /// (names or numeric IDs); others are held and reported.
    pub permit_users: Vec<String>,
    pub permit_groups: Vec<String>,
    /// `Report`.
    pub report: Report,
    /// `ReportMailFrom`: reverse path of error reports (None: the null path `<>`).
    pub report_mail_from: Option<String>,
    /// `NotifyLimit`: notifications and error reports sent per minute at most (0: no
    /// limit); more wait their turn.
    pub notify_limit: u32,
    /// `SendmailStartTls`: the sendmail bridge writes `STARTTLS` into its spool files, so
    /// that their mail travels only over TLS (CSSMTP's bridge with `D{tls_version}`).
    pub sendmail_starttls: bool,
    /// `Translate`: the EBCDIC code page of mainframe-format spool files (None: UTF-8
    /// and ASCII only, the Linux default); files are recognised by their first command.
    pub translate: Option<crate::spool::translate::CodePage>,
    /// `RecordLength`: the length of the records of an EBCDIC file without record ends
    /// (LRECL), and of the records the continuation rule joins.
    pub record_length: usize,
    /// `UserExit`: the program called for each mail before it is sent (None: no exit).
    pub user_exit: Option<UserExit>,
    /// `ChkPoint`: keep the checkpoint journal (warm restarts).
    pub chk_point: bool,
    /// `ChkPointDirectory` (None: `<SpoolDirectory>/<ExtWrtName>/checkpoint`).
    pub chk_point_directory: Option<PathBuf>,
    /// `ChkPointSizeLimit`: mails whose state is tracked at once (CSSMTP: 64000).
    pub chk_point_size_limit: u32,
    /// `PossiblyDelivered`: what a warm restart does with recipients whose final "." was
    /// sent and whose reply was not read.
    pub possibly_delivered: PossiblyDelivered,
    /// `ChkPointSync Mail`: sync the journal before each mail's final "." (exact after
    /// a system crash too); `Interval` (default): every few milliseconds.
    pub chk_point_sync_each_mail: bool,
    /// `LogLevel`: the log bit mask (see [`crate::logging`]).
    pub log_level: u32,
    /// `SMF119`: which accounting records are written.
    pub smf119: Smf119,
    /// `AccountingFile` (None: see [`Config::accounting_path`]).
    pub accounting_file: Option<PathBuf>,
    /// `StatsInterval`: how often a STATS record is written (0: never).
    pub stats_interval: Duration,
    /// `MetricsListen`: where the Prometheus endpoint listens (None: no endpoint).
    pub metrics_listen: Option<SocketAddr>,
    /// `SpoolDatabase`: the shared spool on PostgreSQL (a URL without a password;
    /// None: the directory spool and the checkpoint journal).
    pub spool_database: Option<String>,
    /// `SpoolDatabasePasswordFile`: the database password's file (else `PGPASSWORD`).
    pub spool_database_password_file: Option<PathBuf>,
    /// `SpoolDatabaseLease`: how long a claim on a spool file lasts unrenewed.
    pub spool_database_lease: Duration,
    /// `SpoolDatabaseInstance`: this instance's name in leases (None: the host name).
    pub spool_database_instance: Option<String>,
}

/// `SMF119`: the accounting records written (CSSMTP's SMF type 119 subtypes 48 to 52).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Smf119 {
    /// Start, REFRESH and LOGLEVEL changes (subtype 48).
    pub config: bool,
    /// The end of each target-server connection (49).
    pub connect: bool,
    /// The end of each mail (50).
    pub mail: bool,
    /// The end of each spool file (51).
    pub spool: bool,
    /// Every `StatsInterval` (52).
    pub stats: bool,
}

impl Smf119 {
    /// True when some record is written.
    pub fn any(&self) -> bool {
        self.config || self.connect || self.mail || self.spool || self.stats
    }
}

/// `PossiblyDelivered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PossiblyDelivered {
    /// Send them again (they may receive the mail twice; none loses it).
    Resend,
    /// Do not send them again: the spool file is held with a report for the operator.
    Hold,
}

impl Config {
    /// A configuration with nothing in it, for the defaults to fill.
    pub(crate) fn blank(file: &Path) -> Self {
        let zero = Duration::ZERO;
        Self {
            file: file.to_owned(),
            ext_wrt_name: String::new(),
            spool_directory: PathBuf::new(),
            run_directory: PathBuf::new(),
            host_name: None,
            targets: Targets::Hosts(Vec::new()),
            timeouts: Timeouts {
                any_cmd: zero,
                connect_retry: zero,
                data_block: zero,
                data_cmd: zero,
                data_term: zero,
                initial_msg: zero,
                mail_cmd: zero,
                rcpt_cmd: zero,
            },
            header: Header {
                date: false,
                user_info: false,
            },
            jes_syntax_err_limit: 0,
            jes_msg_size: 0,
            jes_job_size: 0,
            retry_limit: RetryLimit {
                count: 0,
                interval: zero,
            },
            options: Options::default(),
            bad_spool_disp: BadSpoolDisp::Hold,
            spool_tasks: 0,
            max_connections: 0,
            tls_ca_files: Vec::new(),
            source_address: None,
            dkim: super::dkim::Dkim::default(),
            name_servers: Vec::new(),
            undeliverable: Undeliverable {
                return_to_mail_from: false,
                dead_letter_action: DeadLetterAction::Store,
                dead_letter_directory: None,
                return_content: ReturnContent::Headers,
            },
            extended_retry: None,
            mail_administrators: Vec::new(),
            permit_users: Vec::new(),
            permit_groups: Vec::new(),
            report: Report::File,
            report_mail_from: None,
            notify_limit: 0,
            sendmail_starttls: false,
            translate: None,
            record_length: 0,
            user_exit: None,
            chk_point: false,
            chk_point_directory: None,
            chk_point_size_limit: 0,
            possibly_delivered: PossiblyDelivered::Resend,
            chk_point_sync_each_mail: false,
            log_level: 0,
            smf119: Smf119::default(),
            accounting_file: None,
            stats_interval: zero,
            metrics_listen: None,
            spool_database: None,
            spool_database_password_file: None,
            spool_database_lease: zero,
            spool_database_instance: None,
        }
    }

    /// The shared spool's settings, when `SpoolDatabase` selects it.
    pub fn spool_database(&self) -> Option<crate::storage::pg::DbSettings> {
        let url = self.spool_database.clone()?;
        let instance = self.spool_database_instance.clone().unwrap_or_else(|| {
            self.host_name
                .clone()
                .unwrap_or_else(crate::app::system_host_name)
        });
        Some(crate::storage::pg::DbSettings {
            url,
            password_file: self.spool_database_password_file.clone(),
            lease: self.spool_database_lease,
            instance,
            pool: (self.max_connections + 2).min(32),
        })
    }

    /// The writer's spool directory: `<SpoolDirectory>/<ExtWrtName>`.
    pub fn writer_spool(&self) -> PathBuf {
        self.spool_directory.join(&self.ext_wrt_name)
    }

    /// Where dead letters are stored (`DeadLetterDirectory`, default
    /// `<SpoolDirectory>/<ExtWrtName>/deadletter`).
    pub fn dead_letter_directory(&self) -> PathBuf {
        self.undeliverable
            .dead_letter_directory
            .clone()
            .unwrap_or_else(|| self.writer_spool().join("deadletter"))
    }

    /// Where mail in extended retry is kept (`MailDirectory`, default
    /// `<SpoolDirectory>/<ExtWrtName>/mail`).
    pub fn mail_directory(&self) -> PathBuf {
        self.extended_retry
            .as_ref()
            .and_then(|e| e.mail_directory.clone())
            .unwrap_or_else(|| self.writer_spool().join("mail"))
    }

    /// The checkpoint journal of this writer: `<ChkPointDirectory>/<ExtWrtName>.journal`.
    pub fn journal_path(&self) -> PathBuf {
        self.chk_point_directory
            .clone()
            .unwrap_or_else(|| self.writer_spool().join("checkpoint"))
            .join(format!("{}.journal", self.ext_wrt_name))
    }

    /// The accounting records file (default
    /// `<SpoolDirectory>/<ExtWrtName>/accounting/smf119.jsonl`).
    pub fn accounting_path(&self) -> PathBuf {
        self.accounting_file
            .clone()
            .unwrap_or_else(|| self.writer_spool().join("accounting").join("smf119.jsonl"))
    }

    /// The control socket: `<RunDirectory>/<ExtWrtName>.sock`.
    pub fn control_socket(&self) -> PathBuf {
        self.run_directory
            .join(format!("{}.sock", self.ext_wrt_name))
    }

    /// Where error reports are written with `Report File`.
    pub fn report_directory(&self) -> PathBuf {
        self.writer_spool().join("reports")
    }

    /// Parser limits from the JES statements and Options.
    pub fn batch_limits(&self) -> cssmtp_batch::Limits {
        cssmtp_batch::Limits {
            syntax_error_limit: self.jes_syntax_err_limit,
            max_mail_kb: self.jes_msg_size,
            max_recipients: 2000,
            null_trnc: self.options.null_trnc,
            data_line_trunc: self.options.data_line_trunc,
            blank_trnc: self.options.blank_trnc,
            utf8_addresses: self.options.smtputf8,
        }
    }
}

/// Where mail goes: up to four configured or resolved IP addresses, or one MX domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// `TargetIp` / `TargetName` parameters, in configuration order (at most four used).
    Hosts(Vec<TargetSpec>),
    /// One `TargetMx` parameter.
    Mx(TargetSpec),
}

/// How a target is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    Ip(IpAddr),
    Name(String),
    Mx(String),
}

impl fmt::Display for TargetHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "TargetIp {ip}"),
            Self::Name(name) => write!(f, "TargetName {name}"),
            Self::Mx(domain) => write!(f, "TargetMx {domain}"),
        }
    }
}

/// One configured target and its connection attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub host: TargetHost,
    /// `ConnectPort` (default 25).
    pub port: u16,
    /// `Secure Yes`: every mail through this target must travel over TLS.
    pub secure: bool,
    /// `MessageSize`: largest mail in bytes for a server that advertises no SIZE
    /// (0 = no limit).
    pub message_size: u64,
    /// `MaxMailsPerSession`: a session is ended (QUIT) after this many mails (0 = no limit).
    pub max_mails: u32,
    /// `MaxRcptsPerMail`: recipients per transaction (0 = no limit).
    pub max_rcpts: u32,
    /// `MaxConnections` in the block: connections open or being opened to each of its
    /// addresses at once (0 = none, only the global `MaxConnections`).
    pub max_connections: u32,
    /// `TlsName`: the name its certificate must carry (default: the target's name, or
    /// its IP address for TargetIp).
    pub tls_name: Option<String>,
    /// `AuthUser` and the other AUTH parameters: SMTP AUTH with this target.
    pub auth: Option<super::auth::AuthSpec>,
    /// `TlsMode`, `TlsMinVersion`, `TlsCaFile`, `TlsFingerprint`, `TlsClientCert`…
    pub tls: Box<super::tls_policy::TlsPolicy>,
    /// `SourceAddress` in the block: connections to it are made from this local address
    /// (None: the global `SourceAddress`).
    pub source: Option<std::net::IpAddr>,
    /// `Charset`: the code page the server expects for text read from EBCDIC spool files.
    pub charset: Charset,
    /// `Chunking Yes|No` (cssmtp): BDAT (RFC 3030) is used when the server offers
    /// CHUNKING; No sends DATA always (a server whose CHUNKING is broken).
    pub chunking: bool,
    /// Line of the parameter, for messages.
    pub line: u32,
}

/// `Timeout` statement: each wait of the SMTP dialogue, 30–1200 seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// EHLO, HELO, RSET, QUIT, STARTTLS and the TLS handshake (default 300).
    pub any_cmd: Duration,
    /// Wait before trying a target again after its connection failed (default 120).
    pub connect_retry: Duration,
    /// Each send of a block of mail text (default 180).
    pub data_block: Duration,
    /// Reply to DATA (default 120).
    pub data_cmd: Duration,
    /// Reply to the final "." (default 600).
    pub data_term: Duration,
    /// Connection and 220 greeting (default 300).
    pub initial_msg: Duration,
    /// Reply to MAIL FROM (default 300).
    pub mail_cmd: Duration,
    /// Reply to each RCPT TO (default 300).
    pub rcpt_cmd: Duration,
}

impl Default for Timeouts {
    /// The defaults of the statement table.
    fn default() -> Self {
        super::validate::defaults().timeouts
    }
}

/// `Header` statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `Date YES`: add a Date: header when the mail has none.
    pub date: bool,
    /// `UserInfo YES`: Message-ID and Received: carry the job name, job ID and owner.
    pub user_info: bool,
}

impl Default for Header {
    /// The defaults of the statement table.
    fn default() -> Self {
        super::validate::defaults().header
    }
}

/// `RetryLimit`: long retry of recipients that got a 4xx reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryLimit {
    /// Retries after the first attempt (default 5; 0 = none).
    pub count: u32,
    /// Wait between attempts (default 1 minute; 0 = none).
    pub interval: Duration,
}

impl Default for RetryLimit {
    /// The defaults of the statement table.
    fn default() -> Self {
        super::validate::defaults().retry_limit
    }
}

/// `Options` statement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Strip trailing X'00' from command records.
    pub null_trnc: bool,
    /// Cut data lines to 998 characters instead of rejecting the mail.
    pub data_line_trunc: bool,
    /// `BlankTrnc Auto|Yes|No` (cssmtp): when mail text lines lose their trailing blanks
    /// (Auto: only in a file of fixed-length records, every line the same length).
    pub blank_trnc: cssmtp_batch::BlankTrnc,
    /// Parse and report, never deliver: CSSMTP's compatibility test mode.
    pub test_mode: bool,
    /// `AtSign char`: another character read as '@' in the commands and header fields of
    /// EBCDIC spool files (None: '@' only).
    pub at_sign: Option<char>,
    /// `ReplaceSubjectAtSign`: the `AtSign` character is replaced in `Subject:` too.
    pub replace_subject_at_sign: bool,
    /// `SmtpUtf8` (cssmtp): UTF-8 addresses are accepted in MAIL FROM and RCPT TO
    /// (RFC 6531); such a mail goes only to a target offering SMTPUTF8.
    pub smtputf8: bool,
}

/// `Undeliverable` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undeliverable {
    /// `ReturnToMailFrom Yes`: send a notification to the reverse path.
    pub return_to_mail_from: bool,
    /// `DeadLetterAction`.
    pub dead_letter_action: DeadLetterAction,
    /// `DeadLetterDirectory` (None: the default, see [`Config::dead_letter_directory`]).
    pub dead_letter_directory: Option<PathBuf>,
    /// `ReturnContent` (cssmtp): what of the original mail a notification carries.
    pub return_content: ReturnContent,
}

impl Default for Undeliverable {
    /// The defaults of the statement table.
    fn default() -> Self {
        super::validate::defaults().undeliverable
    }
}

/// `DeadLetterAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterAction {
    /// One file per dead letter in the dead-letter directory.
    Store,
    /// Logged only.
    Delete,
}

/// What of the original mail an undeliverable notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnContent {
    /// Its header only (`text/rfc822-headers`): enough to recognise it, without sending
    /// bulk mail back.
    Headers,
    /// The whole mail (`message/rfc822`), up to 1 MiB (larger: the header only).
    Full,
}

/// `ExtendedRetry` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedRetry {
    /// `Age`: how long a mail stays in extended retry (days; 0: no limit).
    pub age: Duration,
    /// `Interval`: wait between attempts (minutes).
    pub interval: Duration,
    /// `MailDirectory` (None: the default, see [`Config::mail_directory`]).
    pub mail_directory: Option<PathBuf>,
}

/// `Report`: where error reports about spool files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// One mail per spool file to the MailAdministrators.
    Admin,
    /// A file in `<SpoolDirectory>/<ExtWrtName>/reports/` (the Linux face of
    /// CSSMTP's Report Sysout).
    File,
    /// No report (problems are logged).
    None,
}

/// `BadSpoolDisp`: what becomes of a spool file with problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadSpoolDisp {
    /// Keep it, out of the intake, for the operator (`<spool>/hold/`).
    Hold,
    /// Remove it.
    Delete,
}

/// `UserExit` statement: an external program called for each mail before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserExit {
    /// `Program`: the absolute path of the program and its arguments (run without a
    /// shell).
    pub argv: Vec<String>,
    /// `TimeLimit`: the exit is killed (its process group) after this long.
    pub time_limit: Duration,
    /// `MaxOutput`: the most the exit may write (a new text, or a reason), in bytes.
    pub max_output: u64,
    /// `Level`: whether the exit is called (`MODIFY USEREXIT,LEVEL=` changes it at run
    /// time).
    pub level: ExitLevel,
}

/// `UserExit Level` / `MODIFY USEREXIT,LEVEL=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitLevel {
    /// Not called.
    None,
    /// Called, with the input format `cssmtp-exit 1`.
    Version1,
}

impl ExitLevel {
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Version1 => "VERSION1",
        }
    }
}

/// `TargetServer Charset`: the code page text translated from EBCDIC (`Translate`) is
/// sent in (CSSMTP's default ISO8859-1). Text of ASCII/UTF-8 spool files is sent as it
/// was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charset {
    /// ISO-8859-1 (CSSMTP's default).
    #[default]
    Latin1,
    /// UTF-8.
    Utf8,
}

impl Charset {
    pub fn name(self) -> &'static str {
        match self {
            Self::Latin1 => "ISO8859-1",
            Self::Utf8 => "UTF-8",
        }
    }

    /// Reads CSSMTP's spellings (`ISO8859-1`, `ISO-8859-1`, `819`, `UTF-8`, `1208`…).
    pub fn parse(text: &str) -> Option<Self> {
        let t: String = text
            .chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .collect::<String>()
            .to_ascii_uppercase();
        match t.as_str() {
            "ISO88591" | "LATIN1" | "819" | "IBM819" | "CP819" => Some(Self::Latin1),
            "UTF8" | "1208" | "IBM1208" => Some(Self::Utf8),
            _ => None,
        }
    }
}
