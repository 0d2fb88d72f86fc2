//! The cluster layer against a real etcd (one single-node etcd per test, on loopback):
//! sessions and their local deadline, one leader at a time, writes fenced by leadership,
//! the epoch log, shared views that vanish with their lease, and followers that see
//! every commit. Every wait is bounded; nothing asserts how fast anything is.

use std::future::Future;
use std::time::{Duration, Instant};

use dnsd::cluster::observe::{self, MemberView, ViewPublisher, Views};
use dnsd::cluster::quorum;
use dnsd::cluster::{
    ClusterError, Election, Etcd, Keys, Leadership, LostReason, ServerInfo, Session, Store,
};
use heartbeat::Health;
use integration::etcd::EtcdServer;
use integration::harness::runtime;
use tokio_util::sync::CancellationToken;

/// The TTL of most sessions here: etcd's minimum with its default election timeout.
const TTL: Duration = Duration::from_secs(2);
/// The bound on any wait for something that should take about a TTL.
const BOUND: Duration = Duration::from_secs(15);

/// Runs `body` against a fresh etcd of its own, or skips (outside CI) without etcd.
fn with_etcd(test: &str, body: impl AsyncFnOnce(&EtcdServer)) {
    let Some(etcd) = EtcdServer::require(&format!("cluster_etcd::{test}")) else {
        return;
    };
    runtime().block_on(body(&etcd));
}

/// Awaits `future`, failing the test if it takes longer than `bound`.
async fn within<T>(bound: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(bound, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: not done within {bound:?}"),
    }
}

/// A terminal server: its own connection, session, election and store.
struct Server {
    name: String,
    etcd: Etcd,
    keys: Keys,
    session: Session,
    election: Election,
    store: Store,
}

impl Server {
    async fn start(endpoint: &str, zone: &str, name: &str, ttl: Duration) -> Server {
        // A connection of its own, as on its own machine.
        let etcd = Etcd::connect(&[endpoint.to_owned()], Duration::from_secs(5))
            .await
            .unwrap();
        let keys = Keys::new("/dnsd/", zone);
        let session = Session::open(&etcd, ttl).await.unwrap();
        let me = ServerInfo {
            name: name.into(),
            contact: Some(format!("{name}.control")),
        };
        let election = Election::new(&etcd, &keys, me);
        let store = Store::new(&etcd, keys.clone());
        Server {
            name: name.into(),
            etcd,
            keys,
            session,
            election,
            store,
        }
    }

    /// Two terminal servers, ts1 and ts2, of `zone`.
    async fn pair(etcd: &EtcdServer, zone: &str) -> (Server, Server) {
        let ts1 = Server::start(&etcd.endpoint(), zone, "ts1", TTL).await;
        let ts2 = Server::start(&etcd.endpoint(), zone, "ts2", TTL).await;
        (ts1, ts2)
    }

    /// Campaigns until it wins (within [`BOUND`]).
    async fn win(&self, what: &str) -> Leadership {
        let never = CancellationToken::new();
        within(BOUND, what, self.election.campaign(&self.session, &never))
            .await
            .unwrap()
    }

    /// A state write with the entry of `epoch` in service www's log.
    async fn write_epoch(&self, leadership: &Leadership, epoch: u64) -> Result<i64, ClusterError> {
        let state = format!(
            r#"{{"www":{{"epoch":{epoch},"by":"{}"}}}}"#,
            leadership.name()
        );
        let entry = self
            .store
            .epoch_entry("www", epoch, leadership.name().as_bytes().to_vec());
        self.store
            .write(leadership, state.into_bytes(), vec![entry])
            .await
    }
}

/// Whether `key` exists, read with a client of the test's own (not the layer under test).
async fn exists(endpoint: &str, key: &str) -> bool {
    let mut client = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap();
    !client.get(key, None).await.unwrap().kvs().is_empty()
}

fn not_leader_held_by(result: Result<i64, ClusterError>) -> Option<String> {
    match result {
        Err(ClusterError::NotLeader { holder, .. }) => holder,
        other => panic!("expected NotLeader, got {other:?}"),
    }
}

