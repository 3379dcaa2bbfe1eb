//! Whether OpenSSL linked into an executable has the struct layout of a
//! shared libssl that can be calibrated. An executable cannot be loaded
//! to run handshakes through it, but the small exported accessors
//! (`SSL_version`, `SSL_get_session`, `SSL_get_client_random`, …) carry
//! the field offsets they use as memory-operand displacements. Two builds
//! whose accessors use the same displacements, and that name the same
//! OpenSSL version, share the layout the BPF programs read; AEAD
//! authentication of every decrypted record checks the rest at run time.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use iced_x86::{Decoder, DecoderOptions, Register};
use object::read::ReadCache;
use object::{Object, ObjectSection, ObjectSymbol};

/// Accessors whose displacements are compared: together they pin the
/// fields the BPF programs read (version, rbio, session and its master key,
/// s3's randoms, BIO method and the fields around `num`) and fields spread
/// over the rest of `SSL`, so a field added or removed by the build's
/// configuration in between shows. All exist in OpenSSL 1.1.1 and 3.x.
const ACCESSORS: &[&str] = &[
    "SSL_version",
    "SSL_get_rbio",
    "SSL_get_wbio",
    "SSL_get_session",
    "SSL_get_client_random",
    "SSL_get_server_random",
    "SSL_SESSION_get_master_key",
    "SSL_is_server",
    "SSL_get_verify_result",
    "SSL_get_key_update_type",
    "SSL_get_max_early_data",
    "SSL_get_early_data_status",
    "SSL_get_record_padding_callback_arg",
    "SSL_get_num_tickets",
    "BIO_method_type",
    "BIO_get_data",
    "BIO_get_retry_reason",
    "BIO_get_shutdown",
];

/// Accessors a file must export to be compared at all.
const REQUIRED: &[&str] = &[
    "SSL_version",
    "SSL_get_rbio",
    "SSL_get_session",
    "SSL_get_client_random",
    "SSL_SESSION_get_master_key",
    "BIO_method_type",
];

/// Bytes of one accessor decoded at most (they are a few dozen).
const MAX_FUNCTION: u64 = 1024;
/// Bytes of a file's read-only data searched for a version string.
const MAX_RODATA: u64 = 512 << 20;

/// Per accessor, the distinct displacements of its memory operands (stack
/// and RIP-relative ones excluded: they depend on code generation and on
/// where data was linked, not on struct layouts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint {
    accessors: BTreeMap<&'static str, Vec<u64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an ELF file that object can read: {reason}")]
    Elf { path: PathBuf, reason: String },
    #[error("{path} does not export {symbol}")]
    Missing { path: PathBuf, symbol: &'static str },
}

impl Fingerprint {
    /// The accessors exported by `files` (a libssl and its libcrypto, or one
    /// executable holding both).
    pub fn of(files: &[&Path]) -> Result<Fingerprint, FingerprintError> {
        let mut accessors = BTreeMap::new();
        for path in files {
            read_accessors(path, &mut accessors)?;
        }
        for name in REQUIRED {
            if !accessors.contains_key(name) {
                return Err(FingerprintError::Missing {
                    path: files.first().map(|p| p.to_path_buf()).unwrap_or_default(),
                    symbol: name,
                });
            }
        }
        Ok(Fingerprint { accessors })
    }

    /// The first accessor that differs between the two builds (exported by
    /// one only, or using other offsets), or None when they agree.
    pub fn differs_from(&self, other: &Fingerprint) -> Option<&'static str> {
        ACCESSORS
            .iter()
            .copied()
            .find(|name| self.accessors.get(name) != other.accessors.get(name))
    }
}

