//! All unsafe code of the crate: loading libssl, driving handshakes through
//! its exported functions, and copying bytes out of its objects.
//!
//! Reads are bounded: heap objects by `malloc_usable_size` of pointers the
//! library's own API returned (never of pointers read from memory), static
//! ones by the readable mapping that holds them.

use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_int, c_long, c_void};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::error::{CalError, Side};
use crate::maps;

/// Constants from OpenSSL's public headers (same values in 1.1.1 and 3.x).
const SSL_CTRL_SET_MIN_PROTO_VERSION: c_int = 123;
const SSL_CTRL_SET_MAX_PROTO_VERSION: c_int = 124;
const SSL_ERROR_WANT_READ: c_int = 2;
const SSL_ERROR_WANT_WRITE: c_int = 3;
const EVP_PKEY_EC: c_int = 408;
const OPENSSL_VERSION: c_int = 0;
pub(crate) const TLS1_VERSION: c_int = 0x0301;
pub(crate) const TLS1_2_VERSION: c_int = 0x0303;
pub(crate) const TLS1_3_VERSION: c_int = 0x0304;

/// Upper bound on an object we copy: OpenSSL's largest (`SSL`) is a few KiB.
const MAX_OBJECT: usize = 1 << 20;
/// Handshake/read steps per side before giving up (a handshake needs < 10).
const MAX_STEPS: usize = 64;
/// Key log lines kept per thread between two drains (a pair logs about 12).
const MAX_KEYLOG_LINES: usize = 256;

type Ptr = *mut c_void;

/// The exported functions used, resolved once. The C prototypes are those of
/// OpenSSL 1.1.1 and 3.x; libcrypto's are found through libssl's DT_NEEDED.
struct Fns {
    openssl_version: unsafe extern "C" fn(c_int) -> *const c_char,
    err_get_error: unsafe extern "C" fn() -> std::ffi::c_ulong,
    err_error_string_n: unsafe extern "C" fn(std::ffi::c_ulong, *mut c_char, usize),
    tls_method: unsafe extern "C" fn() -> *const c_void,
    ctx_new: unsafe extern "C" fn(*const c_void) -> Ptr,
    ctx_free: unsafe extern "C" fn(Ptr),
    ctx_ctrl: unsafe extern "C" fn(Ptr, c_int, c_long, Ptr) -> c_long,
    ctx_set_keylog: unsafe extern "C" fn(Ptr, Option<KeylogCb>),
    ctx_use_cert: unsafe extern "C" fn(Ptr, c_int, *const u8) -> c_int,
    ctx_use_key: unsafe extern "C" fn(c_int, Ptr, *const u8, c_long) -> c_int,
    ssl_new: unsafe extern "C" fn(Ptr) -> Ptr,
    ssl_free: unsafe extern "C" fn(Ptr),
    ssl_set_fd: unsafe extern "C" fn(Ptr, c_int) -> c_int,
    ssl_set_rfd: unsafe extern "C" fn(Ptr, c_int) -> c_int,
    ssl_set_wfd: unsafe extern "C" fn(Ptr, c_int) -> c_int,
    ssl_set_connect_state: unsafe extern "C" fn(Ptr),
    ssl_set_accept_state: unsafe extern "C" fn(Ptr),
    ssl_do_handshake: unsafe extern "C" fn(Ptr) -> c_int,
    ssl_get_error: unsafe extern "C" fn(Ptr, c_int) -> c_int,
    ssl_read: unsafe extern "C" fn(Ptr, *mut c_void, c_int) -> c_int,
    ssl_write: unsafe extern "C" fn(Ptr, *const c_void, c_int) -> c_int,
    ssl_get_rbio: unsafe extern "C" fn(Ptr) -> Ptr,
    ssl_get_session: unsafe extern "C" fn(Ptr) -> Ptr,
    ssl_version: unsafe extern "C" fn(Ptr) -> c_int,
    session_get_master_key: unsafe extern "C" fn(Ptr, *mut u8, usize) -> usize,
    ssl_get_client_random: unsafe extern "C" fn(Ptr, *mut u8, usize) -> usize,
    bio_method_type: unsafe extern "C" fn(Ptr) -> c_int,
    bio_s_socket: unsafe extern "C" fn() -> *const c_void,
    bio_s_mem: unsafe extern "C" fn() -> *const c_void,
    bio_new: unsafe extern "C" fn(*const c_void) -> Ptr,
    bio_free: unsafe extern "C" fn(Ptr) -> c_int,
}

