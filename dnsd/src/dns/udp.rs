//! DNS over UDP: a blocking loop per socket, batched with `recvmmsg`/`sendmmsg`.
//!
//! A plain blocking loop rather than an async task, so the kernel wakes this thread
//! directly when datagrams arrive, and batched: each system call moves up to
//! [`mmsg::BATCH`] datagrams. Both matter at tens of thousands of queries per second,
//! where the system calls and wake-ups cost more CPU than answering. With `dns.threads`
//! above 1 each address has that many sockets bound with `SO_REUSEPORT`, each on its own
//! thread: the kernel spreads clients over them by their address and port.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::answer::{Access, Outcome, Transport, UDP_PAYLOAD, respond};
use super::error::{ServeError, is_fatal};
use super::mmsg;
use super::snapshot::{SharedSnapshot, Snapshot};
use super::stats::{DnsStats, TransferOutcome};
use super::tsig;

/// How often a UDP thread blocked in `recv` looks at the cancellation token.
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// Answers one datagram into `out`: from the precomputed answers when it is a plain
/// query, else through the generic path. Returns what to count, or `None` when nothing
/// should be sent.
pub(super) fn answer(
    snapshot: &Snapshot,
    access: &Access,
    peer: IpAddr,
    datagram: &[u8],
    out: &mut Vec<u8>,
) -> Option<(ResponseCode, Option<TransferOutcome>)> {
    if let Some(rcode) = snapshot.fast().answer(datagram, out) {
        return Some((ResponseCode::from(0, rcode), None));
    }
    let now = tsig::now_secs();
    match respond(
        snapshot.zone(),
        access,
        peer,
        now,
        Transport::Udp,
        datagram,
        out,
    ) {
        Outcome::Answered(rcode) => Some((rcode, None)),
        Outcome::TransferRefused => Some((ResponseCode::Refused, Some(TransferOutcome::Refused))),
        // Over UDP a transfer request is answered with TC (already in `out`); a
        // `Transfer` outcome is TCP's only.
        Outcome::Drop | Outcome::Transfer(_) => None,
    }
}

/// Serves `socket` on the calling (blocking) thread until `cancel` fires; an error ends
/// it early, and the caller stops DNS with it.
pub(super) fn serve_blocking(
    socket: std::net::UdpSocket,
    slot: SharedSnapshot,
    access: Arc<Access>,
    stats: Arc<DnsStats>,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let fail = |error| ServeError::Udp { addr: local, error };
    socket.set_nonblocking(false).map_err(fail)?;
    socket.set_read_timeout(Some(CANCEL_POLL)).map_err(fail)?;
    let (mut rx, mut tx) = (
        mmsg::RecvBatch::new(),
        mmsg::SendBatch::new(UDP_PAYLOAD as usize),
    );
    while !cancel.is_cancelled() {
        let n = match rx.recv(socket.as_fd()) {
            Ok(n) => n,
            Err(e) if is_fatal(&e) => return Err(fail(e)),
            Err(error) => {
                // Timeouts (the cancellation poll), interruptions, and ICMP errors from
                // earlier sends, which Linux reports here: keep serving.
                if !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) {
                    debug!(%error, "udp receive error");
                }
                continue;
            }
        };
        let snapshot = slot.load();
        for (datagram, peer) in (0..n).filter_map(|i| rx.get(i)) {
            let ip = peer.ip().unwrap_or(local.ip());
            if let Some((rcode, transfer)) =
                answer(&snapshot, &access, ip, datagram, tx.next_buffer())
            {
                stats.count(rcode);
                if let Some(t) = transfer {
                    stats.count_transfer(t);
                }
                tx.commit(peer);
            }
        }
        match tx.send(socket.as_fd()) {
            Err(e) if is_fatal(&e) => return Err(fail(e)),
            Err(error) => debug!(%error, "udp send error"),
            Ok(_) => {}
        }
    }
    Ok(())
}
