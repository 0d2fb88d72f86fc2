//! Tests of the sync-aware controller: passes, resync of returning members, hooks,
//! fencing, switchover and failback, and a property test over random sequences of
//! faults, pass and hook results, operator actions and restarts. Time is simulated.

use super::*;
use dnsd_api::Action;
use proptest::prelude::*;

pub(super) const INTERVAL: Millis = 1_000;
const MAX_LAG: Millis = 5_000;

pub(super) fn mirrored() -> Policy {
    Policy {
        mirrored: true,
        sync_interval: INTERVAL,
        max_lag: MAX_LAG,
        ..Policy::plain()
    }
}

pub(super) fn one_service(nodes: usize, policy: Policy) -> Topology {
    Topology {
        nodes: (1..=nodes).map(|i| format!("app{i}")).collect(),
        services: vec![ServiceSpec {
            name: "www".into(),
            members: (0..nodes).map(NodeId).collect(),
            policy,
        }],
    }
}

pub(super) fn events(fx: &[Effect]) -> Vec<&Event> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

pub(super) fn event_of(fx: &[Effect], kind: EventKind) -> Event {
    match events(fx).into_iter().find(|e| e.kind == kind) {
        Some(e) => e.clone(),
        None => panic!("no {kind:?} event in {fx:#?}"),
    }
}

pub(super) fn passes(fx: &[Effect]) -> Vec<SyncOrder> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::StartSync(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn hooks(fx: &[Effect]) -> Vec<HookOrder> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::RunHook(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn ok() -> Result<PassSummary, PassError> {
    Ok(PassSummary::default())
}

/// A controller with all members up and one complete pass to every secondary at `t`.
pub(super) fn synced(nodes: usize, policy: Policy, t: Millis) -> Controller {
    let (mut c, _) = Controller::new(&one_service(nodes, policy), None, 0);
    let mut orders = Vec::new();
    for n in (0..nodes).map(NodeId) {
        orders.extend(passes(&c.health_changed(n, Health::Up, t)));
    }
    assert_eq!(
        orders.len(),
        nodes - 1,
        "one pass per secondary: {orders:?}"
    );
    for o in orders {
        c.sync_finished(o.id, ok(), t);
    }
    c
}

#[test]
fn members_are_not_eligible_before_their_first_pass() {
    let (mut c, _) = Controller::new(&one_service(3, mirrored()), None, 0);
    let mut orders = Vec::new();
    for n in (0..3).map(NodeId) {
        orders.extend(passes(&c.health_changed(n, Health::Up, 10)));
    }
    assert_eq!(
        c.eligibility(ServiceId(0), NodeId(1)),
        Err(Skip::NeverSynced)
    );
    let to: Vec<NodeId> = orders.iter().map(|o| o.to).collect();
    assert_eq!(to, vec![NodeId(1), NodeId(2)]);
    assert!(
        orders
            .iter()
            .all(|o| o.from == NodeId(0) && o.kind == PassKind::Regular)
    );
    // A tick while they run orders nothing more: passes to one member never overlap.
    assert!(passes(&c.tick(5_000)).is_empty());
    c.sync_finished(orders[0].id, ok(), 3_000);
    assert_eq!(c.eligibility(ServiceId(0), NodeId(1)), Ok(()));
    assert_eq!(
        c.sync_view(ServiceId(0), NodeId(1)).unwrap().watermark,
        Some(Watermark {
            at: 10,
            epoch: 1,
            pass: 1,
            source: Some("app1".into()),
            source_clock: None
        })
    );
}

#[test]
fn passes_repeat_every_interval() {
    let mut c = synced(2, mirrored(), 100);
    assert!(passes(&c.tick(100 + INTERVAL - 1)).is_empty());
    let again = passes(&c.tick(100 + INTERVAL));
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].keep, None,
        "a regular pass in the same epoch deletes"
    );
}

#[test]
fn a_lagging_member_is_skipped_and_the_event_says_why() {
    let mut c = synced(3, mirrored(), 100);
    // app2's passes keep failing from now on; app3's succeed.
    let t = 100 + INTERVAL;
    for o in passes(&c.tick(t)) {
        let r = if o.to == NodeId(1) {
            Err(PassError::Simulated("rsync exit 12"))
        } else {
            ok()
        };
        c.sync_finished(o.id, r, t + 10);
    }
    let t2 = 100 + MAX_LAG + 500;
    for o in passes(&c.tick(t2)) {
        if o.to == NodeId(2) {
            c.sync_finished(o.id, ok(), t2);
        }
    }
    assert!(matches!(
        c.eligibility(ServiceId(0), NodeId(1)),
        Err(Skip::Lagging { .. })
    ));
    let fx = c.health_changed(NodeId(0), Health::Down, t2 + 100);
    assert_eq!(
        c.primary(ServiceId(0)),
        NodeId(2),
        "app2 lags: app3 is promoted"
    );
    let e = event_of(&fx, EventKind::Failover);
    assert!(
        e.reason
            .contains("skipped: app2 last synced 5.6s ago, more than max_lag 5s"),
        "{}",
        e.reason
    );
}

