//! Outputs: where spans and metrics leave the agent. The outputs stage
//! runs on its own thread, fed by the reader through a bounded queue.

pub mod printer;
pub mod prometheus;

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use ratatosk_bpf::Counters;
use tracing::warn;

use crate::clock::Clock;
use crate::export::Exporter;
use crate::metrics::HttpMetrics;
use crate::selfmon::SelfMetrics;
use crate::spans::Span;
use printer::Printer;

/// What the reader hands to the outputs stage.
pub enum Batch {
    Spans(Vec<Span>),
    ProcessExit(u32),
}

/// How often the outputs thread drains its queue.
const OUTPUTS_TICK: Duration = Duration::from_millis(20);
/// How long the OTLP exporter may take to flush at exit.
const OTLP_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// The outputs stage: RED metrics, the trace printer and the OTLP
/// exporter (when configured) for every span; once a second, the BPF
/// counters and the clock offset.
pub fn run<W: std::io::Write>(
    rx: Receiver<Batch>,
    mut http: Option<HttpMetrics>,
    mut printer: Printer<W>,
    mut otlp: Option<Exporter>,
    counters: Counters,
    metrics: SelfMetrics,
    clock: Clock,
) {
    let mut last_housekeeping = Instant::now();
    let mut print_failed = false;
    let mut open = true;
    while open {
        // Wake on a timer and drain what queued meanwhile: one wake-up per
        // tick instead of one per batch (context switches showed in
        // profiles); spans wait at most one tick.
        thread::sleep(OUTPUTS_TICK);
        loop {
            match rx.try_recv() {
                Ok(Batch::Spans(spans)) => {
                    if let Some(e) = &mut otlp {
                        e.push_spans(&spans);
                    }
                    for s in &spans {
                        if let Some(http) = &mut http {
                            http.record(s);
                        }
                        if let Some(e) = &mut otlp {
                            e.record(s);
                        }
                        if let Err(e) = printer.print(s)
                            && !print_failed
                        {
                            warn!(error = %e, "trace printer cannot write to stdout");
                            print_failed = true;
                        }
                    }
                }
                Ok(Batch::ProcessExit(pid)) => {
                    if let Some(http) = &mut http {
                        http.forget_process(pid);
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
        if last_housekeeping.elapsed() >= Duration::from_secs(1) {
            last_housekeeping = Instant::now();
            match counters.read() {
                Ok(s) => metrics.observe_bpf(s),
                Err(e) => warn!(error = %e, "cannot read BPF counters"),
            }
            clock.refresh();
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
