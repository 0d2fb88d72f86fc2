//! One live SSH session per host, reused while it works and reopened with capped,
//! jittered exponential backoff when it does not.
//!
//! The connector never sleeps. After a failed attempt it records when the next attempt is
//! allowed; until then [`Connector::get`] answers at once with [`ConnectError::BackingOff`]
//! (carrying that time, so the caller can show "backing off until ...") and the caller decides
//! when to ask again. Locking: the map lock and each host's state lock are held only to read
//! or update a few fields, never across network I/O. Each host also has a connect gate, held
//! while one thread connects to that host (bounded by the connect and I/O timeouts) so that
//! concurrent callers wait for that one attempt instead of opening sessions of their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{debug, info};

use crate::ssh::{Session, SshError, SshSettings};

/// Exponential backoff between connection attempts to one host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Wait after the first failure.
    pub initial: Duration,
    /// Longest wait, however many failures.
    pub max: Duration,
    /// Fraction (0.0 to 1.0) of each wait that is randomly taken off, so that hosts
    /// which failed together do not retry in lockstep.
    pub jitter: f64,
}

impl Default for Backoff {
    /// 1 s, doubling up to 60 s, with up to 20% jitter.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The wait after `failures` consecutive failures (at least 1), given `unit`, a random
    /// number in `[0, 1)`: `initial * 2^(failures-1)`, capped at `max`, minus up to
    /// `jitter` of itself.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let full = self.initial.saturating_mul(1u32 << doublings).min(self.max);
        let cut = self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        full.mul_f64(1.0 - cut)
    }
}

/// Why [`Connector::get`] returned no session.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// Connecting failed just now; the next attempt is allowed at `retry_at`.
    #[error("{error}")]
    Failed {
        /// Why it failed.
        error: SshError,
        /// When the next attempt is allowed.
        retry_at: Instant,
    },
    /// An earlier attempt failed and the backoff has not expired; nothing was tried.
    #[error(
        "not connecting to {host}: backing off for {} after {failures} failed attempt(s); last error: {last_error}",
        humantime::format_duration(round_up(retry_at.saturating_duration_since(Instant::now())))
    )]
    BackingOff {
        /// The host.
        host: String,
        /// Consecutive failed attempts.
        failures: u32,
        /// When the next attempt is allowed.
        retry_at: Instant,
        /// The last attempt's error, as text.
        last_error: String,
    },
}

impl ConnectError {
    /// The SSH error, when an attempt was made and failed.
    pub fn ssh_error(&self) -> Option<&SshError> {
        match self {
            ConnectError::Failed { error, .. } => Some(error),
            ConnectError::BackingOff { .. } => None,
        }
    }

    /// When the next attempt is allowed.
    pub fn retry_at(&self) -> Instant {
        match self {
            ConnectError::Failed { retry_at, .. } | ConnectError::BackingOff { retry_at, .. } => {
                *retry_at
            }
        }
    }
}

/// Whole seconds, for messages.
fn round_up(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs() + u64::from(duration.subsec_nanos() > 0))
}

/// What the connector knows about one host, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    /// A session is open and was alive when last checked.
    pub connected: bool,
    /// Consecutive failed attempts (0 after a success).
    pub failures: u32,
    /// When the next attempt is allowed, while backing off.
    pub retry_at: Option<Instant>,
    /// The last attempt's error, as text.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct HostState {
    session: Option<Arc<Session>>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
}

#[derive(Debug, Default)]
struct HostSlot {
    /// Guarded fields; held only to read or write them.
    state: Mutex<HostState>,
    /// Held by the one thread connecting to this host.
    gate: Mutex<()>,
}

/// Hands out one shared session per host, reconnecting with backoff.
#[derive(Debug)]
pub struct Connector {
    settings: SshSettings,
    backoff: Backoff,
    /// Held only to find or insert a host's slot.
    hosts: Mutex<HashMap<String, Arc<HostSlot>>>,
}

