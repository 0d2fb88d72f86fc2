//! Tests of what keeps data: the freshest-copy election, what a pass sorts out of what it
//! overwrites (kept versus replaced), a required fence that fails, moves that wait for
//! the primary's health, and a change of primary withdrawn because the state file could
//! not take it. Time is simulated.

pub(super) use super::mirror_tests::{event_of as event, hooks, passes};
use super::*;

const INTERVAL: Millis = 1_000;
const MAX_LAG: Millis = 5_000;
const S: ServiceId = ServiceId(0);
const APP1: NodeId = NodeId(0);
const APP2: NodeId = NodeId(1);
const APP3: NodeId = NodeId(2);

fn policy(election: Election) -> Policy {
    Policy {
        mirrored: true,
        sync_interval: INTERVAL,
        max_lag: MAX_LAG,
        election,
        ..Policy::plain()
    }
}

/// www over app1, app2, app3, with `policy` (the health tests share it).
pub(super) fn three(policy: Policy) -> Topology {
    Topology {
        nodes: (1..=3).map(|i| format!("app{i}")).collect(),
        services: vec![ServiceSpec {
            name: "www".into(),
            members: vec![APP1, APP2, APP3],
            policy,
        }],
    }
}

/// A pass that started when the source's clock said `secs`.
fn done_at(secs: i64) -> Result<PassSummary, PassError> {
    Ok(PassSummary {
        source_clock: Some(SourceClock { secs, nanos: 0 }),
        ..PassSummary::default()
    })
}

/// Every member up at `t`; the first passes (one round) complete, taken at clock `t`.
fn synced(policy: Policy) -> Controller {
    let (mut c, _) = Controller::new(&three(policy), None, 0);
    let mut orders = Vec::new();
    for n in [APP1, APP2, APP3] {
        orders.extend(passes(&c.health_changed(n, Health::Up, 10)));
    }
    for o in orders {
        c.sync_finished(o.id, done_at(10), 10);
    }
    c
}

/// One more round of passes at `t`: `to_app2` says whether app2's pass succeeds.
fn round(c: &mut Controller, t: Millis, to_app2: bool) {
    for o in passes(&c.tick(t)) {
        let outcome = if o.to == APP2 && !to_app2 {
            Err(PassError::Simulated("rsync exit 12"))
        } else {
            done_at(t as i64 / 1000)
        };
        c.sync_finished(o.id, outcome, t);
    }
}

#[test]
fn freshest_promotes_the_member_holding_the_latest_copy_and_says_why() {
    for (election, winner) in [(Election::Freshest, APP3), (Election::RoundRobin, APP2)] {
        let mut c = synced(policy(election));
        // app2's next pass fails; app3 gets a later copy.
        round(&mut c, 10 + INTERVAL, false);
        let w2 = c.sync_view(S, APP2).unwrap().watermark.unwrap();
        let w3 = c.sync_view(S, APP3).unwrap().watermark.unwrap();
        assert!(w3.pass > w2.pass, "{w3:?} {w2:?}");
        assert_eq!(
            c.eligibility(S, APP2),
            Ok(()),
            "app2 is still within max_lag"
        );
        let fx = c.health_changed(APP1, Health::Down, 2_000);
        assert_eq!(c.primary(S), winner, "{election:?}");
        let e = event(&fx, EventKind::Failover);
        if election == Election::Freshest {
            let expected = format!(
                "app1 is down; app3 holds the freshest copy (pass #{}; app2 #{} only)",
                w3.pass, w2.pass
            );
            assert_eq!(e.reason, expected);
        } else {
            assert!(
                e.reason
                    .contains("app2 is the next eligible member in round-robin order"),
                "{}",
                e.reason
            );
        }
    }
}

#[test]
fn freshest_breaks_ties_in_round_robin_order() {
    let mut c = synced(policy(Election::Freshest));
    let (next, why) = c.choice(S).unwrap();
    assert_eq!(next, APP2, "both hold the first round's copy");
    assert_eq!(why, "is the next eligible member in round-robin order");
    c.health_changed(APP1, Health::Down, 2_000);
    assert_eq!(c.primary(S), APP2);
}

