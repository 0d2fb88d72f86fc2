//! Mirroring passes: which are due, ordering them (and hooks), and what a finished pass
//! means for the member's watermark, its resync and the switchover waiting on it.

use dnsd_api::EventKind;
use heartbeat::Health;

use super::ids::{HookId, NodeId, PassId, ServiceId, Slot};
use super::orders::{
    Effect, Fx, Hook, HookOrder, Keep, Kept, PassError, PassKind, PassSummary, SyncOrder,
    Watermark, describe,
};
use super::spec::{MAX_SYNC_BACKOFF, Millis, seconds};
use super::state::Controller;
use super::state::{Pass, ServiceState, SwitchoverStep};

/// A member's mirroring state in one service, for status views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncView {
    pub watermark: Option<Watermark>,
    pub resyncing: bool,
    /// The pass running now: its kind and start.
    pub running: Option<(PassKind, Millis)>,
    pub failures: u32,
    pub last_error: Option<String>,
    /// Earliest start of the next periodic pass.
    pub next_due: Millis,
    pub last: Option<PassSummary>,
}

impl Controller {
    /// Mirroring state of member `n` in service `s`.
    pub fn sync_view(&self, s: ServiceId, n: NodeId) -> Option<SyncView> {
        let ms = self.services[s.0].sync_of(n)?;
        Some(SyncView {
            watermark: ms.watermark.clone(),
            resyncing: ms.resyncing,
            running: ms.pass.as_ref().map(|p| (p.kind, p.started)),
            failures: ms.failures,
            last_error: ms.last_error.clone(),
            next_due: ms.next_due,
            last: ms.last.clone(),
        })
    }

    /// Starts the passes that are due: to every live secondary, one at a time each.
    pub(super) fn schedule_passes(&mut self, s: ServiceId, fx: &mut Fx) {
        let svc = &self.services[s.0];
        if !svc.policy.mirrored || self.nodes[svc.primary.0].health != Health::Up {
            return;
        }
        let due: Vec<Slot> = svc
            .slots()
            .filter(|&i| {
                let n = svc.member(i);
                let ms = svc.sync(i);
                n != svc.primary
                    && self.nodes[n.0].health == Health::Up
                    && ms.pass.is_none()
                    && self.now >= ms.next_due
            })
            .collect();
        for i in due {
            let kind = if self.services[s.0].sync(i).resyncing {
                PassKind::Resync
            } else {
                PassKind::Regular
            };
            self.order_pass(s, i, kind, fx);
        }
    }

    pub(super) fn order_pass(
        &mut self,
        s: ServiceId,
        i: Slot,
        kind: PassKind,
        fx: &mut Fx,
    ) -> PassId {
        let id = PassId(self.next_id());
        let now = self.now;
        let keep = self.services[s.0]
            .sync(i)
            .keep
            .then(|| self.keep_rule(s, i));
        let svc = &mut self.services[s.0];
        // A new number for a new round, or for a member that already has this one (its
        // pass failed and is retried at once): no two passes to a member share a number.
        if svc.passes_at != Some(now) || svc.sync(i).last_number == svc.passes {
            svc.passes += 1;
            svc.passes_at = Some(now);
        }
        let number = svc.passes;
        svc.sync_mut(i).last_number = number;
        let (primary, epoch, to) = (svc.primary, svc.epoch, svc.member(i));
        let ms = svc.sync_mut(i);
        ms.pass = Some(Pass {
            id,
            number,
            kind,
            started: now,
            epoch,
            from: primary,
            keep: keep.is_some(),
        });
        fx.push(Effect::StartSync(SyncOrder {
            id,
            service: s,
            number,
            epoch,
            from: primary,
            to,
            kind,
            keep,
        }));
        id
    }

    /// What the first pass to slot `i` after a change of primary, or after the member's
    /// return, must keep of what it overwrites: only what holds writes the primary lacks.
    fn keep_rule(&self, s: ServiceId, i: Slot) -> Keep {
        let svc = &self.services[s.0];
        let member = self.node_name(svc.member(i));
        let primary = self.node_name(svc.primary);
        let ours = svc.sync(i).watermark.as_ref();
        let theirs = svc
            .sync_of(svc.primary)
            .and_then(|ms| ms.watermark.as_ref());
        let after = |w: &Watermark| w.source_clock.map_or(Keep::Everything, Keep::NewerThan);
        match (theirs, ours) {
            // The primary's copy came from this member: what the member changed after
            // that copy started is not on the primary.
            (Some(p), _) if p.source.as_deref() == Some(member) => after(p),
            // The member's copy came from the primary, and the member has not been
            // primary since (stepping down marks its copy as its own): nothing to keep.
            (_, Some(m)) if m.source.as_deref() == Some(primary) => Keep::Nothing,
            // Both copies came from the same source: only a later one holds more.
            (Some(p), Some(m)) if p.source.is_some() && p.source == m.source => {
                if m.pass > p.pass {
                    after(p)
                } else {
                    Keep::Nothing
                }
            }
            // How the two copies relate is not known: keep everything overwritten.
            _ => Keep::Everything,
        }
    }

