//! Gathered view: groups of hosts with identical output (largest first), each with its
//! count, folded nodeset and status; the selected group's output, or its diff against the
//! largest group.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{block, output_focused, output_line};
use crate::console::app::Model;
use crate::console::gather::DiffOp;
use crate::console::theme::Theme;
use crate::nodeset;

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
                Span::styled(nodeset::fold(&g.hosts), t.get("host.name")),
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
    let Some(job) = group.hosts.first().and_then(|h| run.jobs.get(h)) else {
        return;
    };
    let showing_diff = run.diff && sel > 0;
    let label = if showing_diff {
        format!(
            " diff: {} (+) against the largest group {} (−) ",
            nodeset::fold(&group.hosts),
            nodeset::fold(&groups[0].hosts)
        )
    } else {
        format!(" output of {} ", nodeset::fold(&group.hosts))
    };
    let b = block(Line::from(Span::styled(label, t.get("ui.title"))), false, t);
    let inner = b.inner(rows[1]);
    f.render_widget(b, rows[1]);
    let h = usize::from(inner.height);
    let lines: Vec<Line> = if showing_diff {
        // Computed in `Model::update` (kept current while hosts stream).
        run.group_diff
            .lines
            .iter()
            .take(h)
            .map(|d| {
                let (mark, scope) = match d.op {
                    DiffOp::Same => ("  ", "output.stdout"),
                    DiffOp::Removed => ("- ", "diff.removed"),
                    DiffOp::Added => ("+ ", "diff.added"),
                };
                // The text keeps its stream's style (stderr stands out in a diff too).
                let mut l = output_line(d.stream, &d.bytes, None, t);
                l.spans.insert(0, Span::styled(mark, t.get(scope)));
                if d.op != DiffOp::Same {
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
