//! Why the control API could not start: every failure names the socket, address or file
//! it concerns.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the control API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot create the directory of control socket {path}: {error}")]
    SocketDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("control socket {path} is in use by a running process")]
    SocketInUse { path: PathBuf },
    #[error("cannot remove stale control socket {path}: {error}")]
    StaleSocket {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot listen on control socket {path}: {error}")]
    Bind {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot restrict control socket {path} to its owner: {error}")]
    Permissions {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot listen for the control API on TCP {addr}: {error}")]
    BindTcp {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot read {what} {path}: {error}")]
    ReadSecret {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{what} {path} {problem}")]
    UnsafeSecret {
        what: &'static str,
        path: PathBuf,
        problem: &'static str,
    },
    #[error("cannot read TLS certificate file {path}: {error}")]
    ReadTlsCert {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("TLS certificate file {path} {problem}")]
    TlsCert { path: PathBuf, problem: String },
    #[error("TLS key file {path} {problem}")]
    TlsKey { path: PathBuf, problem: String },
    #[error("TLS certificate {cert} and key {key} cannot serve: {error}")]
    TlsConfig {
        cert: PathBuf,
        key: PathBuf,
        error: rustls::Error,
    },
}
