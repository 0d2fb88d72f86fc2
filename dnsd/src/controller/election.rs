//! Who may be promoted, and who is: a member's eligibility, the round-robin election
//! from the failed primary's position, and the failover decision (promote, promote the
//! freshest by policy, or strand the service).

use std::fmt;

use dnsd_api::EventKind;
use heartbeat::Health;

use super::ids::{NodeId, ServiceId};
use super::orders::{Effect, Fx};
use super::spec::{Election, Millis, NoCandidate, seconds};
use super::state::{Controller, Initiator, ServiceState};

/// Why a member may not be promoted right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It is the primary already.
    IsPrimary,
    /// Its heartbeat says it is down.
    Down,
    /// Not enough probes yet to call it up.
    HealthUnknown,
    /// An operator put it in maintenance.
    Maintenance,
    /// Its `promote` hook failed recently.
    PromoteFailed,
    /// Back from down and its resync has not completed.
    Resyncing,
    /// No pass to it has ever completed.
    NeverSynced,
    /// Its last complete pass is older than `max_lag`.
    Lagging { lag: Millis, max_lag: Millis },
    /// The service's check fails on it (its host may be up).
    CheckFailing,
    /// The service's check has not decided about it yet.
    CheckUnknown,
    /// Its health changed too often lately: quarantined until `until` (`left` from now).
    Quarantined { until: Millis, left: Millis },
    /// Eligible, but under `election = "freshest"` a member whose health (or service
    /// check) has no verdict yet holds a later complete copy, pass `fresher`, than this
    /// one's `own`: a failover waits for that verdict rather than promote an older copy.
    AwaitsFresher { fresher: u64, own: u64 },
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::IsPrimary => f.write_str("is the primary"),
            Skip::Down => f.write_str("is down"),
            Skip::HealthUnknown => f.write_str("has not answered enough heartbeats yet"),
            Skip::Maintenance => f.write_str("is in maintenance"),
            Skip::PromoteFailed => f.write_str("failed its promote hook recently"),
            Skip::Resyncing => f.write_str("is resyncing"),
            Skip::NeverSynced => f.write_str("has never completed a sync"),
            Skip::Lagging { lag, max_lag } => write!(
                f,
                "last synced {} ago, more than max_lag {}",
                seconds(*lag),
                seconds(*max_lag)
            ),
            Skip::CheckFailing => f.write_str("fails its service check"),
            Skip::CheckUnknown => f.write_str("has not passed its service check yet"),
            Skip::Quarantined { left, .. } => write!(
                f,
                "is quarantined for flapping ({} left)",
                seconds(left.div_ceil(1000) * 1000)
            ),
            Skip::AwaitsFresher { fresher, own } => write!(
                f,
                "waits: a member with no verdict yet holds pass #{fresher}, this one #{own}"
            ),
        }
    }
}

/// One line of the election explanation: a member, in the order it would be tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node: NodeId,
    pub verdict: Result<(), Skip>,
}

impl Controller {
    /// Whether `n` could be promoted in service `s` now, and if not, why: its own
    /// standing, whoever else there is (see [`Controller::verdicts`] for the election's).
    pub fn eligibility(&self, s: ServiceId, n: NodeId) -> Result<(), Skip> {
        self.eligibility_given(s, n, self.nodes[n.0].health, self.check(s, n))
    }

    /// [`Controller::eligibility`] with this host health and service check verdict.
    fn eligibility_given(
        &self,
        s: ServiceId,
        n: NodeId,
        health: Health,
        check: Option<Health>,
    ) -> Result<(), Skip> {
        let svc = &self.services[s.0];
        let node = &self.nodes[n.0];
        if svc.primary == n {
            return Err(Skip::IsPrimary);
        }
        if node.maintenance {
            return Err(Skip::Maintenance);
        }
        match health {
            Health::Up => {}
            Health::Down => return Err(Skip::Down),
            Health::Unknown => return Err(Skip::HealthUnknown),
        }
        match check {
            None | Some(Health::Up) => {}
            Some(Health::Down) => return Err(Skip::CheckFailing),
            Some(Health::Unknown) => return Err(Skip::CheckUnknown),
        }
        if let Some(until) = self.quarantined_until(s, n) {
            return Err(Skip::Quarantined {
                until,
                left: until - self.now,
            });
        }
        if self.now < node.promote_failed_until {
            return Err(Skip::PromoteFailed);
        }
        if svc.policy.mirrored {
            let Some(ms) = svc.sync_of(n) else {
                return Err(Skip::NeverSynced);
            };
            if ms.resyncing {
                return Err(Skip::Resyncing);
            }
            let Some(w) = &ms.watermark else {
                return Err(Skip::NeverSynced);
            };
            let lag = self.now.saturating_sub(w.at);
            if lag > svc.policy.max_lag {
                return Err(Skip::Lagging {
                    lag,
                    max_lag: svc.policy.max_lag,
                });
            }
        }
        Ok(())
    }

