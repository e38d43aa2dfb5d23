//! Reading a mail's text back from its spool file, in wire form, a chunk at a time.
//!
//! The text is never held whole in memory: each chunk is read with `pread` from the
//! claimed spool file and passed through the same record rules the parser checked
//! ([`cssmtp_batch::render_lines`]), trailing blanks removed only when the parser found
//! the file's records padded ([`DataSpan::padded`]). When the text lacks the blank line between header
//! and body, it is inserted where the parser found the body to start.
//!
//! The spool file may have changed since it was parsed (a producer can keep it open and
//! write it after cssmtp claimed it). Every line is therefore checked again as it is
//! rendered ([`cssmtp_batch::render_lines_checked`]: never a lone ".", a bare CR or an
//! over-long line), and the lines are hashed with the key the parser used: at the end
//! of the text the digest must be the parser's ([`cssmtp_batch::TextDigest`]). Anything
//! else is a [`TextError::Changed`], reported before the final "." could be sent. Text
//! held in memory is checked too ([`cssmtp_wire::data::check_text`]).
//!
//! Small reads are done in place: the parser read the same file moments before, so the
//! bytes come from the page cache in microseconds, while a hand-off to a blocking thread
//! costs more than the read (two thread wake-ups per mail). Larger reads are done in
//! place too when the chunk is in the page cache (`RWF_NOWAIT`: the read never waits
//! for the disk), else on a blocking thread.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use cssmtp_batch::data::MAX_DATA_LINE;
use cssmtp_batch::{DataRules, DataSpan, TextDigest, TextHasher, UnsafeLine, render_lines_checked};

/// Raw bytes read from the spool file per chunk.
const CHUNK: u64 = 128 * 1024;
/// Reads up to this size are done without a blocking thread (see the module notes).
const INLINE_READ: u64 = 64 * 1024;

/// An open, claimed spool file whose mails are being delivered.
#[derive(Debug)]
pub struct SpoolText {
    pub file: File,
    /// `Options DataLineTrunc`: cut data lines to 998 characters.
    pub truncate: bool,
    /// The text was translated from EBCDIC (`Translate`): it goes to each target in
    /// the target's `Charset`.
    pub translated: bool,
}

/// A mail's text: in its spool file, or (for mail cssmtp writes itself: notifications,
/// reports) in memory.
#[derive(Debug, Clone)]
pub enum MailText {
    /// Lines of a claimed spool file, rendered for the wire when sent.
    Spool {
        spool: Arc<SpoolText>,
        data: DataSpan,
    },
    /// Already in wire form: CRLF lines, dot-stuffed, without the final ".".
    Memory(Arc<[u8]>),
}

impl MailText {
    /// Size on the wire (without the final ".").
    pub fn wire_size(&self) -> u64 {
        match self {
            Self::Spool { data, .. } => {
                data.wire_size
                    + if data.missing_separator_at.is_some() {
                        2
                    } else {
                        0
                    }
            }
            Self::Memory(bytes) => bytes.len() as u64,
        }
    }

    /// Size of the text as the receiver stores it (what `SIZE=` announces, with the
    /// added headers): the wire size without the dots of dot-stuffing.
    pub fn message_size(&self) -> u64 {
        match self {
            Self::Spool { data, .. } => self.wire_size().saturating_sub(data.dot_lines),
            Self::Memory(bytes) => bytes.len().saturating_sub(stuffed_lines(bytes)) as u64,
        }
    }

    /// The text holds a byte ≥ 0x80: it needs `BODY=8BITMIME` (RFC 6152).
    pub fn eight_bit(&self) -> bool {
        match self {
            Self::Spool { data, .. } => data.eight_bit,
            Self::Memory(bytes) => !bytes.is_ascii(),
        }
    }
}

/// Lines of a wire-form text that start with "." (each carries one stuffed dot).
fn stuffed_lines(wire: &[u8]) -> usize {
    let starts = usize::from(wire.first() == Some(&b'.'));
    starts
        + wire
            .windows(2)
            .filter(|w| w.first() == Some(&b'\n') && w.get(1) == Some(&b'.'))
            .count()
}

