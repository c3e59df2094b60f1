//! The step view as data: steps × hosts cells, built from [`HeistEvent`]s (live, or read back
//! from a journal). No drawing here: the console renders it, `crew heist show` prints it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::events::{Decision, HeistEvent, HeistSummary, HostOutcome, StepRef, OUTPUT_KEEP};
use crate::model::Stream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellState {
    #[default]
    Pending,
    Running,
    Ok,
    Failed,
    /// Failed; another attempt follows after the backoff.
    Retrying,
    /// Failed; waiting for the operator's answer.
    Asking,
    /// Never ran (the host stopped earlier, or its wave never started).
    Skipped,
    /// Ran, then undone by the heist's rollback.
    RolledBack,
    /// Was running when the heist was cut short (read back from a crashed run's journal).
    Interrupted,
}

impl CellState {
    pub fn label(self) -> &'static str {
        match self {
            CellState::Pending => "pending",
            CellState::Running => "running",
            CellState::Ok => "ok",
            CellState::Failed => "failed",
            CellState::Retrying => "retrying",
            CellState::Asking => "asking",
            CellState::Skipped => "skipped",
            CellState::RolledBack => "rolled back",
            CellState::Interrupted => "interrupted",
        }
    }
}

/// One goon: one step on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub state: CellState,
    pub attempts: u32,
    /// The rendered command of the latest attempt.
    pub what: String,
    pub stdout: String,
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub wall_ms: u64,
    /// Failed, but let through (`continue` or the operator's `advance`).
    pub ignored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingAsk {
    pub ask_id: u64,
    pub host: String,
    pub step: StepRef,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewModel {
    pub run_id: String,
    pub heist: String,
    pub profile: Option<String>,
    pub hosts: Vec<String>,
    pub waves: Vec<Vec<String>>,
    pub current_wave: Option<usize>,
    pub steps: Vec<String>,
    pub rollback_steps: Vec<String>,
    /// `cells[step][host]`, main steps.
    pub cells: Vec<Vec<Cell>>,
    /// `rollback_cells[step][host]`.
    pub rollback_cells: Vec<Vec<Cell>>,
    pub outcomes: BTreeMap<String, HostOutcome>,
    pub asks: Vec<PendingAsk>,
    pub summary: Option<HeistSummary>,
    /// Set when read back from a journal that never reached its end.
    pub interrupted: bool,
}

fn push_capped(s: &mut String, data: &[u8]) {
    if s.len() < OUTPUT_KEEP {
        s.push_str(&String::from_utf8_lossy(data));
    }
}

impl ViewModel {
    fn host_index(&self, host: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h == host)
    }

    pub fn cell(&self, step: StepRef, host: &str) -> Option<&Cell> {
        let h = self.host_index(host)?;
        let rows = if step.rollback {
            &self.rollback_cells
        } else {
            &self.cells
        };
        rows.get(step.index)?.get(h)
    }

    fn cell_mut(&mut self, step: StepRef, host: &str) -> Option<&mut Cell> {
        let h = self.host_index(host)?;
        let rows = if step.rollback {
            &mut self.rollback_cells
        } else {
            &mut self.cells
        };
        rows.get_mut(step.index)?.get_mut(h)
    }

    pub fn apply(&mut self, ev: &HeistEvent) {
        match ev {
            HeistEvent::Started {
                run_id,
                heist,
                profile,
                hosts,
                waves,
                steps,
                rollback,
            } => {
                *self = ViewModel {
                    run_id: run_id.clone(),
                    heist: heist.clone(),
                    profile: profile.clone(),
                    hosts: hosts.clone(),
                    waves: waves.clone(),
                    steps: steps.clone(),
                    rollback_steps: rollback.clone(),
                    cells: vec![vec![Cell::default(); hosts.len()]; steps.len()],
                    rollback_cells: vec![vec![Cell::default(); hosts.len()]; rollback.len()],
                    ..ViewModel::default()
                };
            }
            HeistEvent::Wave { index, .. } => self.current_wave = Some(*index),
            HeistEvent::StepStarted {
                host,
                step,
                attempt,
                what,
            } => {
                if let Some(c) = self.cell_mut(*step, host) {
                    c.state = CellState::Running;
                    c.attempts = *attempt;
                    c.what = what.clone();
                    c.stdout.clear();
                    c.stderr.clear();
                    c.exit_code = None;
                    c.reason = None;
                }
            }
            HeistEvent::Output {
                host,
                step,
                stream,
                data,
            } => {
                if let Some(c) = self.cell_mut(*step, host) {
                    match stream {
                        Stream::Stdout => push_capped(&mut c.stdout, data),
                        Stream::Stderr => push_capped(&mut c.stderr, data),
                    }
                }
            }
            HeistEvent::StepFinished {
                host,
                step,
                attempt,
                result,
            } => {
                if let Some(c) = self.cell_mut(*step, host) {
                    c.state = if result.ok {
                        CellState::Ok
                    } else {
                        CellState::Failed
                    };
                    c.attempts = *attempt;
                    c.stdout = result.stdout.clone();
                    c.stderr = result.stderr.clone();
                    c.exit_code = result.exit_code;
                    c.reason = result.reason.clone();
                    c.wall_ms = result.wall_ms;
                }
            }
            HeistEvent::Decision {
                host,
                step,
                decision,
            } => {
                if let Some(c) = self.cell_mut(*step, host) {
                    match decision {
                        Decision::Retry { .. } => c.state = CellState::Retrying,
                        Decision::Ask => c.state = CellState::Asking,
                        Decision::Continue
                        | Decision::Operator {
                            choice: super::events::Choice::Advance,
                        } => {
                            c.state = CellState::Failed;
                            c.ignored = true;
                        }
                        Decision::Operator { .. } | Decision::Halted
                            if c.state == CellState::Asking =>
                        {
                            c.state = CellState::Failed
                        }
                        _ => {}
                    }
                }
            }
            HeistEvent::Ask {
                ask_id,
                host,
                step,
                reason,
            } => self.asks.push(PendingAsk {
                ask_id: *ask_id,
                host: host.clone(),
                step: *step,
                reason: reason.clone(),
            }),
            HeistEvent::AskClosed { ask_id, .. } => self.asks.retain(|a| a.ask_id != *ask_id),
            HeistEvent::RollbackStarted { .. } => {}
            HeistEvent::HostDone { host, outcome } => {
                self.outcomes.insert(host.clone(), outcome.clone());
                let Some(h) = self.host_index(host) else {
                    return;
                };
                let rolled = matches!(outcome, HostOutcome::RolledBack { .. });
                for row in &mut self.cells {
                    let c = &mut row[h];
                    match c.state {
                        CellState::Pending => c.state = CellState::Skipped,
                        // what ran is undone; the failure that caused the rollback stays visible
                        CellState::Ok if rolled => c.state = CellState::RolledBack,
                        _ => {}
                    }
                }
                if rolled {
                    for row in &mut self.rollback_cells {
                        if row[h].state == CellState::Pending {
                            row[h].state = CellState::Skipped;
                        }
                    }
                }
            }
            HeistEvent::Finished { summary } => {
                self.summary = Some(summary.clone());
                self.asks.clear();
                for row in self.cells.iter_mut().chain(self.rollback_cells.iter_mut()) {
                    for c in row {
                        if c.state == CellState::Pending {
                            c.state = CellState::Skipped;
                        }
                    }
                }
            }
        }
    }

    /// After a crash: what was in flight is interrupted; what never started stays pending.
    pub fn mark_interrupted(&mut self) {
        self.interrupted = true;
        self.asks.clear();
        for row in self.cells.iter_mut().chain(self.rollback_cells.iter_mut()) {
            for c in row {
                if matches!(
                    c.state,
                    CellState::Running | CellState::Retrying | CellState::Asking
                ) {
                    c.state = CellState::Interrupted;
                }
            }
        }
    }

    /// Plain-text table: one line per host, one column per step (for `crew heist show`).
    pub fn render_text(&self) -> String {
        let mut out = format!("heist {} (run {})", self.heist, self.run_id);
        if self.interrupted {
            out.push_str(" — INTERRUPTED: no end was recorded; states below are the last known");
        }
        out.push('\n');
        let width = self.hosts.iter().map(String::len).max().unwrap_or(4).max(4);
        let mut header = format!("{:width$}", "host");
        let names: Vec<String> = self
            .steps
            .iter()
            .cloned()
            .chain(self.rollback_steps.iter().map(|r| format!("↶{r}")))
            .collect();
        for n in &names {
            header.push_str(&format!("  {:12}", truncate(n, 12)));
        }
        out.push_str(&header);
        out.push_str("  outcome\n");
        for (h, host) in self.hosts.iter().enumerate() {
            let mut line = format!("{host:width$}");
            for row in self.cells.iter().chain(self.rollback_cells.iter()) {
                let c = &row[h];
                let mut s = c.state.label().to_string();
                if c.attempts > 1 {
                    s.push_str(&format!("×{}", c.attempts));
                }
                if c.ignored {
                    s.push('*');
                }
                line.push_str(&format!("  {:12}", truncate(&s, 12)));
            }
            let outcome = self
                .outcomes
                .get(host)
                .map(HostOutcome::label)
                .unwrap_or_else(|| "-".into());
            line.push_str(&format!("  {outcome}\n"));
            out.push_str(&line);
        }
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}
