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
    let text = with_control_keys(
        "tcp = \"127.0.0.1:8053\"\ntoken_file = \"/etc/dnsd/token\"\nallow_plain_tcp_on_loopback = true",
    );
    let cfg = parse(&text, []).unwrap().validate().unwrap();
    let tcp = cfg.control.tcp.unwrap();
    assert_eq!(
        (tcp.addr, tcp.token_file),
        (
            "127.0.0.1:8053".parse().unwrap(),
            PathBuf::from("/etc/dnsd/token")
        )
    );
}

/// `GOOD` with these lines added to `[control]`.
fn with_control_keys(keys: &str) -> String {
    GOOD.replace(
        "socket = \"/run/dnsd/control.sock\"",
        &format!("socket = \"/run/dnsd/control.sock\"\n{keys}"),
    )
}

#[test]
fn control_defaults_bound_every_listener() {
    let cfg = parse(GOOD, []).unwrap().validate().unwrap();
    assert_eq!(cfg.control.tcp, None);
    assert_eq!(cfg.control.header_timeout, Duration::from_secs(10));
    assert_eq!(cfg.control.max_connections, 64);
    let cfg = parse(
        &with_control_keys("header_timeout = \"2s\"\nmax_connections = 4"),
        [],
    )
    .unwrap()
    .validate()
    .unwrap();
    assert_eq!(cfg.control.header_timeout, Duration::from_secs(2));
    assert_eq!(cfg.control.max_connections, 4);
}

#[test]
fn control_limits_are_checked() {
    let got = problems(&with_control_keys(
        "header_timeout = \"0s\"\nmax_connections = 0",
    ));
    assert_eq!(
        got,
        vec![
            "control.header_timeout: must be longer than zero",
            "control.max_connections: must be at least 1: no connection would ever be served",
        ]
    );
    assert_problem(
        &with_control_keys("header_timeout = \"soon\""),
        "control.header_timeout: \"soon\" is not a duration (expected number at 0); write e.g. \"500ms\", \"5s\" or \"2m\"",
    );
}

#[test]
fn control_tcp_is_tls_with_both_files() {
    let cfg = parse(
        &with_control_keys(
            "tcp = \"192.0.2.50:8053\"\ntoken_file = \"/etc/dnsd/token\"\ntls_cert = \"/etc/dnsd/control.crt\"\ntls_key = \"/etc/dnsd/control.key\"",
        ),
        [],
    )
    .unwrap()
    .validate()
    .unwrap();
    assert_eq!(
        cfg.control.tcp,
        Some(ControlTcp {
            addr: "192.0.2.50:8053".parse().unwrap(),
            token_file: PathBuf::from("/etc/dnsd/token"),
            transport: ControlTransport::Tls {
                cert: PathBuf::from("/etc/dnsd/control.crt"),
                key: PathBuf::from("/etc/dnsd/control.key"),
            },
        })
    );

    let tcp = "tcp = \"192.0.2.50:8053\"\ntoken_file = \"/etc/dnsd/token\"\n";
    assert_eq!(
        problems(&with_control_keys(tcp)),
        vec![
            "control.tcp: needs control.tls_cert and control.tls_key: the control API is served on \
             TCP only over TLS (plain HTTP only on a loopback address, with \
             control.allow_plain_tcp_on_loopback = true)"
        ]
    );
    assert_eq!(
        problems(&with_control_keys(&format!("{tcp}tls_cert = \"/c.pem\""))),
        vec!["control.tls_cert: needs control.tls_key: the private key of the certificate"]
    );
    assert_eq!(
        problems(&with_control_keys(&format!("{tcp}tls_key = \"/k.pem\""))),
        vec!["control.tls_key: needs control.tls_cert: the certificate of the key"]
    );
    assert_eq!(
        problems(&with_control_keys(&format!(
            "{tcp}tls_cert = \"c.pem\"\ntls_key = \"k.pem\""
        ))),
        vec![
            "control.tls_cert: \"c.pem\" must be an absolute path",
            "control.tls_key: \"k.pem\" must be an absolute path",
        ]
    );
}

