//! Tests of service checks, restart-then-migrate and flap quarantine, one rule each, with
//! a simulated clock: a failing check on a live primary is restarted and recovers; the
//! restarts run out and the service fails over once the window is over; a dead host
//! fails over at once; a flapping member is quarantined, released, or lifted by an
//! operator.

use super::safety_tests::{event, hooks, three};
use super::*;

const S: ServiceId = ServiceId(0);
const APP1: NodeId = NodeId(0);
const APP2: NodeId = NodeId(1);
const APP3: NodeId = NodeId(2);
const WINDOW: Millis = 30_000;
const BACKOFF: Millis = 2_000;

fn restart() -> RestartPolicy {
    RestartPolicy {
        attempts: 2,
        window: WINDOW,
        backoff: BACKOFF,
    }
}

fn checked(restart: Option<RestartPolicy>, flap: Option<FlapPolicy>) -> Policy {
    Policy {
        checked: true,
        restart,
        flap,
        ..Policy::plain()
    }
}

/// Every host up and every check passing at t = 1.
fn healthy(policy: Policy) -> Controller {
    let (mut c, _) = Controller::new(&three(policy), None, 0);
    for n in [APP1, APP2, APP3] {
        c.health_changed(n, Health::Up, 1);
        c.check_changed(S, n, Health::Up, 1);
    }
    c
}

fn restarts(fx: &[Effect]) -> Vec<HookOrder> {
    hooks(fx)
        .into_iter()
        .filter(|o| o.hook == Hook::Restart)
        .collect()
}

fn has(fx: &[Effect], kind: EventKind) -> bool {
    fx.iter()
        .any(|e| matches!(e, Effect::Event(e) if e.kind == kind))
}

#[test]
fn a_failing_check_on_a_live_primary_is_restarted_and_recovers_in_place() {
    let mut c = healthy(checked(Some(restart()), None));
    let fx = c.check_changed(S, APP1, Health::Down, 1_000);
    let down = event(&fx, EventKind::NodeDown);
    assert_eq!(
        (down.service.as_deref(), down.node.as_deref()),
        (Some("www"), Some("app1"))
    );
    assert_eq!(down.reason, "www check: up -> down (its host is up)");
    let order = restarts(&fx).pop().expect("a restart of the primary");
    assert_eq!((order.node, order.epoch), (APP1, 1));
    assert_eq!(
        event(&fx, EventKind::Hook).reason,
        "app1's service check fails while its host answers: restarting it (attempt 1 of 2); failing over if the check has not passed 30s from now"
    );
    assert_eq!(c.health(APP1), Health::Up, "its host still answers");
    assert_eq!(c.serves(S, APP1), Health::Down);
    let r = c.recovery(S).unwrap();
    assert_eq!((r.node, r.attempt, r.attempts), (APP1, 1, 2));
    assert!(r.restarting);
    assert_eq!(r.deadline, 1_000 + WINDOW);
    assert_eq!(c.transition(S), None, "a restart does not move the primary");

    let fx = c.hook_finished(order.id, Ok(()), 3_000);
    assert_eq!(
        event(&fx, EventKind::Hook).reason,
        "restart 1 of 2 on app1 done; waiting for its check; next restart in 2s if it still fails"
    );
    assert_eq!(c.recovery(S).unwrap().next_attempt, Some(5_000));

    let fx = c.check_changed(S, APP1, Health::Up, 4_000);
    assert_eq!(
        event(&fx, EventKind::Recovered).reason,
        "app1's service check passes again after its restart: it stays primary"
    );
    assert_eq!((c.primary(S), c.epoch(S)), (APP1, 1));
    assert!(c.recovery(S).is_none());
    assert!(!fx.contains(&Effect::Publish));
    assert!(!has(&c.tick(40_000), EventKind::Failover));
}

