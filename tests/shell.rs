//! Shell integration as a user meets it: the bash registration script is valid bash and
//! completes a selection from the inventory through the shell's own completion call; the
//! manual page renders with `man -l`.

mod support;

use std::process::{Command, Stdio};

use support::require_tool;

fn crew() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crew"));
    c.env_remove("CREW_HOSTS").stdin(Stdio::null());
    c
}

/// Run to the end, bounded (60 s): exit code, stdout, stderr.
fn run(c: &mut Command) -> (Option<i32>, String, String) {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{c:?} did not exit within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let o = child.wait_with_output().expect("output");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn bash_completion_script_parses_and_completes_selections_from_the_inventory() {
    if !require_tool("bash") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("hosts.toml"),
        "[[host]]\nname = \"web[1-2]\"\ntransport = \"local\"\ntags = [\"role=web\"]\n\
         [[host]]\nname = \"db1\"\ntransport = \"local\"\ntags = [\"role=db\"]\n\
         [groups]\nfront = \"role=web\"\n",
    )
    .expect("hosts.toml");
    let (code, script, err) = run(crew().args(["completions", "bash"]));
    assert_eq!(code, Some(0), "{err}");
    let path = dir.path().join("crew.bash");
    std::fs::write(&path, &script).expect("script");
    let (code, _, err) = run(Command::new("bash").arg("-n").arg(&path));
    assert_eq!(code, Some(0), "bash -n: {err}");
    // What bash does on <Tab>: source the script, set COMP_WORDS, call the function.
    let probe = format!(
        "source '{}'; COMP_WORDS=(crew run 'role=web & @fr'); COMP_CWORD=2; COMP_TYPE=9; \
         _clap_complete_crew crew 'role=web & @fr' run; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let (code, out, err) = run(Command::new("bash")
        .args(["-c", &probe])
        .current_dir(dir.path()));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "role=web & @front", "{out}{err}");
    let probe = format!(
        "source '{}'; COMP_WORDS=(crew hosts w); COMP_CWORD=2; COMP_TYPE=9; \
         _clap_complete_crew crew w hosts; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let (_, out, err) = run(Command::new("bash")
        .args(["-c", &probe])
        .current_dir(dir.path()));
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, ["web1", "web2"], "{out}{err}");
}

#[test]
fn the_manual_page_renders_with_man() {
    if !require_tool("man") {
        return;
    }
    let (code, page, err) = run(crew().arg("man"));
    assert_eq!(code, Some(0), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crew.1");
    std::fs::write(&path, page).expect("page");
    let (code, text, err) = run(Command::new("man")
        .arg("-l")
        .arg(&path)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100"));
    assert_eq!(code, Some(0), "man -l: {err}");
    for part in [
        "NAME",
        "crew - A terminal fleet console",
        "CREW RUN",
        "--timeout",
        "CREW HEIST",
    ] {
        assert!(text.contains(part), "{part} missing:\n{text}");
    }
}
