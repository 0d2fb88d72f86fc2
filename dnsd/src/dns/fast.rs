//! Precomputed UDP answers: the query path's shortcut.
//!
//! When a snapshot is built, every answer the zone can give to a plain query (one
//! question, class IN, opcode QUERY, no records but an optional EDNS version 0 OPT) is
//! encoded once, by the generic encoder, for a canonical query of the same shape. A
//! query is then answered by checking its header, lower-casing its name into a stack
//! buffer, looking the name up and copying the precomputed bytes after the client's own
//! header fields and question. No allocation, no parsing into records.
//!
//! This works because the question is echoed verbatim and has the same length as the
//! canonical one (names match without regard to case, label by label), so every
//! compression pointer in the precomputed sections still points at the same place.
//! NXDOMAIN answers point into the question at an offset that depends on the length of
//! the part of the name below the zone; they are precomputed for every such length.
//! Anything else (other opcodes, EDNS versions, odd records, answers that do not fit)
//! falls back to the generic path. A property test checks that both paths give the
//! same answers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use super::answer::{Access, CLASSIC_UDP_LIMIT, Outcome, Transport, UDP_PAYLOAD, respond};
use super::zone::Zone;

/// Record types with an answer of their own; every other type gets the NODATA answer.
const TYPES: [RecordType; 5] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::SOA,
    RecordType::NS,
    RecordType::ANY,
];
const OTHER: usize = TYPES.len();
/// The record type used to build the "any other type" answer.
const OTHER_TYPE: RecordType = RecordType::MX;
/// The OPT record of every EDNS answer: root owner, type 41, our payload, version 0.
const OPT: [u8; 11] = {
    let p = UDP_PAYLOAD.to_be_bytes();
    [0, 0, 41, p[0], p[1], 0, 0, 0, 0, 0, 0]
};

/// The sections after the question, and the header bits that go with them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    authoritative: bool,
    rcode: u8,
    ancount: u16,
    nscount: u16,
    arcount: u16,
    body: Box<[u8]>,
}

/// Answers by lower-case wire-format name.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Table {
    names: HashMap<Box<[u8]>, [Option<Template>; TYPES.len() + 1]>,
    /// NXDOMAIN answer by length of the part of the name below the zone.
    nxdomain: Vec<Option<Template>>,
    refused: Option<Template>,
    /// The zone's origin, lower case, wire format.
    origin: Box<[u8]>,
}

/// Encodes `name` as lower-case wire format.
fn wire(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 1);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

/// Builds the template for (`name`, `qtype`) by running the generic path on a
/// canonical query and keeping what follows the question.
fn template(zone: &Zone, name: &Name, qtype: RecordType) -> Option<Template> {
    let mut m = Message::new(0, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name.clone(), qtype));
    let query = m.to_vec().ok()?;
    let mut out = Vec::new();
    // A plain query: no transfer, no TSIG, so neither the peer nor the access rules
    // nor the clock play a part.
    let unused_peer = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    match respond(
        zone,
        &Access::default(),
        unused_peer,
        0,
        Transport::Udp,
        &query,
        &mut out,
    ) {
        Outcome::Answered(_) => {}
        Outcome::Drop | Outcome::TransferRefused | Outcome::Transfer(_) => return None,
    }
    let question_end = 12 + wire(name).len() + 4;
    let header = out.get(..12)?;
    if header[2] & 0x02 != 0 {
        // Truncated even without EDNS: leave such answers to the generic path.
        return None;
    }
    Some(Template {
        authoritative: header[2] & 0x04 != 0,
        rcode: header[3] & 0x0f,
        ancount: u16::from_be_bytes([out[6], out[7]]),
        nscount: u16::from_be_bytes([out[8], out[9]]),
        arcount: u16::from_be_bytes([out[10], out[11]]),
        body: out.get(question_end..)?.into(),
    })
}

/// A name below the origin made of `len` bytes of labels of `_` (which no owner or
/// target name in the zone can contain, so nothing gets compressed against them).
fn synthetic(len: usize, origin: &Name) -> Option<Name> {
    let mut labels: Vec<Vec<u8>> = Vec::new();
    let mut left = len;
    while left > 0 {
        // A label takes its length plus one byte; keep at least 2 bytes for the last.
        let take = match left {
            0..=1 => return None,
            2..=64 => left - 1,
            65 => 62,
            _ => 63,
        };
        labels.push(vec![b'_'; take]);
        left -= take + 1;
    }
    let prefix = Name::from_labels(labels).ok()?;
    prefix.append_domain(origin).ok()
}

/// Whether an OPT record's data is options the generic path reads without an error
/// (which it answers with FORMERR): whole code-length-value triples, none a client subnet
/// (code 8), whose address the generic path checks.
fn plain_options(mut options: &[u8]) -> bool {
    while let [c0, c1, l0, l1, rest @ ..] = options {
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if u16::from_be_bytes([*c0, *c1]) == 8 || rest.len() < len {
            return false;
        }
        options = &rest[len..];
    }
    options.is_empty()
}

