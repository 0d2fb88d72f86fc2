//! dnsd as the hidden primary of real secondaries: Knot and NSD (Debian packages),
//! configured from the examples under `etc/secondaries/`, transfer the zone from the
//! running dnsd on loopback (with and without TSIG), hear of every change by NOTIFY
//! (seen in their logs), and answer the new primary after a failover. A secondary that
//! is down when dnsd sends its NOTIFY gets it again until it answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use dnsd_api::{Action, Health};
use integration::harness::{Dnsd, EchoPool, loopback_addr, require_tools, runtime, wait_for};
use integration::secondary::{self, Kind, Secondary, Setup};

/// The port the secondaries listen on, each on a loopback address of its own.
const SECONDARY_PORT: u16 = 5399;
/// The base64 secret the tests share with the secondaries (32 random-looking bytes).
const SECRET: &str = "m2Gd5S6+0b4nQwP7v3cX1uZr8yJ9kLqT5eHfA2sD4gE=";
/// Where NOTIFY comes from: dnsd listens on 127.0.0.1 and sends from there.
const PRIMARY_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Long enough for any of the waits below on a loaded machine; never a measurement.
const LIMIT: Duration = Duration::from_secs(60);

struct Primary {
    dnsd: Dnsd,
    pool: EchoPool,
}

/// dnsd from `etc/dnsd-hidden-primary.toml`, with this test's members, addresses and
/// key (or none), sending NOTIFY to `notify`.
fn start_primary(dir: &Path, secret: Option<&str>, notify: &[SocketAddr], retry: &str) -> Primary {
    let pool = EchoPool::start(2).unwrap();
    let example =
        std::fs::read_to_string(secondary::etc_dir().join("dnsd-hidden-primary.toml")).unwrap();
    let mut text = example
        .replace("192.0.2.11", &pool.addrs[0].to_string())
        .replace("192.0.2.12", &pool.addrs[1].to_string());
    let key_file = dir.join("xfr.key");
    match secret {
        Some(s) => {
            std::fs::write(&key_file, s).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        None => {
            text = text
                .lines()
                .filter(|l| !l.starts_with("tsig = "))
                .map(|l| format!("{l}\n"))
                .collect();
        }
    }
    let targets: Vec<String> = notify.iter().map(ToString::to_string).collect();
    let env = [
        ("DNSD_DNS__LISTEN", "127.0.0.1:0".to_owned()),
        ("DNSD_DNS__ALLOW_TRANSFER", PRIMARY_IP.to_string()),
        ("DNSD_DNS__NOTIFY", targets.join(",")),
        ("DNSD_DNS__NOTIFY_RETRY", retry.to_owned()),
        ("DNSD_HEARTBEAT__PORT", pool.port.to_string()),
        ("DNSD_HEARTBEAT__INTERVAL", "100ms".to_owned()),
        ("DNSD_HEARTBEAT__TIMEOUT", "80ms".to_owned()),
        ("DNSD_HEARTBEAT__RISE", "1".to_owned()),
        (
            "DNSD_CONTROL__SOCKET",
            dir.join("control.sock").display().to_string(),
        ),
        ("DNSD_STATE__DIR", dir.join("state").display().to_string()),
    ];
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let key_path = key_file.display().to_string();
    if secret.is_some() {
        env.push(("DNSD_DNS__TSIG__SECRET_FILE", &key_path));
    }
    let dnsd = Dnsd::start(dir, &text, &env).unwrap();
    let client = dnsd.client();
    let rt = runtime();
    let up = wait_for(LIMIT, Duration::from_millis(50), || {
        let s = rt.block_on(client.status()).ok()?;
        ["db1", "db2"]
            .iter()
            .all(|n| s.node(n).is_some_and(|n| n.health == Health::Up))
            .then_some(())
    });
    assert!(up.is_some(), "members never came up; log:\n{}", dnsd.log());
    Primary { dnsd, pool }
}

fn setup<'a>(
    primary: &Primary,
    listen: SocketAddr,
    secret: Option<&'a str>,
    dir: &'a Path,
) -> Setup<'a> {
    Setup {
        primary: primary.dnsd.dns(),
        notify_source: PRIMARY_IP,
        listen,
        secret,
        dir,
        workers: None,
    }
}

