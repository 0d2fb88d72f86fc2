//! TLS towards dnsd's TCP control API: whom the console trusts (the system's CA store, or
//! only the CAs of a `--ca-file` for a self-signed setup) and the name it checks dnsd's
//! certificate against (the host of `--url`, a DNS name or an IP address).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Which certificate authorities the console trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system's store (`/etc/ssl/certs` and the like, as `openssl` finds it).
    System,
    /// Only the CA certificates in this PEM file, not the system's.
    CaFile(PathBuf),
}

/// Why TLS could not be set up (before any connection is made).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA file {path}: {error}")]
    ReadCa {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("CA file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCa { path: PathBuf },
    #[error("CA file {path} is not valid PEM: {error}")]
    BadPem {
        path: PathBuf,
        error: rustls::pki_types::pem::Error,
    },
    #[error("CA file {path}: certificate {index} cannot be a trust anchor: {error}")]
    Anchor {
        path: PathBuf,
        index: usize,
        error: rustls::Error,
    },
    #[error(
        "this system's CA store holds no usable certificate{detail}: give the CA that signed dnsd's certificate with --ca-file"
    )]
    NoSystemRoots { detail: String },
    #[error("{host:?} is not a host name or IP address to check dnsd's certificate against")]
    ServerName { host: String },
    #[error("cannot set up TLS: {error}")]
    Config { error: rustls::Error },
}

/// A TLS client for one dnsd: the trusted CAs and the name its certificate must carry.
#[derive(Clone)]
pub struct TlsClient {
    name: ServerName<'static>,
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// A client that checks dnsd's certificate against `host` (as written in the URL,
    /// IPv6 addresses without brackets) and the CAs of `trust`.
    pub fn new(host: &str, trust: &Trust) -> Result<TlsClient, TlsSetupError> {
        let name =
            ServerName::try_from(host.to_owned()).map_err(|_| TlsSetupError::ServerName {
                host: host.to_owned(),
            })?;
        let roots = match trust {
            Trust::System => system_roots()?,
            Trust::CaFile(path) => file_roots(path)?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsSetupError::Config { error })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsClient {
            name,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The TLS handshake over a connected socket, dnsd's certificate verified.
    pub(super) async fn connect(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.name.clone(), tcp).await
    }
}

fn file_roots(path: &Path) -> Result<rustls::RootCertStore, TlsSetupError> {
    let bytes = std::fs::read(path).map_err(|error| TlsSetupError::ReadCa {
        path: path.to_owned(),
        error,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsSetupError::BadPem {
            path: path.to_owned(),
            error,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCa {
            path: path.to_owned(),
        });
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|error| TlsSetupError::Anchor {
            path: path.to_owned(),
            index: i + 1,
            error,
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, TlsSetupError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let detail = match found.errors.first() {
            Some(e) => format!(" ({e})"),
            None => String::new(),
        };
        return Err(TlsSetupError::NoSystemRoots { detail });
    }
    Ok(roots)
}

/// A hint to add to a failed handshake: what usually causes a refused certificate.
pub(super) fn hint(error: &std::io::Error) -> &'static str {
    let rejected = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
    if rejected {
        " (is dnsd's certificate signed by the CA of --ca-file, or by one this system \
         trusts, and made for the host in --url?)"
    } else {
        ""
    }
}
