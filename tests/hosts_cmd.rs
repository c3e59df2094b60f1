//! `crew hosts [SELECTION]` run as the real binary against the repo's demo hosts.toml.

mod support;

use std::path::{Path, PathBuf};

use support::cli::crew_command;
use support::Bounded;

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::write(&p, text).expect("write");
    p
}

fn crew_hosts(args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = crew_command(tmp.path(), tmp.path());
    cmd.arg("hosts").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output_bounded();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn crew_hosts_lists_the_demo_fleet() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/hosts.toml");
    let (code, out, err) = crew_hosts(&["--hosts", demo], &[]);
    assert_eq!(code, 0, "stderr: {err}");
    let last = out.lines().last().expect("count line");
    assert_eq!(last, "10 hosts: cache1,db[1-2],demo[1-7]");
    assert!(out.starts_with("NAME "), "{out}");

    let (code, out, err) = crew_hosts(&["--hosts", demo, "role=db | canary"], &[]);
    assert_eq!(code, 0, "stderr: {err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "demo7",
            "local",
            "-",
            "role=demo",
            "env=production",
            "canary"
        ]
    );
    assert_eq!(rows[1][..3], ["db1", "local", "-"]);
    assert_eq!(out.lines().last(), Some("3 hosts: db[1-2],demo7"));

    let (code, out, _) = crew_hosts(&["--hosts", demo, "@backend & !db2"], &[]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().last(), Some("2 hosts: cache1,db1"));
}

#[test]
fn crew_hosts_reports_bad_selections_and_bad_files() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/hosts.toml");
    let (code, out, err) = crew_hosts(&["--hosts", demo, "role=db & (canary"], &[]);
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(
            "  role=db & (canary\n                   ^ expected `)` to close the `(` at column 11"
        ),
        "{err}"
    );

    let bad = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/configs/invalid/port_out_of_range.toml"
    );
    let (code, _, err) = crew_hosts(&["--hosts", bad], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{bad}:6:8: port 70000 out of range")),
        "{err}"
    );
}

#[test]
fn crew_ssh_config_env_names_the_ssh_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        "ssh_cfg",
        "Host box\n  HostName 192.0.2.77\n  Port 2525\n  User envuser\n",
    );
    let hosts = write(dir.path(), "hosts.toml", "[[host]]\nname = \"box\"\n");
    let hosts_s = hosts.display().to_string();
    let (code, out, err) = crew_hosts(&["--hosts", &hosts_s], &[("CREW_SSH_CONFIG", &cfg)]);
    assert_eq!(code, 0, "{err}");
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .collect();
    assert_eq!(row, ["box", "192.0.2.77:2525", "envuser"]);
}

#[test]
fn crew_hosts_says_where_it_looked_for_hosts_toml() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = crew_command(tmp.path(), &tmp.path().join("cfg"))
        .arg("hosts")
        .current_dir(tmp.path())
        .output_bounded();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        format!(
            "crew hosts: no hosts.toml found; looked for hosts.toml, {}",
            tmp.path().join("cfg/hosts.toml").display()
        )
    );
}