#[test]
fn plain_tcp_only_on_loopback_and_only_when_allowed() {
    let plain = |addr: &str| {
        with_control_keys(&format!(
            "tcp = \"{addr}\"\ntoken_file = \"/etc/dnsd/token\"\nallow_plain_tcp_on_loopback = true"
        ))
    };
    for addr in ["127.0.0.1:8053", "127.3.4.5:8053", "[::1]:8053"] {
        let cfg = parse(&plain(addr), []).unwrap().validate().unwrap();
        let tcp = cfg.control.tcp.unwrap();
        assert_eq!(tcp.transport, ControlTransport::PlainLoopback, "{addr}");
    }
    for addr in ["192.0.2.50:8053", "0.0.0.0:8053", "[::]:8053"] {
        assert_eq!(
            problems(&plain(addr)),
            vec![format!(
                "control.allow_plain_tcp_on_loopback: control.tcp {} is not a loopback address: \
                 plain HTTP would carry the token in clear across the network; configure \
                 control.tls_cert and control.tls_key",
                addr.parse::<std::net::SocketAddr>().unwrap()
            )]
        );
    }
    // With TLS files the listener is TLS, whatever the flag says.
    let cfg = parse(
        &with_control_keys(
            "tcp = \"127.0.0.1:8053\"\ntoken_file = \"/t\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\nallow_plain_tcp_on_loopback = true",
        ),
        [],
    )
    .unwrap()
    .validate()
    .unwrap();
    assert!(matches!(
        cfg.control.tcp.unwrap().transport,
        ControlTransport::Tls { .. }
    ));
    // The environment can set the flag too.
    let got = problems_env(
        &with_control_keys("tcp = \"192.0.2.50:8053\"\ntoken_file = \"/t\""),
        [("DNSD_CONTROL__ALLOW_PLAIN_TCP_ON_LOOPBACK", "true")],
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("control.allow_plain_tcp_on_loopback: control.tcp 192.0.2.50:8053 is not a loopback address"),
        "{got:?}"
    );
}