    /// The election's verdict on every member of service `s`, in member order: each one's
    /// [`Controller::eligibility`], except that under `election = "freshest"` the eligible
    /// members [`Skip::AwaitsFresher`] while a member with no verdict yet holds a later copy
    /// than all of them: until its verdict, within its `rise` or `fall` probes.
    pub fn verdicts(&self, s: ServiceId) -> Vec<Result<(), Skip>> {
        let svc = &self.services[s.0];
        let mut verdicts: Vec<_> = svc
            .members
            .iter()
            .map(|&n| self.eligibility(s, n))
            .collect();
        if svc.policy.election == Election::Freshest && svc.policy.mirrored {
            let best = (svc.members.iter().zip(&verdicts))
                .filter(|(_, v)| v.is_ok())
                .map(|(&n, _)| self.pass_of(s, n))
                .max();
            if let Some(best) = best
                && let Some(fresher) = self.unknown_fresher(s, best, |v| v.is_ok())
            {
                for (&n, v) in svc.members.iter().zip(&mut verdicts) {
                    if v.is_ok() {
                        let own = self.pass_of(s, n);
                        *v = Err(Skip::AwaitsFresher { fresher, own });
                    }
                }
            }
        }
        verdicts
    }

    /// The latest complete pass held by a member of service `s` whose host health or
    /// service check has no verdict yet, when it is later than `than` and that member,
    /// once it answers, would pass `admits`. Such a member exists only at start (a
    /// restarted terminal server, a new leader) or when one was just added, and only
    /// until the heartbeat or check decides, within `rise` or `fall` probes.
    fn unknown_fresher(
        &self,
        s: ServiceId,
        than: u64,
        admits: impl Fn(&Result<(), Skip>) -> bool,
    ) -> Option<u64> {
        let svc = &self.services[s.0];
        svc.members
            .iter()
            .filter(|&&n| n != svc.primary && self.serves(s, n) == Health::Unknown)
            .filter(|&&n| {
                let check = self.check(s, n).map(|_| Health::Up);
                admits(&self.eligibility_given(s, n, Health::Up, check))
            })
            .map(|&n| self.pass_of(s, n))
            .filter(|&pass| pass > than)
            .max()
    }

    /// The number of the last complete pass to member `n` of service `s` (0: none).
    fn pass_of(&self, s: ServiceId, n: NodeId) -> u64 {
        self.services[s.0]
            .sync_of(n)
            .and_then(|ms| ms.watermark.as_ref())
            .map_or(0, |w| w.pass)
    }

    /// The members other than the primary, in the order a failover would try them
    /// (round-robin from the primary's position), each with its verdict.
    pub fn election(&self, s: ServiceId) -> Vec<Candidate> {
        let svc = &self.services[s.0];
        let verdicts = self.verdicts(s);
        let len = svc.members.len();
        let pos = svc.slot(svc.primary).map_or(0, |i| i.0);
        (1..len)
            .map(|k| (pos + k) % len)
            .map(|i| Candidate {
                node: svc.members[i],
                verdict: verdicts[i],
            })
            .collect()
    }

    /// The member a failover would promote now, if any.
    pub fn next_candidate(&self, s: ServiceId) -> Option<NodeId> {
        self.choice(s).map(|(n, _)| n)
    }

    /// The member a failover would promote now and why it wins: under
    /// `election = "freshest"` the eligible member holding the latest complete copy
    /// (round-robin order breaks ties), otherwise the first eligible in round-robin order.
    pub fn choice(&self, s: ServiceId) -> Option<(NodeId, String)> {
        let svc = &self.services[s.0];
        let eligible: Vec<NodeId> = self
            .election(s)
            .into_iter()
            .filter(|c| c.verdict.is_ok())
            .map(|c| c.node)
            .collect();
        let first = *eligible.first()?;
        let round_robin = "is the next eligible member in round-robin order".to_owned();
        if svc.policy.election == Election::RoundRobin || !svc.policy.mirrored {
            return Some((first, round_robin));
        }
        let pass = |n: NodeId| self.pass_of(s, n);
        // max_by_key keeps the last of equals: walk the order backwards so the first wins.
        let best = eligible.iter().rev().copied().max_by_key(|&n| pass(n))?;
        let others: Vec<String> = eligible
            .iter()
            .filter(|&&n| n != best)
            .map(|&n| format!("{} #{}", self.node_name(n), pass(n)))
            .collect();
        if others.is_empty() || eligible.iter().all(|&n| pass(n) == pass(best)) {
            return Some((best, round_robin));
        }
        Some((
            best,
            format!(
                "holds the freshest copy (pass #{}; {} only)",
                pass(best),
                others.join(", ")
            ),
        ))
    }

