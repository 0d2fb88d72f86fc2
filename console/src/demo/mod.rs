//! `console demo`: a terminal server on a pool of three members on this machine, with
//! the console open on it, for a newcomer to watch failover, resync and failback.
//!
//! Every member is a loopback address (127.0.0.11-13 by default) with what a real
//! member has: an echo service for the heartbeat (run inside the console), its own
//! `sshd` (key authentication only, on port 2222) and a data folder. The real `dnsd`
//! (the binary next to this one) runs on them with a `[mirror]` section, so mirroring
//! goes through the production code path: dnsd logs into the primary's sshd and runs
//! rsync there, which pushes over SSH to the secondaries' sshd. What differs from
//! production: all members share this machine's filesystem, so each node has a `root`
//! (its folder under `<dir>/members/`) that is put in front of the service path
//! `/srv/data`; ports are 2222 (ssh), 7007 (echo) and 5380 (DNS) so nothing privileged
//! or already running is needed; and "killing" a member stops its echo service and its
//! sshd (with every session) instead of a machine.
//!
//! A small writer appends a line every second to `writes.log` in the current
//! primary's data folder, so the data visibly follows the primary and comes back with
//! a failback. The demo's keys (`K` kill, `R` revive the selected member) exist only
//! here; `--no-tui` reads the same commands on stdin instead, for tests and headless
//! use. However it ends (q, Ctrl-C, a signal, a panic), dnsd, the sshds and the echo
//! services are stopped by PID; if the console itself is killed, its children get
//! SIGTERM from the kernel, and the next demo sweeps anything left by PID file.
//!
//! With `--cluster`, three terminal servers (`ts1`-`ts3`) run instead of one, on one
//! etcd (`etcd.rs`) started in the demo's folder: each its own dnsd with its own DNS port
//! (5380, 5381, 5382), control socket (`<dir>/tsN/control.sock`, and plain HTTP on a
//! loopback port with the demo's token, so a follower's refusal names the leader's URL)
//! and state folder, over the same three members. The console talks to them through a
//! cluster client: it moves to another when the one it watches dies, and sends actions
//! to the leader. `T` kills the selected terminal server (SIGKILL, as a crash would) and
//! `Y` revives it; `t` selects one. etcd is stopped by PID with everything else.

pub mod echo;
mod etcd;
mod procs;

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Read as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use tokio::io::AsyncBufReadExt as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use crate::app::{ExtraKey, Extras, Target};
use crate::client::{Client, Endpoint};
use crate::launch::{self, Launch};
use crate::operator::{operator, user_name};
use crate::tui::{self, Extension};
use crate::{render, units};
use echo::Echo;

/// Options of `console demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Work directory: keys, configuration, members' data, logs (an earlier demo's is replaced)
    #[arg(long, default_value = "/tmp/dnsd-demo")]
    pub dir: PathBuf,
    /// No TUI: print where things are, then read commands on stdin (kill NODE, revive NODE, status, quit)
    #[arg(long)]
    pub no_tui: bool,
    /// Where the demo's DNS answers
    #[arg(long, default_value = "127.0.0.1:5380")]
    pub dns: SocketAddr,
    /// The three members' loopback addresses
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.11,127.0.0.12,127.0.0.13"
    )]
    pub addresses: Vec<IpAddr>,
    /// Echo (heartbeat) port of every member
    #[arg(long, default_value_t = 7007)]
    pub echo_port: u16,
    /// sshd port of every member
    #[arg(long, default_value_t = 2222)]
    pub ssh_port: u16,
    /// Three terminal servers on one etcd instead of one dnsd (needs etcd: Debian's
    /// etcd-server); their DNS answers on --dns's port and the two after it
    #[arg(long)]
    pub cluster: bool,
    /// With --cluster: etcd's client address (its peer port is the next one; port 0
    /// lets the kernel choose both)
    #[arg(long, default_value = "127.0.0.1:2479", value_name = "ADDR")]
    pub etcd: SocketAddr,
}

/// The demo's own commands on a member or a terminal server: keys in the live view,
/// words on stdin without it (`kill app1`, `revive ts2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DemoCommand {
    /// A member: stop its echo service and sshd, as if the machine crashed. A terminal
    /// server: SIGKILL its dnsd.
    Kill,
    /// Start them again.
    Revive,
}

impl DemoCommand {
    const ALL: [DemoCommand; 2] = [DemoCommand::Kill, DemoCommand::Revive];

    /// Its key in the live view, on the selected member or terminal server.
    fn key(self, target: Target) -> char {
        match (self, target) {
            (DemoCommand::Kill, Target::Member) => 'K',
            (DemoCommand::Revive, Target::Member) => 'R',
            (DemoCommand::Kill, Target::TerminalServer) => 'T',
            (DemoCommand::Revive, Target::TerminalServer) => 'Y',
        }
    }

    /// Its word on stdin (`kill app1`), and in the key line.
    fn word(self) -> &'static str {
        match self {
            DemoCommand::Kill => "kill",
            DemoCommand::Revive => "revive",
        }
    }

    fn help(self, target: Target) -> &'static str {
        match (self, target) {
            (DemoCommand::Kill, Target::Member) => {
                "demo: kill the selected member (echo and sshd stop)"
            }
            (DemoCommand::Revive, Target::Member) => "demo: revive the selected member",
            (DemoCommand::Kill, Target::TerminalServer) => {
                "demo: kill the selected terminal server (SIGKILL)"
            }
            (DemoCommand::Revive, Target::TerminalServer) => {
                "demo: revive the selected terminal server"
            }
        }
    }

    fn from_key(key: char) -> Option<DemoCommand> {
        DemoCommand::ALL.into_iter().find(|c| {
            [Target::Member, Target::TerminalServer]
                .into_iter()
                .any(|t| c.key(t) == key)
        })
    }

    fn from_word(word: &str) -> Option<DemoCommand> {
        DemoCommand::ALL.into_iter().find(|c| c.word() == word)
    }
}

