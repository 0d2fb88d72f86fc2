//! Tests of the configuration: every invalid case by its message, and every file under
//! `etc/`.

use super::*;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::controller::{Election, Fencing, NoCandidate, NodeId};

const GOOD: &str = r#"
    [dns]
    listen = ["127.0.0.1:5353"]
    zone = "svc.test."
    ttl = "5s"
    nameservers = [{ name = "ns1.svc.test.", address = "127.0.0.1" }]
    [heartbeat]
    protocol = "tcp"
    port = 7
    interval = "500ms"
    timeout = "400ms"
    fall = 3
    rise = 3
    [control]
    socket = "/run/dnsd/control.sock"
    [state]
    dir = "/var/lib/dnsd"
    [[node]]
    name = "app1"
    address = "10.0.0.11"
    [[node]]
    name = "app2"
    address = "fd00::12"
    [[service]]
    name = "www"
    nodes = ["app1", "app2"]
"#;

fn problems(text: &str) -> Vec<String> {
    problems_env(text, [])
}

fn problems_env<const N: usize>(text: &str, env: [(&str, &str); N]) -> Vec<String> {
    let env = env.map(|(k, v)| (k.to_owned(), v.to_owned()));
    match parse(text, env) {
        Err(ParseFailure::Problems(p)) => p.iter().map(ToString::to_string).collect(),
        Err(ParseFailure::Syntax(s)) => vec![format!("syntax: {s}")],
        Ok(raw) => match raw.validate() {
            Ok(_) => vec![],
            Err(p) => p.iter().map(ToString::to_string).collect(),
        },
    }
}

fn assert_problem(text: &str, expected: &str) {
    let got = problems(text);
    assert!(
        got.iter().any(|p| p == expected),
        "expected problem {expected:?}, got {got:#?}"
    );
}

#[test]
fn good_config_validates() {
    let cfg = parse(GOOD, []).unwrap().validate().unwrap();
    assert_eq!(cfg.dns.zone, "svc.test.");
    assert_eq!(cfg.dns.ttl, 5);
    assert_eq!(cfg.dns.negative_ttl, 5);
    assert_eq!(cfg.dns.hostmaster, "hostmaster.svc.test.");
    assert_eq!(cfg.heartbeat.interval, Duration::from_millis(500));
    assert_eq!(cfg.heartbeat.protocol, heartbeat::Protocol::Tcp);
    assert_eq!(cfg.nodes[1].address, "fd00::12".parse::<IpAddr>().unwrap());
    assert_eq!(cfg.services[0].nodes, vec![NodeId(0), NodeId(1)]);
}

#[test]
fn unknown_keys_are_all_reported_with_paths() {
    let text = GOOD
        .replace("fall = 3", "fall = 3\nfalls = 4")
        .replace("[state]", "[state]\nmode = 1")
        .replace("name = \"app2\"", "name = \"app2\"\nadress = \"x\"");
    let got = problems(&text);
    assert_eq!(
        got,
        vec![
            "heartbeat.falls: unknown key",
            "node[1].adress: unknown key",
            "state.mode: unknown key",
        ]
    );
    // Other problems come with them.
    let text = text.replace("fall = 3\n", "fall = 0\n");
    let got = problems(&text);
    assert!(
        got.contains(&"heartbeat.fall: must be at least 1".to_owned()),
        "{got:?}"
    );
    assert!(
        got.contains(&"state.mode: unknown key".to_owned()),
        "{got:?}"
    );
}

#[test]
fn unknown_section_is_reported() {
    assert_problem(&format!("{GOOD}\n[dsn]\nzone = \"x.\""), "dsn: unknown key");
}

#[test]
fn duplicate_node() {
    let text = GOOD.replace("name = \"app2\"", "name = \"APP1\"");
    assert_problem(
        &text,
        "node[1].name: duplicate node \"app1\" (also node[0])",
    );
}

#[test]
fn service_naming_unknown_node() {
    let text = GOOD.replace(
        "nodes = [\"app1\", \"app2\"]",
        "nodes = [\"app1\", \"app9\"]",
    );
    assert_problem(
        &text,
        "service[0].nodes[1]: unknown node \"app9\" (no [[node]] has this name)",
    );
}

#[test]
fn service_listing_a_node_twice() {
    let text = GOOD.replace(
        "nodes = [\"app1\", \"app2\"]",
        "nodes = [\"app1\", \"app1\"]",
    );
    assert_problem(&text, "service[0].nodes[1]: node \"app1\" is listed twice");
}

