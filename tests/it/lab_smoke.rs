//! Smoke tests of the test lab: every piece later end-to-end tests rely on (strict SSH, echo,
//! per-host data, rsync between hosts) and the exact effect of each fault, plus its hygiene
//! (nothing left after a drop, stale labs of a killed run swept) and its skip/fail gate.

use std::fs;
use std::io::{self, BufRead, BufReader, ErrorKind};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use integration::lab::probe::{self, Reach};
use integration::lab::{Host, Lab, LabOptions};

/// How long a probe that is expected to go unanswered waits.
const SILENCE: Duration = Duration::from_millis(700);
/// How long a probe that is expected to be answered may take.
const ANSWER: Duration = Duration::from_secs(15);
/// How long a healed or revived host gets to be reachable again.
const RECOVERY: Duration = Duration::from_secs(15);

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// Runs `script` on `host` over SSH from the terminal server side and returns its stdout;
/// panics with ssh's stderr unless it succeeded.
fn ssh_ok(lab: &Lab, host: &Host, script: &str) -> String {
    let output = run(lab.ssh(host).arg(script));
    assert!(
        output.status.success(),
        "ssh {} `{script}` failed: {}",
        host.name,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command that must fail and returns its stderr.
fn fails(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        !output.status.success(),
        "{command:?} succeeded but should have failed"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A TCP connect from the terminal server side (the root namespace).
fn reach(addr: SocketAddr) -> Reach {
    probe::tcp_connect(addr, SILENCE)
}

/// A TCP connect from inside `from`.
fn reach_from(lab: &Lab, from: &Host, addr: SocketAddr) -> Reach {
    lab.in_netns(from, || probe::tcp_connect(addr, SILENCE))
        .unwrap()
}

fn assert_unreachable(what: &str, seen: Reach) {
    assert!(
        matches!(seen, Reach::Unreachable(_)),
        "{what}: expected no answer at all, saw {seen:?}"
    );
}

/// Waits until `addr` accepts TCP connections from the root namespace.
fn wait_connected(addr: SocketAddr) {
    let seen = probe::wait_for(RECOVERY, || {
        (probe::tcp_connect(addr, SILENCE) == Reach::Connected).then_some(())
    });
    assert!(
        seen.is_some(),
        "{addr} did not come back within {RECOVERY:?}"
    );
}

fn tcp_echo_ok(addr: SocketAddr, len: usize) {
    let payload: Vec<u8> = (0..len).map(|_| rand::random()).collect();
    let echoed = probe::tcp_echo(addr, &payload, ANSWER)
        .unwrap_or_else(|e| panic!("TCP echo at {addr}: {e}"));
    assert!(echoed == payload, "TCP echo at {addr} answered other bytes");
}

/// The running processes of a network namespace, with their start times.
fn netns_processes(netns: &str) -> Vec<(i32, u64)> {
    let output = run(Command::new("ip").args(["netns", "pids", netns]));
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .filter_map(|pid| Some((pid, start_time(pid)?)))
        .collect()
}

/// The start time of `pid`, which tells it from a later process that reuses the PID, if it still
/// runs or is a zombie this process has not reaped. A zombie of another parent (an orphan handed
/// to PID 1) runs nothing and is not ours to reap.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (state, ppid) = (*fields.first()?, fields.get(1)?.parse::<u32>().ok()?);
    if state == "Z" && ppid != std::process::id() {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Those of `processes` that still run, or linger as this process's zombies.
fn still_present(processes: &[(i32, u64)]) -> Vec<i32> {
    processes
        .iter()
        .filter(|&&(pid, start)| start_time(pid) == Some(start))
        .map(|&(pid, _)| pid)
        .collect()
}

fn names_with_prefix(dir: &str, prefix: &str) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with(&format!("{prefix}-")))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything on the machine that carries the lab prefix: namespaces, links, threads of this
/// process (the relay's).
fn leftovers(prefix: &str) -> Vec<String> {
    let mut found = names_with_prefix("/run/netns", prefix);
    found.extend(names_with_prefix("/sys/class/net", prefix));
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for task in tasks.filter_map(Result::ok) {
            let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.starts_with(prefix) {
                found.push(format!("thread {}", comm.trim()));
            }
        }
    }
    found
}

#[test]
fn ssh_reaches_every_host_with_strict_host_key_checking() {
    let Some(lab) = Lab::require(
        "lab_smoke::ssh_reaches_every_host_with_strict_host_key_checking",
        LabOptions::new(3),
    ) else {
        return;
    };
    let known = fs::read_to_string(lab.known_hosts()).unwrap();
    assert_eq!(known.lines().count(), lab.hosts().len(), "{known}");
    for host in lab.hosts() {
        assert!(
            known.contains(&format!("{} ssh-ed25519 ", host.addr)),
            "{known}"
        );
        fs::write(lab.data_path(host).join("whoami"), &host.name).unwrap();
    }
    for host in lab.hosts() {
        assert_eq!(ssh_ok(&lab, host, "cat /srv/data/whoami"), host.name);
        // The only route a host has is the lab subnet's: no default route, nowhere else to go.
        let routes = run(Command::new("ip").args(["-n", &host.netns, "-4", "route"]));
        let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
        assert_eq!(routes.lines().count(), 1, "{}: {routes}", host.name);
        assert!(
            routes.starts_with("198.1") && routes.contains("/24 dev eth0"),
            "{routes}"
        );
    }
    // Hosts use the same files to reach each other (a primary pushes to its secondaries).
    let (h1, h2) = (&lab.hosts()[0], &lab.hosts()[1]);
    let output = run(lab.ssh_from(h1, h2).arg("cat /srv/data/whoami"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "h2");
}

#[test]
fn unknown_or_changed_keys_are_refused() {
    let Some(lab) = Lab::require(
        "lab_smoke::unknown_or_changed_keys_are_refused",
        LabOptions::new(2),
    ) else {
        return;
    };
    let (h1, h2) = (&lab.hosts()[0], &lab.hosts()[1]);
    let scratch = tempfile::tempdir().unwrap();

    // A host missing from known_hosts is refused by the client.
    let empty = scratch.path().join("known_hosts");
    fs::write(&empty, "").unwrap();
    let stderr = fails(
        Command::new("ssh")
            .args(integration::lab::ssh_options(&lab.client_key(), &empty))
            .arg(format!("root@{}", h1.addr))
            .arg("true"),
    );
    assert!(stderr.contains("Host key verification failed"), "{stderr}");

    // A client key the hosts do not know is refused by sshd, which offers nothing but keys.
    let stranger = scratch.path().join("id_stranger");
    let keygen = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger));
    assert!(keygen.status.success());
    let stderr = fails(
        Command::new("ssh")
            .args(integration::lab::ssh_options(&stranger, &lab.known_hosts()))
            .arg(format!("root@{}", h1.addr))
            .arg("true"),
    );
    assert!(stderr.contains("Permission denied (publickey)"), "{stderr}");

    // A host whose key changed is refused, and the command never runs there.
    lab.change_host_key(h1).unwrap();
    let stderr = fails(lab.ssh(h1).arg("touch /srv/data/impostor"));
    assert!(
        stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            && stderr.contains("Host key verification failed"),
        "{stderr}"
    );
    assert!(!lab.data_path(h1).join("impostor").exists());
    let stderr = fails(lab.ssh_from(h2, h1).arg("true"));
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
    // The others are unaffected.
    assert_eq!(ssh_ok(&lab, h2, "echo fine"), "fine\n");
}

#[test]
fn echo_answers_on_tcp_and_udp_on_every_host() {
    let Some(lab) = Lab::require(
        "lab_smoke::echo_answers_on_tcp_and_udp_on_every_host",
        LabOptions::new(3),
    ) else {
        return;
    };
    for host in lab.hosts() {
        tcp_echo_ok(host.echo_addr(), 200_000);
        probe::udp_echo(host.echo_addr(), b"hello udp", ANSWER)
            .unwrap_or_else(|e| panic!("UDP echo on {}: {e}", host.name));
    }
    let (h1, h2) = (&lab.hosts()[0], &lab.hosts()[1]);
    lab.in_netns(h2, || {
        tcp_echo_ok(h1.echo_addr(), 1000);
        probe::udp_echo(h1.echo_addr(), b"from h2", ANSWER).unwrap();
        // The service is bound to the host's address, not to every address of the host.
        assert_eq!(
            probe::tcp_connect(SocketAddr::from(([127, 0, 0, 1], 7)), SILENCE),
            Reach::Refused
        );
    })
    .unwrap();
}

#[test]
fn data_written_over_ssh_stays_on_its_host() {
    let Some(lab) = Lab::require(
        "lab_smoke::data_written_over_ssh_stays_on_its_host",
        LabOptions::new(3),
    ) else {
        return;
    };
    let h1 = &lab.hosts()[0];
    ssh_ok(&lab, h1, "echo only on h1 > /srv/data/mine");
    assert_eq!(
        fs::read_to_string(lab.data_path(h1).join("mine")).unwrap(),
        "only on h1\n"
    );
    for other in &lab.hosts()[1..] {
        assert!(
            !lab.data_path(other).join("mine").exists(),
            "{}",
            other.name
        );
        ssh_ok(&lab, other, "test ! -e /srv/data/mine");
        let listing = lab.exec(other, &["ls", "-A", "/srv/data"]).unwrap();
        assert!(listing.stdout.is_empty(), "{}", other.name);
    }
    // Nor did it land on this machine's own /srv.
    assert!(!Path::new("/srv/data/mine").exists());
}

#[test]
fn rsync_over_ssh_copies_from_one_host_to_another() {
    let Some(lab) = Lab::require(
        "lab_smoke::rsync_over_ssh_copies_from_one_host_to_another",
        LabOptions::new(3),
    ) else {
        return;
    };
    let (h1, h2, h3) = (&lab.hosts()[0], &lab.hosts()[1], &lab.hosts()[2]);
    let source = lab.data_path(h1);
    fs::create_dir_all(source.join("zone/sub")).unwrap();
    let blob: Vec<u8> = (0..1_000_000).map(|_| rand::random()).collect();
    fs::write(source.join("zone/blob"), &blob).unwrap();
    fs::write(source.join("zone/sub/small"), "small\n").unwrap();

    let rsh = lab.rsync_rsh();
    let target = format!("root@{}:/srv/data/", h2.addr);
    lab.exec(h1, &["rsync", "-a", "-e", &rsh, "/srv/data/", &target])
        .unwrap();

    let copy = lab.data_path(h2);
    assert!(fs::read(copy.join("zone/blob")).unwrap() == blob);
    assert_eq!(
        fs::read_to_string(copy.join("zone/sub/small")).unwrap(),
        "small\n"
    );
    assert!(!lab.data_path(h3).join("zone").exists());
}

#[test]
fn crash_kills_the_services_but_keeps_the_address_and_revive_restores_them() {
    let Some(lab) = Lab::require(
        "lab_smoke::crash_kills_the_services_but_keeps_the_address_and_revive_restores_them",
        LabOptions::new(2),
    ) else {
        return;
    };
    let (h1, h2) = (&lab.hosts()[0], &lab.hosts()[1]);
    ssh_ok(&lab, h1, "echo kept > /srv/data/before-crash");

    lab.crash(h1).unwrap();
    // The address answers (with resets), nothing listens.
    assert_eq!(reach(h1.ssh_addr()), Reach::Refused);
    assert_eq!(reach(h1.echo_addr()), Reach::Refused);
    let udp = probe::udp_echo(h1.echo_addr(), b"anyone?", ANSWER).unwrap_err();
    assert_eq!(udp.kind(), ErrorKind::ConnectionRefused, "{udp}");
    assert_eq!(reach_from(&lab, h2, h1.echo_addr()), Reach::Refused);
    let stderr = fails(lab.ssh(h1).arg("true"));
    assert!(stderr.contains("Connection refused"), "{stderr}");
    // Only the process holding the host's mount namespace is left in it.
    assert_eq!(netns_processes(&h1.netns).len(), 1);
    // The other host is untouched.
    tcp_echo_ok(h2.echo_addr(), 100);

    lab.revive(h1).unwrap();
    // Same host key (strict checking passes), same data.
    assert_eq!(ssh_ok(&lab, h1, "cat /srv/data/before-crash"), "kept\n");
    tcp_echo_ok(h1.echo_addr(), 100);
    probe::udp_echo(h1.echo_addr(), b"back", ANSWER).unwrap();
}

#[test]
fn cut_isolates_the_host_from_everyone_until_healed() {
    let Some(lab) = Lab::require(
        "lab_smoke::cut_isolates_the_host_from_everyone_until_healed",
        LabOptions::new(2),
    ) else {
        return;
    };
    let (h1, h2) = (&lab.hosts()[0], &lab.hosts()[1]);

    lab.cut(h1).unwrap();
    assert_unreachable("terminal server -> h1", reach(h1.echo_addr()));
    assert_unreachable("h2 -> h1", reach_from(&lab, h2, h1.echo_addr()));
    assert_unreachable("h1 -> h2", reach_from(&lab, h1, h2.echo_addr()));
    tcp_echo_ok(h2.echo_addr(), 100);

    lab.heal(h1).unwrap();
    wait_connected(h1.echo_addr());
    assert_eq!(reach_from(&lab, h2, h1.echo_addr()), Reach::Connected);
    assert_eq!(ssh_ok(&lab, h1, "echo back"), "back\n");
}

#[test]
fn partition_separates_only_the_terminal_server_from_the_host() {
    let Some(lab) = Lab::require(
        "lab_smoke::partition_separates_only_the_terminal_server_from_the_host",
        LabOptions::new(2),
    ) else {
        return;
    };
    let (h1, h2) = (&lab.hosts()[0], &lab.hosts()[1]);
    // Something on the terminal server side for the hosts to reach.
    let ts_listener = TcpListener::bind((lab.ts_addr(), 0)).unwrap();
    let ts_service = ts_listener.local_addr().unwrap();

    lab.partition(h1).unwrap();
    // The terminal server and h1 cannot reach each other, either way...
    assert_unreachable("terminal server -> h1 echo", reach(h1.echo_addr()));
    assert_unreachable("terminal server -> h1 ssh", reach(h1.ssh_addr()));
    let udp = probe::udp_echo(h1.echo_addr(), b"anyone?", SILENCE).unwrap_err();
    assert_eq!(udp.kind(), ErrorKind::TimedOut, "{udp}");
    assert_unreachable("h1 -> terminal server", reach_from(&lab, h1, ts_service));
    // ... while the hosts still reach each other, over echo and SSH, and the terminal server
    // still reaches the other host.
    lab.in_netns(h2, || {
        tcp_echo_ok(h1.echo_addr(), 1000);
        probe::udp_echo(h1.echo_addr(), b"peer", ANSWER).unwrap();
    })
    .unwrap();
    lab.in_netns(h1, || tcp_echo_ok(h2.echo_addr(), 1000))
        .unwrap();
    let output = run(lab.ssh_from(h2, h1).arg("echo split brain"));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "split brain\n");
    assert_eq!(reach_from(&lab, h2, ts_service), Reach::Connected);
    tcp_echo_ok(h2.echo_addr(), 100);

    lab.heal(h1).unwrap();
    wait_connected(h1.echo_addr());
    assert_eq!(reach_from(&lab, h1, ts_service), Reach::Connected);
    assert_eq!(ssh_ok(&lab, h1, "echo whole"), "whole\n");
}

