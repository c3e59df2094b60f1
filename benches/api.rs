//! API benchmark (not a test; prints a table).
//!
//! `cargo bench --bench api` starts `crew daemon --listen 127.0.0.1:0` under a temp
//! `CREW_HOME` with N loopback hosts (`transport = "local"`: an agent process per host on this
//! machine; default N = 500, `CREW_BENCH_N` or a positional argument), then:
//!
//! 1. a heist of one `true` step on every host, started through the API (`POST
//!    /api/v1/heists/one/runs`, then its event stream to `end`) against the same heist from
//!    the CLI (`crew heist run one`, its whole process); warm (agents up), median of
//!    `CREW_BENCH_REPS` (5) each, alternating;
//! 2. SSE delivery of `CREW_BENCH_MB` (100) MB of output from one host: the stream followed
//!    live from the start while the run prints, then again once it is over (its output read
//!    back from the run store); every byte checked (no loss), MB/s.
//!
//! Everything it starts is stopped at the end (the daemon by SIGTERM, then its agents).

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{json, Value};

const HEISTS: &str = r#"
[heist.one]
select = "role=bench"

[[heist.one.step]]
name = "true"
run = "true"
"#;

struct Daemon {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn crew(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crew"));
    c.env("CREW_HOME", dir.join("home"))
        .env("CREW_CONFIG_DIR", dir.join("cfg"))
        .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
        .env_remove("CREW_DAEMON")
        .env_remove("CREW_HOSTS")
        .arg("--hosts")
        .arg(dir.join("hosts.toml"))
        .stdin(Stdio::null())
        .current_dir(dir);
    c
}

fn start(n: usize) -> anyhow::Result<Daemon> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    std::fs::write(
        d.join("hosts.toml"),
        format!(
            "[defaults]\ntransport = \"local\"\ntags = [\"role=bench\"]\n\n[[host]]\nname = \"b[1-{n}]\"\n"
        ),
    )?;
    std::fs::create_dir_all(d.join("heists"))?;
    std::fs::write(d.join("heists/bench.toml"), HEISTS)?;
    std::fs::create_dir_all(d.join("cfg"))?;
    std::fs::write(
        d.join("cfg/daemon.toml"),
        format!("hosts = {:?}\n", d.join("hosts.toml").display().to_string()),
    )?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_crew"))
        .env("CREW_HOME", d.join("home"))
        .env("CREW_CONFIG_DIR", d.join("cfg"))
        .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
        .args(["daemon", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let port = loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))?;
        if let Some(a) = line.strip_prefix("crew: API listening on https://") {
            break a
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
        }
    };
    Ok(Daemon { dir, child, port })
}

fn client(cert: &Path) -> anyhow::Result<reqwest::Client> {
    let cert = reqwest::Certificate::from_pem(&std::fs::read(cert)?)?;
    Ok(reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(cert)
        .use_rustls_tls()
        .timeout(Duration::from_secs(600))
        .build()?)
}

