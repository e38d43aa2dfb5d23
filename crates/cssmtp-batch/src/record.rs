//! Records: one physical line of a spool file, and how it is trimmed.
//!
//! Linux programs end lines with LF; files from other systems with CRLF. Both are read
//! the same way. Trailing blanks are removed from every *command* record, as CSSMTP does.
//! In mail text they are removed only where the record format pads (see
//! [`BlankTrnc`]): CSSMTP's records are blank-padded fixed-length records, where they
//! are padding, while in a Linux text file (variable-length lines) they are content (the
//! `-- ` signature separator, the soft line breaks of `format=flowed`). A CR that is not
//! the last byte before the LF is a *bare CR*: it is never allowed to become a line break
//! on the wire.

/// What becomes of the trailing blanks of mail text lines (`Options BlankTrnc`).
///
/// Command records (`HELO`, `MAIL FROM`, `.` …) are always trimmed, whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BlankTrnc {
    /// Removed when the file is made of fixed-length records, i.e. when its lines all
    /// have the same length ([`FixedLength`]); kept otherwise. A variable-length file
    /// never qualifies: its `.` and `DATA` lines differ in length.
    #[default]
    Auto,
    /// Always removed (every line is taken for a padded record).
    Yes,
    /// Never removed.
    No,
}

impl BlankTrnc {
    /// Whether data lines lose their trailing blanks, `fixed_length` telling (only when
    /// it is needed) whether the file's lines all have the same length.
    pub fn strips(self, fixed_length: impl FnOnce() -> bool) -> bool {
        match self {
            Self::Auto => fixed_length(),
            Self::Yes => true,
            Self::No => false,
        }
    }
}

/// Tells whether every line of a file has the same length (fixed-length records turned
/// into text: each padded with blanks to the record length), fed the file a chunk at a
/// time. Lengths are counted without the line end (LF or CRLF); a final line without LF
/// counts. Fewer than two lines is not a fixed-length file.
#[derive(Debug, Clone, Default)]
pub struct FixedLength {
    /// Length of the first complete line.
    first: Option<u64>,
    /// Bytes of the current line so far.
    current: u64,
    /// Last byte of the current line (a CR before the LF is not counted).
    last: u8,
    lines: u64,
    uneven: bool,
}

impl FixedLength {
    /// Takes the next bytes of the file; false as soon as two lines differ (the answer is
    /// then known: the rest of the file need not be read).
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let mut rest = chunk;
        while !self.uneven {
            let Some(lf) = memchr::memchr(b'\n', rest) else {
                if let Some(&last) = rest.last() {
                    self.current += rest.len() as u64;
                    self.last = last;
                }
                break;
            };
            if let Some(&last) = rest.get(..lf).and_then(<[u8]>::last) {
                self.current += lf as u64;
                self.last = last;
            }
            self.end_line();
            rest = rest.get(lf + 1..).unwrap_or_default();
        }
        !self.uneven
    }

    fn end_line(&mut self) {
        let len = self.current - u64::from(self.current > 0 && self.last == b'\r');
        self.lines += 1;
        match self.first {
            None => self.first = Some(len),
            Some(first) if first != len => self.uneven = true,
            Some(_) => {}
        }
        self.current = 0;
        self.last = 0;
    }

    /// At the end of the file: were all its lines (at least two) of the same length?
    pub fn finish(mut self) -> bool {
        if self.current > 0 && !self.uneven {
            self.end_line();
        }
        !self.uneven && self.lines >= 2
    }
}

/// [`FixedLength`] of a whole file held in memory.
pub fn fixed_length(bytes: &[u8]) -> bool {
    let mut shape = FixedLength::default();
    shape.feed(bytes);
    shape.finish()
}

/// One physical line of a spool file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based line number, for error messages.
    pub number: u32,
    /// Byte offset of the first byte of the line in the file.
    pub offset: u64,
    /// The line's bytes without the terminating LF. May be cut short for very long lines
    /// (see [`Line::trimmed_len`]).
    pub raw: &'a [u8],
    /// Length of the whole line once trimmed (see [`trim`]), even if `raw` was cut short.
    pub trimmed_len: usize,
    /// Length of the whole line without its line end (LF, and the CR of a CRLF), trailing
    /// blanks kept (see [`strip_cr`]), even if `raw` was cut short.
    pub content_len: usize,
    /// Length of the whole line without its LF, even if `raw` was cut short.
    pub len: usize,
}

impl<'a> Line<'a> {
    /// A line whose bytes are all in `raw`.
    pub fn new(number: u32, offset: u64, raw: &'a [u8]) -> Self {
        Self {
            number,
            offset,
            raw,
            trimmed_len: trim(raw).len(),
            content_len: strip_cr(raw).len(),
            len: raw.len(),
        }
    }

