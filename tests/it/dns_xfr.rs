//! Zone transfers from the running `dnsd`, read with real clients: `dig` and `kdig`
//! (AXFR, IXFR from a serial in the journal, TSIG with the right and wrong keys, REFUSED
//! at once for addresses not in `dns.allow_transfer`) and hickory's client (AXFR and
//! IXFR, signed and unsigned). Also class and ANY hygiene.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use dnsd_api::{Action, Health};
use futures::StreamExt;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::DnsMultiplexer;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, RData, RecordType, TSigner};
use integration::dig::{dig, dig_short, kdig};
use integration::harness::{Dnsd, EchoPool, require_tools, runtime, wait_for};

/// The TSIG secret of these tests (base64 of 32 bytes).
const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ0KIQ==";
const WRONG_SECRET: &str = "d3JvbmctZ3JvbmctZ3Jvbmctd3JvbmchIQ0KIQ0KIQ==";

struct Setup {
    dnsd: Dnsd,
    pool: EchoPool,
    _dir: tempfile::TempDir,
}

/// dnsd serving `svc.test.` (www on app1, app2 as the other member) with `dns` keys
/// added to `[dns]`; both members up. `{key}` in `dns` is the path of a key file
/// holding [`SECRET`].
fn setup(dns: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("xfr.key");
    std::fs::write(&key, SECRET).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pool = EchoPool::start(2).unwrap();
    let config = format!(
        r#"
[dns]
listen = ["127.0.0.1:0"]
zone = "svc.test."
ttl = "5s"
nameservers = [{{ name = "ns1.svc.test.", address = "127.0.0.1" }}]
{dns}
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
{nodes}
[[service]]
name = "www"
nodes = ["app1", "app2"]
"#,
        dns = dns.replace("{key}", &key.display().to_string()),
        port = pool.port,
        dir = dir.path().display(),
        nodes = pool.node_tables(),
    );
    let dnsd = Dnsd::start(dir.path(), &config, &[]).unwrap();
    let client = dnsd.client();
    let rt = runtime();
    let up = wait_for(Duration::from_secs(30), Duration::from_millis(50), || {
        let s = rt.block_on(client.status()).ok()?;
        ["app1", "app2"]
            .iter()
            .all(|n| s.node(n).is_some_and(|n| n.health == Health::Up))
            .then_some(())
    });
    assert!(up.is_some(), "members never came up; log:\n{}", dnsd.log());
    Setup {
        dnsd,
        pool,
        _dir: dir,
    }
}

