//! Overlays: the help (generated from the keymap's descriptions), the confirm dialog for
//! dangerous commands, and the list of earlier runs.

use crate::proto::daemon::RunKind;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{block, centered};
use crate::console::app::Model;
use crate::console::keymap::Mode;
use crate::console::theme::Theme;
use crate::nodeset;

const HELP_MODES: &[(Mode, &str)] = &[
    (Mode::Normal, "Hosts and output"),
    (Mode::Filter, "Filter bar (/)"),
    (Mode::Command, "Command line (:)"),
    (Mode::Search, "Search in output (s)"),
    (Mode::Confirm, "Confirm dialog"),
    (Mode::Runs, "Earlier runs (R)"),
    (Mode::Heists, "Heist picker (h)"),
    (Mode::HeistVars, "Heist variables (e in the picker)"),
    (Mode::Ask, "Heist ask prompt"),
    (Mode::SaveHeist, "Save as heist (ctrl-s)"),
    (Mode::Send, "Input for running jobs (>)"),
    (Mode::Password, "sudo password"),
    (Mode::HostKeys, "New host keys question"),
];

/// The help text: every binding of every mode, with its description.
pub fn help_lines<'a>(m: &Model, t: &Theme) -> Vec<Line<'a>> {
    let mut lines = vec![
        Line::from(Span::styled(
            "Filter with / (e.g. role=demo), mark with space (a: all shown), then : and a",
            t.get("ui"),
        )),
        Line::from(Span::styled(
            "command; Enter runs it on the marked hosts, or on all shown when none is marked.",
            t.get("ui"),
        )),
    ];
    for (mode, title) in HELP_MODES {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            title.to_string(),
            t.get("ui.title"),
        )));
        for b in m.keymap.bindings(*mode) {
            let keys: Vec<String> = b.keys.iter().map(|k| k.label()).collect();
            lines.push(Line::from(vec![
                Span::styled(format!("  {:<18}", keys.join(" ")), t.get("status.key")),
                Span::styled(b.desc.clone(), t.get("ui")),
            ]));
        }
    }
    lines
}

pub fn help(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let r = centered(area, 84, 86);
    f.render_widget(Clear, r);
    let title = Line::from(Span::styled(
        " Help: keys (Esc closes, j/k scroll) ",
        t.get("ui.title"),
    ));
    let b = block(title, true, t);
    let inner = b.inner(r);
    f.render_widget(b, r);
    let lines = help_lines(m, t);
    // Long descriptions wrap (never cut at the edge); scrolling ends at the last row.
    let w = usize::from(inner.width.max(1));
    // (Word wrapping may take a row more than the width alone says.)
    let rows: usize = lines
        .iter()
        .map(|l| match l.width() {
            n if n <= w => 1,
            n => n.div_ceil(w) + 1,
        })
        .sum();
    let max = rows.saturating_sub(usize::from(inner.height));
    let scroll = m.help_scroll.min(max) as u16;
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        inner,
    );
}

