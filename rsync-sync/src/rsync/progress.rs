//! Parsing of rsync's `--info=progress2` lines (whole-transfer progress).
//!
//! With `--no-human-readable` rsync prints, and rewrites with `\r`, lines such as
//! `   1220000   4%  228.88MB/s    0:00:00 (xfr#6, to-chk=46/202)`: bytes so far, percent of
//! the total, current rate, time estimate, then how many files were transferred and how many
//! of the list remain to be checked (`ir-chk` while incremental recursion is still scanning).

use std::time::Duration;

use serde::Serialize;

/// One whole-transfer progress update of a pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Bytes of file data handled so far (transferred or matched).
    pub bytes: u64,
    /// Percent of the total size handled so far, as rsync estimates it.
    pub percent: u8,
    /// Current transfer rate in bytes per second.
    pub rate_bytes_per_sec: f64,
    /// Estimated time left (rsync prints elapsed time on the last line of a pass).
    pub eta: Option<Duration>,
    /// Files transferred so far (`xfr#N`), absent on lines before the first one.
    pub transfers: Option<u64>,
    /// Files still to check and the file count known so far (`to-chk=A/B` or `ir-chk=A/B`).
    pub to_check: Option<(u64, u64)>,
    /// True while rsync is still building the file list (`ir-chk`), so the totals may grow.
    pub scanning: bool,
}

impl Progress {
    /// Parses one progress line; `None` if the line is something else (stats, messages).
    pub fn parse(line: &str) -> Option<Progress> {
        let mut words = line.split_whitespace();
        let bytes = super::stats::parse_count(words.next()?)?;
        let percent = words.next()?.strip_suffix('%')?.parse().ok()?;
        let rate_bytes_per_sec = parse_rate(words.next()?)?;
        let eta = parse_clock(words.next()?);
        let mut progress = Progress {
            bytes,
            percent,
            rate_bytes_per_sec,
            eta,
            transfers: None,
            to_check: None,
            scanning: false,
        };
        for word in words {
            let word = word.trim_matches(|c| c == '(' || c == ')' || c == ',');
            if let Some(n) = word.strip_prefix("xfr#") {
                progress.transfers = n.parse().ok();
            } else if let Some(counts) = word.strip_prefix("to-chk=") {
                progress.to_check = parse_fraction(counts);
            } else if let Some(counts) = word.strip_prefix("ir-chk=") {
                progress.to_check = parse_fraction(counts);
                progress.scanning = true;
            }
        }
        Some(progress)
    }
}

/// `46/202` into `(46, 202)`.
fn parse_fraction(text: &str) -> Option<(u64, u64)> {
    let (left, right) = text.split_once('/')?;
    Some((left.parse().ok()?, right.parse().ok()?))
}