#[test]
fn slow_delays_and_drops_frames_until_healed() {
    let Some(lab) = Lab::require(
        "lab_smoke::slow_delays_and_drops_frames_until_healed",
        LabOptions::new(2),
    ) else {
        return;
    };
    let (h1, h2) = (&lab.hosts()[0], &lab.hosts()[1]);
    let delay = Duration::from_millis(250);

    lab.slow(h1, delay, 0.0).unwrap();
    // Each way is held for `delay`: the round trip takes at least twice that.
    let rtt = probe::udp_echo(h1.echo_addr(), b"slow?", ANSWER).unwrap();
    assert!(
        rtt >= 2 * delay,
        "round trip {rtt:?} with {delay:?} each way"
    );
    // Real TCP (offloaded super-frames, pending checksums) crosses the relay intact.
    tcp_echo_ok(h1.echo_addr(), 100_000);
    assert_eq!(
        ssh_ok(&lab, h1, "echo through the relay"),
        "through the relay\n"
    );
    // The other host's link is not slowed.
    let rtt = probe::udp_echo(h2.echo_addr(), b"fast?", ANSWER).unwrap();
    assert!(rtt < delay, "h2 round trip {rtt:?}");

    // With half the frames lost each way, about a quarter of the probes come back.
    lab.slow(h1, Duration::ZERO, 0.5).unwrap();
    let answered = probe::udp_echo_batch(h1.echo_addr(), 40, Duration::from_secs(1)).unwrap();
    assert!(
        (1..=30).contains(&answered),
        "{answered} of 40 answered at 50% loss each way"
    );

    lab.heal(h1).unwrap();
    let answered = probe::udp_echo_batch(h1.echo_addr(), 40, Duration::from_secs(1)).unwrap();
    assert_eq!(answered, 40, "loss after heal");
    let rtt = probe::udp_echo(h1.echo_addr(), b"healed?", ANSWER).unwrap();
    assert!(rtt < delay, "round trip {rtt:?} after heal");
    assert_eq!(reach_from(&lab, h2, h1.echo_addr()), Reach::Connected);
}

