//! Checking one step of a heist: its shape (run / put / fetch), timeout, captures, failure
//! policy, `undo`, and that every `${name}` it uses is defined when it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use toml::Spanned;

use super::def::*;
use super::format::RawStep;
use super::validate::{Checker, DEFAULT_FETCH_MAX};
use super::vars::{definable, Template};

impl Checker<'_> {
    /// `main` holds the main steps when checking a rollback step (for `undo`).
    pub(super) fn step(
        &mut self,
        raw: RawStep,
        defined: &BTreeSet<String>,
        main: Option<&[StepDef]>,
        heist_become: Option<&str>,
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
        let stdin = match (&raw.stdin, &raw.stdin_from) {
            (Some(_), Some(s)) => {
                self.err(
                    s.span().start,
                    format!("step `{step_name}`: give `stdin` or `stdin_from`, not both"),
                );
                None
            }
            (Some(s), None) => self.template(s).map(StdinSource::Text),
            (None, Some(f)) => {
                let base = self.src.path.parent().unwrap_or(Path::new("."));
                Some(StdinSource::File(base.join(f.get_ref())))
            }
            (None, None) => None,
        };
        if let (Some(s), None) = (raw.stdin.as_ref().or(raw.stdin_from.as_ref()), &raw.run) {
            self.err(
                s.span().start,
                format!("step `{step_name}`: `stdin` and `stdin_from` go with `run`"),
            );
        }
        let become_user = self.become_of(&raw.become_, &raw.become_user, heist_become);
        if become_user.is_some() && raw.local {
            let at = raw
                .become_
                .as_ref()
                .map(|b| b.span().start)
                .or(raw.become_user.as_ref().map(|b| b.span().start))
                .unwrap_or(start);
            self.err(
                at,
                format!(
                    "step `{step_name}`: `become` applies to steps on hosts (`run`, `put`, \
                     `fetch`), not to `local` ones; give those `become = false`"
                ),
            );
        }
        let action = self.action(&raw, &step_name)?;
        let step = StepDef {
            name: step_name.clone(),
            loc: self.loc(start),
            action,
            local: raw.local,
            stdin,
            timeout,
            exits: raw.exits.clone().unwrap_or_else(|| vec![0]),
            captures,
            on_fail,
            undo,
            become_user,
        };
        self.check_vars(&step, &raw, defined, main.is_some());
        (self.diags.len() == before).then_some(step)
    }

    /// The user a step (or, with no `inherited`, a heist) becomes: `become_user` implies
    /// `become`; `become = false` turns an inherited one off; `None` means no sudo.
    pub(super) fn become_of(
        &mut self,
        become_: &Option<Spanned<bool>>,
        user: &Option<Spanned<String>>,
        inherited: Option<&str>,
    ) -> Option<String> {
        if let Some(u) = user {
            let name = u.get_ref();
            let bad = name.is_empty()
                || name.starts_with('-')
                || !name
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '#'));
            if bad {
                self.err(
                    u.span().start,
                    format!("become_user {name:?}: expected a user name (or #uid)"),
                );
            }
            if become_.as_ref().is_some_and(|b| !*b.get_ref()) {
                self.err(u.span().start, "become_user with become = false");
            }
            return Some(name.clone());
        }
        match become_.as_ref().map(|b| *b.get_ref()) {
            Some(true) => Some(inherited.unwrap_or("root").to_string()),
            Some(false) => None,
            None => inherited.map(str::to_string),
        }
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
        let spans: Vec<&Spanned<String>> = [raw.run.as_ref(), raw.stdin.as_ref()]
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
