//! `etc/dnsd-epoch-guard`, the script members run first in every hook so that an action
//! from an older decision (a lower epoch) is refused: alone (higher, equal, lower, a
//! missing or unreadable state file, bad usage, many calls at once), through the example
//! hooks of `etc/hooks/`, and as dnsd's promote hook on a lab host, where the refusal
//! abandons the failover and the event says why.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dnsd_api::{Action, Event, EventKind, Health, Status};
use integration::harness::{Dnsd, dig_short, require_tools, runtime, wait_for};
use integration::lab::{Lab, LabOptions};

use crate::lab_failover::lab_config;

fn etc(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../etc")
        .join(name)
}

/// Runs the guard on `state` with `args` (its arguments after the state file).
fn guard(state: &Path, args: &[&str]) -> Output {
    Command::new(etc("dnsd-epoch-guard"))
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn recorded(state: &Path) -> String {
    std::fs::read_to_string(state).unwrap()
}

/// A scratch folder for a test of the guard alone, or `None` (said loudly) when
/// `flock` is missing outside CI.
fn scratch(test: &str) -> Option<tempfile::TempDir> {
    require_tools(test, &["flock"]).then(|| tempfile::tempdir().unwrap())
}

/// The message of a refusal, exactly as the guard prints it.
fn refusal(epoch: u64, recorded: u64, state: &Path) -> String {
    format!(
        "dnsd-epoch-guard: epoch {epoch} is older than {recorded} recorded in {}: refused\n",
        state.display()
    )
}

#[test]
fn guard_records_higher_and_equal_epochs_and_refuses_lower_ones() {
    let Some(dir) = scratch("guard_records_higher_and_equal_epochs_and_refuses_lower_ones") else {
        return;
    };
    let state = dir.path().join("epochs/www");
    // (epoch given, exit status, what the state file holds afterwards); a refusal prints
    // exactly one line, an acceptance nothing.
    let steps: [(&str, i32, &str); 7] = [
        ("0", 0, "0\n"),    // a missing state file (and folder) counts as 0
        ("3", 0, "3\n"),    // higher: recorded
        ("7", 0, "7\n"),    // higher again
        ("7", 0, "7\n"),    // equal: accepted, nothing changes
        ("3", 1, "7\n"),    // lower: refused, nothing changes
        ("010", 0, "10\n"), // leading zeros are decimal, not octal
        ("09", 1, "10\n"),
    ];
    for (epoch, code, after) in steps {
        let out = guard(&state, &[epoch]);
        assert_eq!(out.status.code(), Some(code), "{epoch}: {}", stderr(&out));
        assert_eq!(recorded(&state), after, "after {epoch}");
        assert!(out.stdout.is_empty());
        let want = if code == 0 {
            String::new()
        } else {
            let given: u64 = epoch.parse().unwrap();
            refusal(given, after.trim().parse().unwrap(), &state)
        };
        assert_eq!(stderr(&out), want, "{epoch}");
    }
    // Nothing is left beside the state file but its lock.
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join("epochs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["www", "www.lock"]);
}

#[test]
fn guard_rejects_bad_usage_and_never_takes_an_unreadable_state_for_zero() {
    let Some(dir) = scratch("guard_rejects_bad_usage_and_never_takes_an_unreadable_state_for_zero")
    else {
        return;
    };
    let state = dir.path().join("www");
    for args in [
        &[][..],
        &["1", "2"][..],
        &[""][..],
        &["x"][..],
        &["-3"][..],
        &["3a"][..],
        &["3.0"][..],
        &[" 3"][..],
        &["1234567890123456789"][..],
    ] {
        let out = guard(&state, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let text = stderr(&out);
        assert!(
            text.starts_with("usage: dnsd-epoch-guard STATE_FILE EPOCH")
                || text.starts_with("dnsd-epoch-guard: epoch "),
            "{args:?}: {text}"
        );
        assert_eq!(text.lines().count(), 1, "{args:?}: {text}");
        assert!(!state.exists(), "{args:?} recorded something");
    }
    let out = Command::new(etc("dnsd-epoch-guard")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    // A state file that does not hold a number stops the guard (it is not 0).
    for junk in ["", "seven\n", "7 8\n"] {
        std::fs::write(&state, junk).unwrap();
        let out = guard(&state, &["9"]);
        assert_eq!(out.status.code(), Some(3), "{junk:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("does not hold an epoch"),
            "{}",
            stderr(&out)
        );
        assert_eq!(recorded(&state), junk);
    }
    // A state file written without a newline is read all the same.
    std::fs::write(&state, "5").unwrap();
    let out = guard(&state, &["4"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), refusal(4, 5, &state));
}

/// One call of the concurrency test, timed from before its start to after its end.
struct Call {
    epoch: u64,
    started: Instant,
    ended: Instant,
    code: Option<i32>,
    stderr: String,
}

/// Runs 50 guards at once (each after a random pause of up to 50 ms) on a state file
/// that holds `initial`, while a reader samples the file; checks what a serialised guard
/// guarantees and an unserialised one breaks (two calls that both read 5, then write 9 and
/// 7 in that order, leave 7: the recorded epoch went down and 9 was forgotten).
fn concurrent_round(dir: &Path, round: usize, initial: u64) {
    let state = dir.join(format!("round-{round}"));
    std::fs::write(&state, format!("{initial}\n")).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (state, done) = (state.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen: Vec<String> = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&state).unwrap();
                if seen.last() != Some(&text) {
                    seen.push(text);
                }
            }
            seen
        })
    };
    let calls: Vec<Call> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let state = &state;
                scope.spawn(move || {
                    let epoch = rand::random_range(1..=1000u64);
                    std::thread::sleep(Duration::from_millis(rand::random_range(0..50)));
                    let started = Instant::now();
                    let out = guard(state, &[&epoch.to_string()]);
                    Call {
                        epoch,
                        started,
                        ended: Instant::now(),
                        code: out.status.code(),
                        stderr: stderr(&out),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    done.store(true, Ordering::Relaxed);
    let seen = reader.join().unwrap();

    let accepted: Vec<&Call> = calls.iter().filter(|c| c.code == Some(0)).collect();
    let max = calls.iter().map(|c| c.epoch).max().unwrap().max(initial);
    // Every value ever recorded was the initial one or an accepted epoch.
    let mut recordable: BTreeSet<u64> = accepted.iter().map(|c| c.epoch).collect();
    recordable.insert(initial);

    // The file ends on the highest epoch of all (that call cannot have been refused).
    assert_eq!(recorded(&state), format!("{max}\n"), "round {round}");
    // A reader never saw a partial file, nor the recorded epoch go down.
    let values: Vec<u64> = seen
        .iter()
        .map(|t| {
            t.strip_suffix('\n')
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("round {round}: the reader saw {t:?}"))
        })
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "round {round}: the recorded epoch went down: {values:?}"
    );
    assert!(
        values.iter().all(|v| recordable.contains(v)),
        "round {round}: recorded {values:?}, accepted {recordable:?}"
    );
    for call in &calls {
        match call.code {
            Some(0) => assert!(call.stderr.is_empty(), "{}", call.stderr),
            Some(1) => {
                // Refused for a value that was recorded before the call ended: the
                // initial one, or an accepted call's that had started by then.
                let value: u64 = call
                    .stderr
                    .strip_prefix(&format!(
                        "dnsd-epoch-guard: epoch {} is older than ",
                        call.epoch
                    ))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("round {round}: {:?}", call.stderr));
                assert_eq!(call.stderr, refusal(call.epoch, value, &state));
                assert!(value > call.epoch, "round {round}: {}", call.stderr);
                assert!(
                    value == initial
                        || accepted
                            .iter()
                            .any(|a| a.epoch == value && a.started < call.ended),
                    "round {round}: refused for {value}, which nobody recorded before: {}",
                    call.stderr
                );
            }
            other => panic!("round {round}: exit {other:?}: {}", call.stderr),
        }
    }
    // Once a call has returned 0 for epoch E, no call that starts later is accepted for
    // less than E.
    for a in &accepted {
        for b in &accepted {
            assert!(
                !(a.ended < b.started && b.epoch < a.epoch),
                "round {round}: epoch {} accepted after epoch {} had been",
                b.epoch,
                a.epoch
            );
        }
    }
}

