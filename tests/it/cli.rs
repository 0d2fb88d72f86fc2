//! The `dnsd` binary's command line: `check-config` on good and bad files, `run`
//! refusing a bad file, and a corrupt state file at start.

use std::process::Command;
use std::time::Duration;

use dnsd_api::EventKind;
use integration::harness::{Dnsd, binary, output_within, runtime};

fn dnsd(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(binary("dnsd").unwrap());
    cmd.args(args);
    output_within(&mut cmd, Duration::from_secs(30))
}

#[test]
fn check_config_accepts_every_example_under_etc() {
    let etc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc");
    for entry in std::fs::read_dir(&etc).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = dnsd(&["check-config", path.to_str().unwrap()]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains(": ok ("), "{text}");
        }
    }
}

const BROKEN: &str = r#"
[dns]
zone = "svc.test"
nameservers = [{ name = "ns1.svc.test.", address = "127.0.0.1" }]
[heartbeat]
interval = "500ms"
timeout = "1s"
fall = 0
colour = "blue"
[[node]]
name = "app1"
address = "10.0.0.300"
[[node]]
name = "app1"
address = "10.0.0.12"
[[service]]
name = "www"
nodes = ["app1", "app9"]
"#;

#[test]
fn check_config_lists_every_problem_with_its_key_path_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    std::fs::write(&file, BROKEN).unwrap();
    // Every problem at once, the unknown key among them.
    let out = dnsd(&["check-config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "heartbeat.colour: unknown key",
        "dns.zone: \"svc.test\" must be fully qualified, with a trailing dot",
        "heartbeat.timeout: timeout (1s) must be shorter than heartbeat.interval (500ms)",
        "heartbeat.fall: must be at least 1",
        "node[0].address: \"10.0.0.300\" is not an IPv4 or IPv6 address",
        "node[1].name: duplicate node \"app1\" (also node[0])",
        "service[0].nodes[1]: unknown node \"app9\" (no [[node]] has this name)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        err.contains(&file.display().to_string()),
        "names the file: {err}"
    );
    // `run` refuses the same file: no ready line, exit 1.
    let out = dnsd(&["run", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("heartbeat.fall: must be at least 1"));
    // A file that is not there, or not TOML.
    let out = dnsd(&["check-config", "/nonexistent/dnsd.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read configuration /nonexistent/dnsd.toml")
    );
}

#[test]
fn a_corrupt_state_file_is_moved_aside_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("state.json"), b"{\"version\": 1, \"state\": tru").unwrap();
    let config = format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"svc.test.\"\nnameservers = [{{ name = \"ns1.svc.test.\", address = \"127.0.0.1\" }}]\n[control]\nsocket = \"{d}/c.sock\"\n[state]\ndir = \"{d}/state\"\n[[node]]\nname = \"a\"\naddress = \"127.0.0.1\"\n[[service]]\nname = \"www\"\nnodes = [\"a\"]\n",
        d = dir.path().display()
    );
    let dnsd = Dnsd::start(dir.path(), &config, &[]).unwrap();
    let events = runtime().block_on(dnsd.client().events(0)).unwrap();
    let e = events
        .iter()
        .find(|e| e.kind == EventKind::State)
        .expect("a state event");
    assert!(
        e.reason.contains("was unusable (not valid state JSON"),
        "{}",
        e.reason
    );
    let aside: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.json.unusable-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside, not deleted");
    assert_eq!(
        std::fs::read(state.join(&aside[0])).unwrap(),
        b"{\"version\": 1, \"state\": tru"
    );
    assert!(
        state.join("state.json").exists(),
        "a fresh state file was written"
    );
    assert!(dnsd.log().contains("was unusable"), "and logged");
}

/// A minimal configuration in `dir`, with a `[[service]]` body of `service_keys`.
fn small_config(dir: &std::path::Path, service_keys: &str) -> String {
    format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"svc.test.\"\nnameservers = [{{ name = \"ns1.svc.test.\", address = \"127.0.0.1\" }}]\n[control]\nsocket = \"{d}/c.sock\"\n[state]\ndir = \"{d}/state\"\n[mirror]\nidentity = \"{d}/id\"\nknown_hosts = \"{d}/known_hosts\"\n[[node]]\nname = \"a\"\naddress = \"127.0.0.1\"\n[[service]]\nname = \"www\"\nnodes = [\"a\"]\n{service_keys}\n",
        d = dir.display()
    )
}

#[test]
fn a_state_file_that_cannot_be_read_stops_start_up_naming_the_file_the_cause_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // A directory where the state file should be: reading it fails, as a file with the
    // wrong permissions or on a failing disk would for a non-root dnsd.
    std::fs::create_dir_all(state.join("state.json")).unwrap();
    let file = dir.path().join("dnsd.toml");
    std::fs::write(&file, small_config(dir.path(), "")).unwrap();
    let out = dnsd(&["run", "--config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let path = state.join("state.json");
    assert!(
        err.contains(&format!("cannot read state file {}", path.display()))
            && err.contains("Is a directory")
            && err.contains("make it readable, or move it aside"),
        "{err}"
    );
}

#[test]
fn check_config_warns_of_an_unfenced_mirrored_service_and_still_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let check = |keys: &str| {
        let file = dir.path().join("dnsd.toml");
        std::fs::write(&file, small_config(dir.path(), keys)).unwrap();
        let out = dnsd(&["check-config", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let risky = check("paths = [\"/srv/data\"]");
    assert!(
        risky.contains("warning: service[0]: www: mirrored with automatic failover and neither fence nor demote"),
        "{risky}"
    );
    for safe in [
        "paths = [\"/srv/data\"]\nfence = [\"/usr/local/sbin/fence\", \"{address}\"]",
        "paths = [\"/srv/data\"]\npromote = [\"/p\"]\ndemote = [\"/d\"]",
        "paths = [\"/srv/data\"]\nfencing = \"none\"",
    ] {
        assert_eq!(check(safe), "", "{safe}");
    }
}

#[test]
fn check_config_refuses_demote_without_promote_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dnsd.toml");
    std::fs::write(
        &file,
        small_config(dir.path(), "paths = [\"/srv/data\"]\ndemote = [\"/d\"]"),
    )
    .unwrap();
    let out = dnsd(&["check-config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("service[0].demote: needs a promote hook too"),
        "{err}"
    );
}
