//! ssh_config resolution benchmark (not a test): what resolving N host names costs.
//!
//! `cargo bench --bench ssh_config [-- N]` (or `CREW_BENCH_HOSTS=N`, default 5000;
//! `CREW_BENCH_ROUNDS`, default 5, the median shown) writes three configs into a temp dir and,
//! for each, times: reading and checking the files (`SshFile::load`), resolving N names
//! (`SshFile::query`, as `ssh -G` would), and loading a hosts.toml of N hosts that uses the
//! config (`Inventory::load`, end to end). For scale it also times the installed `ssh -G`
//! on 50 names of each config (one process per name, as asking OpenSSH would cost) and
//! extrapolates to N.
//!
//! | config | what it is |
//! |---|---|
//! | issue-10 | the 7-line example of issue 10 (Host with negation, Match, Host *) |
//! | realistic | 300 lines: an Include of 10 files, 60 Host blocks with patterns and negation, 15 Match blocks, a `Match final`, tokens in IdentityFile and UserKnownHostsFile |
//! | large | 4000 lines: 1000 concrete `Host` entries with HostName/User/Port (a generated ~/.ssh/config), then `Host *` |
//!
//! Last run (2-core dev machine, release profile, other builds running; benches/README.md):
//!
//! | config | lines | load | resolve 5000 names | per name | hosts.toml of 5000 hosts | ssh -G × 5000 (extrapolated) |
//! |---|---|---|---|---|---|---|
//! | issue-10 | 7 | 0.1 ms | 2.5 ms | 0.5 µs | 34.2 ms | 35.7 s (7.1 ms each) |
//! | realistic | 532 | 0.4 ms | 107 ms | 21.4 µs | 155 ms | 44.2 s (8.8 ms each) |
//! | large | 4003 | 0.8 ms | 54 ms | 10.8 µs | 80 ms | 53.0 s (10.6 ms each) |

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crew::inventory::ssh_config::SshFile;
use crew::inventory::Inventory;

fn issue_10(_dir: &Path) -> String {
    "Host *.prod !bastion.prod\n  ProxyJump bastion.prod\n  User produser\nMatch host db*\n  \
     User matcher\nHost *\n  User fallback\n"
        .to_string()
}

fn realistic(dir: &Path) -> String {
    let inc = dir.join("conf.d");
    std::fs::create_dir_all(&inc).expect("mkdir conf.d");
    for i in 0..10 {
        let mut t = String::new();
        for j in 0..4 {
            let _ = write!(
                t,
                "Host team{i}-{j}-*\n  User team{i}\n  IdentityFile ~/.ssh/team{i}_%r\n  \
                 ProxyJump bastion{i}.example.com\n"
            );
        }
        let _ = write!(t, "Match host *.team{i}.example.com\n  Port 22{i:02}\n");
        std::fs::write(inc.join(format!("{i:02}.conf")), t).expect("write include");
    }
    let mut s = format!("Include {}/*.conf\n", inc.display());
    for i in 0..60 {
        let _ = write!(
            s,
            "Host web{i}* api{i}-* !web{i}-canary\n  HostName %h.dc{}.example.com\n  User deploy\n  \
             IdentityFile ~/.ssh/id_%h\n  ServerAliveInterval 30\n",
            i % 3
        );
    }
    for i in 0..15 {
        let _ = write!(
            s,
            "Match host *.dc{}.example.com user deploy\n  UserKnownHostsFile ~/.ssh/kh_%h\n  \
             StrictHostKeyChecking accept-new\n",
            i % 3
        );
    }
    s.push_str("Match final host *.example.com\n  ConnectTimeout 5\n");
    s.push_str("Host *\n  IdentitiesOnly yes\n  ServerAliveCountMax 3\n  KexAlgorithms +diffie-hellman-group14-sha1\n");
    s
}

