//! The TLS policy of a `TargetServer` (cssmtp's): `TlsMode`, `TlsMinVersion`, a CA file
//! of its own, certificate fingerprint pinning and a client certificate (what AT-TLS
//! gave CSSMTP), read into [`TlsPolicy`]; applied by `delivery::tls_policy`.

use std::path::PathBuf;

use super::TargetSpec;
use super::draft::{Diags, TargetDraft};
use super::syntax::Word;

/// How a target's sessions use TLS, beyond the global settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// `TlsMode Opportunistic`: STARTTLS whenever the server offers it; a session
    /// without TLS is counted.
    pub opportunistic: bool,
    /// `TlsMinVersion 1.3` (None: TLS 1.2 and 1.3).
    pub tls13_only: bool,
    /// `TlsCaFile` in the block: only this CA is trusted for the target.
    pub ca_file: Option<PathBuf>,
    /// `TlsFingerprint sha256:…`: the SHA-256 of the server's certificate must be one of
    /// these (instead of a chain to a trusted CA).
    pub fingerprints: Vec<[u8; 32]>,
    /// `TlsClientCert` and `TlsClientKey`: a client certificate for servers that ask.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl TlsPolicy {
    /// Whether the target needs a TLS configuration of its own.
    pub fn own_config(&self) -> bool {
        self.tls13_only
            || self.ca_file.is_some()
            || !self.fingerprints.is_empty()
            || self.client_cert.is_some()
    }
}

pub(super) fn mode(diags: &mut Diags, t: &mut TargetDraft, w: &Word) {
    match w.text.to_ascii_lowercase().as_str() {
        "plain" => {
            t.spec.tls.opportunistic = false;
            t.spec.secure = false;
        }
        "opportunistic" => {
            t.spec.tls.opportunistic = true;
            t.spec.secure = false;
        }
        "required" => {
            t.spec.tls.opportunistic = false;
            t.spec.secure = true;
        }
        _ => diags.error(
            w.line,
            format!(
                "TlsMode {:?} is not one of Plain, Opportunistic, Required",
                w.text
            ),
        ),
    }
}

pub(super) fn min_version(diags: &mut Diags, t: &mut TargetDraft, w: &Word) {
    match w.text.as_str() {
        "1.2" => t.spec.tls.tls13_only = false,
        "1.3" => t.spec.tls.tls13_only = true,
        _ => diags.error(
            w.line,
            format!(
                "TlsMinVersion {:?} is not 1.2 or 1.3 (older versions are never used)",
                w.text
            ),
        ),
    }
}

pub(super) fn ca_file(t: &mut TargetDraft, path: PathBuf) {
    t.spec.tls.ca_file = Some(path);
}

pub(super) fn client_cert(t: &mut TargetDraft, path: PathBuf) {
    t.spec.tls.client_cert = Some(path);
}

pub(super) fn client_key(t: &mut TargetDraft, path: PathBuf) {
    t.spec.tls.client_key = Some(path);
}

/// `sha256:` and 64 hex digits (colons allowed between bytes).
pub(super) fn fingerprint(diags: &mut Diags, t: &mut TargetDraft, w: &Word) {
    let text = w.text.to_ascii_lowercase();
    let hex: String = text
        .strip_prefix("sha256:")
        .unwrap_or("")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let mut bytes = [0u8; 32];
    let ok = hex.len() == 64
        && bytes.iter_mut().enumerate().all(|(i, b)| {
            hex.get(2 * i..2 * i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .map(|v| *b = v)
                .is_some()
        });
    if ok {
        t.spec.tls.fingerprints.push(bytes);
    } else {
        diags.error(
            w.line,
            format!(
                "TlsFingerprint {:?} is not sha256: followed by 64 hexadecimal digits",
                w.text
            ),
        );
    }
}

/// The rules over a block's TLS parameters (at the block's line).
pub(super) fn check(diags: &mut Diags, t: &mut TargetDraft, line: u32) {
    let tls = &t.spec.tls;
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        diags.error(line, "TlsClientCert and TlsClientKey go together");
    }
    if tls.own_config() && !t.spec.secure && !tls.opportunistic && t.spec.auth.is_none() {
        diags.warning(
            line,
            "TLS parameters apply only when TLS is used: give TlsMode Required or Opportunistic",
        );
    }
}

/// DISPLAY CONFIG forms.
/// Required is shown as `Secure Yes`, Plain not at all.
pub(super) fn show_mode(t: &TargetSpec) -> Option<String> {
    (t.tls.opportunistic && !t.secure).then(|| "Opportunistic".into())
}

pub(super) fn show_min_version(t: &TargetSpec) -> Option<String> {
    t.tls.tls13_only.then(|| "1.3".into())
}

pub(super) fn show_ca_file(t: &TargetSpec) -> Option<String> {
    t.tls.ca_file.as_ref().map(|p| p.display().to_string())
}

pub(super) fn show_fingerprint(t: &TargetSpec) -> Option<String> {
    (!t.tls.fingerprints.is_empty()).then(|| {
        t.tls
            .fingerprints
            .iter()
            .map(|f| {
                let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
                format!("sha256:{hex}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    })
}

pub(super) fn show_client_cert(t: &TargetSpec) -> Option<String> {
    t.tls.client_cert.as_ref().map(|p| p.display().to_string())
}

pub(super) fn show_client_key(t: &TargetSpec) -> Option<String> {
    t.tls.client_key.as_ref().map(|p| p.display().to_string())
}
