//! The heist step view (steps × hosts, live). Reserved: the heist feature fills this in.
//! Until then it explains itself instead of staying blank.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{block, output_focused};
use crate::console::app::Model;
use crate::console::theme::Theme;

pub fn draw(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let b = block(
        Line::from(Span::styled(" Heist ", t.get("ui.title"))),
        output_focused(m),
        t,
    );
    let inner = b.inner(area);
    f.render_widget(b, area);
    let text = vec![
        Line::from("No heist in progress."),
        Line::from(""),
        Line::from("A heist's steps × hosts show here while it runs."),
        Line::from("Heists run from the shell for now: crew heist run <name>."),
    ];
    f.render_widget(Paragraph::new(text).style(t.get("ui.empty")), inner);
}
