//! What a process is written in, told from outside: its executable name,
//! the libraries it mapped, and the Go build information the Go linker
//! writes into every Go binary. Pure functions over what /proc and the
//! executable give, so they are tested on fixtures.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Go,
    Java,
    NodeJs,
    Python,
    Ruby,
    Php,
    DotNet,
}

impl Language {
    /// `telemetry.sdk.language` value (semconv's well-known list).
    pub fn sdk_language(self) -> &'static str {
        match self {
            Language::Go => "go",
            Language::Java => "java",
            Language::NodeJs => "nodejs",
            Language::Python => "python",
            Language::Ruby => "ruby",
            Language::Php => "php",
            Language::DotNet => "dotnet",
        }
    }

    /// `process.runtime.name`, as that language's OpenTelemetry SDK would
    /// report it where it can be told from outside (the JVM's vendor
    /// string cannot, so Java says `java`).
    pub fn runtime_name(self) -> &'static str {
        match self {
            Language::Go => "go",
            Language::Java => "java",
            Language::NodeJs => "nodejs",
            Language::Python => "cpython",
            Language::Ruby => "ruby",
            Language::Php => "php",
            Language::DotNet => "dotnet",
        }
    }
}

/// From the executable's file name: interpreters and launchers named
/// after their runtime (`python3.11`, `node`, `java`, `php-fpm8.2`, …).
pub fn from_exe_name(name: &str) -> Option<Language> {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    match base {
        "python" | "pypy" => Some(Language::Python),
        "node" | "nodejs" => Some(Language::NodeJs),
        "java" => Some(Language::Java),
        "ruby" => Some(Language::Ruby),
        "dotnet" => Some(Language::DotNet),
        _ if base == "php" || base.starts_with("php-") || base.starts_with("php-fpm") => {
            Some(Language::Php)
        }
        _ => None,
    }
}

/// From /proc/PID/maps text: a runtime embedded as a shared library
/// (`libpython3.11.so`, `libjvm.so`, `libruby.so`, `libphp.so` in Apache,
/// `libcoreclr.so`, `libnode.so`).
pub fn from_maps(maps: &str) -> Option<Language> {
    for line in maps.lines() {
        // address perms offset dev inode pathname
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let file = path.rsplit('/').next().unwrap_or(path);
        let lang = if file.starts_with("libpython") {
            Language::Python
        } else if file == "libjvm.so" {
            Language::Java
        } else if file.starts_with("libruby") {
            Language::Ruby
        } else if file.starts_with("libphp") {
            Language::Php
        } else if file == "libcoreclr.so" {
            Language::DotNet
        } else if file.starts_with("libnode.so") {
            Language::NodeJs
        } else {
            continue;
        };
        return Some(lang);
    }
    None
}

/// Magic at the start of Go's build information (`runtime/debug`
/// `ReadBuildInfo` finds it the same way).
use ratatosk_goinfo::buildinfo::MAGIC as GO_BUILDINFO_MAGIC;
/// How much of an executable without section headers is scanned for the
/// magic (the build info sits in the data segment, near the start).
const GO_SCAN_LIMIT: u64 = 64 << 20;
/// Section header tables larger than this are not believed.
const MAX_SECTION_TABLE: u64 = 1 << 20;

/// Whether the ELF file holds Go build information: a `.go.buildinfo`
/// section (kept by `strip` and `-ldflags=-s`), else the magic itself,
/// 16-byte aligned, in the first 64 MiB.
pub fn is_go_binary<R: Read + Seek>(f: &mut R) -> bool {
    match go_section_offset(f) {
        Some(Some(off)) => {
            let mut magic = [0u8; 14];
            f.seek(SeekFrom::Start(off)).is_ok()
                && f.read_exact(&mut magic).is_ok()
                && magic == GO_BUILDINFO_MAGIC
        }
        // A valid ELF file whose section table names no such section.
        Some(None) => false,
        // No usable section table: scan.
        None => scan_for_magic(f),
    }
}

pub fn is_go_executable(path: &Path) -> bool {
    File::open(path).is_ok_and(|mut f| is_go_binary(&mut f))
}

fn u16_at(b: &[u8], at: usize, le: bool) -> Option<u16> {
    let a: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if le {
        u16::from_le_bytes(a)
    } else {
        u16::from_be_bytes(a)
    })
}

fn u32_at(b: &[u8], at: usize, le: bool) -> Option<u32> {
    let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if le {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    })
}

fn u64_at(b: &[u8], at: usize, le: bool) -> Option<u64> {
    let a: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(if le {
        u64::from_le_bytes(a)
    } else {
        u64::from_be_bytes(a)
    })
}