#[test]
fn sync_failures_back_off_and_are_reported_once() {
    let mut c = synced(2, mirrored(), 0);
    let mut t = INTERVAL;
    let mut gaps = Vec::new();
    let mut failed_events = 0;
    for _ in 0..4 {
        let o = passes(&c.tick(t)).pop().expect("a pass is due");
        let fx = c.sync_finished(o.id, Err(PassError::Simulated("connection refused")), t);
        failed_events += events(&fx)
            .iter()
            .filter(|e| e.kind == EventKind::SyncFailed)
            .count();
        let v = c.sync_view(ServiceId(0), NodeId(1)).unwrap();
        gaps.push(v.next_due - t);
        assert_eq!(v.last_error.as_deref(), Some("connection refused"));
        t = v.next_due;
    }
    assert_eq!(
        gaps,
        vec![INTERVAL, 2 * INTERVAL, 4 * INTERVAL, 8 * INTERVAL]
    );
    assert_eq!(failed_events, 1, "the same error is reported once");
    let o = passes(&c.tick(t)).pop().unwrap();
    let fx = c.sync_finished(o.id, ok(), t);
    assert!(events(&fx).iter().any(|e| e.kind == EventKind::SyncDone));
    assert_eq!(c.sync_view(ServiceId(0), NodeId(1)).unwrap().failures, 0);
}

#[test]
fn returning_member_resyncs_keeping_its_own_files_before_it_can_be_promoted() {
    let mut c = synced(3, mirrored(), 0);
    // app1 (primary) dies; app2 takes over at epoch 2.
    c.health_changed(NodeId(0), Health::Down, 100);
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
    // app1 comes back: resyncing, not eligible.
    let fx = c.health_changed(NodeId(0), Health::Up, 2_000);
    assert_eq!(c.role(ServiceId(0), NodeId(0)), Role::Resyncing);
    assert_eq!(c.eligibility(ServiceId(0), NodeId(0)), Err(Skip::Resyncing));
    let resync = passes(&fx)
        .into_iter()
        .find(|o| o.to == NodeId(0))
        .expect("a resync pass to app1");
    assert_eq!(resync.kind, PassKind::Resync);
    assert_eq!(resync.from, NodeId(1));
    assert_eq!(
        resync.keep,
        Some(Keep::Everything),
        "an ex-primary's copy is sorted; without the source's clock everything overwritten is kept"
    );
    // Even if everyone else dies now, app1 is not promoted before its resync.
    c.health_changed(NodeId(2), Health::Down, 2_100);
    c.health_changed(NodeId(1), Health::Down, 2_200);
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
    assert!(c.stranded(ServiceId(0)));
    // (The pass was cut short by app2 dying.)
    c.sync_finished(
        resync.id,
        Err(PassError::Simulated("connection reset")),
        2_300,
    );
    c.health_changed(NodeId(1), Health::Up, 3_000);
    assert!(!c.stranded(ServiceId(0)));
    // The failed resync backs off one interval.
    let o = passes(&c.tick(2_300 + INTERVAL))
        .into_iter()
        .find(|o| o.to == NodeId(0))
        .expect("resync again");
    assert_eq!(o.kind, PassKind::Resync);
    let kept = PassSummary {
        kept: Some(Kept {
            files: 3,
            bytes: 120,
            dir: "/srv/data.dnsd-kept/epoch-2-pass-4".into(),
            replaced: 100,
        }),
        ..PassSummary::default()
    };
    let fx = c.sync_finished(o.id, Ok(kept), 3_500);
    let e = event_of(&fx, EventKind::Resynced);
    assert!(
        e.reason
            .contains("3 file(s) with writes the primary lacks (120 bytes) kept in /srv/data.dnsd-kept/epoch-2-pass-4; 100 stale file(s) replaced"),
        "{}",
        e.reason
    );
    assert_eq!(c.role(ServiceId(0), NodeId(0)), Role::Secondary);
    assert_eq!(c.eligibility(ServiceId(0), NodeId(0)), Ok(()));
}

#[test]
fn service_without_paths_counts_live_members_as_in_sync() {
    let (mut c, _) = Controller::new(&one_service(2, Policy::plain()), None, 0);
    let fx0 = c.health_changed(NodeId(0), Health::Up, 1);
    let fx1 = c.health_changed(NodeId(1), Health::Up, 1);
    assert!(
        passes(&fx0).is_empty() && passes(&fx1).is_empty(),
        "nothing to mirror"
    );
    assert_eq!(c.eligibility(ServiceId(0), NodeId(1)), Ok(()));
    let (r, _) = c.act(
        &Action::Sync {
            service: None,
            node: None,
        },
        "t",
        2,
    );
    assert_eq!(
        r.unwrap_err().to_string(),
        "service www has no paths to mirror"
    );
}

#[test]
fn fence_then_promote_then_dns() {
    let policy = Policy {
        fencing: Fencing::BestEffort,
        promote_hook: true,
        ..mirrored()
    };
    let mut c = synced(3, policy, 0);
    let fx = c.health_changed(NodeId(0), Health::Down, 100);
    let fence = hooks(&fx);
    assert_eq!(fence.len(), 1);
    assert_eq!((fence[0].hook, fence[0].node), (Hook::Fence, NodeId(0)));
    assert_eq!(
        c.primary(ServiceId(0)),
        NodeId(0),
        "DNS does not move before the promotion"
    );
    assert!(!fx.contains(&Effect::Publish));
    let fx = c.hook_finished(fence[0].id, Ok(()), 200);
    let promote = hooks(&fx);
    assert_eq!(
        (promote[0].hook, promote[0].node),
        (Hook::Promote, NodeId(1))
    );
    assert_eq!(c.primary(ServiceId(0)), NodeId(0));
    let fx = c.hook_finished(promote[0].id, Ok(()), 300);
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
    assert!(fx.contains(&Effect::Publish));
    assert_eq!(
        event_of(&fx, EventKind::Failover).new_primary.as_deref(),
        Some("app2")
    );
}

