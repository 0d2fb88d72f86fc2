//! Processes of the demo (dnsd and one sshd per member), beyond what the launcher does
//! (`crate::launch`: dying with the console, stopping by PID): an sshd killed together
//! with everything it started (its sessions and the rsyncs running in them), as a crash
//! would, and whatever an earlier demo left running swept by the next one, by PID file.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Every process below `root` (children, their children, ...), from `/proc`.
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(kids) = children.get(&p) {
            for &k in kids {
                out.push(k);
                stack.push(k);
            }
        }
    }
    out
}

/// The parent PID of `pid`, from `/proc/PID/stat` (field 4, after the command name,
/// which may itself hold spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a PID we started (or that a process we started started).
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Whether a process with this PID exists.
pub(crate) fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Kills `child` and everything below it at once (SIGKILL), as a crash would, and reaps
/// the child.
pub(crate) fn kill_tree(child: &mut Child) {
    let below = descendants(child.id());
    signal(child.id(), libc::SIGKILL);
    for pid in below {
        signal(pid, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Stops what an earlier demo in `dir` left running: every PID in `dir/run/*.pid`
/// whose command line names `dir` (so a reused PID of some other program is left
/// alone). Returns how many were stopped.
pub(crate) fn sweep(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir.join("run")) else {
        return 0;
    };
    let needle = dir.to_string_lossy().into_owned();
    let mut stopped = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "pid") {
            continue;
        }
        let Some(pid) = fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(&needle) {
            continue;
        }
        for p in descendants(pid) {
            signal(p, libc::SIGKILL);
        }
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(pid) {
            signal(pid, libc::SIGKILL);
        }
        stopped += 1;
    }
    stopped
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn kill_tree_reaches_grandchildren() {
        // sh starts a sleep and waits for it: the sleep is a grandchild of nobody but sh.
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let found = (0..100).find_map(|_| {
            let d = descendants(child.id());
            if d.is_empty() {
                std::thread::sleep(Duration::from_millis(20));
                None
            } else {
                Some(d)
            }
        });
        let below = found.expect("the sleep never appeared");
        kill_tree(&mut child);
        let gone = (0..100).any(|_| {
            if below.iter().all(|&p| !alive(p) || zombie(p)) {
                true
            } else {
                std::thread::sleep(Duration::from_millis(20));
                false
            }
        });
        assert!(gone, "{below:?} still running");
    }

    fn zombie(pid: u32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let after = s[s.rfind(')')? + 1..].to_owned();
                after.split_whitespace().next().map(|st| st == "Z")
            })
            .unwrap_or(true)
    }

    #[test]
    fn parent_of_parses_names_with_parentheses() {
        let me = std::process::id();
        assert!(parent_of(me).is_some());
    }
}
