//! Tests of the decision core: scripted scenarios and a property test over random
//! fault sequences. Time is simulated; nothing here sleeps.

use super::*;
use dnsd_api::Action;
use proptest::prelude::*;

fn topology(nodes: usize, services: &[&[usize]]) -> Topology {
    Topology {
        nodes: (1..=nodes).map(|i| format!("app{i}")).collect(),
        services: services
            .iter()
            .enumerate()
            .map(|(i, m)| ServiceSpec {
                name: format!("svc{i}"),
                members: m.iter().copied().map(NodeId).collect(),
                policy: Policy::plain(),
            })
            .collect(),
    }
}

fn events(fx: &[Effect]) -> Vec<&Event> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn kinds(fx: &[Effect]) -> Vec<EventKind> {
    events(fx).iter().map(|e| e.kind).collect()
}

/// A controller with three members all up.
fn three_up() -> Controller {
    let (mut c, _) = Controller::new(&topology(3, &[&[0, 1, 2]]), None, 0);
    for n in (0..3).map(NodeId) {
        c.health_changed(n, Health::Up, 1);
    }
    c
}

#[test]
fn starts_on_the_preferred_member() {
    let (c, fx) = Controller::new(&topology(3, &[&[1, 0, 2]]), None, 5);
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
    assert_eq!(c.epoch(ServiceId(0)), 1);
    assert_eq!(kinds(&fx), vec![EventKind::Started]);
    assert!(fx.contains(&Effect::Publish));
}

#[test]
fn primary_down_promotes_the_next_member_and_bumps_epoch_and_serial() {
    let mut c = three_up();
    let serial = c.serial();
    let fx = c.health_changed(NodeId(0), Health::Down, 100);
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
    assert_eq!(c.epoch(ServiceId(0)), 2);
    assert!(c.serial() > serial);
    let failover = events(&fx)
        .into_iter()
        .find(|e| e.kind == EventKind::Failover)
        .unwrap();
    assert_eq!(failover.at_ms, 100);
    assert_eq!(failover.service.as_deref(), Some("svc0"));
    assert_eq!(failover.old_primary.as_deref(), Some("app1"));
    assert_eq!(failover.new_primary.as_deref(), Some("app2"));
    assert_eq!(failover.epoch, Some(2));
    assert!(
        failover.reason.contains("app1 is down"),
        "{}",
        failover.reason
    );
    assert!(fx.contains(&Effect::Publish));
    assert!(fx.contains(&Effect::Persist));
}

#[test]
fn round_robin_wraps_around_from_the_failed_primary() {
    let mut c = three_up();
    c.health_changed(NodeId(0), Health::Down, 10); // app1 -> app2
    c.health_changed(NodeId(1), Health::Down, 20); // app2 -> app3
    assert_eq!(c.primary(ServiceId(0)), NodeId(2));
    c.health_changed(NodeId(0), Health::Up, 30); // app1 back: rejoins as secondary
    assert_eq!(c.primary(ServiceId(0)), NodeId(2));
    assert_eq!(c.role(ServiceId(0), NodeId(0)), Role::Secondary);
    c.health_changed(NodeId(2), Health::Down, 40); // app3 -> wraps to app1 (app2 is down)
    assert_eq!(c.primary(ServiceId(0)), NodeId(0));
    assert_eq!(c.epoch(ServiceId(0)), 4);
}

#[test]
fn skips_down_and_maintenance_members() {
    let mut c = three_up();
    c.act(
        &Action::Maintenance {
            node: "app2".into(),
            on: true,
        },
        "test",
        5,
    )
    .0
    .unwrap();
    c.health_changed(NodeId(0), Health::Down, 10);
    assert_eq!(
        c.primary(ServiceId(0)),
        NodeId(2),
        "app2 is in maintenance, app3 is next"
    );
}

#[test]
fn member_with_unknown_health_is_not_promoted() {
    let (mut c, _) = Controller::new(&topology(3, &[&[0, 1, 2]]), None, 0);
    c.health_changed(NodeId(2), Health::Up, 1);
    c.health_changed(NodeId(0), Health::Down, 2);
    assert_eq!(
        c.primary(ServiceId(0)),
        NodeId(2),
        "app2 has not been heard from yet"
    );
}

