//! Mainframe-format spool files (issue 14 point 1, CSSMTP's `Translate`): batch SMTP
//! written in EBCDIC as a job wrote it to JES, either as records ended by NL X'15' (or
//! LF X'25'), as z/OS UNIX text, or as fixed-length records without line ends
//! (`RecordLength`, LRECL 80 by default) as a data set is copied off the mainframe.
//!
//! With `Translate` set, each spool file is recognised by its first command: a file
//! that starts with `HELO`/`EHLO`/`MAIL`… in the code page is EBCDIC; any other (a
//! Linux producer's ASCII/UTF-8 file) is read as it is. An EBCDIC file is converted,
//! streaming, into an unnamed temporary file of UTF-8 lines that the batch parser then
//! reads like any other; the claimed original is left untouched (it is what is held,
//! and what a restart converts again, to the same bytes, so the checkpoint's offsets
//! stay true).
//!
//! The rules are CSSMTP's: trailing blanks are removed from every record; outside the
//! mail text, a record of `RecordLength` bytes whose last character is `<`, or (fixed
//! length) NL X'15', is joined to the next one (long `MAIL FROM`/`RCPT TO` lines); NULs
//! are kept (the parser's `NullTrnc` strips them from commands).
//!
//! A producer may choose the code page of its own file (`cssmtp submit --translate`):
//! the last part of the file's name, `.translate=IBM-037` or `.translate=none`
//! ([`file_page`]); it only chooses among the supported code pages, and an unknown one is
//! an error, never a guess. A record holding a control character X'00'–X'3F' other than
//! tab and NL is refused (CSSMTP's rule for batch SMTP).

mod tables;

use std::io::{self, BufRead, Write};

/// An EBCDIC code page `Translate` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePage {
    Ibm037,
    Ibm500,
    Ibm1047,
    Ibm1140,
}

/// EBCDIC blank.
const BLANK: u8 = 0x40;
/// EBCDIC NL and LF: record ends.
const NL: u8 = 0x15;
const LF: u8 = 0x25;
/// `<` (the same byte in the four code pages).
const LESS_THAN: u8 = 0x4C;

impl CodePage {
    /// `IBM-1047`, `IBM1047`, `CP1047`, `1047` (case-insensitive), and the same for 037
    /// (also `37`), 500 and 1140.
    pub fn parse(name: &str) -> Option<Self> {
        let upper = name.trim().to_ascii_uppercase();
        let digits = upper
            .strip_prefix("IBM")
            .or_else(|| upper.strip_prefix("CP"))
            .unwrap_or(&upper)
            .trim_start_matches(['-', '_']);
        match digits {
            "037" | "37" => Some(Self::Ibm037),
            "500" => Some(Self::Ibm500),
            "1047" => Some(Self::Ibm1047),
            "1140" => Some(Self::Ibm1140),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ibm037 => "IBM-037",
            Self::Ibm500 => "IBM-500",
            Self::Ibm1047 => "IBM-1047",
            Self::Ibm1140 => "IBM-1140",
        }
    }

    /// Byte → character.
    pub fn table(self) -> &'static [char; 256] {
        match self {
            Self::Ibm037 => &tables::CP037,
            Self::Ibm500 => &tables::CP500,
            Self::Ibm1047 => &tables::CP1047,
            Self::Ibm1140 => &tables::CP1140,
        }
    }

    fn char(self, byte: u8) -> char {
        self.table()
            .get(usize::from(byte))
            .copied()
            .unwrap_or('\u{1a}')
    }

    /// `text` in this code page (`None` when a character has no code point): for tests
    /// and tools that write EBCDIC.
    pub fn encode(self, text: &str) -> Option<Vec<u8>> {
        text.chars()
            .map(|c| {
                self.table()
                    .iter()
                    .position(|t| *t == c)
                    .and_then(|b| u8::try_from(b).ok())
            })
            .collect()
    }

    /// Whether a file starting with `head` is in this code page: its first command (after
    /// blanks and record ends) reads as a batch-SMTP verb in it. An ASCII file never does.
    pub fn recognises(self, head: &[u8]) -> bool {
        let start = head
            .iter()
            .position(|b| !matches!(*b, BLANK | NL | LF | 0x00))
            .unwrap_or(head.len());
        let word: String = head
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take(4)
            .map(|b| self.char(*b).to_ascii_uppercase())
            .collect();
        matches!(
            word.as_str(),
            "HELO" | "EHLO" | "MAIL" | "RSET" | "NOOP" | "QUIT" | "VERB" | "TICK"
        )
    }
}

