//! What a file's driver holds: what every driver shares ([`TaskShared`]), its own
//! state ([`Task`]), and what it keeps with each mail ([`Payload`]). Data only: the
//! driver's loop is in [`super::file`], its effects in [`super::effects`].

use std::sync::Arc;

use chrono::{DateTime, Local};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::state::FileQueue;
use crate::config::{Config, LiveConfig};
use crate::delivery::{MailJob, MailOutcome, SpoolText};
use crate::notify::{Notifier, Returned};
use crate::spool::layout::{Reaper, SpoolLayout};
use crate::spool::name::JobIdentity;
use crate::spool::report::FileReport;
use crate::spool::status::{Suspend, TaskRegistry, TaskStatus};
use crate::storage::parked::ParkedId;
use crate::storage::{FileStore, RecoveredFile, SpoolClaim, StateStore};
use crate::telemetry::Telemetry;

/// Mails of one file tracked at once (in delivery, waiting to retry, or being returned);
/// the parser waits beyond this, so memory stays bounded whatever the file's size.
/// `ChkPointSizeLimit`, shared by the spool tasks, may lower it.
const MAX_PENDING_MAILS: usize = 1024;
/// What spool tasks share.
pub struct TaskShared {
    /// The configuration in force; a task takes it when it starts on a file.
    pub config: Arc<LiveConfig>,
    pub host_name: String,
    pub layout: SpoolLayout,
    pub queue: async_channel::Sender<MailJob>,
    pub stop: CancellationToken,
    /// Cancelled once every delivery worker has ended (after `stop`, each ends when its
    /// transaction in progress has).
    pub workers_done: CancellationToken,
    /// Removes finished files from `active/` (in groups).
    pub reaper: Reaper,
    pub notifier: Arc<Notifier>,
    /// Tells extended retry about the mails written to the MailDirectory (None when
    /// ExtendedRetry is inactive).
    pub extended: Option<mpsc::UnboundedSender<ParkedId>>,
    /// Where the queue's state is kept (the checkpoint journal: `ChkPoint Yes`, not in
    /// TestMode); it knows what was recorded of the files left claimed.
    pub store: Option<Arc<dyn StateStore>>,
    /// The tasks running now (DISPLAY SPOOLSTATUS, FLUSHRETRY).
    pub tasks: Arc<TaskRegistry>,
    /// SUSPEND and RESUME.
    pub suspend: watch::Receiver<Suspend>,
    /// What people are told: log lines, statistics, accounting records.
    pub telemetry: Telemetry,
}

impl TaskShared {
    /// Mails one spool task tracks at once.
    pub fn max_pending_mails(&self) -> usize {
        let config = self.config.current();
        let share = config.chk_point_size_limit as usize / config.spool_tasks.max(1);
        share.clamp(1, MAX_PENDING_MAILS)
    }
}

/// One file's driver: its queue and what carrying out the queue's effects needs.
pub(super) struct Task {
    pub(super) tkid: u32,
    pub(super) shared: Arc<TaskShared>,
    pub(super) spool: Arc<SpoolText>,
    /// The claimed file (how it is finished, where its mails are parked and held).
    pub(super) claim: Arc<dyn SpoolClaim>,
    pub(super) job: JobIdentity,
    pub(super) arrival: DateTime<Local>,
    pub(super) queue: FileQueue<Payload>,
    pub(super) outcomes: mpsc::UnboundedSender<MailOutcome>,
    /// Mails being returned to their originators.
    pub(super) returns: JoinSet<(u32, Returned)>,
    pub(super) report: FileReport,
    /// This file's state in the store (when there is one).
    pub(super) store: Option<Arc<dyn FileStore>>,
    /// What the store knew of this file at start (warm restart).
    pub(super) recovered: RecoveredFile,
    /// The configuration in force when the task started.
    pub(super) config: Arc<Config>,
    /// What DISPLAY SPOOLSTATUS shows of this task.
    pub(super) status: Arc<TaskStatus>,
    pub(super) suspend: watch::Receiver<Suspend>,
    /// Answer to a FLUSHRETRY in progress.
    pub(super) flushed: Option<u64>,
    /// What is kept of each mail's life until it is final (queue/trace.rs).
    pub(super) lives: std::collections::HashMap<u32, crate::domain::outcome::MailLife>,
}

/// What the driver keeps with each mail: how to send it again.
#[derive(Debug)]
pub struct Payload {
    /// Headers cssmtp adds, wire form.
    pub headers: Arc<[u8]>,
    /// Where its text is in the spool file.
    pub data: cssmtp_batch::DataSpan,
    pub needs_tls: bool,
    /// Size as the receiver stores it.
    pub size: u64,
}
