//! The spool: where batch jobs leave mail for cssmtp, and how cssmtp takes it.
//!
//! * [`checks`]: the start-up checks of directory ownership and modes;
//! * [`layout`]: the directories, claiming by atomic rename, the instance lock;
//! * [`claim`]: a claimed file, as the queue core finishes it (deleted, held);
//! * [`name`]: job name and job ID carried in file names; [`owner`]: the owner's
//!   user name (looked up off the runtime, kept a minute);
//! * [`submit`]: `cssmtp submit`, writing spool files atomically;
//! * [`permit`]: who may send (`PermitUser`, `PermitGroup`);
//! * [`translate`]: EBCDIC spool files (`Translate`, `RecordLength`);
//! * [`intake`]: noticing new files (inotify, with a periodic rescan) and starting a
//!   [`crate::queue::file`] driver for each, as many at once as `SpoolTasks` allows;
//! * [`reader`]: streaming a file through the batch parser with bounded memory;
//! * [`report`]: what became of a spool file (a leaf every component may read).

pub(crate) mod checks;
pub(crate) mod claim;
pub(crate) mod intake;
pub mod layout;
mod lock;
pub(crate) mod name;
pub(crate) mod owner;
pub(crate) mod permit;
pub(crate) mod reader;
mod reaper;
pub mod report;
pub(crate) mod source;
pub(crate) mod status;
pub mod submit;
pub mod translate;

pub use crate::domain::job::Mode;
pub use layout::SpoolLayout;
