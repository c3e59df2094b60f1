//! The console's Model: all state, changed only by [`Model::update`], which does no I/O and
//! returns the [`Effect`]s the event loop must carry out. Rendering reads it (`ui/`).

mod acting;
mod group_diff;
mod heist;
mod heist_actions;
mod hostkeys;
mod input;
mod run;
mod sudo;
mod types;

use std::collections::{BTreeSet, HashMap};

use tui_textarea::TextArea;

pub use group_diff::{diff_lines, DiffLine, GroupDiff, STREAMING_EVERY_MS};
pub use heist::{HeistState, Preview};
pub use hostkeys::HostKeyAsk;
pub use run::{Job, JobState, RunView};
pub use types::{Daemon, Focus, Level, PendingRun, Pool, Settings, View};

use super::action::Action;
use super::effect::{Effect, HEIST_TAG, STATUS_TAG};
use super::history::History;
use super::keymap::{Key, Keymap, Mode};
use super::runs::RunEntry;
use crate::inventory::Inventory;
use crate::model::{Info, Verdict};
use crate::pick::Selection;
use crate::proto::daemon::{Event, RunInfo};
use crate::select::{self, SelectError};

/// A filter that does not parse (or names an unknown group): where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// Character offset in the filter text.
    pub pos: usize,
    pub message: String,
}

impl FilterError {
    fn new(text: &str, e: SelectError) -> FilterError {
        FilterError {
            pos: e.column(text).saturating_sub(1),
            message: e.message,
        }
    }
}

pub struct Model {
    pub fleet: Inventory,
    pub keymap: Keymap,
    pub settings: Settings,
    pub mode: Mode,
    pub focus: Focus,
    pub view: View,
    pub zoom: bool,
    pub filter: Option<Selection>,
    pub filter_error: Option<FilterError>,
    /// Indices into `fleet.hosts` the filter lets through.
    pub shown: Vec<usize>,
    /// Cursor in `shown`.
    pub cursor: usize,
    pub marks: BTreeSet<String>,
    anchor: Option<String>,
    pub command_input: TextArea<'static>,
    pub filter_input: TextArea<'static>,
    pub search_input: TextArea<'static>,
    /// A line for the stdin of running jobs (`>`).
    pub send_input: TextArea<'static>,
    pub history: History,
    /// Set while ctrl-r searches history.
    pub history_search: bool,
    /// The history entry ctrl-r found (Enter runs it).
    pub history_hit: Option<String>,
    pub run: Option<RunView>,
    pub last_command: Option<String>,
    /// Verdict of each host in the last finished (or running) run: `?failed`, mark-failed.
    pub outcomes: HashMap<String, Verdict>,
    pub facts: HashMap<String, Info>,
    pub pool: Option<Pool>,
    pub daemon: Daemon,
    pub confirm: Option<PendingRun>,
    pub message: Option<(Level, String)>,
    pub help_scroll: usize,
    pub runs: Option<Vec<RunEntry>>,
    /// Runs and heists the daemon holds, started from anywhere (listed first by `R`).
    pub live: Option<Vec<RunInfo>>,
    /// Cursor in the browser's list: the live ones, then the stored ones.
    pub runs_cursor: usize,
    pub search: Option<String>,
    pub now_ms: u64,
    last_status_ms: u64,
    next_tag: u64,
    pub quit: bool,
    pub heist: HeistState,
    /// Commands run through sudo (as root) on the hosts: toggled on the command line.
    pub sudo: bool,
    /// The session's sudo password (asked once; `None` after an empty answer).
    sudo_password: Option<crate::model::Secret>,
    sudo_asked: bool,
    /// What waits for the password field.
    sudo_pending: Option<sudo::SudoPending>,
    /// The masked password field.
    pub password_input: TextArea<'static>,
    /// A run's open question about unknown host keys.
    pub hostkeys: Option<HostKeyAsk>,
}

