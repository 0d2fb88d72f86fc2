//! Mirroring cost and the data-loss window, on lab hosts.
//!
//! **Cost.** A data set of many files (by default 10,240 files of 100 KiB: 1 GiB) on h1 is
//! mirrored to h2 in three steps, each by three tools from the same source state, each
//! into its own destination folder on h2: a full first sync, then after 1% of the files
//! had 10 KiB rewritten in place, then after one file had 4 KiB appended, then with
//! nothing changed (the fixed cost of a pass). The tools:
//!
//! - `dnsd`: the daemon itself (`[mirror] interval = "1h"`, so it passes only when told):
//!   its first pass after start is the full sync, later steps are the operator's `sync`
//!   action; figures from the pass report in its status (its SSH session to h1 is the
//!   connector's long-lived one);
//! - `rsync_sync`: the `rsync-sync` binary, the same library code as the daemon's pass,
//!   but opening a fresh SSH session to h1 (and checking h2's host key) every time;
//! - `by_hand`: rsync started on h1 with the same options and the same `-e ssh ...`,
//!   directly (nsenter): the floor, with no SSH hop from the terminal server at all;
//! - `by_hand_ssh`: the same rsync command started on h1 from the terminal server with
//!   OpenSSH (`ssh root@h1 rsync ...`, a fresh connection each time), as an operator
//!   would run it by hand.
//!
//! Bytes on the wire come from rsync's `--stats` and, independently, from the root-side
//! veth counters of h2's link (Ethernet frames, both directions).
//!
//! **Data-loss window.** dnsd mirrors h1 to h2 and h3 at a given interval while a writer
//! on h1 creates numbered files at a steady rate; h1 is crashed (the writer dies with it)
//! and, once dnsd has promoted another member, the writes h1 had that the promoted member
//! lacks are counted.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dnsd_api::Action;
use integration::lab::{Host, Lab, LabOptions, report as lab_report};
use rand::{Rng, RngExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::daemon::{Dnsd, wait_for};
use crate::dataloss;
use crate::machine;
use crate::procs;
use crate::report::{Reporter, num, say};
use crate::stats;

/// Options of the mirroring benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Files in the data set.
    #[arg(long, default_value_t = 10_240)]
    pub files: usize,
    /// Size of each file, KiB.
    #[arg(long, default_value_t = 100)]
    pub file_kib: usize,
    /// Rounds of (full, 1% changed, one appended), each from empty destinations.
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// KiB rewritten in each changed file.
    #[arg(long, default_value_t = 10)]
    pub change_kib: usize,
    /// KiB appended to the appended file.
    #[arg(long, default_value_t = 4)]
    pub append_kib: usize,
    /// Crash trials per sync interval for the data-loss window.
    #[arg(long, default_value_t = 5)]
    pub loss_trials: usize,
    /// `[mirror] interval` values for the data-loss window.
    #[arg(long, value_delimiter = ',', default_value = "1s,5s")]
    pub loss_intervals: Vec<String>,
    /// Files the writer creates per second on the primary.
    #[arg(long, default_value_t = 100)]
    pub write_rate: u32,
    /// Skip the cost part.
    #[arg(long)]
    pub no_cost: bool,
    /// Skip the data-loss part.
    #[arg(long)]
    pub no_loss: bool,
    /// Wait until the 1-minute load average is below this before measuring.
    #[arg(long, default_value_t = 0.5)]
    pub quiet_load: f64,
    /// Longest wait for a quiet machine.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub quiet_wait: Duration,
}

/// Options of the writer run inside the primary (an internal subcommand).
#[derive(Debug, Clone, clap::Args)]
pub struct WriterArgs {
    /// Folder to create numbered files in.
    #[arg(long)]
    pub dir: PathBuf,
    /// Files per second.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Stop after this long at the latest.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub limit: Duration,
}