fn serial(dns: SocketAddr) -> u32 {
    let soa = dig_short(dns, "svc.test.", "SOA");
    soa[0].split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn promote(s: &Setup, node: &str) {
    let reply = runtime()
        .block_on(s.dnsd.client().act(&Action::Promote {
            service: None,
            node: node.into(),
        }))
        .unwrap();
    assert!(reply.accepted, "{reply:?}");
}

fn xfr_size(out: &str) -> Option<usize> {
    out.lines()
        .find_map(|l| l.strip_prefix(";; XFR size: "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn dig_transfers_the_zone_and_its_changes_and_others_are_refused_at_once() {
    let test = "dig_transfers_the_zone_and_its_changes_and_others_are_refused_at_once";
    if !require_tools(test, &["dig", "kdig"]) {
        return;
    }
    let s = setup(r#"allow_transfer = ["127.0.0.1"]"#);
    let dns = s.dnsd.dns();
    let (app1, app2) = (s.pool.addrs[0], s.pool.addrs[1]);
    let out = dig(dns, &["svc.test.", "AXFR"]);
    assert_eq!(
        xfr_size(&out),
        Some(7),
        "SOA, NS, app1, app2, ns1, www, SOA: {out}"
    );
    assert!(
        out.contains(&format!("www.svc.test.\t\t5\tIN\tA\t{app1}")),
        "{out}"
    );

    let first = serial(dns);
    promote(&s, "app2");
    let second = serial(dns);
    assert!(second > first);
    let out = dig(dns, &["svc.test.", &format!("IXFR={first}")]);
    assert_eq!(
        xfr_size(&out),
        Some(6),
        "SOA, old SOA, -www, new SOA, +www, SOA: {out}"
    );
    assert!(
        out.contains(&format!("www.svc.test.\t\t5\tIN\tA\t{app1}")),
        "removed: {out}"
    );
    assert!(
        out.contains(&format!("www.svc.test.\t\t5\tIN\tA\t{app2}")),
        "added: {out}"
    );
    let out = dig(dns, &["svc.test.", &format!("IXFR={second}")]);
    assert_eq!(xfr_size(&out), Some(1), "up to date: the SOA alone: {out}");

    // Another address: REFUSED in the first (and only) message, no waiting.
    for qtype in ["AXFR", &format!("IXFR={first}")] {
        let out = kdig(dns, &["-b", "127.0.0.2", "svc.test.", qtype]);
        assert!(out.contains("error 'REFUSED'"), "{qtype}: {out}");
    }
    let out = dig(dns, &["-b", "127.0.0.2", "svc.test.", "AXFR"]);
    assert!(out.contains("; Transfer failed."), "{out}");
    let metrics = runtime().block_on(s.dnsd.client().metrics()).unwrap();
    assert!(
        metrics.contains("dnsd_dns_transfers_total{kind=\"refused\"} 3"),
        "{metrics}"
    );
}

#[test]
fn transfers_need_the_tsig_key_and_wrong_keys_get_their_error() {
    let test = "transfers_need_the_tsig_key_and_wrong_keys_get_their_error";
    if !require_tools(test, &["dig", "kdig"]) {
        return;
    }
    let s = setup(
        r#"allow_transfer = ["127.0.0.0/8"]
tsig = { name = "xfr.", algorithm = "hmac-sha256", secret_file = "{key}" }"#,
    );
    let dns = s.dnsd.dns();
    let key = |name: &str, secret: &str| format!("hmac-sha256:{name}:{secret}");
    let out = dig(dns, &["-y", &key("xfr.", SECRET), "svc.test.", "AXFR"]);
    assert_eq!(xfr_size(&out), Some(7), "{out}");
    assert!(
        out.contains("TSIG\thmac-sha256."),
        "the answer is signed: {out}"
    );
    let out = kdig(dns, &["-y", &key("xfr.", SECRET), "svc.test.", "IXFR=1"]);
    assert!(out.contains("NOERROR") && !out.contains("ERROR:"), "{out}");

    // Unsigned, from an allowed address: refused.
    let out = kdig(dns, &["svc.test.", "AXFR"]);
    assert!(out.contains("error 'REFUSED'"), "{out}");
    // A key dnsd does not know: BADKEY. The right name with another secret: BADSIG.
    let out = dig(
        dns,
        &["-y", &key("other.", WRONG_SECRET), "svc.test.", "AXFR"],
    );
    assert!(
        out.contains("BADKEY") && out.contains("; Transfer failed."),
        "{out}"
    );
    let out = dig(
        dns,
        &["-y", &key("xfr.", WRONG_SECRET), "svc.test.", "AXFR"],
    );
    assert!(
        out.contains("BADSIG") && out.contains("; Transfer failed."),
        "{out}"
    );
    // Plain queries signed with the key get signed answers (what secondaries' SOA
    // queries need), over UDP and TCP.
    for t in ["+notcp", "+tcp"] {
        let out = dig(dns, &[t, "-y", &key("xfr.", SECRET), "svc.test.", "SOA"]);
        assert!(
            out.contains("status: NOERROR") && out.contains("TSIG PSEUDOSECTION"),
            "{t}: {out}"
        );
        assert!(!out.contains("Couldn't verify"), "{t}: {out}");
    }
    assert!(
        !s.dnsd.log().contains(SECRET),
        "the secret never reaches the log"
    );
}

#[test]
fn hickory_client_transfers_signed_and_unsigned() {
    let s = setup(
        r#"allow_transfer = ["127.0.0.1"]
tsig = { name = "xfr.", algorithm = "hmac-sha256", secret_file = "{key}" }"#,
    );
    let dns = s.dnsd.dns();
    let first = serial(dns);
    promote(&s, "app2");
    let app2 = s.pool.addrs[1].to_string();
    let zone = Name::from_str("svc.test.").unwrap();
    let secret = {
        use std::io::Write;
        // The key file's secret, decoded by the same tool an operator would use.
        let mut child = Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(SECRET.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().stdout
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let connect = |signer: Option<TSigner>| async move {
            let (stream, sender) = TcpClientStream::new(
                dns,
                None,
                Some(Duration::from_secs(5)),
                TokioRuntimeProvider::new(),
            );
            let mut mux = DnsMultiplexer::new(stream.await.unwrap(), sender);
            if let Some(signer) = signer {
                mux = mux.with_signer(signer);
            }
            let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(mux);
            tokio::spawn(bg);
            client
        };
        let signer = TSigner::new(
            secret,
            TsigAlgorithm::HmacSha256,
            Name::from_ascii("xfr.").unwrap(),
            300,
        )
        .unwrap();
        let mut signed = connect(Some(signer)).await;
        // AXFR: every record, www on the new primary.
        let answers: Vec<_> = signed
            .zone_transfer(zone.clone(), None)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .flat_map(|r| r.answers.clone())
            .collect();
        assert_eq!(answers.len(), 7, "{answers:#?}");
        assert!(
            answers.iter().any(|r| r.record_type() == RecordType::A
                && r.name.to_ascii() == "www.svc.test."
                && r.data.to_string() == app2),
            "{answers:#?}"
        );
        // IXFR from the first serial: the change from app1 to app2.
        let RData::SOA(mut soa) = answers[0].data.clone() else {
            panic!("AXFR does not start with the SOA: {answers:#?}");
        };
        soa.serial = first;
        // hickory's client wants the SOA's MNAME to be the zone's name.
        soa.mname = zone.clone();
        let ixfr: Vec<_> = signed
            .zone_transfer(zone.clone(), Some(soa))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .flat_map(|r| r.answers.clone())
            .collect();
        assert_eq!(ixfr.len(), 6, "{ixfr:#?}");

        // Unsigned: REFUSED.
        let mut unsigned = connect(None).await;
        let first = unsigned.zone_transfer(zone.clone(), None).next().await;
        let refused = match &first {
            Some(Ok(r)) => r.metadata.response_code == ResponseCode::Refused,
            Some(Err(e)) => e.to_string().contains("Refused"),
            None => false,
        };
        assert!(refused, "{first:?}");
    });
}

#[test]
fn only_class_in_is_served_and_any_at_the_apex_is_minimal() {
    let test = "only_class_in_is_served_and_any_at_the_apex_is_minimal";
    if !require_tools(test, &["dig", "kdig"]) {
        return;
    }
    let s = setup("");
    let dns = s.dnsd.dns();
    for t in ["+notcp", "+tcp"] {
        // version.bind is not answered: dnsd does not tell its version.
        let out = dig(dns, &[t, "-c", "CH", "version.bind.", "TXT"]);
        assert!(out.contains("status: REFUSED"), "{t}: {out}");
        for class in ["CH", "HS", "ANY"] {
            let out = dig(dns, &[t, "-c", class, "www.svc.test.", "A"]);
            assert!(out.contains("status: REFUSED"), "{t} {class}: {out}");
        }
        // RFC 8482: ANY at the apex is answered with the SOA alone.
        let out = dig(dns, &[t, "svc.test.", "ANY"]);
        assert!(
            out.contains("status: NOERROR") && out.contains("ANSWER: 1,"),
            "{t}: {out}"
        );
        assert!(out.contains("IN\tSOA\tns1.svc.test."), "{t}: {out}");
        // A transfer with no allow_transfer: refused, over UDP too.
        let out = kdig(dns, &[t, "svc.test.", "IXFR=1"]);
        assert!(out.contains("error 'REFUSED'"), "{t}: {out}");
    }
}