#[test]
fn tcp_keys_without_tcp_are_refused() {
    let got = problems(&with_control_keys(
        "token_file = \"/t\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\nallow_plain_tcp_on_loopback = true",
    ));
    assert_eq!(
        got,
        vec![
            "control.allow_plain_tcp_on_loopback: is only used with control.tcp",
            "control.tls_cert: is only used with control.tcp",
            "control.tls_key: is only used with control.tcp",
            "control.token_file: is only used with control.tcp",
        ]
    );
    // Saying false is saying nothing.
    assert!(problems(&with_control_keys("allow_plain_tcp_on_loopback = false")).is_empty());
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

// ---------------------------------------------------------------------------
// Service checks, restart-then-migrate and flap damping.

#[test]
fn checks_restart_and_flap_damping_validate_with_their_defaults() {
    let cfg = parse(GOOD, []).unwrap().validate().unwrap();
    let s = &cfg.services[0];
    assert_eq!((&s.check, &s.restart), (&None, &None));
    assert_eq!(
        s.flap,
        Some(FlapConfig {
            threshold: 4,
            window: Duration::from_secs(600),
            hold_down: Duration::from_secs(600),
        }),
        "flap damping is on by default"
    );
    let text = with_service_keys(
        "check = { kind = \"http\", port = 8080 }\nrestart = [\"/usr/local/bin/restart\", \"{service}\", \"--epoch={epoch}\"]",
    ) + MIRROR;
    let cfg = parse(&text, []).unwrap().validate().unwrap();
    let s = &cfg.services[0];
    let check = s.check.as_ref().unwrap();
    assert_eq!(
        check.probe,
        CheckProbe::Http {
            port: 8080,
            path: "/".into(),
            expect: 200
        }
    );
    assert_eq!(check.probe.to_string(), "http :8080/ expects 200");
    assert_eq!(
        (check.interval, check.timeout, check.fall, check.rise),
        (Duration::from_secs(2), Duration::from_secs(1), 3, 2)
    );
    assert_eq!(
        s.restart,
        Some(RestartConfig {
            attempts: 2,
            window: Duration::from_secs(30)
        })
    );
    assert_eq!(s.hooks.restart.as_ref().unwrap()[2], "--epoch={epoch}");

    let text = with_service_keys(
        "check = { kind = \"command\", argv = [\"/usr/local/bin/check-app\", \"{service}\", \"{address}\"] }\ncheck_interval = \"500ms\"\ncheck_timeout = \"300ms\"\ncheck_fall = 1\ncheck_rise = 1\nflap_threshold = 0",
    ) + MIRROR;
    let cfg = parse(&text, []).unwrap().validate().unwrap();
    let s = &cfg.services[0];
    assert_eq!(
        s.check.as_ref().unwrap().probe.to_string(),
        "command /usr/local/bin/check-app {service} {address}"
    );
    assert_eq!(s.flap, None, "flap_threshold = 0 turns damping off");
    let tcp = with_service_keys("check = { kind = \"tcp\", port = 5432 }");
    let cfg = parse(&tcp, []).unwrap().validate().unwrap();
    assert_eq!(
        cfg.services[0].check.as_ref().unwrap().probe,
        CheckProbe::Tcp { port: 5432 }
    );
}

#[test]
fn every_check_problem_is_reported_with_its_key_path() {
    let cases = [
        (
            "check = { kind = \"ping\" }",
            "service[0].check.kind: \"ping\" is not a check kind: use \"http\", \"tcp\" or \"command\"",
        ),
        (
            "check = { kind = \"http\" }",
            "service[0].check.port: a \"http\" check needs the port to check on each member",
        ),
        (
            "check = { kind = \"tcp\" }",
            "service[0].check.port: a \"tcp\" check needs the port to check on each member",
        ),
        (
            "check = { kind = \"tcp\", port = 0 }",
            "service[0].check.port: port 0 cannot be checked",
        ),
        (
            "check = { kind = \"tcp\", port = 5432, path = \"/x\" }",
            "service[0].check.path: is not used by a \"tcp\" check",
        ),
        (
            "check = { kind = \"http\", port = 80, argv = [\"x\"] }",
            "service[0].check.argv: is not used by a \"http\" check",
        ),
        (
            "check = { kind = \"http\", port = 80, path = \"health\" }",
            "service[0].check.path: \"health\" must start with \"/\" and hold no spaces or control characters",
        ),
        (
            "check = { kind = \"http\", port = 80, path = \"/a b\" }",
            "service[0].check.path: \"/a b\" must start with \"/\" and hold no spaces or control characters",
        ),
        (
            "check = { kind = \"http\", port = 80, expect = 99 }",
            "service[0].check.expect: 99 is not an HTTP status (100 to 599)",
        ),
        (
            "check = { kind = \"command\" }",
            "service[0].check.argv: a \"command\" check needs argv: the command run on each member, e.g. [\"/usr/local/bin/check-app\", \"{service}\"]",
        ),
        (
            "check = { kind = \"command\", argv = [] }",
            "service[0].check.argv: a check is a command with its arguments, e.g. [\"/usr/local/bin/check-app\", \"{service}\"]",
        ),
        (
            "check = { kind = \"command\", argv = [\"/c\", \"{epoch}\"] }",
            "service[0].check.argv[1]: unknown placeholder {epoch}; use {service}, {node}, {address}",
        ),
        (
            "check = { kind = \"tcp\", port = 1 }\ncheck_interval = \"soon\"",
            "service[0].check_interval: \"soon\" is not a duration (expected number at 0); write e.g. \"500ms\", \"5s\" or \"2m\"",
        ),
        (
            "check = { kind = \"tcp\", port = 1 }\ncheck_timeout = \"0s\"",
            "service[0].check_timeout: must be longer than zero",
        ),
        (
            "check = { kind = \"tcp\", port = 1 }\ncheck_interval = \"1s\"\ncheck_timeout = \"1s\"",
            "service[0].check_timeout: 1s must be shorter than check_interval (1s)",
        ),
        (
            "check = { kind = \"tcp\", port = 1 }\ncheck_fall = 0",
            "service[0].check_fall: must be at least 1",
        ),
        (
            "check = { kind = \"tcp\", port = 1 }\ncheck_rise = 0",
            "service[0].check_rise: must be at least 1",
        ),
        (
            "check_interval = \"1s\"",
            "service[0].check_interval: is only used with check (the service has none)",
        ),
        (
            "check_timeout = \"1s\"",
            "service[0].check_timeout: is only used with check (the service has none)",
        ),
        (
            "check_fall = 2",
            "service[0].check_fall: is only used with check (the service has none)",
        ),
        (
            "check_rise = 2",
            "service[0].check_rise: is only used with check (the service has none)",
        ),
        (
            "check = { kind = \"tcp\", port = 1, timeout = \"1s\" }",
            "service[0].check.timeout: unknown key",
        ),
    ];
    for (keys, expected) in cases {
        assert_problem(&(with_service_keys(keys) + MIRROR), expected);
    }
}

#[test]
fn every_restart_and_flap_problem_is_reported_with_its_key_path() {
    let check = "check = { kind = \"tcp\", port = 1 }\n";
    let cases = [
        (
            "restart = [\"/bin/restart\"]".to_owned(),
            "service[0].restart: needs a check: a restart is tried when the check fails on a primary whose host answers",
        ),
        (
            format!("{check}restart = []"),
            "service[0].restart: a hook is a command with its arguments, e.g. [\"/usr/local/bin/promote\", \"{service}\"]",
        ),
        (
            format!("{check}restart = [\"/bin/restart\", \"{{epok}}\"]"),
            "service[0].restart[1]: unknown placeholder {epok}; use {service}, {node}, {address}, {epoch}",
        ),
        (
            format!("{check}restart = [\"/bin/restart\"]\nrestart_attempts = 0"),
            "service[0].restart_attempts: must be at least 1 (leave restart out to fail over at once)",
        ),
        (
            format!("{check}restart = [\"/bin/restart\"]\nrestart_window = \"0s\""),
            "service[0].restart_window: must be longer than zero",
        ),
        (
            format!("{check}restart = [\"/bin/restart\"]\nrestart_window = \"4s\""),
            "service[0].restart_window: 4s is not longer than check_rise × check_interval (4s): a restarted service could not be seen passing in time",
        ),
        (
            "restart_attempts = 3".to_owned(),
            "service[0].restart_attempts: is only used with restart (the service has none)",
        ),
        (
            "restart_window = \"1m\"".to_owned(),
            "service[0].restart_window: is only used with restart (the service has none)",
        ),
        (
            "flap_window = \"0s\"".to_owned(),
            "service[0].flap_window: must be longer than zero",
        ),
        (
            "hold_down = \"forever\"".to_owned(),
            "service[0].hold_down: \"forever\" is not a duration (expected number at 0); write e.g. \"500ms\", \"5s\" or \"2m\"",
        ),
    ];
    for (keys, expected) in cases {
        assert_problem(&(with_service_keys(&keys) + MIRROR), expected);
    }
}

#[test]
fn restarts_and_command_checks_need_a_mirror_section() {
    let text = with_service_keys(
        "check = { kind = \"command\", argv = [\"/c\"] }\nrestart = [\"/bin/restart\"]",
    );
    let got = problems(&text);
    for expected in [
        "service[0].check: a command check runs on the member over SSH: it needs a [mirror] section",
        "service[0].restart: needs a [mirror] section: how the terminal server reaches members over SSH",
    ] {
        assert!(
            got.contains(&expected.to_owned()),
            "{expected:?} not in {got:#?}"
        );
    }
    // HTTP and TCP checks are made by the terminal server itself.
    let http = with_service_keys(
        "check = { kind = \"http\", port = 80, path = \"/health\", expect = 204 }",
    );
    assert_eq!(problems(&http), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// [dns]: transfers, NOTIFY, SOA timers, sockets.

fn with_dns_keys(keys: &str) -> String {
    GOOD.replace("ttl = \"5s\"", &format!("ttl = \"5s\"\n{keys}"))
}

#[test]
fn dns_defaults() {
    let cfg = parse(GOOD, []).unwrap().validate().unwrap();
    let d = &cfg.dns;
    assert_eq!(
        d.soa,
        SoaTimers {
            refresh: 4 * 3600,
            retry: 3600,
            expire: 14 * 86400
        }
    );
    assert_eq!(
        d.threads,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    assert_eq!(d.tcp_max_connections, 128);
    assert_eq!(d.tcp_idle_timeout, Duration::from_secs(10));
    assert!(d.allow_transfer.is_empty());
    assert_eq!(d.tsig, None);
    assert!(d.notify.is_empty());
    assert_eq!(d.notify_retry, Duration::from_secs(2));
}

#[test]
fn dns_transfer_keys_validate() {
    let text = with_dns_keys(
        "allow_transfer = [\"127.0.0.1\", \"192.0.2.0/24\", \"2001:db8::/32\"]\n\
         notify = [\"127.0.0.1:5301\", \"[::1]:53\"]\nnotify_retry = \"500ms\"\n\
         soa_refresh = \"1h\"\nsoa_retry = \"10m\"\nsoa_expire = \"1d\"\nthreads = 3\n\
         tcp_max_connections = 10\ntcp_idle_timeout = \"2s\"\n\
         tsig = { name = \"Xfr_Key\", secret_file = \"/etc/dnsd/xfr.key\" }",
    );
    let cfg = parse(&text, []).unwrap().validate().unwrap();
    let d = &cfg.dns;
    assert_eq!(d.allow_transfer.len(), 3);
    assert!(d.allow_transfer[0].contains("127.0.0.1".parse().unwrap()));
    assert!(!d.allow_transfer[0].contains("127.0.0.2".parse().unwrap()));
    assert!(d.allow_transfer[1].contains("192.0.2.77".parse().unwrap()));
    assert!(
        d.allow_transfer[1].contains("::ffff:192.0.2.77".parse().unwrap()),
        "IPv4 clients on an IPv6 socket match as IPv4"
    );
    assert!(d.allow_transfer[2].contains("2001:db8:1::5".parse().unwrap()));
    assert!(!d.allow_transfer[2].contains("2001:db9::5".parse().unwrap()));
    assert_eq!(
        d.notify,
        vec![
            "127.0.0.1:5301".parse().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
    assert_eq!(d.notify_retry, Duration::from_millis(500));
    assert_eq!(
        d.soa,
        SoaTimers {
            refresh: 3600,
            retry: 600,
            expire: 86400
        }
    );
    assert_eq!((d.threads, d.tcp_max_connections), (3, 10));
    assert_eq!(d.tcp_idle_timeout, Duration::from_secs(2));
    assert_eq!(
        d.tsig,
        Some(TsigConfig {
            name: "xfr_key.".into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret_file: PathBuf::from("/etc/dnsd/xfr.key"),
        })
    );
}

#[test]
fn dns_transfer_problems_name_their_keys() {
    let text = with_dns_keys(
        "allow_transfer = [\"10.0.0.0/33\", \"10.0.0.1/8\", \"secondary\"]\n\
         notify = [\"127.0.0.1\", \"127.0.0.1:53\", \"127.0.0.1:53\", \"0.0.0.0:53\"]\n\
         notify_retry = \"2m\"\nthreads = 0\ntcp_max_connections = 0\ntcp_idle_timeout = \"0s\"\n\
         tsig = { name = \"bad key\", algorithm = \"hmac-md5\", secret_file = \"xfr.key\" }",
    );
    let got = problems(&text);
    for expected in [
        "dns.allow_transfer[0]: \"10.0.0.0/33\": the prefix length must be 0 to 32",
        "dns.allow_transfer[1]: \"10.0.0.1/8\" has bits set after the prefix length (write 10.0.0.0/8)",
        "dns.allow_transfer[2]: \"secondary\" is not an address or address/prefix-length",
        "dns.notify[0]: \"127.0.0.1\" is not an address:port (e.g. \"192.0.2.53:53\" or \"[2001:db8::53]:53\")",
        "dns.notify[2]: 127.0.0.1:53 is listed twice",
        "dns.notify[3]: 0.0.0.0:53 cannot be sent to: name the secondary's address and port",
        "dns.notify_retry: \"2m\" is longer than the longest NOTIFY retransmission delay (60s, RFC 1996)",
        "dns.threads: must be at least 1",
        "dns.tcp_max_connections: must be at least 1 (DNS needs TCP for answers that do not fit in UDP)",
        "dns.tcp_idle_timeout: must be longer than zero",
        "dns.tsig.name: \"bad key\" is not a valid key name: ' ' is not a letter, digit, hyphen or underscore",
        "dns.tsig.algorithm: \"hmac-md5\" is not supported: use \"hmac-sha256\", \"hmac-sha384\" or \"hmac-sha512\"",
        "dns.tsig.secret_file: \"xfr.key\" must be an absolute path",
    ] {
        assert!(
            got.contains(&expected.to_owned()),
            "missing {expected:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), 13, "{got:#?}");
    assert_problem(
        &with_dns_keys("threads = 1000"),
        "dns.threads: 1000 is more than 256 sockets per address",
    );
    assert_eq!(
        problems(&with_dns_keys("tsig = { name = \"k\" }")),
        vec!["dns.tsig: missing configuration field \"dns.tsig.secret_file\""]
    );
}

#[test]
fn soa_timer_problems_name_their_keys() {
    assert_problem(
        &with_dns_keys("soa_refresh = \"1h\"\nsoa_retry = \"2h\""),
        "dns.soa_retry: \"2h\" must be shorter than dns.soa_refresh (\"1h\"): secondaries retry a failed refresh sooner than they refresh",
    );
    assert_problem(
        &with_dns_keys("soa_refresh = \"1h\"\nsoa_retry = \"10m\"\nsoa_expire = \"70m\""),
        "dns.soa_expire: \"70m\" must be longer than dns.soa_refresh + dns.soa_retry: secondaries would drop the zone before their first retry",
    );
    assert_problem(
        &with_dns_keys("soa_refresh = \"0s\""),
        "dns.soa_refresh: must be longer than zero",
    );
    assert_problem(
        &with_dns_keys("soa_retry = \"90s500ms\""),
        "dns.soa_retry: \"90s500ms\": a TTL is a whole number of seconds",
    );
    assert_problem(
        &with_dns_keys("soa_expire = \"100y\""),
        "dns.soa_expire: \"100y\" is longer than a TTL can be (2^31-1 seconds)",
    );
}

#[test]
fn dns_lists_come_from_the_environment_too() {
    let env = [
        (
            "DNSD_DNS__ALLOW_TRANSFER".to_owned(),
            "127.0.0.1,10.0.0.0/8".to_owned(),
        ),
        (
            "DNSD_DNS__NOTIFY".to_owned(),
            "127.0.0.1:5301,127.0.0.2:5302".to_owned(),
        ),
        ("DNSD_DNS__THREADS".to_owned(), "2".to_owned()),
    ];
    let cfg = parse(GOOD, env).unwrap().validate().unwrap();
    assert_eq!(cfg.dns.allow_transfer.len(), 2);
    assert_eq!(cfg.dns.notify.len(), 2);
    assert_eq!(cfg.dns.threads, 2);
}