impl Model {
    pub fn new(fleet: Inventory, keymap: Keymap, settings: Settings, history: History) -> Model {
        let mut m = Model {
            fleet,
            keymap,
            settings,
            mode: Mode::Normal,
            focus: Focus::Hosts,
            view: View::Output,
            zoom: false,
            filter: None,
            filter_error: None,
            shown: Vec::new(),
            cursor: 0,
            marks: BTreeSet::new(),
            anchor: None,
            command_input: TextArea::default(),
            filter_input: TextArea::default(),
            search_input: TextArea::default(),
            send_input: TextArea::default(),
            history,
            history_search: false,
            history_hit: None,
            run: None,
            last_command: None,
            outcomes: HashMap::new(),
            facts: HashMap::new(),
            pool: None,
            daemon: Daemon::Connecting,
            confirm: None,
            message: None,
            help_scroll: 0,
            runs: None,
            live: None,
            runs_cursor: 0,
            search: None,
            now_ms: 0,
            last_status_ms: 0,
            next_tag: 1,
            quit: false,
            heist: HeistState::default(),
            sudo: false,
            sudo_password: None,
            sudo_asked: false,
            sudo_pending: None,
            password_input: sudo::masked(),
            hostkeys: None,
        };
        m.refilter();
        m
    }

    /// What to do as the console opens: read the last run's outcomes (off the UI thread), so
    /// `?failed` and the result glyphs work before the session's first run.
    pub fn startup(&self) -> Vec<Effect> {
        vec![Effect::LastOutcomes]
    }

    /// A key press: bound keys become actions; in text fields the rest is typed.
    pub fn key(&mut self, key: Key) -> Vec<Effect> {
        match self.keymap.lookup(self.mode, &key).cloned() {
            Some(action) => self.update(action),
            None if matches!(
                self.mode,
                Mode::Filter
                    | Mode::Command
                    | Mode::Search
                    | Mode::HeistVars
                    | Mode::SaveHeist
                    | Mode::Send
                    | Mode::Password
            ) =>
            {
                self.update(Action::Input(key))
            }
            None => Vec::new(),
        }
    }

