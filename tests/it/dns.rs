//! DNS answers of the running `dnsd`, read with real clients: `dig` (BIND's dnsutils)
//! and hickory's client, over UDP and TCP.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use dnsd_api::{Action, Health};
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use integration::harness::{Dnsd, EchoPool, dig, dig_short, require_tools, runtime, wait_for};

/// Name servers in the test zone: enough that the NS answer with glue exceeds 512 bytes.
const NAMESERVERS: usize = 30;

struct Setup {
    dnsd: Dnsd,
    app1: IpAddr,
    app2: IpAddr,
    _pool: EchoPool,
    _dir: tempfile::TempDir,
}

/// dnsd serving `svc.test.` with members app1 (IPv4) and app2 (::1 is not unique per
/// test, so app2 is IPv4 too) answering their heartbeat, and app6 on IPv6 loopback.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pool = EchoPool::start(2).unwrap();
    let (port, app1, app2) = (pool.port, pool.addrs[0], pool.addrs[1]);
    let nameservers: Vec<String> = (0..NAMESERVERS)
        .map(|i| format!("{{ name = \"ns{i}.svc.test.\", address = \"127.0.1.{i}\" }}"))
        .chain(std::iter::once(
            "{ name = \"ns.example.net.\", address = \"127.0.2.1\" }".to_owned(),
        ))
        .collect();
    let config = format!(
        r#"
[dns]
listen = ["127.0.0.1:0"]
zone = "svc.test."
ttl = "5s"
negative_ttl = "3s"
soa_refresh = "1h"
soa_retry = "10m"
soa_expire = "1d"
nameservers = [{ns}]
[heartbeat]
protocol = "tcp"
port = {port}
interval = "100ms"
timeout = "80ms"
fall = 2
rise = 1
[control]
socket = "{dir}/control.sock"
[state]
dir = "{dir}/state"
{nodes}[[node]]
name = "app6"
address = "::1"
[[service]]
name = "www"
nodes = ["app1", "app2"]
"#,
        ns = nameservers.join(", "),
        dir = dir.path().display(),
        nodes = pool.node_tables(),
    );
    let dnsd = Dnsd::start(dir.path(), &config, &[]).unwrap();
    // Wait until both members answer, so the serial test can promote app2.
    let client = dnsd.client();
    let rt = runtime();
    let up = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        let s = rt.block_on(client.status()).ok()?;
        let all = ["app1", "app2"]
            .iter()
            .all(|n| s.node(n).is_some_and(|n| n.health == Health::Up));
        all.then_some(())
    });
    assert!(up.is_some(), "members never came up; log:\n{}", dnsd.log());
    Setup {
        dnsd,
        app1,
        app2,
        _pool: pool,
        _dir: dir,
    }
}

/// Both transports, for dig.
const TRANSPORTS: [&str; 2] = ["+notcp", "+tcp"];

