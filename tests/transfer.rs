//! `crew put` and `crew fetch` over a real sshd fleet on loopback, as an operator runs them.
//! Every host of the fleet has a `$HOME` of its own, so a host-relative path (`big.bin`) is a
//! different file on each host although they all live on this machine.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::cli::text;
use support::proc::Bounded;
use support::ssh_env::SshEnv;
use support::sshd::FleetOptions;
use support::{require_root, require_tool};

/// A copy of hundreds of MB to 20 hosts in a debug build on a shared machine.
const BIG_WAIT: Duration = Duration::from_secs(600);

fn ready(n: usize) -> Option<SshEnv> {
    if !require_tool("sshd") {
        return None;
    }
    let env = SshEnv::with(
        n,
        FleetOptions {
            own_homes: true,
            ..FleetOptions::default()
        },
    );
    env.warm();
    Some(env)
}

fn names(env: &SshEnv) -> Vec<String> {
    env.fleet.hosts().into_iter().map(|h| h.name).collect()
}

fn sha_file(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("hash");
    hex::encode(h.finalize())
}

/// `n` bytes from /dev/urandom into `p`.
fn random_file(p: &Path, n: usize) {
    let out = Command::new("head")
        .args(["-c", &n.to_string(), "/dev/urandom"])
        .output_within(Duration::from_secs(120));
    assert!(out.status.success(), "head /dev/urandom");
    assert_eq!(out.stdout.len(), n);
    std::fs::write(p, &out.stdout).expect("write the source");
}

/// Peak resident set (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM for pid {pid}"))
}

/// The agent pid of every host, from one `crew status`.
fn agent_pids(env: &SshEnv) -> BTreeMap<String, u32> {
    let st = env.status();
    let mut out = BTreeMap::new();
    for h in names(env) {
        let pid = st
            .lines()
            .find(|l| l.split_whitespace().next() == Some(h.as_str()))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no agent pid for {h} in `crew status`:\n{st}"));
        out.insert(h, pid);
    }
    out
}

/// Lines `host | text` of a run's stdout, by host.
fn host_lines(stdout: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in stdout.lines() {
        if let Some((h, t)) = l.split_once(" | ") {
            m.entry(h.trim().to_string())
                .or_default()
                .push(t.to_string());
        }
    }
    m
}

/// Files named `.crew-put-*` / `.crew-fetch-*` under `dir` (temp files left behind).
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".crew-") {
                out.push(e.path());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    out
}

