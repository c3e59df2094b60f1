//! The heist step view: steps × hosts, live (one row per host, one column per step, rollback
//! steps after `↶`), a summary line, and below it the focused cell: its command, attempts,
//! exit and output (sanitised like all host output).

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::{block, duration, output_focused, output_line};
use crate::console::app::{HeistState, Model};
use crate::console::theme::Theme;
use crate::heist::events::{HostOutcome, Outcome};
use crate::heist::view_model::{Cell, CellState, ViewModel};
use crate::model::Stream;

/// Glyph and theme scope of a cell state.
pub fn glyph(s: CellState) -> (&'static str, &'static str) {
    match s {
        CellState::Pending => ("·", "heist.pending"),
        CellState::Running => ("▶", "heist.running"),
        CellState::Ok => ("✓", "heist.ok"),
        CellState::Failed => ("✗", "heist.failed"),
        CellState::Retrying => ("↻", "heist.retrying"),
        CellState::Asking => ("?", "heist.asking"),
        CellState::Skipped => ("-", "heist.skipped"),
        CellState::RolledBack => ("↶", "heist.rolled_back"),
        CellState::Interrupted => ("!", "heist.interrupted"),
    }
}

/// `✓ ok`, `✗ failed×2`, `✗ failed*` (let through).
pub fn cell_text(c: &Cell) -> String {
    let (g, _) = glyph(c.state);
    let mut s = format!("{g} {}", c.state.label());
    if c.attempts > 1 {
        s.push_str(&format!("×{}", c.attempts));
    }
    if c.ignored {
        s.push('*');
    }
    s
}

pub fn draw(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let Some(v) = m.heist.view.as_ref() else {
        return empty(f, area, m, t);
    };
    // Borders, header and summary (two rows when it wraps) around one row per host.
    let wraps = summary(v).0.chars().count() > usize::from(area.width.saturating_sub(2));
    let frame = if wraps { 5 } else { 4 };
    let grid_h = (v.hosts.len() as u16 + frame)
        .min(area.height * 3 / 5)
        .max(5);
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(grid_h), Constraint::Min(3)])
        .split(area);
    grid(f, parts[0], m, v, t);
    detail(f, parts[1], &m.heist, t);
}

fn empty(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let b = block(
        Line::from(Span::styled(" Heist ", t.get("ui.title"))),
        output_focused(m),
        t,
    );
    let inner = b.inner(area);
    f.render_widget(b, area);
    let key = |a| m.keymap.key_for(crate::console::keymap::Mode::Normal, &a);
    let pick = key(crate::console::action::Action::OpenHeists).unwrap_or_else(|| "h".into());
    let text = if m.heist.starting {
        vec![Line::from("Starting the heist…")]
    } else {
        vec![
            Line::from("No heist in progress."),
            Line::from(""),
            Line::from(format!(
                "Press {pick} to pick a heist, see its plan and start it;"
            )),
            Line::from("its steps × hosts show here while it runs."),
        ]
    };
    f.render_widget(Paragraph::new(text).style(t.get("ui.empty")), inner);
}

fn grid(f: &mut Frame, area: Rect, m: &Model, v: &ViewModel, t: &Theme) {
    let mut title = format!(" Heist {} ", v.heist);
    if let Some(p) = &v.profile {
        title.push_str(&format!("[{p}] "));
    }
    if let (Some(w), n) = (v.current_wave, v.waves.len()) {
        title.push_str(&format!("· wave {}/{n} ", w + 1));
    }
    title.push_str(&format!("· run {} ", v.run_id));
    let b = block(
        Line::from(Span::styled(title, t.get("ui.title"))),
        output_focused(m),
        t,
    );
    let inner = b.inner(area);
    f.render_widget(b, area);
    if inner.height < 3 || inner.width < 10 {
        return;
    }
    let names: Vec<String> = v
        .steps
        .iter()
        .cloned()
        .chain(v.rollback_steps.iter().map(|r| format!("↶{r}")))
        .collect();
    let host_w = v
        .hosts
        .iter()
        .map(|h| h.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 20)
        + 2;
    let col_w = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(13, 18)
        + 1;
    let fit = (usize::from(inner.width).saturating_sub(host_w) / col_w).max(1);
    let first_col = m.heist.col.saturating_sub(fit - 1);
    // The summary line wraps onto a second row rather than being cut at the pane's edge.
    let (text, scope) = summary(v);
    let summary_h: u16 = if text.chars().count() > usize::from(inner.width) {
        2
    } else {
        1
    };
    let rows_fit = usize::from(inner.height)
        .saturating_sub(1 + usize::from(summary_h))
        .max(1);
    let first_row = m.heist.row.saturating_sub(rows_fit - 1);
    let mut lines = Vec::new();
    let mut header = vec![Span::styled(pad("host", host_w), t.get("heist.header"))];
    for n in names.iter().skip(first_col).take(fit) {
        header.push(Span::styled(pad(n, col_w), t.get("heist.header")));
    }
    lines.push(Line::from(header));
    for (h, host) in v.hosts.iter().enumerate().skip(first_row).take(rows_fit) {
        let mut spans = vec![Span::styled(pad(host, host_w), t.get("host.name"))];
        let cells = v.cells.iter().chain(v.rollback_cells.iter());
        for (c, row) in cells.enumerate().skip(first_col).take(fit) {
            let cell = &row[h];
            let mut style = t.get(glyph(cell.state).1);
            if h == m.heist.row && c == m.heist.col {
                style = style.patch(t.get("ui.selected"));
            }
            spans.push(Span::styled(pad(&cell_text(cell), col_w - 1), style));
            spans.push(Span::raw(" "));
        }
        lines.push(Line::from(spans));
    }
    let summary_h = summary_h.min(inner.height);
    let summary_row = Rect {
        y: inner.y + inner.height - summary_h,
        height: summary_h,
        ..inner
    };
    f.render_widget(Paragraph::new(lines), inner);
    f.render_widget(
        Paragraph::new(Line::from(Span::styled(text, t.get(scope)))).wrap(Wrap { trim: true }),
        summary_row,
    );
}

