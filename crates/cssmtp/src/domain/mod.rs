//! The domain's vocabulary: ids, the job a spool file came from, failures and their
//! RFC 3463 status, what an attempt did for a recipient (and the one rule of retry or
//! undeliverable), the queue's durable changes, how a file went and its report.
//!
//! A leaf: it imports nothing of this crate (only the pure crates `cssmtp_wire` and
//! `cssmtp_batch`, and std/serde), so every component can depend on it and none of them
//! on another only for a type. The components re-export what they always named
//! (`crate::delivery::Failure`, `crate::spool::name::JobIdentity`, ...), so paths stay
//! stable.

pub mod change;
pub mod failure;
pub mod ids;
pub mod job;
pub mod outcome;
pub mod report;

pub use change::{Change, Finished, Recovered, RecoveredFailure};
pub use failure::{FailedRecipient, Failure, Problem, Stage, Status};
pub use ids::{FileId, MailKey};
pub use job::{JobIdentity, Mode};
pub use outcome::{MailSummary, RcptResult, classify};
pub use report::{Disposition, FileReport, Undeliverable};
