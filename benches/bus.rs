//! Sites on NATS, measured (not a test): `true` on N hosts (default 1 000, `local` transport:
//! each host an agent process on this machine) from one daemon with no bus, then split over
//! 2 and 4 site daemons on a 3-node NATS cluster (JetStream R3) with the operator's daemon
//! routing; and how fast one follower on a third machine replays a run's events from
//! JetStream. Prints a table. `CREW_BENCH_N` sets N, `CREW_BENCH_REPS` the warm runs (median),
//! `CREW_BENCH_ONLY=follow` runs the follower part only.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::BufRead as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::nats::NatsCluster;
use support::sites::{self, BusSettings, Machine, SiteDaemon};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

struct Timing {
    wall: Duration,
    first: Duration,
    lines: usize,
}

/// `crew run --json SELECTION -- COMMAND` on `m`: wall time, time to the first host event,
/// lines printed.
fn timed_run(m: &Machine, command: &str) -> Timing {
    let t0 = Instant::now();
    let mut child = m
        .crew(&["run", "--json", "role=web", "--", command])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crew run");
    let mut err = child.stderr.take().expect("stderr");
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let out = child.stdout.take().expect("stdout");
    let mut first = None;
    let mut lines = 0;
    for line in std::io::BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if first.is_none() && line.contains("\"host\"") {
            first = Some(t0.elapsed());
        }
        lines += 1;
    }
    let status = child.wait().expect("wait");
    let errs = errs.join().unwrap_or_default();
    let head: Vec<&str> = errs.lines().take(20).collect();
    assert!(
        status.success(),
        "crew run {command} failed: {status}\n{}\n{}",
        head.join("\n"),
        m.log_tail(40)
    );
    Timing {
        wall: t0.elapsed(),
        first: first.unwrap_or_default(),
        lines,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Row {
    daemons: usize,
    wall: Duration,
    first: Duration,
    msgs_per_s: f64,
    /// CPU time of the daemons (and NATS nodes) per host and run.
    cpu_per_host: Duration,
    nats_cpu_per_host: Duration,
}

/// utime + stime of a process (from /proc; zero when gone).
fn cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) end with ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // rest starts at field 3 (state, not a number): utime is field 14, stime 15.
    let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter().map(|&p| cpu(p)).sum()
}

fn stream_messages(nats: &NatsCluster) -> u64 {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let c = async_nats::ConnectOptions::new()
            .user_and_password(support::nats::USER.into(), support::nats::PASSWORD.into())
            .custom_inbox_prefix(format!("crew.{}.reply.bench", support::nats::FLEET))
            .connect(nats.url().split(',').collect::<Vec<_>>())
            .await
            .expect("connect");
        let js = async_nats::jetstream::new(c);
        let name = format!("CREW_{}", support::nats::FLEET.to_uppercase());
        match js.get_stream(name).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    })
}

/// Hosts split over `sites` sites (s1…), as hosts.toml entries.
fn inventory(n: usize, sites: usize) -> (String, Vec<String>) {
    let mut all = String::new();
    let mut per_site = Vec::new();
    for s in 0..sites.max(1) {
        let count = n / sites.max(1) + usize::from(s < n % sites.max(1));
        let (_, e) = sites::local_entries(&format!("s{}h", s + 1), &format!("s{}", s + 1), count);
        all += &e;
        per_site.push(e);
    }
    (all, per_site)
}

struct Setup {
    _root: tempfile::TempDir,
    op: SiteDaemon,
    obs: Machine,
    _sites: Vec<SiteDaemon>,
}

fn setup(nats: &NatsCluster, n: usize, sites: usize) -> Setup {
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let op = Machine::new(r, "op");
    let obs = Machine::new(r, "obs");
    let (seed, public) = sites::keygen(&op, "bench");
    let operators = r.join("operators.toml");
    std::fs::write(
        &operators,
        format!("[[operator]]\nname = \"bench\"\nkey = {public:?}\nrights = \"admin\"\n"),
    )
    .expect("operators");
    let (all, per_site) = inventory(n, sites.max(2));
    let mut daemons = Vec::new();
    if sites > 0 {
        let (_, per_site) = inventory(n, sites);
        for (i, e) in per_site.iter().enumerate() {
            let m = Machine::new(r, &format!("site{}", i + 1));
            m.write_hosts(e);
            m.write_daemon_toml(Some(&BusSettings {
                password_file: Some(nats.password_file.clone()),
                operators: Some(operators.clone()),
                ..Default::default()
            }));
            daemons.push(SiteDaemon::start(m, nats, &format!("s{}", i + 1)));
        }
        let (all4, _) = inventory(n, sites);
        for m in [&op, &obs] {
            m.write_hosts(&all4);
        }
    } else {
        let _ = per_site;
        for m in [&op, &obs] {
            m.write_hosts(&all);
        }
    }
    let bus = BusSettings {
        url: Some(nats.url()),
        password_file: Some(nats.password_file.clone()),
        operators: Some(operators.clone()),
        identity: Some(seed),
        ca: None,
    };
    op.write_daemon_toml((sites > 0).then_some(&bus));
    obs.write_daemon_toml(Some(&bus));
    let op = if sites > 0 {
        SiteDaemon::start(op, nats, "")
    } else {
        // One daemon, no bus: started by the first `crew run`; a handle that stops it.
        SiteDaemon::start_local(op)
    };
    if sites > 0 {
        sites::wait_status(
            &op.machine,
            "site daemons up",
            Duration::from_secs(60),
            |t| {
                t.lines()
                    .filter(|l| l.starts_with('s') && l.contains(" up "))
                    .count()
                    == sites
            },
        );
    }
    Setup {
        _root: root,
        op,
        obs,
        _sites: daemons,
    }
}

