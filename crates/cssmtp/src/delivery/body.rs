//! Reading a mail's text back from its spool file, in wire form, a chunk at a time.
//!
//! The text is never held whole in memory: each chunk is read with `pread` from the
//! claimed spool file (on a blocking thread) and passed through the same record rules
//! the parser checked ([`cssmtp_batch::render_lines`]). When the text lacks the blank
//! line between header and body, it is inserted where the parser found the body to start.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use cssmtp_batch::{DataSpan, render_lines};

/// Raw bytes read from the spool file per chunk.
const CHUNK: u64 = 128 * 1024;

/// An open, claimed spool file whose mails are being delivered.
#[derive(Debug)]
pub struct SpoolText {
    pub file: File,
    /// `Options DataLineTrunc`: cut data lines to 998 characters.
    pub truncate: bool,
}

enum Piece {
    Text { start: u64, end: u64 },
    Blank,
}

/// The wire form of one mail's text, produced chunk by chunk.
pub struct Body {
    text: Arc<SpoolText>,
    pieces: Vec<Piece>,
    index: usize,
    pos: u64,
}

impl Body {
    pub fn new(text: Arc<SpoolText>, span: &DataSpan) -> Self {
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
            text,
            pieces,
            index: 0,
            pos: 0,
        }
    }

    /// The next chunk of CRLF-terminated lines, or `None` at the end of the text.
    ///
    /// # Errors
    /// An I/O error reading the spool file.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            let Some(piece) = self.pieces.get(self.index) else {
                return Ok(None);
            };
            match *piece {
                Piece::Blank => {
                    self.index += 1;
                    return Ok(Some(b"\r\n".to_vec()));
                }
                Piece::Text { start, end } => {
                    let pos = self.pos.max(start);
                    if pos >= end {
                        self.index += 1;
                        continue;
                    }
                    let text = Arc::clone(&self.text);
                    let (out, used) =
                        tokio::task::spawn_blocking(move || read_lines(&text, pos, end))
                            .await
                            .map_err(io::Error::other)??;
                    self.pos = pos + used;
                    return Ok(Some(out));
                }
            }
        }
    }
}

/// Reads whole lines from `pos` (up to `end`) and renders them for the wire.
fn read_lines(text: &SpoolText, pos: u64, end: u64) -> io::Result<(Vec<u8>, u64)> {
    let mut want = CHUNK.min(end - pos);
    loop {
        let mut raw = vec![0u8; usize::try_from(want).unwrap_or(usize::MAX)];
        text.file.read_exact_at(&mut raw, pos)?;
        let at_end = pos + want >= end;
        let cut = if at_end {
            raw.len()
        } else {
            match raw.iter().rposition(|&b| b == b'\n') {
                Some(lf) => lf + 1,
                None => {
                    // One line longer than the chunk (trailing blanks): read more.
                    want = (want * 2).min(end - pos);
                    continue;
                }
            }
        };
        let slice = raw.get(..cut).unwrap_or_default();
        let mut out = Vec::with_capacity(cut + cut / 32 + 16);
        let used = render_lines(slice, text.truncate, at_end, &mut out);
        return Ok((out, used as u64));
    }
}
