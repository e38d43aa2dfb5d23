//! Identities.

use std::fmt;
use std::sync::Arc;

/// A spool file's identity in storage: unique for the life of the file (the directory
/// spool: its name and inode, so that a new file under an old name is never mistaken
/// for it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(Arc<str>);

impl FileId {
    pub fn new(id: &str) -> Self {
        Self(Arc::from(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies a mail: the spool task (TKID) and the mail's number in its spool file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailKey {
    pub tkid: u32,
    pub ordinal: u32,
}

impl MailKey {
    /// A mail cssmtp made itself (a notification, an error report) or one from
    /// extended retry: no spool task owns it (TKIDs start at 1).
    pub const GENERATED: Self = Self {
        tkid: 0,
        ordinal: 0,
    };
}
