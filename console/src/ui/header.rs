//! The header: what the console is connected to (or a banner saying it is not), then
//! one line per service with its primary, epoch, TTL and whether it is paused,
//! stranded or in the middle of a switchover.

use dnsd_api::{ServiceStatus, Status};
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
        self.banner_lines() + self.service_lines(screen_height)
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
