//! The SMTP client wire protocol spoken by cssmtp, without any I/O.
//!
//! This crate owns the bytes that cross the socket towards a target server:
//!
//! * [`reply`]: parsing server replies (multi-line, enhanced status codes) into typed
//!   [`Reply`] values, incrementally, from whatever chunks the socket delivers;
//! * [`ehlo`]: the capabilities a server advertises in its EHLO reply;
//! * [`command`]: rendering client commands, refusing anything that could smuggle a
//!   line break into the command stream;
//! * [`sasl`]: the client side of SMTP AUTH (PLAIN, LOGIN, XOAUTH2);
//! * [`data`]: dot-stuffing and line ends for mail text cssmtp generates.
//!
//! It never touches a socket, a file or a clock: bytes in, values out. The delivery
//! code in the `cssmtp` crate drives it over tokio and rustls.

pub mod command;
pub mod data;
pub mod ehlo;
#[doc(hidden)]
pub mod fuzz;
pub mod reply;
pub mod sasl;

pub use command::{Command, CommandError};
pub use ehlo::Capabilities;
pub use reply::{EnhancedStatus, Reply, ReplyParser, Severity, WireError};