fn large(_dir: &Path) -> String {
    let mut s = String::new();
    for i in 0..1000 {
        let _ = write!(
            s,
            "Host node{i:04}\n  HostName 10.{}.{}.{}\n  User ops\n  Port {}\n",
            i / 65536,
            (i / 256) % 256,
            i % 256,
            2000 + i % 100
        );
    }
    s.push_str(
        "Host *\n  IdentityFile ~/.ssh/id_ed25519\n  UserKnownHostsFile ~/.ssh/known_hosts\n",
    );
    s
}

/// Host names the configs match in various ways, `n` of them.
fn names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 5 {
            0 => format!("web{}-{i}", i % 60),
            1 => format!("team{}-{}-{i}", i % 10, i % 4),
            2 => format!("node{:04}", i / 5),
            3 => format!("db{i}.team{}.example.com", i % 10),
            _ => format!("h{i}.prod"),
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("CREW_BENCH_HOSTS").ok())
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5000);
    let rounds: usize = std::env::var("CREW_BENCH_ROUNDS")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5)
        .max(1);
    let dir = tempfile::tempdir()?;
    let hosts = names(n);
    let ssh = ["/usr/bin/ssh", "/bin/ssh", "/usr/local/bin/ssh"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());

    println!(
        "| config | lines | load | resolve {n} names | per name | hosts.toml of {n} hosts | ssh -G × {n} (extrapolated) |"
    );
    println!("|---|---|---|---|---|---|---|");
    type Make = fn(&Path) -> String;
    let configs: [(&str, Make); 3] = [
        ("issue-10", issue_10),
        ("realistic", realistic),
        ("large", large),
    ];
    for (name, make) in configs {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub)?;
        let text = make(&sub);
        let cfg = sub.join("config");
        std::fs::write(&cfg, &text)?;
        let lines = text.lines().count()
            + std::fs::read_dir(&sub)?
                .flatten()
                .filter(|e| e.path().is_dir())
                .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
                .map(|f| std::fs::read_to_string(f.path()).map_or(0, |t| t.lines().count()))
                .sum::<usize>();

        let mut load = Vec::new();
        let mut resolve = Vec::new();
        let mut inventory = Vec::new();
        let mut toml = format!("[defaults]\nssh_config = {:?}\n", cfg.display().to_string());
        for h in &hosts {
            let _ = write!(toml, "[[host]]\nname = {h:?}\n");
        }
        let toml_path = sub.join("hosts.toml");
        std::fs::write(&toml_path, &toml)?;
        let mut checksum = 0usize;
        for _ in 0..rounds {
            let t = Instant::now();
            let f = SshFile::load(&cfg).map_err(anyhow::Error::msg)?;
            load.push(t.elapsed());
            let t = Instant::now();
            for h in &hosts {
                let p = f.query(h);
                checksum += p.identity_files.len() + p.notes.len();
            }
            resolve.push(t.elapsed());
            let t = Instant::now();
            let inv = Inventory::load(&toml_path)?;
            inventory.push(t.elapsed());
            checksum += inv.hosts.len();
        }
        let ssh_cell = match &ssh {
            Some(ssh) => {
                let sample = &hosts[..hosts.len().min(50)];
                let t = Instant::now();
                for h in sample {
                    let st = Command::new(ssh)
                        .args(["-G", "-F"])
                        .arg(&cfg)
                        .arg("--")
                        .arg(h)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()?;
                    anyhow::ensure!(st.success(), "ssh -G {h} failed");
                }
                let per = t.elapsed() / sample.len() as u32;
                format!(
                    "{} ({:.2} ms each)",
                    ms(per * n as u32),
                    per.as_secs_f64() * 1e3
                )
            }
            None => "ssh not installed".into(),
        };
        let r = median(resolve);
        println!(
            "| {name} | {lines} | {} | {} | {:.1} µs | {} | {ssh_cell} |",
            ms(median(load)),
            ms(r),
            r.as_secs_f64() * 1e6 / n as f64,
            ms(median(inventory)),
        );
        std::hint::black_box(checksum);
    }
    println!("\n{n} names, median of {rounds} rounds; `load` reads and checks the files.");
    Ok(())
}
