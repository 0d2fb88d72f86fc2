//! What can be wrong with a configuration: one [`Problem`] per key, and the error that
//! lists them all.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a configuration, named by its key path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// Where, e.g. `node[2].address` or `heartbeat.timeout`.
    pub path: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or is not valid TOML.
    #[error("cannot read configuration {path}: {message}")]
    Read { path: PathBuf, message: String },
    /// The file was read but its content is wrong; every problem is listed.
    #[error("{} problem(s) in configuration {}:\n{}", problems.len(), path.display(), ProblemList(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {p}")?;
        }
        Ok(())
    }
}
