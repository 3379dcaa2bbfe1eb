//! Kernel timestamps (CLOCK_MONOTONIC ns, from bpf_ktime_get_ns) to wall
//! clock. The offset is re-read periodically so NTP steps are followed.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rustix::time::{ClockId, clock_gettime};

fn ns(c: ClockId) -> i64 {
    let t = clock_gettime(c);
    t.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec)
}

/// Now on the records' clock (bpf_ktime_get_ns is CLOCK_MONOTONIC).
pub fn mono_ns() -> u64 {
    u64::try_from(ns(ClockId::Monotonic)).unwrap_or(0)
}

/// Shared, cheaply cloned converter.
#[derive(Clone)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    pub fn new() -> Self {
        let c = Clock {
            offset: Arc::new(AtomicI64::new(0)),
        };
        c.refresh();
        c
    }

    /// Re-reads REALTIME - MONOTONIC.
    pub fn refresh(&self) {
        let off = ns(ClockId::Realtime) - ns(ClockId::Monotonic);
        self.offset.store(off, Ordering::Relaxed);
    }

    pub fn to_wall_ns(&self, mono_ns: u64) -> u64 {
        (mono_ns as i64)
            .saturating_add(self.offset.load(Ordering::Relaxed))
            .max(0) as u64
    }

    #[cfg(test)]
    pub fn now_mono_ns() -> u64 {
        ns(ClockId::Monotonic).max(0) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_now_to_about_now() {
        let c = Clock::new();
        let wall = c.to_wall_ns(Clock::now_mono_ns());
        let sys = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(wall.abs_diff(sys) < 50_000_000, "{wall} vs {sys}");
    }
}
