//! Server replies: `Reply` values and an incremental parser.
//!
//! The byte-level parsing is `smtp-proto`'s `ResponseReceiver` (Stalwart's, used by
//! mail-send and the Stalwart server); this module wraps it so that callers get typed
//! values, keep the raw bytes of each reply (the EHLO capability parser wants them), and
//! can tell whether bytes were left over after a reply (the STARTTLS injection check).

use std::fmt;

use smtp_proto::response::parser::ResponseReceiver;

/// The largest reply we accept, in bytes, all lines included. Longer replies are a
/// protocol error (a hostile or broken server must not make us buffer without bound).
pub const MAX_REPLY_BYTES: usize = smtp_proto::response::parser::MAX_RESPONSE_LENGTH;

/// The class of a reply code (RFC 5321 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// 2xx: the command succeeded.
    PositiveCompletion,
    /// 3xx: go on (354 after DATA).
    PositiveIntermediate,
    /// 4xx: try again later.
    TransientNegative,
    /// 5xx: do not try again.
    PermanentNegative,
}

/// An RFC 3463 enhanced status code such as `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedStatus {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code; always within 200..=599 (others are rejected).
    pub code: u16,
    /// The enhanced status code, when the server sent one.
    pub enhanced: Option<EnhancedStatus>,
    /// The text of every line, without codes, joined with `\n`. Only printable
    /// characters survive (see [`Reply::text`]).
    text: String,
}

impl Reply {
    /// Builds a reply from its parts; control characters in `text` (other than the
    /// `\n` line separator) are replaced by spaces.
    pub fn new(code: u16, enhanced: Option<EnhancedStatus>, text: &str) -> Self {
        Self::from_string(code, enhanced, text.to_owned())
    }

    /// Like [`Reply::new`], taking the text without copying it when it is already clean.
    pub fn from_string(code: u16, enhanced: Option<EnhancedStatus>, text: String) -> Self {
        let clean = !text
            .chars()
            .zip(text.chars().skip(1).chain(std::iter::once('\n')))
            .any(|(c, next)| {
                (c.is_control() && c != '\n') || (c.is_whitespace() && c != '\n' && next == '\n')
            });
        Self {
            code,
            enhanced,
            text: if clean { text } else { sanitize(&text) },
        }
    }

    /// The class of this reply.
    pub fn severity(&self) -> Severity {
        match self.code / 100 {
            2 => Severity::PositiveCompletion,
            3 => Severity::PositiveIntermediate,
            4 => Severity::TransientNegative,
            _ => Severity::PermanentNegative,
        }
    }

    /// True for 2xx.
    pub fn is_positive(&self) -> bool {
        self.severity() == Severity::PositiveCompletion
    }

    /// The reply text, lines separated by `\n`, free of CR and other control characters,
    /// so it can be logged or put into a generated header after folding.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The lines of the reply text.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.split('\n')
    }
}

/// `550 5.1.1 first line / second line`: one line, safe for logs and headers.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(enhanced) = self.enhanced {
            write!(f, " {enhanced}")?;
        }
        for (i, line) in self.lines().enumerate() {
            if i == 0 {
                if !line.is_empty() {
                    write!(f, " {line}")?;
                }
            } else {
                write!(f, " / {line}")?;
            }
        }
        Ok(())
    }
}