#[test]
fn no_member_up_keeps_the_last_primary_and_says_so() {
    let mut c = three_up();
    c.health_changed(NodeId(1), Health::Down, 1);
    c.health_changed(NodeId(2), Health::Down, 2);
    let serial = c.serial();
    let fx = c.health_changed(NodeId(0), Health::Down, 3);
    assert_eq!(c.primary(ServiceId(0)), NodeId(0));
    assert!(c.stranded(ServiceId(0)));
    assert_eq!(c.serial(), serial, "nothing moved");
    let e = events(&fx)
        .into_iter()
        .find(|e| e.kind == EventKind::Stranded)
        .unwrap();
    assert!(
        e.reason.contains("app2 is down, app3 is down"),
        "{}",
        e.reason
    );
    assert!(e.reason.contains("keeps answering"), "{}", e.reason);
    // A tick while stranded does not repeat the event.
    assert!(kinds(&c.tick(4)).is_empty());
    // A secondary coming back is promoted.
    let fx = c.health_changed(NodeId(2), Health::Up, 5);
    assert_eq!(c.primary(ServiceId(0)), NodeId(2));
    assert!(!c.stranded(ServiceId(0)));
    assert!(kinds(&fx).contains(&EventKind::Failover));
}

#[test]
fn stranded_service_recovers_when_its_primary_returns() {
    let mut c = three_up();
    c.health_changed(NodeId(1), Health::Down, 1);
    c.health_changed(NodeId(2), Health::Down, 2);
    c.health_changed(NodeId(0), Health::Down, 3);
    let fx = c.health_changed(NodeId(0), Health::Up, 4);
    assert_eq!(c.primary(ServiceId(0)), NodeId(0));
    assert_eq!(c.epoch(ServiceId(0)), 1);
    assert!(!c.stranded(ServiceId(0)));
    assert!(kinds(&fx).contains(&EventKind::Recovered));
}

#[test]
fn paused_service_takes_no_automatic_decision_until_resumed() {
    let mut c = three_up();
    c.act(&Action::Pause { service: None }, "test", 1)
        .0
        .unwrap();
    c.health_changed(NodeId(0), Health::Down, 2);
    c.tick(3);
    assert_eq!(c.primary(ServiceId(0)), NodeId(0));
    let (r, fx) = c.act(
        &Action::Resume {
            service: Some("svc0".into()),
        },
        "test",
        4,
    );
    r.unwrap();
    assert_eq!(c.primary(ServiceId(0)), NodeId(1), "resuming re-evaluates");
    assert!(kinds(&fx).contains(&EventKind::Failover));
}

#[test]
fn operator_failover_moves_to_the_next_eligible_member() {
    let mut c = three_up();
    let (r, fx) = c.act(&Action::Failover { service: None }, "console", 7);
    assert_eq!(r.unwrap(), "svc0 moved from app1 to app2 (epoch 2)");
    let e = events(&fx)
        .into_iter()
        .find(|e| e.kind == EventKind::Promotion)
        .unwrap();
    assert!(e.reason.contains("console"));
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
}

#[test]
fn operator_failover_is_refused_when_nobody_can_take_over() {
    let mut c = three_up();
    c.health_changed(NodeId(1), Health::Down, 1);
    c.act(
        &Action::Maintenance {
            node: "app3".into(),
            on: true,
        },
        "t",
        2,
    )
    .0
    .unwrap();
    let before = c.clone();
    let (r, fx) = c.act(&Action::Failover { service: None }, "t", 3);
    c.now = before.now;
    assert_eq!(
        r.unwrap_err().to_string(),
        "no member of svc0 can take over: app2 is down, app3 is in maintenance"
    );
    assert_eq!(c, before, "a refusal changes nothing");
    assert_eq!(kinds(&fx), vec![EventKind::Refused]);
}

#[test]
fn promote_checks_membership_and_eligibility() {
    let (mut c, _) = Controller::new(&topology(4, &[&[0, 1, 2]]), None, 0);
    for n in (0..4).map(NodeId) {
        c.health_changed(n, Health::Up, 1);
    }
    let promote = |node: &str| Action::Promote {
        service: Some("svc0".into()),
        node: node.into(),
    };
    assert_eq!(
        c.act(&promote("app4"), "t", 2).0.unwrap_err().to_string(),
        "app4 is not a member of svc0"
    );
    assert_eq!(
        c.act(&promote("nope"), "t", 2).0.unwrap_err().to_string(),
        "unknown node \"nope\""
    );
    assert_eq!(
        c.act(&promote("app1"), "t", 2).0.unwrap_err().to_string(),
        "app1 is the primary"
    );
    c.health_changed(NodeId(2), Health::Down, 3);
    assert_eq!(
        c.act(&promote("app3"), "t", 4).0.unwrap_err().to_string(),
        "app3 is down"
    );
    c.act(&promote("app2"), "t", 5).0.unwrap();
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
}

