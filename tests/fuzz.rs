//! Fuzzing every decoder that reads untrusted bytes, on the stable toolchain: agent frames,
//! daemon frames (client↔daemon), the agent link's handshake and router, hosts.toml, the
//! ssh_config it points at, heist files and selections.
//!
//! Each target feeds proptest-generated inputs (random bytes, and seed inputs mutated: bytes
//! flipped, inserted, deleted, duplicated, tokens of the format spliced in) to the decoder and
//! asserts: no panic, every failure is an error value, and every input is decoded within
//! [`HANG`] (a hang is a failure naming the input). Where a decoder has an encoder, what it
//! decodes must encode back to the same message.
//!
//! Bounded for CI: [`cases`] inputs per target from a fixed seed (the same inputs every run).
//! `CREW_FUZZ_CASES=N` runs N per target, `CREW_FUZZ_RANDOM=1` draws a fresh seed; each target
//! prints its executions and distinct inputs. The `fuzz/` crate has the same targets for
//! cargo-fuzz (libFuzzer, coverage-guided).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crew::inventory::{Inventory, InventoryError};
use crew::model::{Host, Stream};
use crew::proto::agent::{self, AgentMsg, Decoded, Hello, Leftover, ReadFile, Run, WriteFile};
use crew::proto::daemon::{self as dp, Event, HostEvent, Request};
use crew::proto::frame::{self, RawFrame};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// Longest any one input may take to decode (debug build) before it counts as a hang.
const HANG: Duration = Duration::from_secs(5);

/// Inputs per target: `CREW_FUZZ_CASES`, else the target's default.
fn cases(default: u32) -> u32 {
    std::env::var("CREW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    if std::env::var("CREW_FUZZ_RANDOM").is_ok_and(|v| v == "1") {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    }
}

/// Run `check` on inputs from `strategy`; print executions and distinct inputs.
fn fuzz<S, F>(name: &str, default_cases: u32, strategy: S, check: F)
where
    S: Strategy,
    S::Value: std::hash::Hash,
    F: Fn(&S::Value) -> Result<(), TestCaseError>,
{
    let seen = std::cell::RefCell::new(HashSet::new());
    let runs = std::cell::Cell::new(0u64);
    let started = Instant::now();
    let result = runner(cases(default_cases)).run(&strategy, |input| {
        runs.set(runs.get() + 1);
        seen.borrow_mut().insert(hash(&input));
        let t = Instant::now();
        check(&input)?;
        let took = t.elapsed();
        prop_assert!(took < HANG, "one input took {took:?}");
        Ok(())
    });
    eprintln!(
        "fuzz {name}: {} executions, {} distinct inputs, {:.1}s",
        runs.get(),
        seen.borrow().len(),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
}

fn hash<T: std::hash::Hash>(v: &T) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(v)
}

/// One mutation of a seed input.
#[derive(Debug, Clone)]
enum Op {
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, Index),
    Token(Index, Index),
    Duplicate(Index, Index),
    Truncate(Index),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Op::Flip(i, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Op::Insert(i, v)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Op::Delete(i, n)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Op::Token(i, t)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Op::Duplicate(i, n)),
        any::<Index>().prop_map(Op::Truncate),
    ]
}

fn mutate(mut v: Vec<u8>, ops: &[Op], dict: &[&[u8]]) -> Vec<u8> {
    for op in ops {
        let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
        match op {
            Op::Flip(i, b) if !v.is_empty() => {
                let i = i.index(v.len());
                v[i] ^= b | 1;
            }
            Op::Flip(..) => {}
            Op::Insert(i, bytes) => {
                let i = at(i, v.len());
                v.splice(i..i, bytes.iter().copied());
            }
            Op::Delete(i, n) if !v.is_empty() => {
                let i = i.index(v.len());
                let n = n.index((v.len() - i).min(64)) + 1;
                v.drain(i..(i + n).min(v.len()));
            }
            Op::Delete(..) => {}
            Op::Token(i, t) if !dict.is_empty() => {
                let i = at(i, v.len());
                let tok = dict[t.index(dict.len())];
                v.splice(i..i, tok.iter().copied());
            }
            Op::Token(..) => {}
            Op::Duplicate(i, n) if !v.is_empty() && v.len() < 1 << 16 => {
                let i = i.index(v.len());
                let n = n.index((v.len() - i).min(256)) + 1;
                let piece: Vec<u8> = v[i..(i + n).min(v.len())].to_vec();
                v.splice(i..i, piece);
            }
            Op::Duplicate(..) => {}
            Op::Truncate(i) => {
                let i = at(i, v.len());
                v.truncate(i);
            }
        }
    }
    v
}

