//! One control listener's accept loop: at most `max_connections` connections at once
//! (further ones wait in the kernel's backlog until one ends), the TLS handshake and every
//! request head within `header_timeout`, half-closed clients still answered, and a
//! graceful stop that lets open connections finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tracing::{debug, warn};

use super::peer::Peer;

/// What every listener bounds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Longest a client may take over the TLS handshake, and then over each request
    /// head (the first one, and the next on a kept-alive connection). Responses, event
    /// streams included, are not bounded by it.
    pub(super) header_timeout: Duration,
    /// Most connections served at once on this listener.
    pub(super) max_connections: usize,
}

/// Serves `app` on every connection `listener` accepts until `cancel` fires, then lets the
/// open connections finish (event streams end on the same token) and returns.
///
/// `handshake` turns an accepted connection into the byte stream HTTP runs on: itself on
/// the Unix socket, a TLS session on TCP. `name` names the listener in logs.
///
/// Our own loop rather than `axum::serve`, for settings it does not expose: half-closed
/// connections (a client that shuts down its write side after its request, as `socat`
/// and `nc -N` do, still gets the answer), the header timeout and the connection cap.
///
/// The cap is a semaphore of `max_connections` slots: the loop takes a slot *before* it
/// accepts, and the connection's task gives it back when it ends. At the cap the loop
/// simply stops accepting, so new clients wait (their connect completes in the kernel's
/// backlog) and are served, in order, as slots free up; the header timeout makes sure
/// that idle or slow clients free theirs.
pub(super) async fn serve_on<L, H, F, Io>(
    mut listener: L,
    name: &'static str,
    app: Router,
    peer_of: fn(&L::Io, &L::Addr) -> Peer,
    handshake: H,
    limits: Limits,
    cancel: CancellationToken,
) where
    L: axum::serve::Listener,
    H: Fn(L::Io) -> F,
    F: Future<Output = std::io::Result<Io>> + Send + 'static,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    // Every connection task holds a receiver; the sender closing tells them to finish.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    // Said once each time the listener reaches its cap, not once per waiting client.
    let mut at_cap = false;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                at_cap = false;
                slot
            }
            Err(_) => {
                if !at_cap {
                    at_cap = true;
                    warn!(
                        listener = name,
                        max_connections = limits.max_connections,
                        "control connections at their cap: new connections wait until one ends"
                    );
                }
                let waited = tokio::select! {
                    () = cancel.cancelled() => break,
                    slot = slots.clone().acquire_owned() => slot,
                };
                // Err only if the semaphore were closed, which nothing does.
                let Ok(slot) = waited else { break };
                slot
            }
        };
        let (io, addr) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let peer = ConnectInfo(peer_of(&io, &addr));
        let service = app
            .clone()
            .map_request(move |req: axum::http::Request<Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(peer.clone());
                req
            });
        let handshake = handshake(io);
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            // Both are given back however this task ends.
            let _slot = slot;
            let _done = done;
            let io = tokio::select! {
                io = tokio::time::timeout(limits.header_timeout, handshake) => match io {
                    Ok(Ok(io)) => io,
                    Ok(Err(error)) => {
                        debug!(listener = name, %error, "control connection: handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(listener = name, "control connection: no handshake within the header timeout");
                        return;
                    }
                },
                // Err: the sender is gone, which is the signal.
                _ = stop.changed() => return,
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
            let mut conn = std::pin::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(error) = result {
                            debug!(listener = name, %error, "control connection ended with an error");
                        }
                        break;
                    }
                    changed = stop.changed(), if !stopping => {
                        // Err: the sender is gone, which is the signal.
                        let _ = changed;
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(done_rx);
    // Returns once every connection task has dropped its receiver.
    done_tx.closed().await;
}
