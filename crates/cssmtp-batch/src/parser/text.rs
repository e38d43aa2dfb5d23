//! The lines of a mail's text, between `DATA` and its `.`.

use super::{Mail, Parser, Pending, State, Step};
use crate::data::{DataSpan, HeaderScan, MAX_DATA_LINE, TextDigest, TextHasher};
use crate::error::{ErrorKind, SyntaxError};
use crate::record::{Line, bare_cr};

/// What is known of the text under way.
pub(super) struct Text {
    pub(super) start: u64,
    pub(super) lines: u32,
    pub(super) wire_size: u64,
    pub(super) dot_lines: u64,
    pub(super) eight_bit: bool,
    pub(super) header: HeaderScan,
    pub(super) problem: Option<SyntaxError>,
    /// The lines in wire form, for checking the text when it is read again to be sent.
    pub(super) digest: TextHasher,
}
impl Text {
    /// The text starting at byte `start` of the file.
    pub(super) fn new(start: u64) -> Self {
        Self {
            start,
            lines: 0,
            wire_size: 0,
            dot_lines: 0,
            eight_bit: false,
            header: HeaderScan::new(),
            problem: None,
            digest: TextHasher::new(),
        }
    }

    /// Takes one line in wire form (`wire`, `len` bytes of a line `full` bytes long).
    fn take(&mut self, line: &Line<'_>, wire: &[u8], len: usize, full: usize) {
        self.wire_size += len as u64 + 2;
        self.digest.line(wire);
        if wire.first() == Some(&b'.') {
            self.dot_lines += 1;
        }
        if !self.eight_bit && !wire.is_ascii() {
            self.eight_bit = true;
        }
        // The header as the receiver will see it: a line of blanks in a text file is not
        // the empty line that ends the header.
        self.header.line(wire, line.offset);
        if self.problem.is_none() {
            if len > MAX_DATA_LINE {
                self.problem = Some(SyntaxError {
                    line: line.number,
                    kind: ErrorKind::DataLineTooLong(full),
                });
            } else if bare_cr(wire).is_some() {
                self.problem = Some(SyntaxError {
                    line: line.number,
                    kind: ErrorKind::BareCr,
                });
            }
        }
    }
}

impl Parser {
    /// Reads a line of text; `mail` is None while the text of a refused mail is skipped.
    pub(super) fn text_line(
        &mut self,
        line: Line<'_>,
        mail: Option<(Box<Pending>, Box<Text>)>,
    ) -> Step {
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
        // The wire form of the line: its first `len` bytes (a prefix of `raw`, which keeps
        // at least 998 bytes of a long line; a longer one is refused at its end).
        let wire = line.raw.get(..len).unwrap_or(text);
        body.take(&line, wire, len, full);
        self.state = State::Text(pending, body);
        Step::Continue
    }

    /// The `.` that ends the text: the mail is complete (or refused).
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
                message_id: body.header.message_id.clone(),
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
}
