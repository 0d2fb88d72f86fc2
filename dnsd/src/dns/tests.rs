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