/// Random bytes, or one of `seeds` mutated (mostly).
fn inputs(seeds: Vec<Vec<u8>>, dict: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        5 => (0..n, prop::collection::vec(op(), 0..12))
            .prop_map(move |(i, ops)| mutate(seeds[i].clone(), &ops, dict)),
    ]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------- frames

/// Every frame in `bytes`, as the frame reader sees them (stops at the first error).
fn frames(rt: &tokio::runtime::Runtime, bytes: &[u8]) -> Vec<RawFrame> {
    rt.block_on(async {
        let mut r = bytes;
        let mut out = Vec::new();
        while let Ok(Some(f)) = frame::read_frame(&mut r).await {
            out.push(f);
        }
        out
    })
}

fn agent_seeds() -> Vec<Vec<u8>> {
    let msgs = vec![
        AgentMsg::Hello(Hello {
            proto: 2,
            build: "b".into(),
            pid: 7,
        }),
        AgentMsg::Ping,
        AgentMsg::Run(Run {
            command: "echo hi".into(),
            env: vec![("A".into(), "b".into())],
            timeout_ms: Some(5),
            stdin: false,
        }),
        AgentMsg::Kill { signal: 9 },
        AgentMsg::Credit { bytes: 65536 },
        AgentMsg::Reap,
        AgentMsg::ReadFile(ReadFile {
            path: "/etc/hosts".into(),
            max_size: 10,
        }),
        AgentMsg::WriteFile(WriteFile {
            path: "/tmp/x".into(),
            data: vec![0, 1, 2],
            mode: 0o644,
            sha256: "00".into(),
        }),
        AgentMsg::Started { pid: 3 },
        AgentMsg::Output {
            stream: Stream::Stderr,
            data: serde_bytes::ByteBuf::from(b"out\n".to_vec()),
        },
        AgentMsg::Exit(crew::model::Exit {
            code: Some(1),
            signal: None,
            wall_ms: 2,
            user_ms: 3,
            sys_ms: 4,
            max_rss_kb: 5,
            timed_out: true,
        }),
        AgentMsg::Info(crew::model::Info {
            hostname: "h".into(),
            ..crew::model::Info::default()
        }),
        AgentMsg::FileWritten {
            size: 3,
            sha256: "ab".into(),
        },
        AgentMsg::Refused { reason: "r".into() },
        AgentMsg::Error {
            message: "e".into(),
        },
        AgentMsg::Reaped {
            leftovers: vec![Leftover {
                agent_pid: 1,
                job: 2,
                pgid: 3,
                processes: vec![(4, "sleep".into())],
            }],
        },
    ];
    let mut seeds: Vec<Vec<u8>> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut v = Vec::new();
            m.encode_frame(i as u64, &mut v).expect("encode");
            v
        })
        .collect();
    // A whole conversation in one input too.
    seeds.push(seeds.concat());
    seeds
}

const FRAME_DICT: &[&[u8]] = &[
    &[0, 0, 0, 10],
    &[0, 0, 0, 11],
    &[0xff, 0xff, 0xff, 0xff],
    &[0x01, 0x00, 0x00, 0x00],
    &[0, 21],
    &[0, 29],
    &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
];

