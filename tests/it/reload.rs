//! Live reconfiguration on loopback: the real `dnsd` re-reads its file on `SIGHUP` and on
//! `POST /v1/reload`. A member joins and the heartbeat's interval changes while dnsperf
//! loads DNS and a client asks without pause: no query is lost, every answer names the
//! same primary; the new
//! member is probed, answers under its name and shows in the status. A file with
//! problems, one that changes a listener, and one that drops the primary are refused,
//! each saying why, and dnsd runs on with what it had.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dnsd_api::{EventKind, Health};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use integration::harness::{Dnsd, EchoPool, dig_short, require_tools, runtime};

/// The configuration of `members` of the pool (the first `nodes` of it) with the given
/// heartbeat interval, and `extra` appended.
fn config(
    dir: &Path,
    pool: &EchoPool,
    nodes: usize,
    members: &str,
    interval_ms: u64,
    extra: &str,
) -> String {
    let tables: String = pool.addrs[..nodes]
        .iter()
        .enumerate()
        .map(|(i, a)| format!("[[node]]\nname = \"app{}\"\naddress = \"{a}\"\n", i + 1))
        .collect();
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
interval = "{interval_ms}ms"
timeout = "{timeout_ms}ms"
fall = 3
rise = 2
{extra}
[control]
socket = "{dir}/control.sock"
[state]
dir = "{dir}/state"
{tables}
[[service]]
name = "www"
nodes = [{members}]
"#,
        port = pool.port,
        timeout_ms = interval_ms * 4 / 5,
        dir = dir.display()
    )
}

/// Asks `www.svc.test. A` over UDP, one query at a time, until `stop` is set (at most
/// 100 000 queries or 120 s); each query waits up to 5 s for its answer. Returns how
/// many answers named each address, and how many queries got none.
fn ask_without_pause(dns: SocketAddr, stop: &AtomicBool) -> (BTreeMap<String, usize>, usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let name = Name::from_str("www.svc.test.").unwrap();
    let (mut answers, mut unanswered) = (BTreeMap::new(), 0);
    let started = Instant::now();
    for id in 0..100_000u32 {
        if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        let id = (id % 65_536) as u16;
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(name.clone(), RecordType::A));
        socket.send_to(&query.to_vec().unwrap(), dns).unwrap();
        let mut buf = [0u8; 512];
        let answer = loop {
            match socket.recv(&mut buf) {
                Ok(n) => match Message::from_vec(&buf[..n]) {
                    Ok(m) if m.metadata.id == id => break Some(m),
                    // A late answer to an earlier query: wait for this one's.
                    _ => continue,
                },
                Err(_) => break None,
            }
        };
        match answer {
            Some(m) => {
                let addrs: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
                *answers.entry(addrs.join(",")).or_default() += 1;
            }
            None => unanswered += 1,
        }
    }
    (answers, unanswered)
}

