//! The directory spool as a [`SpoolSource`]: waiting files are listed in the writer
//! directory, claimed by a `renameat2(RENAME_NOREPLACE)` into `active/` (exactly one
//! claimer wins; the claim survives a crash: `active/` is listed at the next start),
//! and opened relative to a handle of `active/`, never through a link.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::layout::{Candidate, OpenError, Opened, SpoolLayout};
use crate::escape;
use crate::storage::Pending;
use crate::storage::source::SpoolSource;

/// Files remembered from one directory listing (the oldest ones). Each listing stats
/// every file in the spool, so with a very full spool (100,000 files) fewer, larger
/// listings save CPU; 16,384 names take about 1 MiB.
const LISTING: usize = 16_384;

/// The directory spool's claiming side.
pub struct DirSource {
    layout: SpoolLayout,
    /// `active/`, which claimed files are opened relative to.
    active: OwnedFd,
    /// Directories found in the writer directory that are not cssmtp's: logged once.
    strays: Mutex<HashSet<(u64, u64)>>,
}

impl DirSource {
    /// # Errors
    /// `active/` cannot be opened.
    pub fn new(layout: SpoolLayout) -> std::io::Result<Self> {
        Ok(Self {
            active: layout.open_active()?,
            layout,
            strays: Mutex::new(HashSet::new()),
        })
    }
}

impl SpoolSource for DirSource {
    type Candidate = Candidate;
    type Claim = PathBuf;

    fn left_claimed(&self) -> Pending<'_, std::io::Result<Vec<PathBuf>>> {
        Box::pin(async move {
            // Listings are made on a blocking thread, never on the runtime's.
            let layout = self.layout.clone();
            tokio::task::spawn_blocking(move || layout.left_active())
                .await
                .map_err(std::io::Error::other)?
        })
    }

    fn waiting(&self) -> Pending<'_, std::io::Result<Vec<Candidate>>> {
        Box::pin(async move {
            let layout = self.layout.clone();
            let mut seen = self
                .strays
                .lock()
                .map(|mut s| std::mem::take(&mut *s))
                .unwrap_or_default();
            let (listing, seen) = tokio::task::spawn_blocking(move || {
                let listing = list_now(&layout, &mut seen);
                (listing, seen)
            })
            .await
            .map_err(std::io::Error::other)?;
            if let Ok(mut strays) = self.strays.lock() {
                *strays = seen;
            }
            listing
        })
    }

    fn claim(&self, candidate: &Candidate) -> std::io::Result<Option<PathBuf>> {
        self.layout.claim(&candidate.file)
    }

    fn open(&self, claim: &PathBuf) -> Result<Opened, OpenError> {
        self.layout.open_claimed(&self.active, claim)
    }

    fn set_aside(&self, claim: PathBuf, why: String) -> Pending<'_, ()> {
        Box::pin(async move {
            // Moves and directory syncs: on a blocking thread.
            let layout = self.layout.clone();
            let _ = tokio::task::spawn_blocking(move || set_aside(&layout, &claim, &why)).await;
        })
    }

    fn renew(&self, _claim: &PathBuf) -> bool {
        true
    }
}

/// Directories in the writer directory logged (once each), at most.
const MAX_STRAYS_LOGGED: usize = 10_000;

/// Lists the waiting entries, oldest first as a stack (the oldest last); logs each
/// directory that is not cssmtp's once.
fn list_now(
    layout: &SpoolLayout,
    strays: &mut HashSet<(u64, u64)>,
) -> std::io::Result<Vec<Candidate>> {
    let (mut listing, found) = layout.waiting_and_strays(LISTING)?;
    for stray in found {
        // Remembered up to a bound (beyond it, further ones are not logged).
        if strays.len() < MAX_STRAYS_LOGGED && strays.insert(stray.id) {
            tracing::warn!(
                "CSM1061W Spool entry {} in {} is not taken: it is a directory (spool files are regular files); it is left where it is",
                stray.name,
                escape::path(&layout.incoming)
            );
        }
    }
    listing.reverse();
    Ok(listing)
}

/// A claimed entry that is not a spool file (a link, FIFO, device, socket, directory or
/// hard link): never opened, moved to `hold/` (or, when it cannot be moved, removed:
/// removing a link or a FIFO removes only the entry), logged once.
fn set_aside(layout: &SpoolLayout, path: &Path, why: &str) {
    let name = escape::name(path.file_name().unwrap_or(path.as_os_str()));
    match layout.hold(path) {
        Ok(to) => {
            // The operator who finds it in hold/ finds why beside it.
            let mut beside = to.clone().into_os_string();
            beside.push(".report");
            let text = format!(
                "Spool entry {name} was not read: {why}.\nIt was moved here unopened; cssmtp reads only regular files with a single link.\n"
            );
            if crate::durable::replace(Path::new(&beside), text.as_bytes(), 0o640).is_err() {
                let _ = crate::durable::sync_dir(&layout.hold);
            }
            let _ = crate::durable::sync_dir(&layout.active);
            tracing::warn!(
                "CSM1061W Spool entry {name} is not read: {why}; moved to {} unopened",
                escape::path(&to)
            );
        }
        Err(e) => match std::fs::remove_file(path) {
            Ok(()) => tracing::warn!(
                "CSM1061W Spool entry {name} is not read: {why}; it cannot be moved to hold/ ({e}) and was removed"
            ),
            Err(e2) => tracing::warn!(
                "CSM1061W Spool entry {name} is not read: {why}; it can be neither moved to hold/ ({e}) nor removed ({e2}): it stays in active/ until the next start"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::storage::conformance::source::{SourceHarness, run};

    /// A directory spool in a temporary directory.
    struct Dir {
        dir: tempfile::TempDir,
    }

    impl SourceHarness for Dir {
        type Source = DirSource;

        async fn submit(&mut self, name: &str, text: &[u8]) {
            let incoming = self.dir.path().join("W");
            let tmp = incoming.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text).expect("writes");
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640)).expect("chmod");
            std::fs::rename(&tmp, incoming.join(name)).expect("renames");
        }

        async fn start(&mut self) -> DirSource {
            let layout = SpoolLayout::new(self.dir.path().join("W"));
            layout.create().expect("the spool directories");
            DirSource::new(layout).expect("active/ opens")
        }
    }

    #[tokio::test]
    async fn the_directory_spool_passes_the_source_conformance_suite() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        run(Dir { dir }).await;
    }
}