/// `Some(Some(file offset))` of `.go.buildinfo`, `Some(None)` when the
/// section table is readable and has none, `None` when it is not readable
/// (not ELF, or headers stripped).
fn go_section_offset<R: Read + Seek>(f: &mut R) -> Option<Option<u64>> {
    let mut eh = [0u8; 64];
    f.seek(SeekFrom::Start(0)).ok()?;
    f.read_exact(&mut eh[..52]).ok()?;
    if eh.get(..4)? != b"\x7fELF" {
        return None;
    }
    let is64 = *eh.get(4)? == 2;
    let le = *eh.get(5)? == 1;
    if is64 {
        f.read_exact(&mut eh[52..64]).ok()?;
    }
    // Offsets of e_shoff, e_shentsize, e_shnum, e_shstrndx per class.
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (
            u64_at(&eh, 0x28, le)?,
            u16_at(&eh, 0x3A, le)?,
            u16_at(&eh, 0x3C, le)?,
            u16_at(&eh, 0x3E, le)?,
        )
    } else {
        (
            u64::from(u32_at(&eh, 0x20, le)?),
            u16_at(&eh, 0x2E, le)?,
            u16_at(&eh, 0x30, le)?,
            u16_at(&eh, 0x32, le)?,
        )
    };
    let table_len = u64::from(shentsize) * u64::from(shnum);
    if shoff == 0 || shnum == 0 || table_len > MAX_SECTION_TABLE {
        return None;
    }
    let mut table = vec![0u8; usize::try_from(table_len).ok()?];
    f.seek(SeekFrom::Start(shoff)).ok()?;
    f.read_exact(&mut table).ok()?;
    let ent = usize::from(shentsize);
    // (sh_name, sh_offset, sh_size) of section i.
    let section = |i: usize| -> Option<(u32, u64, u64)> {
        let base = i.checked_mul(ent)?;
        if is64 {
            Some((
                u32_at(&table, base, le)?,
                u64_at(&table, base + 0x18, le)?,
                u64_at(&table, base + 0x20, le)?,
            ))
        } else {
            Some((
                u32_at(&table, base, le)?,
                u64::from(u32_at(&table, base + 0x10, le)?),
                u64::from(u32_at(&table, base + 0x14, le)?),
            ))
        }
    };
    let (_, str_off, str_size) = section(usize::from(shstrndx))?;
    if str_size > MAX_SECTION_TABLE {
        return None;
    }
    let mut names = vec![0u8; usize::try_from(str_size).ok()?];
    f.seek(SeekFrom::Start(str_off)).ok()?;
    f.read_exact(&mut names).ok()?;
    for i in 0..usize::from(shnum) {
        let Some((name, off, _)) = section(i) else {
            continue;
        };
        let name = names.get(name as usize..).unwrap_or_default();
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        if name.get(..end) == Some(b".go.buildinfo".as_slice()) {
            return Some(Some(off));
        }
    }
    Some(None)
}

