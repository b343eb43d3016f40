//! TLS for the connections the host makes (webhook sinks) and for the CLI's client: rustls
//! with the ring provider, no OpenSSL. A connector trusts the system's roots, or only the CA
//! certificates of a PEM file when one is given; it speaks `http://` and `https://` alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// Why a TLS connector could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The CA file could not be read or holds no certificate.
    #[error("the CA file {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The system has no root certificate that rustls accepts.
    #[error("no trusted root certificates: {0}")]
    NoRoots(String),
    /// rustls refused the configuration.
    #[error("TLS cannot be set up: {0}")]
    Config(String),
}

/// A connector for `http://` and `https://` URLs, trusting `ca_file`'s certificates when
/// given, else the system's roots.
///
/// # Errors
///
/// [`TlsError`] when the CA file cannot be read or holds no certificate, or the system has
/// no usable roots.
pub fn connector(ca_file: Option<&Path>) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_error = |message: String| TlsError::CaFile {
                path: path.to_owned(),
                message,
            };
            let certificates =
                CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|e| ca_error(e.to_string()))?;
                roots
                    .add(certificate)
                    .map_err(|e| ca_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_error("it holds no PEM certificate".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(TlsError::NoRoots(errors.join("; ")));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build())
}