/// How EBCDIC files are read: from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub page: CodePage,
    /// `RecordLength`.
    pub lrecl: usize,
    /// `Options AtSign`: read as '@' in commands and header fields.
    pub at_sign: Option<char>,
    /// `Options ReplaceSubjectAtSign`: in `Subject:` too.
    pub replace_subject_at_sign: bool,
}

impl Rules {
    /// The rules of `config`, when it has `Translate`.
    pub fn of(config: &crate::config::Config) -> Option<Self> {
        Some(Self {
            page: config.translate?,
            lrecl: config.record_length.max(1),
            at_sign: config.options.at_sign,
            replace_subject_at_sign: config.options.replace_subject_at_sign,
        })
    }

    /// The rules a spool file named `name` is read with, and whether it is EBCDIC by the
    /// producer's word (its name chose the code page: read as EBCDIC whatever its first
    /// bytes), or only when its first command is in the code page (`Translate`). `None`:
    /// read as it is.
    ///
    /// # Errors
    /// The name asks for a code page cssmtp does not support: why (the file is held).
    pub fn for_file(
        config: &crate::config::Config,
        name: &str,
    ) -> Result<Option<(Self, bool)>, String> {
        match file_page(name)? {
            None => Ok(Self::of(config).map(|r| (r, false))),
            Some(FilePage::AsIs) => Ok(None),
            Some(FilePage::Page(page)) => Ok(Some((
                Self {
                    page,
                    lrecl: config.record_length.max(1),
                    at_sign: config.options.at_sign,
                    replace_subject_at_sign: config.options.replace_subject_at_sign,
                },
                true,
            ))),
        }
    }

    /// Only the code page and the record length (no AtSign).
    pub fn plain(page: CodePage, lrecl: usize) -> Self {
        Self {
            page,
            lrecl,
            at_sign: None,
            replace_subject_at_sign: false,
        }
    }
}

/// The code page a producer chose for one spool file: the last dot-separated part of
/// its name, `translate=IBM-037` (`cssmtp submit --translate IBM-037`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilePage {
    /// An EBCDIC code page: the file is read in it, whatever `Translate` says.
    Page(CodePage),
    /// `none` (or `UTF-8`): the file is read as it is, even in an EBCDIC writer.
    AsIs,
}

/// What starts the last part of a spool file name that chooses its code page.
pub const FILE_PAGE_MARK: &str = "translate=";

impl FilePage {
    /// `none`, `UTF-8` or a code page [`CodePage::parse`] knows; `None` for any other.
    pub fn parse(value: &str) -> Option<Self> {
        if value.eq_ignore_ascii_case("none")
            || value.eq_ignore_ascii_case("utf-8")
            || value.eq_ignore_ascii_case("utf8")
        {
            return Some(Self::AsIs);
        }
        CodePage::parse(value).map(Self::Page)
    }

    /// As it is written in a file name: `IBM-037`, `none`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Page(page) => page.name(),
            Self::AsIs => "none",
        }
    }
}

/// What ends the name of a spool file whose producer chose `page`: `.translate=IBM-037`.
pub fn file_name_mark(page: FilePage) -> String {
    format!(".{FILE_PAGE_MARK}{}", page.name())
}

/// The code page the name of a spool file chooses (its last dot-separated part is
/// `translate=PAGE`), `None` when it chooses none.
///
/// # Errors
/// The part names no supported code page: the file must not be guessed at.
pub fn file_page(name: &str) -> Result<Option<FilePage>, String> {
    let Some(value) = name
        .rsplit('.')
        .next()
        .and_then(|last| last.strip_prefix(FILE_PAGE_MARK))
    else {
        return Ok(None);
    };
    FilePage::parse(value).map(Some).ok_or_else(|| {
        let shown: String = value.chars().take(40).collect();
        format!(
            "the spool file name asks for code page {:?} ({FILE_PAGE_MARK}), which cssmtp does not support (IBM-1047, IBM-037, IBM-500, IBM-1140 or none); file not processed",
            shown.escape_debug().to_string()
        )
    })
}

