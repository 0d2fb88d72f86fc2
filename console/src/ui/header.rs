//! The header: what the console is connected to (or a banner saying it is not); in a
//! cluster, one line on the terminal servers (who leads and its lease, who follows, who
//! is gone, whether the one the console talks to reaches etcd, the down quorum); then
//! one line per service with its primary, epoch, TTL and whether it is paused,
//! stranded, unfenced (a split-brain risk) or in the middle of a switchover.

use dnsd_api::{ClusterStatus, ServiceStatus, Status};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::frame::stale_style;
use super::{palette, text};
use crate::app::{App, Link};
use crate::units;

pub(super) struct Header<'a> {
    app: &'a App,
}

impl<'a> Header<'a> {
    pub(super) fn new(app: &'a App) -> Header<'a> {
        Header { app }
    }

    fn banner_lines(&self) -> u16 {
        match self.app.link {
            Link::Down { .. } => 2,
            _ => 1,
        }
    }

    /// One line on the terminal servers, in a cluster (or when the program runs some).
    fn cluster_lines(&self) -> u16 {
        let cluster = self
            .app
            .status
            .as_ref()
            .is_some_and(|s| s.cluster.is_some());
        let program = self
            .app
            .extras
            .as_ref()
            .is_some_and(|x| !x.terminal_servers.is_empty());
        u16::from(cluster || program)
    }

    fn service_count(&self) -> usize {
        self.app.status.as_ref().map_or(0, |s| s.services.len())
    }

    /// How many lines services may take on a screen `height` lines high.
    fn service_lines(&self, height: u16) -> u16 {
        let n = self.service_count() as u16;
        let cap = (height.saturating_sub(14) / 3).max(1);
        n.min(cap)
    }

    pub(super) fn height(&self, screen_height: u16) -> u16 {
        self.banner_lines() + self.cluster_lines() + self.service_lines(screen_height)
    }
}

impl Widget for Header<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let mut lines: Vec<Line<'_>> = Vec::new();
        match &app.link {
            Link::Down { error, attempt } => {
                let banner = Style::new()
                    .bg(Color::Red)
                    .fg(Color::White)
                    .add_modifier(Modifier::BOLD);
                let age = match &app.status {
                    Some(_) => format!(
                        " · showing the status from {}",
                        units::ago(app.status_at_ms, app.now_ms)
                    ),
                    None => String::new(),
                };
                let first = format!(
                    " ⚠ dnsd unreachable at {} — reconnecting (attempt {attempt}){age}",
                    app.endpoint
                );
                let second = format!("   {error}");
                let w = area.width as usize;
                lines.push(Line::styled(pad(&text::truncate(&first, w), w), banner));
                lines.push(Line::styled(
                    pad(&text::truncate(&second, w), w),
                    Style::new().bg(Color::Red).fg(Color::White),
                ));
            }
            Link::Connecting => lines.push(Line::styled(
                format!(" connecting to dnsd at {} …", app.endpoint),
                palette::warn(),
            )),
            Link::Up => lines.push(title_line(app)),
        }
        if self.cluster_lines() > 0 {
            let cluster = app.status.as_ref().and_then(|s| s.cluster.as_ref());
            lines.push(cluster_line(app, cluster));
        }
        if let Some(status) = &app.status {
            let shown = self.service_lines(buf.area.height) as usize;
            let selected = app
                .service
                .as_ref()
                .and_then(|s| status.services.iter().position(|x| &x.name == s))
                .unwrap_or(0);
            // A window of services that always holds the selected one.
            let first = selected.saturating_sub(shown.saturating_sub(1));
            for (i, svc) in status.services.iter().enumerate().skip(first).take(shown) {
                let more = status.services.len() - (first + shown);
                let last = i + 1 == first + shown;
                lines.push(service_line(
                    app,
                    status,
                    svc,
                    i == selected,
                    last.then_some(more),
                ));
            }
        }
        Paragraph::new(lines).render(area, buf);
    }
}

fn pad(s: &str, width: usize) -> String {
    format!("{s:<width$}")
}

fn title_line(app: &App) -> Line<'static> {
    let Some(st) = &app.status else {
        return Line::raw("");
    };
    let hb = &st.heartbeat;
    Line::from(vec![
        Span::styled(" dnsd ", Style::new().bg(Color::Cyan).fg(Color::Black)),
        Span::styled(format!(" zone {} ", st.zone), palette::title()),
        Span::styled(
            format!(
                "· serial {} · heartbeat {}/{} every {} (fall {}, rise {}) · up {} · {}",
                st.serial,
                hb.protocol,
                hb.port,
                units::span(hb.interval_ms),
                hb.fall,
                hb.rise,
                units::span(st.now_ms.saturating_sub(st.started_ms)),
                app.endpoint
            ),
            palette::dim(),
        ),
    ])
}

