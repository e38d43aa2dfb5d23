//! Syntax errors found in a spool file, as data.
//!
//! Each error has the line it was found on and renders as an SMTP-style reply text, the
//! form CSSMTP uses in its error reports (`501 5.5.4 JES Syntax error. …`).

use std::fmt;

/// What is wrong, with what is needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    UnknownCommand(String),
    CommandNotSupported(String),
    CommandTooLong(usize),
    ControlCharacter(u8),
    NotText,
    MissingDomain(&'static str),
    TooManyArgs(&'static str),
    InvalidDomain(&'static str, String),
    UnexpectedArgs(&'static str),
    /// The command is known but not in its expected form, e.g. `MAIL TO:<x>`.
    ExpectedSyntax(&'static str),
    HeloRequired(&'static str),
    StartTlsAfterHelo,
    StartTlsInMail,
    NestedMail,
    RcptWithoutMail,
    DataWithoutMail,
    DataWithoutRcpt,
    IncompleteMail,
    AngleBracketsRequired(&'static str),
    ParametersNotSupported(&'static str),
    InvalidAddress(&'static str, String),
    /// A non-ASCII (UTF-8) address where `Options SmtpUtf8` does not allow one (RFC 6531).
    Utf8AddressNotAllowed(&'static str, String),
    PathTooLong(&'static str),
    LocalPartTooLong(&'static str),
    DomainTooLong(&'static str),
    NullRecipient,
    /// More `RCPT TO` in one mail than the limit (2000): the mail is refused whole.
    TooManyRecipients {
        count: usize,
        limit: usize,
    },
    DataLineTooLong(usize),
    BareCr,
    MissingEndOfData,
    MailTooBig {
        size: u64,
        limit_kb: u64,
    },
    /// Not an error in itself: the point where `JESSyntaxErrLimit` stopped processing.
    LimitReached(u32),
}

/// One problem in a spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line number in the spool file.
    pub line: u32,
    pub kind: ErrorKind,
}

impl SyntaxError {
    /// True for an error in a `RCPT TO`: that recipient is undeliverable, the mail goes
    /// on, and the spool file is not bad for it.
    pub fn is_recipient_error(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::InvalidAddress("RCPT TO", _)
                | ErrorKind::Utf8AddressNotAllowed("RCPT TO", _)
                | ErrorKind::AngleBracketsRequired("RCPT TO")
                | ErrorKind::ParametersNotSupported("RCPT TO")
                | ErrorKind::PathTooLong("RCPT TO")
                | ErrorKind::LocalPartTooLong("RCPT TO")
                | ErrorKind::DomainTooLong("RCPT TO")
                | ErrorKind::ExpectedSyntax("RCPT TO:<path>")
                | ErrorKind::NullRecipient
        )
    }

    /// True when the error counts toward `JESSyntaxErrLimit`. Bad recipients do not (the
    /// recipient becomes undeliverable instead); neither do size rejections (too big, too
    /// many recipients).
    pub fn counts(&self) -> bool {
        !self.is_recipient_error()
            && !matches!(
                self.kind,
                ErrorKind::MailTooBig { .. }
                    | ErrorKind::TooManyRecipients { .. }
                    | ErrorKind::LimitReached(_)
            )
    }

    /// The reply code and enhanced status, e.g. `(501, "5.5.4")`.
    pub fn code(&self) -> (u16, &'static str) {
        use ErrorKind::*;
        match &self.kind {
            UnknownCommand(_) => (500, "5.5.1"),
            CommandNotSupported(_) => (502, "5.5.1"),
            CommandTooLong(_) => (500, "5.5.2"),
            ControlCharacter(_) | NotText => (501, "5.5.2"),
            MissingDomain(_) | TooManyArgs(_) | InvalidDomain(..) | UnexpectedArgs(_)
            | ExpectedSyntax(_) => (501, "5.5.4"),
            AngleBracketsRequired(_) => (501, "5.5.4"),
            HeloRequired(_) | StartTlsAfterHelo | StartTlsInMail | NestedMail | RcptWithoutMail
            | DataWithoutMail | DataWithoutRcpt | IncompleteMail => (503, "5.5.1"),
            ParametersNotSupported(_) => (555, "5.5.4"),
            InvalidAddress(..) | NullRecipient => (501, "5.1.3"),
            Utf8AddressNotAllowed(..) => (553, "5.6.7"),
            PathTooLong(_) | LocalPartTooLong(_) | DomainTooLong(_) => (501, "5.5.4"),
            TooManyRecipients { .. } => (552, "5.5.3"),
            DataLineTooLong(_) | BareCr | MissingEndOfData => (554, "5.6.0"),
            MailTooBig { .. } => (552, "5.3.4"),
            LimitReached(_) => (554, "5.5.0"),
        }
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        let (code, enhanced) = self.code();
        write!(f, "{code} {enhanced} ")?;
        match &self.kind {
            MailTooBig { size, limit_kb } => {
                return write!(
                    f,
                    "Mail size {size} bytes exceeds JESMsgSize {limit_kb} (thousands of bytes)"
                );
            }
            LimitReached(limit) => {
                return write!(
                    f,
                    "JESSyntaxErrLimit {limit} exceeded. Rest of spool file not processed"
                );
            }
            TooManyRecipients { count, limit } => {
                return write!(
                    f,
                    "Too many recipients. {count} RCPT TO in this mail, at most {limit}. Mail not sent"
                );
            }
            _ => {}
        }
        write!(f, "JES Syntax error. ")?;
        match &self.kind {
            UnknownCommand(verb) => write!(f, "Unrecognized command '{verb}'"),
            CommandNotSupported(verb) => write!(f, "Command '{verb}' not supported"),
            CommandTooLong(len) => write!(f, "Command line of {len} characters exceeds 510"),
            ControlCharacter(byte) => write!(f, "Control character X'{byte:02X}' in command"),
            NotText => write!(f, "Command is not ASCII text"),
            MissingDomain(verb) => write!(f, "Missing domain after '{verb}' command"),
            TooManyArgs(verb) => write!(f, "Too many args after '{verb}' command"),
            InvalidDomain(verb, domain) => {
                write!(f, "Invalid domain '{domain}' after '{verb}' command")
            }
            UnexpectedArgs(verb) => write!(f, "Unexpected args after '{verb}' command"),
            ExpectedSyntax(syntax) => write!(f, "Syntax is '{syntax}'"),
            HeloRequired(verb) => write!(f, "HELO or EHLO required before '{verb}' command"),
            StartTlsAfterHelo => write!(f, "'STARTTLS' requires EHLO, not HELO"),
            StartTlsInMail => write!(f, "'STARTTLS' not allowed within a mail transaction"),
            NestedMail => write!(f, "Nested 'MAIL FROM' command; previous mail has no DATA"),
            RcptWithoutMail => write!(f, "'RCPT TO' command without 'MAIL FROM'"),
            DataWithoutMail => write!(f, "'DATA' command without 'MAIL FROM'"),
            DataWithoutRcpt => write!(f, "'DATA' command without 'RCPT TO'"),
            IncompleteMail => write!(f, "Mail transaction ended without 'DATA'"),
            AngleBracketsRequired(verb) => {
                write!(f, "Angle brackets required in '{verb}' command")
            }
            ParametersNotSupported(verb) => {
                write!(f, "Parameters after the path in '{verb}' not supported")
            }
            InvalidAddress(verb, path) => write!(f, "Invalid address '<{path}>' in '{verb}'"),
            Utf8AddressNotAllowed(verb, path) => write!(
                f,
                "Non-ASCII address '<{path}>' in '{verb}' not permitted (Options SmtpUtf8 is No)"
            ),
            PathTooLong(verb) => write!(f, "Path in '{verb}' exceeds 255 characters"),
            LocalPartTooLong(verb) => {
                write!(f, "User name in '{verb}' exceeds 64 characters")
            }
            DomainTooLong(verb) => write!(f, "Domain in '{verb}' exceeds 255 characters"),
            NullRecipient => write!(f, "Null path '<>' not allowed in 'RCPT TO'"),
            DataLineTooLong(len) => write!(f, "Data line of {len} characters exceeds 998"),
            BareCr => write!(f, "Bare CR (X'0D' not followed by LF) in data line"),
            MissingEndOfData => write!(f, "End of file within 'DATA': no '.' line"),
            MailTooBig { .. } | LimitReached(_) | TooManyRecipients { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ibm_helo_text() {
        let e = SyntaxError {
            line: 1,
            kind: ErrorKind::TooManyArgs("HELO"),
        };
        assert_eq!(
            e.to_string(),
            "501 5.5.4 JES Syntax error. Too many args after 'HELO' command"
        );
        assert!(e.counts());
        let r = SyntaxError {
            line: 3,
            kind: ErrorKind::InvalidAddress("RCPT TO", "x".into()),
        };
        assert!(!r.counts());
    }
}
