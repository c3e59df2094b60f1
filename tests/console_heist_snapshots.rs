//! Snapshot tests of the console's heist screens (ratatui TestBackend + insta): the picker with
//! a plan, the step view mid-run (cells in several states), the `ask` prompt and the save
//! prompt; and the Model's answers to them (the effects it asks for).
//!
//! The mid-run screens are fed by the real engine: the console's picker starts `careful`
//! (its `StartHeist` effect), the engine runs the plan against a scripted executor (fixed
//! exit codes and output per host and step; one step that never ends) and every event it
//! emits goes to the Model, as the console does. Only the clock is pinned (run id, times).

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crew::console::action::Action;
use crew::console::app::{Model, Settings, View};
use crew::console::effect::Effect;
use crew::console::heists::{HeistList, Shared};
use crew::console::keymap::{Key, KeyCode, Mode};
use crew::heist::engine::{self, AskReply, Running};
use crew::heist::events::{Choice, HeistEvent, StepRef};
use crew::heist::executor::{Executor, OutputSink, PutData, RunSpec, StepOutcome};
use crew::model::{ErrorKind, Host, HostError, RunOrigin};
use crew::model::{Exit, Stream};
use support::console::{model, render};
use tokio::sync::Notify;

const HEISTS: &str = r#"
[heist.careful]
description = "A check fails on the canary; the operator decides"
select = "role=demo"

[[heist.careful.step]]
name = "kernel"
run = "uname -r"
on_fail = { retry = 1, backoff = "1m" }

[[heist.careful.step]]
name = "check"
run = "test ${tag.env} != production || exit 3"
on_fail = { then = "ask" }

[[heist.careful.step]]
name = "finish"
run = "echo ${host} finished"

[heist.deploy]
select = "role=demo"
batch = 2
params = ["ticket"]

[[heist.deploy.step]]
name = "pull"
run = "echo ${ticket} on ${host}"
on_fail = { retry = 2, backoff = "1s" }

[heist.deploy.profile.prod]
select = "env=production"
"#;

const WAIT: Duration = Duration::from_secs(30);

fn fleet() -> Vec<Host> {
    ["demo1", "demo2", "demo3", "demo4"]
        .iter()
        .map(|n| {
            let env = if *n == "demo4" {
                "production"
            } else {
                "staging"
            };
            support::console::host(n, &["role=demo", &format!("env={env}")])
        })
        .collect()
}

fn console() -> Model {
    model(fleet(), Settings::default())
}

fn open_picker(m: &mut Model) {
    let effects = m.key(Key::ch('h'));
    assert!(
        matches!(effects.as_slice(), [Effect::ListHeists(_)]),
        "{effects:?}"
    );
    let heists = crew::heist::validate::load_str(HEISTS, Path::new("heists/demo.toml"))
        .expect("heists parse");
    let list = HeistList {
        files: vec!["heists/demo.toml".into()],
        looked: vec!["heists".into()],
        heists,
        errors: Vec::new(),
    };
    m.update(Action::HeistsListed(Shared::new(list)));
}

/// What each host's steps do, by (host, step name): demo1's `check` never ends (running);
/// demo2's `kernel` fails (retried after a minute); demo3 and demo4 fail `check` (they ask),
/// demo4 only once its gate is opened; everything else succeeds.
#[derive(Default)]
struct Scripted {
    gates: Mutex<HashMap<(String, String), Arc<Notify>>>,
}

impl Scripted {
    fn gate(&self, host: &str, step: &str) -> Arc<Notify> {
        let mut g = self.gates.lock().expect("gates");
        g.entry((host.into(), step.into())).or_default().clone()
    }
}

fn exited(code: i32) -> StepOutcome {
    StepOutcome::Exited(Exit {
        code: Some(code),
        signal: None,
        wall_ms: 40,
        user_ms: 0,
        sys_ms: 0,
        max_rss_kb: 0,
        timed_out: false,
    })
}

impl Executor for Scripted {
    async fn run(&self, host: &Host, spec: RunSpec, sink: OutputSink) -> StepOutcome {
        let step = spec
            .env
            .iter()
            .find(|(k, _)| k == "CREW_STEP")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let say = |stream: Stream, text: &str| {
            let (sink, text) = (sink.clone(), text.as_bytes().to_vec());
            async move {
                sink.send((stream, text))
                    .await
                    .expect("engine drains output")
            }
        };
        match (host.name.as_str(), step.as_str()) {
            ("demo1", "check") => std::future::pending().await,
            ("demo2", "kernel") => {
                say(Stream::Stderr, "uname: \x1b[31mboom\x1b[0m\n").await;
                exited(3)
            }
            ("demo3", "check") => {
                say(Stream::Stderr, "disk full\n").await;
                exited(3)
            }
            ("demo4", "check") => {
                self.gate("demo4", "check").notified().await;
                say(Stream::Stderr, "the canary objects\n").await;
                exited(3)
            }
            (_, "kernel") => {
                say(Stream::Stdout, "6.1.0\n").await;
                exited(0)
            }
            (h, _) => {
                say(Stream::Stdout, &format!("{h} finished\n")).await;
                exited(0)
            }
        }
    }
    async fn read_file(
        &self,
        host: &Host,
        path: &str,
        _: &std::path::Path,
        _: u64,
        _: RunOrigin,
        _: Option<String>,
    ) -> Result<u64, HostError> {
        let m = format!("not scripted: read {path} on {}", host.name);
        Err(HostError::new(ErrorKind::Internal, m))
    }
    async fn write_file(
        &self,
        host: &Host,
        path: &str,
        _: PutData,
        _: u32,
        _: RunOrigin,
        _: Option<String>,
    ) -> Result<u64, HostError> {
        let m = format!("not scripted: write {path} on {}", host.name);
        Err(HostError::new(ErrorKind::Internal, m))
    }
}

