//! The fault soak: real writes under random faults, then a checker that counts what was lost.
//!
//! **Hosts.** Three (or more) lab hosts are the members of one mirrored service (`www`,
//! `/srv/data`), each with its real sshd, rsync and echo service; the last lab host is the
//! workload client's. dnsd, the terminal server, runs outside them (the lab's root side),
//! answering DNS on the lab's bridge address. With the cluster mode (later), the terminal
//! servers are a list of such servers with etcd beside them: [`TerminalServer`] is one of
//! them, and the faults and checks that need several are already named here
//! ([`FaultKind::KillTs`], [`FaultKind::EtcdPartition`], conflicting answers).
//!
//! **Workload.** Clients on their own host resolve `www` through dnsd's DNS (honouring the
//! TTL) and write numbered records to the primary over SSH ([`client`]); a member's writer
//! answers only once the record is on its disk, and only while its gate is open
//! ([`member`]): dnsd's promote hook opens it, demote and the fence (out of band) close it,
//! and the epoch guard closes it as soon as a newer epoch reaches the member.
//!
//! **Faults.** A seeded plan ([`plan`]) of crashes (then revives), partitions of the
//! terminal server from the primary, cut links, slow and lossy links, and the operator's
//! failover and switchover, 0.5 to 4 s apart and holding 1 to 10 s, so they overlap.
//!
//! **Checker.** At the end every fault is healed, the clients stop, dnsd is given time to
//! settle (members up, resynced, synced after the last write), and [`check`] judges what the
//! clients were told against what the final primary holds and what kept folders dnsd
//! reported. See `docs/soak.md`.

pub mod check;
pub mod client;
pub mod member;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dnsd_api::{Action, Event, Health, Role, Status};
use integration::lab::{Host, Lab, LabOptions, report as lab_report};
use serde_json::{Value, json};

use self::check::{Evidence, Seen, Verdict};
use self::client::{ClientConfig, ClientReport, Shared};
use self::member::{Hooks, MEMBER_DIR, RECORDS, Unsafe};
use self::plan::{FaultKind, Mix, Planned, Target};
use crate::daemon::{Dnsd, wait_for};
use crate::machine;
use crate::procs;
use crate::report::{Reporter, say};
use crate::stats;

/// The service the soak writes to, and its name in DNS.
const SERVICE: &str = "www";
const FQDN: &str = "www.svc.test.";
/// How often dnsd's events and liveness are polled during the run.
const POLL: Duration = Duration::from_millis(500);
/// How long the clients go on writing after every fault is healed.
const SETTLE_WRITES: Duration = Duration::from_secs(5);
/// dnsd's log filter in a soak (BENCH_DNSD_LOG overrides it).
const DNSD_LOG: &str =
    "info,dnsd::mirror=debug,rsync_sync::ssh::session=debug,rsync_sync::rsync=debug";
/// At most this many members are impaired at once (one stays healthy).
const MAX_IMPAIRED: usize = 2;

/// Options of `dnsd-bench soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Faults to inject.
    #[arg(long, default_value_t = 500)]
    pub faults: usize,
    /// Stop injecting after this long even if faults remain (e.g. "30m").
    #[arg(long, default_value = "3h", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Seed of the fault plan (default: the current time, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Relative weights of the fault kinds.
    #[arg(long, default_value = "crash=3,partition=2,cut=2,slow=1,lossy=1,failover=1,switchover=1", value_parser = Mix::parse)]
    pub mix: Mix,
    /// Workload clients (each with its own DNS cache and SSH session).
    #[arg(long, default_value_t = 2)]
    pub clients: u64,
    /// Writes per second per client.
    #[arg(long, default_value_t = 5)]
    pub rate: u32,
    /// Break the setup on purpose, to see the checker fail.
    #[arg(long = "unsafe", value_enum)]
    pub unsafe_mode: Option<Unsafe>,
    /// Longest wait for dnsd to settle after the last fault.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub settle_timeout: Duration,
}

/// Everything a soak run needs besides its lab.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub faults: usize,
    pub duration: Duration,
    pub mix: Mix,
    pub clients: u64,
    pub rate: u32,
    pub unsafe_mode: Option<Unsafe>,
    pub settle_timeout: Duration,
    /// The `dnsd` binary.
    pub dnsd: PathBuf,
    /// The `dnsd-bench` binary, whose `soak-member` subcommand is the members' writer.
    pub tool: PathBuf,
    /// The checkout (for `etc/dnsd-epoch-guard`).
    pub repo: PathBuf,
}

impl Options {
    /// `faults` faults from `seed` with the default mix, two clients at 5 writes/s, at most
    /// three hours of faults and three minutes to settle.
    pub fn new(seed: u64, faults: usize, dnsd: PathBuf, tool: PathBuf, repo: PathBuf) -> Options {
        Options {
            seed,
            faults,
            duration: Duration::from_secs(3 * 3600),
            mix: Mix::standalone(),
            clients: 2,
            rate: 5,
            unsafe_mode: None,
            settle_timeout: Duration::from_secs(180),
            dnsd,
            tool,
            repo,
        }
    }

