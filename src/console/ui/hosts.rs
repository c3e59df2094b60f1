//! The host list: mark, live pool state, last result, name and tags; counts in the title.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::block;
use crate::console::app::{Focus, Model};
use crate::console::theme::Theme;
use crate::model::Verdict;

/// Glyph and theme scope for a pool state (`connecting`, `ready`, `busy`, `lost`, `down`).
pub fn state_glyph(state: Option<&str>) -> (&'static str, &'static str) {
    match state {
        Some("connecting") | Some("installing") => ("◌", "state.connecting"),
        Some("ready") => ("●", "state.ready"),
        Some("busy") => ("◉", "state.busy"),
        Some("lost") => ("◍", "state.lost"),
        Some("down") => ("✖", "state.down"),
        _ => ("·", "state.unknown"),
    }
}

/// Glyph and scope for a host's last verdict.
pub fn verdict_glyph(v: Option<Verdict>) -> (&'static str, &'static str) {
    match v {
        Some(Verdict::Ok) => ("✓", "exit.ok"),
        Some(Verdict::Failed) => ("✗", "exit.fail"),
        Some(Verdict::Timeout) => ("⧖", "exit.timeout"),
        Some(Verdict::Unreachable) => ("⊘", "exit.unreachable"),
        Some(Verdict::Killed) => ("†", "exit.fail"),
        None => (" ", "ui"),
    }
}

/// The list's title: shown / marked / total, in the longest form that fits `width` columns
/// (the border's corners excluded), so the total is never cut off.
pub fn title_text(
    shown: usize,
    marked: usize,
    total: usize,
    width: usize,
) -> (&'static str, String) {
    let counts = [
        (
            " Hosts ",
            format!("{shown} shown · {marked} marked · {total} total "),
        ),
        (
            " ",
            format!("{shown} shown · {marked} marked · {total} total "),
        ),
        (" ", format!("{shown}/{total} shown · {marked} marked ")),
        (" ", format!("{shown}/{total} · {marked}◆ ")),
    ];
    let fits = |(head, rest): &(&str, String)| head.chars().count() + rest.chars().count() <= width;
    let last = counts.len() - 1;
    let pick = counts.iter().position(fits).unwrap_or(last);
    counts.into_iter().nth(pick).unwrap_or_default()
}

pub fn draw(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let (head, counts) = title_text(
        m.shown.len(),
        m.marks.len(),
        m.fleet.hosts.len(),
        usize::from(area.width.saturating_sub(2)),
    );
    let title = Line::from(vec![
        Span::styled(head, t.get("ui.title")),
        Span::styled(counts, t.get("ui.dim")),
    ]);
    let b = block(title, m.focus == Focus::Hosts && !m.zoom, t);
    let inner = b.inner(area);
    f.render_widget(b, area);
    if m.shown.is_empty() {
        let msg = if m.fleet.hosts.is_empty() {
            "No hosts in the inventory."
        } else {
            "No host matches the filter."
        };
        f.render_widget(Paragraph::new(msg).style(t.get("ui.empty")), inner);
        return;
    }
    let h = usize::from(inner.height);
    let offset = m.cursor.saturating_sub(h.saturating_sub(1));
    let running = m.run.as_ref();
    let lines: Vec<Line> = m
        .shown_hosts()
        .enumerate()
        .skip(offset)
        .take(h)
        .map(|(i, host)| {
            let marked = m.marks.contains(&host.name);
            let state = m.pool.as_ref().and_then(|p| p.state(&host.name));
            let (sg, ss) = state_glyph(state);
            let job = running.and_then(|r| r.jobs.get(&host.name));
            let (vg, vs) = match job {
                Some(j) if j.state.is_running() => ("▸", "exit.running"),
                _ => verdict_glyph(m.outcomes.get(&host.name).copied()),
            };
            let mut spans = vec![
                Span::styled(if marked { "◆" } else { " " }, t.get("host.mark")),
                Span::styled(sg, t.get(ss)),
                Span::styled(vg, t.get(vs)),
                Span::raw(" "),
                Span::styled(host.name.clone(), t.get("host.name")),
            ];
            if !host.tags.is_empty() {
                spans.push(Span::styled(
                    format!(" {}", host.tags.join(" ")),
                    t.get("host.tags"),
                ));
            }
            let mut line = Line::from(spans);
            if i == m.cursor {
                line = line.style(t.get("ui.selected"));
            }
            line
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}