fn scan_for_magic<R: Read + Seek>(f: &mut R) -> bool {
    if f.seek(SeekFrom::Start(0)).is_err() {
        return false;
    }
    let mut chunk = vec![0u8; 1 << 20];
    let mut pos: u64 = 0;
    while pos < GO_SCAN_LIMIT {
        // Fill the whole chunk (reads may come short) so every chunk but
        // the last starts and ends on a 16-byte boundary: the aligned
        // magic then never straddles two chunks.
        let mut filled = 0;
        while filled < chunk.len() {
            match f.read(chunk.get_mut(filled..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let data = chunk.get(..filled).unwrap_or_default();
        let found = data
            .chunks(16)
            .any(|c| c.get(..GO_BUILDINFO_MAGIC.len()) == Some(GO_BUILDINFO_MAGIC));
        if found {
            return true;
        }
        if filled < chunk.len() {
            return false;
        }
        pos += filled as u64;
    }
    false
}

/// The language of a process from the three clues, cheapest first.
pub fn detect(exe_name: &str, exe_path: &Path, maps: Option<&str>) -> Option<Language> {
    from_exe_name(exe_name)
        .or_else(|| maps.and_then(from_maps))
        .or_else(|| is_go_executable(exe_path).then_some(Language::Go))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn names_of_interpreters() {
        assert_eq!(from_exe_name("python3.11"), Some(Language::Python));
        assert_eq!(from_exe_name("python3"), Some(Language::Python));
        assert_eq!(from_exe_name("node"), Some(Language::NodeJs));
        assert_eq!(from_exe_name("java"), Some(Language::Java));
        assert_eq!(from_exe_name("ruby3.1"), Some(Language::Ruby));
        assert_eq!(from_exe_name("php-fpm8.2"), Some(Language::Php));
        assert_eq!(from_exe_name("php"), Some(Language::Php));
        assert_eq!(from_exe_name("dotnet"), Some(Language::DotNet));
        assert_eq!(from_exe_name("nginx"), None);
        assert_eq!(from_exe_name("pythonista"), None);
    }

    #[test]
    fn libraries_in_maps() {
        // A uwsgi embedding Python, as /proc/PID/maps shows it.
        let maps = "55d0c0a00000-55d0c0a2f000 r--p 00000000 08:01 1311 /usr/bin/uwsgi-core\n\
7f3a1c000000-7f3a1c021000 rw-p 00000000 00:00 0 \n\
7f3a1d200000-7f3a1d26e000 r--p 00000000 08:01 2222 /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0\n\
7ffd5e1f0000-7ffd5e211000 rw-p 00000000 00:00 0                          [stack]\n";
        assert_eq!(from_maps(maps), Some(Language::Python));
        let jvm = "7f00 r-xp 0 08:01 5 /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so\n";
        assert_eq!(from_maps(jvm), Some(Language::Java));
        let apache = "7f00 r-xp 0 08:01 5 /usr/lib/apache2/modules/libphp8.2.so\n";
        assert_eq!(from_maps(apache), Some(Language::Php));
        let clr = "7f00 r-xp 0 08:01 5 /usr/share/dotnet/shared/Microsoft.NETCore.App/8.0.0/libcoreclr.so\n";
        assert_eq!(from_maps(clr), Some(Language::DotNet));
        assert_eq!(from_maps("7f00 r-xp 0 08:01 5 /usr/lib/libc.so.6\n"), None);
    }

    /// A minimal little-endian ELF64 file with a section table of
    /// (null, .shstrtab, `section`), the last one holding `payload`.
    fn elf64(section: &str, payload: &[u8]) -> Vec<u8> {
        let mut names = b"\0.shstrtab\0".to_vec();
        let name_off = names.len() as u32;
        names.extend_from_slice(section.as_bytes());
        names.push(0);
        let names_off = 64u64;
        let payload_off = 0x100u64;
        let shoff = 0x200u64;
        let mut f = vec![0u8; shoff as usize + 3 * 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little endian
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes()); // e_shoff
        f[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        f[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes()); // e_shnum
        f[0x3E..0x40].copy_from_slice(&1u16.to_le_bytes()); // e_shstrndx
        f[names_off as usize..names_off as usize + names.len()].copy_from_slice(&names);
        f[payload_off as usize..payload_off as usize + payload.len()].copy_from_slice(payload);
        let mut sh = |i: usize, name: u32, off: u64, size: u64| {
            let b = shoff as usize + i * 64;
            f[b..b + 4].copy_from_slice(&name.to_le_bytes()); // sh_name
            f[b + 0x18..b + 0x20].copy_from_slice(&off.to_le_bytes()); // sh_offset
            f[b + 0x20..b + 0x28].copy_from_slice(&size.to_le_bytes()); // sh_size
        };
        sh(1, 1, names_off, names.len() as u64);
        sh(2, name_off, payload_off, payload.len() as u64);
        f
    }

    #[test]
    fn go_build_info_section() {
        let go = elf64(".go.buildinfo", b"\xff Go buildinf:\x08\x02");
        assert!(is_go_binary(&mut Cursor::new(go)));
        let other = elf64(".rodata", b"\xff Go buildinf:\x08\x02");
        assert!(!is_go_binary(&mut Cursor::new(other)));
        // Section present but not holding the magic: not believed.
        let bogus = elf64(".go.buildinfo", b"nothing here");
        assert!(!is_go_binary(&mut Cursor::new(bogus)));
    }

    #[test]
    fn go_magic_without_section_headers() {
        let mut f = vec![0u8; 4096];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[0x7F0..0x7F0 + 14].copy_from_slice(GO_BUILDINFO_MAGIC);
        assert!(is_go_binary(&mut Cursor::new(f.clone())));
        // Unaligned: not the build info.
        let mut g = vec![0u8; 4096];
        g[..4].copy_from_slice(b"\x7fELF");
        g[0x7F3..0x7F3 + 14].copy_from_slice(GO_BUILDINFO_MAGIC);
        assert!(!is_go_binary(&mut Cursor::new(g)));
        assert!(!is_go_binary(&mut Cursor::new(b"#!/bin/sh\n".to_vec())));
    }

    /// Real binaries of the lab: the Go toolchain (a Go program) and this
    /// test binary (Rust).
    #[test]
    fn real_binaries() {
        let lab = std::env::var("RATATOSK_LAB").unwrap_or_else(|_| "/opt/ratatosk-lab".into());
        let go_root = std::process::Command::new(format!("{lab}/bin/go"))
            .args(["env", "GOROOT"])
            .output()
            .expect("the lab's go (scripts/lab.sh) must be installed");
        let root = String::from_utf8(go_root.stdout).unwrap();
        let go = Path::new(root.trim()).join("bin/go");
        assert!(is_go_executable(&go), "{} is a Go binary", go.display());
        let me = std::env::current_exe().unwrap();
        assert!(!is_go_executable(&me));
        assert_eq!(detect("go", &go, None), Some(Language::Go));
    }
}