/// What the demo adds to the live view: `banner` under the header, its keys on members,
/// and, for a cluster, its terminal servers and the keys on them.
fn extras(banner: String, terminal_servers: Vec<String>) -> Extras {
    let mut targets = vec![Target::Member];
    if !terminal_servers.is_empty() {
        targets.push(Target::TerminalServer);
    }
    Extras {
        name: "demo".to_owned(),
        banner,
        keys: targets
            .into_iter()
            .flat_map(|t| DemoCommand::ALL.map(|c| (c, t)))
            .map(|(c, target)| ExtraKey {
                key: c.key(target),
                verb: c.word().to_owned(),
                help: c.help(target).to_owned(),
                target,
            })
            .collect(),
        terminal_servers,
    }
}

/// File whose presence says a directory holds a demo (and may be wiped by the next).
const MARKER: &str = ".dnsd-demo";
/// The service, its zone and its mirrored path.
const SERVICE: &str = "www";
const ZONE: &str = "demo.test.";
const DATA: &str = "/srv/data";
/// How long sshd and dnsd may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Seed data on app1: this many files of this size, so the first passes take a few
/// seconds under the demo's bandwidth limit and their progress shows.
const SEED_FILES: usize = 3;
const SEED_BYTES: usize = 2 << 20;

/// One member of the demo pool.
#[derive(Debug)]
struct Member {
    name: String,
    addr: IpAddr,
    /// `<dir>/members/<name>`: the node's `root`.
    root: PathBuf,
    /// `<dir>/sshd/<name>/`: host key, sshd_config.
    sshd_dir: PathBuf,
    sshd: Option<Child>,
    echo: Option<Echo>,
    /// Whether it runs (shared with the writer, which writes only on a live primary).
    alive: Arc<AtomicBool>,
}

impl Member {
    fn data(&self) -> PathBuf {
        rooted(&self.root, DATA)
    }
}

fn rooted(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// One terminal server of the demo: the standalone dnsd, or one of a cluster's.
#[derive(Debug)]
struct TermServer {
    /// `dnsd` standalone, `ts1`-`ts3` in a cluster (its `[cluster] name`).
    name: String,
    /// Where its files are: its configuration, and in a cluster its state and socket.
    config: PathBuf,
    launch: Launch,
    /// Where its DNS answers, as configured (port 0: as the ready line says, once up).
    dns: SocketAddr,
    /// Its control socket (from the ready line, once up).
    control: PathBuf,
    /// Its TCP control API, in a cluster (plain HTTP on loopback, the demo's token).
    control_tcp: Option<SocketAddr>,
    /// `None` while killed (or before it started).
    dnsd: Option<launch::Dnsd>,
}

/// A running demo. Dropping it stops everything it started.
#[derive(Debug)]
struct Demo {
    dir: PathBuf,
    args: DemoArgs,
    sshd_bin: PathBuf,
    /// The etcd binary, for a cluster.
    etcd_bin: Option<PathBuf>,
    members: Vec<Member>,
    servers: Vec<TermServer>,
    etcd: Option<etcd::Etcd>,
    writer: Option<JoinHandle<()>>,
}

/// Runs the demo until the operator quits (or, with `--no-tui`, until `quit` on stdin
/// or a signal).
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !args.no_tui && !std::io::stdout().is_terminal() {
        bail!("the demo's live view needs a terminal; run `console demo --no-tui` without one");
    }
    let mut demo = Demo::new(args)?;
    let outcome = async {
        demo.start().await?;
        let client = demo.client().with_operator(operator());
        demo.writer = Some(tokio::spawn(writer(
            client.clone(),
            demo.dir.join("run"),
            demo.members
                .iter()
                .map(|m| (m.name.clone(), m.data(), m.alive.clone()))
                .collect(),
        )));
        if demo.args.no_tui {
            demo.headless(&client).await
        } else {
            tui::run(client, Some(&mut demo)).await
        }
    }
    .await;
    demo.stop();
    println!("{}", demo.farewell());
    outcome
}

impl Demo {
    fn new(args: DemoArgs) -> anyhow::Result<Demo> {
        if args.addresses.len() != 3 {
            bail!(
                "--addresses needs exactly three addresses, got {}",
                args.addresses.len()
            );
        }
        if let Some(a) = args.addresses.iter().find(|a| !a.is_loopback()) {
            bail!("--addresses: {a} is not a loopback address; the demo stays on this machine");
        }
        let sshd_bin = find_program(&["/usr/sbin/sshd", "/usr/local/sbin/sshd"], "sshd");
        let missing: Vec<&str> = [
            ("sshd", sshd_bin.is_some()),
            ("ssh", find_program(&[], "ssh").is_some()),
            ("ssh-keygen", find_program(&[], "ssh-keygen").is_some()),
            ("rsync", find_program(&[], "rsync").is_some()),
        ]
        .into_iter()
        .filter(|(_, found)| !found)
        .map(|(name, _)| name)
        .collect();
        let Some(sshd_bin) = sshd_bin.filter(|_| missing.is_empty()) else {
            bail!(
                "the demo needs {} (missing); install them with `scripts/deps demo` or: apt-get install openssh-server openssh-client rsync",
                missing.join(", ")
            );
        };
        let etcd_bin = if args.cluster {
            let Some(bin) = find_program(&["/usr/bin/etcd"], "etcd") else {
                bail!(
                    "the cluster demo needs etcd (missing); install it with `scripts/deps demo --cluster` or: apt-get install etcd-server"
                );
            };
            if !args.etcd.ip().is_loopback() {
                bail!(
                    "--etcd: {} is not a loopback address; the demo stays on this machine",
                    args.etcd
                );
            }
            Some(bin)
        } else {
            None
        };
        let dir = absolute(&args.dir)?;
        let servers = terminal_servers(&dir, &args)?;
        let members = args
            .addresses
            .iter()
            .enumerate()
            .map(|(i, &addr)| {
                let name = format!("app{}", i + 1);
                Member {
                    root: dir.join("members").join(&name),
                    sshd_dir: dir.join("sshd").join(&name),
                    name,
                    addr,
                    sshd: None,
                    echo: None,
                    alive: Arc::new(AtomicBool::new(false)),
                }
            })
            .collect();
        Ok(Demo {
            dir,
            args,
            sshd_bin,
            etcd_bin,
            members,
            servers,
            etcd: None,
            writer: None,
        })
    }

