//! Echo servers for the tests, well-behaved and misbehaving, on loopback sockets the
//! tests bind themselves (port 0 unless two addresses must share a port).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use heartbeat::NONCE_LEN;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

/// What a test TCP server does with each connection.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TcpBehaviour {
    /// RFC 862: write back everything read, until the client closes.
    Echo,
    /// Accept and read, never write.
    Silent,
    /// Read the nonce and write it back with every byte inverted.
    Wrong,
    /// Read the nonce, write back its first `echo` bytes, then close.
    CloseAfter { echo: usize },
}

/// What a TCP server saw, for assertions.
#[derive(Debug, Default)]
pub(crate) struct TcpStats {
    /// Connections accepted so far.
    pub(crate) accepted: AtomicUsize,
    /// Connections currently open (accepted and not yet closed by the client).
    pub(crate) open: AtomicUsize,
    /// Connections the client ended with a FIN (read returned 0).
    pub(crate) clean_eof: AtomicUsize,
    /// Connections that ended with an error (e.g. a reset).
    pub(crate) errors: AtomicUsize,
    /// The first NONCE_LEN bytes received on each connection, in order.
    /// A std mutex: it is never held across an await.
    pub(crate) nonces: Mutex<Vec<Vec<u8>>>,
}

/// Binds 127.0.0.1:0 and serves it; returns the address and the shared stats.
pub(crate) async fn tcp_server(behaviour: TcpBehaviour) -> (SocketAddr, Arc<TcpStats>) {
    tcp_server_on(Ipv4Addr::LOCALHOST.into(), behaviour).await
}

/// Binds port 0 on `ip` and serves it; returns the address and the shared stats.
pub(crate) async fn tcp_server_on(
    ip: IpAddr,
    behaviour: TcpBehaviour,
) -> (SocketAddr, Arc<TcpStats>) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve_tcp(listener, behaviour))
}

/// Serves `listener` with `behaviour` on the current runtime until the test ends.
pub(crate) fn serve_tcp(listener: TcpListener, behaviour: TcpBehaviour) -> Arc<TcpStats> {
    let stats = Arc::new(TcpStats::default());
    let shared = stats.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            shared.accepted.fetch_add(1, Ordering::SeqCst);
            shared.open.fetch_add(1, Ordering::SeqCst);
            let stats = shared.clone();
            tokio::spawn(async move {
                let ended = handle_tcp(stream, behaviour, &stats).await;
                stats.open.fetch_sub(1, Ordering::SeqCst);
                match ended {
                    Ok(()) => stats.clean_eof.fetch_add(1, Ordering::SeqCst),
                    Err(_) => stats.errors.fetch_add(1, Ordering::SeqCst),
                };
            });
        }
    });
    stats
}

async fn handle_tcp(
    mut stream: TcpStream,
    behaviour: TcpBehaviour,
    stats: &TcpStats,
) -> std::io::Result<()> {
    let mut nonce = [0u8; NONCE_LEN];
    stream.read_exact(&mut nonce).await?;
    stats.nonces.lock().unwrap().push(nonce.to_vec());
    match behaviour {
        TcpBehaviour::Echo => stream.write_all(&nonce).await?,
        TcpBehaviour::Silent => {}
        TcpBehaviour::Wrong => {
            let inverted: Vec<u8> = nonce.iter().map(|b| !b).collect();
            stream.write_all(&inverted).await?;
        }
        TcpBehaviour::CloseAfter { echo } => {
            stream.write_all(&nonce[..echo]).await?;
            // Nothing unread is left, so this close sends a FIN, not a reset.
            return Ok(());
        }
    }
    // Keep echoing (or swallowing) until the client closes; 0 means a clean FIN.
    let mut buf = [0u8; 512];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if matches!(behaviour, TcpBehaviour::Echo) {
            stream.write_all(&buf[..n]).await?;
        }
    }
}

/// What a test UDP server does with each datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UdpBehaviour {
    /// RFC 862: send every datagram back.
    Echo,
    /// Receive, never answer.
    Silent,
    /// Answer the first datagram with its bytes inverted, then never answer again.
    GarbageOnce,
    /// Answer each datagram with the previous one (a late echo of an earlier probe;
    /// random bytes for the first) and then with the right bytes.
    StaleThenRight,
}

/// Binds a UDP socket on 127.0.0.1:0 and serves it until the test ends.
pub(crate) async fn udp_server(behaviour: UdpBehaviour) -> SocketAddr {
    udp_server_on(Ipv4Addr::LOCALHOST.into(), behaviour).await
}

/// Binds a UDP socket on port 0 of `ip` and serves it until the test ends.
pub(crate) async fn udp_server_on(ip: IpAddr, behaviour: UdpBehaviour) -> SocketAddr {
    let socket = UdpSocket::bind((ip, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    serve_udp(socket, behaviour);
    addr
}

/// Serves `socket` with `behaviour` on the current runtime until the test ends.
pub(crate) fn serve_udp(socket: UdpSocket, behaviour: UdpBehaviour) {
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        let mut previous: Vec<u8> = (0..NONCE_LEN as u8).map(|b| b ^ 0x5a).collect();
        let mut answered = 0usize;
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let got = buf[..n].to_vec();
            match behaviour {
                UdpBehaviour::Echo => {
                    socket.send_to(&got, peer).await.unwrap();
                }
                UdpBehaviour::Silent => {}
                UdpBehaviour::GarbageOnce => {
                    if answered == 0 {
                        let inverted: Vec<u8> = got.iter().map(|b| !b).collect();
                        socket.send_to(&inverted, peer).await.unwrap();
                    }
                }
                UdpBehaviour::StaleThenRight => {
                    socket.send_to(&previous, peer).await.unwrap();
                    socket.send_to(&got, peer).await.unwrap();
                }
            }
            answered += 1;
            previous = got;
        }
    });
}

/// A loopback TCP address that refuses connections while the returned socket lives: it
/// is bound but never listens, so no other socket can take the port meanwhile.
pub(crate) fn refusing_tcp_port() -> (TcpSocket, SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// A loopback UDP address on which nothing listens: bound to port 0, read back and
/// released. (A UDP socket that stays bound would receive, not refuse; another process
/// could take the port in between, which on a test machine is rare enough.)
pub(crate) async fn closed_udp_port() -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    socket.local_addr().unwrap()
}

/// Two TCP listeners on the same port, on 127.0.0.1 and 127.0.0.2, for a monitor
/// whose targets share the echo port. Retries a bounded number of times if the port
/// picked for the first is taken on the second.
pub(crate) async fn tcp_listener_pair() -> (TcpListener, TcpListener) {
    for _ in 0..20 {
        let first = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = first.local_addr().unwrap().port();
        if let Ok(second) = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), port)).await {
            return (first, second);
        }
    }
    panic!("could not bind 127.0.0.1 and 127.0.0.2 on a common port in 20 tries");
}

/// Two UDP sockets on the same port, on 127.0.0.1 and 127.0.0.2.
pub(crate) async fn udp_socket_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..20 {
        let first = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = first.local_addr().unwrap().port();
        if let Ok(second) = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), port)).await {
            return (first, second);
        }
    }
    panic!("could not bind 127.0.0.1 and 127.0.0.2 on a common UDP port in 20 tries");
}
