//! A simulated cluster, to check what the real one relies on over thousands of random
//! sequences: several terminal servers, each with the real [`Controller`], the real state
//! encoding and the real epoch-log and withdrawal rules, around a model of etcd (a leader
//! key under a lease, transactions conditioned on it, create-only epoch entries) and a
//! simulated clock. Terminal servers are killed, cut from etcd and restarted; leases
//! lapse mid-transition; members fail and return; passes and hooks end in any order.
//!
//! What must hold: nothing reaches a member (a pass or hook starts) unless its terminal
//! server leads with a lease etcd still holds; at most one terminal server acts with a
//! given epoch of a service; every state write etcd accepts comes from the leader; the
//! epoch log of each service has no gap and no repeat; the epochs in the state only grow.

use std::collections::{BTreeMap, HashMap};

use dnsd_api::Action;
use heartbeat::Health;
use proptest::prelude::*;

use crate::controller::{
    Controller, Effect, Election, Fencing, HookError, HookId, Millis, NodeId, PassError, PassId,
    PassSummary, Policy, ServiceId, ServiceSpec, Topology,
};

/// The lease TTL and the margin a leader stops acting before its local deadline.
const TTL: Millis = 3_000;
const MARGIN: Millis = 750;
const SERVERS: usize = 3;
const MEMBERS: usize = 3;

fn topology(policy: &Policy) -> Topology {
    Topology {
        nodes: (1..=MEMBERS).map(|i| format!("app{i}")).collect(),
        services: vec![ServiceSpec {
            name: "www".into(),
            members: (0..MEMBERS).map(NodeId).collect(),
            policy: policy.clone(),
        }],
    }
}

/// etcd, as the terminal servers see it.
#[derive(Default)]
struct Store {
    /// Who holds the leader key, and when its lease expires on etcd.
    leader: Option<(usize, Millis)>,
    state: Option<Vec<u8>>,
    /// The epoch log: (service, epoch) -> who wrote it.
    epochs: BTreeMap<(String, u64), usize>,
}

#[derive(Debug)]
enum Work {
    Pass(PassId),
    Hook(HookId),
}

#[derive(Default)]
struct Server {
    alive: bool,
    connected: bool,
    /// The last keep-alive etcd answered (etcd's expiry is this plus the TTL).
    renewed_at: Option<Millis>,
    /// Leading with a controller that decides.
    controller: Option<Controller>,
    written: HashMap<ServiceId, u64>,
    pending: Vec<Work>,
}

impl Server {
    /// The driver's rule: act only while leading and the local deadline is ahead.
    fn may_act(&self, now: Millis) -> bool {
        self.controller.is_some() && self.renewed_at.is_some_and(|r| now < r + TTL - MARGIN)
    }
}

struct Sim {
    topo: Topology,
    now: Millis,
    store: Store,
    servers: Vec<Server>,
    health: Vec<Health>,
    /// (service, epoch) -> the terminal server that acted with it.
    actors: HashMap<(usize, u64), usize>,
    /// The epochs of the state in etcd as last written.
    stored_epochs: Vec<u64>,
}

#[derive(Debug, Clone)]
enum Op {
    Advance(Millis),
    Cut(usize),
    Reconnect(usize),
    Kill(usize),
    Restart(usize),
    Health(usize, bool),
    Complete(usize, usize, bool),
    Tick,
    Failover,
}

fn op() -> impl Strategy<Value = Op> {
    let ts = 0..SERVERS;
    prop_oneof![
        6 => (1u64..1_500).prop_map(Op::Advance),
        1 => ts.clone().prop_map(Op::Cut),
        2 => ts.clone().prop_map(Op::Reconnect),
        1 => ts.clone().prop_map(Op::Kill),
        2 => ts.clone().prop_map(Op::Restart),
        4 => (0..MEMBERS, any::<bool>()).prop_map(|(n, up)| Op::Health(n, up)),
        6 => (ts, 0usize..4, any::<bool>()).prop_map(|(t, k, ok)| Op::Complete(t, k, ok)),
        2 => Just(Op::Tick),
        1 => Just(Op::Failover),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(mirrored, promote_hook, demote_hook, fence)| Policy {
            mirrored,
            sync_interval: 1_000,
            max_lag: 5_000,
            promote_hook,
            demote_hook: demote_hook && promote_hook,
            fencing: if fence {
                Fencing::BestEffort
            } else {
                Fencing::Off
            },
            election: Election::Freshest,
            ..Policy::plain()
        },
    )
}