#[test]
fn required_fence_failure_stops_the_promotion_loudly() {
    let policy = Policy {
        fencing: Fencing::Required,
        max_lag: 60_000,
        ..mirrored()
    };
    let mut c = synced(3, policy, 0);
    let fence = hooks(&c.health_changed(NodeId(0), Health::Down, 100))
        .pop()
        .unwrap();
    let fx = c.hook_finished(
        fence.id,
        Err(HookError::Simulated("power controller unreachable")),
        200,
    );
    assert_eq!(c.primary(ServiceId(0)), NodeId(0));
    let e = event_of(&fx, EventKind::SwitchoverFailed);
    assert!(e.reason.contains("fence of app1 failed: power controller unreachable; not promoting app2 (fencing = \"required\")"), "{}", e.reason);
    assert!(
        hooks(&c.tick(300)).is_empty(),
        "no retry before FENCE_RETRY"
    );
    let retry = hooks(&c.tick(200 + FENCE_RETRY));
    assert_eq!(retry[0].hook, Hook::Fence);
}

#[test]
fn best_effort_fence_failure_promotes_anyway_and_says_so() {
    let policy = Policy {
        fencing: Fencing::BestEffort,
        ..mirrored()
    };
    let mut c = synced(3, policy, 0);
    let fence = hooks(&c.health_changed(NodeId(0), Health::Down, 100))
        .pop()
        .unwrap();
    let fx = c.hook_finished(fence.id, Err(HookError::Simulated("timeout")), 200);
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
    assert!(events(&fx).iter().any(|e| {
        e.reason
            .contains("promoting app2 anyway (fencing = \"best-effort\")")
    }));
}

#[test]
fn failed_promote_hook_in_a_failover_moves_on_to_the_next_member() {
    let policy = Policy {
        promote_hook: true,
        ..mirrored()
    };
    let mut c = synced(3, policy, 0);
    let p = hooks(&c.health_changed(NodeId(0), Health::Down, 100))
        .pop()
        .unwrap();
    assert_eq!(p.node, NodeId(1));
    let fx = c.hook_finished(p.id, Err(HookError::Simulated("exit 1")), 200);
    let next = hooks(&fx).pop().expect("promote tried on the next member");
    assert_eq!((next.hook, next.node), (Hook::Promote, NodeId(2)));
    assert_eq!(
        c.eligibility(ServiceId(0), NodeId(1)),
        Err(Skip::PromoteFailed)
    );
    c.hook_finished(next.id, Ok(()), 300);
    assert_eq!(c.primary(ServiceId(0)), NodeId(2));
}

/// A switchover to app2 through every step, with hooks.
fn switch(c: &mut Controller, t: Millis) -> (HookOrder, Fx) {
    let (r, fx) = c.act(
        &Action::Promote {
            service: None,
            node: "app2".into(),
        },
        "op",
        t,
    );
    assert!(
        r.unwrap()
            .contains("switchover to app2: demoting the old primary started")
    );
    let demote = hooks(&fx).pop().unwrap();
    assert_eq!((demote.hook, demote.node), (Hook::Demote, NodeId(0)));
    (demote, fx)
}

#[test]
fn switchover_demotes_syncs_promotes_then_switches_dns() {
    let policy = Policy {
        promote_hook: true,
        demote_hook: true,
        ..mirrored()
    };
    let mut c = synced(3, policy, 0);
    let (demote, _) = switch(&mut c, 100);
    let fx = c.hook_finished(demote.id, Ok(()), 200);
    let final_pass = passes(&fx).pop().expect("final pass");
    assert_eq!(
        (final_pass.kind, final_pass.from, final_pass.to),
        (PassKind::Final, NodeId(0), NodeId(1))
    );
    assert_eq!(c.primary(ServiceId(0)), NodeId(0));
    let fx = c.sync_finished(final_pass.id, ok(), 300);
    let promote = hooks(&fx).pop().unwrap();
    assert_eq!((promote.hook, promote.node), (Hook::Promote, NodeId(1)));
    assert_eq!(
        c.primary(ServiceId(0)),
        NodeId(0),
        "DNS still on the old primary"
    );
    let fx = c.hook_finished(promote.id, Ok(()), 400);
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
    assert_eq!(c.epoch(ServiceId(0)), 2);
    assert!(fx.contains(&Effect::Publish));
    assert_eq!(
        c.role(ServiceId(0), NodeId(0)),
        Role::Secondary,
        "the old primary becomes a secondary, in sync"
    );
    assert_eq!(c.eligibility(ServiceId(0), NodeId(0)), Ok(()));
}

#[test]
fn switchover_waits_for_a_running_pass_before_the_final_one() {
    let mut c = synced(2, mirrored(), 0);
    let running = passes(&c.tick(INTERVAL)).pop().unwrap();
    let (r, fx) = c.act(
        &Action::Promote {
            service: None,
            node: "app2".into(),
        },
        "op",
        INTERVAL + 1,
    );
    assert!(r.unwrap().contains("waiting for a running pass"));
    assert!(passes(&fx).is_empty());
    let fx = c.sync_finished(running.id, ok(), INTERVAL + 50);
    let f = passes(&fx).pop().expect("final pass after the running one");
    assert_eq!(f.kind, PassKind::Final);
    c.sync_finished(f.id, ok(), INTERVAL + 60);
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
}