    /// A client of the demo's dnsd; in a cluster, of every terminal server, moving to a
    /// live one and sending actions to the leader.
    fn client(&self) -> Client {
        match self.servers.as_slice() {
            [only] => Client::new(Endpoint::Unix(only.control.clone())),
            all => Client::cluster(
                all.iter()
                    .map(|t| (t.name.clone(), Endpoint::Unix(t.control.clone())))
                    .collect(),
            ),
        }
    }

    fn cluster(&self) -> bool {
        self.etcd_bin.is_some()
    }

    /// Prepares the directory, keys and configuration, and starts every process.
    async fn start(&mut self) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the console's own binary")?;
        let bin = exe.with_file_name("dnsd");
        if !bin.is_file() {
            bail!(
                "dnsd not found at {} (it is looked for next to console): build both with `cargo build --release --bins`",
                bin.display()
            );
        }
        self.prepare_dir()?;
        self.make_keys()?;
        for i in 0..self.members.len() {
            self.write_sshd_config(i)?;
            self.start_member(i)?;
        }
        for m in &self.members {
            wait_for_sshd(m, self.args.ssh_port)?;
        }
        self.seed()?;
        if let Some(bin) = &self.etcd_bin {
            let etcd = etcd::Etcd::start(bin, &self.dir, self.args.etcd, START_TIMEOUT)?;
            self.etcd = Some(etcd);
            write_private(&self.token_file(), "dnsd-demo-token-0123456789\n")?;
        }
        for i in 0..self.servers.len() {
            // A port free now, written in the configuration so that it stays the same
            // when the terminal server is revived, and named by its refusals: dnsd names
            // its configured address, so port 0 would not do.
            if let Some(addr) = self.servers[i].control_tcp.as_mut() {
                *addr = std::net::TcpListener::bind(*addr)
                    .and_then(|l| l.local_addr())
                    .context("cannot find a free port for a terminal server's control API")?;
            }
            let t = &self.servers[i];
            if let Some(own) = t.config.parent().filter(|_| self.cluster()) {
                let state = own.join("state");
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&state)
                    .with_context(|| format!("cannot create {}", state.display()))?;
            }
            let etcd = self.etcd.as_ref().map(etcd::Etcd::endpoint);
            std::fs::write(&t.config, self.dnsd_config(t, etcd.as_deref())?)
                .with_context(|| format!("cannot write {}", t.config.display()))?;
            let any_port = t.dns.port() == 0;
            self.start_dnsd(i)?;
            if any_port {
                // Pinned to the port the kernel chose, so that a revived terminal server
                // answers where it did (and where the demo said it does).
                let t = &self.servers[i];
                std::fs::write(&t.config, self.dnsd_config(t, etcd.as_deref())?)
                    .with_context(|| format!("cannot write {}", t.config.display()))?;
            }
        }
        Ok(())
    }

    /// The bearer token of the terminal servers' TCP control API, in a cluster.
    fn token_file(&self) -> PathBuf {
        self.dir.join("control.token")
    }

    fn prepare_dir(&self) -> anyhow::Result<()> {
        let dir = &self.dir;
        if dir.exists() {
            let is_demo = dir.join(MARKER).exists();
            let empty = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .next()
                .is_none();
            if !is_demo && !empty {
                bail!(
                    "{} exists and does not hold an earlier demo: choose another --dir",
                    dir.display()
                );
            }
            if is_demo {
                let stopped = procs::sweep(dir);
                if stopped > 0 {
                    eprintln!(
                        "console demo: stopped {stopped} process(es) an earlier demo in {} left running",
                        dir.display()
                    );
                }
                std::fs::remove_dir_all(dir).with_context(|| {
                    format!("cannot clear the earlier demo in {}", dir.display())
                })?;
            }
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for sub in ["", "ssh", "run", "logs", "state"] {
            let p = dir.join(sub);
            builder
                .create(&p)
                .with_context(|| format!("cannot create {}", p.display()))?;
        }
        std::fs::write(
            dir.join(MARKER),
            "This directory holds a dnsd demo (console demo); the next demo replaces it.\n",
        )
        .with_context(|| format!("cannot write the marker in {}", dir.display()))?;
        for m in &self.members {
            for p in [m.data(), m.sshd_dir.clone()] {
                builder
                    .create(&p)
                    .with_context(|| format!("cannot create {}", p.display()))?;
            }
        }
        // sshd run as root needs its privilege separation directory (the sshd package's
        // systemd unit creates it at boot; on a fresh container nobody has).
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 && !Path::new("/run/sshd").exists() {
            builder
                .mode(0o755)
                .create("/run/sshd")
                .context("cannot create /run/sshd, which sshd needs when run as root")?;
        }
        Ok(())
    }

    fn ssh_dir(&self) -> PathBuf {
        self.dir.join("ssh")
    }

    /// The client key (used by dnsd and, on the members, by rsync between them), each
    /// member's host key, `authorized_keys` and `known_hosts`.
    fn make_keys(&self) -> anyhow::Result<()> {
        let ssh = self.ssh_dir();
        keygen(&ssh.join("id_ed25519"), "dnsd-demo client")?;
        let client_pub = std::fs::read_to_string(ssh.join("id_ed25519.pub"))
            .context("cannot read the demo's public key")?;
        write_private(&ssh.join("authorized_keys"), &client_pub)?;
        let mut known = String::new();
        for m in &self.members {
            let key = m.sshd_dir.join("ssh_host_ed25519_key");
            keygen(&key, &format!("dnsd-demo {}", m.name))?;
            let public = std::fs::read_to_string(key.with_extension("pub"))
                .with_context(|| format!("cannot read {}'s host key", m.name))?;
            let mut fields = public.split_whitespace();
            let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
                bail!("ssh-keygen wrote an unreadable public key for {}", m.name);
            };
            let host = match m.addr {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => a.to_string(),
            };
            let _ = writeln!(known, "[{host}]:{} {kind} {blob}", self.args.ssh_port);
        }
        write_private(&ssh.join("known_hosts"), &known)
    }

    fn write_sshd_config(&self, i: usize) -> anyhow::Result<()> {
        let m = &self.members[i];
        let listen = SocketAddr::new(m.addr, self.args.ssh_port);
        let text = format!(
            "# sshd of demo member {name}; key authentication only, for the demo's key.\n\
             ListenAddress {listen}\n\
             HostKey {key}\n\
             PidFile {pid}\n\
             AuthorizedKeysFile {auth}\n\
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
             MaxStartups 50\n",
            name = m.name,
            key = m.sshd_dir.join("ssh_host_ed25519_key").display(),
            pid = self
                .dir
                .join("run")
                .join(format!("sshd-{}.pid", m.name))
                .display(),
            auth = self.ssh_dir().join("authorized_keys").display(),
        );
        let path = m.sshd_dir.join("sshd_config");
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Starts a member's echo service and sshd.
    fn start_member(&mut self, i: usize) -> anyhow::Result<()> {
        let echo_addr = SocketAddr::new(self.members[i].addr, self.args.echo_port);
        let sshd_bin = self.sshd_bin.clone();
        let log_path = self
            .dir
            .join("logs")
            .join(format!("sshd-{}.log", self.members[i].name));
        let m = &mut self.members[i];
        m.echo = Some(Echo::start(echo_addr).with_context(|| {
            format!("{}: cannot start the echo service on {echo_addr}", m.name)
        })?);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut cmd = Command::new(&sshd_bin);
        cmd.args(["-D", "-e", "-f"])
            .arg(m.sshd_dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        launch::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("{}: cannot start {}", m.name, sshd_bin.display()))?;
        m.sshd = Some(child);
        m.alive.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Seeds app1's data folder (the first primary).
    fn seed(&self) -> anyhow::Result<()> {
        let data = self.members[0].data();
        std::fs::write(
            data.join("README.txt"),
            "This is the data of the demo service www. dnsd mirrors it from the primary to\n\
             the secondaries with rsync over SSH; writes.log grows by a line every second on\n\
             whichever member is primary.\n",
        )
        .context("cannot seed the demo's data")?;
        let photos = data.join("photos");
        std::fs::create_dir_all(&photos).context("cannot seed the demo's data")?;
        // Pseudo-random bytes (xorshift) that rsync cannot compress away.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for n in 1..=SEED_FILES {
            let mut bytes = Vec::with_capacity(SEED_BYTES);
            while bytes.len() < SEED_BYTES {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.extend_from_slice(&x.to_le_bytes());
            }
            let p = photos.join(format!("photo-{n}.bin"));
            std::fs::write(&p, &bytes).with_context(|| format!("cannot write {}", p.display()))?;
        }
        Ok(())
    }

    /// Terminal server `t`'s configuration; in a cluster, on the etcd at `etcd`.
    fn dnsd_config(&self, t: &TermServer, etcd: Option<&str>) -> anyhow::Result<String> {
        let ssh = self.ssh_dir();
        let key = ssh.join("id_ed25519");
        let known = ssh.join("known_hosts");
        let user =
            user_name().context("cannot tell which user dnsd should log into the members as")?;
        let mut nodes = String::new();
        for m in &self.members {
            let _ = write!(
                nodes,
                "\n[[node]]\nname = \"{}\"\naddress = \"{}\"\n# Members share this machine's filesystem: each has its own folder.\nroot = {}\n",
                m.name,
                m.addr,
                toml_str(&m.root)
            );
        }
        let names: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("\"{}\"", m.name))
            .collect();
        let cluster = match etcd {
            Some(endpoint) => format!(
                r#"
# One of the demo's three terminal servers, on the demo's etcd.
[cluster]
name = "{name}"
etcd = ["{endpoint}"]
lease = "3s"
"#,
                name = t.name,
            ),
            None => String::new(),
        };
        let control_tcp = match t.control_tcp {
            // Named in a follower's refusals as the leader's address.
            Some(addr) => format!(
                "tcp = \"{addr}\"\nallow_plain_tcp_on_loopback = true\ntoken_file = {}\n",
                toml_str(&self.token_file())
            ),
            None => String::new(),
        };
        let state = match t.config.parent() {
            Some(own) if self.cluster() => own.join("state"),
            _ => self.dir.join("state"),
        };
        Ok(format!(
            r#"# dnsd configuration written by `console demo` (see console/README.md).
{cluster}
[dns]
listen = ["{dns}"]
zone = "{ZONE}"
ttl = "5s"
nameservers = [{{ name = "ns1.{ZONE}", address = "127.0.0.1" }}]

[heartbeat]
protocol = "tcp"
port = {echo}
interval = "500ms"
timeout = "400ms"
fall = 3
rise = 3

[control]
socket = {control}
{control_tcp}
[state]
dir = {state}

[mirror]
interval = "3s"
user = {user}
port = {ssh_port}
identity = {key}
known_hosts = {known}
peer_identity = {key}
peer_known_hosts = {known}
connect_timeout = "3s"
io_timeout = "20s"
keepalive = "5s"
# Slow enough that the first passes take a few seconds and their progress shows.
bwlimit = "2MiB"
{nodes}
[[service]]
name = "{SERVICE}"
nodes = [{names}]
paths = ["{DATA}"]
failback = "auto"
failback_after = "15s"
# Hooks run on the member over SSH. The demo's writer stops writing on a demoted member,
# so the final sync of a switchover carries every write over.
demote = ["touch", {demoted}]
promote = ["rm", "-f", {demoted}]
"#,
            dns = t.dns,
            echo = self.args.echo_port,
            control = toml_str(&t.control),
            state = toml_str(&state),
            user = toml_str(Path::new(&user)),
            ssh_port = self.args.ssh_port,
            key = toml_str(&key),
            known = toml_str(&known),
            names = names.join(", "),
            demoted = toml_str(&self.dir.join("run").join("demoted-{node}")),
        ))
    }

    /// Starts terminal server `i`'s dnsd and waits for its ready line.
    fn start_dnsd(&mut self, i: usize) -> anyhow::Result<()> {
        let t = &mut self.servers[i];
        let dnsd = t
            .launch
            .start(&t.config)
            .with_context(|| format!("{} did not start", t.name))?;
        let ready = dnsd.ready();
        if let Some(dns) = ready.dns.first() {
            t.dns = *dns;
        }
        if let Some(control) = &ready.control {
            t.control = control.clone();
        }
        t.dnsd = Some(dnsd);
        Ok(())
    }

    fn dig_line(&self) -> String {
        let dns = self.servers.first().map_or(self.args.dns, |t| t.dns);
        let mut line = format!(
            "dig @{} -p {} {SERVICE}.{} +short",
            dns.ip(),
            dns.port(),
            ZONE.trim_end_matches('.')
        );
        if let [first, others @ ..] = self.servers.as_slice()
            && !others.is_empty()
        {
            let others: Vec<String> = others
                .iter()
                .map(|t| format!("{} -p {}", t.name, t.dns.port()))
                .collect();
            line.push_str(&format!(" ({}; {})", first.name, others.join(", ")));
        }
        line
    }

    fn banner(&self) -> String {
        if self.cluster() {
            return format!(
                "{} · t selects a terminal server, T kills it, Y revives it",
                self.dig_line()
            );
        }
        format!(
            "{} · data in {}/members/*{DATA}",
            self.dig_line(),
            self.dir.display()
        )
    }

    /// Without the TUI: say where things are, then obey commands on stdin.
    async fn headless(&mut self, client: &Client) -> anyhow::Result<()> {
        let first = &self.servers[0];
        let ready = serde_json::json!({
            "demo_ready": {
                "dir": self.dir,
                "dns": first.dns.to_string(),
                "control": first.control,
                "dnsd_pid": first.dnsd.as_ref().map(launch::Dnsd::pid),
                "members": self.members.iter().map(|m| serde_json::json!({
                    "name": m.name, "address": m.addr.to_string(), "data": m.data(),
                })).collect::<Vec<_>>(),
                "terminal_servers": self.servers.iter().map(|t| serde_json::json!({
                    "name": t.name,
                    "dns": t.dns.to_string(),
                    "control": t.control,
                    "control_tcp": t.control_tcp.map(|a| a.to_string()),
                    "pid": t.dnsd.as_ref().map(launch::Dnsd::pid),
                })).collect::<Vec<_>>(),
                "etcd": self.etcd.as_ref().map(|e| serde_json::json!({
                    "endpoint": e.endpoint(), "pid": e.pid(),
                })),
            }
        });
        println!("{ready}");
        println!(
            "demo running: DNS on {}, control socket {}; try:  {}",
            first.dns,
            first.control.display(),
            self.dig_line()
        );
        let names = if self.cluster() { "NODE|TS" } else { "NODE" };
        println!(
            "commands on stdin: kill {names}, revive {names}, status, quit   (watch it live: console --socket {})",
            first.control.display()
        );
        let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut stdin_open = true;
        loop {
            tokio::select! {
                line = lines.next_line(), if stdin_open => match line {
                    Ok(Some(line)) => {
                        let words: Vec<&str> = line.split_whitespace().collect();
                        match words.as_slice() {
                            [] => {}
                            ["quit" | "exit" | "stop"] => return Ok(()),
                            ["status"] => match client.status().await {
                                Ok(s) => print!("{}", render::status_table(&s)),
                                Err(e) => println!("error: {e}"),
                            },
                            [word, node] if let Some(command) = DemoCommand::from_word(word) => {
                                report(self.obey(command, node));
                            }
                            _ => println!("error: unknown command {line:?}; use kill NAME, revive NAME, status or quit"),
                        }
                    }
                    // No more commands: keep running until a signal.
                    Ok(None) | Err(_) => stdin_open = false,
                },
                _ = sigterm.recv() => return Ok(()),
                _ = sigint.recv() => return Ok(()),
                _ = sighup.recv() => return Ok(()),
            }
        }
    }

    /// Runs one of the demo's commands on the member or terminal server `name`; the text
    /// says what was done.
    fn obey(&mut self, command: DemoCommand, name: &str) -> anyhow::Result<String> {
        if let Some(i) = self.servers.iter().position(|t| t.name == name)
            && self.cluster()
        {
            return match command {
                DemoCommand::Kill => self.kill_server(i),
                DemoCommand::Revive => self.revive_server(i),
            };
        }
        match command {
            DemoCommand::Kill => self.kill(name),
            DemoCommand::Revive => self.revive(name),
        }
    }

    fn member_index(&self, name: &str) -> anyhow::Result<usize> {
        let Some(i) = self.members.iter().position(|m| m.name == name) else {
            let mut names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
            if self.cluster() {
                names.extend(self.servers.iter().map(|t| t.name.as_str()));
            }
            bail!("no member {name:?} in the demo ({})", names.join(", "));
        };
        Ok(i)
    }

    /// Kills a member: its echo service and its sshd with every session stop at once.
    fn kill(&mut self, name: &str) -> anyhow::Result<String> {
        let i = self.member_index(name)?;
        let m = &mut self.members[i];
        if !m.alive.load(Ordering::SeqCst) {
            bail!("{name} is already killed (R revives it)");
        }
        m.alive.store(false, Ordering::SeqCst);
        if let Some(mut e) = m.echo.take() {
            e.stop();
        }
        if let Some(mut sshd) = m.sshd.take() {
            procs::kill_tree(&mut sshd);
        }
        Ok(format!(
            "{name} killed: its echo service and sshd stopped; dnsd notices after 3 missed heartbeats"
        ))
    }

    fn revive(&mut self, name: &str) -> anyhow::Result<String> {
        let i = self.member_index(name)?;
        if self.members[i].alive.load(Ordering::SeqCst) {
            bail!("{name} is running (K kills it)");
        }
        self.start_member(i)?;
        Ok(format!(
            "{name} revived: dnsd sees it up after 3 answered heartbeats, resyncs it, then fails back"
        ))
    }

    /// Kills a terminal server's dnsd with SIGKILL, as a crash of its machine would.
    fn kill_server(&mut self, i: usize) -> anyhow::Result<String> {
        let t = &mut self.servers[i];
        let Some(mut dnsd) = t.dnsd.take() else {
            bail!("{} is already killed (Y revives it)", t.name);
        };
        dnsd.kill();
        Ok(format!(
            "{} killed (SIGKILL): its lease runs out within 3s; if it led, another terminal server takes the lead",
            t.name
        ))
    }

    fn revive_server(&mut self, i: usize) -> anyhow::Result<String> {
        if self.servers[i].dnsd.is_some() {
            bail!("{} is running (T kills it)", self.servers[i].name);
        }
        self.start_dnsd(i)?;
        Ok(format!(
            "{} revived: it follows the leader's state in etcd (and leads if no one does)",
            self.servers[i].name
        ))
    }

    /// Stops everything, by PID: the writer, dnsd (SIGTERM, so it saves its state), the
    /// sshds with their sessions, the echo services. Idempotent.
    fn stop(&mut self) {
        if let Some(w) = self.writer.take() {
            w.abort();
        }
        for t in &mut self.servers {
            if let Some(mut dnsd) = t.dnsd.take() {
                // SIGTERM first, so dnsd saves its state; it removes its PID file.
                dnsd.stop();
            }
        }
        // After the terminal servers, which would otherwise go on looking for it.
        if let Some(mut etcd) = self.etcd.take() {
            etcd.stop();
        }
        for m in &mut self.members {
            m.alive.store(false, Ordering::SeqCst);
            if let Some(mut e) = m.echo.take() {
                e.stop();
            }
            if let Some(mut sshd) = m.sshd.take() {
                procs::kill_tree(&mut sshd);
            }
        }
    }

    fn farewell(&self) -> String {
        if self.cluster() {
            return format!(
                "demo stopped. Its files stay in {dir}: ts1..ts3/ (each terminal server's dnsd.toml and state), etcd/ (etcd's data), logs/ (dnsd-ts*.log, etcd.log, sshd-*.log), members/*{DATA} (each member's data).",
                dir = self.dir.display()
            );
        }
        format!(
            "demo stopped. Its files stay in {dir}: dnsd.toml, logs/ (dnsd.log, sshd-*.log), members/*{DATA} (each member's data).",
            dir = self.dir.display()
        )
    }
}

