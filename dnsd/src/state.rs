//! Persistence of the controller's decisions (primaries, epochs, flags) under
//! `state.dir`, so that a restarted daemon keeps the same primaries.
//!
//! Writes are atomic: a temporary file is written and fsynced, renamed over the state
//! file, and the directory is fsynced. A state file that cannot be parsed is moved
//! aside (never deleted) and reported; the daemon then starts from the configuration.
//! A lock file keeps two daemons from sharing one state directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::controller::Persisted;

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
/// Version of the file format; a file with another version is set aside, not guessed at.
const FORMAT_VERSION: u32 = 1;

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {path}: {error}")]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot lock {path}: {error}")]
    Lock {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("state directory {dir} is in use by another dnsd (lock {path} is held)")]
    Locked { dir: PathBuf, path: PathBuf },
    #[error(
        "cannot read state file {path}: {error}; dnsd does not start without the roles it holds there: make it readable, or move it aside to start from the configuration"
    )]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("state file {path} is unusable ({problem}) and could not be moved aside: {error}")]
    MoveAside {
        path: PathBuf,
        problem: String,
        error: std::io::Error,
    },
    #[error("cannot write state file {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// What was found in the state directory at start.
#[derive(Debug)]
pub enum Loaded {
    /// No state file: a first start.
    Fresh,
    /// The previous run's state.
    State(Persisted),
    /// The file was unusable; it now lives at `moved_to`.
    SetAside { problem: String, moved_to: PathBuf },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u32,
    state: Persisted,
}

/// Why a stored state (a file's or etcd's bytes) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("format version {0} is not {FORMAT_VERSION}")]
    Version(u32),
    #[error("not valid state JSON")]
    Json(#[from] serde_json::Error),
}

/// The state as stored: in the state file, and in etcd for a cluster.
pub fn encode(state: &Persisted) -> Vec<u8> {
    let envelope = Envelope {
        version: FORMAT_VERSION,
        state: state.clone(),
    };
    // A struct of strings, numbers and maps always serialises.
    serde_json::to_vec_pretty(&envelope).unwrap_or_default()
}

/// Reads what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Result<Persisted, DecodeError> {
    let envelope: Envelope = serde_json::from_slice(bytes)?;
    if envelope.version != FORMAT_VERSION {
        return Err(DecodeError::Version(envelope.version));
    }
    Ok(envelope.state)
}

/// An open, locked state directory.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    file: PathBuf,
    /// Held for the life of the store; the OS releases the lock when it is closed.
    _lock: File,
}

impl StateStore {
    /// Creates the directory if needed (mode 0700) and takes its lock.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| StateError::CreateDir {
                path: dir.to_owned(),
                error,
            })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| StateError::Lock {
                path: lock_path.clone(),
                error,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    dir: dir.to_owned(),
                    path: lock_path,
                });
            }
            Err(fs::TryLockError::Error(error)) => {
                return Err(StateError::Lock {
                    path: lock_path,
                    error,
                });
            }
        }
        Ok(StateStore {
            dir: dir.to_owned(),
            file: dir.join(STATE_FILE),
            _lock: lock,
        })
    }

    /// Path of the state file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Reads the state file; an unparsable one is moved aside and reported.
    pub fn load(&self, now_ms: u64) -> Result<Loaded, StateError> {
        let bytes = match fs::read(&self.file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Fresh),
            Err(error) => {
                return Err(StateError::Read {
                    path: self.file.clone(),
                    error,
                });
            }
        };
        let problem = match decode(&bytes) {
            Ok(state) => return Ok(Loaded::State(state)),
            Err(problem) => crate::controller::describe(&problem),
        };
        let moved_to = self.dir.join(format!("{STATE_FILE}.unusable-{now_ms}"));
        fs::rename(&self.file, &moved_to).map_err(|error| StateError::MoveAside {
            path: self.file.clone(),
            problem: problem.clone(),
            error,
        })?;
        Ok(Loaded::SetAside { problem, moved_to })
    }

    /// Writes the state atomically: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self, state: &Persisted) -> Result<(), StateError> {
        let err = |error| StateError::Write {
            path: self.file.clone(),
            error,
        };
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let body = encode(state);
        {
            let mut f = File::create(&tmp).map_err(err)?;
            f.write_all(&body).map_err(err)?;
            f.write_all(b"\n").map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        fs::rename(&tmp, &self.file).map_err(err)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::PersistedService;

    fn sample() -> Persisted {
        Persisted {
            serial: 12,
            services: vec![PersistedService {
                passes: 0,
                name: "www".into(),
                primary: "app2".into(),
                epoch: 3,
                paused: true,
                watermarks: Default::default(),
                resyncing: vec![],
                switchover_to: None,
                quarantined: Default::default(),
            }],
            maintenance: vec!["app3".into()],
        }
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state")).unwrap();
        assert!(matches!(store.load(1).unwrap(), Loaded::Fresh));
        store.save(&sample()).unwrap();
        match store.load(2).unwrap() {
            Loaded::State(s) => assert_eq!(s, sample()),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join("state/state.json.tmp").exists());
    }

    #[test]
    fn corrupt_file_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        fs::write(store.path(), b"{ not json").unwrap();
        match store.load(77).unwrap() {
            Loaded::SetAside { problem, moved_to } => {
                assert!(problem.starts_with("not valid state JSON"), "{problem}");
                assert_eq!(moved_to, dir.path().join("state.json.unusable-77"));
                assert_eq!(fs::read(&moved_to).unwrap(), b"{ not json");
            }
            other => panic!("{other:?}"),
        }
        assert!(!store.path().exists());
        assert!(matches!(store.load(78).unwrap(), Loaded::Fresh));
    }

    #[test]
    fn other_format_version_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        fs::write(
            store.path(),
            br#"{"version": 9, "state": {"serial": 1, "services": [], "maintenance": []}}"#,
        )
        .unwrap();
        match store.load(5).unwrap() {
            Loaded::SetAside { problem, .. } => assert_eq!(problem, "format version 9 is not 1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_second_store_on_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateStore::open(dir.path()).unwrap();
        let second = StateStore::open(dir.path()).unwrap_err();
        assert!(matches!(second, StateError::Locked { .. }), "{second}");
    }
}