/// Why a mail's text cannot be (or could not be) sent.
#[derive(Debug)]
pub enum TextError {
    /// Reading the spool file failed.
    Io(io::Error),
    /// The text is not what was parsed, or a line of it cannot go on the wire: no more
    /// of it may be sent, and never the final ".".
    Changed(String),
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "reading the spool file failed: {e}"),
            Self::Changed(why) => f.write_str(why),
        }
    }
}

impl From<TextError> for io::Error {
    fn from(e: TextError) -> Self {
        match e {
            TextError::Io(e) => e,
            TextError::Changed(why) => io::Error::new(io::ErrorKind::InvalidData, why),
        }
    }
}

enum Piece {
    Text { start: u64, end: u64 },
    Blank,
    Memory(Arc<[u8]>),
}

/// The wire form of one mail's text, produced chunk by chunk.
pub struct Body {
    spool: Option<Arc<SpoolText>>,
    /// The text's lines are padded records ([`DataSpan::padded`]).
    padded: bool,
    pieces: Vec<Piece>,
    index: usize,
    pos: u64,
    /// The lines rendered so far.
    hasher: TextHasher,
    /// The parser's digest, when the whole text it covers is read (not for a header
    /// alone); compared once at the end.
    check: Option<TextDigest>,
}

impl Body {
    pub fn new(text: &MailText) -> Self {
        let (spool, span) = match text {
            MailText::Memory(bytes) => {
                return Self {
                    spool: None,
                    padded: false,
                    pieces: vec![Piece::Memory(Arc::clone(bytes))],
                    index: 0,
                    pos: 0,
                    hasher: TextHasher::new(),
                    check: None,
                };
            }
            MailText::Spool { spool, data } => (Arc::clone(spool), data),
        };
        let pieces = match span.missing_separator_at {
            Some(at) if (span.start..=span.end).contains(&at) => vec![
                Piece::Text {
                    start: span.start,
                    end: at,
                },
                Piece::Blank,
                Piece::Text {
                    start: at,
                    end: span.end,
                },
            ],
            _ => vec![Piece::Text {
                start: span.start,
                end: span.end,
            }],
        };
        Self {
            spool: Some(spool),
            padded: span.padded,
            pieces,
            index: 0,
            pos: 0,
            hasher: TextHasher::new(),
            check: (span.digest.end == span.end).then_some(span.digest),
        }
    }

    /// At the end of the text: is it the one the parser saw?
    fn verify(&mut self) -> Result<(), TextError> {
        let Some(check) = self.check.take() else {
            return Ok(());
        };
        if self.hasher.lines() != check.lines {
            return Err(TextError::Changed(format!(
                "it has {} line(s) where {} were read",
                self.hasher.lines(),
                check.lines
            )));
        }
        if self.hasher.value() != check.value {
            return Err(TextError::Changed(
                "it differs from the text that was read".into(),
            ));
        }
        Ok(())
    }

