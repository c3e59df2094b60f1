//! What `crew run` prints while a run streams: live `host | line`, `--json` lines, or the
//! `--gather` blocks at the end; plus each host's verdict for the closing summary.

use std::collections::HashMap;
use std::io::Write;

use super::gather::Gather;
use super::render::{host_line, sanitize, Splitter, Style};
use crate::model::Verdict;
use crate::model::{Exit, Stream};
use crate::proto::daemon::{host_event_json, output_json, HostEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Lines,
    Json,
    Gather,
}

impl Mode {
    /// `--json`, else `--gather`, else lines.
    pub fn of(json: bool, gather: bool) -> Mode {
        if json {
            Mode::Json
        } else if gather {
            Mode::Gather
        } else {
            Mode::Lines
        }
    }
}

pub struct Output<W: Write, E: Write> {
    mode: Mode,
    style: Style,
    /// Style for crew's own messages on stderr.
    err_style: Style,
    width: usize,
    order: Vec<String>,
    split: Splitter,
    gather: Gather,
    /// host → (verdict, why) once it ended.
    ended: HashMap<String, (Verdict, String)>,
    out: W,
    err: E,
}

/// `exit 3`, `signal 9`, with `timed out` when the command's timeout killed it.
pub fn describe_exit(e: &Exit) -> String {
    let base = match (e.code, e.signal) {
        (_, Some(s)) => format!("signal {s}"),
        (Some(c), None) => format!("exit {c}"),
        (None, None) => "no status".to_string(),
    };
    if e.timed_out {
        format!("timed out, {base}")
    } else {
        base
    }
}

impl<W: Write, E: Write> Output<W, E> {
    pub fn new(
        mode: Mode,
        style: Style,
        err_style: Style,
        hosts: &[String],
        out: W,
        err: E,
    ) -> Self {
        Output {
            mode,
            style,
            err_style,
            width: hosts.iter().map(|h| h.chars().count()).max().unwrap_or(0),
            order: hosts.to_vec(),
            split: Splitter::default(),
            gather: Gather::new(hosts),
            ended: HashMap::new(),
            out,
            err,
        }
    }

    fn line(&mut self, host: &str, stream: Stream, line: &[u8]) {
        let _ = match self.mode {
            Mode::Lines => writeln!(
                self.out,
                "{}",
                host_line(self.style, host, self.width, stream, line)
            ),
            Mode::Json => writeln!(self.out, "{}", output_json(host, stream, line)),
            Mode::Gather => Ok(()),
        };
    }

    fn flush_partial(&mut self, host: &str) {
        for (stream, data) in self.split.take(host) {
            self.line(host, stream, &data);
        }
    }

    fn json(&mut self, v: serde_json::Value) {
        let _ = writeln!(self.out, "{v}");
    }

    /// One event of one host.
    pub fn host_event(&mut self, host: &str, ev: HostEvent) {
        if self.mode == Mode::Json {
            match &ev {
                HostEvent::Started { .. } => self.json(host_event_json(host, &ev)),
                HostEvent::Exit { .. } | HostEvent::Failed { .. } => {
                    self.flush_partial(host);
                    self.json(host_event_json(host, &ev));
                }
                HostEvent::Output { .. } => {}
            }
        }
        match ev {
            HostEvent::Started { .. } => {}
            HostEvent::Output { stream, data } => {
                if self.mode == Mode::Gather {
                    self.gather.output(host, stream, &data);
                    return;
                }
                for line in self.split.push(host, stream, &data) {
                    self.line(host, stream, &line);
                }
            }
            HostEvent::Exit { exit: e, verdict } => {
                self.flush_partial(host);
                let why = describe_exit(&e);
                self.gather.ending(host, why);
                // The summary's category already says "timed out".
                let why = describe_exit(&Exit {
                    timed_out: false,
                    ..e
                });
                self.ended.insert(host.to_string(), (verdict, why));
            }
            HostEvent::Failed { kind, message } => {
                self.flush_partial(host);
                match self.mode {
                    Mode::Json => {}
                    Mode::Lines | Mode::Gather => {
                        let _ = self.out.flush();
                        let text = format!("{host}: {}: {message}", kind.as_str());
                        let _ = writeln!(
                            self.err,
                            "{}",
                            self.err_style.err(&sanitize(text.as_bytes()))
                        );
                    }
                }
                self.gather
                    .ending(host, format!("{}: {message}", kind.as_str()));
                self.ended.insert(
                    host.to_string(),
                    (Verdict::from_error(kind), kind.as_str().to_string()),
                );
            }
        }
    }

    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }

    /// Crew's own message on stderr (sanitised: it may quote host data).
    pub fn message(&mut self, text: &str) {
        let _ = self.out.flush();
        let _ = writeln!(self.err, "crew: {}", sanitize(text.as_bytes()));
    }

    /// Flush partial lines and print the gathered blocks.
    pub fn finish(&mut self) {
        for host in self.split.hosts() {
            self.flush_partial(&host);
        }
        if self.mode == Mode::Gather {
            let text = self.gather.render(self.style);
            let _ = self.out.write_all(text.as_bytes());
        }
        let _ = self.out.flush();
    }

    /// (host, verdict, why) for every host, in run order. `daemon` holds the daemon's own
    /// verdicts when the run finished; hosts that never ended count as `unended`.
    pub fn verdicts(
        &self,
        daemon: Option<&[(String, Verdict)]>,
        unended: Verdict,
    ) -> Vec<(String, Verdict, String)> {
        let theirs: HashMap<&str, Verdict> = daemon
            .unwrap_or_default()
            .iter()
            .map(|(h, v)| (h.as_str(), *v))
            .collect();
        self.order
            .iter()
            .map(|h| {
                let (mine, why) = self
                    .ended
                    .get(h)
                    .cloned()
                    .unwrap_or((unended, "no result".to_string()));
                let v = theirs.get(h.as_str()).copied().unwrap_or(mine);
                let why = if v == Verdict::Ok { String::new() } else { why };
                (h.clone(), v, why)
            })
            .collect()
    }

    /// Print the closing summary on stderr.
    pub fn summary(&mut self, verdicts: &[(String, Verdict, String)]) {
        let _ = self.out.flush();
        let text = super::gather::summary(self.err_style, verdicts);
        let _ = self.err.write_all(text.as_bytes());
        let _ = self.err.flush();
    }
}