fn token(dir: &Path, name: &str, scope: &str) -> anyhow::Result<String> {
    let out = crew(dir)
        .args(["token", "create", name, "--scope", scope])
        .output()?;
    anyhow::ensure!(out.status.success(), "crew token create failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Follow a run's event stream to `end`; (the `end` state, stdout bytes of every host,
/// events).
async fn follow(
    c: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    check: &mut dyn FnMut(&Value),
) -> anyhow::Result<(String, usize)> {
    let r = c
        .get(format!("{base}/api/v1/runs/{id}/events"))
        .bearer_auth(token)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "events: {}", r.status());
    let mut body = r.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut n = 0;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(600), body.next()).await? {
        buf.extend_from_slice(&chunk?);
        while let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buf.drain(..i + 2).collect();
            let text = std::str::from_utf8(&block)?;
            let mut event = "message";
            let mut data = String::new();
            for line in text.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = if e == "end" { "end" } else { "other" };
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if data.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&data)?;
            if event == "end" {
                return Ok((v["state"].as_str().unwrap_or("").to_string(), n));
            }
            n += 1;
            check(&v);
        }
    }
    anyhow::bail!("the stream ended without `end`")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn bench(n: usize, reps: usize, mb: usize) -> anyhow::Result<()> {
    let d = start(n)?;
    let dir = d.dir.path().to_path_buf();
    let base = format!("https://127.0.0.1:{}", d.port);
    let c = client(&dir.join("home/api/cert.pem"))?;
    let ops = token(&dir, "bench", "heist")?;

    // Warm up: every agent started.
    let t0 = Instant::now();
    let st = crew(&dir)
        .args(["run", "role=bench", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(st.success(), "warm-up run failed");
    let warm = t0.elapsed();

    let mut api_times = Vec::new();
    let mut cli_times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let r = c
            .post(format!("{base}/api/v1/heists/one/runs"))
            .bearer_auth(&ops)
            .json(&json!({}))
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 201, "start: {}", r.status());
        let id = r.json::<Value>().await?["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (state, _) = follow(&c, &base, &ops, &id, &mut |_| {}).await?;
        anyhow::ensure!(state == "ok", "API heist ended {state}");
        api_times.push(t.elapsed());

        let t = Instant::now();
        let st = crew(&dir)
            .args(["heist", "run", "one"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        anyhow::ensure!(st.success(), "CLI heist failed");
        cli_times.push(t.elapsed());
    }
    let (api, cli) = (median(api_times), median(cli_times));

    // SSE: `mb` MB of output from one host, followed live, then replayed from the store.
    let bytes = mb * 1_000_000;
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxy";
    let cmd = format!("yes {line} | head -c {bytes}");
    let runner = token(&dir, "bench-run", "run")?;
    let t = Instant::now();
    let r = c
        .post(format!("{base}/api/v1/runs"))
        .bearer_auth(&runner)
        .json(&json!({"select": "b1", "command": cmd}))
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 201, "run: {}", r.status());
    let id = r.json::<Value>().await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut check = Checker::new(line);
    let (state, events) = follow(&c, &base, &runner, &id, &mut |v| check.take(v)).await?;
    let live = t.elapsed();
    anyhow::ensure!(state == "ok", "the output run ended {state}");
    check.done(bytes)?;
    let mut again = Checker::new(line);
    let t = Instant::now();
    let (_, events2) = follow(&c, &base, &runner, &id, &mut |v| again.take(v)).await?;
    let replay = t.elapsed();
    again.done(bytes)?;

    let mbps = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    println!("\n## crew API benchmark: {n} local hosts\n");
    println!("| what | time | note |");
    println!("|---|---|---|");
    println!(
        "| warm-up `crew run role=bench -- true` | {:.2} s | starts {n} agents |",
        warm.as_secs_f64()
    );
    println!(
        "| heist `one` (1 step `true`, {n} hosts) via API: POST + SSE to `end` | {:.3} s | median of {reps} |",
        api.as_secs_f64()
    );
    println!(
        "| same heist via CLI: `crew heist run one` (whole process) | {:.3} s | median of {reps} |",
        cli.as_secs_f64()
    );
    println!(
        "| API path overhead (API − CLI) | {:+.3} s | {:+.1} % |",
        api.as_secs_f64() - cli.as_secs_f64(),
        (api.as_secs_f64() / cli.as_secs_f64() - 1.0) * 100.0
    );
    println!(
        "| SSE live: {mb} MB from 1 host, POST to `end` | {:.2} s | {:.0} MB/s, {events} events, no byte lost |",
        live.as_secs_f64(),
        mbps(live)
    );
    println!(
        "| SSE replay of the finished run (output read back from the store) | {:.2} s | {:.0} MB/s, {events2} events, no byte lost |",
        replay.as_secs_f64(),
        mbps(replay)
    );
    Ok(())
}

/// Checks a stream of stdout chunks is exactly `yes LINE | head -c N`.
struct Checker {
    line: Vec<u8>,
    pos: usize,
    total: usize,
    bad: Option<String>,
}

impl Checker {
    fn new(line: &str) -> Checker {
        let mut l = line.as_bytes().to_vec();
        l.push(b'\n');
        Checker {
            line: l,
            pos: 0,
            total: 0,
            bad: None,
        }
    }

    fn take(&mut self, v: &Value) {
        if v["event"] != "stdout" {
            return;
        }
        for &b in v["data"].as_str().unwrap_or_default().as_bytes() {
            if self.bad.is_none() && b != self.line[self.pos] {
                self.bad = Some(format!("byte {} differs", self.total));
            }
            self.pos = (self.pos + 1) % self.line.len();
            self.total += 1;
        }
    }

    fn done(&self, want: usize) -> anyhow::Result<()> {
        if let Some(b) = &self.bad {
            anyhow::bail!("output corrupted: {b}");
        }
        anyhow::ensure!(
            self.total == want,
            "got {} bytes of {want}: output lost",
            self.total
        );
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .or_else(|| std::env::var("CREW_BENCH_N").ok()?.parse().ok())
        .unwrap_or(500usize);
    let reps = std::env::var("CREW_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(5usize);
    let mb = std::env::var("CREW_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(100usize);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(bench(n, reps, mb))
}
