//! Sites on NATS, end to end with real parts: a 3-node `nats-server` cluster (JetStream) on
//! loopback, real OpenSSH fleets, site daemons as `crew daemon --site … --nats …` processes,
//! operators' crews on other "machines" (own CREW_HOME and config).

mod support;

use std::time::Duration;

use support::nats::NatsCluster;
use support::require_tool;
use support::sites::{self, BusSettings, Machine, SiteDaemon};
use support::sshd::SshdFleet;

/// Over TLS (every node requires it; daemons trust the test's CA from `[nats] ca`): a plain
/// run over two sites is one run. A client that does not trust the CA cannot join.
#[test]
fn a_run_over_two_sites_is_one_run_over_tls() {
    if !require_tool("sshd") || !require_tool("nats-server") || !require_tool("openssl") {
        return;
    }
    let nats = NatsCluster::start_with(3, true);
    let ca = nats.ca.clone().expect("a CA");
    {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let untrusted = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                async_nats::ConnectOptions::new()
                    .user_and_password(support::nats::USER.into(), support::nats::PASSWORD.into())
                    .connect(nats.url().split(',').collect::<Vec<_>>()),
            )
            .await
        });
        assert!(
            !matches!(untrusted, Ok(Ok(_))),
            "connected without trusting the CA"
        );
    }
    let (fa, fb) = (SshdFleet::start(3), SshdFleet::start(3));
    let root = tempfile::tempdir().expect("root");
    let op = Machine::new(root.path(), "op");
    let (seed, public) = sites::keygen(&op, "alice");
    let operators = root.path().join("operators.toml");
    std::fs::write(
        &operators,
        format!("[[operator]]\nname = \"alice\"\nkey = {public:?}\nrights = \"heist\"\n"),
    )
    .expect("operators");
    let (_, ea) = sites::host_entries(&fa, "a", "a");
    let (_, eb) = sites::host_entries(&fb, "b", "b");
    let site_bus = BusSettings {
        password_file: Some(nats.password_file.clone()),
        operators: Some(operators.clone()),
        ca: Some(ca.clone()),
        ..Default::default()
    };
    let ma = Machine::new(root.path(), "site-a");
    ma.write_hosts(&ea);
    ma.write_daemon_toml(Some(&site_bus));
    let mb = Machine::new(root.path(), "site-b");
    mb.write_hosts(&eb);
    mb.write_daemon_toml(Some(&site_bus));
    let _da = SiteDaemon::start(ma, &nats, "a");
    let _db = SiteDaemon::start(mb, &nats, "b");
    op.write_hosts(&format!("{ea}{eb}"));
    op.write_daemon_toml(Some(&BusSettings {
        url: Some(nats.url()),
        password_file: Some(nats.password_file.clone()),
        operators: Some(operators.clone()),
        identity: Some(seed),
        ca: Some(ca.clone()),
    }));
    let op = SiteDaemon::start(op, &nats, "");
    let op = &op.machine;
    sites::wait_status(op, "both sites up", Duration::from_secs(60), |t| {
        t.lines()
            .filter(|l| l.starts_with("a ") || l.starts_with("b "))
            .count()
            == 2
    });
    let o = op.run(&["run", "role=web", "--", "echo hi from $CREW_HOST"]);
    let out = sites::text(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}\n{}\n{}",
        op.log_tail(50),
        nats.logs()
    );
    for h in ["a01", "a02", "a03", "b01", "b02", "b03"] {
        assert!(out.contains(&format!("hi from {h}")), "{h}: {out}");
    }
}

const PER_SITE: usize = 20;

/// Three steps over both sites in waves of ten (sites interleaved); b07 fails `two` and goes
/// on; `three` naps `${nap}` seconds. Every step appends a line to a marker file per host and
/// step, so a step that ran twice shows two lines.
const HEISTS: &str = r#"
[heist.spread]
select = "role=web"
batch = 10
params = ["marks"]
vars = { nap = "0" }

[[heist.spread.step]]
name = "one"
run = "echo ${host} >> ${marks}/${host}.one && echo one ${host} at ${tag.site}"

