//! Tests of `spawn`: real processes started through clone(CLONE_VM | CLONE_VFORK).

use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsFd;

use super::*;

const PATH: &str = "PATH=/usr/bin:/bin";

struct Ran {
    status: i32,
    out: String,
    err: String,
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

fn bash() -> CString {
    let path = ["/bin/bash", "/usr/bin/bash"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("bash installed");
    c(path)
}

fn start(program: &CStr, script: &str, env: &[&str], cwd: &str) -> Result<Spawned, SpawnError> {
    let devnull = std::fs::File::open("/dev/null").expect("open /dev/null");
    let argv = [c("bash"), c("-c"), c(script)];
    let argv: Vec<&CStr> = argv.iter().map(|s| s.as_c_str()).collect();
    let env: Vec<CString> = env.iter().map(|s| c(s)).collect();
    let envp: Vec<&CStr> = env.iter().map(|s| s.as_c_str()).collect();
    let cwd = c(cwd);
    spawn(&Request {
        program,
        argv: &argv,
        envp: &envp,
        cwd: &cwd,
        stdin: devnull.as_fd(),
    })
}

fn finish(s: Spawned) -> Ran {
    let mut out = String::new();
    let mut err = String::new();
    std::fs::File::from(s.stdout)
        .read_to_string(&mut out)
        .expect("read stdout");
    std::fs::File::from(s.stderr)
        .read_to_string(&mut err)
        .expect("read stderr");
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid out-pointer.
    let rc = unsafe { libc::waitpid(s.pid, &mut status, 0) };
    assert_eq!(rc, s.pid, "reaped {}", io::Error::last_os_error());
    Ran { status, out, err }
}

fn run(script: &str, env: &[&str], cwd: &str) -> Ran {
    finish(start(&bash(), script, env, cwd).expect("spawn"))
}

#[test]
fn exit_code_output_env_and_cwd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path().to_str().expect("utf8 temp path");
    let r = run(
        "echo \"$A-$B\"; pwd; echo oops >&2; readlink /proc/self/fd/0; exit 7",
        &["A=one", "B=two", PATH],
        cwd,
    );
    assert!(libc::WIFEXITED(r.status));
    assert_eq!(libc::WEXITSTATUS(r.status), 7);
    let lines: Vec<&str> = r.out.lines().collect();
    assert_eq!(lines, ["one-two", cwd, "/dev/null"], "{}", r.out);
    assert_eq!(r.err, "oops\n");
}

#[test]
fn only_the_given_environment() {
    let r = run("env", &["ONLY=this", PATH], "/");
    let mut names: Vec<&str> = r
        .out
        .lines()
        .filter_map(|l| l.split_once('=').map(|x| x.0))
        .collect();
    names.sort();
    // bash adds PWD, SHLVL and `_` itself.
    assert!(names.contains(&"ONLY"), "{}", r.out);
    assert!(!names.contains(&"HOME"), "{}", r.out);
}

#[test]
fn own_process_group_and_default_signals() {
    let r = run(
        "read -r _ _ _ _ pgid _ < /proc/$$/stat; echo $$ $pgid; \
         grep -E '^Sig(Ign|Blk)' /proc/self/status",
        &[PATH],
        "/",
    );
    let mut lines = r.out.lines();
    let ids: Vec<&str> = lines.next().expect("ids").split_whitespace().collect();
    assert_eq!(ids.len(), 2, "{}", r.out);
    assert_eq!(ids[0], ids[1], "pgid == pid: {}", r.out);
    for l in lines {
        // grep's own status: no standard signal blocked or ignored (SIGPIPE included, which
        // the Rust runtime ignores). Signals 32 and 33 are glibc's internal ones, left as
        // they were (std's posix_spawn ignores them in its children).
        let (name, hex) = l.split_once(':').expect("status line");
        let bits = u64::from_str_radix(hex.trim(), 16).expect("hex mask");
        assert_eq!(bits & 0x7fff_ffff, 0, "{name}: {hex}");
    }
}

#[test]
fn dies_with_the_thread_that_started_it() {
    // PR_SET_PDEATHSIG fires when the thread that cloned the child exits.
    let child =
        std::thread::spawn(|| start(&bash(), "exec sleep 100", &[PATH], "/").expect("spawn"))
            .join()
            .expect("spawning thread");
    let r = finish(child);
    assert!(libc::WIFSIGNALED(r.status), "status {:#x}", r.status);
    assert_eq!(libc::WTERMSIG(r.status), libc::SIGKILL);
}

#[test]
fn exec_failure_names_program_and_errno() {
    let e = start(&c("/nonexistent/bash"), "true", &[], "/").expect_err("no such program");
    assert_eq!(e.step, Step::Exec);
    assert_eq!(e.error.raw_os_error(), Some(libc::ENOENT));
    let msg = e.to_string();
    assert!(msg.contains("/nonexistent/bash"), "{msg}");
}

#[test]
fn chdir_failure_names_directory() {
    let e = start(&bash(), "true", &[], "/nonexistent/dir").expect_err("no such dir");
    assert_eq!(e.step, Step::Chdir);
    assert_eq!(e.error.raw_os_error(), Some(libc::ENOENT));
    assert!(e.to_string().contains("chdir /nonexistent/dir"), "{e}");
}

#[test]
fn many_spawns_from_several_threads() {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..25 {
                    let r = run(&format!("echo {t}-{i}"), &[], "/");
                    assert_eq!(r.out, format!("{t}-{i}\n"));
                    assert_eq!(libc::WEXITSTATUS(r.status), 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
}