#[test]
fn every_failed_switchover_step_rolls_back_to_the_old_primary() {
    let policy = Policy {
        promote_hook: true,
        demote_hook: true,
        ..mirrored()
    };
    // Demote fails.
    let mut c = synced(3, policy.clone(), 0);
    let (demote, _) = switch(&mut c, 100);
    let fx = c.hook_finished(
        demote.id,
        Err(HookError::Simulated("read-only remount failed")),
        200,
    );
    let re = hooks(&fx).pop().unwrap();
    assert_eq!(
        (re.hook, re.node),
        (Hook::Promote, NodeId(0)),
        "re-promote the old primary"
    );
    let fx = c.hook_finished(re.id, Ok(()), 250);
    let e = event_of(&fx, EventKind::SwitchoverFailed);
    assert!(
        e.reason.starts_with(
            "demote hook failed on app1: read-only remount failed; rolled back: app1 re-promoted"
        ),
        "{}",
        e.reason
    );
    assert_eq!(
        (c.primary(ServiceId(0)), c.epoch(ServiceId(0))),
        (NodeId(0), 1)
    );

    // Final sync fails.
    let mut c = synced(3, policy.clone(), 0);
    let (demote, _) = switch(&mut c, 100);
    let f = passes(&c.hook_finished(demote.id, Ok(()), 200))
        .pop()
        .unwrap();
    let fx = c.sync_finished(
        f.id,
        Err(PassError::Simulated("No space left on device")),
        300,
    );
    let re = hooks(&fx).pop().unwrap();
    let fx = c.hook_finished(re.id, Ok(()), 350);
    assert!(
        event_of(&fx, EventKind::SwitchoverFailed)
            .reason
            .starts_with("final sync to app2 failed: No space left on device; rolled back")
    );
    assert_eq!(c.primary(ServiceId(0)), NodeId(0));

    // Promote fails, and so does the rollback.
    let mut c = synced(3, policy, 0);
    let (demote, _) = switch(&mut c, 100);
    let f = passes(&c.hook_finished(demote.id, Ok(()), 200))
        .pop()
        .unwrap();
    let p = hooks(&c.sync_finished(f.id, ok(), 300)).pop().unwrap();
    let re = hooks(&c.hook_finished(p.id, Err(HookError::Simulated("exit 3")), 400))
        .pop()
        .unwrap();
    let fx = c.hook_finished(re.id, Err(HookError::Simulated("exit 4")), 450);
    let e = event_of(&fx, EventKind::SwitchoverFailed);
    assert!(e.reason.contains("promote hook failed on app2: exit 3; the rollback failed too: re-promoting app1: exit 4"), "{}", e.reason);
    assert_eq!(c.primary(ServiceId(0)), NodeId(0));
    assert!(c.transition(ServiceId(0)).is_none());
}

/// `failback = "auto"` after 3 s: app1 fails at 100 (app2 takes over), returns at 1 000,
/// and its resync completes at 1 100; eligible from the tick at 1 200.
fn failed_over_and_resynced() -> Controller {
    let policy = Policy {
        failback: Failback::Auto { after: 3_000 },
        ..mirrored()
    };
    let mut c = synced(3, policy, 0);
    c.health_changed(NodeId(0), Health::Down, 100);
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
    // app1 returns and resyncs.
    let o = passes(&c.health_changed(NodeId(0), Health::Up, 1_000))
        .into_iter()
        .find(|o| o.to == NodeId(0))
        .unwrap();
    c.sync_finished(o.id, ok(), 1_100);
    c.tick(1_200); // eligible since here
    c
}

#[test]
fn automatic_failback_after_failback_after_and_not_before() {
    let mut c = failed_over_and_resynced();
    let mut t = 1_200;
    while t < 1_200 + 3_000 {
        let fx = c.tick(t);
        assert!(
            !events(&fx)
                .iter()
                .any(|e| e.kind == EventKind::SwitchoverStarted),
            "too early at {t}"
        );
        for o in passes(&fx) {
            c.sync_finished(o.id, ok(), t);
        }
        t += 500;
    }
    let fx = c.tick(1_200 + 3_000);
    let started = event_of(&fx, EventKind::SwitchoverStarted);
    assert!(
        started
            .reason
            .contains("automatic failback: app1 has been up and in sync for 3s")
    );
    let f = passes(&fx)
        .into_iter()
        .find(|o| o.kind == PassKind::Final)
        .expect("final pass");
    assert_eq!((f.from, f.to), (NodeId(1), NodeId(0)));
    let fx = c.sync_finished(f.id, ok(), 4_300);
    assert_eq!(c.primary(ServiceId(0)), NodeId(0));
    assert_eq!(
        event_of(&fx, EventKind::Failback).new_primary.as_deref(),
        Some("app1")
    );
}