type KeylogCb = unsafe extern "C" fn(*const c_void, *const c_char);

/// A loaded libssl. It is never unloaded: OpenSSL registers atexit handlers
/// and thread-local destructors that must stay mapped until the process ends.
pub(crate) struct Lib {
    fns: Fns,
    pub version: String,
}

macro_rules! sym {
    ($lib:expr, $path:expr, $name:literal) => {{
        // SAFETY: the field this initialises has the C prototype of `$name`
        // in OpenSSL 1.1.1 and 3.x, and the library is never unloaded, so
        // the function pointer stays valid.
        let s = unsafe { $lib.get(concat!($name, "\0").as_bytes()) };
        *s.map_err(|_| CalError::MissingSymbol {
            path: $path.to_path_buf(),
            symbol: $name,
        })?
    }};
}

/// dlopen(RTLD_NOW | RTLD_LOCAL). Never unloaded (see [`Lib`]).
fn load(path: &Path) -> Result<libloading::os::unix::Library, CalError> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading runs the library's initialisers; the caller runs
    // calibration in a throw-away process for exactly this reason.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|source| CalError::Load {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads a dependency (a libcrypto the dynamic linker would not find by
/// itself) so that a later dlopen of libssl resolves its DT_NEEDED entry to
/// it: glibc matches already loaded objects by soname, even RTLD_LOCAL ones.
pub(crate) fn preload(path: &Path) -> Result<(), CalError> {
    let _ = load(path)?.into_raw();
    Ok(())
}

impl Lib {
    pub fn open(path: &Path) -> Result<Lib, CalError> {
        let lib = load(path)?;
        let fns = Fns {
            openssl_version: sym!(lib, path, "OpenSSL_version"),
            err_get_error: sym!(lib, path, "ERR_get_error"),
            err_error_string_n: sym!(lib, path, "ERR_error_string_n"),
            tls_method: sym!(lib, path, "TLS_method"),
            ctx_new: sym!(lib, path, "SSL_CTX_new"),
            ctx_free: sym!(lib, path, "SSL_CTX_free"),
            ctx_ctrl: sym!(lib, path, "SSL_CTX_ctrl"),
            ctx_set_keylog: sym!(lib, path, "SSL_CTX_set_keylog_callback"),
            ctx_use_cert: sym!(lib, path, "SSL_CTX_use_certificate_ASN1"),
            ctx_use_key: sym!(lib, path, "SSL_CTX_use_PrivateKey_ASN1"),
            ssl_new: sym!(lib, path, "SSL_new"),
            ssl_free: sym!(lib, path, "SSL_free"),
            ssl_set_fd: sym!(lib, path, "SSL_set_fd"),
            ssl_set_rfd: sym!(lib, path, "SSL_set_rfd"),
            ssl_set_wfd: sym!(lib, path, "SSL_set_wfd"),
            ssl_set_connect_state: sym!(lib, path, "SSL_set_connect_state"),
            ssl_set_accept_state: sym!(lib, path, "SSL_set_accept_state"),
            ssl_do_handshake: sym!(lib, path, "SSL_do_handshake"),
            ssl_get_error: sym!(lib, path, "SSL_get_error"),
            ssl_read: sym!(lib, path, "SSL_read"),
            ssl_write: sym!(lib, path, "SSL_write"),
            ssl_get_rbio: sym!(lib, path, "SSL_get_rbio"),
            ssl_get_session: sym!(lib, path, "SSL_get_session"),
            ssl_version: sym!(lib, path, "SSL_version"),
            session_get_master_key: sym!(lib, path, "SSL_SESSION_get_master_key"),
            ssl_get_client_random: sym!(lib, path, "SSL_get_client_random"),
            bio_method_type: sym!(lib, path, "BIO_method_type"),
            bio_s_socket: sym!(lib, path, "BIO_s_socket"),
            bio_s_mem: sym!(lib, path, "BIO_s_mem"),
            bio_new: sym!(lib, path, "BIO_new"),
            bio_free: sym!(lib, path, "BIO_free"),
        };
        // Deliberately leaked (see the type's comment).
        let _ = lib.into_raw();
        // SAFETY: OpenSSL_version(OPENSSL_VERSION) returns a static
        // NUL-terminated string (checked for NULL first).
        let version = unsafe {
            let p = (fns.openssl_version)(OPENSSL_VERSION);
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        Ok(Lib { fns, version })
    }

    /// Drains OpenSSL's error queue of this thread into one line.
    fn openssl_errors(&self) -> String {
        let mut out = Vec::new();
        for _ in 0..16 {
            // SAFETY: plain calls into libcrypto's error queue; the buffer
            // passed has the length given.
            let code = unsafe { (self.fns.err_get_error)() };
            if code == 0 {
                break;
            }
            let mut buf = [0 as c_char; 256];
            // SAFETY: ERR_error_string_n writes at most buf.len() bytes,
            // NUL-terminated.
            let text = unsafe {
                (self.fns.err_error_string_n)(code, buf.as_mut_ptr(), buf.len());
                CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
            };
            out.push(text);
        }
        if out.is_empty() {
            "no OpenSSL error queued".to_owned()
        } else {
            out.join("; ")
        }
    }

    /// `BIO_s_socket()` and `BIO_s_mem()` method pointers and the types
    /// `BIO_method_type` reports for BIOs of them.
    pub fn bio_methods(&self) -> Result<[(usize, i32); 2], CalError> {
        let mut out = [(0usize, 0i32); 2];
        for (slot, method) in out
            .iter_mut()
            .zip([self.fns.bio_s_socket, self.fns.bio_s_mem])
        {
            // SAFETY: the BIO_s_* functions return a static method table;
            // BIO_new/BIO_method_type/BIO_free are used as documented on the
            // BIO just created (checked for NULL).
            let (ptr, ty) = unsafe {
                let m = method();
                let bio = (self.fns.bio_new)(m);
                if bio.is_null() {
                    return Err(CalError::Setup {
                        step: "BIO_new",
                        openssl_error: self.openssl_errors(),
                    });
                }
                let ty = (self.fns.bio_method_type)(bio);
                (self.fns.bio_free)(bio);
                (m as usize, ty)
            };
            *slot = (ptr, ty);
        }
        Ok(out)
    }
}

/// TLS versions a context accepts (0 = OpenSSL's own limit).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Versions {
    pub min: c_int,
    pub max: c_int,
}