#[test]
fn dig_sees_every_kind_of_answer_over_udp_and_tcp() {
    if !require_tools("dig_sees_every_kind_of_answer_over_udp_and_tcp", &["dig"]) {
        return;
    }
    let s = setup();
    let dns = s.dnsd.dns();
    for t in TRANSPORTS {
        // A service: the primary, authoritative, with our TTL.
        let out = dig(dns, &[t, "+norec", "www.svc.test.", "A"]);
        assert!(out.contains("status: NOERROR"), "{t}: {out}");
        assert!(out.contains("flags: qr aa"), "{t}: AA missing: {out}");
        assert!(
            out.contains(&format!("www.svc.test.\t\t5\tIN\tA\t{}", s.app1)),
            "{t}: {out}"
        );

        // A member, by name; IPv6 member via AAAA.
        assert_eq!(
            dig_short(dns, "app2.svc.test.", "A"),
            vec![s.app2.to_string()],
            "{t}"
        );
        let out = dig(dns, &[t, "app6.svc.test.", "AAAA"]);
        assert!(
            out.contains("app6.svc.test.\t\t5\tIN\tAAAA\t::1"),
            "{t}: {out}"
        );

        // NODATA: the name exists, not the type. SOA in authority, AA set.
        let out = dig(dns, &[t, "app1.svc.test.", "AAAA"]);
        assert!(
            out.contains("status: NOERROR") && out.contains("ANSWER: 0"),
            "{t}: {out}"
        );
        assert!(out.contains("flags: qr aa"), "{t}: {out}");
        assert!(
            out.contains(
                ";; AUTHORITY SECTION:\nsvc.test.\t\t5\tIN\tSOA\tns0.svc.test. hostmaster.svc.test."
            ),
            "{t}: {out}"
        );

        // NXDOMAIN with the SOA (its minimum is the negative TTL).
        let out = dig(dns, &[t, "nope.svc.test.", "A"]);
        assert!(
            out.contains("status: NXDOMAIN") && out.contains("flags: qr aa"),
            "{t}: {out}"
        );
        assert!(
            out.contains("3600 600 86400 3\n"),
            "{t}: negative TTL in SOA minimum: {out}"
        );

        // Apex: SOA and NS (NS with glue for in-zone servers only).
        let soa = dig_short(dns, "svc.test.", "SOA");
        assert_eq!(soa.len(), 1, "{t}: {soa:?}");
        assert!(
            soa[0].starts_with("ns0.svc.test. hostmaster.svc.test. "),
            "{t}: {soa:?}"
        );

        // Outside the zone: REFUSED, not authoritative, never recursed.
        let out = dig(dns, &[t, "example.com.", "A"]);
        assert!(out.contains("status: REFUSED"), "{t}: {out}");
        assert!(!out.contains("flags: qr aa"), "{t}: {out}");
        let out = dig(dns, &[t, "test.", "SOA"]);
        assert!(
            out.contains("status: REFUSED"),
            "{t}: the parent is not ours: {out}"
        );

        // Names are case-insensitive; the question comes back as asked.
        let out = dig(dns, &[t, "WwW.SvC.TeSt.", "A"]);
        assert!(
            out.contains("status: NOERROR") && out.contains(&s.app1.to_string()),
            "{t}: {out}"
        );
        assert!(
            out.contains(";WwW.SvC.TeSt.\t\t\tIN\tA"),
            "{t}: question case: {out}"
        );
    }
}

