//! The soak's checker: from what the clients were told and what the members hold at the
//! end, what was lost and whether two members ever took writes at once. Pure: the run
//! collects the evidence, this judges it (and its tests feed it by hand).
//!
//! - **Acknowledged** writes are those a member answered "on disk" for.
//! - **Lost from the live data**: acknowledged, but not in the final primary's data. That
//!   is the mirroring window of a failover (writes the old primary took after its last
//!   pass), and it is allowed, as long as the record is in a kept folder that a dnsd
//!   event reported.
//! - **Silently lost**: acknowledged, in neither. Must be 0. Those found in a kept folder
//!   that no event reported are told apart (the write survives, but nobody was told where),
//!   from those found nowhere or only in another member's live data.
//! - **Two writers**: each (member, epoch) in which writes were accepted is a *reign*,
//!   from its first to its last accepted write (the members' one clock). Two reigns of
//!   different members that overlap in time mean two members accepted writes at once.
//!   Must be 0 with fencing or demote configured.
//! - **Refused yet on disk**: a write the member refused must never be there.
//! - **Crashes**: dnsd exited or panicked. Must be 0.
//! - **Conflicting answers** (cluster mode): DNS answers of different terminal servers
//!   naming different primaries for longer than the lease plus one watch. Must be 0.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::client::Ack;
use crate::stats;

/// What the run collected.
#[derive(Debug, Default, Clone)]
pub struct Evidence {
    pub acks: Vec<Ack>,
    pub refused: BTreeSet<u64>,
    pub indeterminate: BTreeSet<u64>,
    pub final_primary: String,
    /// Records in the final primary's data.
    pub live: BTreeSet<u64>,
    /// Records in kept folders that a dnsd event reported, and which folder.
    pub kept: BTreeMap<u64, String>,
    /// Where else the records found in neither were seen, for the diagnosis.
    pub elsewhere: BTreeMap<u64, Vec<Seen>>,
    /// Every terminal server that exited or panicked, with how.
    pub crashes: Vec<String>,
    /// Cluster mode: intervals of conflicting answers; `None` with one terminal server.
    pub conflicting_answers: Option<Vec<String>>,
    /// Whether dnsd settled at the end (every member up and synced after the last write).
    pub converged: bool,
}

/// Where a record missing from the final primary and from every reported folder was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    /// In a member's live data (not the final primary's).
    Live { node: String },
    /// In a kept folder on a member that no event reported.
    Unreported { node: String, dir: String },
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seen::Live { node } => write!(f, "{node}'s live data"),
            Seen::Unreported { node, dir } => write!(f, "{node}:{dir}, which no event reported"),
        }
    }
}

/// Which invariant a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Broken {
    NoWrites,
    SilentlyLost,
    KeptUnreported,
    TwoWriters,
    RefusedOnDisk,
    Crash,
    ConflictingAnswers,
    NotSettled,
}

/// One broken invariant, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub broken: Broken,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A reign: a member accepting writes in one epoch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Reign {
    pub node: String,
    pub epoch: u64,
}

/// Two reigns of different members that accepted writes at the same time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overlap {
    pub first: Reign,
    pub second: Reign,
    /// From the later start to the earlier end, ns since the Unix epoch.
    pub from_ns: u64,
    pub to_ns: u64,
    /// Writes each accepted inside the overlap.
    pub writes: (usize, usize),
}

/// The acknowledged writes one reign lost from the live data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Episode {
    pub reign: Reign,
    pub lost: usize,
    /// Of those, how many a reported kept folder holds.
    pub kept: usize,
    pub first_seq: u64,
    pub last_seq: u64,
    /// From its first lost write to its last, ms.
    pub span_ms: f64,
}

/// An acknowledged write found in neither the live data nor a reported kept folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lost {
    pub ack: Ack,
    pub elsewhere: Vec<Seen>,
}

impl Lost {
    fn describe(&self) -> String {
        let seen: Vec<String> = self.elsewhere.iter().map(Seen::to_string).collect();
        format!(
            "#{} ({} epoch {}; seen: {})",
            self.ack.seq,
            self.ack.node,
            self.ack.epoch,
            if seen.is_empty() {
                "nowhere".to_owned()
            } else {
                seen.join(", ")
            }
        )
    }
}