/// Creates `00000001`, `00000002`, ... in `dir` at a steady rate until killed (or the
/// limit). Each file is complete when its name appears (written aside, then renamed).
pub fn writer(args: &WriterArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let period = Duration::from_secs(1) / args.rate.max(1);
    let t0 = Instant::now();
    let mut seq: u32 = 0;
    while t0.elapsed() < args.limit {
        procs::check_stop()?;
        seq += 1;
        let tmp = args.dir.join(format!(".{seq:08}.tmp"));
        std::fs::write(&tmp, format!("write {seq} at {} ms\n", machine::now_ms()))
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, args.dir.join(format!("{seq:08}")))
            .with_context(|| format!("renaming {}", tmp.display()))?;
        let next = t0 + period * seq;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    Ok(())
}

/// Byte counters of one root-side veth (what the host received, what it sent).
fn link_bytes(dev: &str) -> anyhow::Result<u64> {
    let read = |what: &str| -> anyhow::Result<u64> {
        let path = format!("/sys/class/net/{dev}/statistics/{what}");
        std::fs::read_to_string(&path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .parse()
            .with_context(|| format!("parsing {path}"))
    };
    Ok(read("rx_bytes")? + read("tx_bytes")?)
}

/// Calls `f` with the path and metadata of every file (anything not a folder) under
/// `root`; unreadable folders and entries are skipped.
pub(crate) fn for_each_file(root: &Path, mut f: impl FnMut(&Path, &std::fs::Metadata)) {
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else {
                f(&path, &meta);
            }
        }
    }
}

/// (size, mtime) of every regular file under `root`, by relative path.
fn listing(root: &Path) -> BTreeMap<PathBuf, (u64, i64, i64)> {
    let mut out = BTreeMap::new();
    for_each_file(root, |path, meta| {
        if let Ok(rel) = path.strip_prefix(root) {
            out.insert(
                rel.to_owned(),
                (meta.len(), meta.mtime(), meta.mtime_nsec()),
            );
        }
    });
    out
}

fn sha(path: &Path) -> anyhow::Result<[u8; 32]> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes).into())
}

/// What one tool's pass did.
#[derive(Debug, Clone, serde::Serialize)]
struct Pass {
    round: usize,
    step: &'static str,
    tool: &'static str,
    wall_ms: f64,
    literal_bytes: u64,
    matched_bytes: u64,
    bytes_sent: u64,
    bytes_received: u64,
    files_transferred: u64,
    /// Frames on h2's link, both directions, L2 bytes.
    h2_link_bytes: u64,
    /// Frames on h1's link, both directions (dnsd's pass adds its control session here).
    h1_link_bytes: u64,
    /// CPU time spent on the terminal server's side: the rsync-sync process, or dnsd
    /// over the pass (`None` by hand, where nothing runs there).
    ts_cpu_ms: Option<f64>,
}

/// The steps of a round: a full first sync, 1% of the files changed, one file appended,
/// and nothing changed (what a pass costs when there is nothing to send).
const STEPS: [&str; 4] = ["full", "changed_1pct", "appended", "unchanged"];

/// A named figure of a pass, for the summary.
type PassMetric = (&'static str, fn(&Pass) -> f64);

/// A number after `label` in rsync's `--stats` text (thousands separators allowed).
fn stat(text: &str, label: &str) -> anyhow::Result<u64> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .with_context(|| format!("rsync --stats output lacks {label:?}:\n{text}"))?;
    let word = line.split_whitespace().next().unwrap_or_default();
    word.replace(',', "")
        .parse()
        .with_context(|| format!("unreadable {label:?} value {word:?}"))
}

struct CostSetup<'a> {
    lab: &'a Lab,
    /// rsync-sync's arguments: h1 to h2 under the root /srv/rs, with the lab's keys.
    rsync_sync_args: Vec<String>,
    hand_argv: Vec<String>,
    /// The same command into its own destination, as one remote shell command line.
    hand_ssh_command: String,
    src: PathBuf,
    dst_tool: PathBuf,
    dst_hand: PathBuf,
    dst_hand_ssh: PathBuf,
    dst_daemon: PathBuf,
}

/// The tools of the cost part; every one takes every position of a round in turn.
const TOOLS: [&str; 4] = ["rsync_sync", "by_hand", "dnsd", "by_hand_ssh"];

/// Quotes one word for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