/// The terminal server restarts with app1 dead; app3 holds a later copy than app2. Only
/// `heard` is reported (up, before app1 down): the other is still unheard. Returns the
/// restarted controller, what the two reports did, and the two passes (app2's, app3's).
fn restarted_hearing(
    election: Election,
    on_no_candidate: NoCandidate,
    heard: NodeId,
) -> (Controller, Fx, u64, u64) {
    let policy = Policy {
        on_no_candidate,
        ..policy(election)
    };
    let mut c = synced(policy.clone());
    round(&mut c, 10 + INTERVAL, false);
    let pass = |c: &Controller, n| c.sync_view(S, n).unwrap().watermark.unwrap().pass;
    let (p2, p3) = (pass(&c, APP2), pass(&c, APP3));
    assert!(p3 > p2);
    let (mut r, _) = Controller::new(&three(policy), Some(&c.persisted()), 2_000);
    let mut fx = r.health_changed(heard, Health::Up, 2_000);
    fx.extend(r.health_changed(APP1, Health::Down, 2_000));
    (r, fx, p2, p3)
}

#[test]
fn after_a_restart_freshest_waits_for_the_verdict_on_a_member_holding_a_later_copy() {
    for verdict in [Health::Up, Health::Down] {
        let (mut c, fx, p2, p3) = restarted_hearing(Election::Freshest, NoCandidate::Wait, APP2);
        assert_eq!(
            c.primary(S),
            APP1,
            "app2 holds an older copy than unheard app3"
        );
        assert!(c.stranded(S));
        let waits = format!("waits: a member with no verdict yet holds pass #{p3}, this one #{p2}");
        assert_eq!(c.eligibility(S, APP2), Ok(()), "app2 itself is fine");
        assert_eq!(
            c.verdicts(S)[1],
            Err(Skip::AwaitsFresher {
                fresher: p3,
                own: p2
            })
        );
        assert_eq!(c.choice(S), None);
        let e = event(&fx, EventKind::Stranded);
        assert!(e.reason.contains(&format!("app2 {waits}")), "{}", e.reason);
        assert!(
            e.reason
                .contains("app3 has not answered enough heartbeats yet"),
            "{}",
            e.reason
        );
        // An operator's failover is refused with the same reason; promoting app2 by name
        // is the operator's call.
        let (refused, _) = c.act(&Action::Failover { service: None }, "op", 2_000);
        let refused = refused.unwrap_err().to_string();
        assert!(refused.contains(&waits), "{refused}");

        // The verdict on app3 decides.
        let fx = c.health_changed(APP3, verdict, 2_100);
        let e = event(&fx, EventKind::Failover);
        if verdict == Health::Up {
            assert_eq!(c.primary(S), APP3);
            let why = format!("app3 holds the freshest copy (pass #{p3}; app2 #{p2} only)");
            assert!(e.reason.contains(&why), "{}", e.reason);
        } else {
            assert_eq!(
                c.primary(S),
                APP2,
                "app3 is down: app2's copy is the best there is"
            );
        }
    }
}

#[test]
fn round_robin_and_a_member_with_an_older_copy_do_not_wait() {
    // Round-robin does not look at copies: app2 at once.
    let (c, fx, _, _) = restarted_hearing(Election::RoundRobin, NoCandidate::Wait, APP2);
    assert_eq!(c.primary(S), APP2);
    event(&fx, EventKind::Failover);
    // Under freshest, an unheard member holding an older copy is not waited for.
    let (r, _, _, _) = restarted_hearing(Election::Freshest, NoCandidate::Wait, APP3);
    assert_eq!(r.primary(S), APP3, "app2, unheard, holds an older copy");
}

#[test]
fn the_freshest_fallback_waits_too_for_a_member_holding_a_later_copy() {
    // Both copies lag beyond max_lag: only on_no_candidate = "freshest" promotes, and it
    // waits for app3's verdict too.
    let (mut c, _, _, _) = restarted_hearing(Election::Freshest, NoCandidate::Freshest, APP2);
    let late = 10 + INTERVAL + MAX_LAG + 1;
    let fx = c.tick(late);
    assert_eq!(c.primary(S), APP1, "{fx:#?}");
    assert!(matches!(c.eligibility(S, APP2), Err(Skip::Lagging { .. })));
    let fx = c.health_changed(APP3, Health::Up, late);
    assert_eq!(c.primary(S), APP3);
    let e = event(&fx, EventKind::Failover);
    assert!(
        e.reason.contains("promoting the freshest, app3"),
        "{}",
        e.reason
    );
}

