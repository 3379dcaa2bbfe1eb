//! Calibration against real libraries installed on this machine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::*;

/// Debian 12's OpenSSL 3.0 (package libssl3).
const SYSTEM_LIBSSL: &str = "/usr/lib/x86_64-linux-gnu/libssl.so.3";

fn require(path: &str) -> &Path {
    let p = Path::new(path);
    assert!(
        p.exists(),
        "{path} is missing: install it (see the crate's tests)"
    );
    p
}

/// Reads a `T` at `addr` after checking that `[addr, addr + size_of T)` lies
/// inside the object `[base, base + len)` that the API handed out.
#[allow(unsafe_code)]
fn read_in<T: Copy>(base: usize, len: usize, off: u32, what: &str) -> T {
    let size = std::mem::size_of::<T>();
    assert!(
        off as usize + size <= len,
        "{what}: offset {off} outside the {len}-byte object"
    );
    // SAFETY: the range was just checked to lie in a live object whose size
    // the test took from malloc_usable_size or the mapping.
    unsafe { std::ptr::read_unaligned((base + off as usize) as *const T) }
}

#[allow(unsafe_code)]
fn usable(addr: usize) -> usize {
    // SAFETY: addr is an object OpenSSL allocated with malloc, returned by
    // its API (SSL_new, SSL_get_rbio, SSL_get_session).
    unsafe { libc::malloc_usable_size(addr as *mut std::ffi::c_void) }
}

/// An independent handshake pair (one socket BIO per SSL, as applications
/// use), read with plain pointer reads at the calibrated offsets.
fn check_offsets_by_hand(path: &Path, o: &SslOffsets) {
    let lib = open(path).unwrap();
    let id = cert::generate().unwrap();
    let any = Versions {
        min: TLS1_VERSION,
        max: 0,
    };
    let upto12 = Versions {
        min: TLS1_VERSION,
        max: TLS1_2_VERSION,
    };
    let [(socket_method, socket_type), _] = lib.bio_methods().unwrap();
    for (client_v, tls13) in [(any, true), (upto12, false)] {
        let _ = ffi::take_keylog();
        let pair = Pair::new(&lib, &id, client_v, any, FdMode::Shared, 900).unwrap();
        pair.run().unwrap();
        let log = ffi::take_keylog();
        for end in [&pair.client, &pair.server] {
            let ssl = end.addr();
            let ssl_len = usable(ssl);
            let version: i32 = read_in(ssl, ssl_len, o.ssl_version, "version");
            assert_eq!(version, if tls13 { 0x304 } else { 0x303 }, "{}", end.side);
            let bio: usize = read_in(ssl, ssl_len, o.ssl_rbio, "rbio");
            assert_eq!(bio, end.rbio().unwrap().0, "{} rbio", end.side);
            let method: usize = read_in(bio, usable(bio), o.bio_method, "method");
            assert_eq!(method, socket_method, "{} BIO method", end.side);
            let ty: i32 = read_in(
                method,
                o.bio_method_type as usize + 4,
                o.bio_method_type,
                "type",
            );
            assert_eq!((ty, ty), (socket_type, o.bio_type_socket));
            let fd: i32 = read_in(bio, usable(bio), o.bio_num, "num");
            assert_eq!(fd, end.rfd, "{} fd", end.side);
            let secrets = secrets_of(end, &log).unwrap();
            let bytes_at = |base: usize, len: usize, off: u32, n: usize| -> Vec<u8> {
                (0..n as u32)
                    .map(|i| read_in::<u8>(base, len, off + i, "secret"))
                    .collect()
            };
            if tls13 {
                let c = secrets.client_app.unwrap();
                let s = secrets.server_app.unwrap();
                assert_eq!(
                    bytes_at(ssl, ssl_len, o.ssl_client_app_secret, c.len()),
                    c,
                    "{}",
                    end.side
                );
                assert_eq!(
                    bytes_at(ssl, ssl_len, o.ssl_server_app_secret, s.len()),
                    s,
                    "{}",
                    end.side
                );
            } else {
                let session: usize = read_in(ssl, ssl_len, o.ssl_session, "session");
                assert_eq!(session, end.session().unwrap().0, "{} session", end.side);
                let m = secrets.master.unwrap();
                assert_eq!(m.len(), 48);
                assert_eq!(
                    bytes_at(session, usable(session), o.session_master_key, 48),
                    m,
                    "{}",
                    end.side
                );
            }
            let random = o.ssl_client_random.expect("client random found");
            let base = match random.via {
                None => ssl,
                Some(via) => read_in::<usize>(ssl, ssl_len, via, "s3"),
            };
            let read = ffi::read_mem(base + random.at as usize, 32).unwrap();
            assert_eq!(read, end.client_random().unwrap(), "{} random", end.side);
        }
    }
}

