//! The soak's fault plan, drawn from a seed before anything runs: which kinds of fault, in
//! what order, how far apart they start and how long each holds. The same seed and mix give
//! the same plan on every machine (the generator is SplitMix64, written out here so that no
//! library upgrade changes it). Who a fault hits is resolved only when it starts, against
//! dnsd's view at that moment ("the primary", "a secondary"), so the hosts hit can differ
//! between two runs of one plan; the kinds and their order cannot.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// SplitMix64 (Steele, Lea and Flood, 2014): a 64-bit state, one add and a mix per number.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0); the modulo bias is below 2^-40 for the small
    /// `n` used here.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A uniform fraction in `[0, 1)`.
    pub fn fraction(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.fraction() < p
    }

    /// A duration between `lo_ms` and `hi_ms` milliseconds, inclusive.
    pub fn millis(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        Duration::from_millis(lo_ms + self.below(hi_ms.saturating_sub(lo_ms) + 1))
    }
}

/// The kinds of fault the soak injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Every process of a member dies (its data stays); revived when the fault ends.
    Crash,
    /// Only the traffic between the terminal server and the primary is dropped.
    Partition,
    /// A member's link goes down: nobody reaches it, it reaches nobody.
    Cut,
    /// A member's link holds every frame for a while (hundreds of ms).
    Slow,
    /// A member's link drops a fraction of frames (and holds the rest a little).
    Lossy,
    /// The operator's `failover`.
    Failover,
    /// The operator moves a live primary: `promote` of a secondary, or `failback`.
    Switchover,
    /// Cluster mode: kill -9 a terminal server (restarted when the fault ends).
    KillTs,
    /// Cluster mode: a terminal server loses etcd.
    EtcdPartition,
}