#[test]
fn a_failed_automatic_failback_waits_failback_after_again() {
    let mut c = failed_over_and_resynced();
    let fx = c.tick(4_200);
    event_of(&fx, EventKind::SwitchoverStarted);
    let f = passes(&fx)
        .into_iter()
        .find(|o| o.kind == PassKind::Final)
        .unwrap();
    let fx = c.sync_finished(f.id, Err(PassError::Simulated("connection refused")), 4_300);
    event_of(&fx, EventKind::SwitchoverFailed);
    assert!(
        !events(&fx)
            .iter()
            .any(|e| e.kind == EventKind::SwitchoverStarted),
        "not retried in the same input"
    );
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
    let mut t = 4_300;
    let mut started = None;
    while t <= 4_300 + 3_000 && started.is_none() {
        let fx = c.tick(t);
        if events(&fx)
            .iter()
            .any(|e| e.kind == EventKind::SwitchoverStarted)
        {
            started = Some(t);
        }
        for o in passes(&fx)
            .into_iter()
            .filter(|o| o.kind != PassKind::Final)
        {
            c.sync_finished(o.id, ok(), t);
        }
        t += 100;
    }
    assert_eq!(
        started,
        Some(4_300 + 3_000),
        "retried only after failback_after"
    );
}

#[test]
fn manual_failback_waits_for_the_operator() {
    let mut c = synced(2, mirrored(), 0);
    c.health_changed(NodeId(0), Health::Down, 100);
    let o = passes(&c.health_changed(NodeId(0), Health::Up, 1_000))
        .into_iter()
        .find(|o| o.to == NodeId(0))
        .unwrap();
    c.sync_finished(o.id, ok(), 1_100);
    for t in (2_000..60_000).step_by(1_000) {
        for o in passes(&c.tick(t)) {
            c.sync_finished(o.id, ok(), t);
        }
    }
    assert_eq!(c.primary(ServiceId(0)), NodeId(1), "failback = manual");
    let (r, fx) = c.act(&Action::Failback { service: None }, "op", 60_000);
    r.unwrap();
    let f = passes(&fx)
        .into_iter()
        .find(|o| o.kind == PassKind::Final)
        .unwrap();
    c.sync_finished(f.id, ok(), 60_100);
    assert_eq!(c.primary(ServiceId(0)), NodeId(0));
    let (r, _) = c.act(&Action::Failback { service: None }, "op", 60_200);
    assert_eq!(
        r.unwrap_err().to_string(),
        "app1, the preferred member, is already the primary"
    );
}

#[test]
fn pausing_stops_an_automatic_failback_under_way() {
    let policy = Policy {
        failback: Failback::Auto { after: 0 },
        demote_hook: true,
        ..mirrored()
    };
    let mut c = synced(2, policy, 0);
    c.health_changed(NodeId(0), Health::Down, 100);
    let o = passes(&c.health_changed(NodeId(0), Health::Up, 1_000))
        .into_iter()
        .find(|o| o.to == NodeId(0))
        .unwrap();
    let fx = c.sync_finished(o.id, ok(), 1_100);
    assert!(
        hooks(&fx).iter().any(|h| h.hook == Hook::Demote),
        "failback started"
    );
    let (r, fx) = c.act(&Action::Pause { service: None }, "op", 1_200);
    r.unwrap();
    assert!(c.transition(ServiceId(0)).is_none());
    assert!(events(&fx).iter().any(
        |e| e.kind == EventKind::SwitchoverFailed && e.reason.contains("service paused by op")
    ));
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
}

#[test]
fn no_candidate_policy_wait_or_freshest() {
    for (policy, expect) in [
        (NoCandidate::Wait, None),
        (NoCandidate::Freshest, Some(NodeId(2))),
    ] {
        let mut c = synced(
            3,
            Policy {
                on_no_candidate: policy,
                ..mirrored()
            },
            0,
        );
        // app3 synced more recently than app2; then both lag beyond max_lag.
        for o in passes(&c.tick(INTERVAL)) {
            if o.to == NodeId(2) {
                c.sync_finished(o.id, ok(), INTERVAL);
            }
        }
        let fx = c.health_changed(NodeId(0), Health::Down, INTERVAL + MAX_LAG + 1);
        match expect {
            None => {
                assert_eq!(c.primary(ServiceId(0)), NodeId(0));
                let e = event_of(&fx, EventKind::Stranded);
                assert!(
                    e.reason.contains("waiting (on_no_candidate = \"wait\")"),
                    "{}",
                    e.reason
                );
            }
            Some(n) => {
                assert_eq!(c.primary(ServiceId(0)), n);
                let e = event_of(&fx, EventKind::Failover);
                assert!(
                    e.reason
                        .contains("promoting the freshest, app3, last synced 5.0s ago"),
                    "{}",
                    e.reason
                );
            }
        }
    }
}

#[test]
fn operator_sync_orders_passes_now() {
    let mut c = synced(3, mirrored(), 0);
    let (r, fx) = c.act(
        &Action::Sync {
            service: None,
            node: Some("app3".into()),
        },
        "op",
        10,
    );
    assert_eq!(r.unwrap(), "sync of www to app3 requested by op");
    let o = passes(&fx);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].to, NodeId(2));
    let (r, _) = c.act(
        &Action::Sync {
            service: None,
            node: Some("app1".into()),
        },
        "op",
        11,
    );
    assert_eq!(
        r.unwrap_err().to_string(),
        "app1 is the primary: passes go from it, not to it"
    );
}

