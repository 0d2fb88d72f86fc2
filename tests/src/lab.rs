//! The test lab: a pool of test hosts on this machine, each of which looks to the terminal server
//! like a separate application server, and the faults that matter for failover, injected for real.
//!
//! # What a lab is
//!
//! [`Lab::start`] builds, for one test:
//!
//! - a private bridge `dlXXXX-br` in the root namespace holding the first address of a /24 taken
//!   from 198.18.0.0/15 (the RFC 2544 benchmarking range) that no interface or route of the
//!   machine uses yet. The root namespace is the terminal server's side: its address on the lab
//!   is [`Lab::ts_addr`].
//! - per host `hN`: a network namespace `dlXXXX-hN` whose `eth0` is a veth into the bridge (the
//!   root-side end is `dlXXXX-vN`) with the next address of the /24, loopback, and no default
//!   route, so a host reaches only the lab subnet;
//! - per host, a mount namespace held open by a `sleep` process (the *holder*), in which a tmpfs
//!   is mounted on `/srv` with the host's data folder `/srv/data`. Everything the host runs lives
//!   in that mount namespace, so `rsync` over SSH to a host writes into that host's folder only.
//!   The real `/srv` is never written; the root namespace sees a host's folder through
//!   [`Lab::data_path`];
//! - per host, a real `sshd` (its own ed25519 host key, key authentication only) on port 22 and
//!   an RFC 862 echo service (`socat`) on TCP and UDP port 7, bound to the host's address;
//! - one client key authorised on every host and a `known_hosts` listing every host's key, in
//!   the lab folder `/tmp/dnsd-lab-XXXX/`, which every host sees too: the terminal server and the
//!   hosts (a primary pushes to its secondaries) use the same files, always with strict host key
//!   checking and `BatchMode` ([`ssh_options`]).
//! - on request, *bare* hosts ([`LabOptions::bare_hosts`]): named by the test, each with its
//!   namespaces and address like the others but no sshd, echo or key, for running what is not
//!   a pool member (terminal servers, etcd) on the lab network. The namespace is
//!   `dlXXXX-<name>`; [`crate::harness::Dnsd::start_in`] runs `dnsd` in one, and
//!   [`crate::etcd::EtcdServer::start_in`] etcd.
//!
//! # Faults
//!
//! Each is one call on the lab, for one host: [`Lab::crash`] / [`Lab::revive`], and
//! [`Lab::cut`], [`Lab::partition`], [`Lab::slow`], [`Lab::fill_disk`], all undone by
//! [`Lab::heal`]; and for a pair of hosts, [`Lab::block`] (all traffic between those two
//! only), undone by [`Lab::unblock`] or the heal of either. [`Lab::change_host_key`] makes the
//! host an impostor for good. `tc netem` is not available on the kernel this lab was built on,
//! so `slow` uses a frame relay instead (see the `relay` module).
//!
//! # Hygiene
//!
//! Labs have unique names, so tests run in parallel. Dropping a [`Lab`] (also while a test
//! panics) stops its relays, kills every process in its namespaces by PID (reaping its own
//! children; an orphaned sshd session goes to PID 1 as usual), deletes its namespaces and links
//! and removes its folder. A lab whose owning process died without that (a killed test run) is
//! swept by the next [`Lab::start`] on the machine. Nothing outside loopback and the lab's own
//! hosts is ever contacted.
//!
//! # Where it runs
//!
//! It needs root and the tools listed by [`lab_available`]. Tests call [`Lab::require`], which
//! skips with one loud line outside CI and fails inside CI (`CI=true`).

mod error;
pub mod probe;
mod relay;
mod sweep;
mod sys;

pub(crate) use sys::find_tool;

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

pub use error::{LabError, report};
use relay::Relay;

/// The TCP and UDP port of the echo service (RFC 862).
pub const ECHO_PORT: u16 = 7;
/// The port `sshd` listens on.
pub const SSH_PORT: u16 = 22;
/// The data folder as the host itself (and anything run over SSH on it) sees it.
pub const DATA_DIR: &str = "/srv/data";

/// How long a host's services get to answer after they are started.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The first /24 of the range labs take their subnets from (198.18.0.0/15: 512 of them).
const SUBNET_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
const SUBNET_COUNT: u32 = 512;
/// Where the fill file of `fill_disk` goes: on the host's tmpfs, beside (not in) the data folder.
const FILL_FILE: &str = "srv/.lab-fill";

/// What to build.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// How many hosts with services, `h1`... (with the bare ones, 1 to 200 in all).
    pub hosts: usize,
    /// The size in bytes of each host's `/srv` tmpfs (which `fill_disk` fills). Counted against
    /// memory only as far as it is used.
    pub data_size: u64,
    /// The names of the bare hosts to add after `h1`...`hN` (see [`LabOptions::bare_hosts`]).
    pub bare: Vec<String>,
}

impl LabOptions {
    /// `hosts` hosts with the default data size (256 MiB each).
    pub fn new(hosts: usize) -> LabOptions {
        LabOptions {
            hosts,
            ..LabOptions::default()
        }
    }

    /// Sets each host's data tmpfs size, in MiB; tests that copy large data sets raise it.
    #[must_use]
    pub fn data_size_mib(mut self, mib: u64) -> LabOptions {
        self.data_size = mib.saturating_mul(1024 * 1024);
        self
    }

    /// Adds *bare* hosts with these names: a network namespace, an address on the bridge and a
    /// mount namespace like every host, but no sshd, no echo service and no SSH key. They are
    /// where a test runs what is not a pool member (terminal servers, etcd), so that faults can
    /// be put between them and the members ([`Lab::block`]). They are not among
    /// [`Lab::hosts`], [`Lab::node_tables`] or `known_hosts`; [`Lab::bare_hosts`] and
    /// [`Lab::host`] find them. A name is 1 to 10 lower-case letters and digits starting with
    /// a letter, other than `h<digits>` and `br`.
    #[must_use]
    pub fn bare_hosts<S: AsRef<str>>(mut self, names: &[S]) -> LabOptions {
        self.bare = names.iter().map(|n| n.as_ref().to_owned()).collect();
        self
    }
}

