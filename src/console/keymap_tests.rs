use std::path::Path;

use super::*;

#[test]
fn key_names_parse() {
    assert_eq!(Key::parse("g"), Ok(Key::ch('g')));
    assert_eq!(Key::parse("<C-k>"), Ok(Key::ctrl('k')));
    assert_eq!(Key::parse("<Space>"), Ok(Key::ch(' ')));
    assert_eq!(Key::parse("<C-Space>"), Ok(Key::ctrl(' ')));
    assert_eq!(Key::parse("<S-Tab>"), Ok(Key::plain(KeyCode::BackTab)));
    assert_eq!(Key::parse("<PgDn>"), Ok(Key::plain(KeyCode::PageDown)));
    assert_eq!(Key::parse("<C-\\>"), Ok(Key::ctrl('\\')));
    assert!(Key::parse("<Bogus>").is_err());
    assert!(Key::parse("ab").is_err());
    assert_eq!(Key::ctrl('k').label(), "<C-k>");
}

#[test]
fn defaults_cover_the_documented_keys() {
    let km = Keymap::load(None).expect("built-in keymap");
    let n = Mode::Normal;
    assert_eq!(km.lookup(n, &Key::ch(' ')), Some(&Action::ToggleMark));
    assert_eq!(km.lookup(n, &Key::ctrl(' ')), Some(&Action::MarkRange));
    assert_eq!(km.lookup(n, &Key::ch('a')), Some(&Action::MarkAll));
    assert_eq!(km.lookup(n, &Key::ctrl('\\')), Some(&Action::ClearMarks));
    assert_eq!(km.lookup(n, &Key::ch('/')), Some(&Action::Filter));
    assert_eq!(km.lookup(n, &Key::ch(':')), Some(&Action::Command));
    assert_eq!(km.lookup(n, &Key::ch('?')), Some(&Action::Help));
    assert_eq!(km.lookup(n, &Key::ch('q')), Some(&Action::Quit));
    assert_eq!(km.lookup(n, &Key::ctrl('k')), Some(&Action::KillAll));
    assert_eq!(
        km.lookup(n, &Key::plain(KeyCode::Tab)),
        Some(&Action::FocusNext)
    );
    assert_eq!(km.lookup(n, &Key::ch('j')), Some(&Action::Down));
    assert_eq!(
        km.lookup(n, &Key::plain(KeyCode::Down)),
        Some(&Action::Down)
    );
    assert_eq!(km.lookup(Mode::Filter, &Key::ch('j')), None);
    for mode in [
        Mode::Normal,
        Mode::Filter,
        Mode::Command,
        Mode::Help,
        Mode::Confirm,
    ] {
        assert!(
            km.bindings(mode).iter().all(|b| !b.desc.is_empty()),
            "{mode:?}"
        );
    }
}

#[test]
fn user_file_overrides_and_unbinds() {
    let mut km = Keymap::load(None).expect("built-in");
    let user = r#"
[[normal]]
on = "m"
run = "toggle-mark"
desc = "Mark (my way)"

[[normal]]
on = "<Space>"
run = "noop"

[[normal]]
on = "q"
run = "help"
desc = "q is help now"
"#;
    km.merge(Keymap::parse(user, Path::new("user.toml")).expect("user keymap"));
    let n = Mode::Normal;
    assert_eq!(km.lookup(n, &Key::ch('m')), Some(&Action::ToggleMark));
    assert_eq!(km.lookup(n, &Key::ch(' ')), None);
    assert_eq!(km.lookup(n, &Key::ch('q')), Some(&Action::Help));
    // untouched defaults survive
    assert_eq!(km.lookup(n, &Key::ch('a')), Some(&Action::MarkAll));
    // the help lists the user's description, not a shadowed default
    let descs: Vec<_> = km.bindings(n).iter().map(|b| b.desc.as_str()).collect();
    assert!(descs.contains(&"q is help now"));
    // quit keeps its other key, and `q` is no longer listed for it
    assert_eq!(km.lookup(n, &Key::ctrl('c')), Some(&Action::Quit));
    let quit = km
        .bindings(n)
        .iter()
        .find(|b| b.action == Action::Quit)
        .expect("quit");
    assert_eq!(quit.keys, vec![Key::ctrl('c')]);
}

#[test]
fn errors_name_file_line_and_column() {
    let bad = "[[normal]]\non = \"x\"\nrun = \"explode\"\n";
    let err = Keymap::parse(bad, Path::new("/tmp/k.toml")).expect_err("unknown action");
    assert!(err.contains("/tmp/k.toml:3:7"), "{err}");
    assert!(err.contains("explode"), "{err}");
    let bad_key = "[[normal]]\non = \"<Hyper-x>\"\nrun = \"quit\"\n";
    let err = Keymap::parse(bad_key, Path::new("k.toml")).expect_err("bad key");
    assert!(err.contains("k.toml:3"), "{err}");
}