#[test]
fn fill_disk_makes_writes_fail_until_healed() {
    let Some(lab) = Lab::require(
        "lab_smoke::fill_disk_makes_writes_fail_until_healed",
        LabOptions::new(2).data_size_mib(16),
    ) else {
        return;
    };
    let (h1, h2) = (&lab.hosts()[0], &lab.hosts()[1]);
    ssh_ok(&lab, h1, "echo old > /srv/data/old");

    lab.fill_disk(h1).unwrap();
    let stderr = fails(lab.ssh(h1).arg("echo new > /srv/data/new"));
    assert!(stderr.contains("No space left on device"), "{stderr}");
    // Reading still works, and so does writing on the other host.
    assert_eq!(ssh_ok(&lab, h1, "cat /srv/data/old"), "old\n");
    ssh_ok(&lab, h2, "echo new > /srv/data/new");

    lab.heal(h1).unwrap();
    ssh_ok(&lab, h1, "echo new > /srv/data/new");
    assert_eq!(
        fs::read_to_string(lab.data_path(h1).join("new")).unwrap(),
        "new\n"
    );
}

#[test]
fn dropping_a_lab_leaves_nothing_behind() {
    let Some(lab) = Lab::require(
        "lab_smoke::dropping_a_lab_leaves_nothing_behind",
        LabOptions::new(2).data_size_mib(16),
    ) else {
        return;
    };
    let (h1, h2) = (lab.hosts()[0].clone(), lab.hosts()[1].clone());
    // Leave every kind of fault and an open SSH session in place.
    lab.slow(&h1, Duration::from_millis(5), 0.0).unwrap();
    lab.fill_disk(&h1).unwrap();
    lab.partition(&h2).unwrap();
    // An SSH session from one host to another is running when the lab goes: its client lives in
    // h2, its server side in h1.
    let mut session = lab
        .ssh_from(&h2, &h1)
        .arg("sleep 600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = probe::wait_for(RECOVERY, || {
        // holder + sshd + 2 echo listeners, then the session's processes.
        (netns_processes(&h1.netns).len() > 4).then_some(())
    });
    assert!(started.is_some(), "the SSH session never started");

    let prefix = lab.prefix().to_owned();
    let dir = lab.dir().to_owned();
    let processes: Vec<(i32, u64)> = [&h1, &h2]
        .iter()
        .flat_map(|h| netns_processes(&h.netns))
        .collect();
    let before = leftovers(&prefix);
    assert!(
        before.len() >= 8,
        "expected the lab's objects, saw {before:?}"
    );
    assert!(dir.is_dir());

    drop(lab);

    // The client was killed with its host, and its exit status is still ours to collect.
    let status = session
        .try_wait()
        .unwrap()
        .expect("the client outlived its host");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    assert_eq!(still_present(&processes), Vec::<i32>::new());
    assert!(!dir.exists(), "{} is left", dir.display());
}

