//! Status and event fixtures for the console's tests: a small pool in the states the
//! screens must show (healthy, a member down, a sync running, failed over, 500 members,
//! service checks, a cluster of terminal servers seen from its leader and from a
//! follower cut from etcd).

use dnsd_api::{
    CheckSettings, CheckStatus, ClusterStatus, Event, EventKind, FlapSettings, Health,
    HeartbeatSettings, HookSettings, MemberStatus, NodeStatus, Observers, PassReport,
    RecoveryStatus, Role, RunningPass, ServiceStatus, Status, SyncStatus, TerminalServer,
};

/// The fixed "now" of every fixture, ms since the Unix epoch.
pub(crate) const NOW: u64 = 1_700_000_000_000;

fn node(name: &str, n: u32, health: Health) -> NodeStatus {
    let up = health == Health::Up;
    let base = 180 + u64::from(n) * 40;
    let probes = (0..20)
        .map(|i| up.then_some(base + (i * 37 + u64::from(n) * 11) % 160))
        .collect();
    NodeStatus {
        name: name.to_owned(),
        address: format!("127.0.0.{}", 10 + n),
        health,
        maintenance: false,
        rtt_us: up.then_some(base + 20),
        probes,
        last_error: (!up).then(|| "connect: Connection refused (os error 111)".to_owned()),
        observers: None,
    }
}

fn synced(ago_ms: u64) -> SyncStatus {
    SyncStatus {
        last_sync_ms: Some(NOW - ago_ms),
        lag_ms: Some(ago_ms),
        resyncing: false,
        running: None,
        failures: 0,
        last_error: None,
        next_due_ms: NOW + 3000 - ago_ms % 3000,
        last_pass: Some(PassReport {
            files_transferred: 2,
            literal_bytes: 12_800,
            matched_bytes: 1_258_291,
            bytes_sent: 14_000,
            bytes_received: 310,
            duration_ms: 180,
            kept_files: None,
            kept_bytes: None,
            kept_dir: None,
            replaced_files: None,
            pass: 41,
        }),
    }
}

fn member(name: &str, role: Role, sync: Option<SyncStatus>, skip: Option<&str>) -> MemberStatus {
    MemberStatus {
        node: name.to_owned(),
        role,
        eligible: skip.is_none(),
        skip_reason: skip.map(str::to_owned),
        sync,
        check: None,
        quarantined_until_ms: None,
        health_changes: 0,
    }
}

fn www(members: Vec<MemberStatus>, primary: &str, epoch: u64, next: Option<&str>) -> ServiceStatus {
    ServiceStatus {
        name: "www".into(),
        fqdn: "www.demo.test.".into(),
        primary: primary.into(),
        preferred: "app1".into(),
        epoch,
        paused: false,
        stranded: false,
        next: next.map(str::to_owned),
        next_reason: None,
        election: "freshest".into(),
        split_brain_risk: None,
        transition: None,
        paths: vec!["/srv/data".into()],
        max_lag_ms: 9000,
        failback: "auto after 15s".into(),
        hooks: HookSettings {
            promote: true,
            demote: true,
            fence: false,
            fencing_required: false,
            restart: false,
        },
        check: None,
        flap: None,
        recovery: None,
        members,
    }
}

fn status(nodes: Vec<NodeStatus>, services: Vec<ServiceStatus>) -> Status {
    Status {
        now_ms: NOW,
        started_ms: NOW - 754_000,
        zone: "demo.test.".into(),
        serial: 7,
        ttl: 5,
        heartbeat: HeartbeatSettings {
            protocol: "tcp".into(),
            port: 7007,
            interval_ms: 500,
            timeout_ms: 400,
            rise: 3,
            fall: 3,
        },
        nodes,
        services,
        cluster: None,
    }
}

/// Three healthy members, app1 primary of www; a second, paused service `api`.
pub(crate) fn three_members() -> Status {
    let nodes = vec![
        node("app1", 1, Health::Up),
        node("app2", 2, Health::Up),
        node("app3", 3, Health::Up),
    ];
    let www = www(
        vec![
            member("app1", Role::Primary, None, Some("is the primary")),
            member("app2", Role::Secondary, Some(synced(2100)), None),
            member("app3", Role::Secondary, Some(synced(1400)), None),
        ],
        "app1",
        3,
        Some("app2"),
    );
    let api = ServiceStatus {
        name: "api".into(),
        fqdn: "api.demo.test.".into(),
        primary: "app2".into(),
        preferred: "app2".into(),
        epoch: 1,
        paused: true,
        stranded: false,
        next: Some("app3".into()),
        next_reason: None,
        election: "round-robin".into(),
        split_brain_risk: None,
        transition: None,
        paths: vec![],
        max_lag_ms: 30_000,
        failback: "manual".into(),
        hooks: HookSettings::default(),
        check: None,
        flap: None,
        recovery: None,
        members: vec![
            member("app2", Role::Primary, None, Some("is the primary")),
            member("app3", Role::Secondary, None, None),
        ],
    };
    status(nodes, vec![www, api])
}

