//! The input box: filter bar (`/`), command line (`:`) or output search, with the target
//! count always visible in its title and filter errors shown inline under the text.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::block;
use crate::console::app::Model;
use crate::console::keymap::Mode;
use crate::console::theme::Theme;
use crate::nodeset;

pub fn draw(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let targets = match m.mode {
        Mode::Send => m.input_targets(),
        _ => m.targets(),
    };
    let whom = match (m.mode, m.marks.is_empty()) {
        (Mode::Send, true) => "focused",
        (_, true) => "shown",
        (_, false) => "marked",
    };
    let target_span = Span::styled(
        format!(
            "→ {} {whom} host{}: {} ",
            targets.len(),
            if targets.len() == 1 { "" } else { "s" },
            nodeset::fold(&targets)
        ),
        t.get("ui.dim"),
    );
    let (label, field, active) = match m.mode {
        Mode::Filter => (" / filter ", &m.filter_input, true),
        Mode::Search => (" search output ", &m.search_input, true),
        Mode::Send => (" > input for the job ", &m.send_input, true),
        Mode::Command if m.history_search => {
            (" : command (ctrl-r history) ", &m.command_input, true)
        }
        Mode::Password => (
            " sudo password on the hosts (asked once; Enter alone: none) ",
            &m.password_input,
            true,
        ),
        Mode::Command if m.sudo => (" : command [sudo → root] ", &m.command_input, true),
        Mode::Command => (" : command ", &m.command_input, true),
        _ if m.sudo => (" : command [sudo → root] ", &m.command_input, false),
        _ => (" : command ", &m.command_input, false),
    };
    let mut title = vec![Span::styled(label, t.get("input.prompt"))];
    if m.settings.read_only {
        title.push(Span::styled("[read-only] ", t.get("input.error")));
    }
    title.push(target_span);
    let mut b = block(Line::from(title), active, t);
    if let Some(e) = m.filter_error.as_ref() {
        // caret under the error position, inside the border
        let caret = format!("{}^ {}", "─".repeat(e.pos), e.message);
        b = b.title_bottom(Line::from(Span::styled(caret, t.get("input.error"))));
    } else if m.mode != Mode::Filter && !m.filter_input.is_empty() {
        let ftxt = m.filter_input.lines().join(" ");
        b = b.title_bottom(Line::from(Span::styled(
            format!(" filter: {ftxt} "),
            t.get("ui.dim"),
        )));
    }
    let inner = b.inner(area);
    f.render_widget(b, area);
    if m.history_search && m.mode == Mode::Command {
        let hit = m.history_hit.as_deref().unwrap_or("(no match)");
        let typed = m.command_input.lines().join(" ");
        let line = Line::from(vec![
            Span::styled(format!("{typed} "), t.get("ui")),
            Span::styled(format!("⟶ {hit}"), t.get("ui.dim")),
        ]);
        f.render_widget(Paragraph::new(line), inner);
        return;
    }
    if active || !field.is_empty() {
        f.render_widget(field, inner);
    } else {
        let hint = if m.settings.read_only {
            "read-only: browse hosts and runs; running commands is disabled"
        } else {
            "press : to type a command, / to filter hosts, ? for help"
        };
        f.render_widget(Paragraph::new(hint).style(t.get("ui.empty")), inner);
    }
}
