//! The queue core's durable changes of state, what storage recovers of them after a
//! restart, and how a finished spool file went: the vocabulary between the queue core
//! ([`crate::queue`]) and the storage seam ([`crate::storage`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::failure::{FailedRecipient, Status};

/// A durable change of state, for the store (the journal's records, in typed form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// After an attempt (or FLUSHRETRY): recipients not final yet (`retry`, including
    /// those to be parked), recipients failed.
    Attempted {
        mail: u32,
        attempts: u32,
        retry: Vec<usize>,
        failed: Vec<(usize, FailedRecipient)>,
    },
    /// Recipients parked in extended retry (the park is durable).
    Parked {
        mail: u32,
        attempts: u32,
        rcpts: Vec<usize>,
    },
    /// Possibly delivered recipients held for the operator (the hold is durable).
    HeldInDoubt {
        mail: u32,
        attempts: u32,
        rcpts: Vec<usize>,
    },
    /// The mail's failed recipients were returned.
    Returned { mail: u32 },
}

/// What storage recorded of a mail before a restart (by recipient index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    pub attempts: u32,
    pub returned: bool,
    pub delivered: BTreeSet<usize>,
    pub parked: BTreeSet<usize>,
    pub held: BTreeSet<usize>,
    pub failed: BTreeMap<usize, RecoveredFailure>,
    /// The final "." may have gone to these, no result recorded: possibly delivered.
    pub in_doubt: BTreeSet<usize>,
}

/// A recorded failure (the recipient's address and line come from the spool file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredFailure {
    pub status: Status,
    pub diagnostic: Option<String>,
    pub remote: Option<SocketAddr>,
    pub reason: String,
}

/// How a finished spool file went (the journal's `done` record writes it as `deleted`,
/// `removed` or `held`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finished {
    /// Every recipient is final; the file is deleted.
    Deleted,
    /// Every recipient is final; the file, which had errors of its own, is removed
    /// (`BadSpoolDisp Delete`).
    Removed,
    /// The file was held for the operator: when released, it comes back as a new file
    /// (nothing recorded of it is kept).
    Held,
}
