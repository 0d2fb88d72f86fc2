//! The operator console of dnsd: a client of its control API, the live TUI and the
//! scriptable operator commands, and the demo that runs a terminal server on a pool of
//! three members on one machine.
//!
//! Layers: [`client`] talks to dnsd; [`app`] holds the TUI's state and rules without a
//! terminal; [`ui`] draws it; [`tui`] runs the terminal loop; [`cli`] is the command
//! line (scriptable commands); [`plan`] says in words what an action will do, for both;
//! [`demo`] sets up the demo pool.

pub mod app;
pub mod cli;
pub mod client;
pub mod demo;
pub mod plan;
pub mod tui;
pub mod ui;
pub mod units;

#[cfg(test)]
mod fixtures;
