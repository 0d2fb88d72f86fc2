//! Colours, named by meaning, shared by every panel of the view.

use ratatui::style::{Color, Modifier, Style};

pub(crate) fn ok() -> Style {
    Style::new().fg(Color::Green)
}
pub(crate) fn alert() -> Style {
    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
}
pub(crate) fn warn() -> Style {
    Style::new().fg(Color::Yellow)
}
pub(crate) fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}
pub(crate) fn primary() -> Style {
    Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
}
pub(crate) fn busy() -> Style {
    Style::new().fg(Color::Magenta)
}
pub(crate) fn title() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}
pub(crate) fn key() -> Style {
    Style::new().fg(Color::Cyan)
}