/// The checker's findings.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub acknowledged: usize,
    pub refused: usize,
    pub indeterminate: usize,
    pub final_primary: String,
    pub lost_live: usize,
    pub lost_live_kept: usize,
    /// Found nowhere, or only in another member's live data.
    pub lost_silently: Vec<Lost>,
    /// Found only in kept folders that no event reported.
    pub kept_unreported: Vec<Lost>,
    pub episodes: Vec<Episode>,
    /// Writes lost from the live data per episode (min, median, p95, max, n).
    pub lost_per_episode: Value,
    pub two_writer: Vec<Overlap>,
    /// The union of the overlaps, ms.
    pub two_writer_ms: f64,
    pub refused_on_disk: Vec<u64>,
    pub crashes: Vec<String>,
    pub conflicting_answers: Option<Vec<String>>,
    pub converged: bool,
}

impl Verdict {
    /// Every invariant broken; empty when the run passes.
    pub fn violations(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        let mut push = |broken, message: String| v.push(Violation { broken, message });
        if self.acknowledged == 0 {
            push(
                Broken::NoWrites,
                "no write was acknowledged: the soak checked nothing".to_owned(),
            );
        }
        let some = |lost: &[Lost]| -> String {
            lost.iter()
                .take(5)
                .map(Lost::describe)
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !self.lost_silently.is_empty() {
            push(
                Broken::SilentlyLost,
                format!(
                    "{} acknowledged write(s) silently lost (neither in {}'s data nor in any kept folder): {}",
                    self.lost_silently.len(),
                    self.final_primary,
                    some(&self.lost_silently)
                ),
            );
        }
        if !self.kept_unreported.is_empty() {
            push(
                Broken::KeptUnreported,
                format!(
                    "{} acknowledged write(s) only in kept folders that no event reported: {}",
                    self.kept_unreported.len(),
                    some(&self.kept_unreported)
                ),
            );
        }
        if let Some(o) = self.two_writer.first() {
            push(
                Broken::TwoWriters,
                format!(
                    "{} interval(s) in which two members accepted writes ({:.0} ms in all), e.g. {} (epoch {}) and {} (epoch {}) for {:.0} ms",
                    self.two_writer.len(),
                    self.two_writer_ms,
                    o.first.node,
                    o.first.epoch,
                    o.second.node,
                    o.second.epoch,
                    (o.to_ns - o.from_ns) as f64 / 1e6
                ),
            );
        }
        if let Some(first) = self.refused_on_disk.first() {
            push(
                Broken::RefusedOnDisk,
                format!(
                    "{} refused write(s) are on the final primary's disk, e.g. #{first}",
                    self.refused_on_disk.len()
                ),
            );
        }
        for crash in &self.crashes {
            push(Broken::Crash, format!("dnsd crashed: {crash}"));
        }
        if let Some(conflicts) = self.conflicting_answers.as_ref().filter(|c| !c.is_empty()) {
            push(
                Broken::ConflictingAnswers,
                format!(
                    "{} interval(s) of conflicting DNS answers: {}",
                    conflicts.len(),
                    conflicts.join("; ")
                ),
            );
        }
        if !self.converged {
            push(
                Broken::NotSettled,
                "dnsd did not settle after the faults were healed (members up, synced, no move under way)".to_owned(),
            );
        }
        v
    }
}

/// Judges the evidence.
pub fn check(e: &Evidence) -> Verdict {
    let mut acks = e.acks.clone();
    acks.sort_by_key(|a| (a.at_ns, a.seq));

    // Reigns and their windows.
    let mut reigns: BTreeMap<Reign, Vec<u64>> = BTreeMap::new();
    for a in &acks {
        reigns
            .entry(Reign {
                node: a.node.clone(),
                epoch: a.epoch,
            })
            .or_default()
            .push(a.at_ns);
    }
    let mut two_writer = Vec::new();
    let list: Vec<(&Reign, &Vec<u64>)> = reigns.iter().collect();
    for (i, (ra, ta)) in list.iter().enumerate() {
        for (rb, tb) in &list[i + 1..] {
            if ra.node == rb.node {
                continue;
            }
            let (a0, a1) = (ta[0], ta[ta.len() - 1]);
            let (b0, b1) = (tb[0], tb[tb.len() - 1]);
            let (from, to) = (a0.max(b0), a1.min(b1));
            if from <= to {
                let inside = |t: &Vec<u64>| t.iter().filter(|&&x| x >= from && x <= to).count();
                let (first, second) = if a0 <= b0 { (ra, rb) } else { (rb, ra) };
                let (wf, ws) = if a0 <= b0 {
                    (inside(ta), inside(tb))
                } else {
                    (inside(tb), inside(ta))
                };
                two_writer.push(Overlap {
                    first: (*first).clone(),
                    second: (*second).clone(),
                    from_ns: from,
                    to_ns: to,
                    writes: (wf, ws),
                });
            }
        }
    }
    two_writer.sort_by_key(|o| o.from_ns);
    let two_writer_ms = union_ms(two_writer.iter().map(|o| (o.from_ns, o.to_ns)));

    // Losses, grouped by the reign that took the writes.
    let mut lost_silently = Vec::new();
    let mut kept_unreported = Vec::new();
    let mut by_reign: BTreeMap<Reign, Vec<&Ack>> = BTreeMap::new();
    for a in &acks {
        if e.live.contains(&a.seq) {
            continue;
        }
        by_reign
            .entry(Reign {
                node: a.node.clone(),
                epoch: a.epoch,
            })
            .or_default()
            .push(a);
        if !e.kept.contains_key(&a.seq) {
            let lost = Lost {
                ack: a.clone(),
                elsewhere: e.elsewhere.get(&a.seq).cloned().unwrap_or_default(),
            };
            if lost
                .elsewhere
                .iter()
                .any(|s| matches!(s, Seen::Unreported { .. }))
            {
                kept_unreported.push(lost);
            } else {
                lost_silently.push(lost);
            }
        }
    }
    let mut episodes: Vec<Episode> = by_reign
        .into_iter()
        .map(|(reign, lost)| {
            let first = lost.first().map_or(0, |a| a.at_ns);
            let last = lost.last().map_or(0, |a| a.at_ns);
            Episode {
                reign,
                lost: lost.len(),
                kept: lost.iter().filter(|a| e.kept.contains_key(&a.seq)).count(),
                first_seq: lost.iter().map(|a| a.seq).min().unwrap_or(0),
                last_seq: lost.iter().map(|a| a.seq).max().unwrap_or(0),
                span_ms: last.saturating_sub(first) as f64 / 1e6,
            }
        })
        .collect();
    episodes.sort_by_key(|ep| ep.first_seq);
    let sizes: Vec<f64> = episodes.iter().map(|ep| ep.lost as f64).collect();
    let lost_live: usize = episodes.iter().map(|ep| ep.lost).sum();
    let lost_live_kept: usize = episodes.iter().map(|ep| ep.kept).sum();

    Verdict {
        acknowledged: acks.len(),
        refused: e.refused.len(),
        indeterminate: e.indeterminate.len(),
        final_primary: e.final_primary.clone(),
        lost_live,
        lost_live_kept,
        lost_silently,
        kept_unreported,
        episodes,
        lost_per_episode: stats::summary(&sizes),
        two_writer,
        two_writer_ms,
        refused_on_disk: e.refused.intersection(&e.live).copied().collect(),
        crashes: e.crashes.clone(),
        conflicting_answers: e.conflicting_answers.clone(),
        converged: e.converged,
    }
}

/// The total length of a union of intervals (ns), in ms.
fn union_ms(intervals: impl Iterator<Item = (u64, u64)>) -> f64 {
    let mut v: Vec<(u64, u64)> = intervals.collect();
    v.sort_unstable();
    let mut total = 0u64;
    let mut current: Option<(u64, u64)> = None;
    for (a, b) in v {
        current = match current {
            Some((c0, c1)) if a <= c1 => Some((c0, c1.max(b))),
            Some((c0, c1)) => {
                total += c1 - c0;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((c0, c1)) = current {
        total += c1 - c0;
    }
    total as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(seq: u64, node: &str, epoch: u64, at_ms: u64) -> Ack {
        Ack {
            seq,
            client: seq % 2,
            node: node.to_owned(),
            epoch,
            at_ns: at_ms * 1_000_000,
        }
    }

    /// h1 in epoch 1 takes 1-4, fails over to h2 (epoch 2) which takes 5-6; h2 lacks 3
    /// and 4, which h1's resync kept.
    fn failover() -> Evidence {
        Evidence {
            acks: vec![
                ack(1, "h1", 1, 100),
                ack(2, "h1", 1, 200),
                ack(3, "h1", 1, 300),
                ack(4, "h1", 1, 400),
                ack(5, "h2", 2, 1500),
                ack(6, "h2", 2, 1600),
            ],
            final_primary: "h2".into(),
            live: [1, 2, 5, 6].into(),
            kept: [
                (3, "h1:/srv/data.dnsd-kept/epoch-2-pass-7".to_owned()),
                (4, "h1:/srv/data.dnsd-kept/epoch-2-pass-7".to_owned()),
            ]
            .into(),
            converged: true,
            ..Evidence::default()
        }
    }

    #[test]
    fn a_failover_that_kept_its_window_passes() {
        let v = check(&failover());
        assert_eq!(v.acknowledged, 6);
        assert_eq!((v.lost_live, v.lost_live_kept), (2, 2));
        assert_eq!(v.episodes.len(), 1);
        assert_eq!(v.episodes[0].reign.node, "h1");
        assert_eq!((v.episodes[0].first_seq, v.episodes[0].last_seq), (3, 4));
        assert!(v.two_writer.is_empty());
        assert!(v.violations().is_empty(), "{:?}", v.violations());
    }

    #[test]
    fn a_write_in_no_reported_folder_is_lost_or_unreported() {
        let mut e = failover();
        e.kept.remove(&3);
        e.kept.remove(&4);
        e.elsewhere.insert(
            4,
            vec![Seen::Unreported {
                node: "h1".into(),
                dir: "/srv/data.dnsd-kept/epoch-2-pass-7".into(),
            }],
        );
        let v = check(&e);
        assert_eq!(v.lost_silently.len(), 1);
        assert_eq!(v.lost_silently[0].ack.seq, 3);
        assert_eq!(v.kept_unreported.len(), 1);
        let violations = v.violations();
        assert_eq!(
            violations.iter().map(|v| v.broken).collect::<Vec<_>>(),
            [Broken::SilentlyLost, Broken::KeptUnreported]
        );
        assert!(
            violations[0]
                .message
                .contains("#3 (h1 epoch 1; seen: nowhere)")
        );
        assert!(
            violations[1].message.contains(
                "#4 (h1 epoch 1; seen: h1:/srv/data.dnsd-kept/epoch-2-pass-7, which no event reported)"
            ),
            "{violations:?}"
        );
    }

    #[test]
    fn an_old_primary_writing_after_the_new_one_started_is_two_writers() {
        let mut e = failover();
        // h1 (partitioned, not fenced) goes on taking writes after h2 began.
        e.acks.push(ack(7, "h1", 1, 1550));
        e.acks.push(ack(8, "h1", 1, 1700));
        e.kept.insert(7, "h1:k".into());
        e.kept.insert(8, "h1:k".into());
        let v = check(&e);
        assert_eq!(v.two_writer.len(), 1);
        let o = &v.two_writer[0];
        assert_eq!(
            (o.first.node.as_str(), o.second.node.as_str()),
            ("h1", "h2")
        );
        assert_eq!((o.from_ns, o.to_ns), (1_500_000_000, 1_600_000_000));
        assert_eq!(o.writes, (1, 2));
        assert!((v.two_writer_ms - 100.0).abs() < 1e-9);
        assert_eq!(v.violations()[0].broken, Broken::TwoWriters);
    }

    #[test]
    fn a_failback_to_the_first_member_is_not_two_writers() {
        let mut e = failover();
        e.acks.push(ack(7, "h1", 3, 2000));
        e.live.insert(7);
        e.final_primary = "h1".into();
        assert!(check(&e).two_writer.is_empty());
    }

    #[test]
    fn refusals_on_disk_crashes_conflicts_and_no_writes_are_violations() {
        let mut e = failover();
        e.refused.insert(6);
        e.crashes.push("ts1 exited with signal 6".into());
        e.conflicting_answers = Some(vec!["ts1 h1, ts2 h2 for 9 s".into()]);
        e.converged = false;
        assert_eq!(check(&e).violations().len(), 4);
        let none = check(&Evidence {
            converged: true,
            ..Evidence::default()
        });
        assert_eq!(none.violations()[0].broken, Broken::NoWrites);
    }

    #[test]
    fn overlapping_intervals_count_once() {
        let ms = 1_000_000;
        assert!(
            (union_ms([(0, 10 * ms), (5 * ms, 20 * ms), (30 * ms, 31 * ms)].into_iter()) - 21.0)
                .abs()
                < 1e-9
        );
        assert_eq!(union_ms(std::iter::empty()), 0.0);
    }
}
