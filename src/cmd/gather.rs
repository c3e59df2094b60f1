//! `--gather`: hosts with identical stdout, stderr and ending fold into one block headed by
//! their folded nodeset and count (dshbak -c style); and the closing summary.

use std::collections::HashMap;

use super::render::{sanitize, Style};
use crate::model::Stream;
use crate::model::Verdict;
use crate::nodeset;

#[derive(Default)]
struct HostOut {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    ending: String,
}

/// Everything each host printed, in the run's host order.
#[derive(Default)]
pub struct Gather {
    order: Vec<String>,
    hosts: HashMap<String, HostOut>,
}

impl Gather {
    pub fn new(hosts: &[String]) -> Gather {
        Gather {
            order: hosts.to_vec(),
            hosts: HashMap::new(),
        }
    }

    pub fn output(&mut self, host: &str, stream: Stream, data: &[u8]) {
        let h = self.hosts.entry(host.to_string()).or_default();
        match stream {
            Stream::Stdout => h.stdout.extend_from_slice(data),
            Stream::Stderr => h.stderr.extend_from_slice(data),
        }
    }

    /// How the host ended: `exit 0`, `signal 9`, `unreachable: …`.
    pub fn ending(&mut self, host: &str, ending: String) {
        self.hosts.entry(host.to_string()).or_default().ending = ending;
    }

    /// The folded blocks, ready to print.
    pub fn render(&self, style: Style) -> String {
        let empty = HostOut::default();
        let mut groups: Vec<(&HostOut, Vec<&str>)> = Vec::new();
        let mut index: HashMap<(&[u8], &[u8], &str), usize> = HashMap::new();
        for name in &self.order {
            let h = self.hosts.get(name).unwrap_or(&empty);
            let key = (&h.stdout[..], &h.stderr[..], h.ending.as_str());
            match index.get(&key) {
                Some(&i) => groups[i].1.push(name),
                None => {
                    index.insert(key, groups.len());
                    groups.push((h, vec![name]));
                }
            }
        }
        let mut out = String::new();
        for (h, names) in groups {
            let head = format!(
                "{} ({})",
                sanitize(nodeset::fold(&names).as_bytes()),
                names.len()
            );
            let rule = "-".repeat(head.chars().count().clamp(15, 79));
            out.push_str(&style.dim(&rule));
            out.push('\n');
            out.push_str(&style.host(&head));
            out.push('\n');
            out.push_str(&style.dim(&rule));
            out.push('\n');
            for line in lines(&h.stdout) {
                out.push_str(&sanitize(line));
                out.push('\n');
            }
            for line in lines(&h.stderr) {
                out.push_str(&style.err("!"));
                out.push(' ');
                out.push_str(&sanitize(line));
                out.push('\n');
            }
            if !h.ending.is_empty() && h.ending != "exit 0" {
                out.push_str(&style.warn(&format!("[{}]", sanitize(h.ending.as_bytes()))));
                out.push('\n');
            }
        }
        out
    }
}

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    data.split(|&b| b == b'\n')
        .filter(move |_| !data.is_empty())
}

/// The closing summary: one line per verdict that occurred, hosts as folded nodesets with
/// counts; failed and unreachable hosts grouped by why (`exit 2`, `hostkey`, …).
pub fn summary(style: Style, hosts: &[(String, Verdict, String)]) -> String {
    let cats = [
        (Verdict::Ok, "ok"),
        (Verdict::Failed, "failed"),
        (Verdict::Timeout, "timed out"),
        (Verdict::Unreachable, "unreachable"),
        (Verdict::Killed, "killed"),
    ];
    let mut out = String::new();
    for (v, label) in cats {
        let mine: Vec<&(String, Verdict, String)> = hosts.iter().filter(|h| h.1 == v).collect();
        if mine.is_empty() {
            continue;
        }
        let names: Vec<&str> = mine.iter().map(|h| h.0.as_str()).collect();
        let mut line = format!(
            "{:<12} {} ({})",
            format!("{label}:"),
            nodeset::fold(&names),
            names.len()
        );
        if v != Verdict::Ok {
            let mut why: Vec<(&str, Vec<&str>)> = Vec::new();
            for h in &mine {
                match why.iter_mut().find(|(w, _)| *w == h.2) {
                    Some((_, n)) => n.push(&h.0),
                    None => why.push((&h.2, vec![&h.0])),
                }
            }
            let parts: Vec<String> = why
                .iter()
                .filter(|(w, _)| !w.is_empty())
                .map(|(w, n)| format!("{w}: {}", nodeset::fold(n)))
                .collect();
            if !parts.is_empty() {
                line.push_str(" — ");
                line.push_str(&parts.join("; "));
            }
        }
        let line = sanitize(line.as_bytes());
        out.push_str(&match v {
            Verdict::Ok => style.ok(&line),
            Verdict::Failed | Verdict::Unreachable => style.err(&line),
            Verdict::Timeout | Verdict::Killed => style.warn(&line),
        });
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_hosts_fold_into_one_block() {
        let names: Vec<String> = ["web1", "web2", "web3", "db1"].map(String::from).to_vec();
        let mut g = Gather::new(&names);
        for h in ["web1", "web2", "web3"] {
            g.output(h, Stream::Stdout, b"hello\n");
            g.ending(h, "exit 0".into());
        }
        g.output("db1", Stream::Stdout, b"hello\n");
        g.output("db1", Stream::Stderr, b"oops\x1b\n");
        g.ending("db1", "exit 3".into());
        let text = g.render(Style { color: false });
        let expected = "---------------\nweb[1-3] (3)\n---------------\nhello\n\
                        ---------------\ndb1 (1)\n---------------\nhello\n! oops^[\n[exit 3]\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn summary_folds_and_explains() {
        let hosts = vec![
            ("web1".to_string(), Verdict::Ok, String::new()),
            ("web2".to_string(), Verdict::Ok, String::new()),
            ("web3".to_string(), Verdict::Failed, "exit 2".to_string()),
            (
                "db1".to_string(),
                Verdict::Unreachable,
                "hostkey".to_string(),
            ),
        ];
        let s = summary(Style { color: false }, &hosts);
        assert_eq!(
            s,
            "ok:          web[1-2] (2)\nfailed:      web3 (1) — exit 2: web3\nunreachable: db1 (1) — hostkey: db1\n"
        );
    }
}
