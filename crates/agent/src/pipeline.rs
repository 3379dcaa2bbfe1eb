//! The one place that wires the pipeline together:
//!
//! ```text
//! kernel (BPF) --ring buffer--> reader thread: decode -> discovery
//!                                               -> conn tracker -> HTTP parser -> span builder
//!              --tracker_to_outputs (bounded)--> outputs thread: RED metrics, trace printer,
//!                                                 OTLP exporter --(bounded)--> tokio: OTLP senders
//! tokio: OTLP senders, /metrics endpoint, signals
//! ```
//!
//! The hot path (decode, track, parse, build) runs on one plain thread
//! that owns all its state, so it takes no locks. Network I/O lives on
//! tokio.

use std::io::BufWriter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use ratatosk_bpf::{Capture, Injection, LoadOptions, SyscallHooks};
use ratatosk_protocols::parser::Limits;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::{Config, HookMode};
use crate::conn::Tracker;
use crate::discovery::Discovery;
use crate::discovery::openssl::{OpensslFiles, TlsAttach};
use crate::export::Exporter;
use crate::output::printer::Printer;
use crate::output::{self, Batch, prometheus};
use crate::queue;
use crate::reader::Reader;
use crate::red::prometheus::PrometheusRed;
use crate::selfmon::SelfMetrics;
use crate::spans::SpanBuilder;
use crate::spans::route::Routes;

/// Batches of spans waiting for the outputs thread.
const TRACKER_TO_OUTPUTS_CAPACITY: usize = 1024;
/// Emptied batches kept for the reader to fill again (each holds room for
/// `reader::BATCH_SPANS` spans, ~100 KB): enough for the batches of one
/// outputs tick at tens of thousands of spans per second.
const SPENT_BATCHES: usize = 16;
/// How often the reader drains the ring buffer when the kernel did not
/// wake it (the kernel only wakes it once enough data waits). Each wake-up
/// has a fixed cost (~50 µs of CPU on a KVM guest, measured): at 10k
/// req/s, 100 ms cost the agent 2.20 µs per request against 2.38 with
/// 50 ms (3 runs each). Spans reach the outputs this much later.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The longest the reader waits once drains find nothing: the first
/// spans after a quiet spell wait at most this. Measured on a KVM guest:
/// each wake-up costs ~50 µs of CPU, so polling every 50 ms cost an idle
/// agent 1 ms of CPU per second in this thread alone.
const IDLE_POLL_INTERVAL: Duration = Duration::from_millis(400);
/// How often the traced processes' mappings are scanned for OpenSSL
/// files to probe: a process that maps libssl is covered within this.
const OPENSSL_SCAN_INTERVAL: Duration = Duration::from_millis(500);