    /// Appends the next chunk of CRLF-terminated lines to `out`; false at the end of the
    /// text. `raw` is scratch space, kept by the caller so that it is reused.
    ///
    /// # Errors
    /// [`TextError::Io`] reading the spool file; [`TextError::Changed`] when a line cannot
    /// go on the wire (nothing of that chunk is appended) or, at the end, when the text
    /// is not the one parsed.
    pub async fn next_chunk(
        &mut self,
        raw: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<bool, TextError> {
        loop {
            let Some(piece) = self.pieces.get(self.index) else {
                self.verify()?;
                return Ok(false);
            };
            match *piece {
                Piece::Blank => {
                    self.index += 1;
                    out.extend_from_slice(b"\r\n");
                    return Ok(true);
                }
                Piece::Memory(ref bytes) => {
                    cssmtp_wire::data::check_text(bytes).map_err(|why| {
                        TextError::Changed(format!("the text cssmtp made has {why}"))
                    })?;
                    out.extend_from_slice(bytes);
                    self.index += 1;
                    return Ok(true);
                }
                Piece::Text { start, end } => {
                    let Some(spool) = self.spool.as_ref() else {
                        return Err(TextError::Io(io::Error::other(
                            "mail text has no spool file",
                        )));
                    };
                    let pos = self.pos.max(start);
                    if pos >= end {
                        self.index += 1;
                        continue;
                    }
                    let rules = DataRules {
                        padded: self.padded,
                        truncate: spool.truncate,
                    };
                    let used = if end - pos <= INLINE_READ {
                        read_lines(spool, rules, (pos, end), raw, out, &mut self.hasher)?
                    } else if let Some(used) =
                        render_cached(spool, rules, (pos, end), raw, out, &mut self.hasher)?
                    {
                        used
                    } else {
                        let text = Arc::clone(spool);
                        let mut hasher = std::mem::take(&mut self.hasher);
                        let (rendered, used, hasher) = tokio::task::spawn_blocking(move || {
                            let mut rendered = Vec::new();
                            let mut raw = Vec::new();
                            let span = (pos, end);
                            read_lines(&text, rules, span, &mut raw, &mut rendered, &mut hasher)
                                .map(|used| (rendered, used, hasher))
                        })
                        .await
                        .map_err(|e| TextError::Io(io::Error::other(e)))??;
                        self.hasher = hasher;
                        out.extend_from_slice(&rendered);
                        used
                    };
                    self.pos = pos + used;
                    return Ok(true);
                }
            }
        }
    }
}

/// Reads whole lines from `pos` (up to `end`) into `raw`, checks them and renders them
/// into `out`; returns how many bytes of the file were used.
fn read_lines(
    text: &SpoolText,
    rules: DataRules,
    (pos, end): (u64, u64),
    raw: &mut Vec<u8>,
    out: &mut Vec<u8>,
    hasher: &mut TextHasher,
) -> Result<u64, TextError> {
    let want = size_chunk(raw, pos, end);
    read_at(text, raw, pos)?;
    let at_end = pos + want >= end;
    match whole_lines(raw, at_end) {
        Some(cut) => render(raw, cut, rules, at_end, out, hasher),
        // One line longer than the chunk: read on in fixed chunks.
        None => long_line(text, rules, (pos, end), raw, out, hasher),
    }
}

/// Sizes `raw` for the next chunk of the span from `pos` to `end`; returns its size.
fn size_chunk(raw: &mut Vec<u8>, pos: u64, end: u64) -> u64 {
    let want = CHUNK.min(end - pos);
    raw.clear();
    raw.resize(usize::try_from(want).unwrap_or(usize::MAX), 0);
    want
}

/// As [`read_lines`], on the task's thread, when the chunk is all in the page cache
/// (`preadv2` with `RWF_NOWAIT`: the read never waits for the disk). None when it is
/// not (or the file system cannot say, or the chunk holds a line longer than itself):
/// the caller reads it on a blocking thread. Large texts are read this way without a
/// thread hand-off per chunk when, as usual, the producer wrote them moments before.
fn render_cached(
    text: &SpoolText,
    rules: DataRules,
    (pos, end): (u64, u64),
    raw: &mut Vec<u8>,
    out: &mut Vec<u8>,
    hasher: &mut TextHasher,
) -> Result<Option<u64>, TextError> {
    let want = size_chunk(raw, pos, end);
    let mut done = 0usize;
    while let Some(rest) = raw.get_mut(done..).filter(|r| !r.is_empty()) {
        let read = rustix::io::preadv2(
            &text.file,
            &mut [io::IoSliceMut::new(rest)],
            pos + done as u64,
            rustix::io::ReadWriteFlags::NOWAIT,
        );
        match read {
            Ok(n) if n > 0 => done += n,
            // Not cached (EAGAIN), not supported, or shorter than it was: the blocking
            // path reads it, and reports what it finds.
            _ => return Ok(None),
        }
    }
    let at_end = pos + want >= end;
    match whole_lines(raw, at_end) {
        Some(cut) => render(raw, cut, rules, at_end, out, hasher).map(Some),
        None => Ok(None),
    }
}

/// How much of a chunk read is whole lines (all of it at the end of the text); None
/// when it holds no line end (a line longer than the chunk).
fn whole_lines(raw: &[u8], at_end: bool) -> Option<usize> {
    if at_end {
        Some(raw.len())
    } else {
        memchr::memrchr(b'\n', raw).map(|lf| lf + 1)
    }
}

/// Checks and renders the first `cut` bytes of `raw` (whole lines) into `out`; returns
/// how many bytes of the file were used.
fn render(
    raw: &[u8],
    cut: usize,
    rules: DataRules,
    at_end: bool,
    out: &mut Vec<u8>,
    hasher: &mut TextHasher,
) -> Result<u64, TextError> {
    let slice = raw.get(..cut).unwrap_or_default();
    out.reserve(cut + cut / 32 + 16);
    let before = out.len();
    match render_lines_checked(slice, rules, at_end, out, hasher) {
        Ok(used) => Ok(used as u64),
        Err((line, problem)) => {
            out.truncate(before);
            Err(changed(line, &problem))
        }
    }
}

/// Reads `raw.len()` bytes at `pos`; a file that became shorter has changed.
fn read_at(text: &SpoolText, raw: &mut [u8], pos: u64) -> Result<(), TextError> {
    text.file.read_exact_at(raw, pos).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            TextError::Changed("the spool file is shorter than when it was read".into())
        } else {
            TextError::Io(e)
        }
    })
}