impl Default for LabOptions {
    fn default() -> LabOptions {
        LabOptions {
            hosts: 3,
            data_size: 256 * 1024 * 1024,
            bare: Vec::new(),
        }
    }
}

/// One test host, as tests name it. Cheap to clone; stays valid for the life of its lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// `h1`, `h2`, ...
    pub name: String,
    /// The host's address on the lab subnet, where its sshd and echo service listen.
    pub addr: Ipv4Addr,
    /// The host's network namespace (`ip netns exec <netns> ...`).
    pub netns: String,
    /// PID of the process holding the host's mount namespace (and through it its data tmpfs).
    holder: i32,
    /// Position in the lab, from 0 (bare hosts after the others).
    index: usize,
    /// A bare host: no services (see [`LabOptions::bare_hosts`]).
    bare: bool,
}

impl Host {
    /// The host's SSH address.
    pub fn ssh_addr(&self) -> SocketAddr {
        SocketAddr::from((self.addr, SSH_PORT))
    }

    /// The host's echo service address (TCP and UDP).
    pub fn echo_addr(&self) -> SocketAddr {
        SocketAddr::from((self.addr, ECHO_PORT))
    }
}

/// The mutable side of a host: its service processes and the faults currently applied.
#[derive(Default)]
struct HostState {
    /// PIDs of the services this lab started (children of this process), sshd first.
    services: Vec<i32>,
    crashed: bool,
    cut: bool,
    partitioned: bool,
    filled: bool,
    relay: Option<Relay>,
    /// Hosts (by index) whose traffic to this one is dropped here ([`Lab::block`]).
    blocked: Vec<usize>,
    /// Whether the `local` table's rule sits after the blackhole rules (pref 100 instead of
    /// 0), as dropping incoming packets by source needs.
    local_moved: bool,
}

/// A running lab; see the module docs. Torn down on drop.
pub struct Lab {
    prefix: String,
    dir: PathBuf,
    bridge: String,
    ts_addr: Ipv4Addr,
    /// Every host: the `full` ones with services first, then the bare ones.
    hosts: Vec<Host>,
    full: usize,
    data_size: u64,
    sshd: PathBuf,
    /// One entry per host, same order as `hosts`. Held while a fault is applied; no lock is
    /// ever taken while holding it.
    state: Mutex<Vec<HostState>>,
}

/// Checks that this machine can run labs: root, and every tool a lab uses is installed.
pub fn lab_available() -> Result<(), LabError> {
    // SAFETY: geteuid has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::Unavailable {
            reason: "not root (network namespaces, veths and tmpfs mounts need root)".into(),
        });
    }
    let missing: Vec<&str> = [
        "ip",
        "sshd",
        "ssh",
        "ssh-keygen",
        "rsync",
        "socat",
        "nsenter",
        "unshare",
        "mount",
        "sh",
        "sleep",
    ]
    .into_iter()
    .filter(|tool| sys::find_tool(tool).is_none())
    .collect();
    if !missing.is_empty() {
        return Err(LabError::Unavailable {
            reason: format!("missing tools: {}", missing.join(", ")),
        });
    }
    if !Path::new("/srv").is_dir() {
        return Err(LabError::Unavailable {
            reason: "/srv does not exist (hosts mount their data tmpfs on it)".into(),
        });
    }
    Ok(())
}

/// Whether this run is CI (`CI=true`): there, tests that need the lab or tools fail
/// instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The ssh options every lab connection uses: this identity only, this `known_hosts` only,
/// strict host key checking, no prompts, no user or system ssh configuration.
pub fn ssh_options(identity: &Path, known_hosts: &Path) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "LogLevel=ERROR",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([
        "-o".to_owned(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-i".to_owned(),
        identity.display().to_string(),
    ])
    .collect()
}

impl Lab {
    /// The lab for test `test`, or `None` when this machine cannot run labs and this is not CI.
    ///
    /// Outside CI, an unavailable lab prints one line to stderr saying which test skipped and
    /// why. Inside CI (`CI=true`) it panics instead, and so does any setup error anywhere: a
    /// lab that is available but does not come up is a failure, never a skip.
    ///
    /// # Panics
    /// As above: in CI when the lab is unavailable, and whenever setting it up fails.
    pub fn require(test: &str, options: LabOptions) -> Option<Lab> {
        if let Err(error) = lab_available() {
            if in_ci() {
                panic!("{test}: the lab is required in CI: {}", report(&error));
            }
            // Straight to stderr: the test harness would swallow `eprintln!` from a passing test.
            let _ = writeln!(
                io::stderr(),
                "SKIPPED {test}: {} (CI=true makes this a failure)",
                report(&error)
            );
            return None;
        }
        match Lab::start(options) {
            Ok(lab) => Some(lab),
            Err(error) => panic!("{test}: lab setup failed: {}", report(&error)),
        }
    }

    /// Builds a lab: sweeps stale labs, then creates the bridge, the hosts and their services,
    /// and returns once every host answers on SSH and echo.
    pub fn start(options: LabOptions) -> Result<Lab, LabError> {
        lab_available()?;
        let total = options.hosts + options.bare.len();
        if !(1..=200).contains(&total) {
            return Err(LabError::Invalid(format!(
                "{total} hosts (1 to 200 fit a /24 and 15-character interface names)"
            )));
        }
        if let Some(problem) = bare_name_problem(&options.bare) {
            return Err(LabError::Invalid(problem));
        }
        if options.data_size < 1024 * 1024 {
            return Err(LabError::Invalid(format!(
                "data size {} bytes (at least 1 MiB)",
                options.data_size
            )));
        }
        let sshd = sys::find_tool("sshd").ok_or_else(|| LabError::Unavailable {
            reason: "sshd not found".into(),
        })?;
        // sshd's privilege separation folder; shared with every host's mount namespace.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create("/run/sshd")
            .map_err(|source| LabError::Io {
                action: "create",
                path: "/run/sshd".into(),
                source,
            })?;

        let lock = sys::GlobalLock::acquire()?;
        sweep::sweep_stale();
        let (id, dir) = sweep::claim()?;
        let prefix = sweep::prefix_of(&id);
        // From here on the lab exists: any error return drops it, which tears down what exists.
        let mut lab = Lab {
            bridge: format!("{prefix}-br"),
            prefix,
            dir,
            ts_addr: Ipv4Addr::UNSPECIFIED,
            hosts: Vec::new(),
            full: options.hosts,
            data_size: options.data_size,
            sshd,
            state: Mutex::new(Vec::new()),
        };
        let subnet = choose_subnet()?;
        lab.create_bridge(subnet)?;
        drop(lock);
        tracing::debug!(lab = %lab.prefix, %subnet, "lab claimed");

        lab.create_client_key()?;
        let names = (1..=options.hosts).map(|n| (format!("h{n}"), false));
        let bare = options.bare.iter().map(|name| (name.clone(), true));
        for (index, (name, bare)) in names.chain(bare).enumerate() {
            lab.create_host(index, subnet, name, bare)?;
        }
        lab.write_known_hosts()?;
        for host in lab.hosts().to_vec() {
            let services = lab.start_services(&host)?;
            lab.lock_state()[host.index].services = services;
        }
        for host in lab.hosts() {
            lab.wait_ready(host)?;
        }
        tracing::debug!(lab = %lab.prefix, hosts = lab.hosts.len(), "lab ready");
        Ok(lab)
    }

