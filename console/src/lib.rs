//! The operator console of dnsd: a client of its control API, the live TUI and the
//! scriptable operator commands.

pub mod client;
