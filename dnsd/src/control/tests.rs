//! The control API against a fake driver: requests reach the driver as [`Request`]s and
//! its answers come back as HTTP, with the status codes and refusal kinds clients match on.

use std::path::Path;
use std::time::Duration;

use dnsd_api::{Action, ActionReply, HeartbeatSettings, RefusalKind, Status};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::*;
use crate::handle::Request as DriverRequest;

fn empty_status() -> Status {
    Status {
        now_ms: 1,
        started_ms: 0,
        zone: "svc.test.".into(),
        serial: 7,
        ttl: 5,
        heartbeat: HeartbeatSettings {
            protocol: "tcp".into(),
            port: 7,
            interval_ms: 500,
            timeout_ms: 400,
            rise: 3,
            fall: 3,
        },
        nodes: Vec::new(),
        services: Vec::new(),
    }
}

/// A driver that answers every status request with `empty_status()` and refuses every
/// action that is not a pause, recording what it was asked.
async fn fake_driver(mut requests: mpsc::Receiver<DriverRequest>, seen: mpsc::Sender<Action>) {
    while let Some(request) = requests.recv().await {
        match request {
            DriverRequest::Status { reply } => {
                let _ = reply.send(empty_status());
            }
            DriverRequest::Events { reply } => {
                let _ = reply.send(Vec::new());
            }
            DriverRequest::Act { action, reply, .. } => {
                let answer = match action {
                    Action::Pause { .. } => ActionReply::done("www paused".into()),
                    _ => ActionReply::refused(RefusalKind::NotEligible, "app3 is down".into()),
                };
                let _ = seen.send(action).await;
                let _ = reply.send(answer);
            }
            DriverRequest::Metrics { .. } => {}
        }
    }
}

/// A `[control]` with only the socket, and the defaults of everything else.
fn unix_only(socket: &Path) -> ControlConfig {
    ControlConfig {
        socket: socket.to_owned(),
        tcp: None,
        header_timeout: Duration::from_secs(10),
        max_connections: 64,
    }
}

/// Serves the API on a socket in `dir`; `driver` decides whether a fake driver runs.
async fn serve_api(
    dir: &Path,
    driver: bool,
) -> (
    std::path::PathBuf,
    mpsc::Receiver<Action>,
    CancellationToken,
) {
    let socket = dir.join("control.sock");
    let listeners = ControlListeners::bind(&unix_only(&socket)).await.unwrap();
    let (handle, requests, _events) = DaemonHandle::channel(8);
    let (seen_tx, seen) = mpsc::channel(8);
    if driver {
        tokio::spawn(fake_driver(requests, seen_tx));
    } else {
        drop(requests);
    }
    let cancel = CancellationToken::new();
    tokio::spawn(serve(
        listeners,
        handle,
        Arc::new(DnsStats::default()),
        cancel.clone(),
    ));
    (socket, seen, cancel)
}

/// One HTTP/1.1 exchange; returns the status code and the body.
async fn exchange(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: dnsd\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let code = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn status_comes_from_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, _, cancel) = serve_api(dir.path(), true).await;
    let (code, body) = exchange(&socket, "GET", paths::STATUS, "").await;
    assert_eq!(code, 200, "{body}");
    let status: Status = serde_json::from_str(&body).unwrap();
    assert_eq!(status, empty_status());
    cancel.cancel();
}

#[tokio::test]
async fn accepted_and_refused_actions_carry_their_code_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, mut seen, cancel) = serve_api(dir.path(), true).await;

    let (code, body) = exchange(&socket, "POST", paths::ACTIONS, r#"{"action":"pause"}"#).await;
    assert_eq!(code, 200, "{body}");
    let reply: ActionReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply, ActionReply::done("www paused".into()));

    let (code, body) = exchange(
        &socket,
        "POST",
        paths::ACTIONS,
        r#"{"action":"promote","node":"app3"}"#,
    )
    .await;
    assert_eq!(code, 409, "{body}");
    let reply: ActionReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply.kind, Some(RefusalKind::NotEligible));
    assert_eq!(reply.message, "app3 is down");

    assert_eq!(seen.recv().await, Some(Action::Pause { service: None }));
    assert_eq!(
        seen.recv().await,
        Some(Action::Promote {
            service: None,
            node: "app3".into()
        })
    );
    cancel.cancel();
}

#[tokio::test]
async fn a_malformed_action_never_reaches_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, mut seen, cancel) = serve_api(dir.path(), true).await;
    let (code, body) = exchange(&socket, "POST", paths::ACTIONS, r#"{"action":"explode"}"#).await;
    assert_eq!(code, 400, "{body}");
    let reply: ActionReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply.kind, Some(RefusalKind::Malformed));
    assert!(
        reply.message.starts_with("malformed action: "),
        "{}",
        reply.message
    );
    // The next request is the first the driver sees.
    exchange(&socket, "POST", paths::ACTIONS, r#"{"action":"pause"}"#).await;
    assert_eq!(seen.recv().await, Some(Action::Pause { service: None }));
    cancel.cancel();
}

#[tokio::test]
async fn without_a_driver_the_api_answers_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, _, cancel) = serve_api(dir.path(), false).await;
    let (code, body) = exchange(&socket, "GET", paths::STATUS, "").await;
    assert_eq!(code, 503, "{body}");
    let reply: ActionReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply.kind, Some(RefusalKind::Unavailable));
    assert_eq!(reply.message, "the daemon is shutting down");
    cancel.cancel();
}