    /// The hosts with services, `h1` first (not the bare ones).
    pub fn hosts(&self) -> &[Host] {
        &self.hosts[..self.full.min(self.hosts.len())]
    }

    /// The bare hosts, in the order [`LabOptions::bare_hosts`] named them.
    pub fn bare_hosts(&self) -> &[Host] {
        &self.hosts[self.full.min(self.hosts.len())..]
    }

    /// The host (bare or not) named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// A `[[node]]` table of dnsd's configuration for every host, in order.
    pub fn node_tables(&self) -> String {
        self.hosts()
            .iter()
            .map(|h| {
                format!(
                    "[[node]]\nname = \"{}\"\naddress = \"{}\"\n",
                    h.name, h.addr
                )
            })
            .collect()
    }

    /// Every host's name, quoted and comma-separated: a service's `nodes = [...]`.
    pub fn node_list(&self) -> String {
        let names: Vec<String> = self
            .hosts()
            .iter()
            .map(|h| format!("\"{}\"", h.name))
            .collect();
        names.join(", ")
    }

    /// The terminal server's address on the lab subnet (the bridge, in the root namespace).
    /// Connections from the root namespace to a host come from it.
    pub fn ts_addr(&self) -> Ipv4Addr {
        self.ts_addr
    }

    /// The unique prefix of this lab's namespaces and links, e.g. `dl1a2b`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lab's working folder (keys, configs, logs), visible from every host too.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The client private key authorised on every host.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// The `known_hosts` file listing every host's address and key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The lab's ssh options (see [`ssh_options`]) with its client key and `known_hosts`.
    pub fn ssh_options(&self) -> Vec<String> {
        ssh_options(&self.client_key(), &self.known_hosts())
    }