fn sanitize(text: &str) -> String {
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| {
            line.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect();
    lines.join("\n")
}

/// Why the bytes from the server are not a valid reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The reply is longer than [`MAX_REPLY_BYTES`].
    TooLong,
    /// The reply does not follow RFC 5321 §4.2 (for example, no three-digit code).
    Malformed(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => write!(f, "reply longer than {MAX_REPLY_BYTES} bytes"),
            Self::Malformed(why) => write!(f, "malformed reply: {why}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Parses replies from a byte stream, one at a time, across reads.
///
/// Feed each chunk read from the socket to [`ReplyParser::parse`]; it returns a reply
/// once one is complete, with the number of bytes of the chunk it used. Bytes after that
/// belong to the next reply (pipelining) and must be fed again.
#[derive(Default)]
pub struct ReplyParser {
    receiver: ResponseReceiver,
    raw: Vec<u8>,
    /// `raw` holds a complete reply; it is cleared when the next one starts.
    complete: bool,
}

impl ReplyParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes bytes of `chunk` and returns `Ok(Some((reply, used)))` when a reply is
    /// complete, `Ok(None)` when every byte was used and more are needed.
    ///
    /// # Errors
    /// [`WireError`] when the bytes cannot be a reply; the parser is reset and the
    /// connection should be dropped, since the stream can no longer be trusted.
    pub fn parse(&mut self, chunk: &[u8]) -> Result<Option<(Reply, usize)>, WireError> {
        if self.complete {
            self.raw.clear();
            self.complete = false;
        }
        let mut iter = chunk.iter();
        let result = self.receiver.parse(&mut iter);
        let used = chunk.len() - iter.as_slice().len();
        if self.raw.len() < MAX_REPLY_BYTES * 2 {
            self.raw
                .extend_from_slice(chunk.get(..used).unwrap_or_default());
        }
        match result {
            Ok(response) => {
                self.receiver.reset();
                self.complete = true;
                if !(200..=599).contains(&response.code) {
                    self.raw.clear();
                    return Err(WireError::Malformed(format!(
                        "reply code {} is not 2xx to 5xx",
                        response.code
                    )));
                }
                let [class, subject, detail] = response.esc;
                let enhanced = (class != 0).then_some(EnhancedStatus {
                    class,
                    subject: subject.into(),
                    detail: detail.into(),
                });
                Ok(Some((
                    Reply::from_string(response.code, enhanced, response.message),
                    used,
                )))
            }
            Err(smtp_proto::Error::NeedsMoreData { .. }) => Ok(None),
            Err(smtp_proto::Error::ResponseTooLong) => {
                self.reset();
                Err(WireError::TooLong)
            }
            Err(other) => {
                self.reset();
                Err(WireError::Malformed(format!("{other:?}")))
            }
        }
    }

    /// The raw bytes of the reply returned by the last successful [`parse`](Self::parse).
    /// Used to hand an EHLO reply to [`Capabilities::parse`](crate::Capabilities::parse).
    pub fn last_raw(&self) -> &[u8] {
        if self.complete { &self.raw } else { &[] }
    }

    /// Forgets any partial reply (after a connection is dropped or upgraded to TLS).
    pub fn reset(&mut self) {
        self.receiver.reset();
        self.raw.clear();
        self.complete = false;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn parse_all(bytes: &[u8]) -> Vec<Reply> {
        let mut parser = ReplyParser::new();
        let mut rest = bytes;
        let mut out = Vec::new();
        while let Some((reply, used)) = parser.parse(rest).unwrap() {
            out.push(reply);
            rest = &rest[used..];
        }
        out
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let replies = parse_all(b"550 5.1.1 No such user\r\n");
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].code, 550);
        assert_eq!(replies[0].enhanced.unwrap().to_string(), "5.1.1");
        assert_eq!(replies[0].text(), "No such user");
        assert_eq!(replies[0].severity(), Severity::PermanentNegative);
        assert_eq!(replies[0].to_string(), "550 5.1.1 No such user");
    }

    #[test]
    fn multi_line_and_pipelined_replies() {
        let replies =
            parse_all(b"250-first\r\n250-second\r\n250 third\r\n451 4.3.0 later\r\n354 go\r\n");
        assert_eq!(replies.len(), 3);
        assert_eq!(replies[0].text(), "first\nsecond\nthird");
        assert_eq!(replies[1].code, 451);
        assert_eq!(replies[2].severity(), Severity::PositiveIntermediate);
    }

    #[test]
    fn split_across_reads() {
        let mut parser = ReplyParser::new();
        assert!(parser.parse(b"25").unwrap().is_none());
        assert!(parser.parse(b"0 2.0.0 o").unwrap().is_none());
        let (reply, used) = parser.parse(b"k\r\nextra").unwrap().unwrap();
        assert_eq!(used, 3);
        assert_eq!(reply.to_string(), "250 2.0.0 ok");
    }

    #[test]
    fn raw_bytes_of_the_last_reply() {
        let mut parser = ReplyParser::new();
        let (_, used) = parser.parse(b"220 hi\r\n250-a\r\n").unwrap().unwrap();
        assert_eq!(parser.last_raw(), b"220 hi\r\n");
        assert!(
            parser
                .parse(b"250-a\r\n"[..].get(..).unwrap())
                .unwrap()
                .is_none()
        );
        assert_eq!(used, 8);
        let (_, _) = parser.parse(b"250 SIZE 10\r\n").unwrap().unwrap();
        assert_eq!(parser.last_raw(), b"250-a\r\n250 SIZE 10\r\n");
        assert_eq!(crate::Capabilities::parse(parser.last_raw()).size_limit, 10);
    }

    #[test]
    fn bare_final_line_from_smtp_sink() {
        let replies = parse_all(b"250-host\r\n250-PIPELINING\r\n250 \r\n");
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].code, 250);
    }

    #[test]
    fn control_characters_are_neutralised() {
        let replies = parse_all(b"550 bad\x1b[31m\rSubject: x\r\n");
        assert!(!replies[0].text().contains('\r'));
        assert!(!replies[0].text().contains('\x1b'));
    }

    #[test]
    fn garbage_and_out_of_range_codes_are_errors() {
        assert!(ReplyParser::new().parse(b"hello\r\n").is_err());
        assert!(ReplyParser::new().parse(b"999 what\r\n").is_err());
        let long = [b"250-".as_slice(), &[b'a'; 5000], b"\r\n"].concat();
        assert!(ReplyParser::new().parse(&long).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..8)) {
            let mut parser = ReplyParser::new();
            for chunk in chunks {
                let mut rest = chunk.as_slice();
                while let Ok(Some((_reply, used))) = parser.parse(rest) {
                    let _ = crate::Capabilities::parse(parser.last_raw());
                    rest = rest.get(used..).unwrap_or_default();
                    if rest.is_empty() { break; }
                }
            }
        }
    }
}
