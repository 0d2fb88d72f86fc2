//! A session: one etcd lease, kept alive, and a local deadline before which the lease is
//! surely still valid on etcd.
//!
//! Everything a terminal server holds in etcd on its own behalf (the leader key, its
//! registration and its view of the pool) is attached to its session's lease, so it all
//! vanishes when the terminal server dies or is cut off from etcd for a TTL.
//!
//! The local deadline is what makes a leader stop acting *before* another can take over
//! (Patroni's rule). etcd restarts a lease's TTL when it *receives* a keep-alive, which is
//! after we *sent* it; so once the answer to a keep-alive sent at `t` arrives, the lease
//! lives on etcd until at least `t + TTL`. The session counts from `t`, not from the
//! answer, and keeps a safety margin for clock rate differences and scheduling delays:
//!
//! ```text
//! deadline = (send time of the last answered keep-alive) + TTL − max(TTL/4, 500 ms)
//! ```
//!
//! The deadline only moves forward, and once it passes the session is lost for good, even
//! if an answer arrives afterwards: a caller that saw "lost" never sees "valid" again.
//!
//! One task per session does the keep-alive. It sends a request every TTL/3 on a
//! keep-alive stream and matches answers to requests in order (etcd answers a stream's
//! requests in order, one answer each). A broken stream (etcd restarting, a connection
//! reset) is reopened while the deadline still holds, as Go's client does; the session is
//! lost when the deadline passes, when etcd says the lease is gone, or when it is closed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::cluster::error::{ClusterError, LostReason};
use crate::cluster::etcd::Etcd;

/// The smallest safety margin between the local deadline and the lease's end on etcd.
const MIN_MARGIN: Duration = Duration::from_millis(500);
/// Pause before reopening a broken keep-alive stream.
const REOPEN_PAUSE: Duration = Duration::from_millis(250);
/// gRPC's NOT_FOUND status code, etcd's answer about a lease it does not know.
const GRPC_NOT_FOUND: i32 = 5;
/// Keep-alive requests left unanswered after which no more are sent (etcd is not
/// answering; more requests would only queue up).
const MAX_IN_FLIGHT: usize = 8;

/// Where a session stands, as published on [`Session::watch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// The lease is surely valid on etcd until `until` (local monotonic time).
    Valid { until: Instant },
    /// The lease is not known to be valid any more; this never changes back.
    Lost(LostReason),
}

