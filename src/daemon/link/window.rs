//! Send credit the agent grants the daemon (protocol 3): bytes of a write stream's `PutData`
//! or of a job's `Input` the daemon may still send. The agent grants more with `Credit` frames
//! as it writes them out; the window closes when the request ends or the link dies.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

#[derive(Debug)]
struct State {
    avail: u64,
    closed: bool,
}

#[derive(Debug)]
pub struct Window {
    state: Mutex<State>,
    more: Notify,
}

impl Window {
    pub fn new(initial: u64) -> Window {
        Window {
            state: Mutex::new(State {
                avail: initial,
                closed: false,
            }),
            more: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn grant(&self, bytes: u64) {
        {
            let mut s = self.lock();
            s.avail = s.avail.saturating_add(bytes);
        }
        self.more.notify_waiters();
    }

    /// No more credit will come (the request ended, the link died): senders stop waiting.
    pub fn close(&self) {
        self.lock().closed = true;
        self.more.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Take between 1 and `want` bytes of credit, waiting while there is none; None once
    /// the window is closed.
    pub async fn take(&self, want: u64) -> Option<u64> {
        loop {
            let notified = self.more.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if s.closed {
                    return None;
                }
                if s.avail > 0 {
                    let n = s.avail.min(want.max(1));
                    s.avail -= n;
                    return Some(n);
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_for_a_grant_and_stops_when_closed() {
        let w = Arc::new(Window::new(5));
        assert_eq!(w.take(3).await, Some(3));
        assert_eq!(w.take(10).await, Some(2));
        let waiter = tokio::spawn({
            let w = Arc::clone(&w);
            async move { w.take(10).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "no credit, no progress");
        w.grant(4);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("join");
        assert_eq!(got, Some(4));
        let waiter = tokio::spawn({
            let w = Arc::clone(&w);
            async move { w.take(1).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        w.close();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("join");
        assert_eq!(got, None);
    }
}
