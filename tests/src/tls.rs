//! A test PKI made by the test itself with rcgen: a CA, and a server certificate it
//! signed (for `127.0.0.1` and `localhost` unless told otherwise), written as PEM files in a directory of the
//! test (the key with mode 0600, as dnsd requires).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The files of a test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA's certificate: what a client trusts (`console --ca-file`).
    pub ca: PathBuf,
    /// The server's certificate (`[control] tls_cert`).
    pub cert: PathBuf,
    /// The server's private key (`[control] tls_key`), mode 0600.
    pub key: PathBuf,
}

impl TestPki {
    /// Makes a fresh CA and server certificate for `127.0.0.1` and `localhost` in `dir`
    /// (created if missing), as `ca.pem`, `server.pem` and `server.key`.
    pub fn create(dir: &Path) -> std::io::Result<TestPki> {
        Self::create_for(dir, &["127.0.0.1", "localhost"])
    }

    /// Like [`TestPki::create`], with a server certificate for these names and addresses.
    pub fn create_for(dir: &Path, names: &[&str]) -> std::io::Result<TestPki> {
        std::fs::create_dir_all(dir)?;
        let pki = TestPki {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        let (ca, cert, key) = generate(names).map_err(std::io::Error::other)?;
        std::fs::write(&pki.ca, ca)?;
        std::fs::write(&pki.cert, cert)?;
        std::fs::write(&pki.key, key)?;
        std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o600))?;
        Ok(pki)
    }
}

/// The CA's certificate, the server's certificate and the server's key, in PEM.
fn generate(names: &[&str]) -> Result<(String, String, String), rcgen::Error> {
    // A name of its own: two test CAs are two issuers, as two real ones would be.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("dnsd test CA {}-{n}", std::process::id()),
    );
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let cert = CertificateParams::new(names)?.signed_by(&key, &issuer)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}
