//! Heist overlays: the picker (heists beside the inventory, the picked one's plan, profile and
//! variables), the `ask` prompt, and the name prompt of `ctrl-s`.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{block, centered};
use crate::console::action::Action;
use crate::console::app::Model;
use crate::console::keymap::Mode;
use crate::console::sanitize::plain;
use crate::console::theme::Theme;

fn key(m: &Model, mode: Mode, a: Action, fallback: &str) -> String {
    m.keymap
        .key_for(mode, &a)
        .unwrap_or_else(|| fallback.into())
}

/// `KEY label   KEY label …` from the keymap, for a popup's last line.
fn keys_line<'a>(m: &Model, mode: Mode, items: &[(Action, &str)], t: &Theme) -> Line<'a> {
    let mut spans = Vec::new();
    for (a, label) in items {
        spans.push(Span::styled(
            key(m, mode, a.clone(), "?"),
            t.get("status.key"),
        ));
        spans.push(Span::styled(format!(" {label}   "), t.get("ui")));
    }
    Line::from(spans)
}

pub fn picker(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let r = centered(area, 94, 90);
    f.render_widget(Clear, r);
    let title = Line::from(Span::styled(" Heists ", t.get("ui.title")));
    let b = block(title, true, t);
    let inner = b.inner(r);
    f.render_widget(b, r);
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Min(3),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .split(inner);
    let hs = &m.heist;
    let Some(list) = hs.list.as_ref() else {
        let p = Paragraph::new("looking for heists…").style(t.get("ui.empty"));
        f.render_widget(p, rows[0]);
        return;
    };
    if list.heists.is_empty() {
        let dirs: Vec<String> = list
            .looked
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut lines = vec![Line::from(Span::styled(
            format!("No heists found (looked in {}).", dirs.join(", ")),
            t.get("ui.empty"),
        ))];
        lines.push(Line::from(Span::styled(
            "Write one in heists/NAME.toml beside hosts.toml (see heists/README.md), or save a command with ctrl-s.",
            t.get("ui.empty"),
        )));
        for e in &list.errors {
            lines.push(Line::from(Span::styled(
                plain(e.as_bytes()),
                t.get("input.error"),
            )));
        }
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), rows[0]);
        return;
    }
    let list_w = list
        .heists
        .iter()
        .map(|h| h.name.len())
        .max()
        .unwrap_or(8)
        .clamp(8, 24) as u16
        + 3;
    let cols = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Length(list_w), Constraint::Min(10)])
        .split(rows[0]);
    let names: Vec<Line> = list
        .heists
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let l = Line::from(Span::styled(format!(" {}", h.name), t.get("host.name")));
            if i == hs.pick {
                l.style(t.get("ui.selected"))
            } else {
                l
            }
        })
        .collect();
    f.render_widget(Paragraph::new(names), cols[0]);
    let mut plan: Vec<Line> = Vec::new();
    for e in &list.errors {
        plan.push(Line::from(Span::styled(
            plain(e.as_bytes()),
            t.get("input.error"),
        )));
    }
    match hs.preview.as_ref() {
        Some(Ok(_)) => plan.extend(
            hs.preview_text
                .lines()
                .map(|l| Line::from(Span::styled(plain(l.as_bytes()), t.get("ui")))),
        ),
        Some(Err(e)) => {
            if let Some(d) = hs.picked().and_then(|h| h.description.clone()) {
                plan.push(Line::from(Span::styled(d, t.get("ui"))));
            }
            plan.push(Line::from(Span::styled(
                "cannot start as it is:",
                t.get("input.error"),
            )));
            plan.extend(
                e.lines()
                    .map(|l| Line::from(Span::styled(plain(l.as_bytes()), t.get("input.error")))),
            );
        }
        None => {}
    }
    f.render_widget(Paragraph::new(plan), cols[1]);
    // profile and variables
    let profiles: Vec<String> = hs
        .picked()
        .map(|h| h.profiles.keys().cloned().collect())
        .unwrap_or_default();
    let params: Vec<String> = hs.picked().map(|h| h.params.clone()).unwrap_or_default();
    let mut spans = vec![
        Span::styled(" profile: ", t.get("ui.dim")),
        Span::styled(
            hs.profile.clone().unwrap_or_else(|| "(none)".into()),
            t.get("host.name"),
        ),
    ];
    if !profiles.is_empty() {
        spans.push(Span::styled(
            format!(" (p: {})", profiles.join(", ")),
            t.get("ui.dim"),
        ));
    }
    spans.push(Span::styled("   vars: ", t.get("ui.dim")));
    let var_area_x = spans.iter().map(|s| s.width()).sum::<usize>() as u16;
    let vars = hs.vars_text();
    if m.mode != Mode::HeistVars {
        let shown = if vars.is_empty() && !params.is_empty() {
            format!("(needs {})", params.join(", "))
        } else if vars.is_empty() {
            "(none)".into()
        } else {
            vars
        };
        spans.push(Span::styled(shown, t.get("host.name")));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), rows[1]);
    if m.mode == Mode::HeistVars {
        let field = Rect {
            x: rows[1].x + var_area_x.min(rows[1].width),
            width: rows[1].width.saturating_sub(var_area_x),
            ..rows[1]
        };
        f.render_widget(&hs.vars_input, field);
    }
    let keys = if m.mode == Mode::HeistVars {
        keys_line(
            m,
            Mode::HeistVars,
            &[(Action::Submit, "use"), (Action::Cancel, "back")],
            t,
        )
    } else {
        keys_line(
            m,
            Mode::Heists,
            &[
                (Action::Submit, "start"),
                (Action::Down, "next"),
                (Action::HeistProfile, "profile"),
                (Action::HeistVars, "vars NAME=VALUE"),
                (Action::Cancel, "close"),
            ],
            t,
        )
    };
    f.render_widget(Paragraph::new(keys), rows[2]);
}