struct Ctx<'l> {
    lib: &'l Lib,
    ptr: Ptr,
}

impl<'l> Ctx<'l> {
    fn new(
        lib: &'l Lib,
        v: Versions,
        identity: Option<&crate::cert::Identity>,
    ) -> Result<Self, CalError> {
        let f = &lib.fns;
        let setup = |step| CalError::Setup {
            step,
            openssl_error: lib.openssl_errors(),
        };
        // SAFETY: TLS_method returns a static method; SSL_CTX_new's result is
        // checked for NULL and owned by the returned value (freed on drop).
        let ptr = unsafe { (f.ctx_new)((f.tls_method)()) };
        if ptr.is_null() {
            return Err(setup("SSL_CTX_new"));
        }
        let ctx = Ctx { lib, ptr };
        // SAFETY: ctx.ptr is a live SSL_CTX; SSL_CTX_ctrl with these commands
        // takes a version number and no pointer; the callback has the
        // prototype SSL_CTX_set_keylog_callback expects.
        unsafe {
            if (f.ctx_ctrl)(
                ptr,
                SSL_CTRL_SET_MIN_PROTO_VERSION,
                c_long::from(v.min),
                std::ptr::null_mut(),
            ) != 1
            {
                return Err(setup("SSL_CTX_set_min_proto_version"));
            }
            if (f.ctx_ctrl)(
                ptr,
                SSL_CTRL_SET_MAX_PROTO_VERSION,
                c_long::from(v.max),
                std::ptr::null_mut(),
            ) != 1
            {
                return Err(setup("SSL_CTX_set_max_proto_version"));
            }
            (f.ctx_set_keylog)(ptr, Some(keylog_callback));
        }
        if let Some(id) = identity {
            let cert_len = c_int::try_from(id.cert_der.len()).map_err(|_| CalError::Setup {
                step: "SSL_CTX_use_certificate_ASN1",
                openssl_error: "certificate too large".to_owned(),
            })?;
            let key_len = c_long::try_from(id.key_der.len()).map_err(|_| CalError::Setup {
                step: "SSL_CTX_use_PrivateKey_ASN1",
                openssl_error: "key too large".to_owned(),
            })?;
            // SAFETY: both functions copy from the DER buffers of the given
            // lengths, which outlive the calls.
            unsafe {
                if (f.ctx_use_cert)(ptr, cert_len, id.cert_der.as_ptr()) != 1 {
                    return Err(setup("SSL_CTX_use_certificate_ASN1"));
                }
                if (f.ctx_use_key)(EVP_PKEY_EC, ptr, id.key_der.as_ptr(), key_len) != 1 {
                    return Err(setup("SSL_CTX_use_PrivateKey_ASN1"));
                }
            }
        }
        Ok(ctx)
    }
}

