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

use crate::address::{parse_path, valid_domain};
use crate::data::{DataSpan, HeaderScan, MAX_DATA_LINE, TextDigest, TextHasher};
use crate::error::{ErrorKind, SyntaxError};
use crate::record::{BlankTrnc, Line, bare_cr, fixed_length, lines, trim_nulls};

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

struct Pending {
    line: u32,
    reverse_path: String,
    recipients: Vec<Recipient>,
    rejected: Vec<RejectedRecipient>,
    rcpt_commands: usize,
    /// Line of the first `RCPT TO` beyond the limit: the mail will be refused.
    excess_from: Option<u32>,
}

struct Text {
    start: u64,
    lines: u32,
    wire_size: u64,
    dot_lines: u64,
    eight_bit: bool,
    header: HeaderScan,
    problem: Option<SyntaxError>,
    /// The lines in wire form, for checking the text when it is read again to be sent.
    digest: TextHasher,
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

    fn text_line(&mut self, line: Line<'_>, mail: Option<(Box<Pending>, Box<Text>)>) -> Step {
        // The end of the text is a command record: read without trailing blanks.
        let text = line.text();
        if text == b"." && line.trimmed_len == 1 {
            return match mail {
                Some((pending, body)) => self.end_of_data(line, *pending, *body),
                None => Step::Continue,
            };
        }
        let Some((pending, mut body)) = mail else {
            self.state = State::SkipText;
            return Step::Continue;
        };
        body.lines += 1;
        let padded = self.padded();
        // Length of the line in wire form (`record::data_text`): trimmed where the
        // records are padded, else as written (without its CR).
        let full = if padded {
            line.trimmed_len
        } else {
            line.content_len
        };
        let len = if self.limits.data_line_trunc {
            full.min(MAX_DATA_LINE)
        } else {
            full
        };
        body.wire_size += len as u64 + 2;
        // The wire form of the line: its first `len` bytes (a prefix of `raw`, which keeps
        // at least 998 bytes of a long line; a longer one is refused below).
        let wire = line.raw.get(..len).unwrap_or(text);
        body.digest.line(wire);
        if wire.first() == Some(&b'.') {
            body.dot_lines += 1;
        }
        if !body.eight_bit && !wire.is_ascii() {
            body.eight_bit = true;
        }
        // The header as the receiver will see it: a line of blanks in a text file is not
        // the empty line that ends the header.
        body.header.line(wire, line.offset);
        if body.problem.is_none() {
            if len > MAX_DATA_LINE {
                body.problem = Some(SyntaxError {
                    line: line.number,
                    kind: ErrorKind::DataLineTooLong(full),
                });
            } else if bare_cr(wire).is_some() {
                body.problem = Some(SyntaxError {
                    line: line.number,
                    kind: ErrorKind::BareCr,
                });
            }
        }
        self.state = State::Text(pending, body);
        Step::Continue
    }

    fn end_of_data(&mut self, line: Line<'_>, pending: Pending, body: Text) -> Step {
        if let Some(problem) = body.problem {
            return self.fail(problem.line, problem.kind, State::Idle);
        }
        let limit = self.limits.max_mail_kb;
        if limit > 0 && body.wire_size > limit.saturating_mul(1000) {
            return self.fail(
                line.number,
                ErrorKind::MailTooBig {
                    size: body.wire_size,
                    limit_kb: limit,
                },
                State::Idle,
            );
        }
        self.summary.mails += 1;
        let mail = Mail {
            ordinal: self.summary.mails,
            line: pending.line,
            helo: self.session.helo.clone().unwrap_or_default(),
            esmtp: self.session.esmtp,
            starttls: self.session.starttls,
            reverse_path: pending.reverse_path,
            recipients: pending.recipients,
            rejected: pending.rejected,
            data: DataSpan {
                start: body.start,
                end: line.offset,
                lines: body.lines,
                wire_size: body.wire_size,
                dot_lines: body.dot_lines,
                eight_bit: body.eight_bit,
                has_date: body.header.has_date,
                has_message_id: body.header.has_message_id,
                missing_separator_at: body.header.missing_separator_at,
                header_end: body.header.header_end.unwrap_or(line.offset),
                auto_submitted: body.header.auto_submitted,
                digest: TextDigest {
                    end: line.offset,
                    lines: body.lines,
                    value: body.digest.value(),
                },
                padded: self.padded(),
            },
        };
        Step::Mail(Box::new(mail))
    }

