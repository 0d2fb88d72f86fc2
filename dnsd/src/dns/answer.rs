//! One DNS message in, one response out: the generic path both transports share.
//!
//! It parses a request with hickory-proto, checks its TSIG, applies the header-level
//! rules (NOTIMP for other opcodes, FORMERR for anything but one question, BADVERS for
//! EDNS versions above 0), decides on transfers (REFUSED at once unless the peer is in
//! `dns.allow_transfer` and, with `dns.tsig`, signed with the key), answers from the
//! [`Zone`] and encodes within the transport's size limit, signing the response when the
//! request was signed. The precomputed table ([`super::fast`]) is built by running this
//! on canonical queries, so both paths answer alike by construction.

use std::net::IpAddr;

use hickory_proto::ProtoError;
use hickory_proto::op::{
    Edns, EmitAndCount, Header, LowerQuery, Message, MessageType, Metadata, OpCode, ResponseCode,
    emit_message_parts,
};
use hickory_proto::rr::rdata::tsig::TSIG;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use tracing::warn;

use super::tsig::{self, Signed, TsigKey};
use super::zone::{Answer, Zone};
use crate::config::AddrPrefix;

/// The UDP payload size we advertise in EDNS and never exceed (the 2020 DNS flag day
/// value, which avoids IP fragmentation on common paths).
pub const UDP_PAYLOAD: u16 = 1232;
/// Largest UDP response to a query without EDNS (RFC 1035).
pub(super) const CLASSIC_UDP_LIMIT: u16 = 512;

/// How the request arrived: it sets the size limit and what a transfer request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    Udp,
    Tcp,
}

/// Who may transfer the zone, and the key transfers must be signed with.
#[derive(Debug, Clone, Default)]
pub struct Access {
    allow_transfer: Vec<AddrPrefix>,
    key: Option<TsigKey>,
}

impl Access {
    pub fn new(allow_transfer: Vec<AddrPrefix>, key: Option<TsigKey>) -> Access {
        Access {
            allow_transfer,
            key,
        }
    }

    /// The key signed requests are checked against.
    pub(super) fn key(&self) -> Option<&TsigKey> {
        self.key.as_ref()
    }

    /// A transfer needs the peer's address in `allow_transfer` and, when a key is
    /// configured, a request signed with it (`signed`: its TSIG was verified).
    fn may_transfer(&self, peer: IpAddr, signed: bool) -> bool {
        self.allow_transfer.iter().any(|p| p.contains(peer)) && (self.key.is_none() || signed)
    }
}

/// What a transfer request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransferKind {
    Axfr,
    /// IXFR from the client's serial (the SOA in the request's authority section).
    Ixfr(u32),
}

/// An admitted transfer: what the transport needs to stream it.
#[derive(Debug)]
pub(super) struct TransferRequest {
    pub(super) metadata: Metadata,
    /// The question as the client wrote it.
    pub(super) question: Vec<u8>,
    pub(super) edns: Option<Edns>,
    pub(super) kind: TransferKind,
    /// The request's verified TSIG, if signed: every message of the answer is signed.
    pub(super) signed: Option<(TsigKey, Vec<u8>)>,
}

/// What became of one request.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Nothing to send: not a request, or too short to hold a header.
    Drop,
    /// The response is in the buffer, with this code.
    Answered(ResponseCode),
    /// A transfer refused (REFUSED is in the buffer).
    TransferRefused,
    /// A transfer to stream (TCP only; over UDP the buffer says TC instead).
    Transfer(TransferRequest),
}

/// What a parsed request asks.
struct Request<'a> {
    metadata: Metadata,
    queries: Vec<LowerQuery>,
    /// The question section as the client wrote it (its case is echoed back).
    question: &'a [u8],
    edns: Option<Edns>,
    /// The serial of the SOA in the authority section (IXFR requests).
    ixfr_serial: Option<u32>,
    tsig: Option<Box<Record<TSIG>>>,
}

/// Why a request gets no normal answer.
enum Reject {
    /// Not worth an answer (too short to have a header, or a response).
    Drop,
    /// Answer with this code and the header only (and the TSIG to check, if any).
    Error(Metadata, ResponseCode, Option<Edns>),
}

