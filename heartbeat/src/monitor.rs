//! The probe scheduler: one task per target that probes on a jittered interval, runs a
//! [`Detector`] and sends a [`Report`] per probe.
//!
//! Each target has its own task and each probe is bounded by the timeout, so a slow or
//! dead target never delays another target's probes. Tasks are spawned on the current
//! tokio runtime and tracked by a [`TaskTracker`] inside the returned [`Monitor`];
//! they stop when the cancellation token fires (or when nobody receives reports any
//! more), and [`Monitor::join`] waits for all of them.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, info, warn};

use crate::detector::{Detector, Health, Transition};
use crate::probe::{ProbeError, Protocol, probe};

/// Each period between two probes of a target is the interval scaled by a random factor
/// in `[1 - JITTER, 1 + JITTER]`, so that targets started together drift apart instead
/// of probing in lock-step; the long-run rate stays one probe per interval.
pub const JITTER: f64 = 0.1;

/// The shortest interval the scheduler uses; a configured zero (which
/// [`MonitorConfig::problems`] reports) is raised to this rather than spinning.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// How every target of one monitor is probed. One monitor serves one pool, whose
/// members share the echo port and thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorConfig {
    /// TCP or UDP echo.
    pub protocol: Protocol,
    /// The echo port on every target (7 for a standard echo service).
    pub port: u16,
    /// Mean time between two probes of the same target.
    pub interval: Duration,
    /// Bound on one whole probe; keep it below `interval`.
    pub timeout: Duration,
    /// Consecutive answers that make a target up.
    pub rise: u32,
    /// Consecutive misses that make a target down.
    pub fall: u32,
}

/// A problem found by [`MonitorConfig::problems`]. Its message is written to follow the
/// field's name ("fall: must be at least 1"): [`ConfigError::field`] names the field, so
/// a caller can put its own key path in front ("heartbeat.fall: must be at least 1").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The echo port is 0.
    #[error("port 0 cannot be probed")]
    ZeroPort,
    /// The interval is zero.
    #[error("must be longer than zero")]
    ZeroInterval,
    /// The timeout is zero.
    #[error("must be longer than zero")]
    ZeroTimeout,
    /// The timeout is not below the interval, so probes would run back to back.
    #[error("timeout ({}) must be shorter than interval ({})", humantime::format_duration(*timeout), humantime::format_duration(*interval))]
    TimeoutNotBelowInterval {
        /// The configured timeout.
        timeout: Duration,
        /// The configured interval.
        interval: Duration,
    },
    /// `rise` is 0.
    #[error("must be at least 1")]
    ZeroRise,
    /// `fall` is 0.
    #[error("must be at least 1")]
    ZeroFall,
}

impl ConfigError {
    /// The [`MonitorConfig`] field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::ZeroPort => "port",
            ConfigError::ZeroInterval => "interval",
            ConfigError::ZeroTimeout | ConfigError::TimeoutNotBelowInterval { .. } => "timeout",
            ConfigError::ZeroRise => "rise",
            ConfigError::ZeroFall => "fall",
        }
    }

    /// The message with other fields named as keys of `section` ("must be shorter than
    /// heartbeat.interval"), for a caller that reports `<section>.<field>: <message>`.
    pub fn message_in(&self, section: &str) -> String {
        match self {
            ConfigError::TimeoutNotBelowInterval { timeout, interval } => format!(
                "timeout ({}) must be shorter than {section}.interval ({})",
                humantime::format_duration(*timeout),
                humantime::format_duration(*interval)
            ),
            other => other.to_string(),
        }
    }
}

impl MonitorConfig {
    /// Every problem with this configuration (empty when it is valid), so that a
    /// config check can report them all at once. [`spawn_monitor`] does not refuse an
    /// invalid configuration: it treats a zero rise/fall as 1 and a zero interval as
    /// 1 ms, and a timeout at or above the interval makes probes run back to back.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if self.port == 0 {
            problems.push(ConfigError::ZeroPort);
        }
        if self.interval.is_zero() {
            problems.push(ConfigError::ZeroInterval);
        }
        if self.timeout.is_zero() {
            problems.push(ConfigError::ZeroTimeout);
        } else if !self.interval.is_zero() && self.timeout >= self.interval {
            problems.push(ConfigError::TimeoutNotBelowInterval {
                timeout: self.timeout,
                interval: self.interval,
            });
        }
        if self.rise == 0 {
            problems.push(ConfigError::ZeroRise);
        }
        if self.fall == 0 {
            problems.push(ConfigError::ZeroFall);
        }
        problems
    }
}

/// One member to probe. `id` is the caller's handle (an index into its member list),
/// echoed in every [`Report`] so the caller needs no lookup by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The caller's identifier for this target.
    pub id: usize,
    /// The member's address; the monitor's port is added to it.
    pub addr: IpAddr,
    /// The health to start from, e.g. restored from persisted state.
    pub initial: Health,
}

/// The result of one probe of one target, with the detector's verdict after it.
#[derive(Debug)]
pub struct Report {
    /// The [`Target::id`] that was probed.
    pub target: usize,
    /// Wall-clock time at which the probe started.
    pub at: SystemTime,
    /// The round-trip time, or why the probe missed.
    pub outcome: Result<Duration, ProbeError>,
    /// The target's health after this probe.
    pub health: Health,
    /// Set when this probe changed the health.
    pub transition: Option<Transition>,
}

