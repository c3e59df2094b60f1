//! Where a run came from: a command an operator typed, or one step of a heist.

use serde::{Deserialize, Serialize};

/// What started a run. Recorded in the run store and the audit log; the last run's outcomes
/// (`?failed`) count plain commands on their own and heist steps only through their heist.
///
/// Externally tagged (`"command"`, `{"heist_step": {…}}`): it also travels in postcard frames,
/// which cannot carry internally tagged enums.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn travels_in_postcard_and_json() {
        let step = RunOrigin::HeistStep {
            run: "1-deploy".into(),
            heist: "deploy".into(),
            step: "pull".into(),
        };
        for o in [RunOrigin::Command, step] {
            let bytes = postcard::to_stdvec(&o).expect("postcard");
            assert_eq!(postcard::from_bytes::<RunOrigin>(&bytes).expect("back"), o);
            let json = serde_json::to_string(&o).expect("json");
            assert_eq!(serde_json::from_str::<RunOrigin>(&json).expect("back"), o);
        }
    }
}
