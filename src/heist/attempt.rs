//! One attempt of one step on one host: render, dispatch (host command, local command, put,
//! fetch), then judge it (accepted exit codes, timeout, captures).

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::sync::mpsc;

use super::def::{Action, PutSource, StdinSource, StepDef};
use super::engine::Ctx;
use super::events::{HeistEvent, StepRef, StepResult, OUTPUT_KEEP};
use super::executor::{Executor, PutData, RunSpec, StdinData, StepOutcome};
use super::journal::now_ms;
use super::local_run;
use super::vars::Scope;
use crate::model::{Host, HostError, RunOrigin, Stream};

fn fail(mut r: StepResult, why: String) -> StepResult {
    r.ok = false;
    r.reason = Some(why);
    r
}

/// The host gave no result (no exit status, or a file op that failed there): its kind
/// decides the attempt's verdict.
fn no_result(mut r: StepResult, e: HostError, why: String) -> StepResult {
    r.error_kind = Some(e.kind);
    r.error = Some(e.to_string());
    fail(r, why)
}

pub(super) async fn attempt<E: Executor>(
    ctx: &Ctx<E>,
    host: &Host,
    sref: StepRef,
    step: &StepDef,
    attempt: u32,
    captures: &BTreeMap<String, String>,
) -> StepResult {
    let scope = Scope {
        globals: &ctx.plan.globals,
        host,
        captures,
    };
    let start = Instant::now();
    let mut result = StepResult {
        started_ms: now_ms(),
        ..StepResult::default()
    };
    let rendered: Result<Vec<String>, _> = step
        .templates()
        .into_iter()
        .map(|t| scope.render(t))
        .collect();
    let what = step.describe(&|t| scope.render(t).unwrap_or_else(|_| t.source.clone()));
    ctx.emit(HeistEvent::StepStarted {
        host: host.name.clone(),
        step: sref,
        attempt,
        what,
    })
    .await;
    result = match rendered {
        Err(u) => fail(
            result,
            format!("{u}: not captured on this host (the step that captures it did not run here)"),
        ),
        Ok(texts) => dispatch(ctx, host, sref, step, attempt, texts, result).await,
    };
    result.wall_ms = start.elapsed().as_millis() as u64;
    if result.ok {
        judge_captures(step, &mut result);
    }
    ctx.emit(HeistEvent::StepFinished {
        host: host.name.clone(),
        step: sref,
        attempt,
        result: result.clone(),
    })
    .await;
    result
}

