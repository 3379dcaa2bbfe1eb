//! The analysis on Go binaries built here by the lab's Go (scripts/lab.sh):
//! one with symbols and DWARF, the same stripped (`-ldflags=-s -w`), and
//! one without crypto/tls.

use std::path::{Path, PathBuf};
use std::process::Command;

use ratatosk_goinfo::{GoTlsError, Source, analyze, pclntab::Pclntab, table_layout};

const TLS_SRC: &str = r#"package main

import (
	"crypto/tls"
	"os"
)

func main() {
	c, err := tls.Dial("tcp", os.Args[1], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		panic(err)
	}
	c.Write([]byte("x"))
	b := make([]byte, 10)
	c.Read(b)
}
"#;

const PLAIN_SRC: &str = r#"package main

import "fmt"

func main() { fmt.Println("hello") }
"#;

fn build(dir: &Path, name: &str, src: &str, ldflags: &str) -> PathBuf {
    let lab = std::env::var("RATATOSK_LAB").unwrap_or_else(|_| "/opt/ratatosk-lab".into());
    let go = Path::new(&lab).join("bin/go");
    assert!(
        go.is_file(),
        "{} is missing: run scripts/lab.sh",
        go.display()
    );
    let src_file = dir.join(format!("{name}.go"));
    std::fs::write(&src_file, src).unwrap();
    let out = dir.join(name);
    let status = Command::new(&go)
        .current_dir(dir)
        .args(["build", "-ldflags", ldflags, "-o"])
        .arg(&out)
        .arg(&src_file)
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", Path::new(&lab).join("gocache"))
        .env("HOME", dir)
        .status()
        .expect("run go build");
    assert!(status.success(), "go build failed");
    out
}

fn tmp() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ratatosk-goinfo-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn symbols_and_stripped_agree_and_dwarf_matches_the_table() {
    let dir = tmp();
    let full = build(&dir, "tlsfull", TLS_SRC, "");
    let stripped = build(&dir, "tlsstripped", TLS_SRC, "-s -w");
    let a = analyze(&std::fs::read(&full).unwrap()).unwrap();
    let b = analyze(&std::fs::read(&stripped).unwrap()).unwrap();
    eprintln!("{a:?}\n{b:?}");
    assert_eq!(a.functions_from, Source::Symbols);
    assert_eq!(a.layout_from, Source::Symbols);
    assert_eq!(b.functions_from, Source::Fallback);
    assert_eq!(b.layout_from, Source::Fallback);
    assert_eq!(
        Some(a.layout),
        table_layout(a.version),
        "DWARF layout differs from the table"
    );
    assert_eq!(a.version, b.version);
    assert!(!a.read_returns.is_empty());
    // Same code: the same number of returns at the same distances from
    // the entry (-s -w changes no code, only what follows it).
    let rel = |g: &ratatosk_goinfo::GoTls| {
        g.read_returns
            .iter()
            .map(|r| r - g.read_entry)
            .collect::<Vec<_>>()
    };
    assert_eq!(rel(&a), rel(&b));
    for r in &a.read_returns {
        assert_eq!(
            std::fs::read(&full).unwrap()[*r as usize] & 0xfe,
            0xc2,
            "RET opcode"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn symbols_and_pclntab_name_the_same_addresses() {
    let dir = tmp().join("pcln");
    std::fs::create_dir_all(&dir).unwrap();
    let full = build(&dir, "tlsfull", TLS_SRC, "");
    let data = std::fs::read(&full).unwrap();
    let elf = object::File::parse(&*data).unwrap();
    use object::{Object, ObjectSection, ObjectSymbol};
    let pcln = elf.section_by_name(".gopclntab").unwrap().data().unwrap();
    let tab = Pclntab::parse(pcln).unwrap();
    // Recent linkers leave textStart to a relocation: the .text address.
    let text = match tab.text_start {
        0 => elf.section_by_name(".text").unwrap().address(),
        t => t,
    };
    for name in [
        ratatosk_goinfo::READ_FUNC,
        ratatosk_goinfo::WRITE_FUNC,
        "main.main",
    ] {
        let sym = elf.symbols().find(|s| s.name() == Ok(name)).unwrap();
        let f = tab.find(name, text).unwrap();
        assert_eq!(f.entry, sym.address(), "{name}");
        assert!(f.end >= sym.address() + sym.size(), "{name}");
    }
    // Any prefix of the real table parses or fails cleanly.
    for n in (0..pcln.len()).step_by(pcln.len() / 997 + 1) {
        if let Ok(t) = Pclntab::parse(&pcln[..n]) {
            let _ = t.find(ratatosk_goinfo::READ_FUNC, t.text_start);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_go_binary_without_tls_and_broken_files_are_errors() {
    let dir = tmp().join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    let plain = build(&dir, "plain", PLAIN_SRC, "-s -w");
    let err = analyze(&std::fs::read(&plain).unwrap()).unwrap_err();
    assert!(matches!(err, GoTlsError::NoCryptoTls), "{err}");
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(matches!(analyze(&me).unwrap_err(), GoTlsError::NotGo));
    // Truncated Go binaries: errors, never panics.
    let data = std::fs::read(build(&dir, "tls", TLS_SRC, "-s -w")).unwrap();
    for n in (0..data.len()).step_by(data.len() / 199 + 1) {
        assert!(analyze(&data[..n]).is_err());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
