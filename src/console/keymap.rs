//! Keys as data: the default keymap is `keymap.toml` embedded in the binary; the user's
//! `<config dir>/keymap.toml` is merged over it (its bindings win, `run = "noop"` unbinds).
//! Each binding has a `desc` (the help overlay) and an optional short `hint` (status bar).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::action::Action;

pub const DEFAULT_KEYMAP: &str = include_str!("keymap.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyCode {
    Char(char),
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    Delete,
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    PageUp,
    PageDown,
    F(u8),
}

/// A key press. For characters, shift is folded into the character (`G`, `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub const fn plain(code: KeyCode) -> Key {
        Key {
            code,
            ctrl: false,
            alt: false,
        }
    }
    pub const fn ch(c: char) -> Key {
        Key::plain(KeyCode::Char(c))
    }
    pub const fn ctrl(c: char) -> Key {
        Key {
            code: KeyCode::Char(c),
            ctrl: true,
            alt: false,
        }
    }

    /// Parse `"g"`, `"G"`, `"<C-k>"`, `"<Space>"`, `"<S-Tab>"`, `"<A-Enter>"`, `"<F5>"`.
    pub fn parse(s: &str) -> Result<Key, String> {
        let mut chars = s.chars();
        if let (Some(c), None) = (chars.next(), chars.next()) {
            return Ok(Key::ch(c));
        }
        let inner = s
            .strip_prefix('<')
            .and_then(|r| r.strip_suffix('>'))
            .ok_or_else(|| format!("bad key {s:?}: write one character or <Name> (e.g. <C-k>)"))?;
        let mut key = Key::ch(' ');
        let mut rest = inner;
        let mut shift = false;
        while rest.len() > 2 && rest.as_bytes()[1] == b'-' {
            match &rest[..1] {
                "C" | "c" => key.ctrl = true,
                "A" | "a" | "M" | "m" => key.alt = true,
                "S" | "s" => shift = true,
                m => return Err(format!("bad modifier {m:?} in key {s:?} (use C-, A-, S-)")),
            }
            rest = &rest[2..];
        }
        key.code = match rest.to_ascii_lowercase().as_str() {
            "space" => KeyCode::Char(' '),
            "enter" | "cr" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" if shift => KeyCode::BackTab,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "bs" | "backspace" => KeyCode::Backspace,
            "del" | "delete" => KeyCode::Delete,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" | "pgup" => KeyCode::PageUp,
            "pagedown" | "pgdn" => KeyCode::PageDown,
            "lt" => KeyCode::Char('<'),
            "gt" => KeyCode::Char('>'),
            f if f.starts_with('f') && f.len() > 1 => f[1..]
                .parse::<u8>()
                .map(KeyCode::F)
                .map_err(|_| format!("bad key {s:?}"))?,
            _ => {
                let mut cs = rest.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) if shift => KeyCode::Char(c.to_ascii_uppercase()),
                    (Some(c), None) => KeyCode::Char(c),
                    _ => return Err(format!("unknown key name {rest:?} in {s:?}")),
                }
            }
        };
        Ok(key)
    }

    /// Display form, as written in a keymap (`<C-k>`, `g`, `<Space>`).
    pub fn label(&self) -> String {
        let name = match self.code {
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) if !self.ctrl && !self.alt => return c.to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::F(n) => format!("F{n}"),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            other => format!("{other:?}"),
        };
        let c = if self.ctrl { "C-" } else { "" };
        let a = if self.alt { "A-" } else { "" };
        format!("<{c}{a}{name}>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Normal,
    Filter,
    Command,
    Search,
    Help,
    Confirm,
    Runs,
    /// The heist picker (`h`).
    Heists,
    /// Typing the picked heist's variables.
    HeistVars,
    /// The `ask` prompt of a running heist.
    Ask,
    /// Typing the name of a heist to save (`ctrl-s`).
    SaveHeist,
    /// Typing a line for the stdin of running jobs (`>`).
    Send,
    /// Typing the sudo password (masked).
    Password,
    /// A run's question about unknown host keys.
    HostKeys,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Filter => "filter",
            Mode::Command => "command",
            Mode::Search => "search",
            Mode::Help => "help",
            Mode::Confirm => "confirm",
            Mode::Runs => "runs",
            Mode::Heists => "heists",
            Mode::HeistVars => "heist-vars",
            Mode::Ask => "ask",
            Mode::SaveHeist => "save-heist",
            Mode::Send => "send",
            Mode::Password => "password",
            Mode::HostKeys => "host-keys",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub keys: Vec<Key>,
    pub action: Action,
    pub desc: String,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Keymap {
    modes: BTreeMap<Mode, Vec<Binding>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    on: OneOrMany,
    run: toml::Spanned<String>,
    #[serde(default)]
    desc: String,
    hint: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Keymap {
    /// The embedded defaults with the user's file (if any) merged over them.
    pub fn load(user_file: Option<&Path>) -> Result<Keymap, String> {
        let mut km = Keymap::parse(DEFAULT_KEYMAP, Path::new("<built-in keymap.toml>"))?;
        if let Some(p) = user_file.filter(|p| p.exists()) {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            km.merge(Keymap::parse(&text, p)?);
        }
        Ok(km)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Keymap, String> {
        let raw: BTreeMap<Mode, Vec<RawBinding>> =
            toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut modes = BTreeMap::new();
        for (mode, list) in raw {
            let mut out = Vec::new();
            for rb in list {
                let at = || {
                    let (l, c) = line_col(text, rb.run.span().start);
                    format!("{}:{l}:{c}", path.display())
                };
                let name = rb.run.get_ref();
                let action = Action::from_name(name)
                    .ok_or_else(|| format!("{}: unknown action {name:?}", at()))?;
                let names = match rb.on {
                    OneOrMany::One(s) => vec![s],
                    OneOrMany::Many(v) => v,
                };
                let keys = names
                    .iter()
                    .map(|k| Key::parse(k))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{}: {e}", at()))?;
                out.push(Binding {
                    keys,
                    action,
                    desc: rb.desc,
                    hint: rb.hint,
                });
            }
            modes.insert(mode, out);
        }
        Ok(Keymap { modes })
    }

    /// Merge `user` over `self`: its bindings come first and shadow the same keys.
    pub fn merge(&mut self, user: Keymap) {
        for (mode, mut ub) in user.modes {
            let base = self.modes.entry(mode).or_default();
            for b in base.iter_mut() {
                b.keys.retain(|k| !ub.iter().any(|u| u.keys.contains(k)));
            }
            base.retain(|b| !b.keys.is_empty());
            ub.retain(|b| b.action != Action::Noop);
            ub.append(base);
            *base = ub;
        }
    }

    pub fn lookup(&self, mode: Mode, key: &Key) -> Option<&Action> {
        self.modes
            .get(&mode)?
            .iter()
            .find(|b| b.keys.contains(key))
            .map(|b| &b.action)
    }

    pub fn bindings(&self, mode: Mode) -> &[Binding] {
        self.modes.get(&mode).map(Vec::as_slice).unwrap_or(&[])
    }

    /// First key bound to `action` in `mode` (to name keys in messages).
    pub fn key_for(&self, mode: Mode, action: &Action) -> Option<String> {
        self.bindings(mode)
            .iter()
            .find(|b| &b.action == action)
            .and_then(|b| b.keys.first())
            .map(Key::label)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[cfg(test)]
#[path = "keymap_tests.rs"]
mod tests;
