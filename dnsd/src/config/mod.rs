//! The terminal server's configuration: one TOML file, `DNSD_` environment overrides,
//! and a validation pass that names the key path of every problem it finds.
//!
//! Parsing happens in two layers. The `Raw*` structs mirror the file: durations,
//! addresses and names are kept as the strings the operator wrote, so that a bad value
//! does not stop the deserializer at the first mistake. [`RawConfig::validate`] then
//! checks everything and either returns the typed [`Config`] or the full list of
//! [`Problem`]s. Unknown keys are collected while deserializing (every one of them,
//! with its path) and refused like any other problem.
//!
//! Layout: `raw` holds the file as written and its parsing (unknown keys collected);
//! `validate` turns it into this module's typed [`Config`] or the list of problems.

use std::path::Path;

mod model;
mod problem;
mod raw;
#[cfg(test)]
mod tests;
mod validate;

pub use model::{
    AddrPrefix, CHECK_PLACEHOLDERS, CheckProbe, Config, ControlConfig, ControlTcp,
    ControlTransport, DnsConfig, FlapConfig, HOOK_PLACEHOLDERS, Hooks, NOTIFY_RETRY_MAX,
    NameserverConfig, NodeConfig, RestartConfig, ServiceCheck, ServiceConfig, SoaTimers,
    StateConfig, TsigAlgorithm, TsigConfig,
};
pub use problem::{ConfigError, Problem};
pub use raw::{
    ENV_PREFIX, ParseFailure, RawCheck, RawConfig, RawControl, RawDns, RawHeartbeat, RawNameserver,
    RawNode, RawService, RawState, RawTsig, parse,
};
pub use validate::parse_duration;

// ---------------------------------------------------------------------------
// Loading.

/// Reads `path` and applies `DNSD_*` overrides from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// Like [`load`], with the environment given explicitly (tests use this).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let raw = parse(&text, env).map_err(|e| match e {
        ParseFailure::Syntax(message) => ConfigError::Read {
            path: path.to_owned(),
            message,
        },
        ParseFailure::Problems(problems) => ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        },
    })?;
    raw.validate().map_err(|problems| ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    })
}
