//! The member table of the selected service: name, address, role, health (in a cluster,
//! with how many terminal servers see the member down: DOWN "1/3") with RTT and a
//! sparkline of recent probes (for a service with a check, "svc down" when the host
//! answers but the service does not), mirroring state (a progress bar while a pass runs),
//! lag, what the last pass moved, and flags (a quarantine with its time left, files a
//! resync kept). Columns that do not fit are dropped or narrowed, least important first;
//! only the visible rows are built, so 500 members cost no more than a screenful. Under
//! the rows, one line of detail on the selected member.

use dnsd_api::{Health, MemberStatus, NodeStatus, Role, ServiceStatus, Status, SyncStatus};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Widget};

use super::frame::{panel, stale, stale_style};
use super::palette;
use crate::app::{App, Focus};
use crate::{render, units};

pub(super) struct Members<'a> {
    app: &'a App,
}

impl<'a> Members<'a> {
    pub(super) fn new(app: &'a App) -> Members<'a> {
        Members { app }
    }

    /// Lines under the rows about the selected member: one, and a second on what its last
    /// resync kept and replaced, when it did (too long to share the first).
    pub(super) fn detail_lines(&self) -> u16 {
        1 + u16::from(self.resync_line().is_some())
    }

    fn resync_line(&self) -> Option<String> {
        let svc = self.app.current_service()?;
        let m = svc.member(self.app.node.as_ref()?)?;
        m.sync
            .as_ref()?
            .last_pass
            .as_ref()
            .and_then(render::sorted_pass)
    }
}

/// Which columns fit at a width.
#[derive(Clone, Copy)]
struct Columns {
    address: bool,
    last_pass: bool,
    probes: u16,
    sync: u16,
}

impl Columns {
    fn for_width(width: u16) -> Columns {
        if width >= 140 {
            Columns {
                address: true,
                last_pass: true,
                probes: 16,
                sync: 30,
            }
        } else if width >= 110 {
            Columns {
                address: true,
                last_pass: true,
                probes: 10,
                sync: 22,
            }
        } else if width >= 96 {
            Columns {
                address: false,
                last_pass: true,
                probes: 10,
                sync: 20,
            }
        } else if width >= 76 {
            Columns {
                address: false,
                last_pass: false,
                probes: 8,
                sync: 18,
            }
        } else {
            // Reached at 80 columns only with the DOWN column of a cluster beside.
            Columns {
                address: false,
                last_pass: false,
                probes: 6,
                sync: 16,
            }
        }
    }
}

impl Widget for Members<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let visible = app.visible_members();
        let total = app.current_service().map_or(0, |s| s.members.len());
        // The resync line only where at least one row is left beside it.
        let resync = self.resync_line().filter(|_| area.height >= 5);
        let details_h = 1 + u16::from(resync.is_some());
        let rows_fit = area.height.saturating_sub(2 + details_h) as usize;
        app.member_page.set(rows_fit.max(1));

        // Keep the selection in view, moving the window as little as possible.
        let selected = app
            .node
            .as_ref()
            .and_then(|n| visible.iter().position(|m| &m.node == n));
        let mut offset = app.member_offset.get();
        if let Some(sel) = selected {
            if sel < offset {
                offset = sel;
            } else if rows_fit > 0 && sel >= offset + rows_fit {
                offset = sel + 1 - rows_fit;
            }
        }
        offset = offset.min(visible.len().saturating_sub(rows_fit));
        app.member_offset.set(offset);

