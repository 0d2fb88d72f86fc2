//! How the rest of the process talks to the driver that owns the controller: the
//! requests it accepts, the handle that sends them, and the metrics it reports.
//!
//! Both the daemon (which answers requests) and the control API (which sends them) use
//! this module, and neither imports the other: the API can be tested against a fake
//! driver that answers the requests of [`DaemonHandle::channel`].

use std::collections::BTreeMap;

use dnsd_api::{Action, ActionReply, Event, Status};
use tokio::sync::{broadcast, mpsc, oneshot};

/// A request to the driver.
#[derive(Debug)]
pub enum Request {
    /// Apply an operator action; `origin` says who asked.
    Act {
        action: Action,
        origin: String,
        reply: oneshot::Sender<ActionReply>,
    },
    /// The recent event log, oldest first.
    Events { reply: oneshot::Sender<Vec<Event>> },
    /// The full status.
    Status { reply: oneshot::Sender<Status> },
    /// The status plus the counters `/metrics` needs.
    Metrics { reply: oneshot::Sender<Metrics> },
    /// Re-read the configuration file and apply it; `origin` says who asked.
    Reload {
        origin: String,
        reply: oneshot::Sender<ActionReply>,
    },
}

/// What `/metrics` renders, besides the DNS counters.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub status: Status,
    /// Automatic failovers per service since start.
    pub failovers: BTreeMap<String, u64>,
    /// Bytes mirrored since start per (service, member): literal, matched.
    pub mirrored: Vec<(String, String, u64, u64)>,
    /// State file writes that failed since start.
    pub persist_failures: u64,
    /// Reloads of the configuration since start.
    pub reloads: Reloads,
}

/// Reloads of the configuration since start, by outcome (a file that changed nothing
/// counts as applied).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reloads {
    pub applied: u64,
    pub refused: u64,
}

/// The driver went away: the daemon is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the daemon is shutting down")]
pub struct ShuttingDown;

/// How the control API reaches the driver: requests with one-shot replies, and a
/// broadcast of events as they are recorded.
#[derive(Debug, Clone)]
pub struct DaemonHandle {
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<Event>,
}

impl DaemonHandle {
    /// A handle, the receiving end of its requests (for the driver, or a fake one in
    /// tests) and the sender of its event broadcast.
    pub fn channel(
        capacity: usize,
    ) -> (
        DaemonHandle,
        mpsc::Receiver<Request>,
        broadcast::Sender<Event>,
    ) {
        let (requests, rx) = mpsc::channel(capacity);
        let (events, _) = broadcast::channel(1024);
        (
            DaemonHandle {
                requests,
                events: events.clone(),
            },
            rx,
            events,
        )
    }

    /// Sends an operator action through the controller's validation.
    pub async fn act(&self, action: Action, origin: String) -> Result<ActionReply, ShuttingDown> {
        self.ask(|reply| Request::Act {
            action,
            origin,
            reply,
        })
        .await
    }

    /// The recent event log.
    pub async fn events(&self) -> Result<Vec<Event>, ShuttingDown> {
        self.ask(|reply| Request::Events { reply }).await
    }

    /// The full status.
    pub async fn status(&self) -> Result<Status, ShuttingDown> {
        self.ask(|reply| Request::Status { reply }).await
    }

    /// The status plus counters, for `/metrics`.
    pub async fn metrics(&self) -> Result<Metrics, ShuttingDown> {
        self.ask(|reply| Request::Metrics { reply }).await
    }

    /// Re-reads the configuration file and applies it, or says why not.
    pub async fn reload(&self, origin: String) -> Result<ActionReply, ShuttingDown> {
        self.ask(|reply| Request::Reload { origin, reply }).await
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, ShuttingDown> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(make(reply))
            .await
            .map_err(|_| ShuttingDown)?;
        rx.await.map_err(|_| ShuttingDown)
    }

    /// A live stream of events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}
