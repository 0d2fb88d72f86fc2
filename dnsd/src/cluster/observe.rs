//! Shared observation: each terminal server registers itself and publishes its view of
//! the pool's members under its own session lease; everybody follows everybody's views.
//!
//! A view says, per member, up/down/unknown, since when (unix ms, the observer's clock)
//! and the last round-trip time. It is written on change, not per probe: a health or
//! "since" change is written at once, a round-trip time only once it has doubled or
//! halved since the last write (so a steady pool writes nothing, and a jittery link does
//! not write on every probe). Both keys vanish with the observer's lease: a dead terminal
//! server's opinion stops counting within a TTL, which is what [`crate::cluster::quorum`]
//! relies on to count only live observers.

use std::collections::BTreeMap;

use etcd_client::PutOptions;
use heartbeat::Health;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::cluster::election::ServerInfo;
use crate::cluster::election::encode;
use crate::cluster::error::ClusterError;
use crate::cluster::etcd::{Etcd, Keys};
use crate::cluster::session::Session;
use crate::cluster::watched::{self, Range};

/// One observer's view of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// What the observer's failure detector says.
    #[serde(with = "health_json")]
    pub health: Health,
    /// Since when (unix ms, by the observer's clock) it has said so.
    pub since_unix_ms: u64,
    /// The last answered probe's round-trip time, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u64>,
}

/// One observer's view of the pool: member name -> what its heartbeat sees, and
/// [`check_key`] (`service/member`) -> what the service's check sees on the member. Both
/// are judged by [`crate::cluster::quorum`] alike.
pub type Views = BTreeMap<String, MemberView>;

/// The key of a service check's view of a member in [`Views`]: `service/member` (names
/// are DNS labels, so it never collides with a member's name).
pub fn check_key(service: &str, member: &str) -> String {
    format!("{service}/{member}")
}

/// Every live terminal server and its view, as followed from etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterViews {
    /// Registered terminal servers (their lease is alive), by name.
    pub servers: BTreeMap<String, ServerInfo>,
    /// Their published views, by observer name. An observer that has not published (or
    /// whose view cannot be read) is absent here but still counted in `servers`.
    pub views: BTreeMap<String, Views>,
}

/// Registers this terminal server and publishes its view, under its session's lease.
#[derive(Debug)]
pub struct ViewPublisher {
    etcd: Etcd,
    view_key: String,
    lease: i64,
    /// The last view etcd accepted; `None` before the first.
    published: Option<Views>,
}