pub fn run(config: Config) -> anyhow::Result<()> {
    // A route unused for the series TTL gives its slot back, as its
    // series leave /metrics.
    let routes = Routes::new(&config.routes)
        .context("checking the route patterns")?
        .with_slot_ttl(config.prometheus_ttl);
    if let Some(file) = &config.config_file {
        info!(%file, "settings read from the configuration file");
    }
    let self_metrics = SelfMetrics::default();
    let mut registry = Registry::default();
    self_metrics.register(&mut registry);
    // `application` is the only metric family built so far; the others are
    // accepted settings that produce nothing yet (docs/configuration.md).
    // Only for an endpoint that serves them: OTLP keeps its own store.
    let http_metrics = (config.prometheus.is_some() && config.prometheus_features.application)
        .then(|| {
            PrometheusRed::new(
                &mut registry,
                crate::export::MAX_SERIES,
                self_metrics.prometheus_series_limit.clone(),
                self_metrics.prometheus_series_expired.clone(),
                config.prometheus_ttl,
            )
        });
    let registry = Arc::new(Mutex::new(registry));

    // tokio: network I/O (OTLP exporters, metrics endpoint) and signals.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("ratatosk-io")
        .build()
        .context("starting the async runtime")?;

    // The metrics endpoint's port before anything is loaded: one that is
    // taken fails start-up at once, not after the probes attached.
    let metrics_listener = match config.prometheus {
        Some(addr) => Some(
            rt.block_on(prometheus::bind(addr))
                .with_context(|| format!("binding the metrics endpoint on {addr}"))?,
        ),
        None => None,
    };

    // Privileges and kernel features next: a clear one-line refusal
    // before anything is touched.
    // (PID namespace included: the kernel's pids must be /proc's.)
    ratatosk_bpf::preflight().context("checking the kernel and privileges")?;
    // Beyond CAP_BPF and CAP_PERFMON: one line per capability missing.
    for m in ratatosk_bpf::missing_capabilities(config.tls_capture) {
        if m.loses_capture {
            warn!(capability = m.name, "running without it: {}", m.degrades);
        } else {
            info!(capability = m.name, "running without it: {}", m.degrades);
        }
    }
    // tracefs only for the per-syscall tracepoints, which attach through
    // it: a host's mounts are not the agent's business otherwise.
    if config.syscall_hooks == HookMode::PerSyscall {
        match ratatosk_bpf::ensure_tracefs() {
            Ok(true) => info!("mounted tracefs on /sys/kernel/tracing"),
            Ok(false) => {}
            Err(e) => warn!(error = %e, "tracefs unavailable (the per-syscall hooks need it)"),
        }
    }
    let sel = &config.selection;
    let trace_all = sel.is_everything();
    let mut load = LoadOptions {
        agent_tgid: std::process::id(),
        trace_all,
        report_listen: sel.has_ports(),
        trace_new_execs: sel.needs_exec_check(),
        capture_bytes: config.capture_bytes,
        // Wake the reader only when a quarter of the ring is full; otherwise
        // it drains every POLL_INTERVAL. Measured (bench/run.py, nginx): a
        // wake-up per 64 KiB cost +24 µs p50 / +137 µs p99 at a fixed 20k
        // req/s and 1.6 µs agent CPU per request; a quarter of the ring
        // (2 MiB) gives +14 µs / +14 µs and 1.2 µs, and +5 % throughput at
        // saturation. The reader yields while draining big batches (see
        // reader.rs) so a saturated server's p99 does not pay for them.
        wakeup_bytes: u64::from(config.ringbuf_bytes) / 4,
        ringbuf_bytes: config.ringbuf_bytes,
        max_targets: config.max_processes,
        max_sockets: u32::try_from(config.max_connections).unwrap_or(u32::MAX),
        syscall_hooks: match config.syscall_hooks {
            HookMode::Raw => SyscallHooks::RawExit,
            HookMode::PerSyscall => SyscallHooks::PerSyscall,
            HookMode::Socket => SyscallHooks::Socket,
        },
        tls: config.tls_capture,
        h2_walk: true,
        inject: config.context_propagation.injects(),
    };
    // Load as configured, else give up what this kernel lacks; each
    // degradation is named once with the error that forced it.
    let mut first_error = None;
    let mut loaded = None;
    for opts in load_plan(&load) {
        match Capture::load(&opts) {
            Ok(capture) => {
                loaded = Some((capture, opts));
                break;
            }
            Err(e) => {
                first_error.get_or_insert(anyhow::Error::from(e));
            }
        }
    }
    let Some((capture, chosen)) = loaded else {
        let e = first_error.unwrap_or_else(|| anyhow::anyhow!("no load attempted"));
        return Err(e.context("loading the BPF capture programs"));
    };
    let why = first_error.map(|e| format!("{e:#}")).unwrap_or_default();
    if chosen.syscall_hooks != load.syscall_hooks {
        warn!(
            error = why,
            "socket hooks unavailable (sock:sock_recv_length/sock_send_length need Linux 6.4): \
             hooking every syscall exit instead (raw), which costs every process on the host more"
        );
    }
    if chosen.tls != load.tls {
        warn!(
            error = why,
            "TLS programs do not load on this kernel: HTTPS traffic is not decrypted \
             (its bytes are counted as unparsed); plaintext capture goes on"
        );
    }
    if chosen.inject != load.inject {
        warn!(
            error = why,
            "the traceparent injection programs (sockops, sk_msg) do not load on this kernel: \
             nothing is injected; traces join on this host only"
        );
    }
    match capture.injection() {
        Injection::Off => {}
        Injection::On(l) => info!(
            cgroup2 = %l.cgroup().display(),
            mounted_by_agent = l.own_mount(),
            "traceparent injection on: outgoing plaintext HTTP/1 requests of traced processes carry the trace"
        ),
        Injection::Failed(why) => {
            warn!("traceparent injection off: {why}; traces join on this host only")
        }
    }
    load = chosen;
    let tls_capture = load.tls;
    info!(
        selection = %config.selection,
        capture_bytes = capture.capture_bytes(),
        hooks = ?load.syscall_hooks,
        "capture attached (socket I/O, sched_process_fork/exec/exit)"
    );

    let targets = if trace_all {
        None
    } else {
        Some(capture.targets().context("opening the target map")?)
    };
    let mut discovery = Discovery::new(
        config.selection.clone(),
        config.naming.clone(),
        targets,
        config.max_processes as usize,
        self_metrics.clone(),
    );
    let found = discovery.initial_scan();
    if config.selection.include.is_empty() {
        // No selector: say so once, with the count, and how to narrow it.
        let found = if trace_all {
            crate::discovery::procfs::pids().len().saturating_sub(1)
        } else {
            found
        };
        info!(
            "no selector: instrumenting {found} running processes and every new one ({}); \
             narrow with --open-port PORTS, --exe-path REGEX or --pid PIDS",
            config.selection
        );
    } else if !trace_all {
        info!(processes = found, "initial scan done");
    }
    // Processes whose mappings are scanned for OpenSSL: the target set
    // (forked children included), or every process.
    let scan_targets = capture.targets().context("opening the target map")?;
    let mut openssl = OpensslFiles::new(config.tls_decrypt, self_metrics.clone());
    let mut capture = capture;
    let stop = Arc::new(AtomicBool::new(false));
    let scan_stop = stop.clone();
    let mut scan_openssl = |capture: &mut Capture| {
        let pids = if trace_all {
            crate::discovery::procfs::pids()
        } else {
            scan_targets.list()
        };
        let me = std::process::id();
        // A stop requested meanwhile ends the scan at the next process.
        openssl.scan(
            pids.into_iter()
                .filter(|p| *p != me)
                .take_while(|_| !scan_stop.load(Ordering::Relaxed)),
            &mut TlsProbes(capture),
        );
    };
    if tls_capture {
        scan_openssl(&mut capture);
    }

    let clock = Clock::new();
    let (tracker_to_outputs, outputs_rx) = queue::bounded::<Batch>(
        "tracker_to_outputs",
        TRACKER_TO_OUTPUTS_CAPACITY,
        self_metrics.clone(),
    );

    // Reader thread: the hot path.
    let events = capture.events().context("opening the ring buffer")?;
    let mut reader = Reader::new(
        discovery,
        Tracker::new(
            config.max_connections,
            Limits {
                raw_sql: config.raw_db_query_text,
                ..Limits::default()
            },
            self_metrics.clone(),
        )
        .with_budget(config.conn_budget),
        SpanBuilder::new(clock.clone(), config.sampler.clone()),
        routes,
        tracker_to_outputs,
        self_metrics.clone(),
        stop.clone(),
    );
    reader.link_traces(config.context_propagation.links());
    let (spent_tx, spent_rx) = crossbeam_channel::bounded(SPENT_BATCHES);
    reader.recycle_batches(spent_rx);
    let reader_thread = thread::Builder::new()
        .name("ratatosk-reader".into())
        .spawn(move || {
            crate::panics::test_switch("reader");
            events.run(POLL_INTERVAL, IDLE_POLL_INTERVAL, &mut reader)
        })
        .context("starting the reader thread")?;

    // Outputs thread.
    let otlp = Exporter::start(
        &config.otlp,
        &config.naming,
        self_metrics.clone(),
        rt.handle(),
    )
    .context("starting the OTLP exporter")?;
    let counters = capture.counters().context("opening BPF counters")?;
    let printer = Printer::new(
        config.printer,
        BufWriter::with_capacity(64 * 1024, std::io::stdout()),
    );
    let outputs_metrics = self_metrics.clone();
    let outputs_thread = thread::Builder::new()
        .name("ratatosk-outputs".into())
        .spawn(move || {
            crate::panics::test_switch("outputs");
            output::run(
                output::Inbox {
                    batches: outputs_rx,
                    spent: spent_tx,
                },
                http_metrics,
                printer,
                otlp,
                counters,
                outputs_metrics,
                clock,
            )
        })
        .context("starting the outputs thread")?;

    // tokio (the runtime was started before anything was loaded): metrics
    // endpoint and signals.
    let result = rt.block_on(async {
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let server = match (metrics_listener, config.prometheus) {
            (Some(listener), Some(addr)) => {
                info!(%addr, "serving Prometheus metrics at /metrics");
                let mut rx = shutdown_rx.clone();
                let shutdown = async move {
                    let _ = rx.wait_for(|v| *v).await;
                };
                Some(tokio::spawn(prometheus::serve(
                    listener,
                    registry.clone(),
                    self_metrics.prometheus_scrapes_refused.clone(),
                    shutdown,
                )))
            }
            _ => None,
        };
        info!("ready");
        // Called every OPENSSL_SCAN_INTERVAL (the tick of wait_for_signal).
        let mut housekeeping = || {
            if tls_capture {
                scan_openssl(&mut capture);
            }
            capture.release_given_up();
        };
        wait_for_signal(&stop, &reader_thread, &mut housekeeping).await?;
        let _ = shutdown_tx.send(true);
        if let Some(s) = server {
            match s.await {
                Ok(Err(e)) => warn!(error = %e, "metrics endpoint failed"),
                Err(e) => warn!(error = %e, "metrics endpoint task failed"),
                Ok(Ok(())) => {}
            }
        }
        anyhow::Ok(())
    });

    stop.store(true, Ordering::Relaxed);
    let reader_result = reader_thread.join();
    let outputs_result = outputs_thread.join();
    // Detach the programs only after the reader stopped reading.
    drop(capture);
    result?;
    match reader_result {
        Ok(r) => r.context("reading the ring buffer")?,
        Err(_) => anyhow::bail!("the reader thread panicked"),
    }
    if outputs_result.is_err() {
        anyhow::bail!("the outputs thread panicked");
    }
    info!("stopped");
    Ok(())
}

