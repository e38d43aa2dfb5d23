//! The operator interface: CSSMTP's MODIFY commands over a Unix socket.
//!
//! The daemon listens on `<RunDirectory>/<ExtWrtName>.sock` (mode 0600; a peer that is
//! neither the daemon's user nor root is refused). `cssmtp modify -c FILE DISPLAY,TARGETS`
//! sends one request, a JSON line `{"command":"DISPLAY,TARGETS"}`, and gets one JSON
//! line back: `{"ok":true,"lines":[…],"data":{…}}`; the lines are the console reply,
//! each message line starting with its message ID, and `data` the same facts for
//! programs (`--json`). A request that cannot be read gets an error reply; nothing a
//! client sends can stop the daemon but STOP.

pub mod command;
pub mod server;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use command::{Command, parse};

use crate::accounting::{self, Accounting, Kind};
use crate::config::{self, Config, LiveConfig, LoadError, Severity, running};
use crate::delivery::resolve::{Resolved, resolve, resolver_for};
use crate::delivery::router::Router;
use crate::logging;
use crate::spool::status::{Suspend, TaskRegistry};
use crate::stats::Stats;

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub command: String,
}

/// The reply to a request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    /// The console reply, line by line.
    pub lines: Vec<String>,
    /// The same, for programs.
    #[serde(default)]
    pub data: Value,
}

impl Reply {
    fn ok(lines: Vec<String>, data: Value) -> Self {
        Self {
            ok: true,
            lines,
            data,
        }
    }

    /// An error reply: one message line.
    pub fn error(line: impl Into<String>) -> Self {
        Self {
            ok: false,
            lines: vec![line.into()],
            data: Value::Null,
        }
    }
}

/// FLUSHRETRY,AGE=: a request to extended retry, answered with how many mails were
/// returned.
pub type FlushAge = (Duration, oneshot::Sender<u64>);

/// What the operator commands act on.
pub struct Control {
    pub config: Arc<LiveConfig>,
    pub router: Arc<Router>,
    pub stats: Arc<Stats>,
    pub tasks: Arc<TaskRegistry>,
    pub suspend: watch::Sender<Suspend>,
    pub stop: CancellationToken,
    /// Extended retry (when active): FLUSHRETRY,AGE= requests.
    pub extended_flush: Option<mpsc::UnboundedSender<FlushAge>>,
    /// Mails in extended retry now.
    pub extended_current: Arc<AtomicU64>,
    pub accounting: Accounting,
    pub started: SystemTime,
}

fn yes(b: bool) -> &'static str {
    if b { "YES" } else { "NO" }
}

