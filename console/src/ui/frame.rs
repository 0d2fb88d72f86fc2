//! What the panels share besides colours: the frame with its title, and the dimming of
//! everything while the shown status is stale.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders};

use super::palette;
use crate::app::{App, Link};

/// A block title for panels: bold name, then dim details.
fn panel_title(name: &str, details: &str) -> Line<'static> {
    let mut spans = vec![Span::styled(format!(" {name} "), palette::title())];
    if !details.is_empty() {
        spans.push(Span::styled(format!("· {details} "), palette::dim()));
    }
    Line::from(spans)
}

/// A panel's frame: a rule on top with its title, bright when the panel has the focus.
pub(crate) fn panel(name: &str, details: &str, focused: bool) -> Block<'static> {
    Block::new()
        .borders(Borders::TOP)
        .border_style(if focused {
            palette::key()
        } else {
            palette::dim()
        })
        .title(panel_title(name, details))
}

/// Whether the shown status is stale (dnsd unreachable since).
pub(crate) fn stale(app: &App) -> bool {
    matches!(app.link, Link::Down { .. })
}

/// The dim style used for everything when the status is stale.
pub(crate) fn stale_style(app: &App) -> Style {
    if stale(app) {
        Style::new().fg(Color::DarkGray).add_modifier(Modifier::DIM)
    } else {
        Style::new()
    }
}
