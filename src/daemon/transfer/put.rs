//! `put`: every host of a pass gets the same chunks, read once.
//!
//! A host *arrives* when its share starts, connects, looks at the remote path, then *joins*.
//! A pass starts once every host that arrived has joined (or given up), or 3 s after the
//! first one joined (latecomers make another pass, which reads the files again). The pass
//! reads each file in [`DATA_CHUNK`] pieces and queues each piece for every member in turn,
//! at most [`MEMBER_QUEUE`] ahead of the slowest: a pass holds about `MEMBER_QUEUE + 1`
//! chunks (2 MiB) whatever the size of the files or the number of hosts. A member sends them
//! on within its agent's write credit ([`crate::proto::files::PUT_WINDOW`]), so each link holds
//! at most that much more.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::plan::{human_bytes, join, FileSrc, PutPlan, What};
use super::{agentless, file_error, killed, Outcome, Progress};
use crate::daemon::link::{AgentLink, LinkError};
use crate::daemon::pool::{link_error, Conn};
use crate::model::{ErrorKind, HostError};
use crate::proto::files::{Meta, PutDir, PutLink, PutOpen, DATA_CHUNK};

/// Chunks queued per member of a pass.
pub const MEMBER_QUEUE: usize = 16;
/// A pass waits this long after its first member for the others to join.
const GATHER: Duration = Duration::from_secs(3);
/// Write streams of one host whose final answer (checksum, fsync, rename) is awaited at once.
const IN_FLIGHT: usize = 32;

/// What a pass hands its members, file by file.
#[derive(Debug, Clone)]
pub enum Item {
    /// The bytes of file `k` of the plan follow.
    Begin(usize),
    Chunk(Arc<[u8]>),
    /// All of the file was sent: its sha256.
    End(String),
    /// The file could not be read here: the pass is over.
    Failed(String),
}

#[derive(Default)]
struct State {
    /// Hosts that arrived and have neither joined nor given up.
    pending: usize,
    waiting: Vec<mpsc::Sender<Item>>,
    /// A gather timer runs for the waiting ones.
    timer: bool,
}

pub struct Feeder {
    pub plan: PutPlan,
    state: Mutex<State>,
}

/// A host counted for the next pass; dropping it without joining gives up its place.
pub struct Arrival {
    feeder: Arc<Feeder>,
    joined: bool,
}

impl Drop for Arrival {
    fn drop(&mut self) {
        if !self.joined {
            let mut s = self.feeder.lock();
            s.pending = s.pending.saturating_sub(1);
            self.feeder.maybe_start(&mut s);
        }
    }
}

impl Arrival {
    /// Join the next pass: its items arrive on the receiver.
    pub fn join(mut self) -> mpsc::Receiver<Item> {
        self.joined = true;
        let (tx, rx) = mpsc::channel(MEMBER_QUEUE);
        let feeder = self.feeder.clone();
        let mut s = feeder.lock();
        s.pending = s.pending.saturating_sub(1);
        s.waiting.push(tx);
        if !feeder.maybe_start(&mut s) && !s.timer {
            s.timer = true;
            let f = feeder.clone();
            tokio::spawn(async move {
                tokio::time::sleep(GATHER).await;
                let mut s = f.lock();
                s.timer = false;
                f.start_pass(&mut s);
            });
        }
        rx
    }
}

