//! Wire-level tests of the UDP responder: requests built and responses decoded with
//! hickory-proto, no sockets. The real-client tests (dig, hickory's client, over UDP
//! and TCP against the running binary) live in the integration tests.

use std::net::IpAddr;
use std::str::FromStr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as WireQuery, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::answer::{Outcome, Transport, respond};
use super::*;
use crate::config::SoaTimers;

/// The SOA timers of the test zones.
const TIMERS: SoaTimers = SoaTimers {
    refresh: 3600,
    retry: 600,
    expire: 86400,
};
/// The client every test query comes from.
const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Answers a datagram the way the UDP loop does: the shortcut, else the generic path.
fn answer_udp(s: &Snapshot, datagram: &[u8], out: &mut Vec<u8>) -> Option<ResponseCode> {
    udp::answer(s, &Access::default(), PEER, datagram, out).map(|(rcode, _)| rcode)
}

/// The generic path alone (what the shortcut is checked against).
fn answer_generic(s: &Snapshot, datagram: &[u8], out: &mut Vec<u8>) -> Option<ResponseCode> {
    match respond(
        s.zone(),
        &Access::default(),
        PEER,
        0,
        Transport::Udp,
        datagram,
        out,
    ) {
        Outcome::Answered(rcode) => Some(rcode),
        Outcome::TransferRefused => Some(ResponseCode::Refused),
        Outcome::Drop | Outcome::Transfer(_) => None,
    }
}

fn zone_with_nameservers(count: usize) -> Snapshot {
    let names: Vec<String> = (0..count).map(|i| format!("ns{i}.svc.test.")).collect();
    Snapshot::new(
        Zone::build(&ZoneSpec {
            origin: "svc.test.",
            serial: 42,
            ttl: 5,
            negative_ttl: 5,
            hostmaster: "hostmaster.svc.test.",
            soa: TIMERS,
            nameservers: names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), IpAddr::from([127, 0, 1, i as u8])))
                .collect(),
            hosts: vec![
                ("www", IpAddr::from([10, 0, 0, 11])),
                ("app1", IpAddr::from([10, 0, 0, 11])),
            ],
        })
        .unwrap(),
    )
}

fn request(name: &str, qtype: RecordType, edns: Option<(u16, u8)>) -> Message {
    let mut m = Message::new(0xbeef, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(WireQuery::query(Name::from_str(name).unwrap(), qtype));
    if let Some((payload, version)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        e.set_version(version);
        m.set_edns(e);
    }
    m
}

fn roundtrip(zone: &Snapshot, m: &Message) -> Option<(Message, usize)> {
    roundtrip_bytes(zone, &m.to_vec().unwrap())
}

fn roundtrip_bytes(zone: &Snapshot, bytes: &[u8]) -> Option<(Message, usize)> {
    let mut out = Vec::new();
    answer_udp(zone, bytes, &mut out)?;
    Some((Message::from_vec(&out).unwrap(), out.len()))
}

#[test]
fn answer_is_authoritative_echoes_the_question_and_copies_rd() {
    let z = zone_with_nameservers(1);
    // hickory lowercases names it encodes; write the mixed case into the wire bytes.
    let mut bytes = request("www.svc.test.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let at = bytes.windows(3).position(|w| w == b"www").unwrap();
    bytes[at..at + 3].copy_from_slice(b"WwW");
    let at = bytes.windows(4).position(|w| w == b"test").unwrap();
    bytes[at..at + 4].copy_from_slice(b"TEST");
    let (r, _) = roundtrip_bytes(&z, &bytes).unwrap();
    assert_eq!(r.metadata.id, 0xbeef);
    assert_eq!(r.metadata.message_type, MessageType::Response);
    assert!(r.metadata.authoritative);
    assert!(r.metadata.recursion_desired);
    assert!(!r.metadata.recursion_available);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        r.queries[0].name().to_string(),
        "WwW.svc.TEST.",
        "question case kept"
    );
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].data.to_string(), "10.0.0.11");
    assert!(r.edns.is_none(), "no OPT without EDNS in the query");
}

