//! Objective health: one verdict per member out of the live terminal servers' views, as
//! Redis Sentinel's `sentinelCheckObjectivelyDown` does. Pure: no I/O, and time is a
//! parameter.
//!
//! The rule, for one member, with `n` live observers (every registered terminal server,
//! and any that published a view; one with no opinion on the member counts as unknown):
//!
//! - **down quorum** `q`: the configured `quorum`, else a majority of the live observers
//!   (`n / 2 + 1`). **up quorum** `u`: always a majority.
//! - **Down** when at least `q` observers see it down (Sentinel's ODOWN). Checked first:
//!   with a configured quorum below a majority, "down" wins over "up", as in Sentinel.
//! - **Up** when fewer than `q` see it down and at least `u` see it up.
//! - Otherwise no side has its quorum (views disagree, a tie, observers too few or still
//!   unknown): the **previous verdict holds**. A member that was up stays up and one that
//!   was down stays down until the other side reaches its quorum; one never decided stays
//!   unknown. This is the hysteresis that keeps a split opinion from flapping the
//!   controller's input; each observer's own rise/fall thresholds are the first layer.
//! - When `q > n` nothing can be declared down ([`Verdict::can_declare_down`] is false and
//!   [`Verdict`]'s text says so): e.g. a configured quorum of 3 with 2 terminal servers
//!   alive. Up can still be declared (it needs a majority of the live ones only).
//!
//! Counts are always returned ([`Tally`]), so "down 1/3" can be shown while the verdict
//! stays up. The controller takes [`Verdict::health`] as its health input.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use heartbeat::Health;

use crate::cluster::observe::ClusterViews;

/// How the live observers see one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Observers whose detector says up.
    pub up: u32,
    /// Observers whose detector says down.
    pub down: u32,
    /// Observers that say unknown, or have published no opinion on this member.
    pub unknown: u32,
}

impl Tally {
    /// Every live observer.
    pub fn observers(&self) -> u32 {
        self.up + self.down + self.unknown
    }
}

/// What a verdict rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// At least the down quorum sees the member down.
    DownQuorum,
    /// A majority sees it up, and fewer than the down quorum see it down.
    UpMajority,
    /// Neither side has its quorum: the previous verdict stands.
    Held,
    /// Neither side has its quorum, and there was no verdict before.
    NoQuorum,
}

/// The objective health of one member, with what it rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Up, down, or unknown (never decided).
    pub health: Health,
    /// Why.
    pub basis: Basis,
    /// How the live observers see it.
    pub tally: Tally,
    /// Observers needed to declare it down.
    pub down_quorum: u32,
    /// Observers needed to declare it up.
    pub up_quorum: u32,
    /// Since when the deciding quorum has seen it so (unix ms): the moment the
    /// quorum-th observer's view changed to it, by the observers' clocks, never later
    /// than `now`. `None` for a held or undecided verdict.
    pub since_unix_ms: Option<u64>,
}

impl Verdict {
    /// Whether enough observers are alive for the member to be declared down at all.
    pub fn can_declare_down(&self) -> bool {
        self.tally.observers() >= self.down_quorum
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Tally { up, down, unknown } = self.tally;
        let n = self.tally.observers();
        let health = match self.health {
            Health::Up => "up",
            Health::Down => "down",
            Health::Unknown => "unknown",
        };
        match self.basis {
            Basis::DownQuorum | Basis::UpMajority => f.write_str(health)?,
            Basis::Held => write!(f, "{health} (held: no quorum either way)")?,
            Basis::NoQuorum => f.write_str("unknown (no quorum either way)")?,
        }
        write!(
            f,
            ": down {down}/{n}, up {up}/{n}, unknown {unknown}/{n}; down needs {}, up needs {}",
            self.down_quorum, self.up_quorum
        )?;
        if !self.can_declare_down() {
            write!(
                f,
                "; the quorum of {} is more than the {n} live terminal server(s): nothing can be declared down",
                self.down_quorum
            )?;
        }
        Ok(())
    }
}

/// More than half of `n` (1 when `n` is 0, so that nothing is decided by nobody).
pub fn majority(n: u32) -> u32 {
    n / 2 + 1
}