#[test]
fn when_restarts_do_not_help_it_fails_over_once_the_window_is_over() {
    let mut c = healthy(checked(Some(restart()), None));
    let first = restarts(&c.check_changed(S, APP1, Health::Down, 1_000))
        .pop()
        .unwrap();
    let fx = c.hook_finished(first.id, Err(HookError::Simulated("exit status: 1")), 2_000);
    assert_eq!(
        event(&fx, EventKind::Hook).reason,
        "restart 1 of 2 on app1 failed: exit status: 1; waiting for its check; next restart in 2s if it still fails"
    );
    assert!(restarts(&c.tick(3_999)).is_empty(), "backing off");
    let fx = c.tick(4_000);
    let second = restarts(&fx).pop().expect("the second attempt");
    assert_eq!(
        event(&fx, EventKind::Hook).reason,
        "app1's service check still fails: restarting it again (attempt 2 of 2)"
    );
    let fx = c.hook_finished(second.id, Ok(()), 5_000);
    assert_eq!(
        event(&fx, EventKind::Hook).reason,
        "restart 2 of 2 on app1 done; no restart left; failing over in 26s if its check has not passed by then"
    );
    for t in [10_000, 20_000, 30_999] {
        let fx = c.tick(t);
        assert!(restarts(&fx).is_empty(), "no third restart");
        assert_eq!(c.primary(S), APP1, "not before the window is over");
    }
    let fx = c.tick(31_000);
    assert_eq!((c.primary(S), c.epoch(S)), (APP2, 2));
    let e = event(&fx, EventKind::Failover);
    assert_eq!(
        e.reason,
        "app1's service check has not passed within 30s of failing, 2 restart(s) tried; app2 is the next eligible member in round-robin order"
    );
    assert!(c.recovery(S).is_none());
}

#[test]
fn a_window_that_ends_during_a_restart_fails_over_when_it_ends() {
    let mut c = healthy(checked(Some(restart()), None));
    let first = restarts(&c.check_changed(S, APP1, Health::Down, 1_000))
        .pop()
        .unwrap();
    c.tick(40_000);
    assert_eq!(c.primary(S), APP1, "the restart under way is waited for");
    c.hook_finished(first.id, Err(HookError::Simulated("timed out")), 41_000);
    assert_eq!(c.primary(S), APP2);
}

#[test]
fn a_dead_host_fails_over_at_once_even_while_it_is_being_restarted() {
    let mut c = healthy(checked(Some(restart()), None));
    c.check_changed(S, APP1, Health::Down, 1_000);
    let fx = c.health_changed(APP1, Health::Down, 1_500);
    assert_eq!(
        event(&fx, EventKind::Hook).reason,
        "restart of app1 stopped: its host went down"
    );
    assert!(
        event(&fx, EventKind::Failover)
            .reason
            .starts_with("app1 is down; app2")
    );
    assert_eq!(c.primary(S), APP2);
}

#[test]
fn without_a_restart_hook_a_failing_check_fails_over_at_once() {
    let mut c = healthy(checked(None, None));
    let fx = c.check_changed(S, APP1, Health::Down, 1_000);
    assert!(restarts(&fx).is_empty());
    assert_eq!(c.primary(S), APP2);
    assert_eq!(
        event(&fx, EventKind::Failover).reason,
        "app1's service check fails while its host answers, and no restart hook is configured; app2 is the next eligible member in round-robin order"
    );
}

#[test]
fn a_member_whose_check_fails_is_not_promoted_though_its_host_is_up() {
    let (mut c, _) = Controller::new(&three(checked(None, None)), None, 0);
    for n in [APP1, APP2, APP3] {
        c.health_changed(n, Health::Up, 1);
    }
    c.check_changed(S, APP1, Health::Up, 1);
    assert_eq!(c.eligibility(S, APP2), Err(Skip::CheckUnknown));
    c.check_changed(S, APP3, Health::Up, 2);
    c.check_changed(S, APP2, Health::Down, 2);
    assert_eq!(c.eligibility(S, APP2), Err(Skip::CheckFailing));
    assert_eq!(c.health(APP2), Health::Up);
    assert_eq!(
        (c.check(S, APP2), c.serves(S, APP2)),
        (Some(Health::Down), Health::Down)
    );
    c.health_changed(APP1, Health::Down, 3);
    assert_eq!(c.primary(S), APP3, "app2 is skipped: its service is down");
    assert_eq!(Skip::CheckFailing.to_string(), "fails its service check");
    assert_eq!(
        Skip::CheckUnknown.to_string(),
        "has not passed its service check yet"
    );
}

