//! How the running `dnsd` serves DNS: IPv4 and IPv6 wildcards side by side on one port,
//! the TCP connection cap under many idle clients, `etc/dnsd-mirrored.toml` starting as
//! written (on port 53 of both families, in a network namespace of its own), and the
//! daemon exiting with the error when its TCP listener dies under it.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use integration::dig::{dig, dig_short};
use integration::harness::{Dnsd, require_tools, wait_for};
use integration::lab::in_ci;

fn config(dir: &Path, dns: &str) -> String {
    format!(
        r#"
[dns]
zone = "svc.test."
nameservers = [{{ name = "ns1.svc.test.", address = "127.0.0.1" }}]
{dns}
[control]
socket = "{dir}/control.sock"
[state]
dir = "{dir}/state"
[[node]]
name = "app1"
address = "127.0.0.1"
[[service]]
name = "www"
nodes = ["app1"]
"#,
        dir = dir.display()
    )
}

/// Whether this machine has IPv6 on loopback; in CI its absence is a failure.
fn have_ipv6_loopback(test: &str) -> bool {
    if std::net::UdpSocket::bind("[::1]:0").is_ok() {
        return true;
    }
    if in_ci() {
        panic!("{test}: no IPv6 loopback (::1) on this machine");
    }
    eprintln!("SKIPPED {test}: no IPv6 loopback (::1) (CI=true makes this a failure)");
    false
}

#[test]
fn ipv4_and_ipv6_wildcards_share_one_port() {
    let test = "ipv4_and_ipv6_wildcards_share_one_port";
    if !require_tools(test, &["dig"]) || !have_ipv6_loopback(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Port 0 on both: one port the kernel chooses, as "0.0.0.0:53" and "[::]:53" would;
    // three UDP sockets per address (SO_REUSEPORT).
    let dnsd = Dnsd::start(
        dir.path(),
        &config(
            dir.path(),
            r#"listen = ["0.0.0.0:0", "[::]:0"]
threads = 3"#,
        ),
        &[],
    )
    .unwrap();
    let addrs = &dnsd.ready().dns;
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    assert_eq!(addrs[0].port(), addrs[1].port(), "{addrs:?}");
    let port = addrs[0].port();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).unwrap();
        let bound = text
            .lines()
            .skip(1)
            .filter(|l| {
                let local = l.split_whitespace().nth(1).unwrap_or_default();
                local.rsplit(':').next() == Some(&format!("{port:04X}"))
            })
            .count();
        assert_eq!(bound, 3, "{table}: dns.threads sockets on port {port}");
    }
    for ip in ["127.0.0.1", "::1"] {
        let server = SocketAddr::new(ip.parse().unwrap(), port);
        for t in ["+notcp", "+tcp"] {
            let out = dig(server, &[t, "www.svc.test.", "A"]);
            assert!(
                out.contains("status: NOERROR") && out.contains("127.0.0.1"),
                "{ip} {t}: {out}"
            );
        }
    }
}