impl Control {
    /// Carries out a command.
    pub async fn execute(&self, command: Command) -> Reply {
        match command {
            Command::DisplayTargets { addr } => self.display_targets(addr),
            Command::DisplayIplist => self.display_iplist(),
            Command::DisplayConfig => {
                let lines = running::render(&self.config.current());
                let mut out = vec![format!(
                    "CSM5003I DISPLAY CONFIG: {} statements",
                    lines.len()
                )];
                out.extend(lines.iter().map(|l| format!("  {l}")));
                Reply::ok(out, json!({ "statements": lines }))
            }
            Command::DisplayLoglevel => {
                let mask = logging::mask();
                let mut lines = vec![format!(
                    "CSM5004I LOGLEVEL {mask}: {}",
                    logging::describe(mask)
                )];
                if logging::env_filter_in_force() {
                    lines.push(
                        "CSM5004I CSSMTP_LOG is set: it decides what is logged, not LOGLEVEL"
                            .into(),
                    );
                }
                Reply::ok(
                    lines,
                    json!({ "level": mask, "meaning": logging::describe(mask),
                            "cssmtp_log_in_force": logging::env_filter_in_force() }),
                )
            }
            Command::DisplaySpoolstatus { detail, tkid } => self.display_spool(detail, tkid),
            Command::FlushRetryTask { tkid } => self.flush_task(tkid).await,
            Command::FlushRetryAge { days } => self.flush_age(days).await,
            Command::LogLevel { level } => {
                let before = logging::mask();
                logging::set_mask(level);
                tracing::info!(
                    "CSM5011I LOGLEVEL changed from {before} to {level} ({})",
                    logging::describe(level)
                );
                self.config_record("loglevel");
                Reply::ok(
                    vec![format!(
                        "CSM5011I LOGLEVEL changed from {before} to {level}: {}",
                        logging::describe(level)
                    )],
                    json!({ "before": before, "level": level }),
                )
            }
            Command::Refresh => self.refresh().await,
            Command::RefreshIplist => self.refresh_iplist().await,
            Command::RefreshTargets => {
                let n = self.router.reset_health();
                tracing::info!(
                    "CSM5016I REFRESHTARGETS: {n} target server(s) will be tried afresh"
                );
                Reply::ok(
                    vec![format!(
                        "CSM5016I REFRESHTARGETS: {n} target server(s) will be tried afresh"
                    )],
                    json!({ "targets": n }),
                )
            }
            Command::Suspend { immediate } => {
                let how = if immediate {
                    Suspend::Immediate
                } else {
                    Suspend::Delay
                };
                self.suspend.send_replace(how);
                let text = if immediate {
                    "CSM5017I SUSPEND IMMEDIATE: no new spool file is taken and no new mail is sent; transactions in progress complete"
                } else {
                    "CSM5017I SUSPEND DELAY: no new spool file is taken; spool files in progress are finished"
                };
                tracing::info!("{text}");
                Reply::ok(vec![text.into()], json!({ "intake": how }))
            }
            Command::Resume => {
                let before = self.suspend.send_replace(Suspend::Running);
                let text = if before == Suspend::Running {
                    "CSM5018I RESUME: intake was not suspended"
                } else {
                    "CSM5018I RESUME: spool files are taken and mail is sent again"
                };
                tracing::info!("{text}");
                Reply::ok(vec![text.into()], json!({ "intake": Suspend::Running }))
            }
            Command::Stop => {
                tracing::info!("CSM5019I STOP: stopping as on SIGTERM");
                self.stop.cancel();
                Reply::ok(
                    vec!["CSM5019I STOP: no new spool files; transactions in progress are completed, then cssmtp ends".into()],
                    json!({ "stopping": true }),
                )
            }
        }
    }

