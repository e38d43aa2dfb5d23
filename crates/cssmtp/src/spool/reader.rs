//! Reading a spool file line by line with bounded memory, feeding the batch parser.

use std::io::{self, BufRead, Seek};

use cssmtp_batch::{BlankTrnc, FixedLength, Line, Mail, Parser, Step, Summary};

/// Bytes of one line kept for the parser; longer lines are measured, not stored (they
/// are errors, or cut to 998 characters with DataLineTrunc).
const MAX_KEPT: usize = 64 * 1024;

/// Reads lines (LF-terminated, the last one possibly not) with their offsets.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    offset: u64,
    number: u32,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(1024),
            offset: 0,
            number: 0,
        }
    }

    /// The next line, or `None` at end of file.
    ///
    /// # Errors
    /// An I/O error from the file.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let start = self.offset;
        let mut len = 0usize;
        // Lines longer than MAX_KEPT are measured, not kept: where their last non-blank
        // byte ends, with and without their last byte (a final CR is dropped by the
        // record rules). Tracked byte by byte only for such lines.
        let mut long = false;
        let mut sig_end = 0usize;
        let mut sig_end_before_last = 0usize;
        let mut last_byte = 0u8;
        let mut track = |bytes: &[u8], len: &mut usize| {
            for &b in bytes {
                *len += 1;
                sig_end_before_last = sig_end;
                if b != b' ' {
                    sig_end = *len;
                }
                last_byte = b;
            }
        };
        let mut found_lf = false;
        loop {
            let available = self.inner.fill_buf()?;
            if available.is_empty() {
                break;
            }
            let (chunk, consumed, done) = match memchr::memchr(b'\n', available) {
                Some(lf) => (available.get(..lf).unwrap_or_default(), lf + 1, true),
                None => (available, available.len(), false),
            };
            if !long && self.buf.len() + chunk.len() <= MAX_KEPT {
                self.buf.extend_from_slice(chunk);
                len += chunk.len();
            } else {
                if !long {
                    long = true;
                    len = 0;
                    track(&self.buf, &mut len);
                }
                let room = MAX_KEPT.saturating_sub(self.buf.len());
                self.buf
                    .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
                track(chunk, &mut len);
            }
            self.inner.consume(consumed);
            if done {
                found_lf = true;
                break;
            }
        }
        if len == 0 && !found_lf {
            return Ok(None);
        }
        self.offset = start + len as u64 + u64::from(found_lf);
        self.number = self.number.saturating_add(1);
        let mut line = Line::new(self.number, start, &self.buf);
        line.len = len;
        if long {
            line.trimmed_len = if last_byte == b'\r' {
                sig_end_before_last
            } else {
                sig_end
            };
            line.content_len = len - usize::from(last_byte == b'\r');
        }
        Ok(Some(line))
    }
}

/// What the parser thread sends to its spool task.
#[derive(Debug)]
pub enum Parsed {
    /// Mails in file order.
    Mails(Vec<Mail>),
    Done(Summary),
    Failed(io::Error),
}

/// Mails sent to the spool task at a time: one hand-off between threads per batch, not
/// per mail. The first mail of a file goes alone, so that it is on the wire at once.
const BATCH: usize = 32;
/// A batch goes as soon as its mails have this many recipients: a batch of mails at the
/// 2000-recipient limit holds one, so what waits in the channel stays small.
const BATCH_RCPTS: usize = 2000;

/// Whether every line of the file has the same length ([`FixedLength`]: fixed-length
/// records), reading from the start only as far as needed (a variable-length file is told
/// apart at its second line, a fixed-length one is read to its end); then goes back to the
/// start.
///
/// # Errors
/// An I/O error from the file.
pub fn fixed_length<R: BufRead + Seek>(reader: &mut R) -> io::Result<bool> {
    let mut shape = FixedLength::default();
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        let even = shape.feed(chunk);
        reader.consume(n);
        if !even {
            break;
        }
    }
    reader.rewind()?;
    Ok(shape.finish())
}

/// Parses a whole file, sending mails as they are complete. Stops early when the
/// receiver is gone. Runs on a blocking thread.
pub fn parse_into<R: BufRead + Seek>(
    reader: R,
    limits: cssmtp_batch::Limits,
    tx: &tokio::sync::mpsc::Sender<Parsed>,
) {
    parse_each(reader, limits, |parsed| tx.blocking_send(parsed).is_ok());
}

/// Parses a small file at once (see [`parse_each`]), for a reader known to be quick:
/// what it gives, in order.
pub fn parse_all<R: BufRead + Seek>(reader: R, limits: cssmtp_batch::Limits) -> Vec<Parsed> {
    let mut all = Vec::new();
    parse_each(reader, limits, |parsed| {
        all.push(parsed);
        true
    });
    all
}