#[test]
fn answer_names_are_compressed_against_the_question() {
    let z = zone_with_nameservers(1);
    let query = request("www.svc.test.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let mut out = Vec::new();
    answer_udp(&z, &query, &mut out).unwrap();
    // Header, the question echoed, then the answer's owner as a pointer to the
    // question's name (offset 12), type, class, TTL, length and the address.
    let answer = &out[query.len()..];
    assert_eq!(&answer[..2], &[0xC0, 0x0C], "owner points at the question");
    assert_eq!(out.len(), query.len() + 2 + 10 + 4);
    // NXDOMAIN: the SOA's owner is the apex, a suffix of the question's name.
    let query = request("nope.svc.test.", RecordType::A, None)
        .to_vec()
        .unwrap();
    answer_udp(&z, &query, &mut out).unwrap();
    assert_eq!(&out[query.len()..query.len() + 2], &[0xC0, 12 + 5]);
}

#[test]
fn nxdomain_has_soa_in_authority() {
    let z = zone_with_nameservers(1);
    let (r, _) = roundtrip(&z, &request("nope.svc.test.", RecordType::A, None)).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative);
    assert_eq!(r.authorities.len(), 1);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn outside_the_zone_is_refused_without_aa() {
    let z = zone_with_nameservers(1);
    let (r, _) = roundtrip(&z, &request("example.com.", RecordType::A, None)).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.authoritative);
    assert!(r.answers.is_empty());
}

#[test]
fn edns_is_answered_with_our_payload_size() {
    let z = zone_with_nameservers(1);
    let (r, _) = roundtrip(
        &z,
        &request("www.svc.test.", RecordType::A, Some((4096, 0))),
    )
    .unwrap();
    let e = r.edns.expect("OPT in the response");
    assert_eq!(e.max_payload(), UDP_PAYLOAD);
    assert_eq!(e.version(), 0);
}

#[test]
fn edns_version_above_zero_gets_badvers() {
    let z = zone_with_nameservers(1);
    let (r, _) = roundtrip(
        &z,
        &request("www.svc.test.", RecordType::A, Some((1232, 1))),
    )
    .unwrap();
    // BADVERS (16) shares its value with BADSIG, which is how hickory decodes it.
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert!(r.edns.is_some());
}

#[test]
fn large_answer_without_edns_is_truncated_to_512() {
    let z = zone_with_nameservers(40);
    let (r, len) = roundtrip(&z, &request("svc.test.", RecordType::NS, None)).unwrap();
    assert!(len <= 512, "{len} bytes");
    assert!(r.metadata.truncation);
    assert!(
        r.answers.is_empty(),
        "a truncated answer carries no partial RRset"
    );
    assert_eq!(r.queries.len(), 1);
}

#[test]
fn large_answer_with_edns_fits_the_advertised_size_or_truncates() {
    let z = zone_with_nameservers(25);
    let (r, len) = roundtrip(&z, &request("svc.test.", RecordType::NS, Some((4096, 0)))).unwrap();
    assert!(len > 512 && len <= UDP_PAYLOAD as usize, "{len} bytes");
    assert!(
        !r.metadata.truncation,
        "25 NS with glue fit in {UDP_PAYLOAD} bytes"
    );
    assert_eq!(r.answers.len(), 25);
    assert_eq!(r.additionals.len(), 25);
    assert!(r.edns.is_some());

    let z = zone_with_nameservers(120);
    let (r, len) = roundtrip(&z, &request("svc.test.", RecordType::NS, Some((1000, 0)))).unwrap();
    assert!(len <= 1000, "{len} bytes");
    assert!(r.metadata.truncation);
    assert!(r.edns.is_some(), "OPT survives truncation");
}

