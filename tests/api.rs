//! The HTTPS API, as a client would use it: a real `crew daemon --listen 127.0.0.1:0` with
//! its self-signed certificate, reqwest pinned to that certificate, `curl --cacert`, the
//! remote `crew --daemon https://…` client, and a headless chromium on the web view.

mod support;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{json, Value};
use support::require_tool;
use support::Bounded;

const WAIT: Duration = Duration::from_secs(60);

const HEISTS: &str = r#"
[heist.hello]
select = "role=web"

[[heist.hello.step]]
name = "greet"
run = "echo hello from ${host}"

[[heist.hello.step]]
name = "kernel"
run = "uname -s"

[heist.slow]
select = "role=web"
vars = { nap = "1" }

[[heist.slow.step]]
name = "nap"
run = "sleep ${nap}"

[heist.greet]
select = "role=web"
vars = { who = "nobody", why = "none" }

[[heist.greet.step]]
name = "say"
run = "echo hi ${who} because ${why}"

[heist.careful]
select = "role=web"

[[heist.careful.step]]
name = "check"
run = "test ${host} != h2 || { echo 'h2 objects' >&2; exit 3; }"
on_fail = { then = "ask" }

[[heist.careful.step]]
name = "finish"
run = "echo ${host} finished"
"#;

const HOOK_SECRET: &str = "s3cret-s3cret-s3cret";

/// A daemon with the API, its files in a temp dir.
struct Api {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    fingerprint: String,
}

fn local_hosts(n: usize) -> String {
    format!(
        "[defaults]\ntransport = \"local\"\ntags = [\"role=web\"]\n\n[[host]]\nname = \"h[1-{n}]\"\n"
    )
}

