//! A minimal DNS client for polling: one A query over UDP with a short timeout, decoded
//! with hickory-proto. Used every 10 ms during failover trials, where spawning `dig`
//! would cost more than the resolution we want.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use crate::procs;

/// What a server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response code.
    pub rcode: ResponseCode,
    /// The addresses in the answer section, in the server's order.
    pub addrs: Vec<IpAddr>,
    /// The size of the response on the wire.
    pub size: usize,
    /// The smallest TTL of the answer section, seconds (`None` without answers): how long
    /// a client may keep using the answer.
    pub ttl: Option<u32>,
}

/// A UDP client bound to loopback, reused across queries.
#[derive(Debug)]
pub struct Client {
    socket: UdpSocket,
    next_id: u16,
}

impl Client {
    /// A client bound to loopback whose queries wait at most `timeout` for an answer.
    pub fn new(timeout: Duration) -> anyhow::Result<Client> {
        Client::bound(SocketAddr::from(([127, 0, 0, 1], 0)), timeout)
    }

    /// A client bound to `local` (port 0: any), for a server off loopback (a lab host
    /// asking the terminal server).
    pub fn bound(local: SocketAddr, timeout: Duration) -> anyhow::Result<Client> {
        let socket = UdpSocket::bind(local).with_context(|| format!("binding UDP {local}"))?;
        socket
            .set_read_timeout(Some(timeout))
            .context("setting the UDP timeout")?;
        Ok(Client {
            socket,
            next_id: rand::random(),
        })
    }

    /// Asks `server` for `name`'s records of `rtype` (without EDNS, like dnsperf).
    pub fn query(
        &mut self,
        server: SocketAddr,
        name: &str,
        rtype: RecordType,
    ) -> anyhow::Result<Answer> {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.add_query(Query::query(
            Name::from_str(name).with_context(|| format!("bad name {name:?}"))?,
            rtype,
        ));
        let bytes = msg.to_vec().context("encoding a query")?;
        self.socket
            .send_to(&bytes, server)
            .with_context(|| format!("sending to {server}"))?;
        let mut buf = [0u8; 4096];
        // Skip stale answers to earlier, timed-out queries.
        for _ in 0..16 {
            let (n, from) = self
                .socket
                .recv_from(&mut buf)
                .with_context(|| format!("no answer from {server}"))?;
            if from != server {
                continue;
            }
            let reply = Message::from_vec(&buf[..n]).context("decoding an answer")?;
            if reply.metadata.id != id {
                continue;
            }
            let addrs = reply
                .answers
                .iter()
                .filter_map(|r| r.data.ip_addr())
                .collect();
            return Ok(Answer {
                rcode: reply.metadata.response_code,
                addrs,
                size: n,
                ttl: reply.answers.iter().map(|r| r.ttl).min(),
            });
        }
        bail!("{server} kept sending unexpected datagrams")
    }

    /// The A addresses `server` answers for `name`, or `None` on a timeout or error.
    pub fn a(&mut self, server: SocketAddr, name: &str) -> Option<Vec<IpAddr>> {
        self.query(server, name, RecordType::A)
            .ok()
            .map(|a| a.addrs)
    }

    /// Asks every server in `servers` for `name` every `every`, counted from `t0`, until
    /// each has answered exactly `want` once (or `limit` has passed since `t0`, or a stop
    /// is requested). Returns, per server, the time of its first such answer in ms since
    /// `t0`; `None` for one that never gave it.
    pub fn poll_until(
        &mut self,
        servers: &[SocketAddr],
        name: &str,
        want: &[IpAddr],
        t0: Instant,
        limit: Duration,
        every: Duration,
    ) -> anyhow::Result<Vec<Option<f64>>> {
        let mut found: Vec<Option<f64>> = vec![None; servers.len()];
        let mut tick = 0u32;
        while found.iter().any(Option::is_none) && t0.elapsed() < limit {
            procs::check_stop()?;
            for (i, &server) in servers.iter().enumerate() {
                if found[i].is_none() && self.a(server, name).as_deref() == Some(want) {
                    found[i] = Some(t0.elapsed().as_secs_f64() * 1000.0);
                }
            }
            tick += 1;
            let next = t0 + every * tick;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        Ok(found)
    }
}
