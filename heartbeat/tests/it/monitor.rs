//! The monitor against live test servers: independent per-target scheduling, the
//! detector's transitions in reports, and shutdown.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use heartbeat::{
    Health, MonitorConfig, ProbeError, Protocol, Report, Stage, Target, Transition, spawn_monitor,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::servers::{
    TcpBehaviour, UdpBehaviour, serve_tcp, serve_udp, tcp_listener_pair, tcp_server,
    udp_socket_pair,
};

const ANSWERING: usize = 10;
const SILENT: usize = 20;
const RISE: u32 = 2;
const FALL: u32 = 3;
/// Upper bound on how long a test waits for something that normally takes well under
/// a second.
const PATIENCE: Duration = Duration::from_secs(20);

fn config(protocol: Protocol, port: u16) -> MonitorConfig {
    MonitorConfig {
        protocol,
        port,
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(40),
        rise: RISE,
        fall: FALL,
    }
}

fn target(id: usize, last_octet: u8, initial: Health) -> Target {
    Target {
        id,
        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)),
        initial,
    }
}

/// Asserts that the first transition in `reports` is `expected` and that it came on
/// the report that completed a streak of exactly `threshold` results of its kind
/// (answers for up, misses for down) — wherever in the sequence that was.
fn assert_first_transition(reports: &[Report], expected: Transition, threshold: u32) {
    let at = reports
        .iter()
        .position(|r| r.transition.is_some())
        .unwrap_or_else(|| panic!("no transition in {} reports", reports.len()));
    assert_eq!(reports[at].transition, Some(expected));
    assert_eq!(reports[at].health, expected.to);
    let answered = expected.to == Health::Up;
    let streak = reports[..=at]
        .iter()
        .rev()
        .take_while(|r| r.outcome.is_ok() == answered)
        .count();
    assert_eq!(streak, threshold as usize, "streak before {expected}");
    // Before it, the health was the initial one.
    assert!(reports[..at].iter().all(|r| r.health == expected.from));
}

#[tokio::test]
async fn a_silent_target_neither_delays_the_answering_one_nor_fools_the_detector() {
    let (echo_listener, silent_listener) = tcp_listener_pair().await;
    let port = echo_listener.local_addr().unwrap().port();
    let echo_stats = serve_tcp(echo_listener, TcpBehaviour::Echo);
    let silent_stats = serve_tcp(silent_listener, TcpBehaviour::Silent);

    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let monitor = spawn_monitor(
        config(Protocol::Tcp, port),
        vec![
            target(ANSWERING, 1, Health::Unknown),
            target(SILENT, 2, Health::Unknown),
        ],
        tx,
        cancel.clone(),
    );
    assert_eq!(monitor.running(), 2);

    let mut by_target: HashMap<usize, Vec<Report>> = HashMap::new();
    // Answers that arrived while a probe of the silent target was in flight (the
    // silent server held an open connection): proof that its timeouts do not hold
    // up the answering target.
    let mut answered_during_silent_probe = 0;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let enough = by_target.get(&ANSWERING).map_or(0, Vec::len) >= 20
            && by_target.get(&SILENT).map_or(0, Vec::len) >= 10
            && answered_during_silent_probe >= 3;
        if enough {
            break;
        }
        let report = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("reports stopped arriving before the test saw enough")
            .expect("the monitor closed its channel while running");
        if report.target == ANSWERING
            && report.outcome.is_ok()
            && silent_stats.open.load(Ordering::SeqCst) > 0
        {
            answered_during_silent_probe += 1;
        }
        by_target.entry(report.target).or_default().push(report);
    }
    assert_eq!(by_target.len(), 2, "reports for unknown targets");

    let answering = &by_target[&ANSWERING];
    let silent = &by_target[&SILENT];
    assert_first_transition(
        answering,
        Transition {
            from: Health::Unknown,
            to: Health::Up,
        },
        RISE,
    );
    assert_first_transition(
        silent,
        Transition {
            from: Health::Unknown,
            to: Health::Down,
        },
        FALL,
    );
    for report in silent {
        match &report.outcome {
            Err(ProbeError::Timeout {
                stage: Stage::Echo, ..
            }) => {}
            other => panic!("silent target: expected echo timeouts, got {other:?}"),
        }
    }
    // The silent target got one connection per probe, like the answering one.
    assert!(silent_stats.accepted.load(Ordering::SeqCst) >= silent.len());
    assert!(echo_stats.accepted.load(Ordering::SeqCst) >= answering.len());
    // Reports of one target come in probe order.
    for reports in [answering, silent] {
        assert!(reports.windows(2).all(|w| w[0].at <= w[1].at));
    }

    // Cancelling stops every task; the channel then closes once drained.
    monitor.cancel();
    assert!(cancel.is_cancelled());
    timeout(PATIENCE, monitor.join())
        .await
        .expect("monitor did not stop after cancellation");
    assert_eq!(monitor.running(), 0);
    let drained = timeout(PATIENCE, async {
        let mut n = 0usize;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    })
    .await
    .expect("report channel stayed open after the monitor stopped");
    assert!(drained <= 64, "{drained} reports after cancellation");
}

#[tokio::test]
async fn initial_health_is_kept_until_the_thresholds_are_met_over_udp() {
    let (echo_socket, silent_socket) = udp_socket_pair().await;
    let port = echo_socket.local_addr().unwrap().port();
    serve_udp(echo_socket, UdpBehaviour::Echo);
    serve_udp(silent_socket, UdpBehaviour::Silent);

    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    // Restored state says the answering member was down and the silent one up: each
    // must be believed until `rise` answers / `fall` misses say otherwise.
    let monitor = spawn_monitor(
        config(Protocol::Udp, port),
        vec![
            target(ANSWERING, 1, Health::Down),
            target(SILENT, 2, Health::Up),
        ],
        tx,
        cancel.clone(),
    );

    let mut by_target: HashMap<usize, Vec<Report>> = HashMap::new();
    let deadline = Instant::now() + PATIENCE;
    while by_target
        .values()
        .filter(|reports| reports.iter().any(|r| r.transition.is_some()))
        .count()
        < 2
    {
        let report = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("no transition for both targets in time")
            .expect("the monitor closed its channel while running");
        by_target.entry(report.target).or_default().push(report);
    }
    assert_first_transition(
        &by_target[&ANSWERING],
        Transition {
            from: Health::Down,
            to: Health::Up,
        },
        RISE,
    );
    assert_first_transition(
        &by_target[&SILENT],
        Transition {
            from: Health::Up,
            to: Health::Down,
        },
        FALL,
    );

    cancel.cancel();
    timeout(PATIENCE, monitor.join())
        .await
        .expect("monitor did not stop after cancellation");
}

#[tokio::test]
async fn tasks_stop_when_the_report_receiver_is_dropped() {
    let (addr, _stats) = tcp_server(TcpBehaviour::Echo).await;
    let port = addr.port();

    let (tx, mut rx) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    let monitor = spawn_monitor(
        config(Protocol::Tcp, port),
        vec![target(ANSWERING, 1, Health::Unknown)],
        tx,
        cancel.clone(),
    );
    // Wait for one report so the task is known to be running, then walk away.
    timeout(PATIENCE, rx.recv())
        .await
        .expect("no report in time")
        .expect("channel closed early");
    drop(rx);
    timeout(PATIENCE, monitor.join())
        .await
        .expect("monitor kept running without a receiver");
    assert!(!cancel.is_cancelled());
}