/// The EDNS record to answer with, if the client sent one.
fn response_edns(request: Option<&Edns>) -> Option<Edns> {
    request.map(|_| {
        let mut e = Edns::new();
        e.set_max_payload(UDP_PAYLOAD);
        e.set_version(0);
        e
    })
}

/// The header-level rules shared by both transports.
fn check(
    metadata: &Metadata,
    queries: &[LowerQuery],
    edns: Option<&Edns>,
) -> Result<(), ResponseCode> {
    if edns.is_some_and(|e| e.version() > 0) {
        return Err(ResponseCode::BADVERS);
    }
    if metadata.op_code != OpCode::Query {
        return Err(ResponseCode::NotImp);
    }
    if queries.len() != 1 {
        return Err(ResponseCode::FormErr);
    }
    Ok(())
}

fn response_metadata(request: &Metadata, rcode: ResponseCode, authoritative: bool) -> Metadata {
    let mut m = Metadata::response_from_request(request);
    m.response_code = rcode;
    m.authoritative = authoritative;
    m
}

/// Parses a request. A TSIG record, when present, is kept for [`tsig::check`].
fn parse(bytes: &[u8]) -> Result<Request<'_>, Reject> {
    let mut decoder = BinDecoder::new(bytes);
    let header = Header::read(&mut decoder).map_err(|_| Reject::Drop)?;
    if header.metadata.message_type == MessageType::Response {
        return Err(Reject::Drop);
    }
    let formerr = |m: Metadata| Reject::Error(m, ResponseCode::FormErr, None);
    let mut queries = Vec::with_capacity(1);
    let question_start = decoder.index();
    for _ in 0..header.counts.queries {
        queries.push(LowerQuery::read(&mut decoder).map_err(|_| formerr(header.metadata))?);
    }
    let question = bytes
        .get(question_start..decoder.index())
        .unwrap_or_default();
    // The question is echoed as sent (see `EchoQuestion`), so it must be plain labels: a
    // compression pointer in it can only point into the header (nothing else precedes
    // it), and the response's header is not the request's.
    if compressed(question) {
        return Err(formerr(header.metadata));
    }
    let op = header.metadata.op_code;
    let read = |d: &mut BinDecoder<'_>, n: u16| Message::read_records(d, n as usize, false, op);
    read(&mut decoder, header.counts.answers).map_err(|_| formerr(header.metadata))?;
    let (authority, _, _) =
        read(&mut decoder, header.counts.authorities).map_err(|_| formerr(header.metadata))?;
    let (_, edns, tsig) =
        Message::read_records(&mut decoder, header.counts.additionals as usize, true, op)
            .map_err(|_| formerr(header.metadata))?;
    let ixfr_serial = authority.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    });
    Ok(Request {
        metadata: header.metadata,
        queries,
        question,
        edns,
        ixfr_serial,
        tsig,
    })
}

/// Whether any name of `question` (questions as read: each a name, a type and a class)
/// holds a compression pointer.
fn compressed(question: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&len) = question.get(i) {
        match len {
            0 => i += 1 + 4,
            1..=63 => i += 1 + usize::from(len),
            _ => return true,
        }
    }
    false
}

/// Emits the question back byte for byte as the client sent it (same case, which
/// resolvers using 0x20 randomisation check), and registers its name for compression.
struct EchoQuestion<'a>(&'a [u8]);

impl EmitAndCount for EchoQuestion<'_> {
    fn emit(&mut self, encoder: &mut BinEncoder<'_>) -> Result<usize, ProtoError> {
        if self.0.is_empty() {
            return Ok(0);
        }
        let start = encoder.offset();
        encoder.emit_vec(self.0)?;
        // Offer every suffix of the question name (not the type and class after it)
        // for compression of the names that follow.
        // The parser accepted this name, so it is plain labels ending in a zero byte.
        let question: &[u8] = self.0;
        let labels = || {
            let mut i = 0;
            std::iter::from_fn(move || {
                let len = *question.get(i).filter(|&&l| l != 0 && l <= 63)? as usize;
                let at = i;
                i += len + 1;
                Some((at, i))
            })
        };
        if let Some((_, last_end)) = labels().last() {
            // Up to the root label, not including it: hickory compares a name it emits
            // against these ranges without its terminating zero byte.
            let name_end = start + last_end;
            for (at, _) in labels() {
                encoder.store_label_pointer(start + at, name_end);
            }
        }
        Ok(1)
    }
}