    /// The options of the command line, with the binaries beside this one.
    pub fn from_args(args: &Args, seed: u64) -> anyhow::Result<Options> {
        Ok(Options {
            duration: args.duration,
            mix: args.mix.clone(),
            clients: args.clients,
            rate: args.rate,
            unsafe_mode: args.unsafe_mode,
            settle_timeout: args.settle_timeout,
            ..Options::new(
                seed,
                args.faults,
                procs::workspace_binary("dnsd")?,
                std::env::current_exe().context("finding this executable")?,
                machine::repo_root().to_owned(),
            )
        })
    }
}

/// `dnsd-bench soak`: a lab of four hosts, one run, its record appended to the results.
/// Fails when the checker finds a violation.
pub fn run_cli(args: &Args, out: &Reporter) -> anyhow::Result<()> {
    procs::require_programs(&["ssh", "sshd", "rsync", "socat", "flock", "nsenter"])?;
    let seed = args.seed.unwrap_or_else(machine::now_ms);
    let options = Options::from_args(args, seed)?;
    out.emit(&machine::environment("soak"));
    let lab = Lab::start(LabOptions::new(4).data_size_mib(512))
        .map_err(|e| anyhow::anyhow!("lab setup failed: {}", lab_report(&e)))?;
    let dir = procs::temp_dir("dnsd-soak-")?;
    let verdict = run(&lab, &options, dir.path(), out)?;
    let violations: Vec<String> = verdict.violations().iter().map(|v| v.to_string()).collect();
    if !violations.is_empty() {
        // A failed run keeps its folder (dnsd's log and events, every acknowledgement,
        // the members' hook logs): it is the diagnosis.
        say(format!("kept {} for the diagnosis", dir.keep().display()));
        bail!(
            "the checker found {} violation(s):\n- {}",
            violations.len(),
            violations.join("\n- ")
        );
    }
    Ok(())
}

/// One terminal server under test. Standalone, there is one, in the lab's root namespace;
/// with the cluster mode, one per terminal-server host, all on one etcd.
pub struct TerminalServer {
    pub name: String,
    pub dnsd: Dnsd,
    /// Its DNS address on the lab network.
    pub dns: SocketAddr,
    /// Its folder: configuration, log, state.
    pub dir: PathBuf,
}

/// dnsd's events, read as they come (its own log keeps only the last 2,000).
#[derive(Default)]
struct EventLog {
    events: Vec<Event>,
    /// Events that scrolled out of dnsd's log between two reads.
    missed: u64,
}

impl EventLog {
    fn poll(&mut self, dnsd: &Dnsd) {
        let since = self.events.last().map_or(0, |e| e.seq);
        let Ok(new) = dnsd.events(since) else {
            return;
        };
        if let Some(first) = new.first() {
            self.missed += first.seq.saturating_sub(since + 1);
        }
        self.events
            .extend(new.into_iter().filter(|e| e.seq > since));
    }

    /// Every folder an event said it kept writes in, with the member and the event.
    fn kept_folders(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for e in &self.events {
            let (Some(node), Some((_, rest))) = (&e.node, e.reason.split_once(" kept in ")) else {
                continue;
            };
            let dirs = rest.split([';', ')']).next().unwrap_or_default();
            for dir in dirs
                .split(", ")
                .map(str::trim)
                .filter(|d| d.starts_with('/'))
            {
                let by = format!("{:?} event #{}", e.kind, e.seq);
                out.push((node.clone(), dir.to_owned(), by));
            }
        }
        out
    }
}

/// A fault being held, until it is undone.
struct Active {
    index: usize,
    kind: FaultKind,
    host: Host,
    until: Instant,
}

/// What became of one planned fault.
enum Started {
    /// Applied; held until undone.
    Held(Active),
    /// The operator's move, accepted or refused by dnsd: nothing to undo.
    Done,
    /// Not applied: no free target.
    Skipped,
}

/// What the injection did.
#[derive(Default)]
struct Injected {
    /// By kind: started, skipped (no target) and refused (the operator's, by dnsd).
    started: BTreeMap<String, u64>,
    skipped: BTreeMap<String, u64>,
    refused: BTreeMap<String, u64>,
    revived: u64,
    healed: u64,
    /// Faults injected: started, or the operator's moves dnsd refused.
    injected: usize,
    /// Entries of the plan used (skipped ones included).
    drawn: usize,
}

