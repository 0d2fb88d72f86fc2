//! The published snapshot and its publisher.
//!
//! A [`Snapshot`] is one immutable value holding everything DNS answers from at one
//! serial: the [`Zone`], its precomputed UDP answers (`fast::Table`) and the journal
//! IXFR answers from. It is built in one step from the zone and the snapshot before it.
//! The [`ZonePublisher`] swaps it into an `ArcSwap` that the query paths load without a
//! lock, and tells the NOTIFY task on a `watch` channel.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::fast;
use super::journal::Journal;
use super::zone::Zone;

/// Everything DNS answers from, at one serial.
#[derive(Debug)]
pub struct Snapshot {
    zone: Zone,
    /// Every answer to a plain UDP query, precomputed.
    fast: fast::Table,
    /// The changes that led here, for IXFR.
    journal: Journal,
}

impl Snapshot {
    /// The first snapshot: nothing in the journal yet.
    pub fn new(zone: Zone) -> Snapshot {
        Snapshot::with_journal(zone, Journal::default())
    }

    /// The snapshot after this one, for `zone`.
    fn next(&self, zone: Zone) -> Snapshot {
        let journal = self.journal.advance(&self.zone, &zone);
        Snapshot::with_journal(zone, journal)
    }

    fn with_journal(zone: Zone, journal: Journal) -> Snapshot {
        let fast = fast::Table::build(&zone);
        Snapshot {
            zone,
            fast,
            journal,
        }
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    pub(super) fn fast(&self) -> &fast::Table {
        &self.fast
    }

    pub(super) fn journal(&self) -> &Journal {
        &self.journal
    }
}

/// The slot the query paths read.
pub(super) type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// Publishes new snapshots. Clones share one slot: the driver publishes, DNS serves.
#[derive(Debug, Clone)]
pub struct ZonePublisher {
    slot: SharedSnapshot,
    changes: Arc<watch::Sender<Arc<Snapshot>>>,
    /// Held while a snapshot is built from the current one, so that two publishers
    /// cannot both extend the same journal. No `.await` happens under it.
    building: Arc<Mutex<()>>,
}

impl ZonePublisher {
    /// A publisher whose first snapshot is `zone`.
    pub fn new(zone: Zone) -> ZonePublisher {
        let first = Arc::new(Snapshot::new(zone));
        let (changes, _) = watch::channel(first.clone());
        ZonePublisher {
            slot: Arc::new(ArcSwap::new(first)),
            changes: Arc::new(changes),
            building: Arc::new(Mutex::new(())),
        }
    }

    /// Makes `zone` what DNS answers from, from the next query on; secondaries are sent
    /// a NOTIFY when its serial is new.
    pub fn publish(&self, zone: Zone) {
        // A poisoned lock only means a publish panicked half-way; the slot itself is
        // always a whole snapshot, so carry on from it.
        let _building = self
            .building
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = Arc::new(self.slot.load().next(zone));
        self.slot.store(next.clone());
        self.changes.send_replace(next);
    }

    /// The snapshot DNS answers from now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.slot.load_full()
    }

    pub(super) fn slot(&self) -> SharedSnapshot {
        self.slot.clone()
    }

    /// Every snapshot published from now on.
    pub(super) fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.changes.subscribe()
    }
}
