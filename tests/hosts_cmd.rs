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
fn without_hosts_toml_the_ssh_config_host_names_are_the_inventory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).expect("mkdir");
    std::fs::write(
        home.join(".ssh/config"),
        "Host alpha beta !gamma *.pattern db?\n  HostName 192.0.2.1\n  User ops\n\
         Host bastion\n  HostName 192.0.2.9\n  Port 2200\nHost beta\n  ProxyJump bastion\n",
    )
    .expect("write config");
    let crew = |args: &[&str]| {
        crew_command(tmp.path(), &tmp.path().join("cfg"))
            .arg("hosts")
            .args(args)
            .current_dir(tmp.path())
            .env("HOME", &home)
            .env_remove("CREW_SSH_CONFIG")
            .output_bounded()
    };
    let out = crew(&[]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "crew hosts: no hosts.toml found (looked for hosts.toml, {}); the hosts are the \
             Host names of {}",
            tmp.path().join("cfg/hosts.toml").display(),
            home.join(".ssh/config").display()
        )
    );
    assert_eq!(stdout.lines().last(), Some("3 hosts: alpha,bastion,beta"));

    let out = crew(&["--json", "beta"]);
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert_eq!(v["name"], "beta");
    assert_eq!(v["hostname"], "192.0.2.1");
    assert_eq!(v["user"], "ops");
    assert_eq!(v["port"], 22);
    assert_eq!(v["proxy_jump"], "bastion");
    assert_eq!(
        v["via"][0].as_str().map(|s| s.ends_with("@192.0.2.9:2200")),
        Some(true)
    );
    assert_eq!(v["transport"], "ssh");

    // A name in no inventory, resolved through the ssh config (`-w`, as pdsh spells it).
    let out = crew(&["-w", "db[1-2],zeta", "--json"]);
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or(""),
                r["hostname"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [("db1", "192.0.2.1"), ("db2", "192.0.2.1"), ("zeta", "zeta")]
    );
}

#[test]
fn a_65536_character_address_does_not_panic_crew_hosts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "a".repeat(65_536);
    let ssh = write(dir.path(), "ssh_config", "");
    let text = format!(
        "[defaults]\nssh_config = {:?}\n[[host]]\nname = \"web1\"\naddress = \"{long}\"\nuser = \"{long}\"\n",
        ssh.display().to_string()
    );
    let p = write(dir.path(), "hosts.toml", &text);
    let (code, out, err) = crew_hosts(&["--hosts", &p.display().to_string()], &[]);
    assert_eq!(code, 0, "stderr: {}", &err[..err.len().min(2000)]);
    let row = out.lines().nth(1).expect("a row for web1");
    assert!(row.starts_with("web1  "), "{}", &row[..40]);
    assert!(row.contains(&long), "the address is shown whole");
}

#[test]
fn a_host_name_over_255_bytes_is_refused_at_load_with_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[[host]]\nname = \"ok\"\n\n[[host]]\nname = \"{}\"\n",
        "n".repeat(256)
    );
    let p = write(dir.path(), "hosts.toml", &text);
    let (code, _, err) = crew_hosts(&["--hosts", &p.display().to_string()], &[]);
    assert_eq!(code, 2, "{err}");
    let want = format!("{}:5:9: host name", p.display());
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("256 bytes long; at most 255"), "{err}");
    assert!(
        err.len() < 300,
        "the message does not repeat the whole name: {err}"
    );
    // 255 bytes is fine.
    let text = format!("[[host]]\nname = \"{}\"\n", "n".repeat(255));
    let p = write(dir.path(), "hosts.toml", &text);
    let (code, _, err) = crew_hosts(&["--hosts", &p.display().to_string()], &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn inventory_errors_show_control_characters_visibly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        // U+009B (a C1 CSI) in a host name, NUL in a group name, ESC in a tag, a parse
        // error in a file whose name holds ESC.
        ("c1.toml", "[[host]]\nname = \"a\u{9b}b\"\n"),
        (
            "nul.toml",
            "[groups]\n\"g\\u0000x\" = \"*\"\n[[host]]\nname = \"ok\"\n",
        ),
        (
            "esc.toml",
            "[[host]]\nname = \"ok\"\ntags = [\"a\\u001b[31mred\"]\n",
        ),
        ("bad\u{1b}[2J.toml", "[[host]\n"),
    ];
    for (file, text) in cases {
        let p = write(dir.path(), file, text);
        let (code, _, err) = crew_hosts(&["--hosts", &p.display().to_string()], &[]);
        assert_eq!(code, 2, "{file}: {err}");
        let raw: Vec<char> = err
            .chars()
            .filter(|c| (c.is_control() && *c != '\n') || ('\u{80}'..='\u{9f}').contains(c))
            .collect();
        assert!(raw.is_empty(), "{file}: raw {raw:?} in {err:?}");
        assert!(
            err.contains(":1:") || err.contains(":2:") || err.contains(":3:"),
            "{err}"
        );
    }
}
