//! Snapshot tests of the console's heist screens (ratatui TestBackend + insta): the picker with
//! a plan, the step view mid-run (cells in several states), the `ask` prompt and the save
//! prompt; and the Model's answers to them (the effects it asks for).

use std::path::Path;

use crew::console::action::Action;
use crew::console::app::{Model, Settings, View};
use crew::console::effect::Effect;
use crew::console::heists::{HeistList, Shared};
use crew::console::history::History;
use crew::console::keymap::{Key, KeyCode, Keymap, Mode};
use crew::console::theme::Theme;
use crew::console::ui;
use crew::heist::events::{Choice, Decision, HeistEvent, HostOutcome, StepRef, StepResult};
use crew::inventory::Inventory;
use crew::model::Host;
use crew::model::Stream;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

const HEISTS: &str = r#"
[heist.careful]
description = "A check fails on the canary; the operator decides"
select = "role=demo"

[[heist.careful.step]]
name = "kernel"
run = "uname -r"

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

fn fleet() -> Vec<Host> {
    ["demo1", "demo2", "demo3", "demo4"]
        .iter()
        .map(|n| {
            let mut h = Host::local(n);
            let env = if *n == "demo4" {
                "production"
            } else {
                "staging"
            };
            h.tags = vec!["role=demo".into(), format!("env={env}")];
            h
        })
        .collect()
}

fn model() -> Model {
    let km = Keymap::load(None).expect("keymap");
    Model::new(
        Inventory::from_hosts(fleet()),
        km,
        Settings::default(),
        History::default(),
    )
}

fn render(m: &Model, w: u16, h: u16) -> String {
    let theme = Theme::builtin("dark").expect("theme");
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    term.draw(|f| ui::draw(f, m, &theme)).expect("draw");
    term.backend().to_string()
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

fn ev(m: &mut Model, e: HeistEvent) {
    m.update(Action::Heist(e));
}

fn finished(m: &mut Model, host: &str, step: usize, attempt: u32, ok: bool, out: &str) {
    let result = StepResult {
        ok,
        exit_code: Some(if ok { 0 } else { 3 }),
        reason: (!ok).then(|| "exit 3, accepted 0".to_string()),
        wall_ms: 40,
        stdout: if ok { out.to_string() } else { String::new() },
        stderr: if ok { String::new() } else { out.to_string() },
        ..StepResult::default()
    };
    ev(
        m,
        HeistEvent::StepFinished {
            host: host.into(),
            step: StepRef::main(step),
            attempt,
            result,
        },
    );
}

fn started(m: &mut Model, host: &str, step: usize, attempt: u32, what: &str) {
    ev(
        m,
        HeistEvent::StepStarted {
            host: host.into(),
            step: StepRef::main(step),
            attempt,
            what: what.into(),
        },
    );
}

/// `careful` mid-run: demo1 done with step 1 and running 2, demo2 retrying, demo3 ok twice,
/// demo3 failed its check and stopped (finish skipped), demo4 (the canary) failed its check
/// and asks.
fn mid_run(m: &mut Model) {
    let hosts: Vec<String> = fleet().iter().map(|h| h.name.clone()).collect();
    // The daemon's id for the heist (as its start or an attach would give it).
    m.heist.run_id = Some("1700000000-careful".into());
    ev(
        m,
        HeistEvent::Started {
            run_id: "1700000000-careful".into(),
            heist: "careful".into(),
            profile: None,
            hosts: hosts.clone(),
            waves: vec![hosts],
            steps: vec!["kernel".into(), "check".into(), "finish".into()],
            rollback: vec![],
        },
    );
    ev(
        m,
        HeistEvent::Wave {
            index: 0,
            hosts: vec![],
        },
    );
    for h in ["demo1", "demo2", "demo3", "demo4"] {
        started(m, h, 0, 1, "uname -r");
    }
    finished(m, "demo1", 0, 1, true, "6.1.0\n");
    started(m, "demo1", 1, 1, "test staging != production || exit 3");
    finished(m, "demo2", 0, 1, false, "uname: \x1b[31mboom\x1b[0m\n");
    ev(
        m,
        HeistEvent::Decision {
            host: "demo2".into(),
            step: StepRef::main(0),
            decision: Decision::Retry {
                next_attempt: 2,
                delay_ms: 1000,
            },
        },
    );
    finished(m, "demo3", 0, 1, true, "6.1.0\n");
    started(m, "demo3", 1, 1, "test staging != production || exit 3");
    finished(m, "demo3", 1, 1, false, "disk full\n");
    ev(
        m,
        HeistEvent::Decision {
            host: "demo3".into(),
            step: StepRef::main(1),
            decision: Decision::Abort,
        },
    );
    ev(
        m,
        HeistEvent::HostDone {
            host: "demo3".into(),
            outcome: HostOutcome::Failed {
                step: "check".into(),
            },
        },
    );
    finished(m, "demo4", 0, 1, true, "6.1.0\n");
    started(m, "demo4", 1, 1, "test production != production || exit 3");
    finished(m, "demo4", 1, 1, false, "the canary objects\n");
    ev(
        m,
        HeistEvent::Decision {
            host: "demo4".into(),
            step: StepRef::main(1),
            decision: Decision::Ask,
        },
    );
    ev(
        m,
        HeistEvent::Ask {
            ask_id: 7,
            host: "demo4".into(),
            step: StepRef::main(1),
            reason: "exit 3, accepted 0".into(),
        },
    );
}

#[test]
fn heist_picker_shows_the_plan() {
    let mut m = model();
    open_picker(&mut m);
    assert_eq!(m.mode, Mode::Heists);
    insta::assert_snapshot!(render(&m, 110, 26));
}

#[test]
fn heist_picker_asks_for_params_and_profile() {
    let mut m = model();
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
fn step_view_mid_run() {
    let mut m = model();
    mid_run(&mut m);
    assert_eq!(m.mode, Mode::Ask, "an ask opens the prompt");
    m.key(Key::plain(KeyCode::Esc));
    assert_eq!(m.mode, Mode::Normal);
    // focus demo2's failed first attempt: its (sanitised) stderr shows below the grid
    m.key(Key::ch('j'));
    insta::assert_snapshot!(render(&m, 110, 24));
}

#[test]
fn ask_prompt_and_answer() {
    let mut m = model();
    mid_run(&mut m);
    insta::assert_snapshot!(render(&m, 110, 24));
    let effects = m.key(Key::ch('b'));
    assert_eq!(
        effects,
        vec![Effect::AnswerAsk {
            run: "1700000000-careful".into(),
            answers: vec![(7, "rollback".into())],
        }]
    );
    assert_eq!(m.mode, Mode::Normal);
    // hidden prompts come back with A while the engine still waits
    m.key(Key::ch('A'));
    assert_eq!(m.mode, Mode::Ask);
    ev(
        &mut m,
        HeistEvent::AskClosed {
            ask_id: 7,
            choice: Some(Choice::Rollback),
        },
    );
    assert_eq!(m.mode, Mode::Normal, "the prompt closes once answered");
}

#[test]
fn ctrl_s_asks_for_a_name_and_saves_marked_hosts() {
    let mut m = model();
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

#[test]
fn output_of_the_focused_cell_is_sanitised() {
    let mut m = model();
    mid_run(&mut m);
    m.key(Key::plain(KeyCode::Esc));
    m.key(Key::ch('j'));
    let screen = render(&m, 110, 24);
    assert!(!screen.contains('\x1b'), "raw escape reached the screen");
    assert!(screen.contains("boom"), "{screen}");
    let _ = Stream::Stdout;
}
