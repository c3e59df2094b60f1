use super::*;
use crate::console::keymap::KeyCode;
use crate::model::Host;
use crate::model::{Exit, Stream};
use crate::proto::daemon::{HostEvent, RunRequest, Summary};
use regex::Regex;

fn host(name: &str, tags: &[&str]) -> Host {
    let mut h = Host::local(name);
    h.tags = tags.iter().map(|s| s.to_string()).collect();
    h
}

fn model_with(settings: Settings) -> Model {
    let hosts = vec![
        host("web01", &["role=web"]),
        host("web02", &["role=web"]),
        host("web03", &["role=web", "canary"]),
        host("db1", &["role=db"]),
    ];
    let km = Keymap::load(None).expect("keymap");
    Model::new(
        Inventory::from_hosts(hosts),
        km,
        settings,
        History::default(),
    )
}

pub(super) fn model() -> Model {
    model_with(Settings::default())
}

pub(super) fn typ(m: &mut Model, s: &str) -> Vec<Effect> {
    s.chars().flat_map(|c| m.key(Key::ch(c))).collect()
}

pub(super) fn enter(m: &mut Model) -> Vec<Effect> {
    m.key(Key::plain(KeyCode::Enter))
}

pub(super) fn run_req(effects: &[Effect]) -> (u64, RunRequest) {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Run { tag, req } => Some((*tag, req.clone())),
            _ => None,
        })
        .expect("a Run effect")
}

fn names(req: &RunRequest) -> Vec<&str> {
    req.hosts.iter().map(|h| h.name.as_str()).collect()
}

pub(super) fn exit(code: i32) -> HostEvent {
    let exit = Exit {
        code: Some(code),
        signal: None,
        wall_ms: 120,
        user_ms: 0,
        sys_ms: 0,
        max_rss_kb: 0,
        timed_out: false,
    };
    HostEvent::Exit {
        verdict: crate::model::Verdict::from_exit(&exit, false),
        exit,
    }
}

pub(super) fn ev(m: &mut Model, tag: u64, host: &str, event: HostEvent) {
    let event = Event::Host {
        run_id: 7,
        host: host.into(),
        event,
    };
    m.update(Action::Daemon { tag, event });
}

/// Run `cmd` on all shown hosts; web02 exits 1, db1 is unreachable, the rest succeed.
fn run_with_failures(m: &mut Model, cmd: &str) -> u64 {
    m.key(Key::ch(':'));
    typ(m, cmd);
    let (tag, req) = run_req(&enter(m));
    assert_eq!(names(&req), vec!["web01", "web02", "web03", "db1"]);
    m.update(Action::Daemon {
        tag,
        event: Event::RunStarted {
            run_id: 7,
            hosts: names(&req).iter().map(|s| s.to_string()).collect(),
        },
    });
    for h in ["web01", "web02", "web03"] {
        ev(
            m,
            tag,
            h,
            HostEvent::Started {
                pid: 1,
                agentless: false,
            },
        );
        ev(
            m,
            tag,
            h,
            HostEvent::Output {
                stream: Stream::Stdout,
                data: b"hi\n".to_vec(),
            },
        );
    }
    ev(m, tag, "web01", exit(0));
    ev(m, tag, "web02", exit(1));
    ev(m, tag, "web03", exit(0));
    ev(
        m,
        tag,
        "db1",
        HostEvent::Failed {
            kind: ErrorKind::Unreachable,
            message: "connection refused".into(),
        },
    );
    tag
}

use crate::model::ErrorKind;

#[test]
fn filter_applies_as_you_type_and_targets_follow() {
    let mut m = model();
    assert_eq!(m.targets().len(), 4);
    m.key(Key::ch('/'));
    typ(&mut m, "role=web");
    assert_eq!(m.mode, Mode::Filter);
    assert_eq!(m.targets(), vec!["web01", "web02", "web03"]);
    enter(&mut m);
    assert_eq!(m.mode, Mode::Normal);
    // marks win over the filter
    m.key(Key::ch('j'));
    m.key(Key::ch(' '));
    assert_eq!(m.targets(), vec!["web02"]);
    m.key(Key::ctrl('\\'));
    assert_eq!(m.targets().len(), 3);
}

#[test]
fn filter_error_keeps_last_good_filter() {
    let mut m = model();
    m.key(Key::ch('/'));
    typ(&mut m, "canary");
    assert_eq!(m.targets(), vec!["web03"]);
    typ(&mut m, " &");
    let err = m.filter_error.clone().expect("an error");
    assert_eq!(err.pos, 8); // end of input: an operand is missing after `&`
    assert!(err.message.contains("expected"), "{}", err.message);
    assert_eq!(m.targets(), vec!["web03"]);
}

#[test]
fn mark_failed_then_rerun_targets_exactly_that_set() {
    let mut m = model();
    run_with_failures(&mut m, "uptime");
    assert_eq!(m.outcomes.get("web02"), Some(&Verdict::Failed));
    m.key(Key::ch('F'));
    assert_eq!(m.marks.iter().collect::<Vec<_>>(), vec!["web02"]);
    let (_, req) = run_req(&m.key(Key::ch('r')));
    assert_eq!(names(&req), vec!["web02"]);
    assert_eq!(req.command, "uptime");
}

