//! Coordination between several terminal servers through etcd: leases, leadership,
//! state writes fenced by leadership, and the shared observation of the pool.
//!
//! The shape is that of etcd's Go `concurrency` package. A [`Session`] owns one lease and
//! its keep-alive, and knows locally until when the lease is surely still valid. An
//! [`Election`] campaigns, proclaims, observes and resigns on top of a session; winning
//! gives a [`Leadership`] token. The [`Store`] writes the daemon's state only while that
//! token still holds (an etcd transaction compares the leader key), so a deposed leader
//! cannot write. [`observe`] publishes each terminal server's view of the pool under its
//! own lease and follows everybody's; [`quorum`] turns those views into one verdict per
//! member, without I/O. Callers never see lease ids.
//!
//! The keys, under `<prefix><zone>/` ([`Keys`]):
//!
//! | key | value | lease | written by |
//! |---|---|---|---|
//! | `leader` | [`ServerInfo`] JSON of the leader | leader's session | [`Election`] |
//! | `state` | the daemon's state, opaque bytes | none | [`Store::write`], leader only |
//! | `epochs/<service>/<epoch, 20 digits>` | opaque bytes, created once | none | [`Store::write`] extras, leader only |
//! | `servers/<name>` | [`ServerInfo`] JSON | that server's session | [`observe::ViewPublisher`] |
//! | `views/<name>` | [`observe::Views`] JSON | that server's session | [`observe::ViewPublisher`] |
//!
//! Nothing here reads the daemon's types: state is bytes, so the controller can change
//! without this layer noticing.

pub mod config;
pub mod election;
pub mod error;
pub mod etcd;
pub mod observe;
pub mod quorum;
pub mod session;
pub mod store;
mod watched;

pub use config::ClusterConfig;
pub use election::{Election, Leader, Leadership, ServerInfo};
pub use error::{ClusterError, LostReason};
pub use etcd::{Etcd, Keys};
pub use session::{Session, Validity};
pub use store::{ExtraPut, Store, Versioned};