/// Locks a mutex whose data stays consistent even if a holder panicked (plain fields).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connector {
    /// A connector opening sessions with `settings`.
    pub fn new(settings: SshSettings, backoff: Backoff) -> Connector {
        Connector {
            settings,
            backoff,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The settings sessions are opened with.
    pub fn settings(&self) -> &SshSettings {
        &self.settings
    }

    fn slot(&self, host: &str) -> Arc<HostSlot> {
        Arc::clone(lock(&self.hosts).entry(host.to_owned()).or_default())
    }

    /// A live session to `host`: the current one if it is alive, else a new one unless the
    /// host is backing off. Blocks for at most one connection attempt (its own, or another
    /// thread's to the same host).
    pub fn get(&self, host: &str) -> Result<Arc<Session>, ConnectError> {
        let slot = self.slot(host);
        if let Some(session) = live_session(&mut lock(&slot.state)) {
            return Ok(session);
        }
        let _gate = lock(&slot.gate);
        {
            let mut state = lock(&slot.state);
            // Another thread may have connected while we waited for the gate.
            if let Some(session) = live_session(&mut state) {
                return Ok(session);
            }
            if let Some(retry_at) = state.retry_at
                && Instant::now() < retry_at
            {
                return Err(ConnectError::BackingOff {
                    host: host.to_owned(),
                    failures: state.failures,
                    retry_at,
                    last_error: state.last_error.clone().unwrap_or_default(),
                });
            }
        }
        let attempt = Session::connect(host, &self.settings);
        let mut state = lock(&slot.state);
        match attempt {
            Ok(session) => {
                if state.failures > 0 {
                    info!(%host, failures = state.failures, "SSH session reopened");
                }
                let session = Arc::new(session);
                *state = HostState {
                    session: Some(Arc::clone(&session)),
                    ..HostState::default()
                };
                Ok(session)
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let wait = self
                    .backoff
                    .delay(state.failures, rand::random_range(0.0..1.0));
                let retry_at = Instant::now() + wait;
                state.retry_at = Some(retry_at);
                state.last_error = Some(error.to_string());
                debug!(%host, failures = state.failures, ?wait, %error, "SSH connect failed");
                Err(ConnectError::Failed { error, retry_at })
            }
        }
    }

    /// Drops the session to `host` (the next [`get`](Connector::get) reconnects) and
    /// lets the next attempt happen at once.
    pub fn reset(&self, host: &str) {
        let slot = self.slot(host);
        let mut state = lock(&slot.state);
        state.session = None;
        state.retry_at = None;
    }

    /// What the connector knows about `host`.
    pub fn status(&self, host: &str) -> HostStatus {
        let slot = self.slot(host);
        let state = lock(&slot.state);
        HostStatus {
            connected: state.session.as_ref().is_some_and(|s| s.is_alive()),
            failures: state.failures,
            retry_at: state.retry_at.filter(|at| Instant::now() < *at),
            last_error: state.last_error.clone(),
        }
    }
}

/// The stored session if it is still alive; a dead one is dropped.
fn live_session(state: &mut HostState) -> Option<Arc<Session>> {
    match &state.session {
        Some(session) if session.is_alive() => Some(Arc::clone(session)),
        Some(_) => {
            state.session = None;
            None
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::{Identity, SshErrorKind};

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let backoff = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            jitter: 0.0,
        };
        let waits: Vec<u64> = (1..=6).map(|n| backoff.delay(n, 0.5).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff.delay(u32::MAX, 0.0), Duration::from_secs(10));
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let backoff = Backoff {
            initial: Duration::from_secs(8),
            max: Duration::from_secs(60),
            jitter: 0.25,
        };
        assert_eq!(backoff.delay(1, 0.0), Duration::from_secs(8));
        assert_eq!(backoff.delay(1, 0.5), Duration::from_secs(7));
        assert_eq!(backoff.delay(1, 1.0), Duration::from_secs(6));
    }

    fn settings(port: u16) -> SshSettings {
        SshSettings {
            user: "root".into(),
            port,
            identity: Identity::Agent,
            known_hosts: "/nonexistent".into(),
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
            keepalive: None,
        }
    }

    #[test]
    fn failures_back_off_then_retry() {
        let backoff = Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
            jitter: 0.0,
        };
        let (_socket, port) = crate::ssh::refusing_port();
        let connector = Connector::new(settings(port), backoff);

        let first = connector.get("127.0.0.1").unwrap_err();
        assert_eq!(
            first.ssh_error().map(SshError::kind),
            Some(SshErrorKind::Connection),
            "{first}"
        );
        let status = connector.status("127.0.0.1");
        assert_eq!(status.failures, 1);
        assert!(!status.connected);
        assert!(status.retry_at.is_some());

        // Right away: no attempt, the caller learns when to come back.
        let second = connector.get("127.0.0.1").unwrap_err();
        assert!(
            matches!(second, ConnectError::BackingOff { failures: 1, .. }),
            "{second}"
        );
        assert_eq!(second.retry_at(), first.retry_at());
        assert!(second.to_string().contains("backing off"), "{second}");

        // After the wait a new attempt is made and the next wait doubles.
        std::thread::sleep(first.retry_at().saturating_duration_since(Instant::now()));
        let third = connector.get("127.0.0.1").unwrap_err();
        assert!(matches!(third, ConnectError::Failed { .. }), "{third}");
        assert_eq!(connector.status("127.0.0.1").failures, 2);
        assert!(third.retry_at() > first.retry_at());

        // An operator reset allows the next attempt at once.
        connector.reset("127.0.0.1");
        let fourth = connector.get("127.0.0.1").unwrap_err();
        assert!(matches!(fourth, ConnectError::Failed { .. }), "{fourth}");
        assert_eq!(connector.status("127.0.0.1").failures, 3);
    }
}
