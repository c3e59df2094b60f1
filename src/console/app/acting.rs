//! Acting on hosts and results: marks (by hand, by range, by outcome, by gathered group),
//! starting runs (with the read-only and dangerous-command guards), re-runs and kills.

use super::{Focus, Model, PendingRun, RunView, View};
use crate::console::effect::Effect;
use crate::console::keymap::Mode;
use crate::model::{RunOrigin, Verdict};
use crate::nodeset;
use crate::pick::LastOutcomes;
use crate::proto::daemon::RunRequest;

impl Model {
    /// The stored last run's outcomes, read at start-up. A run of this session is newer: when
    /// one has started by the time they arrive, they are dropped.
    pub(super) fn seed_outcomes(&mut self, last: LastOutcomes) {
        if self.run.is_some() || !self.outcomes.is_empty() {
            return;
        }
        self.outcomes = last.hosts;
        self.refilter();
    }

    /// The host whose output pane has focus: the host-list cursor when it is in the run,
    /// else the run's first host.
    pub fn focused_host(&self) -> Option<&str> {
        let run = self.run.as_ref()?;
        match self.cursor_host() {
            Some(h) if run.jobs.contains_key(h) => Some(h),
            _ => run.hosts.first().map(String::as_str),
        }
    }

    /// The host a shell opens on: the focused step-view cell's, the selected group's first,
    /// the focused output pane's, else the host list's cursor.
    pub fn shell_target(&self) -> Option<String> {
        if self.view == View::Heist {
            if let Some(v) = self.heist.view.as_ref() {
                return v.hosts.get(self.heist.row).cloned();
            }
        }
        if self.focus == Focus::Output {
            if let Some(run) = self.run.as_ref() {
                if self.view == View::Gathered {
                    let groups = run.gather.groups();
                    return groups.get(run.group)?.hosts.first().cloned();
                }
                return self.focused_host().map(str::to_string);
            }
        }
        self.cursor_host().map(str::to_string)
    }

    pub(super) fn shell(&mut self) -> Vec<Effect> {
        if self.settings.read_only {
            self.error("read-only console: refusing to open a shell (started with --read-only)");
            return Vec::new();
        }
        let Some(name) = self.shell_target() else {
            self.error("no host to open a shell on");
            return Vec::new();
        };
        let Some(host) = self.fleet.host(&name).cloned() else {
            self.error(format!("{name} is not in the inventory"));
            return Vec::new();
        };
        self.info(format!("shell on {name}; exit to come back"));
        vec![Effect::Shell(host)]
    }

    pub(super) fn toggle_mark(&mut self) {
        if self.view == View::Gathered && self.focus == Focus::Output {
            if let Some(run) = self.run.as_ref() {
                if let Some(g) = run.gather.groups().get(run.group) {
                    self.marks = g.hosts.iter().cloned().collect();
                    let msg = format!(
                        "marked group of {}: {}",
                        g.hosts.len(),
                        nodeset::fold(&g.hosts)
                    );
                    self.info(msg);
                }
            }
            return;
        }
        let Some(h) = self.cursor_host().map(str::to_string) else {
            return;
        };
        if !self.marks.remove(&h) {
            self.marks.insert(h.clone());
            self.anchor = Some(h);
        }
        self.cursor = (self.cursor + 1).min(self.shown.len().saturating_sub(1));
    }

    pub(super) fn mark_range(&mut self) {
        let names: Vec<String> = self.shown_hosts().map(|h| h.name.clone()).collect();
        let from = self
            .anchor
            .as_ref()
            .and_then(|a| names.iter().position(|n| n == a))
            .unwrap_or(self.cursor);
        let (lo, hi) = (from.min(self.cursor), from.max(self.cursor));
        self.marks.extend(
            names[lo..=hi.min(names.len().saturating_sub(1))]
                .iter()
                .cloned(),
        );
    }

    /// Replace the marks with the hosts whose last verdict is one of `verdicts`.
    pub(super) fn mark_outcome(&mut self, verdicts: &[Verdict], what: &str) {
        let mut picked: Vec<String> = self
            .fleet
            .hosts
            .iter()
            .filter(|h| {
                self.outcomes
                    .get(&h.name)
                    .is_some_and(|v| verdicts.contains(v))
            })
            .map(|h| h.name.clone())
            .collect();
        picked.dedup();
        if picked.is_empty() {
            self.info(format!("no {what} hosts in the last run"));
            return;
        }
        self.marks = picked.iter().cloned().collect();
        self.info(format!(
            "marked {} {what}: {}",
            picked.len(),
            nodeset::fold(&picked)
        ));
    }