#[test]
fn fuzz_agent_frames() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    fuzz(
        "agent frames",
        20000,
        inputs(agent_seeds(), FRAME_DICT),
        |bytes| {
            for f in frames(&rt, bytes) {
                if let Decoded::Msg { id, msg } = agent::decode(&f) {
                    // What decodes re-encodes to a frame that decodes the same.
                    let (kind, payload) = msg.encode();
                    let again = agent::decode(&RawFrame { kind, id, payload });
                    prop_assert_eq!(again, Decoded::Msg { id, msg });
                }
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_agent_link_handshake_and_router() {
    use crew::daemon::link::{AgentLink, LinkOptions};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A greeting, then frames for jobs 1 and 2 (the ids the link gives its first jobs).
    let mut good = b"banner\n".to_vec();
    good.extend_from_slice(agent::SYNC_MARKER);
    AgentMsg::Hello(Hello {
        proto: crew::proto::PROTO_VERSION,
        build: "b".into(),
        pid: 1,
    })
    .encode_frame(0, &mut good)
    .expect("hello");
    for m in [
        AgentMsg::Started { pid: 9 },
        AgentMsg::Output {
            stream: Stream::Stdout,
            data: serde_bytes::ByteBuf::from(b"x".to_vec()),
        },
        AgentMsg::Ping,
    ] {
        m.encode_frame(1, &mut good).expect("frame");
    }
    let mut seeds = vec![good.clone()];
    for s in agent_seeds() {
        let mut v = good.clone();
        v.extend_from_slice(&s);
        seeds.push(v);
    }
    const DICT: &[&[u8]] = &[
        agent::SYNC_MARKER,
        &[0, 0, 0, 10],
        &[0, 0, 0, 0, 0, 0, 0, 1],
    ];
    fuzz("agent link", 3000, inputs(seeds, DICT), |bytes| {
        let bytes = bytes.clone();
        rt.block_on(async move {
            let opts = LinkOptions {
                handshake_timeout: Duration::from_secs(2),
                heartbeat_interval: Duration::from_secs(60),
                ..LinkOptions::default()
            };
            let reader = std::io::Cursor::new(bytes);
            let Ok((link, _)) = AgentLink::connect(reader, tokio::io::sink(), opts).await else {
                return;
            };
            // Jobs 1 and 2 take whatever the input says about them; the input's end closes
            // the link, which ends every job's events.
            let jobs = futures::future::join_all((0..2).map(|_| link.start(agent_run())));
            for job in jobs.await.into_iter().flatten() {
                let mut events = job.events;
                let drained =
                    tokio::time::timeout(HANG, async { while events.recv().await.is_some() {} })
                        .await;
                assert!(drained.is_ok(), "a job's events did not end");
            }
            let closed = tokio::time::timeout(HANG, link.closed()).await;
            assert!(closed.is_ok(), "the link did not close at the input's end");
        });
        Ok(())
    });
}

fn agent_run() -> Run {
    Run {
        command: "true".into(),
        env: Vec::new(),
        timeout_ms: None,
        stdin: false,
    }
}

fn daemon_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let reqs = [
        Request::Hello {
            proto: 2,
            build: "b".into(),
            operator: Some("ann".into()),
        },
        Request::Attach { run: "12".into() },
        Request::Answer {
            run: "1-x".into(),
            ask_id: 2,
            choice: "advance".into(),
        },
        Request::ShellInput {
            shell: 4,
            data: b"ls\r".to_vec(),
        },
        Request::Status,
        Request::Stop,
        Request::Kill {
            run_id: 3,
            host: Some("web1".into()),
            signal: 15,
        },
        Request::Facts {
            hosts: vec![Host::local("h1")],
            accept_new_host_keys: false,
        },
    ];
    for (i, r) in reqs.iter().enumerate() {
        let mut v = Vec::new();
        dp::encode_request(i as u64, r, &mut v).expect("encode");
        seeds.push(v);
    }
    let events = [
        Event::Hello {
            proto: 2,
            build: "b".into(),
            pid: 4,
            identify: false,
        },
        Event::Heist {
            run: "1-x".into(),
            json: "{\"event\":\"wave\",\"index\":0,\"hosts\":[]}".into(),
        },
        Event::ShellExit {
            code: Some(0),
            signal: None,
        },
        Event::RunStarted {
            run_id: 1,
            hosts: vec!["a".into(), "b".into()],
        },
        Event::Host {
            run_id: 1,
            host: "a".into(),
            event: HostEvent::Output {
                stream: Stream::Stdout,
                data: b"line\n".to_vec(),
            },
        },
        Event::Error {
            message: "m".into(),
        },
        Event::Stopping,
    ];
    for (i, e) in events.iter().enumerate() {
        let mut v = Vec::new();
        dp::encode_event(i as u64, e, &mut v).expect("encode");
        seeds.push(v);
    }
    seeds
}

#[test]
fn fuzz_daemon_frames() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    fuzz(
        "daemon frames",
        20000,
        inputs(daemon_seeds(), FRAME_DICT),
        |bytes| {
            for f in frames(&rt, bytes) {
                if let Ok(r) = dp::decode_request(&f) {
                    let mut v = Vec::new();
                    dp::encode_request(f.id, &r, &mut v).expect("re-encode");
                    let again = frames(&rt, &v);
                    prop_assert_eq!(dp::decode_request(&again[0]), Ok(r));
                }
                if let Ok(e) = dp::decode_event(&f) {
                    let mut v = Vec::new();
                    dp::encode_event(f.id, &e, &mut v).expect("re-encode");
                    let again = frames(&rt, &v);
                    prop_assert_eq!(dp::decode_event(&again[0]), Ok(e));
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------- text formats

/// Text quoted from a file in an error message must not reach a terminal raw.
fn no_raw_controls(message: &str) -> Result<(), TestCaseError> {
    let raw = message.chars().find(|c| {
        (c.is_control() && !matches!(c, '\n' | '\t')) || ('\u{80}'..='\u{9f}').contains(c)
    });
    prop_assert!(raw.is_none(), "raw {:?} in {:?}", raw, message);
    Ok(())
}

fn seeds_from(files: &[PathBuf], extra: &[&str]) -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    seeds.extend(extra.iter().map(|s| s.as_bytes().to_vec()));
    seeds
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    v.sort();
    v
}

const TOML_DICT: &[&[u8]] = &[
    b"[[host]]\n",
    b"[defaults]\n",
    b"[groups]\n",
    b"name = ",
    b"address = ",
    b"\"web[01-10]\"",
    b"\"[1-3,5]\"",
    b"tags = [\"role=web\"]",
    b"port = 70000",
    b"connect_timeout = \"5s\"",
    b"transport = \"local\"",
    b"\"\"\"",
    b"'''",
    b"\\u001b",
    b"\\u0000",
    b"{ a = 1 }",
    b"\n",
    b"=",
    b"\"",
];

#[test]
fn fuzz_hosts_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ssh = dir.path().join("ssh_config");
    std::fs::write(&ssh, "").expect("ssh_config");
    let path = dir.path().join("hosts.toml");
    let mut files = vec![repo("hosts.toml")];
    files.extend(toml_files(&repo("tests/configs/invalid")));
    let head = format!("[defaults]\nssh_config = {:?}\n", ssh.display().to_string());
    let extra = [
        "[[host]]\nname = \"web[01-03]\"\naddress = \"10.0.0.[1-3]\"\ntags = [\"role=web\", \"canary\"]\n[groups]\nfront = \"role=web & !canary\"\n",
        "[[host]]\nname = \"db1\"\nuser = \"admin\"\nport = 2222\nidentity_file = \"~/.ssh/id\"\n",
    ];
    let seeds: Vec<Vec<u8>> = seeds_from(&files, &extra)
        .into_iter()
        .map(|s| [head.as_bytes(), &s].concat())
        .collect();
    fuzz("hosts.toml", 10000, inputs(seeds, TOML_DICT), |bytes| {
        match Inventory::from_str(&text(bytes), &path) {
            Ok(inv) => {
                for h in &inv.hosts {
                    prop_assert!(!h.name.is_empty() && h.name.len() <= 255, "{:?}", h.name);
                }
            }
            Err(e) => {
                if let InventoryError::At { line, col, .. } = &e {
                    prop_assert!(*line >= 1 && *col >= 1);
                }
                no_raw_controls(&e.to_string())?;
            }
        }
        Ok(())
    });
}

const SSH_DICT: &[&[u8]] = &[
    b"Host ",
    b"Match ",
    b"Match host web* user root\n",
    b"Match exec \"true\"\n",
    b"Include ",
    b"HostName ",
    b"User ",
    b"Port ",
    b"IdentityFile ",
    b"ProxyJump ",
    b"ProxyCommand ",
    b"\"quoted value\"",
    b"=",
    b"*",
    b"!",
    b"%h",
    b"~/",
    b"\n",
    b"\t",
];

#[test]
fn fuzz_ssh_config_through_the_inventory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ssh = dir.path().join("ssh_config");
    let path = dir.path().join("hosts.toml");
    // The fuzzed file includes itself and a sibling, to find include loops.
    let sibling = dir.path().join("more_config");
    std::fs::write(&sibling, "Host *\n  Port 2200\n").expect("sibling");
    let hosts = format!(
        "[defaults]\nssh_config = {:?}\n[[host]]\nname = \"web[1-2]\"\n[[host]]\nname = \"db1\"\naddress = \"db.example\"\n",
        ssh.display().to_string()
    );
    let include_self = format!("Include {}\nHost web1\n  Port 1\n", ssh.display());
    let include_sibling = format!("Include {}\n", sibling.display());
    let extra = [
        "Host web*\n  HostName 10.0.0.%h\n  User deploy\n  Port 2222\n  IdentityFile ~/.ssh/web\n\nHost *\n  ConnectTimeout 5\n",
        "Host db1\n\tHostName=db.internal\n\tProxyJump bastion\nMatch host db* user root\n  Port 22\n",
        "Host \"a b\" !web2 *\n  User \"x y\"\n",
        include_self.as_str(),
        include_sibling.as_str(),
    ];
    let home_config = dirs::home_dir().map(|h| h.join(".ssh/config"));
    let files: Vec<PathBuf> = home_config.into_iter().collect();
    let seeds = seeds_from(&files, &extra);
    fuzz("ssh_config", 3000, inputs(seeds, SSH_DICT), |bytes| {
        std::fs::write(&ssh, bytes).expect("write ssh_config");
        if let Err(e) = Inventory::from_str(&hosts, &path) {
            no_raw_controls(&e.to_string())?;
        }
        Ok(())
    });
}

const HEIST_DICT: &[&[u8]] = &[
    b"[heist.h]\n",
    b"[[heist.h.step]]\n",
    b"name = \"s\"\n",
    b"run = \"echo ${host}\"\n",
    b"select = \"role=web\"\n",
    b"batch = \"25%\"\n",
    b"batch = 0\n",
    b"timeout = \"30s\"\n",
    b"capture = { rev = '(\\w+)' }\n",
    b"on_fail = { retry = 2, backoff = \"5s\", then = \"rollback\" }\n",
    b"exits = [0, 2]\n",
    b"vars = { a = \"${b}\" }\n",
    b"${",
    b"$${",
    b"${tag.role}",
    b"put = { to = \"/tmp/x\", content = \"y\", mode = 0o600 }\n",
    b"fetch = { from = \"/etc/hosts\" }\n",
    b"[profile.p]\n",
];

#[test]
fn fuzz_heist_files() {
    let path = Path::new("/fuzz/heist.toml");
    let extra = [
        "[heist.deploy]\nselect = \"role=web\"\nbatch = \"25%\"\nvars = { branch = \"main\" }\n[[heist.deploy.step]]\nname = \"pull\"\nrun = \"git checkout ${branch}\"\ntimeout = \"30s\"\ncapture = { rev = 'HEAD is now at (\\w+)' }\n[[heist.deploy.step]]\nname = \"check\"\nrun = \"echo ${rev}\"\nexits = [0, 2]\non_fail = { retry = 2, backoff = \"5s\", then = \"rollback\" }\nrollback = \"echo undo\"\n",
    ];
    let seeds = seeds_from(&toml_files(&repo("heists")), &extra);
    fuzz("heists", 10000, inputs(seeds, HEIST_DICT), |bytes| {
        if let Err(d) = crew::heist::validate::load_str(&text(bytes), path) {
            prop_assert!(!d.0.is_empty(), "an error has at least one diagnostic");
            let _ = d.to_string();
        }
        Ok(())
    });
}

const SELECT_DICT: &[&[u8]] = &[
    b"role=web",
    b"role!=web*",
    b"web[01-05]",
    b"/^web0[1-3]$/",
    b"@front",
    b"fact.os_id=debian",
    b"?failed",
    b" & ",
    b" | ",
    b" , ",
    b"!",
    b"(",
    b")",
    b"[",
    b"]",
    b"*",
    b"?",
    b"/",
    b"\\",
    b"\"",
];

#[test]
fn fuzz_selections() {
    let extra = [
        "role=web & !canary",
        "(web[01-05] | db*) & ?failed",
        "/^web0[1-3]$/ , @front",
        "fact.os_id=debian & !fact.kernel=6.*",
        "!!a&(b|c),d",
        "web?1",
    ];
    let seeds = seeds_from(&[], &extra);
    fuzz("selections", 20000, inputs(seeds, SELECT_DICT), |bytes| {
        if let Err(e) = crew::select::parse(&text(bytes)) {
            let _ = e.to_string();
        }
        Ok(())
    });
}
