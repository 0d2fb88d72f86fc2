//! Who is on the other end of a control connection, as every action's log line and
//! event name it: the peer's credentials on the Unix socket, its address on TCP, and the
//! operator name it gives.

use std::net::SocketAddr;

use axum::http::HeaderMap;
use tokio::net::{TcpStream, UnixStream};

/// Header a client may set to name the operator behind an action.
pub const OPERATOR_HEADER: &str = "x-dnsd-operator";

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub(super) enum Peer {
    Unix { uid: Option<u32>, pid: Option<i32> },
    Tcp(SocketAddr),
}

impl Peer {
    /// The peer of a Unix-socket connection: its credentials, as the kernel reports them.
    pub(super) fn of_unix(io: &UnixStream, _: &tokio::net::unix::SocketAddr) -> Peer {
        let cred = io.peer_cred().ok();
        Peer::Unix {
            uid: cred.map(|c| c.uid()),
            pid: cred.and_then(|c| c.pid()),
        }
    }

    pub(super) fn of_tcp(_: &TcpStream, addr: &SocketAddr) -> Peer {
        Peer::Tcp(*addr)
    }
}

impl Peer {
    pub(super) fn describe(&self, headers: &HeaderMap) -> String {
        let base = match self {
            Peer::Unix { uid, pid } => format!(
                "unix uid={} pid={}",
                uid.map_or("?".to_owned(), |u| u.to_string()),
                pid.map_or("?".to_owned(), |p| p.to_string())
            ),
            Peer::Tcp(addr) => format!("tcp {addr}"),
        };
        match headers.get(OPERATOR_HEADER).and_then(|v| v.to_str().ok()) {
            Some(name) => {
                // Free text from the client: keep it short and printable in logs.
                let clean: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
                format!("{clean} ({base})")
            }
            None => base,
        }
    }
}
