//! Heists in the Model: the picker (`h`: pick, see the plan, profile and variables, start),
//! the live step view's state (fed by the engine's events), the `ask` prompt and saving the
//! command line as a heist (`ctrl-s`). No I/O: listing, running and saving are [`Effect`]s.

use tui_textarea::TextArea;

use super::{Model, View};
use crate::console::action::Action;
use crate::console::effect::Effect;
use crate::console::heists::{HeistList, Shared};
use crate::console::keymap::Mode;
use crate::heist::def::HeistDef;
use crate::heist::events::{Choice, HeistEvent, Outcome, StepRef};
use crate::heist::outcomes::Tally;
use crate::heist::plan::{self, Plan};
use crate::heist::view_model::{Cell, ViewModel};
use crate::pick::Selection;
use crate::proto::daemon::HeistRequest;

/// A plan ready to start, or why it cannot be made.
pub type Preview = Result<(Shared<Plan>, Vec<(String, String)>), String>;

#[derive(Default)]
pub struct HeistState {
    /// What the picker lists (`None` while it is being read).
    pub list: Option<Shared<HeistList>>,
    /// Cursor in `list.heists`.
    pub pick: usize,
    pub profile: Option<String>,
    /// `k=v k2=v2`, like `--set`.
    pub vars_input: TextArea<'static>,
    /// The picked heist's plan under the profile and variables.
    pub preview: Option<Preview>,
    /// `preview`'s plan as text (rendered commands of every host): made once per replan,
    /// not on every frame.
    pub preview_text: String,
    /// The step view of the running (or last) heist.
    pub view: Option<ViewModel>,
    /// Each host's verdict in that heist, as its hosts end.
    pub tally: Tally,
    /// Asked the engine to start; no `Started` yet.
    pub starting: bool,
    pub run_dir: Option<String>,
    /// The heist's run id in the daemon (for answers and interrupts).
    pub run_id: Option<String>,
    /// Focused cell: host index and column (main steps, then rollback steps).
    pub row: usize,
    pub col: usize,
    pub save_input: TextArea<'static>,
    /// What `ctrl-s` saves: (selection, command).
    pub save_what: Option<(String, String)>,
}

impl HeistState {
    pub fn running(&self) -> bool {
        self.starting || self.view.as_ref().is_some_and(|v| v.summary.is_none())
    }

    pub fn picked(&self) -> Option<&HeistDef> {
        self.list.as_ref()?.heists.get(self.pick)
    }

    pub fn vars_text(&self) -> String {
        super::input::text_of(&self.vars_input)
    }

    /// The step of a column: main steps first, then rollback steps.
    pub fn step_of(view: &ViewModel, col: usize) -> StepRef {
        if col < view.steps.len() {
            StepRef::main(col)
        } else {
            StepRef::rollback(col - view.steps.len())
        }
    }

    /// The focused cell: its step, host and state.
    pub fn focused(&self) -> Option<(StepRef, &str, &Cell)> {
        let v = self.view.as_ref()?;
        let host = v.hosts.get(self.row)?;
        let step = Self::step_of(v, self.col);
        Some((step, host.as_str(), v.cell(step, host)?))
    }
}

impl Model {
    pub(super) fn open_heists(&mut self) -> Vec<Effect> {
        self.mode = Mode::Heists;
        self.heist.list = None;
        self.heist.preview = None;
        self.heist.pick = 0;
        self.heist.profile = None;
        vec![Effect::ListHeists(self.fleet.path.clone())]
    }

    pub(super) fn heists_listed(&mut self, list: Shared<HeistList>) {
        self.heist.list = Some(list);
        self.heist.pick = 0;
        self.heist.profile = None;
        self.replan();
    }