impl Table {
    /// Precomputes every answer of `zone`. Called on every publish, off the query path.
    pub(super) fn build(zone: &Zone) -> Table {
        let origin = Name::from(zone.origin().clone());
        let origin_wire = wire(&origin);
        let mut names = HashMap::new();
        for owner in std::iter::once(origin.clone()).chain(zone.names()) {
            let mut answers: [Option<Template>; TYPES.len() + 1] = Default::default();
            for (i, t) in TYPES.iter().chain(std::iter::once(&OTHER_TYPE)).enumerate() {
                answers[i] = template(zone, &owner, *t);
            }
            names.insert(wire(&owner).into_boxed_slice(), answers);
        }
        let max_prefix = 255usize.saturating_sub(origin_wire.len());
        let nxdomain = (0..=max_prefix)
            .map(|len| synthetic(len, &origin).and_then(|n| template(zone, &n, RecordType::A)))
            .collect();
        let outside = Name::from_ascii("dnsd-fast-path.invalid.").ok();
        let refused = outside.and_then(|n| template(zone, &n, RecordType::A));
        Table {
            names,
            nxdomain,
            refused,
            origin: origin_wire.into_boxed_slice(),
        }
    }

    /// Answers `query` into `out` if it is a plain query this table covers; `None`
    /// leaves it to the generic path. Returns the response code.
    pub(super) fn answer(&self, query: &[u8], out: &mut Vec<u8>) -> Option<u8> {
        let header = query.get(..12)?;
        // QR=0, opcode QUERY; one question, no answer or authority records.
        if header[2] & 0xf8 != 0 || header[4..10] != [0, 1, 0, 0, 0, 0] {
            return None;
        }
        let arcount = u16::from_be_bytes([header[10], header[11]]);
        // The question name, lower-cased into a stack buffer.
        let mut lower = [0u8; 256];
        let mut pos = 12;
        let mut len = 0;
        loop {
            let l = *query.get(pos)? as usize;
            if l > 63 || len + l + 1 > 255 {
                return None;
            }
            let label = query.get(pos..pos + l + 1)?;
            for (dst, src) in lower[len..len + l + 1].iter_mut().zip(label) {
                *dst = src.to_ascii_lowercase();
            }
            len += l + 1;
            pos += l + 1;
            if l == 0 {
                break;
            }
        }
        let name = &lower[..len];
        let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
        let qclass = u16::from_be_bytes([*query.get(pos + 2)?, *query.get(pos + 3)?]);
        let question_end = pos + 4;
        // Class IN only; transfers (IXFR 251, AXFR 252) go through the access rules.
        if qclass != 1 || qtype == 251 || qtype == 252 {
            return None;
        }
        // Nothing after the question but, at most, an OPT record of EDNS version 0.
        let edns_limit = match arcount {
            0 if query.len() == question_end => None,
            1 => {
                let opt = query.get(question_end..question_end + 11)?;
                let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
                if opt[0] != 0
                    || opt[1..3] != [0, 41]
                    || opt[6] != 0
                    || query.len() != question_end + 11 + rdlen
                    || !plain_options(&query[question_end + 11..])
                {
                    return None;
                }
                let payload = u16::from_be_bytes([opt[3], opt[4]]);
                Some(payload.clamp(CLASSIC_UDP_LIMIT, UDP_PAYLOAD))
            }
            _ => return None,
        };
        let template = match self.names.get(name) {
            Some(answers) => {
                let slot = TYPES
                    .iter()
                    .position(|t| u16::from(*t) == qtype)
                    .unwrap_or(OTHER);
                answers[slot].as_ref()?
            }
            None if in_zone(name, &self.origin) => {
                self.nxdomain.get(len - self.origin.len())?.as_ref()?
            }
            None => self.refused.as_ref()?,
        };
        let limit = edns_limit.unwrap_or(CLASSIC_UDP_LIMIT) as usize;
        let opt_len = if edns_limit.is_some() { OPT.len() } else { 0 };
        if question_end + template.body.len() + opt_len > limit {
            return None;
        }
        out.clear();
        out.extend_from_slice(&header[..2]);
        // QR, opcode 0, AA per template, TC=0, RD copied; RA=0, Z=0, AD=0, CD copied.
        out.push(0x80 | if template.authoritative { 0x04 } else { 0 } | (header[2] & 0x01));
        out.push((header[3] & 0x10) | template.rcode);
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&template.ancount.to_be_bytes());
        out.extend_from_slice(&template.nscount.to_be_bytes());
        let arcount = template.arcount + u16::from(edns_limit.is_some());
        out.extend_from_slice(&arcount.to_be_bytes());
        out.extend_from_slice(query.get(12..question_end)?);
        out.extend_from_slice(&template.body);
        if edns_limit.is_some() {
            out.extend_from_slice(&OPT);
        }
        Some(template.rcode)
    }

    #[cfg(test)]
    pub(super) fn size(&self) -> usize {
        self.names.len()
    }
}

/// Whether lower-case wire `name` is `origin` or below it (at a label boundary).
fn in_zone(name: &[u8], origin: &[u8]) -> bool {
    if !name.ends_with(origin) {
        return false;
    }
    // Walk the labels: the origin must start exactly at a label boundary.
    let mut pos = 0;
    while pos < name.len() {
        if name.len() - pos == origin.len() {
            return true;
        }
        pos += name[pos] as usize + 1;
    }
    false
}