impl CostSetup<'_> {
    fn h(&self, i: usize) -> &Host {
        &self.lab.hosts()[i]
    }

    fn veth(&self, i: usize) -> String {
        format!("{}-v{}", self.lab.prefix(), i + 1)
    }

    fn pass(&self, tool: &'static str, round: usize, step: &'static str) -> anyhow::Result<Pass> {
        let (v1, v2) = (self.veth(0), self.veth(1));
        let (l1, l2) = (link_bytes(&v1)?, link_bytes(&v2)?);
        let t0 = Instant::now();
        let children0 = procs::children_cpu_ticks();
        let (literal, matched, sent, received, transferred) = if tool == "rsync_sync" {
            let output = procs::run(
                Command::new(procs::workspace_binary("rsync-sync")?).args(&self.rsync_sync_args),
                Duration::from_secs(1800),
            )?;
            let report: Value = serde_json::from_slice(&output.stdout)
                .context("reading rsync-sync's --json report")?;
            let s = &report["paths"][0]["stats"];
            let get = |k: &str| s[k].as_u64().unwrap_or(0);
            (
                get("literal_bytes"),
                get("matched_bytes"),
                get("bytes_sent"),
                get("bytes_received"),
                get("files_transferred"),
            )
        } else {
            let mut command = if tool == "by_hand_ssh" {
                let mut ssh = self.lab.ssh(self.h(0));
                ssh.arg(&self.hand_ssh_command);
                ssh
            } else {
                let mut direct = self.lab.command(self.h(0), "rsync");
                direct.args(&self.hand_argv[1..]);
                direct
            };
            let output = procs::run(&mut command, Duration::from_secs(1800))?;
            let text = String::from_utf8_lossy(&output.stdout);
            (
                stat(&text, "Literal data:")?,
                stat(&text, "Matched data:")?,
                stat(&text, "Total bytes sent:")?,
                stat(&text, "Total bytes received:")?,
                stat(&text, "Number of regular files transferred:")?,
            )
        };
        let wall_ms = t0.elapsed().as_secs_f64() * 1000.0;
        Ok(Pass {
            round,
            step,
            tool,
            wall_ms,
            literal_bytes: literal,
            matched_bytes: matched,
            bytes_sent: sent,
            bytes_received: received,
            files_transferred: transferred,
            h2_link_bytes: link_bytes(&v2)? - l2,
            h1_link_bytes: link_bytes(&v1)? - l1,
            ts_cpu_ms: (tool == "rsync_sync").then(|| {
                procs::children_cpu_ticks().saturating_sub(children0) as f64 / procs::clock_ticks()
                    * 1000.0
            }),
        })
    }

    /// Waits for the daemon's next complete pass to h2 (one that started after `after_ms`)
    /// and reports it; `link0` are the link counters when the pass was asked for.
    fn daemon_pass(
        &self,
        dnsd: &Dnsd,
        round: usize,
        step: &'static str,
        after_ms: u64,
        link0: (u64, u64),
        cpu0: u64,
    ) -> anyhow::Result<Pass> {
        // Polled slowly: the figure is the daemon's own duration, and a status request
        // every few milliseconds would take CPU from the transfer being measured.
        let report = wait_for(
            Duration::from_secs(1800),
            Duration::from_millis(250),
            || {
                let st = dnsd.status().ok()?;
                let sync = st.service("data")?.member("dst")?.sync.clone()?;
                (sync.last_sync_ms? >= after_ms)
                    .then_some(sync.last_pass)
                    .flatten()
            },
        )?
        .with_context(|| {
            format!(
                "dnsd's pass ({step}) did not complete; log:\n{}",
                dnsd.log_tail(30)
            )
        })?;
        let (v1, v2) = (self.veth(0), self.veth(1));
        Ok(Pass {
            round,
            step,
            tool: "dnsd",
            wall_ms: report.duration_ms as f64,
            literal_bytes: report.literal_bytes,
            matched_bytes: report.matched_bytes,
            bytes_sent: report.bytes_sent,
            bytes_received: report.bytes_received,
            files_transferred: report.files_transferred,
            h2_link_bytes: link_bytes(&v2)? - link0.1,
            h1_link_bytes: link_bytes(&v1)? - link0.0,
            ts_cpu_ms: Some(
                procs::cpu_ticks(&[dnsd.pid()]).saturating_sub(cpu0) as f64 / procs::clock_ticks()
                    * 1000.0,
            ),
        })
    }

    fn links(&self) -> anyhow::Result<(u64, u64)> {
        Ok((link_bytes(&self.veth(0))?, link_bytes(&self.veth(1))?))
    }

    /// Every destination holds what the source holds (size and mtime of every file).
    fn check_mirrors(&self) -> anyhow::Result<()> {
        let src = listing(&self.src);
        for (tool, dst) in [
            ("rsync-sync", &self.dst_tool),
            ("by hand", &self.dst_hand),
            ("by hand over ssh", &self.dst_hand_ssh),
            ("dnsd", &self.dst_daemon),
        ] {
            let copy = listing(dst);
            if copy != src {
                let differing = src.iter().filter(|(k, v)| copy.get(*k) != Some(*v)).count()
                    + copy.keys().filter(|k| !src.contains_key(*k)).count();
                bail!("the {tool} mirror differs from the source in {differing} files");
            }
        }
        Ok(())
    }
}

