//! What became of one spool file (the types live in the leaf [`crate::domain::report`]).

pub use crate::domain::report::{Disposition, FileReport, Undeliverable};
