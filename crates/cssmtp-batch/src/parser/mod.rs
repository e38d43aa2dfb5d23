//! The batch-SMTP command grammar, as a push parser.
//!
//! Feed every line of a spool file to [`Parser::line`]; it returns [`Step::Mail`] each
//! time a mail is complete (at its terminating `.`), and [`Step::Stop`] when
//! `JESSyntaxErrLimit` is exceeded. [`Parser::finish`] reports what was found. Memory
//! use is bounded by one mail's envelope, whatever the size of the file.
//!
//! Rules (IBM, "SMTP commands" for CSSMTP; RFC 5321):
//! * `HELO`/`EHLO` take exactly one domain and are needed before `MAIL FROM`. A bad one
//!   is an error, but a valid earlier one still holds.
//! * `STARTTLS` (after `EHLO` only) makes every following mail require TLS, until the
//!   next `HELO`/`EHLO`.
//! * `MAIL FROM:<path>` and `RCPT TO:<path>` need angle brackets; no parameters.
//! * At most 2000 `RCPT TO` per mail. A bad `RCPT TO` does not count as a syntax error:
//!   that recipient is undeliverable and the mail goes on. A mail with more is refused
//!   whole, with one error (`552 5.5.3 Too many recipients`, not counted toward
//!   `JESSyntaxErrLimit`): the recipients beyond the limit are counted, never kept, so
//!   memory stays bounded by the limit whatever the number of `RCPT TO`.
//! * `DATA` … `.`: the text is kept as written (already dot-stuffed); lines ≤ 998
//!   characters; a bare CR rejects the mail. Trailing blanks of its lines are kept,
//!   except in a file of padded fixed-length records ([`BlankTrnc`]); the `.` that ends
//!   it, like every command record, is read without them.
//! * `RSET` drops the mail in progress; `QUIT` ends the session (it is implied at end of
//!   file, and a later `HELO`/`EHLO` may start another one); `NOOP`, `VERB` and `TICK`
//!   are ignored; blank lines are ignored; anything else is an error.
//! * Command lines ≤ 510 characters, without control characters other than tab.
//! * A mail whose text exceeds `JESMsgSize` is rejected (not counted as a syntax error).
//!
//! This module holds the parser's state and its entry points; `command` reads command
//! lines (the envelope), `text` the lines between `DATA` and its `.`.

mod command;
mod text;

use crate::data::DataSpan;
use crate::error::{ErrorKind, SyntaxError};
use crate::record::{BlankTrnc, Line, fixed_length, lines};

use command::Pending;
use text::Text;

/// Most errors kept in a [`Summary`]; further ones are only counted.
pub const MAX_KEPT_ERRORS: usize = 1000;

/// Longest command line, in characters.
pub const MAX_COMMAND_LINE: usize = 510;

/// The limits that configuration statements put on a spool file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `JESSyntaxErrLimit`: counted errors tolerated; one more stops the file. 0 = no limit.
    pub syntax_error_limit: u32,
    /// `JESMsgSize`: largest mail text, in thousands of bytes. 0 = no limit.
    pub max_mail_kb: u64,
    /// Most `RCPT TO` per mail (2000 for CSSMTP).
    pub max_recipients: usize,
    /// `Options NullTrnc`: strip trailing NULs from command records.
    pub null_trnc: bool,
    /// `Options DataLineTrunc`: cut data lines to 998 characters instead of rejecting.
    pub data_line_trunc: bool,
    /// `Options BlankTrnc`: when data lines lose their trailing blanks. `Auto` needs the
    /// whole file: it is resolved with [`Limits::for_file`] before the parser starts
    /// ([`parse_bytes`] does it); a [`Parser`] given `Auto` keeps them.
    pub blank_trnc: BlankTrnc,
    /// `Options SmtpUtf8`: UTF-8 (non-ASCII) addresses in `MAIL FROM`/`RCPT TO` are
    /// accepted (RFC 6531); the mail then needs a target offering SMTPUTF8.
    pub utf8_addresses: bool,
}

impl Limits {
    /// These limits for one file: `BlankTrnc Auto` becomes `Yes` when `fixed_length`
    /// says every line of the file has the same length ([`crate::record::FixedLength`]),
    /// `No` otherwise. Called only for `Auto`.
    #[must_use]
    pub fn for_file(self, fixed_length: impl FnOnce() -> bool) -> Self {
        let strips = self.blank_trnc.strips(fixed_length);
        Self {
            blank_trnc: if strips {
                BlankTrnc::Yes
            } else {
                BlankTrnc::No
            },
            ..self
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            syntax_error_limit: 5,
            max_mail_kb: 0,
            max_recipients: 2000,
            null_trnc: false,
            data_line_trunc: false,
            blank_trnc: BlankTrnc::Auto,
            utf8_addresses: false,
        }
    }
}

/// A recipient accepted by the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The mailbox, without angle brackets.
    pub address: String,
    /// Line of its `RCPT TO`.
    pub line: u32,
}

/// A recipient refused by the grammar: undeliverable, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecipient {
    /// What was written after `RCPT TO:`, cut to 300 characters.
    pub text: String,
    pub error: SyntaxError,
}

