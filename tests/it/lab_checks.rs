//! Service checks on lab hosts, with the real `dnsd` and `console`: each member runs a
//! real HTTP service (python3's `http.server`) beside its echo service, and `www` checks
//! it. Killing the service on the primary while its echo keeps answering: the restart
//! hook brings it back and nothing moves; with a restart hook that fails, the service
//! fails over once `restart_window` is over; a member whose service is flapped on purpose
//! is quarantined, `console status` shows it, and `console unquarantine` lifts it.
//!
//! Waits are bounded and nothing asserts how long anything took: only what happened and
//! in which order (event sequence numbers).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use dnsd_api::{Event, EventKind, Health, Status};
use integration::harness::{Dnsd, binary, dig_short, require_tools, runtime, wait_for};
use integration::lab::{Host, Lab, LabOptions};

use crate::lab_failover::lab_config;

const HEARTBEAT: &str =
    "protocol = \"tcp\"\nport = 7\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 3\nrise = 2";
pub(crate) const HTTP_PORT: u16 = 8080;
/// The longest any step is waited for (a bound, not an expectation).
const WAIT: Duration = Duration::from_secs(45);

/// Starts the host's HTTP service unless it answers already, logging the epoch it was
/// given, and returns once it accepts connections: the lab's `restart` hook, and how the
/// test starts the service in the first place (epoch "setup").
pub(crate) const START_HTTP: &str = r#"#!/bin/sh
addr=$1 epoch=$2
echo "$epoch" >> /srv/restarts.log
up() { socat -u /dev/null "TCP:$addr:8080,connect-timeout=1" 2>/dev/null; }
up && exit 0
setsid python3 -m http.server 8080 --bind "$addr" --directory /srv/data \
    </dev/null >/dev/null 2>&1 &
echo $! > /srv/http.pid
i=0
while [ $i -lt 100 ]; do
    up && exit 0
    sleep 0.1
    i=$((i + 1))
done
echo "http.server did not start on $addr:8080" >&2
exit 1
"#;

/// A restart hook that never works.
const FAIL_HTTP: &str = r#"#!/bin/sh
echo "$2" >> /srv/restarts.log
echo "the application will not start" >&2
exit 1
"#;

/// Three lab hosts with an HTTP service each, and dnsd checking it.
struct Setup {
    lab: Lab,
    dnsd: Dnsd,
    rt: tokio::runtime::Runtime,
    start_http: PathBuf,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// `service` adds keys to `www` (its check is set here); `restart` is the restart
    /// hook's script, if any.
    fn start(test: &str, restart: Option<&str>, service: &str) -> Option<Setup> {
        let lab = Lab::require(test, LabOptions::new(3))?;
        if !require_tools(test, &["python3"]) {
            return None;
        }
        // The lab's folder is visible inside every host: the scripts live there.
        let start_http = write_script(lab.dir(), "start-http", START_HTTP);
        for host in lab.hosts() {
            http(&lab, &start_http, host);
        }
        let dir = tempfile::tempdir().unwrap();
        let key = lab.client_key();
        let kh = lab.known_hosts();
        let mirror = format!(
            "[mirror]\nidentity = \"{key}\"\nknown_hosts = \"{kh}\"\npeer_identity = \"{key}\"\npeer_known_hosts = \"{kh}\"\nconnect_timeout = \"3s\"\nio_timeout = \"10s\"\nkeepalive = \"2s\"\n",
            key = key.display(),
            kh = kh.display()
        );
        let mut cfg = lab_config(&lab, dir.path(), HEARTBEAT, &mirror);
        cfg.push_str(&format!(
            "check = {{ kind = \"http\", port = {HTTP_PORT}, path = \"/\", expect = 200 }}\ncheck_interval = \"300ms\"\ncheck_timeout = \"250ms\"\ncheck_fall = 2\ncheck_rise = 2\n"
        ));
        if let Some(script) = restart {
            let hook = write_script(lab.dir(), "restart-hook", script);
            cfg.push_str(&format!(
                "restart = [\"sh\", \"{}\", \"{{address}}\", \"{{epoch}}\"]\n",
                hook.display()
            ));
        }
        cfg.push_str(service);
        cfg.push('\n');
        let dnsd = Dnsd::start(dir.path(), &cfg, &[]).unwrap();
        let s = Setup {
            lab,
            dnsd,
            rt: runtime(),
            start_http,
            _dir: dir,
        };
        s.wait("every host up and every check passing", |st| {
            let www = st.service("www")?;
            let hosts = st.nodes.iter().all(|n| n.health == Health::Up);
            let checks = www
                .members
                .iter()
                .all(|m| m.check.as_ref().is_some_and(|c| c.health == Health::Up));
            (hosts && checks).then_some(())
        });
        Some(s)
    }

    fn h(&self, i: usize) -> &Host {
        &self.lab.hosts()[i]
    }

    fn status(&self) -> Status {
        self.rt.block_on(self.dnsd.client().status()).unwrap()
    }

