//! A heist made concrete: its selection resolved to hosts, split into rolling waves, its
//! variables merged (`vars` < profile < `--set`) and every step checked to render on every
//! host before anything runs.

use std::collections::{BTreeMap, BTreeSet};

use super::def::{Batch, HeistDef, StepDef};
use super::vars::{definable, Scope, Template};
use crate::model::Host;

#[derive(Debug, Clone)]
pub struct Plan {
    pub heist: HeistDef,
    pub profile: Option<String>,
    pub selection: String,
    pub batch: Option<Batch>,
    /// `vars`, overridden by the profile's, overridden by `--set`.
    pub globals: BTreeMap<String, String>,
    pub hosts: Vec<Host>,
    /// Indices into `hosts`, one list per wave, in order.
    pub waves: Vec<Vec<usize>>,
}

/// Why a heist cannot run as asked: one line per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError(pub Vec<String>);

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.join("\n"))
    }
}

impl std::error::Error for PlanError {}

/// `k=v` pairs from `--set`.
pub fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>, PlanError> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for s in sets {
        match s.split_once('=') {
            Some((k, v)) if definable(k.trim()) => out.push((k.trim().to_string(), v.to_string())),
            _ => bad.push(format!(
                "--set {s:?}: expected NAME=VALUE (NAME: letters, digits, `_`; not `host` or `tag.*`)"
            )),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(PlanError(bad))
    }
}

/// The selection a heist uses under a profile (the profile's, else the heist's).
pub fn selection<'a>(heist: &'a HeistDef, profile: Option<&str>) -> Result<&'a str, PlanError> {
    match profile {
        None => Ok(&heist.select),
        Some(p) => {
            let Some(prof) = heist.profiles.get(p) else {
                let known: Vec<&str> = heist.profiles.keys().map(String::as_str).collect();
                return Err(PlanError(vec![format!(
                    "heist `{}` has no profile `{p}` (profiles: {})",
                    heist.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )]));
            };
            Ok(prof.select.as_deref().unwrap_or(&heist.select))
        }
    }
}

/// Split `n` hosts into waves of the batch size (one wave when there is no batch).
pub fn waves(n: usize, batch: Option<Batch>) -> Vec<Vec<usize>> {
    let size = batch.map(|b| b.wave_size(n)).unwrap_or(n).max(1);
    (0..n)
        .collect::<Vec<_>>()
        .chunks(size)
        .map(<[usize]>::to_vec)
        .collect()
}

/// Build the plan for hosts already picked by the heist's selection (see [`selection`]).
/// Every `${…}` of every step must resolve on every host, or nothing runs.
pub fn build(
    heist: &HeistDef,
    profile: Option<&str>,
    sets: &[(String, String)],
    hosts: Vec<Host>,
) -> Result<Plan, PlanError> {
    let select = selection(heist, profile)?.to_string();
    let prof = profile.and_then(|p| heist.profiles.get(p));
    let mut globals = heist.vars.clone();
    if let Some(p) = prof {
        globals.extend(p.vars.clone());
    }
    globals.extend(sets.iter().cloned());
    if hosts.is_empty() {
        return Err(PlanError(vec![format!(
            "heist `{}`: selection `{select}` matches no host",
            heist.name
        )]));
    }
    let mut problems = Vec::new();
    for p in &heist.params {
        if !globals.contains_key(p) {
            problems.push(format!(
                "{}: heist `{}` needs --set {p}=VALUE",
                heist.loc, heist.name
            ));
        }
    }
    for host in &hosts {
        let mut captured: BTreeSet<String> = BTreeSet::new();
        for step in &heist.steps {
            check_step(step, &globals, host, &captured, &mut problems);
            captured.extend(step.defines());
        }
        for step in &heist.rollback {
            check_step(step, &globals, host, &captured, &mut problems);
        }
    }
    if !problems.is_empty() {
        return Err(PlanError(problems));
    }
    let batch = prof.and_then(|p| p.batch).or(heist.batch);
    Ok(Plan {
        heist: heist.clone(),
        profile: profile.map(str::to_string),
        selection: select,
        batch,
        waves: waves(hosts.len(), batch),
        globals,
        hosts,
    })
}