    /// Offset of the line that follows this one.
    pub fn next_offset(&self) -> u64 {
        self.offset + self.len as u64 + 1
    }

    /// The record text: without a final CR and without trailing blanks.
    pub fn text(&self) -> &'a [u8] {
        trim(self.raw)
    }
}

/// Removes the CR of a CRLF line end, then trailing blanks (spaces).
pub fn trim(raw: &[u8]) -> &[u8] {
    trim_blanks(strip_cr(raw))
}

/// Removes the CR of a CRLF line end only: the line as written, trailing blanks kept.
pub fn strip_cr(raw: &[u8]) -> &[u8] {
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

/// Removes trailing blanks (spaces).
pub fn trim_blanks(text: &[u8]) -> &[u8] {
    let end = text.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    text.get(..end).unwrap_or_default()
}

/// A line of mail text as it goes on the wire (before any cut to 998 characters): without
/// a final CR, and without trailing blanks when the records are `padded`.
pub fn data_text(raw: &[u8], padded: bool) -> &[u8] {
    if padded { trim(raw) } else { strip_cr(raw) }
}

/// Removes trailing NUL bytes, then trailing blanks again (`Options NullTrnc YES`, for
/// command records only).
pub fn trim_nulls(text: &[u8]) -> &[u8] {
    let end = text
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(0, |i| i + 1);
    text.get(..end).unwrap_or_default()
}

/// The position of the first CR in a trimmed record: after [`trim`], any CR left is bare.
pub fn bare_cr(text: &[u8]) -> Option<usize> {
    memchr::memchr(b'\r', text)
}

/// Splits a whole buffer into lines (for tests, `check` and small inputs; the daemon
/// reads files with its own bounded reader producing the same [`Line`]s).
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut offset = 0usize;
    let mut number = 0u32;
    std::iter::from_fn(move || {
        let rest = bytes.get(offset..)?;
        if rest.is_empty() {
            return None;
        }
        let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let raw = rest.get(..len).unwrap_or_default();
        number = number.saturating_add(1);
        let line = Line::new(number, offset as u64, raw);
        offset += len + 1;
        Some(line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_crlf_and_blanks() {
        assert_eq!(trim(b"abc  \r"), b"abc");
        assert_eq!(trim(b"abc\t "), b"abc\t");
        assert_eq!(trim(b"   "), b"");
        assert_eq!(trim(b"a\rb\r"), b"a\rb");
        assert_eq!(bare_cr(trim(b"a\rb\r")), Some(1));
        assert_eq!(bare_cr(trim(b"ab\r")), None);
        assert_eq!(trim_nulls(b"HELO x\0\0 \0"), b"HELO x");
    }

    #[test]
    fn fixed_length_files() {
        assert!(fixed_length(b"ab  \ncd  \n"));
        assert!(
            fixed_length(b"ab  \r\ncd  \r\nef  "),
            "CRLF, last line without LF"
        );
        assert!(
            fixed_length(b"ab\r\ncd\n"),
            "the CR of a CRLF is not counted"
        );
        assert!(!fixed_length(b"ab  \ncd\n"));
        assert!(!fixed_length(b"ab  \ncd  \ne"));
        assert!(!fixed_length(b"ab  \n"), "one line");
        assert!(!fixed_length(b""));
        // Fed in pieces, cut anywhere (within a line, between its CR and LF).
        let file = b"HELO a      \r\nDATA        \r\n.           \r\n";
        for cut in 0..file.len() {
            let mut shape = FixedLength::default();
            let (a, b) = file.split_at(cut);
            assert!(shape.feed(a) && shape.feed(b));
            assert!(shape.finish(), "cut at {cut}");
        }
        let mut shape = FixedLength::default();
        assert!(
            !shape.feed(b"HELO a\nDATA\n.\n"),
            "stops at the first difference"
        );
        assert!(!shape.finish());
    }

    #[test]
    fn data_text_keeps_blanks_unless_padded() {
        assert_eq!(data_text(b"-- \r", false), b"-- ");
        assert_eq!(data_text(b"-- \r", true), b"--");
        assert_eq!(data_text(b"   ", true), b"");
        assert!(BlankTrnc::Auto.strips(|| true) && !BlankTrnc::Auto.strips(|| false));
        assert!(!BlankTrnc::No.strips(|| true) && BlankTrnc::Yes.strips(|| false));
    }

    #[test]
    fn splits_lines_with_offsets() {
        let all: Vec<_> = lines(b"a\r\nbb\n\nc").collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[1].offset, 3);
        assert_eq!(all[1].text(), b"bb");
        assert_eq!(all[3].number, 4);
        assert_eq!(all[3].text(), b"c");
    }
}
