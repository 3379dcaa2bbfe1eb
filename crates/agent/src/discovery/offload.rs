//! `/proc` reads that a traced process can make block, kept off the reader
//! thread.
//!
//! `/proc/PID/environ` is read through the process's own memory
//! (`access_remote_vm`): a process that maps a file of a FUSE mount whose
//! daemon never answers over its environment strings holds the reading
//! thread in the kernel for as long as it likes. Such a read runs on a
//! helper thread; the reader waits for it at most `READ_TIMEOUT`, then goes
//! on without it (the process is named without its `OTEL_*` variables,
//! counted) and abandons the helper to its read. At most `MAX_STUCK`
//! helpers may be stuck at once; past that such reads are not attempted
//! (counted) until one returns. The other reads on the reader thread
//! (`exe`, `stat`, `fd`, `net/tcp`) do not touch the process's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

use crate::selfmon::{ReasonLabel, SelfMetrics};

/// Longest the reader waits for one read: an environment is a few KiB of
/// memory already resident, read in microseconds.
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Helpers left blocked in a read at once (each is one thread; it ends when
/// its read returns, e.g. when the process exits or its FUSE daemon dies).
pub const MAX_STUCK: usize = 8;

type ReadFn = fn(u32) -> Option<Vec<u8>>;

struct Job {
    pid: u32,
    reply: SyncSender<Option<Vec<u8>>>,
}

/// Runs one kind of read (`read`) on a helper thread with a deadline.
pub struct Offloaded {
    read: ReadFn,
    /// The current helper (None: none yet, or the last one was abandoned).
    tx: Option<SyncSender<Job>>,
    /// Helpers abandoned and still inside their read.
    stuck: Arc<AtomicUsize>,
    timeout: Duration,
    metrics: SelfMetrics,
}

impl Offloaded {
    pub fn new(read: ReadFn, metrics: SelfMetrics) -> Self {
        Offloaded {
            read,
            tx: None,
            stuck: Arc::new(AtomicUsize::new(0)),
            timeout: READ_TIMEOUT,
            metrics,
        }
    }

    #[cfg(test)]
    fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn abandoned(&self, reason: &'static str) {
        self.metrics
            .proc_reads_abandoned
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    fn helper(&mut self) -> Option<SyncSender<Job>> {
        if let Some(tx) = &self.tx {
            return Some(tx.clone());
        }
        if self.stuck.load(Ordering::Relaxed) >= MAX_STUCK {
            return None;
        }
        // One job at a time: the reader waits for each answer.
        let (tx, rx) = sync_channel::<Job>(1);
        let (read, stuck) = (self.read, self.stuck.clone());
        std::thread::Builder::new()
            .name("proc-read".into())
            .spawn(move || helper_loop(&rx, read, &stuck))
            .ok()?;
        self.tx = Some(tx.clone());
        Some(tx)
    }

    /// `read(pid)` on the helper, or None when it did not answer in time
    /// (or could not be asked).
    pub fn read(&mut self, pid: u32) -> Option<Vec<u8>> {
        let Some(tx) = self.helper() else {
            self.abandoned("helpers_stuck");
            return None;
        };
        let (reply, answer) = sync_channel(1);
        if tx.try_send(Job { pid, reply }).is_err() {
            // Gone (it cannot be busy: each answer is waited for); the
            // next read starts a new one.
            self.tx = None;
            return None;
        }
        match answer.recv_timeout(self.timeout) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => {
                // Left to its read; the next one gets a new helper.
                // Dropping its sender tells it to count itself out when
                // its read returns.
                self.stuck.fetch_add(1, Ordering::Relaxed);
                self.tx = None;
                self.abandoned("timeout");
                None
            }
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Helpers currently stuck in a read.
    #[cfg(test)]
    fn stuck(&self) -> usize {
        self.stuck.load(Ordering::Relaxed)
    }
}

fn helper_loop(rx: &Receiver<Job>, read: ReadFn, stuck: &AtomicUsize) {
    while let Ok(job) = rx.recv() {
        if job.reply.send(read(job.pid)).is_err() {
            break;
        }
    }
    // The reader let go of this helper: after a timeout (it was counted
    // as stuck then; an answer that came just too late included) or at
    // shutdown (nothing counted: the count stays at 0).
    let _ = stuck.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pid 0 blocks for 300 ms; others answer at once.
    fn slow_read(pid: u32) -> Option<Vec<u8>> {
        if pid == 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        Some(pid.to_le_bytes().to_vec())
    }

    /// Pid 0 never answers (until the test process ends).
    fn hung_read(pid: u32) -> Option<Vec<u8>> {
        if pid == 0 {
            loop {
                std::thread::park();
            }
        }
        Some(pid.to_le_bytes().to_vec())
    }

    fn count(m: &SelfMetrics, reason: &'static str) -> u64 {
        m.proc_reads_abandoned
            .get_or_create(&ReasonLabel { reason })
            .get()
    }

    #[test]
    fn a_blocked_read_is_abandoned_and_later_reads_go_on() {
        let m = SelfMetrics::default();
        let mut o = Offloaded::new(slow_read, m.clone()).with_timeout(Duration::from_millis(50));
        assert_eq!(o.read(7), Some(7u32.to_le_bytes().to_vec()));
        let t = std::time::Instant::now();
        assert_eq!(o.read(0), None);
        assert!(t.elapsed() < Duration::from_millis(250));
        assert_eq!((count(&m, "timeout"), o.stuck()), (1, 1));
        assert_eq!(o.read(8), Some(8u32.to_le_bytes().to_vec()));
        // The abandoned helper counts itself out when its read returns.
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(o.stuck(), 0);
    }

    #[test]
    fn stuck_helpers_are_bounded() {
        let m = SelfMetrics::default();
        let mut o = Offloaded::new(hung_read, m.clone()).with_timeout(Duration::from_millis(10));
        for _ in 0..MAX_STUCK {
            assert_eq!(o.read(0), None);
        }
        assert_eq!(o.stuck(), MAX_STUCK);
        // No more helpers: not attempted, no wait, counted.
        let t = std::time::Instant::now();
        assert_eq!(o.read(9), None);
        assert!(t.elapsed() < Duration::from_millis(10));
        assert_eq!(count(&m, "helpers_stuck"), 1);
        assert_eq!(count(&m, "timeout"), MAX_STUCK as u64);
    }
}
