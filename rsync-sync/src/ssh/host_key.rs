//! Host key trust, readable on its own: the known_hosts file read with libssh2's
//! known-hosts API, the host key algorithms asked for so that the key we list is the one
//! presented, and the presented key matched against the file. A key that is not in the
//! file, or differs from its entry there, is refused with its fingerprint and what an
//! operator should check; nothing is ever added to the file.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ssh2::{CheckResult, KnownHostFileKind, MethodType};
use tracing::debug;

use super::error::SshError;
use super::fingerprint::{HostKey, blob_key_type};

/// The known_hosts file as libssh2 read it, for one connection's handshake.
pub(super) struct KnownHosts {
    inner: ssh2::KnownHosts,
    path: PathBuf,
}

impl KnownHosts {
    /// Reads `path` (OpenSSH format, hashed host names allowed) into `session`'s
    /// known-hosts store. A missing or unreadable file is an error: nothing is trusted
    /// without it.
    pub(super) fn read(session: &ssh2::Session, host: &str, path: &Path) -> Result<Self, SshError> {
        let mut inner = session.known_hosts().map_err(|error| SshError::Handshake {
            host: host.to_owned(),
            error,
        })?;
        inner
            .read_file(path, KnownHostFileKind::OpenSSH)
            .map_err(|error| SshError::KnownHosts {
                path: path.to_owned(),
                error,
            })?;
        Ok(KnownHosts {
            inner,
            path: path.to_owned(),
        })
    }

    /// Asks the server for a host key of a type this file holds for `host`, as OpenSSH
    /// does; otherwise a server with several host keys could present one we do not list
    /// and be reported as changed. Hashed entries count too, since their host cannot be
    /// read. Call before the handshake.
    pub(super) fn prefer_listed_algorithms(&self, session: &ssh2::Session, host: &str, port: u16) {
        let Ok(entries) = self.inner.hosts() else {
            return;
        };
        let names = host_names(host, port);
        let mut wanted: Vec<&'static str> = Vec::new();
        for entry in &entries {
            let listed = match entry.name() {
                Some(name) => names.iter().any(|n| n == name),
                None => true,
            };
            if !listed {
                continue;
            }
            let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(entry.key()) else {
                continue;
            };
            for algorithm in algorithms_for(&blob_key_type(&blob)) {
                if !wanted.contains(algorithm) {
                    wanted.push(algorithm);
                }
            }
        }
        let supported = session
            .supported_algs(MethodType::HostKey)
            .unwrap_or_default();
        wanted.retain(|a| supported.contains(a));
        if !wanted.is_empty() {
            let prefs = wanted.join(",");
            if let Err(error) = session.method_pref(MethodType::HostKey, &prefs) {
                debug!(%host, %prefs, %error, "cannot set host key preference");
            }
        }
    }

    /// Matches the key blob `host` presented on `port` against the file: the key when it
    /// is listed for that host, a refusal naming its fingerprint when it is not there or
    /// differs.
    pub(super) fn check(&self, host: &str, port: u16, blob: &[u8]) -> Result<HostKey, SshError> {
        let key = HostKey::from_blob(blob);
        match self.inner.check_port(host, port, blob) {
            CheckResult::Match => {
                debug!(%host, port, %key, "host key verified");
                Ok(key)
            }
            CheckResult::NotFound => Err(SshError::HostKeyUnknown {
                host: host.to_owned(),
                port,
                key,
                known_hosts: self.path.clone(),
            }),
            CheckResult::Mismatch => Err(SshError::HostKeyChanged {
                host: host.to_owned(),
                port,
                key,
                known_hosts: self.path.clone(),
            }),
            CheckResult::Failure => Err(SshError::HostKeyCheck {
                host: host.to_owned(),
                known_hosts: self.path.clone(),
            }),
        }
    }
}

/// Host key algorithms libssh2 may negotiate for a key type found in known_hosts.
fn algorithms_for(key_type: &str) -> &'static [&'static str] {
    match key_type {
        "ssh-ed25519" => &["ssh-ed25519"],
        "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
        "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        "ssh-dss" => &["ssh-dss"],
        _ => &[],
    }
}

