//! The fuzz target of rsync's output parsers (`fuzz/fuzz_targets/rsync_output.rs`): what
//! any input must satisfy, run by libFuzzer on nightly and by the property tests below on
//! stable (see the `fuzzkit` crate).
//!
//! The input is what a pass printed: its `--stats` report, its progress lines and, for
//! the exit classification, its stderr; its first byte also chooses the exit status.
//! Nothing may panic, and what a parser read must survive being written back in rsync's
//! own format and read again (the round trips).

use std::fmt::Write as _;

use super::stats::parse_count;
use super::{
    FailureKind, Progress, Stats, classify, exit_code_meaning, fingerprint_in, tail_lines,
    telling_line,
};
use crate::ssh::ExitStatus;

/// A message that makes any failed pass a host key failure, whatever its exit code.
const HOST_KEY_MESSAGE: &str = "Host key verification failed.";

/// Checks one input; panics when a property fails.
pub fn rsync_output(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let lines = || text.split(['\r', '\n']);
    let separators = bytes.first().is_some_and(|b| b & 1 == 1);

    if let Ok(stats) = Stats::parse(lines()) {
        let report = render_stats(&stats, separators);
        assert_eq!(
            Stats::parse(report.lines()),
            Ok(stats),
            "the report read back: {report}"
        );
    }
    for line in lines() {
        if let Some(progress) = Progress::parse(line) {
            check_progress(line, progress, separators);
        }
        for word in line.split_whitespace() {
            if let Some(n) = parse_count(word) {
                assert_eq!(parse_count(&with_separators(n)), Some(n), "{word:?}");
            }
        }
    }
    check_failure(&exit_status(bytes), &text);
}

fn check_progress(line: &str, progress: Progress, separators: bool) {
    // A rate of more digits than a double holds reads as infinite: not a rate rsync
    // prints, and not one that can be written back; the rest still round-trips.
    let rate = progress.rate_bytes_per_sec;
    let comparable = Progress {
        rate_bytes_per_sec: if rate.is_finite() { rate } else { 0.0 },
        ..progress
    };
    let again = render_progress(&comparable, separators);
    assert_eq!(
        Progress::parse(&again).as_ref(),
        Some(&comparable),
        "{line:?} written back as {again:?}"
    );
}

/// The exit status the input stands for: its first byte as the code (rsync's codes are
/// all below 0x80), a signal after 0xff, a code from the next four bytes after 0xfe.
fn exit_status(bytes: &[u8]) -> ExitStatus {
    match bytes {
        [0xff, rest @ ..] => ExitStatus::Signal(String::from_utf8_lossy(rest).into_owned()),
        [0xfe, a, b, c, d, ..] => ExitStatus::Code(i32::from_le_bytes([*a, *b, *c, *d])),
        [code, ..] => ExitStatus::Code(i32::from(*code)),
        [] => ExitStatus::Code(0),
    }
}

fn check_failure(status: &ExitStatus, stderr: &str) {
    let kind = classify(status, stderr);
    assert!(!kind.name().is_empty() && !kind.to_string().is_empty());
    match status {
        ExitStatus::Signal(_) => assert_eq!(kind, FailureKind::Other(-1)),
        ExitStatus::Code(code) => {
            assert!(!exit_code_meaning(*code).is_empty());
            // Messages win over codes, and host key messages over every other; the
            // one added is the line that tells, unless the stderr had one already.
            let told = format!("{stderr}\n{HOST_KEY_MESSAGE}\n");
            assert_eq!(classify(status, &told), FailureKind::HostKey);
            if kind != FailureKind::HostKey {
                assert_eq!(
                    telling_line(FailureKind::HostKey, &told),
                    Some(HOST_KEY_MESSAGE)
                );
            }
        }
    }
    let blank = stderr.lines().all(|l| l.trim().is_empty());
    match telling_line(kind, stderr) {
        Some(line) => assert!(
            !line.is_empty() && stderr.lines().any(|l| l.trim() == line),
            "{line:?} is not a line of the stderr"
        ),
        None => assert!(blank, "a stderr with text has no telling line"),
    }
    match fingerprint_in(stderr) {
        Some(fp) => assert!(fp.starts_with("SHA256:") && stderr.contains(fp), "{fp:?}"),
        None => assert!(!stderr.contains("SHA256:")),
    }
    let tail = tail_lines(stderr, 5);
    assert!(tail.len() <= 5 && tail.iter().all(|l| !l.trim().is_empty()));
    assert_eq!(tail.is_empty(), blank);
}