#[test]
fn other_opcodes_get_notimp() {
    let z = zone_with_nameservers(1);
    let mut m = request("www.svc.test.", RecordType::A, None);
    m.metadata.op_code = OpCode::Status;
    let (r, _) = roundtrip(&z, &m).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn two_questions_get_formerr() {
    let z = zone_with_nameservers(1);
    let mut m = request("www.svc.test.", RecordType::A, None);
    m.add_query(WireQuery::query(
        Name::from_str("app1.svc.test.").unwrap(),
        RecordType::A,
    ));
    let (r, _) = roundtrip(&z, &m).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn responses_and_runts_are_dropped() {
    let z = zone_with_nameservers(1);
    let mut m = request("www.svc.test.", RecordType::A, None);
    m.metadata.message_type = MessageType::Response;
    assert!(roundtrip(&z, &m).is_none());
    let mut out = Vec::new();
    assert!(answer_udp(&z, &[1, 2, 3], &mut out).is_none());
}

#[test]
fn garbage_after_the_header_gets_formerr() {
    let z = zone_with_nameservers(1);
    let mut bytes = request("www.svc.test.", RecordType::A, None)
        .to_vec()
        .unwrap();
    bytes.truncate(bytes.len() - 3);
    let mut out = Vec::new();
    assert_eq!(
        answer_udp(&z, &bytes, &mut out),
        Some(ResponseCode::FormErr)
    );
    let r = Message::from_vec(&out).unwrap();
    assert_eq!(r.metadata.id, 0xbeef);
}

#[test]
fn stats_count_by_rcode() {
    let s = DnsStats::default();
    s.count(ResponseCode::NoError);
    s.count(ResponseCode::NoError);
    s.count(ResponseCode::NXDomain);
    s.count(ResponseCode::BADVERS);
    let snap = s.snapshot().responses;
    assert_eq!(snap[0], ("noerror", 2));
    assert_eq!(snap[1], ("nxdomain", 1));
    assert_eq!(snap[6], ("other", 1));
}

// ---------------------------------------------------------------------------
// The precomputed answers against the generic path.

mod fast_path {
    use super::*;
    use proptest::prelude::*;

    /// A zone with IPv4 and IPv6 members, in-zone and out-of-zone name servers and an
    /// empty non-terminal (`dns.svc.test.`).
    fn zone() -> Snapshot {
        Snapshot::new(
            Zone::build(&ZoneSpec {
                origin: "svc.test.",
                serial: 9,
                ttl: 5,
                negative_ttl: 3,
                hostmaster: "hostmaster.svc.test.",
                soa: TIMERS,
                nameservers: vec![
                    ("ns1.svc.test.", IpAddr::from([127, 0, 0, 1])),
                    ("ns2.dns.svc.test.", "::1".parse().unwrap()),
                    ("ns.example.net.", IpAddr::from([192, 0, 2, 1])),
                ],
                hosts: vec![
                    ("www", IpAddr::from([10, 0, 0, 11])),
                    ("app1", IpAddr::from([10, 0, 0, 11])),
                    ("app2", "fd00::12".parse().unwrap()),
                ],
            })
            .unwrap(),
        )
    }

    const NAMES: [&str; 8] = [
        "svc.test.",
        "www.svc.test.",
        "app1.svc.test.",
        "app2.svc.test.",
        "ns1.svc.test.",
        "ns2.dns.svc.test.",
        "dns.svc.test.",
        "hostmaster.svc.test.",
    ];

    fn wire_name(name: &str, upper: &[bool]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut k = 0;
        for label in name
            .trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
        {
            out.push(label.len() as u8);
            for b in label.bytes() {
                let up = upper.get(k).copied().unwrap_or(false);
                out.push(if up { b.to_ascii_uppercase() } else { b });
                k += 1;
            }
        }
        out.push(0);
        out
    }

    #[derive(Debug, Clone)]
    struct Q {
        id: u16,
        flags: u8,
        opcode: u8,
        name: String,
        upper: Vec<bool>,
        qtype: u16,
        qclass: u16,
        edns: Option<(u16, u8, bool, Vec<u8>)>,
    }

    impl Q {
        fn bytes(&self) -> Vec<u8> {
            let mut b = Vec::new();
            b.extend_from_slice(&self.id.to_be_bytes());
            b.push((self.opcode << 3) | (self.flags & 0x01));
            b.push(self.flags & 0x30);
            b.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(self.edns.is_some())]);
            b.extend(wire_name(&self.name, &self.upper));
            b.extend_from_slice(&self.qtype.to_be_bytes());
            b.extend_from_slice(&self.qclass.to_be_bytes());
            if let Some((payload, version, dnssec_ok, options)) = &self.edns {
                b.extend_from_slice(&[0, 0, 41]);
                b.extend_from_slice(&payload.to_be_bytes());
                b.extend_from_slice(&[0, *version, if *dnssec_ok { 0x80 } else { 0 }, 0]);
                b.extend_from_slice(&(options.len() as u16).to_be_bytes());
                b.extend_from_slice(options);
            }
            b
        }
    }

    fn query() -> impl Strategy<Value = Q> {
        let name = prop_oneof![
            4 => proptest::sample::select(NAMES.to_vec()).prop_map(str::to_owned),
            2 => "[a-z0-9]{1,20}(\\.[a-z0-9-]{1,12}){0,2}".prop_map(|p| format!("{p}.svc.test.")),
            1 => "[a-z0-9]{1,30}\\.(example|test|svc)".prop_map(|p| format!("{p}.")),
            1 => Just("test.".to_owned()),
        ];
        let qtype = prop_oneof![
            Just(1u16),
            Just(28),
            Just(6),
            Just(2),
            Just(255),
            Just(15),
            Just(16),
            Just(5),
            Just(251),
            Just(252),
            any::<u16>()
        ];
        let cookie = proptest::collection::vec(any::<u8>(), 8).prop_map(|c| {
            let mut o = vec![0, 10, 0, 8];
            o.extend(c);
            o
        });
        let edns = proptest::option::of((
            prop_oneof![Just(512u16), Just(1232), Just(4096), 0u16..5000],
            prop_oneof![6 => Just(0u8), 1 => Just(1u8)],
            any::<bool>(),
            prop_oneof![Just(Vec::new()), cookie],
        ));
        (
            any::<u16>(),
            any::<u8>(),
            prop_oneof![9 => Just(0u8), 1 => Just(2u8)],
            name,
            proptest::collection::vec(any::<bool>(), 0..40),
            qtype,
            prop_oneof![9 => Just(1u16), 1 => Just(3u16), 1 => Just(255u16)],
            edns,
        )
            .prop_map(|(id, flags, opcode, name, upper, qtype, qclass, edns)| Q {
                id,
                flags,
                opcode,
                name,
                upper,
                qtype,
                qclass,
                edns,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        /// Whatever the query, the answer (with the shortcut) decodes to the same message
        /// as the generic path's, and the question comes back byte for byte.
        #[test]
        fn fast_answers_equal_generic_answers(q in query()) {
            static ZONE: std::sync::OnceLock<Snapshot> = std::sync::OnceLock::new();
            let z = ZONE.get_or_init(zone);
            let bytes = q.bytes();
            let (mut fast, mut generic) = (Vec::new(), Vec::new());
            let a = answer_udp(z, &bytes, &mut fast);
            let b = answer_generic(z, &bytes, &mut generic);
            prop_assert_eq!(a, b);
            if a.is_none() {
                return Ok(());
            }
            let (fm, gm) = (Message::from_vec(&fast).unwrap(), Message::from_vec(&generic).unwrap());
            prop_assert_eq!(&fm, &gm, "fast {:?}\ngeneric {:?}", fast, generic);
            if fm.queries.len() == 1 {
                let qlen = wire_name(&q.name, &q.upper).len() + 4;
                prop_assert_eq!(&fast[12..12 + qlen], &bytes[12..12 + qlen], "question echoed as sent");
            }
            prop_assert!(fast.len() <= q.edns.as_ref().map_or(512, |e| e.0.clamp(512, UDP_PAYLOAD)) as usize);
        }

        /// The shortcut is also what TCP answers plain queries with: whenever it answers,
        /// the generic TCP answer decodes to the same message. And a client allowed to
        /// transfer changes nothing for plain queries (its AXFR and IXFR over UDP get
        /// TC from both paths).
        #[test]
        fn fast_answers_equal_tcp_answers_and_access_does_not_matter(q in query()) {
            static ZONE: std::sync::OnceLock<Snapshot> = std::sync::OnceLock::new();
            let z = ZONE.get_or_init(zone);
            let bytes = q.bytes();
            let allowed = Access::new(
                vec![crate::config::AddrPrefix::parse("127.0.0.1").unwrap()],
                None,
            );
            let (mut fast, mut tcp) = (Vec::new(), Vec::new());
            if z.fast().answer(&bytes, &mut fast).is_some() {
                let outcome = respond(z.zone(), &allowed, PEER, 0, Transport::Tcp, &bytes, &mut tcp);
                prop_assert!(matches!(outcome, Outcome::Answered(_)), "{:?}", outcome);
                prop_assert_eq!(Message::from_vec(&fast).unwrap(), Message::from_vec(&tcp).unwrap());
            }
            let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
            let a = udp::answer(z, &allowed, PEER, &bytes, &mut a_out).map(|(r, _)| r);
            let b = match respond(z.zone(), &allowed, PEER, 0, Transport::Udp, &bytes, &mut b_out) {
                Outcome::Answered(r) => Some(r),
                Outcome::TransferRefused => Some(ResponseCode::Refused),
                Outcome::Drop | Outcome::Transfer(_) => None,
            };
            prop_assert_eq!(a, b);
            if a.is_some() {
                prop_assert_eq!(Message::from_vec(&a_out).unwrap(), Message::from_vec(&b_out).unwrap());
            }
        }
    }

    #[test]
    fn plain_queries_take_the_shortcut() {
        let z = zone();
        let mut out = Vec::new();
        for (name, qtype, edns) in [
            ("WWW.svc.test.", 1u16, None),
            ("app2.svc.test.", 28, Some((1232u16, 0u8, false, vec![]))),
            ("svc.test.", 6, Some((4096, 0, true, vec![]))),
            ("svc.test.", 2, None),
            ("nope.svc.test.", 1, None),
            ("a.b.c.nope.svc.test.", 16, Some((512, 0, false, vec![]))),
            ("dns.svc.test.", 1, None),
            ("example.com.", 1, None),
        ] {
            let q = Q {
                id: 7,
                flags: 1,
                opcode: 0,
                name: name.into(),
                upper: vec![],
                qtype,
                qclass: 1,
                edns,
            };
            assert!(
                z.fast().answer(&q.bytes(), &mut out).is_some(),
                "{name} {qtype} fell back"
            );
        }
        // Not plain: another opcode, EDNS version 1, two questions, class CH.
        let q = Q {
            id: 7,
            flags: 1,
            opcode: 2,
            name: "www.svc.test.".into(),
            upper: vec![],
            qtype: 1,
            qclass: 1,
            edns: None,
        };
        assert!(z.fast().answer(&q.bytes(), &mut out).is_none());
        let q = Q {
            opcode: 0,
            edns: Some((1232, 1, false, vec![])),
            ..q
        };
        assert!(z.fast().answer(&q.bytes(), &mut out).is_none());
        let q = Q {
            edns: None,
            qclass: 3,
            ..q
        };
        assert!(z.fast().answer(&q.bytes(), &mut out).is_none());
        assert_eq!(
            z.fast().size(),
            7,
            "the apex, 5 owners (www, app1, app2, ns1, ns2.dns) and dns.svc.test."
        );
    }
}

// ---------------------------------------------------------------------------
// Zone transfers, the journal and TSIG, through the transports' own functions.

mod transfers {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use hickory_proto::rr::rdata::tsig::{TsigAlgorithm as WireAlgorithm, TsigError};
    use hickory_proto::rr::{RData, Record, TSigner};

    use crate::config::{AddrPrefix, TsigAlgorithm};

    const SECRET: &[u8] = b"a shared secret of 32 bytes, ok!";
    const SECONDARY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const STRANGER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    /// The test zone at `serial`, `www` on `www`, with `extra` more members.
    fn zone(serial: u32, www: [u8; 4], extra: usize) -> Zone {
        let names: Vec<String> = (0..extra).map(|i| format!("m{i}")).collect();
        let mut hosts = vec![
            ("www", IpAddr::from(www)),
            ("app1", IpAddr::from([10, 0, 0, 11])),
            ("app2", IpAddr::from([10, 0, 0, 12])),
        ];
        hosts.extend(names.iter().enumerate().map(|(i, n)| {
            (
                n.as_str(),
                IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8]),
            )
        }));
        Zone::build(&ZoneSpec {
            origin: "svc.test.",
            serial,
            ttl: 5,
            negative_ttl: 5,
            hostmaster: "hostmaster.svc.test.",
            soa: TIMERS,
            nameservers: vec![("ns1.svc.test.", IpAddr::from([127, 0, 0, 1]))],
            hosts,
        })
        .unwrap()
    }

    fn key(secret: &[u8]) -> TsigKey {
        TsigKey::new("xfr.", TsigAlgorithm::HmacSha256, secret.to_vec()).unwrap()
    }

    fn signer(name: &str, secret: &[u8]) -> TSigner {
        TSigner::new(
            secret.to_vec(),
            WireAlgorithm::HmacSha256,
            Name::from_ascii(name).unwrap(),
            300,
        )
        .unwrap()
    }

    fn access(key: Option<TsigKey>) -> Access {
        Access::new(vec![AddrPrefix::parse("127.0.0.2").unwrap()], key)
    }

    fn context(publisher: &ZonePublisher, access: Access) -> tcp::TcpContext {
        tcp::TcpContext {
            slot: publisher.slot(),
            access: Arc::new(access),
            stats: Arc::new(DnsStats::default()),
            connections: tcp::Connections::new(4),
            idle_timeout: Duration::from_secs(5),
        }
    }

    /// An AXFR, or an IXFR from `serial`.
    fn transfer_request(qtype: RecordType, serial: Option<u32>) -> Message {
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
        m.add_query(WireQuery::query(
            Name::from_str("svc.test.").unwrap(),
            qtype,
        ));
        if let Some(serial) = serial {
            let RData::SOA(mut soa) = zone(1, [0; 4], 0).soa().data.clone() else {
                panic!("not a SOA");
            };
            soa.serial = serial;
            m.add_authority(Record::from_rdata(
                Name::from_str("svc.test.").unwrap(),
                0,
                RData::SOA(soa),
            ));
        }
        m
    }

    /// The raw messages answering `bytes` over TCP.
    fn tcp_raw(c: &tcp::TcpContext, peer: IpAddr, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        match tcp::answer(c, peer, bytes, &mut out).unwrap() {
            tcp::Reply::One => vec![out],
            tcp::Reply::Transfer(messages) => messages,
        }
    }

    fn tcp_answers(c: &tcp::TcpContext, peer: IpAddr, m: &Message) -> Vec<Message> {
        tcp_raw(c, peer, &m.to_vec().unwrap())
            .iter()
            .map(|b| Message::from_vec(b).unwrap())
            .collect()
    }

    /// The answer records of every message, as "name type data" (SOAs by serial).
    fn records(messages: &[Message]) -> Vec<String> {
        messages
            .iter()
            .flat_map(|m| &m.answers)
            .map(|r| match &r.data {
                RData::SOA(soa) => format!("SOA {}", soa.serial),
                data => format!("{} {} {data}", r.name, r.record_type()),
            })
            .collect()
    }

    #[test]
    fn axfr_to_an_allowed_peer_holds_every_record_between_two_soas() {
        let p = ZonePublisher::new(zone(42, [10, 0, 0, 11], 0));
        let c = context(&p, access(None));
        let got = tcp_answers(&c, SECONDARY, &transfer_request(RecordType::AXFR, None));
        assert_eq!(got.len(), 1);
        assert!(got[0].metadata.authoritative);
        assert_eq!(got[0].metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            records(&got),
            vec![
                "SOA 42",
                "svc.test. NS ns1.svc.test.",
                "app1.svc.test. A 10.0.0.11",
                "app2.svc.test. A 10.0.0.12",
                "ns1.svc.test. A 127.0.0.1",
                "www.svc.test. A 10.0.0.11",
                "SOA 42",
            ]
        );
        assert_eq!(c.stats.snapshot().transfers[0], ("full", 1));
    }

    #[test]
    fn transfers_from_others_are_refused_at_once_on_both_transports() {
        let p = ZonePublisher::new(zone(42, [10, 0, 0, 11], 0));
        let c = context(&p, access(None));
        for qtype in [RecordType::AXFR, RecordType::IXFR] {
            let m = transfer_request(qtype, (qtype == RecordType::IXFR).then_some(41));
            let got = tcp_answers(&c, STRANGER, &m);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].metadata.response_code, ResponseCode::Refused);
            assert!(got[0].answers.is_empty());

            let mut out = Vec::new();
            let (rcode, counted) = udp::answer(
                &p.current(),
                &c.access,
                STRANGER,
                &m.to_vec().unwrap(),
                &mut out,
            )
            .unwrap();
            assert_eq!(rcode, ResponseCode::Refused);
            assert_eq!(counted, Some(TransferOutcome::Refused));
        }
        assert_eq!(c.stats.snapshot().transfers[2], ("refused", 2));
        // Nobody may transfer when allow_transfer is empty.
        let c = context(&p, Access::default());
        let got = tcp_answers(&c, SECONDARY, &transfer_request(RecordType::AXFR, None));
        assert_eq!(got[0].metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn transfers_over_udp_say_tc_to_allowed_peers() {
        let p = ZonePublisher::new(zone(42, [10, 0, 0, 11], 0));
        let a = access(None);
        let mut out = Vec::new();
        let m = transfer_request(RecordType::AXFR, None);
        let (rcode, _) =
            udp::answer(&p.current(), &a, SECONDARY, &m.to_vec().unwrap(), &mut out).unwrap();
        assert_eq!(rcode, ResponseCode::NoError);
        let r = Message::from_vec(&out).unwrap();
        assert!(r.metadata.truncation && r.answers.is_empty(), "{r:?}");
    }

    #[test]
    fn ixfr_answers_the_differences_the_journal_holds() {
        let p = ZonePublisher::new(zone(42, [10, 0, 0, 11], 0));
        p.publish(zone(43, [10, 0, 0, 12], 0));
        p.publish(zone(44, [10, 0, 0, 11], 0));
        let c = context(&p, access(None));
        let ixfr = |serial| {
            records(&tcp_answers(
                &c,
                SECONDARY,
                &transfer_request(RecordType::IXFR, Some(serial)),
            ))
        };
        assert_eq!(
            ixfr(42),
            vec![
                "SOA 44",
                "SOA 42",
                "www.svc.test. A 10.0.0.11",
                "SOA 43",
                "www.svc.test. A 10.0.0.12",
                "SOA 43",
                "www.svc.test. A 10.0.0.12",
                "SOA 44",
                "www.svc.test. A 10.0.0.11",
                "SOA 44",
            ]
        );
        assert_eq!(ixfr(43).len(), 6);
        assert_eq!(ixfr(44), vec!["SOA 44"], "up to date: the SOA alone");
        assert_eq!(ixfr(45), vec!["SOA 44"], "newer than ours: the SOA alone");
        let full = ixfr(7);
        assert_eq!(
            full.len(),
            7,
            "a serial the journal lacks gets the whole zone: {full:#?}"
        );
        assert_eq!((full[0].as_str(), full[6].as_str()), ("SOA 44", "SOA 44"));
        let t = c.stats.snapshot().transfers;
        assert_eq!((t[0], t[1]), (("full", 1), ("incremental", 4)));
    }

    #[test]
    fn the_journal_keeps_the_last_versions_only() {
        let p = ZonePublisher::new(zone(1, [10, 0, 0, 11], 0));
        for serial in 2..(journal::VERSIONS as u32 + 10) {
            p.publish(zone(serial, [10, 0, 0, 11 + (serial % 2) as u8], 0));
        }
        let s = p.current();
        assert_eq!(s.journal().len(), journal::VERSIONS);
        assert!(s.journal().since(1).is_none());
        let last = s.zone().serial();
        assert_eq!(s.journal().since(last - 3).map(|d| d.len()), Some(3));
        // Republishing the same zone changes nothing; changing it under the same serial
        // leaves no version the journal could name, so it starts afresh.
        p.publish(zone(last, [10, 0, 0, 11 + (last % 2) as u8], 0));
        assert_eq!(p.current().journal().len(), journal::VERSIONS);
        p.publish(zone(last, [10, 9, 9, 9], 0));
        assert_eq!(p.current().journal().len(), 0);
    }

    #[test]
    fn signed_axfr_is_signed_on_every_message_in_a_chain_hickory_verifies() {
        let p = ZonePublisher::new(zone(42, [10, 0, 0, 11], 450));
        let c = context(&p, access(Some(key(SECRET))));
        let mut m = transfer_request(RecordType::AXFR, None);
        let mut verifier = m
            .finalize(&signer("xfr.", SECRET), tsig::now_secs())
            .unwrap()
            .unwrap();
        let bytes = m.to_vec().unwrap();
        let messages = tcp_raw(&c, SECONDARY, &bytes);
        assert_eq!(messages.len(), 3, "456 records, 200 a message");
        let mut count = 0;
        for raw in &messages {
            let r = verifier
                .verify(raw)
                .expect("every message verifies in order");
            count += r.answers.len();
        }
        assert_eq!(
            count,
            450 + 4 + 1 + 2,
            "the hosts, www, app1, app2, ns1 glue, NS, 2 SOA"
        );
    }

    #[test]
    fn a_key_makes_signing_required_and_wrong_keys_get_their_tsig_error() {
        let p = ZonePublisher::new(zone(42, [10, 0, 0, 11], 0));
        let c = context(&p, access(Some(key(SECRET))));
        // Unsigned, from an allowed address: refused.
        let got = tcp_answers(&c, SECONDARY, &transfer_request(RecordType::AXFR, None));
        assert_eq!(got[0].metadata.response_code, ResponseCode::Refused);
        // Signed with a key of another name: NOTAUTH, BADKEY, unsigned.
        let signed_with = |s: TSigner| {
            let mut m = transfer_request(RecordType::AXFR, None);
            m.finalize(&s, tsig::now_secs()).unwrap();
            tcp_answers(&c, SECONDARY, &m).remove(0)
        };
        let tsig_error = |r: &Message| match r.signature() {
            Some(sig) => sig.data.error,
            None => panic!("no TSIG in {r:?}"),
        };
        let r = signed_with(signer("other.", SECRET));
        assert_eq!(r.metadata.response_code, ResponseCode::NotAuth);
        assert_eq!(tsig_error(&r), Some(TsigError::BadKey));
        // Our key's name with another secret: NOTAUTH, BADSIG.
        let r = signed_with(signer("xfr.", b"another secret of 32 bytes, no!!"));
        assert_eq!(r.metadata.response_code, ResponseCode::NotAuth);
        assert_eq!(tsig_error(&r), Some(TsigError::BadSig));
        assert!(r.answers.is_empty());
        // Signed a day ago: NOTAUTH, BADTIME (signed, so the client can trust it).
        let mut m = transfer_request(RecordType::AXFR, None);
        m.finalize(&signer("xfr.", SECRET), tsig::now_secs() - 86400)
            .unwrap();
        let r = tcp_answers(&c, SECONDARY, &m).remove(0);
        assert_eq!(r.metadata.response_code, ResponseCode::NotAuth);
        assert_eq!(tsig_error(&r), Some(TsigError::BadTime));
    }

    #[test]
    fn signed_queries_get_signed_answers_over_udp() {
        let p = ZonePublisher::new(zone(42, [10, 0, 0, 11], 0));
        let a = access(Some(key(SECRET)));
        let mut m = request("svc.test.", RecordType::SOA, None);
        let mut verifier = m
            .finalize(&signer("xfr.", SECRET), tsig::now_secs())
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let (rcode, _) =
            udp::answer(&p.current(), &a, STRANGER, &m.to_vec().unwrap(), &mut out).unwrap();
        assert_eq!(rcode, ResponseCode::NoError);
        let r = verifier.verify(&out).expect("signed with the key");
        assert_eq!(r.answers.len(), 1);
        assert!(out.len() <= answer::CLASSIC_UDP_LIMIT as usize);
    }
}

