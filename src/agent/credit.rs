//! A job's output credit: bytes it may still send before the daemon grants more (see the flow
//! control section of [`crate::proto::agent`]). Both pumps of a job (stdout, stderr) draw on it;
//! `Credit` frames add to it.

use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

#[derive(Debug)]
pub(super) struct Credit {
    avail: Mutex<u64>,
    more: Notify,
}

impl Credit {
    pub fn new(initial: u64) -> Credit {
        Credit {
            avail: Mutex::new(initial),
            more: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.avail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add `bytes` (saturating: `u64::MAX` means no limit any more) and wake the pumps.
    pub fn grant(&self, bytes: u64) {
        {
            let mut a = self.lock();
            *a = a.saturating_add(bytes);
        }
        self.more.notify_waiters();
    }

    /// Resolves once some credit is available.
    pub async fn ready(&self) {
        loop {
            let notified = self.more.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if *self.lock() > 0 {
                return;
            }
            notified.await;
        }
    }

    /// Take up to `max` bytes of credit (possibly 0); give back what a read did not use.
    pub fn take(&self, max: usize) -> usize {
        let mut a = self.lock();
        let n = (*a).min(max as u64);
        *a -= n;
        n as usize
    }

    /// Return credit taken but not used.
    pub fn give_back(&self, n: usize) {
        if n > 0 {
            self.grant(n as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn pumps_wait_for_credit_and_wake_on_a_grant() {
        let c = Arc::new(Credit::new(10));
        assert_eq!(c.take(4), 4);
        assert_eq!(c.take(100), 6);
        assert_eq!(c.take(1), 0);
        let waiter = tokio::spawn({
            let c = Arc::clone(&c);
            async move {
                c.ready().await;
                c.take(usize::MAX)
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "no credit, no progress");
        c.grant(7);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("join");
        assert_eq!(got, 7);
        c.grant(u64::MAX);
        c.grant(5);
        assert_eq!(c.take(usize::MAX), usize::MAX, "unlimited saturates");
    }
}