/// Runs the mirroring benchmark.
pub fn run(args: &Args, out: &Reporter) -> anyhow::Result<()> {
    procs::require_programs(&["rsync", "ssh", "sshd", "socat"])?;
    out.emit(&machine::environment("mirror"));
    if !args.no_cost {
        cost(args, out)?;
    }
    if !args.no_loss {
        loss(args, out)?;
    }
    out.emit(&json!({"bench": "mirror", "type": "end", "loadavg": machine::loadavg()}));
    Ok(())
}

fn cost(args: &Args, out: &Reporter) -> anyhow::Result<()> {
    let set_bytes = (args.files * args.file_kib * 1024) as u64;
    // h2 holds one copy per tool; leave room for rsync's temporary files.
    let tmpfs_mib = set_bytes * (TOOLS.len() as u64) / (1024 * 1024) * 11 / 10 + 512;
    let lab = Lab::start(LabOptions::new(2).data_size_mib(tmpfs_mib))
        .map_err(|e| anyhow::anyhow!("lab setup failed: {}", lab_report(&e)))?;
    let dir = procs::temp_dir("dnsd-bench-mirror-")?;
    let (h1, h2) = (lab.hosts()[0].clone(), lab.hosts()[1].clone());
    let key = lab.client_key();
    let kh = lab.known_hosts();
    // dnsd's [mirror] defaults, with the lab's keys; rsync-sync puts the root /srv/rs in
    // front of the path on h2, so its copy lands in /srv/rs/srv/data there.
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[mirror]\nidentity = \"{k}\"\nknown_hosts = \"{kh}\"\npeer_identity = \"{k}\"\npeer_known_hosts = \"{kh}\"\n",
            k = key.display(),
            kh = kh.display(),
        ),
    )?;
    let rsync_sync_args: Vec<String> = vec![
        "--mirror-config".into(),
        config.display().to_string(),
        "--from".into(),
        h1.addr.to_string(),
        "--to".into(),
        format!("{}:/srv/rs", h2.addr),
        "--path".into(),
        "/srv/data".into(),
        "--json".into(),
    ];
    // The same options dnsd's pass uses at the [mirror] defaults (connect_timeout 5s,
    // io_timeout 60s, keepalive 15s, port 22, no bwlimit, no extra options): see
    // rsync-sync/README.md.
    let hand_argv: Vec<String> = [
        "rsync",
        "-a",
        "--stats",
        "--info=progress2",
        "--no-human-readable",
        "--no-msgs2stderr",
        "--delete",
        "--timeout=60",
        "-e",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([
        format!(
            "ssh -p 22 -i {} -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o IdentitiesOnly=yes -o ConnectTimeout=5 -o ServerAliveInterval=15 -o ServerAliveCountMax=3",
            key.display(),
            kh.display()
        ),
        "/srv/data/".to_owned(),
        format!("root@{}:/srv/hand/srv/data/", h2.addr),
    ])
    .collect();
    let mut hand_ssh_argv = hand_argv.clone();
    if let Some(dest) = hand_ssh_argv.last_mut() {
        *dest = format!("root@{}:/srv/hs/srv/data/", h2.addr);
    }
    let hand_ssh_command = hand_ssh_argv
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    let srv2 = lab
        .data_path(&h2)
        .parent()
        .map(Path::to_path_buf)
        .context("h2 has no /srv")?;
    let setup = CostSetup {
        lab: &lab,
        rsync_sync_args,
        hand_argv,
        hand_ssh_command,
        src: lab.data_path(&h1),
        dst_tool: srv2.join("rs/srv/data"),
        dst_hand: srv2.join("hand/srv/data"),
        dst_hand_ssh: srv2.join("hs/srv/data"),
        dst_daemon: srv2.join("dd/srv/data"),
    };
    out.emit(&json!({
        "bench": "mirror", "type": "cost_setup", "files": args.files, "file_kib": args.file_kib,
        "set_bytes": set_bytes, "by_hand_argv": setup.hand_argv,
        "by_hand_ssh": format!("ssh root@{} {}", h1.addr, setup.hand_ssh_command),
        "dnsd_pass": format!("{} {}",
            procs::workspace_binary("rsync-sync")?.display(), setup.rsync_sync_args.join(" ")),
    }));

    say(format!(
        "writing {} files of {} KiB ({:.2} GiB) of random data on h1",
        args.files,
        args.file_kib,
        set_bytes as f64 / (1u64 << 30) as f64
    ));
    let mut rng = rand::rng();
    let mut buf = vec![0u8; args.file_kib * 1024];
    let file_path = |i: usize| setup.src.join(format!("d{:02}/f{i:05}", i % 64));
    for d in 0..64 {
        std::fs::create_dir_all(setup.src.join(format!("d{d:02}")))?;
    }
    for i in 0..args.files {
        rng.fill_bytes(&mut buf);
        std::fs::write(file_path(i), &buf)?;
    }
    // Touch all of h2's tmpfs once before measuring (fill it, then free it), so that no
    // measured pass is the first to write into memory the VM has never handed out.
    lab.fill_disk(&h2)
        .and_then(|()| lab.heal(&h2))
        .map_err(|e| anyhow::anyhow!("warming h2's tmpfs: {}", lab_report(&e)))?;
    let quiet = machine::wait_quiet(args.quiet_load, args.quiet_wait)?;
    out.emit(&json!({"bench": "mirror", "type": "quiet", "part": "cost", "state": quiet}));

    let mut passes: Vec<Pass> = Vec::new();
    let record = |p: Pass, passes: &mut Vec<Pass>| -> anyhow::Result<()> {
        say(format!(
            "round {} {:13} {:10}: {:>8.0} ms, literal {:>13}, matched {:>13}, sent {:>13}, received {:>9}, h2 link {:>13} B",
            p.round,
            p.step,
            p.tool,
            p.wall_ms,
            p.literal_bytes,
            p.matched_bytes,
            p.bytes_sent,
            p.bytes_received,
            p.h2_link_bytes
        ));
        let mut value = serde_json::to_value(&p)?;
        if let Value::Object(m) = &mut value {
            m.insert("bench".into(), json!("mirror"));
            m.insert("type".into(), json!("pass"));
        }
        out.emit(&value);
        passes.push(p);
        Ok(())
    };
    let changed_every = 100; // 1% of the files
    for round in 1..=args.rounds {
        procs::check_stop()?;
        lab.exec(
            &h2,
            &[
                "sh",
                "-c",
                "rm -rf /srv/rs /srv/hand /srv/hs /srv/dd /srv/dd.dnsd-kept && mkdir -p /srv/rs/srv /srv/hand/srv /srv/hs/srv /srv/dd/srv",
            ],
        )
        .map_err(|e| anyhow::anyhow!("clearing h2: {}", lab_report(&e)))?;
        let mut dnsd: Option<Dnsd> = None;
        for step in STEPS {
            let mut touched: Vec<PathBuf> = Vec::new();
            match step {
                "changed_1pct" => {
                    // Rewrite change_kib KiB at a random place in every 100th file (a
                    // different 1% each round), as a database would update pages.
                    let offset = rng.random_range(0..changed_every);
                    let mut patch = vec![0u8; args.change_kib * 1024];
                    for i in (offset..args.files).step_by(changed_every) {
                        rng.fill_bytes(&mut patch);
                        let path = file_path(i);
                        let room = args.file_kib - args.change_kib.min(args.file_kib);
                        let at = rng.random_range(0..=room) as u64 * 1024;
                        let mut f = OpenOptions::new().write(true).open(&path)?;
                        f.seek(SeekFrom::Start(at))?;
                        f.write_all(&patch)?;
                        touched.push(path);
                    }
                }
                "appended" => {
                    let path = file_path(rng.random_range(0..args.files));
                    let mut tail = vec![0u8; args.append_kib * 1024];
                    rng.fill_bytes(&mut tail);
                    OpenOptions::new()
                        .append(true)
                        .open(&path)?
                        .write_all(&tail)?;
                    touched.push(path);
                }
                _ => {}
            }
            // Every tool takes every position in turn (round 1: rsync-sync, by hand, dnsd,
            // by hand over ssh; round 2: by hand, dnsd, ...): a pass that writes into
            // memory the VM has not handed out before is measurably slower, and so may be
            // the first or the last of a step.
            let mut order = TOOLS.to_vec();
            order.rotate_left((round - 1) % TOOLS.len());
            for tool in order {
                if tool != "dnsd" {
                    let p = setup.pass(tool, round, step)?;
                    record(p, &mut passes)?;
                    continue;
                }
                // The daemon: started for the full sync (its first pass), told to sync after.
                let cpu_at_ask: u64;
                let asked_ms = machine::now_ms();
                let links = setup.links()?;
                let daemon = match dnsd.take() {
                    Some(d) => {
                        cpu_at_ask = procs::cpu_ticks(&[d.pid()]);
                        d.act(&Action::Sync {
                            service: Some("data".into()),
                            node: Some("dst".into()),
                        })?;
                        d
                    }
                    None => {
                        let ddir = dir.path().join(format!("dnsd-{round}"));
                        std::fs::create_dir_all(&ddir)?;
                        cpu_at_ask = 0; // a new process: all its CPU time so far
                        Dnsd::start(&ddir, &daemon_config(&lab, &ddir))?
                    }
                };
                let p = setup.daemon_pass(&daemon, round, step, asked_ms, links, cpu_at_ask)?;
                record(p, &mut passes)?;
                dnsd = Some(daemon);
            }
            setup.check_mirrors()?;
            // The files just changed are byte-identical in every copy.
            for path in &touched {
                let rel = path.strip_prefix(&setup.src)?;
                let want = sha(path)?;
                for dst in [
                    &setup.dst_tool,
                    &setup.dst_hand,
                    &setup.dst_hand_ssh,
                    &setup.dst_daemon,
                ] {
                    if sha(&dst.join(rel))? != want {
                        bail!(
                            "{} differs from the source after {step}",
                            dst.join(rel).display()
                        );
                    }
                }
            }
        }
    }

    say("\n== mirroring cost: medians over rounds; ratios = median of per-round tool/by-hand ==");
    say(format!(
        "{:13} {:12} {:>7} {:>14} {:>14} {:>14} {:>14}",
        "step", "tool", "ms", "literal B", "matched B", "sent+recv B", "h2 link B"
    ));
    for step in STEPS {
        let metrics: [PassMetric; 7] = [
            ("wall_ms", |p| p.wall_ms),
            ("literal_bytes", |p| p.literal_bytes as f64),
            ("matched_bytes", |p| p.matched_bytes as f64),
            ("wire_bytes", |p| (p.bytes_sent + p.bytes_received) as f64),
            ("h2_link_bytes", |p| p.h2_link_bytes as f64),
            ("h1_link_bytes", |p| p.h1_link_bytes as f64),
            ("ts_cpu_ms", |p| p.ts_cpu_ms.unwrap_or(f64::NAN)),
        ];
        let mut rows = serde_json::Map::new();
        for tool in ["dnsd", "rsync_sync", "by_hand_ssh", "by_hand"] {
            let mine: Vec<&Pass> = passes
                .iter()
                .filter(|p| p.step == step && p.tool == tool)
                .collect();
            let mut m = serde_json::Map::new();
            for (name, get) in metrics {
                let v: Vec<f64> = mine.iter().map(|p| get(p)).collect();
                m.insert(name.into(), json!(stats::median(&v)));
            }
            say_row(step, tool, &m, 0);
            rows.insert(tool.into(), Value::Object(m));
        }
        // Ratios of per-round figures: over rsync by hand on h1 (the floor), and over the
        // same by hand through ssh from the terminal server (what an operator would run).
        let mut ratios = serde_json::Map::new();
        let mut ratios_ssh = serde_json::Map::new();
        for (tool, base, label) in [
            ("dnsd", "by_hand", "dnsd/hand"),
            ("rsync_sync", "by_hand", "rs-sync/hand"),
            ("by_hand_ssh", "by_hand", "ssh/hand"),
            ("dnsd", "by_hand_ssh", "dnsd/ssh"),
            ("rsync_sync", "by_hand_ssh", "rs-sync/ssh"),
        ] {
            let mut per_metric = serde_json::Map::new();
            for (name, get) in metrics {
                let per_round: Vec<f64> = (1..=args.rounds)
                    .filter_map(|r| {
                        let find = |t: &str| {
                            passes
                                .iter()
                                .find(|p| p.step == step && p.tool == t && p.round == r)
                        };
                        let (a, b) = (find(tool)?, find(base)?);
                        (get(b) != 0.0).then(|| get(a) / get(b))
                    })
                    .collect();
                per_metric.insert(name.into(), json!(stats::median(&per_round)));
            }
            say_row(step, label, &per_metric, 3);
            let into = if base == "by_hand" {
                &mut ratios
            } else {
                &mut ratios_ssh
            };
            into.insert(tool.into(), Value::Object(per_metric));
        }
        out.emit(
            &json!({"bench": "mirror", "type": "cost_summary", "step": step, "median": rows,
            "over_by_hand": ratios, "over_by_hand_ssh": ratios_ssh}),
        );
    }
    Ok(())
}

