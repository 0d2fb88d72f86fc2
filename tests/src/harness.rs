//! Runs the real binaries for end-to-end tests. [`binary`] finds them beside the test
//! executable (`target/<profile>/`), building them through Cargo first when the tests
//! run under it; [`Dnsd`] runs `dnsd` through the console's launcher
//! ([`console::launch`]): writes its configuration, starts it, waits for its
//! machine-readable ready line, and stops it by PID; [`Dnsd::start_in`] runs it inside a
//! lab host's network namespace, as a terminal server of its own on the lab network.

use std::error::Error as _;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use console::client::{Client, Endpoint};
use console::launch::{self, Launch, LaunchError};
use dnsd_api::{Event, Ready, Status};

use crate::lab::Host;

/// Why the harness could not do what it was asked.
#[derive(thiserror::Error)]
pub enum HarnessError {
    #[error("{name} not found at {}: build the binaries first with `{command}`", path.display())]
    NoBinary {
        name: String,
        path: PathBuf,
        command: String,
    },
    #[error(transparent)]
    Build(#[from] BuildFailed),
    #[error("cannot {what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

/// Printed by a test's `unwrap()`: the message with its causes, on one line for a
/// missing binary, rather than the variant's fields.
impl std::fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut cause = self.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

/// `cargo build` of the binaries failed (the same failure for every test of the process).
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{command}` failed: {why}")]
pub struct BuildFailed {
    command: String,
    why: String,
}

/// Path of a workspace binary (`dnsd`, `console`, `rsync-sync`) in the test executable's
/// target directory.
///
/// Under Cargo (`cargo test` sets `CARGO`), the first call of a test process runs
/// `cargo build --workspace --bins` in the test executable's profile, so a binary is
/// never missing nor older than its sources: Cargo only rebuilds what changed, and the
/// build is a no-op when everything is fresh (as after `scripts/test`, which builds
/// the binaries first). Other calls wait for that build. Without Cargo, a missing
/// binary is an error naming the command that builds it.
pub fn binary(name: &str) -> Result<PathBuf, HarnessError> {
    let dir = target_dir()?;
    let command = build_command(&dir);
    if let Some(cargo) = std::env::var_os("CARGO") {
        static BUILT: OnceLock<Result<(), BuildFailed>> = OnceLock::new();
        BUILT.get_or_init(|| build(&cargo, &command)).clone()?;
    }
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::NoBinary {
            name: name.into(),
            path,
            command: command.join(" "),
        })
    }
}

/// `target/<profile>`: the test executable is `target/<profile>/deps/it-<hash>`.
fn target_dir() -> Result<PathBuf, HarnessError> {
    let exe = std::env::current_exe().map_err(|error| HarnessError::Io {
        what: "find the test executable".into(),
        error,
    })?;
    Ok(exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default())
}

/// `cargo build --workspace --bins` for the profile whose directory is `dir`.
fn build_command(dir: &Path) -> Vec<String> {
    let mut command: Vec<String> = ["cargo", "build", "--workspace", "--bins"]
        .map(String::from)
        .into();
    match dir.file_name().and_then(OsStr::to_str) {
        // The dev (and test) profile builds into target/debug.
        Some("debug") | None => {}
        Some("release") => command.push("--release".into()),
        Some(profile) => command.extend(["--profile".into(), profile.into()]),
    }
    command
}

/// Runs `command` with `cargo` as its program, in this workspace. Cargo's progress and
/// errors go to the test run's stderr, outside the tests' captured output.
fn build(cargo: &OsStr, command: &[String]) -> Result<(), BuildFailed> {
    let failed = |why: String| BuildFailed {
        command: command.join(" "),
        why,
    };
    let status = Command::new(cargo)
        .args(&command[1..])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| failed(format!("cannot run {}: {e}", Path::new(cargo).display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(failed(format!("{status}; its errors are above")))
    }
}

/// A running dnsd, started through [`console::launch`]. Stopped (SIGTERM, then SIGKILL
/// after 10 s) when dropped.
#[derive(Debug)]
pub struct Dnsd(launch::Dnsd);

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

    /// Starts dnsd on an existing configuration file, logging beside it.
    pub fn start_with_file(config: &Path, env: &[(&str, &str)]) -> Result<Dnsd, HarnessError> {
        Self::launch(binary("dnsd")?, config, env)
    }

    /// Writes `config` to `dir/dnsd.toml` and starts dnsd on it inside lab host `host`'s
    /// network namespace: it listens and probes from the host's address, and every lab
    /// fault on the host applies to it (its crash kills it). The filesystem is this
    /// machine's, so its control socket and state may be anywhere (the host's folder,
    /// [`crate::lab::Lab::host_dir`], goes with the lab).
    ///
    /// dnsd runs through a launcher script in `dir` that execs `nsenter --net=... dnsd`, so
    /// the process the harness started, signals and waits for is dnsd itself.
    pub fn start_in(
        host: &Host,
        dir: &Path,
        config: &str,
        env: &[(&str, &str)],
    ) -> Result<Dnsd, HarnessError> {
        let path = dir.join("dnsd.toml");
        std::fs::write(&path, config).map_err(|error| HarnessError::Io {
            what: format!("write {}", path.display()),
            error,
        })?;
        let script = dir.join("dnsd-in-netns");
        let text = format!(
            "#!/bin/sh\n# dnsd in lab host {name}'s network namespace; exec keeps its PID.\n\
             exec nsenter --net=/run/netns/{netns} -- {dnsd} \"$@\"\n",
            name = host.name,
            netns = host.netns,
            dnsd = binary("dnsd")?.display(),
        );
        let io = |what: String| move |error| HarnessError::Io { what, error };
        launch::write_executable(&script, text.as_bytes())
            .map_err(io(format!("write {}", script.display())))?;
        Self::launch(script, &path, env)
    }

    fn launch(bin: PathBuf, config: &Path, env: &[(&str, &str)]) -> Result<Dnsd, HarnessError> {
        let dir = config.parent().unwrap_or(Path::new("."));
        let mut launch = Launch::new(bin, dir.join(format!("dnsd-{}.log", unique())));
        for (key, value) in env {
            launch = launch.env(key, value);
        }
        Ok(Dnsd(launch.start(config)?))
    }

    /// dnsd's process id.
    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Kills dnsd with SIGKILL, by its PID (as a crash of the process would: no shutdown,
    /// no resignation, its etcd lease left to expire), and reaps it. Returns how it ended.
    pub fn kill(&mut self) -> Option<std::process::ExitStatus> {
        if !self.0.exited()
            && let Ok(pid) = libc::pid_t::try_from(self.0.pid())
        {
            // SAFETY: kill(2) on the PID of our own child, which `exited` just found not
            // reaped, so the PID cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        // Reaps it; a process already dead is not signalled again.
        self.0.stop()
    }

    /// The first DNS address dnsd serves on.
    pub fn dns(&self) -> SocketAddr {
        self.0.ready().dns[0]
    }

    /// What dnsd said in its ready line.
    pub fn ready(&self) -> &Ready {
        self.0.ready()
    }

    pub fn config_path(&self) -> &Path {
        self.0.config()
    }

    /// A control API client on dnsd's socket.
    pub fn client(&self) -> Client {
        let socket = self.0.ready().control.clone().unwrap_or_default();
        Client::new(Endpoint::Unix(socket)).with_operator("integration-test")
    }

    /// dnsd's log so far.
    pub fn log(&self) -> String {
        self.0.log()
    }

    /// Stops dnsd with SIGTERM and waits (SIGKILL after 10 s). Returns its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.0.stop()
    }

    /// Polls dnsd's status (on `rt`) until `f` says yes, and returns what it said.
    ///
    /// # Panics
    /// When `timeout` passes first: with `what`, the last status, the event log and
    /// dnsd's log.
    pub fn wait_status<T>(
        &self,
        rt: &tokio::runtime::Runtime,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Status) -> Option<T>,
    ) -> T {
        let client = self.client();
        let poll = || rt.block_on(client.status()).ok().and_then(|st| f(&st));
        match wait_for(timeout, POLL, poll) {
            Some(v) => v,
            None => self.give_up(rt, what, timeout),
        }
    }

    /// Polls dnsd's event log (on `rt`) until it holds an event `f` accepts; returns the
    /// first such event.
    ///
    /// # Panics
    /// As [`Dnsd::wait_status`].
    pub fn wait_event(
        &self,
        rt: &tokio::runtime::Runtime,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Event) -> bool,
    ) -> Event {
        let client = self.client();
        let poll = || {
            let events = rt.block_on(client.events(0)).ok()?;
            events.into_iter().find(|e| f(e))
        };
        match wait_for(timeout, POLL, poll) {
            Some(e) => e,
            None => self.give_up(rt, &format!("{what} (no such event)"), timeout),
        }
    }

    fn give_up(&self, rt: &tokio::runtime::Runtime, what: &str, timeout: Duration) -> ! {
        let client = self.client();
        panic!(
            "{what}: did not happen within {timeout:?}\nstatus: {:#?}\nevents: {:#?}\ndnsd log:\n{}",
            rt.block_on(client.status()),
            rt.block_on(client.events(0)),
            self.log()
        )
    }
}

/// How often [`Dnsd::wait_status`] and [`Dnsd::wait_event`] ask.
const POLL: Duration = Duration::from_millis(50);

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

/// Whether a program is on PATH or in the usual system folders (`sshd` lives in
/// `/usr/sbin`, which is not on every PATH).
pub fn have(program: &str) -> bool {
    crate::lab::find_tool(program).is_some()
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
