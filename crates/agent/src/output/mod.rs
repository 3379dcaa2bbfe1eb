//! Outputs: where spans and metrics leave the agent. The outputs stage
//! runs on its own thread, fed by the reader through a bounded queue.

pub mod printer;
pub mod prometheus;

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use ratatosk_bpf::Counters;
use tracing::warn;

use crate::clock::Clock;
use crate::export::Exporter;
use crate::red::prometheus::PrometheusRed;
use crate::selfmon::SelfMetrics;
use crate::spans::Span;
use printer::Printer;

/// What the reader hands to the outputs stage.
pub enum Batch {
    Spans(Vec<Span>),
    ProcessExit(u32),
}

/// How often the outputs thread drains its queue while spans keep coming.
const OUTPUTS_TICK: Duration = Duration::from_millis(100);
/// BPF counters and the clock offset are refreshed this often.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How long the OTLP exporter may take to flush at exit.
const OTLP_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// The outputs stage: RED metrics, the trace printer and the OTLP
/// exporter (when configured) for every span; once a second, the BPF
/// counters and the clock offset.
/// What the outputs thread receives, and where emptied batches go back.
pub struct Inbox {
    pub batches: Receiver<Batch>,
    pub spent: crossbeam_channel::Sender<Vec<crate::spans::Span>>,
}

pub fn run<W: std::io::Write>(
    Inbox { batches: rx, spent }: Inbox,
    mut red: Option<PrometheusRed>,
    mut printer: Printer<W>,
    mut otlp: Option<Exporter>,
    counters: Counters,
    metrics: SelfMetrics,
    clock: Clock,
) {
    let mut last_housekeeping = Instant::now();
    let mut print_failed = false;
    let mut open = true;
    let mut busy = false;
    while open {
        // While spans keep coming, wake on a timer and drain what queued
        // meanwhile: one wake-up per tick instead of one per batch
        // (context switches showed in profiles). Once a tick finds nothing,
        // block until the next batch or until something is due: an idle
        // agent then wakes about once a second, not 50 times (a wake-up
        // costs ~50 µs of CPU on a KVM guest, measured).
        let mut first = None;
        if busy {
            thread::sleep(OUTPUTS_TICK);
        } else {
            let mut due = last_housekeeping + HOUSEKEEPING;
            if let Some(t) = otlp.as_ref().and_then(Exporter::next_due) {
                due = due.min(t);
            }
            // At least a tick: work already due but refused (a sender
            // still busy) is retried at the old pace, never in a spin.
            let wait = due
                .saturating_duration_since(Instant::now())
                .clamp(OUTPUTS_TICK, HOUSEKEEPING);
            match rx.recv_timeout(wait) {
                Ok(b) => first = Some(b),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        busy = false;
        while open {
            let next = match first.take() {
                Some(b) => Ok(b),
                None => rx.try_recv(),
            };
            busy |= next.is_ok();
            match next {
                Ok(Batch::Spans(mut spans)) => {
                    // One clock read per batch: series times need no more.
                    let now = crate::export::now_ns();
                    if let Some(e) = &mut otlp {
                        e.push_spans(&spans);
                    }
                    if let Some(red) = &mut red {
                        red.record(&spans, now);
                    }
                    for s in &spans {
                        if let Some(e) = &mut otlp {
                            e.record(s, now);
                        }
                        if let Err(e) = printer.print(s)
                            && !print_failed
                        {
                            warn!(error = %e, "trace printer cannot write to stdout");
                            print_failed = true;
                        }
                    }
                    // Emptied, back to the reader to fill again (when its
                    // return queue is full, freed).
                    spans.clear();
                    let _ = spent.try_send(spans);
                }
                Ok(Batch::ProcessExit(pid)) => {
                    if let Some(red) = &mut red {
                        red.forget_process(pid);
                    }
                    if let Some(e) = &mut otlp {
                        e.forget_process(pid);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let _ = printer.flush();
        if let Some(e) = &mut otlp {
            e.tick();
        }
        if last_housekeeping.elapsed() >= HOUSEKEEPING {
            last_housekeeping = Instant::now();
            match counters.read() {
                Ok(s) => metrics.observe_bpf(s),
                Err(e) => warn!(error = %e, "cannot read BPF counters"),
            }
            clock.refresh();
            if let Some(red) = &mut red {
                red.expire(crate::export::now_ns());
            }
        }
    }
    if let Ok(s) = counters.read() {
        metrics.observe_bpf(s);
    }
    let _ = printer.flush();
    if let Some(e) = otlp {
        e.shutdown(OTLP_SHUTDOWN_DEADLINE);
    }
}
