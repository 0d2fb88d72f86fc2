//! End to end on loopback: the real `dnsd` heartbeating three echo services on
//! 127.x addresses, failing over in round-robin order, members rejoining as
//! secondaries, and a restart keeping the primary.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use dnsd_api::{Health, Role};
use integration::harness::{Dnsd, EchoPool, dig_short, require_tools, runtime, wait_for};

const INTERVAL_MS: u64 = 500;
const FALL: u64 = 3;

fn config(dir: &std::path::Path, pool: &EchoPool) -> String {
    let (port, nodes) = (pool.port, pool.node_tables());
    format!(
        r#"
[dns]
listen = ["127.0.0.1:0"]
zone = "svc.test."
ttl = "1s"
nameservers = [{{ name = "ns1.svc.test.", address = "127.0.0.1" }}]
[heartbeat]
protocol = "tcp"
port = {port}
interval = "{INTERVAL_MS}ms"
timeout = "400ms"
fall = {FALL}
rise = 2
[control]
socket = "{dir}/control.sock"
[state]
dir = "{dir}/state"
{nodes}
[[service]]
name = "www"
nodes = ["app1", "app2", "app3"]
"#,
        dir = dir.display()
    )
}

/// Polls DNS every 10 ms until `www` answers `want`; returns how long that took.
fn time_until_answer(dns: SocketAddr, want: IpAddr, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    wait_for(limit, Duration::from_millis(10), || {
        (dig_short(dns, "www.svc.test.", "A") == vec![want.to_string()]).then(|| start.elapsed())
    })
}

#[test]
fn failover_round_robin_rejoin_and_restart_on_loopback() {
    if !require_tools(
        "failover_round_robin_rejoin_and_restart_on_loopback",
        &["dig"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut pool = EchoPool::start(3).unwrap();
    let addrs = pool.addrs.clone();
    let cfg = config(dir.path(), &pool);
    let mut dnsd = Dnsd::start(dir.path(), &cfg, &[]).unwrap();
    let client = dnsd.client();
    let rt = runtime();
    let status = |client: &console::client::Client| rt.block_on(client.status()).unwrap();

    let all_up = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        let s = status(&client);
        s.nodes.iter().all(|n| n.health == Health::Up).then_some(s)
    })
    .unwrap_or_else(|| panic!("members never all up; log:\n{}", dnsd.log()));
    assert_eq!(all_up.service("www").unwrap().primary, "app1");
    let dns = dnsd.dns();
    assert_eq!(
        dig_short(dns, "www.svc.test.", "A"),
        vec![addrs[0].to_string()]
    );

    // The bound the foundation issue sets: interval x fall plus one interval.
    let bound = Duration::from_millis(INTERVAL_MS * FALL + INTERVAL_MS);

    // Stop the primary's echo service: DNS moves to the next member.
    pool.servers[0] = None;
    let took = time_until_answer(dns, addrs[1], Duration::from_secs(10))
        .unwrap_or_else(|| panic!("www never moved to app2; log:\n{}", dnsd.log()));
    assert!(
        took <= bound,
        "failover to app2 took {took:?}, more than {bound:?}"
    );

    // Stop that one too: the third member.
    pool.servers[1] = None;
    let took = time_until_answer(dns, addrs[2], Duration::from_secs(10))
        .unwrap_or_else(|| panic!("www never moved to app3; log:\n{}", dnsd.log()));
    assert!(
        took <= bound,
        "failover to app3 took {took:?}, more than {bound:?}"
    );

    // Revive both: they come back up as secondaries and do not take the primary back.
    pool.revive(0).unwrap();
    pool.revive(1).unwrap();
    let s = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        let s = status(&client);
        s.nodes.iter().all(|n| n.health == Health::Up).then_some(s)
    })
    .unwrap_or_else(|| panic!("revived members never up; log:\n{}", dnsd.log()));
    let www = s.service("www").unwrap();
    assert_eq!(www.primary, "app3");
    assert_eq!(www.epoch, 3, "two failovers from epoch 1");
    assert_eq!(www.member("app1").unwrap().role, Role::Secondary);
    assert_eq!(www.member("app2").unwrap().role, Role::Secondary);
    // A few more intervals: still app3.
    std::thread::sleep(Duration::from_millis(3 * INTERVAL_MS));
    assert_eq!(
        dig_short(dns, "www.svc.test.", "A"),
        vec![addrs[2].to_string()]
    );

    // Restart dnsd: the primary and epoch are kept, from the first answer on.
    let status_code = dnsd.stop().unwrap();
    assert!(status_code.success(), "dnsd exited with {status_code}");
    let dnsd = Dnsd::start(dir.path(), &cfg, &[]).unwrap();
    assert_eq!(
        dig_short(dnsd.dns(), "www.svc.test.", "A"),
        vec![addrs[2].to_string()]
    );
    let s = rt.block_on(dnsd.client().status()).unwrap();
    assert_eq!(s.service("www").unwrap().primary, "app3");
    assert_eq!(s.service("www").unwrap().epoch, 3);
}
