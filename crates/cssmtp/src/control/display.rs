//! The DISPLAY commands: TARGETS, IPLIST, SPOOLSTATUS, CONFIG, LOGLEVEL.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use cssmtp_wire::Capabilities;
use serde::Serialize;

use super::reply::{Answer, Refusal, yes};
use super::{Control, Reply};
use crate::config::running;
use crate::delivery::router::{LimitSource, Target};
use crate::logging;
use crate::spool::status::{Suspend, TaskSnapshot};
use crate::storage::pg::cluster::Cluster;
use crate::telemetry::accounting;

/// DISPLAY,TARGETS.
#[derive(Debug, Serialize)]
pub struct TargetsAnswer {
    pub started: String,
    pub global: Global,
    pub targets: Vec<TargetAnswer>,
    /// The shared spool (`SpoolDatabase`): the instances alive and the queues, or why
    /// the database cannot say now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Result<Cluster, String>>,
}

/// DISPLAY,TARGETS: the counters since start.
#[derive(Debug, Serialize)]
pub struct Global {
    pub mail_sent: u64,
    pub total_retry: u64,
    pub current_retry: u64,
    pub extended_retry_current: u64,
    pub dead_letter: u64,
    pub undeliver: u64,
    pub rcpts_delivered: u64,
    pub rcpts_undeliverable: u64,
}

/// DISPLAY,TARGETS: one target.
#[derive(Debug, Serialize)]
pub struct TargetAnswer {
    pub address: String,
    pub origin: String,
    pub state: Readiness,
    pub protocol: Protocol,
    pub starttls: bool,
    pub secure: bool,
    /// The largest mail it takes (0: no limit), and where that comes from.
    pub size: u64,
    pub size_from: SizeSource,
    pub max_mails_per_session: Limit,
    pub max_rcpts_per_mail: Limit,
    pub max_connections: Limit,
    pub mail_attempts: u64,
    pub mail_sent: u64,
    pub connect_failures: u64,
    /// SMTP AUTH configured: the user and the mechanism (`Auto` or the one named).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// AUTH failures (each took the target out of service for ConnectRetry); absent
    /// when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub auth_failures: u64,
    /// `TlsMode Opportunistic` (Required is `secure`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub opportunistic: bool,
    /// STARTTLS or handshake failures (certificate verification included); absent when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub tls_failures: u64,
    /// Opportunistic sessions that went without TLS; absent when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub tls_not_used: u64,
    pub connections: u32,
    pub last_reply: Option<String>,
    pub last_failure: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Whether a target may be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    Ready,
    NotReady,
}

/// What a target's last EHLO (or HELO) showed it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Esmtp,
    Smtp,
    /// Not connected yet.
    Unknown,
}

/// Where a target's size limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SizeSource {
    /// Its EHLO's SIZE.
    #[serde(rename = "EHLO")]
    Ehlo,
    /// `MessageSize`.
    #[serde(rename = "configured")]
    Configured,
}

/// A limit in force and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub value: u32,
    pub source: LimitSource,
}

impl From<(u32, LimitSource)> for Limit {
    fn from((value, source): (u32, LimitSource)) -> Self {
        Self { value, source }
    }
}

impl Readiness {
    fn console(self) -> &'static str {
        match self {
            Self::Ready => "READY",
            Self::NotReady => "NOT READY",
        }
    }
}

impl Protocol {
    fn of(caps: Option<&Capabilities>) -> Self {
        match caps {
            Some(c) if c.esmtp => Self::Esmtp,
            Some(_) => Self::Smtp,
            None => Self::Unknown,
        }
    }

    fn console(self) -> &'static str {
        match self {
            Self::Esmtp => "ESMTP",
            Self::Smtp => "SMTP",
            Self::Unknown => "UNKNOWN (not connected yet)",
        }
    }
}

impl SizeSource {
    fn console(self) -> &'static str {
        match self {
            Self::Ehlo => "EHLO",
            Self::Configured => "configured",
        }
    }
}

