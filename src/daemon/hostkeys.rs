//! One question per run (or per heist) about unknown host keys. A run or heist started by an
//! interactive client (`RunRequest::ask_host_keys`, `HeistRequest::ask_host_keys`) does not
//! fail the hosts whose keys no known_hosts records: each waits here. A heist's question is
//! shared by all its step runs: its hosts meet it at their first step, and a key refused once
//! is refused again without asking at the later steps. Once no host of the run is still connecting (or a bounded window after
//! the first waiter), the waiting keys go out as one `Event::HostKeys`, grouped by
//! fingerprint with their hosts; any client following the run answers with the groups it
//! accepts. Accepted hosts record their key and connect again; the others are refused with
//! the `hostkey` verdict. A changed or revoked key never comes here (refused at once).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;

use super::registry::Tracked;
use crate::proto::daemon::{Event, KeyGroup};

/// How long hosts wait for an answer before they are refused.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// A heist's own asks (failed steps) count from 1; its host key questions count from here,
/// so the two never share an id in the heist's list of open asks.
pub const HEIST_FIRST_ASK: u64 = 1 << 32;

/// What an open host key question is listed under among a run's open asks.
pub const ASK_LABEL: &str = "host keys";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An unknown key a host presented, as the question shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// The host it is listed under: the run's host, or the jump host whose key it is.
    pub shown_as: String,
    pub key_type: String,
    pub fingerprint: String,
    /// The visual host key (`ssh-keygen -lv`).
    pub randomart: String,
}

/// A host waiting for the answer about its key.
struct Waiter {
    host: String,
    key_type: String,
    fingerprint: String,
    randomart: String,
    answer: oneshot::Sender<bool>,
}

/// One group of an open question: its key, as its hosts are shown, and their waiters.
struct Asked {
    hosts: Vec<String>,
    fingerprint: String,
    answers: Vec<oneshot::Sender<bool>>,
}

#[derive(Default)]
struct State {
    /// The hosts expected to connect: the run's, or a heist's current wave.
    connecting: HashSet<String>,
    /// Hosts not connecting now: connected, failed, or waiting for an answer.
    idle: HashSet<String>,
    /// Waiting, not yet asked about.
    batch: Vec<Waiter>,
    /// The batch a window timer runs for (batches are counted by `next_ask`).
    timer: Option<u64>,
    next_ask: u64,
    /// Asked, unanswered: ask id → its groups.
    open: HashMap<u64, Vec<Asked>>,
    /// The window ended before the question had a log to go to: ask once it has.
    due: bool,
    /// Keys refused (shown-as host, fingerprint): a heist's later steps are refused at once.
    refused: HashSet<(String, String)>,
}

/// One run's (or heist's) question about unknown host keys.
pub struct Question {
    /// The longest wait for the first waiter's fellows before asking anyway.
    window: Duration,
    /// Where the question goes: the run's (or heist's) log, once [`Question::attach`]ed. Its
    /// id is the question's: what clients follow and answer by (a run's number, a heist's id).
    tracked: OnceLock<Arc<Tracked>>,
    state: Mutex<State>,
}

impl Question {
    /// For a run (or heist) of `hosts` (names); its asks are numbered from `first_ask`. `window`: how long the first unknown key waits for the other hosts to
    /// finish connecting before the question goes out anyway. It is asked once
    /// [`Question::attach`] gives it the run (or heist) its events go to.
    pub fn new(hosts: Vec<String>, window: Duration, first_ask: u64) -> Question {
        Question {
            window,
            tracked: OnceLock::new(),
            state: Mutex::new(State {
                next_ask: first_ask,
                connecting: hosts.into_iter().collect(),
                ..State::default()
            }),
        }
    }

    /// The id clients answer by ("" until attached).
    pub fn run(&self) -> &str {
        self.tracked.get().map_or("", |t| t.id.as_str())
    }

    /// The question's events go to `tracked`'s log (and its asks to its open asks); what
    /// was due meanwhile is asked now.
    pub fn attach(&self, tracked: Arc<Tracked>) {
        if self.tracked.set(tracked).is_err() {
            tracing::error!(run = %self.run(), "host key question attached twice");
        }
        let mut s = lock(&self.state);
        if std::mem::take(&mut s.due) {
            self.flush(&mut s);
        } else {
            self.flush_if_ready(&mut s);
        }
    }

    /// `host` is connected, or failed: it is no longer connecting.
    pub fn settled(self: &Arc<Self>, host: &str) {
        let mut s = lock(&self.state);
        s.idle.insert(host.to_string());
        self.flush_if_ready(&mut s);
    }

