//! Zone transfers over TCP: the records an AXFR (RFC 5936) or IXFR (RFC 1995) answer
//! holds, and their split into messages, each signed when the request was.
//!
//! An IXFR from a serial the journal holds gets the differences since; from the current
//! serial or a newer one, the SOA alone (up to date); from any other, the whole zone in
//! AXFR form, which RFC 1995 section 4 allows.

use hickory_proto::ProtoError;
use hickory_proto::op::{Metadata, ResponseCode};
use hickory_proto::rr::{Record, TSigResponseContext};

use super::answer::{Sections, TransferKind, TransferRequest, encode};
use super::snapshot::Snapshot;
use super::stats::TransferOutcome;
use super::tsig;

/// Records per message. Even records with 255-byte names that nothing compresses take
/// under 300 bytes each, so a message stays well under TCP's 64 KiB.
const RECORDS_PER_MESSAGE: usize = 200;

/// Whether serial `a` is `b` or after it in RFC 1982 sequence-space arithmetic.
pub(super) fn serial_at_least(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) < 1 << 31
}

/// The records of the answer to `kind`, in order, and how it counts.
pub(super) fn plan(snapshot: &Snapshot, kind: TransferKind) -> (Vec<&Record>, TransferOutcome) {
    let zone = snapshot.zone();
    let soa = zone.soa();
    let whole = || {
        let mut records = vec![soa];
        records.extend(zone.records());
        records.push(soa);
        records
    };
    match kind {
        TransferKind::Axfr => (whole(), TransferOutcome::Full),
        TransferKind::Ixfr(serial) if serial_at_least(serial, zone.serial()) => {
            (vec![soa], TransferOutcome::Incremental)
        }
        TransferKind::Ixfr(serial) => match snapshot.journal().since(serial) {
            Some(deltas) => {
                let mut records = vec![soa];
                for d in deltas {
                    records.push(&d.from);
                    records.extend(&d.removed);
                    records.push(&d.to);
                    records.extend(&d.added);
                }
                records.push(soa);
                (records, TransferOutcome::Incremental)
            }
            None => (whole(), TransferOutcome::Full),
        },
    }
}

/// Encodes `records` as the messages answering `request`, each with the question and
/// the first with the OPT record; signed in a chain when the request was signed.
pub(super) fn messages(
    request: &TransferRequest,
    records: &[&Record],
    now: u64,
) -> Result<Vec<Vec<u8>>, ProtoError> {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::NoError;
    metadata.authoritative = true;
    let mut out = Vec::new();
    let mut previous_mac: Option<Vec<u8>> = None;
    for (i, chunk) in records.chunks(RECORDS_PER_MESSAGE).enumerate() {
        let mut buf = Vec::new();
        let edns = if i == 0 { request.edns.as_ref() } else { None };
        let sections = Sections {
            answers: chunk,
            ..Sections::default()
        };
        encode(
            &mut buf,
            &metadata,
            &request.question,
            &sections,
            edns,
            u16::MAX,
        )?;
        if let Some((key, request_mac)) = &request.signed {
            let mac = match &previous_mac {
                None => tsig::sign_first(
                    &mut buf,
                    TSigResponseContext::new(
                        request.metadata.id,
                        now,
                        key.signer().clone(),
                        request_mac.clone(),
                        None,
                    ),
                )?,
                Some(previous) => {
                    tsig::sign_next(&mut buf, key, request.metadata.id, previous, now)?
                }
            };
            previous_mac = Some(mac);
        }
        out.push(buf);
    }
    Ok(out)
}
