//! What covers the main view: the confirmation of an action (what will happen, and a
//! warning when the status already shows dnsd will refuse), dnsd's refusal or a send
//! error, and the `?` help.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};

use super::{palette, text};
use crate::app::{App, Extras, Link};
use crate::plan::Plan;

/// A centred box `width` wide (at most the screen) holding `lines`, framed.
fn framed(
    area: Rect,
    buf: &mut Buffer,
    width: u16,
    title: Line<'static>,
    lines: Vec<Line<'static>>,
    border: Style,
) {
    let width = width.min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let x = area.x + (area.width - width) / 2;
    let y = area.y + (area.height - height) / 2;
    let rect = Rect::new(x, y, width, height);
    Clear.render(rect, buf);
    Paragraph::new(lines)
        .block(
            Block::new()
                .borders(Borders::ALL)
                .border_style(border)
                .title(title),
        )
        .render(rect, buf);
}

/// Wraps `text` to `width` as lines in `style`, with a one-column left margin.
fn para(text: &str, width: u16, style: Style) -> Vec<Line<'static>> {
    text::wrap(text, width.saturating_sub(1) as usize)
        .into_iter()
        .map(|l| Line::styled(format!(" {l}"), style))
        .collect()
}

fn dialog_width(area: Rect) -> u16 {
    area.width.saturating_sub(4).min(76)
}

pub(super) struct Confirm<'a> {
    plan: &'a Plan,
    app: &'a App,
}

impl<'a> Confirm<'a> {
    pub(super) fn new(plan: &'a Plan, app: &'a App) -> Confirm<'a> {
        Confirm { plan, app }
    }
}

impl Widget for Confirm<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let width = dialog_width(area);
        let inner = width.saturating_sub(3);
        let mut lines = para(&self.plan.question, inner, palette::title());
        if !self.plan.steps.is_empty() {
            lines.push(Line::raw(""));
            lines.extend(para(&self.plan.steps, inner, Style::new()));
        }
        if let Some(w) = &self.plan.warning {
            lines.push(Line::raw(""));
            lines.extend(para(&format!("⚠ {w}"), inner, palette::alert()));
        }
        if matches!(self.app.link, Link::Down { .. }) {
            lines.push(Line::raw(""));
            lines.extend(para(
                "⚠ dnsd is unreachable: this is based on a stale status, and sending fails until dnsd answers again",
                inner,
                palette::alert(),
            ));
        }
        lines.push(Line::raw(""));
        lines.push(Line::from(vec![
            Span::raw(" Press "),
            Span::styled("y", palette::key()),
            Span::raw(" to go ahead, any other key to cancel  "),
            Span::styled("[y/N]", palette::title()),
        ]));
        framed(
            area,
            buf,
            width,
            Line::styled(" Confirm ", palette::title()),
            lines,
            Style::new().fg(Color::Yellow),
        );
    }
}

pub(super) struct Reply<'a> {
    title: &'a str,
    message: &'a str,
}

impl<'a> Reply<'a> {
    pub(super) fn new(title: &'a str, message: &'a str) -> Reply<'a> {
        Reply { title, message }
    }
}

impl Widget for Reply<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let width = dialog_width(area);
        let inner = width.saturating_sub(3);
        let mut lines = para(self.message, inner, palette::alert());
        lines.push(Line::raw(""));
        lines.push(Line::styled(" Press any key to close", palette::dim()));
        framed(
            area,
            buf,
            width,
            Line::styled(format!(" {} ", self.title), palette::alert()),
            lines,
            Style::new().fg(Color::Red),
        );
    }
}

pub(super) struct Help<'a> {
    extras: Option<&'a Extras>,
}

impl Help<'_> {
    pub(super) fn new(extras: Option<&Extras>) -> Help<'_> {
        Help { extras }
    }
}

impl Widget for Help<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let extra_keys: Vec<(String, &str)> = (self.extras.iter().flat_map(|x| &x.keys))
            .map(|k| (k.key.to_string(), k.help.as_str()))
            .collect();
        let mut keys: Vec<(&str, &str)> = vec![
            ("↑ ↓  j k", "select a member (or scroll the log with Tab)"),
            ("PgUp PgDn Home End", "move by a page, to the first or last"),
            ("← →  [ ]", "select the service"),
            ("Tab", "switch between the member table and the event log"),
            ("f", "fail over the service to the next eligible member"),
            (
                "b",
                "fail back to the preferred member (the first in order)",
            ),
            ("p", "promote the selected member"),
            ("s", "sync now: a mirroring pass to every secondary"),
            ("m", "maintenance on/off for the selected member"),
            ("u", "lift the flap quarantine of the selected member"),
            ("P", "pause/resume automatic decisions for the service"),
            ("/", "filter members and events; Esc clears"),
            ("q  Ctrl-C", "quit"),
        ];
        if self.extras.is_some_and(Extras::on_terminal_servers) {
            keys.push(("t", "select the next terminal server (for the keys below)"));
        }
        keys.extend(extra_keys.iter().map(|(k, help)| (k.as_str(), *help)));
        let mut lines: Vec<Line<'static>> = keys
            .iter()
            .map(|(k, what)| {
                Line::from(vec![
                    Span::styled(format!(" {k:<19}"), palette::key()),
                    Span::raw((*what).to_owned()),
                ])
            })
            .collect();
        lines.push(Line::raw(""));
        lines.push(Line::styled(
            " Actions that change the primary, maintenance or pause ask first.",
            palette::dim(),
        ));
        lines.push(Line::styled(" Press any key to close", palette::dim()));
        framed(
            area,
            buf,
            dialog_width(area),
            Line::styled(" Keys ", palette::title()),
            lines,
            palette::key(),
        );
    }
}
