//! The real `dnsd` against three lab hosts (their own netns, address and echo service):
//! crash the primary, cut the new primary's link, revive both.

use std::time::Duration;

use dnsd_api::{Health, Role, Status};
use integration::harness::{Dnsd, dig_short, require_tools, runtime, wait_for};
use integration::lab::{Lab, LabOptions};

pub(crate) fn lab_config(lab: &Lab, dir: &std::path::Path, heartbeat: &str, extra: &str) -> String {
    let nodes = lab.node_tables();
    let members = lab.node_list();
    format!(
        r#"
[dns]
listen = ["127.0.0.1:0"]
zone = "svc.test."
ttl = "1s"
nameservers = [{{ name = "ns1.svc.test.", address = "127.0.0.1" }}]
[heartbeat]
{heartbeat}
[control]
socket = "{dir}/control.sock"
[state]
dir = "{dir}/state"
{extra}
{nodes}
[[service]]
name = "www"
nodes = [{members}]
"#,
        dir = dir.display(),
    )
}

#[test]
fn dnsd_follows_crash_and_cut_on_lab_hosts() {
    let Some(lab) = Lab::require(
        "dnsd_follows_crash_and_cut_on_lab_hosts",
        LabOptions::new(3),
    ) else {
        return;
    };
    if !require_tools("dnsd_follows_crash_and_cut_on_lab_hosts", &["dig"]) {
        return;
    }
    let hosts = lab.hosts();
    let dir = tempfile::tempdir().unwrap();
    let hb = "protocol = \"tcp\"\nport = 7\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 3\nrise = 2";
    let dnsd = Dnsd::start(dir.path(), &lab_config(&lab, dir.path(), hb, ""), &[]).unwrap();
    let client = dnsd.client();
    let rt = runtime();
    let status = || -> Status { rt.block_on(client.status()).unwrap() };
    let dns = dnsd.dns();
    let answers = |want: &str| dig_short(dns, "www.svc.test.", "A") == vec![want.to_owned()];
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        if wait_for(Duration::from_secs(20), Duration::from_millis(20), || {
            f().then_some(())
        })
        .is_none()
        {
            panic!("{what} did not happen; dnsd log:\n{}", dnsd.log());
        }
    };

    wait("all hosts up", &|| {
        status().nodes.iter().all(|n| n.health == Health::Up)
    });
    assert!(answers(&hosts[0].addr.to_string()));

    lab.crash(&hosts[0]).unwrap();
    wait("www moves to h2 after h1 crashed", &|| {
        answers(&hosts[1].addr.to_string())
    });

    lab.cut(&hosts[1]).unwrap();
    wait("www moves to h3 after h2's link was cut", &|| {
        answers(&hosts[2].addr.to_string())
    });

    lab.revive(&hosts[0]).unwrap();
    lab.heal(&hosts[1]).unwrap();
    wait("h1 and h2 back up", &|| {
        let s = status();
        s.node(&hosts[0].name).unwrap().health == Health::Up
            && s.node(&hosts[1].name).unwrap().health == Health::Up
    });
    let s = status();
    let www = s.service("www").unwrap();
    assert_eq!(www.primary, hosts[2].name, "the primary stays on h3");
    assert_eq!(www.member(&hosts[0].name).unwrap().role, Role::Secondary);
    assert_eq!(www.member(&hosts[1].name).unwrap().role, Role::Secondary);
    assert!(answers(&hosts[2].addr.to_string()));
}