/// `228.88MB/s` into bytes per second (rsync's rate units are powers of 1024).
fn parse_rate(text: &str) -> Option<f64> {
    let number = text.strip_suffix("/s")?;
    let split = number.find(|c: char| c.is_ascii_alphabetic())?;
    let (value, unit) = number.split_at(split);
    let value: f64 = value.replace(',', "").parse().ok()?;
    let scale = match unit {
        "B" => 1.0,
        "kB" | "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(value * scale)
}

/// `H:MM:SS` (hours unbounded) into a duration; `None` for rsync's `??:??:??` and the like,
/// and for times too long to count in seconds.
fn parse_clock(text: &str) -> Option<Duration> {
    let mut parts = text.rsplit(':');
    let seconds: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let hours: u64 = parts.next().map_or(Some(0), |h| h.parse().ok())?;
    if parts.next().is_some() || seconds >= 60 || minutes >= 60 {
        return None;
    }
    let total = hours
        .checked_mul(3600)?
        .checked_add(minutes * 60 + seconds)?;
    Some(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(fixture: &str) -> Vec<&str> {
        fixture
            .split(['\r', '\n'])
            .filter(|s| !s.trim().is_empty())
            .collect()
    }

    #[test]
    fn parses_a_line_with_counts() {
        let p =
            Progress::parse("       1220000   4%  228.88MB/s    0:00:00 (xfr#6, to-chk=46/202)")
                .unwrap();
        assert_eq!(p.bytes, 1_220_000);
        assert_eq!(p.percent, 4);
        assert!((p.rate_bytes_per_sec - 228.88 * 1024.0 * 1024.0).abs() < 1.0);
        assert_eq!(p.eta, Some(Duration::ZERO));
        assert_eq!(p.transfers, Some(6));
        assert_eq!(p.to_check, Some((46, 202)));
        assert!(!p.scanning);
    }

    #[test]
    fn parses_the_first_line_without_counts_and_long_etas() {
        let p = Progress::parse("          20000   0%    0.00kB/s    0:00:00  ").unwrap();
        assert_eq!((p.bytes, p.transfers, p.to_check), (20_000, None, None));
        let p = Progress::parse("   5,000,000  12%    1.00kB/s   27:46:39 (xfr#1, ir-chk=9/10)")
            .unwrap();
        assert_eq!(p.bytes, 5_000_000);
        assert_eq!(p.eta, Some(Duration::from_secs(27 * 3600 + 46 * 60 + 39)));
        assert!(p.scanning);
        let p = Progress::parse("   5000  12%    1.00kB/s    ??:??:?? ").unwrap();
        assert_eq!(p.eta, None);
    }

    /// Found by the `rsync_output` fuzz target: hours past `u64::MAX / 3600` overflowed
    /// the seconds count (a panic in debug builds, a wrapped, wrong ETA in release).
    #[test]
    fn fuzz_an_eta_too_long_to_count_in_seconds_is_no_eta() {
        let p = Progress::parse("5000 12% 1.00kB/s 5124095576030432:00:00").unwrap();
        assert_eq!((p.bytes, p.eta), (5000, None));
        let p = Progress::parse("5000 12% 1.00kB/s 5124095576030431:00:00").unwrap();
        assert_eq!(
            p.eta,
            Some(Duration::from_secs(5_124_095_576_030_431 * 3600))
        );
        let p = Progress::parse("5000 12% 1.00kB/s 5124095576030431:59:59");
        assert_eq!(p.unwrap().eta, None, "past u64::MAX seconds");
    }

    #[test]
    fn rejects_other_lines() {
        for line in [
            "Number of files: 53 (reg: 51, dir: 2)",
            "sent 264 bytes  received 76 bytes  680.00 bytes/sec",
            "total size is 30  speedup is 0.09",
            "rsync: connection unexpectedly closed (0 bytes received so far) [sender]",
            "",
        ] {
            assert_eq!(Progress::parse(line), None, "{line}");
        }
    }

    #[test]
    fn every_progress_segment_of_a_real_pass_parses_and_grows() {
        let fixture = include_str!("../../fixtures/initial.stdout");
        let stats_start = fixture.find("Number of files").unwrap();
        let progress: Vec<Progress> = segments(&fixture[..stats_start])
            .into_iter()
            .map(|s| Progress::parse(s).unwrap_or_else(|| panic!("unparsed {s:?}")))
            .collect();
        assert!(progress.len() > 200, "{}", progress.len());
        assert!(progress.windows(2).all(|w| w[0].bytes <= w[1].bytes));
        let last = progress.last().unwrap();
        // 200 files of 20000 bytes in the capture.
        assert_eq!(
            (last.bytes, last.percent, last.transfers),
            (4_000_000, 100, Some(200))
        );
        assert_eq!(last.to_check, Some((0, 202)));
    }

    #[test]
    fn incremental_recursion_lines_are_marked_scanning() {
        let fixture = include_str!("../../fixtures/ir_chk.stdout");
        let parsed: Vec<Progress> = segments(fixture)
            .into_iter()
            .filter_map(Progress::parse)
            .collect();
        assert!(parsed.len() > 50);
        assert!(parsed.iter().any(|p| p.scanning && p.to_check.is_some()));
    }
}
