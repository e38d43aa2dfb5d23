//! A target's TLS configuration of its own (`TlsMinVersion`, `TlsCaFile` in the block,
//! `TlsFingerprint`, `TlsClientCert`/`TlsClientKey`): built once per target when first
//! needed, and checked at start (`cssmtp check`, `run`: CSM3311E).
//!
//! Pinning (`TlsFingerprint`) trusts a server whose certificate has one of the given
//! SHA-256 fingerprints instead of a chain to a trusted CA (as dma's `FINGERPRINT`); the
//! handshake's signatures are verified as always. It never turns verification off.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerified;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::tls::{CertCheck, provider, read_certificates, roots};
use crate::config::{Config, Targets, TlsPolicy};

/// The SHA-256 of a certificate (DER).
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Trusts a server certificate by its SHA-256 fingerprint.
fn pinned(fingerprints: Vec<[u8; 32]>) -> Arc<CertCheck> {
    CertCheck::new(move |end_entity, _, _, _, _| {
        if fingerprints.contains(&fingerprint(end_entity)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate does not match TlsFingerprint".into(),
            ))
        }
    })
}

fn shown(path: &std::path::Path) -> String {
    crate::escape::data(&path.display().to_string()).to_string()
}

/// The client configuration for a target with `policy`; `global_ca`: the global
/// `TlsCaFile`s (trusted with the system's CAs unless the block names its own).
///
/// # Errors
/// Why it cannot be built (a file unreadable, a key readable by others…).
pub fn client_config(policy: &TlsPolicy, global_ca: &[PathBuf]) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider());
    let builder = if policy.tls13_only {
        builder.with_protocol_versions(&[&rustls::version::TLS13])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .map_err(|e| e.to_string())?;
    let builder = if policy.fingerprints.is_empty() {
        let store = match &policy.ca_file {
            Some(path) => {
                let mut store = RootCertStore::empty();
                for cert in read_certificates(path).map_err(|e| e.to_string())? {
                    store
                        .add(cert)
                        .map_err(|e| format!("TlsCaFile {}: {e}", shown(path)))?;
                }
                store
            }
            None => roots(global_ca).map_err(|e| e.to_string())?.0,
        };
        builder.with_root_certificates(store)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(pinned(policy.fingerprints.clone()))
    };
    match (&policy.client_cert, &policy.client_key) {
        (Some(cert), Some(key)) => {
            let meta =
                std::fs::metadata(key).map_err(|e| format!("TlsClientKey {}: {e}", shown(key)))?;
            if let Some(why) = super::auth::unsafe_secret_file(&meta) {
                return Err(format!("TlsClientKey {} cannot be used: {why}", shown(key)));
            }
            let chain = read_certificates(cert).map_err(|e| e.to_string())?;
            let bytes = crate::config::files::read_regular(key, 1024 * 1024)
                .map_err(|e| format!("TlsClientKey {}: {e}", shown(key)))?;
            let key_der = PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| format!("TlsClientKey {}: {e}", shown(key)))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("TlsClientCert {}: {e}", shown(cert)))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The connector for a target with `policy`.
///
/// # Errors
/// As [`client_config`].
pub fn connector(policy: &TlsPolicy, global_ca: &[PathBuf]) -> Result<TlsConnector, String> {
    client_config(policy, global_ca).map(|c| TlsConnector::from(Arc::new(c)))
}

/// Checks the TLS configuration of every target that has one of its own (at start and
/// by `cssmtp check`): one CSM3311E line per problem.
pub fn check_target_tls(config: &Config) -> Vec<String> {
    let specs: Vec<_> = match &config.targets {
        Targets::Hosts(hosts) => hosts.iter().collect(),
        Targets::Mx(mx) => vec![mx],
    };
    specs
        .iter()
        .filter(|s| s.tls.own_config())
        .filter_map(|s| {
            client_config(&s.tls, &config.tls_ca_files)
                .err()
                .map(|why| {
                    format!(
                        "CSM3311E The TLS configuration of TargetServer {} (line {}) cannot be used: {why}",
                        s.host, s.line
                    )
                })
        })
        .collect()
}