#[test]
fn calibrates_the_system_libssl3_and_a_fresh_handshake_reads_the_secrets() {
    let path = require(SYSTEM_LIBSSL);
    let start = Instant::now();
    let o = calibrate(path).unwrap();
    let took = start.elapsed();
    println!("calibrate({SYSTEM_LIBSSL}) took {took:?}: {o:?}");
    assert!(o.version.starts_with("OpenSSL 3.0."), "{}", o.version);
    assert_eq!(o.bio_type_socket, 0x505);
    // Second run in the same process: same answer (nothing cached).
    assert_eq!(calibrate(path).unwrap(), o);
    check_offsets_by_hand(path, &o);
    assert!(took.as_millis() < 1000, "calibration took {took:?}");
}

#[test]
fn offsets_round_trip_as_one_json_line() {
    let o = SslOffsets {
        version: "OpenSSL 3.0.19 27 Jan 2026".into(),
        ssl_rbio: 16,
        bio_method: 8,
        bio_method_type: 0,
        bio_num: 56,
        bio_type_socket: 0x505,
        ssl_version: 0,
        ssl_client_app_secret: 1000,
        ssl_server_app_secret: 1064,
        ssl_session: 1200,
        session_master_key: 80,
        ssl_client_random: Some(RandomAt {
            via: Some(168),
            at: 184,
        }),
    };
    let line = serde_json::to_string(&o).unwrap();
    assert!(!line.contains('\n'));
    assert_eq!(serde_json::from_str::<SslOffsets>(&line).unwrap(), o);
    // Written by an agent that knew no client random field: None.
    let mut old = o.clone();
    old.ssl_client_random = None;
    let older = serde_json::to_string(&old)
        .unwrap()
        .replace(",\"ssl_client_random\":null", "");
    assert!(!older.contains("client_random"), "{older}");
    assert_eq!(serde_json::from_str::<SslOffsets>(&older).unwrap(), old);
    let extra = line.replace("}}", "},\"x\":1}");
    assert!(serde_json::from_str::<SslOffsets>(&extra).is_err());
}

#[test]
fn a_file_that_is_not_a_library_is_a_load_error() {
    let dir = std::env::temp_dir().join(format!("sslcal-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("not-a-library.so");
    std::fs::write(&text, b"this is not ELF\n").unwrap();
    for path in [text.clone(), PathBuf::from("/nonexistent/libssl.so.3")] {
        let err = calibrate(&path).unwrap_err();
        assert!(matches!(err, CalError::Load { .. }), "{path:?}: {err}");
        println!("{path:?}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn libraries_without_openssl_symbols_are_refused_by_name() {
    for path in [
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        // NSS's libssl: an SSL library with other names.
        "/usr/lib/x86_64-linux-gnu/libssl3.so",
    ] {
        let err = calibrate(require(path)).unwrap_err();
        println!("{path}: {err}");
        assert!(
            matches!(
                err,
                CalError::MissingSymbol {
                    symbol: "OpenSSL_version",
                    ..
                }
            ),
            "{path}: {err}"
        );
    }
}

/// The libssl installed by `scripts/fetch-wheel-libssl.sh` under `dir`.
fn wheel_libssl(dir: &str) -> PathBuf {
    // Installed by scripts/lab.sh (crates/sslcal/scripts/fetch-wheel-libssl.sh).
    let lab = std::env::var_os("RATATOSK_LAB").unwrap_or_else(|| "/opt/ratatosk-lab".into());
    let base = Path::new(&lab).join("sslcal-libs").join(dir);
    let found = std::fs::read_dir(&base).ok().and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libssl-"))
        })
    });
    found.unwrap_or_else(|| panic!("no libssl in {base:?}: run scripts/lab.sh (it fetches them)"))
}

