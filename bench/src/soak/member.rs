//! What runs on the members during the soak: the record writer that the workload client
//! reaches over SSH, the gate it checks before every write, and the hook scripts dnsd runs
//! (promote, demote and the epoch guard on the members, fence on the terminal server).
//!
//! # The gate
//!
//! Each member keeps, on its own disk beside (not in) the mirrored data, in [`MEMBER_DIR`]:
//!
//! - `epoch`: the newest epoch the member was given, kept by `dnsd-epoch-guard`, which every
//!   hook runs first and dnsd runs on both ends before every pass (`epoch_guard`);
//! - `open`: present while the member accepts writes, holding the epoch it accepts them in.
//!
//! dnsd hands a hook the service's epoch *before* the change it carries out: a member
//! promoted by a hook carrying epoch E is primary in epoch E + 1, which every later pass
//! carries. So `promote E` records E and opens writes in E + 1; `demote E` records E and
//! closes them; the fence (run by dnsd on the terminal server) reaches the failed primary
//! out of band, as a power switch or a BMC would, records E there and closes its writes.
//! A write is accepted only while `open` holds an epoch at least as new as `epoch`: once a
//! pass of a newer epoch (a newer primary's) has reached a member, that member refuses
//! writes until it is promoted again.
//!
//! Hooks, the guard and the writer all hold `epoch.lock` (the guard's own lock, flock(2))
//! while they read or change the gate, and the writer holds it until its record is on
//! disk: when a demote or a fence returns, no write is in flight any more.
//!
//! # A primary takes no pass
//!
//! Like a database's standby, which stops its replication receiver when it is promoted,
//! a member that accepts writes refuses incoming mirroring passes: dnsd's rsync reaches
//! the member's side through the `receive` script (`--rsync-path`), which refuses while
//! the gate is open and otherwise registers its PID under `receivers/`; `promote` ends
//! the registered receivers, by PID, before it opens the gate. Without it, a pass that
//! dnsd ordered from the old primary before a failover, and that runs (or still runs)
//! after it, deletes the new primary's writes (`--delete`): see docs/soak.md, defect D1.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use console::launch::write_executable;

use crate::mirror::shell_quote;

/// Where each member keeps its gate and hook log (on its own `/srv`, not mirrored).
pub const MEMBER_DIR: &str = "/srv/soak";
/// The records' folder on a member, inside the mirrored data.
pub const RECORDS: &str = "/srv/data/w";
/// Longest the writer waits for the gate's lock before refusing a write.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// Longest session the writer serves, in writes (a bound; sessions end long before).
const MAX_WRITES: u64 = 10_000_000;

/// Options of the member-side writer (an internal subcommand run over SSH).
#[derive(Debug, Clone, clap::Args)]
pub struct WriterArgs {
    /// The member's gate folder.
    #[arg(long, default_value = MEMBER_DIR)]
    pub gate: PathBuf,
    /// Where records are written.
    #[arg(long, default_value = RECORDS)]
    pub records: PathBuf,
    /// Accept writes whenever `open` exists, whatever epoch it holds (a deliberately
    /// broken member, to show that the checker notices).
    #[arg(long)]
    pub ignore_epoch: bool,
}

