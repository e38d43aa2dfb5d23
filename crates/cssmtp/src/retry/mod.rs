//! Retrying mail that could not be delivered yet.
//!
//! Long retry (`RetryLimit`) and extended retry are states of the queue core
//! ([`crate::queue::state`]): past its RetryLimit, with `ExtendedRetry` active, a mail is
//! parked (written durably to the MailDirectory, the spool file released) and given a
//! turn every Interval until Age, across restarts ([`crate::queue::parked`]). This
//! module holds the MailDirectory's file format ([`extended`]).

pub mod extended;