#[test]
fn maintenance_of_a_primary_is_refused() {
    let mut c = three_up();
    let (r, _) = c.act(
        &Action::Maintenance {
            node: "app1".into(),
            on: true,
        },
        "t",
        1,
    );
    assert_eq!(
        r.unwrap_err().to_string(),
        "app1 is the primary of svc0; fail over or promote another member first"
    );
    let (r, _) = c.act(
        &Action::Maintenance {
            node: "app2".into(),
            on: false,
        },
        "t",
        1,
    );
    assert_eq!(
        r.unwrap_err().to_string(),
        "app2 is already out of maintenance"
    );
}

#[test]
fn leaving_maintenance_can_unstrand_a_service() {
    let mut c = three_up();
    c.act(
        &Action::Maintenance {
            node: "app2".into(),
            on: true,
        },
        "t",
        1,
    )
    .0
    .unwrap();
    c.act(
        &Action::Maintenance {
            node: "app3".into(),
            on: true,
        },
        "t",
        1,
    )
    .0
    .unwrap();
    c.health_changed(NodeId(0), Health::Down, 2);
    assert!(c.stranded(ServiceId(0)));
    c.act(
        &Action::Maintenance {
            node: "app3".into(),
            on: false,
        },
        "t",
        3,
    )
    .0
    .unwrap();
    assert_eq!(c.primary(ServiceId(0)), NodeId(2));
}

#[test]
fn service_is_required_when_there_are_several() {
    let (mut c, _) = Controller::new(&topology(2, &[&[0, 1], &[1, 0]]), None, 0);
    let (r, _) = c.act(&Action::Failover { service: None }, "t", 1);
    assert_eq!(
        r.unwrap_err().to_string(),
        "there are 2 services; name one (svc0, svc1)"
    );
}

#[test]
fn a_node_in_two_services_fails_over_both() {
    let (mut c, _) = Controller::new(&topology(3, &[&[0, 1, 2], &[0, 2, 1]]), None, 0);
    for n in (0..3).map(NodeId) {
        c.health_changed(n, Health::Up, 1);
    }
    c.health_changed(NodeId(0), Health::Down, 2);
    assert_eq!(c.primary(ServiceId(0)), NodeId(1));
    assert_eq!(c.primary(ServiceId(1)), NodeId(2));
}

#[test]
fn restart_keeps_primaries_epochs_flags_and_grows_the_serial() {
    let mut c = three_up();
    c.health_changed(NodeId(0), Health::Down, 1);
    c.act(
        &Action::Maintenance {
            node: "app3".into(),
            on: true,
        },
        "t",
        2,
    )
    .0
    .unwrap();
    c.act(&Action::Pause { service: None }, "t", 3).0.unwrap();
    let saved = c.persisted();
    let json = serde_json::to_string(&saved).unwrap();
    let restored: Persisted = serde_json::from_str(&json).unwrap();
    let (r, fx) = Controller::new(&topology(3, &[&[0, 1, 2]]), Some(&restored), 10);
    assert_eq!(r.primary(ServiceId(0)), NodeId(1));
    assert_eq!(r.epoch(ServiceId(0)), 2);
    assert!(r.paused(ServiceId(0)));
    assert!(r.maintenance(NodeId(2)));
    assert!(r.serial() > c.serial());
    assert!(events(&fx)[0].reason.starts_with("state restored"));
}

