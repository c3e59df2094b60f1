//! Snapshot tests of the console's main screens (ratatui TestBackend + insta).

use crew::console::action::Action;
use crew::console::app::{Model, Settings};
use crew::console::history::History;
use crew::console::keymap::{Key, KeyCode, Keymap};
use crew::console::theme::Theme;
use crew::console::ui;
use crew::inventory::Inventory;
use crew::model::ErrorKind;
use crew::model::Host;
use crew::model::{Exit, Stream};
use crew::proto::daemon::{Event, HostEvent};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use regex::Regex;

fn host(name: &str, tags: &[&str]) -> Host {
    let mut h = Host::local(name);
    h.tags = tags.iter().map(|s| s.to_string()).collect();
    h
}

fn fleet() -> Vec<Host> {
    vec![
        host("web01", &["role=web"]),
        host("web02", &["role=web"]),
        host("web03", &["role=web", "canary"]),
        host("db1", &["role=db"]),
    ]
}

fn model(settings: Settings) -> Model {
    let km = Keymap::load(None).expect("keymap");
    Model::new(
        Inventory::from_hosts(fleet()),
        km,
        settings,
        History::default(),
    )
}

fn typ(m: &mut Model, s: &str) {
    for c in s.chars() {
        m.key(Key::ch(c));
    }
}

fn render(m: &Model, w: u16, h: u16) -> String {
    let theme = Theme::builtin("dark").expect("theme");
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    term.draw(|f| ui::draw(f, m, &theme)).expect("draw");
    term.backend().to_string()
}

fn exit(code: i32, wall_ms: u64) -> HostEvent {
    let exit = Exit {
        code: Some(code),
        signal: None,
        wall_ms,
        user_ms: 0,
        sys_ms: 0,
        max_rss_kb: 0,
        timed_out: false,
    };
    HostEvent::Exit {
        verdict: crew::model::Verdict::from_exit(&exit, false),
        exit,
    }
}

fn feed(m: &mut Model, tag: u64, host: &str, event: HostEvent) {
    let event = Event::Host {
        run_id: 3,
        host: host.into(),
        event,
    };
    m.update(Action::Daemon { tag, event });
}

/// `cat /etc/motd`-like run: three hosts agree, web02 differs and fails, db1 unreachable.
fn finished_run(m: &mut Model) {
    m.key(Key::ch(':'));
    typ(m, "cat /etc/motd");
    m.key(Key::plain(KeyCode::Enter));
    let tag = m.run.as_ref().expect("run").tag;
    for h in ["web01", "web02", "web03"] {
        feed(
            m,
            tag,
            h,
            HostEvent::Started {
                pid: 10,
                agentless: false,
            },
        );
    }
    let same = b"Welcome to the fleet\nmaintenance: sunday\n".to_vec();
    for h in ["web01", "web03"] {
        feed(
            m,
            tag,
            h,
            HostEvent::Output {
                stream: Stream::Stdout,
                data: same.clone(),
            },
        );
        feed(m, tag, h, exit(0, 42));
    }
    feed(
        m,
        tag,
        "web02",
        HostEvent::Output {
            stream: Stream::Stdout,
            data: b"Welcome to the fleet\nmaintenance: \x1b[31mNOW\x1b[0m\n".to_vec(),
        },
    );
    feed(
        m,
        tag,
        "web02",
        HostEvent::Output {
            stream: Stream::Stderr,
            data: b"cat: warning\x07\n".to_vec(),
        },
    );
    feed(m, tag, "web02", exit(1, 1500));
    feed(
        m,
        tag,
        "db1",
        HostEvent::Failed {
            kind: ErrorKind::Unreachable,
            message: "connect 10.0.0.9:22: connection refused".into(),
        },
    );
}

#[test]
fn host_list_with_marks_and_counts() {
    let mut m = model(Settings::default());
    m.key(Key::ch(' ')); // marks web01, moves down
    m.key(Key::ch('j')); // web03
    m.key(Key::ch(' '));
    insta::assert_snapshot!(render(&m, 100, 16));
}