#[test]
fn one_leader_at_a_time_and_a_deposed_leader_cannot_write() {
    with_etcd("one_leader_at_a_time", async |etcd| {
        let (ts1, ts2) = Server::pair(etcd, "svc.test.").await;
        let never = CancellationToken::new();

        // Both campaign at once: exactly one wins, the other keeps waiting.
        let mut c1 = Box::pin(ts1.election.campaign(&ts1.session, &never));
        let mut c2 = Box::pin(ts2.election.campaign(&ts2.session, &never));
        let (first, leader, follower, mut waiting) = within(BOUND, "a first leader", async {
            tokio::select! {
                won = &mut c1 => (won.unwrap(), &ts1, &ts2, c2),
                won = &mut c2 => (won.unwrap(), &ts2, &ts1, c1),
            }
        })
        .await;
        assert!(
            tokio::time::timeout(Duration::from_millis(500), &mut waiting)
                .await
                .is_err(),
            "the second candidate must not win while the first leads"
        );
        let observed = follower.election.leader().await.unwrap().unwrap();
        assert_eq!(observed.name, first.name());
        assert_eq!(
            observed.contact.as_deref(),
            Some(&*format!("{}.control", first.name()))
        );
        assert_eq!(observed.since_revision, first.create_revision());

        // Campaigning again with the same session finds the key its own.
        let again = leader.win("campaign again").await;
        assert_eq!(again, first);

        // The leader writes; the follower reads it.
        let revision = leader.write_epoch(&first, 1).await.unwrap();
        let loaded = follower.store.load().await.unwrap().unwrap();
        assert_eq!(loaded.mod_revision, revision);
        assert!(
            String::from_utf8(loaded.bytes)
                .unwrap()
                .contains(r#""epoch":1"#)
        );

        // The leader stops keeping its lease alive (as a hung or cut-off process would).
        // It knows it is lost before etcd expires the lease, so before the other wins.
        leader.session.orphan();
        let second = within(BOUND, "the follower's win", &mut waiting)
            .await
            .unwrap();
        assert_eq!(
            second.name(),
            follower.election.leader().await.unwrap().unwrap().name
        );
        assert_ne!(second.name(), first.name());
        assert!(second.create_revision() > first.create_revision());
        assert_eq!(
            leader.session.valid_for(Instant::now()),
            None,
            "the old leader's local deadline passed before the new leader won"
        );
        assert_eq!(
            within(BOUND, "lost", leader.session.lost()).await,
            LostReason::DeadlinePassed
        );

        // The deposed leader's writes are refused, naming who leads now; nothing is written.
        let refused = leader.write_epoch(&first, 2).await;
        assert_eq!(not_leader_held_by(refused).as_deref(), Some(second.name()));
        assert!(
            follower
                .store
                .epochs("www")
                .await
                .unwrap()
                .iter()
                .all(|(e, _)| *e != 2)
        );

        // The new leader carries on: epoch 2, and epoch 2 again is refused whole.
        follower.write_epoch(&second, 2).await.unwrap();
        let state_before = follower.store.load().await.unwrap();
        match follower.write_epoch(&second, 2).await {
            Err(ClusterError::AlreadyExists { key }) => {
                assert_eq!(key, follower.keys.epoch("www", 2));
            }
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        assert_eq!(
            follower.store.load().await.unwrap(),
            state_before,
            "nothing written"
        );
        follower.write_epoch(&second, 3).await.unwrap();
        let log = follower.store.epochs("www").await.unwrap();
        let epochs: Vec<u64> = log.iter().map(|(e, _)| *e).collect();
        assert_eq!(epochs, [1, 2, 3], "no gap, no repeat");
        let writers: Vec<&[u8]> = log.iter().map(|(_, by)| by.as_slice()).collect();
        let (a, b) = (first.name().as_bytes(), second.name().as_bytes());
        assert_eq!(writers, [a, b, b]);
    });
}

#[test]
fn a_closed_or_resigning_leader_hands_over_and_proclaims_are_fenced() {
    with_etcd("hand_over", async |etcd| {
        let (ts1, ts2) = Server::pair(etcd, "svc.test").await;
        let never = CancellationToken::new();
        let mut l1 = ts1.win("ts1 wins").await;
        let stale = l1.clone();

        // Proclaiming a new contact moves the value the leadership is compared with: the
        // token from before it no longer writes, the updated one does.
        ts1.election
            .proclaim(&ts1.session, &mut l1, Some("ts1.elsewhere".into()))
            .await
            .unwrap();
        let observed = ts2.election.leader().await.unwrap().unwrap();
        assert_eq!(observed.contact.as_deref(), Some("ts1.elsewhere"));
        assert_eq!(observed.since_revision, l1.create_revision(), "same term");
        assert!(matches!(
            ts1.write_epoch(&stale, 1).await,
            Err(ClusterError::NotLeader { .. })
        ));
        ts1.write_epoch(&l1, 1).await.unwrap();

        // A campaign can be cancelled while it waits.
        let cancel = CancellationToken::new();
        let waiting = ts2.election.campaign(&ts2.session, &cancel);
        cancel.cancel();
        assert!(matches!(
            within(BOUND, "cancelled campaign", waiting).await,
            Err(ClusterError::Cancelled { .. })
        ));

        // Resigning hands over at once; resigning again does nothing.
        let mut c2 = Box::pin(ts2.election.campaign(&ts2.session, &never));
        assert!(ts1.election.resign(l1.clone()).await.unwrap());
        let l2 = within(BOUND, "ts2 wins after the resignation", &mut c2)
            .await
            .unwrap();
        assert!(!ts1.election.resign(l1.clone()).await.unwrap());
        assert_eq!(
            not_leader_held_by(ts1.write_epoch(&l1, 2).await).as_deref(),
            Some("ts2")
        );
        ts2.write_epoch(&l2, 2).await.unwrap();

        // Closing revokes the lease: the leader key goes at once and ts1 wins.
        let mut c1 = Box::pin(ts1.election.campaign(&ts1.session, &never));
        drop(c2);
        let Server { session, .. } = ts2;
        session.close().await.unwrap();
        let l1 = within(BOUND, "ts1 wins after the close", &mut c1)
            .await
            .unwrap();
        ts1.write_epoch(&l1, 3).await.unwrap();
        let epochs: Vec<u64> = ts1
            .store
            .epochs("www")
            .await
            .unwrap()
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        assert_eq!(epochs, [1, 2, 3]);
    });
}

#[test]
fn the_local_deadline_passes_before_etcd_expires_the_lease() {
    with_etcd("local_deadline", async |etcd| {
        // 10 s leaves a 2.5 s margin: etcd reports TTLs in whole seconds, rounded down, so
        // a TTL read up to 1.5 s after the local deadline fired must still be at least 1.
        let ts1 = Server::start(&etcd.endpoint(), "svc.test", "ts1", Duration::from_secs(10)).await;
        assert_eq!(ts1.session.ttl(), Duration::from_secs(10));
        let me = ServerInfo {
            name: "ts1".into(),
            contact: None,
        };
        let _publisher = ViewPublisher::register(&ts1.etcd, &ts1.keys, &ts1.session, &me)
            .await
            .unwrap();
        let endpoint = etcd.endpoint();
        let registration = ts1.keys.server("ts1");
        let registered = || exists(&endpoint, &registration);
        assert!(registered().await);
        // While kept alive, the local deadline stays ahead of now, a margin short of a TTL.
        let valid = ts1.session.valid_for(Instant::now()).unwrap();
        assert!(valid <= Duration::from_millis(7500), "{valid:?}");

        ts1.session.orphan();
        let reason = within(BOUND, "the local deadline", ts1.session.lost()).await;
        assert_eq!(reason, LostReason::DeadlinePassed);
        // At that moment etcd still holds the lease, and the keys under it.
        let remote = ts1.session.remote_ttl().await.unwrap();
        assert!(
            remote.is_some_and(|ttl| ttl > Duration::ZERO),
            "etcd's TTL when the local deadline fired: {remote:?}"
        );
        assert!(registered().await, "the registration is still there");
        // Then etcd expires it, and the keys go with it.
        within(BOUND, "etcd expiring the lease", async {
            while ts1.session.remote_ttl().await.unwrap().is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(!registered().await, "the registration went with the lease");
        // Nothing can be done under a lost session.
        let never = CancellationToken::new();
        assert!(matches!(
            ts1.election.campaign(&ts1.session, &never).await,
            Err(ClusterError::SessionLost {
                reason: LostReason::DeadlinePassed,
                ..
            })
        ));
    });
}

#[test]
fn views_are_shared_on_change_and_vanish_with_their_lease() {
    with_etcd("views", async |etcd| {
        let (ts1, ts2) = Server::pair(etcd, "svc.test").await;
        let cancel = CancellationToken::new();
        let mut live = observe::watch_views(&ts1.etcd, &ts1.keys, cancel.clone())
            .await
            .unwrap();
        assert!(live.borrow().servers.is_empty());

        let mut publishers = Vec::new();
        for ts in [&ts1, &ts2] {
            let me = ServerInfo {
                name: ts.name.clone(),
                contact: None,
            };
            publishers.push(
                ViewPublisher::register(&ts.etcd, &ts.keys, &ts.session, &me)
                    .await
                    .unwrap(),
            );
        }
        let down_since = 1_700_000_000_000;
        let view = |health, rtt| -> Views {
            let app1 = MemberView {
                health,
                since_unix_ms: down_since,
                rtt_us: rtt,
            };
            [("app1".to_owned(), app1)].into()
        };
        for p in &mut publishers {
            assert!(
                p.publish(&view(Health::Down, None)).await.unwrap(),
                "the first view is written"
            );
            assert!(
                !p.publish(&view(Health::Down, None)).await.unwrap(),
                "the same is not"
            );
        }
        let both = within(BOUND, "both views", live.wait_for(|v| v.views.len() == 2))
            .await
            .unwrap()
            .clone();
        assert_eq!(both.servers.keys().collect::<Vec<_>>(), ["ts1", "ts2"]);
        assert_eq!(both.views["ts2"], view(Health::Down, None));
        assert!(
            quorum::objectively_down("app1", &both, None),
            "2 of 2 see it down"
        );

        // ts2 dies (its keep-alive stops): its registration and view vanish with its lease,
        // and the quorum is now a majority of one.
        ts2.session.orphan();
        let one = within(
            BOUND,
            "ts2's keys vanishing",
            live.wait_for(|v| v.servers.len() == 1),
        )
        .await
        .unwrap()
        .clone();
        assert_eq!(one.servers.keys().collect::<Vec<_>>(), ["ts1"]);
        assert_eq!(one.views.keys().collect::<Vec<_>>(), ["ts1"]);
        let verdict = quorum::evaluate("app1", &one, None, Health::Unknown, down_since + 10_000);
        assert_eq!(
            (
                verdict.health,
                verdict.tally.observers(),
                verdict.down_quorum
            ),
            (Health::Down, 1, 1)
        );
        cancel.cancel();
    });
}

#[test]
fn followers_see_every_commit_and_keep_the_last_while_etcd_is_away() {
    with_etcd("followers", async |etcd| {
        let (ts1, ts2) = Server::pair(etcd, "svc.test").await;
        let cancel = CancellationToken::new();
        let mut state = ts2.store.watch(cancel.clone()).await.unwrap();
        assert_eq!(*state.borrow(), None, "nothing written yet");

        let leadership = ts1.win("ts1 wins").await;
        for epoch in 1..=5 {
            let revision = ts1.write_epoch(&leadership, epoch).await.unwrap();
            let seen = within(BOUND, "the follower seeing the commit", async {
                state
                    .wait_for(|s| s.as_ref().is_some_and(|s| s.mod_revision >= revision))
                    .await
                    .unwrap()
                    .clone()
            })
            .await
            .unwrap();
            assert_eq!(seen.mod_revision, revision, "this commit, not a later one");
            assert!(
                String::from_utf8(seen.bytes)
                    .unwrap()
                    .contains(&format!(r#""epoch":{epoch}"#))
            );
        }
        let last = state.borrow().clone();

        // etcd freezes: the sessions are lost at their local deadline, the follower keeps
        // the last state it saw.
        etcd.pause();
        for ts in [&ts1, &ts2] {
            assert_eq!(
                within(BOUND, "session lost with etcd", ts.session.lost()).await,
                LostReason::DeadlinePassed
            );
        }
        assert_eq!(*state.borrow(), last, "the last known state stays");
        etcd.resume();

        // Back: new sessions, a new leader, and the follower sees its commit.
        let ts3 = Server::start(&etcd.endpoint(), "svc.test", "ts3", TTL).await;
        let leadership = ts3.win("ts3 wins after etcd is back").await;
        let revision = ts3.write_epoch(&leadership, 6).await.unwrap();
        within(
            BOUND,
            "the follower seeing the commit after etcd is back",
            async {
                state
                    .wait_for(|s| s.as_ref().is_some_and(|s| s.mod_revision == revision))
                    .await
                    .unwrap();
            },
        )
        .await;
        cancel.cancel();
    });
}
