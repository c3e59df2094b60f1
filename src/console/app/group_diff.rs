//! The gathered view's diff: the selected minority group's output against the largest
//! group's (their first hosts' scrollbacks), line by line, each line with its stream.
//!
//! It lives in the Model and is brought up to date at the end of [`Model::update`] (render
//! only reads it): at once when what is diffed is chosen anew (the diff is switched on, the
//! view opened, another group selected, the run finished); while hosts stream, when either
//! output changed, at most every [`STREAMING_EVERY_MS`] of the Model's clock.

use super::{Model, View};
use crate::console::gather::{diff, DiffOp};
use crate::console::scrollback::Scrollback;
use crate::model::Stream;

/// Least time between two recomputations while the outputs keep changing.
pub const STREAMING_EVERY_MS: u64 = 100;

/// One line of the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    pub op: DiffOp,
    pub stream: Stream,
    pub bytes: Box<[u8]>,
}

/// What a computed diff compared: both hosts and their outputs' generations.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Compared {
    base: (String, u64),
    other: (String, u64),
}

#[derive(Debug, Clone, Default)]
pub struct GroupDiff {
    /// The diff's lines (empty when no diff is shown).
    pub lines: Vec<DiffLine>,
    compared: Option<Compared>,
    /// What the operator chose when it was computed: (selected group, run finished).
    chosen: Option<(usize, bool)>,
    /// Some output or status changed since it was computed (groups may have moved too).
    stale: bool,
    computed_ms: u64,
}

impl GroupDiff {
    /// An output or a status of the run changed.
    pub fn touch(&mut self) {
        self.stale = true;
    }

    fn clear(&mut self) {
        *self = GroupDiff::default();
    }
}

impl Model {
    /// Bring the gathered view's diff up to date (see the module's comment).
    pub(super) fn sync_diff(&mut self) {
        let now = self.now_ms;
        let shown = self.view == View::Gathered;
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let d = &mut run.group_diff;
        if !(shown && run.diff && run.group > 0) {
            if d.chosen.is_some() {
                d.clear();
            }
            return;
        }
        let chosen = Some((run.group, run.finished));
        if d.chosen == chosen
            && (!d.stale || now.saturating_sub(d.computed_ms) < STREAMING_EVERY_MS)
        {
            return;
        }
        d.chosen = chosen;
        d.stale = false;
        d.computed_ms = now;
        let groups = run.gather.groups();
        let sel = run.group.min(groups.len().saturating_sub(1));
        let rep = |i: usize| {
            let host = groups.get(i)?.hosts.first()?;
            Some((host, run.jobs.get(host)?))
        };
        let (Some((base, a)), Some((other, b))) = (rep(0), rep(sel).filter(|_| sel > 0)) else {
            d.compared = None;
            d.lines.clear();
            return;
        };
        let compared = Compared {
            base: (base.clone(), a.out.generation()),
            other: (other.clone(), b.out.generation()),
        };
        if d.compared.as_ref() != Some(&compared) {
            d.lines = diff_lines(&a.out, &b.out);
            d.compared = Some(compared);
        }
    }
}

/// The diff of `b` against the reference `a`, each line with its stream (a line on stdout in
/// one and stderr in the other differs).
pub fn diff_lines(a: &Scrollback, b: &Scrollback) -> Vec<DiffLine> {
    let av: Vec<(Stream, &[u8])> = a.iter().collect();
    let bv: Vec<(Stream, &[u8])> = b.iter().collect();
    diff(&av, &bv)
        .into_iter()
        .map(|(op, (stream, bytes))| DiffLine {
            op,
            stream,
            bytes: bytes.into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{enter, ev, exit, model, run_req, typ};
    use super::*;
    use crate::console::action::Action;
    use crate::console::keymap::Key;
    use crate::proto::daemon::{Event, HostEvent, Summary};

    fn out(m: &mut Model, tag: u64, host: &str, stream: Stream, data: &[u8]) {
        let data = data.to_vec();
        ev(m, tag, host, HostEvent::Output { stream, data });
    }

    /// The diff on screen as `op text (stream)` lines.
    fn shown(m: &Model) -> Vec<String> {
        let run = m.run.as_ref().expect("run");
        run.group_diff
            .lines
            .iter()
            .map(|d| {
                let op = match d.op {
                    DiffOp::Same => ' ',
                    DiffOp::Removed => '-',
                    DiffOp::Added => '+',
                };
                let s = if d.stream == Stream::Stderr {
                    " (err)"
                } else {
                    ""
                };
                format!("{op}{}{s}", String::from_utf8_lossy(&d.bytes))
            })
            .collect()
    }

    #[test]
    fn diff_is_kept_in_the_model_and_paced_while_streaming() {
        let mut m = model();
        typ(&mut m, ":tail -f log");
        let (tag, _) = run_req(&enter(&mut m));
        for h in ["web01", "web03"] {
            out(&mut m, tag, h, Stream::Stdout, b"a\nb\n");
        }
        out(&mut m, tag, "web02", Stream::Stdout, b"a\nx\n");
        out(&mut m, tag, "web02", Stream::Stderr, b"warn\n");
        // Nothing is computed while the diff is not on screen.
        m.key(Key::ch('d'));
        assert!(shown(&m).is_empty());
        // Opening the view with web02's group selected computes it at once.
        m.key(Key::ch('g'));
        m.key(Key::ch('j'));
        assert_eq!(shown(&m), [" a", "-b", "+x", "+warn (err)"]);

        // More output within the pacing interval waits…
        m.update(Action::Tick(STREAMING_EVERY_MS / 2));
        out(&mut m, tag, "web02", Stream::Stdout, b"y\n");
        assert_eq!(shown(&m).len(), 4);
        // …and is in once the interval has passed.
        m.update(Action::Tick(STREAMING_EVERY_MS));
        assert_eq!(shown(&m), [" a", "-b", "+x", "+warn (err)", "+y"]);

        // The end of the run shows the final diff at once.
        m.update(Action::Tick(STREAMING_EVERY_MS + 1));
        out(&mut m, tag, "web01", Stream::Stdout, b"c\n");
        out(&mut m, tag, "web03", Stream::Stdout, b"c\n");
        for h in ["web01", "web02", "web03"] {
            ev(&mut m, tag, h, exit(0));
        }
        let summary = Summary {
            hosts: Vec::new(),
            store_dir: String::new(),
        };
        let event = Event::RunFinished { run_id: 7, summary };
        m.update(Action::Daemon { tag, event });
        assert_eq!(shown(&m), [" a", "-b", "-c", "+x", "+warn (err)", "+y"]);

        // Back to the largest group: no diff; the next group again at once.
        m.key(Key::ch('k'));
        assert!(shown(&m).is_empty());
        m.key(Key::ch('j'));
        assert_eq!(shown(&m).len(), 6);
        m.key(Key::ch('d'));
        assert!(shown(&m).is_empty());
    }
}