#[test]
fn many_idle_tcp_connections_do_not_lock_out_other_clients() {
    let test = "many_idle_tcp_connections_do_not_lock_out_other_clients";
    if !require_tools(test, &["dig"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dnsd = Dnsd::start(
        dir.path(),
        &config(
            dir.path(),
            r#"listen = ["127.0.0.1:0"]
tcp_max_connections = 8
tcp_idle_timeout = "10m""#,
        ),
        &[],
    )
    .unwrap();
    let dns = dnsd.dns();
    // Five times the cap in connections that never send a query, and an idle timeout
    // far longer than the test: only making room for newcomers lets them in.
    let idle: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(dns).unwrap()).collect();
    for _ in 0..3 {
        let out = dig(dns, &["+tcp", "www.svc.test.", "A"]);
        assert!(out.contains("status: NOERROR"), "{out}");
    }
    // Most of the idle connections have been closed by the server.
    let closed = idle
        .iter()
        .filter(|s| {
            use std::io::Read;
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            matches!((&mut &**s).read(&mut [0u8; 1]), Ok(0) | Err(_))
        })
        .count();
    assert!(closed >= 40 - 8, "{closed} of 40 idle connections closed");
}

/// Runs `f` on a thread of its own inside a new, empty network namespace (loopback up):
/// every process it starts lives there, so port 53 is free and nothing else is reached.
fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare(2) with CLONE_NEWNET only moves this thread to a new
                // network namespace; no memory is involved.
                assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
                let up = Command::new("ip")
                    .args(["link", "set", "lo", "up"])
                    .status();
                assert!(up.is_ok_and(|s| s.success()), "ip link set lo up");
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

#[test]
fn the_mirrored_example_starts_and_answers_on_port_53_of_both_families() {
    let test = "the_mirrored_example_starts_and_answers_on_port_53_of_both_families";
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            !in_ci(),
            "{test}: needs root (a network namespace of its own)"
        );
        eprintln!("SKIPPED {test}: not root (CI=true makes this a failure)");
        return;
    }
    if !require_tools(test, &["dig", "ip"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("control.token");
    std::fs::write(&token, "a-token-of-more-than-16-characters").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The file as it is in etc/, copied so that dnsd's log lands in the test's folder.
    let example = dir.path().join("dnsd-mirrored.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/dnsd-mirrored.toml"),
        &example,
    )
    .unwrap();
    // Only what points outside this test changes: the state and control paths, and
    // the control API's TCP address (192.0.2.50 is not ours). DNS stays as written.
    let paths = [
        (
            "DNSD_STATE__DIR",
            dir.path().join("state").display().to_string(),
        ),
        (
            "DNSD_CONTROL__SOCKET",
            dir.path().join("control.sock").display().to_string(),
        ),
        ("DNSD_CONTROL__TCP", "127.0.0.1:0".to_owned()),
        ("DNSD_CONTROL__TOKEN_FILE", token.display().to_string()),
    ];
    let env: Vec<(&str, &str)> = paths.iter().map(|(k, v)| (*k, v.as_str())).collect();
    in_new_netns(|| {
        let dnsd = Dnsd::start_with_file(&example, &env).unwrap();
        let want: Vec<SocketAddr> = vec!["0.0.0.0:53".parse().unwrap(), "[::]:53".parse().unwrap()];
        assert_eq!(dnsd.ready().dns, want);
        for ip in ["127.0.0.1", "::1"] {
            let server = SocketAddr::new(ip.parse().unwrap(), 53);
            // The members (192.0.2.x) are unreachable here: pg stays on db1.
            assert_eq!(
                dig_short(server, "pg.db.example.net.", "A"),
                vec!["192.0.2.11"],
                "{ip}"
            );
            let out = dig(server, &["+tcp", "db.example.net.", "NS"]);
            assert!(out.contains("ANSWER: 2,"), "{ip}: {out}");
        }
    });
}

/// Shuts down dnsd's TCP listener on `port` from outside: a copy of the socket taken
/// with pidfd_getfd(2), then shutdown(2), which makes every accept on it fail.
fn kill_tcp_listener(pid: u32, port: u16) -> bool {
    // SAFETY: plain system calls on descriptors this function owns and closes; the
    // buffers passed are local and sized as declared.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let mut found = false;
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
        {
            let Some(target) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, target, 0) as i32;
            if fd < 0 {
                continue;
            }
            let mut listening: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let ok = libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN,
                (&raw mut listening).cast(),
                &raw mut len,
            ) == 0;
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            let mut alen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let named = libc::getsockname(fd, (&raw mut addr).cast(), &raw mut alen) == 0;
            if ok
                && listening == 1
                && named
                && i32::from(addr.sin_family) == libc::AF_INET
                && u16::from_be(addr.sin_port) == port
            {
                found = libc::shutdown(fd, libc::SHUT_RDWR) == 0;
            }
            libc::close(fd);
        }
        libc::close(pidfd);
        found
    }
}

#[test]
fn dnsd_exits_with_the_error_when_its_tcp_listener_dies() {
    let test = "dnsd_exits_with_the_error_when_its_tcp_listener_dies";
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(!in_ci(), "{test}: needs root (pidfd_getfd on dnsd)");
        eprintln!("SKIPPED {test}: not root (CI=true makes this a failure)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut dnsd = Dnsd::start(
        dir.path(),
        &config(dir.path(), r#"listen = ["127.0.0.1:0"]"#),
        &[],
    )
    .unwrap();
    let dns = dnsd.dns();
    let pid = dnsd.ready().pid;
    assert!(
        kill_tcp_listener(pid, dns.port()),
        "no TCP listener on {dns} in dnsd"
    );
    // dnsd exits by itself: its process becomes a zombie (this test is its parent).
    let exited = wait_for(Duration::from_secs(30), Duration::from_millis(20), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat.rsplit(')').next()?.split_whitespace().next()?;
        (state == "Z").then_some(())
    });
    assert!(exited.is_some(), "dnsd kept running; log:\n{}", dnsd.log());
    let status = dnsd.stop().unwrap();
    assert!(!status.success(), "{status:?}");
    let log = dnsd.log();
    assert!(
        log.contains(&format!(
            "a serving task stopped unexpectedly: DNS TCP listener {dns} failed: Invalid argument"
        )),
        "{log}"
    );
}