fn changed(line: u32, problem: &UnsafeLine) -> TextError {
    TextError::Changed(format!("line {line} of its text now holds {problem}"))
}

/// Renders the one line that starts at `pos` and is longer than a chunk, reading it a
/// chunk at a time and keeping only its first 998 bytes, so that a line of any length
/// costs fixed memory. Returns how many bytes of the file were used (the line and its
/// LF). The parser accepted the line: in wire form (trimmed when padded) it is within
/// 998 characters, or `DataLineTrunc` cuts it there; a longer line means the file changed
/// since. The line is checked and hashed as [`render_lines_checked`] does.
fn long_line(
    text: &SpoolText,
    rules: DataRules,
    (pos, end): (u64, u64),
    raw: &mut Vec<u8>,
    out: &mut Vec<u8>,
    hasher: &mut TextHasher,
) -> Result<u64, TextError> {
    let mut head: Vec<u8> = Vec::with_capacity(MAX_DATA_LINE);
    // Length so far; end of the last non-blank byte, with and without the last byte
    // (a final CR is dropped by the record rules, see `cssmtp_batch::record::trim`).
    let (mut len, mut sig_end, mut sig_before_last, mut last) = (0u64, 0u64, 0u64, 0u8);
    let mut found_lf = false;
    while pos + len < end && !found_lf {
        let at = pos + len;
        raw.clear();
        raw.resize(usize::try_from(CHUNK.min(end - at)).unwrap_or(0), 0);
        read_at(text, raw, at)?;
        let part = match memchr::memchr(b'\n', raw) {
            Some(lf) => {
                found_lf = true;
                raw.get(..lf).unwrap_or_default()
            }
            None => raw.as_slice(),
        };
        let room = MAX_DATA_LINE.saturating_sub(head.len()).min(part.len());
        head.extend_from_slice(part.get(..room).unwrap_or_default());
        if let Some((&final_byte, before)) = part.split_last() {
            sig_before_last = match before.iter().rposition(|&b| b != b' ') {
                Some(i) => len + i as u64 + 1,
                None => sig_end,
            };
            sig_end = if final_byte == b' ' {
                sig_before_last
            } else {
                len + part.len() as u64
            };
            last = final_byte;
            len += part.len() as u64;
        }
    }
    let trimmed = match (rules.padded, last == b'\r') {
        (true, true) => sig_before_last,
        (true, false) => sig_end,
        // Blanks kept: the line without its CR.
        (false, cr) => len.saturating_sub(u64::from(cr)),
    };
    let line = hasher.lines().saturating_add(1);
    if trimmed > MAX_DATA_LINE as u64 && !rules.truncate {
        return Err(changed(
            line,
            &UnsafeLine::TooLong(usize::try_from(trimmed).unwrap_or(usize::MAX)),
        ));
    }
    let keep = usize::try_from(trimmed).map_or(MAX_DATA_LINE, |t| t.min(MAX_DATA_LINE));
    let wire = head.get(..keep).unwrap_or_default();
    if cssmtp_batch::record::trim_blanks(wire) == b"." {
        return Err(changed(line, &UnsafeLine::EndOfData));
    }
    if wire.contains(&b'\r') {
        return Err(changed(line, &UnsafeLine::BareCr));
    }
    hasher.line(wire);
    out.extend_from_slice(wire);
    out.extend_from_slice(b"\r\n");
    Ok(len + u64::from(found_lf))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spool file with one mail whose text spans several chunks (lines of every
    /// length up to 998, dot-stuffed and 8-bit ones), and its text in wire form.
    fn big_mail() -> (tempfile::NamedTempFile, cssmtp_batch::Mail, Vec<u8>) {
        let mut text = Vec::new();
        let mut wire = Vec::new();
        for i in 0..2000usize {
            let mut line = format!("{i:05} ").into_bytes();
            line.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, (i * 37) % 990));
            if i % 7 == 0 {
                line.insert(0, b'.');
            }
            if i % 11 == 0 {
                line.extend_from_slice("é".as_bytes());
            }
            text.extend_from_slice(&line);
            text.push(b'\n');
            if line.first() == Some(&b'.') {
                wire.push(b'.');
            }
            wire.extend_from_slice(&line);
            wire.extend_from_slice(b"\r\n");
        }
        let mut file =
            b"HELO h\nMAIL FROM:<a@example.com>\nRCPT TO:<b@example.com>\nDATA\nSubject: big\n\n"
                .to_vec();
        let header_wire = b"Subject: big\r\n\r\n";
        // Dot-stuffed in the spool file, as a producer writes it.
        for line in text.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                file.push(b'.');
            }
            file.extend_from_slice(line);
        }
        file.extend_from_slice(b".\nQUIT\n");
        let mut spool = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut spool, &file).unwrap();
        let (mut mails, _) = cssmtp_batch::parse_bytes(&file, cssmtp_batch::Limits::default());
        let mail = mails.pop().unwrap();
        let mut expected = header_wire.to_vec();
        expected.extend_from_slice(&wire);
        (spool, mail, expected)
    }

    async fn read_back(spool: &tempfile::NamedTempFile, mail: &cssmtp_batch::Mail) -> Vec<u8> {
        let text = MailText::Spool {
            spool: Arc::new(SpoolText {
                file: spool.reopen().unwrap(),
                truncate: false,
                translated: false,
            }),
            data: mail.data.clone(),
        };
        let mut body = Body::new(&text);
        let (mut raw, mut out) = (Vec::new(), Vec::new());
        while body.next_chunk(&mut raw, &mut out).await.unwrap() {}
        out
    }

    #[tokio::test]
    async fn a_text_of_many_chunks_reads_back_in_wire_form_from_the_cache_or_the_disk() {
        let (spool, mail, expected) = big_mail();
        assert!(expected.len() as u64 > 4 * CHUNK, "several chunks");
        // In the page cache (just written): read in place.
        assert_eq!(read_back(&spool, &mail).await, expected);
        // Out of it where the file system lets it go: read on a blocking thread.
        let file = spool.reopen().unwrap();
        file.sync_all().unwrap();
        let _ = nix::fcntl::posix_fadvise(
            &file,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
        assert_eq!(read_back(&spool, &mail).await, expected);
    }

    #[test]
    fn memory_text_size_and_eight_bit() {
        let text = MailText::Memory(Arc::from(&b"..a\r\nb.\r\n.\xc3\xa9\r\n"[..]));
        assert_eq!(text.wire_size(), 14);
        assert_eq!(text.message_size(), 12);
        assert!(text.eight_bit());
        let plain = MailText::Memory(Arc::from(&b"a\r\n"[..]));
        assert_eq!(plain.message_size(), 3);
        assert!(!plain.eight_bit());
    }
}
