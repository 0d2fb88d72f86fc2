//! The fuzz target of the control API's request bodies (`fuzz/fuzz_targets/control_action.rs`):
//! any bytes POSTed to `/v1/actions`, through the API's own router, to a driver that runs
//! what parses through the real controller (the pool of `etc/dnsd.toml`, app1 and app2 up,
//! app3 down). Run by libFuzzer on nightly and by the property tests below on stable (see
//! the `fuzzkit` crate).
//!
//! What must hold: nothing panics; a body that is not an action gets 400 with the kind
//! `malformed` and the parser's reason, and never reaches the driver; an action reaches
//! the driver as parsed and gets 200 when the controller applied it, 409 with a refusal
//! kind when it refused; and an action survives being written as JSON and read again.

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{Method, StatusCode};
use dnsd_api::{Action, ActionReply, RefusalKind, paths};
use heartbeat::Health;
use tokio::sync::mpsc;
use tower::ServiceExt as _;

use super::{AppState, Peer, router};
use crate::controller::{Controller, NodeId, Topology};
use crate::dns::DnsStats;
use crate::handle::{DaemonHandle, Request};

/// The pool actions are checked against.
fn topology() -> &'static Topology {
    static TOPOLOGY: std::sync::OnceLock<Topology> = std::sync::OnceLock::new();
    TOPOLOGY.get_or_init(|| {
        let text = include_str!("../../../etc/dnsd.toml");
        let raw = crate::config::parse(text, []).unwrap_or_else(|e| panic!("{e:?}"));
        let config = raw.validate().unwrap_or_else(|e| panic!("{e:?}"));
        crate::pool::topology(&config)
    })
}

/// A controller at 10 s, its first two members up and the third down.
fn controller() -> Controller {
    let (mut c, _) = Controller::new(topology(), None, 0);
    for (n, health) in [Health::Up, Health::Up, Health::Down]
        .into_iter()
        .enumerate()
    {
        c.health_changed(NodeId(n), health, 10_000);
    }
    c
}

/// Answers requests as the daemon's driver does, with `c`; sends each action on `seen`.
async fn driver(
    mut c: Controller,
    mut requests: mpsc::Receiver<Request>,
    seen: mpsc::Sender<Action>,
) {
    while let Some(request) = requests.recv().await {
        if let Request::Act {
            action,
            origin,
            reply,
        } = request
        {
            let (result, _) = c.act(&action, &origin, 10_000);
            let answer = match result {
                Ok(message) => ActionReply::done(message),
                Err(refusal) => ActionReply::refused(refusal.kind(), refusal.to_string()),
            };
            let _ = seen.send(action).await;
            let _ = reply.send(answer);
        }
    }
}

/// POSTs `body` to `/v1/actions`; returns the status, the reply, and what the driver saw.
async fn post(body: Vec<u8>) -> (StatusCode, ActionReply, Option<Action>) {
    let (daemon, requests, _events) = DaemonHandle::channel(1);
    let (seen_tx, mut seen) = mpsc::channel(1);
    let driving = tokio::spawn(driver(controller(), requests, seen_tx));
    let state = AppState {
        daemon,
        dns: std::sync::Arc::new(DnsStats::default()),
        shutdown: tokio_util::sync::CancellationToken::new(),
    };
    let mut request = axum::http::Request::builder()
        .method(Method::POST)
        .uri(paths::ACTIONS)
        .body(Body::from(body))
        .unwrap_or_else(|e| panic!("{e}"));
    request.extensions_mut().insert(ConnectInfo(Peer::Unix {
        uid: Some(0),
        pid: Some(1),
    }));
    let response = router(state)
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("the reply's body: {e}"));
    let reply: ActionReply = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("a {status} reply that is not an ActionReply ({e}): {bytes:?}"));
    // The router is gone, and with it the handle: the driver ends.
    driving.await.unwrap_or_else(|e| panic!("the driver: {e}"));
    (status, reply, seen.try_recv().ok())
}

/// Checks one input; panics when a property fails.
pub fn control_action(bytes: &[u8]) {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("a runtime: {e}"));
    }
    let (status, reply, seen) = RUNTIME.with(|rt| rt.block_on(post(bytes.to_vec())));
    match serde_json::from_slice::<Action>(bytes) {
        Err(_) => {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{reply:?}");
            assert_eq!(reply.kind, Some(RefusalKind::Malformed));
            let reason = reply.message.strip_prefix("malformed action: ");
            assert!(reason.is_some_and(|r| !r.is_empty()), "{:?}", reply.message);
            assert!(!reply.accepted);
            assert_eq!(seen, None, "a malformed action reached the driver");
        }
        Ok(action) => {
            assert_eq!(
                seen.as_ref(),
                Some(&action),
                "the driver saw another action"
            );
            match status {
                StatusCode::OK => assert!(reply.accepted && reply.kind.is_none(), "{reply:?}"),
                StatusCode::CONFLICT => assert!(
                    !reply.accepted
                        && reply.kind.is_some_and(|k| k != RefusalKind::Malformed)
                        && !reply.message.is_empty(),
                    "{reply:?}"
                ),
                other => panic!("{other} for {action:?}: {reply:?}"),
            }
            let json = serde_json::to_vec(&action).unwrap_or_else(|e| panic!("{e}"));
            let again: Action = serde_json::from_slice(&json).unwrap_or_else(|e| {
                panic!("{action:?} written as {json:?} does not read back: {e}")
            });
            assert_eq!(again, action);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces of JSON and of actions, for the mutations to insert.
    const WORDS: &[&[u8]] = &[
        b"{",
        b"}",
        b"\"",
        b",",
        b":",
        b"null",
        b"true",
        b"[]",
        b"\\u0000",
        b"\\ud800",
        b"\xff",
        b"\"action\":",
        b"\"service\":",
        b"\"node\":",
        b"\"on\":",
        b"\"failover\"",
        b"\"failback\"",
        b"\"promote\"",
        b"\"sync\"",
        b"\"maintenance\"",
        b"\"pause\"",
        b"\"resume\"",
        b"\"unquarantine\"",
        b"\"www\"",
        b"\"app1\"",
        b"\"app3\"",
        b"1e999",
        b"-0",
    ];

    #[test]
    fn control_action_holds_for_mutated_actions_and_random_bytes() {
        fuzzkit::run(
            "control_action",
            2_000,
            fuzzkit::corpus_mutations("control_action", WORDS, 64),
            control_action,
        );
    }

    #[test]
    fn control_action_holds_for_the_corpus() {
        fuzzkit::replay("control_action", control_action);
    }
}
