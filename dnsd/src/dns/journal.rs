//! The journal of zone versions that IXFR answers from (RFC 1995): for each of the last
//! few serial changes, the records removed and added. A secondary whose serial is in
//! the journal gets the differences since; any other gets the whole zone.
//!
//! The journal is immutable like the zone it travels with: each publish builds the next
//! one from the previous, sharing the older entries.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncodable;

use super::zone::Zone;

/// Versions kept. A failover changes a handful of records, so this is little memory,
/// and a secondary more than this many changes behind gets the (small) whole zone.
pub(super) const VERSIONS: usize = 64;

/// The change from one serial to the next.
#[derive(Debug, PartialEq)]
pub(super) struct Delta {
    /// The SOA before and after.
    pub(super) from: Record,
    pub(super) to: Record,
    pub(super) removed: Vec<Record>,
    pub(super) added: Vec<Record>,
}

impl Delta {
    fn serial(soa: &Record) -> Option<u32> {
        match &soa.data {
            hickory_proto::rr::RData::SOA(s) => Some(s.serial),
            _ => None,
        }
    }
}

/// The last [`VERSIONS`] deltas, oldest first; each starts where the previous ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Journal {
    deltas: VecDeque<Arc<Delta>>,
}

impl Journal {
    /// The journal after `old` became `new`. A new serial with new records adds a
    /// delta; the same serial with the same records keeps the journal; anything else
    /// (records changed under an unchanged serial) starts it afresh, since no serial
    /// could name the version in between.
    pub(super) fn advance(&self, old: &Zone, new: &Zone) -> Journal {
        let (old_records, new_records) = (old.records(), new.records());
        if old.serial() == new.serial() {
            return if old_records == new_records {
                self.clone()
            } else {
                Journal::default()
            };
        }
        // Records compare by their wire form (hickory's records are not `Hash`), which
        // keeps this linear for large pools.
        let wire = |records: &[&Record]| -> HashSet<Vec<u8>> {
            records.iter().filter_map(|r| r.to_bytes().ok()).collect()
        };
        let (old_set, new_set) = (wire(&old_records), wire(&new_records));
        let missing_from = |records: &[&Record], set: &HashSet<Vec<u8>>| -> Vec<Record> {
            records
                .iter()
                .filter(|r| r.to_bytes().is_ok_and(|b| !set.contains(&b)))
                .map(|r| (*r).clone())
                .collect()
        };
        let removed = missing_from(&old_records, &new_set);
        let added = missing_from(&new_records, &old_set);
        let mut deltas = self.deltas.clone();
        if deltas.len() == VERSIONS {
            deltas.pop_front();
        }
        deltas.push_back(Arc::new(Delta {
            from: old.soa().clone(),
            to: new.soa().clone(),
            removed,
            added,
        }));
        Journal { deltas }
    }

    /// The deltas from `serial` to the newest, in order, if the journal reaches back
    /// that far.
    pub(super) fn since(&self, serial: u32) -> Option<Vec<&Delta>> {
        let start = self
            .deltas
            .iter()
            .position(|d| Delta::serial(&d.from) == Some(serial))?;
        Some(self.deltas.iter().skip(start).map(Arc::as_ref).collect())
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.deltas.len()
    }
}