        let name = match app.current_service() {
            Some(s) => format!("Members of {}", s.name),
            None => "Members".to_owned(),
        };
        let mut details = Vec::new();
        if app.status.is_some() {
            details.push(if visible.len() > rows_fit {
                format!(
                    "{}–{} of {}",
                    offset + 1,
                    (offset + rows_fit).min(visible.len()),
                    visible.len()
                )
            } else {
                match visible.len() {
                    1 => "1 member".to_owned(),
                    n => format!("{n} members"),
                }
            });
        }
        if !app.filter.is_empty() {
            details.push(format!(
                "filter \"{}\" ({} of {total})",
                app.filter,
                visible.len()
            ));
        }
        if stale(app) && app.status.is_some() {
            details.push(format!(
                "STALE: last status {}",
                units::ago(app.status_at_ms, app.now_ms)
            ));
        }
        let block = panel(&name, &details.join(" · "), app.focus == Focus::Members);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height == 0 {
            return;
        }
        let (Some(status), Some(svc)) = (app.status.as_ref(), app.current_service()) else {
            Paragraph::new(Line::styled(" waiting for dnsd's status…", palette::dim()))
                .render(inner, buf);
            return;
        };

        // In a cluster: how many terminal servers see each member down.
        let down_w = status.cluster.as_ref().map(|_| {
            visible
                .iter()
                .filter_map(|m| status.node(&m.node)?.observers)
                .map(|o| render::seen_down(o).chars().count())
                .max()
                .unwrap_or(0)
                .clamp(4, 7) as u16
        });
        let cols = Columns::for_width(
            inner
                .width
                .saturating_sub(1)
                .saturating_sub(down_w.map_or(0, |w| w + 1)),
        );
        let name_w = visible
            .iter()
            .map(|m| m.node.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, 16) as u16;
        let mut widths = vec![Constraint::Length(name_w + 1)];
        let mut header = vec!["NODE"];
        if cols.address {
            widths.push(Constraint::Length(15));
            header.push("ADDRESS");
        }
        // "svc down" needs one more cell than the host's words.
        let health_w = if svc.check.is_some() { 8 } else { 7 };
        widths.extend([Constraint::Length(9), Constraint::Length(health_w)]);
        header.extend(["ROLE", "HEALTH"]);
        if let Some(w) = down_w {
            widths.push(Constraint::Length(w));
            header.push("DOWN");
        }
        widths.extend([
            Constraint::Length(7),
            Constraint::Length(cols.probes),
            Constraint::Length(cols.sync),
            Constraint::Length(6),
        ]);
        header.extend(["RTT", "PROBES", "SYNC", "LAG"]);
        if cols.last_pass {
            widths.push(Constraint::Length(11));
            header.push("LIT/MATCH");
        }
        widths.push(Constraint::Fill(1));
        header.push("FLAGS");

        let base = stale_style(app);
        let rows: Vec<Row<'_>> = visible
            .iter()
            .skip(offset)
            .take(rows_fit)
            .map(|m| {
                let row = member_row(status, svc, m, cols, down_w.is_some());
                let style = if Some(&m.node) == app.node.as_ref() {
                    Style::new().add_modifier(Modifier::REVERSED)
                } else {
                    Style::new()
                };
                row.style(style.patch(base))
            })
            .collect();
        let header = Row::new(header).style(palette::dim().add_modifier(Modifier::BOLD));
        let table_area = Rect {
            x: inner.x + 1,
            width: inner.width.saturating_sub(1),
            height: inner.height.saturating_sub(details_h),
            ..inner
        };
        Table::new(rows, widths)
            .header(header)
            .column_spacing(1)
            .render(table_area, buf);

        // The selected member in one line: what the columns could not say.
        let detail_area = Rect {
            y: inner.bottom().saturating_sub(details_h),
            height: 1,
            ..inner
        };
        if let Some(m) = app.node.as_ref().and_then(|n| svc.member(n)) {
            detail_line(status, svc, m).render(detail_area, buf);
            if let Some(text) = resync {
                let style = if kept_files(m).is_some() {
                    palette::warn()
                } else {
                    palette::dim()
                };
                let line = Line::from(vec![
                    Span::raw("   "),
                    Span::styled(format!("resync {text}"), style),
                ]);
                let area = Rect {
                    y: detail_area.y + 1,
                    ..detail_area
                };
                Paragraph::new(line).render(area, buf);
            }
        } else if visible.is_empty() {
            Paragraph::new(Line::styled(
                " no member matches the filter",
                palette::dim(),
            ))
            .render(detail_area, buf);
        }
    }
}

