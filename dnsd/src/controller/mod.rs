//! The failover controller: a pure state machine that decides who is primary, when a
//! member is in sync, and when to fail over or fail back.
//!
//! It takes inputs (a member's health changed, an operator action, a mirroring pass or a
//! hook finished, a timer tick), each with the current wall-clock time, and returns
//! [`Effect`]s for the driver to carry out: publish a new DNS snapshot, persist the
//! state, log an event, start a mirroring pass, run a hook. It never sleeps, reads the
//! clock or touches a socket, which is what lets the tests below and the property test
//! run thousands of fault sequences in milliseconds.
//!
//! Rules it enforces:
//! - exactly one primary per service, and an epoch per service that only grows (every
//!   change of primary bumps it, and the zone serial with it);
//! - a member is *eligible* when it is up, not in maintenance, and, for a service with
//!   paths to mirror, has finished its resync and completed a pass within `max_lag`;
//! - when the primary goes down, the next eligible member after it in the service's
//!   order (wrapping around) is promoted: `fence` runs on the old primary first (a
//!   failed fence stops the promotion when fencing is required), then `promote` on the
//!   new one, then DNS switches;
//! - when no member is eligible, `on_no_candidate` decides: `wait` keeps DNS on the old
//!   primary and marks the service *stranded* (answering a dead address is no worse than
//!   answering nothing, and clients reach the service the moment it is back);
//!   `freshest` promotes the member with the most recent complete pass;
//! - for a service with a check, a member *serves* only when its host is up and its check
//!   passes; when the primary's host answers but its check fails, it is restarted in
//!   place (`restart`, up to `restart_attempts` times, with back-off) and the service
//!   fails over only if the check has not passed within `restart_window`; a dead host
//!   fails over at once;
//! - a member whose health (host or service) changed more than `flap_threshold` times
//!   within `flap_window` is quarantined for `hold_down`: never promoted, never failed
//!   back to, until the hold-down ends or an operator lifts it;
//! - a member that comes back from down is *resyncing*: its first pass keeps every file
//!   it would delete or overwrite in a folder named for the epoch, and it is never
//!   promoted before that pass completes;
//! - a planned switchover (failback, or an operator moving a live primary) demotes the
//!   old primary, runs a final pass to the target, promotes the target, then switches
//!   DNS; if a step fails it re-promotes the old primary and says which step failed;
//! - a paused service takes no automatic decision; operators may still act on it;
//! - operator actions are checked against the same rules and are either applied whole
//!   or refused with a reason.

//!
//! Layout: `spec` is the pool as configured; `core` builds the controller and takes
//! its inputs; `state` holds what is known of each node and service and the service's
//! state machine (serving, stranded, recovering, failing over, switching over) with its
//! named moves; `health` takes the service checks' verdicts, restarts a failing primary
//! and quarantines flapping members; `election` decides who may and will be
//! promoted; `transitions` carries out failovers, switchovers, rollbacks and the
//! commit; `sync` orders mirroring passes and judges them; `operator` validates
//! operator actions; `persist` saves and restores; `reconfigure` takes a new
//! configuration while running; `orders` is the contract with the
//! executor (effects, orders, outcomes and their errors).

mod core;
mod election;
mod health;
mod ids;
mod operator;
mod orders;
mod persist;
mod reconfigure;
mod spec;
mod state;
mod sync;
mod transitions;

pub use core::Withdrawn;
pub use dnsd_api::Role;
pub use election::{Candidate, Skip};
pub use health::RecoveryView;
pub use ids::{HookId, NodeId, PassId, ServiceId, Slot};
pub use operator::Refusal;
pub use orders::{
    Effect, Ended, Hook, HookError, HookOrder, Keep, Kept, LocalEnd, PassError, PassKind,
    PassSummary, SourceClock, SyncOrder, Watermark, describe,
};
pub use persist::{Persisted, PersistedService};
pub use reconfigure::{Reconfiguration, ReconfigureRefusal};
pub use spec::{
    Election, FENCE_RETRY, Failback, Fencing, FlapPolicy, MAX_SYNC_BACKOFF, Millis, NoCandidate,
    PROMOTE_BACKOFF, Policy, RestartPolicy, ServiceSpec, Topology,
};
pub use state::Controller;
pub use sync::SyncView;

#[cfg(test)]
use {
    dnsd_api::{Action, Event, EventKind},
    heartbeat::Health,
    orders::Fx,
};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod mirror_tests;

#[cfg(test)]
mod safety_tests;

#[cfg(test)]
mod health_tests;

#[cfg(test)]
mod reconfigure_tests;
