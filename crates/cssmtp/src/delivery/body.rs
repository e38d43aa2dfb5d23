//! Reading a mail's text back from its spool file, in wire form, a chunk at a time.
//!
//! The text is never held whole in memory: each chunk is read with `pread` from the
//! claimed spool file and passed through the same record rules the parser checked
//! ([`cssmtp_batch::render_lines`]). When the text lacks the blank line between header
//! and body, it is inserted where the parser found the body to start.
//!
//! Small reads are done in place: the parser read the same file moments before, so the
//! bytes come from the page cache in microseconds, while a hand-off to a blocking thread
//! costs more than the read (two thread wake-ups per mail). Larger reads go to a
//! blocking thread.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use cssmtp_batch::{DataSpan, render_lines};

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
}

enum Piece {
    Text { start: u64, end: u64 },
    Blank,
    Memory(Arc<[u8]>),
}

/// The wire form of one mail's text, produced chunk by chunk.
pub struct Body {
    spool: Option<Arc<SpoolText>>,
    pieces: Vec<Piece>,
    index: usize,
    pos: u64,
}

impl Body {
    pub fn new(text: &MailText) -> Self {
        let (spool, span) = match text {
            MailText::Memory(bytes) => {
                return Self {
                    spool: None,
                    pieces: vec![Piece::Memory(Arc::clone(bytes))],
                    index: 0,
                    pos: 0,
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
            pieces,
            index: 0,
            pos: 0,
        }
    }

    /// Appends the next chunk of CRLF-terminated lines to `out`; false at the end of the
    /// text. `raw` is scratch space, kept by the caller so that it is reused.
    ///
    /// # Errors
    /// An I/O error reading the spool file.
    pub async fn next_chunk(&mut self, raw: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            let Some(piece) = self.pieces.get(self.index) else {
                return Ok(false);
            };
            match *piece {
                Piece::Blank => {
                    self.index += 1;
                    out.extend_from_slice(b"\r\n");
                    return Ok(true);
                }
                Piece::Memory(ref bytes) => {
                    out.extend_from_slice(bytes);
                    self.index += 1;
                    return Ok(true);
                }
                Piece::Text { start, end } => {
                    let Some(spool) = self.spool.as_ref() else {
                        return Err(io::Error::other("mail text has no spool file"));
                    };
                    let pos = self.pos.max(start);
                    if pos >= end {
                        self.index += 1;
                        continue;
                    }
                    let used = if end - pos <= INLINE_READ {
                        read_lines(spool, pos, end, raw, out)?
                    } else {
                        let text = Arc::clone(spool);
                        let (rendered, used) = tokio::task::spawn_blocking(move || {
                            let mut rendered = Vec::new();
                            read_lines(&text, pos, end, &mut Vec::new(), &mut rendered)
                                .map(|used| (rendered, used))
                        })
                        .await
                        .map_err(io::Error::other)??;
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

/// Reads whole lines from `pos` (up to `end`) into `raw` and renders them into `out`;
/// returns how many bytes of the file were used.
fn read_lines(
    text: &SpoolText,
    pos: u64,
    end: u64,
    raw: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> io::Result<u64> {
    let mut want = CHUNK.min(end - pos);
    loop {
        raw.clear();
        raw.resize(usize::try_from(want).unwrap_or(usize::MAX), 0);
        text.file.read_exact_at(raw, pos)?;
        let at_end = pos + want >= end;
        let cut = if at_end {
            raw.len()
        } else {
            match memchr::memrchr(b'\n', raw) {
                Some(lf) => lf + 1,
                None => {
                    // One line longer than the chunk (trailing blanks): read more.
                    want = (want * 2).min(end - pos);
                    continue;
                }
            }
        };
        let slice = raw.get(..cut).unwrap_or_default();
        out.reserve(cut + cut / 32 + 16);
        let used = render_lines(slice, text.truncate, at_end, out);
        return Ok(used as u64);
    }
}