/// `dnsd_dns_notify_total{target=..,outcome=..}` from dnsd's metrics.
fn notify_count(dnsd: &Dnsd, target: SocketAddr, outcome: &str) -> u64 {
    let text = runtime().block_on(dnsd.client().metrics()).unwrap();
    let prefix = format!("dnsd_dns_notify_total{{target=\"{target}\",outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

/// Whether the server logged a NOTIFY from dnsd (for `serial`, if given).
fn notify_seen(s: &Secondary, serial: Option<u32>) -> bool {
    let log = s.log();
    let line = |l: &str| match s.kind() {
        Kind::Knot => l.contains("notify, incoming, remote 127.0.0.1@"),
        Kind::Nsd => l.contains(&format!("notify for {} from {PRIMARY_IP}", secondary::ZONE)),
    };
    log.lines()
        .filter(|l| line(l))
        .any(|l| serial.is_none_or(|n| l.trim_end().ends_with(&format!("serial {n}"))))
}

fn knot_and_nsd_follow_a_failover(test: &str, secret: Option<&str>) {
    if !require_tools(test, &["dig", "knotd", "nsd"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let knot_addr = SocketAddr::new(loopback_addr(), SECONDARY_PORT);
    let nsd_addr = SocketAddr::new(loopback_addr(), SECONDARY_PORT);
    let p = start_primary(dir.path(), secret, &[knot_addr, nsd_addr], "500ms");
    let (app1, app2) = (p.pool.addrs[0].to_string(), p.pool.addrs[1].to_string());
    let (knot_dir, nsd_dir) = (dir.path().join("knot"), dir.path().join("nsd"));
    let secondaries = [
        Secondary::start(Kind::Knot, &setup(&p, knot_addr, secret, &knot_dir)).unwrap(),
        Secondary::start(Kind::Nsd, &setup(&p, nsd_addr, secret, &nsd_dir)).unwrap(),
    ];
    let name = format!("pg.{}", secondary::ZONE);
    for s in &secondaries {
        assert!(
            s.wait_answer(&name, &app1, LIMIT),
            "{:?} never answered {name} with {app1}; its log:\n{}\ndnsd's log:\n{}",
            s.kind(),
            s.log(),
            p.dnsd.log()
        );
    }
    let before = secondaries[0].serial().expect("Knot answers its SOA");

    let rt = runtime();
    let reply = rt
        .block_on(p.dnsd.client().act(&Action::Failover { service: None }))
        .unwrap();
    assert!(reply.accepted, "{reply:?}");
    for s in &secondaries {
        assert!(
            s.wait_answer(&name, &app2, LIMIT),
            "{:?} never answered the new primary {app2}; its log:\n{}\ndnsd's log:\n{}",
            s.kind(),
            s.log(),
            p.dnsd.log()
        );
        let after = s.serial().expect("the secondary answers its SOA");
        assert!(after > before);
        assert!(
            notify_seen(s, Some(after)),
            "{:?} logged no NOTIFY:\n{}",
            s.kind(),
            s.log()
        );
        let acked = wait_for(LIMIT, Duration::from_millis(50), || {
            (notify_count(&p.dnsd, s.addr(), "acknowledged") >= 1).then_some(())
        });
        assert!(acked.is_some(), "{:?} acknowledged no NOTIFY", s.kind());
    }
    let log = p.dnsd.log();
    assert!(
        log.contains("kind=\"IXFR\"") && log.contains("answer=\"incremental\""),
        "after the failover the secondaries ask for, and get, the differences: {log}"
    );
    assert!(
        log.contains(&format!("signed={}", secret.is_some())),
        "transfers signed as configured: {log}"
    );
    assert!(!log.contains(SECRET), "the secret never reaches the log");
}

#[test]
fn knot_and_nsd_follow_a_failover_with_tsig() {
    knot_and_nsd_follow_a_failover("knot_and_nsd_follow_a_failover_with_tsig", Some(SECRET));
}

#[test]
fn knot_and_nsd_follow_a_failover_without_tsig() {
    knot_and_nsd_follow_a_failover("knot_and_nsd_follow_a_failover_without_tsig", None);
}

#[test]
fn notify_is_retried_until_a_secondary_that_was_down_answers() {
    let test = "notify_is_retried_until_a_secondary_that_was_down_answers";
    if !require_tools(test, &["dig", "knotd"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let knot_addr = SocketAddr::new(loopback_addr(), SECONDARY_PORT);
    // Knot is not running yet: dnsd's first NOTIFY goes unanswered.
    let p = start_primary(dir.path(), Some(SECRET), &[knot_addr], "200ms");
    let retried = wait_for(LIMIT, Duration::from_millis(50), || {
        (notify_count(&p.dnsd, knot_addr, "retried") >= 1).then_some(())
    });
    assert!(
        retried.is_some(),
        "no retry while the secondary was down:\n{}",
        p.dnsd.log()
    );
    assert_eq!(notify_count(&p.dnsd, knot_addr, "acknowledged"), 0);

    let knot_dir = dir.path().join("knot");
    let knot =
        Secondary::start(Kind::Knot, &setup(&p, knot_addr, Some(SECRET), &knot_dir)).unwrap();
    let acked = wait_for(LIMIT, Duration::from_millis(50), || {
        (notify_count(&p.dnsd, knot_addr, "acknowledged") >= 1).then_some(())
    });
    assert!(
        acked.is_some(),
        "the retried NOTIFY was never acknowledged; dnsd:\n{}\nknot:\n{}",
        p.dnsd.log(),
        knot.log()
    );
    assert!(notify_seen(&knot, None), "{}", knot.log());
    let name = format!("pg.{}", secondary::ZONE);
    assert!(
        knot.wait_answer(&name, &p.pool.addrs[0].to_string(), LIMIT),
        "{}",
        knot.log()
    );
}
