//! Runs the real `dnsd` binary for end-to-end tests: writes its configuration, starts
//! it, waits for its machine-readable ready line, and stops it by PID.
//!
//! The binaries are found next to the test executable's directory (`target/<profile>/`),
//! so the workspace must be built first: `cargo build --workspace --bins` (the README's
//! test command does it).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use console::client::{Client, Endpoint};

/// Why the harness could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "{name} binary not found at {path}; build the workspace first: cargo build --workspace --bins"
    )]
    NoBinary { name: String, path: PathBuf },
    #[error("cannot {what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("dnsd did not print its ready line within {timeout:?}; its log:\n{log}")]
    NotReady { timeout: Duration, log: String },
    #[error("dnsd printed an unreadable ready line {line:?}: {error}")]
    BadReady { line: String, error: String },
}

/// Path of a workspace binary built beside the tests.
pub fn binary(name: &str) -> Result<PathBuf, HarnessError> {
    let exe = std::env::current_exe().map_err(|error| HarnessError::Io {
        what: "find the test executable".into(),
        error,
    })?;
    // target/<profile>/deps/it-xxxx -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::NoBinary {
            name: name.into(),
            path,
        })
    }
}

/// What dnsd says once it serves.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Ready {
    pub dns: Vec<SocketAddr>,
    pub control: Option<PathBuf>,
    pub control_tcp: Option<SocketAddr>,
    pub pid: u32,
}

#[derive(serde::Deserialize)]
struct ReadyLine {
    ready: Ready,
}

/// A running dnsd. Stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Dnsd {
    child: Option<Child>,
    ready: Ready,
    config: PathBuf,
    log: PathBuf,
}

/// How long dnsd may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

impl Dnsd {
    /// Writes `config` to `dir/dnsd.toml` and starts dnsd on it; `env` adds variables.
    pub fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Result<Dnsd, HarnessError> {
        let path = dir.join("dnsd.toml");
        std::fs::write(&path, config).map_err(|error| HarnessError::Io {
            what: format!("write {}", path.display()),
            error,
        })?;
        Self::start_with_file(&path, env)
    }

    /// Starts dnsd on an existing configuration file.
    pub fn start_with_file(config: &Path, env: &[(&str, &str)]) -> Result<Dnsd, HarnessError> {
        let bin = binary("dnsd")?;
        let dir = config.parent().unwrap_or(Path::new("."));
        let log = dir.join(format!("dnsd-{}.log", unique()));
        let log_file = std::fs::File::create(&log).map_err(|error| HarnessError::Io {
            what: format!("create {}", log.display()),
            error,
        })?;
        let mut cmd = Command::new(&bin);
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|error| HarnessError::Io {
            what: format!("start {}", bin.display()),
            error,
        })?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(HarnessError::Io {
                what: "read dnsd's stdout".into(),
                error: std::io::Error::other("no pipe"),
            });
        };
        // Read the ready line on a thread so a silent dnsd cannot hang the test.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so dnsd never blocks on a full pipe.
            for _ in lines {}
        });
        let Ok(Some(Ok(line))) = rx.recv_timeout(READY_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::NotReady {
                timeout: READY_TIMEOUT,
                log: std::fs::read_to_string(&log).unwrap_or_default(),
            });
        };
        let ready = match serde_json::from_str::<ReadyLine>(&line) {
            Ok(r) => r.ready,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::BadReady {
                    line,
                    error: e.to_string(),
                });
            }
        };
        Ok(Dnsd {
            child: Some(child),
            ready,
            config: config.to_owned(),
            log,
        })
    }

    /// The first DNS address dnsd serves on.
    pub fn dns(&self) -> SocketAddr {
        self.ready.dns[0]
    }

    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// A control API client on dnsd's socket.
    pub fn client(&self) -> Client {
        let socket = self.ready.control.clone().unwrap_or_default();
        Client::new(Endpoint::Unix(socket)).with_operator("integration-test")
    }

    /// dnsd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops dnsd with SIGTERM and waits (SIGKILL after 10 s). Returns its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on the PID of our own child, which we have not reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

impl Drop for Dnsd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `f` every `every` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Runs `dig @server -p port ARGS +time=1 +tries=1` and returns its stdout.
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(args)
        .arg("+time=1")
        .arg("+tries=1")
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => format!("cannot run dig: {e}"),
    }
}

/// The addresses `dig +short NAME TYPE` prints.
pub fn dig_short(server: SocketAddr, name: &str, rtype: &str) -> Vec<String> {
    dig(server, &["+short", name, rtype])
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_owned)
        .collect()
}

