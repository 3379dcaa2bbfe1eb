//! Learns where a given OpenSSL libssl keeps, inside its private structs, what
//! the agent's BPF programs read from an `SSL *`: the read BIO (for the socket
//! descriptor), the negotiated version, the TLS 1.3 application traffic
//! secrets and the TLS 1.2 master secret.
//!
//! Distro libraries carry no DWARF, so [`calibrate`] loads the very file a
//! target maps, runs real handshakes between a client and a server SSL object
//! over a socketpair, takes the true secrets from the key log callback, and
//! finds them in copies of the objects. Run it in a throw-away process: it
//! loads (and never unloads) the library into the caller.
//!
//! Offsets are relative to the `SSL *` value in every version (in 3.2+ the
//! `SSL_CONNECTION` starts with its `struct ssl_st`).

#![deny(unsafe_code)]

mod cert;
mod error;
#[allow(unsafe_code)] // the one module with FFI and raw reads; see its header
mod ffi;
pub mod fingerprint;
mod keylog;
mod maps;
mod scan;

use std::path::{Path, PathBuf};

pub use error::{CalError, Side};

use ffi::{FdMode, Lib, Pair, TLS1_2_VERSION, TLS1_3_VERSION, TLS1_VERSION, Versions};
use scan::{Method, Observation};

/// Bytes of a BIO_METHOD table copied when looking for its `type` field.
const METHOD_PREFIX: usize = 64;

/// Offsets (in bytes) of the fields the BPF programs read, for one libssl
/// build. The BPF side reads, from the `SSL *` argument of a probe:
/// `*(BIO **)(ssl + ssl_rbio)` = bio; `*(int *)(bio + bio_num)` = socket fd,
/// valid when `*(int *)(*(void **)(bio + bio_method) + bio_method_type) ==
/// bio_type_socket`; `*(int *)(ssl + ssl_version)` (0x0304 = TLS 1.3); for TLS
/// 1.3 the 64-byte arrays at `ssl + ssl_{client,server}_app_secret` (the
/// first hash-length bytes are the secret, 32 or 48 by cipher suite); for TLS
/// 1.2 the 48 bytes at `*(SSL_SESSION **)(ssl + ssl_session) +
/// session_master_key`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SslOffsets {
    /// `OpenSSL_version(OPENSSL_VERSION)` text, for logs.
    pub version: String,
    /// `BIO *rbio` in the object `SSL *` points to.
    pub ssl_rbio: u32,
    /// `const BIO_METHOD *method` in BIO.
    pub bio_method: u32,
    /// `int type` in BIO_METHOD.
    pub bio_method_type: u32,
    /// `int num` in BIO (the descriptor of a socket BIO).
    pub bio_num: u32,
    /// `BIO_method_type` of a socket BIO (BIO_TYPE_SOCKET) as this build reports it.
    pub bio_type_socket: i32,
    /// `int version` in SSL (what `SSL_version()` returns).
    pub ssl_version: u32,
    /// TLS 1.3 `client_app_traffic_secret[EVP_MAX_MD_SIZE]` in SSL.
    pub ssl_client_app_secret: u32,
    /// TLS 1.3 `server_app_traffic_secret[EVP_MAX_MD_SIZE]` in SSL.
    pub ssl_server_app_secret: u32,
    /// `SSL_SESSION *session` in SSL.
    pub ssl_session: u32,
    /// `master_key[]` in SSL_SESSION (the TLS 1.2 master secret).
    pub session_master_key: u32,
    /// Where the handshake's ClientHello random is, which ties an SSL object
    /// whose BIO is not a socket to the connection that carried that
    /// ClientHello. None when this build's could not be found: socket BIOs
    /// are still followed, other BIOs are not.
    #[serde(default)]
    pub ssl_client_random: Option<RandomAt>,
}

/// `client_random[32]` of the SSL object's `s3` state: `at` bytes into the
/// SSL object (3.x embeds `s3`) or, with `via`, `at` bytes into the object
/// whose pointer is `via` bytes into it (1.1.1's `SSL3_STATE *s3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomAt {
    pub via: Option<u32>,
    pub at: u32,
}