/// app3 is down: it misses its probes and would be skipped.
pub(crate) fn member_down() -> Status {
    let mut st = three_members();
    st.nodes[2] = node("app3", 3, Health::Down);
    let mut probes: Vec<Option<u64>> = st.nodes[1].probes.clone();
    for p in probes.iter_mut().skip(14) {
        *p = None;
    }
    st.nodes[2].probes = probes;
    let www = &mut st.services[0];
    www.members[2].role = Role::Down;
    www.members[2].eligible = false;
    www.members[2].skip_reason = Some("is down".into());
    if let Some(sync) = &mut www.members[2].sync {
        sync.failures = 2;
        sync.last_error = Some(
            "app3 (127.0.0.13): cannot connect to 127.0.0.13 port 2222: Connection refused".into(),
        );
    }
    let api = &mut st.services[1];
    api.members[1].role = Role::Down;
    api.members[1].eligible = false;
    api.members[1].skip_reason = Some("is down".into());
    api.next = None;
    st
}

/// app3 came back and its resync is running, 45% through.
pub(crate) fn sync_running() -> Status {
    let mut st = three_members();
    let www = &mut st.services[0];
    www.members[2].role = Role::Resyncing;
    www.members[2].eligible = false;
    www.members[2].skip_reason = Some("is resyncing".into());
    if let Some(sync) = &mut www.members[2].sync {
        sync.resyncing = true;
        sync.lag_ms = Some(48_000);
        sync.last_sync_ms = Some(NOW - 48_000);
        sync.running = Some(RunningPass {
            kind: "resync".into(),
            started_ms: NOW - 3_000,
            bytes: 3_460_000,
            percent: 45,
            rate_bytes_per_sec: 2_097_152,
            eta_secs: Some(4),
        });
    }
    st.nodes[2].maintenance = true;
    st
}

/// app1 crashed; app2 took over (epoch 4); app3 is next.
pub(crate) fn failed_over() -> Status {
    let mut st = three_members();
    st.services.truncate(1);
    st.nodes[0] = node("app1", 1, Health::Down);
    let www = &mut st.services[0];
    www.primary = "app2".into();
    www.epoch = 4;
    www.next = Some("app3".into());
    www.members[0] = member("app1", Role::Down, Some(synced(31_000)), Some("is down"));
    www.members[1] = member("app2", Role::Primary, None, Some("is the primary"));
    st.serial = 8;
    st
}

/// www has an HTTP check: app1, its primary, answers its heartbeat but its service does
/// not and is being restarted (attempt 1 of 2, 8 s into a 30 s window); app3 flapped and
/// is quarantined for 4 more minutes.
pub(crate) fn service_checks() -> Status {
    let mut st = three_members();
    st.services.truncate(1);
    let www = &mut st.services[0];
    www.hooks.restart = true;
    www.check = Some(CheckSettings {
        probe: "http :8080/health expects 200".into(),
        interval_ms: 1000,
        timeout_ms: 500,
        rise: 2,
        fall: 3,
        restart_attempts: 2,
        restart_window_ms: 30_000,
    });
    www.flap = Some(FlapSettings {
        threshold: 4,
        window_ms: 600_000,
        hold_down_ms: 600_000,
    });
    www.recovery = Some(RecoveryStatus {
        node: "app1".into(),
        attempt: 1,
        attempts: 2,
        since_ms: NOW - 8_000,
        deadline_ms: NOW + 22_000,
        restarting: true,
        next_attempt_ms: None,
    });
    let passing = |rtt| CheckStatus {
        health: Health::Up,
        rtt_us: Some(rtt),
        last_at_ms: Some(NOW - 400),
        last_error: None,
    };
    www.members[0].check = Some(CheckStatus {
        health: Health::Down,
        rtt_us: None,
        last_at_ms: Some(NOW - 300),
        last_error: Some("127.0.0.11:8080 answered /health with HTTP 503, not 200".into()),
    });
    www.members[0].health_changes = 1;
    www.members[1].check = Some(passing(900));
    www.members[2].check = Some(passing(1100));
    www.members[2].eligible = false;
    www.members[2].skip_reason = Some("is quarantined for flapping (240s left)".into());
    www.members[2].quarantined_until_ms = Some(NOW + 240_000);
    st
}

/// The split-brain risk dnsd reports for a mirrored service with neither fence nor demote.
pub(crate) const UNFENCED: &str = "mirrored with automatic failover and neither fence nor \
    demote: a partition between the terminal server and a live primary would leave two \
    primaries taking writes; configure fence (or demote), or say fencing = \"none\" to accept it";

fn terminal_server(name: &str, port: u16, leader: bool) -> TerminalServer {
    TerminalServer {
        name: name.into(),
        contact: Some(format!("http://127.0.0.1:{port}")),
        leader,
    }
}

