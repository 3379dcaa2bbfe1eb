//! `ratatosk`: see README.md. Parses settings, starts logging and hands over
//! to `pipeline::run`, the one place that wires the stages.
//!
//! A library only so that a benchmark binary (`benches/pipeline.rs`, with
//! its own counting allocator) can link the agent's code; `main.rs` calls
//! [`main`] and nothing else is public but the benchmark's driver.

#[doc(hidden)]
pub mod bench;
mod clock;
mod config;
mod conn;
/// Public for the end-to-end test of the kernel's HTTP/2 frame walk
/// (tests/e2e/tests/h2capture.rs), which decodes records as the agent does.
#[doc(hidden)]
pub mod decode;
mod discovery;
mod export;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod output;
mod panics;
mod pipeline;
mod queue;
mod reader;
mod red;
mod selfmon;
mod spans;

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// The `ratatosk` binary's entry point.
pub fn main() -> ExitCode {
    // No core dumps, no ptrace or /proc/PID/mem by non-root: the agent
    // holds TLS secrets and other processes' plaintext.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    panics::install();
    // The sandboxed child that learns an OpenSSL build's layout (see
    // discovery/sslcal.rs): nothing else of the agent runs in it.
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(discovery::sslcal::CHILD_ARG)) {
        let lib = args.next().unwrap_or_default();
        return discovery::sslcal::child_main(&lib.to_string_lossy());
    }
    let config = match config::Config::from_env_and_args() {
        Ok(c) => c,
        Err(config::ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("ratatosk: invalid setting: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr: stdout belongs to the trace printer.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();

    let result = pipeline::run(config);
    // A panic anywhere is the cause whatever `run` returned.
    if let Some(line) = panics::message() {
        eprintln!("ratatosk: stopped because a {line}");
        return ExitCode::from(panics::EXIT_CODE);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line naming what failed and why; no backtrace.
            eprintln!("ratatosk: {e:#}");
            ExitCode::FAILURE
        }
    }
}
