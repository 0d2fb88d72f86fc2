//! The cluster demo's etcd: one member on loopback, Debian's `etcd` binary (nothing is
//! downloaded), its data in `<dir>/etcd` and its log in `<dir>/logs/etcd.log`. It dies
//! with the console (the kernel sends it SIGTERM), a PID file lets the next demo sweep
//! it otherwise, and [`Etcd::stop`] stops it by PID: SIGTERM, then SIGKILL.
//!
//! Its ports are the demo's `--etcd` address and the port after it (etcd's peer port),
//! or, for `--etcd 127.0.0.1:0`, two the kernel had free a moment before (another
//! process may take one in between; etcd then exits and says so in its log).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::launch;

/// How long etcd may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running etcd; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Etcd {
    child: Option<Child>,
    pid: u32,
    client: SocketAddr,
    pid_file: PathBuf,
}

impl Etcd {
    /// Starts `bin` as a one-member cluster answering clients on `client` (port 0: one
    /// the kernel has free), with its data in `dir/etcd`, and returns once its
    /// `/health` says so (within `timeout`).
    pub(crate) fn start(
        bin: &Path,
        dir: &Path,
        client: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<Etcd> {
        let (client, peer) = ports(client)?;
        let log_path = dir.join("logs").join("etcd.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let err = log.try_clone().context("cannot duplicate etcd's log")?;
        let client_url = format!("http://{client}");
        let peer_url = format!("http://{peer}");
        let mut cmd = Command::new(bin);
        cmd.arg("--name=demo")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=demo={peer_url}"))
            .args([
                "--initial-cluster-state=new",
                "--auto-compaction-retention=1h",
            ])
            .args(["--logger=zap", "--log-outputs=stderr", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        launch::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid_file = dir.join("run").join("etcd.pid");
        let mut etcd = Etcd {
            pid: child.id(),
            child: Some(child),
            client,
            pid_file,
        };
        std::fs::write(&etcd.pid_file, etcd.pid.to_string())
            .with_context(|| format!("cannot write {}", etcd.pid_file.display()))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = etcd.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "etcd ended ({status}) before it was healthy; the end of its log ({}):\n{}",
                    log_path.display(),
                    launch::tail(&log_path, 20)
                );
            }
            if healthy(client) {
                return Ok(etcd);
            }
            if Instant::now() >= deadline {
                etcd.stop();
                bail!(
                    "etcd was not healthy on {client} within {timeout:?}; the end of its log ({}):\n{}",
                    log_path.display(),
                    launch::tail(&log_path, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its client URL, for dnsd's `[cluster] etcd`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops etcd by its PID (SIGTERM, then SIGKILL after a grace period). Idempotent.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            launch::stop_child(&mut child, STOP_GRACE);
            // Already gone is fine: the PID file only helps find an etcd left running.
            let _ = std::fs::remove_file(&self.pid_file);
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The client address and the peer address: `client` and the port after it, or two
/// free ports for port 0.
fn ports(client: SocketAddr) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    if client.port() == 0 {
        let bind = || {
            TcpListener::bind(SocketAddr::new(client.ip(), 0))
                .with_context(|| format!("cannot find a free port on {}", client.ip()))
        };
        // Both held at once, so they differ; closed here, for etcd to bind.
        let (a, b) = (bind()?, bind()?);
        let addr = |l: &TcpListener| l.local_addr().context("cannot read a bound address");
        return Ok((addr(&a)?, addr(&b)?));
    }
    let Some(peer) = client.port().checked_add(1) else {
        bail!("--etcd {client}: the port after it (etcd's peer port) does not exist");
    };
    Ok((client, SocketAddr::new(client.ip(), peer)))
}

/// Whether etcd at `client` answers `/health` with `"health":"true"`.
fn healthy(client: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&client, Duration::from_millis(300)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /health HTTP/1.1\r\nhost: etcd\r\nconnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") && answer.contains(r#""health":"true""#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_port_follows_the_client_port_and_port_0_picks_two() {
        let (c, p) = ports("127.0.0.1:2479".parse().unwrap()).unwrap();
        assert_eq!((c.port(), p.port()), (2479, 2480));
        // Not on 127.0.0.1, where other tests bind free ports and expect them free.
        let (c, p) = ports("127.0.0.3:0".parse().unwrap()).unwrap();
        assert!(c.port() != 0 && p.port() != 0 && c != p);
        assert!(ports("127.0.0.1:65535".parse().unwrap()).is_err());
    }
}
