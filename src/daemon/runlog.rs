//! A run's (or a heist's) events in the daemon, in order, for every client that follows it:
//! the one that started it, `crew attach`, consoles, the API. Followers read at their own pace
//! through a [`Cursor`]; the run never waits for them.
//!
//! Memory stays bounded whatever a run prints: a plain run's output chunks keep their bytes
//! only while they are among the newest [`TAIL_BYTES`] of the run and already in the run
//! store's files; older chunks keep only where they are on disk (host, stream, offset,
//! length), and a follower that reaches one reads its bytes back from the file. A heist's
//! live output is kept the same way but is not re-read: a follower that falls that far behind
//! skips it (each step's result, journaled, carries its output).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;

use crate::heist::events::HeistEvent;
use crate::model::Stream;
use crate::proto::daemon::Event;
use crate::store::{self, Written};

/// Output bytes of one run held in memory for followers.
pub const TAIL_BYTES: usize = 4 << 20;

/// One entry of a log.
pub enum Entry {
    /// A plain run's event other than output.
    Run(Event),
    /// A chunk of a plain run's output.
    Output(OutputEntry),
    /// A heist's event; live output may have lost its bytes (see the module docs).
    Heist(HeistEntry),
}

pub struct OutputEntry {
    pub run_id: u64,
    pub host: Arc<str>,
    pub stream: Stream,
    /// Offset of the chunk in the host's stream file, and its length.
    pub offset: u64,
    pub len: usize,
    data: Mutex<Option<Bytes>>,
    written: Arc<Written>,
}

pub struct HeistEntry {
    pub event: HeistEvent,
    /// For `Output` events: false once its bytes were dropped from memory.
    kept: Mutex<bool>,
}

impl HeistEntry {
    /// The event, or None for live output no longer held.
    pub fn event(&self) -> Option<&HeistEvent> {
        if matches!(self.event, HeistEvent::Output { .. }) && !*lock(&self.kept) {
            return None;
        }
        Some(&self.event)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl OutputEntry {
    /// The chunk's bytes: from memory, else read back from the run store.
    pub async fn bytes(&self, dir: &std::path::Path) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.append_to(dir, &mut out).await?;
        Ok(out)
    }

    /// Append the chunk's bytes to `out` (from memory, else read back from the run store).
    pub async fn append_to(&self, dir: &std::path::Path, out: &mut Vec<u8>) -> std::io::Result<()> {
        let held = lock(&self.data).clone();
        if let Some(d) = held {
            out.extend_from_slice(&d);
            return Ok(());
        }
        let (dir, host, stream, offset, len) = (
            dir.to_path_buf(),
            self.host.to_string(),
            self.stream,
            self.offset,
            self.len,
        );
        let data = tokio::task::spawn_blocking(move || {
            store::read_output(&dir, &host, stream, offset, len)
        })
        .await
        .map_err(std::io::Error::other)??;
        if out.is_empty() {
            *out = data;
        } else {
            out.extend_from_slice(&data);
        }
        Ok(())
    }

    fn on_disk(&self) -> bool {
        self.written.get(self.stream) >= self.offset + self.len as u64
    }
}

struct Inner {
    entries: Vec<Arc<Entry>>,
    /// Indices of entries whose bytes are held, oldest first, and their total size.
    held: VecDeque<usize>,
    held_bytes: usize,
    done: bool,
}

/// The log of one run or heist.
pub struct RunLog {
    /// The run's directory in the store (where output is read back from).
    pub dir: PathBuf,
    inner: Mutex<Inner>,
    len: watch::Sender<usize>,
    tail_bytes: usize,
}

impl RunLog {
    pub fn new(dir: PathBuf) -> RunLog {
        RunLog::with_tail(dir, TAIL_BYTES)
    }

