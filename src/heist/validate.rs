//! From a parsed file to checked definitions: durations, batches, regexes, templates,
//! variables (every `${name}` must be defined by `vars`, a profile, a built-in or the capture
//! of an earlier step), step shapes. Every problem becomes a `file:line:col` diagnostic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::def::*;
use super::diag::{Diagnostic, Diagnostics, Source};
use super::format::{self, RawBatch, RawHeist, RawValue};
use super::vars::{definable, Template};

/// Largest file a `fetch` reads unless it says otherwise: no limit but the disk (the copy
/// streams; nothing holds the whole file).
pub const DEFAULT_FETCH_MAX: u64 = u64::MAX;

/// Parse and check a heist file's text.
pub fn load_str(text: &str, path: &Path) -> Result<Vec<HeistDef>, Diagnostics> {
    let raw = format::parse(text, path).map_err(|d| Diagnostics(vec![d]))?;
    let mut v = Checker {
        src: Source { path, text },
        diags: Vec::new(),
    };
    let heists: Vec<HeistDef> = raw
        .heist
        .into_iter()
        .filter_map(|(name, h)| v.heist(name, h))
        .collect();
    if v.diags.is_empty() {
        Ok(heists)
    } else {
        v.diags.sort_by_key(|d| (d.line, d.col));
        Err(Diagnostics(v.diags))
    }
}

/// Read and check a heist file.
pub fn load_file(path: &Path) -> Result<Vec<HeistDef>, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            path: path.to_path_buf(),
            line: 0,
            col: 0,
            message: format!("cannot read: {e}"),
        }])
    })?;
    load_str(&text, path)
}

pub(super) struct Checker<'a> {
    pub src: Source<'a>,
    pub diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(super) fn err(&mut self, offset: usize, msg: impl Into<String>) {
        let d = self.src.at(offset, msg);
        self.diags.push(d);
    }

    pub(super) fn loc(&self, offset: usize) -> Loc {
        let (line, col) = self.src.line_col(offset);
        Loc {
            path: self.src.path.to_path_buf(),
            line,
            col,
        }
    }

    pub(super) fn duration(&mut self, s: &Spanned<String>, what: &str) -> Option<Duration> {
        match crate::duration::parse(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(s.span().start, format!("{what}: {e}"));
                None
            }
        }
    }

    fn batch(&mut self, b: &Spanned<RawBatch>) -> Option<Batch> {
        let parsed = match b.get_ref() {
            RawBatch::Count(n) if *n >= 1 => Some(Batch::Count(*n as usize)),
            RawBatch::Count(_) => None,
            RawBatch::Text(t) => match t.trim().strip_suffix('%') {
                Some(p) => p
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|p| (1..=100).contains(p))
                    .map(Batch::Percent),
                None => t
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .map(Batch::Count),
            },
        };
        if parsed.is_none() {
            self.err(
                b.span().start,
                "batch: expected a host count (at least 1) or a percentage such as \"25%\"",
            );
        }
        parsed
    }

    fn vars(
        &mut self,
        raw: BTreeMap<Spanned<String>, Spanned<RawValue>>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in raw {
            if !definable(k.get_ref()) {
                self.err(k.span().start, format!("bad variable name `{}` (letters, digits and `_`; `host` and `tag.*` are built in)", k.get_ref()));
            }
            out.insert(k.into_inner(), v.get_ref().to_text());
        }
        out
    }

    pub(super) fn template(&mut self, s: &Spanned<String>) -> Option<Template> {
        match Template::parse(s.get_ref()) {
            Ok(t) => Some(t),
            Err(e) => {
                let at = self.src.in_string(&s.span(), s.get_ref(), e.at);
                self.err(at, e.message);
                None
            }
        }
    }

    fn heist(&mut self, name: Spanned<String>, h: RawHeist) -> Option<HeistDef> {
        let before = self.diags.len();
        let loc = self.loc(name.span().start);
        self.selection(&h.select);
        let batch = h.batch.as_ref().and_then(|b| self.batch(b));
        let vars = self.vars(h.vars);
        let mut profiles = BTreeMap::new();
        for (pname, p) in h.profile {
            if let Some(s) = &p.select {
                self.selection(s);
            }
            let pb = p.batch.as_ref().and_then(|b| self.batch(b));
            let pv = self.vars(p.vars);
            profiles.insert(
                pname.into_inner(),
                ProfileDef {
                    select: p.select.map(Spanned::into_inner),
                    batch: pb,
                    vars: pv,
                },
            );
        }
        if h.steps.is_empty() {
            self.err(
                name.span().start,
                format!(
                    "heist `{}` has no steps (add a [[heist.{}.step]])",
                    name.get_ref(),
                    name.get_ref()
                ),
            );
        }
        let mut params = Vec::new();
        for p in &h.params {
            if !definable(p.get_ref()) {
                self.err(
                    p.span().start,
                    format!("params: bad variable name `{}`", p.get_ref()),
                );
            }
            params.push(p.get_ref().clone());
        }
        let mut defined: BTreeSet<String> = vars.keys().chain(params.iter()).cloned().collect();
        for p in profiles.values() {
            defined.extend(p.vars.keys().cloned());
        }
        let become_ = self.become_of(&h.become_, &h.become_user, None);
        let mut steps = Vec::new();
        let mut names = BTreeSet::new();
        for raw in h.steps {
            if !names.insert(raw.name.get_ref().clone()) {
                self.err(
                    raw.name.span().start,
                    format!(
                        "a step named `{}` already exists in this heist",
                        raw.name.get_ref()
                    ),
                );
            }
            if let Some(step) = self.step(raw, &defined, None, become_.as_deref()) {
                defined.extend(step.defines());
                steps.push(step);
            }
        }
        let ask_timeout = h
            .ask_timeout
            .as_ref()
            .and_then(|t| self.duration(t, "ask_timeout"));
        let ask_default = match &h.ask_default {
            None => super::events::Choice::Abort,
            Some(c) => match super::events::Choice::parse(c.get_ref()) {
                Some(choice) => choice,
                None => {
                    self.err(
                        c.span().start,
                        format!(
                            "ask_default: `{}` is not a decision: advance, retry, rollback or abort",
                            c.get_ref()
                        ),
                    );
                    super::events::Choice::Abort
                }
            },
        };
        if ask_default == super::events::Choice::Retry && ask_timeout.is_some() {
            if let Some(c) = &h.ask_default {
                self.err(
                    c.span().start,
                    "ask_default: `retry` would ask again and again; pick advance, rollback or abort",
                );
            }
        }
        let mut rollback = Vec::new();
        for raw in h.rollback {
            if let Some(step) = self.step(raw, &defined, Some(&steps), become_.as_deref()) {
                rollback.push(step);
            }
        }
        (self.diags.len() == before).then(|| HeistDef {
            name: name.into_inner(),
            loc,
            description: h.description,
            select: h.select.into_inner(),
            batch,
            vars,
            params,
            steps,
            rollback,
            profiles,
            ask_timeout,
            ask_default,
        })
    }

    fn selection(&mut self, s: &Spanned<String>) {
        if let Err(e) = crate::select::parse(s.get_ref()) {
            let at = self.src.in_string(&s.span(), s.get_ref(), e.pos);
            self.err(at, format!("select: {}", e.message));
        }
    }
}
