//! A claimed spool file of the directory spool (a file in `active/`): the
//! [`SpoolClaim`] the queue core finishes it through.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::layout::{Reaper, SpoolLayout};
use crate::storage::{FileStore, SpoolClaim};

/// A file in `active/`.
pub struct DirClaim {
    path: PathBuf,
    /// The name as shown (escaped: names are data).
    name: String,
    layout: SpoolLayout,
    reaper: Reaper,
}

impl DirClaim {
    pub fn new(path: PathBuf, layout: SpoolLayout, reaper: Reaper) -> Self {
        let name = crate::escape::name(path.file_name().unwrap_or(path.as_os_str()));
        Self {
            path,
            name,
            layout,
            reaper,
        }
    }
}

impl SpoolClaim for DirClaim {
    fn name(&self) -> &str {
        &self.name
    }

    fn delete(&self, store: Option<&dyn FileStore>) {
        // The reaper syncs the journal (the file's `done` record and every record
        // before), removes the file, syncs `active/`, and only then lets the journal
        // forget it.
        let key = store.map(|s| Arc::from(s.id().as_str()));
        self.reaper.remove(self.path.clone(), key);
    }

    fn hold(&self) -> io::Result<PathBuf> {
        let to = self.layout.hold(&self.path)?;
        crate::durable::sync_dir(&self.layout.hold)?;
        crate::durable::sync_dir(&self.layout.active)?;
        Ok(to)
    }

    fn keep_beside(&self, held: &Path, text: &[u8]) {
        let mut beside = held.to_owned().into_os_string();
        beside.push(".report");
        let beside = PathBuf::from(beside);
        if let Err(e) = crate::durable::replace(&beside, text, 0o640) {
            tracing::error!(
                "CSM2008E Cannot write {}: {e}",
                crate::escape::path(&beside)
            );
        }
    }

    fn shown(&self) -> String {
        crate::escape::path(&self.path).to_string()
    }
}