// ---------------------------------------------------------------------------
// TCP limits and watched tasks, on real sockets on loopback.

mod serving {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::config::{DnsConfig, SoaTimers};

    fn config(max: usize) -> DnsConfig {
        DnsConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            zone: "svc.test.".into(),
            ttl: 5,
            negative_ttl: 5,
            hostmaster: "hostmaster.svc.test.".into(),
            nameservers: vec![],
            soa: SoaTimers {
                refresh: 3600,
                retry: 600,
                expire: 86400,
            },
            threads: 2,
            tcp_max_connections: max,
            tcp_idle_timeout: Duration::from_secs(30),
            allow_transfer: vec![],
            tsig: None,
            notify: vec![],
            notify_retry: Duration::from_secs(2),
        }
    }

    fn publisher() -> ZonePublisher {
        ZonePublisher::new(zone_with_nameservers(1).zone().clone())
    }

    /// One query over an open TCP connection; the answer's response code.
    async fn ask(stream: &mut TcpStream) -> std::io::Result<ResponseCode> {
        let q = request("www.svc.test.", RecordType::A, None)
            .to_vec()
            .unwrap();
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend(q);
        stream.write_all(&framed).await?;
        let len = stream.read_u16().await?;
        let mut buf = vec![0; usize::from(len)];
        stream.read_exact(&mut buf).await?;
        Ok(Message::from_vec(&buf).unwrap().metadata.response_code)
    }

    #[tokio::test]
    async fn idle_connections_at_the_cap_make_room_for_new_clients() {
        let listeners = Listeners::bind(&config(3)).await.unwrap();
        let addr = listeners.local_addrs()[0];
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(
            listeners,
            publisher(),
            Arc::new(DnsStats::default()),
            cancel.clone(),
        ));
        // Three clients hold connections open without asking anything more; each new
        // client still gets its answer, and pushes out the connection idle longest. (On
        // this current-thread runtime a connection is back to idle, waiting for its next
        // query, before the client reading its answer runs again.)
        let mut idle = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            assert_eq!(ask(&mut s).await.unwrap(), ResponseCode::NoError);
            idle.push(s);
        }
        for _ in 0..5 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            assert_eq!(ask(&mut s).await.unwrap(), ResponseCode::NoError);
        }
        // The first connection was closed to make room: reading gives end of file.
        let mut first = idle.remove(0);
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), first.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        cancel.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let mut c = config(8);
        c.tcp_idle_timeout = Duration::from_millis(200);
        let listeners = Listeners::bind(&c).await.unwrap();
        let addr = listeners.local_addrs()[0];
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(
            listeners,
            publisher(),
            Arc::new(DnsStats::default()),
            cancel.clone(),
        ));
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut s).await.unwrap(), ResponseCode::NoError);
        // Bounded by the test's own timeout, not by a guess at how long dnsd waits.
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "closed by the server: {read:?}"
        );
        cancel.cancel();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn the_cap_closes_a_newcomer_only_when_every_connection_is_busy() {
        let conns = tcp::Connections::new(2);
        let stop = CancellationToken::new();
        let (_, a) = conns.admit(&stop).unwrap();
        let (_, b) = conns.admit(&stop).unwrap();
        a.set_busy();
        b.set_busy();
        assert!(conns.admit(&stop).is_none(), "both busy: no room");
        b.set_idle(5);
        let (_, c) = conns.admit(&stop).unwrap();
        assert!(b.close.is_cancelled(), "the idle one made room");
        assert!(!a.close.is_cancelled() && !c.close.is_cancelled());
        assert_eq!(conns.len(), 2);
    }

    #[tokio::test]
    async fn serve_fails_when_a_tcp_listener_dies() {
        let listeners = Listeners::bind(&config(8)).await.unwrap();
        let fd = listeners.tcp[0].as_raw_fd();
        let addr = listeners.local_addrs()[0];
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(
            listeners,
            publisher(),
            Arc::new(DnsStats::default()),
            cancel.clone(),
        ));
        // Inject the failure: shut the listening socket down under the server.
        // SAFETY: `fd` is the listener serve owns, open until serve returns; shutdown(2)
        // does not close it, only makes accept fail.
        assert_eq!(unsafe { libc::shutdown(fd, libc::SHUT_RDWR) }, 0);
        let result = tokio::time::timeout(Duration::from_secs(30), server).await;
        let err = match result {
            Ok(Ok(Err(e))) => e,
            other => panic!("serve did not fail: {other:?}"),
        };
        assert!(
            err.to_string()
                .starts_with(&format!("DNS TCP listener {addr} failed: ")),
            "{err}"
        );
        assert!(!cancel.is_cancelled(), "it ended by itself");
    }
}
