//! Blocking network probes that show what a test host answers: a TCP connect, RFC 862 echo
//! round trips over TCP and UDP, the SSH banner. The lab waits for readiness with them and tests
//! use them to check the effect of each fault, from the root namespace or (through
//! [`Lab::in_netns`](super::Lab::in_netns)) from inside another host.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

/// What a TCP connection attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The handshake completed: something listens there.
    Connected,
    /// The address answered with a reset: it is up, but nothing listens on that port.
    Refused,
    /// No answer at all (timeout, or the neighbour never answered ARP): the address cannot be
    /// reached. Carries the error kind seen, for failure messages.
    Unreachable(io::ErrorKind),
}

/// Tries one TCP connection to `addr` and tells which of the three outcomes it met.
pub fn tcp_connect(addr: SocketAddr, timeout: Duration) -> Reach {
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => Reach::Connected,
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => Reach::Refused,
        Err(error) => Reach::Unreachable(error.kind()),
    }
}

/// Sends `payload` to the TCP echo service at `addr` and returns what came back (as many bytes
/// as were sent, unless the service closed early). Writes and reads at the same time, so a large
/// payload cannot deadlock on full buffers.
pub fn tcp_echo(addr: SocketAddr, payload: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut writer = stream.try_clone()?;
    thread::scope(|scope| {
        let sender = scope.spawn(move || -> io::Result<()> {
            writer.write_all(payload)?;
            writer.shutdown(Shutdown::Write)
        });
        let mut echoed = Vec::with_capacity(payload.len());
        let limit = u64::try_from(payload.len()).unwrap_or(u64::MAX);
        let read = (&stream).take(limit).read_to_end(&mut echoed);
        let sent = sender
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("echo writer panicked")));
        sent?;
        read?;
        Ok(echoed)
    })
}

/// Sends one datagram to the UDP echo service at `addr` and returns the round-trip time of its
/// echo. An ICMP port-unreachable answer shows as `ConnectionRefused`, silence as `TimedOut`.
pub fn udp_echo(addr: SocketAddr, payload: &[u8], timeout: Duration) -> io::Result<Duration> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(addr)?;
    let sent = Instant::now();
    socket.send(payload)?;
    let deadline = sent + timeout;
    let mut buf = vec![0; payload.len() + 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no UDP echo"));
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv(&mut buf) {
            Ok(n) if buf[..n] == *payload => return Ok(sent.elapsed()),
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if is_timeout(&error) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no UDP echo"));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Sends `count` numbered datagrams to the UDP echo service at `addr`, 5 ms apart, then waits
/// up to `wait` after the last one; returns how many distinct ones were echoed. For measuring
/// loss without waiting out a timeout per lost probe.
pub fn udp_echo_batch(addr: SocketAddr, count: usize, wait: Duration) -> io::Result<usize> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(addr)?;
    let nonce: u64 = rand::random();
    let mut answered = vec![false; count];
    let mut buf = [0; 64];
    let mut collect = |socket: &UdpSocket, answered: &mut [bool]| -> io::Result<()> {
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    let index = text
                        .strip_prefix(&format!("probe {nonce} "))
                        .and_then(|i| i.parse::<usize>().ok());
                    if let Some(seen) = index.and_then(|i| answered.get_mut(i)) {
                        *seen = true;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if is_timeout(&error) => return Ok(()),
                // A refused probe is a lost probe here; keep counting the others.
                Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    };
    socket.set_read_timeout(Some(Duration::from_millis(5)))?;
    for i in 0..count {
        socket.send(format!("probe {nonce} {i}").as_bytes())?;
        collect(&socket, &mut answered)?;
    }
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline && answered.iter().any(|seen| !seen) {
        collect(&socket, &mut answered)?;
    }
    Ok(answered.iter().filter(|seen| **seen).count())
}

/// Connects to the SSH server at `addr` and returns its identification line (`SSH-2.0-...`).
pub fn ssh_banner(addr: SocketAddr, timeout: Duration) -> io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.starts_with("SSH-") {
        Ok(line.trim_end().to_owned())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an SSH banner: {line:?}"),
        ))
    }
}

/// Calls `check` every 20 ms until it returns `Some`, for at most `timeout`; returns the last
/// answer. For waiting on something that happens soon, without a fixed sleep.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
