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
    let slots = {
        let config = shared.config.current();
        descriptor_budget(config.spool_tasks, config.max_connections)
    };
    let resumed = spool.source.left_claimed().await?;
    if !resumed.is_empty() {
        tracing::warn!(
            "CSM1011W {} spool file(s) left in {} by an earlier run are processed again {}",
            resumed.len(),
            spool.shown,
            if shared.store.is_some() {
                "where the checkpoint journal says they stopped"
            } else {
                "from the start (no checkpoint journal: mail already sent from them is sent again)"
            }
        );
    }
    let mut intake = Intake {
        suspend: shared.suspend.clone(),
        // No file is claimed while the checkpoint journal cannot be written.
        journal: shared.store.as_ref().map(|s| s.writable()),
        shared,
        router,
        spool,
        slots,
        tasks: JoinSet::new(),
        reports: Vec::new(),
        keep_reports,
        next_tkid: 0,
        resumed: resumed.into_iter().rev().collect(),
        listing: Vec::new(),
        stale: true,
        fd: Descriptors::default(),
    };
    loop {
        intake.fd.expire();
        if !intake.suspended() {
            intake.fill().await?;
        }
        if mode == Mode::Drain {
            match intake.drained().await? {
                Drained::Yes => break,
                Drained::MoreCame => continue,
                Drained::No => {}
            }
        }
        if !intake.wait().await {
            break;
        }
    }
    // Stopping: tasks stop at their next safe point.
    while let Some(done) = intake.tasks.join_next().await {
        intake.finished(done);
    }
    Ok(intake.reports)
}

/// Intake's state between its steps.
struct Intake<S: SpoolSource> {
    shared: Arc<TaskShared>,
    router: Arc<Router>,
    spool: Spool<S>,
    /// Spool tasks at most (within the file-descriptor budget).
    slots: usize,
    tasks: JoinSet<FileReport>,
    reports: Vec<FileReport>,
    keep_reports: bool,
    next_tkid: u32,
    /// Files claimed and not finished before this start (or put back), the next last.
    resumed: Vec<S::Claim>,
    /// The current listing, the next last.
    listing: Vec<S::Candidate>,
    /// New files may have arrived since the last listing.
    stale: bool,
    fd: Descriptors,
    suspend: tokio::sync::watch::Receiver<Suspend>,
    journal: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Whether a drain is done.
enum Drained {
    Yes,
    /// A last look found files: take them at once.
    MoreCame,
    No,
}

/// What to do after a step of [`Intake::fill`].
enum Step {
    /// Take the next file.
    Next,
    /// Stop claiming for now.
    Stop,
}

impl<S: SpoolSource> Intake<S> {
    /// SUSPEND, or a journal that cannot be written: nothing is claimed.
    fn suspended(&mut self) -> bool {
        *self.suspend.borrow_and_update() != Suspend::Running
            || self
                .journal
                .as_mut()
                .is_some_and(|j| !*j.borrow_and_update())
    }

    /// Claims and starts files while there are free task slots and a target to send to,
    /// unless file descriptors ran out a moment ago or too many finished files wait for
    /// removal.
    async fn fill(&mut self) -> std::io::Result<()> {
        while self.fd.backoff.is_none()
            && self.tasks.len()
                < self
                    .fd
                    .cap
                    .map_or(self.slots, |(cap, _)| cap.min(self.slots))
            && self.router.any_usable()
            && self.shared.reaper.has_room()
        {
            let claim = match self.resumed.pop() {
                Some(claim) => claim,
                None => match self.claim_next().await? {
                    Some(claim) => claim,
                    None => break,
                },
            };
            if let Step::Stop = self.start(claim).await {
                break;
            }
        }
        Ok(())
    }

    /// The next waiting file, claimed (a listing is made when the last one is used up
    /// and new files may have come); None when there is none or claiming must pause.
    async fn claim_next(&mut self) -> std::io::Result<Option<S::Claim>> {
        loop {
            if self.listing.is_empty() && self.stale && !self.relist().await? {
                return Ok(None);
            }
            let Some(candidate) = self.listing.pop() else {
                return Ok(None);
            };
            match self.spool.source.claim(&candidate) {
                Ok(Some(claim)) => return Ok(Some(claim)),
                Ok(None) => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    self.fd.ran_out(&e, self.tasks.len());
                    self.listing.push(candidate);
                    return Ok(None);
                }
                Err(e) => tracing::error!(
                    "CSM1012E Cannot claim spool file {}: {e}",
                    (self.spool.name)(&candidate)
                ),
            }
        }
    }

