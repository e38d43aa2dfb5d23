//! Start-up steps that take more than a line: the spool directories checked, the
//! checkpoint journal opened (waiting while it cannot be written), the targets resolved,
//! the accounting file opened. Each is called once, in order, by [`super::run`].

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::delivery::resolve::{resolve, resolver_for};
use crate::delivery::router::Router;
use crate::journal::{self, FileCheckpoint, Journal, JournalOptions, JournalWriter};
use crate::spool::SpoolLayout;
use crate::telemetry::{Accounting, AccountingWriter};

/// Creates the missing spool directories with safe modes, then checks every directory
/// (ownership and modes, and those of its ancestors): an unsafe one stops the start.
/// (On a blocking thread: the checks walk directories and look owners up.)
pub(super) async fn checked_layout(config: &Arc<Config>) -> anyhow::Result<SpoolLayout> {
    let problems = {
        let config = Arc::clone(config);
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
            crate::spool::checks::create_missing(&config)?;
            Ok(crate::spool::checks::check(&config))
        })
        .await??
    };
    if !problems.is_empty() {
        return Err(crate::spool::checks::UnsafeDirectories(problems).into());
    }
    Ok(SpoolLayout::new(config.writer_spool()))
}

/// The checkpoint journal, when kept, and what it knew at start.
#[derive(Default)]
pub(super) struct Checkpointing {
    pub(super) journal: Option<Journal>,
    pub(super) recovered: HashMap<String, FileCheckpoint>,
    pub(super) writer: Option<JournalWriter>,
}

/// Where the queue's state is kept: the shared spool's database (`SpoolDatabase`), or
/// the checkpoint journal. `None` when `stop` came first.
pub(super) async fn storage(
    config: &Arc<Config>,
    layout: &SpoolLayout,
    cold: bool,
    stop: &CancellationToken,
) -> anyhow::Result<
    Option<(
        Option<crate::storage::pg::daemon::SharedSpool>,
        Checkpointing,
    )>,
> {
    if let Some(settings) = config.spool_database() {
        let database =
            crate::storage::pg::daemon::connect(&settings, &config.ext_wrt_name, stop).await?;
        return Ok(database.map(|d| (Some(d), Checkpointing::default())));
    }
    let checkpointing = journal_when_writable(config, layout, cold, stop).await?;
    Ok(checkpointing.map(|c| (None, c)))
}

/// Extended retry started: where new parked mail is told, where FLUSHRETRY,AGE= goes,
/// and its task.
pub(super) fn start_extended_retry(
    manager: crate::queue::parked::Manager,
    stop: &CancellationToken,
    mode: crate::spool::Mode,
) -> ExtendedRetryHandles {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (flush_tx, flush_rx) = tokio::sync::mpsc::unbounded_channel();
    let run = manager.run(rx, flush_rx, stop.clone(), mode);
    (Some(tx), Some(flush_tx), Some(tokio::spawn(run)))
}

/// See [`start_extended_retry`].
pub(super) type ExtendedRetryHandles = (
    Option<tokio::sync::mpsc::UnboundedSender<crate::storage::parked::ParkedId>>,
    Option<tokio::sync::mpsc::UnboundedSender<crate::control::FlushAge>>,
    Option<tokio::task::JoinHandle<()>>,
);

/// Opens the checkpoint journal. A journal that cannot be written (full or read-only
/// file system) pauses cssmtp before it takes any file, until it can be: nothing is sent
/// without it. `None` when `stop` came first.
pub(super) async fn journal_when_writable(
    config: &Arc<Config>,
    layout: &SpoolLayout,
    cold: bool,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Checkpointing>> {
    let mut paused = false;
    let opened = loop {
        // Recovery reads and rewrites the whole journal: on a blocking thread.
        let opened = {
            let (config, layout) = (Arc::clone(config), layout.clone());
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
                    () = stop.cancelled() => return Ok(None),
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
    Ok(Some(opened))
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

/// Resolves the targets into a router. While none resolves, they are resolved again
/// every `Timeout ConnectRetry` (in the background, until `stop`).
pub(super) async fn router(
    config: &Config,
    stop: &CancellationToken,
) -> anyhow::Result<Arc<Router>> {
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
    Ok(router)
}

/// Opens the accounting file when `SMF119` selects any record.
pub(super) fn open_accounting(config: &Config) -> (Accounting, Option<AccountingWriter>) {
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