/// One lease and its keep-alive. Close it with [`Session::close`] to revoke the lease at
/// once; dropping it only stops the keep-alive, and etcd expires the lease a TTL later.
#[derive(Debug)]
pub struct Session {
    etcd: Etcd,
    lease: i64,
    ttl: Duration,
    validity: watch::Receiver<Validity>,
    /// Stops the keep-alive task: the session is then lost (closed).
    stop: CancellationToken,
    /// Stops sending keep-alives but keeps the deadline running (see [`Session::orphan`]).
    orphan: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Session {
    /// Grants a lease of `ttl` (rounded up to whole seconds, at least 1 s: etcd counts in
    /// seconds and may grant more than asked, e.g. its minimum of 1.5 election timeouts)
    /// and starts keeping it alive.
    pub async fn open(etcd: &Etcd, ttl: Duration) -> Result<Session, ClusterError> {
        let asked = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let asked = i64::try_from(asked.max(1)).unwrap_or(i64::MAX);
        let mut client = etcd.client();
        // The lease lives on etcd from when etcd grants it, which is after this instant.
        let sent = Instant::now();
        let granted = client
            .lease_grant(asked, None)
            .await
            .map_err(etcd.error("grant a lease for", "the session"))?;
        if granted.ttl() <= 0 {
            return Err(etcd.unexpected("grant a lease for", "the session", "a TTL of 0"));
        }
        let lease = granted.id();
        let ttl = Duration::from_secs(granted.ttl().unsigned_abs());
        let deadline = sent + ttl - margin(ttl);
        let (state, validity) = watch::channel(Validity::Valid { until: deadline });
        let stop = CancellationToken::new();
        let orphan = CancellationToken::new();
        let keeper = KeepAlive {
            etcd: etcd.clone(),
            lease,
            ttl,
            deadline,
            state,
        };
        // Every line the keep-alive task logs names its lease.
        let span = info_span!("session", lease = %format!("{lease:x}"));
        span.in_scope(|| info!(?ttl, asked, "session opened"));
        let task = tokio::spawn(keeper.run(stop.clone(), orphan.clone()).instrument(span));
        Ok(Session {
            etcd: etcd.clone(),
            lease,
            ttl,
            validity,
            stop,
            orphan,
            task: Some(task),
        })
    }

    /// The TTL etcd granted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How much longer the lease is surely valid, seen at `now`; `None` once lost.
    pub fn valid_for(&self, now: Instant) -> Option<Duration> {
        match *self.validity.borrow() {
            Validity::Valid { until } => until.checked_duration_since(now).filter(|d| !d.is_zero()),
            Validity::Lost(_) => None,
        }
    }

    /// The session's validity as it changes: a new deadline after each answered
    /// keep-alive, then [`Validity::Lost`] once.
    ///
    /// Between updates the deadline may pass before the task notices (by a timer tick);
    /// [`Session::valid_for`] compares with the clock and is exact.
    pub fn watch(&self) -> watch::Receiver<Validity> {
        self.validity.clone()
    }

    /// Resolves once the session is lost, with the reason.
    pub async fn lost(&self) -> LostReason {
        let mut validity = self.validity.clone();
        let lost = validity
            .wait_for(|v| matches!(v, Validity::Lost(_)))
            .await
            .map(|v| *v);
        match lost {
            Ok(Validity::Lost(reason)) => reason,
            // The task is gone without saying "lost": only when it was stopped.
            _ => LostReason::Closed,
        }
    }

    /// Stops keeping the lease alive without revoking it (Go's `Session.Orphan`): the
    /// lease then ends on etcd a TTL after the last keep-alive, and the session is lost
    /// when its local deadline passes. For when revoking is pointless or must not happen
    /// (the connection is in doubt, or the lease's keys must outlive this process a bit).
    pub fn orphan(&self) {
        self.orphan.cancel();
    }

    /// What etcd says is left of the lease: `None` when etcd no longer knows it. Whole
    /// seconds, rounded down by etcd (a lease with 0.9 s left reports 0).
    pub async fn remote_ttl(&self) -> Result<Option<Duration>, ClusterError> {
        let answer = self
            .etcd
            .client()
            .lease_time_to_live(self.lease, None)
            .await
            .map_err(self.etcd.error("read the TTL of", "the session's lease"))?;
        Ok(u64::try_from(answer.ttl()).ok().map(Duration::from_secs))
    }

    /// Stops the keep-alive and revokes the lease, so every key under it (leadership,
    /// registration, views) is deleted now rather than a TTL from now.
    pub async fn close(mut self) -> Result<(), ClusterError> {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            // The task only waits on cancellable futures, so this returns promptly; a
            // panic in it was already reported by the runtime.
            let _ = task.await;
        }
        let revoked = self.etcd.client().lease_revoke(self.lease).await;
        match revoked {
            Ok(_) => {
                info!(lease = %format!("{:x}", self.lease), "session closed, lease revoked");
                Ok(())
            }
            // Already gone: expired or revoked. That is what closing wants.
            Err(error) if is_not_found(&error) => Ok(()),
            Err(source) => Err(self.etcd.error("revoke", "the session's lease")(source)),
        }
    }

    /// The lease id, for puts attached to this session (never shown to callers).
    pub(crate) fn lease_id(&self) -> i64 {
        self.lease
    }

