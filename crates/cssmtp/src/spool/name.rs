//! Spool file names: how a job name and job ID travel with a file (the type and its
//! rules live in the leaf [`crate::domain::job`]).

pub use crate::domain::job::{JobIdentity, spool_file_name};