/// The summary line: while running, cell counts; at the end, the outcome per host.
pub fn summary(v: &ViewModel) -> (String, &'static str) {
    if let Some(s) = &v.summary {
        let count = |p: fn(&HostOutcome) -> bool| s.hosts.iter().filter(|(_, o)| p(o)).count();
        let mut parts = Vec::new();
        for (n, label) in [
            (
                count(|o| matches!(o, HostOutcome::Completed { .. })),
                "completed",
            ),
            (count(|o| matches!(o, HostOutcome::Failed { .. })), "failed"),
            (
                count(|o| matches!(o, HostOutcome::RolledBack { .. })),
                "rolled back",
            ),
            (
                count(|o| matches!(o, HostOutcome::Stopped { .. })),
                "stopped",
            ),
            (
                count(|o| matches!(o, HostOutcome::NotStarted)),
                "not started",
            ),
        ] {
            if n > 0 {
                parts.push(format!("{n} {label}"));
            }
        }
        let (word, scope) = match s.outcome {
            Outcome::Completed if s.ok() => ("completed", "heist.ok"),
            Outcome::RolledBack => ("rolled back", "heist.rolled_back"),
            _ => ("failed", "heist.failed"),
        };
        let text = format!(
            "heist {word}: {} in {}",
            parts.join(" · "),
            duration(s.elapsed_ms)
        );
        return (text, scope);
    }
    let mut counts: Vec<(CellState, usize)> = Vec::new();
    for c in v.cells.iter().chain(v.rollback_cells.iter()).flatten() {
        match counts.iter_mut().find(|(s, _)| *s == c.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((c.state, 1)),
        }
    }
    const ORDER: [CellState; 9] = [
        CellState::Ok,
        CellState::Running,
        CellState::Retrying,
        CellState::Asking,
        CellState::Failed,
        CellState::RolledBack,
        CellState::Interrupted,
        CellState::Skipped,
        CellState::Pending,
    ];
    counts.sort_by_key(|(s, _)| ORDER.iter().position(|o| o == s));
    let parts: Vec<String> = counts
        .iter()
        .map(|(s, n)| format!("{n} {}", s.label()))
        .collect();
    let asking = !v.asks.is_empty();
    let text = format!(
        "{}: {}",
        if asking { "waits for you" } else { "running" },
        parts.join(" · ")
    );
    (
        text,
        if asking {
            "heist.asking"
        } else {
            "heist.running"
        },
    )
}

fn detail(f: &mut Frame, area: Rect, hs: &HeistState, t: &Theme) {
    let Some((step, host, cell)) = hs.focused() else {
        return;
    };
    let v = hs.view.as_ref();
    let name = v
        .and_then(|v| {
            if step.rollback {
                v.rollback_steps.get(step.index).map(|s| format!("↶{s}"))
            } else {
                v.steps.get(step.index).cloned()
            }
        })
        .unwrap_or_default();
    let mut title = format!(" {host} · {name} · {}", cell.state.label());
    if cell.attempts > 0 {
        title.push_str(&format!(" · attempt {}", cell.attempts));
    }
    if let Some(code) = cell.exit_code {
        title.push_str(&format!(" · exit {code}"));
    }
    if cell.wall_ms > 0 {
        title.push_str(&format!(" · {}", duration(cell.wall_ms)));
    }
    title.push(' ');
    let b = block(
        Line::from(Span::styled(title, t.get(glyph(cell.state).1))),
        false,
        t,
    );
    let inner = b.inner(area);
    f.render_widget(b, area);
    let mut lines = Vec::new();
    if !cell.what.is_empty() {
        let what = crate::console::sanitize::plain(cell.what.as_bytes());
        lines.push(Line::from(Span::styled(
            format!("$ {what}"),
            t.get("ui.dim"),
        )));
    }
    if let Some(r) = &cell.reason {
        let r = crate::console::sanitize::plain(r.as_bytes());
        lines.push(Line::from(Span::styled(r, t.get("heist.failed"))));
    }
    for (stream, text) in [
        (Stream::Stdout, &cell.stdout),
        (Stream::Stderr, &cell.stderr),
    ] {
        for l in text.lines() {
            lines.push(output_line(stream, l.as_bytes(), None, t));
        }
    }
    if lines.is_empty() {
        lines.push(Line::from(Span::styled(
            "nothing yet: the step has not run on this host",
            t.get("ui.empty"),
        )));
    }
    let keep = usize::from(inner.height);
    let skip = lines.len().saturating_sub(keep);
    let lines: Vec<Line> = lines.into_iter().skip(skip).collect();
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .style(Style::default()),
        inner,
    );
}

fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n > w {
        let mut out: String = s.chars().take(w.saturating_sub(1)).collect();
        out.push('…');
        out
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}
