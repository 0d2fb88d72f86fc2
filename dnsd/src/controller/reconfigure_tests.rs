//! Tests of a reload: what a new configuration keeps, what it starts afresh, and when it
//! is refused. (The property test of `mirror_tests` reloads the same configuration at
//! random moments and checks that nothing but the serial changes.)

use super::mirror_tests::{INTERVAL, hooks, mirrored, ok, one_service, passes, synced};
use super::*;

fn reload(c: &Controller, topology: &Topology, now: Millis) -> (Controller, Fx) {
    let r = Reconfiguration {
        topology,
        readdressed: &[],
        rechecked: &[],
    };
    match c.reconfigure(&r, now) {
        Ok(next) => next,
        Err(refusal) => panic!("reload refused: {refusal}"),
    }
}

/// app1..app4, `www` on the given members.
fn www_on(members: &[usize]) -> Topology {
    let mut t = one_service(4, mirrored());
    t.services[0].members = members.iter().copied().map(NodeId).collect();
    t
}

#[test]
fn adding_removing_and_reordering_members_moves_nothing_and_keeps_what_is_known() {
    let www = ServiceId(0);
    let (mut c, _) = Controller::new(&www_on(&[0, 1, 2]), None, 0);
    let mut first = Vec::new();
    for n in (0..4).map(NodeId) {
        first.extend(passes(&c.health_changed(n, Health::Up, 100)));
    }
    for o in first {
        c.sync_finished(o.id, ok(), 100);
    }
    // A pass to app3 is under way when the reload comes.
    let running = passes(&c.tick(100 + INTERVAL));
    let to_app3 = running.iter().find(|o| o.to == NodeId(2)).unwrap().clone();
    let app2_mark = c.sync_view(www, NodeId(1)).unwrap().watermark;
    let (serial, epoch) = (c.serial(), c.epoch(www));

    // app2 leaves, app4 joins first among the secondaries, app3 stays.
    let (mut next, fx) = reload(&c, &www_on(&[0, 3, 2]), 1_200);
    assert_eq!(fx, vec![Effect::Publish, Effect::Persist]);
    assert_eq!(next.primary(www), NodeId(0));
    assert_eq!(next.epoch(www), epoch, "a reload is no change of primary");
    assert!(
        next.serial() > serial,
        "the zone changed: secondaries must see it"
    );
    assert_eq!(next.members(www), &[NodeId(0), NodeId(3), NodeId(2)]);
    assert_eq!(next.health(NodeId(3)), Health::Up, "health is kept");
    assert_eq!(next.sync_view(www, NodeId(1)), None, "app2 is no member");
    assert!(app2_mark.is_some());

    // The pass under way to app3 reports as usual and counts.
    let fx = next.sync_finished(to_app3.id, ok(), 1_500);
    assert_eq!(
        next.sync_view(www, NodeId(2))
            .unwrap()
            .watermark
            .map(|w| w.pass),
        Some(to_app3.number)
    );
    // The new member's first pass keeps whatever it overwrites: nothing it held is lost.
    let first = passes(&fx);
    let to_app4 = first.iter().find(|o| o.to == NodeId(3)).unwrap();
    assert_eq!(to_app4.keep, Some(Keep::Everything));
    assert!(to_app4.number > to_app3.number, "pass numbers go on");
    assert!(to_app4.id.0 > to_app3.id.0, "ids are never reused");
}

#[test]
fn a_reload_that_removes_the_primary_is_refused_and_says_what_to_do() {
    let c = synced(3, mirrored(), 100);
    let r = Reconfiguration {
        topology: &www_on(&[1, 2]),
        readdressed: &[],
        rechecked: &[],
    };
    let refusal = c.reconfigure(&r, 200).unwrap_err();
    assert_eq!(
        refusal,
        ReconfigureRefusal::PrimaryRemoved {
            service: "www".into(),
            primary: "app1".into()
        }
    );
    assert!(refusal.to_string().contains("promote one of them first"));
    // Removing the node altogether is the same refusal.
    let mut gone = one_service(2, mirrored());
    gone.nodes = vec!["app2".into(), "app3".into()];
    gone.services[0].members = vec![NodeId(0), NodeId(1)];
    let r = Reconfiguration {
        topology: &gone,
        ..r
    };
    assert!(matches!(
        c.reconfigure(&r, 200),
        Err(ReconfigureRefusal::PrimaryRemoved { .. })
    ));
}

#[test]
fn a_reload_during_a_failover_is_refused() {
    let policy = Policy {
        fencing: Fencing::BestEffort,
        ..mirrored()
    };
    let mut c = synced(3, policy.clone(), 100);
    let fx = c.health_changed(NodeId(0), Health::Down, 200);
    assert_eq!(hooks(&fx).len(), 1, "the fence runs");
    let r = Reconfiguration {
        topology: &one_service(3, policy),
        readdressed: &[],
        rechecked: &[],
    };
    let refusal = c.reconfigure(&r, 300).unwrap_err();
    assert!(
        matches!(&refusal, ReconfigureRefusal::Busy { service, state } if service == "www" && state.contains("failing over")),
        "{refusal:?}"
    );
}

#[test]
fn a_readdressed_node_and_a_changed_check_start_unknown() {
    let policy = Policy {
        checked: true,
        ..mirrored()
    };
    let mut c = synced(3, policy.clone(), 100);
    for n in (0..3).map(NodeId) {
        c.check_changed(ServiceId(0), n, Health::Up, 150);
    }
    let topology = one_service(3, policy);
    let r = Reconfiguration {
        topology: &topology,
        readdressed: &["APP2".into()],
        rechecked: &["www".into()],
    };
    let (next, _) = c.reconfigure(&r, 200).unwrap();
    assert_eq!(next.health(NodeId(1)), Health::Unknown);
    assert_eq!(next.health(NodeId(2)), Health::Up);
    assert_eq!(next.check(ServiceId(0), NodeId(2)), Some(Health::Unknown));
    // Unknown is no reason to move: the primary stays.
    assert_eq!(next.primary(ServiceId(0)), NodeId(0));
}

#[test]
fn a_new_service_starts_on_its_preferred_member_and_a_removed_one_is_forgotten() {
    let c = synced(3, mirrored(), 100);
    let mut t = one_service(3, mirrored());
    t.services[0].name = "mail".into();
    t.services[0].members = vec![NodeId(2), NodeId(0)];
    let (next, _) = reload(&c, &t, 200);
    assert_eq!(next.service_count(), 1);
    let mail = next.service_index("mail").unwrap();
    assert_eq!(next.primary(mail), NodeId(2));
    assert_eq!(next.epoch(mail), 1);
    assert_eq!(next.service_index("www"), None);
}