/// Whether `byte`, in a record of an EBCDIC file, is a control character batch SMTP
/// may not hold: X'00' to X'3F' except tab (X'05', the EBCDIC tab, and X'09', the code
/// CSSMTP's documentation gives it) and NL X'15' (CSSMTP's rule, reference §3.2). NUL
/// X'00' is let through only as padding at the end of a record (what `NullTrnc` strips
/// from commands).
fn forbidden_control(byte: u8) -> bool {
    byte <= 0x3F && !matches!(byte, 0x05 | 0x09 | NL | 0x00)
}

/// The first forbidden control character of `record` (its column from 1 and the
/// byte): any [`forbidden_control`] byte, or a NUL followed by something other than NULs.
fn control_in(record: &[u8]) -> Option<(usize, u8)> {
    let padding = record
        .iter()
        .rposition(|b| *b != 0x00)
        .map_or(0, |last| last + 1);
    record
        .iter()
        .enumerate()
        .find(|(i, b)| forbidden_control(**b) || (**b == 0x00 && *i < padding))
        .map(|(i, b)| (i + 1, *b))
}

/// How records are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records {
    /// Ended by NL X'15' or LF X'25'.
    Delimited,
    /// Fixed length, no line ends.
    Fixed(usize),
    /// NETDATA (TSO TRANSMIT, as SMTPNOTE sends): segments of at most 253 bytes, each
    /// with its length and flags; control records (INMR01, INMR02, INMR03, INMR06) are
    /// skipped, the data records are the records.
    Netdata,
}

/// NETDATA segment flags.
const SEGMENT_FIRST: u8 = 0x80;
const SEGMENT_LAST: u8 = 0x40;
const SEGMENT_CONTROL: u8 = 0x20;
/// `INMR` in the four code pages.
const INMR: [u8; 4] = [0xC9, 0xD5, 0xD4, 0xD9];

/// Whether `head` starts a NETDATA stream: a first and control segment holding `INMR01`.
pub fn is_netdata(head: &[u8]) -> bool {
    matches!(head, [_, flags, 0xC9, 0xD5, 0xD4, 0xD9, 0xF0, 0xF1, ..]
        if flags & (SEGMENT_FIRST | SEGMENT_CONTROL) == SEGMENT_FIRST | SEGMENT_CONTROL)
}

impl Records {
    /// Delimited when the first record ends before `lrecl` bytes (a record end among
    /// them), else fixed of `lrecl` (an NL in column `lrecl` marks a continuation).
    pub fn of(head: &[u8], lrecl: usize) -> Self {
        if is_netdata(head) {
            return Self::Netdata;
        }
        // Columns 1 to lrecl-1 of the first record.
        let first = head.get(..lrecl.saturating_sub(1)).unwrap_or(head);
        if memchr::memchr2(NL, LF, first).is_some() {
            Self::Delimited
        } else {
            Self::Fixed(lrecl.max(1))
        }
    }
}

/// Reads the next record (without its record end) into `out`; false at the end.
fn next_record(input: &mut impl BufRead, records: Records, out: &mut Vec<u8>) -> io::Result<bool> {
    out.clear();
    match records {
        Records::Fixed(lrecl) => {
            while out.len() < lrecl {
                let buf = input.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                let take = buf.len().min(lrecl - out.len());
                out.extend_from_slice(buf.get(..take).unwrap_or_default());
                input.consume(take);
            }
            Ok(!out.is_empty())
        }
        Records::Netdata => next_netdata_record(input, out),
        Records::Delimited => {
            let mut any = false;
            loop {
                let buf = input.fill_buf()?;
                if buf.is_empty() {
                    return Ok(any);
                }
                any = true;
                if let Some(at) = memchr::memchr2(NL, LF, buf) {
                    out.extend_from_slice(buf.get(..at).unwrap_or_default());
                    input.consume(at + 1);
                    return Ok(true);
                }
                let n = buf.len();
                out.extend_from_slice(buf);
                input.consume(n);
            }
        }
    }
}