impl ViewPublisher {
    /// Registers `me` at `servers/<name>` under `session`'s lease. Its view is written by
    /// the first [`ViewPublisher::publish`]. A new session needs a new publisher.
    pub async fn register(
        etcd: &Etcd,
        keys: &Keys,
        session: &Session,
        me: &ServerInfo,
    ) -> Result<ViewPublisher, ClusterError> {
        let key = keys.server(&me.name);
        session.ensure_valid(&key)?;
        let lease = session.lease_id();
        etcd.client()
            .put(
                key.as_str(),
                encode(&key, me)?,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(etcd.error("register at", &key))?;
        Ok(ViewPublisher {
            etcd: etcd.clone(),
            view_key: keys.view(&me.name),
            lease,
            published: None,
        })
    }

    /// Writes `views` if it says something new (see [`ViewPublisher::is_news`]); returns
    /// whether it wrote. After a failed write the next call tries again.
    pub async fn publish(&mut self, views: &Views) -> Result<bool, ClusterError> {
        if !self.is_news(views) {
            return Ok(false);
        }
        let value = encode(&self.view_key, views)?;
        self.etcd
            .client()
            .put(
                self.view_key.as_str(),
                value,
                Some(PutOptions::new().with_lease(self.lease)),
            )
            .await
            .map_err(self.etcd.error("publish", &self.view_key))?;
        debug!(key = %self.view_key, members = views.len(), "view published");
        self.published = Some(views.clone());
        Ok(true)
    }

    /// Whether `views` differs from the last published one enough to be written: another
    /// set of members, another health or "since" for any of them, or a round-trip time
    /// that appeared, vanished, or doubled or halved since it was last written.
    pub fn is_news(&self, views: &Views) -> bool {
        is_news(self.published.as_ref(), views)
    }
}

/// [`ViewPublisher::is_news`], against the last published view (`None`: nothing yet).
fn is_news(published: Option<&Views>, views: &Views) -> bool {
    let Some(published) = published else {
        return true;
    };
    published.len() != views.len()
        || published
            .iter()
            .zip(views)
            .any(|((old_name, old), (name, new))| {
                old_name != name
                    || old.health != new.health
                    || old.since_unix_ms != new.since_unix_ms
                    || rtt_moved(old.rtt_us, new.rtt_us)
            })
}

/// Round-trip times closer than this are the same for an operator: on a LAN or loopback
/// they wander by more than a factor of 2 under load, and each write costs etcd a raft
/// proposal and an fsync.
const RTT_FLOOR_US: u64 = 1_000;

/// Whether a round-trip time moved enough to be worth a write: by a factor of 2 or more,
/// and by at least [`RTT_FLOOR_US`].
fn rtt_moved(old: Option<u64>, new: Option<u64>) -> bool {
    match (old, new) {
        (None, None) => false,
        (Some(old), Some(new)) => {
            let (low, high) = (old.min(new), old.max(new));
            high >= 2 * low && high - low >= RTT_FLOOR_US
        }
        _ => true,
    }
}

/// Follows every terminal server's registration and view until `cancel` fires or the
/// receiver is dropped.
pub async fn watch_views(
    etcd: &Etcd,
    keys: &Keys,
    cancel: CancellationToken,
) -> Result<watch::Receiver<ClusterViews>, ClusterError> {
    let servers = keys.servers();
    let views = keys.views();
    let ranges = vec![Range::Prefix(servers.clone()), Range::Prefix(views.clone())];
    watched::follow(etcd, ranges, cancel, move |entries| {
        let mut out = ClusterViews::default();
        for (key, entry) in entries {
            if let Some(name) = key.strip_prefix(&servers) {
                match serde_json::from_slice::<ServerInfo>(&entry.value) {
                    Ok(info) => out.servers.insert(name.to_owned(), info),
                    Err(error) => {
                        warn!(%key, %error, "unreadable registration; counted without contact");
                        out.servers.insert(
                            name.to_owned(),
                            ServerInfo {
                                name: name.to_owned(),
                                contact: None,
                            },
                        )
                    }
                };
            } else if let Some(name) = key.strip_prefix(&views) {
                match serde_json::from_slice::<Views>(&entry.value) {
                    Ok(view) => {
                        out.views.insert(name.to_owned(), view);
                    }
                    Err(error) => warn!(%key, %error, "unreadable view; ignored"),
                }
            }
        }
        out
    })
    .await
}

/// `Health` as the JSON strings "up", "down" and "unknown" (the heartbeat crate has no
/// serde).
mod health_json {
    use heartbeat::Health;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(health: &Health, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match health {
            Health::Up => "up",
            Health::Down => "down",
            Health::Unknown => "unknown",
        })
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Health, D::Error> {
        match String::deserialize(d)?.as_str() {
            "up" => Ok(Health::Up),
            "down" => Ok(Health::Down),
            "unknown" => Ok(Health::Unknown),
            other => Err(serde::de::Error::unknown_variant(
                other,
                &["up", "down", "unknown"],
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(health: Health, since: u64, rtt: Option<u64>) -> MemberView {
        MemberView {
            health,
            since_unix_ms: since,
            rtt_us: rtt,
        }
    }

    fn pool(entries: &[(&str, MemberView)]) -> Views {
        entries.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect()
    }

    #[test]
    fn a_view_is_json_with_lowercase_health() {
        let views = pool(&[
            ("app1", view(Health::Up, 1000, Some(250))),
            ("app2", view(Health::Down, 2000, None)),
        ]);
        let json = serde_json::to_string(&views).unwrap();
        assert_eq!(
            json,
            r#"{"app1":{"health":"up","since_unix_ms":1000,"rtt_us":250},"app2":{"health":"down","since_unix_ms":2000}}"#
        );
        assert_eq!(serde_json::from_str::<Views>(&json).unwrap(), views);
        assert!(
            serde_json::from_str::<Views>(r#"{"a":{"health":"maybe","since_unix_ms":1}}"#).is_err()
        );
    }

    #[test]
    fn only_news_is_published() {
        let base = pool(&[
            ("app1", view(Health::Up, 1000, Some(250))),
            ("app2", view(Health::Up, 1000, Some(300))),
        ]);
        assert!(is_news(None, &base), "the first view is news");
        let p = Some(&base);
        assert!(!is_news(p, &base), "the same view is not");

        let mut jitter = base.clone();
        jitter.get_mut("app1").unwrap().rtt_us = Some(490);
        jitter.get_mut("app2").unwrap().rtt_us = Some(151);
        assert!(
            !is_news(p, &jitter),
            "round-trip jitter under a factor 2 is not"
        );

        let mut doubled = base.clone();
        doubled.get_mut("app1").unwrap().rtt_us = Some(500);
        assert!(
            !is_news(p, &doubled),
            "a doubled one under a millisecond is jitter too"
        );
        doubled.get_mut("app1").unwrap().rtt_us = Some(1_250);
        assert!(
            is_news(p, &doubled),
            "a round-trip time up by 1 ms and more is"
        );
        let slow = pool(&[("app1", view(Health::Up, 1000, Some(4_000)))]);
        let mut halved = slow.clone();
        halved.get_mut("app1").unwrap().rtt_us = Some(2_000);
        assert!(is_news(Some(&slow), &halved), "a halved one too");

        let mut down = base.clone();
        *down.get_mut("app1").unwrap() = view(Health::Down, 5000, None);
        assert!(is_news(p, &down), "a health change is");
        let mut since = base.clone();
        since.get_mut("app1").unwrap().since_unix_ms = 1001;
        assert!(is_news(p, &since), "a new since is");
        let mut fewer = base.clone();
        fewer.remove("app2");
        assert!(is_news(p, &fewer), "another set of members is");
        let mut renamed = fewer.clone();
        renamed.insert("app3".into(), base["app2"]);
        assert!(is_news(p, &renamed), "same count, other members is");
    }

    #[test]
    fn rtt_moves_by_a_factor_of_two_and_a_millisecond() {
        assert!(!rtt_moved(None, None));
        assert!(rtt_moved(None, Some(1)));
        assert!(rtt_moved(Some(1), None));
        assert!(!rtt_moved(Some(1_000), Some(1_999)));
        assert!(rtt_moved(Some(1_000), Some(2_000)));
        assert!(rtt_moved(Some(2_000), Some(1_000)));
        // Loopback and LAN jitter: a factor of 10, but well under a millisecond.
        assert!(!rtt_moved(Some(40), Some(400)));
        assert!(!rtt_moved(Some(0), Some(999)));
        assert!(rtt_moved(Some(0), Some(1_000)));
    }
}