/// The sections of one response.
#[derive(Default)]
pub(super) struct Sections<'r> {
    pub(super) answers: &'r [&'r Record],
    pub(super) authority: &'r [Record],
    pub(super) additional: &'r [Record],
}

/// Encodes one message into `buf` (cleared first), within `limit` bytes.
pub(super) fn encode(
    buf: &mut Vec<u8>,
    metadata: &Metadata,
    question: &[u8],
    sections: &Sections<'_>,
    edns: Option<&Edns>,
    limit: u16,
) -> Result<Header, ProtoError> {
    buf.clear();
    let mut encoder = BinEncoder::new(buf);
    encoder.set_max_size(limit);
    emit_message_parts(
        metadata,
        &mut EchoQuestion(question),
        &mut sections.answers.iter().copied(),
        &mut sections.authority.iter(),
        &mut sections.additional.iter(),
        edns,
        None,
        &mut encoder,
    )
}

/// Encodes a response within `limit` bytes. If the records do not fit, the response is
/// sent with TC and no records (the client retries over TCP), which also keeps the OPT
/// record that a partial fill could crowd out.
fn encode_limited(
    buf: &mut Vec<u8>,
    metadata: &Metadata,
    question: &[u8],
    answer: Option<&Answer<'_>>,
    edns: Option<&Edns>,
    limit: u16,
) -> Result<Header, ProtoError> {
    let sections = match answer {
        Some(a) => Sections {
            answers: &a.answers,
            authority: a.authority,
            additional: a.additional,
        },
        None => Sections::default(),
    };
    let header = encode(buf, metadata, question, &sections, edns, limit)?;
    if header.metadata.truncation && answer.is_some() {
        let mut truncated = *metadata;
        truncated.truncation = true;
        return encode(buf, &truncated, question, &Sections::default(), edns, limit);
    }
    Ok(header)
}

/// Answers one request into `out`. `peer` is the client's address (for transfers) and
/// `now` TSIG's clock.
pub(super) fn respond(
    zone: &Zone,
    access: &Access,
    peer: IpAddr,
    now: u64,
    transport: Transport,
    message: &[u8],
    out: &mut Vec<u8>,
) -> Outcome {
    match respond_inner(zone, access, peer, now, transport, message, out) {
        Ok(outcome) => outcome,
        Err(error) => {
            warn!(%error, "cannot encode a DNS response");
            Outcome::Drop
        }
    }
}