#[test]
fn calibrates_openssl_1_1_1_and_3_5_from_wheels() {
    for (dir, prefix) in [
        ("openssl-1.1.1", "OpenSSL 1.1.1"),
        ("openssl-3.5", "OpenSSL 3.5."),
    ] {
        let path = wheel_libssl(dir);
        let start = Instant::now();
        let o = calibrate(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let took = start.elapsed();
        println!("calibrate({path:?}) took {took:?}: {o:?}");
        assert!(o.version.starts_with(prefix), "{}", o.version);
        check_offsets_by_hand(&path, &o);
    }
}

#[test]
fn verify_rejects_wrong_or_absurd_offsets_without_crashing() {
    let path = require(SYSTEM_LIBSSL);
    let good = calibrate(path).unwrap();
    verify(path, &good).unwrap();
    type Break = fn(&mut SslOffsets);
    let cases: [(&str, Break); 7] = [
        // (+8 would be wbio, the same BIO when SSL_set_fd is used.)
        ("ssl_rbio", |o| o.ssl_rbio += 16),
        ("bio_num", |o| o.bio_num += 4),
        ("ssl_client_app_secret", |o| o.ssl_client_app_secret += 1),
        ("session_master_key", |o| o.session_master_key = u32::MAX),
        ("bio_method_type", |o| o.bio_type_socket = 0x401),
        ("ssl_version", |o| o.ssl_version = 1 << 30),
        ("ssl_client_random", |o| {
            if let Some(r) = o.ssl_client_random.as_mut() {
                r.at += 1;
            }
        }),
    ];
    for (field, break_it) in cases {
        let mut bad = good.clone();
        break_it(&mut bad);
        let err = verify(path, &bad).unwrap_err();
        println!("{field}: {err}");
        assert!(
            matches!(err, CalError::Verification { field: f, .. } if f == field),
            "{field}: {err}"
        );
    }
}

/// The libcrypto installed beside a wheel's libssl.
fn wheel_libcrypto(dir: &str) -> PathBuf {
    let ssl = wheel_libssl(dir);
    let base = ssl.parent().expect("wheel dir").to_path_buf();
    let found = std::fs::read_dir(&base).ok().and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libcrypto-"))
        })
    });
    found.unwrap_or_else(|| panic!("no libcrypto in {base:?}: run scripts/lab.sh"))
}

/// Node's executable links OpenSSL 3.0 statically: its accessors use the
/// offsets of Debian's libssl 3.0 and not those of 1.1.1 or 3.5.
#[test]
fn accessor_fingerprints_tell_layouts_apart() {
    use fingerprint::{Fingerprint, rodata_contains};
    let system = Fingerprint::of(&[
        require(SYSTEM_LIBSSL),
        require("/usr/lib/x86_64-linux-gnu/libcrypto.so.3"),
    ])
    .unwrap();
    let node = Path::new("/usr/bin/node");
    let in_node = Fingerprint::of(&[require("/usr/bin/node")]).unwrap();
    assert_eq!(
        system.differs_from(&in_node),
        None,
        "{system:?}\n{in_node:?}"
    );
    let version = calibrate(require(SYSTEM_LIBSSL)).unwrap().version;
    assert!(
        rodata_contains(node, version.as_bytes()).unwrap(),
        "{version}"
    );
    assert!(!rodata_contains(node, b"OpenSSL 9.9.9 never").unwrap());
    for dir in ["openssl-1.1.1", "openssl-3.5"] {
        let other = Fingerprint::of(&[&wheel_libssl(dir), &wheel_libcrypto(dir)]).unwrap();
        let field = system.differs_from(&other);
        println!("{dir}: first accessor that differs: {field:?}");
        assert!(field.is_some(), "{dir}");
    }
    // Not OpenSSL at all.
    assert!(Fingerprint::of(&[require("/usr/lib/x86_64-linux-gnu/libz.so.1")]).is_err());
}
