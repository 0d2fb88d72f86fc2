//! The rise/fall failure detector: a pure state machine fed one probe result at a time.
//!
//! It owns no clock and does no I/O, so its behaviour is fully determined by the
//! sequence of results it is given; the monitor task feeds it and the tests drive it
//! directly.

use std::fmt;

/// What the detector currently believes about a target.
///
/// `Unknown` exists so that a freshly started terminal server does not claim a member
/// is up (or down) before it has seen `rise` (or `fall`) consecutive results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Not enough consecutive results yet to decide either way.
    Unknown,
    /// The last `rise` (or more) probes were answered.
    Up,
    /// The last `fall` (or more) probes were missed.
    Down,
}

impl Health {
    /// The stable lower-case name used in logs, metrics and the control API.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of [`Health`], returned by [`Detector::observe`] only when the state moved,
/// so that callers act on edges (promote, log, notify) rather than on levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transition {
    /// The health before the probe result that caused the change.
    pub from: Health,
    /// The health after it; never [`Health::Unknown`].
    pub to: Health,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.from, self.to)
    }
}

/// Hysteresis over probe results, so that one lost packet does not move a service.
///
/// `rise` consecutive answers move `Unknown`/`Down` to `Up`; `fall` consecutive misses
/// move `Unknown`/`Up` to `Down`. A single contrary result resets the streak being
/// counted. A threshold of 0 is a configuration error that callers validate away; the
/// detector does not panic on it and treats it as 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detector {
    rise: u32,
    fall: u32,
    health: Health,
    /// Consecutive answered probes ending with the latest result (0 after a miss).
    answers: u32,
    /// Consecutive missed probes ending with the latest result (0 after an answer).
    misses: u32,
}

impl Detector {
    /// A detector that starts in [`Health::Unknown`], for a target never probed before.
    pub fn new(rise: u32, fall: u32) -> Self {
        Self::with_initial(rise, fall, Health::Unknown)
    }

