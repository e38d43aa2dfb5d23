//! The body of the `reply` fuzz target (`fuzz/`, run under AFL++); the tests replay the
//! seed corpus and random inputs through the same function. It panics when an
//! invariant does not hold for `data` as bytes from a server.

use crate::{Capabilities, ReplyParser};

/// The replies in `bytes`, fed `chunk` bytes at a time (0: all at once), up to the
/// first error (`true` when there was one).
fn replies(bytes: &[u8], chunk: usize) -> (Vec<(u16, String)>, bool) {
    let mut parser = ReplyParser::new();
    let mut out = Vec::new();
    let step = if chunk == 0 {
        bytes.len().max(1)
    } else {
        chunk
    };
    for piece in bytes.chunks(step) {
        let mut rest = piece;
        loop {
            match parser.parse(rest) {
                Ok(Some((reply, used))) => {
                    assert!(used <= rest.len(), "used more than it was given");
                    assert!((200..=599).contains(&reply.code), "code {}", reply.code);
                    let _ = reply.to_string();
                    let _ = reply.severity();
                    let _ = Capabilities::parse(parser.last_raw());
                    out.push((reply.code, reply.text().to_owned()));
                    rest = rest.get(used..).unwrap_or_default();
                    if rest.is_empty() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

/// Parses `data` as a server's replies, all at once and in chunks of 1 to 8 bytes
/// (chosen by the first byte): both give the same replies while neither fails.
pub fn reply(data: &[u8]) {
    let chunk = usize::from(data.first().copied().unwrap_or(0) % 8) + 1;
    let (whole, whole_failed) = replies(data, 0);
    let (pieces, pieces_failed) = replies(data, chunk);
    if !whole_failed && !pieces_failed {
        assert_eq!(whole, pieces, "chunks of {chunk} bytes");
    }
    let _ = Capabilities::parse(data);
}