    fn events(&self) -> Vec<Event> {
        self.rt.block_on(self.dnsd.client().events(0)).unwrap()
    }

    fn wait<T>(&self, what: &str, f: impl Fn(&Status) -> Option<T>) -> T {
        self.dnsd.wait_status(&self.rt, what, WAIT, f)
    }

    fn wait_event(&self, what: &str, f: impl Fn(&Event) -> bool) -> Event {
        self.dnsd.wait_event(&self.rt, what, WAIT, f)
    }

    /// The check's verdict on member `i` of www.
    fn check(&self, st: &Status, i: usize) -> Option<Health> {
        let www = st.service("www")?;
        www.member(&self.h(i).name)?
            .check
            .as_ref()
            .map(|c| c.health)
    }

    fn kill_http(&self, i: usize) {
        self.lab
            .exec(self.h(i), &["sh", "-c", "kill \"$(cat /srv/http.pid)\""])
            .unwrap();
    }

    fn start_http(&self, i: usize) {
        http(&self.lab, &self.start_http, self.h(i));
    }

    /// The epochs the restart hook was run with on host `i` (the test's own starts left
    /// out).
    fn restarts(&self, i: usize) -> Vec<String> {
        let out = self
            .lab
            .exec(self.h(i), &["cat", "/srv/restarts.log"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| *l != "setup")
            .map(str::to_owned)
            .collect()
    }

    /// Runs `console ARGS` against this dnsd, stdin closed.
    fn console(&self, args: &[&str]) -> Output {
        let socket = self.dnsd.ready().control.clone().unwrap();
        Command::new(binary("console").unwrap())
            .arg("--socket")
            .arg(socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Heartbeat events about host `i` itself (no service): its echo stopped answering.
    fn host_went_down(&self, i: usize) -> bool {
        self.events().iter().any(|e| {
            e.kind == EventKind::NodeDown
                && e.service.is_none()
                && e.node.as_deref() == Some(&self.h(i).name)
        })
    }
}

pub(crate) fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the HTTP service on `host` (as the restart hook would, with epoch "setup").
pub(crate) fn http(lab: &Lab, script: &Path, host: &Host) {
    let script = script.display().to_string();
    let addr = host.addr.to_string();
    lab.exec(host, &["sh", &script, &addr, "setup"]).unwrap();
}

/// The check failed on the service's member `node` while its host answered.
fn service_down(e: &Event, node: &str) -> bool {
    e.kind == EventKind::NodeDown
        && e.service.as_deref() == Some("www")
        && e.node.as_deref() == Some(node)
}

#[test]
fn a_dead_service_on_a_live_primary_is_restarted_and_nothing_moves() {
    let test = "a_dead_service_on_a_live_primary_is_restarted_and_nothing_moves";
    let Some(s) = Setup::start(
        test,
        Some(START_HTTP),
        "restart_attempts = 2\nrestart_window = \"30s\"",
    ) else {
        return;
    };
    if !require_tools(test, &["dig"]) {
        return;
    }
    let h1 = s.h(0).name.clone();
    let before = s.status();
    let www = before.service("www").unwrap();
    assert_eq!(www.primary, h1);
    let epoch = www.epoch;

    s.kill_http(0);
    let down = s.wait_event("h1's check fails", |e| service_down(e, &h1));
    assert!(down.reason.contains("its host is up"), "{}", down.reason);
    let restarting = s.wait_event("a restart of h1 is ordered", |e| {
        e.kind == EventKind::Hook
            && e.reason.starts_with(&format!(
                "{h1}'s service check fails while its host answers: restarting it (attempt 1 of 2)"
            ))
    });
    s.wait("h1's check passes again and the recovery is over", |st| {
        let www = st.service("www")?;
        (s.check(st, 0) == Some(Health::Up) && www.recovery.is_none()).then_some(())
    });
    let recovered = s.wait_event("the recovery is recorded", |e| {
        e.kind == EventKind::Recovered && e.service.as_deref() == Some("www")
    });
    // The restart's own report may come before or after the check passes again.
    let done = s.wait_event("the restart's result", |e| {
        e.kind == EventKind::Hook
            && e.node.as_deref() == Some(h1.as_str())
            && e.reason.starts_with("restart ")
            && e.reason.contains(&format!("on {h1} done"))
    });
    assert!(
        down.seq < restarting.seq && restarting.seq < recovered.seq && restarting.seq < done.seq
    );

    let after = s.status();
    let www = after.service("www").unwrap();
    assert_eq!(
        (www.primary.as_str(), www.epoch),
        (h1.as_str(), epoch),
        "nothing moved"
    );
    assert!(
        !s.events().iter().any(|e| e.kind == EventKind::Failover),
        "no failover: {:#?}",
        s.events()
    );
    assert!(!s.host_went_down(0), "h1's echo kept answering");
    assert_eq!(
        dig_short(s.dnsd.dns(), "www.svc.test.", "A"),
        vec![s.h(0).addr.to_string()]
    );
    // The hook ran on h1, with the service's epoch.
    assert_eq!(s.restarts(0).first(), Some(&epoch.to_string()));
}

#[test]
fn when_the_restart_hook_fails_it_fails_over_after_the_restart_window() {
    let test = "when_the_restart_hook_fails_it_fails_over_after_the_restart_window";
    let Some(s) = Setup::start(
        test,
        Some(FAIL_HTTP),
        "restart_attempts = 2\nrestart_window = \"6s\"",
    ) else {
        return;
    };
    if !require_tools(test, &["dig"]) {
        return;
    }
    let (h1, h2) = (s.h(0).name.clone(), s.h(1).name.clone());
    s.kill_http(0);
    let down = s.wait_event("h1's check fails", |e| service_down(e, &h1));
    let failover = s.wait_event("www fails over", |e| e.kind == EventKind::Failover);
    assert_eq!(
        (
            failover.old_primary.as_deref(),
            failover.new_primary.as_deref()
        ),
        (Some(h1.as_str()), Some(h2.as_str()))
    );
    assert!(
        failover.reason.starts_with(&format!(
            "{h1}'s service check has not passed within 6s of failing, "
        )),
        "{}",
        failover.reason
    );
    // Restarts were tried, each failed, all before the failover.
    let events = s.events();
    let failed: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.kind == EventKind::Hook
                && e.reason.contains(&format!("on {h1} failed: "))
                && e.reason.contains("the application will not start")
        })
        .collect();
    assert!(!failed.is_empty(), "no failed restart: {events:#?}");
    assert!(
        failed
            .iter()
            .all(|e| down.seq < e.seq && e.seq < failover.seq),
        "{events:#?}"
    );
    assert!(!s.restarts(0).is_empty(), "the hook ran on h1");
    assert!(!s.host_went_down(0), "h1's echo kept answering");
    let st = s.status();
    assert_eq!(st.service("www").unwrap().primary, h2);
    let dns = s.dnsd.dns();
    let answered = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        (dig_short(dns, "www.svc.test.", "A") == vec![s.h(1).addr.to_string()]).then_some(())
    });
    assert!(answered.is_some(), "DNS does not answer h2");
}