#[test]
fn restart_keeps_watermarks_and_resync_and_rolls_back_an_interrupted_switchover() {
    let policy = Policy {
        promote_hook: true,
        demote_hook: true,
        ..mirrored()
    };
    let mut c = synced(3, policy.clone(), 50);
    c.health_changed(NodeId(2), Health::Down, 60);
    c.health_changed(NodeId(2), Health::Up, 70); // app3 resyncing
    switch(&mut c, 100); // demote sent, then dnsd dies
    let saved: Persisted =
        serde_json::from_str(&serde_json::to_string(&c.persisted()).unwrap()).unwrap();
    assert_eq!(saved.services[0].switchover_to.as_deref(), Some("app2"));
    let (r, fx) = Controller::new(&one_service(3, policy), Some(&saved), 1_000);
    assert_eq!(
        r.sync_view(ServiceId(0), NodeId(1)).unwrap().watermark,
        Some(Watermark {
            at: 50,
            epoch: 1,
            pass: 1,
            source: Some("app1".into()),
            source_clock: None
        })
    );
    assert_eq!(
        r.role(ServiceId(0), NodeId(2)),
        Role::Resyncing,
        "its resync is still owed after a restart"
    );
    let re = hooks(&fx).pop().expect("re-promote the old primary");
    assert_eq!((re.hook, re.node), (Hook::Promote, NodeId(0)));
}

// ---------------------------------------------------------------------------
// Property test.

#[derive(Debug, Clone)]
enum Op {
    Health(usize, bool),
    /// The service check's verdict on a member (a no-op for a service without a check).
    Check(usize, bool),
    Act(Action),
    Advance(Millis),
    PassDone(usize, bool),
    HookDone(usize, bool),
    Restart,
    /// A reload of the same configuration.
    Reload,
}

fn op(nodes: usize) -> impl Strategy<Value = Op> {
    let name = |n: usize| format!("app{}", n + 1);
    prop_oneof![
        5 => (0..nodes, any::<bool>()).prop_map(|(n, up)| Op::Health(n, up)),
        4 => (0..nodes, any::<bool>()).prop_map(|(n, up)| Op::Check(n, up)),
        5 => (0usize..8, any::<bool>()).prop_map(|(i, ok)| Op::PassDone(i, ok)),
        4 => (0usize..4, any::<bool>()).prop_map(|(i, ok)| Op::HookDone(i, ok)),
        4 => (1u64..4_000).prop_map(Op::Advance),
        1 => Just(Op::Act(Action::Failover { service: None })),
        1 => Just(Op::Act(Action::Failback { service: None })),
        1 => (0..nodes).prop_map(move |n| Op::Act(Action::Promote { service: None, node: name(n) })),
        1 => (0..nodes, any::<bool>()).prop_map(move |(n, on)| Op::Act(Action::Maintenance { node: name(n), on })),
        1 => Just(Op::Act(Action::Pause { service: None })),
        1 => Just(Op::Act(Action::Resume { service: None })),
        1 => Just(Op::Act(Action::Sync { service: None, node: None })),
        1 => (0..nodes).prop_map(move |n| Op::Act(Action::Unquarantine { service: None, node: name(n) })),
        1 => Just(Op::Restart),
        1 => Just(Op::Reload),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        any::<bool>(),
        prop_oneof![
            Just(Failback::Manual),
            (0u64..5_000).prop_map(|after| Failback::Auto { after })
        ],
        prop_oneof![Just(NoCandidate::Wait), Just(NoCandidate::Freshest)],
        prop_oneof![
            Just(Fencing::Off),
            Just(Fencing::BestEffort),
            Just(Fencing::Required)
        ],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(Election::Freshest), Just(Election::RoundRobin)],
        (
            any::<bool>(),
            proptest::option::of((1u32..4, 1u64..20_000, 1u64..8_000)),
            proptest::option::of((1u32..5, 1u64..20_000, 1u64..20_000)),
        ),
    )
        .prop_map(
            |(
                mirrored,
                failback,
                on_no_candidate,
                fencing,
                promote_hook,
                demote_hook,
                election,
                (checked, restart, flap),
            )| Policy {
                mirrored,
                election,
                sync_interval: INTERVAL,
                max_lag: MAX_LAG,
                failback,
                on_no_candidate,
                fencing,
                promote_hook,
                demote_hook,
                checked,
                restart: restart
                    .filter(|_| checked)
                    .map(|(attempts, window, backoff)| RestartPolicy {
                        attempts,
                        window,
                        backoff,
                    }),
                flap: flap.map(|(threshold, window, hold_down)| FlapPolicy {
                    threshold,
                    window,
                    hold_down,
                }),
            },
        )
}

/// What the test itself tracks, independently of the controller's bookkeeping.
#[derive(Default)]
struct Model {
    /// Passes and hooks ordered and not yet reported (restarts included: a restart's
    /// report always arrives, even when the service stopped waiting for it).
    passes: Vec<SyncOrder>,
    hooks: Vec<HookOrder>,
    /// Members that came back from down as secondaries and have had no successful
    /// resync pass since.
    unresynced: Vec<NodeId>,
    /// A successful fence of the current primary since the last change of primary.
    fenced: bool,
    /// Every folder a pass was ordered to keep into: member, epoch, pass number.
    kept_dirs: std::collections::HashSet<(NodeId, u64, u64)>,
}

