//! The wall clock, read in one place: milliseconds since the Unix epoch, as the pure
//! controller takes them with every input (it never reads a clock itself).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::controller::Millis;

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}
