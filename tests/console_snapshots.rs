//! Snapshot tests of the console's main screens (ratatui TestBackend + insta).

mod support;

use crew::console::app::{Model, Settings};
use crew::console::keymap::{Key, KeyCode, Mode};
use crew::console::theme::Theme;
use crew::model::ErrorKind;
use crew::model::Host;
use crew::model::Stream;
use crew::proto::daemon::HostEvent;
use regex::Regex;
use support::console::{exit, feed, host, model, render, render_with, typ};

fn fleet() -> Vec<Host> {
    vec![
        host("web01", &["role=web"]),
        host("web02", &["role=web"]),
        host("web03", &["role=web", "canary"]),
        host("db1", &["role=db"]),
    ]
}

fn console(settings: Settings) -> Model {
    model(fleet(), settings)
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
    let mut m = console(Settings::default());
    m.key(Key::ch(' ')); // marks web01, moves down
    m.key(Key::ch('j')); // web03
    m.key(Key::ch(' '));
    insta::assert_snapshot!(render(&m, 100, 16));
}

#[test]
fn filter_error_is_shown_inline() {
    let mut m = console(Settings::default());
    m.key(Key::ch('/'));
    typ(&mut m, "role=web &");
    assert!(m.filter_error.is_some());
    insta::assert_snapshot!(render(&m, 100, 12));
}

#[test]
fn output_grid_with_exit_codes() {
    let mut m = console(Settings::default());
    finished_run(&mut m);
    insta::assert_snapshot!(render(&m, 120, 24));
}

#[test]
fn gathered_view_with_diff() {
    let mut m = console(Settings::default());
    finished_run(&mut m);
    m.key(Key::ch('g'));
    insta::assert_snapshot!("gathered", render(&m, 110, 22));
    m.key(Key::ch('j')); // select web02's group
    m.key(Key::ch('d'));
    insta::assert_snapshot!("gathered_diff", render(&m, 110, 22));
    // The diff keeps each line's stream: web02's stderr line is drawn in the stderr style,
    // its stdout lines in the stdout style.
    let theme = Theme::builtin("dark").expect("theme");
    let term = render_with(&m, 110, 22, &theme);
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
    let mut m = console(Settings::default());
    m.key(Key::ch('?'));
    insta::assert_snapshot!(render(&m, 110, 40));
    // Scrolled to the end: the keys after `s` (search), down to the last mode's.
    let mut screen = render(&m, 110, 40);
    for _ in 0..200 {
        m.key(Key::ch('j'));
        let next = render(&m, 110, 40);
        if next == screen {
            break;
        }
        screen = next;
    }
    insta::assert_snapshot!("help_overlay_scrolled_to_the_end", screen);
}

/// The text inside the help overlay's box, its rows joined with spaces.
fn help_text(screen: &str) -> String {
    let rows: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let top = rows
        .iter()
        .position(|r| r.iter().collect::<String>().contains("Help: keys"))
        .unwrap_or_else(|| panic!("no help overlay:\n{screen}"));
    let left = rows[top]
        .iter()
        .position(|c| *c == '┏')
        .expect("top-left corner");
    let right = rows[top]
        .iter()
        .rposition(|c| *c == '┓')
        .expect("top-right corner");
    rows[top + 1..]
        .iter()
        .take_while(|r| r.get(left) != Some(&'┗'))
        .map(|r| r[left + 1..right].iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn help_lists_every_binding_of_the_keymap() {
    let mut m = console(Settings::default());
    m.key(Key::ch('?'));
    // Everything the overlay shows while scrolling from top to bottom, its rows joined (a
    // long description wraps onto the next row).
    let mut seen = String::new();
    let mut last = String::new();
    for _ in 0..200 {
        let screen = render(&m, 110, 40);
        if screen == last {
            break;
        }
        seen.push_str(&help_text(&screen));
        seen.push(' ');
        last = screen;
        m.key(Key::ch('j'));
    }
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let seen = words(&seen);
    let modes = [
        Mode::Normal,
        Mode::Filter,
        Mode::Command,
        Mode::Search,
        Mode::Confirm,
        Mode::Runs,
        Mode::Heists,
        Mode::Ask,
    ];
    for mode in modes {
        for b in m.keymap.bindings(mode) {
            assert!(
                seen.contains(&words(&b.desc)),
                "{mode:?}: {:?} ({}) is not in the help",
                b.desc,
                b.keys
                    .iter()
                    .map(|k| k.label())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
}

#[test]
fn confirm_dialog_for_dangerous_command() {
    let settings = Settings {
        dangerous: vec![Regex::new(r"\breboot\b").expect("regex")],
        ..Settings::default()
    };
    let mut m = console(settings);
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
    let mut m = model(hosts, Settings::default());
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