#[test]
fn put_200mb_to_20_hosts_arrives_byte_exact_and_atomically_with_memory_bounded() {
    let Some(env) = ready(20) else { return };
    const SIZE: usize = 200 * 1024 * 1024;
    let src = env.path().join("big.bin");
    random_file(&src, SIZE);
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let want = sha_file(&src);
    let hosts = names(&env);
    let targets: Vec<PathBuf> = hosts
        .iter()
        .map(|h| env.fleet.host_home(h).join("big.bin"))
        .collect();
    // A reader polling every target meanwhile never sees a partial file there.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, targets) = (stop.clone(), targets.clone());
        std::thread::spawn(move || {
            let mut seen = 0usize;
            let deadline = Instant::now() + BIG_WAIT;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                for t in &targets {
                    if let Ok(m) = std::fs::metadata(t) {
                        assert_eq!(m.len(), SIZE as u64, "{} is partial", t.display());
                        seen += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    let daemon_before = peak_rss_kib(env.daemon_pid() as u32);
    let started = Instant::now();
    let out = env
        .command(&["put", "role=web", "big.bin", "big.bin"])
        .output_within(BIG_WAIT);
    let wall = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().expect("the watcher saw no partial file");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = host_lines(&stdout);
    for h in &hosts {
        let l = lines.get(h).map(|v| v.join("\n")).unwrap_or_default();
        assert!(
            l.contains(&format!("sha256 {want}")),
            "{h} reports the sha256 it wrote: {l:?}\n{}",
            text(&out)
        );
    }
    // sha256 computed on every host.
    let check = env.crew(&["run", "role=web", "--", "sha256sum ~/big.bin"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let sums = host_lines(&String::from_utf8_lossy(&check.stdout));
    for h in &hosts {
        let l = sums.get(h).map(|v| v.join("\n")).unwrap_or_default();
        assert!(
            l.starts_with(&want),
            "{h}: sha256sum says {l:?}, want {want}"
        );
    }
    // Mode and mtime preserved; no temp file left.
    let src_meta = std::fs::metadata(&src).expect("source");
    for t in &targets {
        let m = std::fs::metadata(t).expect("target");
        assert_eq!(m.mode() & 0o7777, 0o640, "{}", t.display());
        assert_eq!(
            (m.mtime(), m.mtime_nsec()),
            (src_meta.mtime(), src_meta.mtime_nsec()),
            "{}",
            t.display()
        );
        let dir = t.parent().expect("home");
        assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));
    }
    // Memory: the daemon's and agents' peaks, whatever the size of the file.
    let daemon = peak_rss_kib(env.daemon_pid() as u32);
    let agents: Vec<u64> = agent_pids(&env)
        .values()
        .map(|p| peak_rss_kib(*p))
        .collect();
    let agent_max = agents.iter().copied().max().unwrap_or(0);
    let agent_mean = agents.iter().sum::<u64>() / agents.len().max(1) as u64;
    println!(
        "\nput {} MiB to {} hosts in {:.1} s ({} polls of the targets saw only whole files)\n\
         | process | peak RSS |\n|---|---|\n| daemon before the put | {:.1} MiB |\n\
         | daemon | {:.1} MiB |\n\
         | agent (max of {}) | {:.1} MiB |\n| agent (mean) | {:.1} MiB |",
        SIZE >> 20,
        hosts.len(),
        wall.as_secs_f64(),
        seen,
        daemon_before as f64 / 1024.0,
        daemon as f64 / 1024.0,
        agents.len(),
        agent_max as f64 / 1024.0,
        agent_mean as f64 / 1024.0,
    );
    // Bounded: far below one copy of the file.
    assert!(
        daemon < 150 * 1024,
        "daemon peak RSS {daemon} KiB for a {SIZE}-byte copy"
    );
    assert!(
        agent_max < 64 * 1024,
        "agent peak RSS {agent_max} KiB for a {SIZE}-byte copy"
    );
}

#[test]
fn fetch_brings_a_different_file_from_each_of_20_hosts_into_its_own_place() {
    let Some(env) = ready(20) else { return };
    let hosts = names(&env);
    let mut want = BTreeMap::new();
    for (i, h) in hosts.iter().enumerate() {
        let p = env.fleet.host_home(h).join("logs").join("app.log");
        std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
        // Sizes differ too: up to 2 MiB and a bit.
        random_file(&p, 100_000 * (i + 1) + i);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        want.insert(
            h.clone(),
            (sha_file(&p), std::fs::metadata(&p).expect("meta")),
        );
    }
    let local = env.path().join("collected");
    let out = env
        .command(&[
            "fetch",
            "role=web",
            "logs/app.log",
            local.to_str().expect("utf8"),
        ])
        .output_within(BIG_WAIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (h, (sha, meta)) in &want {
        let got = local.join(h).join("logs/app.log");
        assert_eq!(&sha_file(&got), sha, "{}", got.display());
        let m = std::fs::metadata(&got).expect("fetched");
        assert_eq!(m.mode() & 0o7777, 0o600, "{}", got.display());
        assert_eq!(m.mtime(), meta.mtime(), "{}", got.display());
    }
    let dirs = std::fs::read_dir(&local).expect("LOCALDIR").count();
    assert_eq!(dirs, hosts.len(), "one directory per host, nothing else");
    assert!(leftovers(&local).is_empty(), "{:?}", leftovers(&local));
}

/// `root/d00/…/f000`: 1 000 files in 20 directories (two levels), some modes, a symlink.
fn make_tree(root: &Path) {
    for d in 0..10 {
        for e in 0..2 {
            let dir = root.join(format!("d{d:02}")).join(format!("e{e}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            for f in 0..50 {
                let p = dir.join(format!("f{f:03}"));
                std::fs::write(&p, format!("{d} {e} {f}\n").repeat(f + 1)).expect("write");
                if f % 7 == 0 {
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o751))
                        .expect("chmod");
                }
            }
        }
    }
    std::os::unix::fs::symlink("d00/e0/f000", root.join("link")).expect("symlink");
    std::fs::set_permissions(root.join("d03"), std::fs::Permissions::from_mode(0o750))
        .expect("chmod dir");
}

/// Every entry under `root`: relative path → (kind, mode, content or link target).
fn tree(root: &Path) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let entry = if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).expect("readlink");
                ('l', 0, t.display().to_string().into_bytes())
            } else if m.is_dir() {
                stack.push(p.clone());
                ('d', m.mode() & 0o7777, Vec::new())
            } else {
                ('f', m.mode() & 0o7777, std::fs::read(&p).expect("read"))
            };
            out.insert(rel, entry);
        }
    }
    out
}

