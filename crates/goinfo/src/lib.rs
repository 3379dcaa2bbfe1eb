//! What a Go executable tells from its bytes, for probing `crypto/tls`:
//! the Go version (build information), where `(*tls.Conn).Read` and
//! `(*tls.Conn).Write` start and return (`.symtab`, else `.gopclntab`,
//! then their machine code), and where the socket's descriptor sits
//! behind a `*tls.Conn` (DWARF, else a table keyed by Go version).
//!
//! Pure: no I/O, no unsafe, no panics on hostile input; tested on real
//! binaries built by the tests and on truncated ones.

pub mod buildinfo;
pub mod dwarf;
pub mod pclntab;
pub mod rets;

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

pub use buildinfo::GoVersion;

/// The probed functions (Go's register ABI: receiver in RAX, the slice's
/// pointer and length in RBX and RCX; results n in RAX; `g` in R14).
pub const READ_FUNC: &str = "crypto/tls.(*Conn).Read";
pub const WRITE_FUNC: &str = "crypto/tls.(*Conn).Write";

/// Oldest Go release handled: the register ABI exists from 1.17, and the
/// inline build information and the current pclntab header from 1.18.
pub const MIN_VERSION: GoVersion = GoVersion {
    major: 1,
    minor: 18,
};

/// Where the socket descriptor lies behind a `*tls.Conn`:
/// `tls.Conn.conn` is a `net.Conn` interface (itab, data pointer); its
/// data is a `*net.TCPConn` whose embedded `net.conn` holds `fd *netFD`;
/// `netFD.pfd` is a `poll.FD` whose `Sysfd` is the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsLayout {
    /// Offset in `tls.Conn` of the interface's data pointer.
    pub conn_data: u16,
    /// Offset in `net.TCPConn` of `fd *netFD`.
    pub tcpconn_fd: u16,
    /// Offset in `net.netFD` of `pfd.Sysfd`.
    pub netfd_sysfd: u16,
}

impl TlsLayout {
    /// Packed into one u64 (the uprobe's BPF cookie): conn_data in bits
    /// 0–15, tcpconn_fd in 16–31, netfd_sysfd in 32–47.
    pub fn cookie(&self) -> u64 {
        u64::from(self.conn_data)
            | u64::from(self.tcpconn_fd) << 16
            | u64::from(self.netfd_sysfd) << 32
    }
}

/// Layouts by Go release, checked against DWARF of binaries built by the
/// lab's Go (1.27) and unchanged in the standard library's sources since
/// before 1.18 (`tls.Conn` starts with `conn net.Conn`; `net.conn` is
/// `{fd *netFD}`; `netFD` starts with `pfd poll.FD`, whose `fdMutex`
/// (16 bytes) precedes `Sysfd`). Releases after the last one listed are
/// refused when they carry no DWARF rather than guessed.
const LAYOUTS: &[(GoVersion, GoVersion, TlsLayout)] = &[(
    MIN_VERSION,
    GoVersion {
        major: 1,
        minor: 27,
    },
    TlsLayout {
        conn_data: 8,
        tcpconn_fd: 0,
        netfd_sysfd: 16,
    },
)];

/// The layout the table gives for `v`.
pub fn table_layout(v: GoVersion) -> Option<TlsLayout> {
    LAYOUTS
        .iter()
        .find(|(lo, hi, _)| *lo <= v && v <= *hi)
        .map(|(_, _, l)| *l)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `.symtab` / DWARF.
    Symbols,
    /// `.gopclntab` / the version table.
    Fallback,
}

/// Everything needed to probe one Go binary. Offsets are file offsets
/// (what uprobes attach to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoTls {
    pub version: GoVersion,
    /// As the build information says (`go1.27.3`).
    pub version_string: String,
    /// Functions from `.symtab` (Symbols) or `.gopclntab` (Fallback).
    pub functions_from: Source,
    pub read_entry: u64,
    /// Every `RET` of `Read`.
    pub read_returns: Vec<u64>,
    pub write_entry: u64,
    pub layout: TlsLayout,
    /// Layout from DWARF (Symbols) or the version table (Fallback).
    pub layout_from: Source,
}