/// One line of the cost summary on stderr: a step, a tool (or ratio) and its figures.
fn say_row(step: &str, label: &str, figures: &serde_json::Map<String, Value>, digits: usize) {
    let get = |k: &str| num(figures.get(k).and_then(Value::as_f64), digits);
    say(format!(
        "{step:13} {label:12} {:>7} {:>14} {:>14} {:>14} {:>14}",
        get("wall_ms"),
        get("literal_bytes"),
        get("matched_bytes"),
        get("wire_bytes"),
        get("h2_link_bytes")
    ));
}

fn loss(args: &Args, out: &Reporter) -> anyhow::Result<()> {
    let lab = Lab::start(LabOptions::new(3))
        .map_err(|e| anyhow::anyhow!("lab setup failed: {}", lab_report(&e)))?;
    let dir = procs::temp_dir("dnsd-bench-loss-")?;
    let hosts = lab.hosts().to_vec();
    let quiet = machine::wait_quiet(args.quiet_load, args.quiet_wait)?;
    out.emit(&json!({"bench": "mirror", "type": "quiet", "part": "loss", "state": quiet}));
    let mut trials: Vec<Value> = Vec::new();
    for interval_text in &args.loss_intervals {
        let interval = humantime::parse_duration(interval_text)
            .with_context(|| format!("bad interval {interval_text:?}"))?;
        for trial in 1..=args.loss_trials {
            procs::check_stop()?;
            // A clean start: every host up with an empty data folder, a fresh dnsd.
            dataloss::fresh_hosts(&lab)?;
            let ddir = dir.path().join(format!("{interval_text}-{trial}"));
            std::fs::create_dir_all(&ddir)?;
            let config = dataloss::dnsd_config(&lab, &ddir, interval_text, "");
            let dnsd = Dnsd::start(&ddir, &config)?;
            dataloss::wait_mirrored(&dnsd, &hosts[0].name)?;
            // Run two to three intervals (and at least 2 s more), so the crash falls
            // anywhere in the pass schedule.
            let run_for = dataloss::crash_after(interval, 2);
            let t0 = dataloss::write_then_crash(
                &lab,
                &hosts[0],
                args.write_rate,
                run_for,
                &ddir.join("writer.log"),
            )?;
            let promoted = dataloss::wait_promoted(&dnsd, &hosts[0].name)?;
            let failover_ms = t0.elapsed().as_secs_f64() * 1000.0;
            let host = hosts
                .iter()
                .find(|h| h.name == promoted)
                .context("promoted an unknown member")?;
            let names = |h: &Host| dataloss::seqs_under(&lab.data_path(h).join("w"));
            let written = names(&hosts[0]);
            let kept = names(host);
            let lost = written.difference(&kept).count();
            let newest_written = written.iter().next_back().copied().unwrap_or(0);
            let newest_kept = kept.iter().next_back().copied().unwrap_or(0);
            let period_ms = 1000.0 / f64::from(args.write_rate.max(1));
            let record = json!({
                "bench": "mirror", "type": "loss_trial", "interval": interval_text, "trial": trial,
                "ran_s": run_for.as_secs_f64(), "written": written.len(), "on_promoted": kept.len(),
                "lost": lost, "extra_on_promoted": kept.difference(&written).count(),
                "window_ms": (newest_written.saturating_sub(newest_kept)) as f64 * period_ms,
                "promoted": promoted, "failover_ms": failover_ms,
            });
            say(format!(
                "interval {interval_text:3} trial {trial}: wrote {} on h1, {promoted} has {} -> lost {lost} writes ({:.0} ms of writing)",
                written.len(),
                kept.len(),
                (newest_written.saturating_sub(newest_kept)) as f64 * period_ms
            ));
            out.emit(&record);
            trials.push(record);
            drop(dnsd);
        }
    }
    say("\n== data-loss window: writes on the crashed primary missing on the promoted member ==");
    for interval in &args.loss_intervals {
        let pick = |k: &str| -> Vec<f64> {
            trials
                .iter()
                .filter(|t| t["interval"] == interval.as_str())
                .filter_map(|t| t[k].as_f64())
                .collect()
        };
        let (lost, window) = (
            stats::summary(&pick("lost")),
            stats::summary(&pick("window_ms")),
        );
        say(format!(
            "interval {interval:3}: lost writes median {} max {} (n={}); window median {} ms, max {} ms at {} writes/s",
            num(lost["median"].as_f64(), 0),
            num(lost["max"].as_f64(), 0),
            lost["n"],
            num(window["median"].as_f64(), 0),
            num(window["max"].as_f64(), 0),
            args.write_rate
        ));
        out.emit(&json!({"bench": "mirror", "type": "loss_summary", "interval": interval, "write_rate": args.write_rate, "lost": lost, "window_ms": window}));
    }
    Ok(())
}

