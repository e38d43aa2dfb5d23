//! The queue core: one owner of every recipient's state.
//!
//! * [`state`]: the pure state machine of one spool file's recipients —
//!   `apply(event) → effects`, no I/O, unit-tested exhaustively;
//! * [`file`]: the per-file driver (CSSMTP's "JES task"): it feeds the machine what
//!   happens (mails parsed, delivery results, timers, SUSPEND, FLUSHRETRY, what storage
//!   recovered) and carries out its effects ([`effects`]);
//! * [`crate::storage`]: where the state is kept (the seam); the machine's typed changes
//!   and the delivery's acknowledgements become records there (the SMTP session
//!   reports; it never persists);
//! * [`parked`]: the driver of parked mail (extended retry): each parked mail read back
//!   from storage at its Interval is given its turn in the same machine
//!   (`Event::Unpark` → send, return, `Repark`);
//! * [`generated`]: the driver of a generated mail (notification, error report): an
//!   ordinary queued mail of the same machine with a one-attempt policy, whose return
//!   becomes a dead letter, never a notification about a notification;
//! * [`finish`]: the disposition of a released file;
//! * [`task`]: what a driver holds (data only).
//!
//! One mail's walk: intake → parser → [`state`] (`Send`) → delivery (before the final
//! ".", [`crate::delivery::DeliveryAck::before_dot`] → the journal) → results →
//! [`state`] (`Record`, retry, `Park`, `Return`) → the file released → [`finish`].

mod effects;
pub mod file;
mod finish;
pub mod generated;
pub mod parked;
pub mod state;
mod task;
mod trace;

pub use file::run;
pub use task::{Payload, TaskShared};
