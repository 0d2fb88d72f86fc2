//! Wire-level tests of the UDP responder: requests built and responses decoded with
//! hickory-proto, no sockets. The real-client tests (dig, hickory's client, over UDP
//! and TCP against the running binary) live in the integration tests.

use std::net::IpAddr;
use std::str::FromStr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as WireQuery, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::*;

fn zone_with_nameservers(count: usize) -> Zone {
    let names: Vec<String> = (0..count).map(|i| format!("ns{i}.svc.test.")).collect();
    Zone::build(&ZoneSpec {
        origin: "svc.test.",
        serial: 42,
        ttl: 5,
        negative_ttl: 5,
        hostmaster: "hostmaster.svc.test.",
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
    .unwrap()
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

fn roundtrip(zone: &Zone, m: &Message) -> Option<(Message, usize)> {
    roundtrip_bytes(zone, &m.to_vec().unwrap())
}

fn roundtrip_bytes(zone: &Zone, bytes: &[u8]) -> Option<(Message, usize)> {
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
    let snap = s.snapshot();
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
    fn zone() -> Zone {
        Zone::build(&ZoneSpec {
            origin: "svc.test.",
            serial: 9,
            ttl: 5,
            negative_ttl: 3,
            hostmaster: "hostmaster.svc.test.",
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
        .unwrap()
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
            static ZONE: std::sync::OnceLock<Zone> = std::sync::OnceLock::new();
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
                z.fast.answer(&q.bytes(), &mut out).is_some(),
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
        assert!(z.fast.answer(&q.bytes(), &mut out).is_none());
        let q = Q {
            opcode: 0,
            edns: Some((1232, 1, false, vec![])),
            ..q
        };
        assert!(z.fast.answer(&q.bytes(), &mut out).is_none());
        let q = Q {
            edns: None,
            qclass: 3,
            ..q
        };
        assert!(z.fast.answer(&q.bytes(), &mut out).is_none());
        assert_eq!(
            z.fast.size(),
            7,
            "the apex, 5 owners (www, app1, app2, ns1, ns2.dns) and dns.svc.test."
        );
    }
}