/// The handle of a running monitor, used to stop it and wait for its tasks at shutdown.
///
/// Dropping it does not stop the tasks: they run until the cancellation token given
/// to [`spawn_monitor`] is cancelled or the report receiver is dropped.
#[derive(Debug, Clone)]
pub struct Monitor {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Monitor {
    /// Cancels the token the monitor was started with, asking every task to stop.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits until every target task has finished (after cancellation, or after the
    /// report receiver was dropped). It does not cancel by itself.
    pub async fn join(&self) {
        self.tracker.wait().await;
    }

    /// Target tasks still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }
}

/// Starts probing `targets` on the current tokio runtime: one task per target,
/// tracked by the returned [`Monitor`]'s [`TaskTracker`].
///
/// Each task probes first at a random offset within the first interval, then every
/// `interval` scaled by a random factor in `[1 - JITTER, 1 + JITTER]` (see [`JITTER`]).
/// When a task falls behind (a busy runtime, a slow report consumer) it probes once
/// as soon as it can and schedules on from there: missed probes are skipped, never
/// made up in a burst.
///
/// A [`Report`] is sent on `reports` after every probe. Sending waits for room in the
/// channel, so a slow consumer slows the probing instead of losing reports (and with
/// them transitions); give the channel room for at least one report per target.
///
/// # Panics
///
/// Panics if called outside a tokio runtime.
pub fn spawn_monitor(
    config: MonitorConfig,
    targets: Vec<Target>,
    reports: mpsc::Sender<Report>,
    cancel: CancellationToken,
) -> Monitor {
    let tracker = TaskTracker::new();
    for target in targets {
        let span = tracing::info_span!("heartbeat", target = target.id, addr = %target.addr);
        tracker.spawn(run_target(config, target, reports.clone(), cancel.clone()).instrument(span));
    }
    tracker.close();
    Monitor { tracker, cancel }
}

/// A period between probes: the interval scaled by a random factor in
/// `[1 - JITTER, 1 + JITTER]`. Public so that other periodic observers (dnsd's service
/// checks) spread out the same way.
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::random_range(1.0 - JITTER..=1.0 + JITTER))
}

/// Why a target task ended.
enum Stop {
    Cancelled,
    ReceiverGone,
}

async fn run_target(
    config: MonitorConfig,
    target: Target,
    reports: mpsc::Sender<Report>,
    cancel: CancellationToken,
) {
    let addr = SocketAddr::new(target.addr, config.port);
    match probe_loop(config, target, addr, &reports, &cancel).await {
        Stop::Cancelled => debug!(target = target.id, %addr, "heartbeat task cancelled"),
        Stop::ReceiverGone => warn!(
            target = target.id,
            %addr,
            "heartbeat task stopping: the report receiver was dropped"
        ),
    }
}

async fn probe_loop(
    config: MonitorConfig,
    target: Target,
    addr: SocketAddr,
    reports: &mpsc::Sender<Report>,
    cancel: &CancellationToken,
) -> Stop {
    let interval = config.interval.max(MIN_INTERVAL);
    let mut detector = Detector::with_initial(config.rise, config.fall, target.initial);
    // Spread the first probes of all targets over the first interval.
    let mut next = Instant::now() + interval.mul_f64(rand::random_range(0.0..1.0));
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Stop::Cancelled,
            () = sleep_until(next) => {}
        }

        let at = SystemTime::now();
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => return Stop::Cancelled,
            outcome = probe(config.protocol, addr, config.timeout) => outcome,
        };
        let transition = detector.observe(outcome.is_ok());
        if let Err(error) = &outcome {
            debug!(target = target.id, %addr, kind = error.kind(), %error, "probe missed");
        }
        if let Some(t) = transition {
            info!(target = target.id, %addr, from = %t.from, to = %t.to, "health changed");
        }
        let report = Report {
            target: target.id,
            at,
            outcome,
            health: detector.health(),
            transition,
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Stop::Cancelled,
            sent = reports.send(report) => {
                if sent.is_err() {
                    return Stop::ReceiverGone;
                }
            }
        }

        // Schedule from the planned time, not from when the timer fired, so timer
        // lateness does not accumulate; if the next probe is already overdue, probe
        // right away and continue from now (skip, never burst).
        next += jittered(interval);
        let now = Instant::now();
        if next < now {
            next = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MonitorConfig {
        MonitorConfig {
            protocol: Protocol::Tcp,
            port: 7,
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(100),
            rise: 2,
            fall: 3,
        }
    }

    #[test]
    fn a_sensible_config_has_no_problems() {
        assert_eq!(config().problems(), vec![]);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let bad = MonitorConfig {
            port: 0,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(100),
            rise: 0,
            fall: 0,
            ..config()
        };
        let problems = bad.problems();
        let fields: Vec<_> = problems.iter().map(ConfigError::field).collect();
        assert_eq!(fields, ["port", "timeout", "rise", "fall"]);
        assert!(matches!(
            problems[1],
            ConfigError::TimeoutNotBelowInterval { .. }
        ));

        let zero = MonitorConfig {
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            ..config()
        };
        assert_eq!(
            zero.problems(),
            vec![ConfigError::ZeroInterval, ConfigError::ZeroTimeout]
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let interval = Duration::from_millis(200);
        for _ in 0..1000 {
            let period = jittered(interval);
            assert!(period >= Duration::from_millis(180), "{period:?}");
            assert!(period <= Duration::from_millis(220), "{period:?}");
        }
    }
}