impl Extension for Demo {
    fn extras(&self) -> Extras {
        let names = match self.cluster() {
            true => self.servers.iter().map(|t| t.name.clone()).collect(),
            false => Vec::new(),
        };
        extras(self.banner(), names)
    }

    fn run(&mut self, key: char, target: &str) -> anyhow::Result<String> {
        let Some(command) = DemoCommand::from_key(key) else {
            bail!("the demo has no key {key}");
        };
        self.obey(command, target)
    }
}

/// The demo's terminal servers, not started: the standalone dnsd (its files where the
/// demo always kept them), or `ts1`-`ts3`, each in `<dir>/tsN/` with DNS on `--dns`'s
/// port plus N-1 and its TCP control API on a loopback port (chosen at start).
fn terminal_servers(dir: &Path, args: &DemoArgs) -> anyhow::Result<Vec<TermServer>> {
    let exe = std::env::current_exe().context("cannot find the console's own binary")?;
    // Whether it is there is checked when the demo starts.
    let bin = exe.with_file_name("dnsd");
    let launch = |log: PathBuf, pid: PathBuf| {
        Launch::new(&bin, log)
            .log_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .ready_timeout(START_TIMEOUT)
            // The demo runs on this thread until it stops dnsd, and a killed console
            // must not leave dnsd behind; the PID file lets the next demo sweep it
            // otherwise. A revived terminal server's log goes on after its first life's.
            .die_with_parent()
            .pid_file(pid)
            .append_log()
    };
    if !args.cluster {
        return Ok(vec![TermServer {
            name: "dnsd".into(),
            config: dir.join("dnsd.toml"),
            launch: launch(dir.join("logs/dnsd.log"), dir.join("run/dnsd.pid")),
            dns: args.dns,
            control: dir.join("control.sock"),
            control_tcp: None,
            dnsd: None,
        }]);
    }
    (1..=3u16)
        .map(|n| {
            let name = format!("ts{n}");
            let own = dir.join(&name);
            let port = match args.dns.port() {
                0 => 0,
                p => p.checked_add(n - 1).with_context(|| {
                    format!("--dns {}: ts{n} needs the port {n} after it", args.dns)
                })?,
            };
            Ok(TermServer {
                config: own.join("dnsd.toml"),
                launch: launch(
                    dir.join("logs").join(format!("dnsd-{name}.log")),
                    dir.join("run").join(format!("dnsd-{name}.pid")),
                ),
                dns: SocketAddr::new(args.dns.ip(), port),
                control: own.join("control.sock"),
                // Its port is chosen when the demo starts.
                control_tcp: Some(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))),
                dnsd: None,
                name,
            })
        })
        .collect()
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop();
    }
}