#[test]
fn mark_unreachable_and_gathered_group() {
    let mut m = model();
    let tag = run_with_failures(&mut m, "echo hi");
    m.key(Key::ch('U'));
    assert_eq!(m.targets(), vec!["db1"]);
    // gathered view: the largest group is web01+web03 (same output, exit 0)
    m.key(Key::ch('g'));
    // after a run starts the output pane has focus
    assert_eq!(m.focus, Focus::Output);
    m.key(Key::ch(' '));
    assert_eq!(m.targets(), vec!["web01", "web03"]);
    m.update(Action::Daemon {
        tag,
        event: Event::RunFinished {
            run_id: 7,
            summary: Summary {
                hosts: vec![
                    ("web01".into(), Verdict::Ok),
                    ("web03".into(), Verdict::Timeout),
                ],
                store_dir: String::new(),
            },
        },
    });
    m.key(Key::ch('T'));
    assert_eq!(m.targets(), vec!["web03"]);
}

#[test]
fn read_only_refuses_to_run() {
    let mut m = model_with(Settings {
        read_only: true,
        ..Settings::default()
    });
    m.key(Key::ch(':'));
    typ(&mut m, "hostname");
    assert!(enter(&mut m).is_empty());
    assert!(matches!(&m.message, Some((Level::Error, s)) if s.contains("read-only")));
    assert!(m.run.is_none());
}

#[test]
fn dangerous_command_asks_first() {
    let dangerous = vec![Regex::new(r"\brm\s+-rf\b").expect("regex")];
    let mut m = model_with(Settings {
        dangerous,
        ..Settings::default()
    });
    m.key(Key::ch(':'));
    typ(&mut m, "rm -rf /tmp/x");
    assert!(enter(&mut m).is_empty());
    assert_eq!(m.mode, Mode::Confirm);
    assert_eq!(m.confirm.as_ref().map(|p| p.targets.len()), Some(4));
    // no: nothing runs
    m.key(Key::ch('n'));
    assert_eq!(m.mode, Mode::Normal);
    assert!(m.run.is_none());
    // again, yes: runs
    m.key(Key::ch(':'));
    typ(&mut m, "rm -rf /tmp/x");
    enter(&mut m);
    let (_, req) = run_req(&m.key(Key::ch('y')));
    assert_eq!(req.command, "rm -rf /tmp/x");
    assert_eq!(req.hosts.len(), 4);
}

#[test]
fn kill_focused_and_all() {
    let mut m = model();
    m.key(Key::ch(':'));
    typ(&mut m, "sleep 1000");
    let (tag, _) = run_req(&enter(&mut m));
    m.update(Action::Daemon {
        tag,
        event: Event::RunStarted {
            run_id: 9,
            hosts: vec![],
        },
    });
    ev(
        &mut m,
        tag,
        "web01",
        HostEvent::Started {
            pid: 5,
            agentless: false,
        },
    );
    assert_eq!(
        m.key(Key::ch('x')),
        vec![Effect::Kill {
            run_id: 9,
            host: Some("web01".into()),
            signal: libc::SIGTERM
        }]
    );
    assert_eq!(
        m.key(Key::ctrl('k')),
        vec![Effect::Kill {
            run_id: 9,
            host: None,
            signal: libc::SIGTERM
        }]
    );
}

#[test]
fn history_is_recorded_and_walked() {
    let mut m = model();
    m.key(Key::ch(':'));
    typ(&mut m, "uptime");
    let effects = enter(&mut m);
    assert!(effects.contains(&Effect::AppendHistory("uptime".into())));
    m.key(Key::ch(':'));
    m.key(Key::plain(KeyCode::Up));
    assert_eq!(m.command_input.lines(), ["uptime"]);
    m.key(Key::plain(KeyCode::Esc));
    assert_eq!(m.mode, Mode::Normal);
}

#[test]
fn output_streams_into_bounded_scrollback() {
    let mut m = model_with(Settings {
        scrollback: 5,
        ..Settings::default()
    });
    m.key(Key::ch(':'));
    typ(&mut m, "seq 100");
    let (tag, _) = run_req(&enter(&mut m));
    let data: Vec<u8> = (1..=100)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    ev(
        &mut m,
        tag,
        "web01",
        HostEvent::Output {
            stream: Stream::Stdout,
            data,
        },
    );
    let job = &m.run.as_ref().expect("run").jobs["web01"];
    assert_eq!(job.out.len(), 5);
    assert_eq!(job.out.get(4).map(|l| l.1.to_vec()), Some(b"100".to_vec()));
}

