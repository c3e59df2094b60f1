//! `crew heist …` as a user runs it: check, list, plan, a run refused before any host is
//! touched when a variable is undefined (exit 2), a step that asks answered on the terminal
//! (and aborted when stdin is not one), and `crew heist show` after the CLI crashed mid-run.

mod support;

use std::time::Duration;

use crew::heist::events::{Choice, Decision, HeistEvent};
use support::cli::{local_hosts, stderr, stdout, text, CliEnv};
use support::proc::{marker, sleeps_with, wait_until};
use support::pty::{Io, PtyChild};

const WAIT: Duration = Duration::from_secs(60);

fn fleet() -> CliEnv {
    CliEnv::new(&local_hosts(&[("n[1-4]", &["role=demo", "zone=a"])]))
}

#[test]
fn check_reports_file_line_col() {
    let d = fleet();
    let f = d.heist_file(
        "bad.toml",
        "[heist.x]\nselect = \"role=demo\"\n[[heist.x.step]]\nname = \"s\"\nrun = \"echo ${nope}\"\n",
    );
    let o = d.crew(&["heist", "check", f.to_str().expect("utf8")]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.toml:5:13: step `s`: unknown variable `${nope}`"),
        "{err}"
    );

    std::fs::write(
        &f,
        "[heist.x]\nselect = \"role=(demo\"\n[[heist.x.step]]\nname = \"s\"\nrun = \"true\"\n",
    )
    .expect("write");
    let err = stderr(&d.crew(&["heist", "check", f.to_str().expect("utf8")]));
    assert!(
        err.contains("bad.toml:2:"),
        "bad selections are located too: {err}"
    );
}