impl Drop for Ctx<'_> {
    fn drop(&mut self) {
        // SAFETY: ptr came from SSL_CTX_new and is freed once; SSL objects
        // hold their own reference.
        unsafe { (self.lib.fns.ctx_free)(self.ptr) }
    }
}

/// How the SSL objects get their socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdMode {
    /// `SSL_set_rfd` + `SSL_set_wfd` with two descriptors, so the read BIO
    /// differs from the write BIO and its pointer occurs once in the object.
    Split,
    /// `SSL_set_fd`: one BIO for both directions, as most applications do.
    Shared,
}

/// One end of a pair: the SSL object and the descriptors its BIOs use.
pub(crate) struct End<'l> {
    lib: &'l Lib,
    pub side: Side,
    ptr: Ptr,
    /// The descriptor `SSL_get_rbio` reads from.
    pub rfd: RawFd,
    // Dropped after `ptr` is freed (see Drop), as the BIOs do not close them.
    fds: Vec<OwnedFd>,
}

impl Drop for End<'_> {
    fn drop(&mut self) {
        // SAFETY: ptr came from SSL_new and is freed once, before `fds`
        // (closed after this body) which its BIOs reference without owning.
        unsafe { (self.lib.fns.ssl_free)(self.ptr) }
    }
}

/// A client and a server SSL object over a socketpair, with their key logs.
pub(crate) struct Pair<'l> {
    pub client: End<'l>,
    pub server: End<'l>,
    // Kept alive for the objects' lifetime (they reference their context).
    _ctxs: [Ctx<'l>; 2],
}

/// Duplicates `fd` to the lowest free descriptor >= `min`, close-on-exec.
fn dup_at_least(fd: RawFd, min: RawFd) -> Result<OwnedFd, CalError> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one that
    // nothing else owns, or -1.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(CalError::Socket {
            step: "fcntl(F_DUPFD_CLOEXEC)",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `new` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

impl<'l> Pair<'l> {
    /// Builds a connected but not yet handshaken pair. Descriptors are
    /// duplicated to numbers >= `fd_base` so they stand out in a BIO.
    pub fn new(
        lib: &'l Lib,
        identity: &crate::cert::Identity,
        client_v: Versions,
        server_v: Versions,
        mode: FdMode,
        fd_base: RawFd,
    ) -> Result<Self, CalError> {
        let sock =
            |step, r: std::io::Result<()>| r.map_err(|source| CalError::Socket { step, source });
        let (a, b) = UnixStream::pair().map_err(|source| CalError::Socket {
            step: "socketpair",
            source,
        })?;
        sock("set_nonblocking", a.set_nonblocking(true))?;
        sock("set_nonblocking", b.set_nonblocking(true))?;
        let client_ctx = Ctx::new(lib, client_v, None)?;
        let server_ctx = Ctx::new(lib, server_v, Some(identity))?;
        let client = End::new(lib, Side::Client, &client_ctx, a.as_raw_fd(), mode, fd_base)?;
        let server = End::new(
            lib,
            Side::Server,
            &server_ctx,
            b.as_raw_fd(),
            mode,
            fd_base + 10,
        )?;
        // `a` and `b` close here; the duplicates keep the sockets open.
        Ok(Pair {
            client,
            server,
            _ctxs: [client_ctx, server_ctx],
        })
    }