/// The run's members, client host and terminal servers.
struct Soak<'a> {
    lab: &'a Lab,
    options: &'a Options,
    members: Vec<Host>,
    servers: Vec<TerminalServer>,
    events: EventLog,
    out: &'a Reporter,
    started: Instant,
    /// Terminal servers that exited or panicked.
    crashes: Vec<String>,
}

/// Runs one soak on `lab` (at least four hosts: the last is the client's), with its
/// configuration, hooks and logs in `dir` (which the hosts must see: under /tmp). Emits
/// the plan, every fault and the verdict; returns the verdict.
pub fn run(lab: &Lab, options: &Options, dir: &Path, out: &Reporter) -> anyhow::Result<Verdict> {
    let hosts = lab.hosts();
    let Some((client_host, members)) = hosts.split_last().filter(|(_, m)| m.len() >= 3) else {
        bail!("the soak needs a lab of at least four hosts (three members and a client)");
    };
    if let Some(kind) = options.mix.kinds().find(|k| k.needs_cluster()) {
        bail!(
            "fault kind {kind} needs the cluster mode (several terminal servers on etcd), not built yet"
        );
    }
    // Faults whose target is impaired already are skipped and do not count: draw more
    // than asked for, and stop once `faults` were injected.
    let plan = plan::plan(
        options.seed,
        &options.mix,
        options.faults.saturating_mul(4).saturating_add(16),
    );
    out.emit(&json!({
        "bench": "soak", "type": "plan", "seed": options.seed, "faults": options.faults,
        "mix": options.mix.to_string(), "clients": options.clients, "rate": options.rate,
        "unsafe": options.unsafe_mode, "duration_s": options.duration.as_secs(),
        "kinds": count_kinds(&plan),
    }));
    say(format!(
        "soak: seed {}, {} faults ({}), {} client(s) at {}/s{}",
        options.seed,
        options.faults,
        options.mix,
        options.clients,
        options.rate,
        options
            .unsafe_mode
            .map(|u| format!(", DELIBERATELY UNSAFE: {u:?}"))
            .unwrap_or_default()
    ));

    let hooks = prepare_members(lab, members, dir, options)?;
    let ts_dir = dir.join("ts1");
    std::fs::create_dir_all(&ts_dir).with_context(|| format!("creating {}", ts_dir.display()))?;
    let config = dnsd_config(lab, members, &ts_dir, &hooks, options.unsafe_mode);
    // Every pass's commands and timing in the log: what a diagnosis of a loss needs.
    let dnsd = Dnsd::start_binary(&options.dnsd, &ts_dir, &config, DNSD_LOG)?;
    let dns = dnsd.dns();
    let mut soak = Soak {
        lab,
        options,
        members: members.to_vec(),
        servers: vec![TerminalServer {
            name: "ts1".into(),
            dnsd,
            dns,
            dir: ts_dir,
        }],
        events: EventLog::default(),
        out,
        started: Instant::now(),
        crashes: Vec::new(),
    };
    soak.wait_ready()?;
    soak.open_first_primary()?;

    let shared = Shared::default();
    let configs: Vec<ClientConfig> = (1..=options.clients)
        .map(|id| {
            let ts = &soak.servers[(id as usize - 1) % soak.servers.len()];
            let mut writer = vec![options.tool.display().to_string(), "soak-member".to_owned()];
            if options.unsafe_mode == Some(Unsafe::NoGuard) {
                writer.push("--ignore-epoch".to_owned());
            }
            ClientConfig {
                id,
                dns: ts.dns,
                name: FQDN.to_owned(),
                local: client_host.addr.into(),
                rate: options.rate,
                ssh_options: lab.ssh_options(),
                writer,
                ssh_log: dir.join(format!("client{id}-ssh.log")),
                // With a 2 s TTL, clients 0.7 s apart follow a change of primary at
                // different times.
                start_delay: Duration::from_millis(700 * (id - 1)),
                max_attempts: u64::from(options.rate.max(1))
                    .saturating_mul(options.duration.as_secs() + 3600)
                    .saturating_mul(2),
            }
        })
        .collect();
    let (injected, reports) = std::thread::scope(|scope| {
        let clients: Vec<_> = configs
            .iter()
            .map(|cfg| {
                let shared = &shared;
                scope.spawn(move || lab.in_netns(client_host, || client::run(cfg, shared)))
            })
            .collect();
        let injected = soak.inject(&plan);
        // Every fault undone, whatever happened; the clients write a little longer.
        let healed = soak.heal_all();
        if injected.is_ok() && healed.is_ok() {
            let _ = procs::sleep(SETTLE_WRITES);
        }
        shared.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let reports: Vec<ClientReport> = clients
            .into_iter()
            .map(|c| match c.join() {
                Ok(Ok(report)) => report,
                _ => ClientReport::default(),
            })
            .collect();
        (injected.and_then(|i| healed.map(|()| i)), reports)
    });
    let injected = injected?;
    let stopped_ms = machine::now_ms();
    let converged = soak.settle(stopped_ms);
    let verdict = soak.judge(&reports, converged)?;
    soak.save(dir, &reports);
    soak.report(&injected, &reports, &verdict);
    Ok(verdict)
}

