//! Helpers for the tests of this crate that need an SSH endpoint that is not there.

/// A TCP port on 127.0.0.1 that refuses connections for as long as the returned socket
/// lives: bound, never listening, so no other socket can take the port meanwhile (a
/// listener dropped to free its port could be replaced by another test's).
pub(crate) fn refusing_port() -> (std::os::fd::OwnedFd, u16) {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: plain socket calls on a descriptor this function owns; the address structs
    // are fully initialised and their sizes are passed with them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let raw = fd.as_raw_fd();
        let sockaddr = (&raw mut addr).cast::<libc::sockaddr>();
        assert_eq!(
            libc::bind(raw, sockaddr, len),
            0,
            "bind: {}",
            io::Error::last_os_error()
        );
        assert_eq!(
            libc::getsockname(raw, sockaddr, &mut len),
            0,
            "getsockname: {}",
            io::Error::last_os_error()
        );
        (fd, u16::from_be(addr.sin_port))
    }
}
