//! Retrying mail that could not be delivered yet.
//!
//! Long retry (`RetryLimit`) lives in the spool task, which holds the spool file; when it
//! is exhausted and `ExtendedRetry` is active, the mail moves to [`extended`] retry: it is
//! written durably to the MailDirectory, the spool file is released, and the mail is
//! tried again every Interval until Age, across restarts.

pub mod extended;