/// Three terminal servers, seen from ts1, which leads (2.6 s of lease left). Service www
/// only: unfenced (a split-brain risk), app3 next as the holder of the freshest copy;
/// one terminal server of three sees app2 down (below the quorum of 2), and app2's last
/// pass was a resync that kept 3 files and replaced 100.
pub(crate) fn cluster() -> Status {
    let mut st = three_members();
    st.services.truncate(1);
    st.cluster = Some(ClusterStatus {
        name: "ts1".into(),
        leading: true,
        leader: Some("ts1".into()),
        leader_contact: Some("http://127.0.0.1:8053".into()),
        lease_left_ms: Some(2_600),
        etcd_reachable: true,
        stale_for_ms: None,
        down_quorum: 2,
        servers: vec![
            terminal_server("ts1", 8053, true),
            terminal_server("ts2", 8054, false),
            terminal_server("ts3", 8055, false),
        ],
    });
    let seen = |down| Observers {
        up: 3 - down,
        down,
        unknown: 0,
    };
    for (node, down) in st.nodes.iter_mut().zip([0, 1, 0]) {
        node.observers = Some(seen(down));
    }
    let www = &mut st.services[0];
    www.hooks.demote = false;
    www.split_brain_risk = Some(UNFENCED.into());
    www.next = Some("app3".into());
    www.next_reason = Some("holds the freshest copy (pass #41; app2 #40 only)".into());
    if let Some(pass) = www.members[1]
        .sync
        .as_mut()
        .and_then(|y| y.last_pass.as_mut())
    {
        pass.pass = 40;
        pass.kept_files = Some(3);
        pass.kept_bytes = Some(1024);
        pass.kept_dir = Some("/srv/data.dnsd-kept/epoch-3-pass-40".into());
        pass.replaced_files = Some(100);
    }
    st
}

/// The same cluster seen from ts2, a follower that lost etcd 12 s ago: it answers its
/// last known state; ts3's lease expired meanwhile, so only ts1 and ts2 are listed.
pub(crate) fn cluster_follower_without_etcd() -> Status {
    let mut st = cluster();
    if let Some(c) = &mut st.cluster {
        c.name = "ts2".into();
        c.leading = false;
        c.lease_left_ms = None;
        c.etcd_reachable = false;
        c.stale_for_ms = Some(12_000);
        c.servers.truncate(2);
    }
    st
}

/// One service over `n` members, app1 primary; every 7th member down.
pub(crate) fn many_members(n: u32) -> Status {
    let nodes: Vec<NodeStatus> = (1..=n)
        .map(|i| {
            let health = if i % 7 == 0 { Health::Down } else { Health::Up };
            let mut nd = node(&format!("app{i}"), i % 200, health);
            nd.address = format!("10.0.{}.{}", i / 250, i % 250 + 1);
            nd
        })
        .collect();
    let members = (1..=n)
        .map(|i| {
            let name = format!("app{i}");
            if i == 1 {
                member(&name, Role::Primary, None, Some("is the primary"))
            } else if i % 7 == 0 {
                member(&name, Role::Down, Some(synced(40_000)), Some("is down"))
            } else {
                member(
                    &name,
                    Role::Secondary,
                    Some(synced(u64::from(i) * 10)),
                    None,
                )
            }
        })
        .collect();
    status(nodes, vec![www(members, "app1", 1, Some("app2"))])
}

fn event(seq: u64, ago_ms: u64, kind: EventKind, reason: &str) -> Event {
    Event {
        seq,
        at_ms: NOW - ago_ms,
        kind,
        service: None,
        node: None,
        old_primary: None,
        new_primary: None,
        epoch: None,
        reason: reason.to_owned(),
    }
}

/// A short event log: start, a node going down, a failover, a sync.
pub(crate) fn events() -> Vec<Event> {
    let mut started = event(1, 754_000, EventKind::Started, "state restored");
    started.service = Some("www".into());
    let mut down = event(2, 95_000, EventKind::NodeDown, "heartbeat: up -> down");
    down.node = Some("app1".into());
    let mut failover = event(
        3,
        94_000,
        EventKind::Failover,
        "app1 is down; app2 promoted (first eligible after app1)",
    );
    failover.service = Some("www".into());
    failover.old_primary = Some("app1".into());
    failover.new_primary = Some("app2".into());
    failover.epoch = Some(3);
    let mut up = event(4, 40_000, EventKind::NodeUp, "heartbeat: down -> up");
    up.node = Some("app1".into());
    let mut resync = event(
        5,
        31_000,
        EventKind::Resynced,
        "app1 resynced from app2; 2 files it alone had were kept in /srv/data.dnsd-kept/epoch-3",
    );
    resync.service = Some("www".into());
    resync.node = Some("app1".into());
    let mut sync = event(
        6,
        2_000,
        EventKind::SyncDone,
        "pass to app3: 2 files, 12.5K literal",
    );
    sync.service = Some("www".into());
    sync.node = Some("app3".into());
    vec![started, down, failover, up, resync, sync]
}
