//! Gathered view: groups of hosts with identical output (largest first), each with its
//! count, folded nodeset and status; the selected group's output, or its diff against the
//! largest group.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{block, output_focused, output_line};
use crate::console::app::Model;
use crate::console::gather::{diff, DiffOp};
use crate::console::scrollback::Scrollback;
use crate::console::theme::Theme;
use crate::proto::agent::Stream;

fn status_scope(status: &str) -> &'static str {
    match status {
        "ok" => "exit.ok",
        "running" => "exit.running",
        "pending" => "exit.pending",
        "timeout" => "exit.timeout",
        "unreachable" => "exit.unreachable",
        _ => "exit.fail",
    }
}

pub fn draw(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let title = Line::from(Span::styled(" Gathered ", t.get("ui.title")));
    let Some(run) = m.run.as_ref() else {
        let b = block(title, output_focused(m), t);
        let inner = b.inner(area);
        f.render_widget(b, area);
        let msg = "No run yet: the gathered view groups hosts by identical output.";
        f.render_widget(Paragraph::new(msg).style(t.get("ui.empty")), inner);
        return;
    };
    let groups = run.gather.groups();
    let list_h = (groups.len() as u16 + 2).clamp(3, area.height / 2);
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(list_h), Constraint::Min(1)])
        .split(area);
    let title = Line::from(vec![
        Span::styled(" Gathered ", t.get("ui.title")),
        Span::styled(
            format!("{} groups · {} hosts ", groups.len(), run.hosts.len()),
            t.get("ui.dim"),
        ),
    ]);
    let b = block(title, output_focused(m), t);
    let inner = b.inner(rows[0]);
    f.render_widget(b, rows[0]);
    let sel = run.group.min(groups.len().saturating_sub(1));
    let h = usize::from(inner.height);
    let lines: Vec<Line> = groups
        .iter()
        .enumerate()
        .skip(sel.saturating_sub(h.saturating_sub(1)))
        .take(h)
        .map(|(i, g)| {
            let mut l = Line::from(vec![
                Span::styled(format!("{:>4} ", g.hosts.len()), t.get("ui.title")),
                Span::styled(
                    format!("{:<12}", g.key.status),
                    t.get(status_scope(&g.key.status)),
                ),
                Span::styled(Model::fold(&g.hosts), t.get("host.name")),
            ]);
            if i == sel {
                l = l.style(t.get("ui.selected"));
            }
            l
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);

    let Some(group) = groups.get(sel) else {
        return;
    };
    let rep = |i: usize| {
        groups
            .get(i)
            .and_then(|g| g.hosts.first())
            .and_then(|h| run.jobs.get(h))
    };
    let Some(job) = rep(sel) else {
        return;
    };
    let showing_diff = run.diff && sel > 0;
    let label = if showing_diff {
        format!(
            " diff: {} (+) against the largest group {} (−) ",
            Model::fold(&group.hosts),
            Model::fold(&groups[0].hosts)
        )
    } else {
        format!(" output of {} ", Model::fold(&group.hosts))
    };
    let b = block(Line::from(Span::styled(label, t.get("ui.title"))), false, t);
    let inner = b.inner(rows[1]);
    f.render_widget(b, rows[1]);
    let h = usize::from(inner.height);
    let lines: Vec<Line> = if showing_diff {
        let (Some(base), Some(base_host), Some(job_host)) =
            (rep(0), groups[0].hosts.first(), group.hosts.first())
        else {
            return;
        };
        cached_diff(base_host, &base.out, job_host, &job.out, h)
            .into_iter()
            .filter_map(|(op, from_base, i)| {
                let src = if from_base { &base.out } else { &job.out };
                src.get(i).map(|(_, bytes)| (op, bytes))
            })
            .map(|(op, bytes)| {
                let (mark, scope) = match op {
                    DiffOp::Same => ("  ", "output.stdout"),
                    DiffOp::Removed => ("- ", "diff.removed"),
                    DiffOp::Added => ("+ ", "diff.added"),
                };
                let mut l = output_line(Stream::Stdout, bytes, None, t);
                l.spans.insert(0, Span::styled(mark, t.get(scope)));
                if op != DiffOp::Same {
                    l = l.style(t.get(scope));
                }
                l
            })
            .collect()
    } else {
        let len = job.out.len();
        (len.saturating_sub(h)..len)
            .filter_map(|i| job.out.get(i))
            .map(|(s, b)| output_line(s, b, None, t))
            .collect()
    };
    f.render_widget(Paragraph::new(lines), inner);
}

/// Which two outputs a cached diff compares: host names plus each scrollback's length and
/// dropped-line count (lines are only ever appended, so these identify the content).
type DiffKey = (String, String, usize, u64, usize, u64);
/// A diff as (op, taken from the reference?, line index in that scrollback).
type DiffRows = Vec<(DiffOp, bool, usize)>;

thread_local! {
    /// The render functions are pure over the Model; this memo keeps the O(n·m) diff of two
    /// whole scrollbacks out of every frame: it is recomputed only when either output grew.
    static DIFF_CACHE: std::cell::RefCell<Option<(DiffKey, DiffRows)>> =
        const { std::cell::RefCell::new(None) };
}

/// The first `rows` lines of the diff of `b` against the reference `a`, memoised.
fn cached_diff(
    a_host: &str,
    a: &Scrollback,
    b_host: &str,
    b: &Scrollback,
    rows: usize,
) -> DiffRows {
    let key: DiffKey = (
        a_host.to_string(),
        b_host.to_string(),
        a.len(),
        a.dropped(),
        b.len(),
        b.dropped(),
    );
    DIFF_CACHE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if let Some((k, diff_rows)) = cache.as_ref() {
            if *k == key {
                return diff_rows.iter().take(rows).cloned().collect();
            }
        }
        let av: Vec<&[u8]> = a.iter().map(|(_, l)| l).collect();
        let bv: Vec<&[u8]> = b.iter().map(|(_, l)| l).collect();
        let (mut ia, mut ib) = (0usize, 0usize);
        let all: DiffRows = diff(&av, &bv)
            .into_iter()
            .map(|(op, _)| match op {
                DiffOp::Same => {
                    let row = (op, true, ia);
                    ia += 1;
                    ib += 1;
                    row
                }
                DiffOp::Removed => {
                    ia += 1;
                    (op, true, ia - 1)
                }
                DiffOp::Added => {
                    ib += 1;
                    (op, false, ib - 1)
                }
            })
            .collect();
        let out = all.iter().take(rows).cloned().collect();
        *cache = Some((key, all));
        out
    })
}