    /// `host` met the unknown key `key`: wait for the operator's answer (false: refused, or no
    /// answer within [`ANSWER_TIMEOUT`]). Accepted, the host connects again (it counts as
    /// connecting until it settles).
    pub async fn ask(self: &Arc<Self>, host: &str, key: Presented) -> bool {
        let (tx, rx) = oneshot::channel();
        {
            let mut s = lock(&self.state);
            s.idle.insert(host.to_string());
            if s.refused
                .contains(&(key.shown_as.clone(), key.fingerprint.clone()))
            {
                self.flush_if_ready(&mut s);
                return false;
            }
            s.batch.push(Waiter {
                host: key.shown_as,
                key_type: key.key_type,
                fingerprint: key.fingerprint,
                randomart: key.randomart,
                answer: tx,
            });
            if s.timer != Some(s.next_ask) {
                let batch = s.next_ask;
                s.timer = Some(batch);
                let (q, window) = (self.clone(), self.window);
                tokio::spawn(async move {
                    tokio::time::sleep(window).await;
                    let mut s = lock(&q.state);
                    if s.next_ask == batch {
                        if q.tracked.get().is_none() {
                            s.due = true;
                        }
                        q.flush(&mut s);
                    }
                });
            }
            self.flush_if_ready(&mut s);
        }
        let accepted = matches!(tokio::time::timeout(ANSWER_TIMEOUT, rx).await, Ok(Ok(true)));
        if accepted {
            lock(&self.state).idle.remove(host);
        }
        accepted
    }

    /// A heist's next wave starts: these hosts connect now (the others are not waited for).
    pub fn wave(&self, hosts: &[String]) {
        let mut s = lock(&self.state);
        s.connecting = hosts.iter().cloned().collect();
        self.flush_if_ready(&mut s);
    }

    /// Asked once none of the hosts expected to connect is still connecting.
    fn flush_if_ready(&self, s: &mut State) {
        if s.connecting.iter().all(|h| s.idle.contains(h)) {
            self.flush(s);
        }
    }

    /// Ask about the batch, if any: one event, one group per key, sorted by first host.
    /// Not before the question has a log to go to.
    fn flush(&self, s: &mut State) {
        let Some(tracked) = self.tracked.get() else {
            return;
        };
        if s.batch.is_empty() {
            return;
        }
        // Few groups (one per distinct key): a linear search is all it takes.
        let mut paired: Vec<(KeyGroup, Vec<oneshot::Sender<bool>>)> = Vec::new();
        for w in s.batch.drain(..) {
            let at = paired
                .iter()
                .position(|(g, _)| g.key_type == w.key_type && g.fingerprint == w.fingerprint);
            let i = match at {
                Some(i) => i,
                None => {
                    paired.push((
                        KeyGroup {
                            key_type: w.key_type,
                            fingerprint: w.fingerprint,
                            hosts: Vec::new(),
                            randomart: w.randomart,
                        },
                        Vec::new(),
                    ));
                    paired.len() - 1
                }
            };
            let (g, txs) = &mut paired[i];
            if !g.hosts.contains(&w.host) {
                g.hosts.push(w.host);
            }
            txs.push(w.answer);
        }
        let ask_id = s.next_ask;
        s.next_ask += 1;
        for (g, _) in &mut paired {
            g.hosts.sort();
        }
        // Sorted by their first host: the same fleet asks in the same order every time.
        paired.sort_by(|a, b| a.0.hosts.first().cmp(&b.0.hosts.first()));
        let (events, senders): (Vec<KeyGroup>, Vec<Asked>) = paired
            .into_iter()
            .map(|(g, answers)| {
                let asked = Asked {
                    hosts: g.hosts.clone(),
                    fingerprint: g.fingerprint.clone(),
                    answers,
                };
                (g, asked)
            })
            .unzip();
        tracing::info!(
            run = %tracked.id,
            ask_id,
            "asking about {} unknown host key(s): {}",
            events.len(),
            events
                .iter()
                .map(KeyGroup::line)
                .collect::<Vec<_>>()
                .join("; ")
        );
        s.open.insert(ask_id, senders);
        tracked.ask_opened(ask_id, ASK_LABEL);
        tracked.log.push(Event::HostKeys {
            run: tracked.id.clone(),
            ask_id,
            groups: events,
        });
    }