    /// Fails with [`ClusterError::SessionLost`] (naming `key`) unless the session is still
    /// valid now.
    pub(crate) fn ensure_valid(&self, key: &str) -> Result<(), ClusterError> {
        if self.valid_for(Instant::now()).is_some() {
            return Ok(());
        }
        let reason = match *self.validity.borrow() {
            Validity::Lost(reason) => reason,
            Validity::Valid { .. } => LostReason::DeadlinePassed,
        };
        Err(ClusterError::SessionLost {
            key: key.to_owned(),
            reason,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Sleeps until `at` (a std instant; tokio's timers take their own type).
async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

/// The safety margin kept before the end of a lease of `ttl`.
pub(crate) fn margin(ttl: Duration) -> Duration {
    (ttl / 4).max(MIN_MARGIN)
}

/// The keep-alive task's state: it alone moves the deadline.
struct KeepAlive {
    etcd: Etcd,
    lease: i64,
    ttl: Duration,
    deadline: Instant,
    state: watch::Sender<Validity>,
}

/// How one keep-alive stream ended.
enum StreamEnd {
    Lost(LostReason),
    /// The stream broke while the deadline still held: open another.
    Broken,
    /// The owner orphaned the session: wait for the deadline, send nothing.
    Orphaned,
}

impl KeepAlive {
    async fn run(mut self, stop: CancellationToken, orphan: CancellationToken) {
        let reason = tokio::select! {
            biased;
            () = stop.cancelled() => LostReason::Closed,
            reason = self.keep_alive(&orphan) => reason,
        };
        match reason {
            LostReason::Closed => debug!("keep-alive stopped"),
            _ => warn!(%reason, "session lost"),
        }
        self.state.send_replace(Validity::Lost(reason));
    }

    /// Keeps the lease alive until the session is lost, reopening broken streams.
    async fn keep_alive(&mut self, orphan: &CancellationToken) -> LostReason {
        loop {
            match self.one_stream(orphan).await {
                StreamEnd::Lost(reason) => return reason,
                StreamEnd::Orphaned => {
                    info!("session orphaned: no more keep-alives");
                    sleep_until(self.deadline).await;
                    return LostReason::DeadlinePassed;
                }
                StreamEnd::Broken => {
                    let retry = (Instant::now() + REOPEN_PAUSE).min(self.deadline);
                    tokio::select! {
                        biased;
                        () = orphan.cancelled() => {}
                        () = sleep_until(retry) => {}
                    }
                    if Instant::now() >= self.deadline {
                        return LostReason::DeadlinePassed;
                    }
                }
            }
        }
    }

    /// Opens a keep-alive stream and runs it until it breaks or the session is lost.
    async fn one_stream(&mut self, orphan: &CancellationToken) -> StreamEnd {
        let mut client = self.etcd.client();
        // Opening sends one keep-alive and waits for its answer.
        let sent = Instant::now();
        let opened = tokio::select! {
            biased;
            () = orphan.cancelled() => return StreamEnd::Orphaned,
            () = sleep_until(self.deadline) => return StreamEnd::Lost(LostReason::DeadlinePassed),
            opened = client.lease_keep_alive(self.lease) => opened,
        };
        let (mut keeper, mut answers): (LeaseKeeper, LeaseKeepAliveStream) = match opened {
            Ok(pair) => pair,
            Err(error) if is_not_found(&error) => return StreamEnd::Lost(LostReason::Expired),
            Err(error) => {
                warn!(%error, "cannot open the keep-alive stream; retrying");
                return StreamEnd::Broken;
            }
        };
        if let Some(end) = self.answered(sent, self.ttl) {
            return end;
        }

        // Send times of requests not answered yet, oldest first.
        let mut in_flight: VecDeque<Instant> = VecDeque::new();
        let period = self.ttl / 3;
        let mut tick = tokio::time::interval_at((Instant::now() + period).into(), period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let deadline_passed = StreamEnd::Lost(LostReason::DeadlinePassed);
        loop {
            // Every branch is cancel safe: a tick or a stream message not taken now is
            // taken on a later turn. The deadline is re-read each turn, as answers move it.
            tokio::select! {
                biased;
                () = orphan.cancelled() => return StreamEnd::Orphaned,
                () = sleep_until(self.deadline) => return deadline_passed,
                answer = answers.message() => match answer {
                    Ok(Some(answer)) => {
                        let Some(sent) = in_flight.pop_front() else {
                            warn!("keep-alive answer without a request; reopening");
                            return StreamEnd::Broken;
                        };
                        if answer.ttl() <= 0 {
                            return StreamEnd::Lost(LostReason::Expired);
                        }
                        let ttl = Duration::from_secs(answer.ttl().unsigned_abs());
                        if let Some(end) = self.answered(sent, ttl) {
                            return end;
                        }
                    }
                    Ok(None) => {
                        warn!("etcd closed the keep-alive stream; reopening");
                        return StreamEnd::Broken;
                    }
                    Err(error) => {
                        warn!(%error, "keep-alive stream failed; reopening");
                        return StreamEnd::Broken;
                    }
                },
                _ = tick.tick() => {
                    if in_flight.len() >= MAX_IN_FLIGHT {
                        continue;
                    }
                    let sent = Instant::now();
                    // The request queue is bounded; never wait on it past the deadline.
                    match tokio::time::timeout_at(self.deadline.into(), keeper.keep_alive()).await {
                        Ok(Ok(())) => in_flight.push_back(sent),
                        Ok(Err(error)) => {
                            warn!(%error, "cannot send a keep-alive; reopening");
                            return StreamEnd::Broken;
                        }
                        Err(_) => return StreamEnd::Lost(LostReason::DeadlinePassed),
                    }
                }
            }
        }
    }

    /// A keep-alive sent at `sent` was answered with `ttl`: moves the deadline forward.
    /// Returns an end when the answer came too late to count (the session is already lost
    /// by the clock, and lost is final).
    fn answered(&mut self, sent: Instant, ttl: Duration) -> Option<StreamEnd> {
        if Instant::now() >= self.deadline {
            return Some(StreamEnd::Lost(LostReason::DeadlinePassed));
        }
        let until = sent + ttl - margin(ttl);
        if until > self.deadline {
            self.deadline = until;
            self.state.send_replace(Validity::Valid { until });
        }
        None
    }
}

/// Whether etcd said the lease does not exist (an answer with TTL 0 when opening the
/// stream, or a NotFound status).
fn is_not_found(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::LeaseKeepAliveError(message) => message.contains("not found"),
        etcd_client::Error::GRpcStatus(status) => i32::from(status.code()) == GRPC_NOT_FOUND,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_a_quarter_of_the_ttl_but_at_least_half_a_second() {
        assert_eq!(margin(Duration::from_secs(1)), Duration::from_millis(500));
        assert_eq!(margin(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(margin(Duration::from_secs(3)), Duration::from_millis(750));
        assert_eq!(margin(Duration::from_secs(8)), Duration::from_secs(2));
    }
}
