//! Learning an OpenSSL build's struct layout by running it, in a child.
//!
//! `ratatosk_sslcal::calibrate` loads the library and runs handshakes
//! through it: that executes the library's code, which belongs to whoever
//! installed it. So it never runs in the agent: the agent re-executes
//! itself (`ratatosk __sslcal PATH`) and the child drops every privilege
//! (uid/gid nobody, no supplementary groups, no new privileges) before it
//! opens the library, prints the layout as one JSON line and exits. The
//! child is killed if it takes longer than `TIMEOUT`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use ratatosk_bpf::{SSL_NO_OFFSET as NO_OFFSET, SslLayout};
use ratatosk_sslcal::SslOffsets;

/// First argument that turns the binary into the calibration child.
pub const CHILD_ARG: &str = "__sslcal";

/// Generous: a calibration takes milliseconds, but a loaded host may
/// delay the child's start.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes read from the child's output.
const MAX_OUTPUT: u64 = 64 * 1024;
/// The unprivileged user the child becomes (`nobody`).
const NOBODY: u32 = 65534;

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("starting the calibration process failed")]
    Spawn(#[source] std::io::Error),
    #[error("the calibration process did not finish within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Child(String),
    #[error("the calibration process printed no layout ({0})")]
    Output(String),
    #[error("an offset learned is too large for the BPF layout: {0}")]
    Range(&'static str),
}

/// Runs the calibration of `lib` in an unprivileged child and returns the
/// layout for the BPF side and the library's version text.
pub fn calibrate(lib: &Path) -> Result<(SslLayout, String), CalibrateError> {
    let mut child = Command::new("/proc/self/exe")
        .arg(CHILD_ARG)
        .arg(lib)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(CalibrateError::Spawn)?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < TIMEOUT => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CalibrateError::Timeout(TIMEOUT));
            }
        }
    };
    let read = |r: Option<&mut dyn Read>| {
        let mut s = String::new();
        if let Some(r) = r {
            let _ = r.take(MAX_OUTPUT).read_to_string(&mut s);
        }
        s
    };
    let out = read(child.stdout.as_mut().map(|r| r as &mut dyn Read));
    let err = read(child.stderr.as_mut().map(|r| r as &mut dyn Read));
    if !status.success() {
        let msg = err.lines().last().unwrap_or("").trim();
        return Err(CalibrateError::Child(if msg.is_empty() {
            format!("the calibration process ended with {status}")
        } else {
            msg.to_string()
        }));
    }
    let line = out.lines().last().unwrap_or("");
    let offsets: SslOffsets =
        serde_json::from_str(line).map_err(|e| CalibrateError::Output(e.to_string()))?;
    Ok((layout(&offsets)?, offsets.version.clone()))
}

fn layout(o: &SslOffsets) -> Result<SslLayout, CalibrateError> {
    // Offsets past 64 KiB would mean a wrong calibration, not a struct.
    let off = |v: u32, name: &'static str| {
        if v < 0x10000 {
            Ok(v)
        } else {
            Err(CalibrateError::Range(name))
        }
    };
    Ok(SslLayout {
        ssl_rbio: off(o.ssl_rbio, "ssl_rbio")?,
        bio_method: off(o.bio_method, "bio_method")?,
        bio_method_type: off(o.bio_method_type, "bio_method_type")?,
        bio_num: off(o.bio_num, "bio_num")?,
        bio_type_socket: o.bio_type_socket as u32,
        ssl_version: off(o.ssl_version, "ssl_version")?,
        ssl_client_app_secret: off(o.ssl_client_app_secret, "ssl_client_app_secret")?,
        ssl_server_app_secret: off(o.ssl_server_app_secret, "ssl_server_app_secret")?,
        ssl_session: off(o.ssl_session, "ssl_session")?,
        session_master_key: off(o.session_master_key, "session_master_key")?,
        valid: 1,
        client_random_via: match o.ssl_client_random.and_then(|r| r.via) {
            Some(via) => off(via, "ssl_client_random")?,
            None => NO_OFFSET,
        },
        client_random: match o.ssl_client_random {
            Some(r) => off(r.at, "ssl_client_random")?,
            None => NO_OFFSET,
        },
        _pad: 0,
    })
}

/// The child's whole life: drop privileges, calibrate, print.
pub fn child_main(lib: &str) -> ExitCode {
    if let Err(e) = drop_privileges() {
        eprintln!("cannot drop privileges before loading the library: {e}");
        return ExitCode::FAILURE;
    }
    match ratatosk_sslcal::calibrate(Path::new(lib)) {
        Ok(o) => match serde_json::to_string(&o) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("encoding the layout failed: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn drop_privileges() -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain syscalls on the calling (single-threaded) process with
    // valid arguments; no memory is shared with the kernel beyond them.
    unsafe {
        if libc::geteuid() == 0 {
            check(libc::setgroups(0, std::ptr::null()))?;
        }
        check(libc::setresgid(NOBODY, NOBODY, NOBODY))?;
        check(libc::setresuid(NOBODY, NOBODY, NOBODY))?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    // SAFETY: as above.
    if unsafe { libc::geteuid() } == 0 {
        return Err(std::io::Error::other("still root after setresuid"));
    }
    Ok(())
}