    fn display_targets(&self, only: Option<IpAddr>) -> Reply {
        let s = self.stats.snapshot();
        let current_retry = self.tasks.mails_in_retry();
        let extended = self.extended_current.load(Ordering::Relaxed);
        let mut lines = vec![
            "CSM5001I DISPLAY TARGETS".to_owned(),
            format!(
                "GLOBAL INFORMATION (since start, {}):",
                accounting::time(self.started)
            ),
            format!(
                "  MAIL SENT: {:<10} TOTAL RETRY: {:<10} CURRENT RETRY: {}",
                s.mails_all_sent, s.mails_total_retry, current_retry
            ),
            format!(
                "  EXTENDED RETRY CURRENT: {:<10} DEADLETTER: {:<10} UNDELIVER: {}",
                extended, s.dead_letters, s.mails_undeliverable
            ),
        ];
        let now = tokio::time::Instant::now();
        let mut targets = Vec::new();
        for t in self.router.targets().iter() {
            if only.is_some_and(|ip| ip != t.addr.ip()) {
                continue;
            }
            let st = t.state();
            let ready = st.down_until.is_none_or(|u| u <= now);
            let caps = st.caps;
            let size = match caps {
                Some(c) if c.size_advertised => c.size_limit,
                _ => t.message_size,
            };
            let size_from = match caps {
                Some(c) if c.size_advertised => "EHLO",
                _ => "configured",
            };
            let protocol = match caps {
                Some(c) if c.esmtp => "ESMTP",
                Some(_) => "SMTP",
                None => "UNKNOWN (not connected yet)",
            };
            let starttls = caps.is_some_and(|c| c.starttls);
            lines.push(format!("TARGET SERVER: {} ({})", t.addr, t.origin));
            lines.push(format!(
                "  STATE: {:<10} PROTOCOL: {protocol}   STARTTLS: {}   SECURE: {}   SIZE: {size} ({size_from}; 0 = unlimited)",
                if ready { "READY" } else { "NOT READY" },
                yes(starttls),
                yes(t.secure)
            ));
            lines.push(format!(
                "  MAIL ATTEMPTS: {:<10} MAIL SENT: {:<10} CONNECT FAIL: {:<10} CONNECTIONS: {}",
                st.mail_attempts, st.mail_sent, st.connect_failures, st.connections
            ));
            let (mails, mails_from) = t.mails_limit();
            let (rcpts, rcpts_from) = t.rcpts_limit();
            let (conns, conns_from) = t.connections_limit();
            lines.push(format!(
                "  MAILS PER SESSION: {mails} ({mails_from})   RCPTS PER MAIL: {rcpts} ({rcpts_from})   MAX CONNECTIONS: {conns} ({conns_from})   (0 = unlimited)"
            ));
            lines.push(format!(
                "  LAST REPLY: {}",
                st.last_reply.as_deref().unwrap_or("(none)")
            ));
            if let Some(f) = &st.last_failure {
                lines.push(format!("  LAST FAILURE: {f}"));
            }
            targets.push(json!({
                "address": t.addr.to_string(),
                "origin": t.origin,
                "state": if ready { "ready" } else { "not_ready" },
                "protocol": match caps { Some(c) if c.esmtp => "esmtp", Some(_) => "smtp", None => "unknown" },
                "starttls": starttls,
                "secure": t.secure,
                "size": size,
                "size_from": size_from,
                "max_mails_per_session": { "value": mails, "source": mails_from },
                "max_rcpts_per_mail": { "value": rcpts, "source": rcpts_from },
                "max_connections": { "value": conns, "source": conns_from },
                "mail_attempts": st.mail_attempts,
                "mail_sent": st.mail_sent,
                "connect_failures": st.connect_failures,
                "connections": st.connections,
                "last_reply": st.last_reply,
                "last_failure": st.last_failure.as_ref().map(ToString::to_string),
            }));
        }
        if let (Some(ip), true) = (only, targets.is_empty()) {
            return Reply::error(format!("CSM5090E No target server has address {ip}"));
        }
        Reply::ok(
            lines,
            json!({
                "started": accounting::time(self.started),
                "global": {
                    "mail_sent": s.mails_all_sent,
                    "total_retry": s.mails_total_retry,
                    "current_retry": current_retry,
                    "extended_retry_current": extended,
                    "dead_letter": s.dead_letters,
                    "undeliver": s.mails_undeliverable,
                    "rcpts_delivered": s.rcpts_delivered,
                    "rcpts_undeliverable": s.rcpts_undeliverable,
                },
                "targets": targets,
            }),
        )
    }

    fn display_iplist(&self) -> Reply {
        let targets = self.router.targets();
        let mut lines = vec![format!(
            "CSM5002I DISPLAY IPLIST: {} target address(es)",
            targets.len()
        )];
        let mut data = Vec::new();
        for t in targets.iter() {
            lines.push(format!(
                "  {:<40} PREFERENCE {:<5} {}{}",
                t.addr.to_string(),
                t.preference,
                t.origin,
                if t.secure { ", Secure" } else { "" }
            ));
            data.push(json!({
                "address": t.addr.to_string(),
                "preference": t.preference,
                "origin": t.origin,
                "secure": t.secure,
            }));
        }
        Reply::ok(lines, json!({ "targets": data }))
    }

