//! Helpers for screen tests, here and in the modules that add to the view (the demo):
//! an app fed with fixtures, the app drawn on ratatui's `TestBackend`, and the screen as text.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

use crate::app::{App, Input};
use crate::fixtures::{self, NOW};

/// An app that has received `status` and the fixtures' events, at the fixtures' clock.
pub(crate) fn app(status: dnsd_api::Status) -> App {
    let mut app = App::new("unix:/run/dnsd/control.sock");
    app.set_now(NOW);
    app.update(Input::Status(Box::new(status)));
    for e in fixtures::events() {
        app.update(Input::Event(Box::new(e)));
    }
    app
}

/// The app drawn on a test terminal of this size.
pub(crate) fn draw(app: &App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| frame.render_widget(app, frame.area()))
        .unwrap();
    terminal.backend().buffer().clone()
}

/// The screen as text, one line per row, trailing spaces cut.
pub(crate) fn text(buf: &Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The app drawn at this size, as text.
pub(crate) fn screen(app: &App, width: u16, height: u16) -> String {
    text(&draw(app, width, height))
}