#[test]
fn bad_address() {
    let text = GOOD.replace("10.0.0.11", "10.0.0.256");
    assert_problem(
        &text,
        "node[0].address: \"10.0.0.256\" is not an IPv4 or IPv6 address",
    );
}

#[test]
fn duplicate_address() {
    let text = GOOD.replace("fd00::12", "10.0.0.11");
    assert_problem(
        &text,
        "node[1].address: 10.0.0.11 is also the address of node[0]",
    );
}

#[test]
fn zone_without_trailing_dot() {
    let text = GOOD.replace("zone = \"svc.test.\"", "zone = \"svc.test\"");
    assert_problem(
        &text,
        "dns.zone: \"svc.test\" must be fully qualified, with a trailing dot (\"svc.test.\")",
    );
}

#[test]
fn timeout_not_shorter_than_interval() {
    let text = GOOD.replace("timeout = \"400ms\"", "timeout = \"500ms\"");
    assert_problem(
        &text,
        "heartbeat.timeout: timeout (500ms) must be shorter than heartbeat.interval (500ms)",
    );
}

#[test]
fn fall_and_rise_of_zero() {
    let text = GOOD
        .replace("fall = 3", "fall = 0")
        .replace("rise = 3", "rise = 0");
    let got = problems(&text);
    assert!(
        got.contains(&"heartbeat.fall: must be at least 1".to_owned()),
        "{got:?}"
    );
    assert!(
        got.contains(&"heartbeat.rise: must be at least 1".to_owned()),
        "{got:?}"
    );
}

#[test]
fn bad_protocol_duration_and_ttl() {
    let text = GOOD
        .replace("protocol = \"tcp\"", "protocol = \"icmp\"")
        .replace("interval = \"500ms\"", "interval = \"soon\"")
        .replace("ttl = \"5s\"", "ttl = \"1500ms\"");
    let got = problems(&text);
    assert!(
        got.contains(
            &"heartbeat.protocol: \"icmp\" is not a protocol: use \"tcp\" or \"udp\"".to_owned()
        ),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|p| p.starts_with("heartbeat.interval: \"soon\" is not a duration")),
        "{got:?}"
    );
    assert!(
        got.contains(&"dns.ttl: \"1500ms\": a TTL is a whole number of seconds".to_owned()),
        "{got:?}"
    );
}

#[test]
fn wrong_type_names_its_path() {
    let text = GOOD.replace("port = 7", "port = \"seven\"");
    let got = problems(&text);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("heartbeat.port: "), "{got:?}");
}

#[test]
fn missing_required_key() {
    let text = GOOD.replace("zone = \"svc.test.\"", "");
    let got = problems(&text);
    assert!(got.iter().any(|p| p.contains("zone")), "{got:?}");
}

#[test]
fn node_and_service_names_must_differ() {
    let text = GOOD.replace("name = \"www\"", "name = \"app2\"");
    assert_problem(
        &text,
        "service[0].name: \"app2\" is also the name of node[1]; both would answer app2.svc.test.",
    );
}

#[test]
fn node_name_must_be_a_label() {
    let text = GOOD.replace("name = \"app1\"", "name = \"app_1\"");
    let got = problems(&text);
    assert!(
        got.contains(
            &"node[0].name: \"app_1\" cannot be a DNS label: '_' is not a letter, digit or hyphen"
                .to_owned()
        ),
        "{got:?}"
    );
}

#[test]
fn control_tcp_needs_a_token_file() {
    let text = GOOD.replace(
        "socket = \"/run/dnsd/control.sock\"",
        "socket = \"/run/dnsd/control.sock\"\ntcp = \"127.0.0.1:8053\"",
    );
    assert_problem(
        &text,
        "control.tcp: needs control.token_file: the control API is never open on TCP without a token",
    );
    let text = GOOD.replace("socket = \"/run/dnsd/control.sock\"", "socket = \"/run/dnsd/control.sock\"\ntcp = \"127.0.0.1:8053\"\ntoken_file = \"/etc/dnsd/token\"");
    let cfg = parse(&text, []).unwrap().validate().unwrap();
    assert_eq!(
        cfg.control.tcp,
        Some((
            "127.0.0.1:8053".parse().unwrap(),
            PathBuf::from("/etc/dnsd/token")
        ))
    );
}

const MIRROR: &str = "\n[mirror]\ninterval = \"2s\"\nidentity = \"/etc/dnsd/id\"\nknown_hosts = \"/etc/dnsd/known_hosts\"\n";