/// Names under which a known_hosts line may list `host` on `port`.
fn host_names(host: &str, port: u16) -> [String; 2] {
    [host.to_owned(), format!("[{host}]:{port}")]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::error::SshErrorKind;

    /// The fixture host key's blob (see fixtures/capture.sh).
    fn fixture_blob() -> Vec<u8> {
        let public = include_str!("../../fixtures/host_key.pub");
        let base64 = public.split_whitespace().nth(1).unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(base64)
            .unwrap()
    }

    /// A known_hosts file with `lines`, read as a handshake would read it.
    fn known_hosts(dir: &Path, lines: &[String]) -> KnownHosts {
        let path = dir.join("known_hosts");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let session = ssh2::Session::new().unwrap();
        KnownHosts::read(&session, "test", &path).unwrap()
    }

    fn line(names: &str, blob: &[u8]) -> String {
        let key = base64::engine::general_purpose::STANDARD.encode(blob);
        format!("{names} ssh-ed25519 {key}")
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // The host key of the sshd that produced the fixtures, what `ssh-keygen -lf` printed
        // for it, and OpenSSH's own warning naming it (all from fixtures/capture.sh).
        let keygen = include_str!("../../fixtures/host_key.fingerprint");
        let warning = include_str!("../../fixtures/hostkey_changed.stderr");
        let key = HostKey::from_blob(&fixture_blob());
        assert_eq!(key.key_type, "ssh-ed25519");
        assert_eq!(
            keygen.split_whitespace().nth(1),
            Some(key.fingerprint.as_str())
        );
        // ssh ends this warning's lines with CRLF.
        let named = format!("{}.", key.fingerprint);
        assert!(warning.lines().any(|l| l.trim_end() == named), "{warning}");
        assert_eq!(key.to_string(), format!("ssh-ed25519 {}", key.fingerprint));
    }

    #[test]
    fn key_type_of_a_truncated_blob_is_unknown() {
        assert_eq!(blob_key_type(&[0, 0, 0, 20, b's']), "unknown");
        assert_eq!(blob_key_type(&[]), "unknown");
    }

    #[test]
    fn a_listed_key_matches_and_others_are_refused_with_their_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let blob = fixture_blob();
        // Another ed25519 key: the same blob with one byte of the key itself changed.
        let mut other = blob.clone();
        let last = other.len() - 1;
        other[last] ^= 0x01;
        let known = known_hosts(
            dir.path(),
            &[
                line("10.0.0.1", &blob),
                line("[10.0.0.2]:2222", &blob),
                line("10.0.0.3", &other),
            ],
        );
        let fingerprint = HostKey::from_blob(&blob).fingerprint;

        let key = known.check("10.0.0.1", 22, &blob).unwrap();
        assert_eq!(key.fingerprint, fingerprint);
        known.check("10.0.0.2", 2222, &blob).unwrap();

        // Not listed at all, or listed for another port only: unknown.
        for (host, port) in [("10.0.0.9", 22), ("10.0.0.2", 22)] {
            let error = known.check(host, port, &blob).unwrap_err();
            assert!(matches!(error, SshError::HostKeyUnknown { .. }), "{error}");
            assert_eq!(error.kind(), SshErrorKind::HostKey);
            assert_eq!(error.host_key().unwrap().fingerprint, fingerprint);
            let text = error.to_string();
            assert!(
                text.contains(&fingerprint) && text.contains("is unknown"),
                "{text}"
            );
        }

        // Listed with another key: changed, never accepted.
        let error = known.check("10.0.0.3", 22, &blob).unwrap_err();
        assert!(matches!(error, SshError::HostKeyChanged { .. }), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("has CHANGED") && text.contains(&fingerprint),
            "{text}"
        );
    }

    #[test]
    fn a_missing_known_hosts_file_is_a_setup_error() {
        let dir = tempfile::tempdir().unwrap();
        let session = ssh2::Session::new().unwrap();
        let missing = dir.path().join("nope");
        let Err(error) = KnownHosts::read(&session, "test", &missing) else {
            panic!("a missing known_hosts file was read");
        };
        assert_eq!(error.kind(), SshErrorKind::Setup);
        assert!(error.to_string().contains("nope"), "{error}");
    }

    #[test]
    fn algorithms_follow_the_listed_key_type() {
        assert_eq!(algorithms_for("ssh-ed25519"), ["ssh-ed25519"]);
        assert_eq!(algorithms_for("ssh-rsa")[0], "rsa-sha2-512");
        assert!(algorithms_for("ssh-unknown").is_empty());
        assert_eq!(
            host_names("10.0.0.1", 2222),
            ["10.0.0.1".to_owned(), "[10.0.0.1]:2222".to_owned()]
        );
    }
}
