//! The journal's syncer thread: group commit (every sync request queued while a sync
//! runs is answered by the next one), a sync every [`SYNC_INTERVAL`] while anything is
//! unsynced, the probe of a journal that could not be written (CSM2303E, CSM2311I),
//! and compaction past [`COMPACT_AT`] (or [`FORGOTTEN_AT`] finished files).

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use super::store::{Inner, PROBE_INTERVAL, Request, SYNC_INTERVAL};
use super::{COMPACT_AT, FORGOTTEN_AT};

impl Inner {
    pub(super) fn fail(&self, e: &io::Error) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            self.writable.send_replace(false);
            tracing::error!(
                "CSM2303E Cannot write the checkpoint journal {}: {e}; intake is paused and no mail's final \".\" is sent until it can be written again (tried every {} s)",
                self.path.display(),
                PROBE_INTERVAL.as_secs()
            );
        }
    }

    pub(super) fn sync(&self) -> bool {
        self.dirty.store(false, Ordering::Release);
        let file = self
            .file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match file.sync_data() {
            Ok(()) => true,
            Err(e) => {
                self.fail(&e);
                false
            }
        }
    }

    /// Tries the failed journal again: a line feed (ending any torn record) and a sync.
    fn probe(&self) {
        let written = {
            let file = self
                .file
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (&*file).write_all(b"\n").and_then(|()| file.sync_data())
        };
        if written.is_ok() && self.failed.swap(false, Ordering::AcqRel) {
            self.size.fetch_add(1, Ordering::Relaxed);
            self.writable.send_replace(true);
            tracing::info!(
                "CSM2311I The checkpoint journal {} can be written again; intake resumes",
                self.path.display()
            );
        }
    }

    /// The syncer: syncs on request (every request queued while it syncs shares the next
    /// sync) and every [`SYNC_INTERVAL`] while something is unsynced; compacts past
    /// [`COMPACT_AT`]. Ends with a last sync when every [`Journal`](super::Journal) is gone.
    pub(super) fn run_syncer(inner: &std::sync::Weak<Self>, rx: &mpsc::Receiver<Request>) {
        let mut acks = Vec::new();
        let mut last_probe = std::time::Instant::now();
        loop {
            let first = match rx.recv_timeout(SYNC_INTERVAL) {
                Ok(request) => Some(request),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Some(inner) = inner.upgrade() {
                        inner.sync();
                    }
                    return;
                }
            };
            acks.extend(first.into_iter().chain(rx.try_iter()).map(|r| match r {
                Request::Sync(ack) => ack,
            }));
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if inner.failed.load(Ordering::Acquire) && last_probe.elapsed() >= PROBE_INTERVAL {
                last_probe = std::time::Instant::now();
                inner.probe();
            }
            if !acks.is_empty() || inner.dirty.load(Ordering::Acquire) {
                inner.sync();
            }
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
            let forgotten = inner.forgotten.lock().map_or(0, |f| f.len());
            if inner.size.load(Ordering::Relaxed) >= COMPACT_AT || forgotten >= FORGOTTEN_AT {
                inner.compact();
            }
        }
    }
}