/// `n` with thousands separators, as rsync prints counts without
/// `--no-human-readable`.
fn with_separators(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `stats` as rsync 3.2 prints its `--stats` report.
fn render_stats(s: &Stats, separators: bool) -> String {
    let n = |v: u64| {
        if separators {
            with_separators(v)
        } else {
            v.to_string()
        }
    };
    let mut r = String::new();
    let _ = write!(
        r,
        "\nNumber of files: {} (reg: 1, dir: 1)\n\
         Number of created files: {}\n\
         Number of deleted files: {}\n\
         Number of regular files transferred: {}\n\
         Total file size: {} bytes\n\
         Total transferred file size: {} bytes\n\
         Literal data: {} bytes\n\
         Matched data: {} bytes\n\
         File list size: {}\n\
         File list generation time: 0.001 seconds\n\
         File list transfer time: 0.000 seconds\n\
         Total bytes sent: {}\n\
         Total bytes received: {}\n\n\
         sent 1 bytes  received 2 bytes  6.00 bytes/sec\n\
         total size is 3  speedup is 0.50\n",
        n(s.files_total),
        n(s.files_created),
        n(s.files_deleted),
        n(s.files_transferred),
        n(s.total_size),
        n(s.transferred_size),
        n(s.literal_bytes),
        n(s.matched_bytes),
        n(s.file_list_size),
        n(s.bytes_sent),
        n(s.bytes_received),
    );
    r
}

/// `p` as an `--info=progress2` line.
fn render_progress(p: &Progress, separators: bool) -> String {
    let bytes = if separators {
        with_separators(p.bytes)
    } else {
        p.bytes.to_string()
    };
    let eta = p.eta.map_or("??:??:??".to_owned(), |d| {
        let s = d.as_secs();
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    });
    let mut line = format!(
        "{bytes:>14} {:>3}% {}B/s {eta:>11}",
        p.percent, p.rate_bytes_per_sec
    );
    let check = if p.scanning { "ir-chk" } else { "to-chk" };
    let counts = p
        .to_check
        .map_or("?".to_owned(), |(a, b)| format!("{a}/{b}"));
    match (p.transfers, p.to_check.is_some() || p.scanning) {
        (Some(n), true) => write!(line, " (xfr#{n}, {check}={counts})"),
        (Some(n), false) => write!(line, " (xfr#{n})"),
        (None, true) => write!(line, " ({check}={counts})"),
        (None, false) => Ok(()),
    }
    .unwrap_or_default();
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens of rsync's output, for the mutations to insert.
    const WORDS: &[&[u8]] = &[
        b"Number of files: ",
        b"Literal data: ",
        b"Total bytes sent: ",
        b"Matched data: ",
        b" bytes",
        b"\r",
        b"\n",
        b",",
        b":",
        b"%",
        b"/s",
        b"kB/s",
        b"MB/s",
        b"??:??:??",
        b" (xfr#",
        b"to-chk=",
        b"ir-chk=",
        b"/",
        b"18446744073709551615",
        b"18446744073709551616",
        b"99999999999999999999999",
        b"5124095576030431",
        b"255",
        b"SHA256:",
        b"rsync error: ",
        b"Permission denied (publickey",
        b"No space left on device",
        b"Connection refused",
        b"\xff",
        b"\xfe",
    ];

    #[test]
    fn rsync_output_holds_for_mutated_captures_and_random_bytes() {
        fuzzkit::run(
            "rsync_output",
            5_000,
            fuzzkit::corpus_mutations("rsync_output", WORDS, 256),
            rsync_output,
        );
    }

    #[test]
    fn rsync_output_holds_for_the_corpus_and_the_captures() {
        fuzzkit::replay("rsync_output", rsync_output);
        for capture in [
            include_str!("../../fixtures/initial.stdout"),
            include_str!("../../fixtures/delta.stdout"),
            include_str!("../../fixtures/ir_chk.stdout"),
            include_str!("../../fixtures/hostkey_changed.stderr"),
            include_str!("../../fixtures/nospace.stderr"),
        ] {
            for code in [0u8, 1, 12, 23, 24, 30, 255] {
                let mut input = vec![code];
                input.extend_from_slice(capture.as_bytes());
                rsync_output(&input);
            }
        }
    }

    #[test]
    fn the_writers_match_rsync() {
        assert_eq!(with_separators(25_509_104), "25,509,104");
        assert_eq!(with_separators(100), "100");
        let stats = Stats::parse(include_str!("../../fixtures/delta.stdout").lines()).unwrap();
        assert_eq!(
            Stats::parse(render_stats(&stats, true).lines()),
            Ok(stats.clone())
        );
        let line = "     1,220,000   4% 240000000B/s     0:00:00 (xfr#6, to-chk=46/202)";
        let p = Progress::parse(line).unwrap();
        assert_eq!(render_progress(&p, true), line);
    }
}