/// Serves one client session: prints `READY <node>`, then for each line `W <seq>
/// <client>` on stdin writes the record if the gate is open and answers `OK <seq> <node>
/// <epoch> <ns>` once it is on disk, or `NO <seq> <why>`. Ends at the end of stdin.
pub fn serve(args: &WriterArgs) -> anyhow::Result<()> {
    let node = fs::read_to_string(args.gate.join("name"))
        .with_context(|| format!("reading {}", args.gate.join("name").display()))?
        .trim()
        .to_owned();
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {node}")?;
    out.flush()?;
    let stdin = std::io::stdin().lock();
    for line in stdin.lines().take(MAX_WRITES as usize) {
        let line = line.context("reading a request")?;
        let mut words = line.split_whitespace();
        let (Some("W"), Some(seq), Some(client)) = (words.next(), words.next(), words.next())
        else {
            writeln!(out, "ERR unreadable request {line:?}")?;
            out.flush()?;
            continue;
        };
        let (Ok(seq), Ok(client)) = (seq.parse::<u64>(), client.parse::<u64>()) else {
            writeln!(out, "ERR unreadable request {line:?}")?;
            out.flush()?;
            continue;
        };
        let reply = match write_record(args, &node, seq, client) {
            Ok(Ok((epoch, at_ns))) => format!("OK {seq} {node} {epoch} {at_ns}"),
            Ok(Err(why)) => format!("NO {seq} {why}"),
            Err(error) => format!("NO {seq} error: {error:#}"),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}

/// The gate's lock, held until dropped.
struct Locked(File);

impl Locked {
    fn take(path: &Path) -> anyhow::Result<Option<Locked>> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let started = Instant::now();
        loop {
            // SAFETY: flock on a descriptor we own; no memory is passed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Some(Locked(file)));
            }
            if started.elapsed() > LOCK_WAIT {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release it too.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// An epoch file's number: `None` when the file does not exist.
fn read_epoch(path: &Path) -> anyhow::Result<Option<u64>> {
    match fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("{} holds {:?}", path.display(), text.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Nanoseconds since the Unix epoch (one clock for every host of the lab).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The file a record is written to: 1,000 records per folder.
pub fn record_path(records: &Path, seq: u64) -> PathBuf {
    records
        .join(format!("{:06}", seq / 1000))
        .join(format!("{seq:010}"))
}

/// Why the gate refused a write (the writer's `NO` answer says it in these words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Refused {
    #[error("the gate is locked (a hook is running)")]
    Locked,
    #[error("closed")]
    Closed,
    #[error("open in epoch {open} but {newest} was seen")]
    Stale { open: u64, newest: u64 },
}

/// Writes record `seq` if the gate is open: `Ok(Ok((epoch, ns)))` once it is on disk,
/// `Ok(Err(why))` when the gate refuses.
fn write_record(
    args: &WriterArgs,
    node: &str,
    seq: u64,
    client: u64,
) -> anyhow::Result<Result<(u64, u64), Refused>> {
    let Some(_lock) = Locked::take(&args.gate.join("epoch.lock"))? else {
        return Ok(Err(Refused::Locked));
    };
    let newest = read_epoch(&args.gate.join("epoch"))?.unwrap_or(0);
    let epoch = match read_epoch(&args.gate.join("open"))? {
        None => return Ok(Err(Refused::Closed)),
        Some(open) if open < newest && !args.ignore_epoch => {
            return Ok(Err(Refused::Stale { open, newest }));
        }
        Some(open) => open,
    };
    let path = record_path(&args.records, seq);
    let dir = path.parent().context("a record path has a folder")?;
    if !dir.is_dir() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        sync_dir(dir.parent().unwrap_or(dir))?;
    }
    let at_ns = now_ns();
    let tmp = dir.join(format!(".{seq}.tmp"));
    let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    writeln!(
        file,
        "seq={seq} client={client} node={node} epoch={epoch} at_ns={at_ns}"
    )?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))?;
    sync_dir(dir)?;
    Ok(Ok((epoch, at_ns)))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Record numbers of every record file under `root` (any depth), for the checker.
/// Temporary files (`.N.tmp`) are not records.
pub fn records_under(root: &Path) -> Vec<u64> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    // Bounded by the tree: every folder is visited once.
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if let Some(seq) = entry
                .file_name()
                .to_str()
                .filter(|n| n.len() == 10)
                .and_then(|n| n.parse::<u64>().ok())
            {
                found.push(seq);
            }
        }
    }
    found
}

/// What is deliberately broken in a run, to show that the checker notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unsafe {
    /// `fencing = "none"` with neither fence nor demote: a partitioned or switched-over
    /// primary goes on accepting writes until a newer epoch reaches it.
    NoFence,
    /// Hooks without the epoch guard, no `epoch_guard` for passes, and writers that
    /// ignore the epoch: only fence and demote stop a primary.
    NoGuard,
    /// Members take passes whatever their role, and promote leaves incoming passes running
    /// (dnsd's own defence against stale passes, alone).
    NoReceiveGate,
}