fn respond_inner(
    zone: &Zone,
    access: &Access,
    peer: IpAddr,
    now: u64,
    transport: Transport,
    message: &[u8],
    out: &mut Vec<u8>,
) -> Result<Outcome, ProtoError> {
    let request = match parse(message) {
        Ok(parsed) => parsed,
        Err(Reject::Drop) => return Ok(Outcome::Drop),
        Err(Reject::Error(request, rcode, edns)) => {
            let metadata = response_metadata(&request, rcode, false);
            encode_limited(out, &metadata, &[], None, edns.as_ref(), CLASSIC_UDP_LIMIT)?;
            return Ok(Outcome::Answered(rcode));
        }
    };
    let id = request.metadata.id;
    let signed = tsig::check(message, id, request.tsig.as_deref(), access.key(), now);
    let edns = response_edns(request.edns.as_ref());
    let limit = match (transport, &request.edns) {
        (Transport::Tcp, _) => u16::MAX,
        (Transport::Udp, Some(e)) => e.max_payload().clamp(CLASSIC_UDP_LIMIT, UDP_PAYLOAD),
        (Transport::Udp, None) => CLASSIC_UDP_LIMIT,
    };
    let (limit, key_mac) = match signed {
        Signed::No => (limit, None),
        Signed::Invalid { error, context } => {
            // RFC 8945 section 5.2: NOTAUTH, the question, and a TSIG saying why.
            let metadata = response_metadata(&request.metadata, ResponseCode::NotAuth, false);
            encode(
                out,
                &metadata,
                request.question,
                &Sections::default(),
                None,
                limit,
            )?;
            tsig::sign_first(out, context)?;
            warn!(%peer, tsig_error = ?error, "refused a request with a bad TSIG");
            return Ok(Outcome::Answered(ResponseCode::NotAuth));
        }
        Signed::Valid { key, mac } => {
            let room = u16::try_from(tsig::record_len(&key)).unwrap_or(u16::MAX);
            (limit.saturating_sub(room), Some((key, mac)))
        }
    };
    let sign = |out: &mut Vec<u8>| -> Result<(), ProtoError> {
        if let Some((key, mac)) = &key_mac {
            tsig::sign_first(
                out,
                hickory_proto::rr::TSigResponseContext::new(
                    id,
                    now,
                    key.signer().clone(),
                    mac.clone(),
                    None,
                ),
            )?;
        }
        Ok(())
    };
    // A response without records: the header with `rcode`, `question`, the OPT record,
    // and the TSIG when the request was signed. `retry_over_tcp` sets TC, and AA (the
    // zone is ours): what a transfer asked over UDP gets.
    let no_records =
        |out: &mut Vec<u8>, rcode, retry_over_tcp, question: &[u8]| -> Result<(), ProtoError> {
            let mut metadata = response_metadata(&request.metadata, rcode, retry_over_tcp);
            metadata.truncation = retry_over_tcp;
            encode_limited(out, &metadata, question, None, edns.as_ref(), limit)?;
            sign(out)
        };

    let checked = check(&request.metadata, &request.queries, request.edns.as_ref());
    let q = match (checked, request.queries.first()) {
        (Ok(()), Some(q)) => q,
        (result, _) => {
            let rcode = result.err().unwrap_or(ResponseCode::FormErr);
            no_records(out, rcode, false, &[])?;
            return Ok(Outcome::Answered(rcode));
        }
    };
    let kind = match q.query_type() {
        RecordType::AXFR => Some(TransferKind::Axfr),
        // An IXFR without the client's SOA is read as an AXFR (RFC 1995 section 3
        // requires the SOA; answering the whole zone is always correct).
        RecordType::IXFR => Some(
            request
                .ixfr_serial
                .map_or(TransferKind::Axfr, TransferKind::Ixfr),
        ),
        _ => None,
    };
    if let Some(kind) = kind {
        if !access.may_transfer(peer, key_mac.is_some()) {
            no_records(out, ResponseCode::Refused, false, request.question)?;
            return Ok(Outcome::TransferRefused);
        }
        if q.name() != zone.origin() || q.query_class() != DNSClass::IN {
            // RFC 5936 section 2.2.1: not a zone this server is authoritative for.
            no_records(out, ResponseCode::NotAuth, false, request.question)?;
            return Ok(Outcome::Answered(ResponseCode::NotAuth));
        }
        if transport == Transport::Udp {
            // Transfers are TCP's (RFC 5936 section 4.2); TC (and AA: the zone is ours)
            // tells the client to retry there.
            no_records(out, ResponseCode::NoError, true, request.question)?;
            return Ok(Outcome::Answered(ResponseCode::NoError));
        }
        return Ok(Outcome::Transfer(TransferRequest {
            metadata: request.metadata,
            question: request.question.to_vec(),
            edns,
            kind,
            signed: key_mac,
        }));
    }

    let answer = zone.answer(q.name(), q.query_type(), q.query_class());
    let metadata = response_metadata(&request.metadata, answer.rcode, answer.authoritative);
    encode_limited(
        out,
        &metadata,
        request.question,
        Some(&answer),
        edns.as_ref(),
        limit,
    )?;
    sign(out)?;
    Ok(Outcome::Answered(answer.rcode))
}
