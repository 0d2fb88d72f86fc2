//! The connection to etcd and the key schema of one zone: every key dnsd reads or
//! writes, in one place.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::cluster::error::ClusterError;

/// Interval of HTTP/2 pings on a connection with open streams, to notice a dead etcd
/// connection. etcd refuses pings closer than `--grpc-keepalive-min-time` (5 s by default)
/// with a GOAWAY, so this stays well above it.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(10);
/// How long an unanswered ping may wait before the connection is dropped.
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to an etcd cluster (cheap to clone; clones share the connection).
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    endpoints: Arc<str>,
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Etcd {
    /// Prepares a connection to `endpoints` (client URLs, e.g. `http://127.0.0.1:2379`).
    ///
    /// Connecting is lazy: this fails only on a malformed endpoint; an unreachable etcd
    /// shows on the first request. Every unary request and the opening of every stream
    /// gives up after `timeout` (use the lease TTL: a request slower than that is of no
    /// use to a lease holder). `require_leader` is set, so an etcd member cut off from its
    /// cluster's majority fails requests and cancels watches instead of serving stale data.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Etcd, ClusterError> {
        let joined: Arc<str> = endpoints.join(",").into();
        let options = ConnectOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout)
            .with_keep_alive(HTTP2_PING_INTERVAL, HTTP2_PING_TIMEOUT)
            .with_keep_alive_while_idle(false)
            .with_require_leader(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|source| ClusterError::Connect {
                endpoints: joined.to_string(),
                source,
            })?;
        Ok(Etcd {
            client,
            endpoints: joined,
        })
    }

    /// The endpoints, comma-separated, as given to [`Etcd::connect`].
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// A handle on the raw client (shares the connection).
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// Maps an etcd client error of `op` on `key` to a [`ClusterError::Etcd`].
    pub(crate) fn error(
        &self,
        op: &'static str,
        key: &str,
    ) -> impl FnOnce(etcd_client::Error) -> ClusterError + use<> {
        let key = key.to_owned();
        let endpoints = self.endpoints.to_string();
        move |source| ClusterError::Etcd {
            op,
            key,
            endpoints,
            source,
        }
    }

    /// A [`ClusterError::Unexpected`] for `op` on `key`.
    pub(crate) fn unexpected(
        &self,
        op: &'static str,
        key: &str,
        what: &'static str,
    ) -> ClusterError {
        ClusterError::Unexpected {
            op,
            key: key.to_owned(),
            endpoints: self.endpoints.to_string(),
            what,
        }
    }
}

/// The etcd key schema of one zone: every key dnsd reads or writes, in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `<prefix><zone>/`, e.g. `/dnsd/demo.test/`.
    base: String,
}

impl Keys {
    /// The keys of `zone` under `prefix` (which starts and ends with `/`, see
    /// [`crate::cluster::ClusterConfig::problems`]). The zone is written without its trailing dot and in
    /// lower case, so `Demo.Test.` and `demo.test` share their keys.
    pub fn new(prefix: &str, zone: &str) -> Keys {
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        Keys {
            base: format!("{prefix}{zone}/"),
        }
    }

    /// `<prefix><zone>/`: every key of the zone starts with it.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The leader key: who leads the zone's terminal servers.
    pub fn leader(&self) -> String {
        format!("{}leader", self.base)
    }

    /// The daemon's state.
    pub fn state(&self) -> String {
        format!("{}state", self.base)
    }

    /// The prefix of `service`'s epoch log.
    pub fn epochs(&self, service: &str) -> String {
        format!("{}epochs/{service}/", self.base)
    }

    /// The entry of `epoch` in `service`'s log: 20 digits, so keys sort as numbers do.
    pub fn epoch(&self, service: &str, epoch: u64) -> String {
        format!("{}{epoch:020}", self.epochs(service))
    }

    /// The prefix of the terminal servers' registrations.
    pub fn servers(&self) -> String {
        format!("{}servers/", self.base)
    }

    /// Where terminal server `name` registers itself.
    pub fn server(&self, name: &str) -> String {
        format!("{}{name}", self.servers())
    }

    /// The prefix of the terminal servers' views of the pool.
    pub fn views(&self) -> String {
        format!("{}views/", self.base)
    }

    /// Where terminal server `name` publishes its view of the pool.
    pub fn view(&self, name: &str) -> String {
        format!("{}{name}", self.views())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_schema() {
        let keys = Keys::new("/dnsd/", "Demo.Test.");
        assert_eq!(keys.base(), "/dnsd/demo.test/");
        assert_eq!(keys.leader(), "/dnsd/demo.test/leader");
        assert_eq!(keys.state(), "/dnsd/demo.test/state");
        assert_eq!(keys.epochs("www"), "/dnsd/demo.test/epochs/www/");
        assert_eq!(
            keys.epoch("www", 42),
            "/dnsd/demo.test/epochs/www/00000000000000000042"
        );
        assert_eq!(keys.server("ts1"), "/dnsd/demo.test/servers/ts1");
        assert_eq!(keys.view("ts1"), "/dnsd/demo.test/views/ts1");
        // Epoch keys sort as their numbers do, up to u64::MAX.
        assert!(keys.epoch("www", 9) < keys.epoch("www", 10));
        assert_eq!(
            keys.epoch("www", u64::MAX).len(),
            keys.epoch("www", 0).len()
        );
    }
}