    fn command(&mut self, line: Line<'_>, pending: Option<Box<Pending>>, skipping: bool) -> Step {
        let number = line.number;
        let mut text = line.text();
        if self.limits.null_trnc {
            text = trim_nulls(text);
        }
        if text.is_empty() {
            self.state = restore(pending, skipping);
            return Step::Continue;
        }
        if line.trimmed_len > MAX_COMMAND_LINE {
            let kind = ErrorKind::CommandTooLong(line.trimmed_len);
            return self.fail(number, kind, restore(pending, skipping));
        }
        if let Some(&byte) = text
            .iter()
            .find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            let kind = ErrorKind::ControlCharacter(byte);
            return self.fail(number, kind, restore(pending, skipping));
        }
        let Some(text) = std::str::from_utf8(text).ok().filter(|t| t.is_ascii()) else {
            return self.fail(number, ErrorKind::NotText, restore(pending, skipping));
        };
        let (verb, args) = match text.find([' ', '\t']) {
            Some(i) => (
                text.get(..i).unwrap_or(text),
                text.get(i + 1..).unwrap_or(""),
            ),
            None => (text, ""),
        };
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "HELO" | "EHLO" => self.hello(number, &verb, args, pending),
            "STARTTLS" => {
                let back = restore(pending, skipping);
                // The job asked for TLS: even a faulty STARTTLS (reported below) makes
                // the mails that follow need it, never the clear.
                self.session.starttls = true;
                if !args.trim().is_empty() {
                    self.fail(number, ErrorKind::UnexpectedArgs("STARTTLS"), back)
                } else if matches!(back, State::Envelope(_)) {
                    self.fail(number, ErrorKind::StartTlsInMail, back)
                } else if self.session.helo.is_none() {
                    self.fail(number, ErrorKind::HeloRequired("STARTTLS"), back)
                } else if !self.session.esmtp {
                    self.fail(number, ErrorKind::StartTlsAfterHelo, back)
                } else {
                    self.state = back;
                    Step::Continue
                }
            }
            "MAIL" => self.mail_from(number, args, pending),
            "RCPT" => self.rcpt_to(number, args, pending, skipping),
            "DATA" => {
                if skipping {
                    self.state = State::SkipText;
                    return Step::Continue;
                }
                let Some(pending) = pending else {
                    return self.fail(number, ErrorKind::DataWithoutMail, State::SkipText);
                };
                if pending.rcpt_commands == 0 {
                    return self.fail(number, ErrorKind::DataWithoutRcpt, State::SkipText);
                }
                if let Some(first) = pending.excess_from {
                    let kind = ErrorKind::TooManyRecipients {
                        count: pending.rcpt_commands,
                        limit: self.limits.max_recipients,
                    };
                    return self.fail(first, kind, State::SkipText);
                }
                self.state = State::Text(
                    pending,
                    Box::new(Text {
                        start: line.next_offset(),
                        lines: 0,
                        wire_size: 0,
                        dot_lines: 0,
                        eight_bit: false,
                        header: HeaderScan::new(),
                        problem: None,
                        digest: TextHasher::new(),
                    }),
                );
                Step::Continue
            }
            "RSET" => Step::Continue,
            "QUIT" => {
                self.session = Session::default();
                if pending.is_some() {
                    return self.fail(number, ErrorKind::IncompleteMail, State::Idle);
                }
                Step::Continue
            }
            "NOOP" | "VERB" | "TICK" => {
                self.state = restore(pending, skipping);
                Step::Continue
            }
            "HELP" | "VRFY" | "EXPN" | "TURN" | "ETRN" | "AUTH" | "BDAT" | "SEND" | "SOML"
            | "SAML" => self.fail(
                number,
                ErrorKind::CommandNotSupported(verb),
                restore(pending, skipping),
            ),
            _ => {
                let shown: String = verb.chars().take(40).collect();
                self.fail(
                    number,
                    ErrorKind::UnknownCommand(shown),
                    restore(pending, skipping),
                )
            }
        }
    }

    fn hello(
        &mut self,
        number: u32,
        verb: &str,
        args: &str,
        pending: Option<Box<Pending>>,
    ) -> Step {
        let name: &'static str = if verb == "EHLO" { "EHLO" } else { "HELO" };
        if pending.is_some() && self.error(number, ErrorKind::IncompleteMail) {
            return Step::Stop;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        let problem = match words.as_slice() {
            [] => Some(ErrorKind::MissingDomain(name)),
            [domain] if !valid_domain(domain) => Some(ErrorKind::InvalidDomain(
                name,
                domain.chars().take(80).collect(),
            )),
            [_] => None,
            _ => Some(ErrorKind::TooManyArgs(name)),
        };
        match (problem, words.first()) {
            (Some(kind), _) => self.fail(number, kind, State::Idle),
            (None, Some(domain)) => {
                self.session = Session {
                    helo: Some((*domain).to_owned()),
                    esmtp: name == "EHLO",
                    starttls: false,
                };
                Step::Continue
            }
            (None, None) => Step::Continue,
        }
    }

    fn mail_from(&mut self, number: u32, args: &str, pending: Option<Box<Pending>>) -> Step {
        if pending.is_some() && self.error(number, ErrorKind::NestedMail) {
            return Step::Stop;
        }
        let Some(path) = strip_keyword(args, "FROM:") else {
            return self.fail(
                number,
                ErrorKind::ExpectedSyntax("MAIL FROM:<path>"),
                State::SkipEnvelope,
            );
        };
        if self.session.helo.is_none() {
            return self.fail(
                number,
                ErrorKind::HeloRequired("MAIL FROM"),
                State::SkipEnvelope,
            );
        }
        match parse_path(path, "MAIL FROM") {
            Ok(reverse_path) => {
                self.state = State::Envelope(Box::new(Pending {
                    line: number,
                    reverse_path,
                    recipients: Vec::new(),
                    rejected: Vec::new(),
                    rcpt_commands: 0,
                    excess_from: None,
                }));
                Step::Continue
            }
            Err(kind) => self.fail(number, kind, State::SkipEnvelope),
        }
    }

    fn rcpt_to(
        &mut self,
        number: u32,
        args: &str,
        pending: Option<Box<Pending>>,
        skipping: bool,
    ) -> Step {
        if skipping {
            self.state = State::SkipEnvelope;
            return Step::Continue;
        }
        let Some(mut pending) = pending else {
            return self.fail(number, ErrorKind::RcptWithoutMail, State::Idle);
        };
        pending.rcpt_commands = pending.rcpt_commands.saturating_add(1);
        if pending.rcpt_commands > self.limits.max_recipients {
            // The mail will be refused whole (at its DATA): what it had is let go, the
            // rest is only counted.
            if pending.excess_from.is_none() {
                pending.excess_from = Some(number);
                pending.recipients = Vec::new();
                pending.rejected = Vec::new();
            }
            self.state = State::Envelope(pending);
            return Step::Continue;
        }
        let result = match strip_keyword(args, "TO:") {
            None => Err(ErrorKind::ExpectedSyntax("RCPT TO:<path>")),
            Some(path) => match parse_path(path, "RCPT TO") {
                Ok(address) if address.is_empty() => Err(ErrorKind::NullRecipient),
                other => other,
            },
        };
        match result {
            Ok(address) => pending.recipients.push(Recipient {
                address,
                line: number,
            }),
            Err(kind) => {
                let error = SyntaxError { line: number, kind };
                self.keep(error.clone());
                pending.rejected.push(RejectedRecipient {
                    text: args.chars().take(300).collect(),
                    error,
                });
            }
        }
        self.state = State::Envelope(pending);
        Step::Continue
    }
}

fn restore(pending: Option<Box<Pending>>, skipping: bool) -> State {
    match pending {
        Some(p) => State::Envelope(p),
        None if skipping => State::SkipEnvelope,
        None => State::Idle,
    }
}

/// `FROM:<x>` → `<x>` (keyword case-insensitive, spaces tolerated around the colon).
fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let args = args.trim_start();
    let word = keyword.trim_end_matches(':');
    let head = args.get(..word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    let rest = args.get(word.len()..)?.trim_start();
    rest.strip_prefix(':')
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
