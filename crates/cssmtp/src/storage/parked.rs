//! Parked mail (extended retry) as the queue core reads it back: the seam between the
//! driver of parked mail ([`crate::queue::parked`]) and where parked mail is kept.
//! Mail is parked through [`super::SpoolClaim::park`]; this trait is the other side:
//! list what is parked, read one back for its turn, and, after the turn, keep it for
//! the recipients left or remove it.
//!
//! * [`super::maildir`]: the first implementation, the MailDirectory (one batch-SMTP
//!   file per mail, [`crate::retry::extended`]).
//!
//! **Leased claims.** A shared backend leases a parked mail for its turn: `load` takes
//! the lease, and `keep`/`remove` carry its fencing token, so that a holder whose lease
//! expired changes nothing (`keep` fails; the mail is tried again at the next turn).
//! A mail leased by another instance reads as [`ParkedRead::Busy`]; the store is
//! listed again every [`ParkedStore::relist_every`], so that mail parked by an instance
//! that died is driven by the others.
//!
//! * [`super::pg::parked`]: the shared spool's parked mail (`cssmtp_parked`).

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use super::Pending;
use crate::delivery::MailText;
use crate::retry::extended::Meta;

/// A parked mail's identity in its store (the MailDirectory: its file's path).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParkedId(Arc<OsStr>);

impl ParkedId {
    pub fn new(id: impl AsRef<OsStr>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    pub fn as_os_str(&self) -> &OsStr {
        &self.0
    }
}

impl fmt::Display for ParkedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

/// A parked mail read back for its turn.
pub struct Parked {
    /// Where it came from, when it was first tried, its recipients' lines.
    pub meta: Meta,
    /// Its envelope (the recipients still parked) and where its text is.
    pub mail: cssmtp_batch::Mail,
    /// Its text as sent (read from the store when sent).
    pub text: MailText,
}

impl Parked {
    /// A parked mail read from its copy (the MailDirectory's batch-SMTP form, as
    /// [`crate::retry::extended`] loads it): its text is read from `file` when sent.
    pub fn from_copy(meta: Meta, file: std::fs::File, mail: cssmtp_batch::Mail) -> Box<Self> {
        Box::new(Self {
            text: MailText::Spool {
                spool: Arc::new(crate::delivery::SpoolText {
                    file,
                    truncate: false,
                    // A copy is kept as it was sent (UTF-8 when it was translated).
                    translated: false,
                }),
                data: mail.data.clone(),
            },
            meta,
            mail,
        })
    }
}

/// What reading a parked mail back found.
pub enum ParkedRead {
    Found(Box<Parked>),
    /// It is gone (delivered, returned, or taken away by the operator).
    Gone,
    /// It cannot be read as a parked mail: kept as it is and skipped (CSM2209E).
    Unreadable(io::Error),
    /// The read could not be made now: tried again at the next Interval.
    NotNow(io::Error),
    /// Another instance is giving it its turn (a shared store): left to it, looked at
    /// again at the next Interval.
    Busy,
}

/// Where parked mail is kept.
pub trait ParkedStore: Send + Sync {
    /// Every parked mail, with when it was last tried (its next turn is an Interval
    /// later), oldest first. Called at start.
    fn list(&self) -> Pending<'_, Vec<(ParkedId, SystemTime)>>;

    /// Reads a parked mail back for its turn.
    fn load<'a>(&'a self, id: &'a ParkedId) -> Pending<'a, ParkedRead>;

    /// After a turn: the mail stays parked for the recipients `keep` (indices into
    /// `parked.mail.recipients`, not empty), and was tried now. Guarantee: when `Ok`,
    /// the recipients not in `keep` are no longer parked and the time of the turn is
    /// recorded, durably; when `Err`, the mail stays as it was (recipients already
    /// delivered may be sent again, never lost).
    fn keep<'a>(
        &'a self,
        id: &'a ParkedId,
        parked: &'a Parked,
        keep: &'a [usize],
    ) -> Pending<'a, io::Result<()>>;

    /// Every recipient is final (delivered or returned): the mail goes, durably.
    fn remove<'a>(&'a self, id: &'a ParkedId) -> Pending<'a, ()>;

    /// Where parked mail is kept, for people (escaped).
    fn shown(&self) -> String;

    /// How often [`ParkedStore::list`] is called again while running, for mail parked
    /// by other instances of a shared store (None: only at start; this process parks
    /// everything else it drives).
    fn relist_every(&self) -> Option<std::time::Duration> {
        None
    }
}
