//! The zone's shared state in etcd: written only by the leader, each write a transaction
//! that holds only while the writer's leadership does; read and followed by everybody.
//!
//! The state is opaque bytes (the daemon's JSON): this layer never depends on what the
//! controller persists. A write may carry extra puts in the same transaction, such as an
//! entry of a service's append-only epoch log, so a decision and its record commit
//! together or not at all (Patroni's `_update_leader` shape: one conditional transaction).

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse, TxnResponse};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::cluster::election::Leadership;
use crate::cluster::election::{first_kv, not_leader};
use crate::cluster::error::ClusterError;
use crate::cluster::etcd::{Etcd, Keys};
use crate::cluster::watched;

/// A value as committed, with the revision that committed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The bytes the leader wrote.
    pub bytes: Vec<u8>,
    /// The etcd revision of the write (grows with every write to the cluster).
    pub mod_revision: i64,
}

/// One more key to write in a state write's transaction (no lease: it outlives its writer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraPut {
    key: String,
    value: Vec<u8>,
    /// Fail the whole write if the key exists already (append-only logs).
    create_only: bool,
}

impl ExtraPut {
    /// Puts `value` at `key`, replacing what was there.
    pub fn put(key: String, value: Vec<u8>) -> ExtraPut {
        ExtraPut {
            key,
            value,
            create_only: false,
        }
    }

    /// Puts `value` at `key` only if `key` does not exist; otherwise the whole write fails
    /// with [`ClusterError::AlreadyExists`] and nothing is written.
    pub fn create(key: String, value: Vec<u8>) -> ExtraPut {
        ExtraPut {
            key,
            value,
            create_only: true,
        }
    }

    /// The key written.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The zone's state and epoch logs.
#[derive(Debug, Clone)]
pub struct Store {
    etcd: Etcd,
    keys: Keys,
}

impl Store {
    /// The store of the zone whose keys are `keys`.
    pub fn new(etcd: &Etcd, keys: Keys) -> Store {
        Store {
            etcd: etcd.clone(),
            keys,
        }
    }

    /// The entry of `epoch` in `service`'s epoch log, to pass to [`Store::write`]: created
    /// once, so an epoch can never be recorded twice.
    pub fn epoch_entry(&self, service: &str, epoch: u64, value: Vec<u8>) -> ExtraPut {
        ExtraPut::create(self.keys.epoch(service, epoch), value)
    }

    /// Writes `state` and `extra` in one transaction, only while `leadership` holds (the
    /// leader key still has its create revision and value). Returns the revision of the
    /// write.
    ///
    /// Fails with [`ClusterError::NotLeader`] when the leadership no longer holds and
    /// with [`ClusterError::AlreadyExists`] when a create-only extra exists; in both cases
    /// nothing was written. etcd refuses more than 128 operations in one transaction
    /// (`--max-txn-ops`): keep `extra` small.
    pub async fn write(
        &self,
        leadership: &Leadership,
        state: Vec<u8>,
        extra: Vec<ExtraPut>,
    ) -> Result<i64, ClusterError> {
        let state_key = self.keys.state();
        let mut compares = leadership.still_held().to_vec();
        // On failure, read the leader key first (who leads now), then every create-only key
        // (which one exists).
        let mut on_failure = vec![TxnOp::get(leadership.key(), None)];
        for e in extra.iter().filter(|e| e.create_only) {
            compares.push(Compare::create_revision(
                e.key.as_str(),
                CompareOp::Equal,
                0,
            ));
            on_failure.push(TxnOp::get(
                e.key.as_str(),
                Some(GetOptions::new().with_keys_only()),
            ));
        }
        let mut puts = vec![TxnOp::put(state_key.as_str(), state, None)];
        puts.extend(extra.into_iter().map(|e| TxnOp::put(e.key, e.value, None)));
        let txn = Txn::new().when(compares).and_then(puts).or_else(on_failure);
        let answer = self
            .etcd
            .client()
            .txn(txn)
            .await
            .map_err(self.etcd.error("write", &state_key))?;
        if !answer.succeeded() {
            return Err(self.refused(leadership, &answer));
        }
        let revision = answer
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| self.etcd.unexpected("write", &state_key, "no header"))?;
        debug!(key = %state_key, revision, "state written");
        Ok(revision)
    }

    /// The state as last committed, or `None` if no leader has written it yet.
    pub async fn load(&self) -> Result<Option<Versioned>, ClusterError> {
        let key = self.keys.state();
        let answer = self
            .etcd
            .client()
            .get(key.as_str(), None)
            .await
            .map_err(self.etcd.error("read", &key))?;
        Ok(answer.kvs().first().map(|kv| Versioned {
            bytes: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        }))
    }

    /// The state as it is committed: each commit reaches the receiver with one watch
    /// event (a receiver that lags sees the latest). Follows until `cancel` fires or the
    /// receiver is dropped; while etcd is unreachable the last state stays.
    pub async fn watch(
        &self,
        cancel: CancellationToken,
    ) -> Result<watch::Receiver<Option<Versioned>>, ClusterError> {
        watched::follow_key(&self.etcd, self.keys.state(), cancel, |entry| {
            entry.map(|e| Versioned {
                bytes: e.value.clone(),
                mod_revision: e.mod_revision,
            })
        })
        .await
    }

    /// `service`'s epoch log, in epoch order: every epoch recorded and its value.
    pub async fn epochs(&self, service: &str) -> Result<Vec<(u64, Vec<u8>)>, ClusterError> {
        let prefix = self.keys.epochs(service);
        let answer = self
            .etcd
            .client()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(self.etcd.error("read", &prefix))?;
        let mut log = Vec::with_capacity(answer.kvs().len());
        for kv in answer.kvs() {
            let epoch = kv
                .key()
                .strip_prefix(prefix.as_bytes())
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| digits.parse::<u64>().ok());
            match epoch {
                Some(epoch) => log.push((epoch, kv.value().to_vec())),
                None => {
                    return Err(self.etcd.unexpected(
                        "read",
                        &prefix,
                        "a key that is not an epoch",
                    ));
                }
            }
        }
        log.sort_by_key(|(epoch, _)| *epoch);
        Ok(log)
    }

    /// Why a conditioned write failed, from its `or_else` reads: the leader key first,
    /// then each create-only key.
    fn refused(&self, leadership: &Leadership, answer: &TxnResponse) -> ClusterError {
        let leader = first_kv(answer);
        let still_ours = leader
            .as_ref()
            .is_some_and(|kv| kv.create_revision() == leadership.create_revision());
        if !still_ours {
            return not_leader(leadership.key(), answer);
        }
        let existing = answer
            .op_responses()
            .into_iter()
            .skip(1)
            .find_map(|r| match r {
                TxnOpResponse::Get(got) => got
                    .kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.key()).into_owned()),
                _ => None,
            });
        match existing {
            Some(key) => ClusterError::AlreadyExists { key },
            // Same create revision but another value: proclaimed by a copy of this token
            // that was not updated. Not leading as this token says.
            None => not_leader(leadership.key(), answer),
        }
    }
}