    /// Alternates SSL_do_handshake on both ends until both are done, then
    /// sends a message each way so TLS 1.3 application secrets are in use.
    pub fn run(&self) -> Result<(), CalError> {
        let mut done = [false, false];
        for _ in 0..MAX_STEPS {
            for (end, done) in [&self.client, &self.server]
                .into_iter()
                .zip(done.iter_mut())
            {
                if !*done {
                    *done = end.handshake_step()?;
                }
            }
            if done == [true, true] {
                break;
            }
        }
        for (end, done) in [&self.client, &self.server].into_iter().zip(done) {
            if !done {
                return Err(CalError::Stalled {
                    side: end.side,
                    step: "SSL_do_handshake",
                    steps: MAX_STEPS,
                });
            }
        }
        self.client.write_all(b"ratatosk-sslcal ping")?;
        self.server.read_exact(b"ratatosk-sslcal ping")?;
        self.server.write_all(b"ratatosk-sslcal pong")?;
        self.client.read_exact(b"ratatosk-sslcal pong")?;
        Ok(())
    }
}

impl<'l> End<'l> {
    fn new(
        lib: &'l Lib,
        side: Side,
        ctx: &Ctx<'l>,
        fd: RawFd,
        mode: FdMode,
        base: RawFd,
    ) -> Result<Self, CalError> {
        let f = &lib.fns;
        let rfd = dup_at_least(fd, base)?;
        let wfd = match mode {
            FdMode::Split => Some(dup_at_least(fd, rfd.as_raw_fd() + 1)?),
            FdMode::Shared => None,
        };
        // SAFETY: ctx.ptr is a live SSL_CTX; the result is checked for NULL
        // and owned by the returned End.
        let ptr = unsafe { (f.ssl_new)(ctx.ptr) };
        if ptr.is_null() {
            return Err(CalError::Setup {
                step: "SSL_new",
                openssl_error: lib.openssl_errors(),
            });
        }
        let raw_rfd = rfd.as_raw_fd();
        let end = End {
            lib,
            side,
            ptr,
            rfd: raw_rfd,
            fds: std::iter::once(rfd).chain(wfd).collect(),
        };
        // SAFETY: ptr is a live SSL; the descriptors stay open as long as it.
        let ok = unsafe {
            let ok = match end.fds.get(1) {
                Some(w) => {
                    (f.ssl_set_rfd)(ptr, raw_rfd) == 1 && (f.ssl_set_wfd)(ptr, w.as_raw_fd()) == 1
                }
                None => (f.ssl_set_fd)(ptr, raw_rfd) == 1,
            };
            match side {
                Side::Client => (f.ssl_set_connect_state)(ptr),
                Side::Server => (f.ssl_set_accept_state)(ptr),
            }
            ok
        };
        if !ok {
            return Err(CalError::Setup {
                step: "SSL_set_fd",
                openssl_error: lib.openssl_errors(),
            });
        }
        Ok(end)
    }

    /// The SSL* value, as the agent's uprobe would see it.
    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    /// One SSL_do_handshake call: Ok(true) once done, Ok(false) if it waits
    /// for the peer.
    fn handshake_step(&self) -> Result<bool, CalError> {
        // SAFETY: ptr is a live SSL whose descriptors are open.
        let ret = unsafe { (self.lib.fns.ssl_do_handshake)(self.ptr) };
        if ret == 1 {
            return Ok(true);
        }
        self.want("SSL_do_handshake", ret).map(|()| false)
    }

    /// Ok if `ret` only means "try again", the error otherwise.
    fn want(&self, step: &'static str, ret: c_int) -> Result<(), CalError> {
        // SAFETY: ptr is a live SSL and ret the value its last call returned.
        let err = unsafe { (self.lib.fns.ssl_get_error)(self.ptr, ret) };
        if err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE {
            return Ok(());
        }
        Err(CalError::Handshake {
            side: self.side,
            step,
            ssl_error: err,
            openssl_error: self.lib.openssl_errors(),
        })
    }

    fn write_all(&self, msg: &'static [u8]) -> Result<(), CalError> {
        let len = c_int::try_from(msg.len()).unwrap_or(c_int::MAX);
        for _ in 0..MAX_STEPS {
            // SAFETY: ptr is a live SSL; SSL_write reads `len` bytes of msg.
            let ret = unsafe { (self.lib.fns.ssl_write)(self.ptr, msg.as_ptr().cast(), len) };
            if ret == len {
                return Ok(());
            }
            self.want("SSL_write", ret)?;
        }
        Err(CalError::Stalled {
            side: self.side,
            step: "SSL_write",
            steps: MAX_STEPS,
        })
    }

