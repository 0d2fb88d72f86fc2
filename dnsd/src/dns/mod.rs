//! Authoritative DNS over UDP and TCP, answering from the published [`Zone`] snapshot.
//!
//! Both transports share one answer function ([`Zone::answer`]) and one way of turning
//! it into a response ([`Responder`]): AA on every answer from the zone, the SOA in the
//! authority section of NXDOMAIN and NODATA, REFUSED outside the zone, NOTIMP for other
//! opcodes, FORMERR for anything but one question, BADVERS for EDNS versions above 0.
//!
//! TCP runs on hickory-server's `Server` (framing, idle timeouts, connection limits)
//! with a [`RequestHandler`]. UDP runs on a loop of our own that parses with
//! hickory-proto and encodes into a reused buffer: hickory-server's UDP path cannot
//! hold a response without EDNS to the 512 bytes RFC 1035 allows (it uses 4096), and it
//! spends a task spawn and two channel hops per query, which the CPU-per-query target
//! cannot afford. The query path never locks: it loads the current snapshot from an
//! [`ArcSwap`] that the controller's driver replaces on every role change.

mod fast;
mod mmsg;
pub mod zone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::ProtoError;
use hickory_proto::op::{
    Edns, EmitAndCount, Header, LowerQuery, Message, MessageType, Metadata, OpCode, ResponseCode,
    emit_message_parts,
};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use zone::{Answer, Zone, ZoneError, ZoneSpec};

/// The UDP payload size we advertise in EDNS and never exceed (the 2020 DNS flag day
/// value, which avoids IP fragmentation on common paths).
pub const UDP_PAYLOAD: u16 = 1232;
/// Largest UDP response to a query without EDNS (RFC 1035).
const CLASSIC_UDP_LIMIT: u16 = 512;
/// A TCP connection with no query for this long is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection before the writer pushes back.
const TCP_RESPONSE_BUFFER: usize = 32;

/// The snapshot slot shared by the driver (writer) and the DNS tasks (readers).
pub type SharedZone = Arc<ArcSwap<Zone>>;

/// Response counters for `/metrics`, by response code. Relaxed atomics: they are
/// statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct DnsStats {
    counts: [AtomicU64; RCODE_BUCKETS.len()],
}

/// Response codes counted separately; anything else lands in `other`.
pub const RCODE_BUCKETS: [&str; 7] = [
    "noerror", "nxdomain", "refused", "formerr", "notimp", "servfail", "other",
];

impl DnsStats {
    fn count(&self, rcode: ResponseCode) {
        let bucket = match rcode {
            ResponseCode::NoError => 0,
            ResponseCode::NXDomain => 1,
            ResponseCode::Refused => 2,
            ResponseCode::FormErr => 3,
            ResponseCode::NotImp => 4,
            ResponseCode::ServFail => 5,
            _ => 6,
        };
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// `(rcode name, responses sent)` for every bucket.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        RCODE_BUCKETS
            .iter()
            .zip(&self.counts)
            .map(|(name, c)| (*name, c.load(Ordering::Relaxed)))
            .collect()
    }
}

/// What a parsed query asks, or the error response it deserves.
struct Query<'a> {
    metadata: Metadata,
    query: LowerQuery,
    /// The question section as the client wrote it (its case is echoed back).
    question: &'a [u8],
    edns: Option<Edns>,
}

/// Why a query gets no normal answer.
enum Reject {
    /// Not worth an answer (too short to have a header, or a response).
    Drop,
    /// Answer with this code and the header only.
    Error(Metadata, ResponseCode, Option<Edns>),
}

/// Builds responses from the zone; shared by the UDP loop and the TCP handler.
struct Responder;

impl Responder {
    /// The EDNS record to answer with, if the client sent one.
    fn response_edns(request: Option<&Edns>) -> Option<Edns> {
        request.map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(UDP_PAYLOAD);
            e.set_version(0);
            e
        })
    }

    /// Checks the header-level rules shared by both transports.
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

    fn metadata(request: &Metadata, rcode: ResponseCode, authoritative: bool) -> Metadata {
        let mut m = Metadata::response_from_request(request);
        m.response_code = rcode;
        m.authoritative = authoritative;
        m
    }
}

/// Parses a UDP datagram the way hickory-server parses a request.
fn parse(bytes: &[u8]) -> Result<Query<'_>, Reject> {
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
    let op = header.metadata.op_code;
    let skip = |d: &mut BinDecoder<'_>, n: u16| {
        Message::read_records(d, n as usize, false, op).map(|_| ())
    };
    skip(&mut decoder, header.counts.answers).map_err(|_| formerr(header.metadata))?;
    skip(&mut decoder, header.counts.authorities).map_err(|_| formerr(header.metadata))?;
    let (_, edns, _) =
        Message::read_records(&mut decoder, header.counts.additionals as usize, true, op)
            .map_err(|_| formerr(header.metadata))?;
    if let Err(rcode) = Responder::check(&header.metadata, &queries, edns.as_ref()) {
        return Err(Reject::Error(
            header.metadata,
            rcode,
            Responder::response_edns(edns.as_ref()),
        ));
    }
    let Some(query) = queries.pop() else {
        return Err(formerr(header.metadata));
    };
    Ok(Query {
        metadata: header.metadata,
        query,
        question,
        edns,
    })
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

