//! A panic in any thread ends the agent, non-zero, with the panic message.
//!
//! Decided: exit, not restart. A thread that panicked left its state
//! (connections, queues, BPF maps it fed) half-updated; restarting it
//! would hide a bug behind a counter while the agent silently misses
//! traffic. The hook logs the message with the thread's name, records it
//! for `pipeline::run` (whose main loop checks `panicked()` on every
//! tick and then stops as on SIGTERM: flush, detach), and starts a
//! watchdog that exits with `EXIT_CODE` if that orderly stop has not ended
//! the process within `GRACE` (a stuck main loop cannot keep a broken
//! agent alive). Tokio tasks' panics, which tokio would catch, count too.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The exit code of an agent stopped by a panic (Rust's own for a panic
/// that ends `main`).
pub const EXIT_CODE: u8 = 101;
/// How long the orderly stop may take before the watchdog exits.
const GRACE: Duration = Duration::from_secs(5);

static PANICKED: AtomicBool = AtomicBool::new(false);
static MESSAGE: OnceLock<String> = OnceLock::new();

/// Installs the hook (before any thread starts).
pub fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line = format!("thread '{name}' panicked{place}: {msg}");
        // The first panic is the cause; later ones are usually its echo.
        let first = MESSAGE.set(line.clone()).is_ok();
        tracing::error!("{line}; stopping the agent");
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            default(info);
        }
        PANICKED.store(true, Ordering::SeqCst);
        if first {
            let _ = std::thread::Builder::new()
                .name("ratatosk-panic-watchdog".into())
                .spawn(|| {
                    std::thread::sleep(GRACE);
                    eprintln!(
                        "ratatosk: {} (the agent did not stop within {GRACE:?})",
                        message().unwrap_or_default()
                    );
                    std::process::exit(i32::from(EXIT_CODE));
                });
        }
    }));
}

/// Whether a thread panicked.
pub fn panicked() -> bool {
    PANICKED.load(Ordering::SeqCst)
}

/// The first panic's line.
pub fn message() -> Option<String> {
    MESSAGE.get().cloned()
}

/// Test-only switch: `RATATOSK_TEST_PANIC=THREAD` makes the thread named
/// THREAD (`outputs`, `reader`) panic one second after it starts. Only in
/// debug builds: a release agent ignores the variable.
pub fn test_switch(thread: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("RATATOSK_TEST_PANIC").is_ok_and(|v| v == thread) {
        std::thread::sleep(Duration::from_secs(1));
        panic!("RATATOSK_TEST_PANIC={thread}: injected panic");
    }
    #[cfg(not(debug_assertions))]
    let _ = thread;
}