#[test]
fn concurrent_guards_keep_the_highest_epoch_and_refuse_only_for_recorded_ones() {
    let Some(dir) =
        scratch("concurrent_guards_keep_the_highest_epoch_and_refuse_only_for_recorded_ones")
    else {
        return;
    };
    // Several rounds: each is 50 racing calls, from a low and from a middling start.
    for round in 0..6 {
        concurrent_round(dir.path(), round, if round % 2 == 0 { 0 } else { 500 });
    }
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// The example hooks, installed as the comments in them say (beside the guard), with
/// their state under `dir/epochs`.
#[test]
fn example_hooks_call_the_guard_before_anything_else() {
    let Some(dir) = scratch("example_hooks_call_the_guard_before_anything_else") else {
        return;
    };
    let sbin = dir.path().join("sbin");
    std::fs::create_dir(&sbin).unwrap();
    std::fs::copy(etc("dnsd-epoch-guard"), sbin.join("dnsd-epoch-guard")).unwrap();
    for hook in ["promote", "demote", "fence"] {
        std::fs::copy(
            etc(&format!("hooks/{hook}")),
            sbin.join(format!("dnsd-{hook}")),
        )
        .unwrap();
    }
    let epochs = dir.path().join("epochs");
    let run = |hook: &str, args: &[&str], env: &[(&str, &str)]| -> Output {
        Command::new(sbin.join(format!("dnsd-{hook}")))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DNSD_EPOCH_DIR", &epochs)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let www = epochs.join("www");

    // promote records the epoch and succeeds (its site-specific part is empty).
    let out = run("promote", &["www", "5"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(recorded(&www), "5\n");
    // demote shares the record: a lower epoch is refused by the guard, before the
    // hook's own (unconfigured) action.
    let out = run("demote", &["www", "4"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), refusal(4, 5, &www));
    // At a current epoch the guard passes, and the shipped demote says it does nothing
    // yet rather than pretend writes stopped.
    let out = run("demote", &["www", "6"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no demote action for www yet"),
        "{}",
        stderr(&out)
    );
    assert_eq!(recorded(&www), "6\n");
    let out = run("promote", &["www", "5"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), refusal(5, 6, &www));
    for bad in [&["www"][..], &["../www", "7"][..], &["www", "seven"][..]] {
        let out = run("promote", bad, &[]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
    assert_eq!(recorded(&www), "6\n");

    // fence runs on the terminal server and takes the epoch from DNSD_EPOCH.
    let fence_state = epochs.join("fence-www");
    let env = |epoch: &'static str| {
        [
            ("DNSD_SERVICE", "www"),
            ("DNSD_NODE", "app1"),
            ("DNSD_ADDRESS", "192.0.2.11"),
            ("DNSD_EPOCH", epoch),
        ]
    };
    let out = run("fence", &[], &env("8"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no fencing action for app1 yet"),
        "{}",
        stderr(&out)
    );
    assert_eq!(recorded(&fence_state), "8\n");
    let out = run("fence", &[], &env("2"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), refusal(2, 8, &fence_state));
    let out = run("fence", &[], &[("DNSD_SERVICE", "www")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Given the service's data folders, promote ends the rsync receivers writing into
    // them (a pass from the previous primary), and only those.
    let data = dir.path().join("data");
    let other = dir.path().join("other");
    let receiver = |dest: &Path, sender: bool| {
        let mut args = vec!["--server"];
        if sender {
            args.push("--sender");
        }
        args.extend(["-logDtpre.iLsfxC", "--delete", "."]);
        let dest = format!("{}/", dest.display());
        // rsync's server side waits for its client on stdin, held open here.
        let child = Command::new("rsync")
            .args(&args)
            .arg(&dest)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Running(child)
    };
    let mut into_data = receiver(&data, false);
    let mut into_other = receiver(&other, false);
    let mut sending_data = receiver(&data, true);
    let data_arg = data.display().to_string();
    let out = run("promote", &["www", "9", &data_arg], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "ending rsync receivers into {data_arg}: {}",
            into_data.0.id()
        )),
        "{}",
        stderr(&out)
    );
    let ended = into_data.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&ended),
        Some(9)
    );
    assert!(
        into_other.0.try_wait().unwrap().is_none(),
        "a receiver into another folder"
    );
    assert!(
        sending_data.0.try_wait().unwrap().is_none(),
        "a sender from the data"
    );
    // Nothing left to end: promote says nothing of receivers.
    let out = run("promote", &["www", "9", &data_arg], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let out = run("promote", &["www", "9", "data"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A child process killed (by PID) when dropped, so a failing test leaves none behind.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the lab test installs the guard on each member (`/srv` is the member's own).
const GUARD_ON_MEMBER: &str = "/srv/sbin/dnsd-epoch-guard";

#[test]
fn a_member_refuses_a_promote_hook_carrying_an_older_epoch() {
    let test = "a_member_refuses_a_promote_hook_carrying_an_older_epoch";
    let Some(lab) = Lab::require(test, LabOptions::new(3)) else {
        return;
    };
    if !require_tools(test, &["dig", "flock"]) {
        return;
    }
    let hosts = lab.hosts();
    let (h1, h2, h3) = (&hosts[0], &hosts[1], &hosts[2]);
    // Install the guard on every member; h2 has already seen epoch 7, as if a newer
    // decision had been made elsewhere (another terminal server, a restored backup).
    for h in hosts {
        let srv = lab.data_path(h).parent().unwrap().to_owned();
        std::fs::create_dir_all(srv.join("sbin")).unwrap();
        std::fs::copy(etc("dnsd-epoch-guard"), srv.join("sbin/dnsd-epoch-guard")).unwrap();
    }
    let h2_state = lab.data_path(h2).parent().unwrap().join("epoch");
    let h3_state = lab.data_path(h3).parent().unwrap().join("epoch");
    std::fs::write(&h2_state, "7\n").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mirror = format!(
        "[mirror]\ninterval = \"1h\"\nidentity = \"{key}\"\nknown_hosts = \"{kh}\"\nconnect_timeout = \"3s\"\nio_timeout = \"20s\"\n",
        key = lab.client_key().display(),
        kh = lab.known_hosts().display()
    );
    let heartbeat = "protocol = \"tcp\"\nport = 7\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 3\nrise = 2";
    let mut config = lab_config(&lab, dir.path(), heartbeat, &mirror);
    config.push_str(&format!(
        "promote = [\"{GUARD_ON_MEMBER}\", \"/srv/epoch\", \"{{epoch}}\"]\nhook_timeout = \"20s\"\n"
    ));
    let dnsd = Dnsd::start(dir.path(), &config, &[]).unwrap();
    let client = dnsd.client();
    let rt = runtime();
    let status = || -> Status { rt.block_on(client.status()).unwrap() };
    let events = || -> Vec<Event> { rt.block_on(client.events(0)).unwrap() };
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        if wait_for(Duration::from_secs(30), Duration::from_millis(50), || {
            f().then_some(())
        })
        .is_none()
        {
            panic!(
                "{what}: did not happen within 30 s\nevents: {:#?}\ndnsd log:\n{}",
                events(),
                dnsd.log()
            );
        }
    };
    let answers = || dig_short(dnsd.dns(), "www.svc.test.", "A");
    wait("every member up", &|| {
        status().nodes.iter().all(|n| n.health == Health::Up)
    });
    // h3 in maintenance: h2 is the only member a failover can pick, under any election.
    let reply = rt
        .block_on(client.act(&Action::Maintenance {
            node: h3.name.clone(),
            on: true,
        }))
        .unwrap();
    assert!(reply.accepted, "{reply:?}");

    lab.crash(h1).unwrap();
    let refused = |e: &Event| {
        e.kind == EventKind::SwitchoverFailed
            && e.reason
                .contains(&format!("promote hook failed on {}", h2.name))
    };
    wait("h2's promote hook refused", &|| {
        events().iter().any(refused)
    });
    let event = events().into_iter().find(refused).unwrap();
    // "failover to h2 abandoned: promote hook failed on h2: on h2: exit status: 1:
    // dnsd-epoch-guard: epoch N is older than 7 recorded in /srv/epoch: refused; ..."
    assert!(
        event
            .reason
            .starts_with(&format!("failover to {} abandoned: ", h2.name)),
        "{}",
        event.reason
    );
    let (_, guard_says) = event
        .reason
        .split_once("dnsd-epoch-guard: epoch ")
        .unwrap_or_else(|| panic!("the event lacks the guard's message: {}", event.reason));
    let (carried, rest) = guard_says.split_once(' ').unwrap();
    let carried: u64 = carried.parse().unwrap();
    assert!(carried < 7, "{}", event.reason);
    assert!(
        rest.starts_with("is older than 7 recorded in /srv/epoch: refused"),
        "{}",
        event.reason
    );
    // The refusal changed nothing: h2 still holds 7, www is still h1 in the status and in
    // DNS, and nobody was promoted.
    assert_eq!(recorded(&h2_state), "7\n");
    let st = status();
    let www = st.service("www").unwrap();
    assert_eq!(www.primary, h1.name);
    assert_eq!(www.epoch, 1);
    assert_eq!(answers(), vec![h1.addr.to_string()]);
    assert!(
        !events().iter().any(|e| e.kind == EventKind::Failover),
        "{:#?}",
        events()
    );

    // h3, which has seen no newer decision, accepts the same epoch and records it.
    let reply = rt
        .block_on(client.act(&Action::Maintenance {
            node: h3.name.clone(),
            on: false,
        }))
        .unwrap();
    assert!(reply.accepted, "{reply:?}");
    wait("h3 promoted", &|| {
        status().service("www").unwrap().primary == h3.name
    });
    assert_eq!(recorded(&h3_state), format!("{carried}\n"));
    assert_eq!(recorded(&h2_state), "7\n");
    let failover = events()
        .into_iter()
        .find(|e| e.kind == EventKind::Failover)
        .unwrap();
    assert_eq!(failover.new_primary.as_deref(), Some(h3.name.as_str()));
    wait("DNS names h3", &|| answers() == vec![h3.addr.to_string()]);
}