    fn display_spool(&self, detail: bool, tkid: Option<u32>) -> Reply {
        let tasks = match tkid {
            Some(id) => match self.tasks.get(id) {
                Some(t) => vec![t],
                None => return Reply::error(format!("CSM5090E No spool task TKID={id}")),
            },
            None => self.tasks.all(),
        };
        let suspend = *self.suspend.borrow();
        let snapshots: Vec<_> = tasks.iter().map(|t| t.snapshot()).collect();
        let mut lines = vec![format!(
            "CSM5005I DISPLAY SPOOLSTATUS: {} spool task(s) active; intake {}",
            snapshots.len(),
            match suspend {
                Suspend::Running => "running",
                Suspend::Delay => "suspended (DELAY)",
                Suspend::Immediate => "suspended (IMMEDIATE)",
            }
        )];
        if !detail {
            lines.push(format!(
                "  {:<6} {:>8} {:>8}  SPOOL FILE",
                "TKID", "PENDING", "RETRY"
            ));
        }
        for t in &snapshots {
            if detail {
                lines.push(format!("  TKID {}: {}", t.tkid, t.file));
                lines.push(format!(
                    "    JOB {} {}   STARTED {}",
                    t.job_name,
                    t.job_id,
                    accounting::time(SystemTime::UNIX_EPOCH + Duration::from_secs(t.started))
                ));
                lines.push(format!(
                    "    MAILS READ {}   PENDING {}   IN RETRY {}   NEXT RETRY {}",
                    t.mails_read,
                    t.mails_pending,
                    t.mails_retry,
                    t.next_retry.map_or_else(
                        || "-".to_owned(),
                        |s| accounting::time(SystemTime::UNIX_EPOCH + Duration::from_secs(s))
                    )
                ));
                lines.push(format!(
                    "    RECIPIENTS DELIVERED {}   UNDELIVERABLE {}   EXTENDED RETRY {}",
                    t.rcpts_delivered, t.rcpts_undeliverable, t.rcpts_extended
                ));
            } else {
                lines.push(format!(
                    "  {:<6} {:>8} {:>8}  {}",
                    t.tkid, t.mails_pending, t.mails_retry, t.file
                ));
            }
        }
        Reply::ok(lines, json!({ "intake": suspend, "tasks": snapshots }))
    }

    async fn flush_task(&self, tkid: u32) -> Reply {
        let Some(task) = self.tasks.get(tkid) else {
            return Reply::error(format!("CSM5090E No spool task TKID={tkid}"));
        };
        let (answer, flushed) = oneshot::channel();
        if task.flush.send(answer).is_err() {
            return Reply::error(format!("CSM5090E Spool task TKID={tkid} has ended"));
        }
        match tokio::time::timeout(Duration::from_secs(30), flushed).await {
            Ok(Ok(n)) => Reply::ok(
                vec![format!(
                    "CSM5010I FLUSHRETRY: {n} mail(s) of spool task {tkid} ({}) taken out of long retry",
                    task.file
                )],
                json!({ "tkid": tkid, "mails": n }),
            ),
            Ok(Err(_)) => Reply::error(format!("CSM5090E Spool task TKID={tkid} has ended")),
            Err(_) => Reply::error(format!(
                "CSM5090E Spool task TKID={tkid} did not answer within 30 seconds; the request stays queued"
            )),
        }
    }

    async fn flush_age(&self, days: u32) -> Reply {
        let Some(flush) = &self.extended_flush else {
            return Reply::error("CSM5090E FLUSHRETRY,AGE: extended retry is not active");
        };
        let (answer, flushed) = oneshot::channel();
        let age = Duration::from_secs(u64::from(days) * 86_400);
        if flush.send((age, answer)).is_err() {
            return Reply::error("CSM5090E FLUSHRETRY,AGE: extended retry has ended");
        }
        match flushed.await {
            Ok(n) => Reply::ok(
                vec![format!(
                    "CSM5010I FLUSHRETRY: {n} mail(s) in extended retry for {days} day(s) or more returned as undeliverable"
                )],
                json!({ "age_days": days, "mails": n }),
            ),
            Err(_) => Reply::error("CSM5090E FLUSHRETRY,AGE: extended retry has ended"),
        }
    }

