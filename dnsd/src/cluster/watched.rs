//! Follows key ranges of etcd into a local copy and publishes a view of it on a `watch`
//! channel: the one loop behind observing the leader, the state and the pool's views.
//!
//! The copy starts from one consistent read (a transaction of range reads, so all ranges
//! are seen at one revision) and then applies a watch that starts right after that
//! revision, so no change is missed or applied twice. Whenever the watch breaks (etcd
//! restarted, the connection dropped, the start revision was compacted, the etcd member
//! lost its cluster's leader), the copy is read again from scratch and a new watch starts
//! after it: the copy is never patched across a gap.
//!
//! Readers get the latest view only (a `watch` channel): a follower wants the current
//! state, not the history. A view equal to the previous one is not sent again. While etcd
//! is unreachable, the last view stays in place and retries back off up to
//! [`RETRY_MAX`]. The task ends when `cancel` fires or every receiver is dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, Txn, TxnOp, TxnOpResponse, WatchOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::cluster::error::ClusterError;
use crate::cluster::etcd::Etcd;

/// First pause before reading again after a broken watch.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest pause between two attempts while etcd is unreachable.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// One key as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) value: Vec<u8>,
    pub(crate) create_revision: i64,
    pub(crate) mod_revision: i64,
}

/// The followed keys, by key.
pub(crate) type Entries = BTreeMap<String, Entry>;

/// A key range to follow.
#[derive(Debug, Clone)]
pub(crate) enum Range {
    /// Exactly this key.
    Key(String),
    /// Every key starting with this.
    Prefix(String),
}

impl Range {
    fn key(&self) -> &str {
        match self {
            Range::Key(k) | Range::Prefix(k) => k,
        }
    }

    fn get(&self) -> TxnOp {
        match self {
            Range::Key(k) => TxnOp::get(k.as_str(), None),
            Range::Prefix(p) => TxnOp::get(p.as_str(), Some(GetOptions::new().with_prefix())),
        }
    }

    fn watch(&self, start_revision: i64) -> WatchOptions {
        let options = WatchOptions::new().with_start_revision(start_revision);
        match self {
            Range::Key(_) => options,
            Range::Prefix(_) => options.with_prefix(),
        }
    }
}

/// Reads `ranges`, spawns the task that follows them, and returns the receiver of
/// `view(copy)`. Fails only when the first read fails: after that, errors are retried.
pub(crate) async fn follow<T, F>(
    etcd: &Etcd,
    ranges: Vec<Range>,
    cancel: CancellationToken,
    mut view: F,
) -> Result<watch::Receiver<T>, ClusterError>
where
    T: PartialEq + Send + Sync + 'static,
    F: FnMut(&Entries) -> T + Send + 'static,
{
    let (entries, revision) = read(etcd, &ranges).await?;
    let (tx, rx) = watch::channel(view(&entries));
    let follower = Follower {
        etcd: etcd.clone(),
        ranges,
        entries,
        revision,
    };
    tokio::spawn(follower.run(tx, view, cancel));
    Ok(rx)
}

/// [`follow`] for one key: `view` gets the key's entry, `None` while it does not exist.
pub(crate) async fn follow_key<T, F>(
    etcd: &Etcd,
    key: String,
    cancel: CancellationToken,
    mut view: F,
) -> Result<watch::Receiver<T>, ClusterError>
where
    T: PartialEq + Send + Sync + 'static,
    F: FnMut(Option<&Entry>) -> T + Send + 'static,
{
    let range = vec![Range::Key(key.clone())];
    follow(etcd, range, cancel, move |entries| view(entries.get(&key))).await
}

/// One consistent read of every range: the keys and the revision they were read at.
async fn read(etcd: &Etcd, ranges: &[Range]) -> Result<(Entries, i64), ClusterError> {
    let what = ranges.first().map_or("", Range::key);
    // A transaction with no condition: its reads all see one revision.
    let txn = Txn::new().and_then(ranges.iter().map(Range::get).collect::<Vec<_>>());
    let answer = etcd
        .client()
        .txn(txn)
        .await
        .map_err(etcd.error("read", what))?;
    let revision = answer
        .header()
        .map(|h| h.revision())
        .ok_or_else(|| etcd.unexpected("read", what, "no header"))?;
    let mut entries = Entries::new();
    for response in answer.op_responses() {
        let TxnOpResponse::Get(got) = response else {
            return Err(etcd.unexpected(
                "read",
                what,
                "a read answered by another kind of operation",
            ));
        };
        for kv in got.kvs() {
            entries.insert(
                String::from_utf8_lossy(kv.key()).into_owned(),
                Entry {
                    value: kv.value().to_vec(),
                    create_revision: kv.create_revision(),
                    mod_revision: kv.mod_revision(),
                },
            );
        }
    }
    Ok((entries, revision))
}