pub fn confirm(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let Some(p) = m.confirm.as_ref() else {
        return;
    };
    let r = centered(area, 70, 40);
    f.render_widget(Clear, r);
    let title = Line::from(Span::styled(
        " Run a dangerous command? ",
        t.get("dialog.danger"),
    ));
    let b = block(title, true, t).border_style(t.get("dialog.border"));
    let inner = b.inner(r);
    f.render_widget(b, r);
    let yes = m
        .keymap
        .key_for(Mode::Confirm, &crate::console::action::Action::Confirm);
    let no = m
        .keymap
        .key_for(Mode::Confirm, &crate::console::action::Action::Deny);
    let lines = vec![
        Line::from(vec![
            Span::styled("command: ", t.get("ui.dim")),
            Span::styled(p.command.clone(), t.get("dialog.danger")),
        ]),
        Line::from(vec![
            Span::styled("matches: ", t.get("ui.dim")),
            Span::styled(p.pattern.clone(), t.get("ui")),
        ]),
        Line::from(vec![
            Span::styled(format!("on {} hosts: ", p.targets.len()), t.get("ui.dim")),
            Span::styled(nodeset::fold(&p.targets), t.get("host.name")),
        ]),
        Line::from(""),
        Line::from(vec![
            Span::styled(yes.unwrap_or_else(|| "confirm".into()), t.get("status.key")),
            Span::styled(" run it    ", t.get("ui")),
            Span::styled(no.unwrap_or_else(|| "deny".into()), t.get("status.key")),
            Span::styled(" cancel", t.get("ui")),
        ]),
    ];
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

pub fn runs(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let r = centered(area, 90, 80);
    f.render_widget(Clear, r);
    let title = Line::from(Span::styled(
        " Runs and heists (Enter follows a live one, opens a stored one) ",
        t.get("ui.title"),
    ));
    let b = block(title, true, t);
    let inner = b.inner(r);
    f.render_widget(b, r);
    let live = m.live.as_deref().unwrap_or_default();
    let Some(list) = m.runs.as_ref() else {
        f.render_widget(
            Paragraph::new("reading the run store…").style(t.get("ui.empty")),
            inner,
        );
        return;
    };
    if list.is_empty() && live.is_empty() {
        let msg = "No runs yet: runs appear here as they start (live) and once stored.";
        f.render_widget(Paragraph::new(msg).style(t.get("ui.empty")), inner);
        return;
    }
    let h = usize::from(inner.height);
    let live_lines = live.iter().map(|i| {
        let kind = match i.kind {
            RunKind::Run => "run",
            RunKind::Heist => "heist",
        };
        let mut counts: Vec<String> = i
            .verdicts
            .iter()
            .map(|(v, n)| format!("{n} {}", v.as_str()))
            .collect();
        if i.asks > 0 {
            counts.push(format!("{} asking", i.asks));
        }
        vec![
            Span::styled(format!("{:<14} ", i.id), t.get("ui.dim")),
            Span::styled(
                format!("{:<11} ", format!("{kind} {}", i.state.as_str())),
                t.get("ui"),
            ),
            Span::styled(format!("{:>4} hosts  ", i.hosts), t.get("ui")),
            Span::styled(
                crate::console::sanitize::plain(i.what.as_bytes()),
                t.get("host.name"),
            ),
            Span::styled(
                format!(
                    "  {} · {}",
                    crate::console::sanitize::plain(i.who.as_bytes()),
                    counts.join(", ")
                ),
                t.get("ui.dim"),
            ),
        ]
    });
    let stored_lines = list.iter().map(|e| {
        vec![
            Span::styled(format!("{:<14} ", e.id), t.get("ui.dim")),
            Span::styled(format!("{:<20} ", e.started), t.get("ui.dim")),
            Span::styled(format!("{:>4} hosts  ", e.hosts), t.get("ui")),
            Span::styled(
                crate::console::sanitize::plain(e.command.as_bytes()),
                t.get("host.name"),
            ),
            Span::styled(format!("  {}", e.outcome), t.get("ui.dim")),
        ]
    });
    let lines: Vec<Line> = live_lines
        .chain(stored_lines)
        .enumerate()
        .skip(m.runs_cursor.saturating_sub(h.saturating_sub(1)))
        .take(h)
        .map(|(i, spans)| {
            let l = Line::from(spans);
            if i == m.runs_cursor {
                l.style(t.get("ui.selected"))
            } else {
                l
            }
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

/// A run's question about unknown host keys: one line per group (key type, fingerprint,
/// folded hosts and count), the highlighted one marked; the keys from the keymap.
pub fn host_keys(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    use crate::console::action::Action;
    let Some(ask) = m.hostkeys.as_ref() else {
        return;
    };
    let key = |a: Action, fallback: &str| {
        m.keymap
            .key_for(Mode::HostKeys, &a)
            .unwrap_or_else(|| fallback.into())
    };
    let waiting: usize = ask.groups.iter().map(|g| g.hosts.len()).sum();
    // The highlighted key's visual host key, when asked for (drawn by the daemon from the key).
    let art: Vec<String> = match ask.groups.get(ask.cursor) {
        Some(g) if ask.art => g
            .randomart
            .lines()
            .map(|l| crate::console::sanitize::plain(l.as_bytes()))
            .collect(),
        _ => Vec::new(),
    };
    let art_rows = if art.is_empty() { 0 } else { art.len() + 1 };
    let h = (ask.groups.len() as u16 + 6 + art_rows as u16).min(area.height);
    let mut r = centered(area, 90, 10);
    r.height = h;
    r.y = area.y + area.height.saturating_sub(h) / 2;
    f.render_widget(Clear, r);
    let title = Line::from(Span::styled(
        format!(" New host keys: {waiting} host(s) wait ",),
        t.get("dialog.danger"),
    ));
    let b = block(title, true, t).border_style(t.get("dialog.border"));
    let inner = b.inner(r);
    f.render_widget(b, r);
    let mut lines = vec![Line::from(Span::styled(
        "known_hosts does not record these keys; verify them before accepting:",
        t.get("ui.dim"),
    ))];
    for (i, g) in ask.groups.iter().enumerate() {
        let here = i == ask.cursor;
        let style = if here {
            t.get("ui.selected")
        } else {
            t.get("ui")
        };
        lines.push(Line::from(vec![
            Span::styled(if here { "> " } else { "  " }, t.get("status.key")),
            Span::styled(format!("{} {} ", g.key_type, g.fingerprint), style),
            Span::styled(
                format!(
                    "\u{2014} {} ({})",
                    crate::console::sanitize::plain(nodeset::fold(&g.hosts).as_bytes()),
                    g.hosts.len()
                ),
                t.get("host.name"),
            ),
        ]));
    }
    if ask.art {
        lines.push(Line::from(""));
        if art.is_empty() {
            lines.push(Line::from(Span::styled(
                "  (no visual host key for this key)",
                t.get("ui.dim"),
            )));
        }
        for l in art {
            lines.push(Line::from(Span::styled(format!("  {l}"), t.get("ui"))));
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::styled(key(Action::HostKeysAccept, "accept"), t.get("status.key")),
        Span::styled(" accept this key   ", t.get("ui")),
        Span::styled(key(Action::HostKeysAcceptAll, "all"), t.get("status.key")),
        Span::styled(" accept all   ", t.get("ui")),
        Span::styled(key(Action::HostKeysRefuse, "refuse"), t.get("status.key")),
        Span::styled(" refuse (hostkey)   ", t.get("ui")),
        Span::styled(key(Action::HostKeysArt, "v"), t.get("status.key")),
        Span::styled(" visual key", t.get("ui")),
    ]));
    f.render_widget(Paragraph::new(lines), inner);
}