#[test]
fn pool_status_is_indexed_by_host() {
    use crate::proto::daemon::{HostStatus, StatusReport};
    let mut m = model();
    let status = |name: &str, state: &str| HostStatus {
        name: name.into(),
        link_key: name.into(),
        state: state.into(),
        reason: None,
        agentless: false,
        jobs: 0,
        connected_for_s: 0,
        agent_pid: None,
    };
    let report = StatusReport {
        pid: 1,
        build: "b".into(),
        uptime_s: 0,
        rss_kb: 0,
        runs_active: 0,
        runs_total: 0,
        hosts: vec![
            status("web01", "ready"),
            status("web02", "busy"),
            status("db1", "ready"),
        ],
        api: None,
        daemons: vec![],
    };
    let event = Event::Status(report);
    m.update(Action::Daemon { tag: 0, event });
    let pool = m.pool.as_ref().expect("pool");
    assert_eq!(pool.state("web02"), Some("busy"));
    assert_eq!(pool.state("db1"), Some("ready"));
    assert_eq!(pool.state("web03"), None);
    assert_eq!((pool.count("ready"), pool.count("down")), (2, 0));
}

#[test]
fn stored_outcomes_seed_the_outcome_atoms_until_a_run_of_this_session() {
    use crate::pick::LastOutcomes;
    let mut m = model();
    assert_eq!(m.startup(), vec![Effect::LastOutcomes]);
    let last = |pairs: &[(&str, Verdict)]| LastOutcomes {
        run: None,
        hosts: pairs.iter().map(|(h, v)| (h.to_string(), *v)).collect(),
    };
    m.update(Action::OutcomesLoaded(last(&[
        ("web02", Verdict::Failed),
        ("db1", Verdict::Ok),
    ])));
    m.key(Key::ch('/'));
    typ(&mut m, "?failed");
    enter(&mut m);
    assert_eq!(m.targets(), vec!["web02"]);
    // A run of this session is newer than what the store held before it.
    let mut m = model();
    run_with_failures(&mut m, "true");
    m.update(Action::OutcomesLoaded(last(&[("web01", Verdict::Failed)])));
    assert_eq!(m.outcomes.get("web01"), Some(&Verdict::Ok));
}

#[test]
fn a_stored_run_opens_with_each_host_state_from_its_record() {
    use crate::console::runs::{RunDetail, RunEntry, StoredHost};
    use crate::store::HostRecord;
    let mut m = model();
    let mut ok = HostRecord::new("web01");
    ok.verdict = Verdict::Ok;
    ok.code = Some(0);
    ok.wall_ms = Some(42);
    let mut down = HostRecord::new("db1");
    down.verdict = Verdict::Unreachable;
    down.error_kind = Some(ErrorKind::Unreachable);
    down.error = Some("refused".into());
    let stored = |name: &str, result: Option<HostRecord>| StoredHost {
        name: name.into(),
        result,
        stdout: b"hi\n".to_vec(),
        stderr: Vec::new(),
    };
    let entry = RunEntry {
        dir: "runs/9".into(),
        id: "9".into(),
        command: "uptime".into(),
        selection: "all".into(),
        started: String::new(),
        hosts: 3,
        outcome: "1 ok, 1 unreachable".into(),
    };
    let hosts = vec![
        stored("web01", Some(ok)),
        stored("db1", Some(down)),
        stored("web02", None),
    ];
    m.update(Action::RunLoaded(Ok(RunDetail { entry, hosts })));
    let run = m.run.as_ref().expect("stored run");
    let label = |h: &str| run.jobs[h].state.label();
    assert_eq!(
        (label("web01"), label("db1"), label("web02")),
        ("ok".into(), "unreachable".into(), "pending".into())
    );
    assert_eq!(run.jobs["web01"].wall_ms, Some(42));
    assert_eq!(run.stored.as_deref(), Some("9"));
}

#[test]
fn sudo_toggle_asks_the_password_once_masked_and_sends_it_with_runs() {
    let mut m = model();
    typ(&mut m, ":");
    m.key(Key::ctrl('o'));
    assert!(m.sudo, "ctrl-o turns sudo on");
    typ(&mut m, "id -u");
    assert!(enter(&mut m).is_empty(), "nothing runs before the password");
    assert_eq!(m.mode, Mode::Password);
    typ(&mut m, "s3cret");
    // The field shows the mask, never the text.
    let mut term =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(40, 3)).expect("terminal");
    term.draw(|f| f.render_widget(&m.password_input, f.area()))
        .expect("draw");
    let shown: String = term
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(
        !shown.contains("s3cret") && shown.contains("••••••"),
        "{shown}"
    );
    let (_, req) = run_req(&enter(&mut m));
    assert_eq!(req.command, "id -u");
    let sudo = req.sudo.expect("run through sudo");
    assert_eq!(sudo.user, "root");
    assert_eq!(
        sudo.password.as_ref().map(|p| p.expose()),
        Some(&b"s3cret"[..])
    );
    assert!(!format!("{:?}", m.history).contains("s3cret"));
    // Next run: not asked again.
    typ(&mut m, ":uptime");
    let (_, req) = run_req(&enter(&mut m));
    assert!(req.sudo.is_some_and(|s| s.password.is_some()));
    // Toggled off: as the login user.
    typ(&mut m, ":");
    m.key(Key::ctrl('o'));
    typ(&mut m, "true");
    let (_, req) = run_req(&enter(&mut m));
    assert!(req.sudo.is_none());
}
