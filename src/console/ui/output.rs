//! Output panes: a grid when every host of the run fits, otherwise a list of the run's hosts
//! beside the focused host's pane. Pane titles carry host, result and duration.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::hosts::verdict_glyph;
use super::{block, duration, output_focused, output_line, GRID_MIN_HEIGHT, GRID_MIN_WIDTH};
use crate::console::app::{JobState, Model, RunView};
use crate::console::theme::Theme;

pub fn draw(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let Some(run) = m.run.as_ref() else {
        let b = block(
            Line::from(Span::styled(" Output ", t.get("ui.title"))),
            output_focused(m),
            t,
        );
        let inner = b.inner(area);
        f.render_widget(b, area);
        let text = vec![
            Line::from("No run yet."),
            Line::from(""),
            Line::from("Pick hosts: / filters (e.g. role=demo), space marks, a marks all."),
            Line::from("Then : and type a command; Enter runs it on the marked hosts"),
            Line::from("(or on every shown host when none is marked). ? lists every key."),
        ];
        f.render_widget(Paragraph::new(text).style(t.get("ui.empty")), inner);
        return;
    };
    let focused = m.focused_host().unwrap_or_default().to_string();
    if m.zoom {
        pane(f, area, m, run, &focused, true, t);
        return;
    }
    let n = run.hosts.len().max(1) as u16;
    let max_cols = (area.width / GRID_MIN_WIDTH).max(1);
    let cols = (1..=max_cols)
        .find(|c| n.div_ceil(*c) * GRID_MIN_HEIGHT <= area.height)
        .unwrap_or(0);
    if cols == 0 {
        list_and_pane(f, area, m, run, &focused, t);
        return;
    }
    let rows = n.div_ceil(cols);
    let row_areas = Layout::default()
        .direction(Direction::Vertical)
        .constraints(vec![
            Constraint::Ratio(1, u32::from(rows));
            usize::from(rows)
        ])
        .split(area);
    for (r, row_area) in row_areas.iter().enumerate() {
        let col_areas = Layout::default()
            .direction(Direction::Horizontal)
            .constraints(vec![
                Constraint::Ratio(1, u32::from(cols));
                usize::from(cols)
            ])
            .split(*row_area);
        for (c, cell) in col_areas.iter().enumerate() {
            let i = r * usize::from(cols) + c;
            if let Some(h) = run.hosts.get(i) {
                let is_focus = *h == focused;
                pane(f, *cell, m, run, h, is_focus && output_focused(m), t);
            }
        }
    }
}

/// `web01 ✓ ok · 120ms`, `db1 ⊘ unreachable`, `web02 ▸ running · 3.1s`.
pub fn pane_title<'a>(run: &RunView, host: &str, now: u64, t: &Theme) -> Line<'a> {
    let Some(job) = run.jobs.get(host) else {
        return Line::from(format!(" {host} "));
    };
    let (glyph, scope) = match &job.state {
        JobState::Pending => ("…", "exit.pending"),
        JobState::Running => ("▸", "exit.running"),
        s => verdict_glyph(s.verdict()),
    };
    let mut spans = vec![
        Span::styled(format!(" {host} "), t.get("ui.title")),
        Span::styled(format!("{glyph} {}", job.state.label()), t.get(scope)),
    ];
    if let Some(ms) = run.duration_ms(host, now) {
        spans.push(Span::styled(
            format!(" · {}", duration(ms)),
            t.get("ui.dim"),
        ));
    }
    if let Some((done, total)) = job.progress.filter(|_| job.state.is_running()) {
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        spans.push(Span::styled(
            format!(" · {pct}% of {}", bytes(total)),
            t.get("ui.dim"),
        ));
    }
    if job.waiting_for_input(now) {
        spans.push(Span::styled(
            " · waiting for input? (>)",
            t.get("exit.running"),
        ));
    }
    if job.agentless {
        spans.push(Span::styled(" · agentless", t.get("ui.dim")));
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}

/// `12 B`, `3.4 MiB`.
fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", n as f64 / 1_073_741_824.0),
    }
}

fn pane(f: &mut Frame, area: Rect, m: &Model, run: &RunView, host: &str, focus: bool, t: &Theme) {
    let b = block(pane_title(run, host, m.now_ms, t), focus, t);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let Some(job) = run.jobs.get(host) else {
        return;
    };
    let h = usize::from(inner.height);
    let len = job.out.len();
    let is_focus = m.focused_host() == Some(host);
    let start = if run.follow || !is_focus {
        len.saturating_sub(h)
    } else {
        run.scroll.min(len.saturating_sub(1))
    };
    let search = if is_focus { m.search.as_deref() } else { None };
    let mut lines: Vec<Line> = (start..len.min(start + h))
        .filter_map(|i| job.out.get(i))
        .map(|(s, b)| output_line(s, b, search, t))
        .collect();
    // A pane that says why a host failed (the error is its last line) or why it has no
    // output wraps: the reason is read whole, not cut at the pane's edge. Following, the
    // tail that fits is kept.
    let placeholder = lines.is_empty();
    let wrap = placeholder || matches!(job.state, JobState::Failed { .. });
    if wrap && !placeholder && (run.follow || !is_focus) {
        let w = usize::from(inner.width.max(1));
        let rows = |l: &Line| l.width().div_ceil(w).max(1);
        while lines.len() > 1 && lines.iter().map(rows).sum::<usize>() > h {
            lines.remove(0);
        }
    }
    if placeholder {
        let msg = match &job.state {
            JobState::Pending => "waiting for the host…".to_string(),
            JobState::Running => "running, no output yet".to_string(),
            // Error text can carry what a host or its shell printed: never draw it raw.
            JobState::Failed { message, .. } => crate::console::sanitize::plain(message.as_bytes()),
            JobState::Exited(..) => "(no output)".to_string(),
        };
        lines.push(Line::from(Span::styled(msg, t.get("ui.empty"))));
    }
    if job.out.dropped() > 0 && start == 0 && h > 1 {
        let note = format!("… {} older lines in the run store", job.out.dropped());
        lines.insert(0, Line::from(Span::styled(note, t.get("ui.dim"))));
        lines.truncate(h);
    }
    let text = Paragraph::new(lines);
    let text = if wrap {
        text.wrap(Wrap { trim: false })
    } else {
        text
    };
    f.render_widget(text, inner);
}

fn list_and_pane(f: &mut Frame, area: Rect, m: &Model, run: &RunView, focused: &str, t: &Theme) {
    let list_w = (area.width / 3).clamp(20.min(area.width), 40);
    let cols = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Length(list_w), Constraint::Min(1)])
        .split(area);
    let done = run.jobs.values().filter(|j| !j.state.is_running()).count();
    let title = Line::from(vec![
        Span::styled(" Run ", t.get("ui.title")),
        Span::styled(format!("{done}/{} done ", run.hosts.len()), t.get("ui.dim")),
    ]);
    let b = block(title, false, t);
    let inner = b.inner(cols[0]);
    f.render_widget(b, cols[0]);
    let h = usize::from(inner.height);
    let pos = run.hosts.iter().position(|x| x == focused).unwrap_or(0);
    let offset = pos.saturating_sub(h.saturating_sub(1));
    let lines: Vec<Line> = run
        .hosts
        .iter()
        .enumerate()
        .skip(offset)
        .take(h)
        .map(|(i, host)| {
            let mut l = pane_title(run, host, m.now_ms, t);
            if i == pos {
                l = l.style(t.get("ui.selected"));
            }
            l
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
    pane(f, cols[1], m, run, focused, output_focused(m), t);
}
