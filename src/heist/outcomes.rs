//! Each host's verdict in a heist run, from its events (live or read back from the journal):
//! what `?failed`, `?unreachable`… mean after a heist, by the same rule as after `crew run`.
//!
//! A host's verdict is that of the last step whose final attempt was not ok
//! ([`StepResult::verdict`], which uses the one verdict function of [`crate::model`]), so a host
//! that was never reached is `unreachable` whatever the step's policy (`continue` lets the
//! failure through but does not make it ok). With no such step: completed → ok; rolled back or
//! stopped at a step → failed; interrupted or stopped because the heist stopped elsewhere →
//! killed. Hosts in waves that never started have no verdict.

use std::collections::HashMap;

use super::events::{HeistEvent, HostOutcome, StepRef};
use crate::model::Verdict;

/// Host → verdict of a heist run. Hosts with no recorded end (a crash mid-heist) have none.
pub fn host_verdicts(events: &[HeistEvent]) -> HashMap<String, Verdict> {
    let mut t = Tally::default();
    for ev in events {
        t.apply(ev);
    }
    t.verdicts
}

/// The verdicts of a heist as its events arrive (the console follows a live heist with one).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Per host: main steps in the order of their latest attempt, with that attempt's verdict.
    steps: HashMap<String, Vec<(StepRef, Verdict)>>,
    /// Hosts whose share has ended, and their verdict.
    pub verdicts: HashMap<String, Verdict>,
}

impl Tally {
    /// Take one event; returns the host's verdict when this event ended its share.
    pub fn apply(&mut self, ev: &HeistEvent) -> Option<(String, Option<Verdict>)> {
        match ev {
            HeistEvent::StepFinished {
                host, step, result, ..
            } if !step.rollback => {
                let v = self.steps.entry(host.clone()).or_default();
                v.retain(|(s, _)| s != step);
                v.push((*step, result.verdict()));
                None
            }
            HeistEvent::HostDone { host, outcome } => {
                let bad = self
                    .steps
                    .get(host)
                    .and_then(|v| v.iter().rev().map(|(_, v)| *v).find(|v| *v != Verdict::Ok));
                let verdict = match outcome {
                    HostOutcome::Completed { .. } => Some(bad.unwrap_or(Verdict::Ok)),
                    HostOutcome::Failed { .. } | HostOutcome::RolledBack { .. } => {
                        Some(bad.unwrap_or(Verdict::Failed))
                    }
                    HostOutcome::Stopped { .. } | HostOutcome::Interrupted { .. } => {
                        Some(Verdict::Killed)
                    }
                    HostOutcome::NotStarted => None,
                };
                match verdict {
                    Some(v) => self.verdicts.insert(host.clone(), v),
                    None => self.verdicts.remove(host),
                };
                Some((host.clone(), verdict))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heist::events::StepResult;
    use crate::model::ErrorKind;

    fn finished(host: &str, step: usize, result: StepResult) -> HeistEvent {
        HeistEvent::StepFinished {
            host: host.into(),
            step: StepRef::main(step),
            attempt: 1,
            result,
        }
    }

    fn done(host: &str, outcome: HostOutcome) -> HeistEvent {
        HeistEvent::HostDone {
            host: host.into(),
            outcome,
        }
    }

    fn ok() -> StepResult {
        StepResult {
            ok: true,
            exit_code: Some(0),
            ..StepResult::default()
        }
    }

    fn error(kind: ErrorKind) -> StepResult {
        StepResult {
            error_kind: Some(kind),
            error: Some(format!("{}: …", kind.as_str())),
            ..StepResult::default()
        }
    }

    #[test]
    fn a_host_never_reached_is_unreachable_even_when_the_policy_continued() {
        let events = vec![
            finished("a", 0, error(ErrorKind::Unreachable)),
            finished("a", 1, error(ErrorKind::Unreachable)),
            done("a", HostOutcome::Completed { ignored: 2 }),
            finished("b", 0, ok()),
            finished("b", 1, ok()),
            done("b", HostOutcome::Completed { ignored: 0 }),
            finished("c", 0, error(ErrorKind::Auth)),
            done("c", HostOutcome::Failed { step: "one".into() }),
            finished(
                "d",
                0,
                StepResult {
                    timed_out: true,
                    ..StepResult::default()
                },
            ),
            done("d", HostOutcome::Failed { step: "one".into() }),
            finished(
                "e",
                0,
                StepResult {
                    exit_code: Some(3),
                    ..StepResult::default()
                },
            ),
            done("e", HostOutcome::Failed { step: "one".into() }),
            done("f", HostOutcome::Interrupted { step: "one".into() }),
            done("g", HostOutcome::NotStarted),
        ];
        let v = host_verdicts(&events);
        assert_eq!(v.get("a"), Some(&Verdict::Unreachable));
        assert_eq!(v.get("b"), Some(&Verdict::Ok));
        assert_eq!(v.get("c"), Some(&Verdict::Unreachable));
        assert_eq!(v.get("d"), Some(&Verdict::Timeout));
        assert_eq!(v.get("e"), Some(&Verdict::Failed));
        assert_eq!(v.get("f"), Some(&Verdict::Killed));
        assert_eq!(v.get("g"), None);
    }

    #[test]
    fn a_retry_that_succeeds_leaves_the_host_ok() {
        let events = vec![
            finished("a", 0, error(ErrorKind::Lost)),
            finished("a", 0, ok()),
            done("a", HostOutcome::Completed { ignored: 0 }),
        ];
        assert_eq!(host_verdicts(&events).get("a"), Some(&Verdict::Ok));
    }
}
