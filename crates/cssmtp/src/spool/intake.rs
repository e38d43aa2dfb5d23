//! Intake: noticing spool files and starting a task for each.
//!
//! New files are noticed through inotify (the `notify` crate) within milliseconds; a
//! full rescan every few seconds catches anything inotify missed (queue overflow, file
//! systems without events). Files are taken oldest first. At most `SpoolTasks` files are
//! processed at once, and none is claimed while no target server is usable
//! (back-pressure: the files wait in the spool, not in memory). Files left in `active/`
//! by an earlier run are taken first.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::status::Suspend;
use super::task::{self, FileReport, TaskShared};
use crate::delivery::router::Router;

/// The safety-net rescan interval.
const RESCAN: Duration = Duration::from_secs(5);
/// Files remembered from one directory listing (the oldest ones). Each listing stats
/// every file in the spool, so with a very full spool (100,000 files) fewer, larger
/// listings save CPU; 16,384 names take about 1 MiB.
const LISTING: usize = 16_384;

/// How intake ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run until stopped.
    Daemon,
    /// Stop once the spool is empty and every file is final.
    Drain,
}

/// Runs intake until stopped (or, in drain mode, until the spool is empty). Returns the
/// reports of the files finished when `keep_reports` is set (else none: a daemon does
/// not grow with the files it has handled).
///
/// # Errors
/// An I/O error on the spool directory itself.
pub async fn run(
    shared: Arc<TaskShared>,
    router: Arc<Router>,
    mode: Mode,
    keep_reports: bool,
) -> std::io::Result<Vec<FileReport>> {
    let layout = shared.layout.clone();
    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any
            )
        {
            let _ = wake_tx.try_send(());
        }
    })
    .and_then(|mut w| {
        w.watch(&layout.incoming, RecursiveMode::NonRecursive)
            .map(|()| w)
    });
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "CSM1010W Cannot watch {} ({e}); new spool files are found by rescanning every {} seconds",
                layout.incoming.display(),
                RESCAN.as_secs()
            );
            None
        }
    };
    let slots = shared.config.current().spool_tasks;
    let mut tasks: JoinSet<FileReport> = JoinSet::new();
    let mut reports = Vec::new();
    let mut next_tkid = 0u32;
    let mut spawn = |tasks: &mut JoinSet<FileReport>, path: PathBuf| {
        next_tkid = next_tkid.wrapping_add(1);
        tasks.spawn(task::run(next_tkid, path, Arc::clone(&shared)));
    };
    let mut resumed = layout.left_active()?;
    if !resumed.is_empty() {
        tracing::warn!(
            "CSM1011W {} spool file(s) left in {} by an earlier run are processed again {}",
            resumed.len(),
            layout.active.display(),
            if shared.journal.is_some() {
                "where the checkpoint journal says they stopped"
            } else {
                "from the start (no checkpoint journal: mail already sent from them is sent again)"
            }
        );
    }
    resumed.reverse();
    let mut listing: Vec<super::layout::Candidate> = Vec::new();
    let mut stale = true;
    let mut suspend = shared.suspend.clone();
    // No file is claimed while the checkpoint journal cannot be written.
    let mut journal = shared
        .journal
        .as_ref()
        .map(crate::journal::Journal::writable);
    loop {
        // Claim while there are free task slots and a target to send to, unless the
        // operator suspended intake (SUSPEND).
        let suspended = *suspend.borrow_and_update() != Suspend::Running
            || journal.as_mut().is_some_and(|j| !*j.borrow_and_update());
        while !suspended && tasks.len() < slots && router.any_usable() {
            if let Some(path) = resumed.pop() {
                spawn(&mut tasks, path);
                continue;
            }
            if listing.is_empty() && stale {
                listing = layout.waiting(LISTING)?;
                listing.reverse();
                stale = false;
            }
            let Some(candidate) = listing.pop() else {
                break;
            };
            match layout.claim(&candidate.name) {
                Ok(Some(path)) => spawn(&mut tasks, path),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("CSM1012E Cannot claim spool file {}: {e}", candidate.name)
                }
            }
        }
        if mode == Mode::Drain && tasks.is_empty() && resumed.is_empty() && listing.is_empty() {
            if stale {
                // Look once more before deciding the spool is empty.
                listing = layout.waiting(LISTING)?;
                listing.reverse();
                stale = false;
                if !listing.is_empty() {
                    continue;
                }
            }
            break;
        }
        let wait_for_target = router.next_retry().filter(|_| !router.any_usable());
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            Some(done) = tasks.join_next() => match done {
                Ok(report) if keep_reports => reports.push(report),
                Ok(_) => {}
                Err(e) => tracing::error!("CSM1013E A spool task failed: {e}"),
            },
            Some(()) = wake_rx.recv() => stale = true,
            () = tokio::time::sleep(RESCAN) => stale = true,
            () = async {
                match wait_for_target {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            () = router.changed() => {}
            Ok(()) = suspend.changed() => {}
            Some(()) = async {
                match journal.as_mut() {
                    Some(j) => j.changed().await.ok(),
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
    // Stopping: tasks stop at their next safe point.
    while let Some(done) = tasks.join_next().await {
        if let Ok(report) = done
            && keep_reports
        {
            reports.push(report);
        }
    }
    Ok(reports)
}
