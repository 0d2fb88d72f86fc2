//! Batched UDP I/O with `recvmmsg(2)` and `sendmmsg(2)`: one system call moves up to
//! [`BATCH`] datagrams each way, which is most of what a query costs on this path.
//!
//! The unsafe code is confined here. Every pointer handed to the kernel points into
//! buffers owned by [`Batch`], rebuilt right before each call, and lives until the call
//! returns.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Datagrams moved per system call at most.
pub(super) const BATCH: usize = 32;
/// Largest query we accept; EDNS clients may send up to this.
const MAX_QUERY: usize = 4096;

/// Receive buffers for one socket: up to [`BATCH`] datagrams and their senders.
pub(super) struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    peers: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    received: usize,
}

/// Responses waiting to be sent in one `sendmmsg`.
pub(super) struct SendBatch {
    bufs: Vec<Vec<u8>>,
    peers: Vec<libc::sockaddr_storage>,
    queued: usize,
}

/// The sender of a received datagram, opaque outside this module.
#[derive(Clone, Copy)]
pub(super) struct Peer(libc::sockaddr_storage);

impl RecvBatch {
    pub(super) fn new() -> RecvBatch {
        RecvBatch {
            bufs: (0..BATCH)
                .map(|_| vec![0u8; MAX_QUERY].into_boxed_slice())
                .collect(),
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            peers: vec![unsafe { zeroed() }; BATCH],
            lens: vec![0; BATCH],
            received: 0,
        }
    }

    /// Blocks until at least one datagram arrives (or the socket's read timeout), then
    /// takes up to [`BATCH`] without waiting for more. Returns how many arrived.
    pub(super) fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.received = 0;
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
            iov_base: self.bufs[i].as_mut_ptr().cast(),
            iov_len: MAX_QUERY,
        });
        // SAFETY: mmsghdr is plain old data; zero is "no name, no control, no iov".
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, h) in hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_name = (&raw mut self.peers[i]).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &raw mut iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a buffer and an address slot owned by self (or
        // by `iovecs` on this stack frame), sized as declared, alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (n as usize).min(BATCH);
        for (len, h) in self.lens.iter_mut().zip(&hdrs).take(n) {
            *len = h.msg_len as usize;
        }
        self.received = n;
        Ok(n)
    }

    /// Datagram `i` of the last [`recv`](Self::recv) and its sender.
    pub(super) fn get(&self, i: usize) -> Option<(&[u8], Peer)> {
        if i >= self.received {
            return None;
        }
        let data = self.bufs.get(i)?.get(..*self.lens.get(i)?)?;
        Some((data, Peer(*self.peers.get(i)?)))
    }
}

impl SendBatch {
    pub(super) fn new(response_capacity: usize) -> SendBatch {
        SendBatch {
            bufs: (0..BATCH)
                .map(|_| Vec::with_capacity(response_capacity))
                .collect(),
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            peers: vec![unsafe { zeroed() }; BATCH],
            queued: 0,
        }
    }

    /// The buffer for the next response; [`commit`](Self::commit) queues it.
    pub(super) fn next_buffer(&mut self) -> &mut Vec<u8> {
        let slot = self.queued.min(BATCH - 1);
        &mut self.bufs[slot]
    }

    /// Queues the buffer last handed out by [`next_buffer`](Self::next_buffer) for `to`.
    pub(super) fn commit(&mut self, to: Peer) {
        if self.queued < BATCH {
            self.peers[self.queued] = to.0;
            self.queued += 1;
        }
    }

    /// Sends every queued response. A datagram the kernel refuses (e.g. an unreachable
    /// peer) is skipped so the others still go; the last such error is returned.
    pub(super) fn send(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let count = self.queued;
        self.queued = 0;
        if count == 0 {
            return Ok(0);
        }
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
            iov_base: self.bufs[i].as_mut_ptr().cast(),
            iov_len: self.bufs[i].len(),
        });
        // SAFETY: as in recv.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, h) in hdrs.iter_mut().enumerate().take(count) {
            h.msg_hdr.msg_name = (&raw mut self.peers[i]).cast();
            h.msg_hdr.msg_namelen = sockaddr_len(&self.peers[i]);
            h.msg_hdr.msg_iov = &raw mut iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        let mut last_error = None;
        while sent < count {
            // SAFETY: headers sent..count point at response buffers and addresses owned
            // by self and at `iovecs`, all alive for the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    hdrs.as_mut_ptr().add(sent),
                    (count - sent) as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    sent += 1;
                    last_error = Some(e);
                }
                continue;
            }
            sent += n as usize;
        }
        match last_error {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }
}

impl Peer {
    /// The sender's address.
    pub(super) fn addr(&self) -> Option<SocketAddr> {
        to_socket_addr(&self.0)
    }

    /// The sender's IP address (what transfer access is decided on).
    pub(super) fn ip(&self) -> Option<IpAddr> {
        self.addr().map(|a| a.ip())
    }
}

fn to_socket_addr(addr: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it can hold.
            let a: &libc::sockaddr_in = unsafe { &*(addr as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(a.sin_addr.s_addr).into(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which it can hold.
            let a: &libc::sockaddr_in6 =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn sockaddr_len(addr: &libc::sockaddr_storage) -> libc::socklen_t {
    match addr.ss_family as libc::c_int {
        libc::AF_INET => size_of::<libc::sockaddr_in>() as libc::socklen_t,
        libc::AF_INET6 => size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        _ => size_of::<libc::sockaddr_storage>() as libc::socklen_t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::time::Duration;

    #[test]
    fn batch_receives_several_and_answers_each_sender() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let addr = server.local_addr().unwrap();
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(format!("q{i}").as_bytes(), addr).unwrap();
        }
        let (mut rx, mut tx) = (RecvBatch::new(), SendBatch::new(64));
        let mut got = 0;
        while got < 3 {
            let n = rx.recv(server.as_fd()).unwrap();
            for i in 0..n {
                let (q, peer) = rx.get(i).unwrap();
                assert_eq!(peer.addr().unwrap().ip(), addr.ip());
                let buf = tx.next_buffer();
                buf.clear();
                buf.extend_from_slice(b"re:");
                buf.extend_from_slice(q);
                tx.commit(peer);
            }
            assert!(rx.get(n).is_none());
            assert_eq!(tx.send(server.as_fd()).unwrap(), n);
            got += n;
        }
        for (i, c) in clients.iter().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 16];
            let len = c.recv(&mut b).unwrap();
            assert_eq!(&b[..len], format!("re:q{i}").as_bytes());
        }
    }

    #[test]
    fn ipv6_peers_round_trip() {
        let Ok(server) = std::net::UdpSocket::bind("[::1]:0") else {
            eprintln!("SKIPPED ipv6_peers_round_trip: no IPv6 loopback on this machine");
            return;
        };
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let client = std::net::UdpSocket::bind("[::1]:0").unwrap();
        client.send_to(b"x", server.local_addr().unwrap()).unwrap();
        let (mut rx, mut tx) = (RecvBatch::new(), SendBatch::new(8));
        assert_eq!(rx.recv(server.as_fd()).unwrap(), 1);
        let (_, peer) = rx.get(0).unwrap();
        assert_eq!(peer.addr(), Some(client.local_addr().unwrap()));
        tx.next_buffer().extend_from_slice(b"y");
        tx.commit(peer);
        tx.send(server.as_fd()).unwrap();
        let mut b = [0u8; 4];
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(client.recv(&mut b).unwrap(), 1);
    }
}
