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