impl FaultKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Crash,
        FaultKind::Partition,
        FaultKind::Cut,
        FaultKind::Slow,
        FaultKind::Lossy,
        FaultKind::Failover,
        FaultKind::Switchover,
        FaultKind::KillTs,
        FaultKind::EtcdPartition,
    ];

    /// The name used in `--mix` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Partition => "partition",
            FaultKind::Cut => "cut",
            FaultKind::Slow => "slow",
            FaultKind::Lossy => "lossy",
            FaultKind::Failover => "failover",
            FaultKind::Switchover => "switchover",
            FaultKind::KillTs => "kill_ts",
            FaultKind::EtcdPartition => "etcd_partition",
        }
    }

    /// Whether the kind only exists with several terminal servers on etcd.
    pub fn needs_cluster(self) -> bool {
        matches!(self, FaultKind::KillTs | FaultKind::EtcdPartition)
    }

    /// Whether the kind is an operator's action rather than a breakage (nothing to undo).
    pub fn is_operator(self) -> bool {
        matches!(self, FaultKind::Failover | FaultKind::Switchover)
    }

    /// How long a fault of this kind holds before it is undone: (least, most) in ms.
    fn hold_ms(self) -> (u64, u64) {
        match self {
            FaultKind::Crash => (1_000, 10_000),
            FaultKind::Partition => (2_000, 10_000),
            FaultKind::Cut => (1_000, 8_000),
            FaultKind::Slow | FaultKind::Lossy => (2_000, 8_000),
            FaultKind::KillTs | FaultKind::EtcdPartition => (2_000, 10_000),
            FaultKind::Failover | FaultKind::Switchover => (0, 0),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--mix` that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MixError {
    #[error("{0:?} is not KIND=WEIGHT")]
    Syntax(String),
    #[error(
        "unknown fault kind {0:?} (crash, partition, cut, slow, lossy, failover, switchover, kill_ts, etcd_partition)"
    )]
    Kind(String),
    #[error("weight {0:?} is not a whole number")]
    Weight(String),
    #[error("every weight is 0")]
    Empty,
}

/// How often each kind is drawn, relative to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(Vec<(FaultKind, u32)>);

impl Mix {
    /// The standalone default: member crashes most, then partitions and cuts, then link
    /// impairments and the operator's moves.
    pub fn standalone() -> Mix {
        Mix(vec![
            (FaultKind::Crash, 3),
            (FaultKind::Partition, 2),
            (FaultKind::Cut, 2),
            (FaultKind::Slow, 1),
            (FaultKind::Lossy, 1),
            (FaultKind::Failover, 1),
            (FaultKind::Switchover, 1),
        ])
    }

    /// The cluster default: the standalone mix, plus kills of a terminal server and
    /// partitions of one from etcd, each as often as a partition.
    pub fn cluster() -> Mix {
        let mut mix = Mix::standalone();
        mix.0.push((FaultKind::KillTs, 2));
        mix.0.push((FaultKind::EtcdPartition, 2));
        mix.0.sort();
        mix
    }

    /// Reads `crash=3,partition=2,...`; kinds left out weigh 0.
    pub fn parse(text: &str) -> Result<Mix, MixError> {
        let mut weights = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (kind, weight) = item
                .split_once('=')
                .ok_or_else(|| MixError::Syntax(item.to_owned()))?;
            let kind = FaultKind::ALL
                .into_iter()
                .find(|k| k.name() == kind.trim())
                .ok_or_else(|| MixError::Kind(kind.trim().to_owned()))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| MixError::Weight(weight.trim().to_owned()))?;
            weights.retain(|(k, _)| *k != kind);
            weights.push((kind, weight));
        }
        weights.retain(|(_, w)| *w > 0);
        if weights.is_empty() {
            return Err(MixError::Empty);
        }
        weights.sort();
        Ok(Mix(weights))
    }

    /// The kinds with a weight above 0.
    pub fn kinds(&self) -> impl Iterator<Item = FaultKind> + '_ {
        self.0.iter().map(|(k, _)| *k)
    }

    fn pick(&self, rng: &mut SplitMix64) -> FaultKind {
        let total: u64 = self.0.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut at = rng.below(total);
        for (kind, weight) in &self.0 {
            if at < u64::from(*weight) {
                return *kind;
            }
            at -= u64::from(*weight);
        }
        // Unreachable with a non-empty mix; the first kind is as good as any.
        self.0.first().map_or(FaultKind::Crash, |(k, _)| *k)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, w)| format!("{k}={w}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// Whom a fault hits, resolved when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The service's primary as dnsd names it.
    Primary,
    /// A secondary: the `pick`-th (modulo their number) of those free of faults.
    Secondary,
    /// Any member: the `pick`-th (modulo their number) of those free of faults.
    Member,
    /// Nobody in particular (the operator's failover).
    Service,
    /// A terminal server (cluster mode).
    TerminalServer,
}

/// One fault of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    /// Its position in the plan, from 0.
    pub index: usize,
    pub kind: FaultKind,
    pub target: Target,
    /// How long after the previous fault started this one starts.
    pub after: Duration,
    /// How long it holds before it is undone (zero for the operator's moves).
    pub hold: Duration,
    /// For `slow` and `lossy`: how long each frame is held.
    pub delay: Duration,
    /// For `lossy`: the fraction of frames dropped in each direction.
    pub loss: f64,
    /// A random number that picks among the eligible hosts when the fault starts.
    pub pick: u64,
}

/// The first `count` faults drawn from `seed` with `mix`. Starts are 0.5 to 4 s apart and
/// most faults hold 1 to 10 s, so some overlap.
pub fn plan(seed: u64, mix: &Mix, count: usize) -> Vec<Planned> {
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|index| {
            let kind = mix.pick(&mut rng);
            let after = rng.millis(500, 4_000);
            let (lo, hi) = kind.hold_ms();
            let hold = rng.millis(lo, hi);
            let half = rng.chance(0.5);
            let target = match kind {
                FaultKind::Partition => Target::Primary,
                FaultKind::Crash | FaultKind::Cut | FaultKind::Slow | FaultKind::Lossy => {
                    if half {
                        Target::Primary
                    } else {
                        Target::Member
                    }
                }
                FaultKind::Failover => Target::Service,
                FaultKind::Switchover => Target::Secondary,
                FaultKind::KillTs | FaultKind::EtcdPartition => Target::TerminalServer,
            };
            let (delay, loss) = match kind {
                FaultKind::Slow => (rng.millis(50, 400), 0.0),
                FaultKind::Lossy => (rng.millis(5, 50), 0.05 + rng.fraction() * 0.25),
                _ => (Duration::ZERO, 0.0),
            };
            Planned {
                index,
                kind,
                target,
                after,
                hold,
                delay,
                loss,
                pick: rng.next_u64(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_gives_its_reference_sequence() {
        // The first outputs for seed 0 (as in the reference implementation).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn one_seed_one_plan() {
        let mix = Mix::standalone();
        assert_eq!(plan(15, &mix, 50), plan(15, &mix, 50));
        assert_ne!(plan(15, &mix, 50), plan(16, &mix, 50));
        // A longer plan begins with the shorter one.
        assert_eq!(plan(15, &mix, 500)[..50], plan(15, &mix, 50)[..]);
    }

    #[test]
    fn plans_draw_every_kind_of_the_mix_and_only_those() {
        let mix = Mix::parse("crash=1,partition=1,switchover=1").unwrap();
        let p = plan(7, &mix, 200);
        for kind in mix.kinds() {
            assert!(p.iter().any(|f| f.kind == kind), "{kind} never drawn");
        }
        assert!(p.iter().all(|f| mix.kinds().any(|k| k == f.kind)));
        assert!(p.iter().all(|f| f.after >= Duration::from_millis(500)));
        assert!(
            p.iter()
                .filter(|f| f.kind == FaultKind::Partition)
                .all(|f| f.target == Target::Primary)
        );
    }

    #[test]
    fn the_default_mix_overlaps_faults() {
        let p = plan(1, &Mix::standalone(), 100);
        let overlapping = p.windows(2).filter(|w| w[0].hold > w[1].after).count();
        assert!(overlapping > 10, "{overlapping} overlaps");
    }

    #[test]
    fn the_cluster_mix_adds_the_terminal_server_faults() {
        let mix = Mix::cluster();
        assert_eq!(
            mix.to_string(),
            "crash=3,partition=2,cut=2,slow=1,lossy=1,failover=1,switchover=1,kill_ts=2,etcd_partition=2"
        );
        assert_eq!(Mix::parse(&mix.to_string()).unwrap(), mix);
        let p = plan(15, &mix, 200);
        assert!(p.iter().any(|f| f.kind == FaultKind::KillTs));
        assert!(
            p.iter()
                .filter(|f| f.kind.needs_cluster())
                .all(|f| f.target == Target::TerminalServer)
        );
    }

    #[test]
    fn mixes_parse_and_refuse() {
        assert_eq!(
            Mix::parse("cut=2, crash=1").unwrap().to_string(),
            "crash=1,cut=2"
        );
        assert_eq!(
            Mix::standalone().to_string(),
            Mix::parse(&Mix::standalone().to_string())
                .unwrap()
                .to_string()
        );
        assert!(matches!(Mix::parse("crash"), Err(MixError::Syntax(_))));
        assert!(matches!(Mix::parse("smash=1"), Err(MixError::Kind(_))));
        assert!(matches!(Mix::parse("crash=x"), Err(MixError::Weight(_))));
        assert!(matches!(Mix::parse("crash=0"), Err(MixError::Empty)));
    }
}
