//! A real NATS cluster on loopback: `nats-server` nodes with JetStream (`-js` in each
//! node's config), routes between all of them, a user with a password (and permissions
//! fenced to one fleet), every port from a free-port picker. Killed on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::find_tool;

/// The user daemons connect as, and its password (written to a file for `[nats]`).
pub const USER: &str = "crew";
pub const PASSWORD: &str = "s3cret-for-tests-only";
/// The fleet the test user may use (subjects, stream and buckets of other fleets are off
/// limits to it).
pub const FLEET: &str = "t1";

/// A port nobody listens on now (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

struct Node {
    name: String,
    client: u16,
    cluster: u16,
    monitor: u16,
    child: Option<Child>,
}

pub struct NatsCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    pub password_file: PathBuf,
    /// The CA that signed the nodes' certificate, when they require TLS.
    pub ca: Option<PathBuf>,
}

/// A CA and a server certificate for 127.0.0.1 (openssl), in `dir`: (ca.pem, cert, key).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = find_tool("openssl").expect("openssl installed");
    let run = |args: &[&str]| {
        let o = Command::new(&openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=crew test CA",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("san.ext");
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

fn fleet_permissions(fleet: &str) -> String {
    let b = fleet.replace('-', "_");
    format!(
        r#"permissions: {{
      publish: ["crew.{fleet}.>", "$JS.API.>", "$JS.FC.>", "$JS.ACK.>",
                "$KV.crew_{b}_daemons.>", "$KV.crew_{b}_claims.>", "$KV.crew_{b}_runs.>"]
      subscribe: ["crew.{fleet}.>"]
    }}"#
    )
}

impl NatsCluster {
    /// Start `n` nodes (a cluster when n > 1) and wait until each answers its health check.
    pub fn start(n: usize) -> NatsCluster {
        NatsCluster::start_with(n, false)
    }

    /// As [`NatsCluster::start`]; with `tls`, every node requires TLS from clients (a
    /// certificate for 127.0.0.1 signed by a CA made here, see [`NatsCluster::ca`]).
    pub fn start_with(n: usize, tls: bool) -> NatsCluster {
        let exe = find_tool("nats-server").expect("nats-server installed");
        let dir = tempfile::Builder::new()
            .prefix("crew-nats-")
            .tempdir()
            .expect("temp dir");
        let password_file = dir.path().join("nats.pass");
        let certs = tls.then(|| make_certs(dir.path()));
        let tls_block = match &certs {
            Some((_, cert, key)) => format!(
                "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                name: format!("n{}", i + 1),
                client: free_port(),
                cluster: free_port(),
                monitor: free_port(),
                child: None,
            })
            .collect();
        let routes: Vec<String> = nodes
            .iter()
            .map(|n| format!("\"nats-route://127.0.0.1:{}\"", n.cluster))
            .collect();
        for node in &mut nodes {
            let store = dir.path().join(&node.name);
            let cluster = if n > 1 {
                format!(
                    "cluster {{\n  name: crewtest\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
                    node.cluster,
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let conf = format!(
                "server_name: {name}\nlisten: \"127.0.0.1:{client}\"\nhttp: \"127.0.0.1:{monitor}\"\n\
                 jetstream {{\n  store_dir: \"{store}\"\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n\
                 {cluster}{tls_block}\
                 authorization {{\n  users: [\n    {{ user: \"{USER}\", password: \"{PASSWORD}\"\n    {perms} }}\n  ]\n}}\n",
                name = node.name,
                client = node.client,
                monitor = node.monitor,
                store = store.display(),
                perms = fleet_permissions(FLEET),
            );
            let path = dir.path().join(format!("{}.conf", node.name));
            std::fs::write(&path, conf).expect("node config");
            let log = std::fs::File::create(dir.path().join(format!("{}.log", node.name)))
                .expect("node log");
            let child = Command::new(&exe)
                .arg("-js")
                .arg("-c")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start nats-server");
            node.child = Some(child);
        }
        let c = NatsCluster {
            dir,
            nodes,
            password_file,
            ca: certs.map(|(ca, _, _)| ca),
        };
        for i in 0..n {
            c.wait_healthy(i, Duration::from_secs(30));
        }
        c
    }

    /// Every node's client URL, comma-separated (what `--nats` takes).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client URLs of the nodes still running.
    pub fn live_url(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("nats://127.0.0.1:{}", n.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The nodes' logs (for failure messages).
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let t = std::fs::read_to_string(self.dir.path().join(format!("{}.log", n.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = t.lines().rev().take(30).collect();
                format!(
                    "--- {} (last lines)\n{}",
                    n.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// GET a monitoring endpoint of node `i`; None when it does not answer 200.
    fn get(&self, i: usize, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.nodes[i].monitor)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        (out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"))
            .then(|| out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    }

    /// Wait (bounded) until node `i` reports healthy (JetStream included).
    pub fn wait_healthy(&self, i: usize, wait: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < wait {
            if self.get(i, "/healthz").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "nats node {} not healthy within {wait:?}\n{}",
            self.nodes[i].name,
            self.logs()
        );
    }

    /// Process ids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
