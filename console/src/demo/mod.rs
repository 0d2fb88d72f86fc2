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

mod echo;
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

use crate::app::{ExtraKey, Extras};
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
}

/// The demo's own commands on a member: keys in the live view, words on stdin without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DemoCommand {
    /// Stop the member's echo service and sshd, as if the machine crashed.
    Kill,
    /// Start them again.
    Revive,
}

impl DemoCommand {
    const ALL: [DemoCommand; 2] = [DemoCommand::Kill, DemoCommand::Revive];

    /// Its key in the live view.
    fn key(self) -> char {
        match self {
            DemoCommand::Kill => 'K',
            DemoCommand::Revive => 'R',
        }
    }

    /// Its word on stdin (`kill app1`), and in the key line.
    fn word(self) -> &'static str {
        match self {
            DemoCommand::Kill => "kill",
            DemoCommand::Revive => "revive",
        }
    }

    fn help(self) -> &'static str {
        match self {
            DemoCommand::Kill => "demo: kill the selected member (echo and sshd stop)",
            DemoCommand::Revive => "demo: revive the selected member",
        }
    }

    fn from_key(key: char) -> Option<DemoCommand> {
        DemoCommand::ALL.into_iter().find(|c| c.key() == key)
    }

    fn from_word(word: &str) -> Option<DemoCommand> {
        DemoCommand::ALL.into_iter().find(|c| c.word() == word)
    }
}