#[test]
fn a_returning_ex_primary_keeps_only_what_changed_after_the_new_primarys_copy() {
    let mut c = synced(policy(Election::RoundRobin));
    round(&mut c, 3_000, true); // app2's copy: taken at app1's clock 3
    c.health_changed(APP1, Health::Down, 3_500);
    assert_eq!(c.primary(S), APP2);
    let fx = c.health_changed(APP1, Health::Up, 4_000);
    let resync = passes(&fx).into_iter().find(|o| o.to == APP1).unwrap();
    assert_eq!(resync.kind, PassKind::Resync);
    assert_eq!(
        resync.keep,
        Some(Keep::NewerThan(SourceClock { secs: 3, nanos: 0 }))
    );
}

#[test]
fn a_staler_secondary_replaces_and_a_fresher_one_keeps_after_a_failover() {
    // Round-robin picks app2 although app3 is fresher: app3 keeps what app2 lacks.
    let mut c = synced(policy(Election::RoundRobin));
    round(&mut c, 3_000, false); // app3 at clock 3, app2 still at clock 10 s... of round 1
    c.health_changed(APP1, Health::Down, 3_500);
    assert_eq!(c.primary(S), APP2);
    let to3 = passes(&c.tick(3_500))
        .into_iter()
        .find(|o| o.to == APP3)
        .unwrap();
    assert_eq!(
        to3.keep,
        Some(Keep::NewerThan(SourceClock { secs: 10, nanos: 0 })),
        "app3 holds app1's writes made after app2's copy started"
    );
    // Freshest picks app3; app2, staler, has nothing to keep.
    let mut c = synced(policy(Election::Freshest));
    round(&mut c, 3_000, false);
    c.health_changed(APP1, Health::Down, 3_500);
    assert_eq!(c.primary(S), APP3);
    let to2 = passes(&c.tick(3_500))
        .into_iter()
        .find(|o| o.to == APP2)
        .unwrap();
    assert_eq!(to2.keep, Some(Keep::Nothing));
}

#[test]
fn a_returning_secondary_whose_copy_came_from_the_primary_keeps_nothing() {
    let mut c = synced(policy(Election::Freshest));
    c.health_changed(APP3, Health::Down, 1_000);
    let fx = c.health_changed(APP3, Health::Up, 2_000);
    let resync = passes(&fx).into_iter().find(|o| o.to == APP3).unwrap();
    assert_eq!(resync.kind, PassKind::Resync);
    assert_eq!(resync.keep, Some(Keep::Nothing));
    let fx = c.sync_finished(
        resync.id,
        Ok(PassSummary {
            kept: Some(Kept {
                files: 0,
                bytes: 0,
                dir: String::new(),
                replaced: 2,
            }),
            ..PassSummary::default()
        }),
        2_100,
    );
    assert_eq!(
        event(&fx, EventKind::Resynced).reason,
        "app3 resynced; nothing with writes the primary lacks; 2 stale file(s) replaced"
    );
}

