//! How the console writes times, sizes and rates: short, fixed forms that fit table
//! cells and read the same in the TUI, the scriptable commands and the snapshots.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time in ms since the Unix epoch (the daemon's unit for every time).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A span of time in at most two units: `850ms`, `4.2s`, `45s`, `3m05s`, `2h03m`, `3d04h`.
pub fn span(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..10_000 => format!("{}.{}s", s, (ms % 1000) / 100),
        10_000..60_000 => format!("{s}s"),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// How long before `now` something happened, in whole units: `now`, `3s ago`, `5m ago`.
pub fn ago(then_ms: u64, now_ms: u64) -> String {
    let d = now_ms.saturating_sub(then_ms) / 1000;
    match d {
        0 => "now".to_owned(),
        1..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        3600..86_400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// A round-trip time given in microseconds: `312µs`, `1.25ms`, `45ms`, `1.2s`.
pub fn rtt(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..10_000 => format!("{}.{:02}ms", us / 1000, (us % 1000) / 10),
        10_000..1_000_000 => format!("{}ms", us / 1000),
        _ => format!("{}.{}s", us / 1_000_000, (us % 1_000_000) / 100_000),
    }
}

/// A byte count with a binary unit: `512B`, `12.0K`, `1.5M`, `3.2G`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// A transfer rate: `1.5M/s`.
pub fn rate(bytes_per_sec: u64) -> String {
    format!("{}/s", bytes(bytes_per_sec))
}

/// An absolute time as RFC 3339 in UTC with milliseconds, for logs read by scripts.
pub fn timestamp(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_use_at_most_two_units() {
        assert_eq!(span(850), "850ms");
        assert_eq!(span(4_250), "4.2s");
        assert_eq!(span(45_000), "45s");
        assert_eq!(span(185_000), "3m05s");
        assert_eq!(span(7_380_000), "2h03m");
        assert_eq!(span(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
    }

    #[test]
    fn ago_counts_whole_units_and_never_goes_negative() {
        assert_eq!(ago(10_000, 10_400), "now");
        assert_eq!(ago(10_000, 13_000), "3s ago");
        assert_eq!(ago(0, 300_000), "5m ago");
        assert_eq!(ago(20_000, 10_000), "now");
    }

    #[test]
    fn rtts_and_sizes() {
        assert_eq!(rtt(312), "312µs");
        assert_eq!(rtt(1_254), "1.25ms");
        assert_eq!(rtt(45_000), "45ms");
        assert_eq!(rtt(1_200_000), "1.2s");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(12 * 1024), "12.0K");
        assert_eq!(bytes(1536 * 1024), "1.5M");
        assert_eq!(bytes(300 * 1024 * 1024), "300M");
        assert_eq!(rate(2 * 1024 * 1024), "2.0M/s");
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
