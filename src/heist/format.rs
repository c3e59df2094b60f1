//! The TOML of a heist file, as written (serde, unknown fields refused). [`super::validate`]
//! turns it into checked definitions ([`super::def`]).
//!
//! ```toml
//! [heist.deploy]
//! description = "Roll the web tier"
//! select = "role=web & env=staging"
//! batch = "25%"                 # or a count: batch = 2
//! vars = { branch = "main" }
//! params = ["ticket"]          # must be given: --set ticket=… (or by the profile)
//! ask_timeout = "30m"          # an unanswered `ask` decides `ask_default` after this
//! ask_default = "abort"        # advance | retry | rollback | abort (default abort)
//!
//! [[heist.deploy.step]]
//! name = "pull"
//! run = "git -C /srv/app checkout ${branch}"
//! timeout = "30s"
//! exits = [0]
//! capture = { rev = 'HEAD is now at (\w+)' }
//! on_fail = { retry = 2, backoff = "5s", then = "rollback" }   # abort | continue | rollback | ask
//!
//! [[heist.deploy.rollback]]
//! name = "restore"
//! undo = "pull"                 # optional: only where `pull` ran, latest step first
//! run = "git -C /srv/app checkout -"
//!
//! [heist.deploy.profile.production]
//! select = "role=web & env=production"
//! batch = "10%"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::diag::{Diagnostic, Source};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub heist: BTreeMap<Spanned<String>, RawHeist>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeist {
    #[serde(default)]
    pub description: Option<String>,
    pub select: Spanned<String>,
    #[serde(default)]
    pub batch: Option<Spanned<RawBatch>>,
    #[serde(default)]
    pub vars: BTreeMap<Spanned<String>, Spanned<RawValue>>,
    /// Variables the operator must give (`--set NAME=VALUE` or a profile's `vars`).
    #[serde(default)]
    pub params: Vec<Spanned<String>>,
    #[serde(default, rename = "step")]
    pub steps: Vec<RawStep>,
    #[serde(default)]
    pub rollback: Vec<RawStep>,
    #[serde(default)]
    pub profile: BTreeMap<Spanned<String>, RawProfile>,
    /// How long an `ask` waits for an answer before `ask_default` decides (none: forever).
    #[serde(default)]
    pub ask_timeout: Option<Spanned<String>>,
    /// What an unanswered ask decides after `ask_timeout`: advance, retry, rollback, abort.
    #[serde(default)]
    pub ask_default: Option<Spanned<String>>,
    /// The default for every step.
    /// Steps run through sudo on the host (as `become_user`, default root).
    #[serde(default, rename = "become")]
    pub become_: Option<Spanned<bool>>,
    /// The user sudo runs as (implies `become = true`).
    #[serde(default)]
    pub become_user: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    #[serde(default)]
    pub select: Option<Spanned<String>>,
    #[serde(default)]
    pub batch: Option<Spanned<RawBatch>>,
    #[serde(default)]
    pub vars: BTreeMap<Spanned<String>, Spanned<RawValue>>,
}

/// `batch = 3` or `batch = "25%"` (or `"3"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawBatch {
    Count(i64),
    Text(String),
}

/// A variable's value: strings, integers, floats and booleans are accepted as text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawValue {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl RawValue {
    pub fn to_text(&self) -> String {
        match self {
            RawValue::Text(s) => s.clone(),
            RawValue::Int(i) => i.to_string(),
            RawValue::Float(f) => f.to_string(),
            RawValue::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub name: Spanned<String>,
    #[serde(default)]
    pub run: Option<Spanned<String>>,
    #[serde(default)]
    pub put: Option<Spanned<RawPut>>,
    #[serde(default)]
    pub fetch: Option<Spanned<RawFetch>>,
    /// A `run` step's stdin: this text (with `${…}` variables).
    #[serde(default)]
    pub stdin: Option<Spanned<String>>,
    /// A `run` step's stdin: this local file (relative to the heist file), streamed.
    #[serde(default)]
    pub stdin_from: Option<Spanned<String>>,
    /// Run on the operator's machine (`bash -c`) instead of the host.
    #[serde(default)]
    pub local: bool,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub exits: Option<Vec<i32>>,
    #[serde(default)]
    pub capture: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub on_fail: Option<Spanned<RawOnFail>>,
    /// Rollback steps only: the step this one undoes.
    #[serde(default)]
    pub undo: Option<Spanned<String>>,
    /// Run through sudo on the host (as `become_user`, default root).
    #[serde(default, rename = "become")]
    pub become_: Option<Spanned<bool>>,
    /// The user sudo runs as (implies `become = true`).
    #[serde(default)]
    pub become_user: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnFail {
    #[serde(default)]
    pub retry: u32,
    #[serde(default)]
    pub backoff: Option<Spanned<String>>,
    #[serde(default)]
    pub then: Option<Then>,
}

/// What happens once a step has failed and its retries are spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Then {
    /// This host stops; its wave counts as failed, so later waves do not start.
    #[default]
    Abort,
    /// Note the failure and go on with the next step.
    Continue,
    /// Stop the heist and run the rollback steps on every host that reached this step.
    Rollback,
    /// Wait for the operator: advance, retry, rollback or abort.
    Ask,
}

impl Then {
    pub fn as_str(self) -> &'static str {
        match self {
            Then::Abort => "abort",
            Then::Continue => "continue",
            Then::Rollback => "rollback",
            Then::Ask => "ask",
        }
    }
}

/// `put = { to = "/etc/app.conf", from = "files/app.conf", mode = 0o644 }` (a local file,
/// relative to the heist file) or `put = { to = "…", content = "text with ${vars}" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPut {
    pub to: Spanned<String>,
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    #[serde(default)]
    pub content: Option<Spanned<String>>,
    #[serde(default)]
    pub mode: Option<u32>,
}

/// `fetch = { from = "/etc/hostname", to = "out/${host}.hostname", max_size = 1048576 }`
/// (`to` is relative to the current directory).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFetch {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    #[serde(default)]
    pub max_size: Option<u64>,
}

/// Parse a heist file's text; a syntax or shape error is one `file:line:col` diagnostic.
pub fn parse(text: &str, path: &Path) -> Result<RawFile, Diagnostic> {
    toml::from_str::<RawFile>(text).map_err(|e| {
        let src = Source { path, text };
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        src.at(offset, e.message().trim().to_string())
    })
}