impl Feeder {
    pub fn new(plan: PutPlan) -> Feeder {
        Feeder {
            plan,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn arrive(self: &Arc<Self>) -> Arrival {
        self.lock().pending += 1;
        Arrival {
            feeder: self.clone(),
            joined: false,
        }
    }

    /// Start a pass when nobody else is on the way.
    fn maybe_start(self: &Arc<Self>, s: &mut State) -> bool {
        if s.pending == 0 && !s.waiting.is_empty() {
            self.start_pass(s);
            return true;
        }
        false
    }

    fn start_pass(self: &Arc<Self>, s: &mut State) {
        let members = std::mem::take(&mut s.waiting);
        if members.is_empty() {
            return;
        }
        tracing::debug!(members = members.len(), "put: a pass starts");
        tokio::spawn(pass(self.clone(), members));
    }
}

/// Hand `item` to every member, waiting on each in turn; members that left are dropped.
async fn send_all(members: &mut Vec<mpsc::Sender<Item>>, item: Item) {
    let mut i = 0;
    while i < members.len() {
        if members[i].send(item.clone()).await.is_err() {
            members.swap_remove(i);
        } else {
            i += 1;
        }
    }
}

/// Read every file of the plan once, for `members`.
async fn pass(feeder: Arc<Feeder>, mut members: Vec<mpsc::Sender<Item>>) {
    for (k, f) in feeder.plan.files.iter().enumerate() {
        if members.is_empty() {
            return;
        }
        send_all(&mut members, Item::Begin(k)).await;
        let sha = match &f.src {
            FileSrc::Bytes(b) => {
                for c in b.chunks(DATA_CHUNK) {
                    send_all(&mut members, Item::Chunk(Arc::from(c))).await;
                }
                hex::encode(Sha256::digest(b))
            }
            FileSrc::Path(p) => match read_file(p, f.size, f.mtime, &mut members).await {
                Ok(sha) => sha,
                Err(e) => {
                    let why = format!("{}: {e}", p.display());
                    send_all(&mut members, Item::Failed(why)).await;
                    return;
                }
            },
        };
        send_all(&mut members, Item::End(sha)).await;
    }
}

fn mtime_of(m: &std::fs::Metadata) -> (i64, u32) {
    use std::os::unix::fs::MetadataExt;
    (m.mtime(), m.mtime_nsec().clamp(0, 999_999_999) as u32)
}

/// Stream one local file to the members; its sha256. A file that changed since it was
/// planned (size or mtime) is refused rather than sent torn.
async fn read_file(
    path: &std::path::Path,
    size: u64,
    mtime: Option<(i64, u32)>,
    members: &mut Vec<mpsc::Sender<Item>>,
) -> Result<String, String> {
    let p = path.to_path_buf();
    let changed =
        move |m: &std::fs::Metadata| m.len() != size || mtime.is_some_and(|t| t != mtime_of(m));
    let opened = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&p)?;
        let m = f.metadata()?;
        Ok::<_, std::io::Error>((f, m))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let (mut file, m) = opened;
    if changed(&m) {
        return Err("changed since the copy started".into());
    }
    let mut hasher = Sha256::new();
    let mut sent = 0u64;
    loop {
        let r = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; DATA_CHUNK];
            let mut n = 0;
            while n < buf.len() {
                match file.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(n);
            hasher.update(&buf);
            Ok((file, hasher, buf))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reading: {e}"))?;
        let buf;
        (file, hasher, buf) = r;
        if buf.is_empty() {
            break;
        }
        sent += buf.len() as u64;
        if sent > size {
            return Err("grew while being read".into());
        }
        send_all(members, Item::Chunk(Arc::from(buf))).await;
        if members.is_empty() {
            return Err("no host is listening any more".into());
        }
    }
    let after = tokio::task::spawn_blocking(move || file.metadata())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if sent != size || changed(&after) {
        return Err("changed while being read".into());
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A link error of a file request: the agent's own errors are the file's.
pub(super) fn file_link_error(e: LinkError) -> HostError {
    match e {
        LinkError::Agent(m) => file_error(m),
        other => link_error(other),
    }
}

/// The next item of the pass (or the host was killed).
async fn next(
    rx: &mut mpsc::Receiver<Item>,
    cancel: &CancellationToken,
) -> Result<Item, HostError> {
    tokio::select! {
        i = rx.recv() => i.ok_or_else(|| HostError::new(ErrorKind::Internal, "the copy's reader stopped")),
        _ = cancel.cancelled() => Err(killed()),
    }
}

/// Where a host's copy goes: its agent, or plain exec channels.
pub(super) enum Target<'a> {
    Agent(&'a AgentLink),
    Agentless(&'a crate::daemon::ssh::SshSession),
}

impl Target<'_> {
    async fn is_dir(&self, path: &str) -> Result<Option<bool>, HostError> {
        match self {
            Target::Agent(l) => l
                .stat(path, true)
                .await
                .map(|s| s.map(|s| s.kind == crate::proto::files::FileKind::Dir))
                .map_err(file_link_error),
            Target::Agentless(s) => agentless::is_dir(s, path).await,
        }
    }

    async fn mkdir(&self, path: &str, meta: Meta) -> Result<(), HostError> {
        match self {
            Target::Agent(l) => l
                .put_dir(PutDir {
                    path: path.to_string(),
                    meta,
                })
                .await
                .map_err(file_link_error),
            Target::Agentless(s) => agentless::mkdir(s, path, &meta).await,
        }
    }

    async fn link(&self, path: &str, target: &str, meta: Meta) -> Result<(), HostError> {
        match self {
            Target::Agent(l) => l
                .put_link(PutLink {
                    path: path.to_string(),
                    target: target.to_string(),
                    meta,
                })
                .await
                .map_err(file_link_error),
            Target::Agentless(s) => agentless::symlink(s, path, target, &meta).await,
        }
    }
}

type Finish = JoinHandle<Result<(u64, String), HostError>>;

async fn settle(pending: &mut VecDeque<Finish>, keep: usize) -> Result<(), HostError> {
    while pending.len() > keep {
        let Some(h) = pending.pop_front() else { break };
        match h.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(HostError::new(ErrorKind::Internal, e.to_string())),
        }
    }
    Ok(())
}

/// One host's share of a put: join a pass and write what it brings.
pub(super) async fn host(
    feeder: &Arc<Feeder>,
    arrival: Arrival,
    conn: &Conn,
    cancel: &CancellationToken,
    progress: &mut Progress<'_>,
) -> Outcome {
    let plan = &feeder.plan;
    let target = match conn {
        Conn::Agent(l) => Target::Agent(l),
        Conn::Agentless(s) => Target::Agentless(s),
    };
    let into_dir = if plan.exact {
        false
    } else if plan.remote_is_dir() {
        match target.is_dir(&plan.remote).await? {
            Some(true) => {}
            Some(false) => {
                return Err(file_error(format!(
                    "{}: not a directory (several sources, or a trailing /, need one)",
                    plan.remote
                )))
            }
            None => {
                let meta = Meta {
                    mode: 0o755,
                    mtime: None,
                    owner: None,
                };
                target
                    .mkdir(plan.remote.trim_end_matches('/'), meta)
                    .await?;
            }
        }
        true
    } else {
        target.is_dir(&plan.remote).await? == Some(true)
    };
    let mut rx = arrival.join();
    progress.set_total(plan.total);
    let mut pending: VecDeque<Finish> = VecDeque::new();
    let mut last_written: Option<(String, u64, String)> = None;
    let mut dests = Vec::new();
    let r = async {
        for (i, source) in plan.sources.iter().enumerate() {
            let dest = plan.dest(i, into_dir);
            dests.push(dest.clone());
            for e in &source.entries {
                let path = join(&dest, &e.rel);
                match &e.what {
                    What::Dir => {
                        // Writable for us while its contents go in; its own mode comes last.
                        let meta = Meta {
                            mode: e.meta.mode | 0o700,
                            mtime: None,
                            owner: e.meta.owner,
                        };
                        target.mkdir(&path, meta).await?;
                    }
                    What::DirEnd => {
                        settle(&mut pending, 0).await?;
                        target.mkdir(&path, e.meta.clone()).await?;
                    }
                    What::Link(t) => target.link(&path, t, e.meta.clone()).await?,
                    What::File(k) => {
                        let size = plan.files.get(*k).map(|f| f.size).unwrap_or(0);
                        match next(&mut rx, cancel).await? {
                            Item::Begin(b) if b == *k => {}
                            other => {
                                return Err(HostError::new(
                                    ErrorKind::Internal,
                                    format!("put: expected file {k}, got {other:?}"),
                                ))
                            }
                        }
                        let f = match &target {
                            Target::Agent(link) => {
                                send_agent(
                                    link,
                                    &path,
                                    e.meta.clone(),
                                    size,
                                    &mut rx,
                                    cancel,
                                    progress,
                                )
                                .await?
                            }
                            Target::Agentless(s) => {
                                let w = agentless::put_file(
                                    s, &path, &e.meta, size, &mut rx, cancel, progress,
                                )
                                .await?;
                                tokio::spawn(async move { Ok(w) })
                            }
                        };
                        pending.push_back(f);
                        settle(&mut pending, IN_FLIGHT).await?;
                        last_written = Some((path, size, String::new()));
                    }
                }
            }
        }
        while let Some(h) = pending.pop_front() {
            let w = h
                .await
                .map_err(|e| HostError::new(ErrorKind::Internal, e.to_string()))??;
            if let Some(l) = last_written.as_mut() {
                l.2 = w.1;
            }
        }
        Ok::<(), HostError>(())
    }
    .await;
    drop(rx);
    r?;
    let files = plan.files.len();
    Ok(match (files, plan.dirs, plan.links, last_written) {
        (1, 0, 0, Some((path, size, sha))) => {
            format!("wrote {path} ({}, sha256 {sha})", human_bytes(size))
        }
        _ => format!(
            "wrote {files} file(s), {} directory(ies), {} symlink(s) ({}) to {}",
            plan.dirs,
            plan.links,
            human_bytes(plan.total),
            dests.join(" ")
        ),
    })
}

/// Stream one file to the agent; returns the task awaiting its final answer.
async fn send_agent(
    link: &AgentLink,
    path: &str,
    meta: Meta,
    size: u64,
    rx: &mut mpsc::Receiver<Item>,
    cancel: &CancellationToken,
    progress: &mut Progress<'_>,
) -> Result<Finish, HostError> {
    let open = PutOpen {
        path: path.to_string(),
        meta,
        size,
    };
    let mut stream = link.put_open(open).await.map_err(file_link_error)?;
    loop {
        let item = match next(rx, cancel).await {
            Ok(i) => i,
            Err(e) => {
                stream.abort().await;
                return Err(e);
            }
        };
        match item {
            Item::Chunk(c) => {
                let sent = tokio::select! {
                    r = stream.send(&c) => r,
                    _ = cancel.cancelled() => {
                        stream.abort().await;
                        return Err(killed());
                    }
                };
                sent.map_err(file_link_error)?;
                progress.add(c.len() as u64);
            }
            Item::End(sha) => {
                return Ok(tokio::spawn(async move {
                    stream.finish(sha).await.map_err(file_link_error)
                }));
            }
            Item::Failed(why) => {
                stream.abort().await;
                return Err(HostError::new(
                    ErrorKind::Internal,
                    format!("reading {why}"),
                ));
            }
            Item::Begin(k) => {
                stream.abort().await;
                return Err(HostError::new(
                    ErrorKind::Internal,
                    format!("put: file {k} began before the last one ended"),
                ));
            }
        }
    }
}