    fn read_exact(&self, expected: &'static [u8]) -> Result<(), CalError> {
        let mut buf = [0u8; 64];
        for _ in 0..MAX_STEPS {
            // SAFETY: ptr is a live SSL; SSL_read writes at most buf.len()
            // bytes into buf.
            let ret = unsafe {
                (self.lib.fns.ssl_read)(self.ptr, buf.as_mut_ptr().cast(), buf.len() as c_int)
            };
            if ret > 0 {
                let got = buf.get(..ret as usize).unwrap_or_default();
                if got != expected {
                    return Err(CalError::DataMismatch {
                        side: self.side,
                        expected: expected.to_vec(),
                        got: got.to_vec(),
                    });
                }
                return Ok(());
            }
            self.want("SSL_read", ret)?;
        }
        Err(CalError::Stalled {
            side: self.side,
            step: "SSL_read",
            steps: MAX_STEPS,
        })
    }

    /// `SSL_version()`.
    pub fn version(&self) -> i32 {
        // SAFETY: ptr is a live SSL.
        unsafe { (self.lib.fns.ssl_version)(self.ptr) }
    }

    /// `SSL_get_rbio()` and `BIO_method_type()` of it.
    pub fn rbio(&self) -> Result<(usize, i32), CalError> {
        // SAFETY: ptr is a live SSL; the BIO it returns is checked for NULL
        // and lives as long as the SSL.
        unsafe {
            let bio = (self.lib.fns.ssl_get_rbio)(self.ptr);
            if bio.is_null() {
                return Err(CalError::Memory {
                    object: "BIO",
                    addr: 0,
                    problem: "SSL_get_rbio returned NULL",
                });
            }
            Ok((bio as usize, (self.lib.fns.bio_method_type)(bio)))
        }
    }

    /// `SSL_get_session()` and the master key `SSL_SESSION_get_master_key`
    /// returns for it.
    pub fn session(&self) -> Result<(usize, Vec<u8>), CalError> {
        // SAFETY: ptr is a live SSL; the session is checked for NULL and
        // lives as long as the SSL; the key is copied into a buffer of the
        // length passed.
        unsafe {
            let s = (self.lib.fns.ssl_get_session)(self.ptr);
            if s.is_null() {
                return Err(CalError::Memory {
                    object: "SSL_SESSION",
                    addr: 0,
                    problem: "SSL_get_session returned NULL",
                });
            }
            let mut key = vec![0u8; 256];
            let n = (self.lib.fns.session_get_master_key)(s, key.as_mut_ptr(), key.len());
            key.truncate(n);
            Ok((s as usize, key))
        }
    }

    /// `SSL_get_client_random()`: the ClientHello random of the handshake.
    pub fn client_random(&self) -> Result<[u8; 32], CalError> {
        let mut out = [0u8; 32];
        // SAFETY: ptr is a live SSL; OpenSSL copies at most the length passed.
        let n =
            unsafe { (self.lib.fns.ssl_get_client_random)(self.ptr, out.as_mut_ptr(), out.len()) };
        if n != out.len() {
            return Err(CalError::Memory {
                object: "SSL",
                addr: self.ptr as usize,
                problem: "SSL_get_client_random did not return 32 bytes",
            });
        }
        Ok(out)
    }

    /// Copies the SSL object.
    pub fn ssl_bytes(&self, maps: &[maps::Mapping]) -> Result<Vec<u8>, CalError> {
        heap_bytes(maps, self.ptr as usize, "SSL")
    }

    /// Copies the read BIO (the pointer SSL_get_rbio returns).
    pub fn rbio_bytes(&self, maps: &[maps::Mapping]) -> Result<Vec<u8>, CalError> {
        heap_bytes(maps, self.rbio()?.0, "BIO")
    }

    /// Copies the session object (the pointer SSL_get_session returns).
    pub fn session_bytes(&self, maps: &[maps::Mapping]) -> Result<Vec<u8>, CalError> {
        heap_bytes(maps, self.session()?.0, "SSL_SESSION")
    }
}

