//! Leadership among a zone's terminal servers: one leader key, created by compare-and-swap
//! under the winner's session lease, so it vanishes when the leader dies or is cut off.
//!
//! Like Go's `concurrency.Election` (campaign, proclaim, observe, resign), with one key
//! rather than a queue of candidates: Patroni's shape. Campaigning is a transaction
//! "if `leader` was never created (create_revision == 0), put it with my lease, else read
//! it"; a loser watches the key from the revision it read and tries again once the key is
//! deleted (resigned, revoked or expired). The winner's [`Leadership`] carries the key's
//! create revision: every later write conditioned on it (see [`crate::cluster::Store`])
//! fails once the key is gone or was created again, even by the same terminal server.

use etcd_client::{
    Compare, CompareOp, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::error::ClusterError;
use crate::cluster::etcd::{Etcd, Keys};
use crate::cluster::session::Session;
use crate::cluster::watched;

/// A terminal server as it presents itself to the others: in the leader key and in its
/// registration under `servers/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Its `[cluster] name`.
    pub name: String,
    /// How to reach it, e.g. its control API's address, for forwarding operator actions
    /// to the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

/// Who leads, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// The leader's name.
    pub name: String,
    /// Its contact string, if it gave one.
    pub contact: Option<String>,
    /// The revision at which it took the lead (the leader key's create revision): a new
    /// term of the same terminal server has a new one.
    pub since_revision: i64,
}

/// Proof of having won a campaign: the leader key's create revision and the value this
/// terminal server wrote there. etcd rejects writes conditioned on it once the key is gone
/// or replaced, so writes to etcd are fenced by etcd itself. Everything else a leader does
/// (hooks, passes, publishing DNS) is fenced by the clock: act only while the session it
/// was won with says [`Session::valid_for`] `Some`, which ends a margin before etcd could
/// let another terminal server win.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    key: String,
    name: String,
    value: Vec<u8>,
    create_revision: i64,
}

impl Leadership {
    /// The leader key's create revision: the term's fencing token in etcd.
    pub fn create_revision(&self) -> i64 {
        self.create_revision
    }

    /// This terminal server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The leader key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The compares of a transaction that must hold only while this leadership holds.
    pub(crate) fn still_held(&self) -> [Compare; 2] {
        [
            Compare::create_revision(self.key.as_str(), CompareOp::Equal, self.create_revision),
            Compare::value(self.key.as_str(), CompareOp::Equal, self.value.clone()),
        ]
    }
}

/// The election of one zone, from the point of view of one terminal server.
#[derive(Debug, Clone)]
pub struct Election {
    etcd: Etcd,
    key: String,
    me: ServerInfo,
}

impl Election {
    /// The election for the leader key of `keys`, in which this terminal server is `me`.
    pub fn new(etcd: &Etcd, keys: &Keys, me: ServerInfo) -> Election {
        Election {
            etcd: etcd.clone(),
            key: keys.leader(),
            me,
        }
    }