    /// The operator's answer: the accepted groups by index (others refused). Err when the
    /// question is not open (answered already) or an index names no group.
    pub fn answer(&self, ask_id: u64, accept: &[u32], who: &str) -> Result<(), String> {
        let groups = {
            let mut s = lock(&self.state);
            let n = s
                .open
                .get(&ask_id)
                .ok_or_else(|| {
                    format!(
                        "{} has no open host key question {ask_id} (answered already?)",
                        self.run()
                    )
                })?
                .len();
            if let Some(bad) = accept.iter().find(|i| **i as usize >= n) {
                return Err(format!(
                    "host key question {ask_id} of {} has {n} group(s); no group {bad}",
                    self.run()
                ));
            }
            let groups = s.open.remove(&ask_id).unwrap_or_default();
            for (i, g) in groups.iter().enumerate() {
                if !accept.contains(&(i as u32)) {
                    for h in &g.hosts {
                        s.refused.insert((h.clone(), g.fingerprint.clone()));
                    }
                }
            }
            groups
        };
        let mut accepted: Vec<u32> = accept.to_vec();
        accepted.sort_unstable();
        accepted.dedup();
        for (i, g) in groups.into_iter().enumerate() {
            let yes = accepted.contains(&(i as u32));
            for tx in g.answers {
                let _ = tx.send(yes);
            }
        }
        // Open questions were asked: the log is there.
        let Some(tracked) = self.tracked.get() else {
            return Ok(());
        };
        tracked.ask_closed(ask_id);
        tracked.log.push(Event::HostKeysAnswered {
            run: tracked.id.clone(),
            ask_id,
            accepted,
            who: who.to_string(),
        });
        Ok(())
    }

    /// The run is over: close what is still open (its hosts are gone).
    pub fn close(&self) {
        let open: Vec<u64> = lock(&self.state).open.keys().copied().collect();
        for ask_id in open {
            let _ = self.answer(ask_id, &[], "nobody (the run ended)");
        }
    }
}

/// The questions of the runs and heists in flight, by the id clients follow.
#[derive(Default)]
pub struct Questions(Mutex<HashMap<String, Arc<Question>>>);

impl Questions {
    pub fn add(&self, q: Arc<Question>) {
        lock(&self.0).insert(q.run().to_string(), q);
    }

    pub fn get(&self, run: &str) -> Option<Arc<Question>> {
        lock(&self.0).get(run).cloned()
    }