impl TargetAnswer {
    /// What is known of `target` now (`now`: the runtime's clock).
    fn of(target: &Target, now: tokio::time::Instant) -> Self {
        let st = target.state();
        let caps = st.caps.as_ref();
        let (size, size_from) = match caps {
            Some(c) if c.size_advertised => (c.size_limit, SizeSource::Ehlo),
            _ => (target.message_size, SizeSource::Configured),
        };
        Self {
            address: target.addr.to_string(),
            origin: target.origin.clone(),
            state: if st.down_until.is_none_or(|u| u <= now) {
                Readiness::Ready
            } else {
                Readiness::NotReady
            },
            protocol: Protocol::of(caps),
            starttls: caps.is_some_and(|c| c.starttls),
            secure: target.secure,
            size,
            size_from,
            max_mails_per_session: target.mails_limit().into(),
            max_rcpts_per_mail: target.rcpts_limit().into(),
            max_connections: target.connections_limit().into(),
            mail_attempts: st.mail_attempts,
            mail_sent: st.mail_sent,
            connect_failures: st.connect_failures,
            auth: target.auth.as_ref().map(|a| {
                let mechanism = a.mechanism.map_or("Auto", |m| m.name());
                let clear = if a.insecure { ", InsecureAuth" } else { "" };
                format!("{} ({mechanism}{clear})", crate::escape::data(&a.user))
            }),
            auth_failures: st.auth_failures,
            opportunistic: target.tls.opportunistic,
            tls_failures: st.tls_failures,
            tls_not_used: st.tls_not_used,
            connections: st.connections,
            last_reply: st.last_reply,
            last_failure: st.last_failure.as_ref().map(ToString::to_string),
        }
    }

    pub(super) fn lines(&self, lines: &mut Vec<String>) {
        lines.push(format!("TARGET SERVER: {} ({})", self.address, self.origin));
        lines.push(format!(
            "  STATE: {:<10} PROTOCOL: {}   STARTTLS: {}   SECURE: {}   SIZE: {} ({}; 0 = unlimited)",
            self.state.console(),
            self.protocol.console(),
            yes(self.starttls),
            yes(self.secure),
            self.size,
            self.size_from.console(),
        ));
        lines.push(format!(
            "  MAIL ATTEMPTS: {:<10} MAIL SENT: {:<10} CONNECT FAIL: {:<10} CONNECTIONS: {}",
            self.mail_attempts, self.mail_sent, self.connect_failures, self.connections
        ));
        if self.opportunistic || self.tls_failures > 0 || self.tls_not_used > 0 {
            lines.push(format!(
                "  TLS MODE: {}   TLS FAIL: {}   WITHOUT TLS: {}",
                if self.secure {
                    "REQUIRED"
                } else if self.opportunistic {
                    "OPPORTUNISTIC"
                } else {
                    "PLAIN"
                },
                self.tls_failures,
                self.tls_not_used
            ));
        }
        if let Some(auth) = &self.auth {
            lines.push(format!(
                "  AUTH: {auth}   AUTH FAIL: {}",
                self.auth_failures
            ));
        }
        let (m, r, c) = (
            self.max_mails_per_session,
            self.max_rcpts_per_mail,
            self.max_connections,
        );
        lines.push(format!(
            "  MAILS PER SESSION: {} ({})   RCPTS PER MAIL: {} ({})   MAX CONNECTIONS: {} ({})   (0 = unlimited)",
            m.value, m.source, r.value, r.source, c.value, c.source
        ));
        lines.push(format!(
            "  LAST REPLY: {}",
            self.last_reply.as_deref().unwrap_or("(none)")
        ));
        if let Some(f) = &self.last_failure {
            lines.push(format!("  LAST FAILURE: {f}"));
        }
    }
}

impl Answer for TargetsAnswer {
    fn lines(&self) -> Vec<String> {
        let g = &self.global;
        let mut lines = vec![
            "CSM5001I DISPLAY TARGETS".to_owned(),
            format!("GLOBAL INFORMATION (since start, {}):", self.started),
            format!(
                "  MAIL SENT: {:<10} TOTAL RETRY: {:<10} CURRENT RETRY: {}",
                g.mail_sent, g.total_retry, g.current_retry
            ),
            format!(
                "  EXTENDED RETRY CURRENT: {:<10} DEADLETTER: {:<10} UNDELIVER: {}",
                g.extended_retry_current, g.dead_letter, g.undeliver
            ),
        ];
        for target in &self.targets {
            target.lines(&mut lines);
        }
        cluster_part(self.cluster.as_ref(), "the counters above", &mut lines);
        lines
    }
}

/// DISPLAY,IPLIST, and REFRESHIPLIST's answer.
#[derive(Debug, Serialize)]
pub struct IplistAnswer {
    /// The command answered: its message heads the console reply.
    #[serde(skip)]
    pub refreshed: Option<usize>,
    pub targets: Vec<IplistEntry>,
}

