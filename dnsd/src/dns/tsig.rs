//! TSIG (RFC 8945): the key dnsd shares with its secondaries, the check of a signed
//! request, and the signatures on responses, on every message of a transfer and on NOTIFY.
//!
//! The MACs themselves are hickory-proto's (`TSigner`, ring's HMAC); this module only
//! chooses what to sign and what to answer when a signature is wrong. The secret never
//! leaves [`TsigKey`], whose `Debug` shows the key's name and algorithm only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hickory_proto::ProtoError;
use hickory_proto::dnssec::DnsSecError;
use hickory_proto::rr::rdata::tsig::make_tsig_record;
use hickory_proto::rr::rdata::tsig::{TSIG, TsigAlgorithm as WireAlgorithm, TsigError};
use hickory_proto::rr::{Name, Record, TSigResponseContext, TSigner};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::config::{TsigAlgorithm, TsigConfig};

/// Seconds a signature's time may differ from ours (RFC 8945 recommends 300).
const FUDGE: u16 = 300;
/// Shortest secret accepted, in bytes (RFC 8945 section 6: at least half the hash).
const MIN_SECRET: usize = 16;

/// The shared key. Cloning is cheap (the secret is behind an `Arc` in `TSigner`).
#[derive(Clone)]
pub struct TsigKey {
    signer: TSigner,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", self.signer.signer_name())
            .field("algorithm", self.signer.algorithm())
            .field("secret", &"****")
            .finish()
    }
}

/// Why the TSIG key could not be loaded. No variant ever holds the secret.
#[derive(Debug, thiserror::Error)]
pub enum TsigKeyError {
    #[error("cannot read dns.tsig.secret_file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("dns.tsig.secret_file {path} {problem}")]
    Unsafe {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("dns.tsig.name {name:?} is not a DNS name: {error}")]
    Name { name: String, error: ProtoError },
    #[error("TSIG algorithm {algorithm} cannot be used: {error}")]
    Algorithm {
        algorithm: &'static str,
        error: DnsSecError,
    },
}

impl TsigKey {
    /// Reads `dns.tsig`'s secret file: owner-only (mode 0600, like the control token)
    /// and one base64 secret of at least 16 bytes, as `tsig-keygen` and `keymgr -t` print.
    pub fn load(config: &TsigConfig) -> Result<TsigKey, TsigKeyError> {
        let path = &config.secret_file;
        let secret = read_secret(path)?;
        TsigKey::new(&config.name, config.algorithm, secret)
    }

    /// A key from its parts (tests, and [`TsigKey::load`]).
    pub fn new(
        name: &str,
        algorithm: TsigAlgorithm,
        secret: Vec<u8>,
    ) -> Result<TsigKey, TsigKeyError> {
        let key_name = Name::from_ascii(name).map_err(|error| TsigKeyError::Name {
            name: name.to_owned(),
            error,
        })?;
        let wire = match algorithm {
            TsigAlgorithm::HmacSha256 => WireAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => WireAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => WireAlgorithm::HmacSha512,
        };
        let signer = TSigner::new(secret, wire, key_name, FUDGE).map_err(|error| {
            TsigKeyError::Algorithm {
                algorithm: algorithm.name(),
                error,
            }
        })?;
        Ok(TsigKey { signer })
    }

    /// The key's name, as it appears in every TSIG record.
    pub fn name(&self) -> &Name {
        self.signer.signer_name()
    }

    /// hickory's signer, for messages built with hickory (NOTIFY).
    pub(super) fn signer(&self) -> &TSigner {
        &self.signer
    }
}

