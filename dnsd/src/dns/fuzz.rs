//! The fuzz target of the DNS request path (`fuzz/fuzz_targets/dns_request.rs`): any
//! bytes, as a UDP datagram and as a TCP message, from a client that may not transfer
//! the zone, one that may, and one that must sign. Run by libFuzzer on nightly and by the
//! property tests below on stable (see the `fuzzkit` crate).
//!
//! What must hold: nothing panics; runts and responses get no answer and every other
//! request one; an answer is a response to the request (its id and opcode, and the
//! question it asked, byte for byte) that decodes, within 512 bytes over UDP without
//! EDNS and within our payload size with it; a transfer is whole messages from SOA to
//! SOA, only to clients that may transfer; and whenever the precomputed fast path
//! answers, the generic path answers the same, over UDP and over TCP.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};

use super::answer::{Access, CLASSIC_UDP_LIMIT, Outcome, Transport, UDP_PAYLOAD, respond};
use super::snapshot::ZonePublisher;
use super::stats::DnsStats;
use super::tcp::{self, Reply, TcpContext};
use super::tsig::TsigKey;
use super::udp;
use super::zone::{Zone, ZoneSpec};
use crate::config::{AddrPrefix, SoaTimers, TsigAlgorithm};

/// The address of the secondaries, which may transfer.
const SECONDARY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Anyone else.
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// The zone at `serial`: IPv4 and IPv6 members, in-zone and out-of-zone name servers, an
/// empty non-terminal (`dns.svc.test.`); `www` moves with the serial, so that the
/// journal holds differences for IXFR.
fn zone(serial: u32) -> Zone {
    let www = IpAddr::from([10, 0, 0, 10 + (serial % 3) as u8]);
    let built = Zone::build(&ZoneSpec {
        origin: "svc.test.",
        serial,
        ttl: 5,
        negative_ttl: 3,
        hostmaster: "hostmaster.svc.test.",
        soa: SoaTimers {
            refresh: 3600,
            retry: 600,
            expire: 86400,
        },
        nameservers: vec![
            ("ns1.svc.test.", IpAddr::from([127, 0, 0, 1])),
            (
                "ns2.dns.svc.test.",
                IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 0x53]),
            ),
            ("ns.example.net.", IpAddr::from([192, 0, 2, 53])),
        ],
        hosts: vec![
            ("www", www),
            ("app1", IpAddr::from([10, 0, 0, 11])),
            ("app2", IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 0x12])),
        ],
    });
    built.unwrap_or_else(|e| panic!("the fuzz zone does not build: {e}"))
}

/// One kind of client: where it asks from, and what the server allows.
struct Client {
    peer: IpAddr,
    tcp: TcpContext,
    may_transfer: bool,
}

