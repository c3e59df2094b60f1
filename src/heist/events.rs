//! What the engine reports while a heist runs. The same records are journaled (all but
//! `Output`), so a journal read back rebuilds the step view ([`super::view_model`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{ErrorKind, Stream, Verdict};

/// A step of the heist: a main step or a rollback step, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StepRef {
    pub rollback: bool,
    pub index: usize,
}

impl StepRef {
    pub fn main(index: usize) -> StepRef {
        StepRef {
            rollback: false,
            index,
        }
    }
    pub fn rollback(index: usize) -> StepRef {
        StepRef {
            rollback: true,
            index,
        }
    }
}

/// The result of one attempt of one step on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    pub ok: bool,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Why there is no exit status (`unreachable: …`, `agent: …`) or why a file op failed.
    pub error: Option<String>,
    /// The kind of that error, typed: it decides the attempt's verdict.
    #[serde(default)]
    pub error_kind: Option<ErrorKind>,
    /// Why the attempt counts as failed, in words (`exit 3, accepted 0 2`, …).
    pub reason: Option<String>,
    pub started_ms: u64,
    pub wall_ms: u64,
    /// Output (lossy UTF-8), each kept up to [`OUTPUT_KEEP`] bytes.
    pub stdout: String,
    pub stderr: String,
    /// Output bytes not kept here (the daemon's run store has all of it).
    pub truncated: u64,
    pub captured: BTreeMap<String, String>,
}

impl StepResult {
    /// This attempt's verdict: accepted → ok; no exit status → its error kind's verdict
    /// ([`Verdict::from_error`]); ran past its timeout → timeout; else failed (an exit code
    /// not accepted, a signal, a capture that did not match).
    pub fn verdict(&self) -> Verdict {
        if self.ok {
            Verdict::Ok
        } else if let Some(kind) = self.error_kind {
            Verdict::from_error(kind)
        } else if self.timed_out {
            Verdict::Timeout
        } else {
            Verdict::Failed
        }
    }
}

/// Bytes of each stream kept per attempt in events and the journal.
pub const OUTPUT_KEEP: usize = 256 * 1024;

/// The operator's answer to an `ask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    /// Leave the failure be and go on with the next step.
    Advance,
    /// Run the step again.
    Retry,
    /// Stop the heist and roll back the hosts that reached this step.
    Rollback,
    /// Stop this host (its wave fails; later waves do not start).
    Abort,
}

impl Choice {
    pub fn parse(s: &str) -> Option<Choice> {
        match s.trim().to_ascii_lowercase().as_str() {
            "a" | "advance" => Some(Choice::Advance),
            "r" | "retry" => Some(Choice::Retry),
            "b" | "rollback" => Some(Choice::Rollback),
            "x" | "abort" => Some(Choice::Abort),
            _ => None,
        }
    }
}

/// What the engine decided after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    Advance,
    Retry {
        next_attempt: u32,
        delay_ms: u64,
    },
    Continue,
    Abort,
    Rollback,
    Ask,
    Operator {
        choice: Choice,
    },
    /// The heist stopped (a rollback elsewhere) while this host waited.
    Halted,
    /// The operator interrupted the heist (Ctrl-C): nothing more starts on this host.
    Interrupted,
}

/// How a host's share of the heist ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum HostOutcome {
    /// Every step ran; `ignored` failures were let through (`continue` / operator advance).
    Completed { ignored: u32 },
    /// Stopped at this step (abort).
    Failed { step: String },
    /// The heist rolled back at `step`; `clean` when every rollback step succeeded.
    RolledBack { step: String, clean: bool },
    /// Stopped before finishing because the heist stopped elsewhere.
    Stopped { before: String },
    /// In a wave that never started.
    NotStarted,
    /// The operator interrupted the heist (Ctrl-C) during or before this step.
    Interrupted { step: String },
}

impl HostOutcome {
    pub fn label(&self) -> String {
        match self {
            HostOutcome::Completed { ignored: 0 } => "completed".into(),
            HostOutcome::Completed { ignored } => {
                format!("completed ({ignored} failure(s) let through)")
            }
            HostOutcome::Failed { step } => format!("failed at {step}"),
            HostOutcome::RolledBack { step, clean: true } => {
                format!("rolled back (failed at {step})")
            }
            HostOutcome::RolledBack { step, clean: false } => {
                format!("rollback INCOMPLETE (failed at {step})")
            }
            HostOutcome::Stopped { before } => format!("stopped before {before}"),
            HostOutcome::NotStarted => "not started".into(),
            HostOutcome::Interrupted { step } => format!("interrupted at {step}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Failed,
    RolledBack,
    /// Stopped by the operator (Ctrl-C): running steps were killed, nothing more started.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeistSummary {
    pub run_id: String,
    pub heist: String,
    pub outcome: Outcome,
    pub hosts: Vec<(String, HostOutcome)>,
    pub elapsed_ms: u64,
    /// The run's directory in the run store (journal.jsonl, meta.json).
    pub run_dir: String,
}

impl HeistSummary {
    /// True when the heist completed on every host.
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Completed
            && self
                .hosts
                .iter()
                .all(|(_, o)| matches!(o, HostOutcome::Completed { .. }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum HeistEvent {
    Started {
        run_id: String,
        heist: String,
        profile: Option<String>,
        hosts: Vec<String>,
        waves: Vec<Vec<String>>,
        steps: Vec<String>,
        rollback: Vec<String>,
    },
    Wave {
        index: usize,
        hosts: Vec<String>,
    },
    StepStarted {
        host: String,
        step: StepRef,
        attempt: u32,
        /// The rendered command or file operation.
        what: String,
    },
    /// Live output (not journaled; `StepFinished` carries it).
    Output {
        host: String,
        step: StepRef,
        stream: Stream,
        data: Vec<u8>,
    },
    StepFinished {
        host: String,
        step: StepRef,
        attempt: u32,
        result: StepResult,
    },
    Decision {
        host: String,
        step: StepRef,
        decision: Decision,
    },
    /// The engine waits for the operator; answer with an [`super::engine::AskReply`].
    Ask {
        ask_id: u64,
        host: String,
        step: StepRef,
        reason: String,
    },
    AskClosed {
        ask_id: u64,
        choice: Option<Choice>,
    },
    /// The heist rolls back: `hosts` reached step `step`, which failed on `trigger`.
    RollbackStarted {
        trigger: String,
        step: usize,
        hosts: Vec<String>,
    },
    HostDone {
        host: String,
        outcome: HostOutcome,
    },
    Finished {
        summary: HeistSummary,
    },
}