    /// Build the picked heist's plan (selection, profile, variables) against the console's
    /// facts and last outcomes: pure, no host touched.
    pub(super) fn replan(&mut self) {
        let Some(def) = self.heist.picked().cloned() else {
            self.heist.preview = None;
            return;
        };
        let words: Vec<String> = self
            .heist
            .vars_text()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let profile = self.heist.profile.clone();
        let build = || -> Preview {
            let sets = plan::parse_sets(&words).map_err(|e| e.to_string())?;
            let selection = plan::selection(&def, profile.as_deref()).map_err(|e| e.to_string())?;
            let sel = Selection::parse(selection, &self.fleet.groups)
                .map_err(|e| format!("selection `{selection}`: {}", e.message))?;
            let hosts = sel
                .pick(&self.fleet.hosts, &super::Ctx(self))
                .into_iter()
                .cloned()
                .collect();
            let plan =
                plan::build(&def, profile.as_deref(), &sets, hosts).map_err(|e| e.to_string())?;
            Ok((Shared::new(plan), sets))
        };
        let preview = build();
        if preview.is_ok()
            && self
                .message
                .as_ref()
                .is_some_and(|(l, _)| *l == super::Level::Error)
        {
            self.message = None;
        }
        self.heist.preview_text = match &preview {
            Ok((p, _)) => p.describe(),
            Err(_) => String::new(),
        };
        self.heist.preview = Some(preview);
    }

    pub(super) fn heist_pick_move(&mut self, action: &Action) {
        let n = self.heist.list.as_ref().map_or(0, |l| l.heists.len());
        let before = self.heist.pick;
        self.heist.pick = match action {
            Action::Up => before.saturating_sub(1),
            Action::Down => (before + 1).min(n.saturating_sub(1)),
            Action::Top => 0,
            Action::Bottom => n.saturating_sub(1),
            _ => before,
        };
        if self.heist.pick != before {
            self.heist.profile = None;
            self.replan();
        }
    }

    /// Next profile of the picked heist (none → first → … → none).
    pub(super) fn heist_profile(&mut self) {
        let Some(def) = self.heist.picked() else {
            return;
        };
        let names: Vec<String> = def.profiles.keys().cloned().collect();
        if names.is_empty() {
            self.info("this heist has no profiles");
            return;
        }
        self.heist.profile = match &self.heist.profile {
            None => names.first().cloned(),
            Some(p) => names
                .iter()
                .position(|n| n == p)
                .and_then(|i| names.get(i + 1))
                .cloned(),
        };
        self.replan();
    }

    pub(super) fn heist_submit(&mut self) -> Vec<Effect> {
        if self.mode == Mode::HeistVars {
            self.mode = Mode::Heists;
            self.replan();
            return Vec::new();
        }
        let Some(Ok((plan, sets))) = self.heist.preview.clone() else {
            self.error("this heist cannot start: see the plan for why");
            return Vec::new();
        };
        let inventory = std::path::absolute(&self.fleet.path).unwrap_or(self.fleet.path.clone());
        if self.settings.read_only {
            self.error("read-only console: refusing to start a heist (started with --read-only)");
            return Vec::new();
        }
        if self.heist.running() {
            self.error("a heist is already running; wait for it to finish");
            return Vec::new();
        }
        if plan.heist.needs_sudo() {
            // The `become` steps need the session's password: asked first, once.
            if self.sudo_for(super::sudo::SudoPending::Heist).is_err() {
                return Vec::new();
            }
        }
        self.mode = Mode::Normal;
        self.view = View::Heist;
        self.heist.view = None;
        self.heist.starting = true;
        self.heist.row = 0;
        self.heist.col = 0;
        self.info(format!("starting heist {}", plan.heist.name));
        // The daemon picks and plans the heist again from the same inputs, and runs it: it
        // goes on if this console goes away.
        vec![Effect::StartHeist(HeistRequest {
            name: plan.heist.name.clone(),
            profile: plan.profile.clone(),
            vars: sets,
            inventory: Some(inventory),
            file: Some(plan.heist.loc.path.clone()),
            accept_new_host_keys: self.settings.accept_new_host_keys,
            detach: false,
            sudo_password: self.session_password(),
            // The operator is here: unknown host keys are asked about (the host-keys popup).
            ask_host_keys: true,
        })]
    }

