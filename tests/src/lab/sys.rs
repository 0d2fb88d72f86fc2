//! The system plumbing the lab is built from: running `ip` and friends with their errors kept,
//! finding tools, killing the processes of a network namespace by PID, and the machine-wide lock.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::error::LabError;

/// The file every lab process locks while it sweeps, claims an id and picks a subnet, so two
/// test processes never pick the same name or the same addresses.
const LOCK_FILE: &str = "/tmp/dnsd-lab.lock";

/// How long killed processes get to disappear before teardown reports them.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// The command as a person would type it, for error messages.
pub(crate) fn command_line(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs a command to completion and fails, with its stderr, unless it exits with status 0.
pub(crate) fn run(cmd: &mut Command) -> Result<Output, LabError> {
    let command = command_line(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(LabError::Command {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Runs `ip` with these arguments.
pub(crate) fn ip<S: AsRef<OsStr>>(args: &[S]) -> Result<Output, LabError> {
    run(Command::new("ip").args(args))
}

/// Finds an executable in `PATH` or the usual system folders (`sshd` lives in `/usr/sbin`, which
/// is not on every `PATH`).
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}

/// Reaps `pid` if it is an exited child of this process; never blocks.
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid writes only into `status`, which outlives the call.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// The state letter of `pid`, from `/proc/<pid>/stat`; `None` once it is gone.
fn proc_state(pid: i32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state is the first field after the parenthesised command name.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// Whether `pid` is a live process (a zombie counts as dead: it runs nothing and holds nothing).
pub(crate) fn is_alive(pid: i32) -> bool {
    proc_state(pid).is_some_and(|state| state != "Z" && state != "X")
}

/// The start time of `pid` in clock ticks since boot, which tells a process from a later one
/// that reused its PID.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Field 22 of stat; `rest` starts at field 3.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The identity (device, inode) of a namespace file such as `/run/netns/NAME` or
/// `/proc/PID/ns/net`.
fn ns_identity(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The PIDs of the processes in network namespace `netns`, as `ip netns pids` reports them.
pub(crate) fn netns_pids(netns: &str) -> Result<Vec<i32>, LabError> {
    let output = ip(&["netns", "pids", netns])?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect())
}

/// Sends SIGKILL to `pid` only if it is still a member of the network namespace `ns`.
///
/// The PID is pinned with a pidfd before its namespace is checked, so a PID that was reused by
/// an unrelated process between listing and killing is never signalled.
fn kill_member(pid: i32, ns: (u64, u64)) -> bool {
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let Ok(raw) = i32::try_from(raw) else {
        return false;
    };
    if raw < 0 {
        return false;
    }
    // SAFETY: `raw` is a descriptor that pidfd_open just returned to us and nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
    if ns_identity(Path::new(&format!("/proc/{pid}/ns/net"))) != Some(ns) {
        return false;
    }
    // SAFETY: pidfd_send_signal takes the pidfd, a signal number, a null siginfo and flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0
}

/// Kills every process in network namespace `netns` except those in `keep`, and waits (bounded)
/// until they are gone. Returns the PIDs that did not go away.
///
/// Of the killed processes, those in `own` (the lab's own children: holders and services) are
/// reaped here. Others are left to their parents: a test that started a process in a host
/// still gets its exit status from its `Child`, and orphans (an sshd session whose sshd was
/// killed with it) go to PID 1 as usual. Those count as gone once they are zombies.
pub(crate) fn kill_netns_members(
    netns: &str,
    keep: &[i32],
    own: &[i32],
) -> Result<Vec<i32>, LabError> {
    let Some(ns) = ns_identity(&Path::new("/run/netns").join(netns)) else {
        return Ok(Vec::new());
    };
    let deadline = Instant::now() + KILL_TIMEOUT;
    let mut killed: Vec<i32> = Vec::new();
    loop {
        // A service may fork while we kill, so list again until the namespace is empty.
        let members: Vec<i32> = netns_pids(netns)?
            .into_iter()
            .filter(|pid| !keep.contains(pid))
            .collect();
        for &pid in &members {
            if kill_member(pid, ns) && !killed.contains(&pid) {
                killed.push(pid);
            }
        }
        thread::sleep(Duration::from_millis(5));
        // Reap on every round: one of ours that dies between two rounds is never left behind.
        killed
            .iter()
            .filter(|pid| own.contains(pid))
            .for_each(|&pid| reap(pid));
        let survivors: Vec<i32> = killed
            .iter()
            .chain(&members)
            .copied()
            .filter(|&pid| {
                // Ours must be reaped (gone); others must no longer run.
                if own.contains(&pid) {
                    proc_state(pid).is_some()
                } else {
                    is_alive(pid)
                }
            })
            .collect();
        if survivors.is_empty() {
            return Ok(Vec::new());
        }
        if Instant::now() >= deadline {
            return Ok(survivors);
        }
    }
}

/// Kills one process that this process started and has not reaped yet (so its PID cannot have
/// been reused), and reaps it.
pub(crate) fn kill_child(pid: i32) {
    // SAFETY: kill takes a PID and a signal and touches no memory.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + KILL_TIMEOUT;
    while is_alive(pid) && Instant::now() < deadline {
        reap(pid);
        thread::sleep(Duration::from_millis(5));
    }
    reap(pid);
}

/// Whether a child of this process has exited; reaps it if so. Used to notice a service that
/// died while we wait for it to become ready.
pub(crate) fn child_exited(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid writes only into `status`, which outlives the call.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    rc == pid || !is_alive(pid)
}

/// The names of the network namespaces in `/run/netns`.
pub(crate) fn netns_list() -> Vec<String> {
    fs::read_dir("/run/netns")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The names of the network interfaces in the root namespace.
pub(crate) fn link_list() -> Vec<String> {
    fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// An exclusive hold on the machine-wide lab lock; released on drop (or when the process dies).
pub(crate) struct GlobalLock {
    _file: File,
}

impl GlobalLock {
    /// Waits (bounded) for the lock.
    pub(crate) fn acquire() -> Result<GlobalLock, LabError> {
        let io_err = |source| LabError::Io {
            action: "lock",
            path: PathBuf::from(LOCK_FILE),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .map_err(io_err)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // SAFETY: flock takes a descriptor we own and an operation flag.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(GlobalLock { _file: file });
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::WouldBlock || Instant::now() >= deadline {
                return Err(io_err(error));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}
