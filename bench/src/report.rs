//! Where results go: one JSON object per line on stdout (and into a results file when one
//! is given), human-readable progress and summaries on stderr.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use serde_json::Value;

/// Writes JSON lines to stdout and, optionally, appends them to a file.
#[derive(Debug)]
pub struct Reporter {
    /// The results file; no `.await` ever happens while this lock is held.
    file: Mutex<Option<File>>,
    /// Whether lines go to stdout too.
    stdout: bool,
}

impl Reporter {
    /// A reporter that also appends every line to `path` (created or truncated).
    pub fn new(path: Option<&Path>) -> anyhow::Result<Reporter> {
        let file = match path {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                Some(File::create(path).with_context(|| format!("creating {}", path.display()))?)
            }
            None => None,
        };
        Ok(Reporter {
            file: Mutex::new(file),
            stdout: true,
        })
    }

    /// A reporter that appends every line to `path` only, not to stdout (a test's record).
    pub fn file_only(path: &Path) -> anyhow::Result<Reporter> {
        Ok(Reporter {
            stdout: false,
            ..Reporter::appending(path)?
        })
    }

    /// A reporter that appends every line to `path` (created if missing), for results kept
    /// across runs (the soak's `soak.jsonl`).
    pub fn appending(path: &Path) -> anyhow::Result<Reporter> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Reporter {
            file: Mutex::new(Some(file)),
            stdout: true,
        })
    }

    /// Prints one record as a JSON line.
    pub fn emit(&self, record: &Value) {
        let line = record.to_string();
        if self.stdout {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
    }
}

/// A line for the human reader, on stderr.
pub fn say(text: impl AsRef<str>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", text.as_ref());
}

/// Formats an optional number with `digits` decimals, or `-`.
pub fn num(value: Option<f64>, digits: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "-".to_owned(),
    }
}
