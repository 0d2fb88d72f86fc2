//! Counters DNS keeps for `/metrics`: responses by code, zone transfers, NOTIFY per
//! secondary. Relaxed atomics: they are statistics, not synchronisation.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::ResponseCode;

/// Response codes counted separately; anything else lands in `other`.
pub const RCODE_BUCKETS: [&str; 7] = [
    "noerror", "nxdomain", "refused", "formerr", "notimp", "servfail", "other",
];

/// How a transfer request ended, for `dnsd_dns_transfers_total{kind=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferOutcome {
    /// AXFR, or an IXFR answered with the whole zone (the journal lacked its serial).
    Full,
    /// An IXFR answered with differences (or with the SOA alone: up to date).
    Incremental,
    /// Not in `dns.allow_transfer`, or not signed with `dns.tsig`.
    Refused,
}

impl TransferOutcome {
    pub const ALL: [TransferOutcome; 3] = [
        TransferOutcome::Full,
        TransferOutcome::Incremental,
        TransferOutcome::Refused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TransferOutcome::Full => "full",
            TransferOutcome::Incremental => "incremental",
            TransferOutcome::Refused => "refused",
        }
    }
}

/// NOTIFY counters of one secondary.
#[derive(Debug, Default)]
pub(super) struct NotifyCounters {
    /// Every NOTIFY sent, retransmissions included.
    pub(super) sent: AtomicU64,
    /// Retransmissions (a NOTIFY not acknowledged in time).
    pub(super) retried: AtomicU64,
    /// Serials the secondary acknowledged.
    pub(super) acknowledged: AtomicU64,
    /// Serials replaced by a newer one before they were acknowledged.
    pub(super) superseded: AtomicU64,
    /// Answers with an error code (the secondary refuses our NOTIFY).
    pub(super) rejected: AtomicU64,
}

/// One secondary's NOTIFY counters, as `/metrics` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyCount {
    pub target: SocketAddr,
    pub sent: u64,
    pub retried: u64,
    pub acknowledged: u64,
    pub superseded: u64,
    pub rejected: u64,
}

/// Everything DNS counts.
#[derive(Debug, Default)]
pub struct DnsStats {
    counts: [AtomicU64; RCODE_BUCKETS.len()],
    transfers: [AtomicU64; TransferOutcome::ALL.len()],
    /// Set once when serving starts, one entry per `dns.notify` target.
    notify: OnceLock<Vec<(SocketAddr, NotifyCounters)>>,
}

/// A copy of the counters, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSnapshot {
    /// `(rcode name, responses sent)` for every bucket of [`RCODE_BUCKETS`].
    pub responses: Vec<(&'static str, u64)>,
    /// `(outcome name, transfer requests)` for every [`TransferOutcome`].
    pub transfers: Vec<(&'static str, u64)>,
    pub notify: Vec<NotifyCount>,
}

impl DnsStats {
    pub(super) fn count(&self, rcode: ResponseCode) {
        let bucket = match rcode {
            ResponseCode::NoError => 0,
            ResponseCode::NXDomain => 1,
            ResponseCode::Refused => 2,
            ResponseCode::FormErr => 3,
            ResponseCode::NotImp => 4,
            ResponseCode::ServFail => 5,
            _ => 6,
        };
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_transfer(&self, outcome: TransferOutcome) {
        let i = TransferOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.transfers[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Registers the NOTIFY targets (once; later calls keep the first list).
    pub(super) fn set_notify_targets(&self, targets: &[SocketAddr]) {
        let _ = self.notify.set(
            targets
                .iter()
                .map(|t| (*t, NotifyCounters::default()))
                .collect(),
        );
    }

    /// The counters of NOTIFY target `i` (in `dns.notify` order).
    pub(super) fn notify_target(&self, i: usize) -> Option<&NotifyCounters> {
        self.notify.get()?.get(i).map(|(_, c)| c)
    }

    /// Every counter, now.
    pub fn snapshot(&self) -> DnsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DnsSnapshot {
            responses: RCODE_BUCKETS
                .iter()
                .zip(&self.counts)
                .map(|(name, c)| (*name, load(c)))
                .collect(),
            transfers: TransferOutcome::ALL
                .iter()
                .zip(&self.transfers)
                .map(|(o, c)| (o.name(), load(c)))
                .collect(),
            notify: self
                .notify
                .get()
                .map(|targets| {
                    targets
                        .iter()
                        .map(|(target, c)| NotifyCount {
                            target: *target,
                            sent: load(&c.sent),
                            retried: load(&c.retried),
                            acknowledged: load(&c.acknowledged),
                            superseded: load(&c.superseded),
                            rejected: load(&c.rejected),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}
