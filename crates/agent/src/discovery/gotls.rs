//! Go `crypto/tls` probing of one executable: read it, find
//! `(*tls.Conn).Read`/`Write`, their RETs and the socket layout
//! (`ratatosk-goinfo`), and attach the probes. Go binaries are static, so
//! the executable is the only file to probe.

use std::io::Read;
use std::path::Path;

use ratatosk_bpf::{GoTlsProbes, TlsAttachError};
use ratatosk_goinfo::{GoTls, GoTlsError, Source};

/// Executables larger than this are not read (Go binaries run to a few
/// hundred MiB at most).
const MAX_EXE: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum GoProbeError {
    #[error("reading the executable failed")]
    Read(#[source] std::io::Error),
    #[error("the executable is larger than {MAX_EXE} bytes")]
    TooLarge,
    #[error(transparent)]
    Analyze(#[from] GoTlsError),
    #[error(transparent)]
    Attach(#[from] TlsAttachError),
}

/// What was probed in a Go executable (for the log line).
#[derive(Debug, Clone)]
pub struct GoProbed {
    pub version: String,
    pub links: usize,
    pub functions_from: &'static str,
    pub layout_from: &'static str,
}

/// Reads and analyses the executable at `path` (bounded).
pub fn analyze_file(path: &Path) -> Result<GoTls, GoProbeError> {
    let f = std::fs::File::open(path).map_err(GoProbeError::Read)?;
    let mut data = Vec::new();
    f.take(MAX_EXE + 1)
        .read_to_end(&mut data)
        .map_err(GoProbeError::Read)?;
    if data.len() as u64 > MAX_EXE {
        return Err(GoProbeError::TooLarge);
    }
    Ok(ratatosk_goinfo::analyze(&data)?)
}

/// The attach request for the kernel side.
pub fn probes(g: &GoTls) -> GoTlsProbes {
    GoTlsProbes {
        write_entry: g.write_entry,
        read_entry: g.read_entry,
        read_returns: g.read_returns.clone(),
        layout_cookie: g.layout.cookie(),
    }
}

/// Analyses `path` and attaches with `attach`.
pub fn probe(
    path: &Path,
    attach: &mut dyn FnMut(&Path, &GoTlsProbes) -> Result<usize, TlsAttachError>,
) -> Result<GoProbed, GoProbeError> {
    let g = analyze_file(path)?;
    let links = attach(path, &probes(&g))?;
    let name = |s: Source, sym: &'static str, fallback: &'static str| match s {
        Source::Symbols => sym,
        Source::Fallback => fallback,
    };
    Ok(GoProbed {
        version: g.version_string,
        links,
        functions_from: name(g.functions_from, "symtab", "gopclntab"),
        layout_from: name(g.layout_from, "dwarf", "version table"),
    })
}