/// Encodes a UDP response into `buf`, within `limit` bytes. If the records do not fit,
/// the response is sent with TC and no records (the client retries over TCP), which
/// also keeps the OPT record that a partial fill could crowd out.
fn encode_udp(
    buf: &mut Vec<u8>,
    metadata: &Metadata,
    question: &[u8],
    answer: Option<&Answer<'_>>,
    edns: Option<&Edns>,
    limit: u16,
) -> Result<Header, ProtoError> {
    let empty: [&Record; 0] = [];
    let emit = |buf: &mut Vec<u8>, answer: Option<&Answer<'_>>, metadata: &Metadata| {
        buf.clear();
        let mut encoder = BinEncoder::new(buf);
        encoder.set_max_size(limit);
        let (answers, authority, additional): (&[&Record], &[Record], &[Record]) = match answer {
            Some(a) => (&a.answers, a.authority, a.additional),
            None => (&empty, &[], &[]),
        };
        emit_message_parts(
            metadata,
            &mut EchoQuestion(question),
            &mut answers.iter().copied(),
            &mut authority.iter(),
            &mut additional.iter(),
            edns,
            None,
            &mut encoder,
        )
    };
    let header = emit(buf, answer, metadata)?;
    if header.metadata.truncation && answer.is_some() {
        let mut truncated = *metadata;
        truncated.truncation = true;
        return emit(buf, None, &truncated);
    }
    Ok(header)
}

/// Answers one UDP datagram into `out`: from the precomputed answers when it is a plain
/// query, else through the generic path. Returns the response code, or `None` when
/// nothing should be sent.
pub fn answer_udp(zone: &Zone, datagram: &[u8], out: &mut Vec<u8>) -> Option<ResponseCode> {
    match zone.fast.answer(datagram, out) {
        Some(rcode) => Some(ResponseCode::from(0, rcode)),
        None => answer_generic(zone, datagram, out),
    }
}

/// Answers one UDP datagram by parsing it and encoding the answer with hickory-proto;
/// handles every case, and builds the precomputed answers.
fn answer_generic(zone: &Zone, datagram: &[u8], out: &mut Vec<u8>) -> Option<ResponseCode> {
    let result = match parse(datagram) {
        Ok(q) => {
            let answer = zone.answer(q.query.name(), q.query.query_type(), q.query.query_class());
            let metadata = Responder::metadata(&q.metadata, answer.rcode, answer.authoritative);
            let edns = Responder::response_edns(q.edns.as_ref());
            let limit = match &q.edns {
                Some(e) => e.max_payload().clamp(CLASSIC_UDP_LIMIT, UDP_PAYLOAD),
                None => CLASSIC_UDP_LIMIT,
            };
            encode_udp(
                out,
                &metadata,
                q.question,
                Some(&answer),
                edns.as_ref(),
                limit,
            )
            .map(|_| answer.rcode)
        }
        Err(Reject::Drop) => return None,
        Err(Reject::Error(request, rcode, edns)) => {
            let metadata = Responder::metadata(&request, rcode, false);
            encode_udp(out, &metadata, &[], None, edns.as_ref(), CLASSIC_UDP_LIMIT).map(|_| rcode)
        }
    };
    match result {
        Ok(rcode) => Some(rcode),
        Err(error) => {
            warn!(%error, "cannot encode a DNS response");
            None
        }
    }
}

/// How often a UDP thread blocked in `recv` looks at the cancellation token.
const UDP_CANCEL_POLL: Duration = Duration::from_millis(200);

/// Serves one UDP socket on the calling (blocking) thread until cancelled.
///
/// A plain blocking loop rather than an async task, so the kernel wakes this thread
/// directly when datagrams arrive, and batched: each system call moves up to
/// [`mmsg::BATCH`] datagrams. Both matter at tens of thousands of queries per second,
/// where the system calls and wake-ups cost more CPU than answering.
fn serve_udp_blocking(
    socket: std::net::UdpSocket,
    zone: SharedZone,
    stats: Arc<DnsStats>,
    cancel: CancellationToken,
) {
    use std::os::fd::AsFd;
    let local = socket.local_addr().ok();
    if let Err(error) = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(UDP_CANCEL_POLL)))
    {
        warn!(?local, %error, "cannot make the UDP socket blocking; DNS on it stops");
        return;
    }
    let (mut rx, mut tx) = (
        mmsg::RecvBatch::new(),
        mmsg::SendBatch::new(UDP_PAYLOAD as usize),
    );
    while !cancel.is_cancelled() {
        let n = match rx.recv(socket.as_fd()) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(error) => {
                // ICMP errors from earlier sends surface here on Linux; keep serving.
                debug!(%error, "udp receive error");
                continue;
            }
        };
        let zone = zone.load();
        for (datagram, peer) in (0..n).filter_map(|i| rx.get(i)) {
            if let Some(rcode) = answer_udp(&zone, datagram, tx.next_buffer()) {
                stats.count(rcode);
                tx.commit(peer);
            }
        }
        if let Err(error) = tx.send(socket.as_fd()) {
            debug!(%error, "udp send error");
        }
    }
}

