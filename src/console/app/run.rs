//! The run on screen: per-host jobs fed by daemon events (live) or loaded from the run
//! store (browsing), with bounded scrollback and streaming gather.

use std::collections::HashMap;

use super::{Focus, GroupDiff, Model};
use crate::console::action::Action;
use crate::console::gather::Gather;
use crate::console::runs::{verdict_counts, RunDetail};
use crate::console::scrollback::Scrollback;
use crate::model::{ErrorKind, Verdict};
use crate::model::{Exit, Stream};
use crate::proto::daemon::{Event, HostEvent};
use crate::store::HostRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    /// Exited, with the daemon's verdict (it knows whether a kill was sent).
    Exited(Exit, Verdict),
    Failed {
        kind: ErrorKind,
        message: String,
    },
}

impl JobState {
    /// Short label: `running`, `ok`, `exit 1`, `signal 9`, `timeout`, `unreachable`…
    pub fn label(&self) -> String {
        match self {
            JobState::Pending => "pending".into(),
            JobState::Running => "running".into(),
            JobState::Exited(e, _) if e.timed_out => "timeout".into(),
            JobState::Exited(e, _) => match (e.code, e.signal) {
                (Some(0), _) => "ok".into(),
                (Some(c), _) => format!("exit {c}"),
                (None, Some(s)) => format!("signal {s}"),
                (None, None) => "exit ?".into(),
            },
            JobState::Failed { kind, .. } => kind.as_str().into(),
        }
    }

    pub fn verdict(&self) -> Option<Verdict> {
        Some(match self {
            JobState::Pending | JobState::Running => return None,
            JobState::Exited(_, v) => *v,
            JobState::Failed { kind, .. } => Verdict::from_error(*kind),
        })
    }

    pub fn is_running(&self) -> bool {
        matches!(self, JobState::Pending | JobState::Running)
    }
}

/// A running job silent this long with its stdin open is shown as waiting for input.
pub const WAITING_AFTER_MS: u64 = 2000;