/// dnsd mirroring h1 ("src") to h2 ("dst", whose copy lands in /srv/dd/srv/data) at the
/// [mirror] defaults, with a one-hour interval so it passes only at start and when told.
fn daemon_config(lab: &Lab, dir: &Path) -> String {
    let (h1, h2) = (&lab.hosts()[0], &lab.hosts()[1]);
    format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"svc.test.\"\nnameservers = [{{ name = \"ns1.svc.test.\", address = \"127.0.0.1\" }}]\n\
         [control]\nsocket = \"{d}/control.sock\"\n[state]\ndir = \"{d}/state\"\n\
         [mirror]\ninterval = \"1h\"\nidentity = \"{k}\"\nknown_hosts = \"{kh}\"\npeer_identity = \"{k}\"\npeer_known_hosts = \"{kh}\"\n\
         [[node]]\nname = \"src\"\naddress = \"{a}\"\n[[node]]\nname = \"dst\"\naddress = \"{b}\"\nroot = \"/srv/dd\"\n\
         [[service]]\nname = \"data\"\nnodes = [\"src\", \"dst\"]\npaths = [\"/srv/data\"]\n",
        d = dir.display(),
        k = lab.client_key().display(),
        kh = lab.known_hosts().display(),
        a = h1.addr,
        b = h2.addr
    )
}
