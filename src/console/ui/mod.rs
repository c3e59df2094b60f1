//! Pure render functions: `draw(frame, model, theme)` reads the Model and paints one frame.

mod gathered;
pub mod heist;
mod heist_popup;
mod hosts;
mod input;
mod output;
mod popup;
mod status;

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders};
use ratatui::Frame;

use super::app::{Focus, Model, View};
use super::keymap::Mode;
use super::sanitize::{self, SegKind};
use super::theme::Theme;
use crate::model::Stream;

/// Hosts the grid shows at most before switching to list + focused pane.
pub const GRID_MIN_HEIGHT: u16 = 6;
pub const GRID_MIN_WIDTH: u16 = 32;

pub fn draw(f: &mut Frame, m: &Model, t: &Theme) {
    let area = f.area();
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Min(3),
            Constraint::Length(3),
            Constraint::Length(1),
        ])
        .split(area);
    let main = rows[0];
    if m.zoom {
        draw_view(f, main, m, t);
    } else {
        let host_w = (main.width / 3).clamp(24.min(main.width), 44);
        let cols = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Length(host_w), Constraint::Min(1)])
            .split(main);
        hosts::draw(f, cols[0], m, t);
        draw_view(f, cols[1], m, t);
    }
    input::draw(f, rows[1], m, t);
    status::draw(f, rows[2], m, t);
    match m.mode {
        Mode::Help => popup::help(f, area, m, t),
        Mode::Confirm => popup::confirm(f, area, m, t),
        Mode::Runs => popup::runs(f, area, m, t),
        Mode::Heists | Mode::HeistVars => heist_popup::picker(f, area, m, t),
        Mode::Ask => heist_popup::ask(f, area, m, t),
        Mode::SaveHeist => heist_popup::save(f, area, m, t),
        Mode::HostKeys => popup::host_keys(f, area, m, t),
        _ => {}
    }
}

fn draw_view(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    match m.view {
        View::Output => output::draw(f, area, m, t),
        View::Gathered => gathered::draw(f, area, m, t),
        View::Heist => heist::draw(f, area, m, t),
    }
}

/// A bordered block, highlighted when it has focus.
pub(crate) fn block<'a>(title: Line<'a>, focused: bool, t: &Theme) -> Block<'a> {
    let border = if focused {
        t.get("ui.border.focused")
    } else {
        t.get("ui.border")
    };
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(border)
        .title(title)
}

pub(crate) fn output_focused(m: &Model) -> bool {
    m.focus == Focus::Output || m.zoom
}

/// `120ms`, `1.4s`, `2m05s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// One sanitized output line as styled spans (escapes dimmed, search hits highlighted).
pub(crate) fn output_line<'a>(
    stream: Stream,
    bytes: &[u8],
    search: Option<&str>,
    t: &Theme,
) -> Line<'a> {
    let base = match stream {
        Stream::Stdout => t.get("output.stdout"),
        Stream::Stderr => t.get("output.stderr"),
    };
    let mut spans = Vec::new();
    for seg in sanitize::line(bytes) {
        match seg.kind {
            SegKind::Escaped => spans.push(Span::styled(seg.text, t.get("output.escape"))),
            SegKind::Text => push_highlighted(&mut spans, seg.text, search, base, t),
        }
    }
    Line::from(spans)
}

fn push_highlighted(
    spans: &mut Vec<Span<'static>>,
    text: String,
    search: Option<&str>,
    base: Style,
    t: &Theme,
) {
    let Some(needle) = search.filter(|s| !s.is_empty()) else {
        spans.push(Span::styled(text, base));
        return;
    };
    let mut rest = text.as_str();
    while let Some(i) = rest.find(needle) {
        if i > 0 {
            spans.push(Span::styled(rest[..i].to_string(), base));
        }
        spans.push(Span::styled(needle.to_string(), t.get("output.match")));
        rest = &rest[i + needle.len()..];
    }
    if !rest.is_empty() {
        spans.push(Span::styled(rest.to_string(), base));
    }
}

/// A centered rectangle of `pw`% × `ph`% of `area`.
pub(crate) fn centered(area: Rect, pw: u16, ph: u16) -> Rect {
    let w = (area.width * pw / 100).max(20).min(area.width);
    let h = (area.height * ph / 100).max(5).min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}
