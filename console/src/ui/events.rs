//! The event log: newest at the bottom, one line each, coloured by level (alerts red,
//! notices yellow, the rest plain), scrollable back in time and narrowed by the filter.

use dnsd_api::{Event, Level};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::frame::panel;
use super::palette;
use crate::app::{App, Focus};
use crate::units;

pub(super) struct Events<'a> {
    app: &'a App,
}

impl<'a> Events<'a> {
    pub(super) fn new(app: &'a App) -> Events<'a> {
        Events { app }
    }
}

impl Widget for Events<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.height == 0 {
            return;
        }
        let app = self.app;
        let events = app.visible_events();
        let fit = area.height.saturating_sub(1) as usize;
        app.event_page.set(fit.max(1));
        let scroll = app.event_scroll.min(events.len().saturating_sub(1));
        let end = events.len() - scroll.min(events.len());
        let start = end.saturating_sub(fit);

        let mut details = vec![format!("{}", events.len())];
        if !app.filter.is_empty() {
            details.push(format!(
                "filter \"{}\" ({} of {})",
                app.filter,
                events.len(),
                app.events.len()
            ));
        }
        if scroll > 0 {
            details.push(format!("scrolled back {scroll} · End follows"));
        }
        let block = panel("Events", &details.join(" · "), app.focus == Focus::Events);
        let lines: Vec<Line<'static>> = if events.is_empty() {
            vec![Line::styled(
                if app.events.is_empty() {
                    " no events yet"
                } else {
                    " no event matches the filter"
                },
                palette::dim(),
            )]
        } else {
            events[start..end]
                .iter()
                .map(|e| event_line(e, app.now_ms))
                .collect()
        };
        Paragraph::new(lines).block(block).render(area, buf);
    }
}

fn event_line(e: &Event, now: u64) -> Line<'static> {
    let style = match e.level() {
        Level::Alert => palette::alert(),
        Level::Notice => palette::warn(),
        Level::Info => Style::new(),
    };
    let mut subject = Vec::new();
    if let Some(s) = &e.service {
        subject.push(s.clone());
    }
    if let Some(n) = &e.node {
        subject.push(n.clone());
    }
    match (&e.old_primary, &e.new_primary) {
        (Some(old), Some(new)) => subject.push(format!("{old}→{new}")),
        (None, Some(new)) => subject.push(format!("→{new}")),
        _ => {}
    }
    if let (Some(epoch), Some(_)) = (e.epoch, &e.new_primary) {
        subject.push(format!("e{epoch}"));
    }
    Line::from(vec![
        Span::styled(format!(" {:>7} ", units::ago(e.at_ms, now)), palette::dim()),
        Span::styled(format!("{:<17} ", e.kind.to_string()), style),
        Span::styled(
            if subject.is_empty() {
                String::new()
            } else {
                format!("{} ", subject.join(" "))
            },
            palette::title(),
        ),
        Span::styled(e.reason.clone(), style),
    ])
}
