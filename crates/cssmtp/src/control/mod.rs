//! The operator interface: CSSMTP's MODIFY commands over a Unix socket.
//!
//! The daemon listens on `<RunDirectory>/<ExtWrtName>.sock` (mode 0600; a peer that is
//! neither the daemon's user nor root is refused). `cssmtp modify -c FILE DISPLAY,TARGETS`
//! sends one request, a JSON line `{"command":"DISPLAY,TARGETS"}`, and gets one JSON
//! line back: `{"ok":true,"lines":[…],"data":{…}}`; the lines are the console reply,
//! each message line starting with its message ID, and `data` the same facts for
//! programs (`--json`). A request that cannot be read gets an error reply; nothing a
//! client sends can stop the daemon but STOP.

mod change;
pub(crate) mod command;
mod display;
mod reply;
pub mod server;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use change::{
    FlushAgeAnswer, FlushTaskAnswer, IntakeAnswer, LogLevelChanged, RefreshAnswer, RefreshRefused,
    RefreshTargetsAnswer, StopAnswer,
};
pub use command::{Command, parse};
pub use display::{
    ConfigAnswer, DisplayLogLevelAnswer, Global, IplistAnswer, IplistEntry, Limit, Protocol,
    Readiness, SizeSource, SpoolAnswer, TargetAnswer, TargetsAnswer,
};
pub use reply::{Answer, Refusal};

use crate::config::LiveConfig;
use crate::delivery::router::Router;
use crate::spool::status::{Suspend, TaskRegistry};
pub use crate::telemetry::ConfigEvent;
use crate::telemetry::{Event as TelemetryEvent, Telemetry};

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
    /// Statistics and accounting records.
    pub telemetry: Telemetry,
    pub tasks: Arc<TaskRegistry>,
    pub suspend: watch::Sender<Suspend>,
    pub stop: CancellationToken,
    /// Extended retry (when active): FLUSHRETRY,AGE= requests.
    pub extended_flush: Option<mpsc::UnboundedSender<FlushAge>>,
    /// Mails in extended retry now.
    pub extended_current: Arc<AtomicU64>,
    pub started: SystemTime,
    /// The shared spool's cluster (`SpoolDatabase`), for DISPLAY SPOOLSTATUS.
    pub cluster: Option<Arc<dyn crate::storage::pg::cluster::ClusterSource>>,
    /// The cluster as last read by the background refresher, for the metrics.
    pub cluster_view: Option<Arc<crate::storage::pg::cluster::ClusterView>>,
}

impl Control {
    /// With a shared spool, says that a command acted on this instance only.
    fn here_only(&self, mut reply: Reply) -> Reply {
        if let Some(cluster) = &self.cluster
            && reply.ok
        {
            reply.lines.push(format!(
                "  (this instance only: {}; the other instances sharing the spool database go on as they were)",
                cluster.instance()
            ));
        }
        reply
    }

    /// The shared spool's cluster now (`SpoolDatabase`), or why the database cannot
    /// say; `None` without a shared spool.
    async fn cluster_now(&self) -> Option<Result<crate::storage::pg::cluster::Cluster, String>> {
        match &self.cluster {
            Some(c) => Some(c.snapshot().await.map_err(|e| e.to_string())),
            None => None,
        }
    }

    /// Carries out a command.
    pub async fn execute(&self, command: Command) -> Reply {
        match command {
            Command::DisplayTargets { addr } => {
                self.display_targets(addr, self.cluster_now().await)
            }
            Command::DisplayIplist => self.iplist(None).reply(),
            Command::DisplayConfig => self.display_config(),
            Command::DisplayLoglevel => Self::display_loglevel(),
            Command::DisplaySpoolstatus { detail, tkid } => {
                self.display_spool(detail, tkid, self.cluster_now().await)
            }
            Command::FlushRetryTask { tkid } => self.here_only(self.flush_task(tkid).await),
            Command::FlushRetryAge { days } => self.here_only(self.flush_age(days).await),
            Command::LogLevel { level } => self.log_level(level),
            Command::Refresh => self.refresh().await,
            Command::RefreshIplist => self.refresh_iplist().await,
            Command::RefreshTargets => self.refresh_targets(),
            Command::Suspend { immediate } => self.here_only(self.suspend(immediate)),
            Command::Resume => self.here_only(self.resume()),
            Command::Stop => self.stop(),
            Command::UserExit { on } => self.user_exit(on),
        }
    }

    /// A CONFIG accounting record (start, REFRESH, LOGLEVEL).
    pub fn record_config(&self, event: ConfigEvent) {
        self.telemetry.emit(TelemetryEvent::Config {
            event,
            config: &self.config.current(),
        });
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