/// A fresh tokio runtime for a test that talks to the control API.
pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build a tokio runtime: {e}"),
    }
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Skips (outside CI, with one loud line) or fails (in CI) when `programs` are missing.
pub fn require_tools(test: &str, programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !have(p)).collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("missing {}", missing.join(", "));
    if crate::lab::in_ci() {
        panic!("{test}: {why}; the README's test command installs them");
    }
    eprintln!("SKIPPED {test}: {why} (CI=true makes this a failure)");
    false
}

/// An RFC 862 echo service run by the test itself, on TCP and UDP at one address, for
/// tests on loopback that need members to answer their heartbeat. Stops when dropped.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Listens on `addr` (TCP and UDP; port 0 picks a port, see [`EchoServer::addr`]).
    pub fn start(addr: SocketAddr) -> Result<EchoServer, HarnessError> {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let io = |what: String| move |error| HarnessError::Io { what, error };
        let tcp = std::net::TcpListener::bind(addr).map_err(io(format!("listen on TCP {addr}")))?;
        // Port 0 picks a port: UDP takes the same one.
        let addr = tcp
            .local_addr()
            .map_err(io(format!("read the address of TCP {addr}")))?;
        let udp = std::net::UdpSocket::bind(addr).map_err(io(format!("listen on UDP {addr}")))?;
        tcp.set_nonblocking(true)
            .map_err(io("set TCP non-blocking".into()))?;
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(io("set UDP timeout".into()))?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tcp_stop = stop.clone();
        let tcp_thread = std::thread::spawn(move || {
            while !tcp_stop.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut conn, _)) => {
                        std::thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                            let mut buf = [0u8; 1024];
                            while let Ok(n) = conn.read(&mut buf) {
                                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let udp_stop = stop.clone();
        let udp_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while !udp_stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(&buf[..n], peer);
                }
            }
        });
        Ok(EchoServer {
            addr,
            stop,
            threads: vec![tcp_thread, udp_thread],
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Echo services on `n` loopback addresses of their own, all on one port: the members of
/// a pool on loopback, named `app1`, `app2`... in dnsd's configuration. A member is
/// stopped and revived through `servers` (see [`EchoPool::revive`]).
#[derive(Debug)]
pub struct EchoPool {
    pub port: u16,
    pub addrs: Vec<std::net::IpAddr>,
    pub servers: Vec<Option<EchoServer>>,
}

impl EchoPool {
    pub fn start(n: usize) -> Result<EchoPool, HarnessError> {
        let addrs: Vec<std::net::IpAddr> = (0..n).map(|_| loopback_addr()).collect();
        let mut servers = Vec::with_capacity(n);
        let mut port = 0;
        for addr in &addrs {
            let server = EchoServer::start(SocketAddr::new(*addr, port))?;
            // The first picks the port; the others, on addresses of their own, take it too.
            port = server.addr().port();
            servers.push(Some(server));
        }
        Ok(EchoPool {
            port,
            addrs,
            servers,
        })
    }

    /// Starts member `i`'s echo service again, on its address and the pool's port.
    pub fn revive(&mut self, i: usize) -> Result<(), HarnessError> {
        self.servers[i] = Some(EchoServer::start(SocketAddr::new(
            self.addrs[i],
            self.port,
        ))?);
        Ok(())
    }

    /// A `[[node]]` table per member, named `app1`, `app2`...
    pub fn node_tables(&self) -> String {
        self.addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("[[node]]\nname = \"app{}\"\naddress = \"{a}\"\n", i + 1))
            .collect()
    }
}

/// A loopback address in 127.64.0.0/10 no other test of this process uses, so tests on
/// loopback can run in parallel without sharing members.
pub fn loopback_addr() -> std::net::IpAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    // Spread processes apart by PID, then count up within the process.
    let base = (std::process::id() % 4096) << 8;
    let n = base + NEXT.fetch_add(1, Ordering::Relaxed) % 256;
    std::net::IpAddr::from([127, 64 + ((n >> 16) & 0x3f) as u8, (n >> 8) as u8, n as u8])
}

/// Runs `command` to completion, killing it if it takes longer than `timeout` (a test
/// must fail, not hang, when a binary does not exit).
pub fn output_within(command: &mut Command, timeout: Duration) -> std::process::Output {
    let mut child = match command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("cannot start {command:?}: {e}"),
    };
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return match child.wait_with_output() {
                Ok(out) => out,
                Err(e) => panic!("cannot read the output of {command:?}: {e}"),
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output();
    panic!("{command:?} did not exit within {timeout:?}: {out:?}");
}
