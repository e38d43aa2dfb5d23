//! A target's `Charset` (CSSMTP's, issue 14 point 1): text translated from EBCDIC is
//! sent in ISO-8859-1 (the default) or UTF-8. A character the code page cannot
//! represent stops the mail with the character and its line named, never a `?`.

/// Rewrites `buf[start..]` (whole CRLF lines of UTF-8) as ISO-8859-1, in place;
/// `lines` counts the text's lines before it, and is moved on past them.
///
/// # Errors
/// The first character ISO-8859-1 cannot represent (or bytes that are not UTF-8), and
/// its line; `buf` is then left as it was.
pub fn to_latin1(buf: &mut Vec<u8>, start: usize, lines: &mut u64) -> Result<(), String> {
    let Some(tail) = buf.get(start..) else {
        return Ok(());
    };
    if tail.is_ascii() {
        *lines += memchr::memchr_iter(b'\n', tail).count() as u64;
        return Ok(());
    }
    let text = match std::str::from_utf8(tail) {
        Ok(text) => text,
        Err(e) => {
            let line = *lines
                + 1
                + memchr::memchr_iter(b'\n', tail.get(..e.valid_up_to()).unwrap_or_default())
                    .count() as u64;
            return Err(format!("line {line} of the text is not UTF-8"));
        }
    };
    let mut out = Vec::with_capacity(text.len());
    let mut line = *lines + 1;
    for c in text.chars() {
        match u8::try_from(u32::from(c)) {
            Ok(b) => out.push(b),
            Err(_) => {
                return Err(format!(
                    "line {line} of the text holds U+{:04X} ({})",
                    u32::from(c),
                    crate::escape::data(c.to_string().as_bytes())
                ));
            }
        }
        if c == '\n' {
            line += 1;
        }
    }
    *lines = line - 1;
    buf.truncate(start);
    buf.extend_from_slice(&out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_characters_become_one_byte_each() {
        let mut buf = b"H: x\r\n".to_vec();
        let mut lines = 3;
        let mut chunk = "Preis: 10 \u{a2} \u{ac}\r\nok\r\n".as_bytes().to_vec();
        buf.append(&mut chunk);
        to_latin1(&mut buf, 6, &mut lines).unwrap();
        assert_eq!(buf, b"H: x\r\nPreis: 10 \xa2 \xac\r\nok\r\n");
        assert_eq!(lines, 5);
    }

    #[test]
    fn a_character_beyond_latin1_is_named_with_its_line() {
        let mut buf = "a\r\nb\r\nTotal 5 \u{20ac}\r\n".as_bytes().to_vec();
        let before = buf.clone();
        let mut lines = 10;
        let err = to_latin1(&mut buf, 0, &mut lines).unwrap_err();
        assert_eq!(err, "line 13 of the text holds U+20AC (€)");
        assert_eq!(buf, before);
    }
}
