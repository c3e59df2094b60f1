//! `crew heist …` as a user runs it: check, list, plan, and a run refused before any host is
//! touched when a variable is undefined.

use std::path::Path;
use std::process::{Command, Output};

fn crew(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crew"))
        .args(args)
        .env("CREW_HOME", home.join("state"))
        .env("CREW_CONFIG_DIR", home.join("config"))
        .env_remove("CREW_HOSTS")
        .output()
        .expect("run crew")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const HOSTS: &str = r#"
[defaults]
transport = "local"
[[host]]
name = "n[1-4]"
tags = ["role=demo", "zone=a"]
"#;

fn fleet() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("temp dir");
    std::fs::write(d.path().join("hosts.toml"), HOSTS).expect("hosts.toml");
    std::fs::create_dir_all(d.path().join("heists")).expect("heists dir");
    d
}

#[test]
fn check_reports_file_line_col() {
    let d = fleet();
    let f = d.path().join("heists/bad.toml");
    std::fs::write(&f, "[heist.x]\nselect = \"role=demo\"\n[[heist.x.step]]\nname = \"s\"\nrun = \"echo ${nope}\"\n").expect("write");
    let o = crew(d.path(), &["heist", "check", f.to_str().expect("utf8")]);
    let (_, err) = text(&o);
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
    let (_, err) = text(&crew(
        d.path(),
        &["heist", "check", f.to_str().expect("utf8")],
    ));
    assert!(
        err.contains("bad.toml:2:"),
        "bad selections are located too: {err}"
    );
}

#[test]
fn list_and_plan_use_the_heists_beside_hosts_toml() {
    let d = fleet();
    std::fs::write(
        d.path().join("heists/roll.toml"),
        "[heist.roll]\ndescription = \"two waves\"\nselect = \"role=demo\"\nbatch = \"50%\"\n\
         [[heist.roll.step]]\nname = \"hi\"\nrun = \"echo ${greeting} ${host} ${tag.zone}\"\nparams = []\n",
    )
    .map(|_| ())
    .expect("write");
    // `params` belongs to the heist, not the step: a clear error names it.
    let hosts = d.path().join("hosts.toml");
    let h = hosts.to_str().expect("utf8");
    let (out, err) = text(&crew(d.path(), &["--hosts", h, "heist", "list"]));
    assert!(
        err.contains("roll.toml:8:1") && err.contains("params"),
        "{out}{err}"
    );

    std::fs::write(
        d.path().join("heists/roll.toml"),
        "[heist.roll]\ndescription = \"two waves\"\nselect = \"role=demo\"\nbatch = \"50%\"\nparams = [\"greeting\"]\n\
         [[heist.roll.step]]\nname = \"hi\"\nrun = \"echo ${greeting} ${host} ${tag.zone}\"\n",
    )
    .expect("write");
    let o = crew(d.path(), &["--hosts", h, "heist", "list"]);
    let (out, _) = text(&o);
    assert!(out.contains("roll") && out.contains("two waves"), "{out}");

    let o = crew(
        d.path(),
        &[
            "--hosts",
            h,
            "heist",
            "plan",
            "roll",
            "--set",
            "greeting=hey",
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("wave 2/2: n[3-4]"), "{out}");
    assert!(out.contains("echo hey n4 a"), "{out}");

    let o = crew(d.path(), &["--hosts", h, "heist", "plan", "roll"]);
    let (_, err) = text(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("needs --set greeting=VALUE"), "{err}");
}

#[test]
fn undefined_variables_stop_a_run_before_any_host_is_touched() {
    let d = fleet();
    let marker = d.path().join("touched");
    std::fs::write(
        d.path().join("heists/t.toml"),
        format!(
            "[heist.t]\nselect = \"role=demo\"\n[[heist.t.step]]\nname = \"touch\"\nrun = \"touch {}\"\n\
             [[heist.t.step]]\nname = \"later\"\nrun = \"echo ${{tag.rack}}\"\n",
            marker.display()
        ),
    )
    .expect("write");
    let hosts = d.path().join("hosts.toml");
    let o = crew(
        d.path(),
        &[
            "--hosts",
            hosts.to_str().expect("utf8"),
            "heist",
            "run",
            "t",
        ],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "nothing ran: {err}");
    assert!(
        err.contains("undefined variable `${tag.rack}`") && err.contains("n1"),
        "{err}"
    );
    assert!(
        !marker.exists(),
        "a step ran although the heist could not render"
    );
    // The daemon planned it (heists run there) and refused before touching any host: no run
    // and no heist journal in its store.
    let runs: Vec<String> = std::fs::read_dir(d.path().join("state/runs"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(runs.is_empty(), "nothing ran, nothing stored: {runs:?}");
    let _ = crew(d.path(), &["daemon", "stop"]);
}
