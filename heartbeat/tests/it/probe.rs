//! Echo probes against test servers: what counts as answered and what as which miss.

use std::net::Ipv6Addr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use heartbeat::{NONCE_LEN, ProbeError, Protocol, Stage, probe};
use tokio::time::{Instant, sleep};

use crate::servers::{
    TcpBehaviour, UdpBehaviour, closed_udp_port, refusing_tcp_port, tcp_server, tcp_server_on,
    udp_server, udp_server_on,
};

/// For probes expected to succeed: generous, so a loaded machine cannot fail them.
const GENEROUS: Duration = Duration::from_secs(5);
/// For probes expected to time out: short, so the tests stay quick.
const SHORT: Duration = Duration::from_millis(300);

/// Waits (bounded) until `condition` holds, for server-side effects that follow the
/// probe's return asynchronously.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn tcp_echo_is_answered_with_a_positive_rtt_and_closed_cleanly() {
    let (addr, stats) = tcp_server(TcpBehaviour::Echo).await;
    let rtt = probe(Protocol::Tcp, addr, GENEROUS).await.unwrap();
    assert!(rtt > Duration::ZERO);
    assert!(rtt < GENEROUS);
    // The probe closed with a FIN: the server read end-of-file, not a reset.
    eventually("the server to see the close", || {
        stats.open.load(Ordering::SeqCst) == 0
    })
    .await;
    assert_eq!(stats.clean_eof.load(Ordering::SeqCst), 1);
    assert_eq!(stats.errors.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tcp_uses_a_fresh_connection_and_a_fresh_nonce_per_probe() {
    let (addr, stats) = tcp_server(TcpBehaviour::Echo).await;
    for _ in 0..3 {
        probe(Protocol::Tcp, addr, GENEROUS).await.unwrap();
    }
    assert_eq!(stats.accepted.load(Ordering::SeqCst), 3);
    let nonces = stats.nonces.lock().unwrap().clone();
    assert_eq!(nonces.len(), 3);
    assert!(nonces.iter().all(|n| n.len() == NONCE_LEN));
    assert_ne!(nonces[0], nonces[1]);
    assert_ne!(nonces[1], nonces[2]);
    assert_ne!(nonces[0], nonces[2]);
}

#[tokio::test]
async fn tcp_that_accepts_but_never_echoes_times_out() {
    let (addr, stats) = tcp_server(TcpBehaviour::Silent).await;
    let error = probe(Protocol::Tcp, addr, SHORT).await.unwrap_err();
    match &error {
        ProbeError::Timeout {
            addr: a,
            timeout,
            stage,
        } => {
            assert_eq!(*a, addr);
            assert_eq!(*timeout, SHORT);
            assert_eq!(*stage, Stage::Echo);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(error.kind(), "timeout");
    assert_eq!(error.addr(), addr);
    // The server did receive the nonce: the miss is the missing echo.
    assert_eq!(stats.nonces.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn tcp_that_echoes_wrong_bytes_is_a_mismatch() {
    let (addr, _stats) = tcp_server(TcpBehaviour::Wrong).await;
    let error = probe(Protocol::Tcp, addr, GENEROUS).await.unwrap_err();
    match &error {
        ProbeError::Mismatch {
            addr: a,
            expected_len,
            got_len,
        } => {
            assert_eq!(*a, addr);
            assert_eq!(*expected_len, NONCE_LEN);
            assert!(*got_len >= 1 && *got_len <= NONCE_LEN, "{got_len}");
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert_eq!(error.kind(), "mismatch");
}

#[tokio::test]
async fn tcp_that_closes_before_echoing_is_closed() {
    let (addr, _stats) = tcp_server(TcpBehaviour::CloseAfter { echo: 0 }).await;
    let error = probe(Protocol::Tcp, addr, GENEROUS).await.unwrap_err();
    assert!(
        matches!(error, ProbeError::Closed { got_len: 0, expected_len: NONCE_LEN, addr: a } if a == addr),
        "{error:?}"
    );
    assert_eq!(error.kind(), "closed");
}

#[tokio::test]
async fn tcp_that_closes_halfway_through_the_echo_is_closed() {
    let (addr, _stats) = tcp_server(TcpBehaviour::CloseAfter { echo: 7 }).await;
    let error = probe(Protocol::Tcp, addr, GENEROUS).await.unwrap_err();
    assert!(
        matches!(error, ProbeError::Closed { got_len: 7, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn tcp_refused_port_is_a_connect_error() {
    let (_socket, addr) = refusing_tcp_port();
    let error = probe(Protocol::Tcp, addr, GENEROUS).await.unwrap_err();
    match &error {
        ProbeError::Connect { addr: a, source } => {
            assert_eq!(*a, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert_eq!(error.kind(), "refused");
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}

#[tokio::test]
async fn udp_echo_is_answered_with_a_positive_rtt() {
    let addr = udp_server(UdpBehaviour::Echo).await;
    let rtt = probe(Protocol::Udp, addr, GENEROUS).await.unwrap();
    assert!(rtt > Duration::ZERO);
    assert!(rtt < GENEROUS);
}

#[tokio::test]
async fn udp_garbage_then_silence_is_a_miss() {
    let addr = udp_server(UdpBehaviour::GarbageOnce).await;
    let error = probe(Protocol::Udp, addr, SHORT).await.unwrap_err();
    match &error {
        ProbeError::Mismatch {
            addr: a,
            expected_len,
            got_len,
        } => {
            assert_eq!(*a, addr);
            assert_eq!((*expected_len, *got_len), (NONCE_LEN, NONCE_LEN));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert_eq!(error.kind(), "mismatch");
    // Later probes get no answer at all: a plain timeout.
    let error = probe(Protocol::Udp, addr, SHORT).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProbeError::Timeout {
                stage: Stage::Echo,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn udp_silence_is_a_timeout() {
    let addr = udp_server(UdpBehaviour::Silent).await;
    let error = probe(Protocol::Udp, addr, SHORT).await.unwrap_err();
    assert!(
        matches!(error, ProbeError::Timeout { stage: Stage::Echo, timeout, .. } if timeout == SHORT),
        "{error:?}"
    );
}

#[tokio::test]
async fn udp_to_a_closed_port_is_refused() {
    let addr = closed_udp_port().await;
    let error = probe(Protocol::Udp, addr, GENEROUS).await.unwrap_err();
    assert!(
        matches!(error, ProbeError::Refused { addr: a } if a == addr),
        "{error:?}"
    );
    assert_eq!(error.kind(), "refused");
}

#[tokio::test]
async fn udp_discards_a_stale_echo_and_accepts_the_right_one() {
    let addr = udp_server(UdpBehaviour::StaleThenRight).await;
    // Every answer is preceded by the previous probe's nonce (random bytes the first
    // time): each probe must skip it and still succeed.
    for _ in 0..3 {
        let rtt = probe(Protocol::Udp, addr, GENEROUS).await.unwrap();
        assert!(rtt > Duration::ZERO);
    }
}

#[tokio::test]
async fn ipv6_loopback_is_probed_over_tcp_and_udp() {
    let (tcp, _stats) = tcp_server_on(Ipv6Addr::LOCALHOST.into(), TcpBehaviour::Echo).await;
    let udp = udp_server_on(Ipv6Addr::LOCALHOST.into(), UdpBehaviour::Echo).await;
    assert!(tcp.is_ipv6() && udp.is_ipv6());
    probe(Protocol::Tcp, tcp, GENEROUS).await.unwrap();
    probe(Protocol::Udp, udp, GENEROUS).await.unwrap();
}

#[test]
fn protocol_names_round_trip_and_bad_names_are_named() {
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        assert_eq!(protocol.to_string().parse::<Protocol>().unwrap(), protocol);
    }
    assert_eq!("tcp".parse::<Protocol>().unwrap(), Protocol::Tcp);
    assert_eq!("udp".parse::<Protocol>().unwrap(), Protocol::Udp);
    let error = "sctp".parse::<Protocol>().unwrap_err();
    assert_eq!(error.value, "sctp");
    assert!(error.to_string().contains("\"sctp\""), "{error}");
}
