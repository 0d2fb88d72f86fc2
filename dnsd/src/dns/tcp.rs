//! DNS over TCP (RFC 7766): an accept loop per address, a task per connection, answers
//! in order, zone transfers streamed as several messages.
//!
//! Connections are capped (`dns.tcp_max_connections`, over every address). When a new
//! client arrives at the cap, the connection that has been idle longest is closed to
//! make room (RFC 7766 section 6.2.3 lets a server close idle connections), so clients
//! holding idle connections cannot lock others out; only when every connection is busy
//! answering is the newcomer closed at once. A connection waiting longer than
//! `dns.tcp_idle_timeout` for its next query is closed, and so is one that takes that
//! long to send a query or to read an answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::answer::{Access, Outcome, TransferKind, Transport, respond};
use super::error::{ServeError, is_fatal};
use super::snapshot::SharedSnapshot;
use super::stats::{DnsStats, TransferOutcome};
use super::{tsig, xfr};

/// Pause after an accept error that is not the listener's own (out of file descriptors,
/// a connection reset before it was accepted), so such errors cannot spin the loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What every TCP connection serves with.
#[derive(Debug)]
pub(super) struct TcpContext {
    pub(super) slot: SharedSnapshot,
    pub(super) access: Arc<Access>,
    pub(super) stats: Arc<DnsStats>,
    pub(super) connections: Connections,
    pub(super) idle_timeout: Duration,
}

/// The live connections of every listener, for the cap.
#[derive(Debug)]
pub(super) struct Connections {
    max: usize,
    started: Instant,
    next_id: AtomicU64,
    /// Held only to admit, evict or remove a connection; no `.await` under it.
    live: Mutex<HashMap<u64, Arc<Connection>>>,
}

/// One connection's state, as the cap sees it.
#[derive(Debug)]
pub(super) struct Connection {
    /// 0 while a query is being answered; otherwise 1 + the millisecond (since
    /// [`Connections::started`]) it began waiting for its next query.
    idle_since: AtomicU64,
    /// Cancelled to close the connection (evicted to make room, or shutdown).
    pub(super) close: CancellationToken,
}

impl Connection {
    pub(super) fn set_idle(&self, now_ms: u64) {
        self.idle_since.store(now_ms + 1, Ordering::Relaxed);
    }

    pub(super) fn set_busy(&self) {
        self.idle_since.store(0, Ordering::Relaxed);
    }
}

