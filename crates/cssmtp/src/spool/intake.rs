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

use super::claim::{DirClaim, Keeping};
use super::layout::{Candidate, OpenError, is_out_of_descriptors};
use super::report::FileReport;
use super::source::DirSource;
use super::status::Suspend;
use crate::delivery::router::Router;
use crate::escape;
use crate::queue::{self, TaskShared};
use crate::storage::SpoolClaim;
use crate::storage::source::SpoolSource;

/// The safety-net rescan interval.
const RESCAN: Duration = Duration::from_secs(5);

pub use super::Mode;

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
    let (wake_tx, wake_rx) = mpsc::channel::<()>(1);
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
                escape::path(&layout.incoming),
                RESCAN.as_secs()
            );
            None
        }
    };
    // Spool files are claimed and opened through the spool's source (the directory).
    let source = DirSource::new(layout.clone())?;
    let claiming = Arc::clone(&shared);
    let spool = Spool {
        source,
        shown: escape::path(&layout.active).to_string(),
        claim: Box::new(move |path: PathBuf| {
            let keeping = Keeping {
                host: claiming.host_name.clone(),
                mail_directory: claiming.config.current().mail_directory(),
                extended: claiming.extended.clone(),
            };
            Arc::new(DirClaim::new(
                path,
                claiming.layout.clone(),
                claiming.reaper.clone(),
                keeping,
            )) as Arc<dyn SpoolClaim>
        }),
        name: |c: &Candidate| c.name.clone(),
        wake: wake_rx,
    };
    run_from(shared, router, mode, keep_reports, spool).await
}

/// A spool as intake takes files from it.
pub struct Spool<S: SpoolSource> {
    pub source: S,
    /// Where files left claimed are, for people.
    pub shown: String,
    /// A claimed file as the queue core finishes it.
    pub claim: Box<dyn Fn(S::Claim) -> Arc<dyn SpoolClaim> + Send + Sync>,
    /// A waiting file's name, for people.
    pub name: fn(&S::Candidate) -> String,
    /// Says when new files may have arrived (inotify; the database's NOTIFY).
    pub wake: mpsc::Receiver<()>,
}

