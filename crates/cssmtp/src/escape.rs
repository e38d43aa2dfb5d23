//! Outside strings as data: how spool file names, addresses, server replies and job
//! names are printed in log lines, reports and DISPLAY output.
//!
//! Such strings come from producers and servers, who must not be able to forge a log
//! line (a name with a line feed in it), hide text (a carriage return or a bidi
//! override), or make cssmtp skip what it cannot decode. [`Data`] prints printable
//! text as it is and everything else escaped:
//!
//! * `\n`, `\r`, `\t` and `\\` (a backslash is doubled, so the escaping is unambiguous);
//! * other control characters below 0x80 and bytes that are not UTF-8 as `\xNN`;
//! * C1 controls, the Unicode line and paragraph separators and the bidi controls as
//!   `\u{NNNN}`.

use std::ffi::OsStr;
use std::fmt::{self, Display, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes printed with what is not printable text escaped (see the module notes).
#[derive(Clone, Copy)]
pub struct Data<'a>(pub &'a [u8]);

/// An outside string, for printing.
pub fn data<T: AsRef<[u8]> + ?Sized>(value: &T) -> Data<'_> {
    Data(value.as_ref())
}

/// A file name (any bytes), for printing.
pub fn os(value: &OsStr) -> Data<'_> {
    Data(value.as_bytes())
}

/// A path (any bytes), for printing.
pub fn path(value: &Path) -> Data<'_> {
    Data(value.as_os_str().as_bytes())
}

/// A file name as the text cssmtp shows and records (escaped).
pub fn name(value: &OsStr) -> String {
    os(value).to_string()
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

impl Display for Data<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            let valid = chunk.valid();
            let mut rest = valid;
            while let Some(at) = rest.find(needs_escape) {
                let (plain, tail) = rest.split_at(at);
                f.write_str(plain)?;
                let mut chars = tail.chars();
                if let Some(c) = chars.next() {
                    match c {
                        '\n' => f.write_str("\\n")?,
                        '\r' => f.write_str("\\r")?,
                        '\t' => f.write_str("\\t")?,
                        '\\' => f.write_str("\\\\")?,
                        c if u32::from(c) < 0x80 => write!(f, "\\x{:02x}", u32::from(c))?,
                        c => write!(f, "\\u{{{:04x}}}", u32::from(c))?,
                    }
                }
                rest = chars.as_str();
            }
            f.write_str(rest)?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Data<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        Display::fmt(self, f)?;
        f.write_char('"')
    }
}

/// One line of text, at most `max` characters, without control characters: safe in a
/// header, a NOOP line or a log line.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_is_kept_and_the_rest_escaped() {
        assert_eq!(data("PAYROLL.J1.x-y_z").to_string(), "PAYROLL.J1.x-y_z");
        assert_eq!(data("Grüße").to_string(), "Grüße");
        assert_eq!(
            data("a\nCSM2002I forged\r\tb\\c\x1b[31m\x7f").to_string(),
            "a\\nCSM2002I forged\\r\\tb\\\\c\\x1b[31m\\x7f"
        );
        assert_eq!(data(b"x\xff\xfey").to_string(), "x\\xff\\xfey");
        assert_eq!(
            data("\u{85}\u{2028}\u{202e}").to_string(),
            "\\u{0085}\\u{2028}\\u{202e}"
        );
        assert_eq!(
            os(OsStr::from_bytes(b"bad\xc3(\n")).to_string(),
            "bad\\xc3(\\n"
        );
    }

    #[test]
    fn no_output_has_a_line_break_whatever_the_input() {
        let all: Vec<u8> = (0..=255u8).collect();
        let out = data(&all).to_string();
        assert!(!out.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']));
        assert!(out.chars().all(|c| !c.is_control()));
    }
}