#[test]
fn restore_drops_what_no_longer_fits_the_configuration() {
    let saved = Persisted {
        serial: 9,
        services: vec![
            PersistedService {
                passes: 0,
                name: "svc0".into(),
                primary: "app9".into(),
                epoch: 4,
                paused: false,
                watermarks: Default::default(),
                resyncing: vec![],
                switchover_to: None,
                quarantined: Default::default(),
            },
            PersistedService {
                passes: 0,
                name: "gone".into(),
                primary: "app1".into(),
                epoch: 2,
                paused: false,
                watermarks: Default::default(),
                resyncing: vec![],
                switchover_to: None,
                quarantined: Default::default(),
            },
        ],
        maintenance: vec!["app7".into()],
    };
    let (c, fx) = Controller::new(&topology(2, &[&[0, 1]]), Some(&saved), 0);
    assert_eq!(c.primary(ServiceId(0)), NodeId(0));
    assert_eq!(c.epoch(ServiceId(0)), 5, "epoch still grows");
    let reason = &events(&fx)[0].reason;
    assert!(reason.contains("forgot service gone"), "{reason}");
    assert!(reason.contains("forgot maintenance of app7"), "{reason}");
    assert!(reason.contains("app9 is no longer a member"), "{reason}");
}

#[test]
fn election_explains_every_other_member_in_order() {
    let mut c = three_up();
    c.health_changed(NodeId(1), Health::Down, 1);
    let e = c.election(ServiceId(0));
    assert_eq!(
        e,
        vec![
            Candidate {
                node: NodeId(1),
                verdict: Err(Skip::Down)
            },
            Candidate {
                node: NodeId(2),
                verdict: Ok(())
            },
        ]
    );
    assert_eq!(c.next_candidate(ServiceId(0)), Some(NodeId(2)));
}

// ---------------------------------------------------------------------------
// Property test: random sequences of faults, operator actions and restarts.

#[derive(Debug, Clone)]
enum Op {
    Health(usize, bool),
    /// A service check's verdict: service, node (a no-op if not a member), passing.
    Check(usize, usize, bool),
    Act(Action),
    Tick,
    Restart,
}

fn op(nodes: usize, services: usize) -> impl Strategy<Value = Op> {
    let node = 0..nodes;
    let svc = proptest::option::of(0..services);
    let name = |n: usize| format!("app{}", n + 1);
    let sname = |s: Option<usize>| s.map(|s| format!("svc{s}"));
    prop_oneof![
        6 => (node.clone(), any::<bool>()).prop_map(|(n, up)| Op::Health(n, up)),
        4 => (0..services, node.clone(), any::<bool>()).prop_map(|(s, n, up)| Op::Check(s, n, up)),
        1 => (svc.clone(), node.clone()).prop_map(move |(s, n)| Op::Act(Action::Unquarantine { service: sname(s), node: name(n) })),
        1 => svc.clone().prop_map(move |s| Op::Act(Action::Failover { service: sname(s) })),
        1 => (svc.clone(), node.clone()).prop_map(move |(s, n)| Op::Act(Action::Promote { service: sname(s), node: name(n) })),
        1 => (node, any::<bool>()).prop_map(move |(n, on)| Op::Act(Action::Maintenance { node: name(n), on })),
        1 => svc.clone().prop_map(move |s| Op::Act(Action::Pause { service: sname(s) })),
        1 => svc.prop_map(move |s| Op::Act(Action::Resume { service: sname(s) })),
        1 => Just(Op::Tick),
        1 => Just(Op::Restart),
    ]
}

fn scenario() -> impl Strategy<Value = (Topology, Vec<Op>)> {
    (1usize..=5, 1usize..=3)
        .prop_flat_map(|(nodes, services)| {
            let members = proptest::sample::subsequence((0..nodes).collect::<Vec<_>>(), 1..=nodes)
                .prop_shuffle();
            // Per service: a check or not, and flap damping or not.
            let health = (
                any::<bool>(),
                proptest::option::of((1u32..4, 20u64..400, 10u64..300)),
            );
            (
                Just(nodes),
                proptest::collection::vec((members, health), services),
                proptest::collection::vec(op(nodes, services), 1..120),
            )
        })
        .prop_map(|(nodes, members, ops)| {
            let topo = Topology {
                nodes: (1..=nodes).map(|i| format!("app{i}")).collect(),
                services: members
                    .into_iter()
                    .enumerate()
                    .map(|(i, (m, (checked, flap)))| ServiceSpec {
                        name: format!("svc{i}"),
                        members: m.into_iter().map(NodeId).collect(),
                        policy: Policy {
                            checked,
                            flap: flap.map(|(threshold, window, hold_down)| FlapPolicy {
                                threshold,
                                window,
                                hold_down,
                            }),
                            ..Policy::plain()
                        },
                    })
                    .collect(),
            };
            (topo, ops)
        })
}

