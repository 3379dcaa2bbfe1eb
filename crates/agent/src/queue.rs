//! Bounded queues between pipeline stages. The sending side never blocks
//! (the ring-buffer reader must keep up with the kernel): when a queue is
//! full the item is dropped, counted in `ratatosk_queue_dropped_total`, and
//! a warning is logged the first time.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tracing::warn;

use crate::selfmon::{QueueLabel, SelfMetrics};

pub struct QueueTx<T> {
    tx: Sender<T>,
    name: &'static str,
    metrics: SelfMetrics,
    warned: bool,
}

/// A bounded queue named after both ends, e.g. `tracker_to_outputs`.
pub fn bounded<T>(
    name: &'static str,
    capacity: usize,
    metrics: SelfMetrics,
) -> (QueueTx<T>, Receiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    (
        QueueTx {
            tx,
            name,
            metrics,
            warned: false,
        },
        rx,
    )
}

impl<T> QueueTx<T> {
    /// Sends without blocking; returns false when the item was dropped.
    /// `weight` is how many items it stands for (a batch of spans).
    pub fn send(&mut self, item: T, weight: u64) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.count_dropped(weight);
                if !self.warned {
                    warn!(
                        queue = self.name,
                        "queue full: dropping (counted in ratatosk_queue_dropped_total)"
                    );
                    self.warned = true;
                }
                false
            }
            // The consumer is gone: we are shutting down.
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Counts `n` items lost on the way to this queue (in its
    /// `ratatosk_queue_dropped_total` series).
    pub fn count_dropped(&self, n: u64) {
        self.metrics
            .queue_dropped
            .get_or_create(&QueueLabel { queue: self.name })
            .inc_by(n);
    }

    pub fn len(&self) -> usize {
        self.tx.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_and_counts_when_full() {
        let m = SelfMetrics::default();
        let (mut tx, rx) = bounded::<u32>("a_to_b", 2, m.clone());
        assert!(tx.send(1, 1) && tx.send(2, 1));
        assert!(!tx.send(3, 5));
        assert_eq!(
            m.queue_dropped
                .get_or_create(&QueueLabel { queue: "a_to_b" })
                .get(),
            5
        );
        assert_eq!(rx.recv().unwrap(), 1);
        assert!(tx.send(4, 1));
    }
}