/// Copies a heap object OpenSSL allocated (CRYPTO_malloc is malloc unless the
/// application replaces it, which nothing in this process does). `addr` must
/// come from the library's API, never from memory contents.
fn heap_bytes(
    maps: &[maps::Mapping],
    addr: usize,
    object: &'static str,
) -> Result<Vec<u8>, CalError> {
    let fail = |problem| CalError::Memory {
        object,
        addr,
        problem,
    };
    let Some(m) = maps::containing(maps, addr) else {
        return Err(fail("not inside any mapping"));
    };
    let heap_like = m.readable && m.writable && addr.is_multiple_of(16);
    if !heap_like || addr - m.start < 16 {
        return Err(fail("not a heap allocation"));
    }
    // SAFETY: addr is the start of a live allocation made by malloc (see
    // above), which is what malloc_usable_size requires.
    let size = unsafe { libc::malloc_usable_size(addr as *mut c_void) };
    if size == 0 || size > MAX_OBJECT || size > m.end - addr {
        return Err(fail("allocation size out of range"));
    }
    let mut out = vec![0u8; size];
    // SAFETY: [addr, addr+size) is the live allocation (its usable size,
    // inside one readable mapping) and `out` has room for size bytes.
    unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), size) };
    Ok(out)
}

/// Copies up to `want` bytes at a static object (a BIO_METHOD table), cut at
/// the end of the readable mapping that holds it.
pub(crate) fn static_bytes(
    maps: &[maps::Mapping],
    addr: usize,
    want: usize,
    object: &'static str,
) -> Result<Vec<u8>, CalError> {
    let Some(m) = maps::containing(maps, addr).filter(|m| m.readable) else {
        return Err(CalError::Memory {
            object,
            addr,
            problem: "not inside a readable mapping",
        });
    };
    let n = want.min(m.end - addr);
    let mut out = vec![0u8; n];
    // SAFETY: [addr, addr+n) lies inside one readable mapping of this
    // process, and library mappings stay (the library is never unloaded).
    unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), n) };
    Ok(out)
}

/// The first `want` bytes behind every 8-aligned value of `object` that
/// points into a writable (heap-like) mapping, cut at the mapping's end: the
/// objects an SSL object points to, where OpenSSL 1.1.1 keeps its `s3`
/// state. The values come from memory, not from the API, so they are read
/// with process_vm_readv, which fails cleanly on memory unmapped meanwhile
/// (other threads of a test process allocate and free).
pub(crate) fn pointees(maps: &[maps::Mapping], object: &[u8], want: usize) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, word) in object.chunks_exact(8).enumerate() {
        let addr = u64::from_ne_bytes(word.try_into().unwrap_or_default()) as usize;
        let Some(m) = maps::containing(maps, addr).filter(|m| m.readable && m.writable) else {
            continue;
        };
        let Ok(at) = u32::try_from(i * 8) else {
            break;
        };
        let Some(bytes) = read_mem(addr, want.min(m.end - addr)) else {
            continue;
        };
        out.push((at, bytes));
    }
    out
}

/// `len` bytes of this process at `addr` (an address read from memory), or
/// None where they are not mapped; a read cut by the end of a mapping is
/// returned short.
pub(crate) fn read_mem(addr: usize, len: usize) -> Option<Vec<u8>> {
    let mut bytes = vec![0u8; len];
    let local = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: bytes.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: the local iovec describes `bytes`, owned and of that length;
    // the remote one is only read by the kernel, which checks it.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    let n = usize::try_from(n).ok()?;
    bytes.truncate(n);
    Some(bytes)
}

thread_local! {
    /// Key log lines of this thread's handshakes: (SSL*, line). The callback
    /// runs on the thread that drives the handshake, so per thread suffices.
    static KEYLOG: RefCell<Vec<(usize, String)>> = const { RefCell::new(Vec::new()) };
}

/// SSL_CTX_set_keylog_callback target: records the line for its SSL object.
unsafe extern "C" fn keylog_callback(ssl: *const c_void, line: *const c_char) {
    if line.is_null() {
        return;
    }
    // SAFETY: OpenSSL passes a NUL-terminated line valid during the call.
    let text = unsafe { CStr::from_ptr(line) }
        .to_string_lossy()
        .into_owned();
    let _ = KEYLOG.try_with(|log| {
        if let Ok(mut log) = log.try_borrow_mut()
            && log.len() < MAX_KEYLOG_LINES
        {
            log.push((ssl as usize, text));
        }
    });
}

/// Takes this thread's recorded key log lines.
pub(crate) fn take_keylog() -> Vec<(usize, String)> {
    KEYLOG.with(|log| std::mem::take(&mut *log.borrow_mut()))
}
