//! Lab names, ownership and removal: claiming a unique name for a new lab, and sweeping the
//! namespaces, links, processes and folders that a killed test run left behind.
//!
//! A lab with id `1a2b` owns the folder `/tmp/dnsd-lab-1a2b/` and every network namespace and
//! root-namespace interface whose name starts with `dl1a2b-`. The folder is created first (under
//! the machine-wide lock, together with the `owner` file naming the creating process) and removed
//! last, so a namespace or link with a lab prefix but no folder is always an orphan.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::error::{LabError, report};
use super::sys;

/// The folder that holds every lab's working folder.
const LAB_ROOT: &str = "/tmp";
/// Working folders are `LAB_ROOT/dnsd-lab-<id>`.
const DIR_PREFIX: &str = "dnsd-lab-";
/// Namespaces and links are `dl<id>-<what>`; with a 4-hex-digit id the longest
/// (`dl1a2b-v250`) stays within the 15 characters Linux allows for an interface name.
const NAME_PREFIX: &str = "dl";
/// The file in a lab folder that records its owner as `<pid> <start time>`.
const OWNER_FILE: &str = "owner";

/// The name prefix of lab `id`, e.g. `dl1a2b`.
pub(crate) fn prefix_of(id: &str) -> String {
    format!("{NAME_PREFIX}{id}")
}

/// The working folder of lab `id`.
pub(crate) fn dir_of(id: &str) -> PathBuf {
    Path::new(LAB_ROOT).join(format!("{DIR_PREFIX}{id}"))
}

/// The lab id in a namespace or link name such as `dl1a2b-h1`, if it is one of ours.
fn id_in_name(name: &str) -> Option<&str> {
    let (prefix, _) = name.split_once('-')?;
    let id = prefix.strip_prefix(NAME_PREFIX)?;
    is_id(id).then_some(id)
}

fn is_id(id: &str) -> bool {
    id.len() == 4
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Claims a fresh lab id by creating its folder and owner file. Call under the global lock.
pub(crate) fn claim() -> Result<(String, PathBuf), LabError> {
    let taken: Vec<String> = sys::netns_list()
        .into_iter()
        .chain(sys::link_list())
        .filter_map(|name| id_in_name(&name).map(str::to_owned))
        .collect();
    for _ in 0..64 {
        let id = format!("{:04x}", rand::random::<u16>());
        if taken.contains(&id) {
            continue;
        }
        let dir = dir_of(&id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(LabError::Io {
                    action: "create lab folder",
                    path: dir,
                    source,
                });
            }
        }
        let pid = std::process::id();
        let start = i32::try_from(pid)
            .ok()
            .and_then(sys::start_time)
            .unwrap_or_default();
        let owner = dir.join(OWNER_FILE);
        fs::write(&owner, format!("{pid} {start}\n")).map_err(|source| LabError::Io {
            action: "write",
            path: owner,
            source,
        })?;
        return Ok((id, dir));
    }
    Err(LabError::NoFreeId)
}

/// Whether the process recorded in a lab folder's owner file still runs.
fn owner_alive(dir: &Path) -> bool {
    let Ok(owner) = fs::read_to_string(dir.join(OWNER_FILE)) else {
        // Claims write the owner file under the global lock, which the sweeper holds too, so a
        // folder without one was left half-made by a killed process.
        return false;
    };
    let mut fields = owner.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(start))) = (fields.next(), fields.next()) else {
        return false;
    };
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    sys::is_alive(pid) && sys::start_time(pid) == Some(start)
}

/// Removes every lab whose owner process is gone: its processes (killed by PID), namespaces,
/// links and folder. Call under the global lock. Labs whose owner runs are never touched.
/// Returns the name prefixes of the labs it removed.
pub(crate) fn sweep_stale() -> Vec<String> {
    let mut ids: Vec<String> = sys::netns_list()
        .into_iter()
        .chain(sys::link_list())
        .filter_map(|name| id_in_name(&name).map(str::to_owned))
        .collect();
    if let Ok(entries) = fs::read_dir(LAB_ROOT) {
        ids.extend(entries.filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let id = name.strip_prefix(DIR_PREFIX)?;
            is_id(id).then(|| id.to_owned())
        }));
    }
    ids.sort_unstable();
    ids.dedup();
    let mut swept = Vec::new();
    for id in ids {
        let dir = dir_of(&id);
        if owner_alive(&dir) {
            continue;
        }
        let prefix = prefix_of(&id);
        tracing::info!(lab = %prefix, "sweeping a stale lab");
        for problem in remove(&prefix, &dir, &[]) {
            tracing::warn!(lab = %prefix, %problem, "stale lab not fully swept");
        }
        swept.push(prefix);
    }
    swept
}

/// Removes what belongs to the lab with this prefix and folder: kills the processes of its
/// namespaces (reaping those in `own`, see `sys::kill_netns_members`), deletes its links and
/// namespaces, removes the folder. Best effort; returns what could not be removed.
pub(crate) fn remove(prefix: &str, dir: &Path, own: &[i32]) -> Vec<String> {
    let mut problems = Vec::new();
    let mine = |name: &String| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('-'))
    };
    let namespaces: Vec<String> = sys::netns_list().into_iter().filter(mine).collect();
    for netns in &namespaces {
        match sys::kill_netns_members(netns, &[], own) {
            Ok(survivors) if survivors.is_empty() => {}
            Ok(survivors) => problems.push(format!("netns {netns}: PIDs {survivors:?} survived")),
            Err(error) => problems.push(format!("netns {netns}: {}", report(&error))),
        }
    }
    // Root-side links go before the namespaces: deleting one end of a veth pair deletes the
    // other at once, whereas a deleted namespace frees its interfaces only later.
    for link in sys::link_list().into_iter().filter(mine) {
        if let Err(error) = sys::ip(&["link", "del", &link]) {
            // The other end of a pair deleted earlier in this loop takes this one with it.
            if sys::link_list().contains(&link) {
                problems.push(format!("link {link}: {}", report(&error)));
            }
        }
    }
    for netns in &namespaces {
        if let Err(error) = sys::ip(&["netns", "del", netns]) {
            problems.push(format!("netns {netns}: {}", report(&error)));
        }
    }
    match fs::remove_dir_all(dir) {
        Err(error) if error.kind() != ErrorKind::NotFound => {
            problems.push(format!("folder {}: {error}", dir.display()));
        }
        _ => {}
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_labs_are_recognised_and_others_are_not() {
        assert_eq!(id_in_name("dl1a2b-h1"), Some("1a2b"));
        assert_eq!(id_in_name("dl1a2b-br"), Some("1a2b"));
        assert_eq!(id_in_name("dl1A2b-br"), None);
        assert_eq!(id_in_name("dl1a2-br"), None);
        assert_eq!(id_in_name("dl1a2bc-br"), None);
        assert_eq!(id_in_name("eth0"), None);
        assert_eq!(id_in_name("docker0-x"), None);
        assert_eq!(prefix_of("00ff"), "dl00ff");
        assert_eq!(dir_of("00ff"), Path::new("/tmp/dnsd-lab-00ff"));
    }
}
