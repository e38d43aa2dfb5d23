//! The claiming side of a spool: what intake needs to take a spool file (list what
//! waits, claim one, open its records and text), with the guarantee each step gives.
//!
//! * [`crate::spool::source::DirSource`]: the first implementation, the directory
//!   spool (a claim is a `renameat2(RENAME_NOREPLACE)` into `active/`);
//! * [`super::pg::source::PgSource`]: the shared spool on PostgreSQL (a claim is a
//!   lease with a fencing token).
//!
//! **Leased claims (a shared spool).** A database backend claims by lease (`UPDATE …
//! SET lease_until, fence = fence + 1 … FOR UPDATE SKIP LOCKED`): its
//! [`SpoolSource::Claim`] carries the lease id and the fencing token, which the
//! [`super::StateStore`] handle of the claimed file then puts on every write;
//! [`SpoolSource::renew`] extends the lease (the directory's claims never expire);
//! [`SpoolSource::left_claimed`] returns the files whose lease expired (this host's
//! or another's), to be taken up again where their recorded state says.

use std::io;

use super::Pending;
use crate::spool::layout::{OpenError, Opened};

/// Where spool files come from.
pub trait SpoolSource: Send + Sync {
    /// A file waiting to be claimed, as listed.
    type Candidate: Send;
    /// A claimed file (the directory: its path in `active/`; a lease: its id and
    /// fencing token).
    type Claim: Send;

    /// Files claimed before this start and never finished, oldest first: they are
    /// taken up before any waiting file. Guarantee: a file claimed and not finished is
    /// returned here at the next start (never lost, never left unclaimed).
    fn left_claimed(&self) -> Pending<'_, io::Result<Vec<Self::Claim>>>;

    /// The files waiting, the oldest last (a stack: pop the next), at most a bounded
    /// number (a listing is redone when it is used up). Files a producer has not
    /// finished writing are never listed.
    ///
    /// # Errors
    /// The spool cannot be listed.
    fn waiting(&self) -> Pending<'_, io::Result<Vec<Self::Candidate>>>;

    /// Claims a waiting file. Guarantee: `Some` to exactly one claimer of the file (of
    /// this process or any other sharing the spool), and the claim survives a crash
    /// (returned by [`SpoolSource::left_claimed`]); `None`: it is gone (claimed by
    /// someone else, or withdrawn).
    ///
    /// # Errors
    /// An I/O error (the file stays waiting).
    fn claim(&self, candidate: &Self::Candidate) -> io::Result<Option<Self::Claim>>;

    /// Opens a claimed file's records and text for reading. Guarantee: what is opened
    /// is the file claimed, as it is (never something it was replaced by, never through
    /// a link); its identity ([`Opened::id`]) is unique for the life of the file.
    ///
    /// # Errors
    /// [`OpenError::Refused`]: it must not be read as a spool file (see
    /// [`SpoolSource::set_aside`]); [`OpenError::Io`]: it could not be opened (a problem
    /// of the file); [`OpenError::NotNow`]: the spool cannot be read now (a database
    /// away): the claim is kept and opened again later.
    fn open(&self, claim: &Self::Claim) -> Result<Opened, OpenError>;

    /// A claimed entry that is not a spool file: put aside for the operator, unread,
    /// with why (logged once).
    fn set_aside(&self, claim: Self::Claim, why: String) -> Pending<'_, ()>;

    /// Extends a claim that is a lease; false when it was lost (the holder must stop
    /// writing: its fencing token is refused). The directory's claims never expire.
    fn renew(&self, claim: &Self::Claim) -> bool;
}
