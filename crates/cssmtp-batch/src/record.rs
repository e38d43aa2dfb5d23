//! Records: one physical line of a spool file, and how it is trimmed.
//!
//! Linux programs end lines with LF; files from other systems with CRLF. Both are read
//! the same way. Trailing blanks are removed from every record, as CSSMTP does (its
//! records are blank-padded fixed-length records). A CR that is not the last byte before
//! the LF is a *bare CR*: it is never allowed to become a line break on the wire.

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
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let end = raw.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    raw.get(..end).unwrap_or_default()
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
    fn splits_lines_with_offsets() {
        let all: Vec<_> = lines(b"a\r\nbb\n\nc").collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[1].offset, 3);
        assert_eq!(all[1].text(), b"bb");
        assert_eq!(all[3].number, 4);
        assert_eq!(all[3].text(), b"c");
    }
}