/// dnsperf asking for `www` at 1000 queries a second for `seconds` (each query waits up
/// to 5 s for its answer), started in the background; its output once it ends.
fn dnsperf(dir: &Path, dns: SocketAddr, seconds: u32) -> std::thread::JoinHandle<String> {
    let queries = dir.join("queries");
    std::fs::write(&queries, "www.svc.test. A\n").unwrap();
    let mut command = std::process::Command::new("dnsperf");
    command
        .args(["-s", &dns.ip().to_string(), "-p", &dns.port().to_string()])
        .arg("-d")
        .arg(&queries)
        .args([
            "-l",
            &seconds.to_string(),
            "-Q",
            "1000",
            "-t",
            "5",
            "-c",
            "1",
        ]);
    std::thread::spawn(move || {
        let out = integration::harness::output_within(&mut command, Duration::from_secs(60));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The count after `label` in dnsperf's summary ("  Queries lost:   0 (0.00%)").
fn dnsperf_count(out: &str, label: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.trim_start().starts_with(label))?;
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `POST /v1/reload` on the control socket; the status code and the body.
fn post_reload(socket: &Path) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"POST /v1/reload HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (code, body)
}

fn sighup(dnsd: &Dnsd) {
    // SAFETY: kill has no memory preconditions; the pid is the dnsd this test started.
    let rc = unsafe { libc::kill(dnsd.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "cannot send SIGHUP to dnsd");
}

#[test]
fn a_reload_adds_a_member_and_changes_the_heartbeat_without_a_lost_query_or_a_move() {
    if !require_tools(
        "a_reload_adds_a_member_and_changes_the_heartbeat",
        &["dig", "dnsperf"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = EchoPool::start(4).unwrap();
    let three = r#""app1", "app2", "app3""#;
    let four = r#""app1", "app2", "app3", "app4""#;
    let dnsd = Dnsd::start(
        dir.path(),
        &config(dir.path(), &pool, 3, three, 500, ""),
        &[],
    )
    .unwrap();
    let file = dnsd.config_path().to_owned();
    let socket = dnsd.ready().control.clone().unwrap();
    let rt = runtime();
    let before = dnsd.wait_status(&rt, "all three members up", Duration::from_secs(30), |s| {
        s.nodes
            .iter()
            .all(|n| n.health == Health::Up)
            .then(|| s.clone())
    });
    let www = before.service("www").unwrap().clone();
    assert_eq!(www.primary, "app1");
    let primary_addr = pool.addrs[0].to_string();
    let dns = dnsd.dns();

    // Clients keep asking while the file changes and dnsd takes it.
    let stop = Arc::new(AtomicBool::new(false));
    let asking = std::thread::spawn({
        let stop = stop.clone();
        move || ask_without_pause(dns, &stop)
    });
    let load = dnsperf(dir.path(), dns, 8);
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&file, config(dir.path(), &pool, 4, four, 300, "")).unwrap();
    sighup(&dnsd);
    let reloaded = dnsd.wait_event(&rt, "the reload", Duration::from_secs(30), |e| {
        e.kind == EventKind::Reloaded
    });
    assert_eq!(
        reloaded.reason,
        "configuration reloaded (SIGHUP): heartbeat: interval, timeout; node app4 added; \
         service www: members app1, app2, app3, app4 (were app1, app2, app3)"
    );
    // The new member is probed and, up, counts as a secondary.
    let after = dnsd.wait_status(&rt, "app4 up", Duration::from_secs(30), |s| {
        s.nodes
            .iter()
            .any(|n| n.name == "app4" && n.health == Health::Up)
            .then(|| s.clone())
    });
    let perf = load.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (answers, unanswered) = asking.join().unwrap();

    let sent = dnsperf_count(&perf, "Queries sent:");
    assert!(sent.is_some_and(|n| n > 0), "dnsperf sent nothing:\n{perf}");
    assert_eq!(dnsperf_count(&perf, "Queries lost:"), Some(0), "{perf}");

    assert_eq!(
        unanswered, 0,
        "queries without an answer during the reload: {answers:?}"
    );
    assert_eq!(
        answers.keys().collect::<Vec<_>>(),
        vec![&primary_addr],
        "every answer names the primary it had: {answers:?}"
    );
    assert!(answers[&primary_addr] > 0);
    let www_after = after.service("www").unwrap();
    assert_eq!(www_after.primary, "app1", "a reload moves nobody");
    assert_eq!(
        www_after.epoch, www.epoch,
        "a reload is no change of primary"
    );
    assert_eq!(www_after.members.len(), 4);
    assert!(
        after.serial > before.serial,
        "the zone changed: its serial grows"
    );
    assert_eq!(
        dig_short(dns, "app4.svc.test.", "A"),
        vec![pool.addrs[3].to_string()]
    );

    // A file with problems is refused whole, with every problem; dnsd runs on.
    let broken = config(dir.path(), &pool, 4, four, 300, "bogus = 1")
        .replace(r#"timeout = "240ms""#, r#"timeout = "2s""#);
    std::fs::write(&file, broken).unwrap();
    let (code, body) = post_reload(&socket);
    assert_eq!(code, 409, "{body}");
    let reply: dnsd_api::ActionReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply.kind, Some(dnsd_api::RefusalKind::ReloadRefused));
    assert!(
        reply
            .message
            .starts_with("reload refused, dnsd keeps its configuration: "),
        "{}",
        reply.message
    );
    assert!(
        reply.message.contains("heartbeat.bogus"),
        "{}",
        reply.message
    );
    assert!(
        reply.message.contains("heartbeat.timeout"),
        "{}",
        reply.message
    );

    // A listener cannot change under a running dnsd.
    let moved = config(dir.path(), &pool, 4, four, 300, "")
        .replace(r#"listen = ["127.0.0.1:0"]"#, r#"listen = ["127.0.0.1:1"]"#);
    std::fs::write(&file, moved).unwrap();
    let (code, body) = post_reload(&socket);
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("dns.listen cannot change while dnsd runs"),
        "{body}"
    );

    // Nor may a reload drop the primary: that is a promotion's job.
    let without_primary = config(dir.path(), &pool, 4, r#""app2", "app3", "app4""#, 300, "");
    std::fs::write(&file, without_primary).unwrap();
    let (code, body) = post_reload(&socket);
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("its primary app1 is not among its members"),
        "{body}"
    );

    // Each refusal is in the event log, and nothing moved.
    let events = rt.block_on(dnsd.client().events(0)).unwrap();
    let refusals = events
        .iter()
        .filter(|e| e.kind == EventKind::Refused && e.reason.starts_with("reload refused"))
        .count();
    assert_eq!(refusals, 3, "{events:#?}");
    let last = rt.block_on(dnsd.client().status()).unwrap();
    assert_eq!(last.service("www").unwrap().members.len(), 4);
    assert_eq!(last.service("www").unwrap().primary, "app1");
    assert_eq!(dig_short(dns, "www.svc.test.", "A"), vec![primary_addr]);

    let metrics = rt.block_on(dnsd.client().metrics()).unwrap();
    for line in [
        r#"dnsd_config_reloads_total{result="applied"} 1"#,
        r#"dnsd_config_reloads_total{result="refused"} 3"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in:\n{metrics}"
        );
    }

    // The same file again changes nothing.
    std::fs::write(&file, config(dir.path(), &pool, 4, four, 300, "")).unwrap();
    let (code, body) = post_reload(&socket);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("nothing changed"), "{body}");
}