    pub(super) fn heist_event(&mut self, ev: HeistEvent) {
        // `?failed` and the host glyphs follow the heist as its hosts end, by the same rule
        // as after a run.
        if let Some((host, verdict)) = self.heist.tally.apply(&ev) {
            match verdict {
                Some(v) => self.outcomes.insert(host, v),
                None => self.outcomes.remove(&host),
            };
        }
        let view = self.heist.view.get_or_insert_with(ViewModel::default);
        view.apply(&ev);
        match ev {
            HeistEvent::Started { .. } => {
                self.heist.tally = Tally::default();
                self.outcomes.clear();
                self.heist.starting = false;
                self.heist.row = 0;
                self.heist.col = 0;
            }
            HeistEvent::Ask { .. } => {
                if matches!(self.mode, Mode::Normal | Mode::Heists) {
                    self.mode = Mode::Ask;
                }
                self.view = View::Heist;
            }
            HeistEvent::AskClosed { .. } if self.mode == Mode::Ask && view.asks.is_empty() => {
                self.mode = Mode::Normal;
            }
            HeistEvent::Finished { summary } => {
                if self.mode == Mode::Ask {
                    self.mode = Mode::Normal;
                }
                let word = match summary.outcome {
                    Outcome::Completed if summary.ok() => "completed",
                    Outcome::RolledBack => "rolled back",
                    _ => "failed",
                };
                let msg = format!("heist {} {word}", summary.heist);
                if summary.ok() {
                    self.info(msg);
                } else {
                    self.error(msg);
                }
            }
            _ => {}
        }
    }

    pub(super) fn heist_failed(&mut self, message: String) {
        self.heist.starting = false;
        if self.mode == Mode::Ask {
            self.mode = Mode::Normal;
        }
        self.error(format!("heist: {message}"));
    }

    /// The operator's answer goes to every host waiting on the prompt.
    pub(super) fn answer_ask(&mut self, choice: Choice) -> Vec<Effect> {
        let word = format!("{choice:?}").to_lowercase();
        let answers: Vec<(u64, String)> = self
            .heist
            .view
            .as_ref()
            .map(|v| v.asks.iter().map(|a| (a.ask_id, word.clone())).collect())
            .unwrap_or_default();
        self.mode = Mode::Normal;
        if answers.is_empty() {
            return Vec::new();
        }
        let Some(run) = self.heist.run_id.clone() else {
            self.error("the heist's run id is not known yet; try again");
            return Vec::new();
        };
        if self.settings.read_only {
            self.error("read-only console: refusing to answer (started with --read-only)");
            return Vec::new();
        }
        self.info(format!("answered {} host(s): {word}", answers.len()));
        vec![Effect::AnswerAsk { run, answers }]
    }

    pub(super) fn show_ask(&mut self) {
        if self.heist.view.as_ref().is_some_and(|v| !v.asks.is_empty()) {
            self.mode = Mode::Ask;
            self.view = View::Heist;
        } else {
            self.info("no heist is waiting for an answer");
        }
    }

    /// Move the focused cell of the step view; false when there is no step view to move in.
    pub(super) fn heist_cursor(&mut self, action: &Action) -> bool {
        if self.view != View::Heist {
            return false;
        }
        let Some(v) = self.heist.view.as_ref() else {
            return false;
        };
        let rows = v.hosts.len();
        let cols = v.steps.len() + v.rollback_steps.len();
        let (r, c) = (self.heist.row, self.heist.col);
        let last = |n: usize| n.saturating_sub(1);
        (self.heist.row, self.heist.col) = match action {
            Action::Up => (r.saturating_sub(1), c),
            Action::Down => ((r + 1).min(last(rows)), c),
            Action::PageUp => (r.saturating_sub(10), c),
            Action::PageDown => ((r + 10).min(last(rows)), c),
            Action::Top => (0, c),
            Action::Bottom => (last(rows), c),
            Action::FocusNext => (r, (c + 1).min(last(cols))),
            Action::FocusPrev => (r, c.saturating_sub(1)),
            _ => return false,
        };
        true
    }
}
