//! Authoritative DNS over UDP and TCP, answering from the published [`Snapshot`]; zone
//! transfers (AXFR, IXFR) to `dns.allow_transfer`, NOTIFY to `dns.notify`, TSIG on both.
//!
//! Files, lowest first: [`zone`] (the zone and the pure answer function), `answer`
//! (one request to one response, shared by both transports), `fast` (precomputed UDP
//! answers), `journal` (changes IXFR answers from), [`snapshot`] (zone, fast table and
//! journal as one published value), `xfr` (transfer answers), `tsig`, `stats`, then the
//! transports: `udp` (blocking batched loops, one per socket), `tcp` (connection cap and
//! idle timeout), `notify`, and `listen` (binding). This file only starts and watches
//! them: [`serve`] returns an error as soon as one of its tasks ends without being asked.
//!
//! Every answer is AA from the zone with the SOA in the authority section of NXDOMAIN
//! and NODATA, REFUSED outside the zone and for classes other than IN, NOTIMP for other
//! opcodes, FORMERR for anything but one question, BADVERS for EDNS versions above 0.
//! The query paths never lock: they load the current snapshot from an `ArcSwap` the
//! controller's driver replaces on every role change.

mod answer;
mod error;
mod fast;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;
mod journal;
mod listen;
mod mmsg;
mod notify;
pub mod snapshot;
mod stats;
mod tcp;
mod tsig;
mod udp;
mod xfr;
pub mod zone;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use answer::{Access, UDP_PAYLOAD};
pub use error::{ServeError, StartError};
pub use listen::Listeners;
pub use snapshot::{Snapshot, ZonePublisher};
pub use stats::{DnsSnapshot, DnsStats, NotifyCount, RCODE_BUCKETS, TransferOutcome};
pub use tsig::{TsigKey, TsigKeyError};
pub use zone::{Answer, Zone, ZoneError, ZoneSpec};

/// Serves DNS on `listeners` from what `zone` publishes until `cancel` fires, and sends
/// NOTIFY for every new serial. Returns an error as soon as any of its tasks (a TCP
/// listener, a UDP socket's thread, NOTIFY) ends without being cancelled, after
/// stopping the others; the daemon stops with it.
pub async fn serve(
    listeners: Listeners,
    zone: ZonePublisher,
    stats: Arc<DnsStats>,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    // The tasks stop on `stop`: when asked to, or when one of them failed.
    let stop = cancel.child_token();
    let Listeners {
        udp,
        tcp,
        access,
        tcp_max_connections,
        tcp_idle_timeout,
        notify,
    } = listeners;
    let access = Arc::new(access);
    let mut tasks = JoinSet::new();
    let mut names = HashMap::new();

    let context = Arc::new(tcp::TcpContext {
        slot: zone.slot(),
        access: access.clone(),
        stats: stats.clone(),
        connections: tcp::Connections::new(tcp_max_connections),
        idle_timeout: tcp_idle_timeout,
    });
    for listener in tcp {
        let addr = listener.local_addr().ok();
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|error| ServeError::TcpAccept {
                addr: addr.unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
                error,
            })?;
        let handle = tasks.spawn(tcp::serve(listener, context.clone(), stop.clone()));
        names.insert(handle.id(), format!("TCP listener {}", display(addr)));
    }
    for socket in udp.into_iter().flatten() {
        let addr = socket.local_addr().ok();
        let (slot, access, stats, stop) =
            (zone.slot(), access.clone(), stats.clone(), stop.clone());
        let handle =
            tasks.spawn_blocking(move || udp::serve_blocking(socket, slot, access, stats, stop));
        names.insert(handle.id(), format!("UDP socket {}", display(addr)));
    }
    if !notify.targets.is_empty() {
        let handle = tasks.spawn(notify::run(
            notify,
            zone.subscribe(),
            stats.clone(),
            stop.clone(),
        ));
        names.insert(handle.id(), "NOTIFY".to_owned());
    }

    let failure = tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        Some(done) = tasks.join_next_with_id() => match done {
            // A task that ended because we are stopping (it watches a child of
            // `cancel`, so this select may see it end first) is no failure.
            _ if cancel.is_cancelled() => None,
            Ok((id, Ok(()))) => Some(ServeError::Ended { task: names.remove(&id).unwrap_or_default() }),
            Ok((_, Err(e))) => Some(e),
            Err(e) => Some(ServeError::Panicked { task: names.remove(&e.id()).unwrap_or_default() }),
        },
    };
    stop.cancel();
    // Every task watches `stop`: UDP threads within their poll interval, TCP and NOTIFY
    // at once.
    while tasks.join_next().await.is_some() {}
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn display(addr: Option<std::net::SocketAddr>) -> String {
    addr.map_or_else(|| "(unknown address)".to_owned(), |a| a.to_string())
}

#[cfg(test)]
mod tests;