    /// Run `command` on `targets`, unless read-only, empty, or dangerous (then confirm).
    pub(super) fn request_run(&mut self, command: &str, targets: Vec<String>) -> Vec<Effect> {
        let command = command.trim();
        if command.is_empty() {
            return Vec::new();
        }
        if self.settings.read_only {
            self.error("read-only console: refusing to run (started with --read-only)");
            return Vec::new();
        }
        if targets.is_empty() {
            self.error("no target hosts: the filter shows none and none is marked");
            return Vec::new();
        }
        if let Some(re) = self
            .settings
            .dangerous
            .iter()
            .find(|re| re.is_match(command))
        {
            self.confirm = Some(PendingRun {
                command: command.to_string(),
                targets,
                pattern: re.as_str().to_string(),
            });
            self.mode = Mode::Confirm;
            return Vec::new();
        }
        self.start_run(command.to_string(), targets)
    }

    pub(super) fn confirm_yes(&mut self) -> Vec<Effect> {
        self.mode = Mode::Normal;
        match self.confirm.take() {
            Some(p) => self.start_run(p.command, p.targets),
            None => Vec::new(),
        }
    }

    pub(super) fn start_run(&mut self, command: String, targets: Vec<String>) -> Vec<Effect> {
        let sudo = match self.sudo_for(super::sudo::SudoPending::Run {
            command: command.clone(),
            targets: targets.clone(),
        }) {
            Ok(s) => s,
            Err(()) => return Vec::new(),
        };
        let tag = self.new_tag();
        let hosts: Vec<_> = self
            .fleet
            .hosts
            .iter()
            .filter(|h| targets.contains(&h.name))
            .cloned()
            .collect();
        let selection = if self.marks.is_empty() {
            self.filter_input.lines().join(" ")
        } else {
            nodeset::fold(&targets)
        };
        let req = RunRequest {
            hosts,
            selection,
            command: command.clone(),
            env: Vec::new(),
            timeout_ms: self.settings.timeout_ms,
            fanout: None,
            accept_new_host_keys: self.settings.accept_new_host_keys,
            who: self.settings.who.clone(),
            origin: RunOrigin::Command,
            // Jobs keep a stdin open: `>` answers their prompts, ctrl-d closes it.
            stdin: true,
            ask_host_keys: true,
            sudo,
        };
        // Only the hosts of the last run have an outcome, as `?failed` reads the run store.
        self.outcomes.clear();
        let mut view = RunView::new(
            tag,
            &command,
            targets.clone(),
            self.settings.scrollback,
            self.now_ms,
        );
        for job in view.jobs.values_mut() {
            job.stdin_open = true;
        }
        self.run = Some(view);
        self.info(format!(
            "running on {} hosts: {}",
            targets.len(),
            nodeset::fold(&targets)
        ));
        self.history.push(&command);
        self.last_command = Some(command.clone());
        vec![Effect::Run { tag, req }, Effect::AppendHistory(command)]
    }

    /// Re-run the last command on exactly the marked hosts.
    pub(super) fn rerun(&mut self) -> Vec<Effect> {
        let Some(cmd) = self.last_command.clone() else {
            self.error("nothing to re-run yet");
            return Vec::new();
        };
        if self.marks.is_empty() {
            let keys = self
                .keymap
                .key_for(Mode::Normal, &crate::console::action::Action::MarkFailed);
            self.error(format!(
                "mark the hosts to re-run on first (e.g. {} marks the failed ones)",
                keys.unwrap_or_else(|| "mark-failed".into())
            ));
            return Vec::new();
        }
        let targets = self.targets();
        self.request_run(&cmd, targets)
    }

    /// Who a line of input goes to: the marked hosts whose job in the live run is running,
    /// else the focused host's job.
    pub fn input_targets(&self) -> Vec<String> {
        let Some(run) = self.run.as_ref() else {
            return Vec::new();
        };
        let running = |h: &str| run.jobs.get(h).is_some_and(|j| j.state.is_running());
        if !self.marks.is_empty() {
            return run
                .hosts
                .iter()
                .filter(|h| self.marks.contains(*h) && running(h))
                .cloned()
                .collect();
        }
        self.focused_host()
            .filter(|h| running(h))
            .map(|h| vec![h.to_string()])
            .unwrap_or_default()
    }

