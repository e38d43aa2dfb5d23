//! Wiring: builds every part from a [`Config`] in one place ([`run`]), runs them until
//! the spool is drained or cssmtp is stopped, then ends them in a stated order.
//!
//! # Start-up, in order
//!
//! 1. The spool directories: missing ones created, every one checked (an unsafe one
//!    stops the start, CSM1060E); the instance lock taken (CSM1002E when another
//!    instance serves the writer name).
//! 2. The checkpoint journal opened and recovered (waiting, CSM2310W, while it cannot
//!    be written); with `SpoolDatabase`, instead, the shared spool's database reached
//!    and its schema made current (waiting, CSM2609E, while it cannot be reached), and
//!    intake takes its files from there ([`crate::storage::pg::daemon`]).
//! 3. TLS client settings; the targets resolved into the router.
//! 4. The live configuration, telemetry: statistics and the accounting file.
//! 5. The delivery workers (`MaxConnections`), on a bounded queue.
//! 6. The reaper (removes finished spool files after a journal sync), the notifier,
//!    extended retry.
//! 7. The operator interface and its companions: control socket, metrics endpoint,
//!    health monitor, STATS records, SIGHUP; the CONFIG `start` accounting record.
//! 8. Intake, which claims spool files and runs a spool task per file. [`run`] waits
//!    for it.
//!
//! # Shutdown, in order
//!
//! A stop (SIGTERM, SIGINT, the operator's STOP) cancels `stop`:
//!
//! 1. Intake takes no more spool files; each spool task stops at its next safe point
//!    (its file stays claimed in `active/` for the next start) and waits for the
//!    delivery workers.
//! 2. Each worker takes no more mail; a transaction in progress runs to its end, until
//!    the deadline ([`SHUTDOWN_DEADLINE`], 30 s after the stop, CSM1080W). Then a
//!    transaction before its final "." is abandoned (CSM1081W): its recipients are not
//!    final in the journal, so the next start sends them, once. A transaction whose "."
//!    is out waits for its reply (bounded by `Timeout DataTerm`): cssmtp never stops
//!    between the "." and its reply. The spool tasks count what was delivered and end;
//!    intake returns.
//! 3. [`Shutdown::run`](shutdown::Shutdown::run): the health monitor, STATS records
//!    and SIGHUP end; extended retry ends; the delivery
//!    queue closes and the workers end (QUIT); the reaper removes the files finished
//!    (their `done` records synced first); the journal has its last sync and is closed;
//!    the control socket (removed), the metrics endpoint, the monitor and STATS records
//!    end; the accounting file is written out and closed; the instance lock is
//!    released.
//!
//! Whatever point a stop (or a crash, or `kill -9`) interrupts, the checkpoint journal
//! guarantees the next start neither loses a mail nor sends again what a server
//! accepted: the deadline only decides how long this run waits, never what is sent.
//! After a drain (`run --drain`), steps 3 run the same way, with nothing in progress.

mod build;
mod services;
mod shutdown;
mod systemd;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, LiveConfig};
use crate::control::{ConfigEvent, Control};
use crate::delivery::tls;
use crate::delivery::worker::DeliveryContext;
use crate::notify::{Limiter, Notifier};
use crate::queue::TaskShared;
use crate::queue::parked;
use crate::spool::intake::{self, Mode};
use crate::spool::layout::Reaper;
use crate::spool::report::FileReport;
use crate::spool::status::{Suspend, TaskRegistry};
use crate::telemetry::{Snapshot, Telemetry};

pub use shutdown::SHUTDOWN_DEADLINE;
use shutdown::{Shutdown, Workers};

/// How to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    pub mode: Mode,
    /// Keep a [`FileReport`] of every spool file finished (the demo and tests read them).
    /// Off for `cssmtp run`: a daemon must not grow with the files it has handled.
    pub keep_reports: bool,
    /// Cold start (`run -f`): discard the checkpoint journal.
    pub cold: bool,
    /// SIGHUP means REFRESH (`cssmtp run`; not for tests running several in a process).
    pub sighup: bool,
    /// After a stop, how long transactions in progress may take before those not yet at
    /// their final "." are abandoned ([`SHUTDOWN_DEADLINE`]).
    pub deadline: Duration,
}

impl RunOptions {
    /// Until stopped, keeping no reports.
    pub fn daemon() -> Self {
        Self {
            mode: Mode::Daemon,
            keep_reports: false,
            cold: false,
            sighup: false,
            deadline: SHUTDOWN_DEADLINE,
        }
    }