impl Api {
    fn start(hosts_toml: &str) -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("hosts.toml"), hosts_toml).expect("hosts.toml");
        std::fs::create_dir_all(d.join("heists")).expect("heists");
        std::fs::write(d.join("heists/t.toml"), HEISTS).expect("heists file");
        std::fs::create_dir_all(d.join("cfg")).expect("cfg");
        std::fs::create_dir_all(d.join("home")).expect("home");
        std::fs::write(
            d.join("cfg/daemon.toml"),
            format!("hosts = {:?}\n", d.join("hosts.toml").display().to_string()),
        )
        .expect("daemon.toml");
        std::fs::write(d.join("hook.secret"), format!("{HOOK_SECRET}\n")).expect("secret");
        std::fs::write(
            d.join("hooks.toml"),
            "[hook.greet]\nheist = \"greet\"\nvars = { why = \"alert\" }\nallow_vars = [\"who\"]\n\
             secret_file = \"hook.secret\"\n\n\
             [hook.nap]\nheist = \"slow\"\nvars = { nap = \"2\" }\nsecret_file = \"hook.secret\"\n\n\
             [hook.napq]\nheist = \"slow\"\nvars = { nap = \"1\" }\nsecret_file = \"hook.secret\"\n\
             concurrency = \"queue\"\n",
        )
        .expect("hooks.toml");
        let mut api = Api {
            dir,
            child: None,
            port: 0,
            fingerprint: String::new(),
        };
        api.start_daemon();
        api
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn home(&self) -> PathBuf {
        self.path().join("home")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crew"));
        c.env("CREW_HOME", self.home())
            .env("CREW_CONFIG_DIR", self.path().join("cfg"))
            .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
            .env_remove("CREW_HOSTS")
            .env_remove("CREW_DAEMON")
            .env_remove("CREW_TOKEN")
            .env_remove("CREW_TOKEN_FILE")
            .env_remove("CREW_DAEMON_FINGERPRINT")
            .stdin(Stdio::null())
            .current_dir(self.path());
        c
    }

    /// `crew daemon --listen 127.0.0.1:0`; waits (bounded) for its address and fingerprint.
    fn start_daemon(&mut self) {
        let mut child = self
            .command()
            .args(["daemon", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crew daemon");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        let (mut port, mut fp) = (None, None);
        while port.is_none() || fp.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    panic!("the daemon never said where it listens (within {WAIT:?}): {err}");
                }
            };
            if let Some(a) = line.strip_prefix("crew: API listening on https://") {
                port = a.rsplit(':').next().and_then(|p| p.parse().ok());
            }
            if let Some(f) = line.strip_prefix("crew: certificate sha256 fingerprint ") {
                fp = Some(f.to_string());
            }
        }
        self.port = port.expect("port");
        self.fingerprint = fp.expect("fingerprint");
        self.child = Some(child);
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn cert_pem(&self) -> PathBuf {
        self.home().join("api/cert.pem")
    }

    /// A reqwest client trusting only the daemon's own certificate.
    fn http(&self) -> reqwest::Client {
        let pem = std::fs::read(self.cert_pem()).expect("cert.pem");
        let cert = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert)
            .use_rustls_tls()
            .timeout(WAIT)
            .build()
            .expect("reqwest client")
    }

    /// `crew token create NAME --scope S`: the token it prints.
    fn token(&self, name: &str, scope: &str) -> String {
        let out = self
            .command()
            .args(["token", "create", name, "--scope", scope])
            .output_bounded();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string()
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.home().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
            .collect()
    }

    /// The audit log has a line with this action, run and who.
    fn audited(&self, action: &str, run: &str, who: &str) -> bool {
        self.audit().iter().any(|l| {
            l["action"] == action && (run.is_empty() || l["run"] == run) && l["who"] == who
        })
    }

    /// Run crew (bounded): exit code, stdout, stderr.
    fn crew(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let mut c = self.command();
        c.arg("--hosts")
            .arg(self.path().join("hosts.toml"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().expect("start crew");
        finish(child, WAIT)
    }

    fn daemon_pid(&self) -> i32 {
        self.child.as_ref().expect("daemon").id() as i32
    }

    /// SIGKILL the daemon and reap it.
    fn kill_daemon(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait for `child` (bounded), reading both streams.
fn finish(mut child: Child, limit: Duration) -> (Option<i32>, String, String) {
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("crew did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, o.join().expect("stdout"), e.join().expect("stderr"))
}

/// Poll `f` until it holds (bounded), failing with what was awaited.
async fn until<F: FnMut() -> bool>(what: &str, limit: Duration, mut f: F) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(c: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let r = c.get(url).bearer_auth(token).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(c: &reqwest::Client, url: &str, token: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Wait (bounded) until the run's state is over; its JSON.
async fn wait_over(api: &Api, c: &reqwest::Client, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, v) = get(c, &api.url(&format!("/api/v1/runs/{id}")), token).await;
        assert_eq!(status, 200, "{v}");
        let state = v["state"].as_str().unwrap_or_default().to_string();
        if !["running", "asking"].contains(&state.as_str()) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} still {state} after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: String,
}

/// Parse complete events out of `buf`, leaving a partial one.
fn parse_sse(buf: &mut String) -> Vec<Sse> {
    let mut out = Vec::new();
    while let Some(i) = buf.find("\n\n") {
        let block: String = buf.drain(..i + 2).collect();
        let mut ev = Sse {
            id: None,
            event: "message".into(),
            data: String::new(),
        };
        let mut any = false;
        for line in block.lines() {
            if line.starts_with(':') || line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once(':').unwrap_or((line, ""));
            let v = v.strip_prefix(' ').unwrap_or(v);
            any = true;
            match k {
                "id" => ev.id = v.parse().ok(),
                "event" => ev.event = v.to_string(),
                "data" => {
                    if !ev.data.is_empty() {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(v)
                }
                _ => {}
            }
        }
        if any {
            out.push(ev);
        }
    }
    out
}

/// Read a run's event stream (from after `last`), stopping after `max` events or at `end`.
async fn read_events(
    api: &Api,
    c: &reqwest::Client,
    token: &str,
    id: &str,
    last: Option<u64>,
    max: usize,
) -> Vec<Sse> {
    let mut req = c
        .get(api.url(&format!("/api/v1/runs/{id}/events")))
        .bearer_auth(token);
    if let Some(l) = last {
        req = req.header("Last-Event-ID", l.to_string());
    }
    let r = req.send().await.expect("GET events");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut body = r.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("the event stream stalled");
        let Some(chunk) = chunk else { break };
        buf.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf8"));
        for ev in parse_sse(&mut buf) {
            let end = ev.event == "end";
            out.push(ev);
            if end || out.len() >= max {
                return out; // dropping `body` drops the connection
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scopes_heists_runs_kill_and_asks_are_audited_with_the_token() {
    let api = Api::start(&local_hosts(3));
    let c = api.http();
    let viewer = api.token("viewer", "read");
    let runner = api.token("runner", "run");
    let ops = api.token("ops", "heist");

    // No token, a wrong one: 401 with a JSON error; a token without the scope: 403.
    let r = c.get(api.url("/api/v1/runs")).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let v: Value = r.json().await.expect("json");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("token")),
        "{v}"
    );
    let (s, _) = get(&c, &api.url("/api/v1/runs"), "crew_0000").await;
    assert_eq!(s, 401);
    let (s, v) = post(
        &c,
        &api.url("/api/v1/heists/hello/runs"),
        &viewer,
        json!({}),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("heist")),
        "{v}"
    );
    let (s, _) = post(
        &c,
        &api.url("/api/v1/heists/hello/runs"),
        &runner,
        json!({}),
    )
    .await;
    assert_eq!(s, 403, "run < heist");
    assert!(api.audited("denied", "", "token:viewer"));

    // Reads.
    let (s, v) = get(&c, &api.url("/api/v1/heists"), &viewer).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["heists"]
        .as_array()
        .expect("heists")
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert!(names.contains(&"hello"), "{v}");
    let (s, v) = get(&c, &api.url("/api/v1/hosts?select=h%5B1-2%5D"), &viewer).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["hosts"].as_array().map(Vec::len), Some(2), "{v}");
    // A bad selection says where.
    let (s, v) = get(
        &c,
        &api.url("/api/v1/hosts?select=role%3Dweb%20%26%20("),
        &viewer,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["column"], 13, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("column 13")),
        "{v}"
    );

    // Start a heist: 201 and its id; it completes on every host, step cells included.
    let (s, v) = post(&c, &api.url("/api/v1/heists/hello/runs"), &ops, json!({})).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    let done = wait_over(&api, &c, &viewer, &id).await;
    assert_eq!(done["state"], "ok", "{done}");
    assert_eq!(done["host_list"].as_array().map(Vec::len), Some(3));
    let cells = done["view"]["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 2, "two steps");
    for row in cells {
        for cell in row.as_array().expect("row") {
            assert_eq!(cell["state"], "ok", "{cell}");
        }
    }
    assert_eq!(done["view"]["cells"][0][1]["stdout"], "hello from h2\n");
    assert!(api.audited("heist started", &id, "token:ops"));
    // Unknown heist, unknown fields, bad vars: 400 with a message.
    let (s, v) = post(&c, &api.url("/api/v1/heists/nope/runs"), &ops, json!({})).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("nope")),
        "{v}"
    );
    let (s, v) = post(
        &c,
        &api.url("/api/v1/heists/hello/runs"),
        &ops,
        json!({"vars": {"x": [1]}}),
    )
    .await;
    assert_eq!(s, 400, "{v}");

    // A command: 201; killed through the API; audited with the token.
    let (s, v) = post(
        &c,
        &api.url("/api/v1/runs"),
        &runner,
        json!({"select": "h1", "command": "sleep 30", "timeout": "1m"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let run = v["id"].as_str().expect("id").to_string();
    assert!(api.audited("run started", &run, "token:runner"));
    let (s, _) = post(
        &c,
        &api.url(&format!("/api/v1/runs/{run}/kill")),
        &viewer,
        json!({}),
    )
    .await;
    assert_eq!(s, 403);
    let (s, v) = post(
        &c,
        &api.url(&format!("/api/v1/runs/{run}/kill")),
        &runner,
        json!({"now": true}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let over = wait_over(&api, &c, &viewer, &run).await;
    assert_ne!(over["state"], "ok", "{over}");
    assert!(api.audited("kill", &run, "token:runner"));
    let (s, _) = post(&c, &api.url("/api/v1/runs/12345/kill"), &runner, json!({})).await;
    assert_eq!(s, 404);

    // An ask, answered through the API.
    let (s, v) = post(&c, &api.url("/api/v1/heists/careful/runs"), &ops, json!({})).await;
    assert_eq!(s, 201, "{v}");
    let careful = v["id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + WAIT;
    let ask = loop {
        let (_, v) = get(&c, &api.url(&format!("/api/v1/runs/{careful}")), &viewer).await;
        if let Some(a) = v["asks"].as_array().and_then(|a| a.first()) {
            assert_eq!(a["host"], "h2");
            break a["ask_id"].as_u64().expect("ask id");
        }
        assert!(Instant::now() < deadline, "no ask within {WAIT:?}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let url = api.url(&format!("/api/v1/runs/{careful}/asks/{ask}"));
    let (s, _) = post(&c, &url, &runner, json!({"decision": "advance"})).await;
    assert_eq!(s, 403);
    let (s, v) = post(&c, &url, &ops, json!({"decision": "sideways"})).await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = post(&c, &url, &ops, json!({"decision": "advance"})).await;
    assert_eq!(s, 200, "{v}");
    let over = wait_over(&api, &c, &viewer, &careful).await;
    assert_eq!(
        over["view"]["cells"][1][1]["state"], "ok",
        "h2 went on: {over}"
    );
    assert!(api.audited("answer", &careful, "token:ops"));

    // Revoked: refused at once.
    let (code, _, err) = api.crew(&["token", "revoke", "viewer"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let (s, _) = get(&c, &api.url("/api/v1/runs"), &viewer).await;
    assert_eq!(s, 401);
    // The token store holds no token.
    let store = std::fs::read_to_string(api.home().join("api/tokens.json")).expect("store");
    assert!(!store.contains(&ops[5..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_is_complete_and_resumes_after_a_drop_without_loss_or_repeats() {
    let api = Api::start(&local_hosts(2));
    let c = api.http();
    let t = api.token("runner", "run");
    let cmd = "for i in $(seq 1 300); do echo line$i; done; sleep 0.5; \
               for i in $(seq 301 600); do echo line$i; done; echo '<b>\"x\"</b>' >&2";
    let (s, v) = post(
        &c,
        &api.url("/api/v1/runs"),
        &t,
        json!({"select": "role=web", "command": cmd}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_string();

    // A client reads a few events, loses its connection, and resumes from the last id.
    let first = read_events(&api, &c, &t, &id, None, 3).await;
    assert_eq!(first.len(), 3);
    let last = first.last().and_then(|e| e.id).expect("an id");
    let rest = read_events(&api, &c, &t, &id, Some(last), usize::MAX).await;
    assert_eq!(rest.last().map(|e| e.event.as_str()), Some("end"));
    let end: Value = serde_json::from_str(&rest.last().expect("end").data).expect("json");
    assert_eq!(end["state"], "ok");
    let resumed: Vec<Sse> = first.iter().chain(rest.iter()).cloned().collect();

    // The whole stream, read once from the start, is exactly the same.
    let whole = read_events(&api, &c, &t, &id, None, usize::MAX).await;
    assert_eq!(resumed, whole, "resumed stream differs from the whole one");
    let ids: Vec<u64> = whole.iter().filter_map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    // And it carries every line of every host, JSON-escaped.
    for host in ["h1", "h2"] {
        let mut out = String::new();
        let mut err = String::new();
        let mut verdict = None;
        for e in whole.iter().filter(|e| e.event == "message") {
            let v: Value = serde_json::from_str(&e.data).expect("json");
            if v["host"] != host {
                continue;
            }
            match v["event"].as_str() {
                Some("stdout") => out.push_str(v["data"].as_str().expect("data")),
                Some("stderr") => err.push_str(v["data"].as_str().expect("data")),
                Some("exit") => verdict = v["verdict"].as_str().map(str::to_string),
                _ => {}
            }
        }
        let expect: String = (1..=600).map(|i| format!("line{i}\n")).collect();
        assert_eq!(out, expect, "{host}'s stdout");
        assert_eq!(err, "<b>\"x\"</b>\n");
        assert_eq!(verdict.as_deref(), Some("ok"));
    }
    let kinds: Vec<String> = whole
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter_map(|v| v["event"].as_str().map(str::to_string))
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("run_started"));
    assert!(kinds.iter().any(|k| k == "run_finished"), "{kinds:?}");

    // An unknown run is a 404 before any stream starts.
    let r = c
        .get(api.url("/api/v1/runs/999999/events"))
        .bearer_auth(&t)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 404);
}

fn hmac_hex(secret: &str, msg: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    hex::encode(ring::hmac::sign(&key, msg).as_ref())
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

async fn hook(
    c: &reqwest::Client,
    api: &Api,
    name: &str,
    ts: u64,
    body: &str,
    secret: &str,
) -> (u16, Value) {
    let sig = hmac_hex(secret, format!("{ts}.{body}").as_bytes());
    let r = c
        .post(api.url(&format!("/hooks/{name}")))
        .header("X-Crew-Timestamp", ts.to_string())
        .header("X-Crew-Signature", format!("sha256={sig}"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST hook");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_fresh_once_and_follow_their_concurrency_rule() {
    let api = Api::start(&local_hosts(2));
    let c = api.http();
    let viewer = api.token("viewer", "read");

    // Signed: accepted; the allowed var is taken, the fixed one cannot be overridden.
    let body = r#"{"who":"nagios","why":"forged"}"#;
    let ts = now_s();
    let (s, v) = hook(&c, &api, "greet", ts, body, HOOK_SECRET).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    let done = wait_over(&api, &c, &viewer, &id).await;
    assert_eq!(done["state"], "ok", "{done}");
    assert_eq!(
        done["view"]["cells"][0][0]["stdout"],
        "hi nagios because alert\n"
    );
    assert!(api.audited("heist started", &id, "hook:greet"));

    // The same request again: a replay.
    let (s, v) = hook(&c, &api, "greet", ts, body, HOOK_SECRET).await;
    assert_eq!(s, 409, "{v}");
    // Wrong secret, a changed body under the old signature, no signature: 401.
    let (s, _) = hook(&c, &api, "greet", now_s(), body, "not-the-secret-at-all").await;
    assert_eq!(s, 401);
    let sig = hmac_hex(HOOK_SECRET, format!("{ts}.{body}").as_bytes());
    let r = c
        .post(api.url("/hooks/greet"))
        .header("X-Crew-Timestamp", ts.to_string())
        .header("X-Crew-Signature", format!("sha256={sig}"))
        .body(r#"{"who":"mallory"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .post(api.url("/hooks/greet"))
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 401);
    // Signed, but from outside the replay window.
    let (s, v) = hook(&c, &api, "greet", now_s() - 3600, body, HOOK_SECRET).await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = hook(&c, &api, "nosuch", now_s(), body, HOOK_SECRET).await;
    assert_eq!(s, 404);
    assert!(api.audited("hook refused", "", "hook:greet"));
    let audit = std::fs::read_to_string(api.home().join("audit.jsonl")).expect("audit");
    assert!(
        !audit.contains(HOOK_SECRET),
        "the secret never reaches the audit log"
    );
    let log = std::fs::read_to_string(api.home().join("logs/daemon.log")).unwrap_or_default();
    assert!(!log.contains(HOOK_SECRET), "nor the daemon's log");

    // skip: a second request while one runs is refused.
    let (s, v) = hook(&c, &api, "nap", now_s(), "{}", HOOK_SECRET).await;
    assert_eq!(s, 201, "{v}");
    let nap = v["id"].as_str().expect("id").to_string();
    let (s, v) = hook(&c, &api, "nap", now_s(), r#"{"n":2}"#, HOOK_SECRET).await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("in flight")),
        "{v}"
    );
    wait_over(&api, &c, &viewer, &nap).await;

    // queue: the second waits for the first, then runs.
    let (s, v) = hook(&c, &api, "napq", now_s(), "{}", HOOK_SECRET).await;
    assert_eq!(s, 201, "{v}");
    let first = v["id"].as_str().expect("id").to_string();
    let (s, v) = hook(&c, &api, "napq", now_s(), r#"{"n":2}"#, HOOK_SECRET).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["queued"], true);
    let deadline = Instant::now() + WAIT;
    let runs = loop {
        let (_, v) = get(&c, &api.url("/api/v1/runs"), &viewer).await;
        let mine: Vec<Value> = v["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .filter(|r| r["who"] == "hook:napq")
            .cloned()
            .collect();
        if mine.len() == 2 && mine.iter().all(|r| r["state"] == "ok") {
            break mine;
        }
        assert!(Instant::now() < deadline, "the queued run never ran: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // It started only once the first was over.
    let second = runs
        .iter()
        .find(|r| r["id"] != first.as_str())
        .expect("second");
    let first = runs
        .iter()
        .find(|r| r["id"] == first.as_str())
        .expect("first");
    assert!(
        second["started_ms"].as_u64() >= first["finished_ms"].as_u64(),
        "queued after: {runs:?}"
    );
}

#[test]
fn curl_with_the_pinned_certificate_starts_and_follows_a_heist_and_signs_a_hook() {
    if !require_tool("curl") || !require_tool("openssl") {
        return;
    }
    let api = Api::start(&local_hosts(2));
    let ops = api.token("ops", "heist");
    let cert = api.cert_pem().display().to_string();
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "60", "--cacert", &cert])
            .args(args)
            .output_bounded();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let auth = format!("Authorization: Bearer {ops}");
    // 401 without a token.
    let (_, out, _) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &api.url("/api/v1/runs"),
    ]);
    assert_eq!(out, "401");
    // Start hello: 201 and its id.
    let (code, out, err) = curl(&[
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        "{}",
        &api.url("/api/v1/heists/hello/runs"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (body, status) = out.rsplit_once('\n').expect("status line");
    assert_eq!(status, "201", "{out}");
    let id = serde_json::from_str::<Value>(body).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Follow it to its end: the heist's events, then `end`.
    let (code, out, err) = curl(&[
        "-N",
        "-H",
        &auth,
        &api.url(&format!("/api/v1/runs/{id}/events")),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let mut buf = out.clone();
    let events = parse_sse(&mut buf);
    let finished = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .any(|v| v["event"] == "finished" && v["summary"]["outcome"] == "completed");
    assert!(finished, "{out}");
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("end"),
        "{out}"
    );
    // Pinning the public key works too; another certificate is refused.
    let spki = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in {cert} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64"
        ))
        .output_bounded();
    let pin = format!("sha256//{}", String::from_utf8_lossy(&spki.stdout).trim());
    let (_, out, _) = curl(&[
        "--pinnedpubkey",
        &pin,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &auth,
        &api.url("/api/v1/runs"),
    ]);
    assert_eq!(out, "200");
    let other = api.path().join("other.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(api.path().join("other.key"))
        .arg("-out")
        .arg(&other)
        .output_bounded();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&other)
        .arg(api.url("/api/v1/runs"))
        .output_bounded();
    assert_ne!(
        out.status.code(),
        Some(0),
        "a certificate that is not the daemon's is refused"
    );
    // A webhook signed with the shell recipe from the README.
    let script = format!(
        "body='{{\"who\":\"curl\"}}'; ts=$(date +%s); \
         sig=$(printf '%s.%s' \"$ts\" \"$body\" | openssl dgst -sha256 -hmac \"$(cat {secret})\" | sed 's/^.* //'); \
         curl -sS --max-time 30 --cacert {cert} -w '\\n%{{http_code}}' -X POST \
           -H \"X-Crew-Timestamp: $ts\" -H \"X-Crew-Signature: sha256=$sig\" \
           -H 'Content-Type: application/json' -d \"$body\" {url}",
        secret = api.path().join("hook.secret").display(),
        url = api.url("/hooks/greet"),
    );
    let out = Command::new("sh").arg("-c").arg(&script).output_bounded();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.ends_with("\n201"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_remote_client_gives_the_same_output_as_the_local_socket() {
    let api = Api::start(&local_hosts(3));
    let url = api.url("");
    let token = api.token("remote", "heist");
    let remote = [
        ("CREW_DAEMON", url.as_str()),
        ("CREW_TOKEN", token.as_str()),
    ];
    let cmd = [
        "run",
        "role=web",
        "--",
        "echo out-$(hostname -s 2>/dev/null || echo x); echo err >&2; exit 0",
    ];
    let (lc, lout, lerr) = api.crew(&cmd, &[]);
    let (rc, rout, rerr) = api.crew(&cmd, &remote);
    assert_eq!(lc, Some(0), "{lerr}");
    assert_eq!(rc, lc, "{rerr}");
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&rout), sorted(&lout));
    // The first remote use learned the fingerprint (as `crew status` shows it).
    let known = std::fs::read_to_string(api.path().join("cfg/known_daemons")).expect("known");
    assert!(known.contains(&api.fingerprint), "{known}");
    assert!(rerr.contains("first connection"), "{rerr}");
    let (code, status, err) = api.crew(&["status"], &remote);
    assert_eq!(code, Some(0), "{err}");
    assert!(status.contains(&api.fingerprint), "{status}");

    // stdin reaches the jobs through TLS too (read once, sent to all, EOF).
    let (code, out, err) = {
        let mut c = api.command();
        c.envs(remote.iter().copied())
            .arg("--hosts")
            .arg(api.path().join("hosts.toml"))
            .args(["run", "role=web", "--", "wc -c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("crew run");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"twelve bytes").expect("write stdin");
        }
        finish(child, Duration::from_secs(60))
    };
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.lines().filter(|l| l.ends_with("| 12")).count(),
        3,
        "{out}"
    );
    // A copy names files of the daemon's machine: never for a remote client.
    let src = api.path().join("payload.txt");
    std::fs::write(&src, "x").expect("payload");
    let (code, _, err) = api.crew(
        &["put", "role=web", src.to_str().expect("utf8"), "/tmp/x"],
        &remote,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("cannot name files on the daemon's machine"),
        "{err}"
    );

    // A heist through TLS: the same steps and results as through the socket.
    let steps = |json: &str| {
        let mut v: Vec<(String, String, String)> = json
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "step_finished")
            .map(|v| {
                (
                    v["host"].as_str().unwrap_or_default().to_string(),
                    v["step"]["index"].to_string(),
                    v["result"]["stdout"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let (lc, lout, lerr) = api.crew(&["heist", "run", "hello", "--json"], &[]);
    let (rc, rout, rerr) = api.crew(&["heist", "run", "hello", "--json"], &remote);
    assert_eq!(lc, Some(0), "{lerr}");
    assert_eq!(rc, Some(0), "{rerr}");
    assert_eq!(steps(&rout).len(), 6, "{rout}");
    assert_eq!(steps(&rout), steps(&lout));
    let (code, runs, _) = api.crew(&["runs"], &remote);
    assert_eq!(code, Some(0));
    assert!(runs.contains("token:remote"), "{runs}");

    // Scopes hold on the connection too.
    let reader = api.token("reader", "read");
    let (code, _, err) = api.crew(
        &cmd,
        &[
            ("CREW_DAEMON", url.as_str()),
            ("CREW_TOKEN", reader.as_str()),
        ],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("scope `read`"), "{err}");
    // A bad token, and a certificate that is not the pinned one, are refused.
    let (code, _, err) = api.crew(
        &["runs"],
        &[("CREW_DAEMON", url.as_str()), ("CREW_TOKEN", "crew_nope")],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("401"), "{err}");
    let wrong = format!("{}00", &api.fingerprint[..api.fingerprint.len() - 2]);
    let wrong = if wrong == api.fingerprint {
        format!("{}11", &wrong[..wrong.len() - 2])
    } else {
        wrong
    };
    let (code, _, err) = api.crew(
        &["runs"],
        &[
            remote[0],
            remote[1],
            ("CREW_DAEMON_FINGERPRINT", wrong.as_str()),
        ],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("REFUSED"), "{err}");
    // Learned, then changed: refused, naming the line that remembered it.
    let known_file = api.path().join("cfg/known_daemons");
    std::fs::write(&known_file, known.replace(&api.fingerprint, &wrong)).expect("rewrite");
    let (code, _, err) = api.crew(&["runs"], &remote);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("REFUSED") && err.contains("known_daemons:1"),
        "{err}"
    );
    assert!(api.audited("heist started", "", "token:remote"));
}

#[test]
fn a_daemon_killed_mid_heist_is_reported_interrupted_per_host_after_restart() {
    if !require_tool("sshd") {
        return;
    }
    let fleet = support::sshd::SshdFleet::start(3);
    let scratch = tempfile::tempdir().expect("tempdir");
    std::fs::write(scratch.path().join("ssh_config"), "").expect("ssh_config");
    let mut toml = format!(
        "[defaults]\nuser = {user:?}\nport = {port}\nidentity_file = {key:?}\n\
         identities_only = true\nknown_hosts = {kh:?}\nagent_dir = {agents:?}\n\
         connect_timeout = 20\nssh_config = {cfg:?}\ntags = [\"role=web\"]\n",
        user = support::daemon::login(),
        port = fleet.port,
        key = fleet.client_key.display().to_string(),
        kh = fleet.known_hosts.display().to_string(),
        agents = fleet.agent_dir().display().to_string(),
        cfg = scratch.path().join("ssh_config").display().to_string(),
    );
    for h in fleet.hosts() {
        toml += &format!(
            "\n[[host]]\nname = {:?}\naddress = {:?}\n",
            h.name, h.address
        );
    }
    let mut api = Api::start(&toml);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let c = api.http();
    let ops = api.token("ops", "heist");
    let nap = "41.237";
    let (s, v) = rt.block_on(post(
        &c,
        &api.url("/api/v1/heists/slow/runs"),
        &ops,
        json!({"vars": {"nap": nap}}),
    ));
    assert_eq!(s, 201, "{v}\n{}", fleet.logs());
    let id = v["id"].as_str().expect("id").to_string();
    let sleep = format!("sleep {nap}");
    rt.block_on(until("the step running on every host", WAIT, || {
        processes(&sleep).len() == 3
    }));
    // SAFETY: kill(2) on the daemon this test started.
    assert_eq!(unsafe { libc::kill(api.daemon_pid(), libc::SIGKILL) }, 0);
    api.kill_daemon();
    rt.block_on(until(
        "the steps' processes to end",
        Duration::from_secs(30),
        || processes(&sleep).is_empty(),
    ));
    // A new daemon settles it; the API says interrupted, per host.
    api.start_daemon();
    let c = api.http();
    let (s, v) = rt.block_on(get(&c, &api.url(&format!("/api/v1/runs/{id}")), &ops));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "interrupted", "{v}");
    let hosts = v["host_list"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 3, "{v}");
    for h in hosts {
        assert!(
            h["outcome"]
                .as_str()
                .is_some_and(|o| o.contains("interrupted")),
            "{h}"
        );
    }
    for cell in v["view"]["cells"][0].as_array().expect("cells") {
        assert_ne!(cell["state"], "ok", "{cell}");
    }
    // Its stream replays from the journal and ends interrupted.
    let events = rt.block_on(read_events(&api, &c, &ops, &id, None, usize::MAX));
    let end: Value = serde_json::from_str(&events.last().expect("end").data).expect("json");
    assert_eq!(end["state"], "interrupted", "{events:?}");
    assert!(processes(&sleep).is_empty(), "no step left running");
}

/// Pids of processes whose command line contains `needle`.
fn processes(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Debian's chromium, headless, pinned to the daemon's certificate (its SPKI hash), driven
/// over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in
/// NUL, chromium reads fd 3 and writes fd 4), so a test watches one page change over time.
struct Chrome {
    child: Child,
    to: std::io::PipeWriter,
    rx: mpsc::Receiver<Value>,
    next: u64,
    _profile: tempfile::TempDir,
}

impl Chrome {
    fn start(cert: &Path) -> Chrome {
        use std::os::fd::AsRawFd as _;
        use std::os::unix::process::CommandExt as _;
        let spki = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
                cert.display()
            ))
            .output_bounded();
        let spki = String::from_utf8_lossy(&spki.stdout).trim().to_string();
        assert!(!spki.is_empty(), "no SPKI hash of {}", cert.display());
        let profile = tempfile::tempdir().expect("profile dir");
        let (their_in, to) = std::io::pipe().expect("pipe");
        let (from, their_out) = std::io::pipe().expect("pipe");
        let (fd_in, fd_out) = (their_in.as_raw_fd(), their_out.as_raw_fd());
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--ignore-certificate-errors-spki-list={spki}"))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: between fork and exec only dup2 and fcntl (async-signal-safe) on fds this
        // process owns; nothing is allocated.
        unsafe {
            cmd.pre_exec(move || {
                for (fd, want) in [(fd_in, 3), (fd_out, 4)] {
                    if libc::dup2(fd, want) < 0 || libc::fcntl(want, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop((their_in, their_out));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(from);
            loop {
                let mut msg = Vec::new();
                match r.read_until(0, &mut msg) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        msg.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&msg) {
                            if tx.send(v).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        Chrome {
            child,
            to,
            rx,
            next: 1,
            _profile: profile,
        }
    }

    /// One DevTools call (on a page's session, or the browser's); its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        use std::io::Write as _;
        let id = self.next;
        self.next += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method} within 30s"));
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Open `url` in a new tab; its session.
    fn open(&mut self, url: &str) -> String {
        let t = self.call(None, "Target.createTarget", json!({ "url": url }));
        let target = t["targetId"].as_str().expect("target id").to_string();
        let a = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        a["sessionId"].as_str().expect("session id").to_string()
    }

    /// Evaluate a JS expression that returns a JSON string; the parsed value.
    fn eval(&mut self, session: &str, expr: &str) -> Value {
        let r = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true }),
        );
        let text = r["result"]["value"].as_str().unwrap_or("null").to_string();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the web view shows of a run, read from its DOM.
const SNAPSHOT: &str = r##"JSON.stringify({
  title: document.title,
  state: (document.getElementById("run-state") || {}).textContent,
  pwn: !!document.getElementById("pwn"),
  scripts: document.scripts.length,
  url: location.href,
  panes: [...document.querySelectorAll(".host")].map((p) => ({
    host: p.dataset.host,
    verdict: p.querySelector(".verdict").textContent,
    out: p.querySelector("pre.out").textContent,
    html: p.querySelector("pre.out").innerHTML,
  })),
  grid: [...document.querySelectorAll("#grid tr")].map((r) => [...r.children].map((c) => c.textContent)),
})"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_shows_hosts_and_live_output_escaped_and_the_heist_grid() {
    if !require_tool("chromium") || !require_tool("openssl") {
        return;
    }
    let api = Api::start(&local_hosts(2));
    let c = api.http();
    let ops = api.token("ops", "heist");
    let wall = api.token("wall", "read");

    // The page and its script come with a strict policy.
    let r = c.get(api.url("/")).send().await.expect("GET /");
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(
        !r.text().await.expect("html").contains("<script>"),
        "no inline script"
    );

    // A run still going when the page opens: its later output arrives through the stream.
    // It goes on once the page has shown it in progress (the test creates `gate`; at most
    // 120 s), however long chromium takes to start on a loaded machine.
    let gate_dir = tempfile::tempdir().expect("gate dir");
    let gate = gate_dir.path().join("gate");
    let cmd = format!(
        "echo first-line; for i in $(seq 1200); do [ -e {} ] && break; sleep 0.1; done; \
         echo '<script>document.title=\"pwned\"</script><b id=\"pwn\">bold</b>'; echo last-line",
        gate.display()
    );
    let (s, v) = post(
        &c,
        &api.url("/api/v1/runs"),
        &ops,
        json!({"select": "role=web", "command": cmd}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let run = v["id"].as_str().expect("id").to_string();
    let (s, v) = post(&c, &api.url("/api/v1/heists/hello/runs"), &ops, json!({})).await;
    assert_eq!(s, 201, "{v}");
    let heist = v["id"].as_str().expect("id").to_string();
    let run_url = api.url(&format!("/#token={wall}&run={run}"));
    let heist_url = api.url(&format!("/#token={wall}&run={heist}"));
    let cert = api.cert_pem();
    let (progress, done, grid) =
        tokio::task::spawn_blocking(move || web_view_snapshots(&cert, &run_url, &heist_url, &gate))
            .await
            .expect("chromium task");
    // In progress: both hosts' panes with the first line, not the last, no verdict yet.
    assert_eq!(progress["state"], "running", "{progress}");
    for p in progress["panes"].as_array().expect("panes") {
        assert_eq!(p["verdict"], "", "{p}");
        assert!(!p["out"].as_str().unwrap_or_default().contains("last-line"));
    }
    // Then, on the same page: the rest of the output and the verdicts.
    assert_eq!(done["state"], "ok", "{done}");
    let panes = done["panes"].as_array().expect("panes");
    assert_eq!(panes.len(), 2, "{done}");
    for p in panes {
        assert_eq!(p["verdict"], "ok", "{p}");
        let out = p["out"].as_str().unwrap_or_default();
        assert!(
            out.starts_with("first-line\n") && out.ends_with("last-line\n"),
            "{p}"
        );
        // Host output is text, never markup.
        assert!(out.contains("<script>document.title"), "{p}");
        assert!(
            p["html"]
                .as_str()
                .unwrap_or_default()
                .contains("&lt;b id=\"pwn\"&gt;"),
            "{p}"
        );
    }
    assert_eq!(done["pwn"], false, "host output became markup: {done}");
    assert_eq!(done["title"], "crew", "{done}");
    assert_eq!(done["scripts"], 1, "only the page's own script: {done}");
    assert!(
        !done["url"].as_str().unwrap_or_default().contains(&wall),
        "the token left the URL"
    );
    // A heist: steps × hosts, every cell ok.
    let rows: Vec<String> = grid
        .as_array()
        .expect("grid")
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(rows.len(), 3, "a header and two steps: {rows:?}");
    assert!(rows[0].contains("h1") && rows[0].contains("h2"), "{rows:?}");
    assert!(rows[1].starts_with("[\"greet\",\"ok\",\"ok\"]"), "{rows:?}");
    assert!(
        rows[2].starts_with("[\"kernel\",\"ok\",\"ok\"]"),
        "{rows:?}"
    );
}

/// Open the run's page while it goes on: its snapshot in progress (first line shown, last
/// not yet; then `gate` lets the run go on), then once over; then the heist's page and its
/// grid.
fn web_view_snapshots(
    cert: &Path,
    run_url: &str,
    heist_url: &str,
    gate: &Path,
) -> (Value, Value, Value) {
    let mut chrome = Chrome::start(cert);
    let page = chrome.open(run_url);
    let deadline = Instant::now() + WAIT;
    let mut progress = None;
    let done = loop {
        let v = chrome.eval(&page, SNAPSHOT);
        let panes = v["panes"].as_array().cloned().unwrap_or_default();
        let has = |w: &str| {
            panes.len() == 2
                && panes
                    .iter()
                    .all(|p| p["out"].as_str().unwrap_or_default().contains(w))
        };
        if progress.is_none() && has("first-line") && !has("last-line") {
            progress = Some(v.clone());
            std::fs::write(gate, b"").expect("open the gate");
        }
        if has("last-line") && panes.iter().all(|p| p["verdict"] == "ok") && v["state"] == "ok" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed the run's end: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let progress = progress.unwrap_or_else(|| {
        panic!("the page never showed the run in progress (first line, not the last): {done}")
    });
    // The heist, watched in a new tab.
    let page = chrome.open(heist_url);
    let deadline = Instant::now() + WAIT;
    let grid = loop {
        let v = chrome.eval(&page, SNAPSHOT);
        let grid = v["grid"].clone();
        let oks = grid.to_string().matches("\"ok\"").count();
        if oks == 4 && v["state"] == "ok" {
            break grid;
        }
        assert!(Instant::now() < deadline, "the grid never filled: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    (progress, done, grid)
}

#[test]
fn the_console_works_against_a_remote_daemon() {
    if !require_tool("tmux") {
        return;
    }
    let api = Api::start(&local_hosts(3));
    let token = api.token("console", "heist");
    let exe = env!("CARGO_BIN_EXE_crew");
    let hosts = api.path().join("hosts.toml");
    let url = api.url("");
    let fp = api.fingerprint.clone();
    // Its own CREW_HOME: no local daemon to fall back on.
    let s = support::tmux::Session::start(
        format!("crew-api-console-{}", std::process::id()),
        140,
        36,
        |home| {
            format!(
                "env CREW_HOME='{}' CREW_CONFIG_DIR='{}' CREW_DAEMON='{url}' CREW_TOKEN='{token}' \
                 CREW_DAEMON_FINGERPRINT='{fp}' '{exe}' --hosts '{}'; echo \"EXITED $?\"; sleep 60",
                home.display(),
                home.join("config").display(),
                hosts.display()
            )
        },
    );
    s.wait_for("Hosts 3 shown", 30);
    s.keys(&[":"]);
    s.text("echo remote-$((6*7))");
    s.keys(&["Enter"]);
    let screen = s.wait_for("run #1 done", 60);
    assert!(screen.contains("remote-42"), "{screen}");
    assert!(screen.contains("3 ok"), "{screen}");
    // A heist from the picker runs in the remote daemon, from its own heists.
    s.keys(&["h"]);
    s.wait("the picker lists the heists", 20, |t| t.contains("hello"));
    for _ in 0..10 {
        if s.screen().contains("heist hello (") {
            break;
        }
        s.keys(&["j"]);
    }
    s.wait_for("heist hello (", 10);
    s.keys(&["Enter"]);
    let screen = s.wait("the heist's end", 60, |t| t.contains("heist completed:"));
    assert!(screen.contains("3 completed"), "{screen}");
    s.keys(&["q"]);
    s.wait_for("EXITED 0", 10);
    assert!(
        !s.home().join("daemon.sock").exists(),
        "no local daemon was started"
    );
    let runs: Vec<Value> = api
        .audit()
        .into_iter()
        .filter(|l| l["who"] == "token:console")
        .collect();
    assert!(
        runs.iter().any(|l| l["command"] == "echo remote-$((6*7))"),
        "{runs:?}"
    );
    assert!(api.audited("heist started", "", "token:console"));
}