    pub fn remove(&self, run: &str) {
        if let Some(q) = lock(&self.0).remove(run) {
            q.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::registry::Control;
    use crate::daemon::runlog::{Entry, RunLog};
    use crate::proto::daemon::RunKind;

    fn names(hosts: &[&str]) -> Vec<String> {
        hosts.iter().map(|h| h.to_string()).collect()
    }

    fn question(hosts: &[&str], window: Duration) -> Arc<Question> {
        let log = Arc::new(RunLog::new(std::env::temp_dir()));
        let t = Arc::new(Tracked::new(
            "7".into(),
            RunKind::Run,
            "true".into(),
            "me".into(),
            hosts.len() as u32,
            false,
            log,
            Control::Run { run_id: 7 },
        ));
        let q = Arc::new(Question::new(names(hosts), window, 0));
        q.attach(t);
        q
    }

    fn key(shown_as: &str, fp: &str) -> Presented {
        Presented {
            shown_as: shown_as.into(),
            key_type: "ssh-ed25519".into(),
            fingerprint: fp.into(),
            randomart: String::new(),
        }
    }

    /// The questions asked so far: (ask id, groups).
    fn asked(q: &Question) -> Vec<(u64, Vec<KeyGroup>)> {
        let Some(t) = q.tracked.get() else {
            return Vec::new();
        };
        t.log
            .entries(0, 100)
            .iter()
            .filter_map(|e| match &**e {
                Entry::Run(Event::HostKeys { ask_id, groups, .. }) => {
                    Some((*ask_id, groups.clone()))
                }
                _ => None,
            })
            .collect()
    }

    async fn until_asked(q: &Question, n: usize) -> Vec<(u64, Vec<KeyGroup>)> {
        for _ in 0..1000 {
            let a = asked(q);
            if a.len() >= n {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no question {n} after 5 s: {:?}", asked(q));
    }

    #[tokio::test]
    async fn one_question_once_no_host_is_connecting_groups_by_key() {
        // A long window: only "nobody is connecting" can send the question in time.
        let q = question(&["w1", "w2", "w3", "db"], Duration::from_secs(3600));
        let mut waiting = Vec::new();
        for (h, fp) in [("w2", "SHA256:a"), ("w1", "SHA256:a"), ("db", "SHA256:b")] {
            let q2 = q.clone();
            waiting.push(tokio::spawn(async move { q2.ask(h, key(h, fp)).await }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(asked(&q).is_empty(), "asked while w3 still connects");
        q.settled("w3");
        let a = until_asked(&q, 1).await;
        assert_eq!(a.len(), 1);
        let groups = &a[0].1;
        assert_eq!(groups.len(), 2, "{groups:?}");
        // Sorted by first host: db's key, then w1 and w2's.
        assert_eq!(groups[0].hosts, ["db"]);
        assert_eq!(groups[1].hosts, ["w1", "w2"]);
        assert_eq!(groups[1].line(), "ssh-ed25519 SHA256:a \u{2014} w[1-2] (2)");
        assert!(q.answer(a[0].0, &[2], "me").is_err(), "no group 2");
        q.answer(a[0].0, &[1], "me").expect("answered");
        assert!(q.answer(a[0].0, &[1], "me").is_err(), "answered already");
        let got: Vec<bool> = futures_join(waiting).await;
        assert_eq!(got, [true, true, false], "w2, w1 accepted; db refused");
        let t = q.tracked.get().expect("attached");
        assert_eq!(t.status().asks.len(), 0, "closed");
    }

    #[tokio::test]
    async fn the_window_bounds_the_wait_for_hosts_still_connecting() {
        let q = question(&["a", "b", "c"], Duration::from_millis(200));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.ask("a", key("a", "SHA256:a")).await });
        // b and c never settle: the question goes out once the window is over.
        let a = until_asked(&q, 1).await;
        assert_eq!(a[0].1[0].hosts, ["a"]);
        q.close();
        assert!(!waiter.await.expect("task"), "the run ended: refused");
    }

    #[tokio::test]
    async fn a_heist_asks_once_attached_and_a_refused_key_is_not_asked_again() {
        let t = question(&["x"], Duration::from_secs(1))
            .tracked
            .get()
            .cloned();
        let t = t.expect("a log");
        let q = Arc::new(Question::new(
            names(&["a", "b"]),
            Duration::from_millis(50),
            1 << 32,
        ));
        let (q1, q2) = (q.clone(), q.clone());
        let a = tokio::spawn(async move { q1.ask("a", key("a", "SHA256:a")).await });
        let b = tokio::spawn(async move { q2.ask("b", key("b", "SHA256:a")).await });
        // Both wait and the window is over, but there is no log yet: nothing is asked.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(asked(&q).is_empty());
        q.attach(t);
        let a1 = until_asked(&q, 1).await;
        assert_eq!(a1.len(), 1);
        assert_eq!(a1[0].0, 1 << 32, "heist host key asks count from 2^32");
        assert_eq!(a1[0].1[0].hosts, ["a", "b"]);
        q.answer(a1[0].0, &[], "me").expect("answered");
        assert_eq!(futures_join(vec![a, b]).await, [false, false]);
        // The next step meets the same keys: refused at once, no second question.
        assert!(!q.ask("a", key("a", "SHA256:a")).await);
        assert!(!q.ask("b", key("b", "SHA256:a")).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(asked(&q).len(), 1, "asked once");
    }

    #[tokio::test]
    async fn a_heist_s_wave_is_asked_about_once_its_own_hosts_wait() {
        // A long window: only "nobody of the wave is connecting" can send the question.
        let q = question(&["a", "b", "c", "d"], Duration::from_secs(3600));
        q.wave(&names(&["a", "b"]));
        let (q1, q2) = (q.clone(), q.clone());
        let a = tokio::spawn(async move { q1.ask("a", key("a", "SHA256:k")).await });
        let b = tokio::spawn(async move { q2.ask("b", key("b", "SHA256:k")).await });
        let first = until_asked(&q, 1).await;
        assert_eq!(
            first[0].1[0].hosts,
            ["a", "b"],
            "c and d are not waited for"
        );
        q.answer(first[0].0, &[0], "me").expect("answered");
        assert_eq!(futures_join(vec![a, b]).await, [true, true]);
        q.wave(&names(&["c", "d"]));
        let q3 = q.clone();
        let c = tokio::spawn(async move { q3.ask("c", key("c", "SHA256:k")).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(asked(&q).len(), 1, "d still connects");
        q.settled("d");
        let second = until_asked(&q, 2).await;
        assert_eq!(second[1].1[0].hosts, ["c"]);
        q.close();
        assert!(!c.await.expect("task"));
    }

    async fn futures_join(tasks: Vec<tokio::task::JoinHandle<bool>>) -> Vec<bool> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    }
}
