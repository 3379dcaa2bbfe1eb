//! Generates the Rust side of bpf/include/abi.h with bindgen into OUT_DIR.

use std::env;
use std::path::PathBuf;

fn main() {
    let root =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("../..");
    let header = root.join("bpf/include/abi.h");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindgen::Builder::default()
        .header(header.to_string_lossy())
        .allowlist_type("rt_.*")
        .allowlist_var("RT_.*")
        .rustified_enum("rt_.*")
        .derive_default(true)
        .derive_debug(true)
        .derive_copy(true)
        .layout_tests(true)
        .use_core()
        .generate()
        .unwrap_or_else(|e| panic!("bindgen on {}: {e}", header.display()))
        .write_to_file(out.join("abi.rs"))
        .expect("write abi.rs");
    println!("cargo:rerun-if-changed={}", header.display());
}