fn measure(nats: &NatsCluster, n: usize, sites: usize, reps: usize) -> Row {
    let s = setup(nats, n, sites);
    let op = &s.op.machine;
    // Warm: every agent started (their start is not the bus's cost).
    let _ = timed_run(op, "true");
    let mut daemons: Vec<u32> = s._sites.iter().map(SiteDaemon::pid).collect();
    daemons.push(s.op.pid());
    let nats_pids = nats.pids();
    let before = stream_messages(nats);
    let (cpu0, ncpu0) = (cpu_of(&daemons), cpu_of(&nats_pids));
    let t0 = Instant::now();
    let runs: Vec<Timing> = (0..reps).map(|_| timed_run(op, "true")).collect();
    let spent = t0.elapsed();
    let (cpu1, ncpu1) = (cpu_of(&daemons), cpu_of(&nats_pids));
    let after = stream_messages(nats);
    let per = (n * reps) as u32;
    let row = Row {
        daemons: sites,
        wall: median(runs.iter().map(|t| t.wall).collect()),
        first: median(runs.iter().map(|t| t.first).collect()),
        msgs_per_s: (after - before) as f64 / spent.as_secs_f64(),
        cpu_per_host: (cpu1 - cpu0) / per,
        nats_cpu_per_host: (ncpu1 - ncpu0) / per,
    };
    eprintln!(
        "{} site daemon(s): wall {:?} first event {:?}",
        sites, row.wall, row.first
    );
    row
}

/// A run printing `lines` lines per host (a sleep between each, so each is its own event),
/// then replayed from JetStream by a follower on a third machine: events per second.
fn follow_rate(nats: &NatsCluster, n: usize, lines: usize) -> (usize, f64, usize, f64) {
    let s = setup(nats, n, 2);
    let op = &s.op.machine;
    let _ = timed_run(op, "true");
    let cmd = format!("for i in $(seq {lines}); do echo line $i; sleep 0.01; done");
    let live = timed_run(op, &cmd);
    let o = s.obs.run(&["runs"]);
    let listing = sites::text(&o);
    let id = listing
        .lines()
        .rfind(|l| l.contains(" run ") && l.contains("seq"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the run on the third machine:\n{listing}"))
        .to_string();
    let t0 = Instant::now();
    let o = s
        .obs
        .crew(&["attach", "--json", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .expect("attach");
    let spent = t0.elapsed();
    let replayed = o.stdout.iter().filter(|&&b| b == b'\n').count();
    s.obs.stop_daemon();
    (
        live.lines,
        live.lines as f64 / live.wall.as_secs_f64(),
        replayed,
        replayed as f64 / spent.as_secs_f64(),
    )
}

fn main() {
    if !support::require_tool("nats-server") {
        return;
    }
    let n = env_num("CREW_BENCH_N", 1000);
    let reps = env_num("CREW_BENCH_REPS", 3);
    // The daemons log at info (debug logs every NATS message: not what is measured).
    std::env::set_var("CREW_TEST_LOG", "info");
    let nats = NatsCluster::start(3);
    let only_follow = std::env::var("CREW_BENCH_ONLY").is_ok_and(|v| v == "follow");
    let configs: &[usize] = if only_follow { &[] } else { &[0, 2, 4] };
    let rows: Vec<Row> = configs
        .iter()
        .map(|&s| measure(&nats, n, s, reps))
        .collect();
    let base = rows.first().map(|r| r.wall).unwrap_or_default();
    println!("\n`true` on {n} local-transport hosts, warm (agents up), median of {reps}; NATS: 3 nodes, JetStream R3\n");
    println!("| daemons | wall | first host event | wall over one daemon, per host | daemons' CPU per host | NATS CPU per host | JetStream msgs/s |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        let label = if r.daemons == 0 {
            "1 (no bus)".to_string()
        } else {
            format!("router + {} sites", r.daemons)
        };
        let over = r.wall.as_secs_f64() - base.as_secs_f64();
        println!(
            "| {label} | {:.0} ms | {:.0} ms | {} | {:.0} µs | {:.0} µs | {} |",
            r.wall.as_secs_f64() * 1e3,
            r.first.as_secs_f64() * 1e3,
            if r.daemons == 0 {
                "-".to_string()
            } else {
                format!("{:.0} µs", over * 1e6 / n as f64)
            },
            r.cpu_per_host.as_secs_f64() * 1e6,
            r.nats_cpu_per_host.as_secs_f64() * 1e6,
            if r.daemons == 0 {
                "-".to_string()
            } else {
                format!("{:.0}", r.msgs_per_s)
            },
        );
    }
    let lines = env_num("CREW_BENCH_LINES", 20);
    let (live, live_rate, replayed, replay_rate) = follow_rate(&nats, n, lines);
    println!("\nA run printing {lines} lines per host on {n} hosts over 2 sites:\n");
    println!("| follower | events | events/s |");
    println!("|---|---|---|");
    println!("| the operator's CLI, live (`crew run --json`) | {live} | {live_rate:.0} |");
    println!("| a third machine, replay from JetStream (`crew attach --json`) | {replayed} | {replay_rate:.0} |");
}