#[test]
fn filter_error_is_shown_inline() {
    let mut m = model(Settings::default());
    m.key(Key::ch('/'));
    typ(&mut m, "role=web &");
    assert!(m.filter_error.is_some());
    insta::assert_snapshot!(render(&m, 100, 12));
}

#[test]
fn output_grid_with_exit_codes() {
    let mut m = model(Settings::default());
    finished_run(&mut m);
    insta::assert_snapshot!(render(&m, 120, 24));
}

#[test]
fn gathered_view_with_diff() {
    let mut m = model(Settings::default());
    finished_run(&mut m);
    m.key(Key::ch('g'));
    insta::assert_snapshot!("gathered", render(&m, 110, 22));
    m.key(Key::ch('j')); // select web02's group
    m.key(Key::ch('d'));
    insta::assert_snapshot!("gathered_diff", render(&m, 110, 22));
    // The diff keeps each line's stream: web02's stderr line is drawn in the stderr style,
    // its stdout lines in the stdout style.
    let theme = Theme::builtin("dark").expect("theme");
    let mut term = Terminal::new(TestBackend::new(110, 22)).expect("terminal");
    term.draw(|f| ui::draw(f, &m, &theme)).expect("draw");
    let fg_of = |needle: &str| {
        let buf = term.backend().buffer();
        let area = buf.area;
        (0..area.height).find_map(|y| {
            let row: String = (0..area.width).map(|x| buf[(x, y)].symbol()).collect();
            let col = row.find(needle)?;
            let x = row[..col].chars().count() as u16;
            Some(buf[(x, y)].fg)
        })
    };
    assert_eq!(fg_of("cat: warning"), theme.get("output.stderr").fg);
    assert_eq!(fg_of("maintenance: "), theme.get("output.stdout").fg);
    assert_ne!(theme.get("output.stderr").fg, theme.get("output.stdout").fg);
}

#[test]
fn help_overlay_lists_keymap_descriptions() {
    let mut m = model(Settings::default());
    m.key(Key::ch('?'));
    insta::assert_snapshot!(render(&m, 110, 40));
}

#[test]
fn confirm_dialog_for_dangerous_command() {
    let settings = Settings {
        dangerous: vec![Regex::new(r"\breboot\b").expect("regex")],
        ..Settings::default()
    };
    let mut m = model(settings);
    m.key(Key::ch('/'));
    typ(&mut m, "role=web");
    m.key(Key::plain(KeyCode::Enter));
    m.key(Key::ch(':'));
    typ(&mut m, "sudo reboot");
    m.key(Key::plain(KeyCode::Enter));
    insta::assert_snapshot!(render(&m, 100, 20));
}

#[test]
fn many_hosts_switch_to_list_and_focused_pane() {
    let hosts: Vec<Host> = (1..=40)
        .map(|i| host(&format!("node{i:02}"), &["role=demo"]))
        .collect();
    let km = Keymap::load(None).expect("keymap");
    let mut m = Model::new(
        Inventory::from_hosts(hosts),
        km,
        Settings::default(),
        History::default(),
    );
    m.key(Key::ch(':'));
    typ(&mut m, "uname -r");
    m.key(Key::plain(KeyCode::Enter));
    let tag = m.run.as_ref().expect("run").tag;
    for i in 1..=40 {
        let h = format!("node{i:02}");
        feed(
            &mut m,
            tag,
            &h,
            HostEvent::Started {
                pid: 1,
                agentless: false,
            },
        );
        if i % 3 != 0 {
            feed(
                &mut m,
                tag,
                &h,
                HostEvent::Output {
                    stream: Stream::Stdout,
                    data: b"6.1.0-18-amd64\n".to_vec(),
                },
            );
            feed(&mut m, tag, &h, exit(0, 80 + i));
        }
    }
    insta::assert_snapshot!(render(&m, 110, 20));
}