    pub fn with_tail(dir: PathBuf, tail_bytes: usize) -> RunLog {
        RunLog {
            dir,
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                held: VecDeque::new(),
                held_bytes: 0,
                done: false,
            }),
            len: watch::Sender::new(0),
            tail_bytes,
        }
    }

    fn push_entry(&self, entry: Entry, bytes: usize) {
        let n = {
            let mut inner = lock(&self.inner);
            if inner.done {
                tracing::warn!("an event after the end of a run's log was dropped");
                return;
            }
            let i = inner.entries.len();
            inner.entries.push(Arc::new(entry));
            if bytes > 0 {
                inner.held.push_back(i);
                inner.held_bytes += bytes;
            }
            // Also when nothing was added: chunks the writer has since put on disk may go.
            self.evict(&mut inner);
            inner.entries.len()
        };
        self.len.send_replace(n);
    }

    /// Drop the bytes of the oldest chunks while more than the tail is held and they can be
    /// read back (plain output already in its file; heist output at once).
    fn evict(&self, inner: &mut Inner) {
        while inner.held_bytes > self.tail_bytes {
            let Some(&i) = inner.held.front() else { break };
            let Some(entry) = inner.entries.get(i).cloned() else {
                break;
            };
            let freed = match &*entry {
                Entry::Output(o) => {
                    if !o.on_disk() {
                        break; // the writer is behind: keep it until the file has it
                    }
                    *lock(&o.data) = None;
                    o.len
                }
                Entry::Heist(h) => {
                    *lock(&h.kept) = false;
                    heist_output_len(&h.event)
                }
                Entry::Run(_) => 0,
            };
            inner.held.pop_front();
            inner.held_bytes = inner.held_bytes.saturating_sub(freed);
        }
    }

    /// A plain run's event (not output).
    pub fn push(&self, ev: Event) {
        self.push_entry(Entry::Run(ev), 0);
    }

    /// A plain run's output chunk, at `offset` of the host's stream file.
    #[allow(clippy::too_many_arguments)]
    pub fn push_output(
        &self,
        run_id: u64,
        host: Arc<str>,
        stream: Stream,
        offset: u64,
        data: Bytes,
        written: Arc<Written>,
    ) {
        let len = data.len();
        let entry = Entry::Output(OutputEntry {
            run_id,
            host,
            stream,
            offset,
            len,
            data: Mutex::new(Some(data)),
            written,
        });
        self.push_entry(entry, len);
    }

    /// A heist's event.
    pub fn push_heist(&self, event: HeistEvent) {
        let bytes = heist_output_len(&event);
        self.push_entry(
            Entry::Heist(HeistEntry {
                event,
                kept: Mutex::new(true),
            }),
            bytes,
        );
    }

    /// No more events: followers end once they have read them all. A plain run's output is
    /// all in its files by now: its bytes leave memory (a follower still behind reads them
    /// back), so the finished runs the daemon keeps listed cost no output memory.
    pub fn close(&self) {
        let n = {
            let mut inner = lock(&self.inner);
            inner.done = true;
            let Inner {
                entries,
                held,
                held_bytes,
                ..
            } = &mut *inner;
            held.retain(|&i| {
                let Some(Entry::Output(o)) = entries.get(i).map(|e| &**e) else {
                    return true;
                };
                if !o.on_disk() {
                    return true;
                }
                *lock(&o.data) = None;
                *held_bytes = held_bytes.saturating_sub(o.len);
                false
            });
            inner.entries.len()
        };
        // Wake followers even when nothing was added.
        self.len.send_modify(|v| *v = n);
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.inner).done
    }

    /// Number of entries so far.
    pub fn len(&self) -> usize {
        lock(&self.inner).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `max` entries from `from`, as they are now (no waiting).
    pub fn entries(&self, from: usize, max: usize) -> Vec<Arc<Entry>> {
        let inner = lock(&self.inner);
        let end = inner.entries.len().min(from.saturating_add(max));
        inner
            .entries
            .get(from..end)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// Bytes of output held in memory now.
    pub fn held_bytes(&self) -> usize {
        lock(&self.inner).held_bytes
    }

    /// A follower from the first entry.
    pub fn follow(self: &Arc<Self>) -> Cursor {
        self.follow_from(0)
    }

    /// A follower from entry `next` (an API client resuming after the last one it saw).
    pub fn follow_from(self: &Arc<Self>, next: usize) -> Cursor {
        Cursor {
            log: self.clone(),
            next,
            rx: self.len.subscribe(),
        }
    }
}

fn heist_output_len(ev: &HeistEvent) -> usize {
    match ev {
        HeistEvent::Output { data, .. } => data.len(),
        _ => 0,
    }
}

/// A follower's place in a log.
pub struct Cursor {
    log: Arc<RunLog>,
    next: usize,
    rx: watch::Receiver<usize>,
}

impl Cursor {
    /// Up to `max` entries after the ones already read, waiting for the run when there are
    /// none yet; empty once the log is closed and read to its end.
    pub async fn next_batch(&mut self, max: usize) -> Vec<Arc<Entry>> {
        loop {
            {
                let inner = lock(&self.log.inner);
                if self.next < inner.entries.len() {
                    let end = inner.entries.len().min(self.next + max.max(1));
                    let batch = inner.entries[self.next..end].to_vec();
                    self.next = end;
                    return batch;
                }
                if inner.done {
                    return Vec::new();
                }
            }
            if self.rx.changed().await.is_err() {
                return Vec::new();
            }
        }
    }

    pub fn log(&self) -> &Arc<RunLog> {
        &self.log
    }

    /// The index of the next entry this cursor reads.
    pub fn position(&self) -> usize {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::daemon::HostEvent;

    #[tokio::test]
    async fn followers_see_everything_in_order_and_old_output_comes_back_from_disk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join(store::META_FILE), "{}").expect("meta");
        let spool = store::RunSpool::start(tmp.path(), &["h".to_string()]);
        let mut host = spool.host(0, "h");
        let log = Arc::new(RunLog::with_tail(tmp.path().to_path_buf(), 10));
        let mut early = log.follow();
        log.push(Event::RunStarted {
            run_id: 1,
            hosts: vec!["h".into()],
        });
        let mut expect = Vec::new();
        for i in 0..20u8 {
            let data = Bytes::from(vec![b'a' + i; 4]);
            expect.extend_from_slice(&data);
            let off = host.output(Stream::Stdout, data.clone()).await;
            log.push_output(
                1,
                Arc::from("h"),
                Stream::Stdout,
                off,
                data,
                host.written().clone(),
            );
        }
        // Wait until the writer has everything, then one more push evicts down to the tail.
        for _ in 0..500 {
            if host.written().get(Stream::Stdout) == 80 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        log.push(Event::Host {
            run_id: 1,
            host: "h".into(),
            event: HostEvent::Started {
                pid: 1,
                agentless: false,
            },
        });
        assert!(log.held_bytes() <= 10, "held {}", log.held_bytes());
        log.close();
        assert_eq!(
            log.held_bytes(),
            0,
            "a closed run's output on disk stays in memory"
        );
        for cursor in [&mut early, &mut log.follow()] {
            let mut got = Vec::new();
            let mut n = 0;
            loop {
                let batch = cursor.next_batch(7).await;
                if batch.is_empty() {
                    break;
                }
                for e in batch {
                    n += 1;
                    if let Entry::Output(o) = &*e {
                        got.extend(o.bytes(tmp.path()).await.expect("bytes"));
                    }
                }
            }
            assert_eq!(n, 22);
            assert_eq!(got, expect);
        }
        host.done(&store::HostRecord::new("h")).await.expect("done");
        spool.finish().await.expect("finish");
    }
}
