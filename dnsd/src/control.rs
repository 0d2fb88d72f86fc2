//! The control API: HTTP/JSON under `/v1`, on a Unix socket (mode 0600) and, only with
//! a token, on TCP: over TLS, or as plain HTTP on a loopback address when the operator
//! allowed it. Operator views read the status and follow the event stream; operator
//! actions go to the driver, which runs them through the controller's rules.
//!
//! | method | path                  | what                                              |
//! |--------|-----------------------|---------------------------------------------------|
//! | GET    | `/v1/status`          | [`dnsd_api::Status`]                              |
//! | GET    | `/v1/events?since=N`  | recent events with `seq > N`, oldest first        |
//! | GET    | `/v1/events/stream`   | server-sent events, one [`dnsd_api::Event`] each; `?since=N` replays first |
//! | POST   | `/v1/actions`         | an [`dnsd_api::Action`]; 200 if done, 409 with the reason if refused |
//! | POST   | `/v1/reload`          | re-read the configuration file; 200 if taken, 409 with the problems if refused |
//! | GET    | `/metrics`            | Prometheus text format                            |
//!
//! Every action and reload is logged with its origin: the peer's uid and pid on the Unix socket
//! (from `SO_PEERCRED`), the peer address on TCP, plus the operator name a client may
//! give in the `x-dnsd-operator` header.
//!
//! Every listener bounds its clients (`conn`): a request head (and on TCP the TLS
//! handshake) must arrive within `header_timeout`, and at most `max_connections` are
//! served at once, further ones waiting for a free slot. The token and the TLS key are
//! read from owner-only files (`secret`, `tls`) and never logged.

mod conn;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;
mod metrics;
mod peer;
mod secret;
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dnsd_api::{Action, ActionReply, Event, RefusalKind, paths};
use futures::Stream;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::broadcast::error::RecvError;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{ControlConfig, ControlTransport};
use crate::dns::DnsStats;
use crate::handle::{DaemonHandle, ShuttingDown};
use conn::{Limits, serve_on};
pub use error::ControlError;
pub use peer::OPERATOR_HEADER;
use peer::Peer;
pub use secret::Token;

/// Bound control listeners, ready to serve.
#[derive(Debug)]
pub struct ControlListeners {
    unix: UnixListener,
    socket: PathBuf,
    tcp: Option<TcpControl>,
    limits: Limits,
}

/// The TCP listener, its token, and its TLS acceptor (`None`: plain HTTP on loopback).
struct TcpControl {
    listener: TcpListener,
    token: Token,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for TcpControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpControl")
            .field("listener", &self.listener)
            .field("token", &self.token)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ControlListeners {
    /// Reads the token and TLS files of the TCP listener, if configured, then binds the
    /// Unix socket (replacing a stale one, refusing a live one) with mode 0600 and the
    /// TCP listener. Nothing is bound when a file is unusable.
    pub async fn bind(config: &ControlConfig) -> Result<ControlListeners, ControlError> {
        let ControlConfig {
            socket,
            tcp,
            header_timeout,
            max_connections,
        } = config;
        let limits = Limits {
            header_timeout: *header_timeout,
            max_connections: *max_connections,
        };
        let tcp_files = match tcp {
            None => None,
            Some(tcp) => {
                let token = Token::read(&tcp.token_file)?;
                let tls = match &tcp.transport {
                    ControlTransport::Tls { cert, key } => Some(tls::acceptor(cert, key)?),
                    ControlTransport::PlainLoopback => None,
                };
                Some((tcp.addr, token, tls))
            }
        };
        let unix = bind_socket(socket).await?;
        let tcp = match tcp_files {
            None => None,
            Some((addr, token, tls)) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|error| ControlError::BindTcp { addr, error })?;
                if tls.is_none() {
                    warn!(%addr, "the control API's TCP listener is plain HTTP (allow_plain_tcp_on_loopback): reachable from this host only, without TLS");
                }
                Some(TcpControl {
                    listener,
                    token,
                    tls,
                })
            }
        };
        Ok(ControlListeners {
            unix,
            socket: socket.to_owned(),
            tcp,
            limits,
        })
    }

    /// The TCP address actually bound, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|t| t.listener.local_addr().ok())
    }

    /// The Unix socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Binds the control socket with mode 0600, replacing a stale socket file.
async fn bind_socket(socket: &Path) -> Result<UnixListener, ControlError> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|error| ControlError::SocketDir {
            path: socket.to_owned(),
            error,
        })?;
    }
    if socket.exists() {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Err(ControlError::SocketInUse {
                path: socket.to_owned(),
            });
        }
        std::fs::remove_file(socket).map_err(|error| ControlError::StaleSocket {
            path: socket.to_owned(),
            error,
        })?;
    }
    // Create the socket with no access for others from the start, then set 0600.
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(socket);
    // SAFETY: as above; restores the previous mask.
    unsafe { libc::umask(old) };
    let unix = bound.map_err(|error| ControlError::Bind {
        path: socket.to_owned(),
        error,
    })?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(|error| {
        ControlError::Permissions {
            path: socket.to_owned(),
            error,
        }
    })?;
    Ok(unix)
}

#[derive(Clone)]
struct AppState {
    daemon: DaemonHandle,
    dns: Arc<DnsStats>,
    /// Fires at shutdown: open event streams end, so graceful shutdown is not held up.
    shutdown: CancellationToken,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route(paths::STATUS, get(status))
        .route(paths::EVENTS, get(events))
        .route(paths::EVENT_STREAM, get(event_stream))
        .route(paths::ACTIONS, post(act))
        .route(paths::RELOAD, post(reload))
        .route(paths::METRICS, get(metrics_text))
        .with_state(state)
}