impl Sim {
    fn new(policy: &Policy) -> Sim {
        let servers = (0..SERVERS)
            .map(|_| Server {
                alive: true,
                connected: true,
                renewed_at: Some(0),
                ..Server::default()
            })
            .collect();
        Sim {
            topo: topology(policy),
            now: 0,
            store: Store::default(),
            servers,
            health: vec![Health::Up; MEMBERS],
            actors: HashMap::new(),
            stored_epochs: vec![0],
        }
    }

    /// etcd's view: the leader key, unless its lease has expired.
    fn leader(&mut self) -> Option<usize> {
        match self.store.leader {
            Some((t, expires)) if expires > self.now => Some(t),
            Some(_) => {
                self.store.leader = None;
                None
            }
            None => None,
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Advance(d) => {
                self.now += d;
                let leader = self.leader();
                for (i, ts) in self.servers.iter_mut().enumerate() {
                    if !ts.alive {
                        continue;
                    }
                    // A session whose lease etcd let go is lost; a live one is renewed.
                    let lapsed = ts.renewed_at.is_none_or(|r| r + TTL <= self.now);
                    if lapsed || !ts.connected {
                        if lapsed {
                            ts.renewed_at = None;
                        }
                    } else {
                        ts.renewed_at = Some(self.now);
                        if leader == Some(i) {
                            self.store.leader = Some((i, self.now + TTL));
                        }
                    }
                    // The coordinator steps down once its session is lost or the lease
                    // may have lapsed.
                    if !ts.may_act(self.now) {
                        ts.controller = None;
                        ts.pending.clear();
                    }
                }
                self.campaign();
            }
            Op::Cut(i) => self.servers[i].connected = false,
            Op::Reconnect(i) => {
                let ts = &mut self.servers[i];
                if ts.alive && !ts.connected {
                    ts.connected = true;
                    if ts.renewed_at.is_none() {
                        ts.renewed_at = Some(self.now);
                    }
                }
            }
            Op::Kill(i) => {
                self.servers[i] = Server::default();
            }
            Op::Restart(i) => {
                if !self.servers[i].alive {
                    self.servers[i] = Server {
                        alive: true,
                        connected: true,
                        renewed_at: Some(self.now),
                        ..Server::default()
                    };
                }
            }
            Op::Health(n, up) => {
                let h = if up { Health::Up } else { Health::Down };
                self.health[n] = h;
                for i in 0..SERVERS {
                    if let Some(c) = &mut self.servers[i].controller {
                        let fx = c.health_changed(NodeId(n), h, self.now);
                        self.apply(i, fx)?;
                    }
                }
            }
            Op::Complete(i, k, ok) => {
                let ts = &mut self.servers[i];
                if ts.pending.is_empty() {
                    return Ok(());
                }
                let work = ts.pending.remove(k % ts.pending.len());
                let Some(c) = &mut ts.controller else {
                    return Ok(());
                };
                let fx = match work {
                    Work::Pass(id) => {
                        let outcome = if ok {
                            Ok(PassSummary::default())
                        } else {
                            Err(PassError::Simulated("failed"))
                        };
                        c.sync_finished(id, outcome, self.now)
                    }
                    Work::Hook(id) => {
                        let outcome = if ok {
                            Ok(())
                        } else {
                            Err(HookError::Simulated("failed"))
                        };
                        c.hook_finished(id, outcome, self.now)
                    }
                };
                self.apply(i, fx)?;
            }
            Op::Tick => {
                for i in 0..SERVERS {
                    if let Some(c) = &mut self.servers[i].controller {
                        let fx = c.tick(self.now);
                        self.apply(i, fx)?;
                    }
                }
            }
            Op::Failover => {
                for i in 0..SERVERS {
                    if let Some(c) = &mut self.servers[i].controller {
                        let (_, fx) = c.act(&Action::Failover { service: None }, "sim", self.now);
                        self.apply(i, fx)?;
                    }
                }
            }
        }
        self.check()
    }

