//! One host's share of a heist: its steps in order, each under its failure policy; and its
//! rollback.

use std::collections::BTreeMap;
use std::time::Duration;

use super::attempt::attempt;
use super::def::{StepDef, Then};
use super::engine::Ctx;
use super::events::{Choice, Decision, HeistEvent, HostOutcome, StepRef};
use super::executor::Executor;

#[derive(Debug, Clone)]
pub(super) struct HostState {
    /// Highest main step index started.
    pub reached: Option<usize>,
    /// Which main steps ran (at least one attempt).
    pub ran: Vec<bool>,
    pub captures: BTreeMap<String, String>,
    pub outcome: HostOutcome,
}

/// How a step ended for a host, after its policy.
enum StepEnd {
    Ok,
    Ignored,
    Abort,
    Rollback,
    /// The heist halted while this host waited (backoff or ask).
    Halted,
    /// The operator interrupted the heist.
    Interrupted,
}

pub(super) async fn run_host<E: Executor>(ctx: &Ctx<E>, hi: usize) -> HostState {
    let steps = &ctx.plan.heist.steps;
    let name = ctx.plan.hosts[hi].name.clone();
    let mut st = HostState {
        reached: None,
        ran: vec![false; steps.len()],
        captures: BTreeMap::new(),
        outcome: HostOutcome::Completed { ignored: 0 },
    };
    let mut ignored = 0;
    for (i, step) in steps.iter().enumerate() {
        if ctx.interrupted() {
            st.outcome = HostOutcome::Interrupted {
                step: step.name.clone(),
            };
            break;
        }
        if ctx.halted() {
            st.outcome = HostOutcome::Stopped {
                before: step.name.clone(),
            };
            break;
        }
        st.reached = Some(i);
        st.ran[i] = true;
        match run_step(ctx, hi, StepRef::main(i), step, &mut st.captures, false).await {
            StepEnd::Ok => {}
            StepEnd::Ignored => ignored += 1,
            StepEnd::Interrupted => {
                st.outcome = HostOutcome::Interrupted {
                    step: step.name.clone(),
                };
                break;
            }
            StepEnd::Abort | StepEnd::Halted => {
                st.outcome = HostOutcome::Failed {
                    step: step.name.clone(),
                };
                break;
            }
            StepEnd::Rollback => {
                ctx.request_rollback(i, &name);
                st.outcome = HostOutcome::Failed {
                    step: step.name.clone(),
                };
                break;
            }
        }
    }
    if let HostOutcome::Completed { .. } = st.outcome {
        st.outcome = HostOutcome::Completed { ignored };
    }
    ctx.emit(HeistEvent::HostDone {
        host: name,
        outcome: st.outcome.clone(),
    })
    .await;
    st
}

/// Rollback order for a host: steps undoing what ran, latest first; then the others.
pub fn rollback_order(rollback: &[StepDef], ran: &[bool]) -> Vec<usize> {
    let mut undoing: Vec<(usize, usize)> = rollback
        .iter()
        .enumerate()
        .filter_map(|(j, s)| {
            s.undo
                .filter(|&u| ran.get(u).copied().unwrap_or(false))
                .map(|u| (u, j))
        })
        .collect();
    undoing.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut order: Vec<usize> = undoing.into_iter().map(|(_, j)| j).collect();
    order.extend(
        rollback
            .iter()
            .enumerate()
            .filter(|(_, s)| s.undo.is_none())
            .map(|(j, _)| j),
    );
    order
}

