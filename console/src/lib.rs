//! The operator console of dnsd: a client of its control API, the live TUI and the
//! scriptable operator commands, and the demo that runs a terminal server on a pool of
//! three members on one machine.
//!
//! Layers, each using only those below it:
//!
//! - [`cli`]: the command line; runs the scriptable commands, the live view or the demo;
//! - [`demo`]: sets up the demo pool and adds its keys to the live view through
//!   [`tui::Extension`];
//! - [`tui`]: the terminal loop of the live view; [`ui`] draws the [`app`], which holds
//!   the view's state and rules without a terminal;
//! - below them, each on its own: [`client`] talks to dnsd's control API; [`plan`] says
//!   in words what an action will do; [`render`] writes the status and events as text;
//!   [`operator`] says who is acting; [`launch`] starts and stops the real dnsd (also
//!   for the integration tests and the benchmarks); [`units`] formats times and sizes.

pub mod app;
pub mod cli;
pub mod client;
pub mod demo;
pub mod launch;
pub mod operator;
pub mod plan;
pub mod render;
pub mod tui;
pub mod ui;
pub mod units;

#[cfg(test)]
mod fixtures;
