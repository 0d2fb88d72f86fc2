//! Text renderings of dnsd's status and events for people reading a terminal or a log:
//! the table `console status` prints and the lines `console events` prints (the demo's
//! headless `status` command prints the same table), and the phrases the live view
//! shares with them (a restart under way, a terminal server's standing, kept files).

use dnsd_api::{ClusterStatus, Event, Health, Observers, PassReport, RecoveryStatus, Status};

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
    if let Some(cluster) = &st.cluster {
        out.push_str(&cluster_block(cluster));
    }
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
        if let (Some(next), Some(why)) = (&svc.next, &svc.next_reason) {
            out.push_str(&format!("  next: {next} {why}\n"));
        }
        if let Some(risk) = &svc.split_brain_risk {
            out.push_str(&format!("  ⚠ split-brain risk (unfenced): {risk}\n"));
        }
        let mut rows = vec![vec![
            "NODE".to_owned(),
            "ADDRESS".to_owned(),
            "ROLE".to_owned(),
            "HEALTH".to_owned(),
        ]];
        // In a cluster: how many live terminal servers see the member down.
        let observed = st.cluster.is_some();
        if observed {
            rows[0].push("DOWN".to_owned());
        }
        rows[0].extend(["RTT", "SYNC", "LAG", "NOTES"].map(str::to_owned));
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
            if let Some(sorted) = m
                .sync
                .as_ref()
                .and_then(|y| y.last_pass.as_ref())
                .and_then(sorted_pass)
            {
                notes.push(format!("last resync: {sorted}"));
            }
            let mut row = vec![
                m.node.clone(),
                node.map(|n| n.address.clone()).unwrap_or_default(),
                m.role.to_string(),
                health(node.map(|n| n.health), m.check.as_ref().map(|c| c.health)),
            ];
            if observed {
                row.push(
                    node.and_then(|n| n.observers)
                        .map_or_else(|| "-".to_owned(), seen_down),
                );
            }
            row.extend([rtt, sync, lag, notes.join(", ")]);
            rows.push(row);
        }
        let mut widths = vec![0usize; rows[0].len()];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::from(" ");
            for (i, (cell, w)) in row.iter().zip(widths.iter().copied()).enumerate() {
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

/// The terminal servers, as one of them sees them: a sentence on this one (its role,
/// its lease, etcd), then one line per live terminal server.
fn cluster_block(c: &ClusterStatus) -> String {
    let mut out = format!("cluster: this is {}, {}", c.name, standing(c));
    out.push_str(&format!(
        "; a member is down when {} terminal server(s) see it down\n",
        c.down_quorum
    ));
    let mut rows = vec![[
        "TERMINAL SERVER".to_owned(),
        "ROLE".to_owned(),
        "CONTROL".to_owned(),
    ]];
    for s in &c.servers {
        let mut name = s.name.clone();
        if s.name == c.name {
            name.push_str(" (this)");
        }
        rows.push([
            name,
            if s.leader { "leader" } else { "follower" }.to_owned(),
            s.contact.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    let mut widths = [0usize; 3];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let line = format!(
            "  {:<w0$} {:<w1$} {}",
            row[0],
            row[1],
            row[2],
            w0 = widths[0],
            w1 = widths[1]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// How a terminal server stands, in words: "the leader (lease 2.6s left), etcd
/// reachable", "a follower (ts1 leads), etcd reachable", or, without etcd, "etcd
/// UNREACHABLE for 12s: it answers the last state it knew and decides nothing".
pub fn standing(c: &ClusterStatus) -> String {
    let role = if c.leading {
        match c.lease_left_ms {
            Some(left) => format!("the leader (lease {} left)", units::span(left)),
            None => "the leader".to_owned(),
        }
    } else {
        match &c.leader {
            Some(leader) => format!("a follower ({leader} leads)"),
            None => "a follower (no terminal server leads right now)".to_owned(),
        }
    };
    if c.etcd_reachable {
        format!("{role}, etcd reachable")
    } else {
        let since = c
            .stale_for_ms
            .map(|ms| format!(" for {}", units::span(ms)))
            .unwrap_or_default();
        format!(
            "{role}, etcd UNREACHABLE{since}: it answers the last state it knew and decides nothing"
        )
    }
}

/// How many of the live terminal servers see a member down: "2/3".
pub fn seen_down(o: Observers) -> String {
    format!("{}/{}", o.down, o.up + o.down + o.unknown)
}

/// What a pass that sorted what it overwrote (the first after a change of primary or a
/// member's return) did: "kept 3 file(s) with writes the primary lacks (1.0K) in DIR;
/// 100 stale replaced". `None` for a regular pass.
pub fn sorted_pass(p: &PassReport) -> Option<String> {
    let kept = p.kept_files.filter(|&k| k > 0).map(|k| {
        let bytes = p
            .kept_bytes
            .map(|b| format!(" ({})", units::bytes(b)))
            .unwrap_or_default();
        let dir = p
            .kept_dir
            .as_ref()
            .map(|d| format!(" in {d}"))
            .unwrap_or_default();
        format!("kept {k} file(s) with writes the primary lacks{bytes}{dir}")
    });
    let replaced = p.replaced_files.map(|r| format!("{r} stale replaced"));
    match (kept, replaced) {
        (None, None) => None,
        (Some(k), None) => Some(k),
        (None, Some(r)) => Some(format!("kept nothing; {r}")),
        (Some(k), Some(r)) => Some(format!("{k}; {r}")),
    }
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

/// The first `http://` or `https://` URL in a message, without the punctuation after it.
pub fn contact_url(message: &str) -> Option<&str> {
    let start = ["https://", "http://"]
        .iter()
        .filter_map(|scheme| message.find(scheme))
        .min()?;
    let rest = &message[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, ')' | ',' | ';' | '"'))
        .unwrap_or(rest.len());
    Some(rest[..end].trim_end_matches(['.', ':']))
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
    fn status_table_shows_the_terminal_servers_and_how_many_see_each_member_down() {
        let text = status_table(&fixtures::cluster());
        insta::assert_snapshot!("status_table_cluster", text);
        for needed in [
            "cluster: this is ts1, the leader (lease 2.6s left), etcd reachable; a member is down when 2 terminal server(s) see it down",
            "ts1 (this)      leader   http://127.0.0.1:8053",
            "next: app3 holds the freshest copy (pass #41; app2 #40 only)",
            "⚠ split-brain risk (unfenced):",
            "last resync: kept 3 file(s) with writes the primary lacks (1.0K) in /srv/data.dnsd-kept/epoch-3-pass-40; 100 stale replaced",
        ] {
            assert!(text.contains(needed), "{needed:?} missing in:\n{text}");
        }
        let follower = status_table(&fixtures::cluster_follower_without_etcd());
        assert!(
            follower.contains(
                "cluster: this is ts2, a follower (ts1 leads), etcd UNREACHABLE for 12s: it answers the last state it knew and decides nothing"
            ),
            "{follower}"
        );
    }

    #[test]
    fn contact_urls_are_found_in_refusals() {
        assert_eq!(
            contact_url("leads; send the action there (http://127.0.0.1:8053)."),
            Some("http://127.0.0.1:8053")
        );
        assert_eq!(
            contact_url("ts1 leads (https://[::1]:8053)"),
            Some("https://[::1]:8053")
        );
        assert_eq!(contact_url("nothing here"), None);
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
