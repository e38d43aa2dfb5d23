//! The text of a mail (between `DATA` and `.`): what the parser learns about it, and how
//! it is rendered for the wire.
//!
//! The parser does not keep the text: it records where it is in the spool file
//! ([`DataSpan`]), its size on the wire and the few header facts needed to add CSSMTP's
//! headers. At send time the span is read again and passed through [`render_lines`],
//! which applies exactly the record rules the parser checked.
//!
//! The text is sent as it is in the spool file: lines are already dot-stuffed there
//! (CSSMTP's rule), so no dot is added or removed; only line ends are made CRLF, and
//! trailing blanks are removed where the records are padded ([`DataSpan::padded`], see
//! [`crate::record::BlankTrnc`]); in a Linux text file they are content and kept.
//!
//! The file may change between parsing and sending (a producer can keep it open), so the
//! renderer used at send time, [`render_lines_checked`], checks every line again (never a
//! lone "." that would end the mail early, never a bare CR, never longer than 998) and
//! feeds it to a [`TextHasher`]; the parser fed the same lines to one and kept the
//! result in [`DataSpan::digest`]. A text whose digest differs is not what was parsed.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use crate::record::{data_text, trim_blanks};

/// Longest `Message-ID:` value kept in [`DataSpan::message_id`], in bytes.
pub const MAX_MESSAGE_ID: usize = 256;

/// Longest data line allowed by RFC 5322 §2.1.1 and CSSMTP, in characters without CRLF.
pub const MAX_DATA_LINE: usize = 998;

/// Where a mail's text lies in its spool file, and what it looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSpan {
    /// Offset of the first line after `DATA`.
    pub start: u64,
    /// Offset of the terminating `.` line (exclusive end of the text).
    pub end: u64,
    /// Number of text lines.
    pub lines: u32,
    /// Size of the text on the wire: every line in wire form ([`data_text`]: trimmed when
    /// `padded`, and truncated to 998 when `DataLineTrunc` is on) plus CRLF. Added
    /// headers are not included.
    pub wire_size: u64,
    /// Lines whose wire form starts with "." (dot-stuffed): the receiver removes that
    /// first dot, so the text it stores is this many bytes shorter than `wire_size`.
    pub dot_lines: u64,
    /// Some line holds a byte ≥ 0x80 (8-bit text: `BODY=8BITMIME`, RFC 6152).
    pub eight_bit: bool,
    /// A `Date:` header field is present.
    pub has_date: bool,
    /// A `Message-ID:` header field is present.
    pub has_message_id: bool,
    /// The first `Message-ID:` field's value as the text has it (trimmed, at most
    /// [`MAX_MESSAGE_ID`] bytes, invalid UTF-8 replaced), for accounting and `trace`.
    pub message_id: Option<Box<str>>,
    /// The text has no blank line between header and body: one must be inserted at this
    /// offset (the first line that is not a header field, possibly `start` when the text
    /// has no header at all).
    pub missing_separator_at: Option<u64>,
    /// Offset where the header block ends (its blank line, the missing separator, or
    /// `end` when the text is all header).
    pub header_end: u64,
    /// An `Auto-Submitted:` field says the mail is automatic (any value but `no`).
    pub auto_submitted: bool,
    /// What the parser saw of the whole text, to check it when it is read again.
    pub digest: TextDigest,
    /// The file's records are padded (fixed-length): trailing blanks of the text's lines
    /// are removed when it is rendered. Otherwise they are content and kept. The parser
    /// decided it once for the whole file ([`crate::record::BlankTrnc`]); the renderer
    /// must follow it for the digest to match.
    pub padded: bool,
}

/// How the lines of a mail text are rendered for the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataRules {
    /// Remove trailing blanks (padded records: [`DataSpan::padded`]).
    pub padded: bool,
    /// `Options DataLineTrunc`: cut lines to 998 characters.
    pub truncate: bool,
}

impl DataSpan {
    /// Size of the text as the receiver stores it: the wire form without the dots of
    /// dot-stuffing (RFC 5321 §4.5.2). Added headers are not included.
    pub fn message_size(&self) -> u64 {
        self.wire_size.saturating_sub(self.dot_lines)
    }
}

/// The digest of a mail's text as the parser saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextDigest {
    /// The end of the text it covers (the span's `end` as parsed): a span read again
    /// with another end (the header only) is not compared with it.
    pub end: u64,
    /// Number of text lines.
    pub lines: u32,
    /// [`TextHasher`] value of the text's lines in wire form.
    pub value: u64,
}

