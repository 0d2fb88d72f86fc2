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
pub(crate) struct Echo {
    tasks: Vec<JoinHandle<()>>,
}

impl Echo {
    /// Binds TCP and UDP on `addr` and starts answering. Must run inside the runtime.
    pub(crate) fn start(addr: SocketAddr) -> io::Result<Echo> {
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
    pub(crate) fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    /// Stops answering and returns once the sockets are closed, so that the address is
    /// free and a connection is refused.
    #[cfg(test)]
    pub(crate) async fn shut(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echoes_on_tcp_and_udp_and_stops() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let mut echo = Echo::start(addr).unwrap();
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");

        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp.send_to(b"pong", addr).await.unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = udp.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"pong");

        echo.shut().await;
        // The open connection is closed and new ones are refused.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            conn.read_to_end(&mut rest),
        )
        .await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        assert!(TcpStream::connect(addr).await.is_err());
        // And it can start again on the same address.
        let _again = Echo::start(addr).unwrap();
    }
}
