//! Checked heist definitions: what [`super::validate`] produces from a file and what the plan
//! and the engine use.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

pub use super::format::Then;
use super::vars::Template;

/// Rolling wave size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    Count(usize),
    Percent(u32),
}

impl Batch {
    /// Hosts per wave for `n` hosts: at least one.
    pub fn wave_size(self, n: usize) -> usize {
        let size = match self {
            Batch::Count(c) => c,
            Batch::Percent(p) => n * p as usize / 100,
        };
        size.max(1)
    }
}

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Batch::Count(c) => write!(f, "{c}"),
            Batch::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Where a definition sits in its file, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.col)
    }
}

#[derive(Debug, Clone)]
pub struct Capture {
    /// Variable set from the first group (or the whole match when the regex has no group).
    pub name: String,
    pub regex: Regex,
}

#[derive(Debug, Clone)]
pub enum PutSource {
    /// A file on the operator's machine (resolved against the heist file's directory).
    File(PathBuf),
    Content(Template),
}

/// What a `run` step's command reads on stdin (else /dev/null).
#[derive(Debug, Clone)]
pub enum StdinSource {
    Text(Template),
    /// A file on the operator's machine (resolved against the heist file's directory).
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub enum Action {
    Run(Template),
    Put {
        to: Template,
        source: PutSource,
        mode: u32,
    },
    Fetch {
        from: Template,
        to: Template,
        max_size: u64,
    },
}

#[derive(Debug, Clone)]
pub struct OnFail {
    pub retry: u32,
    pub backoff: Duration,
    pub then: Then,
}

#[derive(Debug, Clone)]
pub struct StepDef {
    pub name: String,
    pub loc: Loc,
    pub action: Action,
    pub local: bool,
    /// A `run` step's stdin.
    pub stdin: Option<StdinSource>,
    pub timeout: Option<Duration>,
    /// Accepted exit codes (default `[0]`).
    pub exits: Vec<i32>,
    pub captures: Vec<Capture>,
    pub on_fail: OnFail,
    /// Rollback steps: index of the step this one undoes.
    pub undo: Option<usize>,
    /// Run through sudo on the host as this user (`become`); `None`: as the login user.
    pub become_user: Option<String>,
}

impl StepDef {
    /// Variables this step's captures define (capture names and named groups).
    pub fn defines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.captures {
            out.push(c.name.clone());
            out.extend(c.regex.capture_names().flatten().map(str::to_string));
        }
        out
    }

    /// Every template of the step (for undefined-variable checks and dry runs).
    pub fn templates(&self) -> Vec<&Template> {
        match &self.action {
            Action::Run(t) => match &self.stdin {
                Some(StdinSource::Text(s)) => vec![t, s],
                _ => vec![t],
            },
            Action::Put { to, source, .. } => match source {
                PutSource::Content(c) => vec![to, c],
                PutSource::File(_) => vec![to],
            },
            Action::Fetch { from, to, .. } => vec![from, to],
        }
    }

    /// One line saying what the step does, for plans and progress.
    pub fn describe(&self, render: &dyn Fn(&Template) -> String) -> String {
        let sudo;
        let where_ = match (&self.become_user, self.local) {
            (_, true) => "local: ",
            (Some(u), false) => {
                sudo = format!("sudo -u {u}: ");
                &sudo
            }
            (None, false) => "",
        };
        match &self.action {
            Action::Run(t) => format!("{where_}{}", render(t)),
            Action::Put { to, source, mode } => match source {
                PutSource::File(p) => format!("put {} → {} ({mode:o})", p.display(), render(to)),
                PutSource::Content(_) => format!("put <content> → {} ({mode:o})", render(to)),
            },
            Action::Fetch { from, to, .. } => format!("fetch {} → {}", render(from), render(to)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProfileDef {
    pub select: Option<String>,
    pub batch: Option<Batch>,
    pub vars: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct HeistDef {
    pub name: String,
    pub loc: Loc,
    pub description: Option<String>,
    pub select: String,
    pub batch: Option<Batch>,
    pub vars: BTreeMap<String, String>,
    /// Variables the operator must give (`--set` or the profile).
    pub params: Vec<String>,
    pub steps: Vec<StepDef>,
    pub rollback: Vec<StepDef>,
    pub profiles: BTreeMap<String, ProfileDef>,
    /// An `ask` nobody answers within this decides `ask_default` (None: it waits).
    pub ask_timeout: Option<std::time::Duration>,
    pub ask_default: super::events::Choice,
}

impl HeistDef {
    /// True when some step (or rollback step) runs through sudo: the operator is asked for
    /// the password before it starts.
    pub fn needs_sudo(&self) -> bool {
        self.steps
            .iter()
            .chain(&self.rollback)
            .any(|s| s.become_user.is_some())
    }
}