/// The next data record of a NETDATA stream (control records skipped); false at its
/// end (INMR06, or the end of the file). A segment cut short by the end of the file ends
/// the stream with what it holds.
fn next_netdata_record(input: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<bool> {
    let mut control: Option<bool> = None;
    loop {
        let mut header = [0u8; 2];
        if !read_full(input, &mut header)? {
            return Ok(false);
        }
        let [length, flags] = header;
        if length < 2 {
            // Padding after the last segment (the stream is cut into 80-byte cards).
            return Ok(false);
        }
        let mut segment = vec![0u8; usize::from(length) - 2];
        let complete = read_full(input, &mut segment)?;
        if flags & SEGMENT_FIRST != 0 {
            control = Some(flags & SEGMENT_CONTROL != 0);
            out.clear();
        }
        out.extend_from_slice(&segment);
        if !complete {
            return Ok(control == Some(false) && !out.is_empty());
        }
        if flags & SEGMENT_LAST == 0 {
            continue;
        }
        match control {
            Some(false) => return Ok(true),
            Some(true) => {
                if out.starts_with(&INMR) && out.get(4..6) == Some(&[0xF0, 0xF6][..]) {
                    // INMR06: the end of the transmission.
                    return Ok(false);
                }
                out.clear();
            }
            None => out.clear(),
        }
    }
}

/// Fills `buf` from `input`; false when the input ended first (`buf` then partly filled).
fn read_full(input: &mut impl BufRead, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(false);
        }
        let n = chunk.len().min(buf.len() - filled);
        if let (Some(to), Some(from)) = (buf.get_mut(filled..filled + n), chunk.get(..n)) {
            to.copy_from_slice(from);
        }
        input.consume(n);
        filled += n;
    }
    Ok(true)
}

/// What a conversion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Converted {
    /// How records were told apart ("records of 80 bytes", "records ended by NL").
    pub layout: &'static str,
    /// Records read.
    pub records: u64,
    /// Records joined to the next by the continuation rule.
    pub continued: u64,
}