/// Serves the control API until `cancel` fires.
pub async fn serve(
    listeners: ControlListeners,
    daemon: DaemonHandle,
    dns: Arc<DnsStats>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let ControlListeners {
        unix,
        socket,
        tcp,
        limits,
    } = listeners;
    let state = AppState {
        daemon,
        dns,
        shutdown: cancel.clone(),
    };
    let unix = serve_on(
        unix,
        "unix",
        router(state.clone()),
        Peer::of_unix,
        |io| std::future::ready(Ok(io)),
        limits,
        cancel.clone(),
    );
    match tcp {
        None => unix.await,
        Some(TcpControl {
            listener,
            token,
            tls,
        }) => {
            let guarded =
                router(state).layer(middleware::from_fn(move |req: Request, next: Next| {
                    let token = token.clone();
                    async move { require_token(&token, req, next).await }
                }));
            match tls {
                Some(acceptor) => {
                    let tcp = serve_on(
                        listener,
                        "tcp",
                        guarded,
                        Peer::of_tcp,
                        move |io| acceptor.accept(io),
                        limits,
                        cancel,
                    );
                    tokio::join!(unix, tcp);
                }
                None => {
                    let tcp = serve_on(
                        listener,
                        "tcp",
                        guarded,
                        Peer::of_tcp,
                        |io| std::future::ready(Ok(io)),
                        limits,
                        cancel,
                    );
                    tokio::join!(unix, tcp);
                }
            }
        }
    }
    if let Err(e) = std::fs::remove_file(&socket) {
        warn!(path = %socket.display(), error = %e, "cannot remove the control socket at shutdown");
    }
    Ok(())
}

async fn require_token(token: &Token, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(p) if token.matches(p) => next.run(req).await,
        _ => {
            let peer = req
                .extensions()
                .get::<ConnectInfo<Peer>>()
                .map(|c| format!("{:?}", c.0));
            warn!(peer = peer.as_deref().unwrap_or("?"), path = %req.uri().path(), "control API request without a valid token");
            (
                StatusCode::UNAUTHORIZED,
                Json(ActionReply::refused(
                    RefusalKind::Unauthorized,
                    "a valid bearer token is required".into(),
                )),
            )
                .into_response()
        }
    }
}

fn unavailable(e: ShuttingDown) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(ActionReply::refused(
            RefusalKind::Unavailable,
            e.to_string(),
        )),
    )
        .into_response()
}

async fn status(State(s): State<AppState>) -> Response {
    match s.daemon.status().await {
        Ok(st) => Json(st).into_response(),
        Err(e) => unavailable(e),
    }
}

#[derive(serde::Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

async fn events(State(s): State<AppState>, Query(q): Query<Since>) -> Response {
    match s.daemon.events().await {
        Ok(all) => Json(
            all.into_iter()
                .filter(|e| e.seq > q.since)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => unavailable(e),
    }
}

async fn event_stream(
    State(s): State<AppState>,
    Query(q): Query<Since>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // Subscribe before reading the log, so nothing falls between the two.
    let mut live = s.daemon.subscribe();
    let shutdown = s.shutdown.clone();
    let backlog: Vec<Event> = s
        .daemon
        .events()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.seq > q.since)
        .collect();
    let stream = async_stream(move |tx| async move {
        let mut last = q.since;
        for e in backlog {
            last = e.seq;
            if tx.send(sse(&e)).await.is_err() {
                return;
            }
        }
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = live.recv() => next,
            };
            match next {
                Ok(e) if e.seq <= last => {}
                Ok(e) => {
                    last = e.seq;
                    if tx.send(sse(&e)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let note = SseEvent::default().event("lagged").data(n.to_string());
                    if tx.send(note).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn sse(e: &Event) -> SseEvent {
    match SseEvent::default().id(e.seq.to_string()).json_data(e) {
        Ok(ev) => ev,
        Err(err) => SseEvent::default().event("error").data(err.to_string()),
    }
}

/// A stream fed by a task through a small channel (keeps the SSE code linear).
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}

async fn act(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let origin = peer.describe(&headers);
    // Parsed whatever the content type says, so `curl -d '{...}'` works as written.
    let action: Action = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(error) => {
            info!(%origin, %error, "malformed operator action");
            let reply =
                ActionReply::refused(RefusalKind::Malformed, format!("malformed action: {error}"));
            return (StatusCode::BAD_REQUEST, Json(reply)).into_response();
        }
    };
    match s.daemon.act(action, origin).await {
        Ok(reply) if reply.accepted => Json(reply).into_response(),
        Ok(reply) => (StatusCode::CONFLICT, Json(reply)).into_response(),
        Err(e) => unavailable(e),
    }
}

/// Re-reads the configuration file; answered like an action (409 when refused, with the
/// problems or the reason).
async fn reload(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    let origin = peer.describe(&headers);
    match s.daemon.reload(origin).await {
        Ok(reply) if reply.accepted => Json(reply).into_response(),
        Ok(reply) => (StatusCode::CONFLICT, Json(reply)).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    match s.daemon.metrics().await {
        Ok(m) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics::render(&m, &s.dns.snapshot()),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

#[cfg(test)]
mod tests;