    /// A detector that starts in `health`, for a target whose state is restored from a
    /// previous run (a restart of the terminal server must not forget that a member was
    /// up and wait `rise` probes before trusting it again).
    pub fn with_initial(rise: u32, fall: u32, health: Health) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            health,
            answers: 0,
            misses: 0,
        }
    }

    /// Feeds one probe result; returns the transition if this result changed the health.
    pub fn observe(&mut self, answered: bool) -> Option<Transition> {
        let to = if answered {
            self.misses = 0;
            self.answers = self.answers.saturating_add(1);
            (self.answers >= self.rise).then_some(Health::Up)
        } else {
            self.answers = 0;
            self.misses = self.misses.saturating_add(1);
            (self.misses >= self.fall).then_some(Health::Down)
        };
        match to {
            Some(to) if to != self.health => {
                let from = std::mem::replace(&mut self.health, to);
                Some(Transition { from, to })
            }
            _ => None,
        }
    }

    /// The current belief about the target.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Consecutive answers ending with the latest result, for displays such as
    /// "2 of 3 answers before up".
    pub fn consecutive_answers(&self) -> u32 {
        self.answers
    }

    /// Consecutive misses ending with the latest result, for displays such as
    /// "1 of 3 misses before down".
    pub fn consecutive_misses(&self) -> u32 {
        self.misses
    }

    /// The effective rise threshold (a configured 0 reads back as 1).
    pub fn rise(&self) -> u32 {
        self.rise
    }

    /// The effective fall threshold (a configured 0 reads back as 1).
    pub fn fall(&self) -> u32 {
        self.fall
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `results` (`'+'` answered, `'-'` missed) and returns every transition with
    /// the 1-based index of the result that caused it.
    fn run(detector: &mut Detector, results: &str) -> Vec<(usize, Transition)> {
        results
            .chars()
            .enumerate()
            .filter_map(|(i, c)| {
                let answered = match c {
                    '+' => true,
                    '-' => false,
                    other => panic!("bad result symbol {other:?}"),
                };
                detector.observe(answered).map(|t| (i + 1, t))
            })
            .collect()
    }

    const fn t(from: Health, to: Health) -> Transition {
        Transition { from, to }
    }

    #[test]
    fn starts_unknown_and_stays_unknown_below_both_thresholds() {
        let mut d = Detector::new(3, 3);
        assert_eq!(d.health(), Health::Unknown);
        assert!(run(&mut d, "++-+--+").is_empty());
        assert_eq!(d.health(), Health::Unknown);
    }

    #[test]
    fn rise_consecutive_answers_make_unknown_up() {
        let mut d = Detector::new(3, 2);
        assert_eq!(
            run(&mut d, "+++"),
            vec![(3, t(Health::Unknown, Health::Up))]
        );
        assert_eq!(d.health(), Health::Up);
        // Further answers are not transitions.
        assert!(run(&mut d, "++++").is_empty());
    }

    #[test]
    fn fall_consecutive_misses_make_unknown_down() {
        let mut d = Detector::new(2, 3);
        assert_eq!(
            run(&mut d, "---"),
            vec![(3, t(Health::Unknown, Health::Down))]
        );
        assert_eq!(d.health(), Health::Down);
        assert!(run(&mut d, "---").is_empty());
    }

    #[test]
    fn up_goes_down_after_fall_misses_and_back_after_rise_answers() {
        let mut d = Detector::with_initial(2, 3, Health::Up);
        assert_eq!(
            run(&mut d, "---++"),
            vec![
                (3, t(Health::Up, Health::Down)),
                (5, t(Health::Down, Health::Up))
            ]
        );
    }

    #[test]
    fn a_single_contrary_result_resets_the_streak() {
        let mut d = Detector::with_initial(3, 3, Health::Up);
        // Two misses, an answer, two misses: never three in a row.
        assert!(run(&mut d, "--+--").is_empty());
        assert_eq!(d.health(), Health::Up);
        assert_eq!(d.consecutive_misses(), 2);
        assert_eq!(d.consecutive_answers(), 0);
        // The third consecutive miss finally counts.
        assert_eq!(run(&mut d, "-"), vec![(1, t(Health::Up, Health::Down))]);

        let mut d = Detector::with_initial(3, 3, Health::Down);
        assert!(run(&mut d, "++-++").is_empty());
        assert_eq!(d.health(), Health::Down);
        assert_eq!(run(&mut d, "+"), vec![(1, t(Health::Down, Health::Up))]);
    }

    #[test]
    fn with_initial_keeps_the_restored_state_until_evidence_contradicts_it() {
        let mut up = Detector::with_initial(2, 2, Health::Up);
        assert_eq!(up.health(), Health::Up);
        assert!(run(&mut up, "+-+").is_empty());

        let mut down = Detector::with_initial(2, 2, Health::Down);
        assert_eq!(down.health(), Health::Down);
        assert!(run(&mut down, "-+-").is_empty());
        assert_eq!(run(&mut down, "++"), vec![(2, t(Health::Down, Health::Up))]);
    }

    #[test]
    fn zero_thresholds_behave_as_one() {
        let mut d = Detector::new(0, 0);
        assert_eq!((d.rise(), d.fall()), (1, 1));
        assert_eq!(
            run(&mut d, "+-+"),
            vec![
                (1, t(Health::Unknown, Health::Up)),
                (2, t(Health::Up, Health::Down)),
                (3, t(Health::Down, Health::Up)),
            ]
        );
    }

    #[test]
    fn display_names_are_stable() {
        assert_eq!(Health::Unknown.to_string(), "unknown");
        assert_eq!(Health::Up.to_string(), "up");
        assert_eq!(Health::Down.to_string(), "down");
        assert_eq!(
            t(Health::Unknown, Health::Down).to_string(),
            "unknown -> down"
        );
    }

    /// The reference model: after each result, look at the whole history so far and
    /// count the run of identical results that ends with it; the health changes when
    /// that run reaches the threshold for its kind, and otherwise stays as it was.
    fn reference(
        rise: u32,
        fall: u32,
        initial: Health,
        results: &[bool],
    ) -> Vec<(Health, Option<Transition>)> {
        let (rise, fall) = (rise.max(1) as usize, fall.max(1) as usize);
        let mut health = initial;
        let mut out = Vec::with_capacity(results.len());
        for end in 1..=results.len() {
            let history = &results[..end];
            let last = history[end - 1];
            let run = history.iter().rev().take_while(|&&r| r == last).count();
            let wanted = match (last, run) {
                (true, n) if n >= rise => Some(Health::Up),
                (false, n) if n >= fall => Some(Health::Down),
                _ => None,
            };
            let transition = match wanted {
                Some(to) if to != health => {
                    let from = health;
                    health = to;
                    Some(Transition { from, to })
                }
                _ => None,
            };
            out.push((health, transition));
        }
        out
    }

    fn any_health() -> impl Strategy<Value = Health> {
        prop_oneof![Just(Health::Unknown), Just(Health::Up), Just(Health::Down)]
    }

    proptest! {
        #[test]
        fn detector_matches_the_reference_model(
            rise in 0u32..6,
            fall in 0u32..6,
            initial in any_health(),
            // Biased runs make long streaks (and so transitions) common.
            results in prop::collection::vec(prop::bool::weighted(0.6), 0..200),
        ) {
            let mut d = Detector::with_initial(rise, fall, initial);
            let expected = reference(rise, fall, initial, &results);
            for (i, (&answered, &(health, transition))) in
                results.iter().zip(expected.iter()).enumerate()
            {
                let got = d.observe(answered);
                prop_assert_eq!(got, transition, "result #{} ({})", i, answered);
                prop_assert_eq!(d.health(), health, "result #{}", i);
                if let Some(t) = got {
                    prop_assert_ne!(t.from, t.to);
                    prop_assert_ne!(t.to, Health::Unknown);
                }
            }
        }
    }
}