/// Converts an EBCDIC spool file (`input`, whose first bytes are `head`) into UTF-8
/// lines (LF) on `out`.
///
/// # Errors
/// An I/O error of either side, or (`InvalidData`) a record holding a control character
/// batch SMTP may not hold.
pub fn convert(
    rules: Rules,
    head: &[u8],
    mut input: impl BufRead,
    out: &mut impl Write,
) -> io::Result<Converted> {
    let Rules { page, lrecl, .. } = rules;
    let records = Records::of(head, lrecl);
    let lrecl = lrecl.max(1);
    let mut done = Converted {
        layout: match records {
            Records::Delimited => "records ended by NL",
            Records::Fixed(_) => "fixed-length records",
            Records::Netdata => "NETDATA, TSO TRANSMIT",
        },
        ..Converted::default()
    };
    let mut record = Vec::with_capacity(lrecl + 1);
    let mut joined: Vec<u8> = Vec::new();
    let mut in_data = false;
    let mut in_header = false;
    let mut in_subject = false;
    let mut text = String::new();
    while next_record(&mut input, records, &mut record)? {
        done.records += 1;
        // A fixed-length record's NL in its last column is the continuation mark.
        let checked = match (records, record.last()) {
            (Records::Fixed(_), Some(&NL)) => record.get(..record.len() - 1).unwrap_or_default(),
            _ => record.as_slice(),
        };
        if let Some((column, byte)) = control_in(checked) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "record {}, column {column} holds the control character X'{byte:02X}', which batch SMTP may not hold (only tab X'05' or X'09', NL X'15' and trailing X'00'); file not processed",
                    done.records
                ),
            ));
        }
        if !in_data && record.len() == lrecl {
            match record.last() {
                Some(&LESS_THAN) => {
                    joined.extend_from_slice(&record);
                    done.continued += 1;
                    continue;
                }
                Some(&NL) if matches!(records, Records::Fixed(_)) => {
                    joined.extend_from_slice(record.get(..lrecl - 1).unwrap_or_default());
                    done.continued += 1;
                    continue;
                }
                _ => {}
            }
        }
        joined.extend_from_slice(&record);
        let end = joined
            .iter()
            .rposition(|b| *b != BLANK)
            .map_or(0, |last| last + 1);
        text.clear();
        text.extend(
            joined
                .get(..end)
                .unwrap_or_default()
                .iter()
                .map(|b| if *b == 0x09 { '\t' } else { page.char(*b) }),
        );
        joined.clear();
        let mut replace = false;
        if in_data {
            if text == "." {
                in_data = false;
            } else if in_header {
                if text.is_empty() {
                    in_header = false;
                } else {
                    if !text.starts_with([' ', '\t']) {
                        in_subject = text
                            .get(..8)
                            .is_some_and(|f| f.eq_ignore_ascii_case("subject:"));
                    }
                    replace = !in_subject || rules.replace_subject_at_sign;
                }
            }
        } else {
            if text.trim().eq_ignore_ascii_case("DATA") {
                in_data = true;
                in_header = true;
                in_subject = false;
            }
            replace = true;
        }
        if let Some(at) = rules.at_sign.filter(|_| replace) {
            text = text.replace(at, "@");
        }
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
    }
    if !joined.is_empty() {
        // A continuation at the end of the file: what there is.
        text.clear();
        text.extend(joined.iter().map(|b| page.char(*b)));
        out.write_all(text.trim_end_matches(' ').as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(done)
}

/// The UTF-8 conversion of a whole spool file in memory, when `page` recognises it
/// (for `cssmtp submit`'s check).
///
/// `always`: the producer chose the code page; the file is converted whatever it starts
/// with.
///
/// # Errors
/// Why the file cannot be converted (a control character: [`convert`]).
pub fn converted_bytes(
    rules: Option<Rules>,
    always: bool,
    bytes: &[u8],
) -> Result<Option<Vec<u8>>, String> {
    let Some(rules) = rules else {
        return Ok(None);
    };
    let head = bytes.get(..bytes.len().min(64 * 1024)).unwrap_or(bytes);
    if !always && !rules.page.recognises(head) && !is_netdata(head) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 40);
    convert(rules, head, bytes, &mut out).map_err(|e| e.to_string())?;
    Ok(Some(out))
}

/// The handles the parser and the sender read a claimed spool file through: `file`
/// and `reader` themselves when the file is not in `page` (ASCII/UTF-8), else an unnamed
/// temporary file (in `dir`, the directory of claimed files) holding its conversion,
/// with what the conversion did.
///
/// # Errors
/// An I/O error reading the file or writing the conversion.
pub fn open_converted(
    rules: Rules,
    always: bool,
    dir: Option<&std::path::Path>,
    file: std::fs::File,
    reader: std::fs::File,
) -> io::Result<(std::fs::File, std::fs::File, Option<Converted>)> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::FileExt;
    let mut head = vec![0u8; 64 * 1024];
    let mut filled = 0;
    while filled < head.len() {
        let n = file.read_at(head.get_mut(filled..).unwrap_or_default(), filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    head.truncate(filled);
    if !always && !rules.page.recognises(&head) && !is_netdata(&head) {
        return Ok((file, reader, None));
    }
    let mut converted = match dir {
        Some(dir) => tempfile::tempfile_in(dir)?,
        None => tempfile::tempfile()?,
    };
    let mut input = reader;
    input.seek(SeekFrom::Start(0))?;
    let done = {
        let mut out = io::BufWriter::with_capacity(64 * 1024, &mut converted);
        convert(
            rules,
            &head,
            io::BufReader::with_capacity(64 * 1024, input),
            &mut out,
        )?
    };
    converted.seek(SeekFrom::Start(0))?;
    let second = converted.try_clone()?;
    Ok((converted, second, Some(done)))
}

#[cfg(test)]
mod tests;