#[test]
fn a_killed_runs_lab_is_swept_by_the_next_start() {
    let Some(live) = Lab::require(
        "lab_smoke::a_killed_runs_lab_is_swept_by_the_next_start",
        LabOptions::new(1),
    ) else {
        return;
    };
    // A lab whose owner is then killed without tearing it down (tests/src/bin/lab-holder.rs).
    let mut child = Command::new(env!("CARGO_BIN_EXE_lab-holder"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let line = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.starts_with("LAB "));
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).ok().flatten();
    let Some(line) = line else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child never reported its lab");
    };
    let mut words = line.split_whitespace().skip(1);
    let (prefix, dir) = (
        words.next().unwrap().to_owned(),
        words.next().unwrap().to_owned(),
    );
    let processes = netns_processes(&format!("{prefix}-h1"));
    assert!(processes.len() >= 4, "{processes:?}");

    // Killed without a chance to clean up, as by a CI timeout.
    child.kill().unwrap();
    child.wait().unwrap();

    let next = Lab::start(LabOptions::new(1)).unwrap();
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    assert_eq!(still_present(&processes), Vec::<i32>::new());
    assert!(!Path::new(&dir).exists(), "{dir} is left");
    // Labs whose owner lives are left alone.
    for lab in [&live, &next] {
        let host = &lab.hosts()[0];
        assert!(Path::new("/run/netns").join(&host.netns).exists());
        tcp_echo_ok(host.echo_addr(), 100);
    }
}

