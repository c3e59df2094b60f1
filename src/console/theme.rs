//! Themes as data: TOML files in `themes/` (`dark` is the default and is embedded, as are
//! `light` and `high-contrast`); a user theme is `<config dir>/themes/<name>.toml` or a path.
//! Styles are named by dotted scopes (`exit.fail`) that fall back to their parent (`exit`).
//! With `NO_COLOR` set, colours are dropped and only modifiers (bold, reverse…) remain.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

pub const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

#[derive(Debug, Clone, Default)]
pub struct Theme {
    pub name: String,
    styles: HashMap<String, Style>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTheme {
    name: Option<String>,
    inherits: Option<String>,
    #[serde(default)]
    palette: BTreeMap<String, String>,
    #[serde(default)]
    styles: BTreeMap<String, RawStyle>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawStyle {
    Fg(String),
    Full {
        fg: Option<String>,
        bg: Option<String>,
        #[serde(default)]
        modifiers: Vec<String>,
    },
}

impl Theme {
    /// Pick a theme by `--theme`/config name or path; `None` is the default (`dark`).
    pub fn load(choice: Option<&str>, config_dir: &Path, no_color: bool) -> Result<Theme, String> {
        let name = choice.unwrap_or("dark");
        let user = config_dir.join("themes").join(format!("{name}.toml"));
        let t = if Path::new(name).extension().is_some_and(|e| e == "toml") {
            let p = Path::new(name);
            let text = std::fs::read_to_string(p).map_err(|e| format!("theme {name}: {e}"))?;
            Theme::parse(&text, p, config_dir)?
        } else if user.exists() {
            let text =
                std::fs::read_to_string(&user).map_err(|e| format!("{}: {e}", user.display()))?;
            Theme::parse(&text, &user, config_dir)?
        } else {
            Theme::builtin(name)?
        };
        Ok(if no_color { t.without_colors() } else { t })
    }

    pub fn builtin(name: &str) -> Result<Theme, String> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let names: Vec<_> = BUILTIN.iter().map(|(n, _)| *n).collect();
            format!("unknown theme {name:?} (built in: {})", names.join(", "))
        })?;
        Theme::parse(
            text,
            Path::new(&format!("themes/{name}.toml")),
            Path::new(""),
        )
    }

    pub fn parse(text: &str, path: &Path, config_dir: &Path) -> Result<Theme, String> {
        let raw: RawTheme = toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut theme = match raw.inherits.as_deref() {
            Some(parent) if parent != raw.name.as_deref().unwrap_or("") => {
                Theme::load(Some(parent), config_dir, false)?
            }
            _ => Theme::default(),
        };
        theme.name = raw.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let color = |s: &str| -> Result<Color, String> {
            let v = raw.palette.get(s).map(String::as_str).unwrap_or(s);
            Color::from_str(v).map_err(|_| format!("{}: bad colour {s:?}", path.display()))
        };
        for (scope, rs) in &raw.styles {
            let style = match rs {
                RawStyle::Fg(fg) => Style::default().fg(color(fg)?),
                RawStyle::Full { fg, bg, modifiers } => {
                    let mut st = Style::default();
                    if let Some(fg) = fg {
                        st = st.fg(color(fg)?);
                    }
                    if let Some(bg) = bg {
                        st = st.bg(color(bg)?);
                    }
                    for m in modifiers {
                        st = st.add_modifier(modifier(m).ok_or_else(|| {
                            format!("{}: {scope}: unknown modifier {m:?}", path.display())
                        })?);
                    }
                    st
                }
            };
            theme.styles.insert(scope.clone(), style);
        }
        Ok(theme)
    }

    /// The style of `scope`, falling back to its parents (`exit.fail` → `exit`).
    pub fn get(&self, scope: &str) -> Style {
        let mut s = scope;
        loop {
            if let Some(st) = self.styles.get(s) {
                return *st;
            }
            match s.rfind('.') {
                Some(i) => s = &s[..i],
                None => return Style::default(),
            }
        }
    }

    pub fn without_colors(mut self) -> Theme {
        for st in self.styles.values_mut() {
            st.fg = None;
            st.bg = None;
        }
        self
    }
}

fn modifier(m: &str) -> Option<Modifier> {
    Some(match m {
        "bold" => Modifier::BOLD,
        "dim" => Modifier::DIM,
        "italic" => Modifier::ITALIC,
        "underlined" | "underline" => Modifier::UNDERLINED,
        "reversed" | "reverse" => Modifier::REVERSED,
        "crossed_out" => Modifier::CROSSED_OUT,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_and_differ() {
        let dark = Theme::builtin("dark").expect("dark");
        let light = Theme::builtin("light").expect("light");
        let hc = Theme::builtin("high-contrast").expect("high-contrast");
        assert_eq!(dark.name, "dark");
        assert_ne!(dark.get("output.stderr"), light.get("output.stderr"));
        assert!(hc
            .get("ui.selected")
            .add_modifier
            .contains(Modifier::REVERSED));
        assert!(Theme::builtin("nope").is_err());
    }

    #[test]
    fn scopes_fall_back_and_palette_resolves() {
        let t = Theme::parse(
            "[palette]\nred = \"#ff0000\"\n[styles]\nexit = \"red\"\n\"exit.ok\" = { fg = \"green\", modifiers = [\"bold\"] }\n",
            Path::new("t.toml"),
            Path::new(""),
        )
        .expect("theme");
        assert_eq!(t.get("exit.fail").fg, Some(Color::Rgb(255, 0, 0)));
        assert_eq!(t.get("exit.ok").fg, Some(Color::Green));
        assert_eq!(t.get("nothing.here"), Style::default());
        let err = Theme::parse(
            "[styles]\nx = \"notacolour\"\n",
            Path::new("t.toml"),
            Path::new(""),
        )
        .expect_err("bad colour");
        assert!(
            err.contains("t.toml") && err.contains("notacolour"),
            "{err}"
        );
    }

    #[test]
    fn no_color_keeps_only_modifiers() {
        let t = Theme::load(None, Path::new("/nonexistent"), true).expect("dark");
        let st = t.get("ui.selected");
        assert_eq!((st.fg, st.bg), (None, None));
        assert!(!st.add_modifier.is_empty());
    }

    #[test]
    fn user_theme_inherits_builtin() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("themes")).expect("mkdir");
        std::fs::write(
            dir.path().join("themes/mine.toml"),
            "inherits = \"light\"\n[styles]\n\"exit.fail\" = \"magenta\"\n",
        )
        .expect("write");
        let t = Theme::load(Some("mine"), dir.path(), false).expect("mine");
        let light = Theme::builtin("light").expect("light");
        assert_eq!(t.get("exit.fail").fg, Some(Color::Magenta));
        assert_eq!(t.get("output.stderr"), light.get("output.stderr"));
    }
}
