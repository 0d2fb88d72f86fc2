//! Standard DNS servers as secondaries of a running dnsd (the hidden-primary setup):
//! Knot and NSD started from the example configurations under `etc/secondaries/`, with
//! the test's own addresses, ports, directories and key put in, and stopped by PID.
//! Tests and the failover benchmark share it, so what they run is what the README shows.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::HarnessError;

/// The zone of the hidden-primary examples.
pub const ZONE: &str = "db.example.net.";
/// The key name of the examples.
pub const KEY_NAME: &str = "xfr.example.net.";
/// The placeholder secret the examples carry.
const EXAMPLE_SECRET: &str = "RXhhbXBsZSBvbmx5OiBnZW5lcmF0ZSB5b3VyIG93biBrZXku";

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Knot,
    Nsd,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Knot => "knot",
            Kind::Nsd => "nsd",
        }
    }

    /// The program that must be installed.
    pub fn program(self) -> &'static str {
        match self {
            Kind::Knot => "knotd",
            Kind::Nsd => "nsd",
        }
    }
}

/// Where a secondary listens, where its primary is, and the key they share.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    /// dnsd's DNS address.
    pub primary: SocketAddr,
    /// The address dnsd's NOTIFY comes from (its first listen address).
    pub notify_source: IpAddr,
    /// The secondary's own address and port.
    pub listen: SocketAddr,
    /// The base64 TSIG secret; `None` for unsigned transfers.
    pub secret: Option<&'a str>,
    /// A directory of its own (zone, journal, pid file, log).
    pub dir: &'a Path,
    /// Worker threads (benchmarks); `None` keeps the server's default.
    pub workers: Option<usize>,
}

/// The repository's `etc/` directory.
pub fn etc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc")
}

fn at(addr: SocketAddr) -> String {
    format!("{}@{}", addr.ip(), addr.port())
}

/// The example configuration of `kind` with `setup` put in.
pub fn config(kind: Kind, setup: &Setup<'_>) -> Result<String, HarnessError> {
    let file = etc_dir().join("secondaries").join(match kind {
        Kind::Knot => "knot.conf",
        Kind::Nsd => "nsd.conf",
    });
    let text = std::fs::read_to_string(&file).map_err(|error| HarnessError::Io {
        what: format!("read {}", file.display()),
        error,
    })?;
    let dir = setup.dir.display().to_string();
    let secret = setup.secret.unwrap_or(EXAMPLE_SECRET);
    let mut text = text
        .replace(EXAMPLE_SECRET, secret)
        .replace("192.0.2.50@53", &at(setup.primary))
        .replace("192.0.2.50", &setup.notify_source.to_string());
    match kind {
        Kind::Knot => {
            text = text
                .replace("192.0.2.53@53", &at(setup.listen))
                .replace("/run/knot", &dir)
                .replace("/var/lib/knot", &dir);
            if setup.secret.is_none() {
                text = text
                    .lines()
                    .filter(|l| l.trim() != format!("key: {KEY_NAME}"))
                    .map(|l| format!("{l}\n"))
                    .collect();
            }
            text.push_str(&format!(
                "\nlog:\n  - target: {dir}/knot.log\n    any: info\n"
            ));
            if let Some(n) = setup.workers {
                text = text.replace(
                    "    rundir:",
                    &format!("    udp-workers: {n}\n    tcp-workers: {n}\n    rundir:"),
                );
            }
        }
        Kind::Nsd => {
            text = text
                .replace("192.0.2.54@53", &at(setup.listen))
                .replace("/var/lib/nsd", &dir)
                .replace("/run/nsd", &dir)
                .replace("username: nsd", "username: \"\"");
            if setup.secret.is_none() {
                text = text.replace(&format!(" {KEY_NAME}\n"), " NOKEY\n");
            }
            // Test-only settings: no chroot, no database file, a log of its own, no
            // remote control, no rate limiting.
            let workers = setup
                .workers
                .map(|n| format!("    server-count: {n}\n"))
                .unwrap_or_default();
            text = text.replace(
                "server:\n",
                &format!(
                    "server:\n    chroot: \"\"\n    database: \"\"\n    logfile: \"{dir}/nsd.log\"\n    verbosity: 2\n    rrl-ratelimit: 0\n{workers}"
                ),
            );
            text.push_str("\nremote-control:\n    control-enable: no\n");
        }
    }
    Ok(text)
}

/// A running secondary. Stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Secondary {
    kind: Kind,
    listen: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
    out: PathBuf,
}

impl Secondary {
    /// Writes the configuration into `setup.dir` and starts the server in the
    /// foreground. It answers once it has transferred the zone (see [`Secondary::serial`]).
    pub fn start(kind: Kind, setup: &Setup<'_>) -> Result<Secondary, HarnessError> {
        let io = |what: String| move |error| HarnessError::Io { what, error };
        std::fs::create_dir_all(setup.dir)
            .map_err(io(format!("create {}", setup.dir.display())))?;
        let conf = setup.dir.join(format!("{}.conf", kind.name()));
        std::fs::write(&conf, config(kind, setup)?)
            .map_err(io(format!("write {}", conf.display())))?;
        let out = setup.dir.join(format!("{}.out", kind.name()));
        let out_file =
            std::fs::File::create(&out).map_err(io(format!("create {}", out.display())))?;
        let err_file = out_file
            .try_clone()
            .map_err(io(format!("open {}", out.display())))?;
        let mut cmd = Command::new(kind.program());
        match kind {
            Kind::Knot => cmd.arg("-c").arg(&conf),
            Kind::Nsd => cmd.arg("-d").arg("-c").arg(&conf),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out_file)
            .stderr(err_file)
            .spawn()
            .map_err(io(format!("start {}", kind.program())))?;
        Ok(Secondary {
            kind,
            listen: setup.listen,
            child: Some(child),
            log: setup.dir.join(format!("{}.log", kind.name())),
            out,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// The process id (for CPU accounting in benchmarks).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its log and console output so far.
    pub fn log(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.log), read(&self.out))
    }

    /// The serial it answers for the zone, if it answers.
    pub fn serial(&self) -> Option<u32> {
        crate::dig::dig_short(self.listen, ZONE, "SOA")
            .first()?
            .split_whitespace()
            .nth(2)?
            .parse()
            .ok()
    }

    /// Waits (at most `limit`) until it answers `name` with exactly `want`.
    pub fn wait_answer(&self, name: &str, want: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if crate::harness::dig_short(self.listen, name, "A") == vec![want.to_owned()] {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops it with SIGTERM and waits (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the PID of our own child, which we have not reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Secondary {
    fn drop(&mut self) {
        self.stop();
    }
}
