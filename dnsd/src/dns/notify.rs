//! NOTIFY (RFC 1996): on every new serial, each `dns.notify` secondary is told, over
//! UDP, that the zone changed; it then asks for the SOA and transfers what changed.
//!
//! A NOTIFY not acknowledged is sent again after `dns.notify_retry`, then after twice
//! that, and so on up to a minute between tries (RFC 1996 section 3.6), until the
//! secondary acknowledges it or a newer serial supersedes it. A secondary that answers
//! with an error (it does not serve the zone, or refuses us) is not asked again for that
//! serial. With `dns.tsig`, every NOTIFY is signed and only signed acknowledgements
//! count. One task owns every target's state; it wakes on a new snapshot, an answer or
//! the next retransmission.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType, TSigVerifier};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::error::{ServeError, is_fatal};
use super::snapshot::Snapshot;
use super::stats::{DnsStats, NotifyCounters};
use super::tsig::{self, TsigKey};
use crate::config::NOTIFY_RETRY_MAX;

/// Tries after which a warning says the secondary has not answered.
const WARN_AFTER: u32 = 4;
/// Transmissions of one serial whose answers are still recognised.
const REMEMBERED: usize = 8;

/// Where and how NOTIFY is sent.
#[derive(Debug)]
pub(super) struct NotifySettings {
    pub(super) targets: Vec<SocketAddr>,
    pub(super) retry: Duration,
    pub(super) key: Option<TsigKey>,
    /// Bound at start: one socket per address family the targets use.
    pub(super) v4: Option<std::net::UdpSocket>,
    pub(super) v6: Option<std::net::UdpSocket>,
}

/// A serial not yet acknowledged by one target.
struct Pending {
    serial: u32,
    tries: u32,
    due: Instant,
    /// The ids of the transmissions sent so far (newest last), with the verifier of
    /// each signed one: an answer to any of them counts.
    sent: Vec<(u16, Option<TSigVerifier>)>,
}

/// The delay before try `tries + 1`: `retry`, doubling, at most [`NOTIFY_RETRY_MAX`].
pub(super) fn delay(retry: Duration, tries: u32) -> Duration {
    let factor = 1u32 << tries.saturating_sub(1).min(16);
    retry.saturating_mul(factor).min(NOTIFY_RETRY_MAX)
}

/// Sends NOTIFY for every serial `changes` brings (the current one first) until
/// `cancel` fires.
pub(super) async fn run(
    mut settings: NotifySettings,
    mut changes: watch::Receiver<Arc<Snapshot>>,
    stats: Arc<DnsStats>,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let socket = |s: Option<std::net::UdpSocket>| -> Result<Option<UdpSocket>, ServeError> {
        s.map(|s| UdpSocket::from_std(s).map_err(|error| ServeError::Notify { error }))
            .transpose()
    };
    let (v4, v6) = (socket(settings.v4.take())?, socket(settings.v6.take())?);
    stats.set_notify_targets(&settings.targets);
    let mut pending: Vec<Option<Pending>> = settings.targets.iter().map(|_| None).collect();
    let mut current = changes.borrow_and_update().clone();
    let mut serial = current.zone().serial();
    let notifier = Notifier {
        settings: &settings,
        stats: &stats,
        v4: v4.as_ref(),
        v6: v6.as_ref(),
    };
    for (i, slot) in pending.iter_mut().enumerate() {
        *slot = Some(notifier.start(i, &current).await);
    }
    let (mut buf4, mut buf6) = (vec![0u8; 4096], vec![0u8; 4096]);
    loop {
        let next_due = pending.iter().flatten().map(|p| p.due).min();
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Ok(()),
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(ServeError::Ended { task: "NOTIFY (the zone publisher is gone)".into() });
                }
                current = changes.borrow_and_update().clone();
                if current.zone().serial() == serial {
                    continue;
                }
                serial = current.zone().serial();
                for (i, slot) in pending.iter_mut().enumerate() {
                    if let (Some(old), Some(c)) = (slot.take(), notifier.counters(i)) {
                        c.superseded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        debug!(target = %settings.targets[i], serial = old.serial, "NOTIFY superseded by a newer serial");
                    }
                    *slot = Some(notifier.start(i, &current).await);
                }
            }
            received = recv(v4.as_ref(), &mut buf4) => {
                let (n, from) = received?;
                notifier.answer(&mut pending, from, buf4.get(..n).unwrap_or_default());
            }
            received = recv(v6.as_ref(), &mut buf6) => {
                let (n, from) = received?;
                notifier.answer(&mut pending, from, buf6.get(..n).unwrap_or_default());
            }
            () = sleep_until(next_due) => {
                let now = Instant::now();
                for (i, slot) in pending.iter_mut().enumerate() {
                    if let Some(p) = slot.as_mut().filter(|p| p.due <= now) {
                        notifier.resend(i, p, &current).await;
                    }
                }
            }
        }
    }
}