fn report(outcome: anyhow::Result<String>) {
    match outcome {
        Ok(text) => println!("ok: {text}"),
        Err(e) => println!("error: {e:#}"),
    }
}

/// Every second, appends a line to `writes.log` on the current primary, if it is alive,
/// up and not demoted (the demote hook leaves `run/demoted-<node>`): the data a failover
/// must carry over and a failback must bring back.
async fn writer(client: Client, run: PathBuf, members: Vec<(String, PathBuf, Arc<AtomicBool>)>) {
    let mut n = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Ok(status) = client.status().await else {
            continue;
        };
        let Some(svc) = status.service(SERVICE) else {
            continue;
        };
        let up = status
            .node(&svc.primary)
            .is_some_and(|n| n.health == dnsd_api::Health::Up);
        let Some((name, data, alive)) = members.iter().find(|(name, ..)| *name == svc.primary)
        else {
            continue;
        };
        let demoted = run.join(format!("demoted-{name}")).exists();
        if !up || !alive.load(Ordering::SeqCst) || demoted {
            continue;
        }
        n += 1;
        let line = format!(
            "{} #{n} written on {name} (primary of {SERVICE}, epoch {})\n",
            units::timestamp(units::now_ms()),
            svc.epoch
        );
        let path = data.join("writes.log");
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        // A failed append (the folder moved during a resync) is retried next second.
        drop(appended);
    }
}

