//! Text renderings of dnsd's status and events for people reading a terminal or a log:
//! the table `console status` prints and the lines `console events` prints (the demo's
//! headless `status` command prints the same table).

use dnsd_api::{Event, Health, RecoveryStatus, Status};

use crate::units;

/// The status as a readable table, one block per service.
pub fn status_table(st: &Status) -> String {
    let hb = &st.heartbeat;
    let mut out = format!(
        "dnsd: zone {}, serial {}, ttl {}s, heartbeat {} port {} every {} (fall {}, rise {}), up {}\n",
        st.zone,
        st.serial,
        st.ttl,
        hb.protocol,
        hb.port,
        units::span(hb.interval_ms),
        hb.fall,
        hb.rise,
        units::span(st.now_ms.saturating_sub(st.started_ms))
    );
    for svc in &st.services {
        let mut state = vec![if svc.paused { "PAUSED" } else { "running" }.to_owned()];
        if svc.stranded {
            state.push("STRANDED".into());
        }
        if let Some(t) = &svc.transition {
            state.push(format!("in progress: {t}"));
        }
        if let Some(r) = &svc.recovery {
            state.push(recovery(r, st.now_ms));
        }
        out.push_str(&format!(
            "\nservice {} ({}): primary {}, epoch {}, {}; failback {}; next {}\n",
            svc.name,
            svc.fqdn,
            svc.primary,
            svc.epoch,
            state.join(", "),
            if svc.failback.is_empty() {
                "manual"
            } else {
                &svc.failback
            },
            svc.next
                .as_deref()
                .unwrap_or("none (no member can be promoted)")
        ));
        let mut rows = vec![[
            "NODE".to_owned(),
            "ADDRESS".to_owned(),
            "ROLE".to_owned(),
            "HEALTH".to_owned(),
            "RTT".to_owned(),
            "SYNC".to_owned(),
            "LAG".to_owned(),
            "NOTES".to_owned(),
        ]];
        for m in &svc.members {
            let node = st.node(&m.node);
            let rtt = node
                .filter(|n| n.health != Health::Down)
                .and_then(|n| n.rtt_us)
                .map(units::rtt)
                .unwrap_or_else(|| "-".into());
            let sync = match (&m.sync, svc.paths.is_empty(), m.node == svc.primary) {
                (_, true, _) => "-".to_owned(),
                (_, false, true) => "source".to_owned(),
                (None, _, _) => "-".to_owned(),
                (Some(y), _, _) => match (&y.running, y.last_sync_ms) {
                    (Some(r), _) => format!("{} pass {}%", r.kind, r.percent),
                    (None, _) if y.failures > 0 => format!("failing x{}", y.failures),
                    (None, Some(t)) => format!("synced {}", units::ago(t, st.now_ms)),
                    (None, None) => "never synced".into(),
                },
            };
            let lag = m
                .sync
                .as_ref()
                .and_then(|y| y.lag_ms)
                .map(units::span)
                .unwrap_or_else(|| "-".into());
            let mut notes = Vec::new();
            if svc.preferred == m.node {
                notes.push("preferred".to_owned());
            }
            if node.is_some_and(|n| n.maintenance) {
                notes.push("maintenance".into());
            }
            if let Some(until) = m.quarantined_until_ms.filter(|&u| u > st.now_ms) {
                notes.push(format!(
                    "quarantined for flapping ({} left)",
                    units::span(until - st.now_ms)
                ));
            }
            if svc.next.as_deref() == Some(m.node.as_str()) {
                notes.push("next".into());
            }
            if m.node != svc.primary
                && let Some(why) = &m.skip_reason
            {
                notes.push(format!("skipped: {why}"));
            }
            rows.push([
                m.node.clone(),
                node.map(|n| n.address.clone()).unwrap_or_default(),
                m.role.to_string(),
                health(node.map(|n| n.health), m.check.as_ref().map(|c| c.health)),
                rtt,
                sync,
                lag,
                notes.join(", "),
            ]);
        }
        let mut widths = [0usize; 8];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::from(" ");
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(&format!(" {cell}"));
                } else {
                    line.push_str(&format!(" {cell:<w$}"));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// A member's health in one service: its host's, and its service check's when the
/// service has one ("up, service down").
fn health(host: Option<Health>, check: Option<Health>) -> String {
    match (host, check) {
        (None, _) => String::new(),
        (Some(host), None) => host.to_string(),
        (Some(host), Some(check)) => format!("{host}, service {check}"),
    }
}

/// What is being tried on a primary whose service check fails while its host answers:
/// "restarting app1 (attempt 1 of 2): its host answers, its service does not; fails over
/// in 22s unless its check passes".
pub fn recovery(r: &RecoveryStatus, now: u64) -> String {
    let doing = if r.restarting {
        format!(
            "restarting {} (attempt {} of {})",
            r.node, r.attempt, r.attempts
        )
    } else {
        let next = match r.next_attempt_ms {
            Some(at) => format!("next restart in {}", units::span(at.saturating_sub(now))),
            None => "no restart left".to_owned(),
        };
        format!(
            "waiting for {}'s check after restart {} of {}; {next}",
            r.node, r.attempt, r.attempts
        )
    };
    format!(
        "{doing}: its host answers, its service does not; fails over in {} unless its check passes",
        units::span(r.deadline_ms.saturating_sub(now))
    )
}

/// One event as a log line.
pub fn event_line(e: &Event) -> String {
    let mut subject = Vec::new();
    if let Some(s) = &e.service {
        subject.push(s.clone());
    }
    if let Some(n) = &e.node {
        subject.push(n.clone());
    }
    if let (Some(old), Some(new)) = (&e.old_primary, &e.new_primary) {
        subject.push(format!("{old}->{new}"));
    }
    if let (Some(epoch), Some(_)) = (e.epoch, &e.new_primary) {
        subject.push(format!("epoch {epoch}"));
    }
    let subject = if subject.is_empty() {
        String::new()
    } else {
        format!("[{}] ", subject.join(" "))
    };
    format!(
        "{} #{} {} {subject}{}\n",
        units::timestamp(e.at_ms),
        e.seq,
        e.kind,
        e.reason
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn status_table_names_roles_sync_and_skips() {
        let text = status_table(&fixtures::member_down());
        insta::assert_snapshot!("status_table", text);
        assert!(text.contains("skipped: is down"), "{text}");
    }

    #[test]
    fn status_table_tells_host_from_service_health_and_shows_quarantine_and_restarts() {
        let text = status_table(&fixtures::service_checks());
        for needed in [
            "restarting app1 (attempt 1 of 2): its host answers, its service does not; fails over in 22s unless its check passes",
            "up, service down",
            "up, service up",
            "quarantined for flapping (4m00s left)",
        ] {
            assert!(text.contains(needed), "{needed:?} missing in:\n{text}");
        }
    }

    #[test]
    fn events_print_as_timestamped_lines() {
        let events = fixtures::events();
        assert_eq!(
            event_line(&events[2]),
            "2023-11-14T22:11:46.000Z #3 failover [www app1->app2 epoch 3] app1 is down; app2 promoted (first eligible after app1)\n"
        );
        let mut bare = events[0].clone();
        bare.service = None;
        assert_eq!(
            event_line(&bare),
            "2023-11-14T22:00:46.000Z #1 started state restored\n"
        );
    }
}
