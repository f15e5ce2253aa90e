//! Building rustls configurations from PEM files (feature `tls`): a server's certificate
//! chain and key, and a client's trusted roots.
//!
//! Owns the file formats and their error messages, one clear line each; serving TLS is
//! `io::transport`'s and `io::tls`'s job, under either model.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Where Debian keeps the system's trusted roots, used by a client given no CA file.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The crypto provider every configuration uses: ring (see the README's dependency table).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, SEC1 or RSA), offering `alpn` protocols (most preferred first). TLS 1.2 and
/// 1.3, with session tickets for resumption under both. A missing, unreadable or mismatched file is an `InvalidInput` error naming it.
pub fn server_from_pem(cert: &Path, key: &Path, alpn: &[&[u8]]) -> io::Result<Arc<ServerConfig>> {
    let chain = certificates(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|err| {
        invalid(format!(
            "cannot read a private key from {}: {err}",
            key.display()
        ))
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid(format!("TLS versions: {err}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|err| {
            invalid(format!(
                "certificate {} and key {} do not go together: {err}",
                cert.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Session tickets, as nginx offers them: a returning client resumes (TLS 1.2 by
    // ticket, TLS 1.3 by a PSK ticket) without the certificate and key-exchange work of a
    // full handshake. rustls's ticketer encrypts them with a key it rotates every six
    // hours; the key lives in this process only, so tickets die with it.
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|err| invalid(format!("TLS session tickets: {err}")))?;
    Ok(Arc::new(config))
}

/// A client configuration trusting the certificates in `ca` (PEM), or the system's roots
/// when `None`.
pub fn client_from_pem(ca: Option<&Path>) -> io::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for root in certificates(ca.unwrap_or(Path::new(SYSTEM_ROOTS)))? {
        roots
            .add(root)
            .map_err(|err| invalid(format!("bad CA certificate: {err}")))?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid(format!("TLS versions: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; at least one.
fn certificates(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let unreadable = |err: &dyn std::fmt::Display| {
        invalid(format!(
            "cannot read certificates from {}: {err}",
            path.display()
        ))
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|err| unreadable(&err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| unreadable(&err))?;
    if chain.is_empty() {
        return Err(unreadable(&"no certificate in it"));
    }
    Ok(chain)
}

/// An `InvalidInput` error with this message.
fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
