//! What `crew run` prints while a run streams: live `host | line`, `--json` lines, or the
//! `--gather` blocks at the end; plus each host's verdict for the closing summary.

use std::collections::HashMap;
use std::io::Write;

use super::gather::Gather;
use super::render::{host_line, sanitize, Splitter, Style};
use crate::model::Verdict;
use crate::model::{Exit, Stream};
use crate::proto::daemon::{host_event_json, HostEvent, OutputJsonWriter};
use crate::sanitize_class::write_visible;

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
    /// How each host's lines are printed, prepared once per host.
    forms: HashMap<String, HostForms>,
    gather: Gather,
    /// host → (verdict, why) once it ended.
    ended: HashMap<String, (Verdict, String)>,
    /// The daemon could not write the run to the run store.
    store_failed: bool,
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

/// What is printed around one host's lines: the `host | ` / `host ! ` prefixes (with colour
/// when on), and its `--json` output events.
struct HostForms {
    prefix: [Vec<u8>; 2],
    json: OutputJsonWriter,
}

impl HostForms {
    fn new(style: Style, host: &str, width: usize) -> HostForms {
        let prefix = |s| host_line(style, host, width, s, b"").into_bytes();
        HostForms {
            prefix: [prefix(Stream::Stdout), prefix(Stream::Stderr)],
            json: OutputJsonWriter::new(host),
        }
    }
}