async fn dispatch<E: Executor>(
    ctx: &Ctx<E>,
    host: &Host,
    sref: StepRef,
    step: &StepDef,
    attempt: u32,
    texts: Vec<String>,
    mut r: StepResult,
) -> StepResult {
    let first = texts.first().cloned().unwrap_or_default();
    let origin = RunOrigin::HeistStep {
        run: ctx.run_id.clone(),
        heist: ctx.plan.heist.name.clone(),
        step: step.name.clone(),
    };
    match &step.action {
        Action::Run(_) => {
            let spec = RunSpec {
                command: first,
                env: vec![
                    ("CREW_HEIST".into(), ctx.plan.heist.name.clone()),
                    ("CREW_RUN_ID".into(), ctx.run_id.clone()),
                    ("CREW_STEP".into(), step.name.clone()),
                    ("CREW_HOST".into(), host.name.clone()),
                    ("CREW_ATTEMPT".into(), attempt.to_string()),
                ],
                timeout: step.timeout,
                stdin: match &step.stdin {
                    None => None,
                    Some(StdinSource::Text(_)) => Some(StdinData::Bytes(
                        texts.get(1).cloned().unwrap_or_default().into_bytes(),
                    )),
                    Some(StdinSource::File(p)) => Some(StdinData::File(p.clone())),
                },
                sudo_user: step.become_user.clone(),
                origin: RunOrigin::HeistStep {
                    run: ctx.run_id.clone(),
                    heist: ctx.plan.heist.name.clone(),
                    step: step.name.clone(),
                },
            };
            let (tx, mut rx) = mpsc::channel::<(Stream, Vec<u8>)>(64);
            let run = async {
                if step.local {
                    local_run::run(spec, tx).await
                } else {
                    ctx.exec.run(host, spec, tx).await
                }
            };
            let drain = async {
                let (mut out, mut err, mut dropped) = (Vec::new(), Vec::new(), 0u64);
                while let Some((stream, data)) = rx.recv().await {
                    let buf = if stream == Stream::Stdout {
                        &mut out
                    } else {
                        &mut err
                    };
                    let room = OUTPUT_KEEP.saturating_sub(buf.len());
                    buf.extend_from_slice(&data[..room.min(data.len())]);
                    dropped += data.len().saturating_sub(room) as u64;
                    ctx.emit(HeistEvent::Output {
                        host: host.name.clone(),
                        step: sref,
                        stream,
                        data,
                    })
                    .await;
                }
                (out, err, dropped)
            };
            let (outcome, (out, err, dropped)) = tokio::join!(run, drain);
            r.stdout = String::from_utf8_lossy(&out).into_owned();
            r.stderr = String::from_utf8_lossy(&err).into_owned();
            r.truncated = dropped;
            judge_exit(step, outcome, r)
        }
        Action::Put { source, mode, .. } => {
            let data = match source {
                PutSource::Content(_) => {
                    PutData::Bytes(texts.get(1).cloned().unwrap_or_default().into_bytes())
                }
                PutSource::File(p) => PutData::File(p.clone()),
            };
            let sudo = step.become_user.clone();
            match ctx
                .exec
                .write_file(host, &first, data, *mode, origin, sudo)
                .await
            {
                Ok(size) => {
                    r.ok = true;
                    r.stdout = format!("wrote {size} bytes to {first}\n");
                    r
                }
                Err(e) => {
                    let why = format!("put {first}: {}", e.message);
                    no_result(r, e, why)
                }
            }
        }
        Action::Fetch { max_size, .. } => {
            let to = std::path::PathBuf::from(texts.get(1).cloned().unwrap_or_default());
            match ctx
                .exec
                .read_file(
                    host,
                    &first,
                    &to,
                    *max_size,
                    origin,
                    step.become_user.clone(),
                )
                .await
            {
                Ok(size) => {
                    r.ok = true;
                    r.stdout = format!("fetched {size} bytes from {first} into {}\n", to.display());
                    r
                }
                Err(e) => {
                    let why = format!("fetch {first}: {}", e.message);
                    no_result(r, e, why)
                }
            }
        }
    }
}

fn judge_exit(step: &StepDef, outcome: StepOutcome, mut r: StepResult) -> StepResult {
    match outcome {
        StepOutcome::Failed(e) => {
            let why = e.to_string();
            no_result(r, e, why)
        }
        StepOutcome::Exited(exit) => {
            r.exit_code = exit.code;
            r.signal = exit.signal;
            r.timed_out = exit.timed_out;
            if exit.timed_out {
                let t = step
                    .timeout
                    .map(|t| humantime::format_duration(t).to_string())
                    .unwrap_or_default();
                return fail(r, format!("timed out after {t}: process group killed"));
            }
            match exit.code {
                Some(c) if step.exits.contains(&c) => {
                    r.ok = true;
                    r
                }
                Some(c) => {
                    let acc: Vec<String> = step.exits.iter().map(i32::to_string).collect();
                    fail(r, format!("exit {c} (accepted: {})", acc.join(", ")))
                }
                None => {
                    let sig = exit
                        .signal
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "?".into());
                    fail(r, format!("killed by signal {sig}"))
                }
            }
        }
    }
}

/// Captures run on stdout: the first group (or the whole match) names the capture; named
/// groups define variables of their own. A capture that does not match fails the step.
fn judge_captures(step: &StepDef, r: &mut StepResult) {
    for c in &step.captures {
        let Some(m) = c.regex.captures(&r.stdout) else {
            r.ok = false;
            r.reason = Some(format!(
                "capture `{}`: /{}/ did not match stdout",
                c.name,
                c.regex.as_str()
            ));
            return;
        };
        let value = m
            .get(1)
            .or_else(|| m.get(0))
            .map(|g| g.as_str().to_string())
            .unwrap_or_default();
        r.captured.insert(c.name.clone(), value);
        for name in c.regex.capture_names().flatten() {
            if let Some(g) = m.name(name) {
                r.captured.insert(name.to_string(), g.as_str().to_string());
            }
        }
    }
}
