//! Wiring: builds every part from a [`Config`] and runs until drained or stopped.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TargetHost, Targets};
use crate::delivery::resolve::{build_resolver, resolve};
use crate::delivery::router::Router;
use crate::delivery::tls;
use crate::delivery::worker::{self, DeliveryContext};
use crate::journal::{self, FileCheckpoint, Journal, JournalOptions, JournalWriter};
use crate::notify::{Limiter, Notifier};
use crate::retry::extended;
use crate::spool::SpoolLayout;
use crate::spool::intake::{self, Mode};
use crate::spool::layout::Reaper;
use crate::spool::task::{FileReport, TaskShared};
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
}

impl RunOptions {
    /// Until stopped, keeping no reports.
    pub fn daemon() -> Self {
        Self {
            mode: Mode::Daemon,
            keep_reports: false,
            cold: false,
        }
    }

    /// Until the spool is drained, keeping no reports.
    pub fn drain() -> Self {
        Self {
            mode: Mode::Drain,
            keep_reports: false,
            cold: false,
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
    layout.create().with_context(|| {
        format!(
            "cannot create the spool directory {}",
            layout.incoming.display()
        )
    })?;
    let _lock = layout.lock(&config.ext_wrt_name)?;
    let Checkpointing {
        journal,
        recovered,
        writer: journal_writer,
    } = open_journal(&config, &layout, options.cold)?;
    let host_name = config.host_name.clone().unwrap_or_else(system_host_name);
    let (tls_config, skipped) = tls::client_config(&config.tls_ca_files)?;
    if skipped > 0 {
        tracing::warn!("CSM1020W {skipped} system CA certificate(s) could not be loaded");
    }
    let needs_resolver = match &config.targets {
        Targets::Mx(_) => true,
        Targets::Hosts(hosts) => hosts.iter().any(|h| matches!(h.host, TargetHost::Name(_))),
    };
    let resolver = if needs_resolver {
        Some(build_resolver(&config.name_servers).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
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
    let (queue_tx, queue_rx) = async_channel::bounded(config.max_connections * 2);
    let ctx = Arc::new(DeliveryContext::new(
        Arc::clone(&router),
        config.timeouts,
        host_name.clone(),
        tls_config,
        Arc::clone(&stats),
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
        config: Arc::clone(&config),
        host: host_name.clone(),
        queue: queue_tx.clone(),
        stats: Arc::clone(&stats),
        limiter: Limiter::new(config.notify_limit),
        stop: stop.clone(),
    });
    // Extended retry runs beside intake, from the MailDirectory.
    let (extended_tx, extended) = match config.extended_retry.clone() {
        Some(settings) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let manager = extended::Manager {
                config: Arc::clone(&config),
                settings,
                notifier: Arc::clone(&notifier),
                stats: Arc::clone(&stats),
            };
            (
                Some(tx),
                Some(tokio::spawn(manager.run(rx, stop.clone(), options.mode))),
            )
        }
        None => (None, None),
    };
    let shared = Arc::new(TaskShared {
        config: Arc::clone(&config),
        host_name,
        layout,
        queue: queue_tx,
        stats: Arc::clone(&stats),
        stop: stop.clone(),
        reaper,
        notifier: Arc::clone(&notifier),
        extended: extended_tx,
        journal,
        recovered: std::sync::Mutex::new(recovered),
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
    while workers.join_next().await.is_some() {}
    sync_stop.cancel();
    let _ = syncer.await;
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
        let name = file.file_name().and_then(|n| n.to_str());
        if let (Some(name), Ok(meta)) = (name, std::fs::metadata(&file)) {
            live.insert(journal::file_key(name, meta.ino()));
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