    /// The live member with the most recent complete pass (for `on_no_candidate =
    /// "freshest"`): serving (up, its check passing), not quarantined, not in maintenance,
    /// not resyncing, ever synced.
    fn freshest(&self, s: ServiceId) -> Option<NodeId> {
        let svc = &self.services[s.0];
        svc.members
            .iter()
            .zip(&svc.sync)
            .filter(|&(&n, ms)| {
                let node = &self.nodes[n.0];
                n != svc.primary
                    && self.serves(s, n) == Health::Up
                    && self.quarantined_until(s, n).is_none()
                    && !node.maintenance
                    && self.now >= node.promote_failed_until
                    && !ms.resyncing
            })
            .filter_map(|(&n, ms)| ms.watermark.as_ref().map(|w| ((w.pass, w.at), n)))
            .max_by_key(|&(fresh, _)| fresh)
            .map(|(_, n)| n)
    }

    /// "app2 is down, app3 is in maintenance".
    pub(super) fn explain_skips(&self, s: ServiceId) -> String {
        let parts: Vec<String> = self
            .election(s)
            .into_iter()
            .filter_map(|c| {
                c.verdict
                    .err()
                    .map(|skip| format!("{} {skip}", self.nodes[c.node.0].name))
            })
            .collect();
        if parts.is_empty() {
            "it has no other member".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// The primary does not serve (`cause` says why: "app1 is down"): promote the next
    /// eligible member, or apply the policy.
    pub(super) fn fail_over(&mut self, s: ServiceId, cause: &str, fx: &mut Fx) {
        let old = self.node_name(self.services[s.0].primary).to_owned();
        if let Some((target, why)) = self.choice(s) {
            // Name the members passed over on the way, with why.
            let skipped: Vec<String> = self
                .election(s)
                .into_iter()
                .take_while(|c| c.node != target)
                .filter_map(|c| {
                    c.verdict
                        .err()
                        .map(|skip| format!("{} {skip}", self.nodes[c.node.0].name))
                })
                .collect();
            let skipped = if skipped.is_empty() {
                String::new()
            } else {
                format!(" (skipped: {})", skipped.join(", "))
            };
            let reason = format!("{cause}; {} {why}{skipped}", self.nodes[target.0].name);
            self.start_failover(
                s,
                target,
                EventKind::Failover,
                Initiator::Automatic,
                reason,
                fx,
            );
            return;
        }
        let skips = self.explain_skips(s);
        let policy = self.services[s.0].policy.on_no_candidate;
        // The fallback too waits for a member with no verdict yet that holds a later copy
        // and could be promoted by it (eligible once up, or only lagging).
        let fallback = self.freshest(s).filter(|&target| {
            let admits = |v: &Result<(), Skip>| matches!(v, Ok(()) | Err(Skip::Lagging { .. }));
            self.unknown_fresher(s, self.pass_of(s, target), admits)
                .is_none()
        });
        if policy == NoCandidate::Freshest
            && let Some(target) = fallback
        {
            let age = self.services[s.0]
                .sync_of(target)
                .and_then(|ms| ms.watermark.as_ref())
                .map_or(0, |w| self.now.saturating_sub(w.at));
            let reason = format!(
                "{cause} and no member is eligible ({skips}); promoting the freshest, {}, last synced {} ago, as on_no_candidate = \"freshest\" says",
                self.nodes[target.0].name,
                seconds(age)
            );
            self.start_failover(
                s,
                target,
                EventKind::Failover,
                Initiator::Automatic,
                reason,
                fx,
            );
            return;
        }
        if matches!(self.services[s.0].state, ServiceState::Stranded) {
            return;
        }
        if self.become_stranded(s) {
            let policy_word = match policy {
                NoCandidate::Wait => "on_no_candidate = \"wait\"",
                NoCandidate::Freshest if self.freshest(s).is_some() => {
                    "on_no_candidate = \"freshest\", for a member with no verdict yet that holds a later copy"
                }
                NoCandidate::Freshest => {
                    "on_no_candidate = \"freshest\" but no live member has ever synced"
                }
            };
            let reason = format!(
                "{cause} and no member can take over ({skips}); waiting ({policy_word}); DNS keeps answering {old}"
            );
            let mut e = self.event(EventKind::Stranded, Some(s), reason);
            e.old_primary = Some(old);
            fx.push(Effect::Event(e));
        }
    }
}