    /// Waits until this terminal server leads, then returns its leadership.
    ///
    /// Fails with [`ClusterError::Cancelled`] when `cancel` fires first, with
    /// [`ClusterError::SessionLost`] when the session is lost first, and with an etcd error
    /// when a campaign transaction fails (the caller retries; a transaction whose answer
    /// was lost is safe to retry: the next attempt finds the key under its own lease).
    /// A cancelled wait never holds the key: the only write is the winning transaction,
    /// which is never interrupted.
    pub async fn campaign(
        &self,
        session: &Session,
        cancel: &CancellationToken,
    ) -> Result<Leadership, ClusterError> {
        let value = encode(&self.key, &self.me)?;
        loop {
            session.ensure_valid(&self.key)?;
            let lease = session.lease_id();
            let txn = Txn::new()
                .when([Compare::create_revision(
                    self.key.as_str(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then([TxnOp::put(
                    self.key.as_str(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(self.key.as_str(), None)]);
            let answer = self.txn("campaign on", txn).await?;
            let revision = self.revision(&answer, "campaign on")?;
            if answer.succeeded() {
                info!(key = %self.key, name = %self.me.name, revision, "won the election");
                return Ok(self.leadership(value, revision));
            }
            match first_kv(&answer) {
                Some(kv) if kv.lease() == lease => {
                    // Ours already: an earlier campaign of this session won, and its answer
                    // was lost or it is asked again. Take it back, with today's value.
                    let mut leadership = self.leadership(kv.value().to_vec(), kv.create_revision());
                    if kv.value() != value.as_slice() {
                        self.proclaim(session, &mut leadership, self.me.contact.clone())
                            .await?;
                    }
                    info!(key = %self.key, name = %self.me.name, "already leading");
                    return Ok(leadership);
                }
                Some(kv) => {
                    let leader = leader_of(&kv).name;
                    info!(key = %self.key, %leader, "waiting for the leader key to be deleted");
                }
                // Deleted between the compare and the read: impossible in one transaction,
                // but trying again is the right answer anyway.
                None => continue,
            }
            self.wait_deleted(session, cancel, revision + 1).await?;
        }
    }

    /// Replaces the leader key's contact string, only while `leadership` holds; updates
    /// `leadership` so later conditioned writes compare with the new value.
    pub async fn proclaim(
        &self,
        session: &Session,
        leadership: &mut Leadership,
        contact: Option<String>,
    ) -> Result<(), ClusterError> {
        session.ensure_valid(&self.key)?;
        let info = ServerInfo {
            name: leadership.name.clone(),
            contact,
        };
        let value = encode(&self.key, &info)?;
        let txn = Txn::new()
            .when(leadership.still_held())
            .and_then([TxnOp::put(
                self.key.as_str(),
                value.clone(),
                Some(PutOptions::new().with_lease(session.lease_id())),
            )])
            .or_else([TxnOp::get(self.key.as_str(), None)]);
        let answer = self.txn("proclaim on", txn).await?;
        if !answer.succeeded() {
            return Err(self.not_leader(&answer));
        }
        leadership.value = value;
        Ok(())
    }

    /// Who leads now, read once.
    pub async fn leader(&self) -> Result<Option<Leader>, ClusterError> {
        let answer = self
            .etcd
            .client()
            .get(self.key.as_str(), None)
            .await
            .map_err(self.etcd.error("read", &self.key))?;
        Ok(answer.kvs().first().map(leader_of))
    }

    /// Who leads, as it changes (including "nobody", between a leader's end and the next
    /// one's win). Follows the key until `cancel` fires or the receiver is dropped.
    pub async fn observe(
        &self,
        cancel: CancellationToken,
    ) -> Result<watch::Receiver<Option<Leader>>, ClusterError> {
        let key = self.key.clone();
        watched::follow_key(&self.etcd, self.key.clone(), cancel, move |entry| {
            entry.map(|e| leader_from(&key, &e.value, e.create_revision))
        })
        .await
    }

    /// Deletes the leader key if `leadership` still holds; `Ok(false)` when it did not
    /// (someone else leads already, or nobody). Other terminal servers' campaigns see the
    /// deletion and one of them wins.
    pub async fn resign(&self, leadership: Leadership) -> Result<bool, ClusterError> {
        let txn = Txn::new()
            .when(leadership.still_held())
            .and_then([TxnOp::delete(self.key.as_str(), None)]);
        let answer = self.txn("resign from", txn).await?;
        if answer.succeeded() {
            info!(key = %self.key, name = %leadership.name, "resigned");
        }
        Ok(answer.succeeded())
    }

    fn leadership(&self, value: Vec<u8>, create_revision: i64) -> Leadership {
        Leadership {
            key: self.key.clone(),
            name: self.me.name.clone(),
            value,
            create_revision,
        }
    }

    async fn txn(&self, op: &'static str, txn: Txn) -> Result<TxnResponse, ClusterError> {
        self.etcd
            .client()
            .txn(txn)
            .await
            .map_err(self.etcd.error(op, &self.key))
    }

    fn revision(&self, answer: &TxnResponse, op: &'static str) -> Result<i64, ClusterError> {
        answer
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| self.etcd.unexpected(op, &self.key, "no header"))
    }

    /// The error of a failed conditioned write whose `or_else` read the leader key first.
    fn not_leader(&self, answer: &TxnResponse) -> ClusterError {
        not_leader(&self.key, answer)
    }

    /// Waits, from revision `start`, until the leader key is deleted.
    ///
    /// Returns `Ok` also when the watch breaks: the caller's next campaign transaction
    /// reads the key again, so nothing is missed, and a pause keeps it from spinning.
    async fn wait_deleted(
        &self,
        session: &Session,
        cancel: &CancellationToken,
        start: i64,
    ) -> Result<(), ClusterError> {
        let cancelled = || ClusterError::Cancelled {
            key: self.key.clone(),
        };
        let lost = |reason| ClusterError::SessionLost {
            key: self.key.clone(),
            reason,
        };
        let mut client = self.etcd.client();
        let options = etcd_client::WatchOptions::new().with_start_revision(start);
        let opened = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(cancelled()),
            reason = session.lost() => return Err(lost(reason)),
            opened = client.watch(self.key.as_str(), Some(options)) => opened,
        };
        let why = match opened {
            Ok(mut stream) => loop {
                let answer = tokio::select! {
                    biased;
                    () = cancel.cancelled() => return Err(cancelled()),
                    reason = session.lost() => return Err(lost(reason)),
                    answer = stream.message() => answer,
                };
                match answer {
                    Ok(Some(answer)) if answer.canceled() => {
                        break format!("etcd cancelled the watch: {:?}", answer.cancel_reason());
                    }
                    Ok(Some(answer)) => {
                        let deleted = answer
                            .events()
                            .iter()
                            .any(|e| e.event_type() == etcd_client::EventType::Delete);
                        if deleted {
                            return Ok(());
                        }
                    }
                    Ok(None) => break "etcd ended the watch stream".to_owned(),
                    Err(error) => break format!("watch stream failed: {error}"),
                }
            },
            Err(error) => format!("cannot watch: {error}"),
        };
        warn!(key = %self.key, error = %why, "watch of the leader key broken; campaigning again");
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(cancelled()),
            reason = session.lost() => Err(lost(reason)),
            () = tokio::time::sleep(std::time::Duration::from_millis(250)) => Ok(()),
        }
    }
}

/// The [`ClusterError::NotLeader`] of a conditioned write on leader key `key` that failed,
/// when its `or_else` branch read the leader key first.
pub(crate) fn not_leader(key: &str, answer: &TxnResponse) -> ClusterError {
    ClusterError::NotLeader {
        key: key.to_owned(),
        holder: first_kv(answer).map(|kv| leader_of(&kv).name),
    }
}

/// The first key read by the first operation of a transaction's answer, if it was a read.
pub(crate) fn first_kv(answer: &TxnResponse) -> Option<KeyValue> {
    match answer.op_responses().into_iter().next() {
        Some(TxnOpResponse::Get(got)) => got.kvs().first().cloned(),
        _ => None,
    }
}

fn leader_of(kv: &KeyValue) -> Leader {
    leader_from(
        &String::from_utf8_lossy(kv.key()),
        kv.value(),
        kv.create_revision(),
    )
}

/// The leader a leader key's value names. A value dnsd did not write still means the key
/// is held: its text stands as the name (and a warning says so), never "nobody leads".
fn leader_from(key: &str, value: &[u8], create_revision: i64) -> Leader {
    match serde_json::from_slice::<ServerInfo>(value) {
        Ok(info) => Leader {
            name: info.name,
            contact: info.contact,
            since_revision: create_revision,
        },
        Err(error) => {
            warn!(%key, %error, "the leader key holds a value dnsd did not write");
            Leader {
                name: String::from_utf8_lossy(value).into_owned(),
                contact: None,
                since_revision: create_revision,
            }
        }
    }
}

pub(crate) fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, ClusterError> {
    serde_json::to_vec(value).map_err(|source| ClusterError::Encode {
        key: key.to_owned(),
        source,
    })
}
