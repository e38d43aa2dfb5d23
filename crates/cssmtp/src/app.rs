//! Wiring: builds every part from a [`Config`] and runs until drained or stopped.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::accounting::{Accounting, AccountingWriter, Kind};
use crate::config::Config;
use crate::config::LiveConfig;
use crate::control::Control;
use crate::delivery::resolve::{resolve, resolver_for};
use crate::delivery::router::Router;
use crate::delivery::tls;
use crate::delivery::worker::{self, DeliveryContext};
use crate::journal::{self, FileCheckpoint, Journal, JournalOptions, JournalWriter};
use crate::notify::{Limiter, Notifier};
use crate::queue::TaskShared;
use crate::queue::parked;
use crate::spool::SpoolLayout;
use crate::spool::intake::{self, Mode};
use crate::spool::layout::Reaper;
use crate::spool::report::FileReport;
use crate::spool::status::{Suspend, TaskRegistry};
use crate::stats::{Snapshot, Stats};

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
}

impl RunOptions {
    /// Until stopped, keeping no reports.
    pub fn daemon() -> Self {
        Self {
            mode: Mode::Daemon,
            keep_reports: false,
            cold: false,
            sighup: false,
        }
    }

    /// Until the spool is drained, keeping no reports.
    pub fn drain() -> Self {
        Self {
            mode: Mode::Drain,
            keep_reports: false,
            cold: false,
            sighup: false,
        }
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
/// or, in [`Mode::Drain`], until every spool file is final.
///
/// # Errors
/// Start-up failures: the spool cannot be created or is served by another instance,
/// TLS or DNS cannot be set up.
pub async fn run(
    config: Config,
    options: RunOptions,
    stop: CancellationToken,
) -> anyhow::Result<RunReport> {
    let config = Arc::new(config);
    let layout = SpoolLayout::new(config.writer_spool());
    // Missing directories are created with safe modes; every directory is then checked
    // (ownership and modes, and those of its ancestors): an unsafe one stops the start.
    // (On a blocking thread: the checks walk directories and look owners up.)
    let problems = {
        let config = Arc::clone(&config);
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
            crate::spool::checks::create_missing(&config)?;
            Ok(crate::spool::checks::check(&config))
        })
        .await??
    };
    if !problems.is_empty() {
        return Err(crate::spool::checks::UnsafeDirectories(problems).into());
    }
    let _lock = layout.lock(&config.ext_wrt_name)?;
    // A journal that cannot be written (full or read-only file system) pauses cssmtp
    // before it takes any file, until it can be; nothing is sent without it.
    let mut paused = false;
    let Checkpointing {
        journal,
        recovered,
        writer: journal_writer,
    } = loop {
        // Recovery reads and rewrites the whole journal: on a blocking thread.
        let opened = {
            let (config, layout, cold) = (Arc::clone(&config), layout.clone(), options.cold);
            tokio::task::spawn_blocking(move || open_journal(&config, &layout, cold)).await?
        };
        match opened {
            Ok(opened) => break opened,
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::WouldBlock) =>
            {
                return Err(e);
            }
            Err(e) => {
                if !paused {
                    tracing::warn!(
                        "CSM2310W {e:#}; intake is paused until it can be written (tried every {} s)",
                        journal::PROBE_INTERVAL.as_secs()
                    );
                    paused = true;
                }
                tokio::select! {
                    () = stop.cancelled() => {
                        tracing::info!("CSM1004I cssmtp stopped");
                        return Ok(RunReport {
                            files: Vec::new(),
                            stats: Stats::default().snapshot(),
                            stopped: true,
                        });
                    }
                    () = tokio::time::sleep(journal::PROBE_INTERVAL) => {}
                }
            }
        }
    };
    if paused {
        tracing::info!(
            "CSM2311I The checkpoint journal {} can be written again; intake resumes",
            config.journal_path().display()
        );
    }
    let host_name = config.host_name.clone().unwrap_or_else(system_host_name);
    let (tls_config, skipped) = tls::client_config(&config.tls_ca_files)?;
    if skipped > 0 {
        tracing::warn!("CSM1020W {skipped} system CA certificate(s) could not be loaded");
    }
    let resolver =
        resolver_for(&config.targets, &config.name_servers).map_err(anyhow::Error::msg)?;
    let (resolved, warnings) = resolve(&config.targets, resolver.as_ref()).await;
    for w in &warnings {
        tracing::warn!("CSM1021W {w}");
    }
    for r in &resolved {
        tracing::info!(
            "CSM1022I Target server {} from {}{}",
            r.addr,
            r.origin,
            if r.secure { ", Secure" } else { "" }
        );
    }
    let connect_retry = config.timeouts.connect_retry;
    let router = Arc::new(Router::new(resolved, connect_retry));
    if router.targets().is_empty() {
        tracing::error!(
            "CSM1023E No target server address is available; resolving again every {} seconds",
            connect_retry.as_secs()
        );
        let (router, targets, stop) = (Arc::clone(&router), config.targets.clone(), stop.clone());
        tokio::spawn(async move {
            while router.targets().is_empty() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(connect_retry) => {}
                }
                let (resolved, warnings) = resolve(&targets, resolver.as_ref()).await;
                for w in &warnings {
                    tracing::warn!("CSM1021W {w}");
                }
                if !resolved.is_empty() {
                    router.set_targets(resolved);
                }
            }
        });
    }

    let stats = Arc::new(Stats::default());
    let live = Arc::new(LiveConfig::new(Arc::clone(&config)));
    let (accounting, accounting_writer) = open_accounting(&config);
    let (queue_tx, queue_rx) = async_channel::bounded(config.max_connections * 2);
    let ctx = Arc::new(DeliveryContext::new(
        Arc::clone(&router),
        config.timeouts,
        host_name.clone(),
        tls_config,
        Arc::clone(&stats),
        accounting.clone(),
    ));
    let mut workers = JoinSet::new();
    for _ in 0..config.max_connections {
        workers.spawn(worker::run(
            Arc::clone(&ctx),
            queue_rx.clone(),
            stop.clone(),
        ));
    }
    drop(queue_rx);
    // Said when every worker has ended: spool tasks that were stopped wait for it, so
    // that they count what the transactions in progress at the stop delivered.
    let workers_done = CancellationToken::new();
    let workers = {
        let done = workers_done.clone();
        tokio::spawn(async move {
            while workers.join_next().await.is_some() {}
            done.cancel();
        })
    };
    tracing::info!(
        "CSM1001I cssmtp {} ready: writer {}, spool {}, {} target(s), up to {} spool tasks and {} connections",
        env!("CARGO_PKG_VERSION"),
        config.ext_wrt_name,
        layout.incoming.display(),
        router.targets().len(),
        config.spool_tasks,
        config.max_connections
    );
    let sync_stop = CancellationToken::new();
    let (reaper, syncer) = Reaper::spawn(layout.active.clone(), journal.clone(), sync_stop.clone());
    let notifier = Arc::new(Notifier {
        config: Arc::clone(&live),
        host: host_name.clone(),
        generated: crate::queue::generated::Driver::new(queue_tx.clone(), stop.clone()),
        stats: Arc::clone(&stats),
        limiter: Limiter::new(config.notify_limit),
        router: Arc::clone(&router),
    });
    // Extended retry runs beside intake, from the MailDirectory.
    let extended_current = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (extended_tx, extended_flush, extended) = match config.extended_retry.clone() {
        Some(settings) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let (flush_tx, flush_rx) = tokio::sync::mpsc::unbounded_channel();
            let manager = parked::Manager {
                config: Arc::clone(&config),
                settings,
                notifier: Arc::clone(&notifier),
                queue: queue_tx.clone(),
                stats: Arc::clone(&stats),
                current: Arc::clone(&extended_current),
            };
            (
                Some(tx),
                Some(flush_tx),
                Some(tokio::spawn(manager.run(
                    rx,
                    flush_rx,
                    stop.clone(),
                    options.mode,
                ))),
            )
        }
        None => (None, None, None),
    };
    let tasks = Arc::new(TaskRegistry::default());
    let (suspend_tx, suspend_rx) = tokio::sync::watch::channel(Suspend::Running);
    let control = Arc::new(Control {
        config: Arc::clone(&live),
        router: Arc::clone(&router),
        stats: Arc::clone(&stats),
        tasks: Arc::clone(&tasks),
        suspend: suspend_tx,
        stop: stop.clone(),
        extended_flush,
        extended_current: Arc::clone(&extended_current),
        accounting: accounting.clone(),
        started: std::time::SystemTime::now(),
    });
    control.config_record("start");
    let services = start_services(&config, &control, options, &sync_stop, suspend_rx.clone()).await;
    let shared = Arc::new(TaskShared {
        config: Arc::clone(&live),
        host_name,
        layout,
        queue: queue_tx,
        stats: Arc::clone(&stats),
        stop: stop.clone(),
        workers_done,
        reaper,
        notifier: Arc::clone(&notifier),
        extended: extended_tx,
        store: journal.map(|j| {
            Arc::new(crate::storage::journal::JournalStore::new(j, recovered))
                as Arc<dyn crate::storage::StateStore>
        }),
        tasks,
        suspend: suspend_rx,
        accounting: accounting.clone(),
    });
    let files = intake::run(
        Arc::clone(&shared),
        router,
        options.mode,
        options.keep_reports,
    )
    .await?;
    drop(shared);
    if let Some(extended) = extended {
        let _ = extended.await;
    }
    // Closing the queue (its last senders are gone now) lets the workers finish and
    // say QUIT.
    drop(notifier);
    let _ = workers.await;
    sync_stop.cancel();
    let _ = syncer.await;
    for service in services {
        let _ = service.await;
    }
    drop(control);
    drop(ctx);
    drop(accounting);
    if let Some(writer) = accounting_writer {
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
    if let Some(writer) = journal_writer {
        // Every handle is gone with the tasks, the workers and the reaper: the syncer
        // ends after a last sync.
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
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

/// The checkpoint journal, when kept, and what it knew at start.
#[derive(Default)]
struct Checkpointing {
    journal: Option<Journal>,
    recovered: HashMap<String, FileCheckpoint>,
    writer: Option<JournalWriter>,
}

/// Opens the checkpoint journal (`ChkPoint Yes`, not in TestMode), reading what it knows
/// of the spool files left in `active/`.
fn open_journal(
    config: &Config,
    layout: &SpoolLayout,
    cold: bool,
) -> anyhow::Result<Checkpointing> {
    let path = config.journal_path();
    if !config.chk_point || config.options.test_mode {
        if cold {
            tracing::warn!(
                "CSM1007W Cold start: no checkpoint journal is kept (ChkPoint No or TestMode)"
            );
        }
        return Ok(Checkpointing::default());
    }
    let mut live = HashSet::new();
    for file in layout
        .left_active()
        .context("cannot list the active spool files")?
    {
        // Keyed as the task keys it: the escaped name and the inode (never through a
        // link: an entry that is not a regular file is never a spool file).
        let name = crate::escape::name(file.file_name().unwrap_or(file.as_os_str()));
        if let Ok(meta) = std::fs::symlink_metadata(&file)
            && meta.is_file()
        {
            live.insert(journal::file_key(&name, meta.ino()));
        }
    }
    if cold {
        tracing::warn!(
            "CSM1007W Cold start: checkpoint journal {} discarded; {} spool file(s) left in active/ are sent again in full",
            path.display(),
            live.len()
        );
    }
    let options = JournalOptions {
        cold,
        sync_each_mail: config.chk_point_sync_each_mail,
    };
    let (journal, recovered, writer) = Journal::open(&path, &live, options)
        .with_context(|| format!("cannot open the checkpoint journal {}", path.display()))?;
    if !cold {
        tracing::info!(
            "CSM1008I Checkpoint journal {}: {} record(s) read, {} spool file(s) to resume",
            path.display(),
            recovered.records,
            recovered.files.len()
        );
    }
    if recovered.system_restarted && !recovered.files.is_empty() {
        tracing::warn!(
            "CSM1014W The system restarted since the checkpoint journal {} was last written: with ChkPointSync Interval, a mail whose final \".\" went out in its last moments may be sent again without a CSM2301W",
            path.display()
        );
    }
    if recovered.damaged > 0 {
        tracing::warn!(
            "CSM1009W Checkpoint journal {}: {} damaged record(s) skipped (checksum or format); their recipients are treated as not yet final",
            path.display(),
            recovered.damaged
        );
    }
    Ok(Checkpointing {
        journal: Some(journal),
        recovered: recovered.files,
        writer: Some(writer),
    })
}

/// Opens the accounting file when `SMF119` selects any record.
fn open_accounting(config: &Config) -> (Accounting, Option<AccountingWriter>) {
    if !config.smf119.any() {
        return (Accounting::disabled(), None);
    }
    let path = config.accounting_path();
    match Accounting::open(&path, config.smf119) {
        Ok((accounting, writer)) => {
            tracing::info!(
                "CSM1042I Accounting records (SMF119) are written to {}",
                path.display()
            );
            (accounting, Some(writer))
        }
        Err(e) => {
            tracing::error!(
                "CSM1040E Cannot open the accounting file {}: {e}; no accounting records are written",
                path.display()
            );
            (Accounting::disabled(), None)
        }
    }
}

/// Starts what runs beside the mail path until `stop`: the control socket, the metrics
/// endpoint, the health monitor, STATS records and, for `cssmtp run`, SIGHUP.
async fn start_services(
    config: &Config,
    control: &Arc<Control>,
    options: RunOptions,
    stop: &CancellationToken,
    suspend: tokio::sync::watch::Receiver<Suspend>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut services = Vec::new();
    let socket = config.control_socket();
    match crate::control::server::bind(&socket) {
        Ok(listener) => {
            tracing::info!(
                "CSM1043I Operator commands: cssmtp modify -c {} <command> (socket {})",
                config.file.display(),
                socket.display()
            );
            services.push(tokio::spawn(crate::control::server::serve(
                listener,
                socket,
                Arc::clone(control),
                stop.clone(),
            )));
        }
        Err(e) => tracing::error!(
            "CSM1025E Cannot create the control socket {}: {e}; operator commands are not available",
            socket.display()
        ),
    }
    if let Some(addr) = config.metrics_listen {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let local = listener
                    .local_addr()
                    .map_or_else(|_| addr.to_string(), |a| a.to_string());
                tracing::info!("CSM1044I Metrics at http://{local}/metrics");
                let sources = Arc::new(crate::metrics::Sources {
                    stats: Arc::clone(&control.stats),
                    router: Arc::clone(&control.router),
                    tasks: Arc::clone(&control.tasks),
                    extended_current: Arc::clone(&control.extended_current),
                    suspend,
                });
                services.push(tokio::spawn(crate::metrics::serve(
                    listener,
                    sources,
                    stop.clone(),
                )));
            }
            Err(e) => tracing::error!(
                "CSM1024E Cannot listen for metrics on {addr}: {e}; no metrics endpoint"
            ),
        }
    }
    // Checked once they exist (the dead-letter and mail directories appear when used).
    let directories = vec![
        config.writer_spool(),
        config.dead_letter_directory(),
        config.mail_directory(),
    ];
    services.push(tokio::spawn(crate::monitor::run(
        Arc::clone(&control.tasks),
        directories,
        stop.clone(),
    )));
    if !config.stats_interval.is_zero() && control.accounting.wants(Kind::Stats) {
        services.push(tokio::spawn(stats_records(
            Arc::clone(control),
            config.stats_interval,
            stop.clone(),
        )));
    }
    if options.sighup {
        services.push(tokio::spawn(refresh_on_sighup(
            Arc::clone(control),
            stop.clone(),
        )));
    }
    services
}

