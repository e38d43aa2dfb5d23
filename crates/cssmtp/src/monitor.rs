//! Health monitoring (CSSMTP's EZD1856I–EZD1859I): once a minute, whether the spool
//! tasks are mostly waiting on long retry, and whether the file systems of the
//! dead-letter and mail directories run low; a warning when a threshold is crossed, an
//! information message when it is relieved. (Target servers going down and coming back
//! are told by the router: CSM3001W, CSM3002I.)

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::spool::status::TaskRegistry;

/// How often the checks run.
pub const PERIOD: Duration = Duration::from_secs(60);

/// A condition with a warning threshold and a lower relief threshold (hysteresis), as
/// CSSMTP's 75% / 50% pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub warn_at: u32,
    pub relief_below: u32,
    pub raised: bool,
}

/// What a new measurement does to a [`Threshold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Raised,
    Relieved,
    None,
}

impl Threshold {
    pub fn new(warn_at: u32, relief_below: u32) -> Self {
        Self {
            warn_at,
            relief_below,
            raised: false,
        }
    }

    /// Takes a measurement, in percent.
    pub fn measure(&mut self, percent: u32) -> Change {
        if !self.raised && percent >= self.warn_at {
            self.raised = true;
            Change::Raised
        } else if self.raised && percent < self.relief_below {
            self.raised = false;
            Change::Relieved
        } else {
            Change::None
        }
    }
}

/// The share of running spool tasks (with mail left) whose every pending mail waits on
/// long retry, in percent; None with no such task.
pub fn tasks_waiting_on_retry(tasks: &TaskRegistry) -> Option<(u32, usize, usize)> {
    let busy: Vec<_> = tasks
        .all()
        .into_iter()
        .filter(|t| t.mails_pending.load(Ordering::Relaxed) > 0)
        .collect();
    if busy.is_empty() {
        return None;
    }
    let waiting = busy
        .iter()
        .filter(|t| {
            t.mails_retry.load(Ordering::Relaxed) >= t.mails_pending.load(Ordering::Relaxed)
        })
        .count();
    let percent = u32::try_from(waiting * 100 / busy.len()).unwrap_or(100);
    Some((percent, waiting, busy.len()))
}

/// Used space of the file system holding `dir`, in percent, and the MiB free.
#[allow(
    clippy::useless_conversion,
    reason = "the statvfs field types vary by platform"
)]
pub fn used_space(dir: &std::path::Path) -> Option<(u32, u64)> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    let total = u64::from(stat.blocks()).checked_mul(u64::from(stat.fragment_size()))?;
    let free = u64::from(stat.blocks_available()).checked_mul(u64::from(stat.fragment_size()))?;
    if total == 0 {
        return None;
    }
    let used = 100 - free.saturating_mul(100) / total;
    Some((u32::try_from(used).unwrap_or(100), free / (1024 * 1024)))
}

/// Runs the checks every [`PERIOD`] until `stop`.
pub async fn run(tasks: Arc<TaskRegistry>, directories: Vec<PathBuf>, stop: CancellationToken) {
    let mut retry = Threshold::new(75, 50);
    let mut space: Vec<(PathBuf, Threshold)> = directories
        .into_iter()
        .map(|d| (d, Threshold::new(90, 80)))
        .collect();
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (percent, waiting, busy) = tasks_waiting_on_retry(&tasks).unwrap_or((0, 0, 0));
        match retry.measure(percent) {
            Change::Raised => tracing::warn!(
                "CSM1030W {waiting} of {busy} spool tasks are waiting on long retry ({percent}%); check the target servers"
            ),
            Change::Relieved => tracing::info!(
                "CSM1031I Spool tasks waiting on long retry are back below 50% ({percent}%)"
            ),
            Change::None => {}
        }
        // statvfs can hang on a file system that does not answer: on a blocking thread.
        let dirs: Vec<PathBuf> = space.iter().map(|(d, _)| d.clone()).collect();
        let measured = tokio::task::spawn_blocking(move || {
            dirs.iter().map(|d| used_space(d)).collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for ((dir, threshold), measure) in space.iter_mut().zip(measured) {
            let Some((used, free_mib)) = measure else {
                continue;
            };
            match threshold.measure(used) {
                Change::Raised => tracing::warn!(
                    "CSM1032W The file system of {} is {used}% full ({free_mib} MiB free); mail kept there may not be written",
                    dir.display()
                ),
                Change::Relieved => tracing::info!(
                    "CSM1033I The file system of {} is below 80% full again ({used}%)",
                    dir.display()
                ),
                Change::None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_then_relief_with_hysteresis() {
        let mut t = Threshold::new(75, 50);
        assert_eq!(t.measure(40), Change::None);
        assert_eq!(t.measure(80), Change::Raised);
        assert_eq!(t.measure(90), Change::None, "said once");
        assert_eq!(t.measure(60), Change::None, "not relieved above 50%");
        assert_eq!(t.measure(49), Change::Relieved);
        assert_eq!(t.measure(10), Change::None);
    }

    #[test]
    fn space_of_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (used, _) = used_space(dir.path()).unwrap();
        assert!(used <= 100);
    }

    #[test]
    fn tasks_all_waiting_on_retry() {
        let tasks = Arc::new(TaskRegistry::default());
        assert_eq!(tasks_waiting_on_retry(&tasks), None);
        let (a, _) = crate::spool::status::TaskStatus::new(1, "A", "A", "J1");
        a.mails_pending.store(2, Ordering::Relaxed);
        a.mails_retry.store(2, Ordering::Relaxed);
        let (b, _) = crate::spool::status::TaskStatus::new(2, "B", "B", "J2");
        b.mails_pending.store(3, Ordering::Relaxed);
        let _a = tasks.register(a);
        let _b = tasks.register(b);
        assert_eq!(tasks_waiting_on_retry(&tasks), Some((50, 1, 2)));
    }
}
