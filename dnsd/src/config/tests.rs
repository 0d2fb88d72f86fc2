//! Tests of the configuration: every invalid case by its message, and every file under
//! `etc/`.

use super::*;

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
    assert_eq!(cfg.services[0].nodes, vec![0, 1]);
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