/// The hook scripts of one run, written into `dir` (visible on every member and on the
/// terminal server).
pub struct Hooks {
    pub dir: PathBuf,
    /// The epoch guard the hooks and passes call.
    pub guard: PathBuf,
}

impl Hooks {
    /// Writes the scripts. `fences` maps each member's name to the argv that enters it out
    /// of band (its namespaces) from the terminal server.
    pub fn write(
        dir: &Path,
        guard: &Path,
        fences: &[(String, Vec<String>)],
        unsafe_mode: Option<Unsafe>,
    ) -> anyhow::Result<Hooks> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let guarded = unsafe_mode != Some(Unsafe::NoGuard);
        let guard_line = |state: &str| {
            if guarded {
                format!(
                    "{} \"{state}\" \"$epoch\"\n",
                    shell_quote(&guard.display().to_string())
                )
            } else {
                "# (no epoch guard: deliberately broken)\n".to_owned()
            }
        };
        let head = |what: &str| {
            format!(
                "#!/bin/sh\n# soak hook: {what}\nset -eu\nepoch=$1\ngate={MEMBER_DIR}\n\
                 log() {{ printf '%s %s %s\\n' \"$(date +%s.%N)\" \"$*\" \"$epoch\" >> \"$gate/hooks.log\"; }}\n"
            )
        };
        let lock = "flock -w 10 \"$gate/epoch.lock\"";
        let end_receivers = if unsafe_mode == Some(Unsafe::NoReceiveGate) {
            ""
        } else {
            END_RECEIVERS
        };
        let promote = format!(
            "{}{}{lock} sh -c '{end_receivers}printf \"%s\\n\" \"$1\" > \"$2/open.tmp\" && mv \"$2/open.tmp\" \"$2/open\"' sh $((epoch + 1)) \"$gate\"\nlog promote\n",
            head("promote EPOCH: record EPOCH, end incoming passes, accept writes in EPOCH + 1"),
            guard_line("$gate/epoch"),
        );
        let accepting = if guarded {
            "[ -e \"$gate/open\" ] && [ \"$(cat \"$gate/open\")\" -ge \"$(cat \"$gate/epoch\" 2>/dev/null || echo 0)\" ]"
        } else {
            "[ -e \"$gate/open\" ]"
        };
        let receive = format!(
            "#!/bin/sh\n# soak: the receiving rsync of a pass (--rsync-path). A member that accepts\n\
             # writes takes no pass; others register their PID so that promote can end them.\n\
             set -eu\ngate={MEMBER_DIR}\n(\n  flock -w 10 9\n  if {accepting}; then\n    \
             echo \"soak: $(cat \"$gate/name\") accepts writes: it takes no pass\" >&2\n    exit 1\n  fi\n  \
             mkdir -p \"$gate/receivers\"\n  : > \"$gate/receivers/$$\"\n) 9>>\"$gate/epoch.lock\"\nexec rsync \"$@\"\n"
        );
        let demote = format!(
            "{}{}{lock} rm -f \"$gate/open\"\nlog demote\n",
            head("demote EPOCH: record EPOCH, stop writes (returns once none is in flight)"),
            guard_line("$gate/epoch"),
        );
        // Run inside the member by the fence, out of band.
        let closed = format!(
            "{}{}{lock} rm -f \"$gate/open\"\nlog fenced\n",
            head("fenced EPOCH: what the fence does on the member"),
            guard_line("$gate/epoch"),
        );
        let mut cases = String::new();
        for (node, enter) in fences {
            let argv: Vec<String> = enter.iter().map(|w| shell_quote(w)).collect();
            let _ = writeln!(
                cases,
                "  {}) exec {} {} \"$epoch\" ;;",
                shell_quote(node),
                argv.join(" "),
                shell_quote(&dir.join("fenced").display().to_string())
            );
        }
        let fence = format!(
            "#!/bin/sh\n# soak fence NODE EPOCH, on the terminal server: closes NODE's writes out of\n\
             # band (through its namespaces, as a BMC would), whatever its network does.\n\
             set -eu\nnode=$1\nepoch=$2\n{}case $node in\n{cases}  *) echo \"fence: unknown member $node\" >&2; exit 2 ;;\nesac\n",
            guard_line(&dir.join("fence-epoch").display().to_string()),
        );
        for (name, text) in [
            ("promote", promote),
            ("receive", receive),
            ("demote", demote),
            ("fenced", closed),
            ("fence", fence),
        ] {
            let path = dir.join(name);
            write_executable(&path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(Hooks {
            dir: dir.to_owned(),
            guard: guard.to_owned(),
        })
    }

    /// The `[mirror]` keys: passes reach members through the receive gate.
    pub fn mirror_keys(&self, unsafe_mode: Option<Unsafe>) -> String {
        if unsafe_mode == Some(Unsafe::NoReceiveGate) {
            return String::new();
        }
        let receive = format!("--rsync-path={}", self.dir.join("receive").display());
        format!("rsync_options = [{}]\n", toml_string(&receive))
    }

    /// The `[[service]]` keys of the hooks.
    pub fn service_keys(&self, unsafe_mode: Option<Unsafe>) -> String {
        let path = |name: &str| toml_string(&self.dir.join(name).display().to_string());
        let promote = format!("promote = [{}, \"{{epoch}}\"]\n", path("promote"));
        let guard = format!(
            "epoch_guard = [{}, \"{MEMBER_DIR}/epoch\", \"{{epoch}}\"]\n",
            toml_string(&self.guard.display().to_string())
        );
        let mut keys = promote;
        if unsafe_mode == Some(Unsafe::NoFence) {
            keys.push_str("fencing = \"none\"\n");
        } else {
            keys.push_str(&format!(
                "demote = [{}, \"{{epoch}}\"]\nfence = [{}, \"{{node}}\", \"{{epoch}}\"]\nfencing = \"required\"\n",
                path("demote"),
                path("fence")
            ));
        }
        if unsafe_mode != Some(Unsafe::NoGuard) {
            keys.push_str(&guard);
        }
        keys
    }
}

/// The epoch guard to use: the project's `etc/dnsd-epoch-guard` when this checkout has it,
/// else a stand-in with the same interface written into `dir` (STATE_FILE EPOCH; records
/// EPOCH unless an older one than recorded, exit 1 then; flock on STATE_FILE.lock).
pub fn epoch_guard(repo: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let shipped = repo.join("etc/dnsd-epoch-guard");
    if shipped.is_file() {
        return Ok(shipped);
    }
    let path = dir.join("dnsd-epoch-guard");
    write_executable(&path, STAND_IN_GUARD.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The part of `promote` (inside `sh -c`, under the gate's lock, `$2` the gate folder) that
/// ends the passes still coming in: each registered receiver that still runs in this
/// member's mount namespace, and its children (rsync's receiving side is two processes), by
/// PID.
const END_RECEIVERS: &str = r#"me=$(readlink /proc/self/ns/mnt)
for f in "$2"/receivers/*; do
  [ -e "$f" ] || continue
  pid=${f##*/}
  if [ "$(readlink /proc/$pid/ns/mnt 2>/dev/null)" = "$me" ]; then
    kids=$(awk -v p="$pid" "\$4 == p { print \$1 }" /proc/[0-9]*/stat 2>/dev/null || true)
    kill -9 $pid $kids 2>/dev/null || true
    echo "$(date +%s.%N) ended pass receiver $pid $kids" >> "$2/hooks.log"
  fi
  rm -f "$f"
done
"#;

/// Used until `etc/dnsd-epoch-guard` is on this branch.
const STAND_IN_GUARD: &str = r#"#!/bin/sh
# Stand-in for etc/dnsd-epoch-guard (same interface): STATE_FILE EPOCH.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 STATE_FILE EPOCH" >&2; exit 2; }
state=$1 epoch=$2
case $epoch in '' | *[!0-9]*) echo "$0: bad epoch '$epoch'" >&2; exit 2 ;; esac
mkdir -p -- "$(dirname -- "$state")"
exec 9>>"$state.lock"
flock -w 10 9 || { echo "$0: $state.lock is busy" >&2; exit 3; }
recorded=0
[ -e "$state" ] && recorded=$(cat -- "$state")
if [ "$epoch" -lt "$recorded" ]; then
    echo "$0: epoch $epoch is older than $recorded recorded in $state: refused" >&2
    exit 1
fi
printf '%s\n' "$epoch" > "$state.tmp"
mv -- "$state.tmp" "$state"
"#;

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn gate(dir: &Path) -> WriterArgs {
        WriterArgs {
            gate: dir.join("gate"),
            records: dir.join("w"),
            ignore_epoch: false,
        }
    }

    #[test]
    fn the_gate_opens_only_at_the_newest_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let args = gate(dir.path());
        fs::create_dir_all(&args.gate).unwrap();
        assert_eq!(
            write_record(&args, "h1", 1, 0).unwrap(),
            Err(Refused::Closed)
        );
        fs::write(args.gate.join("open"), "3\n").unwrap();
        fs::write(args.gate.join("epoch"), "3\n").unwrap();
        let (epoch, _) = write_record(&args, "h1", 2, 0).unwrap().unwrap();
        assert_eq!(epoch, 3);
        assert!(record_path(&args.records, 2).is_file());
        fs::write(args.gate.join("epoch"), "4\n").unwrap();
        assert!(write_record(&args, "h1", 3, 0).unwrap().is_err());
        assert!(!record_path(&args.records, 3).exists());
        let broken = WriterArgs {
            ignore_epoch: true,
            ..args.clone()
        };
        assert!(write_record(&broken, "h1", 4, 0).unwrap().is_ok());
        assert_eq!(
            {
                let mut r = records_under(&args.records);
                r.sort();
                r
            },
            vec![2, 4]
        );
    }

