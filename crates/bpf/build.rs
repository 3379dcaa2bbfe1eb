//! Compiles bpf/src/*.bpf.c with clang into CO-RE objects and generates
//! their libbpf-rs skeletons into OUT_DIR.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const PROGRAMS: &[&str] = &["capture"];

fn main() {
    let root =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("../..");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // libbpf-sys exports the include directory of the libbpf it bundles
    // (bpf_helpers.h & co.): we build against those headers, never the
    // host's older ones.
    let libbpf_include = env::var("DEP_BPF_INCLUDE").expect("libbpf-sys exports DEP_BPF_INCLUDE");
    let clang = env::var("RATATOSK_CLANG").unwrap_or_else(|_| "clang-19".to_string());
    let include = root.join("bpf/include");

    for name in PROGRAMS {
        let src = root.join(format!("bpf/src/{name}.bpf.c"));
        SkeletonBuilder::new()
            .source(&src)
            .obj(out.join(format!("{name}.bpf.o")))
            .clang(&clang)
            .clang_args([
                format!("-I{}", include.display()),
                format!("-I{libbpf_include}"),
                "-D__TARGET_ARCH_x86".to_string(),
                "-O2".to_string(),
                "-g".to_string(),
                "-Wall".to_string(),
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building bpf/src/{name}.bpf.c failed: {e:#}"));
        println!("cargo:rerun-if-changed={}", src.display());
    }
    println!("cargo:rerun-if-changed={}", include.display());
    println!("cargo:rerun-if-env-changed=RATATOSK_CLANG");
}
