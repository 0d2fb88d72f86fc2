//! The `slow` fault's link impairment: a relay that moves Ethernet frames between two interfaces,
//! holding each one for a fixed delay and dropping a random fraction, in both directions.
//!
//! It stands in for `tc qdisc ... netem`: the kernel of the machine the lab was built on has no
//! `sch_netem` (`CONFIG_NET_SCH_NETEM` is unset) and no tc drop action, so delay and loss cannot
//! be had from the traffic-control layer. The lab instead takes the host's root-side veth out of
//! the bridge and splices this relay between it and a fresh veth pair whose other end joins the
//! bridge in its place:
//!
//! ```text
//!   host netns            root netns
//!   eth0 ==veth== dlXXXX-vN <-relay-> dlXXXX-yN ==veth== dlXXXX-xN -- bridge
//! ```
//!
//! Each side is an `AF_PACKET` raw socket bound to one interface. Frames the kernel reports as
//! `PACKET_OUTGOING` are the relay's own transmissions and are skipped, so nothing loops. The
//! sockets use `PACKET_VNET_HDR`: veths pass TCP segmentation-offload super-frames and frames
//! whose checksum is still to be filled in, and the virtio-net header carried with each frame
//! lets the kernel finish both on the far side, as it would have without the relay.

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::error::LabError;

/// How often blocked relay threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Large enough for a 64 KiB offload super-frame plus its headers.
const FRAME_BUF: usize = 128 * 1024;

/// A running relay between two interfaces. Stopping (or dropping) it joins its threads.
pub(crate) struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Starts relaying between interfaces `a` and `b` (both up, in the root namespace), with
    /// `delay` added and a `loss` fraction (0.0..=1.0) of frames dropped in each direction.
    /// `name` prefixes the thread names (at most 12 characters keep them readable in `ps`).
    pub(crate) fn start(
        name: &str,
        a: &str,
        b: &str,
        delay: Duration,
        loss: f64,
    ) -> Result<Relay, LabError> {
        let a_sock = Arc::new(open(a)?);
        let b_sock = Arc::new(open(b)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut relay = Relay {
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        for (tag, from, to) in [("a", &a_sock, &b_sock), ("b", &b_sock, &a_sock)] {
            let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
            let (from, stop_r) = (Arc::clone(from), Arc::clone(&stop));
            let reader = thread::Builder::new()
                .name(format!("{name}r{tag}"))
                .spawn(move || receive(&from, &tx, &stop_r, delay, loss));
            let (to, stop_s) = (Arc::clone(to), Arc::clone(&stop));
            let sender = thread::Builder::new()
                .name(format!("{name}s{tag}"))
                .spawn(move || send(&to, &rx, &stop_s));
            for spawned in [reader, sender] {
                // On error `relay` is dropped, which stops and joins what already runs.
                relay
                    .threads
                    .push(spawned.map_err(|source| LabError::Relay {
                        interface: a.to_owned(),
                        action: "spawn a relay thread",
                        source,
                    })?);
            }
        }
        Ok(relay)
    }

    /// Stops the relay and waits for its threads.
    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            // A relay thread that panicked has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads frames arriving on `sock`, drops a `loss` fraction, and queues the rest with the time
/// they are due to go out.
fn receive(
    sock: &OwnedFd,
    queue: &mpsc::Sender<(Instant, Vec<u8>)>,
    stop: &AtomicBool,
    delay: Duration,
    loss: f64,
) {
    let mut buf = vec![0u8; FRAME_BUF];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: an all-zero sockaddr_ll is a valid value of this plain C struct.
        let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
        let mut from_len = socklen_of::<libc::sockaddr_ll>();
        // SAFETY: `buf` and `from` are valid for writes of the lengths passed, for the call.
        let n = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&raw mut from).cast(),
                &mut from_len,
            )
        };
        let Ok(n) = usize::try_from(n) else {
            // Timeouts (to look at `stop`) and interrupted calls; anything else, such as the
            // interface going down under a `cut`, is retried at the same pace.
            let error = io::Error::last_os_error();
            if !matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) {
                thread::sleep(POLL);
            }
            continue;
        };
        if from.sll_pkttype == libc::PACKET_OUTGOING || n > buf.len() {
            continue;
        }
        if loss > 0.0 && rand::random_bool(loss) {
            continue;
        }
        if queue
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
        {
            return;
        }
    }
}