/// A keyed hash of a text's lines in wire form (without their CRLF), for telling whether
/// a text read again is the one parsed.
///
/// SipHash (std's `DefaultHasher`) with a key drawn at random once per process: a
/// producer who never sees the key cannot write a different text with the same digest,
/// as one could against a CRC. The key is shared by every hasher of the process, so the
/// parser and the sender agree; digests are never stored outside the process.
///
/// Lines are gathered (each after its length, so that the stream says where each ends)
/// and fed to SipHash a block at a time: fed line by line, its cost per call was most of
/// the cost of hashing. SipHash hashes a stream, so the value does not depend on how it is
/// cut.
pub struct TextHasher {
    inner: std::hash::DefaultHasher,
    /// Lines not fed to `inner` yet, length-prefixed.
    pending: Vec<u8>,
    lines: u32,
}

/// What [`TextHasher`] gathers before feeding SipHash.
const HASH_BLOCK: usize = 4096;

impl Default for TextHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl TextHasher {
    pub fn new() -> Self {
        static KEY: OnceLock<std::hash::RandomState> = OnceLock::new();
        Self {
            inner: KEY.get_or_init(std::hash::RandomState::new).build_hasher(),
            pending: Vec::new(),
            lines: 0,
        }
    }

    /// Adds one line in wire form, without its CRLF.
    pub fn line(&mut self, wire: &[u8]) {
        if self.pending.capacity() == 0 {
            self.pending.reserve(HASH_BLOCK + 2 * MAX_DATA_LINE);
        }
        self.pending
            .extend_from_slice(&(wire.len() as u64).to_le_bytes());
        if wire.len() > MAX_DATA_LINE {
            // A long line (DataLineTrunc, or one being refused) goes on as it is.
            self.inner.write(&self.pending);
            self.pending.clear();
            self.inner.write(wire);
        } else {
            self.pending.extend_from_slice(wire);
            if self.pending.len() >= HASH_BLOCK {
                self.inner.write(&self.pending);
                self.pending.clear();
            }
        }
        self.lines = self.lines.saturating_add(1);
    }

    /// Lines added so far.
    pub fn lines(&self) -> u32 {
        self.lines
    }

    /// The digest of the lines added so far.
    pub fn value(&self) -> u64 {
        let mut inner = self.inner.clone();
        inner.write(&self.pending);
        inner.finish()
    }
}

/// Why a line read again cannot go on the wire as mail text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsafeLine {
    /// A lone "." would end the mail text early (and what follows would be commands).
    EndOfData,
    /// A CR that does not end the line.
    BareCr,
    /// Longer than 998 characters (without `DataLineTrunc`).
    TooLong(usize),
}

impl std::fmt::Display for UnsafeLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EndOfData => f.write_str("a line \".\" that would end the mail early"),
            Self::BareCr => f.write_str("a bare CR"),
            Self::TooLong(n) => write!(f, "a line of {n} characters (more than {MAX_DATA_LINE})"),
        }
    }
}

/// Tracks the header section while the parser walks through a mail's text.
#[derive(Debug, Clone)]
pub(crate) struct HeaderScan {
    in_header: bool,
    seen_field: bool,
    pub(crate) has_date: bool,
    pub(crate) has_message_id: bool,
    pub(crate) message_id: Option<Box<str>>,
    pub(crate) missing_separator_at: Option<u64>,
    pub(crate) header_end: Option<u64>,
    pub(crate) auto_submitted: bool,
}

impl HeaderScan {
    pub(crate) fn new() -> Self {
        Self {
            in_header: true,
            seen_field: false,
            has_date: false,
            has_message_id: false,
            message_id: None,
            missing_separator_at: None,
            header_end: None,
            auto_submitted: false,
        }
    }

    /// Looks at one (trimmed) text line that starts at `offset`.
    pub(crate) fn line(&mut self, text: &[u8], offset: u64) {
        if !self.in_header {
            return;
        }
        if text.is_empty() {
            self.in_header = false;
            self.header_end = Some(offset);
            return;
        }
        if self.seen_field && matches!(text.first(), Some(b' ' | b'\t')) {
            return; // folded continuation of the previous field
        }
        match field_name(text) {
            Some(name) => {
                self.seen_field = true;
                self.has_date |= name.eq_ignore_ascii_case(b"date");
                if name.eq_ignore_ascii_case(b"message-id") {
                    self.has_message_id = true;
                    if self.message_id.is_none() {
                        let value = text.get(name.len() + 1..).unwrap_or_default().trim_ascii();
                        let value = value.get(..MAX_MESSAGE_ID).unwrap_or(value);
                        if !value.is_empty() {
                            self.message_id = Some(String::from_utf8_lossy(value).into());
                        }
                    }
                }
                if name.eq_ignore_ascii_case(b"auto-submitted") {
                    let value = text.get(name.len() + 1..).unwrap_or_default();
                    self.auto_submitted |= !value.trim_ascii().eq_ignore_ascii_case(b"no");
                }
            }
            None => {
                self.in_header = false;
                self.missing_separator_at = Some(offset);
                self.header_end = Some(offset);
            }
        }
    }
}