    fn live_run_id(&mut self) -> Option<u64> {
        let Some(run) = self.run.as_ref() else {
            self.error("no run to send input to");
            return None;
        };
        let id = run.run_id.filter(|_| run.stored.is_none());
        if id.is_none() {
            self.error("this run is not live");
        }
        id
    }

    /// `>`: open the input line when there is a job to send to.
    pub(super) fn open_send(&mut self) {
        if self.live_run_id().is_none() {
            return;
        }
        if self.input_targets().is_empty() {
            self.error("no job is running on the focused host (or the marked hosts)");
            return;
        }
        self.send_input = tui_textarea::TextArea::default();
        self.mode = Mode::Send;
    }

    /// Send `line` and a newline (None: EOF) to the stdin of the input targets' jobs; the
    /// line is echoed in their panes as a terminal would.
    pub(super) fn send_input(&mut self, line: Option<String>) -> Vec<Effect> {
        self.mode = Mode::Normal;
        let Some(run_id) = self.live_run_id() else {
            return Vec::new();
        };
        let targets = self.input_targets();
        if targets.is_empty() {
            self.error("no job is running on the focused host (or the marked hosts)");
            return Vec::new();
        }
        let (data, eof) = match line {
            Some(l) => (format!("{l}\n").into_bytes(), false),
            None => (Vec::new(), true),
        };
        if let Some(run) = self.run.as_mut() {
            for h in &targets {
                if let Some(j) = run.jobs.get_mut(h) {
                    match eof {
                        true => j.stdin_open = false,
                        false => j.out.push(crate::model::Stream::Stdout, &data),
                    }
                }
            }
        }
        let whom = format!("{} host(s): {}", targets.len(), nodeset::fold(&targets));
        match eof {
            true => self.info(format!("closed stdin (EOF) on {whom}")),
            false => self.info(format!("sent a line to {whom}")),
        }
        vec![Effect::Input {
            run_id,
            hosts: targets,
            data,
            eof,
        }]
    }

    pub(super) fn kill(&mut self, all: bool) -> Vec<Effect> {
        let Some(run) = self.run.as_ref() else {
            self.error("no run to kill");
            return Vec::new();
        };
        let Some(run_id) = run.run_id.filter(|_| run.stored.is_none()) else {
            self.error("this run is not live");
            return Vec::new();
        };
        if all {
            self.info(format!("killing {} running jobs", run.running()));
            return vec![Effect::Kill {
                run_id,
                host: None,
                signal: libc::SIGTERM,
            }];
        }
        let Some(host) = self.focused_host().map(str::to_string) else {
            return Vec::new();
        };
        if !run.jobs.get(&host).is_some_and(|j| j.state.is_running()) {
            self.error(format!("{host}: no job running"));
            return Vec::new();
        }
        self.info(format!("killing the job on {host}"));
        vec![Effect::Kill {
            run_id,
            host: Some(host),
            signal: libc::SIGTERM,
        }]
    }

    /// Jump to the next/previous line of the focused pane containing the search text.
    pub(super) fn search_step(&mut self, forward: bool) {
        let Some(needle) = self.search.clone().filter(|s| !s.is_empty()) else {
            return;
        };
        let Some(host) = self.focused_host().map(str::to_string) else {
            return;
        };
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let Some(job) = run.jobs.get(&host) else {
            return;
        };
        let n = job.out.len();
        let start = if run.follow { n } else { run.scroll.min(n) };
        let hit = |i: usize| {
            job.out
                .get(i)
                .is_some_and(|(_, b)| String::from_utf8_lossy(b).contains(&needle))
        };
        let found = if forward {
            (start + 1..n)
                .chain(0..=start.min(n.saturating_sub(1)))
                .find(|&i| hit(i))
        } else {
            (0..start).rev().chain((start..n).rev()).find(|&i| hit(i))
        };
        match found {
            Some(i) => {
                run.follow = false;
                run.scroll = i;
                self.focus = Focus::Output;
            }
            None => self.error(format!("{host}: {needle:?} not found")),
        }
    }
}