    /// Lists the waiting files; false when file descriptors ran out.
    async fn relist(&mut self) -> std::io::Result<bool> {
        match self.spool.source.waiting().await {
            Ok(listing) => self.listing = listing,
            Err(e) if is_out_of_descriptors(&e) => {
                self.fd.ran_out(&e, self.tasks.len());
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        self.stale = false;
        Ok(true)
    }

    /// Opens a claimed file and starts its spool task (or sets it aside, or puts it
    /// back for later).
    async fn start(&mut self, claim: S::Claim) -> Step {
        match self.spool.source.open(&claim) {
            Ok(opened) => {
                self.fd.recovered();
                self.spawn(claim, Ok(opened));
            }
            Err(OpenError::Refused(why)) => self.spool.source.set_aside(claim, why).await,
            Err(OpenError::Io(e)) if is_out_of_descriptors(&e) => {
                self.fd.ran_out(&e, self.tasks.len());
                self.resumed.push(claim);
                return Step::Stop;
            }
            Err(OpenError::Io(e)) => self.spawn(claim, Err(e)),
            Err(OpenError::NotNow(e)) => {
                tracing::warn!(
                    "CSM2610W A claimed spool file cannot be read now ({e}); intake pauses and tries again in {} seconds",
                    RESCAN.as_secs()
                );
                self.resumed.push(claim);
                self.fd.backoff = Some(tokio::time::Instant::now() + RESCAN);
                return Step::Stop;
            }
        }
        Step::Next
    }

    fn spawn(&mut self, claim: S::Claim, opened: Result<super::layout::Opened, std::io::Error>) {
        self.next_tkid = self.next_tkid.wrapping_add(1);
        let claim = (self.spool.claim)(claim);
        let shared = Arc::clone(&self.shared);
        self.tasks
            .spawn(queue::run(self.next_tkid, claim, opened, shared));
    }

    /// Drain mode: whether nothing is left to do (the spool looked at once more).
    async fn drained(&mut self) -> std::io::Result<Drained> {
        let idle = self.tasks.is_empty()
            && self.resumed.is_empty()
            && self.listing.is_empty()
            && self.fd.backoff.is_none();
        if !idle {
            return Ok(Drained::No);
        }
        if self.stale {
            // Look once more before deciding the spool is empty.
            if !self.relist().await? || !self.listing.is_empty() {
                return Ok(Drained::MoreCame);
            }
        }
        Ok(Drained::Yes)
    }

    fn finished(&mut self, done: Result<FileReport, tokio::task::JoinError>) {
        match done {
            Ok(report) if self.keep_reports => self.reports.push(report),
            Ok(_) => {}
            Err(e) => tracing::error!("CSM1013E A spool task failed: {e}"),
        }
    }

    /// Waits for something that may let intake go on; false when cssmtp is stopping.
    async fn wait(&mut self) -> bool {
        let wait_for_target = self
            .router
            .next_retry()
            .filter(|_| !self.router.any_usable());
        let backoff = self.fd.backoff;
        tokio::select! {
            biased;
            () = self.shared.stop.cancelled() => return false,
            Some(done) = self.tasks.join_next() => {
                // A finished task gave its descriptors back.
                self.fd.backoff = None;
                self.finished(done);
            }
            Some(()) = self.spool.wake.recv() => self.stale = true,
            () = tokio::time::sleep(RESCAN) => self.stale = true,
            () = async {
                match backoff {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                self.fd.backoff = None;
                self.stale = true;
            }
            () = async {
                match wait_for_target {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            () = self.router.changed() => {}
            // Finished files waiting for removal made intake pause: some went.
            () = self.shared.reaper.room(), if !self.shared.reaper.has_room() => {}
            Ok(()) = self.suspend.changed() => {}
            Some(()) = async {
                match self.journal.as_mut() {
                    Some(j) => j.changed().await.ok(),
                    None => std::future::pending().await,
                }
            } => {}
        }
        true
    }
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