#[test]
fn edns_and_truncation_over_udp_then_full_answer_over_tcp() {
    if !require_tools(
        "edns_and_truncation_over_udp_then_full_answer_over_tcp",
        &["dig"],
    ) {
        return;
    }
    let s = setup();
    let dns = s.dnsd.dns();

    // EDNS is answered with our payload size; no OPT when the query had none.
    let out = dig(dns, &["www.svc.test.", "A"]);
    assert!(
        out.contains("; EDNS: version: 0, flags:; udp: 1232"),
        "{out}"
    );
    let out = dig(dns, &["+noedns", "www.svc.test.", "A"]);
    assert!(!out.contains("OPT PSEUDOSECTION"), "{out}");
    let out = dig(
        dns,
        &["+edns=1", "+noednsnegotiation", "www.svc.test.", "A"],
    );
    assert!(out.contains("status: BADVERS"), "{out}");

    // 31 NS records with 30 glue records do not fit in 512 bytes: TC without EDNS.
    let out = dig(dns, &["+noedns", "+ignore", "svc.test.", "NS"]);
    assert!(out.contains("flags: qr aa tc"), "TC expected: {out}");
    let size: usize = out
        .lines()
        .find_map(|l| l.strip_prefix(";; MSG SIZE  rcvd: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!(size <= 512, "{size} bytes over UDP without EDNS");

    // With EDNS (1232 bytes) it fits; over TCP it always does.
    let out = dig(dns, &["+ignore", "svc.test.", "NS"]);
    assert!(!out.contains(" tc"), "{out}");
    assert!(
        out.contains(&format!("ANSWER: {}", NAMESERVERS + 1)),
        "{out}"
    );
    assert!(
        out.contains(&format!("ADDITIONAL: {}", NAMESERVERS + 1)),
        "30 glue + OPT: {out}"
    );
    let out = dig(dns, &["+tcp", "+noedns", "svc.test.", "NS"]);
    assert!(!out.contains(" tc"), "{out}");
    assert!(
        out.contains(&format!("ANSWER: {}", NAMESERVERS + 1)),
        "{out}"
    );
    assert!(
        out.contains("ns0.svc.test.\t\t5\tIN\tA\t127.0.1.0"),
        "glue: {out}"
    );
    assert!(
        !out.contains("ns.example.net.\t\t5\tIN\tA"),
        "no glue outside the zone: {out}"
    );

    // +dnssec sets DO; we still answer (no signatures).
    let out = dig(dns, &["+dnssec", "www.svc.test.", "A"]);
    assert!(out.contains("status: NOERROR"), "{out}");
}

#[test]
fn serial_grows_on_every_role_change() {
    if !require_tools("serial_grows_on_every_role_change", &["dig"]) {
        return;
    }
    let s = setup();
    let dns = s.dnsd.dns();
    let serial = || -> u32 {
        let soa = dig_short(dns, "svc.test.", "SOA");
        soa[0].split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let before = serial();
    let client = s.dnsd.client();
    let rt = runtime();
    let reply = rt
        .block_on(client.act(&Action::Promote {
            service: None,
            node: "app2".into(),
        }))
        .unwrap();
    assert!(reply.accepted, "{reply:?}");
    let after = serial();
    assert!(after > before, "serial {before} -> {after}");
    assert_eq!(
        dig_short(dns, "www.svc.test.", "A"),
        vec![s.app2.to_string()]
    );
    let reply = rt
        .block_on(client.act(&Action::Promote {
            service: None,
            node: "app1".into(),
        }))
        .unwrap();
    assert!(reply.accepted, "{reply:?}");
    assert!(serial() > after);
    assert_eq!(
        dig_short(dns, "www.svc.test.", "A"),
        vec![s.app1.to_string()]
    );
}

#[test]
fn hickory_client_over_udp_and_tcp() {
    let s = setup();
    let dns = s.dnsd.dns();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let udp = UdpClientStream::builder(dns, TokioRuntimeProvider::default()).build();
        let (mut udp, bg) = Client::<TokioRuntimeProvider>::from_sender(udp);
        tokio::spawn(bg);
        let (tcp, sender) = TcpClientStream::new(
            dns,
            None,
            Some(Duration::from_secs(5)),
            TokioRuntimeProvider::new(),
        );
        let (mut tcp, bg) = Client::<TokioRuntimeProvider>::new(tcp.await.unwrap(), sender);
        tokio::spawn(bg);

        for client in [&mut udp, &mut tcp] {
            let r = client
                .query(
                    Name::from_str("www.svc.test.").unwrap(),
                    DNSClass::IN,
                    RecordType::A,
                )
                .await
                .unwrap();
            assert!(r.metadata.authoritative);
            let addrs: Vec<IpAddr> = r
                .answers
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })
                .collect();
            assert_eq!(addrs, vec![s.app1]);

            let r = client
                .query(
                    Name::from_str("missing.svc.test.").unwrap(),
                    DNSClass::IN,
                    RecordType::A,
                )
                .await
                .unwrap();
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
            assert_eq!(r.authorities[0].record_type(), RecordType::SOA);

            let r = client
                .query(
                    Name::from_str("svc.test.").unwrap(),
                    DNSClass::IN,
                    RecordType::NS,
                )
                .await
                .unwrap();
            assert_eq!(r.answers.len(), NAMESERVERS + 1);

            let r = client
                .query(
                    Name::from_str("elsewhere.org.").unwrap(),
                    DNSClass::IN,
                    RecordType::A,
                )
                .await
                .unwrap();
            assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        }
    });
}
