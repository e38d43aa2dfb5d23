//! A mail's text in BDAT chunks (RFC 3030 CHUNKING), used instead of DATA when the
//! server offers CHUNKING and the target's `Chunking` is Yes.
//!
//! The text is the same as after DATA (the added headers, then the text read back from
//! the spool file a piece at a time and checked as it goes, see [`super::super::body`]),
//! without the dots of dot-stuffing: BDAT carries the message as it is stored, byte for
//! byte, and its chunks add up to the size `SIZE=` announced. Each chunk is about
//! [`WRITE_BATCH`] bytes, `BDAT n` then its n bytes in one write; memory stays one chunk
//! whatever the size of the mail.
//!
//! Chunks are pipelined (RFC 3030 §4.2): each goes without waiting for the reply to the
//! one before, with at most [`IN_FLIGHT`] replies outstanding (so the server's replies
//! can never fill the socket while cssmtp writes). Before the last chunk, `BDAT n LAST`,
//! every earlier reply is read and nothing more may be waiting (as before the final "."),
//! the owner's record must be durable, and the digest of the text must be the parser's:
//! a text that changed in the spool file never gets its `LAST`, the connection is
//! dropped and the server discards the partial mail. The reply to `LAST` is the mail's
//! final reply, as the reply to "." is. A chunk refused before the last (a 4xx or 5xx)
//! ends the transaction with that reply, charged to the accepted recipients as a refusal
//! at the text: the replies of the chunks already under way are read, then RSET.

use cssmtp_wire::Reply;
use tokio::sync::oneshot;

use super::Session;
use super::transaction::WRITE_BATCH;
use crate::config::Timeouts;
use crate::delivery::MailJob;

use crate::delivery::outcome::{Failure, Stage};

/// At most this many BDAT chunks are sent ahead of their replies.
const IN_FLIGHT: usize = 4;

impl Session {
    /// Streams the added headers and the text in BDAT chunks, the last one `LAST` (whose
    /// reply the caller reads). Some: a chunk before the last was refused (the
    /// transaction is over; the caller resets it).
    pub(super) async fn stream_bdat(
        &mut self,
        job: &MailJob,
        t: &Timeouts,
        out: &mut Vec<u8>,
        raw: &mut Vec<u8>,
        durable: Option<oneshot::Receiver<()>>,
    ) -> Result<Option<Reply>, Failure> {
        let (mut body, mut text) = self.begin_text(job, out).await?;
        unstuff_lines(out, 0);
        let mut in_flight = 0usize;
        loop {
            let from = out.len();
            if !self.next_text(&mut body, raw, out, &mut text).await? {
                break;
            }
            unstuff_lines(out, from);
            if out.len() >= WRITE_BATCH {
                self.send_chunk(out, false, t).await?;
                out.clear();
                in_flight += 1;
                if in_flight >= IN_FLIGHT {
                    in_flight -= 1;
                    if let Some(refused) = self.chunk_reply(in_flight, t).await? {
                        return Ok(Some(refused));
                    }
                }
            }
        }
        // Every earlier chunk answered before the last one goes.
        while in_flight > 0 {
            in_flight -= 1;
            if let Some(refused) = self.chunk_reply(in_flight, t).await? {
                return Ok(Some(refused));
            }
        }
        if let Some(durable) = durable {
            // Resolves once the journal has synced (or has failed, which it reports).
            let _ = durable.await;
        }
        // A reply before the text is complete was not due.
        self.expect_quiet(Stage::DataBlock).await?;
        self.send_chunk(out, true, t).await?;
        Ok(None)
    }

    /// `BDAT n[ LAST]` and the chunk's bytes.
    async fn send_chunk(&mut self, chunk: &[u8], last: bool, t: &Timeouts) -> Result<(), Failure> {
        let mut command = Vec::with_capacity(32);
        bdat_command(chunk.len(), last, &mut command);
        if chunk.len() <= 4096 {
            // Small: one write (and one TCP segment or TLS record).
            command.extend_from_slice(chunk);
            return self.write(&command, Stage::DataBlock, t.data_block).await;
        }
        self.write(&command, Stage::DataBlock, t.data_block).await?;
        self.write(chunk, Stage::DataBlock, t.data_block).await
    }

    /// Reads the reply to the oldest chunk under way; `after` chunks were sent after
    /// it. Some: it was refused, and the replies to those after it have been read.
    async fn chunk_reply(&mut self, after: usize, t: &Timeouts) -> Result<Option<Reply>, Failure> {
        let reply = self.read_reply(Stage::DataBlock, t.data_block).await?;
        if reply.is_positive() {
            return Ok(None);
        }
        // The server discards the chunks already in the pipeline (RFC 3030 §4.2); their
        // replies are read so that none is taken for the next command's.
        for _ in 0..after {
            self.read_reply(Stage::DataBlock, t.data_block).await?;
        }
        Ok(Some(reply))
    }
}

/// `BDAT <size>[ LAST]\r\n`.
fn bdat_command(size: usize, last: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("BDAT {size}").as_bytes());
    if last {
        out.extend_from_slice(b" LAST");
    }
    out.extend_from_slice(b"\r\n");
}

/// Removes the stuffed dot of every line that starts with "." in `buf[from..]`, whose
/// bytes are whole CRLF lines from the start of a line (the wire form after DATA): BDAT
/// carries the text as it is stored.
fn unstuff_lines(buf: &mut Vec<u8>, from: usize) {
    let Some(region) = buf.get(from..) else {
        return;
    };
    if region.first().is_none_or(|&b| b != b'.') && memchr::memmem::find(region, b"\n.").is_none() {
        return;
    }
    let mut write = from;
    let mut at_line_start = true;
    for read in from..buf.len() {
        let Some(&byte) = buf.get(read) else {
            break;
        };
        if at_line_start && byte == b'.' {
            at_line_start = false;
            continue;
        }
        at_line_start = byte == b'\n';
        if let Some(slot) = buf.get_mut(write) {
            *slot = byte;
        }
        write += 1;
    }
    buf.truncate(write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bdat_command_says_the_size_and_last() {
        let mut out = Vec::new();
        bdat_command(65536, false, &mut out);
        bdat_command(0, true, &mut out);
        assert_eq!(out, b"BDAT 65536\r\nBDAT 0 LAST\r\n");
    }

    #[test]
    fn stuffed_dots_are_removed_at_line_starts_only() {
        let mut buf = b"keep\r\n..a\r\nb.c\r\n.\xc3\xa9.\r\n...\r\n".to_vec();
        unstuff_lines(&mut buf, 6);
        assert_eq!(buf, b"keep\r\n.a\r\nb.c\r\n\xc3\xa9.\r\n..\r\n");
        let mut plain = b"no dots\r\nhere\r\n".to_vec();
        unstuff_lines(&mut plain, 0);
        assert_eq!(plain, b"no dots\r\nhere\r\n");
        let mut empty = Vec::new();
        unstuff_lines(&mut empty, 0);
        assert!(empty.is_empty());
        // Only the region from `from` is touched.
        let mut part = b"..x\r\n..y\r\n".to_vec();
        unstuff_lines(&mut part, 5);
        assert_eq!(part, b"..x\r\n.y\r\n");
    }
}