/// The field name of a header line (`Name:` with printable ASCII, no space, RFC 5322
/// §2.2), or `None` when the line is not a header field.
fn field_name(text: &[u8]) -> Option<&[u8]> {
    let colon = text.iter().position(|&b| b == b':')?;
    let name = text.get(..colon)?;
    (!name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))).then_some(name)
}

/// Wire form of one record of mail text ([`data_text`]: without its CR, trimmed when
/// padded), optionally cut to 998 characters, followed by CRLF. Returns the number of
/// bytes appended.
pub fn render_line(raw: &[u8], rules: DataRules, out: &mut Vec<u8>) -> usize {
    let mut text = data_text(raw, rules.padded);
    if rules.truncate && text.len() > MAX_DATA_LINE {
        text = text.get(..MAX_DATA_LINE).unwrap_or(text);
    }
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
    text.len() + 2
}

/// Renders every complete line (ending in LF) of `chunk` into `out` and returns how many
/// bytes of `chunk` were used; an incomplete last line is left for the next call. When
/// `at_end` is set, a final line without LF is rendered too.
///
/// The chunk must come from a span the parser accepted: lines then hold no bare CR and
/// are within 998 characters (or `rules.truncate` is set).
pub fn render_lines(chunk: &[u8], rules: DataRules, at_end: bool, out: &mut Vec<u8>) -> usize {
    let mut used = 0;
    let mut rest = chunk;
    while let Some(lf) = memchr::memchr(b'\n', rest) {
        render_line(rest.get(..lf).unwrap_or_default(), rules, out);
        used += lf + 1;
        rest = rest.get(lf + 1..).unwrap_or_default();
    }
    if at_end && !rest.is_empty() {
        render_line(rest, rules, out);
        used += rest.len();
    }
    used
}