impl Connections {
    pub(super) fn new(max: usize) -> Connections {
        Connections {
            max: max.max(1),
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A slot for a new connection, closing the longest idle one at the cap; `None`
    /// when every connection is busy. The new connection starts idle (it has not sent
    /// its first query yet). `shutdown` is the token the connection is a child of.
    pub(super) fn admit(&self, shutdown: &CancellationToken) -> Option<(u64, Arc<Connection>)> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if live.len() >= self.max {
            let oldest = live
                .iter()
                .filter_map(|(id, c)| match c.idle_since.load(Ordering::Relaxed) {
                    0 => None,
                    since => Some((since, *id)),
                })
                .min()?;
            if let Some(evicted) = live.remove(&oldest.1) {
                evicted.close.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            idle_since: AtomicU64::new(self.now_ms() + 1),
            close: shutdown.child_token(),
        });
        live.insert(id, connection.clone());
        Some((id, connection))
    }

    fn remove(&self, id: u64) {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// Accepts connections on `listener` until `cancel` fires. Returns an error when the
/// listener itself fails (closed under us, not a socket): then DNS stops with it.
pub(super) async fn serve(
    listener: TcpListener,
    context: Arc<TcpContext>,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    // Connections stop with this token, whichever way the loop ends.
    let connections_stop = cancel.child_token();
    let tracker = TaskTracker::new();
    let result = loop {
        let accepted = tokio::select! {
            biased;
            () = cancel.cancelled() => break Ok(()),
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => match context.connections.admit(&connections_stop) {
                Some((id, connection)) => {
                    // Each answer is written whole: Nagle's algorithm would only hold the
                    // next one back until the client's delayed ACK (up to 40 ms) when
                    // queries are pipelined.
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(%peer, %error, "cannot set TCP_NODELAY");
                    }
                    let context = context.clone();
                    tracker.spawn(async move {
                        serve_connection(stream, peer, &context, &connection).await;
                        context.connections.remove(id);
                    });
                }
                None => debug!(%peer, "TCP connection closed at once: every connection is busy"),
            },
            Err(error) if is_fatal(&error) => {
                break Err(ServeError::TcpAccept { addr, error });
            }
            Err(error) => {
                debug!(%addr, %error, "cannot accept a TCP connection");
                tokio::select! {
                    () = cancel.cancelled() => break Ok(()),
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    };
    connections_stop.cancel();
    tracker.close();
    tracker.wait().await;
    result
}

/// Reads queries and writes answers until the client closes, idles out, is evicted or
/// the server shuts down.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    context: &TcpContext,
    connection: &Connection,
) {
    let idle = context.idle_timeout;
    let close = &connection.close;
    // Reused for every query of the connection: the request, the answer, the answer
    // with its length in front.
    let (mut message, mut out, mut framed) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        connection.set_idle(context.connections.now_ms());
        // The two-byte length, then the message, each within the idle timeout.
        let len = tokio::select! {
            () = close.cancelled() => return,
            read = tokio::time::timeout(idle, stream.read_u16()) => match read {
                Ok(Ok(len)) => len,
                Ok(Err(_)) | Err(_) => return,
            },
        };
        message.resize(usize::from(len), 0);
        tokio::select! {
            () = close.cancelled() => return,
            read = tokio::time::timeout(idle, stream.read_exact(&mut message)) => {
                if !matches!(read, Ok(Ok(_))) {
                    return;
                }
            }
        }
        connection.set_busy();
        let transfer = match answer(context, peer.ip(), &message, &mut out) {
            // Not a request (a response, or shorter than a header): nothing sensible
            // can follow on this connection.
            None => return,
            Some(Reply::One) => None,
            Some(Reply::Transfer(messages)) => Some(messages),
        };
        let responses = transfer.iter().flatten().map(Vec::as_slice);
        let single = transfer.is_none().then_some(out.as_slice());
        for response in single.into_iter().chain(responses) {
            let Ok(len) = u16::try_from(response.len()) else {
                warn!(%peer, bytes = response.len(), "a TCP response does not fit in a message");
                return;
            };
            framed.clear();
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(response);
            tokio::select! {
                () = close.cancelled() => return,
                written = tokio::time::timeout(idle, stream.write_all(&framed)) => {
                    if !matches!(written, Ok(Ok(()))) {
                        return;
                    }
                }
            }
        }
    }
}

/// What answers a TCP request.
#[derive(Debug)]
pub(super) enum Reply {
    /// One message, in the caller's buffer.
    One,
    /// The messages of a zone transfer.
    Transfer(Vec<Vec<u8>>),
}

/// Answers one TCP request (into `out`, or as the messages of a transfer), counted;
/// `None` when the request deserves no answer.
pub(super) fn answer(
    context: &TcpContext,
    peer: IpAddr,
    message: &[u8],
    out: &mut Vec<u8>,
) -> Option<Reply> {
    let snapshot = context.slot.load();
    let stats = &context.stats;
    // A plain query's precomputed answer is the TCP answer too: it was only used when
    // it fits without truncation.
    if let Some(rcode) = snapshot.fast().answer(message, out) {
        stats.count(ResponseCode::from(0, rcode));
        return Some(Reply::One);
    }
    let now = tsig::now_secs();
    match respond(
        snapshot.zone(),
        &context.access,
        peer,
        now,
        Transport::Tcp,
        message,
        out,
    ) {
        Outcome::Drop => None,
        Outcome::Answered(rcode) => {
            stats.count(rcode);
            Some(Reply::One)
        }
        Outcome::TransferRefused => {
            stats.count(ResponseCode::Refused);
            stats.count_transfer(TransferOutcome::Refused);
            info!(%peer, "zone transfer refused: not in dns.allow_transfer, or not signed with dns.tsig");
            Some(Reply::One)
        }
        Outcome::Transfer(request) => {
            let (records, outcome) = xfr::plan(&snapshot, request.kind);
            match xfr::messages(&request, &records, now) {
                Ok(messages) => {
                    stats.count(ResponseCode::NoError);
                    stats.count_transfer(outcome);
                    let (kind, from) = match request.kind {
                        TransferKind::Axfr => ("AXFR", None),
                        TransferKind::Ixfr(serial) => ("IXFR", Some(serial)),
                    };
                    info!(
                        %peer, kind, from, serial = snapshot.zone().serial(),
                        answer = outcome.name(), records = records.len(),
                        messages = messages.len(), signed = request.signed.is_some(),
                        "zone transfer"
                    );
                    Some(Reply::Transfer(messages))
                }
                Err(error) => {
                    warn!(%peer, %error, "cannot encode a zone transfer");
                    None
                }
            }
        }
    }
}