/// The task's state: the ranges, their copy, and the revision the copy was read at.
struct Follower {
    etcd: Etcd,
    ranges: Vec<Range>,
    entries: Entries,
    revision: i64,
}

impl Follower {
    async fn run<T, F>(mut self, tx: watch::Sender<T>, mut view: F, cancel: CancellationToken)
    where
        T: PartialEq,
        F: FnMut(&Entries) -> T,
    {
        let what = self.ranges.first().map_or("", Range::key).to_owned();
        let mut pause = RETRY_MIN;
        loop {
            // Follow from the copy's revision until the watch breaks.
            let broken = tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = tx.closed() => return,
                broken = self.watch(&tx, &mut view) => broken,
            };
            warn!(key = %what, error = %broken, "watch broken; reading again");
            // Read again, backing off while etcd does not answer.
            loop {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return,
                    () = tx.closed() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                let reread = tokio::select! {
                    biased;
                    () = cancel.cancelled() => return,
                    () = tx.closed() => return,
                    reread = read(&self.etcd, &self.ranges) => reread,
                };
                match reread {
                    Ok((entries, revision)) => {
                        debug!(key = %what, revision, "read again");
                        self.entries = entries;
                        self.revision = revision;
                        publish(&tx, &mut view, &self.entries);
                        pause = RETRY_MIN;
                        break;
                    }
                    Err(error) => {
                        warn!(key = %what, %error, "cannot read; retrying");
                        pause = (pause * 2).min(RETRY_MAX);
                    }
                }
            }
        }
    }

    /// Watches every range from the copy's revision + 1, applying and publishing each
    /// answer, until the watch breaks; returns why.
    async fn watch<T, F>(&mut self, tx: &watch::Sender<T>, view: &mut F) -> String
    where
        T: PartialEq,
        F: FnMut(&Entries) -> T,
    {
        let start = self.revision + 1;
        let mut client = self.etcd.client();
        let Some((first, rest)) = self.ranges.split_first() else {
            // Nothing to follow: wait to be cancelled.
            return std::future::pending().await;
        };
        let mut stream = match client.watch(first.key(), Some(first.watch(start))).await {
            Ok(stream) => stream,
            Err(error) => return format!("cannot start watching: {error}"),
        };
        // More ranges share the stream (one watch id each).
        for range in rest {
            if let Err(error) = stream.watch(range.key(), Some(range.watch(start))).await {
                return format!("cannot start watching {}: {error}", range.key());
            }
        }
        loop {
            let answer = match stream.message().await {
                Ok(Some(answer)) => answer,
                Ok(None) => return "etcd ended the watch stream".into(),
                Err(error) => return format!("watch stream failed: {error}"),
            };
            if answer.canceled() {
                return format!(
                    "etcd cancelled the watch: {:?} (compacted up to revision {})",
                    answer.cancel_reason(),
                    answer.compact_revision()
                );
            }
            if answer.events().is_empty() {
                // Created, or a progress notification.
                continue;
            }
            // All events of one answer are applied before the view is published: etcd keeps
            // the events of one revision (one transaction) of one watch in one answer.
            for event in answer.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                match event.event_type() {
                    EventType::Put => {
                        self.entries.insert(
                            key,
                            Entry {
                                value: kv.value().to_vec(),
                                create_revision: kv.create_revision(),
                                mod_revision: kv.mod_revision(),
                            },
                        );
                    }
                    EventType::Delete => {
                        self.entries.remove(&key);
                    }
                }
            }
            publish(tx, view, &self.entries);
        }
    }
}

/// Sends `view(entries)` unless it equals what the receivers already have.
fn publish<T: PartialEq, F: FnMut(&Entries) -> T>(
    tx: &watch::Sender<T>,
    view: &mut F,
    entries: &Entries,
) {
    let new = view(entries);
    tx.send_if_modified(|current| {
        if *current == new {
            false
        } else {
            *current = new;
            true
        }
    });
}