/// The engine's event as the console gets it, with the clock pinned: a fixed run id and
/// fixed times, so the screen does not depend on when the test ran.
fn pinned(ev: HeistEvent) -> HeistEvent {
    const RUN_ID: &str = "1700000000-careful";
    match ev {
        HeistEvent::Started {
            heist,
            profile,
            hosts,
            waves,
            steps,
            rollback,
            ..
        } => HeistEvent::Started {
            run_id: RUN_ID.into(),
            heist,
            profile,
            hosts,
            waves,
            steps,
            rollback,
        },
        HeistEvent::StepFinished {
            host,
            step,
            attempt,
            mut result,
        } => {
            result.wall_ms = 40;
            result.started_ms = 1_700_000_000_000;
            HeistEvent::StepFinished {
                host,
                step,
                attempt,
                result,
            }
        }
        other => other,
    }
}

/// The console with `careful` started from its picker, running on the scripted executor.
struct Live {
    m: Model,
    running: Running,
    exec: Arc<Scripted>,
    runs: tempfile::TempDir,
    events: Vec<HeistEvent>,
}

impl Live {
    fn start() -> Live {
        let mut m = console();
        open_picker(&mut m);
        // The plan the picker shows is the one the daemon runs (it plans from the same inputs).
        let Some(Ok((plan, sets))) = m.heist.preview.clone() else {
            panic!("the picker has a plan");
        };
        let effects = m.key(Key::plain(KeyCode::Enter));
        let [Effect::StartHeist(req)] = effects.as_slice() else {
            panic!("expected StartHeist, got {effects:?}");
        };
        assert_eq!(req.name, plan.heist.name);
        assert_eq!(req.vars, sets);
        let runs = tempfile::tempdir().expect("run store");
        let exec = Arc::new(Scripted::default());
        let running = engine::start_in(runs.path(), exec.clone(), (*plan).clone(), sets)
            .expect("engine start");
        m.update(Action::HeistStarted {
            run_id: "1700000000-careful".into(),
            run_dir: "runs/heist-1700000000-careful".into(),
        });
        Live {
            m,
            running,
            exec,
            runs,
            events: Vec::new(),
        }
    }

