//! The cluster side of a terminal server: one task that owns its etcd session, registers
//! it and publishes its view of the pool, campaigns for leadership, follows the state,
//! the views and the leader key, and writes the state while (and only while) it leads.
//!
//! It tells the driver what changed ([`Signal`]) and takes its requests through a
//! [`Link`]. The driver decides nothing from etcd itself: it asks [`Link::may_act`] before
//! every hook, pass or publication, which says yes only while this terminal server leads
//! with a lease that is surely still valid (the session's local deadline, a margin before
//! etcd could let another terminal server win), and every state write is a transaction
//! etcd refuses once the leadership is gone. That is the whole fencing of the cluster:
//! etcd fences the writes, the clock fences the acts, and the epoch the state carries
//! fences the members (hooks and passes carry it).
//!
//! Like Patroni's `ha.py`, one loop owns leadership: it opens a session (retrying while
//! etcd is away), campaigns, and on winning loads the state and hands it to the driver;
//! when the session is lost (etcd gone, lease expired) it tells the driver at once, and
//! starts over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::observe::{ClusterViews, ViewPublisher, Views, watch_views};
use crate::cluster::{
    ClusterConfig, ClusterError, Election, Etcd, ExtraPut, Keys, Leader, Leadership, ServerInfo,
    Session, Store, Validity, Versioned,
};

/// How long to wait before trying etcd again after a failure (the lease TTL bounds it).
const RETRY_MIN: Duration = Duration::from_millis(200);

/// What the coordinator tells the driver.
#[derive(Debug)]
pub enum Signal {
    /// Whether this terminal server has a live session with etcd.
    Etcd { up: bool },
    /// The live terminal servers and their views of the pool.
    Views(ClusterViews),
    /// The state as committed in etcd (followers answer DNS from it).
    State(Option<Versioned>),
    /// Who leads.
    Leader(Option<Leader>),
    /// This terminal server leads now; the state as it found it on winning.
    Won { state: Option<Versioned> },
    /// This terminal server no longer leads, and why.
    Lost { why: String },
}

/// Why a state write was not made.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This terminal server does not lead (or its lease may have lapsed).
    #[error("this terminal server does not lead")]
    NotLeading,
    /// etcd refused or failed the write.
    #[error("cannot write the state to etcd")]
    Etcd(#[source] ClusterError),
    /// The coordinator has stopped.
    #[error("the cluster coordinator has stopped")]
    Stopped,
}

enum Ask {
    Publish(Views),
    Write {
        state: Vec<u8>,
        epochs: Vec<(String, u64, Vec<u8>)>,
        reply: oneshot::Sender<Result<(), WriteError>>,
    },
}

/// The driver's side of the coordinator.
#[derive(Debug, Clone)]
pub struct Link {
    asks: mpsc::Sender<Ask>,
    /// Until when this terminal server may act: `Some` while it leads with a valid lease.
    acting: watch::Receiver<Option<Instant>>,
    /// This terminal server's name.
    name: Arc<str>,
}

impl std::fmt::Debug for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ask::Publish(_) => f.write_str("Publish"),
            Ask::Write { .. } => f.write_str("Write"),
        }
    }
}

impl Link {
    /// Whether this terminal server may act now: it leads, and its lease surely holds.
    pub fn may_act(&self, now: Instant) -> bool {
        self.acting.borrow().is_some_and(|until| now < until)
    }

    /// How long the lease surely holds, while leading.
    pub fn lease_left(&self, now: Instant) -> Option<Duration> {
        (*self.acting.borrow()).and_then(|until| until.checked_duration_since(now))
    }

    /// This terminal server's `[cluster] name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Publishes this terminal server's view (etcd is written only when it changed in a
    /// way that matters; a full queue drops the update, the next one carries it).
    pub fn publish(&self, views: Views) {
        let _ = self.asks.try_send(Ask::Publish(views));
    }

    /// Writes the state, and creates the epoch log entries `(service, epoch, value)`, in
    /// one transaction that holds only while this terminal server leads.
    pub async fn write(
        &self,
        state: Vec<u8>,
        epochs: Vec<(String, u64, Vec<u8>)>,
    ) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.asks
            .send(Ask::Write {
                state,
                epochs,
                reply,
            })
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }
}