/// Sends each queued frame out of `sock` once it is due. Frames are queued in arrival order with
/// the same delay, so the head of the queue is always the next one due.
fn send(sock: &OwnedFd, queue: &mpsc::Receiver<(Instant, Vec<u8>)>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let (due, frame) = match queue.recv_timeout(POLL) {
            Ok(item) => item,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        loop {
            let left = due.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(left.min(POLL));
        }
        // SAFETY: `frame` is valid for reads of its length for the call.
        // A failed send (interface down, queue full) is a lost frame, as on a real link.
        let _ = unsafe { libc::send(sock.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    }
}

/// Opens an `AF_PACKET` socket that sees every frame arriving on `interface` and sends frames out
/// of it, each frame preceded by its virtio-net header.
fn open(interface: &str) -> Result<OwnedFd, LabError> {
    let fail = |action: &'static str| {
        let source = io::Error::last_os_error();
        move || LabError::Relay {
            interface: interface.to_owned(),
            action,
            source,
        }
    };
    let name = CString::new(interface).map_err(|_| LabError::Relay {
        interface: interface.to_owned(),
        action: "name the interface",
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    let index = i32::try_from(index)
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(fail("find the interface"))?;
    let all = u16::try_from(libc::ETH_P_ALL).unwrap_or_default().to_be();
    // SAFETY: socket takes plain integers and returns a new descriptor or -1.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(all),
        )
    };
    if raw < 0 {
        return Err(fail("open a packet socket")());
    }
    // SAFETY: `raw` is a descriptor that socket just returned and nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let fd = sock.as_raw_fd();

    let on: libc::c_int = 1;
    // SAFETY: the option value points at a c_int that lives for the call.
    if unsafe { setsockopt(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &on) } != 0 {
        return Err(fail("enable PACKET_VNET_HDR")());
    }
    // SAFETY: an all-zero sockaddr_ll is a valid value of this plain C struct.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or_default();
    addr.sll_protocol = all;
    addr.sll_ifindex = index;
    // SAFETY: `addr` is a sockaddr_ll of the length passed, alive for the call.
    let rc = unsafe {
        libc::bind(
            fd,
            (&raw const addr).cast(),
            socklen_of::<libc::sockaddr_ll>(),
        )
    };
    if rc != 0 {
        return Err(fail("bind the packet socket")());
    }
    // Promiscuous membership: the relay must see frames addressed to any MAC, not only the
    // interface's own.
    // SAFETY: an all-zero packet_mreq is a valid value of this plain C struct.
    let mut membership: libc::packet_mreq = unsafe { mem::zeroed() };
    membership.mr_ifindex = index;
    membership.mr_type = u16::try_from(libc::PACKET_MR_PROMISC).unwrap_or_default();
    // SAFETY: the option value points at a packet_mreq that lives for the call.
    if unsafe {
        setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &membership,
        )
    } != 0
    {
        return Err(fail("join promiscuous mode")());
    }
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: libc::suseconds_t::try_from(POLL.as_micros()).unwrap_or(50_000),
    };
    // SAFETY: the option value points at a timeval that lives for the call.
    if unsafe { setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout) } != 0 {
        return Err(fail("set the receive timeout")());
    }
    Ok(sock)
}

/// `setsockopt` with a typed option value.
///
/// # Safety
/// `T` must be the C type the kernel expects for this option.
unsafe fn setsockopt<T>(fd: libc::c_int, level: libc::c_int, name: libc::c_int, value: &T) -> i32 {
    // SAFETY: `value` is a valid reference of the size passed; the caller vouches for its type.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            socklen_of::<T>(),
        )
    }
}

fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}
