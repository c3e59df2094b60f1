//! How `crew heist run` prints progress and the summary for people (host output is
//! sanitized: it never reaches the terminal raw).

use crate::heist::events::{Decision, HeistEvent, HeistSummary, HostOutcome, Outcome, StepRef};

pub(super) struct Printer {
    pub steps: Vec<String>,
    pub rollback: Vec<String>,
    pub width: usize,
}

impl Printer {
    pub fn step_name(&self, s: StepRef) -> String {
        if s.rollback {
            format!(
                "rollback {}",
                self.rollback
                    .get(s.index)
                    .map(String::as_str)
                    .unwrap_or("?")
            )
        } else {
            format!(
                "{}/{} {}",
                s.index + 1,
                self.steps.len(),
                self.steps.get(s.index).map(String::as_str).unwrap_or("?")
            )
        }
    }

    pub fn print(&self, ev: &HeistEvent) {
        let w = self.width;
        match ev {
            HeistEvent::StepFinished { host, step, attempt, result } => {
                let name = self.step_name(*step);
                let secs = result.wall_ms as f64 / 1000.0;
                let tries = if *attempt > 1 { format!(", attempt {attempt}") } else { String::new() };
                if result.ok {
                    println!("{host:w$}  [{name}] ok ({secs:.1}s{tries})");
                } else {
                    println!("{host:w$}  [{name}] FAILED: {}{tries}", sanitize(result.reason.as_deref().unwrap_or("failed")));
                    for line in tail(&result.stderr, 5).into_iter().chain(tail(&result.stdout, 5)) {
                        println!("{:w$}    │ {}", "", sanitize(line));
                    }
                }
            }
            HeistEvent::Decision { host, step, decision } => {
                let name = self.step_name(*step);
                let what = match decision {
                    Decision::Retry { next_attempt, delay_ms } => format!("retrying (attempt {next_attempt}) in {:.1}s", *delay_ms as f64 / 1000.0),
                    Decision::Continue => "failure let through; continuing".into(),
                    Decision::Abort => "aborting this host; later waves will not start".into(),
                    Decision::Rollback => "rolling the heist back".into(),
                    Decision::Operator { choice } => format!("operator chose {choice:?}").to_lowercase(),
                    Decision::Halted => "stopped: the heist is rolling back".into(),
                    Decision::Interrupted => "interrupted: nothing more starts here".into(),
                    Decision::Advance | Decision::Ask => return,
                };
                println!("{host:w$}  [{name}] → {what}");
            }
            HeistEvent::RollbackStarted { trigger, step, hosts } => println!(
                "── rollback: `{}` failed on {trigger}; rolling back {} host(s) that reached it: {}",
                self.steps.get(*step).map(String::as_str).unwrap_or("?"),
                hosts.len(),
                crate::nodeset::fold(hosts)
            ),
            _ => {}
        }
    }
}

fn tail(s: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Host output is untrusted: the same sanitiser as `crew run` (control characters, C1, bidi
/// overrides made visible), with tabs widened for the indented step output.
pub fn sanitize(s: &str) -> String {
    crate::cmd::render::sanitize(s.as_bytes()).replace('\t', "    ")
}

pub(super) fn print_summary(s: &HeistSummary) {
    let done = s
        .hosts
        .iter()
        .filter(|(_, o)| matches!(o, HostOutcome::Completed { .. }))
        .count();
    println!(
        "== heist {} {}: completed on {done}/{} host(s) in {:.1}s",
        s.heist,
        match s.outcome {
            Outcome::Completed => "completed",
            Outcome::Failed => "FAILED",
            Outcome::RolledBack => "ROLLED BACK",
            Outcome::Interrupted => "INTERRUPTED",
        },
        s.hosts.len(),
        s.elapsed_ms as f64 / 1000.0
    );
    let w = s.hosts.iter().map(|(h, _)| h.len()).max().unwrap_or(4);
    for (h, o) in &s.hosts {
        println!("   {h:w$}  {}", o.label());
    }
    println!("   journal: {}", s.run_dir);
}