fn with_service_keys(keys: &str) -> String {
    GOOD.replace(
        "nodes = [\"app1\", \"app2\"]",
        &format!("nodes = [\"app1\", \"app2\"]\n{keys}"),
    )
}

#[test]
fn mirrored_service_with_hooks_validates() {
    let text = with_service_keys(
        "paths = [\"/srv/data/\", \"/etc/app\"]\nfailback = \"auto\"\nfailback_after = \"1m\"\non_no_candidate = \"freshest\"\npromote = [\"/usr/local/bin/promote\", \"{service}\", \"--epoch={epoch}\"]\nfence = [\"/usr/local/bin/fence\", \"{address}\"]\nfencing = \"required\"",
    ) + MIRROR;
    let cfg = parse(&text, []).unwrap().validate().unwrap();
    let s = &cfg.services[0];
    assert_eq!(
        s.paths,
        vec![PathBuf::from("/srv/data"), PathBuf::from("/etc/app")]
    );
    assert_eq!(
        s.max_lag,
        Duration::from_millis(6_000 + 1_500),
        "3 x mirror.interval + heartbeat.fall x heartbeat.interval by default"
    );
    assert_eq!(s.failback_after, Some(Duration::from_secs(60)));
    assert_eq!(s.on_no_candidate, NoCandidate::Freshest);
    assert_eq!(s.fencing, Fencing::Required);
    assert_eq!(s.hooks.promote.as_ref().unwrap()[1], "{service}");
    assert_eq!(cfg.mirror.unwrap().interval, Duration::from_secs(2));
}

#[test]
fn mirroring_problems_are_reported_with_their_paths() {
    let text = with_service_keys(
        "paths = [\"data\", \"/\"]\nfailback = \"sometimes\"\non_no_candidate = \"any\"\npromote = []\ndemote = [\"/bin/demote\", \"{servce}\"]\nfencing = \"required\"\nmax_lag = \"0s\"",
    ) + MIRROR;
    let got = problems(&text);
    for expected in [
        "service[0].paths[0]: \"data\" must be an absolute path",
        "service[0].paths[1]: \"/\" cannot be mirrored: name the data directories",
        "service[0].failback: \"sometimes\" is not a failback mode: use \"manual\" or \"auto\"",
        "service[0].on_no_candidate: \"any\" is not a policy: use \"wait\" or \"freshest\"",
        "service[0].demote[1]: unknown placeholder {servce}; use {service}, {node}, {address}, {epoch}",
        "service[0].fencing: \"required\" needs a fence command (service.fence)",
        "service[0].max_lag: must be longer than zero",
    ] {
        assert!(
            got.contains(&expected.to_owned()),
            "missing {expected:?} in {got:#?}"
        );
    }
    assert!(
        got.iter()
            .any(|p| p.starts_with("service[0].promote: a hook is a command")),
        "{got:#?}"
    );
}

#[test]
fn paths_without_a_mirror_section_are_refused() {
    let text = with_service_keys("paths = [\"/srv/data\"]");
    assert_problem(
        &text,
        "service[0].paths: needs a [mirror] section: how the terminal server reaches members over SSH",
    );
}

#[test]
fn mirror_section_problems_come_through() {
    let text = format!("{GOOD}\n[mirror]\ninterval = \"never\"\nconcurrency = 0\n");
    let got = problems(&text);
    assert!(
        got.iter().any(|p| p.starts_with("mirror.interval")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|p| p.starts_with("mirror.concurrency")),
        "{got:#?}"
    );
}

#[test]
fn relative_paths_are_refused() {
    let text = GOOD.replace("/var/lib/dnsd", "state");
    assert_problem(&text, "state.dir: \"state\" must be an absolute path");
}

#[test]
fn several_problems_are_all_reported() {
    let text = GOOD
        .replace("10.0.0.11", "nope")
        .replace("zone = \"svc.test.\"", "zone = \"svc.test\"")
        .replace("fall = 3", "fall = 0");
    assert_eq!(problems(&text).len(), 3, "{:?}", problems(&text));
}