/// Outside CI a lab test on a machine that cannot run labs skips with one loud line; in CI it
/// fails. Shown by running a lab test of this binary as an unprivileged user.
#[test]
fn lab_tests_skip_loudly_outside_ci_and_fail_inside() {
    if Lab::require(
        "lab_smoke::lab_tests_skip_loudly_outside_ci_and_fail_inside",
        LabOptions::new(1),
    )
    .is_none()
    {
        return;
    }
    // A copy of this binary that the unprivileged user may run wherever the build lives.
    let scratch = tempfile::tempdir().unwrap();
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let binary = scratch.path().join("it");
    // `install` copies it, not this process: a process forked by another test would inherit
    // a descriptor open for writing, and running the copy would fail with "text file busy".
    let copied = Command::new("install")
        .args(["-m", "0755"])
        .arg(std::env::current_exe().unwrap())
        .arg(&binary)
        .status()
        .unwrap();
    assert!(copied.success(), "install: {copied}");
    let test = "lab_smoke::echo_answers_on_tcp_and_udp_on_every_host";
    let as_nobody = |ci: Option<&str>| -> io::Result<Output> {
        let mut command = Command::new(&binary);
        command
            .args(["--exact", test, "--test-threads=1"])
            .env_remove("CI")
            .current_dir(scratch.path())
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null());
        if let Some(ci) = ci {
            command.env("CI", ci);
        }
        command.output()
    };

    let skipped = as_nobody(None).unwrap();
    let stderr = String::from_utf8_lossy(&skipped.stderr);
    assert!(skipped.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("SKIPPED {test}: "))
            && lines[0].contains("not root")
            && lines[0].contains("CI=true"),
        "{stderr}"
    );

    let failed = as_nobody(Some("true")).unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&failed.stdout),
        String::from_utf8_lossy(&failed.stderr)
    );
    assert!(!failed.status.success(), "{output}");
    assert!(output.contains("the lab is required in CI"), "{output}");
    assert!(!output.contains("SKIPPED"), "{output}");
}