/// What the test itself knows of member health, independently of the controller: the
/// host and check verdicts it fed, and the flap rule (more than `threshold` changes of
/// "serves" within `window` quarantine for `hold_down`; the count starts afresh then).
#[derive(Debug, Clone, Default)]
struct HealthModel {
    host: std::collections::HashMap<NodeId, Health>,
    check: std::collections::HashMap<(ServiceId, NodeId), Health>,
    /// Whether it served at its last definite change.
    serving: std::collections::HashMap<(ServiceId, NodeId), bool>,
    changes: std::collections::HashMap<(ServiceId, NodeId), Vec<Millis>>,
    until: std::collections::HashMap<(ServiceId, NodeId), Millis>,
}

impl HealthModel {
    fn serves(&self, topo: &Topology, s: ServiceId, n: NodeId) -> Health {
        let host = self.host.get(&n).copied().unwrap_or(Health::Unknown);
        let check = if topo.services[s.0].policy.checked {
            self.check.get(&(s, n)).copied().unwrap_or(Health::Unknown)
        } else {
            Health::Up
        };
        match (host, check) {
            (Health::Down, _) | (_, Health::Down) => Health::Down,
            (Health::Up, Health::Up) => Health::Up,
            _ => Health::Unknown,
        }
    }

    /// Host or check of `n` in `s` changed at `now`.
    fn changed(&mut self, topo: &Topology, s: ServiceId, n: NodeId, now: Millis) {
        let serving = match self.serves(topo, s, n) {
            Health::Up => true,
            Health::Down => false,
            Health::Unknown => return,
        };
        let was = self.serving.insert((s, n), serving);
        let Some(flap) = topo.services[s.0].policy.flap else {
            return;
        };
        if was.is_none_or(|was| was == serving) {
            return;
        }
        let changes = self.changes.entry((s, n)).or_default();
        changes.retain(|&t| now - t < flap.window);
        changes.push(now);
        if changes.len() > flap.threshold as usize {
            changes.clear();
            self.until.insert((s, n), now + flap.hold_down);
        }
    }

    fn quarantined(&self, s: ServiceId, n: NodeId, now: Millis) -> bool {
        self.until.get(&(s, n)).is_some_and(|&until| until > now)
    }
}

