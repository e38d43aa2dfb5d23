//! DKIM signing (RFC 6376; Ed25519 by RFC 8463) of the mails cssmtp forwards, with
//! `mail-auth`'s streaming signer: `DkimKey`, `DkimHeaders`, `DkimCanonicalization`
//! (read in [`crate::config::dkim`]).
//!
//! * A mail is signed by every `DkimKey` whose `Domain` is its From: domain (several
//!   keys of a domain each add a signature: a new selector signs beside the old one
//!   while DNS changes, then the old one is removed). A mail whose From: domain has no
//!   key goes unsigned, as before.
//! * The signature covers the text as it goes on the wire: the header fields cssmtp adds
//!   (Received:, Date:, Message-ID:) and the text, in wire form without dot-stuffing.
//!   It is made once, when the spool task takes the mail ([`sign`]): the text is read
//!   from the spool file a chunk at a time (memory bounded by the chunk, and by the
//!   header section, at most [`MAX_HEADER`]), and the DKIM-Signature fields are put
//!   first among the added header fields, so that the transaction sends them first,
//!   unchanged on every attempt.
//! * Key files are private keys in PEM (PKCS #8, or PKCS #1 for RSA), cssmtp's alone
//!   (the rule of `AuthSecretFile`): checked at start and by `cssmtp check` (CSM3330E),
//!   and again when read. A key is read once and kept while its file is unchanged
//!   (replacing the file replaces the key, without a restart).
//! * A mail that cannot be signed (its key file became unusable, its header section is
//!   too large) is sent unsigned, with a CSM3331W line that says why: never dropped.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use mail_auth::common::crypto::{Algorithm, DkimKey, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use super::body::{Body, MailText};
use crate::config::{Canon, Config, Dkim, DkimAlgorithm, DkimKeySpec};

/// The largest header section signed (the header is held in memory while signing).
pub const MAX_HEADER: usize = 1024 * 1024;
/// The most read of a key file.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// A key shared by the cache and the signers.
struct SharedKey(Arc<DkimKey>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// What identifies a key file's version: replaced or rewritten, it is read again.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
}

type Cache = Mutex<HashMap<PathBuf, (Stamp, Arc<DkimKey>)>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The key of `spec`, read (and checked) when its file is new or changed.
///
/// # Errors
/// Why the key file cannot be used (never its content).
fn load_key(spec: &DkimKeySpec) -> Result<Arc<DkimKey>, String> {
    let path = &spec.key_file;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if let Some(why) = super::auth::unsafe_secret_file(&meta) {
        return Err(why);
    }
    let stamp = Stamp {
        dev: meta.dev(),
        ino: meta.ino(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        size: meta.size(),
    };
    if let Ok(cache) = cache().lock()
        && let Some((known, key)) = cache.get(path)
        && *known == stamp
    {
        let key = Arc::clone(key);
        drop(cache);
        return check_algorithm(spec, key);
    }
    let bytes =
        crate::config::files::read_regular(path, MAX_KEY_FILE).map_err(|e| e.to_string())?;
    let key = Arc::new(parse_key(&bytes)?);
    if let Ok(mut cache) = cache().lock() {
        cache.insert(path.clone(), (stamp, Arc::clone(&key)));
    }
    check_algorithm(spec, key)
}

fn check_algorithm(spec: &DkimKeySpec, key: Arc<DkimKey>) -> Result<Arc<DkimKey>, String> {
    let is = match key.algorithm() {
        Algorithm::Ed25519Sha256 => DkimAlgorithm::Ed25519,
        _ => DkimAlgorithm::Rsa,
    };
    match spec.algorithm {
        Some(want) if want != is => Err(format!(
            "it holds an {} key where Algorithm {} was given",
            algorithm_name(is),
            algorithm_name(want)
        )),
        _ => Ok(key),
    }
}

fn algorithm_name(a: DkimAlgorithm) -> &'static str {
    match a {
        DkimAlgorithm::Rsa => "RSA",
        DkimAlgorithm::Ed25519 => "Ed25519",
    }
}

