//! The storage seam: what the queue core needs from the place its state is kept.
//!
//! The core ([`crate::queue`]) never sees a path, an inode or a journal record: it
//! knows a spool file by its [`FileId`], takes what was recorded of it before a restart
//! ([`StateStore::open`]), and hands every change of state to a [`FileStore`] as a
//! typed [`Change`] (or, for the final "." of a mail, through a
//! [`crate::delivery::DeliveryAck`] the store makes).
//!
//! * [`journal`]: the first implementation, today's checkpoint journal (one
//!   append-only file per writer name; see [`crate::journal`]);
//! * [`parked`]: parked mail (extended retry) read back for its turn
//!   ([`parked::ParkedStore`]), with [`maildir`], the MailDirectory, as its first
//!   implementation;
//! * [`source`]: the claiming side of a spool ([`source::SpoolSource`]: list, claim,
//!   open), with the directory spool ([`crate::spool::source::DirSource`]) as its first
//!   implementation;
//! * [`pg`]: the shared spool on PostgreSQL (`SpoolDatabase`): all of the above in one
//!   database shared by several instances, with leased claims;
//! * [`conformance`]: the suites every implementation must pass (the state store's;
//!   [`conformance::source`] the spool source's; [`conformance::parked`] parked mail's).
//!
//! **Leased claims (a shared spool).** A backend whose claims are leases (a database
//! row with `lease_until` and a fencing token) fits behind the same traits without a
//! change to the core: the [`FileStore`] handle returned by [`StateStore::open`] is the
//! claim; it carries the lease id and puts the fencing token on every write it makes
//! (records and acknowledgements), so a write by a holder whose lease expired is refused
//! by the backend and reported as not written ([`FileStore::record`] returns false,
//! [`crate::delivery::DeliveryAck::before_dot`] fails: the final "." is not sent). A
//! store that cannot record says so through [`FileStore::is_writable`] and
//! [`FileStore::writable`], which hold sending back (as a full disk does today);
//! renewal is the handle's own business (a timer of the backend), and recovery of
//! expired leases is what [`StateStore::open`] returns for a file claimed again.

pub mod conformance;
pub mod journal;
pub mod maildir;
pub mod parked;
pub mod pg;
pub mod source;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::delivery::DeliveryAck;
pub use crate::domain::change::{Change, Finished, Recovered};
pub use crate::domain::ids::FileId;
use crate::notify::deadletter::FullMail;
use crate::spool::name::JobIdentity;

/// What storage recorded of one spool file before a restart, by mail number.
pub type RecoveredFile = HashMap<u32, Recovered>;

/// The store of the queue's state, one per process.
pub trait StateStore: Send + Sync + 'static {
    /// The state of one claimed spool file: what was recorded of it before a restart
    /// (given once: a second open of the same file recovers nothing), and the handle
    /// through which what happens to it next is recorded.
    fn open(&self, file: &FileId) -> (RecoveredFile, Arc<dyn FileStore>);

    /// False while nothing can be recorded: no new spool file is taken.
    fn is_writable(&self) -> bool;

    /// Follows [`StateStore::is_writable`].
    fn writable(&self) -> watch::Receiver<bool>;
}

/// The state of one claimed spool file.
pub trait FileStore: Send + Sync {
    /// Records a change of state. Guarantee: once this returns true, the change
    /// survives a crash of the process, and a crash of the system after the store's next
    /// sync (at most the store's sync interval later); changes are recovered in the
    /// order they were recorded. False: it could not be recorded (the store said why,
    /// and is not writable until it can record again); the core goes on as if it had
    /// been, and the next start does that part again.
    fn record(&self, change: &Change) -> bool;