/// One target address of the list.
#[derive(Debug, Serialize)]
pub struct IplistEntry {
    pub address: String,
    pub preference: u16,
    pub origin: String,
    pub secure: bool,
}

impl Answer for IplistAnswer {
    fn lines(&self) -> Vec<String> {
        let head = match self.refreshed {
            Some(n) => format!("CSM5015I REFRESHIPLIST: {n} target address(es)"),
            None => format!(
                "CSM5002I DISPLAY IPLIST: {} target address(es)",
                self.targets.len()
            ),
        };
        let mut lines = vec![head];
        lines.extend(self.targets.iter().map(|t| {
            format!(
                "  {:<40} PREFERENCE {:<5} {}{}",
                t.address,
                t.preference,
                t.origin,
                if t.secure { ", Secure" } else { "" }
            )
        }));
        lines
    }
}

/// DISPLAY,SPOOLSTATUS.
#[derive(Debug, Serialize)]
pub struct SpoolAnswer {
    /// `DETAIL`: several lines per task.
    #[serde(skip)]
    pub detail: bool,
    pub intake: Suspend,
    pub tasks: Vec<TaskSnapshot>,
    /// The shared spool (`SpoolDatabase`): the instances alive and the queues, or why
    /// the database cannot say now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Result<Cluster, String>>,
}

/// A time in seconds since the Unix epoch, as accounting records show it.
fn epoch_time(seconds: u64) -> String {
    accounting::time(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

impl SpoolAnswer {
    fn task_lines(t: &TaskSnapshot, lines: &mut Vec<String>) {
        lines.push(format!("  TKID {}: {}", t.tkid, t.file));
        lines.push(format!(
            "    JOB {} {}   OWNER {}   STARTED {}",
            t.job_name,
            t.job_id,
            if t.owner.is_empty() { "-" } else { &t.owner },
            epoch_time(t.started)
        ));
        lines.push(format!(
            "    MAILS READ {}   PENDING {}   IN RETRY {}   NEXT RETRY {}",
            t.mails_read,
            t.mails_pending,
            t.mails_retry,
            t.next_retry.map_or_else(|| "-".to_owned(), epoch_time)
        ));
        lines.push(format!(
            "    RECIPIENTS DELIVERED {}   UNDELIVERABLE {}   EXTENDED RETRY {}",
            t.rcpts_delivered, t.rcpts_undeliverable, t.rcpts_extended
        ));
    }
}

impl Answer for SpoolAnswer {
    fn lines(&self) -> Vec<String> {
        let intake = match self.intake {
            Suspend::Running => "running",
            Suspend::Delay => "suspended (DELAY)",
            Suspend::Immediate => "suspended (IMMEDIATE)",
        };
        let mut lines = vec![format!(
            "CSM5005I DISPLAY SPOOLSTATUS: {} spool task(s) active; intake {intake}",
            self.tasks.len(),
        )];
        if !self.detail {
            lines.push(format!(
                "  {:<6} {:>8} {:>8}  SPOOL FILE",
                "TKID", "PENDING", "RETRY"
            ));
        }
        for t in &self.tasks {
            if self.detail {
                Self::task_lines(t, &mut lines);
            } else {
                lines.push(format!(
                    "  {:<6} {:>8} {:>8}  {}",
                    t.tkid, t.mails_pending, t.mails_retry, t.file
                ));
            }
        }
        cluster_part(self.cluster.as_ref(), "the tasks above", &mut lines);
        lines
    }
}

/// The shared spool's part of DISPLAY SPOOLSTATUS and DISPLAY TARGETS (`above`: what
/// the lines before it show, this instance's only).
fn cluster_part(cluster: Option<&Result<Cluster, String>>, above: &str, lines: &mut Vec<String>) {
    match cluster {
        None => {}
        Some(Err(e)) => lines.push(format!(
            "  CLUSTER: the spool database cannot say now ({e})"
        )),
        Some(Ok(c)) => cluster_lines(c, above, lines),
    }
}

fn cluster_lines(c: &Cluster, above: &str, lines: &mut Vec<String>) {
    lines.push(format!(
        "  CLUSTER: {} instance(s) alive; {above} are this instance's ({})",
        c.instances.len(),
        c.this
    ));
    for i in &c.instances {
        lines.push(format!(
            "    INSTANCE {} WRITER {}   FILES HELD {}   STARTED {}   SEEN {}",
            i.name,
            i.writer,
            i.files_held,
            epoch_time(u64::try_from(i.started).unwrap_or(0)),
            epoch_time(u64::try_from(i.seen).unwrap_or(0))
        ));
    }
    for w in &c.writers {
        lines.push(format!(
            "    WRITER {}   WAITING {}   CLAIMED {}   HELD {}   OLDEST WAITING {}",
            w.writer,
            w.waiting,
            w.claimed,
            w.held,
            w.oldest_waiting
                .and_then(|t| u64::try_from(t).ok())
                .map_or_else(|| "-".to_owned(), epoch_time)
        ));
    }
}

/// DISPLAY,CONFIG.
#[derive(Debug, Serialize)]
pub struct ConfigAnswer {
    pub statements: Vec<String>,
}

impl Answer for ConfigAnswer {
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "CSM5003I DISPLAY CONFIG: {} statements",
            self.statements.len()
        )];
        lines.extend(self.statements.iter().map(|l| format!("  {l}")));
        lines
    }
}