/// The hickory-server request handler used for TCP.
struct TcpHandler {
    zone: SharedZone,
    stats: Arc<DnsStats>,
}

#[async_trait::async_trait]
impl RequestHandler for TcpHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let edns = Responder::response_edns(request.edns.as_ref());
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let queries = request.queries.queries();
        let result = match Responder::check(&request.metadata, queries, request.edns.as_ref()) {
            Err(rcode) => {
                self.stats.count(rcode);
                let response =
                    builder.build_no_records(Responder::metadata(&request.metadata, rcode, false));
                response_handle.send_response(response).await
            }
            Ok(()) => {
                let zone = self.zone.load_full();
                let q = &queries[0];
                let answer = zone.answer(q.name(), q.query_type(), q.query_class());
                self.stats.count(answer.rcode);
                let metadata =
                    Responder::metadata(&request.metadata, answer.rcode, answer.authoritative);
                let response = builder.build(
                    metadata,
                    answer.answers.iter().copied(),
                    answer.authority.iter(),
                    std::iter::empty(),
                    answer.additional.iter(),
                );
                response_handle.send_response(response).await
            }
        };
        match result {
            Ok(info) => info,
            Err(error) => {
                debug!(%error, src = %request.src(), "cannot send a TCP response");
                let mut m = Responder::metadata(&request.metadata, ResponseCode::ServFail, false);
                m.message_type = MessageType::Response;
                ResponseInfo::from(Header {
                    metadata: m,
                    counts: Default::default(),
                })
            }
        }
    }
}

/// Sockets bound for DNS: UDP and TCP on each configured address.
#[derive(Debug)]
pub struct Listeners {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

/// Why the DNS sockets could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for DNS on {proto} {addr}: {error}")]
pub struct BindError {
    proto: &'static str,
    addr: SocketAddr,
    error: std::io::Error,
}

impl Listeners {
    /// Binds UDP and TCP on every address. With port 0 the kernel picks a port for UDP
    /// and TCP is bound to the same one.
    pub async fn bind(addrs: &[SocketAddr]) -> Result<Listeners, BindError> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for &addr in addrs {
            let (u, t) = Self::bind_pair(addr).await?;
            udp.push(u);
            tcp.push(t);
        }
        Ok(Listeners { udp, tcp })
    }

    /// UDP and TCP on one address and the same port. When the kernel chooses the port
    /// (port 0), TCP may find it taken by another socket; then another port is tried.
    async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), BindError> {
        const ATTEMPTS: usize = 20;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let u = UdpSocket::bind(addr).await.map_err(|error| BindError {
                proto: "UDP",
                addr,
                error,
            })?;
            let bound = u.local_addr().map_err(|error| BindError {
                proto: "UDP",
                addr,
                error,
            })?;
            match TcpListener::bind(bound).await {
                Ok(t) => return Ok((u, t)),
                Err(error)
                    if addr.port() == 0
                        && error.kind() == std::io::ErrorKind::AddrInUse
                        && attempt < ATTEMPTS => {}
                Err(error) => {
                    return Err(BindError {
                        proto: "TCP",
                        addr: bound,
                        error,
                    });
                }
            }
        }
    }

    /// The addresses actually bound (ports resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|u| u.local_addr().ok())
            .collect()
    }
}

/// Serves DNS on `listeners` until `cancel` fires. Returns when every socket task ended.
pub async fn serve(
    listeners: Listeners,
    zone: SharedZone,
    stats: Arc<DnsStats>,
    cancel: CancellationToken,
) -> Result<(), TcpServerError> {
    let mut server = hickory_server::Server::new(TcpHandler {
        zone: zone.clone(),
        stats: stats.clone(),
    });
    for t in listeners.tcp {
        server.register_listener(t, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    }
    let mut udp_tasks = tokio::task::JoinSet::new();
    for u in listeners.udp {
        let socket = u
            .into_std()
            .map_err(|e| TcpServerError(format!("cannot take over the UDP socket: {e}")))?;
        let (zone, stats, cancel) = (zone.clone(), stats.clone(), cancel.clone());
        udp_tasks.spawn_blocking(move || serve_udp_blocking(socket, zone, stats, cancel));
    }
    cancel.cancelled().await;
    let tcp_result = server.shutdown_gracefully().await;
    while udp_tasks.join_next().await.is_some() {}
    tcp_result.map_err(|e| TcpServerError(e.to_string()))
}

/// A TCP listener task of hickory-server ended with an error.
#[derive(Debug, thiserror::Error)]
#[error("DNS TCP server: {0}")]
pub struct TcpServerError(String);

#[cfg(test)]
mod tests;
