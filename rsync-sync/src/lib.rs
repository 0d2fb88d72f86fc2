//! SSH sessions (ssh2) and rsync mirror passes driven over them.
//!
//! The crate knows nothing of DNS, roles or consoles. It offers the pieces a
//! terminal server needs to mirror one member's data to another:
//!
//! - [`quote`]: POSIX single-quote quoting, so no argument reaches a remote shell unquoted;
//! - [`ssh`]: [`ssh::Session`] with host keys verified against a known_hosts file, key
//!   authentication, timeouts and keepalive, running quoted commands;
//! - [`connector`]: one live session per host, reconnected with capped, jittered backoff;
//! - [`rsync`]: a pass runs `rsync` on the source member and pushes to the destination
//!   over ssh, streaming `--info=progress2` and parsing `--stats`, with failures classified;
//! - [`config`]: the `[mirror]` section of the configuration file and its validation;
//! - [`oneshot`]: one scripted run of passes from host A to host B, its report, exit class
//!   and printing, for any command that plans one (`rsync-sync`, `dnsd sync`);
//! - [`cli`]: the `rsync-sync` command line: explicit hosts and paths, and a file holding
//!   only a `[mirror]` table.
//!
//! All I/O here is blocking (ssh2 is); async callers run it on `spawn_blocking` or a thread.

pub mod cli;
pub mod config;
pub mod connector;
pub mod oneshot;
pub mod quote;
pub mod rsync;
pub mod ssh;
