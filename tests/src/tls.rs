//! Certificates made at test time: a CA, and a server certificate it signs for 127.0.0.1 and
//! localhost, for a webhook that speaks HTTPS.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and a server configuration whose certificate it signed.
#[derive(Debug)]
pub struct Certificates {
    /// The CA certificate, PEM: what a client must trust.
    pub ca_pem: String,
    /// The server's TLS configuration.
    pub server: Arc<rustls::ServerConfig>,
}

impl Certificates {
    /// A new CA and server certificate.
    pub fn new() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca_certificate = ca.self_signed(&ca_key).expect("the CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server parameters");
        let server_key = KeyPair::generate().expect("a server key");
        let server_certificate = server
            .signed_by(&server_key, &issuer)
            .expect("the server certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![server_certificate.der().clone()], key)
            .expect("a server configuration");
        Self {
            ca_pem: ca_certificate.pem(),
            server: Arc::new(config),
        }
    }
}

impl Default for Certificates {
    fn default() -> Self {
        Self::new()
    }
}
