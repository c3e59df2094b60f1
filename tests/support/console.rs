//! The console's Model without a terminal: built on a fleet of local hosts with the built-in
//! keymap, driven by keys and daemon events, rendered through ratatui's TestBackend.

use crew::console::action::Action;
use crew::console::app::{Model, Settings};
use crew::console::history::History;
use crew::console::keymap::{Key, Keymap};
use crew::console::theme::Theme;
use crew::console::ui;
use crew::inventory::Inventory;
use crew::model::{Exit, Host, Verdict};
use crew::proto::daemon::{Event, HostEvent};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

/// A local host with `tags`.
pub fn host(name: &str, tags: &[&str]) -> Host {
    let mut h = Host::local(name);
    h.tags = tags.iter().map(|s| s.to_string()).collect();
    h
}

/// The console's Model on `hosts`, with the built-in keymap and no history.
pub fn model(hosts: Vec<Host>, settings: Settings) -> Model {
    let km = Keymap::load(None).expect("built-in keymap");
    Model::new(
        Inventory::from_hosts(hosts),
        km,
        settings,
        History::default(),
    )
}

/// Type `s` one character at a time.
pub fn typ(m: &mut Model, s: &str) {
    for c in s.chars() {
        m.key(Key::ch(c));
    }
}

/// The screen of a `w`×`h` terminal after drawing `m` with the dark theme.
pub fn render(m: &Model, w: u16, h: u16) -> String {
    render_with(m, w, h, &Theme::builtin("dark").expect("theme"))
        .backend()
        .to_string()
}

/// The terminal after drawing `m` with `theme` (to look at cell styles).
pub fn render_with(m: &Model, w: u16, h: u16, theme: &Theme) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    term.draw(|f| ui::draw(f, m, theme)).expect("draw");
    term
}

/// A daemon event for `host` of the run the console started with `tag`.
pub fn feed(m: &mut Model, tag: u64, host: &str, event: HostEvent) {
    let event = Event::Host {
        run_id: 3,
        host: host.into(),
        event,
    };
    m.update(Action::Daemon { tag, event });
}

/// A normal exit with `code` after `wall_ms`.
pub fn exit(code: i32, wall_ms: u64) -> HostEvent {
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
        verdict: Verdict::from_exit(&exit, false),
        exit,
    }
}