/// Parses a whole file, giving mails to `give` as they are complete (in batches, the
/// first alone), then [`Parsed::Done`] or [`Parsed::Failed`]; stops early when `give`
/// returns false.
///
/// `BlankTrnc Auto` is resolved first ([`fixed_length`]): whether the text lines lose
/// their trailing blanks is decided once for the whole file, before its first mail, and
/// travels with each mail ([`cssmtp_batch::DataSpan::padded`]) to the renderer.
fn parse_each<R: BufRead + Seek>(
    mut reader: R,
    limits: cssmtp_batch::Limits,
    mut give: impl FnMut(Parsed) -> bool,
) {
    let limits = if limits.blank_trnc == BlankTrnc::Auto {
        match fixed_length(&mut reader) {
            Ok(fixed) => limits.for_file(|| fixed),
            Err(e) => {
                give(Parsed::Failed(e));
                return;
            }
        }
    } else {
        limits
    };
    let mut lines = LineReader::new(reader);
    let mut parser = Parser::new(limits);
    let mut batch: Vec<Mail> = Vec::new();
    let mut batch_rcpts = 0usize;
    let mut sent_any = false;
    loop {
        match lines.next_line() {
            Ok(Some(line)) => match parser.line(line) {
                Step::Continue => {}
                Step::Mail(mail) => {
                    batch_rcpts += mail.recipients.len() + mail.rejected.len();
                    batch.push(*mail);
                    if batch.len() >= BATCH || batch_rcpts >= BATCH_RCPTS || !sent_any {
                        sent_any = true;
                        batch_rcpts = 0;
                        if !give(Parsed::Mails(std::mem::take(&mut batch))) {
                            return;
                        }
                    }
                }
                Step::Stop => break,
            },
            Ok(None) => break,
            Err(e) => {
                give(Parsed::Failed(e));
                return;
            }
        }
    }
    if !batch.is_empty() && !give(Parsed::Mails(batch)) {
        return;
    }
    give(Parsed::Done(parser.finish()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lines(bytes: &[u8]) -> Vec<(u32, u64, Vec<u8>, usize, usize)> {
        let mut reader = LineReader::new(io::BufReader::with_capacity(7, bytes));
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            if line.raw.len() == line.len {
                assert_eq!(line, Line::new(line.number, line.offset, line.raw));
            }
            out.push((
                line.number,
                line.offset,
                line.raw.to_vec(),
                line.len,
                line.trimmed_len,
            ));
        }
        out
    }

    fn content_lens(bytes: &[u8]) -> Vec<usize> {
        let mut reader = LineReader::new(io::BufReader::with_capacity(7, bytes));
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            out.push(line.content_len);
        }
        out
    }

    #[test]
    fn reads_lines_across_buffer_boundaries() {
        let lines = all_lines(b"HELO abc.example\r\nxy  \n\nlast");
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], (1, 0, b"HELO abc.example\r".to_vec(), 17, 16));
        assert_eq!(lines[1], (2, 18, b"xy  ".to_vec(), 4, 2));
        assert_eq!(lines[2].1, 23);
        assert_eq!(lines[3], (4, 24, b"last".to_vec(), 4, 4));
    }

    #[test]
    fn long_lines_are_measured_not_stored() {
        let mut text = vec![b'a'; MAX_KEPT + 10];
        text.extend_from_slice(&[b' '; 100]);
        text.extend_from_slice(b"\r\nnext\n");
        let lines = all_lines(&text);
        assert_eq!(lines[0].2.len(), MAX_KEPT);
        assert_eq!(lines[0].3, MAX_KEPT + 111);
        assert_eq!(lines[0].4, MAX_KEPT + 10);
        assert_eq!(lines[1].1, (MAX_KEPT + 112) as u64);
        // Without its CR, blanks kept.
        assert_eq!(content_lens(&text), vec![MAX_KEPT + 110, 4]);
        let mut lf = text.clone();
        lf.retain(|&b| b != b'\r');
        assert_eq!(content_lens(&lf), vec![MAX_KEPT + 110, 4]);
    }

    #[test]
    fn same_mails_as_the_in_memory_parser() {
        let text = b"HELO h.example\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n";
        let (expected, _) = cssmtp_batch::parse_bytes(text, cssmtp_batch::Limits::default());
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        parse_into(
            io::BufReader::with_capacity(5, io::Cursor::new(&text[..])),
            cssmtp_batch::Limits::default(),
            &tx,
        );
        let Some(Parsed::Mails(mails)) = rx.blocking_recv() else {
            panic!()
        };
        assert_eq!(mails, expected);
        assert!(matches!(rx.blocking_recv(), Some(Parsed::Done(_))));
    }

    #[test]
    fn a_fixed_length_file_is_told_before_it_is_parsed() {
        let padded: Vec<u8> = [
            "HELO h.example",
            "MAIL FROM:<a@b.c>",
            "RCPT TO:<d@e.f>",
            "DATA",
            "x",
            ".",
        ]
        .iter()
        .flat_map(|l| format!("{l:<80}\n").into_bytes())
        .collect();
        for (text, fixed) in [(&padded[..], true), (b"HELO h\nDATA\n", false)] {
            let mut reader = io::BufReader::with_capacity(7, io::Cursor::new(text));
            assert_eq!(fixed_length(&mut reader).unwrap(), fixed);
            let mut again = Vec::new();
            io::Read::read_to_end(&mut reader, &mut again).unwrap();
            assert_eq!(again, text, "read again from the start");
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        parse_into(
            io::BufReader::with_capacity(5, io::Cursor::new(&padded)),
            cssmtp_batch::Limits::default(),
            &tx,
        );
        let Some(Parsed::Mails(mails)) = rx.blocking_recv() else {
            panic!()
        };
        assert!(mails[0].data.padded);
        assert_eq!(mails[0].data.wire_size, 3);
    }
}