    /// Apply one action; the one place state changes. Derived state (the gathered view's
    /// diff) is brought up to date after it.
    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        let effects = self.apply(action);
        self.sync_diff();
        effects
    }

    fn apply(&mut self, action: Action) -> Vec<Effect> {
        if let Some(effects) = self.password_action(&action) {
            return effects;
        }
        let action = match self.hostkey_action(action) {
            Ok(effects) => return effects,
            Err(other) => *other,
        };
        let action = match self.heist_action(action) {
            Ok(effects) => return effects,
            Err(other) => *other,
        };
        match action {
            Action::Quit => self.quit = true,
            Action::Help => {
                self.mode = Mode::Help;
                self.help_scroll = 0;
            }
            Action::Cancel => self.cancel(),
            Action::Noop | Action::Resize(..) => {}
            Action::Up | Action::Down | Action::PageUp | Action::PageDown => self.movement(&action),
            Action::Top | Action::Bottom => self.movement(&action),
            Action::FocusNext | Action::FocusPrev => {
                self.focus = match self.focus {
                    Focus::Hosts => Focus::Output,
                    Focus::Output => Focus::Hosts,
                }
            }
            Action::ToggleMark => self.toggle_mark(),
            Action::MarkRange => self.mark_range(),
            Action::MarkAll => {
                let names: Vec<String> = self.shown_hosts().map(|h| h.name.clone()).collect();
                self.marks.extend(names);
            }
            Action::ClearMarks => self.marks.clear(),
            Action::MarkFailed => self.mark_outcome(&[Verdict::Failed], "failed"),
            Action::MarkTimeout => self.mark_outcome(&[Verdict::Timeout], "timed out"),
            Action::MarkUnreachable => self.mark_outcome(&[Verdict::Unreachable], "unreachable"),
            Action::MarkOk => self.mark_outcome(&[Verdict::Ok], "ok"),
            Action::Filter => self.mode = Mode::Filter,
            Action::Command => self.mode = Mode::Command,
            Action::Search => self.mode = Mode::Search,
            Action::Shell => return self.shell(),
            Action::ShellEnded { host, result } => match result {
                Ok(code) => self.info(format!("back from {host} (the shell exited {code})")),
                Err(e) => self.error(format!("shell on {host}: {e}")),
            },
            Action::SearchNext => self.search_step(true),
            Action::SearchPrev => self.search_step(false),
            Action::ToggleFollow => {
                if let Some(r) = self.run.as_mut() {
                    r.follow = !r.follow;
                }
            }
            Action::ToggleGather => self.toggle_view(View::Gathered),
            Action::ToggleHeist => self.toggle_view(View::Heist),
            Action::Diff => {
                if let Some(r) = self.run.as_mut() {
                    r.diff = !r.diff;
                }
            }
            Action::Zoom => self.zoom = !self.zoom,
            Action::ToggleSudo => self.toggle_sudo(),
            Action::BrowseRuns => {
                self.mode = Mode::Runs;
                self.runs = None;
                self.live = None;
                self.runs_cursor = 0;
                return vec![Effect::ListLive, Effect::ListRuns];
            }
            Action::Rerun => return self.rerun(),
            Action::SendInput => self.open_send(),
            Action::SendEof => return self.send_input(None),
            Action::KillFocused => return self.kill(false),
            Action::KillAll => return self.kill(true),
            Action::Submit => return self.submit(),
            Action::HistoryPrev | Action::HistoryNext | Action::HistorySearch => {
                self.history_action(&action)
            }
            Action::Confirm => return self.confirm_yes(),
            Action::Deny => {
                self.confirm = None;
                self.mode = Mode::Normal;
                self.info("not run");
            }
            Action::Input(key) => return self.input(key),
            Action::Daemon { tag, event } => return self.daemon_event(tag, event),
            Action::Connected(Ok((pid, build))) => {
                self.daemon = Daemon::Up { pid, build };
                return vec![Effect::Status];
            }
            Action::Connected(Err(e)) => {
                self.error(format!("daemon: {e}"));
                self.daemon = Daemon::Down(e);
            }
            Action::EffectFailed { tag, message } => self.effect_failed(tag, message),
            Action::OutcomesLoaded(last) => self.seed_outcomes(last),
            Action::LiveRuns(r) => match r {
                // Newest first, like the stored ones below them.
                Ok(mut list) => {
                    list.reverse();
                    self.live = Some(list);
                }
                Err(e) => self.error(format!("daemon: {e}")),
            },
            Action::RunsListed(r) => match r {
                Ok(list) => self.runs = Some(list),
                Err(e) => self.error(format!("run store: {e}")),
            },
            Action::RunLoaded(r) => match r {
                Ok(detail) => self.open_stored(detail),
                Err(e) => self.error(format!("run store: {e}")),
            },
            Action::Tick(ms) => {
                self.now_ms = ms;
                if matches!(self.daemon, Daemon::Up { .. })
                    && ms.saturating_sub(self.last_status_ms) >= 2000
                {
                    self.last_status_ms = ms;
                    return vec![Effect::Status];
                }
            }
            // the heist's actions and events: `heist_action` took them above
            _ => {}
        }
        Vec::new()
    }

    fn cancel(&mut self) {
        match self.mode {
            Mode::Normal => {
                if self.zoom {
                    self.zoom = false;
                } else if self.view != View::Output {
                    self.view = View::Output;
                } else {
                    self.message = None;
                }
            }
            Mode::Filter
            | Mode::Command
            | Mode::Search
            | Mode::Help
            | Mode::Runs
            | Mode::Heists
            | Mode::HeistVars
            | Mode::Ask
            | Mode::SaveHeist
            | Mode::Send
            | Mode::HostKeys
            | Mode::Password => {
                self.history_search = false;
                self.history_hit = None;
                self.mode = Mode::Normal;
            }
            Mode::Confirm => {
                self.confirm = None;
                self.mode = Mode::Normal;
            }
        }
    }

    fn toggle_view(&mut self, v: View) {
        self.view = if self.view == v { View::Output } else { v };
    }

    pub fn info(&mut self, s: impl Into<String>) {
        self.message = Some((Level::Info, s.into()));
    }

    pub fn error(&mut self, s: impl Into<String>) {
        self.message = Some((Level::Error, s.into()));
    }

    fn new_tag(&mut self) -> u64 {
        let t = self.next_tag;
        self.next_tag += 1;
        t
    }

    pub fn shown_hosts(&self) -> impl Iterator<Item = &crate::model::Host> + '_ {
        self.shown.iter().filter_map(|&i| self.fleet.hosts.get(i))
    }

    /// The host under the cursor in the host list.
    pub fn cursor_host(&self) -> Option<&str> {
        self.shown
            .get(self.cursor)
            .and_then(|&i| self.fleet.hosts.get(i))
            .map(|h| h.name.as_str())
    }

    /// Who the command line would run on: the marked hosts, else every shown host.
    pub fn targets(&self) -> Vec<String> {
        if self.marks.is_empty() {
            self.shown_hosts().map(|h| h.name.clone()).collect()
        } else {
            self.fleet
                .hosts
                .iter()
                .filter(|h| self.marks.contains(&h.name))
                .map(|h| h.name.clone())
                .collect()
        }
    }

    /// Re-apply the filter to the inventory (after it changed, or outcomes/facts did).
    pub fn refilter(&mut self) {
        let keep = self.cursor_host().map(str::to_string);
        let ctx = Ctx(self);
        let shown: Vec<usize> = match &self.filter {
            None => (0..self.fleet.hosts.len()).collect(),
            Some(f) => self
                .fleet
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| f.matches(h, &ctx))
                .map(|(i, _)| i)
                .collect(),
        };
        self.shown = shown;
        self.cursor = keep
            .and_then(|k| {
                self.shown
                    .iter()
                    .position(|&i| self.fleet.hosts.get(i).is_some_and(|h| h.name == k))
            })
            .unwrap_or(0)
            .min(self.shown.len().saturating_sub(1));
    }

    fn daemon_event(&mut self, tag: u64, event: Event) -> Vec<Effect> {
        match event {
            Event::Status(report) => {
                self.pool = Some(Pool::new(report));
            }
            Event::Facts(list) => {
                for (host, r) in list {
                    if let Ok(info) = r {
                        self.facts.insert(host, info);
                    }
                }
                self.refilter();
            }
            Event::Hello { pid, build, .. } => self.daemon = Daemon::Up { pid, build },
            Event::Error { message } if tag == STATUS_TAG || tag == u64::MAX => {
                self.error(format!("daemon: {message}"))
            }
            Event::Stopping => self.daemon = Daemon::Down("daemon stopping".into()),
            Event::HostKeys {
                run,
                ask_id,
                groups,
            } if tag == HEIST_TAG || self.run.as_ref().is_some_and(|r| r.tag == tag) => {
                self.hostkeys_asked(run, ask_id, groups)
            }
            Event::HostKeysAnswered { run, ask_id, .. } => self.hostkeys_answered(&run, ask_id),
            other => {
                if self.run.as_ref().is_some_and(|r| r.tag == tag) {
                    self.run_event(other);
                }
            }
        }
        Vec::new()
    }

    fn effect_failed(&mut self, tag: u64, message: String) {
        if self.run.as_ref().is_some_and(|r| r.tag == tag) {
            self.run_failed(&message);
        }
        if tag == STATUS_TAG {
            self.daemon = Daemon::Down(message.clone());
        }
        self.error(message);
    }
}

/// The filter's view of the Model: last outcomes and agent facts.
struct Ctx<'a>(&'a Model);

impl select::Context for Ctx<'_> {
    fn fact(&self, host: &str, key: &str) -> Option<String> {
        self.0.facts.get(host)?.fact(key)
    }
    fn outcome(&self, host: &str) -> Option<Verdict> {
        self.0.outcomes.get(host).copied()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