#[test]
fn put_and_fetch_r_copy_a_tree_of_1000_files_as_cp_a_would() {
    let Some(env) = ready(3) else { return };
    let src = env.path().join("site");
    make_tree(&src);
    let want = tree(&src);
    assert_eq!(want.values().filter(|e| e.0 == 'f').count(), 1000);
    let out = env
        .command(&["put", "-r", "role=web", src.to_str().expect("utf8"), "www/"])
        .output_within(BIG_WAIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for h in names(&env) {
        let got = env.fleet.host_home(&h).join("www/site");
        assert_eq!(tree(&got), want, "{h}: the tree as sent");
    }
    // And back: LOCALDIR/<host>/www/site.
    let local = env.path().join("back");
    let out = env
        .command(&[
            "fetch",
            "-r",
            "role=web",
            "www/site",
            local.to_str().expect("utf8"),
        ])
        .output_within(BIG_WAIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for h in names(&env) {
        assert_eq!(
            tree(&local.join(&h).join("www/site")),
            want,
            "{h}: fetched back"
        );
    }
    // Without -r a directory is refused before anything moves.
    let out = env.crew(&["put", "role=web", src.to_str().expect("utf8"), "www2/"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("use -r"), "{}", text(&out));
}

#[test]
fn a_full_disk_gives_a_clear_error_and_leaves_no_partial_file() {
    if !require_root("mounting a small tmpfs as a full disk") {
        return;
    }
    let Some(env) = ready(2) else { return };
    full_disk_case(&env);
}

/// A put to two hosts where h001's disk is full (a 1 MiB tmpfs): the error names the cause and
/// the path (not the temp file), the older version at the target is untouched, no temp file is
/// left, and h002 gets the file.
fn full_disk_case(env: &SshEnv) {
    let src = env.path().join("payload.bin");
    random_file(&src, 4 * 1024 * 1024);
    let full = env.fleet.host_home("h001").join("disk");
    std::fs::create_dir_all(env.fleet.host_home("h002").join("disk")).expect("mkdir");
    let disk = support::os::SmallTmpfs::mount_at(&full, "1m");
    // An older version at the target stays as it was.
    std::fs::write(full.join("payload.bin"), "old\n").expect("old version");
    let out = env.crew(&["put", "role=web", src.to_str().expect("utf8"), "disk/"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let stderr = support::cli::stderr(&out);
    let h1 = stderr
        .lines()
        .find(|l| l.starts_with("h001:"))
        .unwrap_or_else(|| panic!("a line for h001: {t}"));
    assert!(
        h1.contains("No space left on device") && h1.contains("disk/payload.bin"),
        "the error names the cause and the path: {h1}"
    );
    assert!(!h1.contains(".crew-put-"), "no temp file name: {h1}");
    println!("{t}");
    assert_eq!(
        std::fs::read_to_string(full.join("payload.bin")).expect("old version"),
        "old\n",
        "the target is untouched"
    );
    assert!(leftovers(&full).is_empty(), "{:?}", leftovers(&full));
    let h2 = env.fleet.host_home("h002").join("disk/payload.bin");
    assert_eq!(sha_file(&h2), sha_file(&src), "the other host got it");
    drop(disk);
}

#[test]
fn a_directory_in_the_way_and_a_permission_error_are_clear_per_host() {
    let Some(env) = ready(2) else { return };
    let src = env.path().join("conf");
    std::fs::write(&src, "x = 1\n").expect("source");
    // h001 has a directory where the file goes; h002 has room.
    for h in ["h001", "h002"] {
        std::fs::create_dir_all(env.fleet.host_home(h).join("etc")).expect("mkdir");
    }
    std::fs::create_dir_all(env.fleet.host_home("h001").join("etc/conf/inside")).expect("dir");
    let out = env.crew(&["put", "role=web", src.to_str().expect("utf8"), "etc/"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let stderr = support::cli::stderr(&out);
    let h1 = stderr
        .lines()
        .find(|l| l.starts_with("h001:"))
        .unwrap_or_else(|| panic!("a line for h001: {t}"));
    assert!(
        h1.contains("etc/conf") && h1.contains("is a directory"),
        "{h1}"
    );
    assert!(
        env.fleet.host_home("h001").join("etc/conf/inside").is_dir(),
        "the directory is untouched"
    );
    assert_eq!(
        std::fs::read_to_string(env.fleet.host_home("h002").join("etc/conf")).expect("h002"),
        "x = 1\n"
    );
    // A read-only place: a read-only tmpfs as root (root passes permission bits), a
    // directory without write permission otherwise.
    let ro = env.fleet.host_home("h001").join("ro");
    std::fs::create_dir_all(&ro).expect("mkdir");
    std::fs::create_dir_all(env.fleet.host_home("h002").join("ro")).expect("mkdir");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let _mount = if root {
        Some(ReadOnlyMount::at(&ro))
    } else {
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        None
    };
    let out = env.crew(&["put", "role=web", src.to_str().expect("utf8"), "ro/conf"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let stderr = support::cli::stderr(&out);
    let h1 = stderr
        .lines()
        .find(|l| l.starts_with("h001:"))
        .unwrap_or_else(|| panic!("a line for h001: {t}"));
    let why = if root {
        "Read-only file system"
    } else {
        "Permission denied"
    };
    assert!(h1.contains(why) && h1.contains("ro/conf"), "{h1}");
    println!("{t}");
    assert!(t.contains("ok:") && t.contains("h002"), "{t}");
}

/// A read-only tmpfs mounted on a directory, unmounted when dropped.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    fn at(p: &Path) -> ReadOnlyMount {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
            .arg(p)
            .output_within(Duration::from_secs(60));
        assert!(
            out.status.success(),
            "mount a read-only tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ReadOnlyMount(p.to_path_buf())
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        support::proc::run_quietly(
            Command::new("umount").arg("--lazy").arg(&self.0),
            Duration::from_secs(60),
        );
    }
}

#[test]
fn a_terminal_gets_a_progress_bar_and_scripts_get_json_progress_events() {
    use support::pty::{Io, PtyChild};
    let Some(env) = ready(3) else { return };
    let src = env.path().join("blob.bin");
    random_file(&src, 64 * 1024 * 1024);
    let mut tty = PtyChild::spawn(
        &mut env.command(&["put", "role=web", src.to_str().expect("utf8"), "blob.bin"]),
        Io {
            stdin: false,
            stdout: false,
            stderr: true,
        },
    );
    // The bar: bytes of every host together, rate, ETA, hosts done.
    let seen = tty.wait("the progress bar", BIG_WAIT, |t| {
        t.contains("/192.00 MiB") && t.contains("ETA") && t.contains("/3 hosts done")
    });
    assert_eq!(tty.wait_exit(BIG_WAIT).code(), Some(0), "{seen}");
    let out = env
        .command(&["fetch", "--json", "role=web", "blob.bin", "got"])
        .output_within(BIG_WAIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut last: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let ev: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
        if ev["event"] == "progress" {
            let host = ev["host"].as_str().expect("host").to_string();
            let bytes = ev["bytes"].as_u64().expect("bytes");
            let total = ev["total"].as_u64().expect("total");
            let before = last.get(&host).map_or(0, |p| p.0);
            assert!(bytes >= before, "progress only grows: {line}");
            last.insert(host, (bytes, total));
        }
    }
    assert_eq!(last.len(), 3, "progress of every host: {last:?}");
    for (h, (bytes, total)) in &last {
        assert_eq!((*bytes, *total), (64 << 20, 64 << 20), "{h} ends at 100%");
    }
}

/// `crew run` with `stdin` from `file` (stdout and stderr through files: no pipe to drain).
fn run_with_stdin(env: &SshEnv, args: &[&str], file: &Path) -> std::process::Output {
    let (o, e) = (env.path().join("run.out"), env.path().join("run.err"));
    let mut child = env
        .command(args)
        .stdin(std::fs::File::open(file).expect("stdin file"))
        .stdout(std::fs::File::create(&o).expect("stdout file"))
        .stderr(std::fs::File::create(&e).expect("stderr file"))
        .spawn()
        .expect("crew run");
    let status = support::proc::wait_within(&mut child, BIG_WAIT, "crew run with stdin");
    std::process::Output {
        status,
        stdout: std::fs::read(&o).expect("stdout"),
        stderr: std::fs::read(&e).expect("stderr"),
    }
}

#[test]
fn stdin_is_read_once_and_reaches_every_host_with_eof() {
    let Some(env) = ready(5) else { return };
    // `seq 1 2000000`: 14.8 MB.
    let input = env.path().join("seq.txt");
    let out = Command::new("seq")
        .args(["1", "2000000"])
        .output_within(Duration::from_secs(60));
    std::fs::write(&input, &out.stdout).expect("write seq");
    let want = hex::encode(Sha256::digest(&out.stdout));
    let out = run_with_stdin(&env, &["run", "role=web", "--", "sha256sum"], &input);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = host_lines(&String::from_utf8_lossy(&out.stdout));
    for h in names(&env) {
        let got = lines.get(&h).map(|v| v.join("\n")).unwrap_or_default();
        assert_eq!(got, format!("{want}  -"), "{h}");
    }
    // --no-stdin: the jobs read /dev/null.
    let out = run_with_stdin(
        &env,
        &["run", "--no-stdin", "role=web", "--", "wc -c"],
        &input,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = host_lines(&String::from_utf8_lossy(&out.stdout));
    for h in names(&env) {
        assert_eq!(lines.get(&h).map(|v| v.join("\n")), Some("0".into()), "{h}");
    }
    // An empty stdin: EOF follows the command's start at once, and every job sees it.
    let out = run_with_stdin(
        &env,
        &["run", "role=web", "--", "sha256sum"],
        Path::new("/dev/null"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let empty = hex::encode(Sha256::digest(b""));
    let lines = host_lines(&String::from_utf8_lossy(&out.stdout));
    for h in names(&env) {
        let got = lines.get(&h).map(|v| v.join("\n"));
        assert_eq!(got, Some(format!("{empty}  -")), "{h}");
    }
    // A job that does not read its stdin ends as usual, and so does the run.
    let out = run_with_stdin(&env, &["run", "role=web", "--", "echo quick"], &input);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

const FEED_HEIST: &str = r#"
[heist.feed]
select = "role=web"
params = ["dir"]

[[heist.feed.step]]
name = "greet"
run = "cat > ~/greeting"
stdin = "hello ${host}\n"

[[heist.feed.step]]
name = "digest"
run = "sha256sum > ~/payload.sum"
stdin_from = "payload.bin"

[[heist.feed.step]]
name = "ship"
put = { from = "payload.bin", to = "~/shipped.bin", mode = 0o600 }

[[heist.feed.step]]
name = "collect"
fetch = { from = "~/shipped.bin", to = "${dir}/${host}.bin" }
"#;

#[test]
fn heist_steps_take_stdin_and_stream_puts_and_fetches_past_the_frame_limit() {
    let Some(env) = ready(3) else { return };
    env.heist_file("feed.toml", FEED_HEIST);
    // 40 MiB: over the 16 MiB frame limit that capped heist files before.
    let payload = env.path().join("heists/payload.bin");
    random_file(&payload, 40 * 1024 * 1024);
    let want = sha_file(&payload);
    let dir = env.path().join("collected");
    let set = format!("dir={}", dir.display());
    let out = env
        .command(&["heist", "run", "feed", "--set", &set])
        .output_within(BIG_WAIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for h in names(&env) {
        let home = env.fleet.host_home(&h);
        assert_eq!(
            std::fs::read_to_string(home.join("greeting")).expect("greeting"),
            format!("hello {h}\n")
        );
        assert_eq!(
            std::fs::read_to_string(home.join("payload.sum")).expect("sum"),
            format!("{want}  -\n"),
            "{h}: the step's stdin was the whole file"
        );
        let shipped = home.join("shipped.bin");
        assert_eq!(sha_file(&shipped), want, "{h}");
        let mode = std::fs::metadata(&shipped).expect("shipped").mode() & 0o7777;
        assert_eq!(mode, 0o600, "{h}");
        assert_eq!(sha_file(&dir.join(format!("{h}.bin"))), want, "{h}");
    }
}

// ----- agentless hosts: the same guarantees over plain exec channels -----

/// A fleet of `n` hosts served without a resident agent: the inventory's `agent_dir` is a
/// regular file, so the install fails and every host falls back to agentless exec.
fn agentless(n: usize) -> Option<SshEnv> {
    if !require_tool("sshd") {
        return None;
    }
    let env = SshEnv::with(
        n,
        FleetOptions {
            own_homes: true,
            ..FleetOptions::default()
        },
    );
    let blocker = env.path().join("not-a-dir");
    std::fs::write(&blocker, "").expect("blocker file");
    let hosts = env.path().join("hosts.toml");
    let toml = std::fs::read_to_string(&hosts).expect("hosts.toml");
    let agents = format!(
        "agent_dir = {:?}",
        env.fleet.agent_dir().display().to_string()
    );
    assert!(toml.contains(&agents), "{toml}");
    let toml = toml.replace(
        &agents,
        &format!("agent_dir = {:?}", blocker.display().to_string()),
    );
    std::fs::write(&hosts, toml).expect("hosts.toml");
    env.warm();
    let st = env.status();
    for h in names(&env) {
        let line = st
            .lines()
            .find(|l| l.split_whitespace().next() == Some(h.as_str()))
            .unwrap_or_default();
        assert!(line.contains("agentless"), "{h} is agentless:\n{st}");
    }
    Some(env)
}

#[test]
fn agentless_put_arrives_byte_exact_with_mode_and_mtime_and_no_temp_file() {
    let Some(env) = agentless(3) else { return };
    const SIZE: usize = 12 * 1024 * 1024 + 7;
    let src = env.path().join("big.bin");
    random_file(&src, SIZE);
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let want = sha_file(&src);
    let out = env
        .command(&["put", "role=web", "big.bin", "big.bin"])
        .output_within(BIG_WAIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = host_lines(&String::from_utf8_lossy(&out.stdout));
    // sha256 computed on every host (agentless exec too).
    let check = env.crew(&["run", "role=web", "--", "sha256sum ~/big.bin"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let sums = host_lines(&String::from_utf8_lossy(&check.stdout));
    let src_meta = std::fs::metadata(&src).expect("source");
    for h in names(&env) {
        let l = lines.get(&h).map(|v| v.join("\n")).unwrap_or_default();
        assert!(l.contains(&format!("sha256 {want}")), "{h}: {l:?}");
        let s = sums.get(&h).map(|v| v.join("\n")).unwrap_or_default();
        assert!(
            s.starts_with(&want),
            "{h}: sha256sum says {s:?}, want {want}"
        );
        let t = env.fleet.host_home(&h).join("big.bin");
        let m = std::fs::metadata(&t).expect("target");
        assert_eq!(m.mode() & 0o7777, 0o640, "{}", t.display());
        assert_eq!(
            (m.mtime(), m.mtime_nsec()),
            (src_meta.mtime(), src_meta.mtime_nsec()),
            "{}",
            t.display()
        );
        let home = env.fleet.host_home(&h);
        assert!(leftovers(&home).is_empty(), "{:?}", leftovers(&home));
    }
}

#[test]
fn agentless_fetch_brings_each_hosts_file_into_its_own_place() {
    let Some(env) = agentless(3) else { return };
    let hosts = names(&env);
    let mut want = BTreeMap::new();
    for (i, h) in hosts.iter().enumerate() {
        let p = env.fleet.host_home(h).join("logs").join("app.log");
        std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
        random_file(&p, 1_500_000 * (i + 1) + i);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        want.insert(
            h.clone(),
            (sha_file(&p), std::fs::metadata(&p).expect("meta")),
        );
    }
    let local = env.path().join("collected");
    let out = env
        .command(&[
            "fetch",
            "role=web",
            "logs/app.log",
            local.to_str().expect("utf8"),
        ])
        .output_within(BIG_WAIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = host_lines(&String::from_utf8_lossy(&out.stdout));
    for (h, (sha, meta)) in &want {
        let got = local.join(h).join("logs/app.log");
        assert_eq!(&sha_file(&got), sha, "{}", got.display());
        let m = std::fs::metadata(&got).expect("fetched");
        assert_eq!(m.mode() & 0o7777, 0o600, "{}", got.display());
        assert_eq!(m.mtime(), meta.mtime(), "{}", got.display());
        let l = lines.get(h).map(|v| v.join("\n")).unwrap_or_default();
        assert!(l.contains(&format!("sha256 {sha}")), "{h}: {l:?}");
    }
    let dirs = std::fs::read_dir(&local).expect("LOCALDIR").count();
    assert_eq!(dirs, hosts.len(), "one directory per host, nothing else");
    assert!(leftovers(&local).is_empty(), "{:?}", leftovers(&local));
}

/// A small tree: files with some modes, a subdirectory, a symlink.
fn make_small_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    std::fs::write(root.join("a.txt"), "alpha\n").expect("write");
    std::fs::write(root.join("sub/b.sh"), "#!/bin/sh\necho b\n").expect("write");
    std::fs::set_permissions(
        root.join("sub/b.sh"),
        std::fs::Permissions::from_mode(0o751),
    )
    .expect("chmod");
    std::fs::write(root.join("sub/deeper/c.bin"), vec![7u8; 300_000]).expect("write");
    std::fs::set_permissions(root.join("sub"), std::fs::Permissions::from_mode(0o750))
        .expect("chmod dir");
    std::os::unix::fs::symlink("sub/b.sh", root.join("link")).expect("symlink");
}

#[test]
fn agentless_put_and_fetch_r_copy_a_tree_with_a_symlink() {
    let Some(env) = agentless(2) else { return };
    let src = env.path().join("site");
    make_small_tree(&src);
    let want = tree(&src);
    let out = env
        .command(&["put", "-r", "role=web", src.to_str().expect("utf8"), "www/"])
        .output_within(BIG_WAIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for h in names(&env) {
        let got = env.fleet.host_home(&h).join("www/site");
        assert_eq!(tree(&got), want, "{h}: the tree as sent");
    }
    let local = env.path().join("back");
    let out = env
        .command(&[
            "fetch",
            "-r",
            "role=web",
            "www/site",
            local.to_str().expect("utf8"),
        ])
        .output_within(BIG_WAIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for h in names(&env) {
        let back = local.join(&h).join("www/site");
        assert_eq!(tree(&back), want, "{h}: fetched back");
        assert!(
            std::fs::symlink_metadata(back.join("link"))
                .expect("link")
                .file_type()
                .is_symlink(),
            "{h}: the link is a link"
        );
    }
}

#[test]
fn agentless_full_disk_gives_a_clear_error_and_leaves_no_partial_file() {
    if !require_root("mounting a small tmpfs as a full disk") {
        return;
    }
    let Some(env) = agentless(2) else { return };
    full_disk_case(&env);
}

#[test]
fn agentless_a_directory_in_the_way_is_a_clear_per_host_error() {
    let Some(env) = agentless(2) else { return };
    let src = env.path().join("conf");
    std::fs::write(&src, "x = 1\n").expect("source");
    for h in ["h001", "h002"] {
        std::fs::create_dir_all(env.fleet.host_home(h).join("etc")).expect("mkdir");
    }
    std::fs::create_dir_all(env.fleet.host_home("h001").join("etc/conf/inside")).expect("dir");
    // `etc/conf`, where the file goes, is a directory on h001.
    let out = env.crew(&["put", "role=web", src.to_str().expect("utf8"), "etc/"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let stderr = support::cli::stderr(&out);
    let h1 = stderr
        .lines()
        .find(|l| l.starts_with("h001:"))
        .unwrap_or_else(|| panic!("a line for h001: {t}"));
    assert!(
        h1.contains("etc/conf") && h1.contains("is a directory"),
        "{h1}"
    );
    assert!(
        env.fleet.host_home("h001").join("etc/conf/inside").is_dir(),
        "the directory is untouched"
    );
    let h1_home = env.fleet.host_home("h001");
    assert!(leftovers(&h1_home).is_empty(), "{:?}", leftovers(&h1_home));
    assert_eq!(
        std::fs::read_to_string(env.fleet.host_home("h002").join("etc/conf")).expect("h002"),
        "x = 1\n"
    );
    // A fetch of a directory without -r is refused clearly too.
    let local = env.path().join("got");
    let out = env.crew(&["fetch", "role=web", "etc", local.to_str().expect("utf8")]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("is a directory") && t.contains("use -r"), "{t}");
}