[[heist.spread.step]]
name = "two"
run = "echo ${host} >> ${marks}/${host}.two; test ${host} != b07 || { echo 'b07 refuses' >&2; exit 4; }; echo two ${host}"
on_fail = { then = "continue" }

[[heist.spread.step]]
name = "three"
run = "echo ${host} >> ${marks}/${host}.three; sleep ${nap}; echo three ${host}"
on_fail = { then = "continue" }
"#;

/// One row of `crew status`'s daemon table.
#[derive(Debug, Clone)]
struct Row {
    site: String,
    #[allow(dead_code)]
    daemon: String,
    up: bool,
    pid: u32,
    jobs: usize,
    ready: usize,
}

fn rows(status: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let mut on = false;
    for l in status.lines() {
        if l.starts_with("SITE ") {
            on = true;
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        if !on || f.len() < 7 {
            continue;
        }
        out.push(Row {
            site: f[0].to_string(),
            daemon: f[1].to_string(),
            up: f[2] == "up",
            pid: f[4].parse().unwrap_or(0),
            jobs: f[5].parse().unwrap_or(0),
            ready: f[6]
                .split('/')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        });
    }
    out
}

/// Per (host, step): exit code, stdout, error kind; and per host the summary outcome.
type Digest = (
    std::collections::BTreeMap<(String, String), (Option<i32>, String, Option<String>)>,
    std::collections::BTreeMap<String, String>,
);

fn digest(events: &[crew::heist::events::HeistEvent]) -> Digest {
    use crew::heist::events::HeistEvent;
    let (mut steps, mut outcomes) = (
        std::collections::BTreeMap::new(),
        std::collections::BTreeMap::new(),
    );
    for ev in events {
        match ev {
            HeistEvent::StepFinished {
                host, step, result, ..
            } => {
                steps.insert(
                    (host.clone(), format!("{step:?}")),
                    (
                        result.exit_code,
                        result.stdout.clone(),
                        result.error_kind.map(|k| k.as_str().to_string()),
                    ),
                );
            }
            HeistEvent::Finished { summary } => {
                outcomes = summary
                    .hosts
                    .iter()
                    .map(|(h, o)| (h.clone(), format!("{o:?}")))
                    .collect();
            }
            _ => {}
        }
    }
    (steps, outcomes)
}

/// The newest heist journal in a machine's run store.
fn last_heist(m: &Machine) -> Vec<crew::heist::events::HeistEvent> {
    let mut runs: Vec<std::path::PathBuf> = std::fs::read_dir(m.home().join("runs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    runs.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("heist-"))
    });
    runs.sort();
    let last = runs.last().expect("a heist in the run store");
    crew::heist::journal::read(last).expect("journal")
}

/// Lines in each marker file under `dir` (host.step → count).
fn marks(dir: &std::path::Path) -> std::collections::BTreeMap<String, usize> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let n = std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .count();
                    (e.file_name().to_string_lossy().into_owned(), n)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The stream's message count and the run log of `run`, read with a client of our own.
fn stream_state(url: &str, password: &str) -> u64 {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let c = async_nats::ConnectOptions::new()
            .user_and_password(support::nats::USER.into(), password.into())
            .custom_inbox_prefix(format!("crew.{}.reply.test", support::nats::FLEET))
            .connect(url.split(',').collect::<Vec<_>>())
            .await
            .expect("connect to NATS");
        let js = async_nats::jetstream::new(c);
        let t0 = std::time::Instant::now();
        loop {
            match js
                .get_stream(format!("CREW_{}", support::nats::FLEET.to_uppercase()))
                .await
            {
                Ok(mut s) => match s.info().await {
                    Ok(i) => return i.state.messages,
                    Err(e) if t0.elapsed() < Duration::from_secs(30) => {
                        eprintln!("stream info: {e}");
                    }
                    Err(e) => panic!("stream info: {e}"),
                },
                Err(e) if t0.elapsed() < Duration::from_secs(30) => eprintln!("stream: {e}"),
                Err(e) => panic!("stream: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// Spawn `crew …` on a machine, output to a file; returns the child and the file.
fn spawn(m: &Machine, args: &[&str], name: &str) -> (std::process::Child, std::path::PathBuf) {
    let out = m.dir.join(format!("{name}.out"));
    let f = std::fs::File::create(&out).expect("output file");
    let f2 = f.try_clone().expect("clone");
    let c = m
        .crew(args)
        .stdout(f)
        .stderr(f2)
        .spawn()
        .expect("spawn crew");
    (c, out)
}

fn wait_child(c: &mut std::process::Child, what: &str, wait: Duration) -> Option<i32> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < wait {
        if let Ok(Some(s)) = c.try_wait() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    panic!("{what}: not done within {wait:?}");
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// How long the spare may take to hold the hosts of a killed daemon of its site: the
/// heartbeat verdict (DEAD_AFTER, 3 s) plus reconnecting 20 SSH hosts on a loaded machine.
/// Without the take-over the spare would get them only as later waves reach them (12 s+).
const TAKEOVER_BOUND: Duration = Duration::from_secs(10);

#[test]
fn heists_over_two_sites_with_a_spare_a_dead_daemon_and_a_dead_nats_node() {
    if !require_tool("sshd") || !require_tool("nats-server") || !require_tool("tmux") {
        return;
    }
    let mut nats = NatsCluster::start(3);
    let (fa, fb) = (SshdFleet::start(PER_SITE), SshdFleet::start(PER_SITE));
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let op = Machine::new(r, "op");
    let obs = Machine::new(r, "obs");
    let solo = Machine::new(r, "solo");
    let (seed, public) = sites::keygen(&op, "alice");
    let (obs_seed, obs_public) = sites::keygen(&obs, "bob");
    let (reader_seed, reader_public) = sites::keygen(&obs, "carol");
    let operators = r.join("operators.toml");
    std::fs::write(
        &operators,
        format!(
            "[[operator]]\nname = \"alice\"\nkey = {public:?}\nrights = \"heist\"\n\
             [[operator]]\nname = \"bob\"\nkey = {obs_public:?}\nrights = \"heist\"\n\
             [[operator]]\nname = \"carol\"\nkey = {reader_public:?}\nrights = \"read\"\n"
        ),
    )
    .expect("operators");
    let (na, ea) = sites::host_entries(&fa, "a", "a");
    let (nb, eb) = sites::host_entries(&fb, "b", "b");
    let site_bus = BusSettings {
        password_file: Some(nats.password_file.clone()),
        operators: Some(operators.clone()),
        ..Default::default()
    };
    let site = |name: &str, entries: &str, s: &str| {
        let m = Machine::new(r, name);
        m.write_hosts(entries);
        m.write_daemon_toml(Some(&site_bus));
        SiteDaemon::start(m, &nats, s)
    };
    let mut a1 = site("site-a1", &ea, "a");
    let b1 = site("site-b1", &eb, "b");
    // The operators' inventory: every host, sites interleaved (waves span both sites).
    let split = |e: &str| -> Vec<String> {
        e.split("\n[[host]]")
            .filter(|s| !s.trim().is_empty())
            .map(|s| format!("\n[[host]]{s}"))
            .collect()
    };
    let (va, vb) = (split(&ea), split(&eb));
    let mixed: String = va
        .iter()
        .zip(vb.iter())
        .flat_map(|(x, y)| [x.clone(), y.clone()])
        .collect();
    let bus_for = |identity: std::path::PathBuf| BusSettings {
        url: Some(nats.url()),
        password_file: Some(nats.password_file.clone()),
        operators: Some(operators.clone()),
        identity: Some(identity),
        ca: None,
    };
    for (m, id) in [
        (&op, Some(seed.clone())),
        (&obs, Some(obs_seed.clone())),
        (&solo, None),
    ] {
        m.write_hosts(&mixed);
        m.write_daemon_toml(id.map(bus_for).as_ref());
        std::fs::write(m.dir.join("heists/spread.toml"), HEISTS).expect("heists");
    }
    let op_d = SiteDaemon::start(op, &nats, "");
    let op = &op_d.machine;
    let status = sites::wait_status(op, "two site daemons up", Duration::from_secs(60), |t| {
        rows(t)
            .iter()
            .filter(|r| r.up && r.site != "(router)")
            .count()
            == 2
    });
    eprintln!("{status}");

    // Warm up: the first upload of a debug build to 40 hosts is not what is measured here.
    for m in [op, &solo] {
        let mut o = m.run(&["run", "role=web", "--", "true"]);
        if o.status.code() != Some(0) {
            o = m.run(&["run", "role=web", "--", "true"]);
        }
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}\n{}",
            sites::text(&o),
            m.log_tail(60)
        );
    }
    // Rights are the site's to check: carol (read) may not run anything there.
    {
        let m = Machine::new(r, "carol");
        m.write_hosts(&mixed);
        m.write_daemon_toml(Some(&bus_for(reader_seed.clone())));
        let o = m.run(&["run", "a01", "--", "echo should not run"]);
        let out = sites::text(&o);
        assert_ne!(o.status.code(), Some(0), "{out}");
        assert!(
            out.contains("needs `run`, carol has `read`"),
            "{out}\n{}",
            m.log_tail(30)
        );
        assert!(!out.contains("should not run\n"), "{out}");
        m.stop_daemon();
    }

    // 1. The heist over both sites, followed live from a third machine (CLI and console).
    let marks1 = r.join("marks1");
    std::fs::create_dir_all(&marks1).expect("marks1");
    let set1 = format!("marks={}", marks1.display());
    let console = support::tmux::Session::start(
        format!("crew-bus-obs-{}", std::process::id()),
        160,
        50,
        |_| {
            format!(
                "env CREW_HOME='{}' CREW_CONFIG_DIR='{}' CREW_AGENT_EXE='{}' '{}' --hosts '{}'; echo \"EXITED $?\"; sleep 60",
                obs.home().display(),
                obs.config().display(),
                env!("CARGO_BIN_EXE_crew"),
                env!("CARGO_BIN_EXE_crew"),
                obs.hosts().display()
            )
        },
    );
    console.wait_for("Hosts 40 shown", 30);
    let (mut heist, heist_out) = spawn(
        op,
        &["heist", "run", "spread", "--set", &set1, "--set", "nap=1"],
        "heist1",
    );
    // The CLI on the third machine finds it running and attaches.
    let t0 = std::time::Instant::now();
    let id = loop {
        let o = obs.run(&["runs"]);
        let t = sites::text(&o);
        if let Some(l) = t
            .lines()
            .find(|l| l.contains(" heist ") && l.contains("running") && l.contains("spread"))
        {
            break l.split_whitespace().next().expect("id").to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the heist never listed on obs:\n{t}\n{}",
            read(&heist_out)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (mut attach, attach_out) = spawn(&obs, &["attach", &id], "attach1");
    console.keys(&["R"]);
    console.wait("the remote heist in the console's list", 30, |t| {
        t.contains("spread") && t.contains("running")
    });
    console.keys(&["Enter"]);
    // Live: the console follows it while it runs, then shows the end.
    let screen = console.wait("the heist's end in the console", 180, |t| {
        t.contains("heist completed")
    });
    assert!(
        screen.contains("40 completed") || screen.contains("completed"),
        "{screen}"
    );
    let code = wait_child(&mut heist, "heist 1", Duration::from_secs(240));
    let hout = read(&heist_out);
    assert_eq!(code, Some(0), "{hout}\n{}", op.log_tail(80));
    let acode = wait_child(&mut attach, "attach 1", Duration::from_secs(60));
    let aout = read(&attach_out);
    assert_eq!(acode, Some(0), "{aout}");
    // The attached CLI printed the same summary as the one that started it.
    let summary = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.contains("b07") || l.contains("== heist"))
            .map(str::to_string)
            .collect()
    };
    assert!(!summary(&hout).is_empty(), "{hout}");
    assert_eq!(
        summary(&aout),
        summary(&hout),
        "attach:\n{aout}\nheist:\n{hout}"
    );
    console.keys(&["q"]);

    // The same heist on one daemon with no bus: per-host results identical.
    let marks_solo = r.join("marks-solo");
    std::fs::create_dir_all(&marks_solo).expect("marks-solo");
    let o = solo.run(&[
        "heist",
        "run",
        "spread",
        "--set",
        &format!("marks={}", marks_solo.display()),
        "--set",
        "nap=1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", sites::text(&o));
    let (bus_steps, bus_out) = digest(&last_heist(op));
    let (solo_steps, solo_out) = digest(&last_heist(&solo));
    assert_eq!(bus_out.len(), 2 * PER_SITE, "{bus_out:?}");
    assert_eq!(bus_steps.len(), 3 * 2 * PER_SITE, "{bus_steps:?}");
    assert_eq!(bus_out, solo_out, "summary: over the bus vs one daemon");
    assert_eq!(
        bus_steps, solo_steps,
        "per host and step: over the bus vs one daemon"
    );
    assert_eq!(
        bus_steps[&(
            "b07".to_string(),
            "StepRef { rollback: false, index: 1 }".to_string()
        )]
            .0,
        Some(4)
    );
    assert!(
        marks(&marks1).values().all(|&n| n == 1),
        "{:?}",
        marks(&marks1)
    );
    assert_eq!(marks(&marks1).len(), 3 * 2 * PER_SITE);
    // Site B's daemon ran b-hosts' steps and audited them with who asked; the audit went to
    // the bus too (checked with the stream below).
    let audit_b = read(&b1.machine.home().join("audit.jsonl"));
    assert!(audit_b.contains("\"who\":\"alice (as "), "{audit_b}");

    // 2. A spare for site A joins (its pool empty; the queue group now spreads site A's jobs
    //    over both). SIGKILL the first A daemon while it runs steps: the spare takes its
    //    hosts, the heist gives every host a verdict, nothing that ran runs again.
    let a2 = site("site-a2", &ea, "a");
    sites::wait_status(op, "the spare up", Duration::from_secs(60), |t| {
        rows(t).iter().filter(|r| r.up && r.site == "a").count() == 2
    });
    let marks2 = r.join("marks2");
    std::fs::create_dir_all(&marks2).expect("marks2");
    let set2 = format!("marks={}", marks2.display());
    let (mut heist2, heist2_out) = spawn(
        op,
        &["heist", "run", "spread", "--set", &set2, "--set", "nap=4"],
        "heist2",
    );
    let t0 = std::time::Instant::now();
    // Kill while it runs naps: busy (2+ jobs) in two heartbeats 1.2 s apart, so its jobs
    // are step three's 4 s naps, not short steps already over (a heartbeat is ≤ 1 s old).
    let mut busy_since: Option<std::time::Instant> = None;
    let (victim, spare_before) = loop {
        let o = op.run(&["status"]);
        let t = sites::text(&o);
        let rs = rows(&t);
        let napping = marks(&marks2)
            .keys()
            .any(|k| k.starts_with('a') && k.ends_with(".three"));
        match rs.iter().find(|r| r.pid == a1.pid() && r.up && r.jobs >= 2) {
            Some(row) if napping => match busy_since {
                Some(t1) if t1.elapsed() >= Duration::from_millis(1200) => {
                    let spare = rs.iter().find(|r| r.pid == a2.pid()).map_or(0, |r| r.ready);
                    break (row.clone(), spare);
                }
                Some(_) => {}
                None => busy_since = Some(std::time::Instant::now()),
            },
            _ => busy_since = None,
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "site A's first daemon never busy with step three:\n{t}\n{}",
            read(&heist2_out)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("killing {victim:?} at {:?}", std::time::SystemTime::now());
    a1.kill9();
    let killed_at = std::time::Instant::now();
    // The spare: every site-A host in its pool, ready, within the bound.
    let spare_pid = a2.pid();
    let st = sites::wait_status(op, "the spare holds site A's hosts", TAKEOVER_BOUND, |t| {
        let rs = rows(t);
        rs.iter().any(|r| r.pid == victim.pid && !r.up)
            && rs
                .iter()
                .any(|r| r.pid == spare_pid && r.up && r.ready == PER_SITE)
    });
    eprintln!(
        "took over in {:?} (the spare had {spare_before} of site A's hosts before):\n{st}",
        killed_at.elapsed()
    );
    let code = wait_child(&mut heist2, "heist 2", Duration::from_secs(240));
    let h2 = read(&heist2_out);
    assert!(code.is_some(), "{h2}");
    let events = last_heist(op);
    let (steps, outcomes) = digest(&events);
    assert_eq!(
        outcomes.len(),
        2 * PER_SITE,
        "every host has a verdict: {outcomes:?}\n{h2}"
    );
    let m2 = marks(&marks2);
    assert!(m2.values().all(|&n| n == 1), "a step ran twice: {m2:?}");
    let lost: Vec<&(String, String)> = steps
        .iter()
        .filter(|(_, v)| v.2.as_deref() == Some("lost"))
        .map(|(k, _)| k)
        .collect();
    if lost.is_empty() {
        let log = std::fs::read_to_string(op.home().join("logs/daemon.log")).unwrap_or_default();
        for l in log
            .lines()
            .filter(|l| l.contains("share accepted") || l.contains("went away"))
        {
            eprintln!("{l}");
        }
        eprintln!("{}", a1.machine.log_tail(60));
    }
    assert!(
        !lost.is_empty(),
        "the killed daemon's steps are lost: {steps:?}\n{h2}"
    );
    assert!(lost.iter().all(|(h, _)| h.starts_with('a')), "{lost:?}");
    // Every step started once in the heist's journal: a lost step (it may have run, its
    // marker may be there) was never sent again.
    let mut attempts = std::collections::BTreeMap::new();
    for ev in &events {
        if let crew::heist::events::HeistEvent::StepStarted { host, step, .. } = ev {
            *attempts
                .entry((host.clone(), format!("{step:?}")))
                .or_insert(0) += 1;
        }
    }
    assert!(attempts.values().all(|&n| n == 1), "{attempts:?}");
    for k in &lost {
        assert_eq!(attempts.get(*k), Some(&1), "{k:?}");
    }
    // Hosts of site A in later waves ran on the spare: completed.
    let done_a = outcomes
        .iter()
        .filter(|(h, o)| h.starts_with('a') && o.contains("Completed"))
        .count();
    assert!(done_a >= lost.len(), "{outcomes:?}");
    assert!(na.iter().chain(nb.iter()).all(|h| outcomes.contains_key(h)));

    // 3. One NATS node SIGKILLed: nothing lost from the JetStream history.
    let before = stream_state(&nats.url(), support::nats::PASSWORD);
    let (mut a, a_out) = spawn(&obs, &["attach", &id], "attach-before");
    assert_eq!(
        wait_child(&mut a, "attach before", Duration::from_secs(60)),
        Some(0)
    );
    let replay_before = read(&a_out);
    nats.kill(0);
    let after = stream_state(&nats.live_url(), support::nats::PASSWORD);
    assert!(after >= before, "stream lost messages: {before} → {after}");
    let (mut a, a_out) = spawn(&obs, &["attach", &id], "attach-after");
    assert_eq!(
        wait_child(&mut a, "attach after", Duration::from_secs(90)),
        Some(0),
        "{}",
        read(&a_out)
    );
    assert_eq!(
        read(&a_out),
        replay_before,
        "the heist's history after a node died"
    );
    // And the bus still works: a run over both sites.
    let o = op.run(&["run", "role=web", "--", "true"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        sites::text(&o),
        op.log_tail(60)
    );
    obs.stop_daemon();
    drop(b1);
}

/// The rule that keeps a step from running twice, at the site: a job key is claimed once
/// (KV create) before anything runs; the same request again (a router re-sending after a
/// lost answer) is answered `Claimed` and runs nothing. Unknown keys and hosts of another
/// site are refused.
#[test]
fn a_job_sent_twice_runs_once() {
    use crew::proto::bus::{self as pb, Action, Reply, SiteRun};
    if !require_tool("nats-server") {
        return;
    }
    let nats = NatsCluster::start(1);
    let root = tempfile::tempdir().expect("root");
    let op = Machine::new(root.path(), "op");
    let (seed, public) = sites::keygen(&op, "alice");
    let operators = root.path().join("operators.toml");
    std::fs::write(
        &operators,
        format!("[[operator]]\nname = \"alice\"\nkey = {public:?}\nrights = \"run\"\n"),
    )
    .expect("operators");
    let m = Machine::new(root.path(), "site-a");
    let (_, entries) = sites::local_entries("l", "a", 2);
    m.write_hosts(&format!(
        "{entries}\n[[host]]\nname = \"other\"\ntransport = \"local\"\ntags = [\"site=b\"]\n"
    ));
    m.write_daemon_toml(Some(&BusSettings {
        password_file: Some(nats.password_file.clone()),
        operators: Some(operators),
        ..Default::default()
    }));
    let _site = SiteDaemon::start(m, &nats, "a");
    let marker = root.path().join("marker");
    let key = nkeys::KeyPair::from_seed(std::fs::read_to_string(&seed).expect("seed").trim())
        .expect("seed parses");
    let share = |job: &str, hosts: &[&str]| SiteRun {
        job: job.into(),
        run: "test-1".into(),
        site: "a".into(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        selection: "l0001".into(),
        command: format!("echo $CREW_HOST >> {}", marker.display()),
        env: vec![],
        timeout_ms: None,
        fanout: None,
        operator: "alice".into(),
        origin: crew::model::RunOrigin::Command,
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let names = pb::Names::new(support::nats::FLEET);
    let ask = |payload: Vec<u8>| -> Reply {
        rt.block_on(async {
            let c = async_nats::ConnectOptions::new()
                .user_and_password(support::nats::USER.into(), support::nats::PASSWORD.into())
                .custom_inbox_prefix(format!("crew.{}.reply.test", support::nats::FLEET))
                .connect(nats.url())
                .await
                .expect("connect");
            // The site daemon may still be joining: no responders means nobody took it.
            for _ in 0..300 {
                match c.request(names.site_run("a"), payload.clone().into()).await {
                    Ok(m) => return pb::decode(&m.payload).expect("a reply"),
                    Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Err(e) => panic!("request: {e}"),
                }
            }
            panic!("no site daemon answered within 30 s")
        })
    };
    let sign = |k: &nkeys::KeyPair, s: SiteRun| {
        crew::daemon::bus::auth::sign(k, support::nats::FLEET, "test", Action::Run(s))
            .expect("sign")
    };
    let once = sign(&key, share("job-1", &["l0001"]));
    let first = ask(once.clone());
    assert!(matches!(first, Reply::Accepted { .. }), "{first:?}");
    let t0 = std::time::Instant::now();
    while read(&marker).lines().count() < 1 {
        assert!(t0.elapsed() < Duration::from_secs(30), "the job never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    let again = ask(once);
    let Reply::Claimed { daemon } = &again else {
        panic!("the same job again: {again:?}");
    };
    let Reply::Accepted {
        daemon: first_daemon,
    } = &first
    else {
        unreachable!()
    };
    assert_eq!(daemon, first_daemon);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(read(&marker), "l0001\n", "ran once");
    // A key the site does not know, and a host of another site: refused, nothing runs.
    let stranger = sign(&nkeys::KeyPair::new_user(), share("job-2", &["l0002"]));
    let r = ask(stranger);
    assert!(
        matches!(&r, Reply::Refused { reason } if reason.contains("not in this daemon's operators file")),
        "{r:?}"
    );
    let r = ask(sign(&key, share("job-3", &["other"])));
    assert!(
        matches!(&r, Reply::Refused { reason } if reason.contains("not of site a")),
        "{r:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read(&marker), "l0001\n");
}

/// A heist started on one operator's machine asks (a step failed on a host of site a); a
/// console on another machine follows it over the bus and answers; the answer goes to the
/// heist's owner, which checks the signer's rights and audits who answered.
#[test]
fn an_ask_is_answered_from_another_machine() {
    if !require_tool("nats-server") || !require_tool("tmux") {
        return;
    }
    let nats = NatsCluster::start(1);
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let op = Machine::new(r, "op");
    let obs = Machine::new(r, "obs");
    let (seed, public) = sites::keygen(&op, "alice");
    let (bob_seed, bob_public) = sites::keygen(&obs, "bob");
    let operators = r.join("operators.toml");
    std::fs::write(
        &operators,
        format!(
            "[[operator]]\nname = \"alice\"\nkey = {public:?}\nrights = \"heist\"\n\
             [[operator]]\nname = \"bob\"\nkey = {bob_public:?}\nrights = \"heist\"\n"
        ),
    )
    .expect("operators");
    let (_, entries) = sites::local_entries("l", "a", 3);
    let site = Machine::new(r, "site-a");
    site.write_hosts(&entries);
    site.write_daemon_toml(Some(&BusSettings {
        password_file: Some(nats.password_file.clone()),
        operators: Some(operators.clone()),
        ..Default::default()
    }));
    let _site = SiteDaemon::start(site, &nats, "a");
    let heist = r#"
[heist.careful]
select = "role=web"

[[heist.careful.step]]
name = "check"
run = "test ${host} != l0002 || { echo 'l0002 objects' >&2; exit 3; }"
on_fail = { then = "ask" }

[[heist.careful.step]]
name = "finish"
run = "echo ${host} finished"
"#;
    for (m, id) in [(&op, seed), (&obs, bob_seed)] {
        m.write_hosts(&entries);
        m.write_daemon_toml(Some(&BusSettings {
            url: Some(nats.url()),
            password_file: Some(nats.password_file.clone()),
            operators: Some(operators.clone()),
            identity: Some(id),
            ca: None,
        }));
        std::fs::write(m.dir.join("heists/careful.toml"), heist).expect("heist");
    }
    let op_d = SiteDaemon::start(op, &nats, "");
    let op = &op_d.machine;
    sites::wait_status(op, "site a up", Duration::from_secs(60), |t| {
        rows(t).iter().any(|r| r.site == "a" && r.up)
    });
    let o = op.run(&["heist", "run", "careful", "--detach"]);
    assert_eq!(o.status.code(), Some(0), "{}", sites::text(&o));
    let console = support::tmux::Session::start(
        format!("crew-bus-ask-{}", std::process::id()),
        150,
        40,
        |_| {
            format!(
                "env CREW_HOME='{}' CREW_CONFIG_DIR='{}' CREW_AGENT_EXE='{}' '{}' --hosts '{}'; echo \"EXITED $?\"; sleep 60",
                obs.home().display(),
                obs.config().display(),
                env!("CARGO_BIN_EXE_crew"),
                env!("CARGO_BIN_EXE_crew"),
                obs.hosts().display()
            )
        },
    );
    console.wait_for("Hosts 3 shown", 30);
    // The list is read when it opens: wait until the heist asks (`crew runs` on obs).
    let t0 = std::time::Instant::now();
    loop {
        let t = sites::text(&obs.run(&["runs"]));
        if t.contains("careful") && t.contains("asking") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "never asking on obs:\n{t}\n{}",
            op.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    console.keys(&["R"]);
    console.wait("the heist, asking, in the list", 30, |t| {
        t.contains("careful") && t.contains("asking")
    });
    console.keys(&["Enter"]);
    let screen = console.wait_for("a step failed, your call", 30);
    assert!(screen.contains("l0002"), "{screen}");
    console.keys(&["a"]);
    let screen = console.wait("the heist's end", 60, |t| t.contains("heist completed"));
    assert!(screen.contains("3 completed"), "{screen}");
    // The owner audited the answer, with who gave it (the key's name) and from where.
    let audit = read(&op.home().join("audit.jsonl"));
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"answer\"") && l.contains("\"who\":\"bob via ")),
        "{audit}"
    );
    console.keys(&["q"]);
    console.wait_for("EXITED 0", 10);
    obs.stop_daemon();
}