/// A private key in PEM: PKCS #8 (Ed25519 or RSA) or PKCS #1 (RSA).
fn parse_key(pem: &[u8]) -> Result<DkimKey, String> {
    let der = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|_| "it holds no private key in PEM (PKCS #8, or PKCS #1 for RSA)".to_owned())?;
    match der {
        PrivateKeyDer::Pkcs8(pkcs8) => {
            if let Ok(key) = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der()) {
                return Ok(DkimKey::Ed25519(key));
            }
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(pkcs8))
                .map(DkimKey::Rsa)
                .map_err(|e| format!("its key is neither Ed25519 nor a usable RSA key ({e})"))
        }
        PrivateKeyDer::Pkcs1(pkcs1) => RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(pkcs1))
            .map(DkimKey::Rsa)
            .map_err(|e| format!("its RSA key cannot be used ({e})")),
        _ => Err("its key is not RSA or Ed25519 (PKCS #8, or PKCS #1 for RSA)".into()),
    }
}

/// Checks every `DkimKey`'s file (at start and by `cssmtp check`): one CSM3330E line per
/// problem, with the file and the statement's line, never the key.
pub fn check_key_files(config: &Config) -> Vec<String> {
    config
        .dkim
        .keys
        .iter()
        .filter_map(|spec| {
            load_key(spec).err().map(|why| {
                format!(
                    "CSM3330E DkimKey KeyFile {} (line {}) cannot be used: {why}",
                    crate::escape::data(&spec.key_file.display().to_string()),
                    spec.line
                )
            })
        })
        .collect()
}

