//! Shutdown in a stated order, with a deadline (the order is documented in
//! [`super`]'s module doc and the README's "Running" section).
//!
//! [`Shutdown`] owns every part still running once intake has returned, and ends them
//! one phase after another; nothing depends on the order in which `Arc`s drop.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::control::Control;
use crate::delivery::MailJob;
use crate::delivery::worker::{self, DeliveryContext};
use crate::journal::JournalWriter;
use crate::notify::Notifier;
use crate::queue::TaskShared;
use crate::spool::layout::InstanceLock;
use crate::telemetry::{AccountingWriter, Telemetry};

/// How long after a stop transactions in progress may take before they are cut
/// ([`crate::delivery::cutoff`]): a transaction before its final "." is abandoned
/// then; one past it runs to its reply (bounded by `Timeout DataTerm`).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// The delivery workers, and what says they have all ended.
pub(super) struct Workers {
    /// Ends once every worker has.
    supervisor: JoinHandle<()>,
    /// Cancelled when every worker has ended: spool tasks that were stopped wait for it,
    /// so that they count what the transactions in progress at the stop delivered.
    pub(super) done: CancellationToken,
}

impl Workers {
    /// Starts `count` workers taking mail from `queue`. Once `stop` is cancelled each
    /// takes no more; `deadline` later, transactions still in progress are cut.
    pub(super) fn start(
        ctx: &Arc<DeliveryContext>,
        queue: async_channel::Receiver<MailJob>,
        count: usize,
        stop: &CancellationToken,
        deadline: Duration,
    ) -> Self {
        let cutoff = CancellationToken::new();
        let mut workers = JoinSet::new();
        for _ in 0..count {
            workers.spawn(worker::run(
                Arc::clone(ctx),
                queue.clone(),
                stop.clone(),
                cutoff.clone(),
            ));
        }
        let done = CancellationToken::new();
        tokio::spawn(cut_at_deadline(
            stop.clone(),
            deadline,
            cutoff,
            done.clone(),
        ));
        let supervisor = {
            let done = done.clone();
            tokio::spawn(async move {
                while workers.join_next().await.is_some() {}
                done.cancel();
            })
        };
        Self { supervisor, done }
    }
}

/// Once `stop` is cancelled, waits `deadline` (or until every worker has ended), then
/// cancels `cutoff`.
async fn cut_at_deadline(
    stop: CancellationToken,
    deadline: Duration,
    cutoff: CancellationToken,
    done: CancellationToken,
) {
    tokio::select! {
        () = done.cancelled() => return,
        () = stop.cancelled() => {}
    }
    tokio::select! {
        () = done.cancelled() => {}
        () = tokio::time::sleep(deadline) => {
            tracing::warn!(
                "CSM1080W The shutdown deadline ({} s) has passed: transactions before their final \".\" are abandoned (their recipients go at the next start); one past its \".\" is waited for until its reply",
                deadline.as_secs()
            );
            cutoff.cancel();
        }
    }
}

/// Everything still running once intake has returned (every spool task at a safe
/// point), ended by [`Shutdown::run`] in this order.
pub(super) struct Shutdown {
    /// What the spool tasks shared: the last sender on the delivery queue but the
    /// notifier's, the journal store's last user but the reaper.
    pub(super) shared: Arc<TaskShared>,
    /// Extended retry (when active).
    pub(super) extended: Option<JoinHandle<()>>,
    /// Holds the other sender on the delivery queue.
    pub(super) notifier: Arc<Notifier>,
    pub(super) workers: Workers,
    pub(super) ctx: Arc<DeliveryContext>,
    /// Ends the reaper: it removes the files it was given (after a journal sync), then
    /// ends.
    pub(super) reaper_stop: CancellationToken,
    pub(super) reaper: JoinHandle<()>,
    pub(super) journal_writer: Option<JournalWriter>,
    /// Ends the services: the monitor, STATS records and SIGHUP; the control socket
    /// (which removes it) and the metrics endpoint.
    pub(super) services_stop: super::services::Stop,
    pub(super) services: super::services::Services,
    pub(super) control: Arc<Control>,
    pub(super) telemetry: Telemetry,
    pub(super) accounting_writer: Option<AccountingWriter>,
    /// Released last: another instance may start once everything above is done.
    pub(super) lock: InstanceLock,
}

impl Shutdown {
    /// Ends every part, in order:
    ///
    /// 1. What runs on timers ends: the health monitor, STATS records, SIGHUP. Extended
    ///    retry ends (it takes no more mail after a stop; after a drain, it has none
    ///    left).
    /// 2. The delivery queue closes (the spool tasks' and the notifier's senders go):
    ///    each worker ends its session with QUIT and ends. After a stop, the workers
    ///    have already ended, or been cut at the deadline, before intake returned.
    /// 3. The reaper removes the spool files given to it (their `done` records synced
    ///    first) and ends: every result is in storage.
    /// 4. The journal's writer syncs it a last time and closes it (every handle is gone).
    /// 5. The listeners close: the control socket (removed) and the metrics endpoint.
    ///    The accounting writer writes what it was given and closes the file.
    /// 6. The instance lock is released.
    pub(super) async fn run(self) {
        let Self {
            shared,
            extended,
            notifier,
            workers,
            ctx,
            reaper_stop,
            reaper,
            journal_writer,
            services_stop,
            services,
            control,
            telemetry,
            accounting_writer,
            lock,
        } = self;
        // 1.
        services_stop.timers.cancel();
        for service in services.timers {
            let _ = service.await;
        }
        drop(shared);
        if let Some(extended) = extended {
            let _ = extended.await;
        }
        // 2.
        drop(notifier);
        let _ = workers.supervisor.await;
        drop(ctx);
        // 3.
        reaper_stop.cancel();
        let _ = reaper.await;
        // 4.
        if let Some(writer) = journal_writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        // 5.
        services_stop.listeners.cancel();
        for service in services.listeners {
            let _ = service.await;
        }
        drop(control);
        drop(telemetry);
        if let Some(writer) = accounting_writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        // 6.
        drop(lock);
    }
}