/// Like [`render_lines`], for text that may have changed since it was parsed: every line
/// is checked ([`UnsafeLine`]) before it is rendered, and added to `hasher`. On an unsafe
/// line, nothing of it is rendered and the error comes with the number of the line
/// within the text (1-based, as counted by `hasher`).
///
/// # Errors
/// The first unsafe line.
pub fn render_lines_checked(
    chunk: &[u8],
    rules: DataRules,
    at_end: bool,
    out: &mut Vec<u8>,
    hasher: &mut TextHasher,
) -> Result<usize, (u32, UnsafeLine)> {
    let mut used = 0;
    let mut rest = chunk;
    loop {
        let (raw, consumed) = match memchr::memchr(b'\n', rest) {
            Some(lf) => (rest.get(..lf).unwrap_or_default(), lf + 1),
            None if at_end && !rest.is_empty() => (rest, rest.len()),
            None => return Ok(used),
        };
        let mut text = data_text(raw, rules.padded);
        if rules.truncate && text.len() > MAX_DATA_LINE {
            text = text.get(..MAX_DATA_LINE).unwrap_or(text);
        }
        // A line that is "." once trimmed is refused in either mode: the parser ends the
        // text there (the `.` record is a command record, always trimmed).
        let problem = if trim_blanks(text) == b"." {
            Some(UnsafeLine::EndOfData)
        } else if memchr::memchr(b'\r', text).is_some() {
            Some(UnsafeLine::BareCr)
        } else if text.len() > MAX_DATA_LINE {
            Some(UnsafeLine::TooLong(text.len()))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err((hasher.lines().saturating_add(1), problem));
        }
        hasher.line(text);
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
        used += consumed;
        rest = rest.get(consumed..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: DataRules = DataRules {
        padded: false,
        truncate: false,
    };
    const PADDED: DataRules = DataRules {
        padded: true,
        truncate: false,
    };
    const TRUNCATE: DataRules = DataRules {
        padded: false,
        truncate: true,
    };

    #[test]
    fn checked_rendering_refuses_what_would_break_the_stream() {
        let mut out = Vec::new();
        let mut h = TextHasher::new();
        assert_eq!(
            render_lines_checked(b"a\n..b\n", TEXT, false, &mut out, &mut h),
            Ok(6)
        );
        assert_eq!(out, b"a\r\n..b\r\n");
        for (text, expected) in [
            (&b"x\n.\nMAIL FROM:<e@v>\n"[..], (2, UnsafeLine::EndOfData)),
            (b"x\n.  \r\n", (2, UnsafeLine::EndOfData)),
            (b"a\rb\n", (1, UnsafeLine::BareCr)),
        ] {
            for rules in [TEXT, PADDED] {
                let mut out = Vec::new();
                let got = render_lines_checked(text, rules, true, &mut out, &mut TextHasher::new());
                assert_eq!(got, Err(expected));
                assert!(!out.windows(3).any(|w| w == b".\r\n"), "{out:?}");
            }
        }
        let long = vec![b'a'; 1000];
        let got = render_lines_checked(&long, TEXT, true, &mut Vec::new(), &mut TextHasher::new());
        assert_eq!(got, Err((1, UnsafeLine::TooLong(1000))));
        let got = render_lines_checked(
            &long,
            TRUNCATE,
            true,
            &mut Vec::new(),
            &mut TextHasher::new(),
        );
        assert_eq!(got, Ok(1000));
    }

    #[test]
    fn the_digest_is_the_keyed_hash_of_the_length_prefixed_lines_however_gathered() {
        // Lines of every size, around the block and the long-line limits, so that blocks
        // are cut at every kind of place.
        let lines: Vec<Vec<u8>> = (0..3000usize)
            .map(|i| vec![b'a' + (i % 26) as u8; (i * 37) % 1200])
            .collect();
        let mut h = TextHasher::new();
        let mut reference = h.inner.clone();
        for (n, line) in lines.iter().enumerate() {
            h.line(line);
            reference.write(&(line.len() as u64).to_le_bytes());
            reference.write(line);
            if n % 97 == 0 {
                // Taking the value on the way changes nothing.
                assert_eq!(h.value(), reference.finish());
            }
        }
        assert_eq!(h.value(), reference.finish());
        assert_eq!(h.lines(), 3000);
    }

    #[test]
    fn the_digest_tells_texts_apart() {
        let digest = |rules: DataRules, chunks: &[&[u8]]| {
            let mut h = TextHasher::new();
            let mut out = Vec::new();
            for (i, c) in chunks.iter().enumerate() {
                render_lines_checked(c, rules, i + 1 == chunks.len(), &mut out, &mut h).unwrap();
            }
            (h.lines(), h.value())
        };
        let padding = [&b"ab\n"[..], b"cd  \r\n"];
        assert_eq!(digest(PADDED, &[b"ab\ncd\n"]), digest(PADDED, &padding));
        // In a text file, trailing blanks are content: another text.
        assert_ne!(digest(TEXT, &[b"ab\ncd\n"]), digest(TEXT, &padding));
        assert_eq!(digest(TEXT, &[b"ab\ncd  \n"]), digest(TEXT, &padding));
        assert_ne!(digest(TEXT, &[b"ab\ncd\n"]), digest(TEXT, &[b"ab\nce\n"]));
        assert_ne!(digest(TEXT, &[b"abc\nd\n"]), digest(TEXT, &[b"ab\ncd\n"]));
    }

    #[test]
    fn renders_lf_and_crlf_alike() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        assert_eq!(render_lines(b"x  \n..y\nz", PADDED, false, &mut a), 8);
        render_lines(b"x\r\n..y\r\n", PADDED, false, &mut b);
        assert_eq!(a, b"x\r\n..y\r\n");
        assert_eq!(a, b);
    }

    #[test]
    fn trailing_blanks_are_kept_unless_padded() {
        let text = b"-- \r\nsoft \nbreak\n   \n";
        let mut kept = Vec::new();
        render_lines(text, TEXT, true, &mut kept);
        assert_eq!(kept, b"-- \r\nsoft \r\nbreak\r\n   \r\n");
        let mut stripped = Vec::new();
        render_lines(text, PADDED, true, &mut stripped);
        // A line of blanks only stays a line (empty).
        assert_eq!(stripped, b"--\r\nsoft\r\nbreak\r\n\r\n");
    }

    #[test]
    fn header_scan() {
        let mut scan = HeaderScan::new();
        scan.line(b"Subject: hi", 0);
        scan.line(b"  folded", 12);
        scan.line(b"DATE: today", 20);
        scan.line(b"body without blank line", 40);
        assert!(scan.has_date && !scan.has_message_id);
        assert_eq!(scan.missing_separator_at, Some(40));

        let mut scan = HeaderScan::new();
        scan.line(b"no header here", 7);
        assert_eq!(scan.missing_separator_at, Some(7));

        let mut scan = HeaderScan::new();
        scan.line(b"Message-ID: <x@y>", 0);
        scan.line(b"", 10);
        scan.line(b"Date: in the body", 11);
        assert!(scan.has_message_id && !scan.has_date);
        assert_eq!(scan.message_id.as_deref(), Some("<x@y>"));
        assert_eq!(scan.missing_separator_at, None);

        let mut scan = HeaderScan::new();
        scan.line(b"message-id:   <first@y>  ", 0);
        scan.line(b"Message-ID: <second@y>", 30);
        assert_eq!(scan.message_id.as_deref(), Some("<first@y>"));
    }
}
