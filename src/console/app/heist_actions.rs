//! Heist keys and events in `update` ([`Model::heist_action`]), and saving the command line
//! as a heist (`ctrl-s`: the selection and command, then a name).

use tui_textarea::TextArea;

use super::input::text_of;
use super::{Model, View};
use crate::console::action::Action;
use crate::console::effect::Effect;
use crate::console::keymap::Mode;
use crate::heist::events::Choice;
use crate::heist::save::SaveRequest;
use crate::nodeset;

impl Model {
    /// `ctrl-s`: what to save (the command line's command, else the last one; the marked
    /// hosts, else the filter, else every host), then ask for a name.
    pub(super) fn save_heist(&mut self) {
        let typed = text_of(&self.command_input);
        let command = if typed.trim().is_empty() {
            self.last_command.clone().unwrap_or_default()
        } else {
            typed
        };
        if command.trim().is_empty() {
            self.error("nothing to save: type a command first (:)");
            return;
        }
        let filter = text_of(&self.filter_input);
        let select = if !self.marks.is_empty() {
            let marked: Vec<String> = self.marks.iter().cloned().collect();
            nodeset::fold(&marked)
        } else if self.filter.is_some() && !filter.trim().is_empty() {
            filter.trim().to_string()
        } else {
            "*".to_string()
        };
        self.heist.save_what = Some((select, command.trim().to_string()));
        self.heist.save_input = TextArea::default();
        self.mode = Mode::SaveHeist;
    }

    pub(super) fn save_submit(&mut self) -> Vec<Effect> {
        let name = text_of(&self.heist.save_input).trim().to_string();
        let Some((select, command)) = self.heist.save_what.clone() else {
            self.mode = Mode::Normal;
            return Vec::new();
        };
        if let Err(e) = crate::heist::save::check_name(&name) {
            self.error(e);
            return Vec::new();
        }
        self.mode = Mode::Normal;
        self.heist.save_what = None;
        vec![Effect::SaveHeist {
            hosts_file: self.fleet.path.clone(),
            req: SaveRequest {
                name,
                select,
                command,
                description: Some("saved from the console".into()),
            },
        }]
    }

    pub(super) fn heist_saved(&mut self, r: Result<(String, String), String>) {
        match r {
            Ok((name, file)) => self.info(format!("saved heist {name} to {file}")),
            Err(e) => self.error(format!("not saved: {e}")),
        }
    }
}

impl Model {
    /// The heist part of `update`: handled here, or the action back for the rest of `update`.
    pub(super) fn heist_action(&mut self, action: Action) -> Result<Vec<Effect>, Box<Action>> {
        let mode = self.mode;
        match action {
            Action::OpenHeists => return Ok(self.open_heists()),
            Action::HeistProfile => self.heist_profile(),
            Action::HeistVars => self.mode = Mode::HeistVars,
            Action::SaveHeist => self.save_heist(),
            Action::ShowAsk => self.show_ask(),
            Action::AskAdvance => return Ok(self.answer_ask(Choice::Advance)),
            Action::AskRetry => return Ok(self.answer_ask(Choice::Retry)),
            Action::AskRollback => return Ok(self.answer_ask(Choice::Rollback)),
            Action::AskAbort => return Ok(self.answer_ask(Choice::Abort)),
            Action::HeistsListed(list) => self.heists_listed(list),
            Action::HeistStarted { run_id, run_dir } => {
                self.heist.run_dir = Some(run_dir);
                self.info(format!("heist run {run_id} started"));
                self.heist.run_id = Some(run_id);
            }
            Action::HeistAttached { run_id, run_dir } => {
                self.heist.run_dir = Some(run_dir);
                self.heist.view = None;
                self.heist.row = 0;
                self.heist.col = 0;
                self.view = View::Heist;
                self.info(format!("following heist {run_id}"));
                self.heist.run_id = Some(run_id);
            }
            Action::Heist(ev) => self.heist_event(ev),
            Action::HeistFailed(msg) => self.heist_failed(msg),
            Action::HeistSaved(r) => self.heist_saved(r),
            Action::Submit if matches!(mode, Mode::Heists | Mode::HeistVars) => {
                return Ok(self.heist_submit())
            }
            Action::Submit if mode == Mode::SaveHeist => return Ok(self.save_submit()),
            Action::Cancel if mode == Mode::HeistVars => {
                self.mode = Mode::Heists;
                self.replan();
            }
            Action::Cancel if matches!(mode, Mode::Heists | Mode::Ask | Mode::SaveHeist) => {
                self.mode = Mode::Normal;
                if mode == Mode::Ask {
                    let key = self.keymap.key_for(Mode::Normal, &Action::ShowAsk);
                    self.info(format!(
                        "the heist still waits: {} shows the prompt again",
                        key.unwrap_or_else(|| "show-ask".into())
                    ));
                }
            }
            Action::Input(key) if matches!(mode, Mode::HeistVars | Mode::SaveHeist) => {
                let enter = key.code == crate::console::keymap::KeyCode::Enter
                    || (key.ctrl && key.code == crate::console::keymap::KeyCode::Char('m'));
                if !enter {
                    let input = super::input::to_input(key);
                    if mode == Mode::HeistVars {
                        self.heist.vars_input.input(input);
                    } else {
                        self.heist.save_input.input(input);
                    }
                }
            }
            a @ (Action::Up
            | Action::Down
            | Action::PageUp
            | Action::PageDown
            | Action::Top
            | Action::Bottom)
                if mode == Mode::Heists =>
            {
                self.heist_pick_move(&a)
            }
            a @ (Action::Up
            | Action::Down
            | Action::PageUp
            | Action::PageDown
            | Action::Top
            | Action::Bottom
            | Action::FocusNext
            | Action::FocusPrev)
                if mode == Mode::Normal =>
            {
                if !self.heist_cursor(&a) {
                    return Err(Box::new(a));
                }
            }
            other => return Err(Box::new(other)),
        }
        Ok(Vec::new())
    }
}
