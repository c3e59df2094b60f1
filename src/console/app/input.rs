//! Text fields: the filter bar (applied as you type), the command line (history, ctrl-r)
//! and output search. Keys not bound in the mode's keymap are typed into the field.

use tui_textarea::{Input, Key as TKey, TextArea};

use super::{Focus, Model, RunView, View};
use crate::console::action::Action;
use crate::console::effect::Effect;
use crate::console::keymap::{Key, KeyCode, Mode};
use crate::pick::Selection;
use crate::proto::daemon::{RunInfo, RunKind};

pub(super) fn to_input(k: Key) -> Input {
    let key = match k.code {
        KeyCode::Char(c) => TKey::Char(c),
        KeyCode::Enter => TKey::Enter,
        KeyCode::Esc => TKey::Esc,
        KeyCode::Tab | KeyCode::BackTab => TKey::Tab,
        KeyCode::Backspace => TKey::Backspace,
        KeyCode::Delete => TKey::Delete,
        KeyCode::Up => TKey::Up,
        KeyCode::Down => TKey::Down,
        KeyCode::Left => TKey::Left,
        KeyCode::Right => TKey::Right,
        KeyCode::Home => TKey::Home,
        KeyCode::End => TKey::End,
        KeyCode::PageUp => TKey::PageUp,
        KeyCode::PageDown => TKey::PageDown,
        KeyCode::F(n) => TKey::F(n),
    };
    Input {
        key,
        ctrl: k.ctrl,
        alt: k.alt,
        shift: false,
    }
}

/// A text input's content on one line.
pub(super) fn text_of(t: &TextArea<'_>) -> String {
    t.lines().join(" ")
}

fn set_text(t: &mut TextArea<'static>, s: &str) {
    *t = TextArea::new(vec![s.to_string()]);
    t.move_cursor(tui_textarea::CursorMove::End);
}

impl Model {
    pub(super) fn input(&mut self, key: Key) -> Vec<Effect> {
        // One-line fields: never insert a newline.
        if key.code == KeyCode::Enter || (key.ctrl && matches!(key.code, KeyCode::Char('m'))) {
            return Vec::new();
        }
        let input = to_input(key);
        match self.mode {
            Mode::Filter => {
                self.filter_input.input(input);
                self.apply_filter()
            }
            Mode::Command => {
                self.command_input.input(input);
                if self.history_search {
                    let needle = text_of(&self.command_input);
                    self.history.reset();
                    self.history_hit = self.history.search(&needle).map(str::to_string);
                }
                Vec::new()
            }
            Mode::Search => {
                self.search_input.input(input);
                Vec::new()
            }
            Mode::Send => {
                self.send_input.input(input);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Parse the filter text; keep the last good filter while the text has an error.
    fn apply_filter(&mut self) -> Vec<Effect> {
        let text = text_of(&self.filter_input);
        if text.trim().is_empty() {
            self.filter = None;
            self.filter_error = None;
            self.refilter();
            return Vec::new();
        }
        match Selection::parse(&text, &self.fleet.groups) {
            Ok(f) => {
                let wants_facts = f.uses_facts();
                self.filter = Some(f);
                self.filter_error = None;
                self.refilter();
                if wants_facts && self.facts.is_empty() {
                    let tag = self.new_tag();
                    return vec![Effect::Facts {
                        tag,
                        hosts: self.fleet.hosts.clone(),
                    }];
                }
            }
            Err(e) => self.filter_error = Some(super::FilterError::new(&text, e)),
        }
        Vec::new()
    }

    pub(super) fn submit(&mut self) -> Vec<Effect> {
        match self.mode {
            Mode::Filter => {
                self.mode = Mode::Normal;
                Vec::new()
            }
            Mode::Command => {
                self.history_search = false;
                let cmd = match self.history_hit.take() {
                    Some(hit) => hit,
                    None => text_of(&self.command_input),
                };
                self.history.reset();
                let targets = self.targets();
                let effects = self.request_run(&cmd, targets);
                if !effects.is_empty() || self.mode == Mode::Confirm {
                    self.command_input = TextArea::default();
                    if self.mode == Mode::Command {
                        self.mode = Mode::Normal;
                    }
                    self.focus = super::Focus::Output;
                }
                effects
            }
            Mode::Send => {
                let line = text_of(&self.send_input);
                self.send_input = TextArea::default();
                self.send_input(Some(line))
            }
            Mode::Search => {
                let s = text_of(&self.search_input);
                self.search = Some(s);
                self.mode = Mode::Normal;
                if let Some(run) = self.run.as_mut() {
                    run.scroll = 0;
                    run.follow = false;
                }
                self.search_step(true);
                Vec::new()
            }
            Mode::Runs => {
                let live = self.live.as_ref().map_or(0, Vec::len);
                if let Some(info) = self
                    .live
                    .as_ref()
                    .and_then(|l| l.get(self.runs_cursor))
                    .cloned()
                {
                    return self.attach(info);
                }
                let dir = self
                    .runs
                    .as_ref()
                    .and_then(|r| r.get(self.runs_cursor.saturating_sub(live)))
                    .map(|e| e.dir.clone());
                match dir {
                    Some(d) => vec![Effect::LoadRun(d)],
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    /// Follow a run or heist the daemon holds (started here or anywhere else).
    fn attach(&mut self, info: RunInfo) -> Vec<Effect> {
        self.mode = Mode::Normal;
        match info.kind {
            RunKind::Heist => {
                if self.heist.running() && self.heist.run_id.as_deref() != Some(info.id.as_str()) {
                    self.error("a heist is on screen and still running; wait for it to finish");
                    return Vec::new();
                }
                self.heist.starting = true;
                vec![Effect::AttachHeist { run: info.id }]
            }
            RunKind::Run => {
                let tag = self.new_tag();
                let mut run = RunView::new(
                    tag,
                    &info.what,
                    Vec::new(),
                    self.settings.scrollback,
                    self.now_ms,
                );
                run.attached = Some(info.id.clone());
                self.run = Some(run);
                self.view = View::Output;
                self.focus = Focus::Output;
                self.info(format!("following run {}", info.id));
                vec![Effect::AttachRun { tag, run: info.id }]
            }
        }
    }

    pub(super) fn history_action(&mut self, action: &Action) {
        let current = text_of(&self.command_input);
        let got = match action {
            Action::HistoryPrev => self.history.older(&current).map(str::to_string),
            Action::HistoryNext => self.history.newer().map(str::to_string),
            _ => {
                // ctrl-r: search for what is typed; again: the next older match.
                if !self.history_search {
                    self.history.reset();
                }
                self.history_search = true;
                match self.history.search(&current).map(str::to_string) {
                    Some(hit) => self.history_hit = Some(hit),
                    None => self.error(format!("no older command contains {current:?}")),
                }
                return;
            }
        };
        if let Some(s) = got {
            self.history_search = false;
            self.history_hit = None;
            set_text(&mut self.command_input, &s);
        }
    }
}
