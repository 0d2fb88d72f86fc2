//! Rendering of the TUI: `Widget for &App` lays the screen out and each panel is a
//! component that renders from the app's state alone. Nothing here changes state,
//! except the scroll offsets the renderer keeps so the selection stays visible.
//!
//! Screen, top to bottom: the header (a banner while dnsd is unreachable, then one line
//! per service), the banner line of the program's extras (if any), the member table, the election panel, the event
//! log, a notice line (the last action's result, or the filter prompt) and the key
//! help. Times are relative to the app's clock so snapshots are stable.

mod dialogs;
mod election;
mod events;
mod frame;
mod header;
mod members;
pub(crate) mod palette;
mod text;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::app::{App, Extras, Overlay, Target};

/// The smallest screen the full view is drawn on; smaller ones get a short message.
const MIN_WIDTH: u16 = 40;
const MIN_HEIGHT: u16 = 12;

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            too_small(area, buf);
            return;
        }
        let header = header::Header::new(self);
        let header_h = header.height(area.height);
        let banner_h = u16::from(self.extras.is_some());
        let election = election::Election::new(self);
        let election_h = election.height(area.width, area.height);
        let fixed = header_h + banner_h + election_h + 2;
        let avail = area.height.saturating_sub(fixed);
        let member_rows = self.visible_members().len() as u16;
        // Members (title, column header, rows, detail lines) get up to 60% of what is
        // left, the event log the rest.
        let members = members::Members::new(self);
        let members_want = member_rows.saturating_add(2 + members.detail_lines());
        let members_h = members_want
            .min((avail * 3 / 5).max(5))
            .max(avail.min(5))
            .min(avail);
        let events_h = avail - members_h;

        let mut y = area.y;
        let mut take = |h: u16| {
            let r = Rect::new(area.x, y, area.width, h.min(area.bottom() - y));
            y += r.height;
            r
        };
        header.render(take(header_h), buf);
        if let Some(extras) = &self.extras {
            let line = Line::from(vec![
                Span::styled(
                    format!(" {} ", extras.name),
                    Style::new().bg(Color::Blue).fg(Color::White),
                ),
                Span::raw(" "),
                Span::raw(extras.banner.as_str()),
            ]);
            Paragraph::new(line).render(take(banner_h), buf);
        }
        members.render(take(members_h), buf);
        election.render(take(election_h), buf);
        events::Events::new(self).render(take(events_h), buf);
        notice_line(self).render(take(1), buf);
        help_line(self, area.width).render(take(1), buf);

        match &self.overlay {
            Overlay::None => {}
            Overlay::Help => dialogs::Help::new(self.extras.as_ref()).render(area, buf),
            Overlay::Confirm { plan, .. } => dialogs::Confirm::new(plan, self).render(area, buf),
            Overlay::Reply { title, message } => {
                dialogs::Reply::new(title, message).render(area, buf)
            }
        }
    }
}

fn too_small(area: Rect, buf: &mut Buffer) {
    let text = format!(
        "terminal {}x{} is too small: dnsd console needs {MIN_WIDTH}x{MIN_HEIGHT}",
        area.width, area.height
    );
    let lines: Vec<Line<'_>> = text::wrap(&text, area.width as usize)
        .into_iter()
        .map(Line::from)
        .collect();
    Paragraph::new(lines)
        .style(palette::warn())
        .render(area, buf);
}

/// The last action's result, the action in flight, or the filter prompt.
fn notice_line(app: &App) -> Paragraph<'static> {
    if app.filter_before.is_some() {
        return Paragraph::new(Line::from(vec![
            Span::styled(" filter /", palette::key()),
            Span::raw(app.filter.clone()),
            Span::styled("▏", palette::key()),
            Span::styled(
                "  members by name or address, events by any text · Enter keep · Esc cancel",
                palette::dim(),
            ),
        ]));
    }
    if let Some(what) = &app.in_flight {
        return Paragraph::new(Line::styled(format!(" … sending {what}"), palette::busy()));
    }
    match &app.notice {
        Some(n) if n.ok => Paragraph::new(Line::styled(format!(" ✔ {}", n.text), palette::ok())),
        Some(n) => Paragraph::new(Line::styled(format!(" ✘ {}", n.text), palette::alert())),
        None if !app.filter.is_empty() => Paragraph::new(Line::styled(
            format!(" filter \"{}\" · Esc clears", app.filter),
            palette::warn(),
        )),
        None => Paragraph::new(""),
    }
}

/// The keys that fit, chosen by importance (actions, quit and help first) and shown
/// in a fixed order.
fn help_line(app: &App, width: u16) -> Paragraph<'static> {
    // (key, label, priority: lower shows first when space is short)
    let extras = app.extras.iter().flat_map(|x| &x.keys);
    // Keys on terminal servers say so ("kill ts"), beside the same verbs on members.
    // When the program has keys on terminal servers (the cluster demo), those are what it
    // is about: they come before its keys on members when space is short.
    let extra_keys: Vec<(String, String, u8)> = extras
        .map(|k| match k.target {
            Target::Member => (k.key.to_string(), k.verb.clone(), 1),
            Target::TerminalServer => (k.key.to_string(), format!("{} ts", k.verb), 0),
        })
        .collect();
    let mut keys: Vec<(&str, &str, u8)> = vec![
        ("↑↓", "member", 5),
        ("←→", "service", 6),
        ("f", "failover", 0),
        ("b", "failback", 0),
        ("p", "promote", 0),
        ("s", "sync", 2),
        ("m", "maint", 3),
        ("P", "pause", 3),
        ("/", "filter", 4),
        ("Tab", "log", 7),
        ("q", "quit", 0),
        ("?", "help", 0),
    ];
    // The program's own keys come after the movement keys, before dnsd's actions.
    for (i, (key, label, priority)) in extra_keys.iter().enumerate() {
        keys.insert(2 + i, (key.as_str(), label.as_str(), *priority));
    }
    if app.extras.as_ref().is_some_and(Extras::on_terminal_servers) {
        keys.insert(2, ("t", "ts", 3));
    }
    let cost = |k: &str, l: &str| k.chars().count() + l.chars().count() + 3;
    let mut budget = (width as usize).saturating_sub(1);
    let mut by_priority: Vec<usize> = (0..keys.len()).collect();
    by_priority.sort_by_key(|&i| keys[i].2);
    let mut shown = vec![false; keys.len()];
    for i in by_priority {
        let c = cost(keys[i].0, keys[i].1);
        if c <= budget {
            budget -= c;
            shown[i] = true;
        }
    }
    let mut spans = vec![Span::raw(" ")];
    for (i, (k, label, _)) in keys.iter().enumerate() {
        if shown[i] {
            spans.push(Span::styled((*k).to_owned(), palette::key()));
            spans.push(Span::styled(format!(" {label}  "), palette::dim()));
        }
    }
    Paragraph::new(Line::from(spans))
}
