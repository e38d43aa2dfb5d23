//! TLS for STARTTLS: rustls with certificate verification always on.
//!
//! Trust comes from the system's CA store plus any `TlsCaFile` (a private CA for internal
//! relays). There is no switch to turn verification off.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read TlsCaFile {}: {message}", path.display())]
    CaFile { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider cssmtp uses everywhere (one provider, so rustls never has to
/// guess).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificate test of a [`CertCheck`]: the server's certificate, its
/// intermediates, the name asked for, the OCSP response and the time.
type CheckCert = dyn Fn(
        &CertificateDer<'_>,
        &[CertificateDer<'_>],
        &ServerName<'_>,
        &[u8],
        rustls::pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error>
    + Send
    + Sync;

/// A server-certificate verifier that trusts the certificate by `check` (a pinned
/// fingerprint, a chain without the name, …) and verifies the handshake's signatures
/// exactly as rustls' own verifiers do: only how the certificate is trusted ever
/// changes, never the signatures.
pub struct CertCheck {
    check: Box<CheckCert>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl CertCheck {
    pub fn new(
        check: impl Fn(
            &CertificateDer<'_>,
            &[CertificateDer<'_>],
            &ServerName<'_>,
            &[u8],
            rustls::pki_types::UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error>
        + Send
        + Sync
        + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            check: Box::new(check),
            provider: provider(),
        })
    }
}

impl std::fmt::Debug for CertCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertCheck")
    }
}

impl ServerCertVerifier for CertCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        (self.check)(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Reads every certificate of a PEM file: a regular file of at most
/// [`crate::config::files::MAX_CA_FILE_SIZE`] bytes (a FIFO or device is refused, never
/// waited on).
///
/// # Errors
/// [`TlsSetupError`] when the file cannot be read or holds no certificate.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = crate::config::files::read_regular(path, crate::config::files::MAX_CA_FILE_SIZE)
        .map_err(|e| TlsSetupError::CaFile {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    crate::config::files::certificates_in(&bytes).map_err(|message| TlsSetupError::CaFile {
        path: path.to_owned(),
        message,
    })
}

/// Builds the client configuration: system roots plus `ca_files`.
///
/// Returns the configuration and the number of system certificates that could not be
/// loaded (for a warning).
///
/// # Errors
/// [`TlsSetupError`] for an unreadable or empty `TlsCaFile`.
pub fn client_config(ca_files: &[PathBuf]) -> Result<(Arc<ClientConfig>, usize), TlsSetupError> {
    let (roots, skipped) = roots(ca_files)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((Arc::new(config), skipped))
}

/// The trusted CAs: the system's plus `ca_files`; and the number of system certificates
/// that could not be loaded.
///
/// # Errors
/// [`TlsSetupError`] for an unreadable or empty `TlsCaFile`.
pub fn roots(ca_files: &[PathBuf]) -> Result<(RootCertStore, usize), TlsSetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let mut skipped = native.errors.len();
    for cert in native.certs {
        if roots.add(cert).is_err() {
            skipped += 1;
        }
    }
    for path in ca_files {
        for cert in read_certificates(path)? {
            roots.add(cert)?;
        }
    }
    Ok((roots, skipped))
}

/// The name a target's certificate must carry: its IP address for TargetIp, else its
/// host name.
pub fn server_name(name: Option<&str>, ip: IpAddr) -> ServerName<'static> {
    name.and_then(|n| ServerName::try_from(n.to_owned()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(ip.into()))
}