#[test]
fn environment_overrides_keys() {
    let env = [
        ("DNSD_HEARTBEAT__INTERVAL".to_owned(), "1s".to_owned()),
        ("DNSD_HEARTBEAT__FALL".to_owned(), "5".to_owned()),
        (
            "DNSD_DNS__LISTEN".to_owned(),
            "127.0.0.1:53,[::1]:53".to_owned(),
        ),
        ("OTHER_VAR".to_owned(), "ignored".to_owned()),
    ];
    let cfg = parse(GOOD, env).unwrap().validate().unwrap();
    assert_eq!(cfg.heartbeat.interval, Duration::from_secs(1));
    assert_eq!(cfg.heartbeat.fall, 5);
    assert_eq!(cfg.dns.listen.len(), 2);
}

#[test]
fn environment_overrides_are_validated_too() {
    let got = problems_env(GOOD, [("DNSD_HEARTBEAT__TIMEOUT", "2s")]);
    assert_eq!(
        got,
        vec!["heartbeat.timeout: timeout (2s) must be shorter than heartbeat.interval (500ms)"]
    );
    let got = problems_env(GOOD, [("DNSD_HEARTBEAT__BOGUS", "1")]);
    assert_eq!(got, vec!["heartbeat.bogus: unknown key"]);
}

#[test]
fn every_example_under_etc_parses() {
    let etc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc");
    let mut seen = 0;
    for entry in std::fs::read_dir(&etc).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = load_with_env(&path, []) {
                panic!("{e}");
            }
            seen += 1;
        }
    }
    assert!(seen >= 1, "no .toml under {}", etc.display());
}

#[test]
fn demote_without_promote_is_refused_with_its_key_path() {
    let text = with_service_keys("paths = [\"/srv/data\"]\ndemote = [\"/bin/demote\"]") + MIRROR;
    assert_problem(
        &text,
        "service[0].demote: needs a promote hook too: a failed switchover re-enables the demoted primary with it",
    );
}

#[test]
fn election_is_freshest_by_default_and_checked() {
    let cfg = parse(GOOD, []).unwrap().validate().unwrap();
    assert_eq!(cfg.services[0].election, Election::Freshest);
    let text = with_service_keys("election = \"round-robin\"");
    let cfg = parse(&text, []).unwrap().validate().unwrap();
    assert_eq!(cfg.services[0].election, Election::RoundRobin);
    assert_problem(
        &with_service_keys("election = \"oldest\""),
        "service[0].election: \"oldest\" is not an election rule: use \"freshest\" or \"round-robin\"",
    );
}

#[test]
fn an_unfenced_mirrored_service_is_warned_about_unless_chosen() {
    let warned = |keys: &str| {
        let cfg = parse(&(with_service_keys(keys) + MIRROR), [])
            .unwrap()
            .validate()
            .unwrap();
        cfg.warnings()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    let risky = warned("paths = [\"/srv/data\"]");
    assert_eq!(risky.len(), 1, "{risky:?}");
    assert!(
        risky[0].starts_with(
            "service[0]: www: mirrored with automatic failover and neither fence nor demote"
        ),
        "{risky:?}"
    );
    for safe in [
        "paths = [\"/srv/data\"]\nfence = [\"/usr/local/bin/fence\", \"{address}\"]",
        "paths = [\"/srv/data\"]\ndemote = [\"/bin/demote\"]\npromote = [\"/bin/promote\"]",
        "paths = [\"/srv/data\"]\nfencing = \"none\"",
        "fencing = \"none\"",
        "",
    ] {
        assert_eq!(warned(safe), Vec::<String>::new(), "{safe:?}");
    }
    assert_problem(
        &(with_service_keys(
            "paths = [\"/srv/data\"]\nfencing = \"none\"\nfence = [\"/usr/local/bin/fence\"]",
        ) + MIRROR),
        "service[0].fencing: \"none\" says there is no fencing, but service.fence is set",
    );
}

#[test]
fn the_epoch_guard_is_a_hook_command() {
    let text = with_service_keys(
        "paths = [\"/srv/data\"]\nepoch_guard = [\"/usr/local/sbin/dnsd-epoch-guard\", \"/var/lib/dnsd/www.epoch\", \"{epoch}\"]",
    ) + MIRROR;
    let cfg = parse(&text, []).unwrap().validate().unwrap();
    assert_eq!(
        cfg.services[0].hooks.epoch_guard.as_ref().unwrap()[2],
        "{epoch}"
    );
    assert_problem(
        &(with_service_keys("paths = [\"/srv/data\"]\nepoch_guard = [\"/g\", \"{epoc}\"]")
            + MIRROR),
        "service[0].epoch_guard[1]: unknown placeholder {epoc}; use {service}, {node}, {address}, {epoch}",
    );
}