    /// `ssh` from the terminal server's side to `root@host`, ready for the remote command to
    /// be appended as further arguments.
    pub fn ssh(&self, host: &Host) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.args(self.ssh_options())
            .arg(format!("root@{}", host.addr));
        ssh
    }

    /// `ssh` run inside host `from` to `root@to`, with the same key and `known_hosts`.
    pub fn ssh_from(&self, from: &Host, to: &Host) -> Command {
        let mut ssh = self.command(from, "ssh");
        ssh.args(self.ssh_options())
            .arg(format!("root@{}", to.addr));
        ssh
    }

    /// The value of `rsync -e` (or `RSYNC_RSH`) that makes rsync use the lab's ssh options.
    pub fn rsync_rsh(&self) -> String {
        std::iter::once("ssh".to_owned())
            .chain(self.ssh_options())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `program` run inside `host`: in its network namespace and its mount namespace (so
    /// `/srv/data` is the host's own), not over SSH. For setting up and inspecting hosts, and for
    /// running what a host runs (a primary's rsync). Such a process is part of the host: a
    /// crash or the lab's teardown kills it, but waiting for it stays with its `Child`.
    pub fn command(&self, host: &Host, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg("--target")
            .arg(host.holder.to_string())
            .args(["--mount", "--net", "--"])
            .arg(program);
        command
    }

    /// Runs `argv` inside `host` (see [`Lab::command`]) and returns its output; fails, with its
    /// stderr, unless it exits with status 0.
    pub fn exec(&self, host: &Host, argv: &[&str]) -> Result<Output, LabError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(LabError::Invalid("exec with an empty command".into()));
        };
        sys::run(self.command(host, program).args(args))
    }

    /// The host's data folder as the root namespace sees it (through the holder's
    /// `/proc/<pid>/root`). Writing here writes into the host's own `/srv/data`.
    pub fn data_path(&self, host: &Host) -> PathBuf {
        holder_root(host.holder).join("srv/data")
    }

    /// Runs `f` on a thread inside `host`'s network namespace and returns its result: sockets it
    /// opens belong to that host. For probing from one host to another (or to the terminal
    /// server). A panic in `f` is passed on.
    pub fn in_netns<T: Send>(
        &self,
        host: &Host,
        f: impl FnOnce() -> T + Send,
    ) -> Result<T, LabError> {
        in_netns(&host.netns, f)
    }

    /// Kills every process of `host` (sshd and its sessions, the echo listeners and their forks,
    /// anything run inside it) but keeps its namespaces: its address stays, so connections are
    /// refused rather than left unanswered, and its data stays. Undone by [`Lab::revive`].
    pub fn crash(&self, host: &Host) -> Result<(), LabError> {
        let index = self.index_of(host)?;
        let mut state = self.lock_state();
        let own = state[index].services.clone();
        let survivors = sys::kill_netns_members(&host.netns, &[host.holder], &own)?;
        if !survivors.is_empty() {
            return Err(LabError::Survivors {
                host: host.name.clone(),
                pids: survivors,
            });
        }
        // The services were our children and were just reaped; nothing of them is left.
        state[index].services.clear();
        state[index].crashed = true;
        tracing::debug!(lab = %self.prefix, host = %host.name, "crashed");
        Ok(())
    }

    /// Starts a crashed host's services again, with the same keys, and waits until they answer.
    /// Does nothing to a host that is not crashed.
    pub fn revive(&self, host: &Host) -> Result<(), LabError> {
        let index = self.index_of(host)?;
        let mut state = self.lock_state();
        if !state[index].crashed {
            return Ok(());
        }
        // A bare host has no services: it is back as soon as it is no longer crashed.
        let services = self.start_services(host)?;
        state[index].services = services;
        state[index].crashed = false;
        drop(state);
        self.wait_ready(host)?;
        tracing::debug!(lab = %self.prefix, host = %host.name, "revived");
        Ok(())
    }

    /// Takes the host's link down (its root-side veth): nobody reaches it and it reaches nobody.
    /// Undone by [`Lab::heal`].
    pub fn cut(&self, host: &Host) -> Result<(), LabError> {
        let index = self.index_of(host)?;
        let mut state = self.lock_state();
        sys::ip(&["link", "set", &self.veth(host), "down"])?;
        state[index].cut = true;
        tracing::debug!(lab = %self.prefix, host = %host.name, "cut");
        Ok(())
    }

    /// Drops all traffic between the terminal server and the host, and only that: the host still
    /// reaches its peers and they reach it (the split-brain case). Done with policy-routing
    /// blackhole rules inside the host's namespace. Undone by [`Lab::heal`].
    pub fn partition(&self, host: &Host) -> Result<(), LabError> {
        let index = self.index_of(host)?;
        let mut state = self.lock_state();
        let st = &mut state[index];
        if st.partitioned {
            return Ok(());
        }
        st.partitioned = true;
        place_local_rule(&host.netns, st)?;
        let ts = self.ts_addr.to_string();
        for rule in [
            ["add", "pref", "10", "from", &ts, "blackhole"],
            ["add", "pref", "11", "to", &ts, "blackhole"],
        ] {
            let mut args = vec!["-n", &host.netns, "rule"];
            args.extend(rule);
            sys::ip(&args)?;
        }
        tracing::debug!(lab = %self.prefix, host = %host.name, "partitioned");
        Ok(())
    }

    /// Drops all traffic between hosts `a` and `b`, both ways, and only that: each still
    /// reaches every other host and the root namespace, and they reach it. The packets are
    /// sent and vanish at the receiver (a policy-routing blackhole rule on their source in
    /// each host's namespace), so both ends see silence, as on a broken path between two
    /// machines. For the faults between specific hosts: one terminal server's link to one
    /// member, a terminal server cut from etcd. Undone by [`Lab::unblock`], or by
    /// [`Lab::heal`] of either host. Blocking a pair again does nothing.
    pub fn block(&self, a: &Host, b: &Host) -> Result<(), LabError> {
        let (ia, ib) = (self.index_of(a)?, self.index_of(b)?);
        if ia == ib {
            return Err(LabError::Invalid(format!("block {} from itself", a.name)));
        }
        let mut state = self.lock_state();
        for (to, from) in [(a, b), (b, a)] {
            let st = &mut state[to.index];
            if st.blocked.contains(&from.index) {
                continue;
            }
            st.blocked.push(from.index);
            place_local_rule(&to.netns, st)?;
            sys::ip(&block_rule(to, from, "add"))?;
        }
        tracing::debug!(lab = %self.prefix, a = %a.name, b = %b.name, "blocked");
        Ok(())
    }

    /// Lets traffic between `a` and `b` through again after [`Lab::block`]; does nothing to a
    /// pair that is not blocked.
    pub fn unblock(&self, a: &Host, b: &Host) -> Result<(), LabError> {
        self.index_of(a)?;
        self.index_of(b)?;
        let mut state = self.lock_state();
        self.unblock_locked(&mut state, a, b)
    }

    /// [`Lab::unblock`] under the state lock.
    fn unblock_locked(&self, state: &mut [HostState], a: &Host, b: &Host) -> Result<(), LabError> {
        for (to, from) in [(a, b), (b, a)] {
            let st = &mut state[to.index];
            if !st.blocked.contains(&from.index) {
                continue;
            }
            sys::ip(&block_rule(to, from, "del"))?;
            st.blocked.retain(|&i| i != from.index);
            place_local_rule(&to.netns, st)?;
        }
        tracing::debug!(lab = %self.prefix, a = %a.name, b = %b.name, "unblocked");
        Ok(())
    }

    /// Impairs the host's link: every frame, both ways, is held for `delay` and a `loss`
    /// fraction (0.0 to 1.0) of them is dropped, in each direction. A frame relay stands in for
    /// `tc netem`, which this kernel lacks (see the `relay` module). Calling it again replaces
    /// the impairment. Undone by [`Lab::heal`].
    pub fn slow(&self, host: &Host, delay: Duration, loss: f64) -> Result<(), LabError> {
        if !(0.0..=1.0).contains(&loss) {
            return Err(LabError::Invalid(format!("loss {loss} (0.0 to 1.0)")));
        }
        let index = self.index_of(host)?;
        let mut state = self.lock_state();
        let veth = self.veth(host);
        let (bridge_side, relay_side) = self.relay_pair(host);
        let name = format!("{}-s{}", self.prefix, index + 1);
        if let Some(relay) = state[index].relay.take() {
            // Already spliced: only the relay's parameters change.
            relay.stop();
        } else {
            let spliced = sys::ip(&[
                "link",
                "add",
                &bridge_side,
                "type",
                "veth",
                "peer",
                "name",
                &relay_side,
            ])
            .and_then(|_| {
                disable_ipv6(&bridge_side);
                disable_ipv6(&relay_side);
                sys::ip(&["link", "set", &veth, "nomaster"])?;
                sys::ip(&["link", "set", &bridge_side, "master", &self.bridge, "up"])?;
                sys::ip(&["link", "set", &relay_side, "up"])
            });
            if let Err(error) = spliced {
                let _ = self.unsplice(host);
                return Err(error);
            }
        }
        match Relay::start(&name, &veth, &relay_side, delay, loss) {
            Ok(relay) => state[index].relay = Some(relay),
            Err(error) => {
                let _ = self.unsplice(host);
                return Err(error);
            }
        }
        tracing::debug!(lab = %self.prefix, host = %host.name, ?delay, loss, "slowed");
        Ok(())
    }

    /// Fills the host's `/srv` tmpfs to the last byte with a fill file beside the data folder,
    /// so every further write on the host fails with "No space left on device". Undone by
    /// [`Lab::heal`].
    pub fn fill_disk(&self, host: &Host) -> Result<(), LabError> {
        let index = self.index_of(host)?;
        let mut state = self.lock_state();
        let path = holder_root(host.holder).join(FILL_FILE);
        let io_err = |source| LabError::Io {
            action: "fill",
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        let chunk = vec![0u8; 1024 * 1024];
        // Bounded: the tmpfs is `data_size` bytes, so this many chunks more than fill it.
        let rounds = self.data_size / 1024 / 1024 + 2;
        let mut full = false;
        for _ in 0..rounds {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => {
                    full = true;
                    break;
                }
                Err(error) => return Err(io_err(error)),
            }
        }
        if !full {
            return Err(io_err(io::Error::other(
                "wrote more than the tmpfs size without running out of space",
            )));
        }
        state[index].filled = true;
        tracing::debug!(lab = %self.prefix, host = %host.name, "disk filled");
        Ok(())
    }

    /// Undoes every network and disk fault on the host (cut, partition, slow, fill_disk, and
    /// every block between it and another host). Crashes are undone by [`Lab::revive`]. Safe
    /// to call on a healthy host.
    pub fn heal(&self, host: &Host) -> Result<(), LabError> {
        let index = self.index_of(host)?;
        let mut state = self.lock_state();
        let st = &mut state[index];
        if let Some(relay) = st.relay.take() {
            relay.stop();
            self.unsplice(host)?;
        }
        if st.cut {
            sys::ip(&["link", "set", &self.veth(host), "up"])?;
            st.cut = false;
        }
        if st.partitioned {
            let ts = self.ts_addr.to_string();
            for rule in [
                ["del", "pref", "10", "from", &ts],
                ["del", "pref", "11", "to", &ts],
            ] {
                let mut args = vec!["-n", &host.netns, "rule"];
                args.extend(rule);
                sys::ip(&args)?;
            }
            st.partitioned = false;
            place_local_rule(&host.netns, st)?;
        }
        for peer in st.blocked.clone() {
            let other = &self.hosts[peer];
            self.unblock_locked(&mut state, host, other)?;
        }
        let st = &mut state[index];
        if st.filled {
            let path = holder_root(host.holder).join(FILL_FILE);
            fs::remove_file(&path).map_err(|source| LabError::Io {
                action: "remove",
                path,
                source,
            })?;
            st.filled = false;
        }
        tracing::debug!(lab = %self.prefix, host = %host.name, "healed");
        Ok(())
    }

    /// Gives the host a new SSH host key, as if it had been reinstalled or replaced, leaving
    /// `known_hosts` as it was: from now on the host is an impostor that every lab client must
    /// refuse. Its services restart (a crash and a revive) to take the new key; a crashed host
    /// stays crashed. There is no undo.
    pub fn change_host_key(&self, host: &Host) -> Result<(), LabError> {
        let index = self.index_of(host)?;
        if host.bare {
            return Err(LabError::Invalid(format!(
                "{} is a bare host: it has no SSH host key",
                host.name
            )));
        }
        let was_crashed = self.lock_state()[index].crashed;
        self.crash(host)?;
        let key = self.host_dir(host).join("ssh_host_ed25519_key");
        for path in [key.clone(), key.with_extension("pub")] {
            fs::remove_file(&path).map_err(|source| LabError::Io {
                action: "remove",
                path,
                source,
            })?;
        }
        generate_key(&key, &format!("{} impostor", host.name))?;
        if was_crashed {
            Ok(())
        } else {
            self.revive(host)
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, Vec<HostState>> {
        // A panic while holding the lock leaves the state as consistent as any fault call does.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn index_of(&self, host: &Host) -> Result<usize, LabError> {
        match self.hosts.get(host.index) {
            Some(known) if known == host => Ok(host.index),
            _ => Err(LabError::UnknownHost {
                host: host.name.clone(),
                netns: host.netns.clone(),
                lab: self.prefix.clone(),
            }),
        }
    }

    fn veth(&self, host: &Host) -> String {
        format!("{}-v{}", self.prefix, host.index + 1)
    }

    /// The veth pair `slow` splices in: (end in the bridge, end the relay uses).
    fn relay_pair(&self, host: &Host) -> (String, String) {
        let n = host.index + 1;
        (
            format!("{}-x{n}", self.prefix),
            format!("{}-y{n}", self.prefix),
        )
    }

    /// Undoes the wiring of `slow` once its relay is stopped: the host's veth goes back into the
    /// bridge and the relay's veth pair is deleted. Tries both; returns the first error.
    fn unsplice(&self, host: &Host) -> Result<(), LabError> {
        let (bridge_side, _) = self.relay_pair(host);
        let attached =
            sys::ip(&["link", "set", &self.veth(host), "master", &self.bridge]).map(drop);
        let deleted = if sys::link_list().contains(&bridge_side) {
            sys::ip(&["link", "del", &bridge_side]).map(drop)
        } else {
            Ok(())
        };
        attached.and(deleted)
    }

    /// The host's own folder in the lab folder: its logs and (for a host with services) its
    /// keys and sshd configuration. A test may keep its files about the host there (a terminal
    /// server's configuration and state): they go with the lab, even after a killed run.
    pub fn host_dir(&self, host: &Host) -> PathBuf {
        self.dir.join(&host.name)
    }

    fn create_bridge(&mut self, subnet: Ipv4Addr) -> Result<(), LabError> {
        let ts_addr = nth_addr(subnet, 1);
        let bridge = self.bridge.clone();
        sys::ip(&["link", "add", &bridge, "type", "bridge"])?;
        disable_ipv6(&bridge);
        // A fixed MAC: otherwise the bridge takes the lowest MAC of its ports, and a port added
        // later (by `slow`) could change it under the hosts' ARP caches.
        let mac = format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            rand::random::<u8>(),
            rand::random::<u8>(),
            rand::random::<u8>(),
            rand::random::<u8>(),
            rand::random::<u8>()
        );
        sys::ip(&["link", "set", &bridge, "address", &mac])?;
        sys::ip(&["addr", "add", &format!("{ts_addr}/24"), "dev", &bridge])?;
        sys::ip(&["link", "set", &bridge, "up"])?;
        self.ts_addr = ts_addr;
        Ok(())
    }

    fn create_client_key(&self) -> Result<(), LabError> {
        let key = self.client_key();
        generate_key(&key, "dnsd-lab client")?;
        let public = read(&key.with_extension("pub"))?;
        write(&self.dir.join("authorized_keys"), &public)
    }

    /// Creates host `index`: keys and sshd config (not for a bare host), network namespace,
    /// veth and addresses, and the holder of its mount namespace with the data tmpfs.
    fn create_host(
        &mut self,
        index: usize,
        subnet: Ipv4Addr,
        name: String,
        bare: bool,
    ) -> Result<(), LabError> {
        let n = index + 1;
        let netns = format!("{}-{name}", self.prefix);
        let veth = format!("{}-v{n}", self.prefix);
        let addr = nth_addr(subnet, u32::try_from(n + 1).unwrap_or(u32::MAX));
        let host_dir = self.dir.join(&name);
        fs::create_dir(&host_dir).map_err(|source| LabError::Io {
            action: "create",
            path: host_dir.clone(),
            source,
        })?;
        if !bare {
            let key = host_dir.join("ssh_host_ed25519_key");
            generate_key(&key, &name)?;
            write(
                &host_dir.join("sshd_config"),
                &sshd_config(addr, &key, &host_dir, &self.dir),
            )?;
        }

        sys::ip(&["netns", "add", &netns])?;
        // No IPv6 in the host: nothing but the lab's IPv4 addresses ever leaves it.
        sys::run(Command::new("ip").args([
            "netns",
            "exec",
            &netns,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; \
             echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; true",
        ]))?;
        sys::ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ])?;
        disable_ipv6(&veth);
        sys::ip(&["link", "set", &veth, "master", &self.bridge, "up"])?;
        sys::ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        sys::ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        sys::ip(&["-n", &netns, "link", "set", "eth0", "up"])?;

        let holder = self.start_holder(&name, &netns, &host_dir)?;
        self.hosts.push(Host {
            name,
            addr,
            netns,
            holder,
            index,
            bare,
        });
        self.lock_state().push(HostState::default());
        Ok(())
    }

    /// Starts the process that holds the host's mount namespace, in which a tmpfs of the lab's
    /// data size is mounted on `/srv` with `/srv/data` in it, and waits until the mount is there.
    ///
    /// The host also gets an empty home for root: sshd runs commands through root's login
    /// shell, which would otherwise run this machine's own `~/.bashrc` (slow, noisy, and
    /// able to leave locks behind in the machine's real home when a crash kills it).
    fn start_holder(&self, name: &str, netns: &str, host_dir: &Path) -> Result<i32, LabError> {
        let log = host_dir.join("holder.log");
        let script = format!(
            "mount -t tmpfs -o size={},mode=0755 dnsd-lab /srv && mkdir -m 0755 {DATA_DIR} \
             && mount -t tmpfs -o size=4m,mode=0700 dnsd-lab-home /root \
             && exec sleep infinity",
            self.data_size
        );
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns]).args([
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ]);
        // `ip netns exec`, `unshare` (without --fork) and `sh -c '... exec'` all exec in place,
        // so the child's PID is the holder's.
        let holder = spawn_logged(&mut command, &log)?;
        let real_srv = fs::metadata("/srv").map(|m| m.dev()).ok();
        let root = holder_root(holder);
        let started = Instant::now();
        loop {
            let mounted = fs::metadata(root.join("srv")).ok().map(|m| m.dev());
            if mounted.is_some() && mounted != real_srv && root.join("srv/data").is_dir() {
                return Ok(holder);
            }
            if sys::child_exited(holder) || started.elapsed() > READY_TIMEOUT {
                sys::kill_child(holder);
                return Err(LabError::NotReady {
                    host: name.to_owned(),
                    what: "data tmpfs",
                    waited: started.elapsed(),
                    detail: log_tail(&log),
                });
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn write_known_hosts(&self) -> Result<(), LabError> {
        let mut known = String::new();
        for host in self.hosts() {
            let public = read(&self.host_dir(host).join("ssh_host_ed25519_key.pub"))?;
            // "ssh-ed25519 AAAA... comment" -> "ADDR ssh-ed25519 AAAA..."
            let key: Vec<&str> = public.split_whitespace().take(2).collect();
            let _ = writeln!(known, "{} {}", host.addr, key.join(" "));
        }
        write(&self.known_hosts(), &known)
    }

    /// Starts the host's sshd and echo services inside it; returns their PIDs, sshd first.
    fn start_services(&self, host: &Host) -> Result<Vec<i32>, LabError> {
        if host.bare {
            return Ok(Vec::new());
        }
        let host_dir = self.host_dir(host);
        let sshd = self.start_sshd(host)?;
        let mut services = vec![sshd];
        // PIPE echoes through one pipe that socat both fills and drains. With its default
        // 8 KiB transfers, socat can block writing into a nearly full pipe (64 KiB) that
        // only it would drain, and a large TCP echo stalls for good; a transfer no larger
        // than a pipe page (4 KiB) always fits once the pipe polls writable. UDP keeps the
        // default so that datagrams up to 8 KiB come back whole.
        for (proto, buffer, listen) in [
            (
                "tcp",
                "4096",
                format!("TCP4-LISTEN:{ECHO_PORT},bind={},reuseaddr,fork", host.addr),
            ),
            // RECVFROM with fork: one child per datagram, which answers its sender.
            (
                "udp",
                "8192",
                format!("UDP4-RECVFROM:{ECHO_PORT},bind={},fork", host.addr),
            ),
        ] {
            let mut socat = self.command(host, "socat");
            socat.args(["-b", buffer, &listen, "PIPE"]);
            match spawn_logged(&mut socat, &host_dir.join(format!("echo-{proto}.log"))) {
                Ok(pid) => services.push(pid),
                Err(error) => {
                    services.into_iter().for_each(sys::kill_child);
                    return Err(error);
                }
            }
        }
        Ok(services)
    }

    fn start_sshd(&self, host: &Host) -> Result<i32, LabError> {
        let host_dir = self.host_dir(host);
        let mut sshd = self.command(host, &self.sshd.to_string_lossy());
        sshd.args(["-D", "-e", "-f"])
            .arg(host_dir.join("sshd_config"));
        spawn_logged(&mut sshd, &host_dir.join("sshd.log"))
    }

    /// Waits until the host's sshd sends its banner and its echo answers on TCP and UDP, probing
    /// from inside the host (so it works while the host is cut or partitioned).
    fn wait_ready(&self, host: &Host) -> Result<(), LabError> {
        if host.bare {
            return Ok(());
        }
        let started = Instant::now();
        let probe = Duration::from_millis(500);
        loop {
            let services = self.lock_state()[host.index].services.clone();
            let logs = ["sshd", "echo-tcp", "echo-udp"];
            for (&pid, log) in services.iter().zip(logs) {
                if sys::child_exited(pid) {
                    let log = self.host_dir(host).join(format!("{log}.log"));
                    return Err(LabError::NotReady {
                        host: host.name.clone(),
                        what: "services (one exited)",
                        waited: started.elapsed(),
                        detail: log_tail(&log),
                    });
                }
            }
            let answer = self.in_netns(host, || -> Result<(), String> {
                probe::ssh_banner(host.ssh_addr(), probe).map_err(|e| format!("sshd: {e}"))?;
                let echoed = probe::tcp_echo(host.echo_addr(), b"ready?", probe)
                    .map_err(|e| format!("TCP echo: {e}"))?;
                if echoed != b"ready?" {
                    return Err(format!("TCP echo answered {echoed:?}"));
                }
                probe::udp_echo(host.echo_addr(), b"ready?", probe)
                    .map_err(|e| format!("UDP echo: {e}"))?;
                Ok(())
            })?;
            match answer {
                Ok(()) => return Ok(()),
                Err(detail) if started.elapsed() > READY_TIMEOUT => {
                    return Err(LabError::NotReady {
                        host: host.name.clone(),
                        what: "sshd and echo",
                        waited: started.elapsed(),
                        detail,
                    });
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Stops relays, kills every process of the lab, deletes its links and namespaces and
    /// removes its folder; returns what could not be removed.
    fn teardown(&mut self) -> Vec<String> {
        let state = std::mem::take(&mut *self.lock_state());
        let mut own: Vec<i32> = self.hosts.iter().map(|host| host.holder).collect();
        for host in state {
            own.extend(host.services);
            if let Some(relay) = host.relay {
                relay.stop();
            }
        }
        sweep::remove(&self.prefix, &self.dir, &own)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let problems = self.teardown();
        if !problems.is_empty() {
            tracing::warn!(lab = %self.prefix, ?problems, "lab teardown left things behind");
            // Straight to stderr, so it shows even from a passing test.
            let _ = writeln!(
                io::stderr(),
                "lab {}: teardown left things behind: {}",
                self.prefix,
                problems.join("; ")
            );
        }
    }
}

/// Runs `f` on a fresh thread that has entered network namespace `netns`.
fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
    let path = Path::new("/run/netns").join(netns);
    let ns_err = |source| LabError::Netns {
        netns: netns.to_owned(),
        source,
    };
    let ns = File::open(&path).map_err(ns_err)?;
    thread::scope(|scope| {
        let worker = scope.spawn(move || {
            // The network namespace is per thread; this thread ends with `f`, so no other work
            // ever runs in the host's namespace by accident.
            // SAFETY: setns takes a descriptor we own and a namespace type flag.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(ns_err(io::Error::last_os_error()));
            }
            Ok(f())
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Puts the `local` table's rule where the host's faults need it. Rules that drop incoming
/// packets by source (a partition, a block) must come before it, but rule 0 cannot take rules
/// before it: while any is in place it moves to 100 (added before the old one is deleted, so
/// local delivery never stops), and back to 0 once none is left.
fn place_local_rule(netns: &str, st: &mut HostState) -> Result<(), LabError> {
    let wanted = st.partitioned || !st.blocked.is_empty();
    if wanted == st.local_moved {
        return Ok(());
    }
    let (to, from) = if wanted { ("100", "0") } else { ("0", "100") };
    sys::ip(&["-n", netns, "rule", "add", "pref", to, "lookup", "local"])?;
    sys::ip(&["-n", netns, "rule", "del", "pref", from, "lookup", "local"])?;
    st.local_moved = wanted;
    Ok(())
}

/// The `ip` arguments that add or delete (`op`) the rule in `to`'s namespace dropping what
/// comes from `from`.
fn block_rule(to: &Host, from: &Host, op: &str) -> Vec<String> {
    [
        "-n",
        &to.netns,
        "rule",
        op,
        "pref",
        "20",
        "from",
        &from.addr.to_string(),
        "blackhole",
    ]
    .map(str::to_owned)
    .into()
}

/// What is wrong with these bare host names, if anything: each 1 to 10 lower-case letters
/// and digits starting with a letter (it becomes part of a namespace name), no name twice,
/// and none that the lab uses itself (`h<digits>`, `br`).
fn bare_name_problem(names: &[String]) -> Option<String> {
    for (i, name) in names.iter().enumerate() {
        let well_formed = (1..=10).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !well_formed {
            return Some(format!(
                "bare host name {name:?}: 1 to 10 lower-case letters and digits, starting with a letter"
            ));
        }
        let lab_name = name == "br"
            || name
                .strip_prefix('h')
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if lab_name {
            return Some(format!(
                "bare host name {name:?} is one the lab uses itself"
            ));
        }
        if names[..i].contains(name) {
            return Some(format!("bare host name {name:?} given twice"));
        }
    }
    None
}

/// The root of the holder's mount namespace, as seen from the root namespace.
fn holder_root(holder: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{holder}/root"))
}

/// Address `n` of the /24 starting at `subnet`.
fn nth_addr(subnet: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet) + n)
}

/// Picks a random /24 of 198.18.0.0/15 that overlaps no address or route of the root namespace
/// (other labs' bridges included). Call under the global lock.
fn choose_subnet() -> Result<Ipv4Addr, LabError> {
    let addrs = sys::ip(&["-4", "-o", "addr", "show"])?;
    let routes = sys::ip(&["-4", "route", "show", "table", "main"])?;
    let mut used: Vec<(u32, u32)> = Vec::new();
    for line in String::from_utf8_lossy(&addrs.stdout).lines() {
        let mut words = line.split_whitespace();
        if words.any(|w| w == "inet") {
            used.extend(words.next().and_then(parse_prefix));
        }
    }
    for line in String::from_utf8_lossy(&routes.stdout).lines() {
        let mut words = line.split_whitespace().skip_while(|w| {
            matches!(
                *w,
                "unicast" | "local" | "broadcast" | "blackhole" | "unreachable" | "prohibit"
            )
        });
        // A route to everything (0.0.0.0/0 written out) is a default route, not a clash.
        used.extend(
            words
                .next()
                .and_then(parse_prefix)
                .filter(|&(_, mask)| mask != 0),
        );
    }
    let free: Vec<Ipv4Addr> = (0..SUBNET_COUNT)
        .map(|i| u32::from(SUBNET_BASE) + i * 256)
        .filter(|&net| {
            used.iter().all(|&(other, mask)| {
                let common = mask & 0xffff_ff00;
                (net ^ other) & common != 0
            })
        })
        .map(Ipv4Addr::from)
        .collect();
    if free.is_empty() {
        return Err(LabError::NoFreeSubnet);
    }
    Ok(free[rand::random_range(0..free.len())])
}

/// Parses `a.b.c.d/len` or `a.b.c.d` into (network bits, mask). `default` is not a clash.
fn parse_prefix(word: &str) -> Option<(u32, u32)> {
    let (addr, len) = word.split_once('/').unwrap_or((word, "32"));
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|&l| l <= 32)?;
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    Some((u32::from(addr) & mask, mask))
}

/// Turns IPv6 off on a root-namespace interface of the lab (best effort: IPv6 may be off
/// altogether), so the lab sends no router solicitations or the like.
fn disable_ipv6(interface: &str) {
    let _ = fs::write(
        format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6"),
        "1",
    );
}

fn sshd_config(addr: Ipv4Addr, key: &Path, host_dir: &Path, lab_dir: &Path) -> String {
    format!(
        "# sshd of a dnsd test lab host; key authentication only.\n\
         ListenAddress {addr}:{SSH_PORT}\n\
         HostKey {key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {lab}/authorized_keys\n\
         AuthenticationMethods publickey\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         UsePAM no\n\
         StrictModes no\n\
         UseDNS no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         X11Forwarding no\n\
         MaxStartups 100\n\
         MaxSessions 100\n\
         Subsystem sftp internal-sftp\n",
        key = key.display(),
        pid = host_dir.join("sshd.pid").display(),
        lab = lab_dir.display(),
    )
}

fn generate_key(path: &Path, comment: &str) -> Result<(), LabError> {
    sys::run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
    )
    .map(drop)
}

/// Spawns `command` with stdin and stdout closed and stderr appended to `log`; returns its PID.
/// The child is reaped by PID later (see `sys`), so its `Child` handle is let go.
fn spawn_logged(command: &mut Command, log: &Path) -> Result<i32, LabError> {
    let stderr = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| LabError::Io {
            action: "open",
            path: log.to_owned(),
            source,
        })?;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|source| LabError::Spawn {
            command: sys::command_line(command),
            source,
        })?;
    i32::try_from(child.id()).map_err(|_| LabError::Spawn {
        command: sys::command_line(command),
        source: io::Error::other("PID out of range"),
    })
}

/// The last lines of a log, for error messages.
fn log_tail(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
            format!("{}: {tail}", path.display())
        }
        Err(error) => format!("{}: {error}", path.display()),
    }
}