impl Job {
    /// Running, silent for [`WAITING_AFTER_MS`], stdin open: probably waiting for input.
    pub fn waiting_for_input(&self, now: u64) -> bool {
        self.state == JobState::Running
            && self.stdin_open
            && self
                .active_ms
                .is_some_and(|t| now.saturating_sub(t) >= WAITING_AFTER_MS)
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub state: JobState,
    pub out: Scrollback,
    pub started_ms: Option<u64>,
    pub wall_ms: Option<u64>,
    pub agentless: bool,
    /// A copy's bytes moved so far and in all (`crew put` / `crew fetch` runs).
    pub progress: Option<(u64, u64)>,
    /// When it last started or printed (console clock, ms).
    pub active_ms: Option<u64>,
    /// Its stdin is a pipe the console can still write (`>`), not closed yet.
    pub stdin_open: bool,
}

impl Job {
    fn new(scrollback: usize) -> Job {
        Job {
            state: JobState::Pending,
            out: Scrollback::new(scrollback),
            started_ms: None,
            wall_ms: None,
            agentless: false,
            progress: None,
            active_ms: None,
            stdin_open: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunView {
    pub tag: u64,
    pub run_id: Option<u64>,
    pub command: String,
    /// Hosts in run order.
    pub hosts: Vec<String>,
    pub jobs: HashMap<String, Job>,
    pub gather: Gather,
    pub finished: bool,
    /// Loaded from the run store (read-only, no kill).
    pub stored: Option<String>,
    /// Followed from the daemon: a run started elsewhere (its id).
    pub attached: Option<String>,
    /// First shown line of the focused pane (when not following).
    pub scroll: usize,
    pub follow: bool,
    /// Selected group in the gathered view.
    pub group: usize,
    /// Show the selected group's diff against the largest group.
    pub diff: bool,
    /// That diff, kept up to date by `Model::update`.
    pub group_diff: GroupDiff,
    pub started_ms: u64,
}

impl RunView {
    pub fn new(tag: u64, command: &str, hosts: Vec<String>, scrollback: usize, now: u64) -> Self {
        let jobs = hosts
            .iter()
            .map(|h| (h.clone(), Job::new(scrollback)))
            .collect();
        RunView {
            tag,
            run_id: None,
            command: command.to_string(),
            gather: Gather::new(&hosts),
            hosts,
            jobs,
            finished: false,
            stored: None,
            attached: None,
            scroll: 0,
            follow: true,
            group: 0,
            diff: false,
            group_diff: GroupDiff::default(),
            started_ms: now,
        }
    }

    pub fn running(&self) -> usize {
        self.jobs.values().filter(|j| j.state.is_running()).count()
    }

    /// Duration shown for a job: its wall time, or time since start while running.
    pub fn duration_ms(&self, host: &str, now: u64) -> Option<u64> {
        let j = self.jobs.get(host)?;
        j.wall_ms
            .or_else(|| j.started_ms.map(|s| now.saturating_sub(s)))
    }
}

impl Model {
    pub(super) fn run_event(&mut self, event: Event) {
        let now = self.now_ms;
        let Some(run) = self.run.as_mut() else {
            return;
        };
        match event {
            Event::RunStarted { run_id, hosts } => {
                run.run_id = Some(run_id);
                for h in hosts {
                    if !run.jobs.contains_key(&h) {
                        run.gather.add_host(&h);
                        run.hosts.push(h.clone());
                        run.jobs.insert(h, Job::new(self.settings.scrollback));
                    }
                }
            }
            Event::Host { host, event, .. } => {
                let Some(job) = run.jobs.get_mut(&host) else {
                    return;
                };
                run.group_diff.touch();
                match event {
                    HostEvent::Started { agentless, .. } => {
                        job.state = JobState::Running;
                        job.started_ms = Some(now);
                        job.active_ms = Some(now);
                        job.agentless = agentless;
                        // Agentless jobs get no stdin.
                        job.stdin_open &= !agentless;
                        run.gather.set_status(&host, "running");
                    }
                    HostEvent::Output { stream, data } => {
                        job.active_ms = Some(now);
                        job.out.push(stream, &data);
                        run.gather.feed(&host, stream, &data);
                    }
                    HostEvent::Exit { exit, verdict } => {
                        job.out.finish();
                        job.wall_ms = Some(exit.wall_ms);
                        job.state = JobState::Exited(exit, verdict);
                    }
                    HostEvent::Progress { done, total } => job.progress = Some((done, total)),
                    HostEvent::Failed { kind, message } => {
                        job.out.finish();
                        job.out
                            .push(Stream::Stderr, format!("crew: {message}\n").as_bytes());
                        job.wall_ms = job.started_ms.map(|s| now.saturating_sub(s));
                        job.state = JobState::Failed { kind, message };
                    }
                }
                let label = job.state.label();
                if let Some(v) = job.state.verdict() {
                    run.gather.set_status(&host, &label);
                    self.outcomes.insert(host, v);
                }
            }
            Event::RunFinished { run_id, summary } => {
                run.finished = true;
                for (h, v) in &summary.hosts {
                    self.outcomes.insert(h.clone(), *v);
                }
                let mut counts = verdict_counts(summary.hosts.iter().map(|(_, v)| *v));
                if counts.is_empty() {
                    counts = "no hosts".into();
                }
                self.info(format!("run #{run_id} done: {counts}"));
                self.refilter();
            }
            Event::Error { message } => {
                self.run_failed(&message);
                self.error(format!("run: {message}"));
            }
            _ => {}
        }
    }

    /// The whole run failed before (or while) its hosts reported: mark what is left.
    pub(super) fn run_failed(&mut self, message: &str) {
        if let Some(run) = self.run.as_mut() {
            run.finished = true;
            for (h, j) in run.jobs.iter_mut() {
                if j.state.is_running() {
                    j.state = JobState::Failed {
                        kind: ErrorKind::Internal,
                        message: message.to_string(),
                    };
                    run.gather.set_status(h, "internal");
                }
            }
        }
    }

    pub(super) fn open_stored(&mut self, detail: RunDetail) {
        let tag = self.new_tag();
        let names: Vec<String> = detail.hosts.iter().map(|h| h.name.clone()).collect();
        let mut run = RunView::new(
            tag,
            &detail.entry.command,
            names,
            self.settings.scrollback,
            self.now_ms,
        );
        run.finished = true;
        run.stored = Some(detail.entry.id.clone());
        for h in detail.hosts {
            let Some(job) = run.jobs.get_mut(&h.name) else {
                continue;
            };
            job.out.push(Stream::Stdout, &h.stdout);
            job.out.push(Stream::Stderr, &h.stderr);
            job.out.finish();
            run.gather.feed(&h.name, Stream::Stdout, &h.stdout);
            run.gather.feed(&h.name, Stream::Stderr, &h.stderr);
            job.state = stored_state(h.result.as_ref());
            job.wall_ms = h.result.as_ref().and_then(|r| r.wall_ms);
            run.gather.set_status(&h.name, &job.state.label());
        }
        self.info(format!("run {} loaded from the run store", detail.entry.id));
        self.run = Some(run);
        self.mode = crate::console::keymap::Mode::Normal;
        self.focus = Focus::Output;
    }

    pub(super) fn movement(&mut self, action: &Action) {
        if self.mode == crate::console::keymap::Mode::Help {
            self.help_scroll = match action {
                Action::Up => self.help_scroll.saturating_sub(1),
                _ => self.help_scroll + 1,
            };
            return;
        }
        if self.mode == crate::console::keymap::Mode::Runs {
            let n = self.runs.as_ref().map_or(0, Vec::len) + self.live.as_ref().map_or(0, Vec::len);
            self.runs_cursor = step(self.runs_cursor, n, action, 10);
            return;
        }
        let gathered = self.view == super::View::Gathered;
        match (self.focus, self.run.as_mut()) {
            (Focus::Output, Some(run)) if gathered => {
                let n = run.gather.groups().len();
                run.group = step(run.group, n, action, 10);
            }
            (Focus::Output, Some(run)) => {
                run.follow = matches!(action, Action::Bottom);
                run.scroll = match action {
                    Action::Up => run.scroll.saturating_sub(1),
                    Action::Down => run.scroll + 1,
                    Action::PageUp => run.scroll.saturating_sub(20),
                    Action::PageDown => run.scroll + 20,
                    Action::Top => 0,
                    _ => usize::MAX,
                };
            }
            _ => {
                self.cursor = step(self.cursor, self.shown.len(), action, 20);
                if let Some(run) = self.run.as_mut() {
                    run.scroll = 0;
                }
            }
        }
    }
}

fn step(cur: usize, len: usize, action: &Action, page: usize) -> usize {
    let last = len.saturating_sub(1);
    match action {
        Action::Up => cur.saturating_sub(1),
        Action::Down => (cur + 1).min(last),
        Action::PageUp => cur.saturating_sub(page),
        Action::PageDown => (cur + page).min(last),
        Action::Top => 0,
        _ => last,
    }
}

/// A job's state from its stored record (none: the run was cut short before it finished).
fn stored_state(record: Option<&HostRecord>) -> JobState {
    let Some(r) = record else {
        return JobState::Pending;
    };
    if let Some(kind) = r.error_kind {
        return JobState::Failed {
            kind,
            message: r.error.clone().unwrap_or_default(),
        };
    }
    let exit = Exit {
        code: r.code,
        signal: r.signal,
        wall_ms: r.wall_ms.unwrap_or(0),
        user_ms: r.user_ms.unwrap_or(0),
        sys_ms: r.sys_ms.unwrap_or(0),
        max_rss_kb: r.max_rss_kb.unwrap_or(0),
        timed_out: r.timed_out,
    };
    JobState::Exited(exit, r.verdict)
}
