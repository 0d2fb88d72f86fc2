//! The election panel: who a failover of the selected service would promote now and why
//! it wins ("holds the freshest copy (pass #12; app2 #11 only)"), and why each other
//! member would be skipped (the daemon's own reasons), plus a switchover under way, a
//! primary being restarted before any failover, a stranded service, or the split-brain
//! risk of an unfenced one (last: it is long, and shown as a badge in the header too).
//! With many members, members skipped for the same reason are grouped so the panel
//! stays a few lines high.

use dnsd_api::ServiceStatus;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use super::frame::{panel, stale_style};
use super::palette;
use crate::app::App;
use crate::render;

/// Members listed one by one before they are grouped by reason.
const LIST_ONE_BY_ONE: usize = 6;
/// Names shown per reason when grouped.
const NAMES_PER_GROUP: usize = 4;

pub(super) struct Election<'a> {
    app: &'a App,
    lines: Vec<Line<'static>>,
}

impl<'a> Election<'a> {
    pub(super) fn new(app: &'a App) -> Election<'a> {
        let now = app.status.as_ref().map_or(app.now_ms, |s| s.now_ms);
        let lines = app
            .current_service()
            .map(|svc| explain(svc, now))
            .unwrap_or_default();
        Election { app, lines }
    }

    /// Title plus the lines (as wrapped at `width`), at most a third of the screen.
    pub(super) fn height(&self, width: u16, screen_height: u16) -> u16 {
        let w = width.max(1) as usize;
        let wrapped: usize = self
            .lines
            .iter()
            .map(|l| l.width().div_ceil(w).max(1))
            .sum();
        let cap = (screen_height / 6).max(2) as usize;
        1 + wrapped.clamp(1, cap) as u16
    }
}

fn explain(svc: &ServiceStatus, now: u64) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(r) = &svc.recovery {
        lines.push(Line::styled(
            format!(" ⟳ {}", render::recovery(r, now)),
            palette::busy(),
        ));
    }
    if let Some(t) = &svc.transition {
        lines.push(Line::from(vec![
            Span::styled(" ⟳ in progress: ", palette::busy()),
            Span::styled(t.clone(), palette::busy()),
        ]));
    }
    if svc.stranded {
        lines.push(Line::styled(
            format!(
                " STRANDED: {} is down and no member can be promoted; DNS keeps answering it",
                svc.primary
            ),
            palette::alert(),
        ));
    }
    let order = if svc.members.len() <= 8 {
        format!(
            " in the order {}",
            svc.members
                .iter()
                .map(|m| m.node.as_str())
                .collect::<Vec<_>>()
                .join(" → ")
        )
    } else {
        String::new()
    };
    match &svc.next {
        Some(next) => {
            // dnsd's reason when it gives one (round-robin order spelled out), else ours.
            let why = match &svc.next_reason {
                Some(why) if why.ends_with("round-robin order") && !order.is_empty() => {
                    format!(" — {why}:{}", order.trim_start_matches(" in the order"))
                }
                Some(why) => format!(" — {why}"),
                None => format!(" — first eligible after {}{order}", svc.primary),
            };
            lines.push(Line::from(vec![
                Span::raw(" next: "),
                Span::styled(
                    next.clone(),
                    palette::ok().add_modifier(ratatui::style::Modifier::BOLD),
                ),
                Span::styled(why, palette::dim()),
            ]));
        }
        None => lines.push(Line::styled(
            format!(
                " next: nobody — no member of {} can be promoted now",
                svc.name
            ),
            palette::alert(),
        )),
    }

    // Skipped members in the order a failover would try them: after the primary.
    let start = svc
        .members
        .iter()
        .position(|m| m.node == svc.primary)
        .map_or(0, |p| p + 1);
    let n = svc.members.len();
    let skipped: Vec<(&str, &str)> = (0..n)
        .map(|i| &svc.members[(start + i) % n])
        .filter(|m| m.node != svc.primary && !m.eligible)
        .map(|m| {
            (
                m.node.as_str(),
                m.skip_reason.as_deref().unwrap_or("is not eligible"),
            )
        })
        .collect();
    if skipped.is_empty() {
        if n > 1 {
            lines.push(Line::styled(" skipped: none", palette::dim()));
        }
        lines.extend(risk(svc));
        return lines;
    }
    let mut spans = vec![Span::raw(" skipped: ")];
    if skipped.len() <= LIST_ONE_BY_ONE {
        for (i, (node, why)) in skipped.iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled(" · ", palette::dim()));
            }
            spans.push(Span::styled((*node).to_owned(), palette::title()));
            spans.push(Span::styled(format!(" {why}"), palette::warn()));
        }
    } else {
        // Group by reason, in the order reasons first appear.
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for (node, why) in &skipped {
            match groups.iter_mut().find(|(w, _)| w == why) {
                Some((_, nodes)) => nodes.push(node),
                None => groups.push((why, vec![node])),
            }
        }
        for (i, (why, nodes)) in groups.iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled(" · ", palette::dim()));
            }
            let mut names = nodes
                .iter()
                .take(NAMES_PER_GROUP)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if nodes.len() > NAMES_PER_GROUP {
                names.push_str(&format!(" (+{} more)", nodes.len() - NAMES_PER_GROUP));
            }
            spans.push(Span::styled(
                format!("{why} ({}): ", nodes.len()),
                palette::warn(),
            ));
            spans.push(Span::styled(names, palette::title()));
        }
    }
    lines.push(Line::from(spans));
    lines.extend(risk(svc));
    lines
}

/// The split-brain risk of an unfenced service, in dnsd's words.
fn risk(svc: &ServiceStatus) -> Option<Line<'static>> {
    let risk = svc.split_brain_risk.as_ref()?;
    Some(Line::from(vec![
        Span::styled(
            " ⚠ split-brain risk: ",
            palette::warn().add_modifier(Modifier::BOLD),
        ),
        Span::styled(risk.clone(), palette::warn()),
    ]))
}

impl Widget for Election<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let name = match self.app.current_service() {
            Some(s) => format!("Election · {}", s.name),
            None => "Election".to_owned(),
        };
        let block = panel(
            &name,
            "who a failover would promote, and why others are skipped",
            false,
        );
        let base = stale_style(self.app);
        let mut p = Paragraph::new(self.lines)
            .block(block)
            .wrap(Wrap { trim: false });
        if base != Style::new() {
            p = p.style(base);
        }
        p.render(area, buf);
    }
}
