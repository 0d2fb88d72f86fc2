//! SSH sessions to pool members: verified host keys, key authentication, timeouts,
//! keepalive, and remote commands built only from quoted arguments.
//!
//! One job per module:
//! - `error`: [`SshError`] and its coarse class [`SshErrorKind`];
//! - [`fingerprint`]: [`HostKey`], a presented key as OpenSSH prints it;
//! - `host_key`: known_hosts parsing and matching, and the refusal of unknown or
//!   changed keys;
//! - `handshake`: TCP connect and SSH handshake up to a verified host key, and
//!   [`verify_host_key`], for hosts we do not log into but must trust (the destination of
//!   a pass);
//! - `session`: [`Session`]: connect, authenticate, run commands, keepalive;
//! - `settings`: [`SshSettings`] and [`Identity`], what they all share.
//!
//! Everything public is re-exported here, so callers name `ssh::Session`,
//! `ssh::SshError`, `ssh::verify_host_key`.

mod error;
mod fingerprint;
mod handshake;
mod host_key;
mod session;
mod settings;
#[cfg(test)]
mod testing;

pub use error::{SshError, SshErrorKind};
pub use fingerprint::{HostKey, fingerprint};
pub use handshake::verify_host_key;
pub use session::{ExitStatus, Finished, Output, Session};
pub use settings::{Identity, SshSettings};
#[cfg(test)]
pub(crate) use testing::refusing_port;