#[test]
fn a_stranded_service_recovers_when_its_primary_serves_again() {
    let mut c = healthy(checked(None, None));
    c.check_changed(S, APP2, Health::Down, 2);
    c.check_changed(S, APP3, Health::Down, 2);
    let fx = c.check_changed(S, APP1, Health::Down, 3);
    assert!(c.stranded(S));
    assert!(
        event(&fx, EventKind::Stranded).reason.starts_with(
            "app1's service check fails while its host answers, and no restart hook is configured and no member can take over (app2 fails its service check, app3 fails its service check)"
        )
    );
    let fx = c.check_changed(S, APP1, Health::Up, 4);
    assert!(!c.stranded(S));
    assert_eq!(event(&fx, EventKind::Recovered).reason, "app1 serves again");
}

#[test]
fn a_restart_is_never_ordered_while_another_runs_on_the_member() {
    let mut c = healthy(checked(Some(restart()), None));
    let first = restarts(&c.check_changed(S, APP1, Health::Down, 1_000))
        .pop()
        .unwrap();
    // The check passes before the restart reports: the recovery ends, the restart runs on.
    c.check_changed(S, APP1, Health::Up, 1_500);
    assert!(c.recovery(S).is_none());
    let fx = c.check_changed(S, APP1, Health::Down, 2_000);
    assert!(restarts(&fx).is_empty(), "{fx:#?}");
    assert!(
        event(&fx, EventKind::Hook)
            .reason
            .contains("(a restart ordered earlier is still running: waiting for it first)")
    );
    // That restart's report now counts as the first attempt.
    let fx = c.hook_finished(first.id, Ok(()), 2_500);
    assert!(
        event(&fx, EventKind::Hook)
            .reason
            .starts_with("restart 1 of 2 on app1 done")
    );
    assert_eq!(c.recovery(S).unwrap().next_attempt, Some(4_500));
    assert_eq!(restarts(&c.tick(4_500)).len(), 1);
}

#[test]
fn a_restart_that_ends_after_its_recovery_is_still_reported() {
    let mut c = healthy(checked(Some(restart()), None));
    let first = restarts(&c.check_changed(S, APP1, Health::Down, 1_000))
        .pop()
        .unwrap();
    c.check_changed(S, APP1, Health::Up, 1_500);
    let fx = c.hook_finished(first.id, Ok(()), 2_000);
    let e = event(&fx, EventKind::Hook);
    assert_eq!(
        (e.reason.as_str(), e.node.as_deref()),
        (
            "restart on app1 done (nothing waited for it any more)",
            Some("app1")
        )
    );
    assert!(c.recovery(S).is_none());
}

#[test]
fn pausing_stops_a_recovery_and_resuming_starts_it_again() {
    let mut c = healthy(checked(Some(restart()), None));
    c.check_changed(S, APP1, Health::Down, 1_000);
    let (r, fx) = c.act(&Action::Pause { service: None }, "op", 1_100);
    r.unwrap();
    assert_eq!(
        event(&fx, EventKind::Hook).reason,
        "restart of app1 stopped: service paused by op"
    );
    assert!(c.recovery(S).is_none());
    c.tick(60_000);
    assert_eq!(c.primary(S), APP1, "paused: no failover");
    let (r, fx) = c.act(&Action::Resume { service: None }, "op", 60_100);
    r.unwrap();
    assert!(c.recovery(S).is_some());
    assert!(
        restarts(&fx).is_empty(),
        "the first restart may still run: waited for"
    );
}

