//! Console benchmark (not a test): frame render time with 1000 hosts × 1000 lines, event-to-
//! screen latency while 100 hosts stream, and memory bounded by the configured scrollback.
//!
//! `cargo bench --bench console` prints a table. Everything goes through the console's real
//! pieces: `Model::update` with daemon events, `ui::draw` into a ratatui `TestBackend`, and
//! for latency the same loop shape as `console::tui::run` (wait for one action, drain all
//! pending, draw at most every `tui::FRAME`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crew::console::action::Action;
use crew::console::app::{diff_lines, Model, Settings, STREAMING_EVERY_MS};
use crew::console::history::History;
use crew::console::keymap::{Key, KeyCode, Keymap};
use crew::console::theme::Theme;
use crew::console::{tui, ui};
use crew::inventory::Inventory;
use crew::model::Host;
use crew::model::{Exit, Stream};
use crew::proto::daemon::{Event, HostEvent};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use tokio::sync::mpsc;

/// Target from the issue: one frame in at most 8 ms.
const TARGET: Duration = Duration::from_millis(8);
/// Same as the private `MAX_DRAIN` in `console::tui`.
const MAX_DRAIN: usize = 20_000;
const ROLES: [&str; 4] = ["web", "db", "cache", "batch"];

fn fleet(n: usize) -> Vec<Host> {
    (0..n)
        .map(|i| {
            let mut h = Host::local(&format!("node{i:04}"));
            h.tags = vec![
                format!("role={}", ROLES[i % ROLES.len()]),
                format!("dc=dc{}", i % 3),
            ];
            if i % 97 == 0 {
                h.tags.push("canary".into());
            }
            h
        })
        .collect()
}

fn model(hosts: usize, scrollback: usize) -> Model {
    let settings = Settings {
        scrollback,
        ..Settings::default()
    };
    let km = Keymap::load(None).expect("keymap");
    Model::new(
        Inventory::from_hosts(fleet(hosts)),
        km,
        settings,
        History::default(),
    )
}

fn typ(m: &mut Model, s: &str) {
    for c in s.chars() {
        m.key(Key::ch(c));
    }
}

/// Type a command and press enter (the run goes to every shown host); returns the run's tag.
fn start_run(m: &mut Model, cmd: &str) -> u64 {
    m.key(Key::ch(':'));
    typ(m, cmd);
    m.key(Key::plain(KeyCode::Enter));
    m.run.as_ref().expect("run started").tag
}

fn host_event(tag: u64, host: &str, event: HostEvent) -> Action {
    Action::Daemon {
        tag,
        event: Event::Host {
            run_id: 1,
            host: host.into(),
            event,
        },
    }
}

/// Lines `from..to` of host `i` in chunks of 10 lines: mostly stdout, every 7th line on
/// stderr, every 25th with colour escapes and every 100th with a bell and a CR. Hosts fall
/// in 5 output groups (by `i % 5`) so the gathered view has real work.
fn chunks(i: usize, from: usize, to: usize) -> Vec<(Stream, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cur: Option<(Stream, Vec<u8>)> = None;
    for k in from..to {
        let (stream, line) = if k % 7 == 3 {
            (
                Stream::Stderr,
                format!(
                    "warning: slow response from backend {} ({} ms)\n",
                    k % 13,
                    (k * (i % 5)) % 900
                ),
            )
        } else if k % 25 == 0 {
            (
                Stream::Stdout,
                format!(
                    "\x1b[1;32mOK\x1b[0m step {k}: deployed build {} to /srv/app\n",
                    i % 5
                ),
            )
        } else if k % 100 == 1 {
            (
                Stream::Stdout,
                format!("progress {k}\x07\r 50%\r100% done\n"),
            )
        } else {
            (
                Stream::Stdout,
                format!(
                    "{k:06} INFO request id={:08x} path=/api/v1/items status=200 bytes={}\n",
                    k * 2654435761 % 0xffff_ffff,
                    (k * (i % 5 + 1)) % 4096
                ),
            )
        };
        match &mut cur {
            Some((s, buf)) if *s == stream && buf.len() < 800 => {
                buf.extend_from_slice(line.as_bytes())
            }
            _ => {
                if let Some(c) = cur.take() {
                    out.push(c);
                }
                cur = Some((stream, line.into_bytes()));
            }
        }
    }
    out.extend(cur);
    out
}

fn feed_lines(m: &mut Model, tag: u64, names: &[String], from: usize, to: usize) {
    for (i, h) in names.iter().enumerate() {
        for (stream, data) in chunks(i, from, to) {
            m.update(host_event(tag, h, HostEvent::Output { stream, data }));
        }
    }
}

