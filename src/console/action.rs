//! Everything that can change the console's state. Bindable actions are named in the
//! keymap TOML (`run = "mark-all"`); the rest are produced by the event loop (keys typed into
//! a text field, daemon events, results of background work, clock ticks).

use serde::{Deserialize, Serialize};

use super::heists::{HeistList, Shared};
use super::keymap::Key;
use super::runs::{RunDetail, RunEntry};
use crate::heist::events::HeistEvent;
use crate::pick::LastOutcomes;
use crate::proto::daemon::Event;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    // ── general
    Quit,
    Help,
    /// Leave the current mode / close the overlay.
    Cancel,
    /// Does nothing (a user keymap can bind a key to it to unbind a default).
    Noop,
    // ── movement (on the focused pane)
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    FocusNext,
    FocusPrev,
    // ── marks
    ToggleMark,
    MarkRange,
    MarkAll,
    ClearMarks,
    MarkFailed,
    MarkTimeout,
    MarkUnreachable,
    MarkOk,
    // ── modes and views
    Filter,
    Command,
    Search,
    /// A shell on the focused host.
    Shell,
    SearchNext,
    SearchPrev,
    ToggleFollow,
    ToggleGather,
    Diff,
    ToggleHeist,
    /// Open the heist picker.
    OpenHeists,
    /// Heist picker: next profile.
    HeistProfile,
    /// Heist picker: edit the variables (`k=v k2=v2`).
    HeistVars,
    /// Save the command line's command (and the selection) as a heist.
    SaveHeist,
    /// Show the pending `ask` prompt again.
    ShowAsk,
    AskAdvance,
    AskRetry,
    AskRollback,
    AskAbort,
    BrowseRuns,
    Zoom,
    /// Command line: run through sudo (as root) on the hosts, or not.
    ToggleSudo,
    // ── the question about unknown host keys
    /// Accept the highlighted group's key (the other groups are refused).
    HostKeysAccept,
    /// Accept every group's key.
    HostKeysAcceptAll,
    /// Refuse every key: those hosts get `hostkey`.
    HostKeysRefuse,
    /// Show or hide the highlighted key's visual host key (randomart, as `ssh-keygen -lv`).
    HostKeysArt,
    // ── acting
    /// Type a line for the stdin of the focused host's job (or every marked host's).
    SendInput,
    /// Close the stdin of those jobs (EOF).
    SendEof,
    Rerun,
    KillFocused,
    KillAll,
    // ── in text fields
    Submit,
    HistoryPrev,
    HistoryNext,
    HistorySearch,
    // ── confirm dialog
    Confirm,
    Deny,

    // ── produced by the event loop, never bound
    /// A key typed into the focused text field.
    #[serde(skip)]
    Input(Key),
    /// An event from the daemon for the request the console tagged `tag`.
    #[serde(skip)]
    Daemon {
        tag: u64,
        event: Event,
    },
    /// The daemon link is up (pid, build) or failed.
    #[serde(skip)]
    Connected(Result<(u32, String), String>),
    /// A background request failed.
    #[serde(skip)]
    EffectFailed {
        tag: u64,
        message: String,
    },
    /// The last run's outcomes in the run store (read at start-up, for `?failed`…).
    #[serde(skip)]
    OutcomesLoaded(LastOutcomes),
    #[serde(skip)]
    RunsListed(Result<Vec<RunEntry>, String>),
    #[serde(skip)]
    RunLoaded(Result<RunDetail, String>),
    /// Clock tick: milliseconds since the console started (for durations of running jobs).
    #[serde(skip)]
    Tick(u64),
    #[serde(skip)]
    Resize(u16, u16),
    /// The heists found beside the inventory.
    #[serde(skip)]
    HeistsListed(Shared<HeistList>),
    /// The engine started a heist.
    #[serde(skip)]
    HeistStarted {
        run_id: String,
        run_dir: String,
    },
    /// What the running heist's engine reports.
    #[serde(skip)]
    Heist(HeistEvent),
    /// The heist could not start (or its engine task died).
    #[serde(skip)]
    HeistFailed(String),
    /// Following a heist started elsewhere (from its beginning).
    #[serde(skip)]
    HeistAttached {
        run_id: String,
        run_dir: String,
    },
    /// A shell the operator opened has ended (its exit status, or why there was none).
    #[serde(skip)]
    ShellEnded {
        host: String,
        result: Result<i32, String>,
    },
    /// The runs and heists the daemon holds.
    #[serde(skip)]
    LiveRuns(Result<Vec<crate::proto::daemon::RunInfo>, String>),
    /// `ctrl-s` wrote the heist (name, file) or could not.
    #[serde(skip)]
    HeistSaved(Result<(String, String), String>),
}

impl Action {
    /// Parse a keymap `run` name (`"mark-all"`).
    pub fn from_name(name: &str) -> Option<Action> {
        let v = serde_json::Value::String(name.to_string());
        serde_json::from_value::<Action>(v).ok()
    }

    /// The keymap name of a bindable action.
    pub fn name(&self) -> Option<String> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(Action::from_name("mark-all"), Some(Action::MarkAll));
        assert_eq!(Action::from_name("kill-all"), Some(Action::KillAll));
        assert_eq!(Action::MarkFailed.name().as_deref(), Some("mark-failed"));
        assert_eq!(Action::from_name("input"), None);
        assert_eq!(Action::from_name("nonsense"), None);
    }
}
