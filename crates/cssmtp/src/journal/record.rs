//! Journal records and their line format: `<crc32, 8 hex digits> <JSON>\n`.
//!
//! Versioned (`"v":1`), checksummed (CRC-32 of the JSON text), one per line: a torn or
//! corrupted line fails its checksum and is skipped, and the next line is read as usual.
//! Pure.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::domain::{Finished, Status};

/// The record format version written.
pub const VERSION: u8 = 1;

/// A recipient that will not get its mail, as the journal keeps it (enough to return
/// the mail after a restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRcpt {
    /// Index among the mail's recipients.
    pub i: usize,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    pub reason: String,
}

/// What a `result` record says of a mail's recipients (its fields are written into the
/// record's line, and those left empty are left out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Attempts so far.
    pub a: u32,
    /// Delivered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub d: Vec<usize>,
    /// In extended retry (the MailDirectory has the mail).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x: Vec<usize>,
    /// To be tried again (not final, not in doubt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry: Vec<usize>,
    /// Failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub u: Vec<FailedRcpt>,
    /// Possibly delivered before a restart and held for the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub h: Vec<usize>,
}

/// What happened. `f` is the spool file key (`<name>@<inode>`), `m` the mail's number in
/// it, recipient numbers are indexes among the mail's recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum Record {
    /// The journal was opened, by a process running in this boot of the system.
    Start { boot: String },
    /// About to send the final "." for these accepted recipients (written durably first).
    Sent { f: String, m: u32, r: Vec<usize> },
    /// The results of one attempt (or of the operator's FLUSHRETRY).
    Result {
        f: String,
        m: u32,
        #[serde(flatten)]
        o: Outcome,
    },
    /// The mail's undeliverable recipients were returned (notification or dead letter).
    Returned { f: String, m: u32 },
    /// Every recipient of the file is final; `disp` is what becomes of it: `deleted`
    /// or `removed` (written durably before the file goes), or `held` (written once the
    /// file is in `hold/`: should it come back into `active/`, released by an operator
    /// under the same name and inode, it is a new file).
    Done { f: String, disp: Finished },
}

impl Record {
    /// The spool file key the record is about.
    pub fn file(&self) -> &str {
        match self {
            Self::Start { .. } => "",
            Self::Sent { f, .. }
            | Self::Result { f, .. }
            | Self::Returned { f, .. }
            | Self::Done { f, .. } => f,
        }
    }
}

#[derive(Deserialize)]
struct Versioned {
    v: u8,
    #[serde(flatten)]
    record: Record,
}

#[derive(Serialize)]
struct VersionedRef<'a> {
    v: u8,
    #[serde(flatten)]
    record: &'a Record,
}

/// One line of the journal, with its newline.
pub fn encode(record: &Record) -> Vec<u8> {
    let json = serde_json::to_string(&VersionedRef { v: VERSION, record }).unwrap_or_default();
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes())).into_bytes()
}

/// Why a line is not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
    /// The checksum does not match (corruption, or a torn write).
    Checksum,
    /// The line is not `<crc> <json>` or the JSON is not a record of a known version.
    Format,
}

/// Reads one line (without its newline).
///
/// # Errors
/// [`Bad`] when the line is not an intact record.
pub fn decode(line: &[u8]) -> Result<Record, Bad> {
    let text = std::str::from_utf8(line).map_err(|_| Bad::Format)?;
    let (crc, json) = text.split_once(' ').ok_or(Bad::Format)?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| Bad::Format)?;
    if crc32fast::hash(json.as_bytes()) != crc {
        return Err(Bad::Checksum);
    }
    let versioned: Versioned = serde_json::from_str(json).map_err(|_| Bad::Format)?;
    if versioned.v != VERSION {
        return Err(Bad::Format);
    }
    Ok(versioned.record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let record = Record::Result {
            f: "PAYROLL.J1.x@42".into(),
            m: 3,
            o: Outcome {
                a: 2,
                d: vec![0, 2],
                retry: vec![1],
                u: vec![FailedRcpt {
                    i: 3,
                    status: Status::new(5, 1, 1),
                    diagnostic: Some("550 5.1.1 no".into()),
                    remote: None,
                    reason: "550 ...".into(),
                }],
                h: vec![4],
                ..Outcome::default()
            },
        };
        let line = encode(&record);
        assert!(line.ends_with(b"\n"));
        let body = &line[..line.len() - 1];
        assert_eq!(decode(body), Ok(record));
        let mut damaged = body.to_vec();
        let last = damaged.len() - 3;
        damaged[last] ^= 0x01;
        assert_eq!(decode(&damaged), Err(Bad::Checksum));
        assert_eq!(
            decode(&body[..body.len() / 2]),
            Err(Bad::Checksum),
            "a torn line"
        );
        assert_eq!(decode(b"garbage"), Err(Bad::Format));
    }

    /// Lines as the journal wrote them when `disp`, `status` and `remote` were strings:
    /// they still load, and the typed records are written as the same bytes.
    #[test]
    fn lines_of_the_string_typed_format_load_and_are_written_the_same() {
        let line = |json: &str| format!("{:08x} {json}", crc32fast::hash(json.as_bytes()));
        for (disp, finished) in [
            ("deleted", Finished::Deleted),
            ("removed", Finished::Removed),
            ("held", Finished::Held),
        ] {
            let old = line(&format!(
                r#"{{"v":1,"t":"done","f":"PAYROLL.J1.x@42","disp":"{disp}"}}"#
            ));
            let record = Record::Done {
                f: "PAYROLL.J1.x@42".into(),
                disp: finished,
            };
            assert_eq!(decode(old.as_bytes()), Ok(record.clone()));
            assert_eq!(encode(&record), format!("{old}\n").into_bytes());
        }
        let old = line(concat!(
            r#"{"v":1,"t":"result","f":"P.J.x@7","m":2,"a":3,"#,
            r#""u":[{"i":0,"status":"5.1.1","diagnostic":"550 5.1.1 no","remote":"192.0.2.1:25","reason":"550 5.1.1 no (at RCPT TO with 192.0.2.1:25)"},"#,
            r#"{"i":1,"status":"4.4.7","remote":"[2001:db8::1]:587","reason":"expired"},"#,
            r#"{"i":2,"status":"5.5.4","reason":"syntax"}]}"#
        ));
        let record = decode(old.as_bytes()).unwrap();
        let Record::Result { o, .. } = &record else {
            panic!("{record:?}");
        };
        assert_eq!(o.u[0].status, Status::new(5, 1, 1));
        assert_eq!(o.u[0].remote, Some(SocketAddr::from(([192, 0, 2, 1], 25))));
        assert_eq!(o.u[1].status, Status::EXPIRED);
        assert_eq!(o.u[1].remote.map(|r| r.port()), Some(587));
        assert_eq!(o.u[2].remote, None);
        assert_eq!(encode(&record), format!("{old}\n").into_bytes());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode(&line);
        }
    }
}