/// The domain of the first mailbox of a From: field's value (lower case).
fn from_domain(value: &str) -> Option<String> {
    let address = match (value.find('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => value.get(open + 1..close)?,
        _ => value.split(',').next()?,
    };
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('>').trim();
    // Only a plain domain (no comment, no literal): anything else is not signed.
    (!domain.starts_with('[') && cssmtp_batch::address::valid_domain(domain))
        .then(|| domain.to_ascii_lowercase())
}

/// Removes the dot-stuffing of wire lines as they come (a chunk may end a line, never
/// split one: [`Body`] gives whole lines).
struct Unstuff {
    line_start: bool,
}

impl Unstuff {
    fn push(&mut self, wire: &[u8], out: &mut Vec<u8>) {
        let mut rest = wire;
        while !rest.is_empty() {
            if self.line_start && rest.first() == Some(&b'.') {
                rest = rest.get(1..).unwrap_or_default();
            }
            match memchr::memchr(b'\n', rest) {
                Some(lf) => {
                    let (line, tail) = rest.split_at(lf + 1);
                    out.extend_from_slice(line);
                    rest = tail;
                    self.line_start = true;
                }
                None => {
                    out.extend_from_slice(rest);
                    self.line_start = false;
                    rest = &[];
                }
            }
        }
    }
}

fn canonicalization(c: Canon) -> Canonicalization {
    match c {
        Canon::Simple => Canonicalization::Simple,
        Canon::Relaxed => Canonicalization::Relaxed,
    }
}

/// `headers` without the DKIM-Signature fields [`sign`] put before them (they come
/// first; a field's continuation lines begin with a blank).
pub fn unsigned(headers: &[u8]) -> &[u8] {
    const NAME: &[u8] = b"dkim-signature:";
    let mut rest = headers;
    while rest
        .get(..NAME.len())
        .is_some_and(|name| name.eq_ignore_ascii_case(NAME))
    {
        // The field's lines: up to the first line that does not begin with a blank.
        let mut end = 0;
        loop {
            match rest.get(end..).and_then(|tail| memchr::memchr(b'\n', tail)) {
                Some(at) => end += at + 1,
                None => return &[],
            }
            if !matches!(rest.get(end), Some(b' ' | b'\t')) {
                break;
            }
        }
        rest = rest.get(end..).unwrap_or_default();
    }
    rest
}

/// The DKIM-Signature fields of a mail (wire form, each ending CRLF), to go before
/// `added` (the header fields cssmtp adds); empty when no key is for its From: domain,
/// or when it cannot be signed (logged, CSM3331W, with `what` naming the mail).
pub async fn sign(dkim: &Dkim, added: &[u8], text: &MailText, what: &str) -> Vec<u8> {
    if dkim.keys.is_empty() {
        return Vec::new();
    }
    match try_sign(dkim, added, text).await {
        Ok(fields) => fields,
        Err(why) => {
            tracing::warn!("CSM3331W {what} is sent without a DKIM signature: {why}");
            Vec::new()
        }
    }
}

async fn try_sign(dkim: &Dkim, added: &[u8], text: &MailText) -> Result<Vec<u8>, String> {
    let mut body = Body::new(text);
    let (mut raw, mut wire) = (Vec::new(), Vec::new());
    let mut unstuff = Unstuff { line_start: true };
    // The header section (and what came with its last chunk).
    let mut head: Vec<u8> = Vec::new();
    unstuff.push(added, &mut head);
    let mut more = true;
    let end = loop {
        if let Some(at) = memchr::memmem::find(&head, b"\r\n\r\n") {
            break Some(at + 2);
        }
        if head.len() > MAX_HEADER {
            return Err(format!(
                "its header section is larger than {} KiB",
                MAX_HEADER / 1024
            ));
        }
        if !more {
            break None;
        }
        wire.clear();
        more = body
            .next_chunk(&mut raw, &mut wire)
            .await
            .map_err(|e| e.to_string())?;
        unstuff.push(&wire, &mut head);
    };
    let header = head.get(..end.unwrap_or(head.len())).unwrap_or_default();
    let Some(from) = crate::headers::header_value(header, "From") else {
        return Ok(Vec::new());
    };
    let Some(domain) = from_domain(&from) else {
        return Ok(Vec::new());
    };
    let specs: Vec<&DkimKeySpec> = dkim.keys.iter().filter(|k| k.domain == domain).collect();
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let mut signers: Vec<DkimSigner<SharedKey, Done>> = Vec::new();
    let mut problems = Vec::new();
    for spec in &specs {
        match load_key(spec) {
            Ok(key) => signers.push(
                DkimSigner::from_key(SharedKey(key))
                    .domain(spec.domain.clone())
                    .selector(spec.selector.clone())
                    .headers(dkim.headers.iter().cloned())
                    .header_canonicalization(canonicalization(dkim.header_canon))
                    .body_canonicalization(canonicalization(dkim.body_canon)),
            ),
            Err(why) => problems.push(format!(
                "DkimKey KeyFile {} (line {}) cannot be used: {why}",
                crate::escape::data(&spec.key_file.display().to_string()),
                spec.line
            )),
        }
    }
    for problem in &problems {
        // Another key of the domain may still sign.
        if !signers.is_empty() {
            tracing::warn!("CSM3331W a DKIM key is skipped: {problem}");
        }
    }
    if signers.is_empty() {
        return Err(problems.join("; "));
    }
    let mut streams: Vec<_> = signers.iter().map(DkimSigner::sign_streaming).collect();
    for stream in &mut streams {
        stream.write(&head);
    }
    drop(head);
    let mut plain = Vec::new();
    while more {
        wire.clear();
        more = body
            .next_chunk(&mut raw, &mut wire)
            .await
            .map_err(|e| e.to_string())?;
        plain.clear();
        unstuff.push(&wire, &mut plain);
        for stream in &mut streams {
            stream.write(&plain);
        }
    }
    let mut fields = Vec::new();
    for stream in streams {
        let signature = stream.finish().map_err(|e| e.to_string())?;
        fields.extend_from_slice(signature.to_header().as_bytes());
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_signature_fields_cssmtp_put_first_are_left_out() {
        let headers = b"DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=abc\r\ndkim-signature: v=1;\r\n b=def\r\nReceived: from x\r\nDKIM-Signature: kept\r\n";
        assert_eq!(
            super::unsigned(headers),
            b"Received: from x\r\nDKIM-Signature: kept\r\n"
        );
        assert_eq!(super::unsigned(b"Received: x\r\n"), b"Received: x\r\n");
        assert_eq!(super::unsigned(b"DKIM-Signature: cut"), b"");
    }

    use super::*;

    #[test]
    fn the_from_domain_is_the_first_mailbox_s() {
        assert_eq!(
            from_domain("Batch <job@Example.COM>").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            from_domain("job@example.com").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            from_domain("a@one.example, b@two.example").as_deref(),
            Some("one.example")
        );
        assert_eq!(from_domain("undisclosed"), None);
        assert_eq!(from_domain("x@[192.0.2.1]"), None);
    }

    #[test]
    fn dot_stuffing_is_removed_line_by_line_across_chunks() {
        let mut u = Unstuff { line_start: true };
        let mut out = Vec::new();
        u.push(b"..a\r\nb.\r\n", &mut out);
        u.push(b".\xc3\xa9\r\n..\r\n", &mut out);
        assert_eq!(out, b".a\r\nb.\r\n\xc3\xa9\r\n.\r\n");
    }
}