pub fn ask(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let Some(v) = m.heist.view.as_ref() else {
        return;
    };
    let h = (v.asks.len() as u16 + 7).min(area.height);
    let mut r = centered(area, 70, 10);
    r.height = h;
    r.y = area.y + area.height.saturating_sub(h) / 2;
    f.render_widget(Clear, r);
    let title = Line::from(Span::styled(
        format!(" Heist {}: a step failed, your call ", v.heist),
        t.get("heist.asking"),
    ));
    let b = block(title, true, t).border_style(t.get("dialog.border"));
    let inner = b.inner(r);
    f.render_widget(b, r);
    let mut lines = vec![Line::from(Span::styled(
        format!("{} host(s) wait:", v.asks.len()),
        t.get("ui.dim"),
    ))];
    for a in &v.asks {
        let step = if a.step.rollback {
            v.rollback_steps.get(a.step.index)
        } else {
            v.steps.get(a.step.index)
        };
        lines.push(Line::from(vec![
            Span::styled(format!("  {:<12} ", a.host), t.get("host.name")),
            Span::styled(
                format!("{:<10} ", step.map(String::as_str).unwrap_or("?")),
                t.get("heist.header"),
            ),
            Span::styled(plain(a.reason.as_bytes()), t.get("heist.failed")),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(keys_line(
        m,
        Mode::Ask,
        &[
            (Action::AskAdvance, "advance"),
            (Action::AskRetry, "retry"),
            (Action::AskRollback, "rollback"),
            (Action::AskAbort, "abort"),
        ],
        t,
    ));
    lines.push(keys_line(
        m,
        Mode::Ask,
        &[(Action::Cancel, "hide (the heist keeps waiting)")],
        t,
    ));
    f.render_widget(Paragraph::new(lines), inner);
}

pub fn save(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let Some((select, command)) = m.heist.save_what.as_ref() else {
        return;
    };
    let mut r = centered(area, 70, 10);
    r.height = 8.min(area.height);
    r.y = area.y + area.height.saturating_sub(r.height) / 2;
    f.render_widget(Clear, r);
    let b = block(
        Line::from(Span::styled(" Save as heist ", t.get("ui.title"))),
        true,
        t,
    );
    let inner = b.inner(r);
    f.render_widget(b, r);
    let lines = vec![
        Line::from(vec![
            Span::styled("select:  ", t.get("ui.dim")),
            Span::styled(plain(select.as_bytes()), t.get("host.name")),
        ]),
        Line::from(vec![
            Span::styled("run:     ", t.get("ui.dim")),
            Span::styled(plain(command.as_bytes()), t.get("host.name")),
        ]),
        Line::from(Span::styled("name:", t.get("input.prompt"))),
    ];
    f.render_widget(Paragraph::new(lines), inner);
    if inner.height >= 6 {
        let field = Rect {
            x: inner.x + 9,
            y: inner.y + 2,
            width: inner.width.saturating_sub(9),
            height: 1,
        };
        f.render_widget(&m.heist.save_input, field);
        let keys = keys_line(
            m,
            Mode::SaveHeist,
            &[(Action::Submit, "save"), (Action::Cancel, "cancel")],
            t,
        );
        let row = Rect {
            y: inner.y + inner.height - 1,
            height: 1,
            ..inner
        };
        f.render_widget(Paragraph::new(keys), row);
    }
}