/// The live observers: registered terminal servers and any that published a view.
fn observers(views: &ClusterViews) -> BTreeSet<&str> {
    views
        .servers
        .keys()
        .chain(views.views.keys())
        .map(String::as_str)
        .collect()
}

/// The number of live observers (see [`Tally::observers`]).
pub fn live_observers(views: &ClusterViews) -> u32 {
    u32::try_from(observers(views).len()).unwrap_or(u32::MAX)
}

/// Observers needed to declare a member down: `configured`, else a majority of `live`.
pub fn down_quorum(configured: Option<u32>, live: u32) -> u32 {
    configured.unwrap_or_else(|| majority(live))
}

/// How the live observers see `member`.
pub fn tally(member: &str, views: &ClusterViews) -> Tally {
    let mut tally = Tally::default();
    for observer in observers(views) {
        let seen = views
            .views
            .get(observer)
            .and_then(|v| v.get(member))
            .map_or(Health::Unknown, |m| m.health);
        match seen {
            Health::Up => tally.up += 1,
            Health::Down => tally.down += 1,
            Health::Unknown => tally.unknown += 1,
        }
    }
    tally
}

/// Sentinel's check alone: at least the down quorum of live observers see `member` down.
pub fn objectively_down(member: &str, views: &ClusterViews, quorum: Option<u32>) -> bool {
    let t = tally(member, views);
    t.down >= down_quorum(quorum, t.observers())
}

/// The verdict on `member`, given the previous verdict's health (`Health::Unknown` at
/// first) and the time now (unix ms, to bound the observers' "since" times).
pub fn evaluate(
    member: &str,
    views: &ClusterViews,
    quorum: Option<u32>,
    previous: Health,
    now_unix_ms: u64,
) -> Verdict {
    let tally = tally(member, views);
    let n = tally.observers();
    let down_quorum = down_quorum(quorum, n);
    let up_quorum = majority(n);
    let (health, basis) = if tally.down >= down_quorum {
        (Health::Down, Basis::DownQuorum)
    } else if tally.up >= up_quorum {
        (Health::Up, Basis::UpMajority)
    } else if previous == Health::Unknown {
        (Health::Unknown, Basis::NoQuorum)
    } else {
        (previous, Basis::Held)
    };
    let since_unix_ms = match basis {
        Basis::DownQuorum => quorum_since(member, views, Health::Down, down_quorum, now_unix_ms),
        Basis::UpMajority => quorum_since(member, views, Health::Up, up_quorum, now_unix_ms),
        Basis::Held | Basis::NoQuorum => None,
    };
    Verdict {
        health,
        basis,
        tally,
        down_quorum,
        up_quorum,
        since_unix_ms,
    }
}

/// [`evaluate`] for every one of `members`, each against its own previous verdict
/// (missing from `previous`: unknown).
pub fn evaluate_all<'a>(
    members: impl IntoIterator<Item = &'a str>,
    views: &ClusterViews,
    quorum: Option<u32>,
    previous: &BTreeMap<String, Health>,
    now_unix_ms: u64,
) -> BTreeMap<String, Verdict> {
    members
        .into_iter()
        .map(|m| {
            let before = previous.get(m).copied().unwrap_or(Health::Unknown);
            (
                m.to_owned(),
                evaluate(m, views, quorum, before, now_unix_ms),
            )
        })
        .collect()
}

