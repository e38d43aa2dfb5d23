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

/// Files taken from the writer directory per listing; 16,384 names take about 1 MiB.
///
/// **The order files are served in.** A listing reads on where the last one stopped, in
/// one pass over the directory: each file is looked at (one `lstat`) once per pass,
/// so a spool of 1,000,000 waiting files costs no more per file than one of 1,000
/// (listing the oldest of all each time, as cssmtp once did, looked at every waiting
/// file again at every refill). Each listing is served oldest first; listings come in
/// the directory's order; a pass that has ended starts again at the next listing. A
/// file that arrives during a pass is served in that pass or the next, so it waits at
/// most about twice the time it takes to drain what was waiting when it came, never
/// behind files that arrive after it in a later pass.
const LISTING: usize = 16_384;

/// The directory spool's claiming side.
pub struct DirSource {
    layout: SpoolLayout,
    /// `active/`, which claimed files are opened relative to.
    active: OwnedFd,
    /// Directories found in the writer directory that are not cssmtp's: logged once.
    strays: Mutex<HashSet<(u64, u64)>>,
    /// The pass over the writer directory in progress (see [`LISTING`]).
    pass: Mutex<Option<std::fs::ReadDir>>,
}

impl DirSource {
    /// # Errors
    /// `active/` cannot be opened.
    pub fn new(layout: SpoolLayout) -> std::io::Result<Self> {
        Ok(Self {
            active: layout.open_active()?,
            layout,
            strays: Mutex::new(HashSet::new()),
            pass: Mutex::new(None),
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
            let pass = self.pass.lock().ok().and_then(|mut p| p.take());
            let (listing, seen, pass) = tokio::task::spawn_blocking(move || {
                let (listing, pass) = list_now(&layout, pass, &mut seen);
                (listing, seen, pass)
            })
            .await
            .map_err(std::io::Error::other)?;
            if let Ok(mut strays) = self.strays.lock() {
                *strays = seen;
            }
            if let Ok(mut p) = self.pass.lock() {
                *p = pass;
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

/// Lists the next waiting entries of the pass (a new pass when there is none), oldest
/// first as a stack (the oldest last); logs each directory that is not cssmtp's once.
/// Returns the pass when it has not ended.
fn list_now(
    layout: &SpoolLayout,
    pass: Option<std::fs::ReadDir>,
    strays: &mut HashSet<(u64, u64)>,
) -> (std::io::Result<Vec<Candidate>>, Option<std::fs::ReadDir>) {
    let mut pass = match pass.map_or_else(|| std::fs::read_dir(&layout.incoming), Ok) {
        Ok(pass) => pass,
        Err(e) => return (Err(e), None),
    };
    match layout.next_waiting(&mut pass, LISTING) {
        Ok((listing, found, ended)) => (
            Ok(with_strays_logged(layout, listing, found, strays)),
            (!ended).then_some(pass),
        ),
        Err(e) => (Err(e), None),
    }
}

/// The listing as a stack (the oldest last), once each directory that is not cssmtp's
/// is logged.
fn with_strays_logged(
    layout: &SpoolLayout,
    mut listing: Vec<Candidate>,
    found: Vec<Candidate>,
    strays: &mut HashSet<(u64, u64)>,
) -> Vec<Candidate> {
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
    listing
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