/// Waits for SIGINT/SIGTERM or a failed reader, running `housekeeping`
/// (on this thread, which owns the loaded programs) every
/// OPENSSL_SCAN_INTERVAL. Signals are taken by a task of their own, so a
/// long housekeeping (a library being calibrated) does not hold them: the
/// stop is set at once (the reader flushes and ends, the TLS scan ends at
/// its next process), and this loop ends when housekeeping returns.
async fn wait_for_signal(
    stop: &Arc<AtomicBool>,
    reader: &thread::JoinHandle<Result<(), ratatosk_bpf::MapError>>,
    housekeeping: &mut dyn FnMut(),
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let signalled = Arc::new(tokio::sync::Notify::new());
    let signals = {
        let (stop, signalled) = (stop.clone(), signalled.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: flushing and detaching"),
                _ = int.recv() => info!("SIGINT: flushing and detaching"),
            }
            stop.store(true, Ordering::Relaxed);
            signalled.notify_one();
        })
    };
    // As often as the OpenSSL scan needs: every tick wakes two threads.
    let mut tick = tokio::time::interval(OPENSSL_SCAN_INTERVAL);
    loop {
        tokio::select! {
            _ = signalled.notified() => break,
            _ = tick.tick() => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // A panic anywhere stops the agent (panics.rs).
                if crate::panics::panicked() {
                    error!("a thread panicked: stopping");
                    break;
                }
                // The reader only ends on its own when it failed.
                if reader.is_finished() {
                    error!("the reader stopped unexpectedly");
                    break;
                }
                housekeeping();
            }
        }
    }
    signals.abort();
    stop.store(true, Ordering::Relaxed);
    Ok(())
}