/// The server every input is asked of: serial 3, with a journal from 1.
fn clients() -> &'static [Client; 3] {
    static CLIENTS: OnceLock<[Client; 3]> = OnceLock::new();
    CLIENTS.get_or_init(|| {
        let publisher = ZonePublisher::new(zone(1));
        publisher.publish(zone(2));
        publisher.publish(zone(3));
        let secondaries =
            || vec![AddrPrefix::parse("127.0.0.0/30").unwrap_or_else(|e| panic!("{e}"))];
        let key = TsigKey::new(
            "xfr.",
            TsigAlgorithm::HmacSha256,
            b"a shared secret of 32 bytes, ok!".to_vec(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let client = |peer, access: Access, may_transfer| Client {
            peer,
            tcp: TcpContext {
                slot: publisher.slot(),
                access: Arc::new(access),
                stats: Arc::new(DnsStats::default()),
                connections: tcp::Connections::new(1),
                idle_timeout: Duration::from_secs(1),
            },
            may_transfer,
        };
        [
            client(STRANGER, Access::new(secondaries(), None), false),
            client(SECONDARY, Access::new(secondaries(), None), true),
            client(SECONDARY, Access::new(secondaries(), Some(key)), true),
        ]
    })
}

/// Checks one input; panics when a property fails.
pub fn dns_request(bytes: &[u8]) {
    // Runts and responses: answering a response could start a loop between servers.
    let answerable = bytes.len() >= 12 && bytes[2] & 0x80 == 0;
    for client in clients() {
        let snapshot = client.tcp.slot.load_full();
        let access = &client.tcp.access;

        let mut out = Vec::new();
        let udp = udp::answer(&snapshot, access, client.peer, bytes, &mut out);
        assert_eq!(udp.is_some(), answerable, "answered over UDP: {udp:?}");
        if udp.is_some() {
            check_response(bytes, &out, Transport::Udp);
        }

        let mut fast = Vec::new();
        if let Some(rcode) = snapshot.fast().answer(bytes, &mut fast) {
            for transport in [Transport::Udp, Transport::Tcp] {
                let mut generic = Vec::new();
                let zone = snapshot.zone();
                match respond(zone, access, client.peer, 0, transport, bytes, &mut generic) {
                    Outcome::Answered(r) => assert_eq!(r, ResponseCode::from(0, rcode)),
                    other => panic!("fast path answered, generic {transport:?}: {other:?}"),
                }
                assert_eq!(
                    decode(&fast),
                    decode(&generic),
                    "fast and generic {transport:?} answers differ"
                );
            }
        }

        let mut out = Vec::new();
        match tcp::answer(&client.tcp, client.peer, bytes, &mut out) {
            None => assert!(!answerable, "no answer over TCP"),
            Some(Reply::One) => {
                assert!(answerable, "answered a runt or a response over TCP");
                check_response(bytes, &out, Transport::Tcp);
            }
            Some(Reply::Transfer(messages)) => {
                assert!(client.may_transfer, "a transfer to a client that may not");
                check_transfer(bytes, &messages);
            }
        }
    }
}

fn decode(response: &[u8]) -> Message {
    Message::from_vec(response)
        .unwrap_or_else(|e| panic!("the response does not decode ({e}): {response:?}"))
}

/// The header and the question of `response` answer `request`; it fits the transport.
fn check_response(request: &[u8], response: &[u8], transport: Transport) -> Message {
    let m = decode(response);
    assert_eq!(response[..2], request[..2], "the response has another id");
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(
        response[2] & 0x78,
        request[2] & 0x78,
        "the response has another opcode"
    );
    // A question in the response is the request's, as sent (0x20 resolvers check the
    // case): both are 12 bytes into their message.
    if let Some(q) = m.queries.first() {
        let mut decoder = BinDecoder::new(request);
        let asked = decoder
            .read_slice(12)
            .ok()
            .and_then(|_| Query::read(&mut decoder).ok());
        assert_eq!(Some(q), asked.as_ref(), "the response has another question");
    }
    let limit = match (transport, &m.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => usize::from(CLASSIC_UDP_LIMIT),
        (Transport::Udp, Some(_)) => usize::from(UDP_PAYLOAD),
    };
    assert!(
        response.len() <= limit,
        "{} bytes over {transport:?} (edns: {}), more than {limit}",
        response.len(),
        m.edns.is_some()
    );
    m
}

/// A transfer's messages: each a response to the request, answers from SOA to SOA.
fn check_transfer(request: &[u8], messages: &[Vec<u8>]) {
    assert!(!messages.is_empty(), "a transfer of no message");
    let decoded: Vec<Message> = messages
        .iter()
        .map(|m| check_response(request, m, Transport::Tcp))
        .collect();
    let answers = || decoded.iter().flat_map(|m| &m.answers);
    let is_soa = |r: Option<&hickory_proto::rr::Record>| {
        r.is_some_and(|r| r.record_type() == RecordType::SOA && matches!(r.data, RData::SOA(_)))
    };
    assert!(is_soa(answers().next()), "a transfer starts with the SOA");
    assert!(is_soa(answers().last()), "a transfer ends with the SOA");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces of DNS messages, for the mutations to insert.
    const WORDS: &[&[u8]] = &[
        b"\xc0\x0c",
        b"\xc0\x04",
        b"\xc0\x05",
        b"\xc0",
        b"\x00",
        b"\x3f",
        b"\x40",
        b"\x80",
        b"\xff\xff",
        b"\x00\x01",
        b"\x00\x02",
        b"\x00\x01\x00\x01",
        b"\x00\x1c\x00\x01",
        b"\x00\x06\x00\x01",
        b"\x00\xff\x00\x01",
        b"\x00\xfc\x00\x01",
        b"\x00\xfb\x00\x01",
        b"\x00\x01\x00\x03",
        b"\x00\x29",
        b"\x00\xfa\x00\xff",
        b"\x03www\x03svc\x04test\x00",
        b"\x03svc\x04test\x00",
        b"\x03dns\x03svc\x04test\x00",
        b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00",
        b"\x00\x00\x29\x10\x00\x01\x00\x00\x00\x00\x00",
        b"\x0bhmac-sha256\x00",
        b"\x03xfr\x00",
        b"\x28",
        b"\x20",
        b"\x10",
    ];

    #[test]
    fn dns_request_holds_for_mutated_queries_and_random_bytes() {
        fuzzkit::run(
            "dns_request",
            3_000,
            fuzzkit::corpus_mutations("dns_request", WORDS, 300),
            dns_request,
        );
    }

    /// Found by `dns_request`: the fast path answered queries whose OPT record held an
    /// option running past the record's end (or a client subnet the generic path cannot
    /// read), which the generic path answers with FORMERR.
    #[test]
    fn fuzz_malformed_edns_options_get_formerr_on_both_paths() {
        let query = |options: &[u8]| {
            let mut q = b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x04APP2\x03svc\x04TEST\x00\x00\x1c\x00\x01\x00\x00\x29\x04\xd0\x00\x00\x00\x00".to_vec();
            q.extend_from_slice(&(options.len() as u16).to_be_bytes());
            q.extend_from_slice(options);
            q
        };
        let snapshot = clients()[0].tcp.slot.load_full();
        let rcode = |bytes: &[u8]| {
            let mut out = Vec::new();
            udp::answer(&snapshot, &Access::default(), STRANGER, bytes, &mut out).map(|a| a.0)
        };
        // The minimised input: an option of 3072 bytes in 11.
        let overrun = query(b"\x00\x01\x0c\x00\x0a\x00\x08\x00\x01\x02\x03");
        // A client subnet of family 3, which does not exist.
        let subnet = query(b"\x00\x08\x00\x04\x00\x03\x00\x00");
        for bad in [&overrun, &subnet] {
            assert_eq!(rcode(bad), Some(ResponseCode::FormErr));
            dns_request(bad);
        }
        // Well-formed options still take the fast path: a cookie, and a padding.
        let cookie = query(b"\x00\x0a\x00\x08\x00\x01\x02\x03\x04\x05\x06\x07\x00\x0c\x00\x00");
        assert!(snapshot.fast().answer(&cookie, &mut Vec::new()).is_some());
        assert_eq!(rcode(&cookie), Some(ResponseCode::NoError));
    }

    /// Found by `dns_request`: a question compressed into the header (`www` then a
    /// pointer to offset 3) was echoed as sent, where offset 3 is the response's flags,
    /// so the answer carried another question.
    #[test]
    fn fuzz_a_question_compressed_into_the_header_gets_formerr() {
        let minimal = b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\xc0\x03est\x00";
        for client in clients() {
            let snapshot = client.tcp.slot.load_full();
            let mut out = Vec::new();
            let udp = udp::answer(
                &snapshot,
                &client.tcp.access,
                client.peer,
                minimal,
                &mut out,
            );
            assert_eq!(udp.map(|a| a.0), Some(ResponseCode::FormErr));
            assert!(decode(&out).queries.is_empty(), "no question in a FORMERR");
        }
        dns_request(minimal);
        // A plain question of the same name is answered.
        let plain = b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x03svc\x04test\x00\x00\x01\x00\x01";
        let mut out = Vec::new();
        let snapshot = clients()[0].tcp.slot.load_full();
        let udp = udp::answer(&snapshot, &Access::default(), STRANGER, plain, &mut out);
        assert_eq!(udp.map(|a| a.0), Some(ResponseCode::NoError));
    }

    #[test]
    fn dns_request_holds_for_the_corpus() {
        fuzzkit::replay("dns_request", dns_request);
    }
}
