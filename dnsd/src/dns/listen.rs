//! What DNS needs before it can serve, made ready at start so that a problem stops the
//! daemon before its ready line: sockets bound on every `dns.listen` address (TCP, and
//! `dns.threads` UDP sockets with `SO_REUSEPORT`), the NOTIFY sockets, the TSIG key.
//!
//! IPv6 sockets are `IPV6_V6ONLY`, so `[::]:53` and `0.0.0.0:53` bind side by side as
//! users write them. TCP is bound first and without `SO_REUSEPORT`: it is what keeps a
//! second dnsd (or another server) from sharing a port with this one unnoticed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::answer::Access;
use super::error::StartError;
use super::notify::NotifySettings;
use super::tsig::TsigKey;
use crate::config::DnsConfig;

/// Attempts at finding a port free on every address given with port 0.
const ATTEMPTS: usize = 20;
/// Pending connections the kernel queues per TCP listener.
const TCP_BACKLOG: i32 = 1024;

/// Everything DNS serves with, bound and loaded.
#[derive(Debug)]
pub struct Listeners {
    /// Per address, its UDP sockets (one per `dns.threads`).
    pub(super) udp: Vec<Vec<std::net::UdpSocket>>,
    pub(super) tcp: Vec<std::net::TcpListener>,
    pub(super) access: Access,
    pub(super) tcp_max_connections: usize,
    pub(super) tcp_idle_timeout: Duration,
    pub(super) notify: NotifySettings,
}

impl Listeners {
    /// Binds every `dns.listen` address and loads the TSIG key. Addresses with port 0
    /// share one port the kernel chooses, so `0.0.0.0:0` and `[::]:0` end up as one
    /// dual-stack service like `0.0.0.0:53` and `[::]:53` would.
    pub async fn bind(config: &DnsConfig) -> Result<Listeners, StartError> {
        let key = config.tsig.as_ref().map(TsigKey::load).transpose()?;
        let (udp, tcp) = bind_all(&config.listen, config.threads)?;
        let notify = NotifySettings {
            targets: config.notify.clone(),
            retry: config.notify_retry,
            key: key.clone(),
            v4: notify_socket(&config.notify, &config.listen, true)?,
            v6: notify_socket(&config.notify, &config.listen, false)?,
        };
        Ok(Listeners {
            udp,
            tcp,
            access: Access::new(config.allow_transfer.clone(), key),
            tcp_max_connections: config.tcp_max_connections,
            tcp_idle_timeout: config.tcp_idle_timeout,
            notify,
        })
    }

    /// The addresses actually bound (ports resolved), one per configured address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|sockets| sockets.first()?.local_addr().ok())
            .collect()
    }
}

type Bound = (Vec<Vec<std::net::UdpSocket>>, Vec<std::net::TcpListener>);

fn bind_all(addrs: &[SocketAddr], threads: usize) -> Result<Bound, StartError> {
    let mut attempt = 0;
    'attempt: loop {
        attempt += 1;
        let (mut udp, mut tcp) = (Vec::new(), Vec::new());
        let mut chosen: Option<u16> = None;
        for &addr in addrs {
            let wanted = match (addr.port(), chosen) {
                (0, Some(port)) => SocketAddr::new(addr.ip(), port),
                _ => addr,
            };
            match bind_address(wanted, threads) {
                Ok((u, t)) => {
                    if addr.port() == 0 && chosen.is_none() {
                        chosen = t.local_addr().ok().map(|a| a.port());
                    }
                    udp.push(u);
                    tcp.push(t);
                }
                // The port the kernel chose for the first address is taken on another:
                // start over with a new one.
                Err(StartError::Bind { error, .. })
                    if addr.port() == 0
                        && error.kind() == std::io::ErrorKind::AddrInUse
                        && attempt < ATTEMPTS =>
                {
                    continue 'attempt;
                }
                Err(e) => return Err(e),
            }
        }
        return Ok((udp, tcp));
    }
}

/// TCP, then `threads` UDP sockets on the same port.
fn bind_address(
    addr: SocketAddr,
    threads: usize,
) -> Result<(Vec<std::net::UdpSocket>, std::net::TcpListener), StartError> {
    let tcp = tcp_listener(addr).map_err(|error| StartError::Bind {
        proto: "TCP",
        addr,
        error,
    })?;
    let port = tcp.local_addr().map(|a| a.port()).unwrap_or(addr.port());
    let udp_addr = SocketAddr::new(addr.ip(), port);
    let udp = (0..threads.max(1))
        .map(|_| udp_socket(udp_addr, threads > 1))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|error| StartError::Bind {
            proto: "UDP",
            addr: udp_addr,
            error,
        })?;
    Ok((udp, tcp))
}

fn socket(addr: SocketAddr, kind: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket(addr, Type::STREAM, Protocol::TCP)?;
    // Restarting while old connections linger in TIME_WAIT must not fail.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn udp_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket(addr, Type::DGRAM, Protocol::UDP)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The socket NOTIFY goes out of for one address family, if any target has it: bound to
/// the first listen address of that family (so secondaries see NOTIFY come from the
/// address they transfer from), or to any address when dnsd listens on all.
fn notify_socket(
    targets: &[SocketAddr],
    listen: &[SocketAddr],
    v4: bool,
) -> Result<Option<std::net::UdpSocket>, StartError> {
    if !targets.iter().any(|t| t.is_ipv4() == v4) {
        return Ok(None);
    }
    let unspecified = if v4 {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let ip = listen
        .iter()
        .map(SocketAddr::ip)
        .find(|ip| ip.is_ipv4() == v4)
        .unwrap_or(unspecified);
    let addr = SocketAddr::new(ip, 0);
    let bound = socket(addr, Type::DGRAM, Protocol::UDP).and_then(|s| {
        s.bind(&addr.into())?;
        s.set_nonblocking(true)?;
        Ok(std::net::UdpSocket::from(s))
    });
    bound
        .map(Some)
        .map_err(|error| StartError::NotifySocket { addr, error })
}