/// Runs intake on `spool` (see [`run`]).
///
/// # Errors
/// The spool cannot be listed.
pub async fn run_from<S: SpoolSource>(
    shared: Arc<TaskShared>,
    router: Arc<Router>,
    mode: Mode,
    keep_reports: bool,
    spool: Spool<S>,
) -> std::io::Result<Vec<FileReport>> {
    let Spool {
        source,
        shown,
        claim: make_claim,
        name: candidate_name,
        wake: mut wake_rx,
    } = spool;
    let slots = {
        let config = shared.config.current();
        descriptor_budget(config.spool_tasks, config.max_connections)
    };
    let mut tasks: JoinSet<FileReport> = JoinSet::new();
    let mut reports = Vec::new();
    let mut next_tkid = 0u32;
    let mut spawn = |tasks: &mut JoinSet<FileReport>, claimed: S::Claim, opened| {
        next_tkid = next_tkid.wrapping_add(1);
        let claim = make_claim(claimed);
        tasks.spawn(queue::run(next_tkid, claim, opened, Arc::clone(&shared)));
    };
    let mut resumed = source.left_claimed().await?;
    if !resumed.is_empty() {
        tracing::warn!(
            "CSM1011W {} spool file(s) left in {} by an earlier run are processed again {}",
            resumed.len(),
            shown,
            if shared.store.is_some() {
                "where the checkpoint journal says they stopped"
            } else {
                "from the start (no checkpoint journal: mail already sent from them is sent again)"
            }
        );
    }
    resumed.reverse();
    let mut listing: Vec<S::Candidate> = Vec::new();
    let mut stale = true;
    let mut suspend = shared.suspend.clone();
    let mut fd = Descriptors::default();
    // No file is claimed while the checkpoint journal cannot be written.
    let mut journal = shared.store.as_ref().map(|s| s.writable());
    loop {
        fd.expire();
        // Claim while there are free task slots and a target to send to, unless the
        // operator suspended intake (SUSPEND), or file descriptors ran out a moment ago.
        let suspended = *suspend.borrow_and_update() != Suspend::Running
            || journal.as_mut().is_some_and(|j| !*j.borrow_and_update());
        while !suspended
            && fd.backoff.is_none()
            && tasks.len() < fd.cap.map_or(slots, |(cap, _)| cap.min(slots))
            && router.any_usable()
        {
            let path = if let Some(path) = resumed.pop() {
                path
            } else {
                if listing.is_empty() && stale {
                    match source.waiting().await {
                        Ok(l) => listing = l,
                        Err(e) if is_out_of_descriptors(&e) => {
                            fd.ran_out(&e, tasks.len());
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                    stale = false;
                }
                let Some(candidate) = listing.pop() else {
                    break;
                };
                match source.claim(&candidate) {
                    Ok(Some(path)) => path,
                    Ok(None) => continue,
                    Err(e) => {
                        if is_out_of_descriptors(&e) {
                            fd.ran_out(&e, tasks.len());
                            listing.push(candidate);
                            break;
                        }
                        tracing::error!(
                            "CSM1012E Cannot claim spool file {}: {e}",
                            candidate_name(&candidate)
                        );
                        continue;
                    }
                }
            };
            match source.open(&path) {
                Ok(opened) => {
                    fd.recovered();
                    spawn(&mut tasks, path, Ok(opened));
                }
                Err(OpenError::Refused(why)) => source.set_aside(path, why).await,
                Err(OpenError::Io(e)) if is_out_of_descriptors(&e) => {
                    fd.ran_out(&e, tasks.len());
                    resumed.push(path);
                    break;
                }
                Err(OpenError::Io(e)) => spawn(&mut tasks, path, Err(e)),
                Err(OpenError::NotNow(e)) => {
                    tracing::warn!(
                        "CSM2610W A claimed spool file cannot be read now ({e}); intake pauses and tries again in {} seconds",
                        RESCAN.as_secs()
                    );
                    resumed.push(path);
                    fd.backoff = Some(tokio::time::Instant::now() + RESCAN);
                    break;
                }
            }
        }
        if mode == Mode::Drain
            && tasks.is_empty()
            && resumed.is_empty()
            && listing.is_empty()
            && fd.backoff.is_none()
        {
            if stale {
                // Look once more before deciding the spool is empty.
                match source.waiting().await {
                    Ok(l) => listing = l,
                    Err(e) if is_out_of_descriptors(&e) => {
                        fd.ran_out(&e, tasks.len());
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                stale = false;
                if !listing.is_empty() {
                    continue;
                }
            }
            break;
        }
        let wait_for_target = router.next_retry().filter(|_| !router.any_usable());
        let backoff = fd.backoff;
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            Some(done) = tasks.join_next() => {
                // A finished task gave its descriptors back.
                fd.backoff = None;
                match done {
                    Ok(report) if keep_reports => reports.push(report),
                    Ok(_) => {}
                    Err(e) => tracing::error!("CSM1013E A spool task failed: {e}"),
                }
            }
            Some(()) = wake_rx.recv() => stale = true,
            () = tokio::time::sleep(RESCAN) => stale = true,
            () = async {
                match backoff {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                fd.backoff = None;
                stale = true;
            }
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

/// The first pause after running out of file descriptors; it doubles up to [`RESCAN`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How long intake keeps its lowered number of spool tasks after running out.
const CAP_FOR: Duration = Duration::from_secs(60);

/// Running out of file descriptors: intake pauses (longer each time, up to [`RESCAN`]),
/// and for a while takes no more spool files at once than it had open when it ran out,
/// leaving descriptors for connections. Logged once per episode (CSM1062W, CSM1063I).
#[derive(Default)]
struct Descriptors {
    backoff: Option<tokio::time::Instant>,
    delay: Option<Duration>,
    cap: Option<(usize, tokio::time::Instant)>,
}

impl Descriptors {
    fn ran_out(&mut self, e: &std::io::Error, open_tasks: usize) {
        let delay = self.delay.map_or(FIRST_BACKOFF, |d| (d * 2).min(RESCAN));
        if self.delay.is_none() {
            tracing::warn!(
                "CSM1062W Intake ran out of file descriptors ({e}); it pauses and tries again, with at most {} spool file(s) at once for a while",
                open_tasks.max(1)
            );
        }
        self.delay = Some(delay);
        let now = tokio::time::Instant::now();
        self.backoff = Some(now + delay);
        self.cap = Some((open_tasks.max(1), now + CAP_FOR));
    }

    fn recovered(&mut self) {
        if self.delay.take().is_some() {
            tracing::info!("CSM1063I Intake has file descriptors again and takes spool files");
        }
    }

    fn expire(&mut self) {
        if self
            .cap
            .is_some_and(|(_, until)| until <= tokio::time::Instant::now())
        {
            self.cap = None;
        }
    }
}

/// Descriptors kept free for everything but spool files (connections are counted on
/// top): notifications, dead letters, reports, the journal, control and metrics clients.
const RESERVED_DESCRIPTORS: u64 = 32;

/// Spool files processed at once: `SpoolTasks`, unless the file-descriptor limit left
/// would not hold that many (two descriptors each) beside the connections and a
/// reserve; then fewer (at least one), said once (CSM1064W).
fn descriptor_budget(spool_tasks: usize, connections: usize) -> usize {
    let Some(limit) = crate::listen::nofile_limit().filter(|&l| l != u64::MAX) else {
        return spool_tasks;
    };
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as u64;
    let reserve = RESERVED_DESCRIPTORS + 2 * connections as u64;
    let fit = usize::try_from(limit.saturating_sub(open).saturating_sub(reserve) / 2)
        .unwrap_or(usize::MAX)
        .max(1);
    if fit < spool_tasks {
        tracing::warn!(
            "CSM1064W The file-descriptor limit ({limit}, {open} in use) allows {fit} spool file(s) at once beside {connections} connection(s), not SpoolTasks {spool_tasks}: raise the limit (LimitNOFILE=, ulimit -n) to use them all"
        );
    }
    fit.min(spool_tasks)
}