impl Model {
    /// Takes the orders of `fx`; false if a keep order reuses a folder.
    fn absorb(&mut self, fx: &[Effect]) -> bool {
        let mut distinct = true;
        for e in fx {
            match e {
                Effect::StartSync(o) => {
                    if o.keep.is_some() {
                        distinct &= self.kept_dirs.insert((o.to, o.epoch, o.number));
                    }
                    self.passes.push(o.clone())
                }
                Effect::RunHook(o) => self.hooks.push(o.clone()),
                _ => {}
            }
        }
        distinct
    }
}

/// What the driver does when the state file cannot take an input's changes: the
/// controller withdraws its changes of primary, and their publication, commit events and
/// orders are dropped.
fn fail_persist(c: &mut Controller, fx: Fx, now: Millis) -> Fx {
    let (more, withdrawn) = c.persist_failed("disk full", now);
    let mut fx: Fx = fx
        .into_iter()
        .filter(|e| {
            withdrawn.is_empty()
                || !match e {
                    Effect::Publish => true,
                    Effect::StartSync(_) | Effect::RunHook(_) => true,
                    Effect::Event(e) => {
                        matches!(
                            e.kind,
                            EventKind::Failover | EventKind::Promotion | EventKind::Failback
                        ) && withdrawn.iter().any(|w| Some(w.epoch) == e.epoch)
                    }
                    Effect::Persist => false,
                }
        })
        .collect();
    fx.extend(more.into_iter().filter(|e| *e != Effect::Persist));
    fx
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mirroring_invariants_hold(
        nodes in 2usize..=4,
        policy in policy(),
        ops in proptest::collection::vec((op(4), proptest::bool::weighted(0.1)), 1..150),
    ) {
        let topo = one_service(nodes, policy.clone());
        let (mut c, fx) = Controller::new(&topo, None, 0);
        let mut m = Model::default();
        m.absorb(&fx);
        let mut now: Millis = 0;
        for (op, persist_fails) in ops {
            let before = c.clone();
            let fx = match op.clone() {
                Op::Health(n, up) => {
                    let n = NodeId(n % nodes);
                    let h = if up { Health::Up } else { Health::Down };
                    if up && c.health(n) == Health::Down && c.primary(ServiceId(0)) != n && policy.mirrored && !m.unresynced.contains(&n) {
                        m.unresynced.push(n);
                    }
                    c.health_changed(n, h, now)
                }
                Op::Check(n, up) => {
                    let h = if up { Health::Up } else { Health::Down };
                    c.check_changed(ServiceId(0), NodeId(n % nodes), h, now)
                }
                Op::Act(a) => {
                    let (r, fx) = c.act(&a, "prop", now);
                    if r.is_err() {
                        let mut same = before.clone();
                        same.now = c.now;
                        prop_assert_eq!(&c, &same, "refused {:?} changed state", a);
                    }
                    fx
                }
                Op::Advance(d) => {
                    now += d;
                    c.tick(now)
                }
                Op::PassDone(i, ok) => {
                    if m.passes.is_empty() {
                        continue;
                    }
                    let o = m.passes.remove(i % m.passes.len());
                    if ok && o.kind == PassKind::Resync && o.from == c.primary(ServiceId(0)) {
                        m.unresynced.retain(|&n| n != o.to);
                    }
                    let r = if ok { Ok(PassSummary::default()) } else { Err(PassError::Simulated("failed")) };
                    c.sync_finished(o.id, r, now)
                }
                Op::HookDone(i, ok) => {
                    if m.hooks.is_empty() {
                        continue;
                    }
                    let o = m.hooks.remove(i % m.hooks.len());
                    if ok && o.hook == Hook::Fence && o.node == c.primary(ServiceId(0)) {
                        m.fenced = true;
                    }
                    c.hook_finished(o.id, if ok { Ok(()) } else { Err(HookError::Simulated("failed")) }, now)
                }
                Op::Reload => {
                    let same = Reconfiguration { topology: &topo, readdressed: &[], rechecked: &[] };
                    match c.reconfigure(&same, now) {
                        // Refused only under a change of primary or a restart.
                        Err(refusal) => {
                            let busy = c.transition(ServiceId(0)).is_some() || c.recovery(ServiceId(0)).is_some();
                            prop_assert!(busy, "refused {:?} while idle", refusal);
                            continue;
                        }
                        // Everything is kept (passes and restarts under way go on and
                        // report); only the serial grows.
                        Ok((r, fx)) => {
                            let mut expected = c.clone();
                            expected.serial = c.serial().wrapping_add(1).max(1);
                            expected.now = now;
                            prop_assert_eq!(&r, &expected);
                            c = r;
                            fx
                        }
                    }
                }
                Op::Restart => {
                    let saved = c.persisted();
                    let (mut r, fx) = Controller::new(&topo, Some(&saved), now);
                    // The restart itself keeps the epoch (what the heartbeat then reports
                    // may lead to decisions: a backoff does not survive a restart).
                    prop_assert_eq!(r.epoch(ServiceId(0)), c.epoch(ServiceId(0)));
                    // Outstanding work dies with the old process.
                    m.passes.clear();
                    m.hooks.clear();
                    let mut fx = fx;
                    for n in (0..nodes).map(NodeId) {
                        let h = c.health(n);
                        if h != Health::Unknown {
                            fx.extend(r.health_changed(n, h, now));
                        }
                    }
                    for n in (0..nodes).map(NodeId) {
                        if let Some(h) = c.check(ServiceId(0), n).filter(|&h| h != Health::Unknown) {
                            fx.extend(r.check_changed(ServiceId(0), n, h, now));
                        }
                    }
                    // A quarantine is persisted; the count towards one is not.
                    for n in (0..nodes).map(NodeId) {
                        prop_assert_eq!(r.quarantined_until(ServiceId(0), n), c.quarantined_until(ServiceId(0), n));
                    }
                    c = r;
                    fx
                }
            };
            let fx = if fx.contains(&Effect::Persist) && persist_fails {
                let fx = fail_persist(&mut c, fx, now);
                // Orders the controller withdrew will never be reported; restarts ordered
                // by earlier inputs still run and report.
                m.passes.retain(|o| c.sync_view(ServiceId(0), o.to).and_then(|v| v.running).is_some());
                m.hooks.retain(|o| o.hook == Hook::Restart);
                fx
            } else {
                if fx.contains(&Effect::Persist) {
                    c.persisted_ok();
                }
                fx
            };
            // Restarts: of the primary only, never of a member whose host is down, never
            // two at once on a member.
            for o in fx.iter().filter_map(|e| match e {
                Effect::RunHook(o) if o.hook == Hook::Restart => Some(o),
                _ => None,
            }) {
                prop_assert_eq!(o.node, c.primary(ServiceId(0)), "restarted a member that is not the primary");
                prop_assert_eq!(c.health(o.node), Health::Up, "restarted a member whose host is not up");
                prop_assert!(policy.restart.is_some());
                prop_assert!(
                    !m.hooks.iter().any(|h| h.hook == Hook::Restart && h.node == o.node),
                    "a second restart of {:?} while one runs", o.node
                );
            }
            prop_assert!(m.absorb(&fx), "a kept folder was ordered twice");

            // The service's state is one its state machine allows.
            prop_assert_eq!(c.check_states(), Ok(()));
            // One primary, a member; epoch and serial monotone; they move together.
            prop_assert!(c.members(ServiceId(0)).contains(&c.primary(ServiceId(0))));
            prop_assert!(c.epoch(ServiceId(0)) >= before.epoch(ServiceId(0)));
            prop_assert!(c.serial() >= before.serial());
            let moved = c.primary(ServiceId(0)) != before.primary(ServiceId(0));
            prop_assert_eq!(moved, c.epoch(ServiceId(0)) > before.epoch(ServiceId(0)));
            if moved {
                let p = c.primary(ServiceId(0));
                prop_assert!(c.serial() > before.serial());
                prop_assert!(fx.contains(&Effect::Publish));
                prop_assert_eq!(c.health(p), Health::Up, "promoted a member that is not up");
                if policy.checked {
                    prop_assert_eq!(c.check(ServiceId(0), p), Some(Health::Up), "promoted a member whose service check does not pass");
                }
                prop_assert_eq!(c.quarantined_until(ServiceId(0), p), None, "promoted a quarantined member");
                // Restart, then migrate: an automatic failover away from a primary whose host
                // answers comes only after the restart window (or from a stranded service,
                // or a failover already under way).
                let old = before.primary(ServiceId(0));
                let automatic_failover = events(&fx).iter().any(|e| e.kind == EventKind::Failover);
                if automatic_failover && policy.restart.is_some() && before.health(old) == Health::Up && c.health(old) == Health::Up {
                    let waited = before.stranded(ServiceId(0))
                        || before.transition(ServiceId(0)).is_some()
                        || before.recovery(ServiceId(0)).is_some_and(|r| now >= r.deadline);
                    prop_assert!(waited, "failed over from a live primary before its restart window was over");
                }
                prop_assert!(!c.maintenance(p), "promoted a member in maintenance");
                prop_assert!(!m.unresynced.contains(&p), "promoted {:?} before its resync finished", p);
                if policy.mirrored && policy.on_no_candidate == NoCandidate::Wait {
                    prop_assert!(c.sync_view(ServiceId(0), p).unwrap().watermark.is_some(), "promoted a member that never synced");
                }
                let failover = events(&fx).iter().any(|e| e.kind == EventKind::Failover);
                // Freshest: when the decision and the commit are one input, nobody
                // eligible held a later copy than the member promoted.
                let decided_now = policy.fencing == Fencing::Off && !policy.promote_hook;
                if failover && decided_now && policy.mirrored && policy.election == Election::Freshest {
                    let pass = |n: NodeId| c.sync_view(ServiceId(0), n).and_then(|v| v.watermark).map_or(0, |w| w.pass);
                    for &n in c.members(ServiceId(0)) {
                        if n != p && n != before.primary(ServiceId(0)) && c.eligibility(ServiceId(0), n).is_ok() {
                            prop_assert!(pass(p) >= pass(n), "promoted {:?} (pass {}) though {:?} held pass {}", p, pass(p), n, pass(n));
                        }
                    }
                }
                if failover && policy.fencing == Fencing::Required {
                    prop_assert!(m.fenced, "failover without a successful required fence");
                }
                if before.paused(ServiceId(0)) && !matches!(op, Op::Act(_)) {
                    prop_assert_eq!(before.transition_by_operator(ServiceId(0)), Some(true), "paused service changed by itself");
                }
                m.fenced = false;
                m.unresynced.retain(|&n| n != p);
            }
            // A member that returned is never eligible before its resync.
            for &n in &m.unresynced {
                prop_assert!(c.eligibility(ServiceId(0), n).is_err() || c.primary(ServiceId(0)) == n);
            }
        }
    }
}
