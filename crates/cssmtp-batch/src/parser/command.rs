//! Command lines: the session (`HELO`/`EHLO`, `STARTTLS`, `QUIT`) and a mail's envelope
//! (`MAIL FROM`, `RCPT TO`, `DATA`).

use super::{MAX_COMMAND_LINE, Parser, Recipient, RejectedRecipient, Session, State, Step, Text};
use crate::address::{parse_path, valid_domain};
use crate::error::{ErrorKind, SyntaxError};
use crate::record::{Line, trim_nulls};

/// The envelope of the mail under way.
pub(super) struct Pending {
    pub(super) line: u32,
    pub(super) reverse_path: String,
    pub(super) recipients: Vec<Recipient>,
    pub(super) rejected: Vec<RejectedRecipient>,
    pub(super) rcpt_commands: usize,
    /// Line of the first `RCPT TO` beyond the limit: the mail will be refused.
    pub(super) excess_from: Option<u32>,
}
impl Parser {
    /// Reads a command line; `pending` is the mail whose envelope is under way,
    /// `skipping` says the envelope of a refused mail is being skipped.
    pub(super) fn command(
        &mut self,
        line: Line<'_>,
        pending: Option<Box<Pending>>,
        skipping: bool,
    ) -> Step {
        let number = line.number;
        let text = match self.command_text(&line) {
            Ok(Some(text)) => text,
            Ok(None) => {
                self.state = restore(pending, skipping);
                return Step::Continue;
            }
            Err(kind) => return self.fail(number, kind, restore(pending, skipping)),
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
            "STARTTLS" => self.starttls(number, args, restore(pending, skipping)),
            "MAIL" => self.mail_from(number, args, pending),
            "RCPT" => self.rcpt_to(number, args, pending, skipping),
            "DATA" => self.data(&line, pending, skipping),
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

    /// The text of a command line: None for a blank line, the error of a line too long,
    /// with a control character, or not ASCII.
    fn command_text<'l>(&self, line: &Line<'l>) -> Result<Option<&'l str>, ErrorKind> {
        let mut text = line.text();
        if self.limits.null_trnc {
            text = trim_nulls(text);
        }
        if text.is_empty() {
            return Ok(None);
        }
        if line.trimmed_len > MAX_COMMAND_LINE {
            return Err(ErrorKind::CommandTooLong(line.trimmed_len));
        }
        if let Some(&byte) = text
            .iter()
            .find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(ErrorKind::ControlCharacter(byte));
        }
        // UTF-8 is let through to the commands, which refuse it where it has no place
        // (a non-ASCII path is refused by `parse_path` unless `Options SmtpUtf8`).
        match std::str::from_utf8(text) {
            Ok(text) => Ok(Some(text)),
            Err(_) => Err(ErrorKind::NotText),
        }
    }

    /// `STARTTLS`; `back` is the state to return to.
    fn starttls(&mut self, number: u32, args: &str, back: State) -> Step {
        // The job asked for TLS: even a faulty STARTTLS (reported below) makes the mails
        // that follow need it, never the clear.
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

    /// `DATA`: the text of the mail under way starts on the next line.
    fn data(&mut self, line: &Line<'_>, pending: Option<Box<Pending>>, skipping: bool) -> Step {
        let number = line.number;
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
        self.state = State::Text(pending, Box::new(Text::new(line.next_offset())));
        Step::Continue
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
        match parse_path(path, "MAIL FROM", self.limits.utf8_addresses) {
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
            Some(path) => match parse_path(path, "RCPT TO", self.limits.utf8_addresses) {
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

/// The state to return to after a command that leaves the envelope as it was.
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
