//! The demo's echo service stops as a crashed machine would: its open connection is
//! closed, new ones are refused, and it starts again on the same address.
//!
//! This test is alone in its binary on purpose. A process forked by a concurrent test
//! inherits the echo's sockets until it execs, and meanwhile keeps the listener
//! accepting and the address bound; in the library's tests, among others that start
//! processes, that made this test fail now and then.

use std::time::Duration;

use console::demo::echo::Echo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

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
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    assert!(TcpStream::connect(addr).await.is_err());
    // And it can start again on the same address.
    let _again = Echo::start(addr).unwrap();
}