fn member_row<'a>(
    status: &Status,
    svc: &ServiceStatus,
    m: &'a MemberStatus,
    cols: Columns,
    observed: bool,
) -> Row<'a> {
    let node = status.node(&m.node);
    let mut cells: Vec<Cell<'a>> = vec![Cell::from(m.node.as_str())];
    if cols.address {
        cells.push(Cell::from(
            node.map(|n| n.address.clone()).unwrap_or_default(),
        ));
    }
    let role_style = match m.role {
        Role::Primary => palette::primary(),
        Role::Secondary => Style::new(),
        Role::Down => palette::alert(),
        Role::Resyncing => palette::warn(),
    };
    cells.push(Cell::from(Span::styled(m.role.to_string(), role_style)));
    // The host's heartbeat first; with the host up, the service's own check.
    let (health, health_style) = match (node.map(|n| n.health), m.check.as_ref().map(|c| c.health))
    {
        (Some(Health::Down), _) => ("down", palette::alert()),
        (Some(Health::Up), Some(Health::Down)) => ("svc down", palette::alert()),
        (Some(Health::Up), Some(Health::Unknown)) => ("svc ?", palette::warn()),
        (Some(Health::Up), _) => ("up", palette::ok()),
        _ => ("unknown", palette::warn()),
    };
    cells.push(Cell::from(Span::styled(health, health_style)));
    if observed {
        cells.push(Cell::from(down_cell(status, node)));
    }
    let rtt = match node {
        Some(n) if n.health != Health::Down => n.rtt_us.map(units::rtt).unwrap_or_default(),
        _ => "—".to_owned(),
    };
    cells.push(Cell::from(rtt));
    cells.push(Cell::from(sparkline(node, cols.probes as usize)));
    cells.push(Cell::from(sync_cell(
        svc,
        m,
        cols.sync as usize,
        status.now_ms,
    )));
    cells.push(Cell::from(lag_cell(svc, m)));
    if cols.last_pass {
        let lp = m
            .sync
            .as_ref()
            .and_then(|s| s.last_pass.as_ref())
            .map(|p| {
                format!(
                    "{}/{}",
                    units::bytes(p.literal_bytes),
                    units::bytes(p.matched_bytes)
                )
            })
            .unwrap_or_default();
        cells.push(Cell::from(lp));
    }
    cells.push(Cell::from(flags(status, svc, m)));
    Row::new(cells)
}

/// "1/3": how many live terminal servers see the member down; yellow while fewer than
/// the quorum do, red from the quorum on.
fn down_cell(status: &Status, node: Option<&NodeStatus>) -> Line<'static> {
    let Some(o) = node.and_then(|n| n.observers) else {
        return Line::styled("—", palette::dim());
    };
    let quorum = status.cluster.as_ref().map_or(1, |c| c.down_quorum.max(1));
    let style = match o.down {
        0 => palette::dim(),
        d if d < quorum => palette::warn(),
        _ => palette::alert(),
    };
    Line::styled(render::seen_down(o), style)
}

/// Recent probes as bars scaled to the slowest answer shown; `×` for a miss.
fn sparkline(node: Option<&NodeStatus>, width: usize) -> Line<'static> {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let Some(node) = node else {
        return Line::raw("");
    };
    let start = node.probes.len().saturating_sub(width);
    let shown = &node.probes[start..];
    let max = shown.iter().flatten().copied().max().unwrap_or(1).max(1);
    let spans: Vec<Span<'static>> = shown
        .iter()
        .map(|p| match p {
            Some(rtt) => {
                let i = ((rtt * 7) / max).min(7) as usize;
                Span::styled(BARS[i].to_string(), palette::ok())
            }
            None => Span::styled("×", palette::alert()),
        })
        .collect();
    Line::from(spans)
}