/// The member a failover from `before`'s primary must pick, computed independently of
/// `Controller::election`: walk the member list from the primary's position, skipping
/// members that do not serve (host and check, as the model knows them), are quarantined
/// or in maintenance.
fn reference_next(
    before: &Controller,
    after: &Controller,
    topo: &Topology,
    model: &HealthModel,
    s: ServiceId,
    now: Millis,
) -> Option<NodeId> {
    let members = before.members(s);
    let pos = members
        .iter()
        .position(|&m| m == before.primary(s))
        .unwrap();
    (1..members.len())
        .map(|k| members[(pos + k) % members.len()])
        .find(|&n| {
            model.serves(topo, s, n) == Health::Up
                && !after.maintenance(n)
                && !model.quarantined(s, n, now)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_sequences((topo, ops) in scenario()) {
        let (mut c, _) = Controller::new(&topo, None, 0);
        let mut model = HealthModel::default();
        let services: Vec<ServiceId> = (0..topo.services.len()).map(ServiceId).collect();
        let topo_ref = &topo;
        let with = |n: NodeId| -> Vec<ServiceId> {
            services.iter().copied().filter(|&s| topo_ref.services[s.0].members.contains(&n)).collect()
        };
        let mut now = 0;
        for op in ops {
            now += 10;
            let before = c.clone();
            let fx = match &op {
                Op::Health(n, up) => {
                    let (n, h) = (NodeId(*n), if *up { Health::Up } else { Health::Down });
                    if model.host.insert(n, h) != Some(h) {
                        for s in with(n) {
                            model.changed(&topo, s, n, now);
                        }
                    }
                    c.health_changed(n, h, now)
                }
                Op::Check(s, n, up) => {
                    let (s, n, h) = (ServiceId(*s), NodeId(*n), if *up { Health::Up } else { Health::Down });
                    if topo.services[s.0].members.contains(&n) && model.check.insert((s, n), h) != Some(h) {
                        model.changed(&topo, s, n, now);
                    }
                    c.check_changed(s, n, h, now)
                }
                Op::Act(a) => {
                    let (r, fx) = c.act(a, "prop", now);
                    if r.is_err() {
                        let mut same = before.clone();
                        same.now = c.now;
                        prop_assert_eq!(&c, &same, "refused {:?} changed state", a);
                    }
                    if let Action::Unquarantine { service, node } = a {
                        let n = c.node_index(node).unwrap();
                        let named = service.as_deref().map(|name| c.service_index(name));
                        let lifted: Vec<ServiceId> = with(n)
                            .into_iter()
                            .filter(|&s| named.is_none_or(|named| named == Some(s)))
                            .filter(|&s| model.quarantined(s, n, now))
                            .collect();
                        prop_assert_eq!(r.is_ok(), !lifted.is_empty(), "unquarantine {:?}: {:?}", a, r);
                        for s in lifted {
                            model.until.remove(&(s, n));
                            model.changes.remove(&(s, n));
                        }
                    }
                    fx
                }
                Op::Tick => c.tick(now),
                Op::Restart => {
                    // Time passes first: what it decides (a quarantine's end) is not the
                    // restart's doing.
                    let mut fx = c.tick(now);
                    let saved = c.persisted();
                    let (mut r, more) = Controller::new(&topo, Some(&saved), now);
                    fx.extend(more);
                    // Health is not persisted; the heartbeat and the checks re-report it.
                    // Quarantines are; the counts towards them are not.
                    for n in (0..topo.nodes.len()).map(NodeId) {
                        let h = c.health(n);
                        if h != Health::Unknown {
                            r.health_changed(n, h, now);
                        }
                    }
                    for s in services.iter().copied() {
                        for &n in &topo.services[s.0].members {
                            if let Some(h) = c.check(s, n).filter(|&h| h != Health::Unknown) {
                                r.check_changed(s, n, h, now);
                            }
                        }
                    }
                    model.changes.clear();
                    model.serving.clear();
                    for s in services.iter().copied() {
                        for &n in &topo.services[s.0].members {
                            if model.serves(&topo, s, n) != Health::Unknown {
                                model.serving.insert((s, n), model.serves(&topo, s, n) == Health::Up);
                            }
                        }
                    }
                    for s in (0..topo.services.len()).map(ServiceId) {
                        prop_assert_eq!(r.primary(s), c.primary(s), "restart moved a primary");
                        prop_assert_eq!(r.epoch(s), c.epoch(s));
                    }
                    c = r;
                    fx
                }
            };
            prop_assert_eq!(c.check_states(), Ok(()));
            prop_assert!(c.serial() >= before.serial(), "serial went down");
            // Quarantines start and end exactly as the flap rule says.
            for &s in &services {
                for &n in &topo.services[s.0].members {
                    let expected = model.until.get(&(s, n)).copied().filter(|&until| until > now);
                    prop_assert_eq!(c.quarantined_until(s, n), expected, "quarantine of {:?} in {:?}", n, s);
                    prop_assert_eq!(c.serves(s, n), model.serves(&topo, s, n));
                }
            }
            for s in (0..topo.services.len()).map(ServiceId) {
                // One primary, always a member; epoch monotone.
                prop_assert!(c.members(s).contains(&c.primary(s)));
                prop_assert!(c.epoch(s) >= before.epoch(s), "epoch went down");
                let moved = c.primary(s) != before.primary(s);
                prop_assert_eq!(moved, c.epoch(s) > before.epoch(s), "epoch and primary must move together");
                if moved {
                    prop_assert!(c.serial() > before.serial(), "serial must grow with a role change");
                    prop_assert!(!c.maintenance(c.primary(s)), "promoted a member in maintenance");
                    prop_assert_eq!(c.health(c.primary(s)), Health::Up, "promoted a member that was not up");
                    prop_assert_eq!(model.serves(&topo, s, c.primary(s)), Health::Up, "promoted a member that does not serve");
                    prop_assert!(!model.quarantined(s, c.primary(s), now), "promoted a quarantined member");
                    prop_assert!(fx.contains(&Effect::Publish));
                    let expected = match &op {
                        Op::Act(Action::Promote { node, .. }) => c.node_index(node),
                        _ => reference_next(&before, &c, &topo, &model, s, now),
                    };
                    prop_assert_eq!(Some(c.primary(s)), expected, "not the round-robin successor");
                    if !matches!(op, Op::Act(_)) {
                        prop_assert!(!before.paused(s), "paused service changed by itself");
                    }
                }
            }
        }
    }
}
