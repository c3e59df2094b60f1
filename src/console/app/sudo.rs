//! sudo in the console: a toggle on the command line (its title says so), and the password,
//! asked once per console session in a masked field the first time a run (or a heist with
//! `become` steps) needs it. An empty answer means none (NOPASSWD). The password lives only
//! in the Model (wiped when dropped) and goes to the daemon inside the run request.

use tui_textarea::TextArea;

use super::Model;
use crate::console::action::Action;
use crate::console::effect::Effect;
use crate::console::keymap::{KeyCode, Mode};
use crate::model::{Secret, Sudo};

/// What waits for the password.
#[derive(Debug, Clone)]
pub enum SudoPending {
    Run {
        command: String,
        targets: Vec<String>,
    },
    Heist,
}

/// A one-line field that shows `•` for every character typed.
pub fn masked() -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_mask_char('•');
    t
}

impl Model {
    pub(super) fn toggle_sudo(&mut self) {
        self.sudo = !self.sudo;
        if self.sudo {
            self.info("commands run through sudo as root on the hosts (toggle again: as you)");
        } else {
            self.info("commands run as the login user");
        }
    }

    /// The run's sudo, when the toggle is on and the password was asked; `Err(())`: it must
    /// be asked first (`pending` waits for it).
    pub(super) fn sudo_for(&mut self, pending: SudoPending) -> Result<Option<Sudo>, ()> {
        if !self.sudo && !matches!(pending, SudoPending::Heist) {
            return Ok(None);
        }
        if !self.sudo_asked {
            self.sudo_pending = Some(pending);
            self.password_input = masked();
            self.mode = Mode::Password;
            return Err(());
        }
        Ok(Some(Sudo {
            user: "root".to_string(),
            password: self.sudo_password.clone(),
        }))
    }

    /// The password the session holds (for a heist's `become` steps).
    pub(super) fn session_password(&self) -> Option<Secret> {
        self.sudo_password.clone()
    }

    /// Keys and actions of the password field; `None` when not in it.
    pub(super) fn password_action(&mut self, action: &Action) -> Option<Vec<Effect>> {
        if self.mode != Mode::Password {
            return None;
        }
        match action {
            Action::Submit => Some(self.password_submit()),
            Action::Cancel => {
                self.password_input = masked();
                self.sudo_pending = None;
                self.mode = Mode::Normal;
                self.info("not run (no sudo password given)");
                Some(Vec::new())
            }
            Action::Input(key) => {
                if key.code != KeyCode::Enter && !(key.ctrl && key.code == KeyCode::Char('m')) {
                    self.password_input.input(super::input::to_input(*key));
                }
                Some(Vec::new())
            }
            _ => Some(Vec::new()),
        }
    }

    fn password_submit(&mut self) -> Vec<Effect> {
        let field = std::mem::replace(&mut self.password_input, masked());
        let mut lines = field.into_lines();
        let text = lines.join("");
        for l in &mut lines {
            zeroize::Zeroize::zeroize(l);
        }
        let secret = Secret::from_line(text);
        self.sudo_password = (!secret.is_empty()).then_some(secret);
        self.sudo_asked = true;
        self.mode = Mode::Normal;
        match self.sudo_pending.take() {
            Some(SudoPending::Run { command, targets }) => {
                self.command_input = TextArea::default();
                self.focus = super::Focus::Output;
                self.start_run(command, targets)
            }
            Some(SudoPending::Heist) => {
                self.mode = Mode::Heists;
                self.heist_submit()
            }
            None => Vec::new(),
        }
    }
}