/// Counts of a plan's faults by kind.
fn count_kinds(plan: &[Planned]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for p in plan {
        *counts.entry(p.kind.to_string()).or_default() += 1;
    }
    counts
}

/// Each member's gate folder and name, a clean slate, and the hooks (with the fence's way
/// into each member).
fn prepare_members(
    lab: &Lab,
    members: &[Host],
    dir: &Path,
    options: &Options,
) -> anyhow::Result<Hooks> {
    let mut fences = Vec::new();
    for host in members {
        let srv = srv_of(lab, host)?;
        let gate = srv.join(MEMBER_DIR.trim_start_matches("/srv/"));
        let _ = std::fs::remove_dir_all(&gate);
        std::fs::create_dir_all(&gate).with_context(|| format!("creating {}", gate.display()))?;
        std::fs::write(gate.join("name"), format!("{}\n", host.name))
            .with_context(|| format!("writing {}", gate.join("name").display()))?;
        // The fence's way in: the lab's own command into the host, without the program.
        let enter = lab.command(host, "");
        let mut argv = vec![enter.get_program().to_string_lossy().into_owned()];
        argv.extend(enter.get_args().map(|a| a.to_string_lossy().into_owned()));
        argv.pop();
        fences.push((host.name.clone(), argv));
    }
    let guard = member::epoch_guard(&options.repo, dir)?;
    Hooks::write(&dir.join("hooks"), &guard, &fences, options.unsafe_mode)
}

/// A host's `/srv`, as the root namespace sees it.
fn srv_of(lab: &Lab, host: &Host) -> anyhow::Result<PathBuf> {
    lab.data_path(host)
        .parent()
        .map(Path::to_path_buf)
        .with_context(|| format!("{} has no /srv", host.name))
}

/// dnsd for the soak: quick heartbeats, a pass every second, automatic failback, the hooks.
fn dnsd_config(
    lab: &Lab,
    members: &[Host],
    dir: &Path,
    hooks: &Hooks,
    unsafe_mode: Option<Unsafe>,
) -> String {
    let ts = lab.ts_addr();
    let nodes: String = members
        .iter()
        .map(|h| {
            format!(
                "[[node]]\nname = \"{}\"\naddress = \"{}\"\n",
                h.name, h.addr
            )
        })
        .collect();
    let names: Vec<String> = members.iter().map(|h| format!("\"{}\"", h.name)).collect();
    format!(
        "[dns]\nlisten = [\"{ts}:0\"]\nzone = \"svc.test.\"\nttl = \"2s\"\n\
         nameservers = [{{ name = \"ns1.svc.test.\", address = \"{ts}\" }}]\n\
         [heartbeat]\nprotocol = \"tcp\"\nport = 7\ninterval = \"300ms\"\ntimeout = \"250ms\"\nfall = 3\nrise = 2\n\
         [control]\nsocket = \"{d}/control.sock\"\n[state]\ndir = \"{d}/state\"\n\
         [mirror]\ninterval = \"1s\"\nidentity = \"{k}\"\nknown_hosts = \"{kh}\"\n\
         peer_identity = \"{k}\"\npeer_known_hosts = \"{kh}\"\nconnect_timeout = \"3s\"\nio_timeout = \"20s\"\n\
         {mirror}{nodes}\
         [[service]]\nname = \"{SERVICE}\"\nnodes = [{members}]\npaths = [\"/srv/data\"]\n\
         failback = \"auto\"\nfailback_after = \"5s\"\nhook_timeout = \"10s\"\n{hooks}",
        d = dir.display(),
        k = lab.client_key().display(),
        kh = lab.known_hosts().display(),
        members = names.join(", "),
        hooks = hooks.service_keys(unsafe_mode),
        mirror = hooks.mirror_keys(unsafe_mode),
    )
}