#[test]
fn an_operator_move_stops_the_recovery() {
    let mut c = healthy(checked(Some(restart()), None));
    c.check_changed(S, APP1, Health::Down, 1_000);
    let (r, fx) = c.act(&Action::Failover { service: None }, "op", 1_100);
    assert_eq!(r.unwrap(), "www moved from app1 to app2 (epoch 2)");
    assert_eq!(
        event(&fx, EventKind::Hook).reason,
        "restart of app1 stopped: the operator moves www to app2"
    );
    assert!(c.recovery(S).is_none());
}

fn flap() -> FlapPolicy {
    FlapPolicy {
        threshold: 2,
        window: 60_000,
        hold_down: 120_000,
    }
}

/// app2's service goes down and up until it has changed `changes` times, from `t`.
fn flap_app2(c: &mut Controller, t: Millis, changes: usize) -> Fx {
    let mut fx = Vec::new();
    for k in 0..changes {
        let h = if k % 2 == 0 { Health::Down } else { Health::Up };
        fx = c.check_changed(S, APP2, h, t + k as Millis * 1_000);
    }
    fx
}

#[test]
fn a_flapping_member_is_quarantined_until_its_hold_down_is_over() {
    let mut c = healthy(checked(None, Some(flap())));
    flap_app2(&mut c, 10_000, 2);
    assert_eq!(c.quarantined_until(S, APP2), None, "2 changes are allowed");
    assert_eq!(c.health_changes(S, APP2), 2);
    let fx = flap_app2(&mut c, 20_000, 1);
    let e = event(&fx, EventKind::Maintenance);
    assert_eq!(e.node.as_deref(), Some("app2"));
    assert_eq!(
        e.reason,
        "app2 quarantined in www for 120s: its health changed 3 times within 60s (flap_threshold 2); it is neither promoted nor failed back to until then"
    );
    assert!(fx.contains(&Effect::Persist));
    assert_eq!(c.quarantined_until(S, APP2), Some(140_000));
    c.check_changed(S, APP2, Health::Up, 21_000);
    assert_eq!(
        c.eligibility(S, APP2),
        Err(Skip::Quarantined {
            until: 140_000,
            left: 119_000
        })
    );
    assert_eq!(
        c.eligibility(S, APP2).unwrap_err().to_string(),
        "is quarantined for flapping (119s left)"
    );
    c.health_changed(APP1, Health::Down, 22_000);
    assert_eq!(c.primary(S), APP3, "the quarantined app2 is skipped");
    let fx = c.tick(140_000);
    assert_eq!(
        event(&fx, EventKind::Maintenance).reason,
        "app2 released from quarantine in www: its hold-down is over"
    );
    assert_eq!(c.eligibility(S, APP2), Ok(()));
}

#[test]
fn changes_older_than_the_window_do_not_count_and_a_host_outage_counts_once_each_way() {
    let mut c = healthy(checked(None, Some(flap())));
    flap_app2(&mut c, 1_000, 2);
    // A minute later the first two changes are out of the window.
    flap_app2(&mut c, 70_000, 2);
    assert_eq!(c.quarantined_until(S, APP2), None);
    // Host down then its check down: one change; back up, check up: one more.
    let mut c = healthy(checked(None, Some(flap())));
    c.health_changed(APP3, Health::Down, 1_000);
    c.check_changed(S, APP3, Health::Down, 1_100);
    c.health_changed(APP3, Health::Up, 2_000);
    c.check_changed(S, APP3, Health::Up, 2_100);
    assert_eq!(c.health_changes(S, APP3), 2);
    assert_eq!(c.quarantined_until(S, APP3), None);
}

#[test]
fn a_quarantined_preferred_member_is_not_failed_back_to() {
    let mut c = healthy(Policy {
        failback: Failback::Auto { after: 1_000 },
        ..checked(None, Some(flap()))
    });
    c.health_changed(APP1, Health::Down, 1_000);
    assert_eq!(c.primary(S), APP2);
    c.health_changed(APP1, Health::Up, 2_000);
    c.health_changed(APP1, Health::Down, 3_000);
    c.health_changed(APP1, Health::Up, 4_000);
    assert!(c.quarantined_until(S, APP1).is_some());
    for t in [10_000, 60_000, 120_000] {
        c.tick(t);
        assert_eq!(c.primary(S), APP2, "no failback to a quarantined member");
    }
    c.tick(124_000);
    c.tick(125_500);
    assert_eq!(c.primary(S), APP1, "failback once it is released");
}