#[test]
fn what_a_pass_overtaken_by_a_failover_kept_is_reported() {
    let mut c = synced(policy(Election::RoundRobin));
    c.health_changed(APP3, Health::Down, 1_000);
    let fx = c.health_changed(APP3, Health::Up, 2_000);
    let resync = passes(&fx).into_iter().find(|o| o.to == APP3).unwrap();
    assert!(resync.keep.is_some());
    // The primary dies while the pass runs; the pass still ends, having set files aside.
    c.health_changed(APP1, Health::Down, 2_500);
    assert_eq!(c.primary(S), APP2);
    let kept = |files| {
        Ok(PassSummary {
            kept: Some(Kept {
                files,
                bytes: 42,
                dir: format!(
                    "/srv/data.dnsd-kept/epoch-{}-pass-{}",
                    resync.epoch, resync.number
                ),
                replaced: 1,
            }),
            ..PassSummary::default()
        })
    };
    let fx = c.sync_finished(resync.id, kept(3), 2_600);
    let e = event(&fx, EventKind::Resynced);
    assert_eq!(e.node.as_deref(), Some("app3"));
    assert_eq!(
        e.reason,
        format!(
            "app3: a pass from app1 ordered in epoch {} ended after the primary changed; \
             3 file(s) with writes the primary lacks (42 bytes) kept in \
             /srv/data.dnsd-kept/epoch-{}-pass-{}; 1 stale file(s) replaced",
            resync.epoch, resync.epoch, resync.number
        )
    );
    assert!(
        c.sync_view(S, APP3).unwrap().resyncing,
        "an overtaken pass does not resync the member"
    );
}

#[test]
fn a_pass_superseded_before_it_started_is_not_a_failure() {
    let mut c = synced(policy(Election::RoundRobin));
    let to3 = passes(&c.tick(1_000 + INTERVAL))
        .into_iter()
        .find(|o| o.to == APP3)
        .unwrap();
    c.health_changed(APP1, Health::Down, 2_500);
    assert_eq!(c.primary(S), APP2);
    let fx = c.sync_finished(
        to3.id,
        Err(PassError::Superseded {
            epoch: to3.epoch,
            current: c.epoch(S),
        }),
        2_600,
    );
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::Event(_))),
        "nothing to report: {fx:?}"
    );
    let view = c.sync_view(S, APP3).unwrap();
    assert_eq!((view.failures, view.last_error), (0, None));
    let next = passes(&fx)
        .into_iter()
        .chain(passes(&c.tick(2_600)))
        .find(|o| o.to == APP3)
        .expect("the new primary's pass goes at once");
    assert_eq!((next.from, next.epoch), (APP2, c.epoch(S)));
    assert!(next.keep.is_some());
}

#[test]
fn kept_folders_are_named_for_distinct_passes() {
    let mut c = synced(policy(Election::Freshest));
    let mut seen = Vec::new();
    for k in 0..3 {
        let t = 1_000 + k * 10_000;
        c.health_changed(APP3, Health::Down, t);
        let fx = c.health_changed(APP3, Health::Up, t + 100);
        let o = passes(&fx).into_iter().find(|o| o.to == APP3).unwrap();
        assert!(o.keep.is_some());
        assert!(!seen.contains(&(o.epoch, o.number)), "{seen:?}");
        seen.push((o.epoch, o.number));
        c.sync_finished(o.id, done_at(t as i64), t + 200);
    }
}

#[test]
fn a_failed_required_fence_strands_the_service_until_it_works() {
    let mut c = synced(Policy {
        fencing: Fencing::Required,
        max_lag: 60_000,
        ..policy(Election::Freshest)
    });
    let fence = hooks(&c.health_changed(APP1, Health::Down, 2_000))
        .pop()
        .unwrap();
    assert!(!c.stranded(S));
    let fx = c.hook_finished(
        fence.id,
        Err(HookError::Simulated("no power switch")),
        2_100,
    );
    assert_eq!(c.primary(S), APP1);
    assert!(c.stranded(S), "a failed required fence strands the service");
    assert!(
        event(&fx, EventKind::SwitchoverFailed)
            .reason
            .contains("not promoting app2 (fencing = \"required\")")
    );
    // It is tried again after FENCE_RETRY; this time the fence works.
    let again = hooks(&c.tick(2_100 + FENCE_RETRY)).pop().unwrap();
    assert_eq!(again.hook, Hook::Fence);
    c.hook_finished(again.id, Ok(()), 2_200 + FENCE_RETRY);
    assert!(!c.stranded(S));
    assert_eq!(c.primary(S), APP2);
}