/// The terminal servers in one line: " cluster  ts1 leads, lease 2.6s · ts2, ts3 follow
/// · on ts1: etcd ok · quorum 2/3". The one selected for the program's keys is shown
/// reversed; one the program runs that is not live is "gone".
fn cluster_line(app: &App, cluster: Option<&ClusterStatus>) -> Line<'static> {
    let selected = app.selected_terminal_server();
    let name = |n: &str, style: Style| {
        let style = if selected == Some(n) {
            style.add_modifier(Modifier::REVERSED)
        } else {
            style
        };
        Span::styled(n.to_owned(), style)
    };
    let sep = || Span::styled(" · ", palette::dim());
    let mut spans = vec![
        Span::styled(
            " cluster ",
            Style::new().bg(Color::Magenta).fg(Color::Black),
        ),
        Span::raw(" "),
    ];
    let live = |n: &str| cluster.is_some_and(|c| c.servers.iter().any(|s| s.name == n));
    let leader = cluster.and_then(|c| c.leader.as_deref());
    match (leader, cluster) {
        (Some(leader), Some(c)) => {
            spans.push(name(leader, palette::title()));
            spans.push(Span::styled(" leads", palette::ok()));
            if let (true, Some(left)) = (c.leading, c.lease_left_ms) {
                spans.push(Span::raw(format!(", lease {}", units::span(left))));
            }
        }
        (None, Some(_)) => spans.push(Span::styled("no leader", palette::alert())),
        (_, None) => spans.push(Span::styled("no status", palette::dim())),
    }
    let names = app.terminal_servers();
    let followers: Vec<&String> = names
        .iter()
        .filter(|n| live(n) && Some(n.as_str()) != leader)
        .collect();
    if !followers.is_empty() {
        spans.push(sep());
        for (i, n) in followers.iter().enumerate() {
            if i > 0 {
                spans.push(Span::raw(", "));
            }
            spans.push(name(n, Style::new()));
        }
        spans.push(Span::raw(if followers.len() == 1 {
            " follows"
        } else {
            " follow"
        }));
    }
    let gone: Vec<&String> = names
        .iter()
        .filter(|n| !live(n) && Some(n.as_str()) != leader)
        .collect();
    if !gone.is_empty() {
        spans.push(sep());
        for (i, n) in gone.iter().enumerate() {
            if i > 0 {
                spans.push(Span::raw(", "));
            }
            spans.push(name(n, palette::alert()));
        }
        spans.push(Span::styled(" gone", palette::alert()));
    }
    if let Some(c) = cluster {
        spans.push(sep());
        spans.push(Span::raw(format!("on {}: ", c.name)));
        if c.etcd_reachable {
            spans.push(Span::styled("etcd ok", palette::ok()));
        } else {
            let age = c
                .stale_for_ms
                .map(|ms| format!(", answers {} old", units::span(ms)))
                .unwrap_or_default();
            spans.push(Span::styled(
                format!("etcd UNREACHABLE{age}"),
                palette::alert(),
            ));
        }
        spans.push(Span::styled(
            format!(" · quorum {}/{}", c.down_quorum, c.servers.len()),
            palette::dim(),
        ));
    }
    let base = stale_style(app);
    if base != Style::new() {
        for s in &mut spans {
            s.style = s.style.patch(base);
        }
    }
    Line::from(spans)
}

fn service_line(
    app: &App,
    status: &Status,
    svc: &ServiceStatus,
    selected: bool,
    more: Option<usize>,
) -> Line<'static> {
    let base = stale_style(app);
    let marker = if selected { "▶ " } else { "  " };
    let name_style = if selected {
        palette::title().add_modifier(Modifier::UNDERLINED)
    } else {
        palette::title()
    };
    let primary_up = status
        .node(&svc.primary)
        .is_some_and(|n| n.health == dnsd_api::Health::Up);
    let mut spans = vec![
        Span::styled(format!(" {marker}"), palette::key()),
        Span::styled(svc.name.clone(), name_style),
        Span::raw("  primary "),
        Span::styled(
            svc.primary.clone(),
            if primary_up {
                palette::primary()
            } else {
                palette::alert()
            },
        ),
        Span::raw(format!("  epoch {}  ttl {}s  ", svc.epoch, status.ttl)),
    ];
    if svc.paused {
        spans.push(Span::styled(
            " PAUSED ",
            Style::new().bg(Color::Yellow).fg(Color::Black),
        ));
    } else {
        spans.push(Span::styled("running", palette::ok()));
    }
    if svc.split_brain_risk.is_some() {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            " ⚠ unfenced ",
            Style::new().bg(Color::Yellow).fg(Color::Black),
        ));
    }
    if svc.stranded {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            " STRANDED ",
            Style::new().bg(Color::Red).fg(Color::White),
        ));
    }
    if let Some(t) = &svc.transition {
        spans.push(Span::styled(format!("  ⟳ {t}"), palette::busy()));
    }
    spans.push(Span::styled(
        format!(
            "  next {}  failback {}",
            svc.next.as_deref().unwrap_or("none"),
            if svc.failback.is_empty() {
                "manual"
            } else {
                &svc.failback
            }
        ),
        palette::dim(),
    ));
    if let Some(more) = more.filter(|m| *m > 0) {
        spans.push(Span::styled(
            format!("  (+{more} more services: ←→)"),
            palette::dim(),
        ));
    }
    if base != Style::new() {
        for s in &mut spans {
            s.style = s.style.patch(base);
        }
    }
    Line::from(spans)
}