fn check_step(
    step: &StepDef,
    globals: &BTreeMap<String, String>,
    host: &Host,
    captured: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let empty = BTreeMap::new();
    let scope = Scope {
        globals,
        host,
        captures: &empty,
    };
    for t in step.templates() {
        for (name, _) in t.vars() {
            if captured.contains(name) || scope.get(name).is_some() {
                continue;
            }
            let hint = match name.strip_prefix("tag.") {
                Some(k) => format!(" (the host has no `{k}=…` tag)"),
                None => format!(" (define it in `vars`, the profile, or pass --set {name}=VALUE)"),
            };
            problems.push(format!(
                "{}: step `{}` on host {}: undefined variable `${{{name}}}`{hint}",
                step.loc, step.name, host.name
            ));
        }
    }
}

impl Plan {
    /// Render a template for a dry run: captures not known yet stay as `${name}`.
    pub fn render_dry(&self, t: &Template, host: &Host) -> String {
        let empty = BTreeMap::new();
        let scope = Scope {
            globals: &self.globals,
            host,
            captures: &empty,
        };
        t.render_partial(&|n| scope.get(n))
    }

    /// The dry run as text: waves, hosts, rendered commands.
    pub fn describe(&self) -> String {
        let h = &self.heist;
        let mut out = format!("heist {} ({})\n", h.name, h.loc);
        if let Some(d) = &h.description {
            out.push_str(&format!("  {d}\n"));
        }
        if let Some(p) = &self.profile {
            out.push_str(&format!("profile: {p}\n"));
        }
        out.push_str(&format!(
            "select: {}  → {} host(s)\n",
            self.selection,
            self.hosts.len()
        ));
        match self.batch {
            Some(b) => out.push_str(&format!("batch: {b} → {} wave(s)\n", self.waves.len())),
            None => out.push_str("batch: all hosts at once\n"),
        }
        if !self.globals.is_empty() {
            let vars: Vec<String> = self
                .globals
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!("vars: {}\n", vars.join(" ")));
        }
        for (wi, wave) in self.waves.iter().enumerate() {
            let names: Vec<&str> = wave.iter().map(|&i| self.hosts[i].name.as_str()).collect();
            out.push_str(&format!(
                "\nwave {}/{}: {}\n",
                wi + 1,
                self.waves.len(),
                crate::nodeset::fold(&names)
            ));
            for &i in wave {
                let host = &self.hosts[i];
                out.push_str(&format!("  {}\n", host.name));
                for (si, s) in h.steps.iter().enumerate() {
                    let what = s.describe(&|t| self.render_dry(t, host));
                    let what = what.trim_end().replace('\n', "\n         ");
                    out.push_str(&format!(
                        "    {}. {}: {what}{}\n",
                        si + 1,
                        s.name,
                        policy(s)
                    ));
                }
            }
        }
        if !h.rollback.is_empty() {
            out.push_str(
                "\nrollback (on hosts that reached the failing step, latest undo first):\n",
            );
            for s in &h.rollback {
                let undo = s
                    .undo
                    .map(|u| format!(" [undoes {}]", h.steps[u].name))
                    .unwrap_or_default();
                let first = &self.hosts[0];
                out.push_str(&format!(
                    "  - {}{undo}: {}\n",
                    s.name,
                    s.describe(&|t| self.render_dry(t, first))
                ));
            }
        }
        out
    }
}

fn policy(s: &StepDef) -> String {
    let mut parts = Vec::new();
    if let Some(t) = s.timeout {
        parts.push(format!("timeout {}", humantime::format_duration(t)));
    }
    if s.exits != [0] {
        let e: Vec<String> = s.exits.iter().map(i32::to_string).collect();
        parts.push(format!("exits {}", e.join(",")));
    }
    if s.on_fail.retry > 0 {
        parts.push(format!(
            "retry {}×{}",
            s.on_fail.retry,
            humantime::format_duration(s.on_fail.backoff)
        ));
    }
    if s.on_fail.then != super::def::Then::Abort || s.on_fail.retry > 0 {
        parts.push(format!("then {}", s.on_fail.then.as_str()));
    }
    if !s.captures.is_empty() {
        let c: Vec<&str> = s.captures.iter().map(|c| c.name.as_str()).collect();
        parts.push(format!("captures {}", c.join(",")));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("   [{}]", parts.join("; "))
}
