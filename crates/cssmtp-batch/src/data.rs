//! The text of a mail (between `DATA` and `.`): what the parser learns about it, and how
//! it is rendered for the wire.
//!
//! The parser does not keep the text: it records where it is in the spool file
//! ([`DataSpan`]), its size on the wire and the few header facts needed to add CSSMTP's
//! headers. At send time the span is read again and passed through [`render_lines`],
//! which applies exactly the record rules the parser checked.
//!
//! The text is sent as it is in the spool file: lines are already dot-stuffed there
//! (CSSMTP's rule), so no dot is added or removed; only line ends are made CRLF and
//! trailing blanks removed.

use crate::record::trim;

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
    /// Size of the text on the wire: every line trimmed (and truncated to 998 when
    /// `DataLineTrunc` is on) plus CRLF. Added headers are not included.
    pub wire_size: u64,
    /// A `Date:` header field is present.
    pub has_date: bool,
    /// A `Message-ID:` header field is present.
    pub has_message_id: bool,
    /// The text has no blank line between header and body: one must be inserted at this
    /// offset (the first line that is not a header field, possibly `start` when the text
    /// has no header at all).
    pub missing_separator_at: Option<u64>,
    /// Offset where the header block ends (its blank line, the missing separator, or
    /// `end` when the text is all header).
    pub header_end: u64,
    /// An `Auto-Submitted:` field says the mail is automatic (any value but `no`).
    pub auto_submitted: bool,
}

/// Tracks the header section while the parser walks through a mail's text.
#[derive(Debug, Clone)]
pub(crate) struct HeaderScan {
    in_header: bool,
    seen_field: bool,
    pub(crate) has_date: bool,
    pub(crate) has_message_id: bool,
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
                self.has_message_id |= name.eq_ignore_ascii_case(b"message-id");
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

/// Wire form of one record of mail text: trimmed, optionally cut to 998 characters,
/// followed by CRLF. Returns the number of bytes appended.
pub fn render_line(raw: &[u8], truncate: bool, out: &mut Vec<u8>) -> usize {
    let mut text = trim(raw);
    if truncate && text.len() > MAX_DATA_LINE {
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
/// are within 998 characters (or `truncate` is set).
pub fn render_lines(chunk: &[u8], truncate: bool, at_end: bool, out: &mut Vec<u8>) -> usize {
    let mut used = 0;
    let mut rest = chunk;
    while let Some(lf) = memchr::memchr(b'\n', rest) {
        render_line(rest.get(..lf).unwrap_or_default(), truncate, out);
        used += lf + 1;
        rest = rest.get(lf + 1..).unwrap_or_default();
    }
    if at_end && !rest.is_empty() {
        render_line(rest, truncate, out);
        used += rest.len();
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lf_and_crlf_alike() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        assert_eq!(render_lines(b"x  \n..y\nz", false, false, &mut a), 8);
        render_lines(b"x\r\n..y\r\n", false, false, &mut b);
        assert_eq!(a, b"x\r\n..y\r\n");
        assert_eq!(a, b);
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
        assert_eq!(scan.missing_separator_at, None);
    }
}