    /// Feed the engine's events to the Model until `done` holds for the events so far.
    async fn pump(&mut self, what: &str, done: impl Fn(&[HeistEvent]) -> bool) {
        while !done(&self.events) {
            let ev = tokio::time::timeout(WAIT, self.running.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no engine event within {WAIT:?} before {what}"))
                .unwrap_or_else(|| panic!("the engine ended before {what}"));
            self.events.push(ev.clone());
            self.m.update(Action::Heist(pinned(ev)));
        }
    }

    /// Send the Model's answers (its `AnswerAsk` effect) to the engine.
    async fn answer(&self, effects: Vec<Effect>) {
        let [Effect::AnswerAsk { answers, .. }] = effects.as_slice() else {
            panic!("expected AnswerAsk, got {effects:?}");
        };
        for (ask_id, word) in answers {
            let choice = Choice::parse(word).expect("an answer word");
            let reply = AskReply {
                ask_id: *ask_id,
                choice,
            };
            self.running
                .asks
                .send(reply)
                .await
                .expect("the engine takes answers");
        }
    }
}

fn has(evs: &[HeistEvent], p: impl Fn(&HeistEvent) -> bool) -> bool {
    evs.iter().any(p)
}

fn ask_of(evs: &[HeistEvent], who: &str) -> Option<u64> {
    evs.iter().find_map(|e| match e {
        HeistEvent::Ask { ask_id, host, .. } if host == who => Some(*ask_id),
        _ => None,
    })
}

/// `careful` mid-run, as the engine leaves it: demo1 done with `kernel` and running `check`;
/// demo2's `kernel` failed and waits for its retry; demo3 failed `check`, the operator
/// aborted it (x), so its `finish` never runs; demo4 (the canary) failed `check` and asks.
async fn mid_run() -> Live {
    let mut live = Live::start();
    live.pump("demo3 asks", |e| ask_of(e, "demo3").is_some())
        .await;
    assert_eq!(live.m.mode, Mode::Ask, "an ask opens the prompt");
    let x = live.m.key(Key::ch('x'));
    live.answer(x).await;
    live.pump("demo3 is done", |e| {
        has(
            e,
            |e| matches!(e, HeistEvent::HostDone { host, .. } if host == "demo3"),
        )
    })
    .await;
    live.exec.gate("demo4", "check").notify_one();
    live.pump("demo4 asks, demo2 retries, demo1 runs check", |e| {
        ask_of(e, "demo4").is_some()
            && has(
                e,
                |e| matches!(e, HeistEvent::Decision { host, .. } if host == "demo2"),
            )
            && has(e, |e| {
                matches!(e, HeistEvent::StepStarted { host, step, .. }
                    if host == "demo1" && *step == StepRef::main(1))
            })
    })
    .await;
    live
}

#[tokio::test]
async fn step_view_mid_run() {
    let mut live = mid_run().await;
    let m = &mut live.m;
    assert_eq!(m.mode, Mode::Ask, "demo4's ask opens the prompt");
    m.key(Key::plain(KeyCode::Esc));
    assert_eq!(m.mode, Mode::Normal);
    // focus demo2's failed first attempt: its (sanitised) stderr shows below the grid
    m.key(Key::ch('j'));
    let screen = render(m, 110, 24);
    assert!(!screen.contains('\x1b'), "raw escape reached the screen");
    assert!(screen.contains("uname: ^[[31mboom^[[0m"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn ask_prompt_and_answer() {
    let mut live = mid_run().await;
    insta::assert_snapshot!(render(&live.m, 110, 24));
    let demo4 = ask_of(&live.events, "demo4").expect("demo4 asked");
    let effects = live.m.key(Key::ch('b'));
    assert_eq!(
        effects,
        vec![Effect::AnswerAsk {
            run: "1700000000-careful".into(),
            answers: vec![(demo4, "rollback".into())],
        }]
    );
    assert_eq!(live.m.mode, Mode::Normal);
    // hidden prompts come back with A while the engine still waits (not answered yet)
    live.m.key(Key::ch('A'));
    assert_eq!(live.m.mode, Mode::Ask);
    live.answer(effects).await;
    live.pump("demo4's ask closes", |e| {
        has(e, |e| {
            matches!(e, HeistEvent::AskClosed { ask_id, choice: Some(Choice::Rollback) }
                if *ask_id == demo4)
        })
    })
    .await;
    assert_eq!(live.m.mode, Mode::Normal, "the prompt closes once answered");
    drop(live.runs);
}

#[test]
fn heist_picker_shows_the_plan() {
    let mut m = console();
    open_picker(&mut m);
    assert_eq!(m.mode, Mode::Heists);
    insta::assert_snapshot!(render(&m, 110, 26));
}

#[test]
fn heist_picker_asks_for_params_and_profile() {
    let mut m = console();
    open_picker(&mut m);
    m.key(Key::ch('j'));
    // `deploy` needs --set ticket=…: the plan says so and Enter does not start it
    let screen = render(&m, 110, 26);
    assert!(screen.contains("needs --set ticket=VALUE"), "{screen}");
    assert!(m.key(Key::plain(KeyCode::Enter)).is_empty());
    m.key(Key::ch('e'));
    assert_eq!(m.mode, Mode::HeistVars);
    for c in "ticket=OPS-12".chars() {
        m.key(Key::ch(c));
    }
    m.key(Key::plain(KeyCode::Enter));
    assert_eq!(m.mode, Mode::Heists);
    m.key(Key::ch('p'));
    assert_eq!(m.heist.profile.as_deref(), Some("prod"));
    insta::assert_snapshot!(render(&m, 110, 26));
    let effects = m.key(Key::plain(KeyCode::Enter));
    match effects.as_slice() {
        [Effect::StartHeist(req)] => {
            assert_eq!(req.vars, [("ticket".to_string(), "OPS-12".to_string())]);
            let Some(Ok((plan, _))) = m.heist.preview.as_ref() else {
                panic!("the picker shows the plan it starts");
            };
            assert_eq!(req.name, plan.heist.name);
            assert_eq!(req.profile.as_deref(), Some("prod"));
            let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
            assert_eq!(names, ["demo4"], "the prod profile selects env=production");
        }
        other => panic!("expected StartHeist, got {other:?}"),
    }
    assert_eq!(m.view, View::Heist);
    assert_eq!(m.mode, Mode::Normal);
}

#[test]
fn ctrl_s_asks_for_a_name_and_saves_marked_hosts() {
    let mut m = console();
    m.key(Key::ch('j'));
    m.key(Key::ch(' ')); // marks demo2 and moves on
    m.key(Key::ch(' '));
    m.key(Key::ch(':'));
    for c in "systemctl restart app".chars() {
        m.key(Key::ch(c));
    }
    m.key(Key::ctrl('s'));
    assert_eq!(m.mode, Mode::SaveHeist);
    for c in "restart-app".chars() {
        m.key(Key::ch(c));
    }
    insta::assert_snapshot!(render(&m, 100, 20));
    let effects = m.key(Key::plain(KeyCode::Enter));
    match effects.as_slice() {
        [Effect::SaveHeist { req, .. }] => {
            assert_eq!(req.name, "restart-app");
            assert_eq!(req.select, "demo[2-3]");
            assert_eq!(req.command, "systemctl restart app");
        }
        other => panic!("expected SaveHeist, got {other:?}"),
    }
}