/// Bytes copied behind each pointer of an SSL object when looking for the
/// client random in the objects it points to (1.1.1's SSL3_STATE holds it
/// about 200 bytes in).
const POINTEE_WINDOW: usize = 1024;

/// Loads `lib` (a libssl of OpenSSL >= 1.1.1) into this process, learns its
/// offsets from real handshakes and checks them on fresh ones.
///
/// A libssl whose libcrypto the dynamic linker does not find (vendored pairs,
/// as in Python wheels, carry no RUNPATH) gets the `libcrypto*` files of its
/// own directory loaded first; [`calibrate_with`] names them instead.
pub fn calibrate(lib: &Path) -> Result<SslOffsets, CalError> {
    match open(lib) {
        Err(first @ CalError::Load { .. }) => {
            let siblings = sibling_libcrypto(lib);
            // Best effort: one that fails to load cannot be the dependency.
            let loaded = siblings.iter().filter(|p| ffi::preload(p).is_ok()).count();
            if loaded == 0 {
                return Err(first);
            }
            calibrate_lib(&open(lib)?)
        }
        opened => calibrate_lib(&opened?),
    }
}

/// [`calibrate`] after loading `preload` (e.g. the libcrypto the target
/// process maps, from its `/proc/PID/maps`) so libssl's DT_NEEDED resolve to it.
pub fn calibrate_with(lib: &Path, preload: &[PathBuf]) -> Result<SslOffsets, CalError> {
    for dep in preload {
        ffi::preload(dep)?;
    }
    calibrate_lib(&open(lib)?)
}

/// Shared `libcrypto*.so*` files beside `lib`, sorted.
fn sibling_libcrypto(lib: &Path) -> Vec<PathBuf> {
    let Some(entries) = lib.parent().and_then(|d| std::fs::read_dir(d).ok()) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("libcrypto") && n.contains(".so")
            })
        })
        .take(16)
        .collect();
    found.sort();
    found
}

fn calibrate_lib(lib: &Lib) -> Result<SslOffsets, CalError> {
    let identity = cert::generate()?;
    // Client and server ranges differ so that the SSL's own min/max version
    // fields never hold the negotiated version on both ends of every pair.
    let any = Versions {
        min: TLS1_VERSION,
        max: 0,
    };
    let upto12 = Versions {
        min: TLS1_VERSION,
        max: TLS1_2_VERSION,
    };
    let rounds = [
        (any, any, true, 700),
        (upto12, any, false, 730),
        (any, any, true, 760),
        (upto12, any, false, 790),
    ];
    let mut obs = Vec::with_capacity(rounds.len() * 2);
    for (client_v, server_v, tls13, fd_base) in rounds {
        let _ = ffi::take_keylog();
        let pair = Pair::new(lib, &identity, client_v, server_v, FdMode::Split, fd_base)?;
        pair.run()?;
        let log = ffi::take_keylog();
        let maps = current_maps()?;
        for end in [&pair.client, &pair.server] {
            obs.push(observe(end, tls13, &log, &maps)?);
        }
    }
    let maps = current_maps()?;
    let [socket, mem] = lib.bio_methods()?;
    let method = |(addr, ty): (usize, i32)| -> Result<Method, CalError> {
        Ok(Method {
            addr,
            bytes: ffi::static_bytes(&maps, addr, METHOD_PREFIX, "BIO_METHOD")?,
            ty,
        })
    };
    let offsets = scan::solve(lib.version.clone(), &obs, &method(socket)?, &method(mem)?)?;
    verify_with(lib, &identity, &offsets)?;
    Ok(offsets)
}

/// Checks `offsets` against `lib` with fresh TLS 1.3 and TLS 1.2 handshakes
/// whose SSL objects use one socket BIO for both directions (`SSL_set_fd`),
/// reading memory the way the BPF programs do.
pub fn verify(lib: &Path, offsets: &SslOffsets) -> Result<(), CalError> {
    let lib = open(lib)?;
    verify_with(&lib, &cert::generate()?, offsets)
}

fn open(path: &Path) -> Result<Lib, CalError> {
    let lib = Lib::open(path)?;
    // BoringSSL and LibreSSL export the same names but differ in layouts
    // and (BoringSSL) in how they allocate, which the bounded reads rely on.
    if !lib.version.starts_with("OpenSSL ") {
        return Err(CalError::Unsupported {
            version: lib.version,
            reason: "not OpenSSL",
        });
    }
    Ok(lib)
}