/// The capture as the TLS file scan's attacher.
struct TlsProbes<'a>(&'a mut Capture);

impl TlsAttach for TlsProbes<'_> {
    fn openssl(
        &mut self,
        path: &std::path::Path,
    ) -> Result<ratatosk_bpf::OpensslProbes, ratatosk_bpf::TlsAttachError> {
        self.0.attach_openssl(path)
    }

    fn go(
        &mut self,
        path: &std::path::Path,
        probes: &ratatosk_bpf::GoTlsProbes,
    ) -> Result<usize, ratatosk_bpf::TlsAttachError> {
        self.0.attach_go_tls(path, probes)
    }

    fn openssl_handshake(
        &mut self,
        path: &std::path::Path,
        layout: &ratatosk_bpf::SslLayout,
        executable: bool,
    ) -> Result<(), ratatosk_bpf::TlsAttachError> {
        self.0.attach_openssl_handshake(path, layout, executable)
    }
}

/// The load options to try, in order: as configured; without the socket
/// hooks (their tracepoints came with Linux 6.4; the syscall-exit hook
/// sees the same bytes at a higher cost for every process); without the
/// TLS uprobe programs (their kernel reads, bpf_core_cast in a uprobe, are
/// the next newest requirement: plaintext capture goes on); without both.
/// Same bytes at a higher cost is preferred to losing HTTPS.
fn load_plan(load: &LoadOptions) -> Vec<LoadOptions> {
    let raw = |o: &LoadOptions| LoadOptions {
        syscall_hooks: SyscallHooks::RawExit,
        ..o.clone()
    };
    let plain = |o: &LoadOptions| LoadOptions {
        tls: false,
        ..o.clone()
    };
    let mut plan = vec![load.clone()];
    // Without injection first: its programs must not cost the rest.
    let load = &LoadOptions {
        inject: false,
        ..load.clone()
    };
    if plan.first().is_some_and(|p| p.inject) {
        plan.push(load.clone());
    }
    let socket = load.syscall_hooks == SyscallHooks::Socket;
    if socket {
        plan.push(raw(load));
    }
    if load.tls {
        plan.push(plain(load));
        if socket {
            plan.push(raw(&plain(load)));
        }
    }
    plan
}

#[cfg(test)]
mod load_plan_tests {
    use super::*;

    fn steps(hooks: SyscallHooks, tls: bool) -> Vec<(SyscallHooks, bool)> {
        let load = LoadOptions {
            syscall_hooks: hooks,
            tls,
            ..LoadOptions::default()
        };
        load_plan(&load)
            .iter()
            .map(|o| (o.syscall_hooks, o.tls))
            .collect()
    }

    /// The raw hook (same bytes, more cost) is tried before giving up TLS
    /// (lost HTTPS); a setting the user already chose is never changed
    /// the other way.
    #[test]
    fn tries_raw_hooks_before_giving_up_tls() {
        use SyscallHooks::*;
        assert_eq!(
            steps(Socket, true),
            [
                (Socket, true),
                (RawExit, true),
                (Socket, false),
                (RawExit, false)
            ]
        );
        assert_eq!(steps(Socket, false), [(Socket, false), (RawExit, false)]);
        assert_eq!(
            steps(PerSyscall, true),
            [(PerSyscall, true), (PerSyscall, false)]
        );
        assert_eq!(steps(RawExit, false), [(RawExit, false)]);
    }
}