fn read(path: &Path) -> Result<String, LabError> {
    fs::read_to_string(path).map_err(|source| LabError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, contents: &str) -> Result<(), LabError> {
    fs::write(path, contents).map_err(|source| LabError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_to_network_and_mask() {
        assert_eq!(
            parse_prefix("198.18.4.1/24"),
            Some((u32::from(Ipv4Addr::new(198, 18, 4, 0)), 0xffff_ff00))
        );
        assert_eq!(
            parse_prefix("10.0.0.7"),
            Some((u32::from(Ipv4Addr::new(10, 0, 0, 7)), u32::MAX))
        );
        assert_eq!(parse_prefix("0.0.0.0/0"), Some((0, 0)));
        assert_eq!(parse_prefix("default"), None);
        assert_eq!(parse_prefix("1.2.3.4/33"), None);
    }

    #[test]
    fn bare_host_names_are_checked() {
        let names = |list: &[&str]| list.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(bare_name_problem(&names(&["ts1", "ts2", "etcd"])), None);
        assert_eq!(bare_name_problem(&names(&["hx", "h"])), None);
        for (bad, why) in [
            (&["h4"][..], "uses itself"),
            (&["br"], "uses itself"),
            (&["ts1", "ts1"], "given twice"),
            (&["Ts1"], "lower-case"),
            (&["1ts"], "starting with a letter"),
            (&[""], "1 to 10"),
            (&["abcdefghijk"], "1 to 10"),
            (&["ts-1"], "letters and digits"),
        ] {
            let problem = bare_name_problem(&names(bad)).unwrap_or_default();
            assert!(problem.contains(why), "{bad:?}: {problem:?}");
        }
    }

    #[test]
    fn the_client_options_insist_on_strict_checking_with_the_given_files() {
        let options = ssh_options(Path::new("/l/id"), Path::new("/l/kh")).join(" ");
        for expected in [
            "-F /dev/null",
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "GlobalKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes",
            "UserKnownHostsFile=/l/kh",
            "-i /l/id",
        ] {
            assert!(
                options.contains(expected),
                "{expected} missing in {options}"
            );
        }
    }
}