fn current_maps() -> Result<Vec<maps::Mapping>, CalError> {
    maps::current().map_err(|source| CalError::Socket {
        step: "reading /proc/self/maps",
        source,
    })
}

/// The key log secrets of one SSL object.
fn secrets_of(end: &ffi::End<'_>, log: &[(usize, String)]) -> Result<keylog::Secrets, CalError> {
    let lines = log
        .iter()
        .filter(|(ssl, _)| *ssl == end.addr())
        .map(|(_, l)| l.as_str());
    keylog::secrets(lines).map_err(|problem| CalError::Keylog {
        side: end.side,
        problem,
    })
}

fn observe(
    end: &ffi::End<'_>,
    tls13: bool,
    log: &[(usize, String)],
    maps: &[maps::Mapping],
) -> Result<Observation, CalError> {
    let version = end.version();
    let expected = if tls13 {
        TLS1_3_VERSION
    } else {
        TLS1_2_VERSION
    };
    if version != expected {
        return Err(CalError::Verification {
            field: "negotiated version",
            problem: format!(
                "{} negotiated {version:#x}, expected {expected:#x}",
                end.side
            ),
        });
    }
    let (rbio_addr, bio_type) = end.rbio()?;
    let (session_addr, api_master) = end.session()?;
    let secrets = secrets_of(end, log)?;
    let ssl = end.ssl_bytes(maps)?;
    let pointees = ffi::pointees(maps, &ssl, POINTEE_WINDOW);
    if let Some(m) = secrets.master.as_ref().filter(|m| **m != api_master) {
        return Err(CalError::Keylog {
            side: end.side,
            problem: format!(
                "CLIENT_RANDOM secret ({} bytes) differs from SSL_SESSION_get_master_key",
                m.len()
            ),
        });
    }
    Ok(Observation {
        side: end.side,
        tls13,
        ssl,
        pointees,
        client_random: end.client_random()?,
        version,
        rbio_addr,
        rbio: end.rbio_bytes(maps)?,
        rfd: end.rfd,
        bio_type,
        session_addr,
        session: end.session_bytes(maps)?,
        secrets,
    })
}

/// `len` bytes at `at` in a copied object, or a verification error.
fn field<'a>(
    bytes: &'a [u8],
    at: u32,
    len: usize,
    field: &'static str,
) -> Result<&'a [u8], CalError> {
    let start = at as usize;
    bytes
        .get(start..start.saturating_add(len))
        .ok_or_else(|| CalError::Verification {
            field,
            problem: format!(
                "offset {at} + {len} is outside the {}-byte object",
                bytes.len()
            ),
        })
}

fn read_u64(bytes: &[u8], at: u32, name: &'static str) -> Result<u64, CalError> {
    let b = field(bytes, at, 8, name)?;
    Ok(u64::from_ne_bytes(b.try_into().unwrap_or_default()))
}

fn read_i32(bytes: &[u8], at: u32, name: &'static str) -> Result<i32, CalError> {
    let b = field(bytes, at, 4, name)?;
    Ok(i32::from_ne_bytes(b.try_into().unwrap_or_default()))
}

fn mismatch(field: &'static str, problem: String) -> CalError {
    CalError::Verification { field, problem }
}

fn verify_with(lib: &Lib, identity: &cert::Identity, o: &SslOffsets) -> Result<(), CalError> {
    let any = Versions {
        min: TLS1_VERSION,
        max: 0,
    };
    let upto12 = Versions {
        min: TLS1_VERSION,
        max: TLS1_2_VERSION,
    };
    for (client_v, tls13, fd_base) in [(any, true, 820), (upto12, false, 850)] {
        let _ = ffi::take_keylog();
        let pair = Pair::new(lib, identity, client_v, any, FdMode::Shared, fd_base)?;
        pair.run()?;
        let log = ffi::take_keylog();
        let maps = current_maps()?;
        for end in [&pair.client, &pair.server] {
            verify_end(lib, end, tls13, &log, &maps, o)?;
        }
    }
    Ok(())
}