#[test]
fn a_flapping_member_is_quarantined_and_the_console_shows_and_lifts_it() {
    let test = "a_flapping_member_is_quarantined_and_the_console_shows_and_lifts_it";
    let Some(s) = Setup::start(
        test,
        None,
        "flap_threshold = 2\nflap_window = \"5m\"\nhold_down = \"10m\"",
    ) else {
        return;
    };
    let h3 = s.h(2).name.clone();
    // Down, up, down: three changes of h3's health, one more than flap_threshold allows.
    for (k, up) in [false, true, false].into_iter().enumerate() {
        if up {
            s.start_http(2);
        } else {
            s.kill_http(2);
        }
        let want = if up { Health::Up } else { Health::Down };
        s.wait(&format!("change {} of h3's check", k + 1), |st| {
            (s.check(st, 2) == Some(want)).then_some(())
        });
    }
    let quarantined = s.wait_event("h3 is quarantined", |e| {
        e.kind == EventKind::Maintenance
            && e.node.as_deref() == Some(h3.as_str())
            && e.reason
                .starts_with(&format!("{h3} quarantined in www for 600s"))
    });
    assert!(
        quarantined.reason.contains("changed 3 times"),
        "{}",
        quarantined.reason
    );
    s.start_http(2);
    s.wait("h3 serves again, still quarantined", |st| {
        let m = st.service("www")?.member(&h3)?.clone();
        (s.check(st, 2) == Some(Health::Up) && m.quarantined_until_ms.is_some() && !m.eligible)
            .then_some(())
    });
    // Scrapers see it too.
    let metrics = s.rt.block_on(s.dnsd.client().metrics()).unwrap();
    for line in [
        format!("dnsd_member_quarantined{{service=\"www\",node=\"{h3}\"}} 1"),
        format!("dnsd_check_up{{service=\"www\",node=\"{h3}\"}} 1"),
        r#"dnsd_service_recovering{service="www"} 0"#.to_owned(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in:\n{metrics}"
        );
    }

    let out = s.console(&["status"]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{h3} ")))
        .unwrap_or_else(|| panic!("no row for h3:\n{table}"));
    assert!(row.contains("up, service up"), "{row}");
    assert!(row.contains("quarantined for flapping ("), "{row}");
    assert!(
        row.contains("skipped: is quarantined for flapping"),
        "{row}"
    );

    let out = s.console(&["unquarantine", &h3]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{h3} is no longer quarantined in www")
    );
    let st = s.status();
    let m = st.service("www").unwrap().member(&h3).unwrap();
    assert_eq!(m.quarantined_until_ms, None);
    assert!(m.eligible, "{m:?}");
    let again = s.console(&["unquarantine", &h3]);
    assert_eq!(again.status.code(), Some(3), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains(&format!("{h3} is not quarantined")),
        "{again:?}"
    );
}