    /// When nobody holds the leader key, the first live, connected terminal server with
    /// a session wins, loads the state and begins a term.
    fn campaign(&mut self) {
        if self.leader().is_some() {
            return;
        }
        let now = self.now;
        let Some(i) = (0..SERVERS).find(|&i| {
            let ts = &self.servers[i];
            ts.alive && ts.connected && ts.renewed_at.is_some_and(|r| now < r + TTL - MARGIN)
        }) else {
            return;
        };
        self.store.leader = Some((i, self.servers[i].renewed_at.unwrap_or(now) + TTL));
        let persisted = self
            .store
            .state
            .as_ref()
            .map(|b| crate::state::decode(b).expect("the simulation writes valid state"));
        let (mut c, mut fx) = Controller::new(&self.topo, persisted.as_ref(), now);
        let ts = &mut self.servers[i];
        ts.written = persisted
            .iter()
            .flat_map(|p| &p.services)
            .filter_map(|ps| c.service_index(&ps.name).map(|s| (s, ps.epoch)))
            .collect();
        fx.extend(c.begin_term(&format!("ts{i}"), now));
        for (n, &h) in self.health.iter().enumerate() {
            fx.extend(c.health_changed(NodeId(n), h, now));
        }
        ts.controller = Some(c);
        // A failure here shows up in the next check.
        let _ = self.apply(i, fx);
    }

    /// The driver's `apply`: persist first (a conditioned write; a refused one withdraws
    /// the decisions it carried), then act only while allowed.
    fn apply(&mut self, i: usize, mut fx: Vec<Effect>) -> Result<(), TestCaseError> {
        let now = self.now;
        if fx.contains(&Effect::Persist) {
            let leader = self.leader();
            let ts = &mut self.servers[i];
            let Some(c) = &mut ts.controller else {
                return Ok(());
            };
            let entries = c.epochs_after(&ts.written);
            let fresh = entries.iter().all(|&(s, e)| {
                !self
                    .store
                    .epochs
                    .contains_key(&(c.service_name(s).to_owned(), e))
            });
            if ts.connected && leader == Some(i) && fresh {
                self.store.state = Some(crate::state::encode(&c.persisted()));
                for (s, e) in entries {
                    self.store
                        .epochs
                        .insert((c.service_name(s).to_owned(), e), i);
                    ts.written.insert(s, e);
                }
                c.persisted_ok();
            } else {
                let (more, withdrawn) = c.persist_failed("refused", now);
                if !withdrawn.is_empty() {
                    fx.retain(|e| {
                        !matches!(
                            e,
                            Effect::Publish | Effect::StartSync(_) | Effect::RunHook(_)
                        )
                    });
                }
                fx.extend(more.into_iter().filter(|e| *e != Effect::Persist));
                if leader != Some(i) {
                    // The write said: not the leader. Step down.
                    ts.controller = None;
                    ts.pending.clear();
                    return Ok(());
                }
            }
        }
        let may_act = self.servers[i].may_act(now);
        for effect in fx {
            let (service, epoch, work) = match effect {
                Effect::StartSync(o) => (o.service, o.epoch, Work::Pass(o.id)),
                Effect::RunHook(o) => (o.service, o.epoch, Work::Hook(o.id)),
                _ => continue,
            };
            if !may_act {
                continue;
            }
            // Nothing reaches a member unless etcd still holds this server's lease.
            prop_assert_eq!(self.leader(), Some(i), "ts{} acted without the lease", i);
            let actor = *self.actors.entry((service.0, epoch)).or_insert(i);
            prop_assert_eq!(actor, i, "two terminal servers acted with epoch {}", epoch);
            self.servers[i].pending.push(work);
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        // The epoch log has no gap and no repeat (create-only makes repeats impossible;
        // the keys of a BTreeMap are unique): 1, 2, ..., max.
        let epochs: Vec<u64> = self
            .store
            .epochs
            .keys()
            .filter(|(s, _)| s == "www")
            .map(|(_, e)| *e)
            .collect();
        let expected: Vec<u64> = (1..=epochs.len() as u64).collect();
        prop_assert_eq!(&epochs, &expected, "the epoch log has a gap");
        // The epochs of the state in etcd only grow, and match the log.
        if let Some(bytes) = &self.store.state {
            let p = crate::state::decode(bytes).expect("valid state");
            let now: Vec<u64> = p.services.iter().map(|s| s.epoch).collect();
            for (a, b) in now.iter().zip(&self.stored_epochs) {
                prop_assert!(a >= b, "an epoch went down in etcd");
            }
            prop_assert_eq!(now.first().copied(), epochs.last().copied());
            self.stored_epochs = now;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn one_actor_per_epoch_and_nothing_without_a_lease(
        policy in policy(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut sim = Sim::new(&policy);
        sim.campaign();
        for op in &ops {
            sim.step(op)?;
        }
        // Someone led at some point, and decided something.
        prop_assert!(!sim.store.epochs.is_empty());
    }
}