/// DISPLAY,LOGLEVEL.
#[derive(Debug, Serialize)]
pub struct DisplayLogLevelAnswer {
    pub level: u32,
    pub meaning: String,
    pub cssmtp_log_in_force: bool,
}

impl Answer for DisplayLogLevelAnswer {
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "CSM5004I LOGLEVEL {}: {}",
            self.level, self.meaning
        )];
        if self.cssmtp_log_in_force {
            lines
                .push("CSM5004I CSSMTP_LOG is set: it decides what is logged, not LOGLEVEL".into());
        }
        lines
    }
}

impl Control {
    pub(super) fn display_targets(
        &self,
        only: Option<IpAddr>,
        cluster: Option<Result<Cluster, String>>,
    ) -> Reply {
        let s = self.telemetry.snapshot();
        let now = tokio::time::Instant::now();
        let targets: Vec<TargetAnswer> = self
            .router
            .targets()
            .iter()
            .filter(|t| only.is_none_or(|ip| ip == t.addr.ip()))
            .map(|t| TargetAnswer::of(t, now))
            .collect();
        if let (Some(ip), true) = (only, targets.is_empty()) {
            return Refusal::NoTarget(ip).into();
        }
        TargetsAnswer {
            started: accounting::time(self.started),
            global: Global {
                mail_sent: s.mails_all_sent,
                total_retry: s.mails_total_retry,
                current_retry: self.tasks.mails_in_retry(),
                extended_retry_current: self.extended_current.load(Ordering::Relaxed),
                dead_letter: s.dead_letters,
                undeliver: s.mails_undeliverable,
                rcpts_delivered: s.rcpts_delivered,
                rcpts_undeliverable: s.rcpts_undeliverable,
            },
            targets,
            cluster,
        }
        .reply()
    }

    /// The target list; `refreshed`: the number of addresses REFRESHIPLIST resolved.
    pub(super) fn iplist(&self, refreshed: Option<usize>) -> IplistAnswer {
        let targets = self
            .router
            .targets()
            .iter()
            .map(|t| IplistEntry {
                address: t.addr.to_string(),
                preference: t.preference,
                origin: t.origin.clone(),
                secure: t.secure,
            })
            .collect();
        IplistAnswer { refreshed, targets }
    }

    pub(super) fn display_spool(
        &self,
        detail: bool,
        tkid: Option<u32>,
        cluster: Option<Result<Cluster, String>>,
    ) -> Reply {
        let tasks = match tkid {
            Some(id) => match self.tasks.get(id) {
                Some(t) => vec![t],
                None => return Refusal::NoTask(id).into(),
            },
            None => self.tasks.all(),
        };
        SpoolAnswer {
            detail,
            intake: *self.suspend.borrow(),
            tasks: tasks.iter().map(|t| t.snapshot()).collect(),
            cluster,
        }
        .reply()
    }

    pub(super) fn display_config(&self) -> Reply {
        ConfigAnswer {
            statements: running::render(&self.config.current()),
        }
        .reply()
    }

    pub(super) fn display_loglevel() -> Reply {
        let level = logging::mask();
        DisplayLogLevelAnswer {
            level,
            meaning: logging::describe(level),
            cssmtp_log_in_force: logging::env_filter_in_force(),
        }
        .reply()
    }
}