/// Follows the offsets from one SSL object like the BPF programs will; each
/// pointer read from memory is compared with what the API returns before the
/// object it points to is read.
fn verify_end(
    lib: &Lib,
    end: &ffi::End<'_>,
    tls13: bool,
    log: &[(usize, String)],
    maps: &[maps::Mapping],
    o: &SslOffsets,
) -> Result<(), CalError> {
    let side = end.side;
    let ssl = end.ssl_bytes(maps)?;
    let version = read_i32(&ssl, o.ssl_version, "ssl_version")?;
    if version != end.version() {
        return Err(mismatch(
            "ssl_version",
            format!(
                "{side}: read {version:#x}, SSL_version {:#x}",
                end.version()
            ),
        ));
    }
    let (rbio_api, _) = end.rbio()?;
    let rbio = read_u64(&ssl, o.ssl_rbio, "ssl_rbio")?;
    if rbio != rbio_api as u64 {
        return Err(mismatch(
            "ssl_rbio",
            format!("{side}: read {rbio:#x}, SSL_get_rbio {rbio_api:#x}"),
        ));
    }
    let bio = end.rbio_bytes(maps)?;
    let method = read_u64(&bio, o.bio_method, "bio_method")?;
    let [(socket_method, _), _] = lib.bio_methods()?;
    if method != socket_method as u64 {
        return Err(mismatch(
            "bio_method",
            format!("{side}: read {method:#x}, BIO_s_socket {socket_method:#x}"),
        ));
    }
    let table = ffi::static_bytes(
        maps,
        socket_method,
        o.bio_method_type as usize + 4,
        "BIO_METHOD",
    )?;
    let ty = read_i32(&table, o.bio_method_type, "bio_method_type")?;
    if ty != o.bio_type_socket {
        return Err(mismatch(
            "bio_method_type",
            format!("{side}: read {ty:#x}, expected {:#x}", o.bio_type_socket),
        ));
    }
    let num = read_i32(&bio, o.bio_num, "bio_num")?;
    if num != end.rfd {
        return Err(mismatch(
            "bio_num",
            format!("{side}: read {num}, descriptor {}", end.rfd),
        ));
    }
    let secrets = secrets_of(end, log)?;
    let expect = |name: &'static str,
                  want: Option<&Vec<u8>>,
                  bytes: &[u8],
                  at: u32|
     -> Result<(), CalError> {
        let want = want.ok_or_else(|| CalError::Keylog {
            side,
            problem: format!("no key log line for {name}"),
        })?;
        if field(bytes, at, want.len(), name)? != want.as_slice() {
            return Err(mismatch(
                name,
                format!("{side}: bytes at {at} differ from the key log's secret"),
            ));
        }
        Ok(())
    };
    if tls13 {
        expect(
            "ssl_client_app_secret",
            secrets.client_app.as_ref(),
            &ssl,
            o.ssl_client_app_secret,
        )?;
        expect(
            "ssl_server_app_secret",
            secrets.server_app.as_ref(),
            &ssl,
            o.ssl_server_app_secret,
        )?;
    } else {
        let (session_api, _) = end.session()?;
        let session = read_u64(&ssl, o.ssl_session, "ssl_session")?;
        if session != session_api as u64 {
            return Err(mismatch(
                "ssl_session",
                format!("{side}: read {session:#x}, SSL_get_session {session_api:#x}"),
            ));
        }
        expect(
            "session_master_key",
            secrets.master.as_ref(),
            &end.session_bytes(maps)?,
            o.session_master_key,
        )?;
    }
    if let Some(r) = o.ssl_client_random {
        let api = end.client_random()?;
        let read = match r.via {
            None => field(&ssl, r.at, api.len(), "ssl_client_random")?.to_vec(),
            Some(via) => {
                let base = read_u64(&ssl, via, "ssl_client_random")?;
                usize::try_from(base)
                    .ok()
                    .and_then(|b| b.checked_add(r.at as usize))
                    .and_then(|addr| ffi::read_mem(addr, api.len()))
                    .unwrap_or_default()
            }
        };
        if read != api {
            return Err(mismatch(
                "ssl_client_random",
                format!("{side}: bytes at {r:?} differ from SSL_get_client_random"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(unsafe_code)] // the tests read memory at the offsets by hand
mod tests;