impl Soak<'_> {
    /// The terminal server to talk to (standalone: the only one).
    fn control(&self) -> &Dnsd {
        &self.servers[0].dnsd
    }

    fn status(&self) -> anyhow::Result<Status> {
        self.control().status()
    }

    fn host(&self, name: &str) -> Option<&Host> {
        self.members.iter().find(|h| h.name == name)
    }

    /// Waits until every member is up and every secondary has a complete pass.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let ready = wait_for(Duration::from_secs(120), Duration::from_millis(200), || {
            let st = self.status().ok()?;
            let svc = st.service(SERVICE)?;
            let synced = svc
                .members
                .iter()
                .filter(|m| m.node != svc.primary)
                .all(|m| m.sync.as_ref().is_some_and(|s| s.last_sync_ms.is_some()));
            (st.nodes.iter().all(|n| n.health == Health::Up) && synced).then_some(())
        })?;
        if ready.is_none() {
            bail!(
                "dnsd never had every member up and synced; log:\n{}",
                self.control().log_tail(30)
            );
        }
        Ok(())
    }

    /// Opens the first primary's gate in the epoch dnsd starts in (its first passes have
    /// recorded that epoch on every member already, so no promote hook can: dnsd ran none).
    fn open_first_primary(&mut self) -> anyhow::Result<()> {
        let st = self.status()?;
        let svc = st.service(SERVICE).context("dnsd has no service www")?;
        let host = self
            .host(&svc.primary)
            .cloned()
            .with_context(|| format!("the primary {} is no member", svc.primary))?;
        let epoch = svc.epoch.to_string();
        let lock = format!("{MEMBER_DIR}/epoch.lock");
        let script = format!("printf '%s\\n' \"$1\" > {MEMBER_DIR}/open");
        self.lab
            .exec(
                &host,
                &[
                    "flock", "-w", "10", &lock, "sh", "-c", &script, "sh", &epoch,
                ],
            )
            .map_err(|e| anyhow::anyhow!("opening {}'s gate: {}", host.name, lab_report(&e)))?;
        say(format!(
            "{} is primary in epoch {epoch}: its gate is open",
            host.name
        ));
        Ok(())
    }

    /// Polls events and liveness; true when every terminal server still runs.
    fn watch(&mut self) -> bool {
        for ts in &mut self.servers {
            if ts.dnsd.exited() && !self.crashes.iter().any(|c| c.starts_with(&ts.name)) {
                self.crashes.push(format!(
                    "{} exited during the run; log:\n{}",
                    ts.name,
                    ts.dnsd.log_tail(20)
                ));
            }
        }
        if self.crashes.is_empty() {
            let mut log = std::mem::take(&mut self.events);
            log.poll(self.control());
            self.events = log;
        }
        self.crashes.is_empty()
    }

    /// Runs the plan; returns what it did. Stops early (without error) when the time limit
    /// passes or dnsd dies.
    fn inject(&mut self, plan: &[Planned]) -> anyhow::Result<Injected> {
        let mut done = Injected::default();
        let mut active: Vec<Active> = Vec::new();
        let deadline = self.started + self.options.duration;
        let mut next_at = self.started + plan.first().map_or(Duration::ZERO, |p| p.after);
        let mut next = 0;
        let mut last_poll = Instant::now();
        // Bounded: the deadline, and a tick cap well beyond it.
        let ticks = self.options.duration.as_millis() / 50 + 10_000;
        for _ in 0..ticks {
            procs::check_stop()?;
            if last_poll.elapsed() >= POLL {
                last_poll = Instant::now();
                if !self.watch() {
                    say("a terminal server died: stopping the faults");
                    break;
                }
            }
            let now = Instant::now();
            let (due, held): (Vec<Active>, Vec<Active>) =
                active.into_iter().partition(|a| now >= a.until);
            active = held;
            for a in due {
                self.undo(&a, &mut done)?;
            }
            let wanted = done.injected < self.options.faults && next < plan.len();
            if wanted && now >= next_at && now < deadline {
                let p = &plan[next];
                match self.start(p, &active, &mut done)? {
                    Started::Held(a) => {
                        active.push(a);
                        done.injected += 1;
                    }
                    Started::Done => done.injected += 1,
                    Started::Skipped => {}
                }
                next += 1;
                done.drawn = next;
                next_at = Instant::now() + plan.get(next).map_or(Duration::ZERO, |p| p.after);
            }
            let wanted = done.injected < self.options.faults && next < plan.len();
            if (!wanted || now >= deadline) && active.is_empty() {
                break;
            }
            if now >= deadline {
                // Out of time: undo what is held now rather than wait for it.
                for a in std::mem::take(&mut active) {
                    self.undo(&a, &mut done)?;
                }
                break;
            }
            procs::sleep(Duration::from_millis(50))?;
        }
        for a in active {
            self.undo(&a, &mut done)?;
        }
        Ok(done)
    }

    /// Starts one planned fault.
    fn start(
        &mut self,
        p: &Planned,
        active: &[Active],
        done: &mut Injected,
    ) -> anyhow::Result<Started> {
        let status = self.status();
        let (primary, secondaries, preferred) =
            match status.as_ref().ok().and_then(|st| st.service(SERVICE)) {
                Some(svc) => (
                    svc.primary.clone(),
                    svc.members
                        .iter()
                        .filter(|m| m.role == Role::Secondary)
                        .map(|m| m.node.clone())
                        .collect::<Vec<_>>(),
                    svc.preferred.clone(),
                ),
                None => (String::new(), Vec::new(), String::new()),
            };
        let impaired: BTreeSet<&str> = active.iter().map(|a| a.host.name.as_str()).collect();
        let free: Vec<&Host> = self
            .members
            .iter()
            .filter(|h| !impaired.contains(h.name.as_str()))
            .collect();
        let pick = |list: &[&Host]| -> Option<Host> {
            (!list.is_empty()).then(|| list[(p.pick % list.len() as u64) as usize].clone())
        };
        let at_s = self.started.elapsed().as_secs_f64();
        let mut record = json!({
            "bench": "soak", "type": "fault", "i": p.index, "kind": p.kind, "at_s": (at_s * 10.0).round() / 10.0,
            "primary": primary,
        });
        let kind = p.kind.to_string();
        if p.kind.is_operator() {
            let action = match p.kind {
                FaultKind::Switchover if primary != preferred && p.pick.is_multiple_of(2) => {
                    Action::Failback {
                        service: Some(SERVICE.into()),
                    }
                }
                FaultKind::Switchover => {
                    let Some(node) = (!secondaries.is_empty())
                        .then(|| secondaries[(p.pick % secondaries.len() as u64) as usize].clone())
                    else {
                        *done.skipped.entry(kind).or_default() += 1;
                        record["result"] = json!("skipped: no secondary");
                        self.out.emit(&record);
                        return Ok(Started::Skipped);
                    };
                    Action::Promote {
                        service: Some(SERVICE.into()),
                        node,
                    }
                }
                _ => Action::Failover {
                    service: Some(SERVICE.into()),
                },
            };
            record["action"] = json!(action.to_string());
            match self.control().act(&action) {
                Ok(reply) => {
                    *done.started.entry(kind).or_default() += 1;
                    record["result"] = json!(format!("accepted: {}", reply.message));
                }
                Err(error) => {
                    *done.refused.entry(kind).or_default() += 1;
                    record["result"] = json!(format!("{error:#}"));
                }
            }
            self.out.emit(&record);
            return Ok(Started::Done);
        }
        let free_primary = self
            .host(&primary)
            .filter(|h| !impaired.contains(h.name.as_str()))
            .cloned();
        let target = if active.len() >= MAX_IMPAIRED {
            None
        } else {
            match (p.target, p.kind) {
                // Only the primary can be partitioned from the terminal server.
                (Target::Primary, FaultKind::Partition) => free_primary,
                // The primary if it is free, else any free member.
                (Target::Primary, _) => free_primary.or_else(|| pick(&free)),
                _ => pick(&free),
            }
        };
        let Some(host) = target else {
            *done.skipped.entry(kind).or_default() += 1;
            record["result"] =
                json!("skipped: its target is impaired already (or two members are)");
            self.out.emit(&record);
            return Ok(Started::Skipped);
        };
        let lab = self.lab;
        let applied = match p.kind {
            FaultKind::Crash => lab.crash(&host),
            FaultKind::Partition => lab.partition(&host),
            FaultKind::Cut => lab.cut(&host),
            FaultKind::Slow | FaultKind::Lossy => lab.slow(&host, p.delay, p.loss),
            _ => bail!("{} is not a member fault", p.kind),
        };
        applied.map_err(|e| anyhow::anyhow!("{} of {}: {}", p.kind, host.name, lab_report(&e)))?;
        *done.started.entry(kind).or_default() += 1;
        record["host"] = json!(host.name);
        record["hold_s"] = json!(p.hold.as_secs_f64());
        if matches!(p.kind, FaultKind::Slow | FaultKind::Lossy) {
            record["delay_ms"] = json!(p.delay.as_millis() as u64);
            record["loss"] = json!((p.loss * 1000.0).round() / 1000.0);
        }
        record["result"] = json!("applied");
        self.out.emit(&record);
        Ok(Started::Held(Active {
            index: p.index,
            kind: p.kind,
            host,
            until: Instant::now() + p.hold,
        }))
    }

    /// Undoes a held fault: revive after a crash, heal otherwise.
    fn undo(&self, a: &Active, done: &mut Injected) -> anyhow::Result<()> {
        let what = if a.kind == FaultKind::Crash {
            done.revived += 1;
            // A loaded machine may take long to start sshd: try a few times.
            let mut result = self.lab.revive(&a.host);
            for _ in 0..2 {
                if result.is_ok() {
                    break;
                }
                result = self.lab.revive(&a.host);
            }
            result.map_err(|e| anyhow::anyhow!("reviving {}: {}", a.host.name, lab_report(&e)))?;
            "revive"
        } else {
            done.healed += 1;
            self.lab
                .heal(&a.host)
                .map_err(|e| anyhow::anyhow!("healing {}: {}", a.host.name, lab_report(&e)))?;
            "heal"
        };
        self.out.emit(&json!({
            "bench": "soak", "type": "undo", "i": a.index, "kind": what, "host": a.host.name,
            "at_s": (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        }));
        Ok(())
    }

    /// Heals and revives every member (harmless on healthy ones).
    fn heal_all(&self) -> anyhow::Result<()> {
        for host in &self.members {
            self.lab
                .heal(host)
                .and_then(|()| self.lab.revive(host))
                .map_err(|e| anyhow::anyhow!("restoring {}: {}", host.name, lab_report(&e)))?;
        }
        Ok(())
    }

    /// Waits (bounded) until dnsd has every member up, no move under way, nothing
    /// resyncing, and a complete pass to every secondary that began after `since_ms` (the
    /// last write). Returns whether it got there.
    fn settle(&mut self, since_ms: u64) -> bool {
        let deadline = Instant::now() + self.options.settle_timeout;
        // Bounded by the deadline.
        while Instant::now() < deadline {
            if !self.watch() {
                return false;
            }
            if let Ok(st) = self.status()
                && let Some(svc) = st.service(SERVICE)
            {
                let secondaries_synced =
                    svc.members
                        .iter()
                        .filter(|m| m.node != svc.primary)
                        .all(|m| {
                            m.sync.as_ref().is_some_and(|s| {
                                !s.resyncing
                                    && s.running.is_none()
                                    && s.last_sync_ms.is_some_and(|t| t >= since_ms)
                            })
                        });
                if st.nodes.iter().all(|n| n.health == Health::Up)
                    && svc.transition.is_none()
                    && !svc.stranded
                    && secondaries_synced
                {
                    return true;
                }
            }
            if procs::sleep(Duration::from_millis(250)).is_err() {
                return false;
            }
        }
        false
    }

    /// Collects the evidence and runs the checker; stops dnsd (and checks how it ended).
    fn judge(&mut self, reports: &[ClientReport], converged: bool) -> anyhow::Result<Verdict> {
        self.watch();
        let final_primary = self
            .status()
            .ok()
            .and_then(|st| st.service(SERVICE).map(|s| s.primary.clone()))
            .unwrap_or_default();
        let records = |host: &Host| -> anyhow::Result<Vec<u64>> {
            Ok(member::records_under(
                &srv_of(self.lab, host)?.join(RECORDS.trim_start_matches("/srv/")),
            ))
        };
        let mut e = Evidence {
            final_primary: final_primary.clone(),
            converged,
            ..Evidence::default()
        };
        for r in reports {
            e.acks.extend(r.acks.iter().cloned());
            e.refused.extend(r.refused.iter().copied());
            e.indeterminate.extend(r.indeterminate.iter().copied());
        }
        if let Some(primary) = self.host(&final_primary).cloned() {
            e.live = records(&primary)?.into_iter().collect();
        }
        for (node, dir, by) in self.events.kept_folders() {
            let Some(host) = self.host(&node).cloned() else {
                continue;
            };
            let path = srv_of(self.lab, &host)?.join(dir.trim_start_matches("/srv/"));
            for seq in member::records_under(&path) {
                e.kept
                    .entry(seq)
                    .or_insert_with(|| format!("{node}:{dir} ({by})"));
            }
        }
        // Where the records found in neither are, for the diagnosis.
        let missing: BTreeSet<u64> = e
            .acks
            .iter()
            .map(|a| a.seq)
            .filter(|s| !e.live.contains(s) && !e.kept.contains_key(s))
            .collect();
        if !missing.is_empty() {
            for host in self.members.clone() {
                let srv = srv_of(self.lab, &host)?;
                for seq in records(&host)? {
                    if missing.contains(&seq) {
                        e.elsewhere.entry(seq).or_default().push(Seen::Live {
                            node: host.name.clone(),
                        });
                    }
                }
                let kept_root = srv.join("data.dnsd-kept");
                for entry in std::fs::read_dir(&kept_root)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    for seq in member::records_under(&entry.path()) {
                        if missing.contains(&seq) {
                            e.elsewhere.entry(seq).or_default().push(Seen::Unreported {
                                node: host.name.clone(),
                                dir: format!(
                                    "/srv/data.dnsd-kept/{}",
                                    entry.file_name().to_string_lossy()
                                ),
                            });
                        }
                    }
                }
            }
        }
        // How each terminal server ended: it must still run, stop on SIGTERM with 0, and
        // its log must hold no panic.
        let mut crashes = std::mem::take(&mut self.crashes);
        for ts in &mut self.servers {
            if !crashes.iter().any(|c| c.starts_with(&ts.name)) {
                match ts.dnsd.stop() {
                    Some(status) if !status.success() => {
                        crashes.push(format!("{} ended with {status} on SIGTERM", ts.name));
                    }
                    _ => {}
                }
            }
            let log = std::fs::read_to_string(ts.dir.join("dnsd.log")).unwrap_or_default();
            for line in log.lines().filter(|l| l.contains("panicked")).take(3) {
                crashes.push(format!("{}: {line}", ts.name));
            }
        }
        e.crashes = crashes;
        e.conflicting_answers = (self.servers.len() > 1).then(Vec::new);
        Ok(check::check(&e))
    }

    /// Keeps what a diagnosis needs in `dir` (kept with `BENCH_KEEP=1`): dnsd's events,
    /// every acknowledgement, and each member's hook log.
    fn save(&self, dir: &Path, reports: &[ClientReport]) {
        let lines =
            |items: Vec<Value>| -> String { items.iter().map(|v| format!("{v}\n")).collect() };
        let events = self
            .events
            .events
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        let _ = std::fs::write(dir.join("events.jsonl"), lines(events));
        let acks = reports
            .iter()
            .flat_map(|r| r.acks.iter())
            .filter_map(|a| serde_json::to_value(a).ok())
            .collect();
        let _ = std::fs::write(dir.join("acks.jsonl"), lines(acks));
        let clients = reports
            .iter()
            .map(|r| json!({"refused": r.refused, "indeterminate": r.indeterminate, "answers": r.answers}))
            .collect();
        let _ = std::fs::write(dir.join("clients.jsonl"), lines(clients));
        for host in &self.members {
            if let Ok(srv) = srv_of(self.lab, host) {
                let _ = std::fs::copy(
                    srv.join("soak/hooks.log"),
                    dir.join(format!("{}-hooks.log", host.name)),
                );
            }
        }
    }

    /// The summary record and the human summary.
    fn report(&self, injected: &Injected, reports: &[ClientReport], v: &Verdict) {
        let mut dnsd_events: BTreeMap<String, u64> = BTreeMap::new();
        for e in &self.events.events {
            *dnsd_events.entry(format!("{:?}", e.kind)).or_default() += 1;
        }
        let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
        for r in reports {
            for (why, n) in &r.refusals {
                *refusals.entry(why.clone()).or_default() += n;
            }
        }
        let sessions: u64 = reports.iter().map(|r| r.sessions).sum();
        let dns_failures: u64 = reports.iter().map(|r| r.dns_failures).sum();
        let violations: Vec<String> = v.violations().iter().map(|v| v.to_string()).collect();
        let spans: Vec<f64> = v.episodes.iter().map(|e| e.span_ms).collect();
        let mut record = json!({
            "bench": "soak", "type": "summary", "seed": self.options.seed,
            "faults_wanted": self.options.faults, "faults_injected": injected.injected,
            "plan_drawn": injected.drawn,
            "faults_started": injected.started, "faults_skipped": injected.skipped,
            "faults_refused": injected.refused, "revived": injected.revived, "healed": injected.healed,
            "ran_s": self.started.elapsed().as_secs(),
            "dnsd_events": dnsd_events, "events_missed": self.events.missed,
            "client_sessions": sessions, "dns_failures": dns_failures, "refusals": refusals,
            "lost_window_ms": stats::summary(&spans),
            "violations": violations, "pass": violations.is_empty(),
            "loadavg": machine::loadavg(), "unsafe": self.options.unsafe_mode,
        });
        if let (Value::Object(m), Ok(Value::Object(verdict))) =
            (&mut record, serde_json::to_value(v))
        {
            for (k, val) in verdict {
                m.insert(k, val);
            }
        }
        self.out.emit(&record);
        say(format!(
            "\n== soak: seed {}, {} of {} faults injected ({} drawn) in {} s ==",
            self.options.seed,
            injected.injected,
            self.options.faults,
            injected.drawn,
            self.started.elapsed().as_secs()
        ));
        let by_kind = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        say(format!(
            "started: {}; revived {}, healed {}",
            by_kind(&injected.started),
            injected.revived,
            injected.healed
        ));
        if !injected.skipped.is_empty() || !injected.refused.is_empty() {
            say(format!(
                "skipped: {}; refused by dnsd: {}",
                by_kind(&injected.skipped),
                by_kind(&injected.refused)
            ));
        }
        say(format!(
            "writes: {} acknowledged, {} refused, {} indeterminate; final primary {}",
            v.acknowledged, v.refused, v.indeterminate, v.final_primary
        ));
        say(format!(
            "lost from the live data: {} in {} episode(s) (per episode {}); {} in reported kept folders, {} in unreported ones, {} nowhere",
            v.lost_live,
            v.episodes.len(),
            v.lost_per_episode,
            v.lost_live_kept,
            v.kept_unreported.len(),
            v.lost_silently.len()
        ));
        say(format!(
            "two-writer intervals: {} ({:.0} ms); dnsd crashes: {}; settled: {}",
            v.two_writer.len(),
            v.two_writer_ms,
            v.crashes.len(),
            v.converged
        ));
        if violations.is_empty() {
            say("checker: PASS");
        } else {
            say(format!("checker: FAIL\n- {}", violations.join("\n- ")));
        }
    }
}