/// The moment the `needed`-th observer came to see `member` as `health`: the `needed`-th
/// earliest "since" among them, each capped at `now` (an observer's clock may run ahead).
fn quorum_since(
    member: &str,
    views: &ClusterViews,
    health: Health,
    needed: u32,
    now_unix_ms: u64,
) -> Option<u64> {
    let mut since: Vec<u64> = views
        .views
        .values()
        .filter_map(|v| v.get(member))
        .filter(|m| m.health == health)
        .map(|m| m.since_unix_ms.min(now_unix_ms))
        .collect();
    since.sort_unstable();
    let index = usize::try_from(needed).ok()?.checked_sub(1)?;
    since.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ServerInfo;
    use crate::cluster::observe::MemberView;

    /// Observers and their views under a simulated clock (unix ms). `see` records a view
    /// change at the current time, as an observer's detector would.
    struct Sim {
        now: u64,
        views: ClusterViews,
        quorum: Option<u32>,
        previous: BTreeMap<String, Health>,
    }

    impl Sim {
        fn new(observers: &[&str], quorum: Option<u32>) -> Sim {
            let mut sim = Sim {
                now: 1_000_000,
                views: ClusterViews::default(),
                quorum,
                previous: BTreeMap::new(),
            };
            for o in observers {
                sim.join(o);
            }
            sim
        }

        fn join(&mut self, observer: &str) {
            let info = ServerInfo {
                name: observer.into(),
                contact: None,
            };
            self.views.servers.insert(observer.into(), info);
        }

        /// The observer's lease expired: its registration and view are gone.
        fn vanish(&mut self, observer: &str) {
            self.views.servers.remove(observer);
            self.views.views.remove(observer);
        }

        fn advance(&mut self, ms: u64) {
            self.now += ms;
        }

        fn see(&mut self, observer: &str, member: &str, health: Health) {
            let now = self.now;
            let view = self.views.views.entry(observer.into()).or_default();
            let entry = view.entry(member.into()).or_insert(MemberView {
                health,
                since_unix_ms: now,
                rtt_us: None,
            });
            if entry.health != health {
                *entry = MemberView {
                    health,
                    since_unix_ms: now,
                    rtt_us: None,
                };
            }
        }

        /// Every registered observer sees `member` as `health` now.
        fn everyone_sees(&mut self, member: &str, health: Health) {
            let observers: Vec<String> = self.views.servers.keys().cloned().collect();
            for o in observers {
                self.see(&o, member, health);
            }
        }

        /// Evaluates `member` as the leader would, remembering the verdict for next time.
        fn verdict(&mut self, member: &str) -> Verdict {
            let before = self
                .previous
                .get(member)
                .copied()
                .unwrap_or(Health::Unknown);
            let v = evaluate(member, &self.views, self.quorum, before, self.now);
            self.previous.insert(member.into(), v.health);
            v
        }
    }

    fn tally(up: u32, down: u32, unknown: u32) -> Tally {
        Tally { up, down, unknown }
    }

    #[test]
    fn majority_of_n() {
        assert_eq!([0, 1, 2, 3, 4, 5].map(majority), [1, 1, 2, 2, 3, 3]);
    }

    #[test]
    fn a_member_everyone_sees_up_is_up_since_the_majority_saw_it() {
        let mut sim = Sim::new(&["a", "b", "c"], None);
        sim.see("a", "app1", Health::Up);
        sim.advance(100);
        sim.see("b", "app1", Health::Up);
        sim.advance(100);
        sim.see("c", "app1", Health::Up);
        let v = sim.verdict("app1");
        assert_eq!((v.health, v.basis), (Health::Up, Basis::UpMajority));
        assert_eq!(v.tally, tally(3, 0, 0));
        assert_eq!((v.down_quorum, v.up_quorum), (2, 2));
        assert_eq!(
            v.since_unix_ms,
            Some(1_000_100),
            "the second of three saw it up then"
        );
    }

    #[test]
    fn one_observer_seeing_down_is_reported_but_does_not_decide() {
        let mut sim = Sim::new(&["a", "b", "c"], None);
        sim.everyone_sees("app1", Health::Up);
        sim.verdict("app1");
        sim.advance(500);
        sim.see("a", "app1", Health::Down);
        let v = sim.verdict("app1");
        assert_eq!(v.health, Health::Up);
        assert_eq!(v.tally, tally(2, 1, 0));
        assert!(!objectively_down("app1", &sim.views, None));
        assert_eq!(
            v.to_string(),
            "up: down 1/3, up 2/3, unknown 0/3; down needs 2, up needs 2"
        );
    }

    #[test]
    fn a_quorum_seeing_down_makes_it_down_since_the_quorum_was_reached() {
        let mut sim = Sim::new(&["a", "b", "c"], None);
        sim.everyone_sees("app1", Health::Up);
        assert_eq!(sim.verdict("app1").health, Health::Up);
        sim.advance(1_000);
        sim.see("b", "app1", Health::Down);
        sim.advance(300);
        sim.see("a", "app1", Health::Down);
        let v = sim.verdict("app1");
        assert_eq!((v.health, v.basis), (Health::Down, Basis::DownQuorum));
        assert_eq!(v.tally, tally(1, 2, 0));
        assert_eq!(v.since_unix_ms, Some(1_001_300));
        assert!(objectively_down("app1", &sim.views, None));
        assert_eq!(
            v.to_string(),
            "down: down 2/3, up 1/3, unknown 0/3; down needs 2, up needs 2"
        );
    }

    #[test]
    fn split_views_do_not_flap_the_verdict() {
        // Two observers (a third is dead): majority 2 either way, so one each is a tie.
        let mut sim = Sim::new(&["a", "b"], None);
        sim.see("a", "app1", Health::Up);
        sim.see("b", "app1", Health::Up);
        assert_eq!(sim.verdict("app1").health, Health::Up);
        // b's view flaps; the verdict holds up until both see it down.
        for _ in 0..5 {
            sim.advance(700);
            sim.see("b", "app1", Health::Down);
            let v = sim.verdict("app1");
            assert_eq!((v.health, v.basis), (Health::Up, Basis::Held), "{v}");
            assert_eq!(v.since_unix_ms, None);
            sim.advance(700);
            sim.see("b", "app1", Health::Up);
            assert_eq!(sim.verdict("app1").basis, Basis::UpMajority);
        }
        sim.see("b", "app1", Health::Down);
        sim.see("a", "app1", Health::Down);
        assert_eq!(sim.verdict("app1").health, Health::Down);
        // Coming back: one observer seeing up again is not enough; the verdict holds down.
        sim.advance(700);
        sim.see("a", "app1", Health::Up);
        let v = sim.verdict("app1");
        assert_eq!((v.health, v.basis), (Health::Down, Basis::Held));
        assert_eq!(
            v.to_string(),
            "down (held: no quorum either way): down 1/2, up 1/2, unknown 0/2; down needs 2, up needs 2"
        );
        sim.see("b", "app1", Health::Up);
        assert_eq!(sim.verdict("app1").health, Health::Up);
    }

    #[test]
    fn a_tie_with_no_previous_verdict_is_unknown() {
        let mut sim = Sim::new(&["a", "b", "c", "d"], None);
        sim.see("a", "app1", Health::Up);
        sim.see("b", "app1", Health::Up);
        sim.see("c", "app1", Health::Down);
        sim.see("d", "app1", Health::Down);
        let v = sim.verdict("app1");
        assert_eq!((v.health, v.basis), (Health::Unknown, Basis::NoQuorum));
        assert_eq!((v.down_quorum, v.up_quorum), (3, 3));
        assert_eq!(
            v.to_string(),
            "unknown (no quorum either way): down 2/4, up 2/4, unknown 0/4; down needs 3, up needs 3"
        );
    }

    #[test]
    fn silent_and_unknown_observers_count_as_unknown() {
        // c is registered but has published nothing yet; b has no opinion on app1 yet.
        let mut sim = Sim::new(&["a", "b", "c"], None);
        sim.see("a", "app1", Health::Down);
        sim.see("b", "app1", Health::Unknown);
        sim.see("b", "app2", Health::Up);
        let v = sim.verdict("app1");
        assert_eq!(v.tally, tally(0, 1, 2));
        assert_eq!(v.health, Health::Unknown);
        // A view published without a registration (a race between the two keys) counts.
        sim.views.views.entry("d".into()).or_default();
        assert_eq!(super::tally("app1", &sim.views), tally(0, 1, 3));
    }

    #[test]
    fn vanishing_observers_shrink_the_majority() {
        let mut sim = Sim::new(&["a", "b", "c"], None);
        sim.see("a", "app1", Health::Down);
        sim.see("b", "app1", Health::Up);
        sim.see("c", "app1", Health::Up);
        assert_eq!(sim.verdict("app1").health, Health::Up);
        // Both observers that saw it up die: the one left is a majority of one.
        sim.advance(3_000);
        sim.vanish("b");
        let v = sim.verdict("app1");
        assert_eq!(
            (v.health, v.basis),
            (Health::Up, Basis::Held),
            "a tie of 2 holds: {v}"
        );
        sim.vanish("c");
        let v = sim.verdict("app1");
        assert_eq!((v.health, v.basis), (Health::Down, Basis::DownQuorum));
        assert_eq!((v.down_quorum, v.tally), (1, tally(0, 1, 0)));
        assert_eq!(v.since_unix_ms, Some(1_000_000));
        // Every observer gone: nothing is decided, the last verdict holds.
        sim.vanish("a");
        let v = sim.verdict("app1");
        assert_eq!(
            (v.health, v.basis, v.tally),
            (Health::Down, Basis::Held, tally(0, 0, 0))
        );
        assert_eq!(v.down_quorum, 1);
        assert!(!v.can_declare_down());
    }

    #[test]
    fn a_quorum_larger_than_the_live_observers_cannot_declare_down() {
        let mut sim = Sim::new(&["a", "b"], Some(3));
        sim.see("a", "app1", Health::Up);
        sim.see("b", "app1", Health::Up);
        assert_eq!(
            sim.verdict("app1").health,
            Health::Up,
            "up needs a majority only"
        );
        sim.see("a", "app1", Health::Down);
        sim.see("b", "app1", Health::Down);
        let v = sim.verdict("app1");
        assert_eq!((v.health, v.basis), (Health::Up, Basis::Held));
        assert!(!v.can_declare_down());
        assert!(!objectively_down("app1", &sim.views, Some(3)));
        assert_eq!(
            v.to_string(),
            "up (held: no quorum either way): down 2/2, up 0/2, unknown 0/2; down needs 3, up needs 2; \
             the quorum of 3 is more than the 2 live terminal server(s): nothing can be declared down"
        );
        // A third terminal server joins and agrees: now it can.
        sim.join("c");
        sim.see("c", "app1", Health::Down);
        let v = sim.verdict("app1");
        assert_eq!((v.health, v.tally), (Health::Down, tally(0, 3, 0)));
        assert!(v.can_declare_down());
    }

    #[test]
    fn a_low_configured_quorum_lets_down_win_over_up() {
        let mut sim = Sim::new(&["a", "b", "c"], Some(1));
        sim.see("a", "app1", Health::Down);
        sim.see("b", "app1", Health::Up);
        sim.see("c", "app1", Health::Up);
        let v = sim.verdict("app1");
        assert_eq!((v.health, v.basis), (Health::Down, Basis::DownQuorum));
        assert_eq!((v.down_quorum, v.up_quorum), (1, 2));
        // Up needs nobody seeing it down, with quorum 1.
        sim.see("a", "app1", Health::Up);
        assert_eq!(sim.verdict("app1").health, Health::Up);
    }

    #[test]
    fn since_times_from_clocks_ahead_are_capped_at_now() {
        let mut sim = Sim::new(&["a", "b", "c"], None);
        sim.see("a", "app1", Health::Down);
        sim.see("b", "app1", Health::Down);
        // b's clock runs 5 s ahead of the leader's.
        sim.views
            .views
            .get_mut("b")
            .unwrap()
            .get_mut("app1")
            .unwrap()
            .since_unix_ms = sim.now + 5_000;
        let v = sim.verdict("app1");
        assert_eq!(v.since_unix_ms, Some(sim.now));
    }

    #[test]
    fn no_observers_decide_nothing() {
        let mut sim = Sim::new(&[], None);
        let v = sim.verdict("app1");
        assert_eq!(
            (v.health, v.basis, v.tally),
            (Health::Unknown, Basis::NoQuorum, tally(0, 0, 0))
        );
        assert_eq!((v.down_quorum, v.up_quorum), (1, 1));
        assert!(!v.can_declare_down());
    }

    #[test]
    fn every_member_is_judged_against_its_own_past() {
        let mut sim = Sim::new(&["a", "b"], None);
        sim.see("a", "app1", Health::Up);
        sim.see("b", "app1", Health::Down);
        sim.see("a", "app2", Health::Up);
        sim.see("b", "app2", Health::Down);
        let previous: BTreeMap<String, Health> = [
            ("app1".to_owned(), Health::Up),
            ("app2".to_owned(), Health::Down),
        ]
        .into();
        let all = evaluate_all(
            ["app1", "app2", "app3"],
            &sim.views,
            None,
            &previous,
            sim.now,
        );
        assert_eq!(all["app1"].health, Health::Up);
        assert_eq!(all["app2"].health, Health::Down);
        assert_eq!(all["app3"].health, Health::Unknown);
        assert_eq!(all["app3"].tally, tally(0, 0, 2));
        assert_eq!(live_observers(&sim.views), 2);
    }
}