/// Print one line or piece of a line: `host | line` (sanitised, as [`host_line`] makes it) or
/// its JSON event. Write errors are ignored here as everywhere in the output (a closed stdout
/// must not stop the run being followed to its end).
fn write_piece<W: Write>(
    out: &mut W,
    mode: Mode,
    forms: &HostForms,
    stream: Stream,
    line: &[u8],
    eol: bool,
) {
    let _ = match mode {
        Mode::Lines => {
            let lane = match stream {
                Stream::Stdout => 0,
                Stream::Stderr => 1,
            };
            out.write_all(&forms.prefix[lane])
                .and_then(|()| write_visible(out, line))
                .and_then(|()| out.write_all(b"\n"))
        }
        Mode::Json => forms.json.write(out, stream, line, eol),
        Mode::Gather => Ok(()),
    };
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
            forms: HashMap::new(),
            gather: Gather::new(hosts),
            ended: HashMap::new(),
            store_failed: false,
            out,
            err,
        }
    }

    /// The printed forms of `host`'s lines, prepared on first use.
    fn forms(&mut self, host: &str) -> &HostForms {
        if !self.forms.contains_key(host) {
            let forms = HostForms::new(self.style, host, self.width);
            self.forms.insert(host.to_string(), forms);
        }
        &self.forms[host]
    }

    /// One line (`eol`) or piece of a line (see [`super::render::LinePiece`]).
    fn line(&mut self, host: &str, stream: Stream, line: &[u8], eol: bool) {
        let mode = self.mode;
        self.forms(host);
        let forms = &self.forms[host];
        write_piece(&mut self.out, mode, forms, stream, line, eol);
    }

    /// A chunk of output, cut into lines, each printed as it is found (no copy of lines
    /// wholly inside `data`).
    fn output(&mut self, host: &str, stream: Stream, data: &[u8]) {
        let mode = self.mode;
        self.forms(host);
        let (forms, out) = (&self.forms[host], &mut self.out);
        self.split.push_each(host, stream, data, |line, eol| {
            write_piece(out, mode, forms, stream, line, eol)
        });
    }

    fn flush_partial(&mut self, host: &str) {
        for (stream, data) in self.split.take(host) {
            self.line(host, stream, &data, false);
        }
    }

    fn json(&mut self, v: serde_json::Value) {
        let _ = writeln!(self.out, "{v}");
    }

    /// One event of one host.
    pub fn host_event(&mut self, host: &str, ev: HostEvent) {
        if self.mode == Mode::Json {
            match &ev {
                HostEvent::Started { .. } | HostEvent::Progress { .. } => {
                    self.json(host_event_json(host, &ev))
                }
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
                self.output(host, stream, &data);
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
            HostEvent::Progress { .. } => {}
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

    /// The run could not be written to the run store: no host of it counts as ok (its result
    /// is not on record), whatever its exit status.
    pub fn store_failed(&mut self) {
        self.store_failed = true;
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
                match v {
                    Verdict::Ok if self.store_failed => (
                        h.clone(),
                        Verdict::Failed,
                        "exit 0, but the run store could not be written".to_string(),
                    ),
                    Verdict::Ok => (h.clone(), v, String::new()),
                    _ => (h.clone(), v, why),
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn exit0() -> HostEvent {
        HostEvent::Exit {
            exit: Exit {
                code: Some(0),
                signal: None,
                wall_ms: 1,
                user_ms: 0,
                sys_ms: 0,
                max_rss_kb: 0,
                timed_out: false,
            },
            verdict: Verdict::Ok,
        }
    }

    fn plain(mode: Mode, hosts: &[&str]) -> Output<Vec<u8>, Vec<u8>> {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let st = Style { color: false };
        Output::new(mode, st, st, &hosts, Vec::new(), Vec::new())
    }

    #[test]
    fn a_run_whose_store_failed_lists_no_host_under_ok() {
        let mut o = plain(Mode::Lines, &["a1", "a2"]);
        o.host_event("a1", exit0());
        o.host_event("a2", exit0());
        o.message("run store: writing runs/7/a1.out: No space left on device");
        o.store_failed();
        o.finish();
        let v = o.verdicts(None, Verdict::Failed);
        o.summary(&v);
        let err = String::from_utf8(o.err).expect("utf8");
        assert!(!err.contains("ok:"), "{err}");
        assert!(
            err.contains(
                "failed:      a[1-2] (2) — exit 0, but the run store could not be written"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_host_lost_mid_run_is_kind_lost_and_failed_everywhere() {
        let lost = || HostEvent::Failed {
            kind: crate::model::ErrorKind::Lost,
            message: "agent link closed: the agent closed its output".into(),
        };
        let mut o = plain(Mode::Json, &["n1", "n2"]);
        o.host_event("n1", exit0());
        o.host_event("n2", lost());
        o.finish();
        let daemon = [
            ("n1".to_string(), Verdict::Ok),
            ("n2".to_string(), Verdict::Failed),
        ];
        let v = o.verdicts(Some(&daemon), Verdict::Failed);
        o.summary(&v);
        let out = String::from_utf8(o.out.clone()).expect("utf8");
        let ev: serde_json::Value =
            serde_json::from_str(out.lines().last().expect("line")).expect("json");
        assert_eq!(
            (&ev["event"], &ev["kind"], &ev["verdict"]),
            (&"error".into(), &"lost".into(), &"failed".into())
        );
        let err = String::from_utf8(o.err).expect("utf8");
        assert_eq!(err, "ok:          n1 (1)\nfailed:      n2 (1) — lost: n2\n");
        assert!(!err.contains("unreachable"), "{err}");
        // Plain mode says the same on stderr.
        let mut o = plain(Mode::Lines, &["n2"]);
        o.host_event("n2", lost());
        let err = String::from_utf8(o.err).expect("utf8");
        assert!(err.starts_with("n2: lost: agent link closed"), "{err}");
    }

    /// The `--json` lines of one host whose stdout arrives in `chunks`, then exits.
    fn json_of(chunks: &[&[u8]]) -> Vec<serde_json::Value> {
        let hosts = vec!["h".to_string()];
        let st = Style { color: false };
        let mut o = Output::new(Mode::Json, st, st, &hosts, Vec::new(), Vec::new());
        for c in chunks {
            o.host_event(
                "h",
                HostEvent::Output {
                    stream: Stream::Stdout,
                    data: c.to_vec(),
                },
            );
        }
        o.host_event(
            "h",
            HostEvent::Exit {
                exit: Exit {
                    code: Some(0),
                    signal: None,
                    wall_ms: 1,
                    user_ms: 0,
                    sys_ms: 0,
                    max_rss_kb: 0,
                    timed_out: false,
                },
                verdict: Verdict::Ok,
            },
        );
        o.finish();
        String::from_utf8(o.out)
            .expect("JSON is UTF-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// What a consumer of `--json` rebuilds: each piece's bytes, a newline after `eol` ones.
    fn rebuilt(events: &[serde_json::Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events.iter().filter(|e| e["event"] == "stdout") {
            match e["bytes"].as_str() {
                Some(b) => out.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .expect("base64"),
                ),
                None => out.extend(e["data"].as_str().expect("data").as_bytes()),
            }
            if e["eol"].as_bool().expect("eol") {
                out.push(b'\n');
            }
        }
        out
    }

    #[test]
    fn json_tells_a_last_line_without_newline_from_one_with() {
        let a = json_of(&[b"x\ny"]);
        let b = json_of(&[b"x\ny\n"]);
        assert_ne!(a, b);
        assert_eq!(rebuilt(&a), b"x\ny");
        assert_eq!(rebuilt(&b), b"x\ny\n");
        assert_eq!(a[1]["data"], "y");
        assert_eq!(a[1]["eol"], false);
        assert_eq!(b[1]["eol"], true);
        assert!(a[1].get("bytes").is_none(), "UTF-8 needs no bytes field");
    }

    #[test]
    fn json_keeps_a_long_line_split_across_chunks_exact_and_marked() {
        // One line of 200 000 bytes in three chunks, then a short one.
        let long: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut all = long.clone();
        all.extend_from_slice(b"\nend\n");
        let (p1, rest) = all.split_at(70_000);
        let (p2, p3) = rest.split_at(70_000);
        let ev = json_of(&[p1, p2, p3]);
        let outs: Vec<&serde_json::Value> = ev.iter().filter(|e| e["event"] == "stdout").collect();
        // Pieces of MAX_LINE marked continued, the last piece of the line with eol.
        let pieces = 200_000usize.div_ceil(super::super::render::MAX_LINE);
        assert_eq!(outs.len(), pieces + 1, "{} events", outs.len());
        for e in &outs[..pieces - 1] {
            assert_eq!(e["eol"], false);
        }
        assert_eq!(outs[pieces - 1]["eol"], true);
        assert_eq!(outs[pieces]["data"], "end");
        assert_eq!(rebuilt(&ev), all);
    }

    /// The pieces a host's stream is printed as, by the rule (not by the splitter): every
    /// line cut into MAX_LINE pieces, the last (maybe empty) one ending the line; a last line
    /// without a newline likewise, without an empty piece.
    fn pieces_by_rule(data: &[u8]) -> Vec<(Vec<u8>, bool)> {
        let max = super::super::render::MAX_LINE;
        let mut out = Vec::new();
        let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        let last = lines.pop().unwrap_or_default();
        for l in lines {
            let mut rest = l;
            while rest.len() >= max {
                out.push((rest[..max].to_vec(), false));
                rest = &rest[max..];
            }
            out.push((rest.to_vec(), true));
        }
        let mut rest = last;
        while !rest.is_empty() {
            let n = rest.len().min(max);
            out.push((rest[..n].to_vec(), false));
            rest = &rest[n..];
        }
        out
    }

    #[test]
    fn plain_lines_are_prefixed_and_sanitised_whatever_the_chunking() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let hosts = ["a".to_string(), "host2".to_string()];
        for round in 0..60 {
            // Short lines mostly; every tenth round a few lines longer than MAX_LINE.
            let len = if round % 10 == 0 { 300_000 } else { 4000 };
            let newline = if round % 10 == 0 { 90_000 } else { 12 };
            let data: Vec<u8> = (0..(next() % len) as usize)
                .map(|_| match next() % newline {
                    0 => b'\n',
                    1 => (next() % 256) as u8,
                    _ => b' ' + (next() % 95) as u8,
                })
                .collect();
            let st = Style {
                color: round % 2 == 1,
            };
            let mut o = Output::new(Mode::Lines, st, st, &hosts, Vec::new(), Vec::new());
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = ((next() % 9000) as usize + 1).min(rest.len());
                o.host_event(
                    "host2",
                    HostEvent::Output {
                        stream: if round % 3 == 0 {
                            Stream::Stderr
                        } else {
                            Stream::Stdout
                        },
                        data: rest[..n].to_vec(),
                    },
                );
                rest = &rest[n..];
            }
            o.host_event("host2", exit0());
            o.finish();
            let stream = if round % 3 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            let mut want = String::new();
            for (piece, _) in pieces_by_rule(&data) {
                want += &host_line(st, "host2", 5, stream, &piece);
                want.push('\n');
            }
            let got = String::from_utf8(o.out).expect("printed output is UTF-8");
            assert!(got == want, "round {round}: output differs");
        }
    }

    #[test]
    fn json_rebuilds_any_bytes_in_any_chunking() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let len = (next() % 3000) as usize;
            // Mostly text and newlines, some invalid UTF-8 and control bytes.
            let data: Vec<u8> = (0..len)
                .map(|_| match next() % 10 {
                    0 => b'\n',
                    1 => (next() % 256) as u8,
                    2 => b'\r',
                    _ => b'a' + (next() % 26) as u8,
                })
                .collect();
            let mut chunks = Vec::new();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = ((next() % 700) as usize + 1).min(rest.len());
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            let ev = json_of(&chunks);
            assert_eq!(rebuilt(&ev), data);
            for e in ev.iter().filter(|e| e["event"] == "stdout") {
                if let Some(b) = e["bytes"].as_str() {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .expect("base64");
                    assert!(std::str::from_utf8(&raw).is_err(), "bytes only when needed");
                }
            }
        }
    }
}