/// Starts the coordinator for `zone`: the returned link and signal receiver are the
/// driver's. `contact` is how others reach this terminal server's control API.
pub async fn start(
    config: &ClusterConfig,
    zone: &str,
    contact: Option<String>,
    cancel: CancellationToken,
) -> Result<(Link, mpsc::Receiver<Signal>, tokio::task::JoinHandle<()>), ClusterError> {
    let etcd = Etcd::connect(&config.endpoints, config.lease).await?;
    let keys = Keys::new(&config.prefix, zone);
    let me = ServerInfo {
        name: config.name.clone(),
        contact,
    };
    let (asks_tx, asks) = mpsc::channel(64);
    let (signals_tx, signals) = mpsc::channel(256);
    let (acting_tx, acting) = watch::channel(None);
    let link = Link {
        asks: asks_tx,
        acting,
        name: config.name.as_str().into(),
    };
    let coordinator = Coordinator {
        store: Store::new(&etcd, keys.clone()),
        election: Election::new(&etcd, &keys, me.clone()),
        etcd,
        keys,
        me,
        ttl: config.lease,
        signals: signals_tx,
        acting: acting_tx,
        last_views: None,
    };
    let task = tokio::spawn(coordinator.run(asks, cancel));
    Ok((link, signals, task))
}

struct Coordinator {
    etcd: Etcd,
    keys: Keys,
    me: ServerInfo,
    ttl: Duration,
    store: Store,
    election: Election,
    signals: mpsc::Sender<Signal>,
    acting: watch::Sender<Option<Instant>>,
    /// The last view the driver asked to publish: republished on every new session.
    last_views: Option<Views>,
}

/// How one session ended.
enum End {
    Cancelled,
    Lost(String),
}