/// The mirroring column: a progress bar while a pass runs, otherwise the last sync.
fn sync_cell(svc: &ServiceStatus, m: &MemberStatus, width: usize, now: u64) -> Line<'static> {
    if svc.paths.is_empty() {
        return Line::styled("—", palette::dim());
    }
    if m.role == Role::Primary {
        return Line::styled("source", palette::dim());
    }
    let Some(sync) = &m.sync else {
        return Line::styled("—", palette::dim());
    };
    if let Some(run) = &sync.running {
        if run.bytes == 0 && run.percent == 0 {
            // Most regular passes end before rsync reports any progress.
            return Line::styled(format!("{} pass…", run.kind), palette::busy());
        }
        let bar_w = if width >= 28 { 10 } else { 8 };
        // In eighths of a cell, so a few percent already show.
        const PARTIAL: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
        let eighths = usize::from(run.percent.min(100)) * bar_w * 8 / 100;
        let (full, part) = (eighths / 8, eighths % 8);
        let mut bar = "█".repeat(full);
        bar.push_str(PARTIAL[part]);
        let empty = bar_w - full - usize::from(part > 0);
        let mut spans = Vec::new();
        if width >= 28 {
            spans.push(Span::styled(format!("{} ", run.kind), palette::busy()));
        }
        spans.push(Span::styled(bar, palette::busy()));
        spans.push(Span::styled("░".repeat(empty), palette::dim()));
        spans.push(Span::raw(format!(" {:>3}%", run.percent)));
        if width >= 20 {
            spans.push(Span::raw(format!(
                " {}",
                units::rate(run.rate_bytes_per_sec)
            )));
        }
        return Line::from(spans);
    }
    if sync.failures > 0 {
        return Line::styled(format!("failing ×{}", sync.failures), palette::alert());
    }
    if sync.resyncing {
        return Line::styled("resync pending", palette::warn());
    }
    match sync.last_sync_ms {
        Some(t) => {
            let style = if lagging(svc, sync) {
                palette::warn()
            } else {
                Style::new()
            };
            Line::styled(format!("synced {}", units::ago(t, now)), style)
        }
        None => Line::styled("never synced", palette::warn()),
    }
}

fn lagging(svc: &ServiceStatus, sync: &SyncStatus) -> bool {
    svc.max_lag_ms > 0 && sync.lag_ms.is_some_and(|l| l > svc.max_lag_ms)
}

fn lag_cell(svc: &ServiceStatus, m: &MemberStatus) -> Line<'static> {
    match m.sync.as_ref() {
        Some(sync) => match sync.lag_ms {
            Some(lag) => {
                let style = if lagging(svc, sync) {
                    palette::alert()
                } else {
                    Style::new()
                };
                Line::styled(units::span(lag), style)
            }
            None => Line::styled("—", palette::dim()),
        },
        None => Line::raw(""),
    }
}

fn flags(status: &Status, svc: &ServiceStatus, m: &MemberStatus) -> Line<'static> {
    let mut spans = Vec::new();
    let mut push = |text: &str, style: Style| {
        if !spans.is_empty() {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled(text.to_owned(), style));
    };
    if svc.next.as_deref() == Some(m.node.as_str()) {
        push("next", palette::ok());
    }
    if svc.preferred == m.node {
        push("preferred", palette::key());
    }
    if status.node(&m.node).is_some_and(|n| n.maintenance) {
        push("maint", palette::warn());
    }
    if m.sync.as_ref().is_some_and(|s| s.resyncing) {
        push("resync", palette::warn());
    }
    if let Some(left) = quarantine_left(status, m) {
        push(
            &format!("quarantined {}", units::span(left)),
            palette::alert(),
        );
    }
    if let Some(kept) = kept_files(m) {
        push(&format!("kept {kept}"), palette::warn());
    }
    Line::from(spans)
}