/// Waits for an answer on `socket`, or forever without one. Only errors that leave the
/// socket unusable are returned; ICMP errors reported for earlier sends are skipped.
async fn recv(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> Result<(usize, SocketAddr), ServeError> {
    let Some(socket) = socket else {
        return std::future::pending().await;
    };
    loop {
        match socket.recv_from(buf).await {
            Ok(got) => return Ok(got),
            Err(error) if is_fatal(&error) => return Err(ServeError::Notify { error }),
            Err(error) => debug!(%error, "NOTIFY socket receive error"),
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Sends and matches NOTIFY messages for the targets.
struct Notifier<'a> {
    settings: &'a NotifySettings,
    stats: &'a DnsStats,
    v4: Option<&'a UdpSocket>,
    v6: Option<&'a UdpSocket>,
}

impl Notifier<'_> {
    fn counters(&self, i: usize) -> Option<&NotifyCounters> {
        self.stats.notify_target(i)
    }

    /// First try of `snapshot`'s serial to target `i`.
    async fn start(&self, i: usize, snapshot: &Snapshot) -> Pending {
        let mut p = Pending {
            serial: snapshot.zone().serial(),
            tries: 0,
            due: Instant::now(),
            sent: Vec::new(),
        };
        self.resend(i, &mut p, snapshot).await;
        p
    }

    /// Sends one try to target `i` and schedules the next.
    async fn resend(&self, i: usize, p: &mut Pending, snapshot: &Snapshot) {
        let target = self.settings.targets[i];
        let id = rand::random::<u16>();
        p.tries += 1;
        p.due = Instant::now() + delay(self.settings.retry, p.tries);
        let counters = self.counters(i);
        let bump = |c: Option<&std::sync::atomic::AtomicU64>| {
            if let Some(c) = c {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        };
        bump(counters.map(|c| &c.sent));
        if p.tries > 1 {
            bump(counters.map(|c| &c.retried));
        }
        if p.tries == WARN_AFTER {
            warn!(%target, serial = p.serial, tries = p.tries, "secondary has not acknowledged NOTIFY; still trying");
        }
        let (bytes, verifier) = match self.message(id, snapshot) {
            Ok(m) => m,
            Err(error) => {
                warn!(%target, %error, "cannot build a NOTIFY");
                return;
            }
        };
        if p.sent.len() == REMEMBERED {
            p.sent.remove(0);
        }
        p.sent.push((id, verifier));
        let socket = if target.is_ipv4() { self.v4 } else { self.v6 };
        let Some(socket) = socket else {
            return;
        };
        match socket.send_to(&bytes, target).await {
            Ok(_) => debug!(%target, serial = p.serial, tries = p.tries, "NOTIFY sent"),
            Err(error) => debug!(%target, %error, "cannot send NOTIFY; will retry"),
        }
    }

    /// A NOTIFY for `snapshot`'s SOA with id `id`, signed when a key is configured.
    fn message(
        &self,
        id: u16,
        snapshot: &Snapshot,
    ) -> Result<(Vec<u8>, Option<TSigVerifier>), hickory_proto::ProtoError> {
        let zone = snapshot.zone();
        let mut m = Message::new(id, MessageType::Query, OpCode::Notify);
        m.metadata.authoritative = true;
        m.add_query(Query::query(
            Name::from(zone.origin().clone()),
            RecordType::SOA,
        ));
        // The new SOA in the answer section (RFC 1996 section 3.7): a hint the
        // secondary may use to skip its SOA query.
        m.add_answer(zone.soa().clone());
        let verifier = match &self.settings.key {
            Some(key) => m.finalize(key.signer(), tsig::now_secs())?,
            None => None,
        };
        Ok((m.to_vec()?, verifier))
    }

    /// Matches an answer from `from` to the pending NOTIFY it acknowledges.
    fn answer(&self, pending: &mut [Option<Pending>], from: SocketAddr, bytes: &[u8]) {
        let Some(i) = self.settings.targets.iter().position(|t| *t == from) else {
            debug!(%from, "answer from an address NOTIFY was not sent to; ignored");
            return;
        };
        let Ok(response) = Message::from_vec(bytes) else {
            debug!(%from, "unreadable answer to NOTIFY; ignored");
            return;
        };
        let m = &response.metadata;
        if m.message_type != MessageType::Response || m.op_code != OpCode::Notify {
            return;
        }
        let Some(p) = pending.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let Some(sent) = p.sent.iter_mut().find(|(id, _)| *id == m.id) else {
            return;
        };
        if let Some(verifier) = &mut sent.1
            && verifier.verify(bytes).is_err()
        {
            debug!(%from, "answer to NOTIFY without a valid TSIG; ignored");
            return;
        }
        let serial = p.serial;
        let counters = self.counters(i);
        if m.response_code == ResponseCode::NoError {
            if let Some(c) = counters {
                c.acknowledged
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            info!(target = %from, serial, tries = p.tries, "secondary acknowledged NOTIFY");
        } else {
            if let Some(c) = counters {
                c.rejected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            warn!(target = %from, serial, rcode = %m.response_code, "secondary refused NOTIFY; not sending this serial again");
        }
        pending[i] = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_a_minute() {
        let r = Duration::from_secs(2);
        let delays: Vec<u64> = (1..=8).map(|t| delay(r, t).as_secs()).collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(delay(r, 1000), NOTIFY_RETRY_MAX);
    }
}