fn read_error(path: &Path, source: std::io::Error) -> FingerprintError {
    FingerprintError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// `path` behind a cache that reads only the parts parsed.
fn open_cached(path: &Path) -> Result<ReadCache<File>, FingerprintError> {
    Ok(ReadCache::new(
        File::open(path).map_err(|e| read_error(path, e))?,
    ))
}

fn parse<'a>(
    path: &Path,
    cache: &'a ReadCache<File>,
) -> Result<object::File<'a, &'a ReadCache<File>>, FingerprintError> {
    object::File::parse(cache).map_err(|e| FingerprintError::Elf {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn read_accessors(
    path: &Path,
    out: &mut BTreeMap<&'static str, Vec<u64>>,
) -> Result<(), FingerprintError> {
    let read_err = |source| read_error(path, source);
    // Only the headers, the dynamic symbols and the accessors' bytes are
    // read (an executable like node is ~100 MB).
    let cache = open_cached(path)?;
    let elf = parse(path, &cache)?;
    for sym in elf.dynamic_symbols() {
        let Ok(name) = sym.name() else { continue };
        let Some(&accessor) = ACCESSORS.iter().find(|a| **a == name) else {
            continue;
        };
        if sym.is_undefined() || sym.size() == 0 {
            continue;
        }
        let Some(section) = sym
            .section_index()
            .and_then(|i| elf.section_by_index(i).ok())
        else {
            continue;
        };
        let Some((file_off, _)) = section.file_range() else {
            continue;
        };
        // A symbol outside its section (a malformed file) is skipped.
        let Some(start) = sym
            .address()
            .checked_sub(section.address())
            .and_then(|off| off.checked_add(file_off))
        else {
            continue;
        };
        let len = sym.size().min(MAX_FUNCTION);
        let mut code = vec![0u8; len as usize];
        let mut f = File::open(path).map_err(read_err)?;
        f.seek(SeekFrom::Start(start)).map_err(read_err)?;
        f.read_exact(&mut code).map_err(read_err)?;
        out.insert(accessor, displacements(&code));
    }
    Ok(())
}

/// Distinct displacements of the memory operands of `code` (x86-64) based
/// on a general register.
fn displacements(code: &[u8]) -> Vec<u64> {
    let mut found: Vec<u64> = Decoder::new(64, code, DecoderOptions::NONE)
        .into_iter()
        .filter(|i| !i.is_invalid())
        .filter(|i| {
            (0..i.op_count()).any(|n| i.op_kind(n) == iced_x86::OpKind::Memory)
                && !matches!(
                    i.memory_base(),
                    Register::None | Register::RIP | Register::RSP | Register::RBP
                )
        })
        .map(|i| i.memory_displacement64())
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// Whether `path`'s read-only data holds `needle` (e.g. the version text a
/// calibrated library reported), read in bounded chunks.
pub fn rodata_contains(path: &Path, needle: &[u8]) -> Result<bool, FingerprintError> {
    let read_err = |source| read_error(path, source);
    let cache = open_cached(path)?;
    let elf = parse(path, &cache)?;
    let Some((start, len)) = elf.section_by_name(".rodata").and_then(|s| s.file_range()) else {
        return Ok(false);
    };
    if needle.is_empty() {
        return Ok(false);
    }
    let mut f = File::open(path).map_err(read_err)?;
    f.seek(SeekFrom::Start(start)).map_err(read_err)?;
    let mut left = len.min(MAX_RODATA);
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK + needle.len()];
    let mut kept = 0usize;
    while left > 0 {
        let want = (CHUNK as u64).min(left) as usize;
        let got = f.read(&mut buf[kept..kept + want]).map_err(read_err)?;
        if got == 0 {
            break;
        }
        left -= got as u64;
        let filled = kept + got;
        if memchr::memmem::find(&buf[..filled], needle).is_some() {
            return Ok(true);
        }
        // Keep the tail: a match may straddle two chunks.
        kept = (needle.len() - 1).min(filled);
        buf.copy_within(filled - kept..filled, 0);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displacements_skip_stack_and_rip_operands() {
        // mov eax,[rdi]; mov rax,[rdi+0x10]; mov rcx,[rsp+8];
        // lea rsi,[rip+0x100]; lea rsi,[rax+0x50]; ret
        let code = [
            0x8b, 0x07, 0x48, 0x8b, 0x47, 0x10, 0x48, 0x8b, 0x4c, 0x24, 0x08, 0x48, 0x8d, 0x35,
            0x00, 0x01, 0x00, 0x00, 0x48, 0x8d, 0x70, 0x50, 0xc3,
        ];
        assert_eq!(displacements(&code), vec![0, 0x10, 0x50]);
        assert!(displacements(&[]).is_empty());
        assert!(displacements(&[0xff, 0xff]).is_empty());
    }
}