    #[test]
    fn the_hooks_open_and_close_the_gate_through_the_guard() {
        let dir = tempfile::tempdir().unwrap();
        // The guard the soak uses: the shipped one once this branch has it.
        let guard = epoch_guard(crate::machine::repo_root(), dir.path()).unwrap();
        let hooks = Hooks::write(&dir.path().join("hooks"), &guard, &[], None).unwrap();
        // The scripts address /srv/soak; run them against a copy pointing elsewhere.
        let gate = dir.path().join("gate");
        fs::create_dir_all(&gate).unwrap();
        let run = |name: &str, epoch: &str| {
            let text = fs::read_to_string(hooks.dir.join(name))
                .unwrap()
                .replace(MEMBER_DIR, &gate.display().to_string());
            Command::new("sh")
                .args(["-c", &text, name, epoch])
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap()
                .success()
        };
        assert!(run("promote", "4"));
        assert_eq!(fs::read_to_string(gate.join("open")).unwrap().trim(), "5");
        assert_eq!(fs::read_to_string(gate.join("epoch")).unwrap().trim(), "4");
        assert!(!run("demote", "3"), "an older epoch is refused");
        assert!(gate.join("open").exists());
        assert!(run("demote", "4"));
        assert!(!gate.join("open").exists());
        // A receiver registered while the member was closed is ended by promote.
        let mut receiver = Command::new("sleep").arg("30").spawn().unwrap();
        fs::create_dir_all(gate.join("receivers")).unwrap();
        fs::write(gate.join("receivers").join(receiver.id().to_string()), "").unwrap();
        assert!(run("promote", "5"));
        let ended = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            receiver.try_wait().unwrap().is_some()
        });
        assert!(ended, "promote left the registered receiver running");
        assert!(
            !gate
                .join("receivers")
                .join(receiver.id().to_string())
                .exists()
        );
        // An open member takes no pass; a closed one does.
        assert!(!run("receive", "--version"));
        assert!(run("fenced", "5"));
        assert!(run("receive", "--version"));
        assert_eq!(fs::read_dir(gate.join("receivers")).unwrap().count(), 1);
        assert!(!gate.join("open").exists());
        let log = fs::read_to_string(gate.join("hooks.log")).unwrap();
        assert_eq!(
            log.lines().filter(|l| !l.contains("receiver")).count(),
            4,
            "{log}"
        );
        assert!(log.contains("ended pass receiver"), "{log}");
        assert!(hooks.service_keys(None).contains("fencing = \"required\""));
        assert!(
            hooks
                .service_keys(Some(Unsafe::NoFence))
                .contains("fencing = \"none\"")
        );
        assert!(!hooks.service_keys(Some(Unsafe::NoFence)).contains("demote"));
    }
}
