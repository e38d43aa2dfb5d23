//! Configuration files are files: the configuration file itself (`-c`), every
//! `TlsCaFile` and the `AccountingFile` it names are checked before they are used. A
//! FIFO, a device, a directory or something huge is refused with a clear message (and
//! the line that names it) instead of hanging or exhausting memory: paths are looked
//! at with `stat` first, opened with `O_NONBLOCK` (a FIFO never blocks the open),
//! `fstat`ed after opening, and read only up to a size cap.

use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::syntax;
use super::{Diagnostic, Severity};

/// The largest configuration file read.
pub const MAX_CONFIG_SIZE: u64 = 1024 * 1024;
/// The largest `TlsCaFile` read (a full system CA bundle is about 200 KiB).
pub const MAX_CA_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// What a non-regular file is, in words.
fn kind(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn refuse(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

fn check_meta(meta: &std::fs::Metadata, cap: u64) -> io::Result<()> {
    if !meta.file_type().is_file() {
        return Err(refuse(format!(
            "it is {}, not a regular file",
            kind(meta.file_type())
        )));
    }
    if meta.len() > cap {
        return Err(refuse(format!(
            "it is {} bytes long; at most {cap} bytes are read",
            meta.len()
        )));
    }
    Ok(())
}

/// Reads the regular file at `path`, at most `cap` bytes; anything else is an error
/// (never a hang: a FIFO is refused before it is opened, and opened without blocking
/// should it be swapped in between).
///
/// # Errors
/// The file cannot be read, is not a regular file, or is longer than `cap`.
pub fn read_regular(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    check_meta(&std::fs::metadata(path)?, cap)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    check_meta(&file.metadata()?, cap)?;
    let mut bytes = Vec::new();
    Read::by_ref(&mut file.take(cap.saturating_add(1))).read_to_end(&mut bytes)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > cap {
        return Err(refuse(format!(
            "it grew beyond {cap} bytes while being read"
        )));
    }
    Ok(bytes)
}

/// [`read_regular`] for a configuration file: at most [`MAX_CONFIG_SIZE`], UTF-8.
///
/// # Errors
/// As [`read_regular`], or the text is not UTF-8.
pub fn read_config(path: &Path) -> io::Result<String> {
    String::from_utf8(read_regular(path, MAX_CONFIG_SIZE)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// Checks the files the configuration `text` (of `file`) names and cssmtp reads or
/// appends to: each `TlsCaFile` must be a readable regular file of at most
/// [`MAX_CA_FILE_SIZE`] holding a PEM certificate; an `AccountingFile` that exists
/// must be a regular file. Every problem is an error at the line naming the file.
pub fn check_named_files(file: &Path, text: &str) -> Vec<Diagnostic> {
    let base = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let (statements, _) = syntax::parse(text);
    let mut diagnostics = Vec::new();
    let mut error = |line: u32, message: String| {
        diagnostics.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            line,
            message,
        });
    };
    for statement in &statements {
        let Some(value) = statement.values.first() else {
            continue;
        };
        if value.text.is_empty() {
            continue;
        }
        let path = base.join(&value.text);
        let keyword = statement.keyword.text.as_str();
        if keyword.eq_ignore_ascii_case("TlsCaFile") {
            match read_regular(&path, MAX_CA_FILE_SIZE) {
                Ok(bytes) => {
                    if let Err(message) = certificates_in(&bytes) {
                        error(
                            value.line,
                            format!("TlsCaFile {}: {message}", path.display()),
                        );
                    }
                }
                Err(e) => error(
                    value.line,
                    format!("cannot read TlsCaFile {}: {e}", path.display()),
                ),
            }
        } else if keyword.eq_ignore_ascii_case("AccountingFile")
            && let Ok(meta) = std::fs::metadata(&path)
            && !meta.file_type().is_file()
        {
            error(
                value.line,
                format!(
                    "AccountingFile {} is {}; it must be a regular file",
                    path.display(),
                    kind(meta.file_type())
                ),
            );
        }
    }
    diagnostics
}

/// The certificates of PEM text.
///
/// # Errors
/// The text is not PEM, or holds no certificate.
pub fn certificates_in(
    bytes: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("it holds no PEM certificate".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_regular_and_huge_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_regular(&fifo, 10).unwrap_err();
        assert!(e.to_string().contains("a FIFO, not a regular file"), "{e}");
        let e = read_regular(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let e = read_regular(dir.path(), 10).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'#'; 11]).unwrap();
        let e = read_regular(&big, 10).unwrap_err();
        assert!(e.to_string().contains("11 bytes long"), "{e}");
        std::fs::write(&big, &b"# ten bytes"[..10]).unwrap();
        assert_eq!(read_regular(&big, 10).unwrap().len(), 10);
    }
}
