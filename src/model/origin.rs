//! Where a run came from: a command an operator typed, or one step of a heist.

use serde::{Deserialize, Serialize};

/// What started a run. Recorded in the run store and the audit log; the last run's outcomes
/// (`?failed`) count plain commands on their own and heist steps only through their heist.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RunOrigin {
    /// A command run by an operator (`crew run`, the console).
    #[default]
    Command,
    /// One step of a heist run (`heist` is the heist's name, `run` its run id).
    HeistStep {
        run: String,
        heist: String,
        step: String,
    },
}

impl RunOrigin {
    pub fn is_heist_step(&self) -> bool {
        matches!(self, RunOrigin::HeistStep { .. })
    }

    /// Words for people and the audit log: `command`, `heist deploy/pull`.
    pub fn describe(&self) -> String {
        match self {
            RunOrigin::Command => "command".to_string(),
            RunOrigin::HeistStep { heist, step, .. } => format!("heist {heist}/{step}"),
        }
    }
}
