//! A run's question about unknown host keys, in the console: a popup listing the groups
//! (key type, fingerprint, folded hosts and count); Enter accepts the highlighted group,
//! `a` all of them, Esc refuses, `v` shows or hides the highlighted group's visual host key
//! (keys from the keymap's `host-keys` mode).

use super::Model;
use crate::console::action::Action;
use crate::console::effect::Effect;
use crate::console::keymap::Mode;
use crate::proto::daemon::KeyGroup;

/// The open question: its run and id, the groups, the highlighted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyAsk {
    /// The run's id (its number) or the heist's.
    pub run: String,
    pub ask_id: u64,
    pub groups: Vec<KeyGroup>,
    pub cursor: usize,
    /// The highlighted group's visual host key is shown.
    pub art: bool,
}

impl Model {
    /// The question's actions while it is on screen; the others come back as `Err`.
    pub(super) fn hostkey_action(&mut self, action: Action) -> Result<Vec<Effect>, Box<Action>> {
        if self.mode != Mode::HostKeys {
            return Err(Box::new(action));
        }
        let Some(ask) = self.hostkeys.as_mut() else {
            self.mode = Mode::Normal;
            return Err(Box::new(action));
        };
        match action {
            Action::Up => ask.cursor = ask.cursor.saturating_sub(1),
            Action::Down => ask.cursor = (ask.cursor + 1).min(ask.groups.len().saturating_sub(1)),
            Action::HostKeysAccept => {
                let one = vec![ask.cursor as u32];
                return Ok(self.answer_hostkeys(one));
            }
            Action::HostKeysAcceptAll => {
                let all = (0..ask.groups.len() as u32).collect();
                return Ok(self.answer_hostkeys(all));
            }
            Action::HostKeysRefuse | Action::Cancel => return Ok(self.answer_hostkeys(Vec::new())),
            Action::HostKeysArt => ask.art = !ask.art,
            other => return Err(Box::new(other)),
        }
        Ok(Vec::new())
    }

    fn answer_hostkeys(&mut self, accept: Vec<u32>) -> Vec<Effect> {
        self.mode = Mode::Normal;
        let Some(ask) = self.hostkeys.take() else {
            return Vec::new();
        };
        let hosts = |i: &u32| ask.groups.get(*i as usize).map_or(0, |g| g.hosts.len());
        let accepted: usize = accept.iter().map(hosts).sum();
        let all: usize = ask.groups.iter().map(|g| g.hosts.len()).sum();
        if accept.is_empty() {
            self.info(format!("host keys refused: {all} host(s) get `hostkey`"));
        } else {
            self.info(format!(
                "host keys accepted for {accepted} host(s), refused for {}",
                all - accepted
            ));
        }
        vec![Effect::AnswerHostKeys {
            run: ask.run,
            ask_id: ask.ask_id,
            accept,
        }]
    }

    /// The run asks: show the popup (over whatever was open but a text being typed).
    pub(super) fn hostkeys_asked(&mut self, run: String, ask_id: u64, groups: Vec<KeyGroup>) {
        if groups.is_empty() {
            return;
        }
        self.hostkeys = Some(HostKeyAsk {
            run,
            ask_id,
            groups,
            cursor: 0,
            art: false,
        });
        self.mode = Mode::HostKeys;
    }

    /// Answered (here or by another client): close the popup if it shows that question.
    pub(super) fn hostkeys_answered(&mut self, run: &str, ask_id: u64) {
        if self
            .hostkeys
            .as_ref()
            .is_some_and(|a| a.run == run && a.ask_id == ask_id)
        {
            self.hostkeys = None;
            if self.mode == Mode::HostKeys {
                self.mode = Mode::Normal;
            }
        }
    }
}