/// What the demo adds to the live view: `banner` under the header, and its keys.
fn extras(banner: String) -> Extras {
    Extras {
        name: "demo".to_owned(),
        banner,
        keys: DemoCommand::ALL
            .into_iter()
            .map(|c| ExtraKey {
                key: c.key(),
                verb: c.word().to_owned(),
                help: c.help().to_owned(),
            })
            .collect(),
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

/// A running demo. Dropping it stops everything it started.
#[derive(Debug)]
struct Demo {
    dir: PathBuf,
    args: DemoArgs,
    sshd_bin: PathBuf,
    members: Vec<Member>,
    dnsd: Option<launch::Dnsd>,
    writer: Option<JoinHandle<()>>,
    /// DNS address and control socket, from dnsd's ready line.
    dns: Option<SocketAddr>,
    control: PathBuf,
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
        let client = Client::new(Endpoint::Unix(demo.control.clone())).with_operator(operator());
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
        let dir = absolute(&args.dir)?;
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
            control: dir.join("control.sock"),
            dir,
            args,
            sshd_bin,
            members,
            dnsd: None,
            writer: None,
            dns: None,
        })
    }

    /// Prepares the directory, keys and configuration, and starts every process.
    async fn start(&mut self) -> anyhow::Result<()> {
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
        let config = self.dir.join("dnsd.toml");
        std::fs::write(&config, self.dnsd_config()?)
            .with_context(|| format!("cannot write {}", config.display()))?;
        self.start_dnsd(&config)?;
        Ok(())
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

    fn dnsd_config(&self) -> anyhow::Result<String> {
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
        Ok(format!(
            r#"# dnsd configuration written by `console demo` (see console/README.md).
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
            dns = self.args.dns,
            echo = self.args.echo_port,
            control = toml_str(&self.control),
            state = toml_str(&self.dir.join("state")),
            user = toml_str(Path::new(&user)),
            ssh_port = self.args.ssh_port,
            key = toml_str(&key),
            known = toml_str(&known),
            names = names.join(", "),
            demoted = toml_str(&self.dir.join("run").join("demoted-{node}")),
        ))
    }

    /// Starts dnsd (the binary next to this one) and waits for its ready line.
    fn start_dnsd(&mut self, config: &Path) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the console's own binary")?;
        let bin = exe.with_file_name("dnsd");
        if !bin.is_file() {
            bail!(
                "dnsd not found at {} (it is looked for next to console): build both with `cargo build --release --bins`",
                bin.display()
            );
        }
        let dnsd = Launch::new(bin, self.dir.join("logs").join("dnsd.log"))
            .log_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .ready_timeout(START_TIMEOUT)
            // The demo runs on this thread until it stops dnsd, and a killed console must
            // not leave dnsd behind; the PID file lets the next demo sweep it otherwise.
            .die_with_parent()
            .pid_file(self.dir.join("run").join("dnsd.pid"))
            .start(config)
            .context("dnsd did not start")?;
        let ready = dnsd.ready();
        self.dns = ready.dns.first().copied();
        if let Some(control) = &ready.control {
            self.control = control.clone();
        }
        self.dnsd = Some(dnsd);
        Ok(())
    }

    fn dig_line(&self) -> String {
        let dns = self.dns.unwrap_or(self.args.dns);
        format!(
            "dig @{} -p {} {SERVICE}.{} +short",
            dns.ip(),
            dns.port(),
            ZONE.trim_end_matches('.')
        )
    }

    fn banner(&self) -> String {
        format!(
            "{} · data in {}/members/*{DATA}",
            self.dig_line(),
            self.dir.display()
        )
    }

    /// Without the TUI: say where things are, then obey commands on stdin.
    async fn headless(&mut self, client: &Client) -> anyhow::Result<()> {
        let ready = serde_json::json!({
            "demo_ready": {
                "dir": self.dir,
                "dns": self.dns.map(|d| d.to_string()),
                "control": self.control,
                "dnsd_pid": self.dnsd.as_ref().map(launch::Dnsd::pid),
                "members": self.members.iter().map(|m| serde_json::json!({
                    "name": m.name, "address": m.addr.to_string(), "data": m.data(),
                })).collect::<Vec<_>>(),
            }
        });
        println!("{ready}");
        println!(
            "demo running: DNS on {}, control socket {}; try:  {}",
            self.dns.map_or_else(|| "?".into(), |d| d.to_string()),
            self.control.display(),
            self.dig_line()
        );
        println!(
            "commands on stdin: kill NODE, revive NODE, status, quit   (watch it live: console --socket {})",
            self.control.display()
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
                            _ => println!("error: unknown command {line:?}; use kill NODE, revive NODE, status or quit"),
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

    /// Runs one of the demo's commands on member `node`; the text says what was done.
    fn obey(&mut self, command: DemoCommand, node: &str) -> anyhow::Result<String> {
        match command {
            DemoCommand::Kill => self.kill(node),
            DemoCommand::Revive => self.revive(node),
        }
    }

    fn member_index(&self, name: &str) -> anyhow::Result<usize> {
        let Some(i) = self.members.iter().position(|m| m.name == name) else {
            let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
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

    /// Stops everything, by PID: the writer, dnsd (SIGTERM, so it saves its state), the
    /// sshds with their sessions, the echo services. Idempotent.
    fn stop(&mut self) {
        if let Some(w) = self.writer.take() {
            w.abort();
        }
        if let Some(mut dnsd) = self.dnsd.take() {
            // SIGTERM first, so dnsd saves its state; it removes its PID file.
            dnsd.stop();
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
        format!(
            "demo stopped. Its files stay in {dir}: dnsd.toml, logs/ (dnsd.log, sshd-*.log), members/*{DATA} (each member's data).",
            dir = self.dir.display()
        )
    }
}

impl Extension for Demo {
    fn extras(&self) -> Extras {
        extras(self.banner())
    }

    fn run(&mut self, key: char, node: &str) -> anyhow::Result<String> {
        let Some(command) = DemoCommand::from_key(key) else {
            bail!("the demo has no key {key}");
        };
        self.obey(command, node)
    }
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
        }
    }

    #[test]
    fn config_roots_every_member_and_mirrors_through_port_2222() {
        let dir = tempfile::tempdir().unwrap();
        let Ok(demo) = Demo::new(args(dir.path())) else {
            eprintln!("SKIPPED demo config test: sshd, ssh, ssh-keygen or rsync missing");
            return;
        };
        let text = demo.dnsd_config().unwrap();
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
        ));
        app.update(Input::Key(KeyEvent::new(
            KeyCode::Char('?'),
            KeyModifiers::NONE,
        )));
        let s = screen(&app, 80, 24);
        insta::assert_snapshot!("help_demo_80x24", s);
        assert!(s.contains("demo: kill the selected member"), "{s}");
    }

    #[test]
    fn keys_and_words_name_the_same_commands() {
        for c in DemoCommand::ALL {
            assert_eq!(DemoCommand::from_key(c.key()), Some(c));
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