    async fn refresh(&self) -> Reply {
        let running = self.config.current();
        let path = running.file.clone();
        // Reading the configuration files: on a blocking thread.
        let loaded = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || config::load(&path)).await
        };
        let Ok(loaded) = loaded else {
            return Reply::error(format!(
                "CSM5014E REFRESH: {} could not be read; nothing changed",
                path.display()
            ));
        };
        let (new, diagnostics) = match loaded {
            Ok(x) => x,
            Err(LoadError::Invalid { diagnostics, .. }) => {
                let mut lines = vec![format!(
                    "CSM5014E REFRESH: {} has errors; nothing changed",
                    path.display()
                )];
                lines.extend(
                    diagnostics
                        .iter()
                        .filter(|d| d.severity == Severity::Error)
                        .map(|d| format!("  {d}")),
                );
                tracing::error!("{}", lines.join("\n"));
                return Reply {
                    ok: false,
                    lines,
                    data: json!({ "changed": false }),
                };
            }
            Err(e) => {
                return Reply::error(format!("CSM5014E REFRESH: {e}; nothing changed"));
            }
        };
        let (merged, kept) = running::merge(&running, new);
        let mut lines = vec![format!("CSM5012I REFRESH: {} read", path.display())];
        if merged.targets != running.targets {
            match self.resolve_targets(&merged).await {
                Ok(resolved) => {
                    lines.push(format!(
                        "CSM5012I REFRESH: {} target address(es): {}",
                        resolved.len(),
                        resolved
                            .iter()
                            .map(|r| r.addr.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    self.router.set_targets(resolved);
                }
                Err(message) => {
                    return Reply::error(format!("CSM5014E REFRESH: {message}; nothing changed"));
                }
            }
        }
        if merged.log_level != running.log_level {
            logging::set_mask(merged.log_level);
            lines.push(format!("CSM5012I REFRESH: LOGLEVEL {}", merged.log_level));
        }
        self.accounting.select(merged.smf119);
        self.accounting.reopen();
        let changed = merged != running.as_ref().clone();
        self.config.replace(Arc::new(merged));
        // The file's warnings and the statements kept until a restart come last,
        // logged as warnings.
        let warnings: Vec<String> = diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(ToString::to_string)
            .chain(kept.iter().cloned())
            .map(|w| format!("CSM5013W REFRESH: {w}"))
            .collect();
        for line in &lines {
            tracing::info!("{line}");
        }
        for line in &warnings {
            tracing::warn!("{line}");
        }
        lines.extend(warnings);
        self.config_record("refresh");
        Reply::ok(lines, json!({ "changed": changed, "kept": kept }))
    }

    async fn refresh_iplist(&self) -> Reply {
        let config = self.config.current();
        match self.resolve_targets(&config).await {
            Ok(resolved) => {
                let n = resolved.len();
                self.router.set_targets(resolved);
                let mut reply = self.display_iplist();
                if let Some(first) = reply.lines.first_mut() {
                    *first = format!("CSM5015I REFRESHIPLIST: {n} target address(es)");
                }
                tracing::info!("CSM5015I REFRESHIPLIST: {n} target address(es)");
                reply
            }
            Err(message) => Reply::error(format!(
                "CSM5014E REFRESHIPLIST: {message}; the list is unchanged"
            )),
        }
    }

    /// Resolves the targets of `config`; an error when none resolves.
    async fn resolve_targets(&self, config: &Config) -> Result<Vec<Resolved>, String> {
        let resolver = resolver_for(&config.targets, &config.name_servers)?;
        let (resolved, warnings) = resolve(&config.targets, resolver.as_ref()).await;
        for w in &warnings {
            tracing::warn!("CSM1021W {w}");
        }
        if resolved.is_empty() {
            return Err(format!(
                "no target address could be resolved ({})",
                warnings.join("; ")
            ));
        }
        Ok(resolved)
    }

    /// A CONFIG accounting record (start, REFRESH, LOGLEVEL).
    pub fn config_record(&self, event: &str) {
        if self.accounting.wants(Kind::Config) {
            let config = self.config.current();
            self.accounting.record(
                Kind::Config,
                json!({
                    "event": event,
                    "writer": config.ext_wrt_name,
                    "log_level": logging::mask(),
                    "statements": running::render(&config),
                }),
            );
        }
    }
}

/// Sends one command to the daemon whose control socket is `socket`.
///
/// # Errors
/// The daemon cannot be reached, or its reply cannot be read.
pub async fn request(socket: &Path, command: &str) -> std::io::Result<Reply> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(&Request {
        command: command.to_owned(),
    })?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await?;
    serde_json::from_str(&reply).map_err(std::io::Error::other)
}
