//! An RFC 862 echo service on TCP and UDP at one address, run inside the console for a
//! demo member: what dnsd's heartbeat probes. Stopping it closes its sockets and every
//! open connection at once, as a crashed machine would.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// A running echo service; stopped by [`Echo::stop`] or when dropped.
#[derive(Debug)]
pub struct Echo {
    tasks: Vec<JoinHandle<()>>,
}

impl Echo {
    /// Binds TCP and UDP on `addr` and starts answering. Must run inside the runtime.
    pub fn start(addr: SocketAddr) -> io::Result<Echo> {
        let tcp = bind_tcp(addr)?;
        let udp = std::net::UdpSocket::bind(addr)?;
        udp.set_nonblocking(true)?;
        let udp = UdpSocket::from_std(udp)?;
        Ok(Echo {
            tasks: vec![tokio::spawn(serve_tcp(tcp)), tokio::spawn(serve_udp(udp))],
        })
    }

    /// Stops answering: the sockets close and open connections are dropped (as soon as
    /// the runtime drops the aborted tasks: [`Echo::shut`] waits for that).
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    /// Stops answering and returns once this process has closed the sockets, so that the
    /// address is free and a connection is refused (unless a process forked meanwhile
    /// still holds them until it execs: `console/tests/echo.rs` says more).
    pub async fn shut(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            // An aborted task's handle resolves once its future (and its sockets) dropped.
            let _ = t.await;
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP listener with SO_REUSEADDR, so a revived member can bind again at once.
fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

async fn serve_tcp(listener: TcpListener) {
    // Connections live in this set: aborting the acceptor drops the set, which aborts
    // every connection with it.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(echo_connection(stream));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn echo_connection(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn serve_udp(socket: UdpSocket) {
    let mut buf = [0u8; 2048];
    loop {
        if let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            // A lost answer is a lost probe, which is what UDP echo means.
            let _ = socket.send_to(&buf[..n], peer).await;
        }
    }
}