impl Coordinator {
    async fn run(mut self, mut asks: mpsc::Receiver<Ask>, cancel: CancellationToken) {
        self.follow(&cancel).await;
        let mut delay = RETRY_MIN;
        loop {
            let session = tokio::select! {
                () = cancel.cancelled() => return,
                opened = Session::open(&self.etcd, self.ttl) => opened,
            };
            let session = match session {
                Ok(s) => Arc::new(s),
                Err(error) => {
                    warn!(error = %crate::controller::describe(&error), "no etcd session; retrying");
                    self.signal(Signal::Etcd { up: false }).await;
                    // Requests meanwhile: writes are refused, views remembered.
                    let wait = tokio::time::sleep(delay);
                    tokio::pin!(wait);
                    loop {
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = &mut wait => break,
                            ask = asks.recv() => match ask {
                                Some(ask) => self.refuse(ask),
                                None => return,
                            },
                        }
                    }
                    delay = (delay * 2).min(self.ttl);
                    continue;
                }
            };
            delay = RETRY_MIN;
            self.signal(Signal::Etcd { up: true }).await;
            match self.serve(&session, &mut asks, &cancel).await {
                End::Cancelled => {
                    if let Ok(session) = Arc::try_unwrap(session)
                        && let Err(error) = session.close().await
                    {
                        warn!(error = %crate::controller::describe(&error), "cannot revoke the lease at shutdown; it expires by itself");
                    }
                    return;
                }
                End::Lost(why) => {
                    warn!(%why, "etcd session lost; starting a new one");
                    self.signal(Signal::Etcd { up: false }).await;
                }
            }
        }
    }

    /// Follows the state, the views and the leader key for as long as `cancel` allows,
    /// forwarding every change to the driver. Each watch is set up by a task of its own
    /// that tries again (backing off up to the lease TTL) while etcd cannot be reached:
    /// a terminal server started while etcd is away follows it once it is back. Once set
    /// up, the watches reconnect by themselves.
    async fn follow(&self, cancel: &CancellationToken) {
        let store = self.store.clone();
        self.spawn_follow(cancel, "the state", Signal::State, move |c| {
            let store = store.clone();
            async move { store.watch(c).await }
        });
        let (etcd, keys) = (self.etcd.clone(), self.keys.clone());
        self.spawn_follow(cancel, "the views", Signal::Views, move |c| {
            let (etcd, keys) = (etcd.clone(), keys.clone());
            async move { watch_views(&etcd, &keys, c).await }
        });
        let election = self.election.clone();
        self.spawn_follow(cancel, "the leader", Signal::Leader, move |c| {
            let election = election.clone();
            async move { election.observe(c).await }
        });
    }

    fn spawn_follow<T, F, Fut>(
        &self,
        cancel: &CancellationToken,
        what: &'static str,
        wrap: fn(T) -> Signal,
        mut open: F,
    ) where
        T: Clone + Send + Sync + 'static,
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<watch::Receiver<T>, ClusterError>> + Send,
    {
        let (signals, cancel, ttl) = (self.signals.clone(), cancel.clone(), self.ttl);
        tokio::spawn(async move {
            let mut delay = RETRY_MIN;
            let mut rx = loop {
                match open(cancel.child_token()).await {
                    Ok(rx) => break rx,
                    Err(e) => {
                        warn!(error = %crate::controller::describe(&e), "cannot follow {what} yet; trying again");
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(ttl);
                    }
                }
            };
            loop {
                let value = rx.borrow_and_update().clone();
                if signals.send(wrap(value)).await.is_err() {
                    return;
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    changed = rx.changed() => if changed.is_err() { return },
                }
            }
        });
    }

    /// One session: register, publish, campaign, lead; until the session is lost.
    async fn serve(
        &mut self,
        session: &Arc<Session>,
        asks: &mut mpsc::Receiver<Ask>,
        cancel: &CancellationToken,
    ) -> End {
        let mut publisher =
            match ViewPublisher::register(&self.etcd, &self.keys, session, &self.me).await {
                Ok(p) => p,
                Err(e) => return End::Lost(crate::controller::describe(&e)),
            };
        if let Some(views) = &self.last_views
            && let Err(e) = publisher.publish(views).await
        {
            warn!(error = %crate::controller::describe(&e), "cannot publish this terminal server's view");
        }
        let mut validity = session.watch();
        let campaign_cancel = cancel.child_token();
        let (won_tx, mut won) = oneshot::channel();
        {
            let (election, session, stop) = (
                self.election.clone(),
                session.clone(),
                campaign_cancel.clone(),
            );
            tokio::spawn(async move {
                let _ = won_tx.send(election.campaign(&session, &stop).await);
            });
        }
        let mut leadership: Option<Leadership> = None;
        let end = loop {
            tokio::select! {
                () = cancel.cancelled() => break End::Cancelled,
                changed = validity.changed() => {
                    if changed.is_err() {
                        break End::Lost("the session ended".into());
                    }
                    let now = *validity.borrow_and_update();
                    match now {
                        Validity::Valid { until } => {
                            if leadership.is_some() {
                                self.acting.send_replace(Some(until));
                            }
                        }
                        Validity::Lost(reason) => break End::Lost(reason.to_string()),
                    }
                }
                result = &mut won, if leadership.is_none() => match result {
                    Ok(Ok(l)) => {
                        let until = match *validity.borrow() {
                            Validity::Valid { until } => until,
                            Validity::Lost(reason) => break End::Lost(reason.to_string()),
                        };
                        let state = match self.store.load().await {
                            Ok(state) => state,
                            Err(e) => {
                                // Leading without knowing the state would be leading blind:
                                // give the lead back and try again on a new session.
                                let _ = self.election.resign(l).await;
                                break End::Lost(format!(
                                    "won, but cannot read the state: {}",
                                    crate::controller::describe(&e)
                                ));
                            }
                        };
                        info!(name = %self.me.name, "leading");
                        leadership = Some(l);
                        self.acting.send_replace(Some(until));
                        self.signal(Signal::Won { state }).await;
                    }
                    Ok(Err(e)) => break End::Lost(crate::controller::describe(&e)),
                    Err(_) => break End::Lost("the campaign ended".into()),
                },
                ask = asks.recv() => match ask {
                    None => break End::Cancelled,
                    Some(Ask::Publish(views)) => {
                        if publisher.is_news(&views)
                            && let Err(e) = publisher.publish(&views).await
                        {
                            warn!(error = %crate::controller::describe(&e), "cannot publish this terminal server's view");
                        }
                        self.last_views = Some(views);
                    }
                    Some(Ask::Write { state, epochs, reply }) => {
                        let Some(l) = &leadership else {
                            let _ = reply.send(Err(WriteError::NotLeading));
                            continue;
                        };
                        if session.valid_for(Instant::now()).is_none() {
                            let _ = reply.send(Err(WriteError::NotLeading));
                            break End::Lost("the lease may have lapsed".into());
                        }
                        let extra: Vec<ExtraPut> = epochs
                            .into_iter()
                            .map(|(service, epoch, value)| self.store.epoch_entry(&service, epoch, value))
                            .collect();
                        match self.store.write(l, state, extra).await {
                            Ok(_) => {
                                let _ = reply.send(Ok(()));
                            }
                            Err(e @ ClusterError::NotLeader { .. }) => {
                                let why = crate::controller::describe(&e);
                                let _ = reply.send(Err(WriteError::Etcd(e)));
                                break End::Lost(why);
                            }
                            Err(e) => {
                                let _ = reply.send(Err(WriteError::Etcd(e)));
                            }
                        }
                    }
                },
            }
        };
        campaign_cancel.cancel();
        self.acting.send_replace(None);
        if let Some(l) = leadership {
            let why = match &end {
                End::Cancelled => "shutting down".to_owned(),
                End::Lost(why) => why.clone(),
            };
            self.signal(Signal::Lost { why }).await;
            if matches!(end, End::Cancelled) && session.valid_for(Instant::now()).is_some() {
                // Hand over at once instead of a lease later.
                let _ = self.election.resign(l).await;
            }
        }
        end
    }

    fn refuse(&mut self, ask: Ask) {
        match ask {
            Ask::Publish(views) => self.last_views = Some(views),
            Ask::Write { reply, .. } => {
                let _ = reply.send(Err(WriteError::NotLeading));
            }
        }
    }

    async fn signal(&self, signal: Signal) {
        // The driver is gone only at shutdown.
        let _ = self.signals.send(signal).await;
    }
}
