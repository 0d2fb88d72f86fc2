//! Host keys as OpenSSH prints them: [`HostKey`] (type and `SHA256:` fingerprint) made
//! from a raw key blob. A plain value with no I/O, so errors can carry it and the trust
//! checks of `host_key` can produce it.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The host key a server presented, as OpenSSH prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// Key algorithm name from the key blob, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// `SHA256:` followed by the unpadded base64 of the SHA-256 of the key blob.
    pub fingerprint: String,
}

impl HostKey {
    /// Describes a raw public key blob (SSH wire format) the way `ssh-keygen -l` does.
    pub fn from_blob(blob: &[u8]) -> HostKey {
        HostKey {
            key_type: blob_key_type(blob),
            fingerprint: fingerprint(blob),
        }
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key_type, self.fingerprint)
    }
}

/// OpenSSH-style fingerprint of a public key blob: `SHA256:` + unpadded base64.
pub fn fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// The algorithm name at the start of an SSH public key blob (a length-prefixed string).
pub(super) fn blob_key_type(blob: &[u8]) -> String {
    let name = blob
        .get(..4)
        .and_then(|len| <[u8; 4]>::try_from(len).ok())
        .map(|len| u32::from_be_bytes(len) as usize)
        .and_then(|len| blob.get(4..4usize.checked_add(len)?))
        .and_then(|name| std::str::from_utf8(name).ok());
    name.unwrap_or("unknown").to_owned()
}