    /// Until the spool is drained, keeping no reports.
    pub fn drain() -> Self {
        Self {
            mode: Mode::Drain,
            keep_reports: false,
            cold: false,
            sighup: false,
            deadline: SHUTDOWN_DEADLINE,
        }
    }

    /// With another shutdown deadline.
    pub fn deadline(self, deadline: Duration) -> Self {
        Self { deadline, ..self }
    }

    /// Also keep a report of every spool file.
    pub fn keep_reports(self) -> Self {
        Self {
            keep_reports: true,
            ..self
        }
    }
}

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    /// The spool files finished during the run (with [`RunOptions::keep_reports`]).
    pub files: Vec<FileReport>,
    pub stats: Snapshot,
    /// The run was stopped (signal) rather than drained.
    pub stopped: bool,
}

impl RunReport {
    /// True when every recipient of every finished file was delivered (none returned,
    /// none left in extended retry) and no file had problems.
    pub fn all_delivered(&self) -> bool {
        self.stats.rcpts_undeliverable == 0
            && self.stats.files_with_errors == 0
            && self.stats.rcpts_extended == 0
    }
}

/// This system's host name, when it is a valid domain name.
pub fn system_host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| cssmtp_batch::address::valid_domain(h))
        .unwrap_or_else(|| "localhost".into())
}