fn finish(m: &mut Model, tag: u64, names: &[String]) {
    for (i, h) in names.iter().enumerate() {
        let exit = Exit {
            code: Some(if i % 5 == 4 { 2 } else { 0 }),
            signal: None,
            wall_ms: 1000 + i as u64,
            user_ms: 0,
            sys_ms: 0,
            max_rss_kb: 0,
            timed_out: false,
        };
        let verdict = crew::model::Verdict::from_exit(&exit, false);
        m.update(host_event(tag, h, HostEvent::Exit { exit, verdict }));
    }
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time this thread has used (excludes time preempted by other processes on a busy box).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; CLOCK_THREAD_CPUTIME_ID always exists
    // on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// Wall-clock and thread-CPU times of drawing one frame of `m` at `w`×`h`, each sorted.
struct FrameTimes {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

fn time_frames(m: &Model, theme: &Theme, w: u16, h: u16, frames: usize) -> FrameTimes {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    for _ in 0..10 {
        term.draw(|f| ui::draw(f, m, theme)).expect("draw");
    }
    let mut wall = Vec::with_capacity(frames);
    let mut cpu = Vec::with_capacity(frames);
    for _ in 0..frames {
        let (t0, c0) = (Instant::now(), thread_cpu());
        term.draw(|f| ui::draw(f, m, theme)).expect("draw");
        wall.push(t0.elapsed());
        cpu.push(thread_cpu().saturating_sub(c0));
    }
    wall.sort();
    cpu.sort();
    FrameTimes { wall, cpu }
}

fn verdict(p99: Duration) -> &'static str {
    if p99 <= TARGET {
        "met"
    } else {
        "NOT MET"
    }
}

fn frame_bench(theme: &Theme) {
    const HOSTS: usize = 1000;
    const LINES: usize = 1000;
    let sizes = [(200u16, 60u16), (120, 40)];

    println!("## Memory (1000 hosts, scrollback = {LINES} lines per host)\n");
    let rss0 = rss_kb();
    let mut m = model(HOSTS, LINES);
    let tag = start_run(&mut m, "tail -n 1000 /var/log/app.log");
    let names = m.run.as_ref().expect("run").hosts.clone();
    for h in &names {
        m.update(host_event(
            tag,
            h,
            HostEvent::Started {
                pid: 1,
                agentless: false,
            },
        ));
    }
    let t0 = Instant::now();
    feed_lines(&mut m, tag, &names, 0, LINES);
    let feed1 = t0.elapsed();
    let _ = time_frames(&m, theme, 200, 60, 5);
    let rss1 = rss_kb();
    let t0 = Instant::now();
    feed_lines(&mut m, tag, &names, LINES, 10 * LINES);
    let feed10 = t0.elapsed();
    let _ = time_frames(&m, theme, 200, 60, 5);
    let rss10 = rss_kb();
    let stored: usize = m
        .run
        .as_ref()
        .map(|r| r.jobs.values().map(|j| j.out.len()).sum())
        .unwrap_or(0);
    let events1 = names.len() * chunks(0, 0, LINES).len();
    println!("| stage | lines fed | lines held | RSS (MiB) |");
    println!("|---|---:|---:|---:|");
    println!("| before the run | 0 | 0 | {:.1} |", rss0 as f64 / 1024.0);
    println!(
        "| 1× scrollback fed | {} | {} | {:.1} |",
        HOSTS * LINES,
        HOSTS * LINES,
        rss1 as f64 / 1024.0
    );
    println!(
        "| 10× scrollback fed | {} | {stored} | {:.1} |",
        10 * HOSTS * LINES,
        rss10 as f64 / 1024.0
    );
    let growth = rss10 as f64 / 1024.0 - rss1 as f64 / 1024.0;
    println!(
        "\ngrowth 1× → 10×: {growth:+.1} MiB (bound: lines held stay {} = hosts × scrollback) — {}",
        HOSTS * LINES,
        if stored <= HOSTS * LINES && growth < 0.05 * (rss1 as f64 / 1024.0) {
            "flat, target met"
        } else {
            "GROWS, target NOT MET"
        }
    );
    println!(
        "update throughput: {} events ({} lines) in {} ms = {:.0} ns/event; 9× more in {} ms\n",
        events1,
        HOSTS * LINES,
        feed1.as_millis(),
        feed1.as_nanos() as f64 / events1 as f64,
        feed10.as_millis()
    );
    finish(&mut m, tag, &names);

    println!("## Frame render (1000 hosts × 1000 lines held, TestBackend)\n");
    println!("| view | size | wall median (ms) | wall p99 (ms) | CPU median (ms) | CPU p99 (ms) | ≤ 8 ms (CPU p99) |");
    println!("|---|---|---:|---:|---:|---:|---|");
    let frames = 200;
    let row = |name: &str, m: &Model| {
        for (w, h) in sizes {
            let t = time_frames(m, theme, w, h, frames);
            let cpu99 = pct(&t.cpu, 0.99);
            println!(
                "| {name} | {w}×{h} | {} | {} | {} | {} | {} |",
                ms(pct(&t.wall, 0.5)),
                ms(pct(&t.wall, 0.99)),
                ms(pct(&t.cpu, 0.5)),
                ms(cpu99),
                verdict(cpu99)
            );
        }
    };
    // After Enter the focus is on the output: host list + run list + focused pane.
    row("output: run list + focused pane", &m);
    m.key(Key::ch('z'));
    row("output: zoomed pane", &m);
    m.key(Key::plain(KeyCode::Esc));
    m.key(Key::ch('g'));
    row("gathered: groups + output", &m);
    m.key(Key::ch('j'));
    m.key(Key::ch('d'));
    row("gathered: diff vs largest", &m);
    m.key(Key::ch('d'));
    diff_alone(&m);
    m.key(Key::plain(KeyCode::Esc));
    m.key(Key::plain(KeyCode::Tab));
    m.key(Key::ch('/'));
    typ(&mut m, "role=web & dc=dc1");
    m.key(Key::plain(KeyCode::Enter));
    row("host list filtered (83 of 1000)", &m);
    m.key(Key::ch('?'));
    row("help overlay", &m);
    m.key(Key::plain(KeyCode::Esc));

    // A grid: a 12-host run in the same 1000-host fleet.
    m.key(Key::ch('/'));
    for _ in 0..40 {
        m.key(Key::plain(KeyCode::Backspace));
    }
    typ(&mut m, "canary");
    m.key(Key::plain(KeyCode::Enter));
    let tag = start_run(&mut m, "tail -n 1000 /var/log/app.log");
    let names = m.run.as_ref().expect("run").hosts.clone();
    feed_lines(&mut m, tag, &names, 0, LINES);
    finish(&mut m, tag, &names);
    row(&format!("output grid ({} hosts)", names.len()), &m);
    DIFF_NOTE.with(|n| println!("\n{}\n", n.borrow()));
}

/// What one recomputation of the diff view costs: `diff_lines` of the two groups'
/// representatives (the LCS of their scrollbacks, lines with their streams, copied out).
/// The Model does it in `update`: once when the diff is chosen, then at most every
/// `STREAMING_EVERY_MS` while the outputs change; drawing a frame only reads the result.
fn diff_alone(m: &Model) {
    let Some(run) = m.run.as_ref() else {
        return;
    };
    let groups = run.gather.groups();
    let rep = |i: usize| {
        groups
            .get(i)
            .and_then(|g| g.hosts.first())
            .and_then(|h| run.jobs.get(h))
    };
    let (Some(a), Some(b)) = (rep(0), rep(1)) else {
        return;
    };
    let mut t = Vec::new();
    let mut ops = 0;
    for _ in 0..50 {
        let c0 = thread_cpu();
        ops = std::hint::black_box(diff_lines(&a.out, &b.out)).len();
        t.push(thread_cpu().saturating_sub(c0));
    }
    t.sort();
    DIFF_NOTE.with(|n| {
        *n.borrow_mut() = format!(
            "one diff recomputation ({} × {} lines → {ops} lines): CPU median {} ms, p99 {} ms — \
             done in `update` at most every {STREAMING_EVERY_MS} ms while hosts stream, never \
             while drawing",
            a.out.len(),
            b.out.len(),
            ms(pct(&t, 0.5)),
            ms(pct(&t, 0.99))
        )
    });
}

thread_local! {
    static DIFF_NOTE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// One latency run: `hosts` hosts each send `rate` chunks per second for `secs` seconds
/// (each chunk 1–3 lines) on the channel the event loop reads; the consumer is the loop of
/// `console::tui::run` drawing into a TestBackend.
#[derive(Clone, Copy, PartialEq)]
enum View {
    Output,
    Gathered,
    /// The gathered view showing the second group's diff against the largest.
    GatheredDiff,
}

fn latency_run(theme: &Theme, view: View, hosts: usize, rate: u64, secs: u64) {
    let mut m = model(hosts, 10_000);
    let tag = start_run(&mut m, "journalctl -f");
    let names = m.run.as_ref().expect("run").hosts.clone();
    for h in &names {
        m.update(host_event(
            tag,
            h,
            HostEvent::Started {
                pid: 1,
                agentless: false,
            },
        ));
    }
    // A few lines each first, so the hosts already fall into groups.
    feed_lines(&mut m, tag, &names, 0, 10);
    if view != View::Output {
        m.key(Key::ch('g'));
    }
    if view == View::GatheredDiff {
        m.key(Key::ch('j'));
        m.key(Key::ch('d'));
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Action>();
    let (ts_tx, ts_rx) = std::sync::mpsc::channel::<Instant>();
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let done = done.clone();
        std::thread::spawn(move || {
            // Paced in 1 ms slots; every slot sends the events due by then, round-robin.
            let total = hosts as u64 * rate * secs;
            let start = Instant::now();
            let mut sent = 0u64;
            let mut k = 10usize;
            while sent < total && start.elapsed() < Duration::from_secs(secs + 5) {
                let due = (start.elapsed().as_secs_f64() * (hosts as u64 * rate) as f64) as u64;
                while sent < due.min(total) {
                    let i = (sent % hosts as u64) as usize;
                    let lines = 1 + (sent % 3) as usize;
                    for (stream, data) in chunks(i, k, k + lines) {
                        let _ = ts_tx.send(Instant::now());
                        let ev = host_event(tag, &names[i], HostEvent::Output { stream, data });
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                    if i == hosts - 1 {
                        k += 3;
                    }
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let clock = Instant::now();
    let (lat, frames, draws, events, busy, wall) = rt.block_on(async {
        let mut term = Terminal::new(TestBackend::new(200, 60)).expect("terminal");
        let mut busy = Duration::ZERO;
        let t_start = Instant::now();
        let mut lat: Vec<Duration> = Vec::new();
        let mut draws: Vec<Duration> = Vec::new();
        let mut pending = 0usize;
        let mut events = 0usize;
        let mut dirty = true;
        let mut last_draw = Instant::now() - tui::FRAME;
        let deadline = Instant::now() + Duration::from_secs(secs + 10);
        loop {
            if dirty && last_draw.elapsed() >= tui::FRAME {
                let t0 = Instant::now();
                term.draw(|f| ui::draw(f, &m, theme)).expect("draw");
                let end = Instant::now();
                draws.push(end - t0);
                busy += end - t0;
                for _ in 0..pending {
                    if let Ok(sent) = ts_rx.recv_timeout(Duration::from_secs(1)) {
                        lat.push(end - sent);
                    }
                }
                pending = 0;
                last_draw = end;
                dirty = false;
            }
            if (done.load(Ordering::SeqCst) && rx.is_empty() && pending == 0)
                || Instant::now() > deadline
            {
                break;
            }
            let next_frame = tokio::time::Instant::from_std(last_draw + tui::FRAME);
            let t0;
            tokio::select! {
                Some(action) = rx.recv() => {
                    t0 = Instant::now();
                    m.update(action);
                    pending += 1;
                    events += 1;
                }
                _ = tokio::time::sleep_until(next_frame), if dirty => { t0 = Instant::now(); }
                _ = tokio::time::sleep(Duration::from_millis(50)) => { continue; }
            }
            for _ in 0..MAX_DRAIN {
                match rx.try_recv() {
                    Ok(action) => {
                        m.update(action);
                        pending += 1;
                        events += 1;
                    }
                    Err(_) => break,
                }
            }
            // As `tui::run`: the clock advances after each batch.
            m.update(Action::Tick(clock.elapsed().as_millis() as u64));
            busy += t0.elapsed();
            dirty = pending > 0 || dirty;
        }
        let frames = draws.len();
        (lat, frames, draws, events, busy, t_start.elapsed())
    });
    let _ = producer.join();
    let mut lat = lat;
    lat.sort();
    let mut draws = draws;
    draws.sort();
    println!(
        "| {} | {hosts} × {rate}/s = {}/s | {events} | {frames} | {} | {} | {} | {} | {} | {:.0} % |",
        match view {
            View::Output => "output",
            View::Gathered => "gathered",
            View::GatheredDiff => "gathered: diff",
        },
        hosts as u64 * rate,
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
        ms(pct(&draws, 0.5)),
        ms(pct(&draws, 0.99)),
        100.0 * busy.as_secs_f64() / wall.as_secs_f64().max(1e-9),
    );
}

fn main() {
    let theme = Theme::builtin("dark").expect("theme");
    println!("# crew console benchmark\n");
    frame_bench(&theme);
    println!(
        "## Event-to-screen latency while 100 hosts stream (200×60, frame cap {} ms)\n",
        tui::FRAME.as_millis()
    );
    println!(
        "Latency = event sent on the loop's channel → end of the frame that shows it. \
              Busy = share of the wall time the loop spends in `update` and drawing.\n"
    );
    println!("| view | rate (chunks) | events | frames | p50 (ms) | p99 (ms) | max (ms) | draw p50 (ms) | draw p99 (ms) | busy |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for view in [View::Output, View::Gathered, View::GatheredDiff] {
        for rate in [20, 200] {
            latency_run(&theme, view, 100, rate, 3);
        }
    }
}
