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

/// Checks text in wire form (CRLF lines, dot-stuffed) before it is written inside DATA:
/// every line ends with CRLF, no CR or LF stands alone, and no line is a lone "." (which
/// would end the mail early). Returns what is wrong, for a message.
///
/// # Errors
/// The first problem found.
pub fn check_text(text: &[u8]) -> Result<(), &'static str> {
    let mut rest = text;
    while !rest.is_empty() {
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            return Err("a last line without CRLF");
        };
        let line = rest.get(..lf).unwrap_or_default();
        let Some(line) = line.strip_suffix(b"\r") else {
            return Err("a bare LF");
        };
        if line.contains(&b'\r') {
            return Err("a bare CR");
        }
        if line == b"." {
            return Err("a line \".\" that would end the mail early");
        }
        rest = rest.get(lf + 1..).unwrap_or_default();
    }
    Ok(())
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
    fn unsafe_wire_text_is_found() {
        assert_eq!(check_text(b""), Ok(()));
        assert_eq!(check_text(b"a\r\n..\r\n\r\n"), Ok(()));
        assert_eq!(
            check_text(b"a\r\n.\r\nMAIL FROM:<x>\r\n").unwrap_err(),
            "a line \".\" that would end the mail early"
        );
        assert_eq!(check_text(b"a\nb\r\n").unwrap_err(), "a bare LF");
        assert_eq!(check_text(b"a\rb\r\n").unwrap_err(), "a bare CR");
        assert_eq!(
            check_text(b"a\r\nb").unwrap_err(),
            "a last line without CRLF"
        );
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
            proptest::prop_assert_eq!(check_text(&wire), Ok(()));
            proptest::prop_assert_eq!(dot_unstuff(&wire), crlf(&text));
        }
    }
}