/// Runs cssmtp: intake, spool tasks and delivery workers, until `stop` is cancelled
/// or, in [`Mode::Drain`], until every spool file is final; then shuts down in the
/// order the module documentation states.
///
/// # Errors
/// Start-up failures: the spool cannot be created or is served by another instance,
/// TLS or DNS cannot be set up. An intake failure (the spool cannot be listed) after a
/// shutdown in order.
pub async fn run(
    config: Config,
    options: RunOptions,
    stop: CancellationToken,
) -> anyhow::Result<RunReport> {
    let config = Arc::new(config);
    // 1. The spool directories and the instance lock.
    let layout = build::checked_layout(&config).await?;
    let lock = layout.lock(&config.ext_wrt_name)?;
    // 2. The checkpoint journal, or the shared spool's database (`SpoolDatabase`).
    let stopped_at_start = || {
        tracing::info!("CSM1004I cssmtp stopped");
        RunReport {
            files: Vec::new(),
            stats: Snapshot::default(),
            stopped: true,
        }
    };
    let Some((database, checkpointing)) =
        build::storage(&config, &layout, options.cold, &stop).await?
    else {
        return Ok(stopped_at_start());
    };
    // 3. TLS and the targets.
    let host_name = config.host_name.clone().unwrap_or_else(system_host_name);
    let (tls_config, skipped) = tls::client_config(&config.tls_ca_files)?;
    if skipped > 0 {
        tracing::warn!("CSM1020W {skipped} system CA certificate(s) could not be loaded");
    }
    let router = build::router(&config, &stop).await?;
    // 4. The live configuration, telemetry (statistics, accounting).
    let live = Arc::new(LiveConfig::new(Arc::clone(&config)));
    let (accounting, accounting_writer) = build::open_accounting(&config);
    let telemetry = Telemetry::new(accounting);
    let stats = telemetry.stats();
    // 5. The delivery workers.
    let (queue_tx, queue_rx) = async_channel::bounded(config.max_connections * 2);
    let ctx = Arc::new(
        DeliveryContext::new(
            Arc::clone(&router),
            config.timeouts,
            host_name.clone(),
            tls_config,
            telemetry.clone(),
        )
        .with_ca_files(config.tls_ca_files.clone())
        .with_source(config.source_address),
    );
    let workers = Workers::start(
        &ctx,
        queue_rx,
        config.max_connections,
        &stop,
        options.deadline,
    );
    tracing::info!(
        "CSM1001I cssmtp {} ready: writer {}, spool {}, {} target(s), up to {} spool tasks and {} connections",
        env!("CARGO_PKG_VERSION"),
        config.ext_wrt_name,
        layout.incoming.display(),
        router.targets().len(),
        config.spool_tasks,
        config.max_connections
    );
    // 6. The reaper, the notifier, extended retry.
    let reaper_stop = CancellationToken::new();
    let (reaper, reaper_task) = Reaper::spawn(
        layout.active.clone(),
        checkpointing.journal.clone(),
        reaper_stop.clone(),
    );
    let notifier = Arc::new(Notifier {
        config: Arc::clone(&live),
        host: host_name.clone(),
        generated: crate::queue::generated::Driver::new(queue_tx.clone(), stop.clone()),
        telemetry: telemetry.clone(),
        limiter: Limiter::new(config.notify_limit),
        router: Arc::clone(&router),
    });
    let extended_current = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (extended_tx, extended_flush, extended) = match config.extended_retry.clone() {
        Some(settings) => {
            let interval = settings.interval;
            let manager = parked::Manager {
                settings,
                notifier: Arc::clone(&notifier),
                queue: queue_tx.clone(),
                telemetry: telemetry.clone(),
                // With `SpoolDatabase`, parked mail is the cluster's (any instance of
                // the writer drives it); else the MailDirectory.
                store: match &database {
                    Some(d) => d.parked(
                        &config.ext_wrt_name,
                        interval,
                        layout.active.clone(),
                        host_name.clone(),
                    ),
                    None => Arc::new(crate::storage::maildir::MailDirectory::new(
                        config.mail_directory(),
                        host_name.clone(),
                    )),
                },
                current: Arc::clone(&extended_current),
            };
            build::start_extended_retry(manager, &stop, options.mode)
        }
        None => (None, None, None),
    };
    // 7. The operator interface and its companions.
    let tasks = Arc::new(TaskRegistry::default());
    let (suspend_tx, suspend_rx) = tokio::sync::watch::channel(Suspend::Running);
    // With a shared spool, the cluster as the metrics show it: read every few seconds
    // in the background, so that a scrape never waits on the database.
    let cluster = database.as_ref().map(|d| d.cluster());
    let cluster_view = cluster.as_ref().map(|source| {
        let view = Arc::new(crate::storage::pg::cluster::ClusterView::default());
        drop(crate::storage::pg::cluster::refresher(
            Arc::clone(source),
            Arc::clone(&view),
            crate::storage::pg::cluster::VIEW_REFRESH,
            stop.clone(),
        ));
        view
    });
    let control = Arc::new(Control {
        config: Arc::clone(&live),
        router: Arc::clone(&router),
        telemetry: telemetry.clone(),
        tasks: Arc::clone(&tasks),
        suspend: suspend_tx,
        stop: stop.clone(),
        extended_flush,
        extended_current: Arc::clone(&extended_current),
        started: std::time::SystemTime::now(),
        cluster,
        cluster_view,
    });
    control.record_config(ConfigEvent::Start);
    let services_stop = services::Stop::default();
    let services = services::start_services(
        &config,
        &control,
        options,
        &services_stop,
        suspend_rx.clone(),
    )
    .await;
    let systemd = systemd::Systemd::ready(&stop, &format!("writer {}", config.ext_wrt_name));
    // 8. Intake, until drained or stopped.
    let shared = Arc::new(TaskShared {
        config: Arc::clone(&live),
        host_name,
        layout,
        queue: queue_tx,
        telemetry: telemetry.clone(),
        stop: stop.clone(),
        workers_done: workers.done.clone(),
        reaper,
        notifier: Arc::clone(&notifier),
        extended: extended_tx,
        store: database.as_ref().map(|d| d.store()).or_else(|| {
            checkpointing.journal.map(|j| {
                Arc::new(crate::storage::journal::JournalStore::new(
                    j,
                    checkpointing.recovered,
                )) as Arc<dyn crate::storage::StateStore>
            })
        }),
        tasks,
        suspend: suspend_rx,
    });
    let files = match database {
        Some(database) => {
            database
                .intake(
                    Arc::clone(&shared),
                    router,
                    options.mode,
                    options.keep_reports,
                )
                .await
        }
        None => {
            intake::run(
                Arc::clone(&shared),
                router,
                options.mode,
                options.keep_reports,
            )
            .await
        }
    };
    if files.is_err() {
        // Intake failed: everything else stops too, in order.
        stop.cancel();
    }
    systemd.stopping();
    Shutdown {
        shared,
        extended,
        notifier,
        workers,
        ctx,
        reaper_stop,
        reaper: reaper_task,
        journal_writer: checkpointing.writer,
        services_stop,
        services,
        control,
        telemetry,
        accounting_writer,
        lock,
    }
    .run()
    .await;
    let files = files?;
    let stopped = stop.is_cancelled();
    tracing::info!(
        "CSM1004I cssmtp {}",
        if stopped {
            "stopped"
        } else {
            "drained the spool"
        }
    );
    Ok(RunReport {
        files,
        stats: stats.snapshot(),
        stopped,
    })
}