    pub(super) fn order_hook(
        &mut self,
        s: ServiceId,
        node: NodeId,
        hook: Hook,
        fx: &mut Fx,
    ) -> HookId {
        let id = HookId(self.next_id());
        fx.push(Effect::RunHook(HookOrder {
            id,
            service: s,
            node,
            hook,
            epoch: self.services[s.0].epoch,
        }));
        id
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The pass to slot `i` of service `s` ended.
    pub(super) fn pass_finished(
        &mut self,
        s: ServiceId,
        i: Slot,
        outcome: Result<PassSummary, PassError>,
        fx: &mut Fx,
    ) {
        let now = self.now;
        let Some(pass) = self.services[s.0].sync_mut(i).pass.take() else {
            return;
        };
        let name = self.node_name(self.services[s.0].member(i)).to_owned();
        let interval = self.services[s.0].policy.sync_interval;
        let current =
            pass.epoch == self.services[s.0].epoch && pass.from == self.services[s.0].primary;
        let in_final = matches!(
            &self.services[s.0].state,
            ServiceState::SwitchingOver(m) if m.step == SwitchoverStep::FinalSync(pass.id)
        );
        match outcome {
            Ok(summary) => {
                let from = self.node_name(pass.from).to_owned();
                let ms = self.services[s.0].sync_mut(i);
                let recovered = ms.failures > 0;
                ms.failures = 0;
                ms.last_error = None;
                ms.next_due = now + interval;
                ms.last = Some(summary.clone());
                if current {
                    ms.watermark = Some(Watermark {
                        at: pass.started,
                        epoch: pass.epoch,
                        pass: pass.number,
                        source: Some(from.clone()),
                        source_clock: summary.source_clock,
                    });
                    if pass.keep {
                        ms.keep = false;
                    }
                    // Only a resync pass that started after the member came back
                    // brings its copy up to date; an older pass does not.
                    let resynced = ms.resyncing
                        && pass.kind == PassKind::Resync
                        && pass.started >= ms.returned_at;
                    if resynced {
                        ms.resyncing = false;
                    }
                    fx.push(Effect::Persist);
                    let sorted = summary.kept.as_ref().map(describe_kept);
                    let reason = match (resynced, sorted) {
                        (true, Some(sorted)) => Some(format!("{name} resynced; {sorted}")),
                        (true, None) => Some(format!("{name} resynced")),
                        (false, Some(sorted)) => Some(format!("{name}: {sorted}")),
                        (false, None) => None,
                    };
                    let quiet = summary
                        .kept
                        .as_ref()
                        .is_some_and(|k| k.files == 0 && k.replaced == 0);
                    if let Some(reason) = reason.filter(|_| resynced || !quiet) {
                        let mut e = self.event(EventKind::Resynced, Some(s), reason);
                        e.node = Some(name.clone());
                        fx.push(Effect::Event(e));
                    } else if recovered {
                        let mut e = self.event(
                            EventKind::SyncDone,
                            Some(s),
                            format!("sync to {name} works again"),
                        );
                        e.node = Some(name.clone());
                        fx.push(Effect::Event(e));
                    }
                }
                // A pass the primary's change overtook: its copy counts for nothing,
                // but what it set aside is on the member's disk, and the operator must
                // learn where.
                let stale_kept = summary.kept.as_ref().filter(|k| !current && k.files > 0);
                if let Some(kept) = stale_kept {
                    let reason = format!(
                        "{name}: a pass from {from} ordered in epoch {} ended after the primary changed; {}",
                        pass.epoch,
                        describe_kept(kept)
                    );
                    let mut e = self.event(EventKind::Resynced, Some(s), reason);
                    e.node = Some(name.clone());
                    fx.push(Effect::Event(e));
                }
                if in_final {
                    self.final_sync_done(s, fx);
                }
            }
            // A pass the change of primary overtook before it started: it did nothing,
            // and the new primary's first pass to this member may go at once.
            Err(PassError::Superseded { .. }) if !current => {
                self.services[s.0].sync_mut(i).next_due = now;
                if in_final {
                    self.roll_back(s, format!("final sync to {name} was overtaken"), fx);
                }
            }
            Err(error) => {
                let error = describe(&error);
                let ms = self.services[s.0].sync_mut(i);
                ms.failures = ms.failures.saturating_add(1);
                let backoff = interval
                    .saturating_mul(1 << ms.failures.saturating_sub(1).min(10))
                    .min(MAX_SYNC_BACKOFF.max(interval));
                ms.next_due = now + backoff;
                let repeated = ms.last_error.as_deref() == Some(error.as_str());
                ms.last_error = Some(error.clone());
                if in_final {
                    self.roll_back(s, format!("final sync to {name} failed: {error}"), fx);
                } else if !repeated {
                    let reason = format!(
                        "{} pass to {name} failed: {error}; next attempt in {}",
                        pass.kind,
                        seconds(backoff)
                    );
                    let mut e = self.event(EventKind::SyncFailed, Some(s), reason);
                    e.node = Some(name);
                    fx.push(Effect::Event(e));
                }
            }
        }
    }
}

/// "3 file(s) with writes the primary lacks (1056 bytes) kept in DIR; 100 stale file(s)
/// replaced".
fn describe_kept(k: &Kept) -> String {
    let kept = if k.files > 0 {
        format!(
            "{} file(s) with writes the primary lacks ({} bytes) kept in {}",
            k.files, k.bytes, k.dir
        )
    } else {
        "nothing with writes the primary lacks".to_owned()
    };
    format!("{kept}; {} stale file(s) replaced", k.replaced)
}