    /// The acknowledgements of one mail's transactions, for its delivery. Guarantees:
    /// [`DeliveryAck::before_dot`] returns only once the recipients about to get the
    /// final "." are recorded (so that a crash after it recovers them as possibly
    /// delivered, [`Recovered::in_doubt`]), or fails and the "." is not sent;
    /// [`DeliveryAck::after_dot`] records the outcome (delivered, or to be sent again)
    /// before it returns, so that a later crash recovers them as final or not.
    fn ack(&self, mail: u32) -> Arc<dyn DeliveryAck>;

    /// False while nothing can be recorded: no mail's final "." goes out.
    fn is_writable(&self) -> bool;

    /// Follows [`FileStore::is_writable`].
    fn writable(&self) -> watch::Receiver<bool>;

    /// The file is finished. [`Finished::Deleted`] and [`Finished::Removed`] are
    /// recorded before the file goes: the store makes them, and everything recorded
    /// before, durable first (through [`FileStore::id`] for the directory spool's
    /// reaper), so that a file a power failure brings back is not sent again.
    /// [`Finished::Held`]: nothing recorded of the file is recovered afterwards.
    fn finished(&self, how: Finished);

    /// The file's identity.
    fn id(&self) -> &FileId;

    /// Another instance took the file over (a leased backend: this one's lease
    /// expired): nothing more of it can ever be recorded or sent from here, and its
    /// spool task ends (its slot is free for another file).
    fn is_lost(&self) -> bool {
        false
    }
}

/// A claimed spool file, as the queue core finishes it (the directory spool: a file in
/// `active/`, [`crate::spool::claim::DirClaim`]; a leased backend: the lease).
pub trait SpoolClaim: Send + Sync {
    /// The file's name as shown to people (escaped: names are data).
    fn name(&self) -> &str;

    /// Every recipient is final and [`FileStore::finished`] was called: the file goes.
    /// Guarantee: it goes only after everything `store` recorded of it is durable, so
    /// that a file brought back by a crash of the system is not sent again.
    fn delete(&self, store: Option<&dyn FileStore>);

    /// Moves the file aside for the operator, durably (before [`Finished::Held`] is
    /// recorded: a held file comes back only when released, as a new file); returns
    /// where it is, for people.
    ///
    /// # Errors
    /// It could not be moved: the file stays claimed (and is taken up again at the next
    /// start).
    fn hold(&self) -> Pending<'_, io::Result<PathBuf>>;

    /// Keeps `text` (the held file's report) beside the held file; a failure is logged
    /// (CSM2008E), the file stays held.
    fn keep_beside<'a>(&'a self, held: &'a Path, text: Vec<u8>) -> Pending<'a, ()>;

    /// Where the claimed file is, for people (in messages).
    fn shown(&self) -> String;

    /// Parks a copy of a mail, for `copy.rcpts`, in extended retry. Guarantee: `Ok` only
    /// once the copy is durable (the core then records the recipients parked; a crash
    /// between the two sends them again from the spool file, never loses them); returns
    /// where it is, for people.
    fn park<'a>(&'a self, copy: &'a MailCopy<'a>) -> Pending<'a, io::Result<String>>;

    /// Keeps a copy of a mail possibly delivered before a restart, for `copy.rcpts`, for
    /// the operator (who may send it again). Guarantee: `Ok` only once it is durable;
    /// returns where it is, for people.
    fn hold_in_doubt<'a>(&'a self, copy: &'a MailCopy<'a>) -> Pending<'a, io::Result<String>>;
}

/// A storage step in progress.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A copy of one mail of a claimed file, for some of its recipients.
pub struct MailCopy<'a> {
    pub job: &'a JobIdentity,
    /// Its number in the file, and the line of its MAIL FROM.
    pub mail: u32,
    pub line: u32,
    /// When the file was taken up (extended retry's Age counts from here).
    pub first_attempt: SystemTime,
    pub reverse_path: &'a str,
    /// `(address, line of its RCPT TO)`.
    pub rcpts: Vec<(String, u32)>,
    pub needs_tls: bool,
    /// The mail as sent (its text read from the claimed file when copied).
    pub text: &'a FullMail,
}