/// One complete mail of a spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// 1-based number of the mail within its spool file (counting only mails emitted).
    pub ordinal: u32,
    /// Line of its `MAIL FROM`.
    pub line: u32,
    /// Domain of the `HELO`/`EHLO` in force.
    pub helo: String,
    /// The session was opened with `EHLO`.
    pub esmtp: bool,
    /// A `STARTTLS` is in force: the mail must only travel over TLS.
    pub starttls: bool,
    /// The reverse path, without brackets; empty for the null path `<>`.
    pub reverse_path: String,
    pub recipients: Vec<Recipient>,
    /// Recipients whose `RCPT TO` was refused; they are undeliverable.
    pub rejected: Vec<RejectedRecipient>,
    pub data: DataSpan,
}

/// What a line led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// A mail is complete.
    Mail(Box<Mail>),
    /// `JESSyntaxErrLimit` was exceeded: the rest of the file is not processed.
    Stop,
}

/// What the parser found in a whole spool file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Every problem, in line order (at most [`MAX_KEPT_ERRORS`]).
    pub errors: Vec<SyntaxError>,
    /// Problems found beyond [`MAX_KEPT_ERRORS`].
    pub errors_not_kept: u32,
    /// Errors that counted toward `JESSyntaxErrLimit`.
    pub counted: u32,
    /// Mails emitted.
    pub mails: u32,
    /// Processing stopped at the limit.
    pub stopped: bool,
    /// Last line seen.
    pub lines: u32,
}
enum State {
    /// Between mails.
    Idle,
    /// After `MAIL FROM`.
    Envelope(Box<Pending>),
    /// Within `DATA`.
    Text(Box<Pending>, Box<Text>),
    /// After a refused `MAIL FROM`: its `RCPT TO`s are skipped.
    SkipEnvelope,
    /// Within the `DATA` of a refused mail: skipped up to its `.`.
    SkipText,
    Stopped,
}

#[derive(Default)]
struct Session {
    helo: Option<String>,
    esmtp: bool,
    starttls: bool,
}

/// The push parser; see the module documentation.
pub struct Parser {
    limits: Limits,
    state: State,
    session: Session,
    summary: Summary,
}

impl Parser {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Idle,
            session: Session::default(),
            summary: Summary::default(),
        }
    }

    /// Data lines lose their trailing blanks (padded records; see [`Limits::blank_trnc`]).
    fn padded(&self) -> bool {
        self.limits.blank_trnc == BlankTrnc::Yes
    }

    /// Errors found so far.
    pub fn errors(&self) -> &[SyntaxError] {
        &self.summary.errors
    }

    /// Takes one line of the spool file.
    pub fn line(&mut self, line: Line<'_>) -> Step {
        self.summary.lines = line.number;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Stopped => {
                self.state = State::Stopped;
                Step::Stop
            }
            State::Text(pending, text) => self.text_line(line, Some((pending, text))),
            State::SkipText => self.text_line(line, None),
            State::Idle => self.command(line, None, false),
            State::SkipEnvelope => self.command(line, None, true),
            State::Envelope(pending) => self.command(line, Some(pending), false),
        }
    }

    /// Ends the file (QUIT is implied) and returns what was found.
    pub fn finish(mut self) -> Summary {
        let last = self.summary.lines;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Text(..) | State::SkipText => {
                self.error(last, ErrorKind::MissingEndOfData);
            }
            State::Envelope(_) => {
                self.error(last, ErrorKind::IncompleteMail);
            }
            State::Idle | State::SkipEnvelope | State::Stopped => {}
        }
        self.summary
    }

    /// Records an error; returns true when the limit is now exceeded (and stops).
    fn error(&mut self, line: u32, kind: ErrorKind) -> bool {
        let error = SyntaxError { line, kind };
        let counts = error.counts();
        self.keep(error);
        if !counts {
            return false;
        }
        self.summary.counted += 1;
        let limit = self.limits.syntax_error_limit;
        if limit > 0 && self.summary.counted > limit {
            self.keep(SyntaxError {
                line,
                kind: ErrorKind::LimitReached(limit),
            });
            self.summary.stopped = true;
            self.state = State::Stopped;
            return true;
        }
        false
    }

    fn keep(&mut self, error: SyntaxError) {
        if self.summary.errors.len() < MAX_KEPT_ERRORS {
            self.summary.errors.push(error);
        } else {
            self.summary.errors_not_kept += 1;
        }
    }

    /// Like [`error`](Self::error), then leaves the parser in `next` unless it stopped.
    fn fail(&mut self, line: u32, kind: ErrorKind, next: State) -> Step {
        if self.error(line, kind) {
            Step::Stop
        } else {
            self.state = next;
            Step::Continue
        }
    }
}

/// Parses a whole spool file held in memory (`BlankTrnc Auto` resolved on its lines).
pub fn parse_bytes(bytes: &[u8], limits: Limits) -> (Vec<Mail>, Summary) {
    let mut parser = Parser::new(limits.for_file(|| fixed_length(bytes)));
    let mut mails = Vec::new();
    for line in lines(bytes) {
        match parser.line(line) {
            Step::Continue => {}
            Step::Mail(mail) => mails.push(*mail),
            Step::Stop => break,
        }
    }
    (mails, parser.finish())
}

#[cfg(test)]
mod tests;
