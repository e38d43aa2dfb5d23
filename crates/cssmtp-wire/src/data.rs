//! Mail text on the wire (RFC 5321 §4.5.2): dot-stuffing, for text cssmtp generates.
//!
//! Text read from spool files is already dot-stuffed (CSSMTP's rule); notifications and
//! reports are generated as plain messages and stuffed here before sending. Embedding a
//! spool text into a generated message first removes its stuffing.

/// Doubles a leading "." on every line of a CRLF text.
pub fn dot_stuff(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 64 + 1);
    let mut line_start = true;
    for &b in text {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out
}

/// Removes one leading "." from every line that starts with one.
pub fn dot_unstuff(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut line_start = true;
    for &b in text {
        if !(line_start && b == b'.') {
            out.push(b);
        }
        line_start = b == b'\n';
    }
    out
}

/// Makes every line end CRLF (a bare LF or bare CR becomes CRLF), and ends the text with
/// CRLF when it does not.
pub fn crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32 + 2);
    let mut bytes = text.iter().peekable();
    while let Some(&b) = bytes.next() {
        match b {
            b'\r' => {
                if bytes.peek() == Some(&&b'\n') {
                    bytes.next();
                }
                out.extend_from_slice(b"\r\n");
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_round_trips() {
        let text = b".first\r\nmiddle\r\n..two\r\n.\r\nend";
        let stuffed = dot_stuff(text);
        assert_eq!(stuffed, b"..first\r\nmiddle\r\n...two\r\n..\r\nend");
        assert_eq!(dot_unstuff(&stuffed), text);
    }

    #[test]
    fn line_ends() {
        assert_eq!(crlf(b"a\nb\rc\r\nd"), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(crlf(b""), b"");
    }

    proptest::proptest! {
        #[test]
        fn stuffed_text_never_ends_the_data(text in proptest::collection::vec(proptest::sample::select(vec![b'.', b'\r', b'\n', b'a']), 0..64)) {
            let wire = dot_stuff(&crlf(&text));
            let framed = [b"\r\n".as_slice(), &wire].concat();
            proptest::prop_assert!(!framed.windows(5).any(|w| w == b"\r\n.\r\n"));
            proptest::prop_assert_eq!(dot_unstuff(&wire), crlf(&text));
        }
    }
}
