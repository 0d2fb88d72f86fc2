//! Parsing of rsync's `--stats` report into a typed [`Stats`].
//!
//! The report is a block of `Name: value` lines (`Literal data: 31000 bytes`); the parser
//! picks the fields it knows by name and ignores the rest, so extra lines (verbose output,
//! newer rsync fields) do no harm. Numbers may carry thousands separators (`25,509,104`).

use serde::Serialize;

/// What one rsync pass did, from its `--stats` report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Entries in the file list (files, directories, links...).
    pub files_total: u64,
    /// Entries created on the destination (0 when rsync before 3.1 does not report it).
    pub files_created: u64,
    /// Entries deleted on the destination (0 when rsync before 3.1 does not report it).
    pub files_deleted: u64,
    /// Regular files whose content was updated.
    pub files_transferred: u64,
    /// Total size of all files in the source, in bytes.
    pub total_size: u64,
    /// Total size of the files that were updated, in bytes.
    pub transferred_size: u64,
    /// File data sent as is (what the delta algorithm could not match), in bytes.
    pub literal_bytes: u64,
    /// File data reconstructed from blocks the destination already had, in bytes.
    pub matched_bytes: u64,
    /// Bytes the source's rsync sent (data, checksums and protocol).
    pub bytes_sent: u64,
    /// Bytes the source's rsync received.
    pub bytes_received: u64,
    /// Size of the file list sent, in bytes.
    pub file_list_size: u64,
}

/// Why a `--stats` report could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// A field rsync always prints is not there (not a `--stats` run, or a truncated one).
    #[error("rsync's --stats report lacks {0:?}")]
    Missing(&'static str),
    /// A field's value is not a number.
    #[error("rsync's --stats field {field:?} has an unreadable value {value:?}")]
    Unreadable {
        /// The field name.
        field: &'static str,
        /// The text found.
        value: String,
    },
}

/// Parses a count such as `25509104` or `25,509,104`.
pub(crate) fn parse_count(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || !text.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if !text.chars().all(|c| c.is_ascii_digit() || c == ',') {
        return None;
    }
    text.replace(',', "").parse().ok()
}

impl Stats {
    /// Parses the `--stats` report found among `lines` (other lines are ignored).
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Stats, StatsError> {
        let mut stats = Stats::default();
        let mut seen = [false; FIELDS.len()];
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let Some(index) = FIELDS.iter().position(|f| f.name == name.trim()) else {
                continue;
            };
            let field = &FIELDS[index];
            // The number is the first word: "53 (reg: 51, dir: 2)", "3983000 bytes".
            let word = value.split_whitespace().next().unwrap_or("");
            let number = parse_count(word).ok_or_else(|| StatsError::Unreadable {
                field: field.name,
                value: value.trim().to_owned(),
            })?;
            *(field.slot)(&mut stats) = number;
            seen[index] = true;
        }
        match FIELDS
            .iter()
            .zip(seen)
            .find(|(field, seen)| field.required && !seen)
        {
            Some((field, _)) => Err(StatsError::Missing(field.name)),
            None => Ok(stats),
        }
    }
}

struct Field {
    name: &'static str,
    required: bool,
    slot: fn(&mut Stats) -> &mut u64,
}

const FIELDS: [Field; 11] = [
    Field {
        name: "Number of files",
        required: true,
        slot: |s| &mut s.files_total,
    },
    Field {
        name: "Number of created files",
        required: false,
        slot: |s| &mut s.files_created,
    },
    Field {
        name: "Number of deleted files",
        required: false,
        slot: |s| &mut s.files_deleted,
    },
    Field {
        name: "Number of regular files transferred",
        required: true,
        slot: |s| &mut s.files_transferred,
    },
    Field {
        name: "Total file size",
        required: true,
        slot: |s| &mut s.total_size,
    },
    Field {
        name: "Total transferred file size",
        required: true,
        slot: |s| &mut s.transferred_size,
    },
    Field {
        name: "Literal data",
        required: true,
        slot: |s| &mut s.literal_bytes,
    },
    Field {
        name: "Matched data",
        required: true,
        slot: |s| &mut s.matched_bytes,
    },
    Field {
        name: "File list size",
        required: false,
        slot: |s| &mut s.file_list_size,
    },
    Field {
        name: "Total bytes sent",
        required: true,
        slot: |s| &mut s.bytes_sent,
    },
    Field {
        name: "Total bytes received",
        required: true,
        slot: |s| &mut s.bytes_received,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_fixture(text: &str) -> Result<Stats, StatsError> {
        Stats::parse(text.split(['\r', '\n']))
    }

    #[test]
    fn first_pass_sends_everything_literally() {
        let stats = parse_fixture(include_str!("../../fixtures/initial.stdout")).unwrap();
        assert_eq!(
            stats,
            Stats {
                files_total: 202,
                files_created: 201,
                files_deleted: 0,
                files_transferred: 200,
                total_size: 4_000_000,
                transferred_size: 4_000_000,
                literal_bytes: 4_000_000,
                matched_bytes: 0,
                bytes_sent: 4_011_749,
                bytes_received: 3_827,
                file_list_size: 0,
            }
        );
    }

    #[test]
    fn one_percent_change_is_mostly_matched() {
        let stats = parse_fixture(include_str!("../../fixtures/delta.stdout")).unwrap();
        assert_eq!(
            (
                stats.files_created,
                stats.files_deleted,
                stats.files_transferred
            ),
            (1, 1, 41)
        );
        assert_eq!(
            (stats.literal_bytes, stats.matched_bytes),
            (31_000, 772_000)
        );
        assert_eq!((stats.bytes_sent, stats.bytes_received), (40_418, 7_785));
        assert_eq!(stats.total_size, 3_983_000);
    }

    #[test]
    fn dry_run_and_no_change_report_zero_data() {
        let dry = parse_fixture(include_str!("../../fixtures/dryrun.stdout")).unwrap();
        assert_eq!(
            (dry.files_transferred, dry.literal_bytes, dry.matched_bytes),
            (41, 0, 0)
        );
        let same = parse_fixture(include_str!("../../fixtures/nochange.stdout")).unwrap();
        assert_eq!((same.files_transferred, same.transferred_size), (0, 0));
    }

    #[test]
    fn thousands_separators_are_accepted() {
        assert_eq!(parse_count("25,509,104"), Some(25_509_104));
        assert_eq!(parse_count("0"), Some(0));
        assert_eq!(parse_count("1.2K"), None);
        assert_eq!(parse_count(""), None);
    }

    #[test]
    fn missing_or_bad_fields_are_reported() {
        assert_eq!(
            Stats::parse(["sent 1 bytes"]),
            Err(StatsError::Missing("Number of files"))
        );
        let text = include_str!("../../fixtures/delta.stdout")
            .replace("Literal data: 31000", "Literal data: lots");
        assert_eq!(
            parse_fixture(&text),
            Err(StatsError::Unreadable {
                field: "Literal data",
                value: "lots bytes".into()
            })
        );
    }
}