#[test]
fn operator_moves_wait_until_the_primarys_health_is_known() {
    let (mut c, _) = Controller::new(&three(Policy::plain()), None, 0);
    c.health_changed(APP2, Health::Up, 1);
    c.health_changed(APP3, Health::Up, 1);
    for action in [
        Action::Failover { service: None },
        Action::Promote {
            service: None,
            node: "app2".into(),
        },
    ] {
        let (r, fx) = c.act(&action, "op", 2);
        let refusal = r.unwrap_err();
        assert_eq!(refusal.kind(), dnsd_api::RefusalKind::PrimaryHealthUnknown);
        assert!(
            refusal.to_string().contains("app1 is not known yet"),
            "{refusal}"
        );
        assert!(!fx.contains(&Effect::Publish));
    }
    c.health_changed(APP1, Health::Up, 3);
    let (r, _) = c.act(&Action::Failover { service: None }, "op", 4);
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn a_failover_the_state_file_cannot_take_is_withdrawn() {
    let mut c = synced(Policy {
        max_lag: 60_000,
        ..policy(Election::Freshest)
    });
    let (epoch, serial) = (c.epoch(S), c.serial());
    let fx = c.health_changed(APP1, Health::Down, 2_000);
    assert_eq!(c.primary(S), APP2);
    assert!(fx.contains(&Effect::Publish) && fx.contains(&Effect::Persist));
    let (more, withdrawn) = c.persist_failed("disk full", 2_000);
    assert_eq!(
        withdrawn,
        vec![Withdrawn {
            service: S,
            name: "www".into(),
            epoch: epoch + 1
        }]
    );
    assert_eq!(
        (c.primary(S), c.epoch(S), c.serial()),
        (APP1, epoch, serial)
    );
    assert!(c.stranded(S));
    let e = event(&more, EventKind::SwitchoverFailed);
    assert!(
        e.reason
            .starts_with("cannot write the state file (disk full), so app2 is not made primary")
            && e.reason.contains("DNS stays on app1"),
        "{}",
        e.reason
    );
    assert!(!more.contains(&Effect::Publish));
    // Once the state file takes it, the next attempt commits.
    c.tick(2_000 + FENCE_RETRY);
    c.persisted_ok();
    assert_eq!(c.primary(S), APP2);
    assert_eq!(
        c.persist_failed("again", 9_000).1,
        vec![],
        "nothing left to withdraw"
    );
}

#[test]
fn a_switchover_the_state_file_cannot_take_is_rolled_back() {
    let mut c = synced(Policy {
        promote_hook: true,
        demote_hook: true,
        failback: Failback::Manual,
        ..policy(Election::Freshest)
    });
    let (r, fx) = c.act(
        &Action::Promote {
            service: None,
            node: "app2".into(),
        },
        "op",
        100,
    );
    assert!(r.is_ok());
    let demote = hooks(&fx).pop().unwrap();
    let fx = c.hook_finished(demote.id, Ok(()), 200);
    let last = passes(&fx).pop().unwrap();
    let promote = hooks(&c.sync_finished(last.id, done_at(0), 300))
        .pop()
        .unwrap();
    c.hook_finished(promote.id, Ok(()), 400);
    assert_eq!(c.primary(S), APP2);
    let (more, withdrawn) = c.persist_failed("read-only file system", 400);
    assert_eq!(withdrawn.len(), 1);
    assert_eq!(c.primary(S), APP1);
    let re = hooks(&more).pop().expect("the old primary is re-promoted");
    assert_eq!((re.hook, re.node), (Hook::Promote, APP1));
}

#[test]
fn a_failed_switchover_without_promote_hook_says_the_old_primary_may_be_demoted() {
    let mut c = synced(Policy {
        demote_hook: true,
        ..policy(Election::Freshest)
    });
    let (_, fx) = c.act(&Action::Failover { service: None }, "op", 100);
    let demote = hooks(&fx).pop().unwrap();
    let fx = c.hook_finished(demote.id, Ok(()), 200);
    let last = passes(&fx).pop().unwrap();
    let fx = c.sync_finished(last.id, Err(PassError::Simulated("no space")), 300);
    let e = event(&fx, EventKind::SwitchoverFailed);
    assert!(
        e.reason
            .contains("app1 was demoted and there is no promote hook to re-enable it"),
        "{}",
        e.reason
    );
    assert!(!e.reason.contains("stays primary;"), "{}", e.reason);
}