#[test]
fn an_operator_lifts_a_quarantine_and_is_refused_when_there_is_none() {
    let mut c = healthy(checked(None, Some(flap())));
    let lift = |node: &str| Action::Unquarantine {
        service: None,
        node: node.into(),
    };
    let before = c.clone();
    let (r, fx) = c.act(&lift("app2"), "op", 5_000);
    let refusal = r.unwrap_err();
    assert_eq!(refusal.to_string(), "app2 is not quarantined");
    assert_eq!(refusal.kind(), dnsd_api::RefusalKind::NotQuarantined);
    assert_eq!(
        event(&fx, EventKind::Refused).reason,
        "unquarantine app2 from op: app2 is not quarantined"
    );
    c.now = before.now;
    assert_eq!(c, before, "a refusal changes nothing");
    let (r, _) = c.act(
        &Action::Unquarantine {
            service: Some("www".into()),
            node: "app2".into(),
        },
        "op",
        5_000,
    );
    assert_eq!(r.unwrap_err().to_string(), "app2 is not quarantined in www");

    flap_app2(&mut c, 10_000, 3);
    assert!(c.quarantined_until(S, APP2).is_some());
    let (r, fx) = c.act(&lift("APP2"), "op", 13_000);
    assert_eq!(r.unwrap(), "app2 is no longer quarantined in www");
    let e = event(&fx, EventKind::Maintenance);
    assert_eq!(
        (e.reason.as_str(), e.node.as_deref()),
        ("quarantine lifted by op", Some("app2"))
    );
    assert!(fx.contains(&Effect::Persist));
    assert_eq!(c.quarantined_until(S, APP2), None);
    assert_eq!(c.health_changes(S, APP2), 0, "the count starts afresh");
}

#[test]
fn a_quarantine_survives_a_restart_of_dnsd() {
    let mut c = healthy(checked(None, Some(flap())));
    flap_app2(&mut c, 10_000, 3);
    let saved = c.persisted();
    let json = serde_json::to_string(&saved).unwrap();
    assert!(json.contains(r#""quarantined":{"app2":132000}"#), "{json}");
    let restored: Persisted = serde_json::from_str(&json).unwrap();
    let (r, _) = Controller::new(&three(checked(None, Some(flap()))), Some(&restored), 20_000);
    assert_eq!(r.quarantined_until(S, APP2), Some(132_000));
    // A state file from before quarantines reads as none.
    let old = json.replace(r#","quarantined":{"app2":132000}"#, "");
    let restored: Persisted = serde_json::from_str(&old).unwrap();
    assert!(restored.services[0].quarantined.is_empty());
}

#[test]
fn health_without_flap_damping_is_never_quarantined() {
    let mut c = healthy(checked(None, None));
    flap_app2(&mut c, 10_000, 20);
    assert_eq!(c.quarantined_until(S, APP2), None);
    assert_eq!(c.health_changes(S, APP2), 0);
}

#[test]
fn recovery_invariants_hold_through_a_whole_recovery() {
    let mut c = healthy(checked(Some(restart()), Some(flap())));
    let mut t = 1_000;
    let mut outstanding = restarts(&c.check_changed(S, APP1, Health::Down, t));
    assert_eq!(c.check_states(), Ok(()));
    while c.primary(S) == APP1 {
        assert!(t < 100_000, "never failed over");
        t += 500;
        for o in std::mem::take(&mut outstanding) {
            assert_eq!(o.node, APP1);
            let fx = c.hook_finished(o.id, Err(HookError::Simulated("no")), t);
            outstanding.extend(restarts(&fx));
            assert_eq!(c.check_states(), Ok(()));
        }
        outstanding.extend(restarts(&c.tick(t)));
        assert!(outstanding.len() <= 1, "two restarts at once");
        assert_eq!(c.check_states(), Ok(()));
    }
    assert_eq!(c.primary(S), APP2);
}
