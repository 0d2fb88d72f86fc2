//! TLS of the control API's TCP listener: a rustls server configuration built from the
//! operator's PEM certificate chain and private key (the key file readable by its owner
//! only). Errors name the file and what is wrong with it, never its content.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::error::ControlError;
use super::secret::read_owner_only;

/// The acceptor of the TCP listener: TLS 1.2 and 1.3 with ring's safe defaults, HTTP/1.1
/// announced over ALPN, no client certificates (clients authenticate with the token).
pub(super) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ControlError> {
    let chain = read_chain(cert)?;
    let private = read_key(key)?;
    let config_error = |error| ControlError::TlsConfig {
        cert: cert.to_owned(),
        key: key.to_owned(),
        error,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, ControlError> {
    let bytes = std::fs::read(path).map_err(|error| ControlError::ReadTlsCert {
        path: path.to_owned(),
        error,
    })?;
    let problem = |problem: String| ControlError::TlsCert {
        path: path.to_owned(),
        problem,
    };
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(pem_problem(&e)))?;
    if chain.is_empty() {
        return Err(problem(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ControlError> {
    let bytes = read_owner_only("TLS key file", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| ControlError::TlsKey {
        path: path.to_owned(),
        problem: match e {
            pem::Error::NoItemsFound => {
                "holds no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)".into()
            }
            other => pem_problem(&other),
        },
    })
}

/// What is wrong with a PEM file, without quoting any of it (a key file's lines are
/// secret, and the parser's errors may carry them).
fn pem_problem(e: &pem::Error) -> String {
    let what = match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is larger than 256 MB",
        pem::Error::NoItemsFound => "it holds nothing of the expected kind",
        pem::Error::Io(error) => return format!("cannot be read: {error}"),
        _ => "it cannot be parsed",
    };
    format!("is not valid PEM: {what}")
}