/// A STATS accounting record every `interval`.
async fn stats_records(
    control: Arc<Control>,
    interval: std::time::Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = control.stats.snapshot();
        let tasks = control.tasks.all();
        control.accounting.record(
            Kind::Stats,
            serde_json::json!({
                "interval_seconds": interval.as_secs(),
                "counters": {
                    "mails_attempted": s.mails_attempted,
                    "mails_sent": s.mails_sent,
                    "mails_all_sent": s.mails_all_sent,
                    "mails_total_retry": s.mails_total_retry,
                    "mails_undeliverable": s.mails_undeliverable,
                    "rcpts_delivered": s.rcpts_delivered,
                    "rcpts_undeliverable": s.rcpts_undeliverable,
                    "rcpts_retried": s.rcpts_retried,
                    "rcpts_extended": s.rcpts_extended,
                    "files_done": s.files_done,
                    "files_held": s.files_held,
                    "notifications": s.notifications,
                    "dead_letters": s.dead_letters,
                    "reports": s.reports,
                    "connections": s.connections,
                },
                "spool_tasks": tasks.len(),
                "mails_in_retry": control.tasks.mails_in_retry(),
                "mails_in_extended_retry": control.extended_current.load(std::sync::atomic::Ordering::Relaxed),
                "accounting_records_lost": control.accounting.lost(),
            }),
        );
    }
}

/// SIGHUP: REFRESH, as the operator command.
async fn refresh_on_sighup(control: Arc<Control>, stop: CancellationToken) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        tracing::info!("CSM5021I SIGHUP: REFRESH");
        let _ = control.execute(crate::control::Command::Refresh).await;
    }
}