pub(super) async fn roll_back<E: Executor>(
    ctx: &Ctx<E>,
    hi: usize,
    failed_step: usize,
    ran: Vec<bool>,
    mut captures: BTreeMap<String, String>,
) -> HostOutcome {
    let rollback = &ctx.plan.heist.rollback;
    let mut clean = true;
    for j in rollback_order(rollback, &ran) {
        if ctx.interrupted() {
            clean = false;
            break;
        }
        match run_step(
            ctx,
            hi,
            StepRef::rollback(j),
            &rollback[j],
            &mut captures,
            true,
        )
        .await
        {
            StepEnd::Ok => {}
            StepEnd::Ignored => clean = false,
            StepEnd::Abort | StepEnd::Rollback | StepEnd::Halted | StepEnd::Interrupted => {
                clean = false;
                break;
            }
        }
    }
    let outcome = HostOutcome::RolledBack {
        step: ctx.plan.heist.steps[failed_step].name.clone(),
        clean,
    };
    ctx.emit(HeistEvent::HostDone {
        host: ctx.plan.hosts[hi].name.clone(),
        outcome: outcome.clone(),
    })
    .await;
    outcome
}

/// Attempts of one step until its policy settles. In rollback, a halt is not a reason to stop.
async fn run_step<E: Executor>(
    ctx: &Ctx<E>,
    hi: usize,
    sref: StepRef,
    step: &StepDef,
    captures: &mut BTreeMap<String, String>,
    in_rollback: bool,
) -> StepEnd {
    let host = &ctx.plan.hosts[hi];
    let decide = |d: Decision| HeistEvent::Decision {
        host: host.name.clone(),
        step: sref,
        decision: d,
    };
    let mut retries_left = step.on_fail.retry;
    let mut n = 0;
    loop {
        n += 1;
        let r = attempt(ctx, host, sref, step, n, captures).await;
        if r.ok {
            captures.extend(r.captured);
            ctx.emit(decide(Decision::Advance)).await;
            return StepEnd::Ok;
        }
        if ctx.interrupted() {
            ctx.emit(decide(Decision::Interrupted)).await;
            return StepEnd::Interrupted;
        }
        if retries_left > 0 {
            retries_left -= 1;
            let delay = step.on_fail.backoff;
            ctx.emit(decide(Decision::Retry {
                next_attempt: n + 1,
                delay_ms: delay.as_millis() as u64,
            }))
            .await;
            if !wait(ctx, delay, in_rollback).await {
                return if ctx.interrupted() {
                    ctx.emit(decide(Decision::Interrupted)).await;
                    StepEnd::Interrupted
                } else {
                    ctx.emit(decide(Decision::Halted)).await;
                    StepEnd::Halted
                };
            }
            continue;
        }
        match step.on_fail.then {
            Then::Continue => {
                ctx.emit(decide(Decision::Continue)).await;
                return StepEnd::Ignored;
            }
            Then::Abort => {
                ctx.emit(decide(Decision::Abort)).await;
                return StepEnd::Abort;
            }
            Then::Rollback => {
                ctx.emit(decide(Decision::Rollback)).await;
                return StepEnd::Rollback;
            }
            Then::Ask => {
                ctx.emit(decide(Decision::Ask)).await;
                let reason = r.reason.clone().unwrap_or_else(|| "failed".into());
                let Some(choice) = ctx.ask(&host.name, sref, reason, !in_rollback).await else {
                    if ctx.interrupted() {
                        ctx.emit(decide(Decision::Interrupted)).await;
                        return StepEnd::Interrupted;
                    }
                    ctx.emit(decide(Decision::Halted)).await;
                    return StepEnd::Halted;
                };
                ctx.emit(decide(Decision::Operator { choice })).await;
                match choice {
                    Choice::Advance => return StepEnd::Ignored,
                    Choice::Retry => continue,
                    Choice::Rollback => return StepEnd::Rollback,
                    Choice::Abort => return StepEnd::Abort,
                }
            }
        }
    }
}

/// Sleep out a backoff; false when the heist halted (outside rollback) or was interrupted
/// meanwhile.
async fn wait<E: Executor>(ctx: &Ctx<E>, delay: Duration, in_rollback: bool) -> bool {
    let mut halt = ctx.halt.subscribe();
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = halt.wait_for(Option::is_some), if !in_rollback => false,
        _ = ctx.until_interrupted() => false,
    }
}
