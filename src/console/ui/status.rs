//! Status bar: daemon and pool state, running jobs, the last message, and the keys that
//! matter in the current mode (from the keymap's `hint`s).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::console::app::{Daemon, Level, Model};
use crate::console::theme::Theme;

pub fn draw(f: &mut Frame, area: Rect, m: &Model, t: &Theme) {
    let bar = t.get("status");
    let mut spans = Vec::new();
    let (text, scope) = match &m.daemon {
        Daemon::Connecting => ("daemon: connecting".to_string(), "status"),
        Daemon::Up { pid, .. } => (format!("daemon {pid}"), "status.ok"),
        Daemon::Down(_) => ("daemon: down".to_string(), "status.error"),
    };
    spans.push(Span::styled(format!(" {text} "), t.get(scope)));
    if let Some(p) = m.pool.as_ref() {
        let mut parts = Vec::new();
        for s in ["ready", "busy", "connecting", "lost", "down"] {
            let n = p.count(s);
            if n > 0 {
                parts.push(format!("{n} {s}"));
            }
        }
        if !parts.is_empty() {
            spans.push(Span::styled(format!("│ pool {} ", parts.join(" ")), bar));
        }
    }
    if let Some(run) = m.run.as_ref() {
        let n = run.running();
        if n > 0 {
            spans.push(Span::styled(format!("│ {n} running "), t.get("status.key")));
        }
    }
    if let Some(v) = m.heist.view.as_ref().filter(|_| m.heist.running()) {
        let scope = if v.asks.is_empty() {
            "status.key"
        } else {
            "status.error"
        };
        let what = if v.asks.is_empty() { "running" } else { "asks" };
        spans.push(Span::styled(
            format!("│ heist {} {what} ", v.heist),
            t.get(scope),
        ));
    }
    if let Some((level, msg)) = m.message.as_ref() {
        let scope = match level {
            Level::Info => "status",
            Level::Error => "status.error",
        };
        spans.push(Span::styled(format!("│ {msg} "), t.get(scope)));
    }
    let used: usize = spans.iter().map(|s| s.width()).sum();
    let mut hints = Vec::new();
    let mut width = 0;
    for b in m.keymap.bindings(m.mode) {
        let (Some(hint), Some(key)) = (b.hint.as_ref(), b.keys.first()) else {
            continue;
        };
        let w = key.label().chars().count() + hint.chars().count() + 3;
        if used + width + w > usize::from(area.width) {
            break;
        }
        width += w;
        hints.push(Span::styled(
            format!(" {}", key.label()),
            t.get("status.key"),
        ));
        hints.push(Span::styled(format!(" {hint} "), bar));
    }
    let pad = usize::from(area.width).saturating_sub(used + width);
    spans.push(Span::styled(" ".repeat(pad), bar));
    spans.extend(hints);
    f.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
}