#[derive(Debug, thiserror::Error)]
pub enum GoTlsError {
    #[error("not a readable ELF file")]
    Elf(#[source] object::Error),
    #[error("not an x86-64 executable")]
    NotAmd64,
    #[error("not a Go binary (no .go.buildinfo)")]
    NotGo,
    #[error(transparent)]
    BuildInfo(#[from] buildinfo::BuildInfoError),
    #[error("{0} is older than Go 1.18 (stack ABI or old tables): not supported")]
    TooOld(GoVersion),
    #[error("no crypto/tls in this Go binary ({READ_FUNC} not found)")]
    NoCryptoTls,
    #[error("no .gopclntab and no .symtab")]
    NoFunctionTable,
    #[error(".gopclntab unreadable")]
    Pclntab(#[from] pclntab::PclntabError),
    #[error("{0} at {1:#x} is outside the file's loaded segments")]
    NotMapped(&'static str, u64),
    #[error("{0} does not start like a Go function (address from the wrong base?): not probed")]
    NotAFunction(&'static str),
    #[error("return instructions of {READ_FUNC}")]
    Rets(#[from] rets::RetError),
    #[error("reading DWARF failed")]
    Dwarf(#[from] dwarf::DwarfError),
    #[error(
        "{0} has no DWARF and its struct layout is not in the version table (known: go1.18–go1.27)"
    )]
    UnknownLayout(GoVersion),
}

/// A function's address range.
#[derive(Debug, Clone, Copy)]
struct Range {
    entry: u64,
    end: u64,
}

/// Analyses the bytes of a Go executable.
pub fn analyze(data: &[u8]) -> Result<GoTls, GoTlsError> {
    let file = object::File::parse(data).map_err(GoTlsError::Elf)?;
    if file.architecture() != object::Architecture::X86_64 {
        return Err(GoTlsError::NotAmd64);
    }
    let bi = file
        .section_by_name(".go.buildinfo")
        .ok_or(GoTlsError::NotGo)?;
    let bi = bi.data().map_err(GoTlsError::Elf)?;
    let version_string = buildinfo::version_string(bi)?.to_string();
    let version = buildinfo::parse_version(&version_string)?;
    if version < MIN_VERSION {
        return Err(GoTlsError::TooOld(version));
    }

    let (read, write, functions_from) = match (symbol(&file, READ_FUNC), symbol(&file, WRITE_FUNC))
    {
        (Some(r), Some(w)) => (r, w, Source::Symbols),
        _ => {
            let (r, w) = from_pclntab(&file)?;
            (r, w, Source::Fallback)
        }
    };

    let read_entry =
        file_offset(&file, read.entry).ok_or(GoTlsError::NotMapped(READ_FUNC, read.entry))?;
    let write_entry =
        file_offset(&file, write.entry).ok_or(GoTlsError::NotMapped(WRITE_FUNC, write.entry))?;
    // A few KiB in practice; a bogus size from the file must not make us
    // decode the whole executable.
    const MAX_FUNC_BYTES: usize = 64 * 1024;
    let len = read
        .end
        .checked_sub(read.entry)
        .and_then(|l| usize::try_from(l).ok())
        .filter(|&l| l <= MAX_FUNC_BYTES)
        .ok_or(GoTlsError::NotMapped(READ_FUNC, read.end))?;
    let code = usize::try_from(read_entry)
        .ok()
        .and_then(|s| data.get(s..s.checked_add(len)?))
        .ok_or(GoTlsError::NotMapped(READ_FUNC, read.end))?;
    if !rets::has_stack_check(code) {
        return Err(GoTlsError::NotAFunction(READ_FUNC));
    }
    let write_code = usize::try_from(write_entry)
        .ok()
        .and_then(|s| data.get(s..))
        .ok_or(GoTlsError::NotMapped(WRITE_FUNC, write.entry))?;
    if !rets::has_stack_check(write_code) {
        return Err(GoTlsError::NotAFunction(WRITE_FUNC));
    }
    let read_returns = rets::ret_offsets(code)?
        .into_iter()
        .map(|r| read_entry.checked_add(r))
        .collect::<Option<Vec<u64>>>()
        .ok_or(GoTlsError::NotMapped(READ_FUNC, read.end))?;

    let (layout, layout_from) = match dwarf_layout(&file)? {
        Some(l) => (l, Source::Symbols),
        None => (
            table_layout(version).ok_or(GoTlsError::UnknownLayout(version))?,
            Source::Fallback,
        ),
    };
    Ok(GoTls {
        version,
        version_string,
        functions_from,
        read_entry,
        read_returns,
        write_entry,
        layout,
        layout_from,
    })
}

fn symbol(file: &object::File<'_>, name: &str) -> Option<Range> {
    // Only .symtab: Go binaries export no dynamic symbols for these.
    let s = file.symbols().find(|s| s.name() == Ok(name))?;
    // Values from the file: a bogus size must not wrap.
    Some(Range {
        entry: s.address(),
        end: s.address().checked_add(s.size()).filter(|_| s.size() > 0)?,
    })
}

fn from_pclntab(file: &object::File<'_>) -> Result<(Range, Range), GoTlsError> {
    let sec = file
        .section_by_name(".gopclntab")
        .ok_or(GoTlsError::NoFunctionTable)?;
    let data = sec.data().map_err(GoTlsError::Elf)?;
    let tab = pclntab::Pclntab::parse(data)?;
    let text = match tab.text_start {
        0 => file
            .section_by_name(".text")
            .map(|s| s.address())
            .unwrap_or(0),
        t => t,
    };
    let find = |name| {
        tab.find(name, text).map(|f| Range {
            entry: f.entry,
            end: f.end,
        })
    };
    Ok((
        find(READ_FUNC).ok_or(GoTlsError::NoCryptoTls)?,
        find(WRITE_FUNC).ok_or(GoTlsError::NoCryptoTls)?,
    ))
}

/// The file offset of a virtual address in a loaded segment.
fn file_offset(file: &object::File<'_>, addr: u64) -> Option<u64> {
    file.segments().find_map(|seg| {
        let (off, size) = seg.file_range();
        let start = seg.address();
        let delta = addr.checked_sub(start)?;
        (delta < size).then(|| off.checked_add(delta)).flatten()
    })
}

/// The layout from DWARF, when the binary has it and it names every field.
fn dwarf_layout(file: &object::File<'_>) -> Result<Option<TlsLayout>, GoTlsError> {
    const FIELDS: [dwarf::Field<'static>; 5] = [
        ("crypto/tls.Conn", "conn"),
        ("net.TCPConn", "conn"),
        ("net.conn", "fd"),
        ("net.netFD", "pfd"),
        ("internal/poll.FD", "Sysfd"),
    ];
    let Some(offs) = dwarf::field_offsets(file, &FIELDS)? else {
        return Ok(None);
    };
    let [Some(conn), Some(tcp_conn), Some(fd), Some(pfd), Some(sysfd)] = offs[..] else {
        return Ok(None);
    };
    let n = |v: u64| u16::try_from(v).ok();
    // The interface's data word follows its itab pointer.
    Ok((|| {
        Some(TlsLayout {
            conn_data: n(conn.checked_add(8)?)?,
            tcpconn_fd: n(tcp_conn.checked_add(fd)?)?,
            netfd_sysfd: n(pfd.checked_add(sysfd)?)?,
        })
    })())
}
