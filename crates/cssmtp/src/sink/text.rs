//! Reading a mail's text from the connection: strictly, or leniently as servers open to
//! SMTP smuggling do.

use smtp_proto::request::receiver::DataReceiver;

use super::options::SinkOptions;
use crate::net::Conn;

/// Reads the mail text; what follows its end stays in `buf` as commands.
pub(super) async fn read_data(
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    options: &SinkOptions,
) -> Option<Vec<u8>> {
    if options.lenient_end_of_data {
        loop {
            if let Some((data, rest)) = lenient_end(buf) {
                *buf = rest;
                return Some(data);
            }
            if conn.read_some(buf).await.ok()? == 0 {
                return None;
            }
        }
    }
    let mut receiver = DataReceiver::new();
    // The text starts at the beginning of a line: prime the receiver with a line end so
    // that a first line of "." or ".." is read correctly.
    let mut scratch = Vec::new();
    receiver.ingest(&mut b"\r\n".iter(), &mut scratch);
    let mut data = Vec::new();
    loop {
        let mut iter = buf.iter();
        let done = receiver.ingest(&mut iter, &mut data);
        let rest = iter.as_slice().to_vec();
        *buf = rest;
        if done {
            return Some(data);
        }
        if conn.read_some(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// A lenient end of text: "." alone between any two line ends (CR, LF or CRLF).
fn lenient_end(buf: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let is_end = |b: u8| b == b'\r' || b == b'\n';
    let mut i = 0;
    while i < buf.len() {
        let at_line_start = i == 0 || buf.get(i - 1).copied().is_some_and(is_end);
        if at_line_start && buf.get(i) == Some(&b'.') && buf.get(i + 1).copied().is_some_and(is_end)
        {
            let mut after = i + 2;
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                after += 1;
            }
            let data = cssmtp_wire::data::dot_unstuff(buf.get(..i).unwrap_or_default());
            return Some((data, buf.get(after..).unwrap_or_default().to_vec()));
        }
        i += 1;
    }
    None
}

/// True when the text holds a CR not followed by LF, or an LF not after a CR.
pub(super) fn has_bare_line_end(data: &[u8]) -> bool {
    data.iter().enumerate().any(|(i, &b)| {
        (b == b'\r' && data.get(i + 1) != Some(&b'\n'))
            || (b == b'\n' && (i == 0 || data.get(i - 1) != Some(&b'\r')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_end_of_data_finds_smuggling_shapes() {
        let (data, rest) = lenient_end(b"a\r\nb\n.\nMAIL FROM:<x>\r\n").unwrap();
        assert_eq!(data, b"a\r\nb\n");
        assert_eq!(rest, b"MAIL FROM:<x>\r\n");
        let (data, _) = lenient_end(b"x\r\n..y\r\n.\r\n").unwrap();
        assert_eq!(data, b"x\r\n.y\r\n");
        assert!(lenient_end(b"x\r\n.y\r\n").is_none());
    }

    #[test]
    fn bare_line_ends() {
        assert!(!has_bare_line_end(b"a\r\nb\r\n"));
        assert!(has_bare_line_end(b"a\rb\r\n"));
        assert!(has_bare_line_end(b"a\nb\r\n"));
    }
}
