//! The cluster layer's one error type: what failed, on which key, against which etcd.

use std::fmt;

/// Why a cluster operation failed. Every variant names the key it was about, and those
/// that talked to etcd name the endpoints they used (the client balances over them, so
/// the one that answered is not known).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The endpoint list was refused before any connection was tried.
    #[error("cannot use etcd endpoints {endpoints}")]
    Connect {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    /// A request to etcd failed or timed out; nothing was changed by it unless etcd
    /// applied it before the answer was lost (every write here is safe to retry).
    #[error("etcd at {endpoints}: {op} {key} failed")]
    Etcd {
        op: &'static str,
        key: String,
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    /// etcd answered with something its API does not allow (a missing header, a
    /// transaction answer of the wrong shape).
    #[error("etcd at {endpoints}: unexpected answer to {op} {key}: {what}")]
    Unexpected {
        op: &'static str,
        key: String,
        endpoints: String,
        what: &'static str,
    },
    /// A write conditioned on leadership was refused: the leader key is gone or was
    /// created again (by this or another terminal server). Nothing was written.
    #[error("not the leader any more: {key} is held by {}; nothing was written", holder.as_deref().unwrap_or("nobody"))]
    NotLeader { key: String, holder: Option<String> },
    /// A create-only key (an epoch log entry) already exists. Nothing was written.
    #[error("{key} exists already (written once, never replaced); nothing was written")]
    AlreadyExists { key: String },
    /// The session's lease is no longer known to be valid, so nothing may be done under it.
    #[error("the session's lease is lost ({reason}); {key} was not touched")]
    SessionLost { key: String, reason: LostReason },
    /// The caller cancelled a campaign before it won.
    #[error("campaign for {key} cancelled before it won")]
    Cancelled { key: String },
    /// A key holds a value that is not what dnsd writes there.
    #[error("{key} holds a value dnsd cannot read")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be serialized.
    #[error("cannot encode the value of {key}")]
    Encode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Why a session was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// No keep-alive was answered in time: the lease may expire on etcd at any moment.
    DeadlinePassed,
    /// etcd answered that the lease does not exist (it expired or was revoked).
    Expired,
    /// The session was closed (or dropped) by its owner.
    Closed,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LostReason::DeadlinePassed => {
                "no keep-alive was answered before the local deadline; the lease may expire on etcd any moment"
            }
            LostReason::Expired => "etcd no longer knows the lease (expired or revoked)",
            LostReason::Closed => "the session was closed",
        })
    }
}