#[test]
fn list_and_plan_use_the_heists_beside_hosts_toml() {
    let d = fleet();
    d.heist_file(
        "roll.toml",
        "[heist.roll]\ndescription = \"two waves\"\nselect = \"role=demo\"\nbatch = \"50%\"\n\
         [[heist.roll.step]]\nname = \"hi\"\nrun = \"echo ${greeting} ${host} ${tag.zone}\"\nparams = []\n",
    );
    // `params` belongs to the heist, not the step: a clear error names it.
    let o = d.crew(&["heist", "list"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        err.contains("roll.toml:8:1") && err.contains("params"),
        "{}",
        text(&o)
    );

    d.heist_file(
        "roll.toml",
        "[heist.roll]\ndescription = \"two waves\"\nselect = \"role=demo\"\nbatch = \"50%\"\nparams = [\"greeting\"]\n\
         [[heist.roll.step]]\nname = \"hi\"\nrun = \"echo ${greeting} ${host} ${tag.zone}\"\n",
    );
    let out = stdout(&d.crew(&["heist", "list"]));
    assert!(out.contains("roll") && out.contains("two waves"), "{out}");

    let o = d.crew(&["heist", "plan", "roll", "--set", "greeting=hey"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(out.contains("wave 2/2: n[3-4]"), "{out}");
    assert!(out.contains("echo hey n4 a"), "{out}");

    // A missing parameter: nothing can run, a usage error (exit 2).
    let o = d.crew(&["heist", "plan", "roll"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stderr(&o).contains("needs --set greeting=VALUE"),
        "{}",
        text(&o)
    );
}

#[test]
fn undefined_variables_stop_a_run_before_any_host_is_touched() {
    let d = fleet();
    let touched = d.path().join("touched");
    d.heist_file(
        "t.toml",
        &format!(
            "[heist.t]\nselect = \"role=demo\"\n[[heist.t.step]]\nname = \"touch\"\nrun = \"touch {}\"\n\
             [[heist.t.step]]\nname = \"later\"\nrun = \"echo ${{tag.rack}}\"\n",
            touched.display()
        ),
    );
    let o = d.crew(&["heist", "run", "t"]);
    let err = stderr(&o);
    // README: exit 2 when nothing ran.
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        err.contains("undefined variable `${tag.rack}`") && err.contains("n1"),
        "{err}"
    );
    assert!(
        !touched.exists(),
        "a step ran although the heist could not render"
    );
    // The daemon planned it (heists run there) and refused before touching any host: no run
    // and no heist journal in its store.
    let runs: Vec<String> = std::fs::read_dir(d.home().join("runs"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(runs.is_empty(), "nothing ran, nothing stored: {runs:?}");
}

/// A gate that fails until `<dir>/open` exists, asking the operator; then a step that leaves
/// `<dir>/<host>-after`.
fn gate(d: &CliEnv) -> String {
    d.heist_file(
        "gate.toml",
        "[heist.gate]\nselect = \"n1\"\nparams = [\"dir\"]\n\
         [[heist.gate.step]]\nname = \"check\"\nrun = \"test -e ${dir}/open || { echo closed >&2; exit 3; }\"\n\
         on_fail = { then = \"ask\" }\n\
         [[heist.gate.step]]\nname = \"after\"\nrun = \"touch ${dir}/${host}-after\"\n",
    );
    format!("dir={}", d.path().display())
}

/// The operator's choices for `host` in the newest heist run's journal.
fn operator_choices(d: &CliEnv, host: &str) -> Vec<Choice> {
    let runs = d.heist_runs();
    let events = crew::heist::journal::read(runs.last().expect("a heist run")).expect("journal");
    events
        .iter()
        .filter_map(|e| match e {
            HeistEvent::Decision {
                host: h,
                decision: Decision::Operator { choice },
                ..
            } if h == host => Some(*choice),
            _ => None,
        })
        .collect()
}

#[test]
fn heist_run_asks_on_the_terminal() {
    let d = fleet();
    let set = gate(&d);
    let mut tty = PtyChild::spawn(
        &mut d.command(&["heist", "run", "gate", "--set", &set]),
        Io::ALL,
    );
    let asked = tty.wait_for("[a]dvance, [r]etry, roll[b]ack or abor[x]?", WAIT);
    assert!(
        asked.contains("n1: step `1/2 check` failed: exit 3"),
        "{asked}"
    );
    // Open the gate, then answer: retry.
    std::fs::write(d.path().join("open"), "").expect("open the gate");
    tty.type_bytes(b"r\n");
    let status = tty.wait_exit(WAIT);
    let shown = tty.wait_for("== heist gate", WAIT);
    assert_eq!(status.code(), Some(0), "{shown}");
    assert!(shown.contains("completed on 1/1 host(s)"), "{shown}");
    assert!(d.path().join("n1-after").exists(), "{shown}");
    assert_eq!(operator_choices(&d, "n1"), [Choice::Retry]);
}

#[test]
fn heist_run_aborts_an_ask_when_stdin_is_not_a_terminal() {
    let d = fleet();
    let set = gate(&d);
    let o = d.crew(&["heist", "run", "gate", "--set", &set]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("stdin is not a terminal: aborting this host"),
        "{}",
        text(&o)
    );
    assert!(stdout(&o).contains("n1  failed at check"), "{}", text(&o));
    assert!(!d.path().join("n1-after").exists(), "{}", text(&o));
}

#[test]
fn heist_show_after_the_cli_crashed_mid_run() {
    let d = fleet();
    let mark = marker();
    d.heist_file(
        "slow.toml",
        &format!(
            "[heist.slow]\nselect = \"n[1-2]\"\n\
             [[heist.slow.step]]\nname = \"first\"\nrun = \"echo first\"\n\
             [[heist.slow.step]]\nname = \"wait\"\nrun = \"sleep {mark}\"\n\
             [[heist.slow.step]]\nname = \"last\"\nrun = \"true\"\n"
        ),
    );
    let mut child = d
        .command(&["heist", "run", "slow"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("crew heist run");
    wait_until("both hosts in `wait`", WAIT, || {
        sleeps_with(&mark).len() == 2
    });
    // The CLI dies without a chance to write anything more.
    child.kill().expect("SIGKILL crew heist run");
    support::proc::wait_within(&mut child, WAIT, "the killed crew heist run");

    let o = d.crew(&["heist", "show"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(out.contains("INTERRUPTED: no end was recorded"), "{out}");
    for h in ["n1", "n2"] {
        let row: Vec<&str> = out
            .lines()
            .find(|l| l.starts_with(&format!("{h} ")))
            .unwrap_or_else(|| panic!("no row for {h}:\n{out}"))
            .split_whitespace()
            .collect();
        // first ok, wait was running (interrupted), last never started; no outcome recorded.
        assert_eq!(row, [h, "ok", "interrupted", "pending", "-"], "{out}");
    }
    let run = d.heist_runs().pop().expect("the heist run");
    assert!(
        out.contains(&format!("journal: {}", run.display())),
        "{out}"
    );
}