/// Files the member's last pass kept aside because they hold writes the primary lacks.
fn kept_files(m: &MemberStatus) -> Option<u64> {
    m.sync
        .as_ref()?
        .last_pass
        .as_ref()?
        .kept_files
        .filter(|&k| k > 0)
}

/// How long member `m` stays quarantined, by the status's clock.
fn quarantine_left(status: &Status, m: &MemberStatus) -> Option<u64> {
    m.quarantined_until_ms
        .filter(|&until| until > status.now_ms)
        .map(|until| until - status.now_ms)
}

/// One line about the selected member: address, why it would be skipped, last errors.
fn detail_line(status: &Status, svc: &ServiceStatus, m: &MemberStatus) -> Paragraph<'static> {
    let node = status.node(&m.node);
    let mut spans = vec![
        Span::styled(" ▸ ", palette::key()),
        Span::styled(m.node.clone(), palette::title()),
    ];
    if let Some(n) = node {
        spans.push(Span::styled(format!(" {}", n.address), palette::dim()));
    }
    let mut parts: Vec<(String, Style)> = Vec::new();
    if m.role == Role::Primary {
        parts.push((format!("primary of {}", svc.name), palette::primary()));
    } else if m.eligible {
        parts.push(("eligible for promotion".into(), palette::ok()));
    } else if let Some(why) = &m.skip_reason {
        parts.push((format!("not promotable: {why}"), palette::warn()));
    }
    if let (Some(o), Some(c)) = (node.and_then(|n| n.observers), &status.cluster)
        && o.down > 0
    {
        parts.push((
            format!(
                "seen down by {} of {} terminal servers ({} make it down)",
                o.down,
                o.up + o.down + o.unknown,
                c.down_quorum
            ),
            if o.down >= c.down_quorum {
                palette::alert()
            } else {
                palette::warn()
            },
        ));
    }
    if let Some(e) = node.and_then(|n| n.last_error.as_ref()) {
        parts.push((format!("last probe: {e}"), palette::alert()));
    }
    if let Some(check) = &m.check {
        let host = node.map_or(Health::Unknown, |n| n.health);
        match (&check.last_error, check.health) {
            (Some(e), _) => parts.push((
                format!("host {host}, service {}: {e}", check.health),
                palette::alert(),
            )),
            (None, Health::Up) => {}
            (None, health) => {
                parts.push((format!("host {host}, service {health}"), palette::warn()))
            }
        }
    }
    if let Some(left) = quarantine_left(status, m) {
        parts.push((
            format!(
                "quarantined for flapping, {} left (u lifts it)",
                units::span(left)
            ),
            palette::alert(),
        ));
    }
    if let Some(sync) = &m.sync {
        if let Some(run) = &sync.running {
            let eta = run
                .eta_secs
                .filter(|s| *s > 0)
                .map(|s| format!(", eta {}", units::span(s * 1000)))
                .unwrap_or_default();
            parts.push((
                format!(
                    "{} pass: {} moved, {}%{eta}",
                    run.kind,
                    units::bytes(run.bytes),
                    run.percent
                ),
                palette::busy(),
            ));
        }
        if let Some(e) = &sync.last_error {
            parts.push((format!("sync: {e}"), palette::alert()));
        } else if let Some(p) = &sync.last_pass {
            parts.push((
                format!(
                    "last pass {} files, {} literal, {} matched in {}",
                    p.files_transferred,
                    units::bytes(p.literal_bytes),
                    units::bytes(p.matched_bytes),
                    units::span(p.duration_ms)
                ),
                palette::dim(),
            ));
        }
    }
    for (text, style) in parts {
        spans.push(Span::styled(" · ", palette::dim()));
        spans.push(Span::styled(text, style));
    }
    Paragraph::new(Line::from(spans))
}
