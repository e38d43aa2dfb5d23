//! The batch-SMTP spool-file format read by cssmtp, without any I/O.
//!
//! A spool file is what a batch job writes for CSSMTP: SMTP commands and mail text, one
//! record per line.
//!
//! ```text
//! HELO zos1.corp.example
//! MAIL FROM:<batch@zos1.corp.example>
//! RCPT TO:<alice@example.com>
//! DATA
//! Subject: nightly totals
//!
//! ..a line that starts with a dot is doubled
//! .
//! QUIT
//! ```
//!
//! This crate owns the rules of that format (IBM: "SMTP commands" for CSSMTP):
//! [`record`] turns physical lines into records (CRLF or LF, trailing blanks removed from
//! commands, and from text only where the records are padded; bare CR detected), [`address`] checks reverse and forward paths, [`parser`] is the
//! command grammar as a push parser that emits one [`Mail`] at a time, so a spool file
//! of any size is never held in memory, and [`data`] renders a mail's text for the wire.
//!
//! Syntax errors are data ([`SyntaxError`], with the line number and an SMTP-style text
//! such as `501 5.5.4 JES Syntax error. Too many args after 'HELO' command`), so a caller
//! can count them against `JESSyntaxErrLimit`, report them and keep going.

pub mod address;
pub mod data;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod parser;
pub mod record;
pub mod write;

pub use data::{
    DataRules, DataSpan, TextDigest, TextHasher, UnsafeLine, render_lines, render_lines_checked,
};
pub use error::{ErrorKind, SyntaxError};
pub use parser::{Limits, Mail, Parser, Recipient, RejectedRecipient, Step, Summary, parse_bytes};
pub use record::{BlankTrnc, FixedLength, Line};
