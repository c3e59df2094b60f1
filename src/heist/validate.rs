//! From a parsed file to checked definitions: durations, batches, regexes, templates,
//! variables (every `${name}` must be defined by `vars`, a profile, a built-in or the capture
//! of an earlier step), step shapes. Every problem becomes a `file:line:col` diagnostic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use toml::Spanned;

use super::def::*;
use super::diag::{Diagnostic, Diagnostics, Source};
use super::format::{self, RawBatch, RawHeist, RawStep, RawValue};
use super::vars::{definable, Template};

/// Largest file a `fetch` reads unless it says otherwise.
pub const DEFAULT_FETCH_MAX: u64 = 8 << 20;

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

struct Checker<'a> {
    src: Source<'a>,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn err(&mut self, offset: usize, msg: impl Into<String>) {
        let d = self.src.at(offset, msg);
        self.diags.push(d);
    }

    fn loc(&self, offset: usize) -> Loc {
        let (line, col) = self.src.line_col(offset);
        Loc {
            path: self.src.path.to_path_buf(),
            line,
            col,
        }
    }

    fn duration(&mut self, s: &Spanned<String>, what: &str) -> Option<Duration> {
        match crate::cli::parse_duration(s.get_ref()) {
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

    fn template(&mut self, s: &Spanned<String>) -> Option<Template> {
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
            if let Some(step) = self.step(raw, &defined, None) {
                defined.extend(step.defines());
                steps.push(step);
            }
        }
        let mut rollback = Vec::new();
        for raw in h.rollback {
            if let Some(step) = self.step(raw, &defined, Some(&steps)) {
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
        })
    }

    fn selection(&mut self, s: &Spanned<String>) {
        if let Err(e) = crate::select::parse(s.get_ref()) {
            let at = self.src.in_string(&s.span(), s.get_ref(), e.pos);
            self.err(at, format!("select: {}", e.message));
        }
    }

    /// `main` holds the main steps when checking a rollback step (for `undo`).
    fn step(
        &mut self,
        raw: RawStep,
        defined: &BTreeSet<String>,
        main: Option<&[StepDef]>,
    ) -> Option<StepDef> {
        let before = self.diags.len();
        let start = raw.name.span().start;
        let step_name = raw.name.get_ref().clone();
        let kinds = [raw.run.is_some(), raw.put.is_some(), raw.fetch.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if kinds != 1 {
            self.err(
                start,
                format!("step `{step_name}`: give exactly one of `run`, `put` or `fetch`"),
            );
        }
        if raw.local && (raw.put.is_some() || raw.fetch.is_some()) {
            self.err(
                start,
                format!("step `{step_name}`: `local = true` only goes with `run`"),
            );
        }
        let timeout = raw
            .timeout
            .as_ref()
            .and_then(|t| self.duration(t, "timeout"));
        let mut captures = Vec::new();
        for (name, re) in &raw.capture {
            if !definable(name.get_ref()) {
                self.err(
                    name.span().start,
                    format!("capture: bad variable name `{}`", name.get_ref()),
                );
            }
            match Regex::new(re.get_ref()) {
                Ok(regex) => captures.push(Capture {
                    name: name.get_ref().clone(),
                    regex,
                }),
                Err(e) => {
                    let msg = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("invalid")
                        .trim()
                        .trim_start_matches("error: ")
                        .to_string();
                    self.err(
                        re.span().start,
                        format!("capture `{}`: bad regex: {msg}", name.get_ref()),
                    );
                }
            }
        }
        if !raw.capture.is_empty() && raw.run.is_none() {
            self.err(
                start,
                format!("step `{step_name}`: `capture` needs a `run` step"),
            );
        }
        let on_fail = match &raw.on_fail {
            None => OnFail {
                retry: 0,
                backoff: Duration::ZERO,
                then: if main.is_some() {
                    Then::Continue
                } else {
                    Then::Abort
                },
            },
            Some(o) => {
                let of = o.get_ref();
                if of.retry > 100 {
                    self.err(o.span().start, "on_fail.retry: at most 100");
                }
                let backoff = of
                    .backoff
                    .as_ref()
                    .and_then(|b| self.duration(b, "on_fail.backoff"))
                    .unwrap_or(Duration::ZERO);
                let then = of.then.unwrap_or(if main.is_some() {
                    Then::Continue
                } else {
                    Then::Abort
                });
                if main.is_some() && then == Then::Rollback {
                    self.err(
                        o.span().start,
                        "a rollback step cannot itself roll back (use abort, continue or ask)",
                    );
                }
                OnFail {
                    retry: of.retry,
                    backoff,
                    then,
                }
            }
        };
        let mut undo = None;
        match (&raw.undo, main) {
            (Some(u), Some(main)) => match main.iter().position(|s| &s.name == u.get_ref()) {
                Some(i) => undo = Some(i),
                None => self.err(
                    u.span().start,
                    format!("undo: no step named `{}` in this heist", u.get_ref()),
                ),
            },
            (Some(u), None) => self.err(u.span().start, "`undo` belongs in [[…rollback]] steps"),
            (None, _) => {}
        }
        let action = self.action(&raw, &step_name)?;
        let step = StepDef {
            name: step_name.clone(),
            loc: self.loc(start),
            action,
            local: raw.local,
            timeout,
            exits: raw.exits.clone().unwrap_or_else(|| vec![0]),
            captures,
            on_fail,
            undo,
        };
        self.check_vars(&step, &raw, defined, main.is_some());
        (self.diags.len() == before).then_some(step)
    }

    fn action(&mut self, raw: &RawStep, step_name: &str) -> Option<Action> {
        if let Some(r) = &raw.run {
            return self.template(r).map(Action::Run);
        }
        if let Some(p) = &raw.put {
            let pr = p.get_ref();
            let to = self.template(&pr.to)?;
            let source = match (&pr.from, &pr.content) {
                (Some(f), None) => {
                    let base = self.src.path.parent().unwrap_or(Path::new("."));
                    PutSource::File(base.join(f.get_ref()))
                }
                (None, Some(c)) => PutSource::Content(self.template(c)?),
                _ => {
                    self.err(p.span().start, format!("step `{step_name}`: put needs exactly one of `from` (a local file) or `content`"));
                    return None;
                }
            };
            return Some(Action::Put {
                to,
                source,
                mode: pr.mode.unwrap_or(0o644),
            });
        }
        if let Some(f) = &raw.fetch {
            let fr = f.get_ref();
            let from = self.template(&fr.from)?;
            let to = self.template(&fr.to)?;
            return Some(Action::Fetch {
                from,
                to,
                max_size: fr.max_size.unwrap_or(DEFAULT_FETCH_MAX),
            });
        }
        None
    }

    /// Every `${name}` of the step must be known: built-ins, `vars`/profiles, or captured by
    /// an earlier step (any main step, for rollback steps).
    fn check_vars(
        &mut self,
        step: &StepDef,
        raw: &RawStep,
        defined: &BTreeSet<String>,
        rollback: bool,
    ) {
        let spans: Vec<&Spanned<String>> = [raw.run.as_ref()]
            .into_iter()
            .flatten()
            .chain(raw.put.iter().flat_map(|p| {
                [Some(&p.get_ref().to), p.get_ref().content.as_ref()]
                    .into_iter()
                    .flatten()
            }))
            .chain(
                raw.fetch
                    .iter()
                    .flat_map(|f| [&f.get_ref().from, &f.get_ref().to]),
            )
            .collect();
        let later_captures: BTreeMap<String, String> = if rollback {
            BTreeMap::new()
        } else {
            step.defines()
                .into_iter()
                .map(|d| (d, step.name.clone()))
                .collect()
        };
        for s in spans {
            let Ok(t) = Template::parse(s.get_ref()) else {
                continue;
            };
            for (name, at) in t.vars() {
                if name == "host" || name.starts_with("tag.") || defined.contains(name) {
                    continue;
                }
                let pos = self.src.in_string(&s.span(), s.get_ref(), at);
                let msg = match later_captures.get(name) {
                    Some(_) => format!("step `{}`: `${{{name}}}` is captured by this same step, so it is not known yet when it runs", step.name),
                    None => format!("step `{}`: unknown variable `${{{name}}}` (define it in `vars`, a profile or `params`, capture it in an earlier step, or write `$${{` for a literal `${{`)", step.name),
                };
                self.err(pos, msg);
            }
        }
    }
}