fn read_secret(path: &Path) -> Result<Vec<u8>, TsigKeyError> {
    let read_error = |error| TsigKeyError::Read {
        path: path.to_owned(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(TsigKeyError::Unsafe {
            path: path.to_owned(),
            problem: "is readable by others than its owner: chmod 600 it",
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| TsigKeyError::Unsafe {
            path: path.to_owned(),
            problem: "does not hold one base64 secret (as `tsig-keygen` or `keymgr -t` print it)",
        })?;
    if secret.len() < MIN_SECRET {
        return Err(TsigKeyError::Unsafe {
            path: path.to_owned(),
            problem: "holds a secret shorter than 16 bytes",
        });
    }
    Ok(secret)
}

/// Seconds since the Unix epoch: TSIG's clock.
pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the TSIG of a request says, once checked.
pub(super) enum Signed {
    /// The request carries no TSIG.
    No,
    /// Signed with our key and verified: the response is signed with it too.
    Valid { key: TsigKey, mac: Vec<u8> },
    /// Signed, but not acceptably: answer NOTAUTH with this TSIG error (RFC 8945
    /// section 5.2), signed or not as the RFC says.
    Invalid {
        error: TsigError,
        context: TSigResponseContext,
    },
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signed::No => f.write_str("No"),
            Signed::Valid { key, .. } => write!(f, "Valid({})", key.name()),
            Signed::Invalid { error, .. } => write!(f, "Invalid({error:?})"),
        }
    }
}

/// Checks the TSIG record `tsig` found at the end of request `raw` (id `id`).
pub(super) fn check(
    raw: &[u8],
    id: u16,
    tsig: Option<&Record<TSIG>>,
    key: Option<&TsigKey>,
    now: u64,
) -> Signed {
    let Some(record) = tsig else {
        return Signed::No;
    };
    let unknown = || Signed::Invalid {
        error: TsigError::BadKey,
        context: TSigResponseContext::unknown_key(id, now, record.name.clone()),
    };
    let Some(key) = key else {
        return unknown();
    };
    if record.name != *key.name() || record.data.algorithm != *key.signer.algorithm() {
        return unknown();
    }
    match key.signer.verify_message_byte(raw, None, true) {
        Err(DnsSecError::TsigWrongKey) => unknown(),
        Err(_) => Signed::Invalid {
            error: TsigError::BadSig,
            context: TSigResponseContext::bad_signature(id, now, key.signer.clone()),
        },
        Ok((mac, _, window)) if !window.contains(&now) => Signed::Invalid {
            error: TsigError::BadTime,
            context: TSigResponseContext::new(
                id,
                now,
                key.signer.clone(),
                mac,
                Some(TsigError::BadTime),
            ),
        },
        Ok((mac, _, _)) => Signed::Valid {
            key: key.clone(),
            mac,
        },
    }
}

/// Room a TSIG record of `key` takes at the end of a response, so that a UDP answer
/// leaves space for it.
pub(super) fn record_len(key: &TsigKey) -> usize {
    // Owner and algorithm names, fixed fields (type, class, TTL, RDLENGTH: 10; time,
    // fudge, MAC size, original id, error, other length: 16) and the MAC (at most 64).
    key.name().len() + 1 + key.signer.algorithm().to_name().len() + 1 + 10 + 16 + 64
}

/// Signs response `buf` (encoded, unsigned) as the first answer to a request whose MAC
/// was `request_mac`; returns the new MAC, which the next message of a transfer chains on.
pub(super) fn sign_first(
    buf: &mut Vec<u8>,
    context: TSigResponseContext,
) -> Result<Vec<u8>, ProtoError> {
    let record = context.sign(buf)?;
    let mac = record.data.mac.clone();
    append(buf, &record)?;
    Ok(mac)
}

/// Signs a later message of a transfer: its MAC covers the previous MAC, the message and
/// the timers only (RFC 8945 section 5.3.1).
pub(super) fn sign_next(
    buf: &mut Vec<u8>,
    key: &TsigKey,
    id: u16,
    previous_mac: &[u8],
    now: u64,
) -> Result<Vec<u8>, ProtoError> {
    let mut tbs = Vec::with_capacity(previous_mac.len() + buf.len() + 10);
    tbs.extend_from_slice(&(previous_mac.len() as u16).to_be_bytes());
    tbs.extend_from_slice(previous_mac);
    tbs.extend_from_slice(buf);
    tbs.extend_from_slice(&((now >> 32) as u16).to_be_bytes());
    tbs.extend_from_slice(&(now as u32).to_be_bytes());
    tbs.extend_from_slice(&FUDGE.to_be_bytes());
    let mac = key
        .signer
        .sign(&tbs)
        .map_err(|e| ProtoError::from(e.to_string()))?;
    let tsig = TSIG::new(
        key.signer.algorithm().clone(),
        now,
        FUDGE,
        mac.clone(),
        id,
        None,
        Vec::new(),
    );
    append(buf, &make_tsig_record(key.name().clone(), tsig))?;
    Ok(mac)
}

/// Appends `record` as the last additional record of message `buf`.
fn append(buf: &mut Vec<u8>, record: &Record<TSIG>) -> Result<(), ProtoError> {
    let mut tail = Vec::with_capacity(128);
    record.emit(&mut BinEncoder::new(&mut tail))?;
    let count = buf
        .get(10..12)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| ProtoError::from("response shorter than a header"))?;
    buf[10..12].copy_from_slice(&count.saturating_add(1).to_be_bytes());
    buf.extend_from_slice(&tail);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, mode: u32, content: &str) -> TsigConfig {
        let path = dir.join("key");
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        TsigConfig {
            name: "xfr.".into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret_file: path,
        }
    }

    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==";

    #[test]
    fn secret_file_must_be_owner_only_base64_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let key = TsigKey::load(&config(dir.path(), 0o600, &format!("{SECRET}\n"))).unwrap();
        assert_eq!(key.name().to_ascii(), "xfr.");
        let shown = format!("{key:?}");
        assert!(!shown.contains(SECRET) && shown.contains("****"), "{shown}");

        let err = TsigKey::load(&config(dir.path(), 0o644, SECRET)).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("is readable by others than its owner: chmod 600 it"),
            "{err}"
        );
        let err = TsigKey::load(&config(dir.path(), 0o600, "not base64!")).unwrap_err();
        assert!(err.to_string().contains("does not hold one base64 secret"));
        assert!(
            !err.to_string().contains("not base64!"),
            "no secret in errors"
        );
        let err = TsigKey::load(&config(dir.path(), 0o600, "c2hvcnQ=")).unwrap_err();
        assert!(err.to_string().ends_with("shorter than 16 bytes"), "{err}");
    }
}