/// Waits until a member's sshd answers with its banner.
fn wait_for_sshd(m: &Member, port: u16) -> anyhow::Result<()> {
    let addr = SocketAddr::new(m.addr, port);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut banner = [0u8; 4];
            if s.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{}'s sshd does not answer on {addr}; see its log in logs/sshd-{}.log",
                m.name,
                m.name
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn keygen(path: &Path, comment: &str) -> anyhow::Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("cannot run ssh-keygen")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen failed for {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))
}

fn find_program(candidates: &[&str], name: &str) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_owned())
    } else {
        Ok(std::env::current_dir()
            .context("cannot find the current directory")?
            .join(path))
    }
}

/// A TOML basic string holding `path`.
fn toml_str(path: &Path) -> String {
    let s = path.to_string_lossy();
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::*;
    use crate::app::Input;
    use crate::fixtures;
    use crate::ui::testing::{app, screen};

    fn args(dir: &Path) -> DemoArgs {
        DemoArgs {
            dir: dir.to_owned(),
            no_tui: true,
            dns: "127.0.0.1:5380".parse().unwrap(),
            addresses: vec![
                "127.0.0.11".parse().unwrap(),
                "127.0.0.12".parse().unwrap(),
                "127.0.0.13".parse().unwrap(),
            ],
            echo_port: 7007,
            ssh_port: 2222,
            cluster: false,
            etcd: "127.0.0.1:2479".parse().unwrap(),
        }
    }

    #[test]
    fn config_roots_every_member_and_mirrors_through_port_2222() {
        let dir = tempfile::tempdir().unwrap();
        let Ok(demo) = Demo::new(args(dir.path())) else {
            eprintln!("SKIPPED demo config test: sshd, ssh, ssh-keygen or rsync missing");
            return;
        };
        let text = demo.dnsd_config(&demo.servers[0], None).unwrap();
        assert!(!text.contains("[cluster]"), "{text}");
        let root = dir.path().join("members/app2");
        assert!(
            text.contains(&format!("root = \"{}\"", root.display())),
            "{text}"
        );
        assert!(
            text.contains("port = 2222") && text.contains("port = 7007"),
            "{text}"
        );
        assert!(text.contains("failback = \"auto\"") && text.contains("failback_after = \"15s\""));
        assert!(text.contains("listen = [\"127.0.0.1:5380\"]"));
        assert_eq!(
            demo.dig_line(),
            "dig @127.0.0.1 -p 5380 www.demo.test +short"
        );
        assert_eq!(
            demo.members[2].data(),
            dir.path().join("members/app3/srv/data")
        );
    }

    #[test]
    fn a_cluster_has_three_terminal_servers_each_with_its_own_ports_socket_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(dir.path());
        a.cluster = true;
        let Ok(demo) = Demo::new(a) else {
            eprintln!(
                "SKIPPED demo cluster config test: sshd, ssh, ssh-keygen, rsync or etcd missing"
            );
            return;
        };
        let names: Vec<&str> = demo.servers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ts1", "ts2", "ts3"]);
        let ts2 = &demo.servers[1];
        assert_eq!(ts2.dns.port(), 5381);
        assert_eq!(ts2.control, dir.path().join("ts2/control.sock"));
        let text = demo
            .dnsd_config(ts2, Some("http://127.0.0.1:2479"))
            .unwrap();
        for needed in [
            "[cluster]\nname = \"ts2\"\netcd = [\"http://127.0.0.1:2479\"]\nlease = \"3s\"",
            "listen = [\"127.0.0.1:5381\"]",
            "allow_plain_tcp_on_loopback = true",
            &format!("dir = \"{}\"", dir.path().join("ts2/state").display()),
            &format!(
                "socket = \"{}\"",
                dir.path().join("ts2/control.sock").display()
            ),
        ] {
            assert!(text.contains(needed), "{needed:?} missing:\n{text}");
        }
        assert_eq!(
            demo.dig_line(),
            "dig @127.0.0.1 -p 5380 www.demo.test +short (ts1; ts2 -p 5381, ts3 -p 5382)"
        );
        let x = extras(
            demo.banner(),
            vec!["ts1".into(), "ts2".into(), "ts3".into()],
        );
        let keys: Vec<(char, Target)> = x.keys.iter().map(|k| (k.key, k.target)).collect();
        assert_eq!(
            keys,
            [
                ('K', Target::Member),
                ('R', Target::Member),
                ('T', Target::TerminalServer),
                ('Y', Target::TerminalServer)
            ]
        );
    }

    #[test]
    fn refuses_non_loopback_members_and_foreign_directories() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(dir.path());
        a.addresses[1] = "10.0.0.2".parse().unwrap();
        let err = Demo::new(a).unwrap_err().to_string();
        assert!(
            err.contains("not a loopback address") || err.contains("missing"),
            "{err}"
        );

        std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
        if let Ok(demo) = Demo::new(args(dir.path())) {
            let err = demo.prepare_dir().unwrap_err().to_string();
            assert!(err.contains("does not hold an earlier demo"), "{err}");
            assert!(dir.path().join("precious.txt").exists());
        }
    }

    #[test]
    fn help_overlay() {
        let mut app = app(fixtures::three_members()).with_extras(extras(
            "dig @127.0.0.1 -p 5380 www.demo.test +short · K kills, R revives the selected member"
                .into(),
            Vec::new(),
        ));
        app.update(Input::Key(KeyEvent::new(
            KeyCode::Char('?'),
            KeyModifiers::NONE,
        )));
        let s = screen(&app, 80, 24);
        insta::assert_snapshot!("help_demo_80x24", s);
        assert!(s.contains("demo: kill the selected member"), "{s}");
    }

    /// The cluster demo's view after `T` on ts3: ts3's lease ran out, so dnsd lists ts1
    /// and ts2 only; the demo still lists ts3, gone and selected, for `Y`.
    #[test]
    fn cluster_demo_with_a_terminal_server_killed() {
        let key = |app: &mut crate::app::App, c: char| {
            app.update(Input::Key(KeyEvent::new(
                KeyCode::Char(c),
                KeyModifiers::NONE,
            )))
        };
        let banner = "dig @127.0.0.1 -p 5380 www.demo.test +short (ts1; ts2 -p 5381, ts3 -p 5382) · t selects a terminal server, T kills it, Y revives it";
        let names = vec!["ts1".to_owned(), "ts2".to_owned(), "ts3".to_owned()];
        let mut st = fixtures::cluster();
        if let Some(c) = &mut st.cluster {
            c.servers.truncate(2);
        }
        let mut app = app(st).with_extras(extras(banner.into(), names));
        key(&mut app, 't');
        key(&mut app, 't');
        key(&mut app, 't');
        assert_eq!(app.selected_terminal_server(), Some("ts3"));
        let effect = key(&mut app, 'Y');
        assert_eq!(
            effect,
            Some(crate::app::Effect::Extra {
                key: 'Y',
                target: "ts3".into()
            })
        );
        let s = screen(&app, 80, 24);
        insta::assert_snapshot!("cluster_demo_ts3_killed_80x24", s);
        assert!(
            s.contains("cluster  ts1 leads, lease 2.6s · ts2 follows · ts3 gone · on ts1: etcd ok"),
            "{s}"
        );
        let wide = screen(&app, 120, 32);
        insta::assert_snapshot!("cluster_demo_ts3_killed_120x32", wide);
        assert!(
            wide.contains("T kill ts") && wide.contains("Y revive ts"),
            "{wide}"
        );
        key(&mut app, '?');
        let help = screen(&app, 80, 24);
        insta::assert_snapshot!("help_cluster_demo_80x24", help);
        assert!(
            help.contains("kill the selected terminal server (SIGKILL)"),
            "{help}"
        );
    }

    #[test]
    fn keys_and_words_name_the_same_commands() {
        for c in DemoCommand::ALL {
            for t in [Target::Member, Target::TerminalServer] {
                assert_eq!(DemoCommand::from_key(c.key(t)), Some(c));
            }
            assert_eq!(DemoCommand::from_word(c.word()), Some(c));
        }
        assert_eq!(DemoCommand::from_word("status"), None);
        assert_eq!(DemoCommand::from_key('q'), None);
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(Path::new("/a\"b\\c")), r#""/a\"b\\c""#);
    }
}
