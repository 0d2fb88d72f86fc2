//! Secrets the control API reads from files, the bearer token and the TLS key: each file
//! must be readable by its owner only, and nothing here ever prints what it holds.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use super::error::ControlError;

/// Reads a file that must be readable by its owner only; `what` names it in errors
/// ("control token file", "TLS key file"). The mode is checked on the opened file, so
/// what is read is what was checked.
pub(super) fn read_owner_only(what: &'static str, path: &Path) -> Result<Vec<u8>, ControlError> {
    let read_error = |error| ControlError::ReadSecret {
        what,
        path: path.to_owned(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(ControlError::UnsafeSecret {
            what,
            path: path.to_owned(),
            problem: "is readable by others than its owner: chmod 600 it",
        });
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(read_error)?;
    Ok(bytes)
}

/// A bearer token. Its `Debug` does not print it.
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(****)")
    }
}

impl Token {
    const WHAT: &'static str = "control token file";

    /// Reads a token file: it must be readable by its owner only and hold at least 16
    /// characters (surrounding white space aside).
    pub fn read(path: &Path) -> Result<Token, ControlError> {
        let bytes = read_owner_only(Self::WHAT, path)?;
        let token = bytes.trim_ascii();
        if token.len() < 16 {
            return Err(ControlError::UnsafeSecret {
                what: Self::WHAT,
                path: path.to_owned(),
                problem: "holds a token shorter than 16 characters",
            });
        }
        Ok(Token(Arc::from(token)))
    }

    /// Constant-time comparison with a presented token.
    pub(super) fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        // Lengths are not secret; contents are compared without early exit.
        self.0.len() == presented.len() && bool::from(self.0.as_ref().ct_eq(presented))
    }
}
