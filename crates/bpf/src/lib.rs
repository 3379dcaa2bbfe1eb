//! Kernel capture: loads the CO-RE programs built from `bpf/src/*.bpf.c`,
//! attaches them, and hands out the handles the pipeline needs (ring
//! buffer, target set, counters). All libbpf and `unsafe` code of the agent
//! lives in this crate.

mod cgroup2;
mod preflight;
mod skel {
    #![allow(clippy::all, unsafe_op_in_unsafe_fn, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/capture.skel.rs"));
}

use std::cell::{Cell, RefCell};
use std::mem::MaybeUninit;
use std::path::Path;
use std::time::Duration;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{
    Link, MapCore, MapFlags, MapHandle, OpenObject, RingBufferBuilder, UprobeMultiOpts, UprobeOpts,
};
pub use ratatosk_abi::rt_ssl_layout as SslLayout;
use ratatosk_abi::{rt_limits, rt_ssl_layout, rt_stat, rt_target};

pub use preflight::{
    MissingCapability, PreflightError, ensure_tracefs, missing_capabilities, preflight,
};

/// How socket syscalls are hooked at their exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyscallHooks {
    /// One `tp_btf/sys_exit` program that every syscall on the host enters.
    RawExit,
    /// One `syscalls:sys_exit_*` tracepoint per socket syscall: other
    /// syscalls run no BPF, socket syscalls take the heavier perf path.
    /// Needs tracefs.
    PerSyscall,
    /// `sock:sock_recv_length`/`sock_send_length` and
    /// `sock:inet_sock_set_state`: only socket I/O and TCP state changes
    /// run BPF, and no syscall tracepoint slows every syscall down.
    /// accept() is not seen (a connection starts at its first bytes).
    #[default]
    Socket,
}

/// Settings fixed at load time (BPF read-only data and map sizes).
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Never traced, whatever the selectors say.
    pub agent_tgid: u32,
    /// No selector: trace every process except the agent.
    pub trace_all: bool,
    /// Report `listen()` from every process (needed by `--open-port`).
    pub report_listen: bool,
    /// Trace every newly exec'd process until userspace decides (needed
    /// by `--exe-path`, so a short-lived client's first request is seen).
    pub trace_new_execs: bool,
    /// Payload bytes copied per syscall (clamped to the ABI maximum).
    pub capture_bytes: u32,
    /// Wake the reader once this many bytes wait in the ring buffer.
    pub wakeup_bytes: u64,
    /// Ring buffer size in bytes (rounded up to a power of two pages).
    pub ringbuf_bytes: u32,
    /// Most processes traced at once.
    pub max_targets: u32,
    /// Socket descriptors remembered for close() reporting (LRU).
    pub max_sockets: u32,
    pub syscall_hooks: SyscallHooks,
    /// Load the OpenSSL uprobe programs and let syscall exits recognise
    /// TLS calls in progress (attach them with `Capture::attach_openssl`).
    pub tls: bool,
    /// Follow HTTP/2 framing on sockets that start with the client
    /// preface (socket hooks): header frames whole, DATA payloads
    /// skipped. Off, HTTP/2 is captured as a prefix (for comparisons).
    pub h2_walk: bool,
    /// Inject `traceparent` into outgoing plaintext HTTP/1 requests
    /// (sockops + sk_msg; socket hooks only) and give server requests
    /// kernel-made ids.
    pub inject: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            agent_tgid: std::process::id(),
            trace_all: false,
            report_listen: false,
            trace_new_execs: false,
            capture_bytes: 1024,
            wakeup_bytes: 64 * 1024,
            ringbuf_bytes: 8 << 20,
            max_targets: 16384,
            max_sockets: 65536,
            syscall_hooks: SyscallHooks::default(),
            tls: true,
            h2_walk: true,
            inject: false,
        }
    }
}

/// The largest payload prefix one record can carry.
pub const MAX_CAPTURE: u32 = rt_limits::RT_MAX_CAPTURE as u32;
/// An `SslLayout` offset that is not known (or, for `client_random_via`,
/// not used: the random is inside the SSL object).
pub const SSL_NO_OFFSET: u32 = rt_limits::RT_SSL_NO_OFFSET as u32;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("opening the BPF object failed")]
    Open(#[source] libbpf_rs::Error),
    #[error("setting up map {map} failed")]
    Map {
        map: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error(
        "the kernel refused to load the BPF programs (verifier or missing feature; run with RUST_LOG=debug for the libbpf log)"
    )]
    Load(#[source] libbpf_rs::Error),
    #[error("attaching {prog} failed")]
    Attach {
        prog: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
}

/// Why OpenSSL probes could not be attached to a file.
#[derive(Debug, thiserror::Error)]
pub enum TlsAttachError {
    #[error("TLS capture is off (the uprobe programs were not loaded)")]
    Disabled,
    #[error("no {0} symbol (not OpenSSL, or stripped)")]
    NoSymbol(&'static str),
    #[error("offset {offset:#x} of {func} does not fit this machine")]
    Offset { func: &'static str, offset: u64 },
    #[error("attaching a uprobe to {func} failed")]
    Attach {
        func: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("too many OpenSSL builds decrypted at once")]
    TooManyLayouts,
    #[error("storing the OpenSSL struct layout failed")]
    Layout(#[source] libbpf_rs::Error),
}

/// Where to probe Go's `crypto/tls` in one executable (file offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoTlsProbes {
    pub write_entry: u64,
    pub read_entry: u64,
    /// Every RET instruction of `(*tls.Conn).Read`.
    pub read_returns: Vec<u64>,
    /// Struct offsets from `*tls.Conn` to the socket's descriptor, packed
    /// (see `go_conn_sock` in capture.bpf.c).
    pub layout_cookie: u64,
}

/// The OpenSSL functions probed in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpensslProbes {
    /// SSL_read_ex/SSL_write_ex were found too (OpenSSL >= 1.1.1).
    pub ex: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("updating the target set for pid {tgid} failed")]
    Update {
        tgid: u32,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("reading BPF counters failed")]
    Read(#[source] libbpf_rs::Error),
    #[error("polling the ring buffer failed")]
    Poll(#[source] libbpf_rs::Error),
    #[error("duplicating a map handle failed")]
    Handle(#[source] libbpf_rs::Error),
}

/// The loaded and attached programs. Dropping it detaches everything.
pub struct Capture {
    skel: skel::CaptureSkel<'static>,
    _links: Vec<Link>,
    /// Uprobe links, kept while the agent runs (bounded by the caller,
    /// which attaches once per file).
    tls_links: Vec<Link>,
    tls: bool,
    /// TLS programs attach as uprobe_multi links (see `UPROBE_MULTI`).
    multi: bool,
    capture_bytes: u32,
    /// Entries of `ssl_layouts` in use.
    ssl_layouts: u32,
    injection: Injection,
}

/// Where `traceparent` injection stands.
pub enum Injection {
    /// Not asked for.
    Off,
    /// Attached at the root of this cgroup2 hierarchy.
    On(InjectLinks),
    /// Asked for but impossible: what is missing.
    Failed(String),
}

/// The sockops link and the cgroup2 mount it needs. Field order is drop
/// order: the program leaves the hierarchy before it is unmounted.
pub struct InjectLinks {
    _sockops: Link,
    cgroup: cgroup2::Cgroup2,
}

impl InjectLinks {
    /// The cgroup2 root the sockops program is attached to.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup.path
    }

    /// Whether the agent mounted that hierarchy (and unmounts it at exit).
    pub fn own_mount(&self) -> bool {
        self.cgroup.own()
    }
}

impl Capture {
    /// Checks privileges and kernel features, loads and attaches.
    pub fn load(opts: &LoadOptions) -> Result<Capture, LoadError> {
        let multi = opts.tls && uprobe_multi_supported();
        match Self::load_with(opts, multi) {
            // A kernel that refuses the uprobe_multi programs still gets
            // TLS, through perf-event uprobes.
            Err(e) if multi => {
                tracing::debug!(error = %e, "uprobe_multi programs refused: perf-event uprobes instead");
                Self::load_with(opts, false)
            }
            r => r,
        }
    }

    /// `load`, the TLS programs as uprobe_multi programs when `multi`.
    fn load_with(opts: &LoadOptions, multi: bool) -> Result<Capture, LoadError> {
        preflight()?;
        // libbpf's own messages (a verifier log can be thousands of lines)
        // go to the debug log; failures surface as one error line.
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, libbpf_log)));
        // The skeleton borrows its object for its whole life, which is the
        // agent's life: one small leak instead of a self-referential type.
        let object: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let builder = skel::CaptureSkelBuilder::default();
        let mut open = builder.open(object).map_err(LoadError::Open)?;

        let capture_bytes = opts.capture_bytes.min(MAX_CAPTURE);
        // Socket storage needs the socket hooks' BTF-typed sockets.
        // Without CAP_NET_ADMIN (or CAP_SYS_ADMIN) the kernel refuses the
        // sockops and sk_msg programs, and with them the whole object:
        // they are left out.
        let net_capable = preflight::net_capable();
        let inject = opts.inject && opts.syscall_hooks == SyscallHooks::Socket && net_capable;
        if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
            ro.agent_tgid = opts.agent_tgid;
            ro.trace_all = opts.trace_all;
            ro.report_listen = opts.report_listen;
            ro.trace_new_execs = opts.trace_new_execs;
            ro.capture_bytes = capture_bytes;
            ro.wakeup_bytes = opts.wakeup_bytes;
            ro.tls_capture = opts.tls;
            ro.h2_walk = opts.h2_walk;
            ro.inject = inject;
        }
        let rb = opts.ringbuf_bytes.max(4096).next_power_of_two();
        open.maps
            .events
            .set_max_entries(rb)
            .map_err(|source| LoadError::Map {
                map: "events",
                source,
            })?;
        // tls_procs marks only targets (and is cleared with them at exit).
        for (map, name) in [
            (&mut open.maps.targets, "targets"),
            (&mut open.maps.tls_procs, "tls_procs"),
        ] {
            map.set_max_entries(opts.max_targets.max(1))
                .map_err(|source| LoadError::Map { map: name, source })?;
        }
        for (map, name) in [
            (&mut open.maps.sock_fds, "sock_fds"),
            (&mut open.maps.ssl_socks, "ssl_socks"),
            (&mut open.maps.tls_socks, "tls_socks"),
            (&mut open.maps.tls_keysocks, "tls_keysocks"),
            (&mut open.maps.go_reads, "go_reads"),
            (&mut open.maps.inject_socks, "inject_socks"),
        ] {
            map.set_max_entries(opts.max_sockets.max(1024))
                .map_err(|source| LoadError::Map { map: name, source })?;
        }

        let per_syscall = opts.syscall_hooks == SyscallHooks::PerSyscall;
        let socket = opts.syscall_hooks == SyscallHooks::Socket;
        {
            let p = &mut open.progs;
            p.sys_exit
                .set_autoload(opts.syscall_hooks == SyscallHooks::RawExit);
            for prog in [
                &mut p.sock_recv_length,
                &mut p.sock_send_length,
                &mut p.sock_state,
                &mut p.sock_destroy,
            ] {
                prog.set_autoload(socket);
            }
            for prog in [
                &mut p.sys_exit_read,
                &mut p.sys_exit_write,
                &mut p.sys_exit_readv,
                &mut p.sys_exit_writev,
                &mut p.sys_exit_recvfrom,
                &mut p.sys_exit_sendto,
                &mut p.sys_exit_recvmsg,
                &mut p.sys_exit_sendmsg,
                &mut p.sys_exit_sendfile64,
                &mut p.sys_exit_accept,
                &mut p.sys_exit_accept4,
                &mut p.sys_exit_connect,
                &mut p.sys_exit_close,
                &mut p.sys_exit_listen,
            ] {
                prog.set_autoload(per_syscall);
            }
            // Attached per library by attach_openssl, never by the skeleton.
            for prog in [
                &mut p.ssl_read,
                &mut p.ssl_read_ret,
                &mut p.ssl_read_ex,
                &mut p.ssl_read_ex_ret,
                &mut p.ssl_write,
                &mut p.ssl_write_ret,
                &mut p.ssl_write_ex,
                &mut p.ssl_write_ex_ret,
                &mut p.ssl_set0_rbio,
                &mut p.ssl_set_bio,
                &mut p.go_tls_read,
                &mut p.go_tls_read_ret,
                &mut p.go_tls_write,
            ] {
                prog.set_autoload(opts.tls);
                if multi {
                    prog.set_attach_type(libbpf_rs::ProgramAttachType::TraceUprobeMulti);
                }
            }
            p.inject_sockops.set_autoload(inject);
            p.inject_msg.set_autoload(inject);
        }
        // A sockhash is a networking map: created only with the programs
        // that use it (without CAP_NET_ADMIN the kernel refuses it).
        open.maps
            .inject_socks
            .set_autocreate(inject)
            .map_err(|source| LoadError::Map {
                map: "inject_socks",
                source,
            })?;
        let skel = open.load().map_err(LoadError::Load)?;
        let mut links = Vec::new();
        macro_rules! attach {
            ($name:ident) => {
                links.push(
                    skel.progs
                        .$name
                        .attach()
                        .map_err(|source| LoadError::Attach {
                            prog: stringify!($name),
                            source,
                        })?,
                )
            };
        }
        if socket {
            attach!(sock_recv_length);
            attach!(sock_send_length);
            attach!(sock_state);
            attach!(sock_destroy);
        } else if per_syscall {
            attach!(sys_exit_read);
            attach!(sys_exit_write);
            attach!(sys_exit_readv);
            attach!(sys_exit_writev);
            attach!(sys_exit_recvfrom);
            attach!(sys_exit_sendto);
            attach!(sys_exit_recvmsg);
            attach!(sys_exit_sendmsg);
            attach!(sys_exit_sendfile64);
            attach!(sys_exit_accept);
            attach!(sys_exit_accept4);
            attach!(sys_exit_connect);
            attach!(sys_exit_close);
            attach!(sys_exit_listen);
        } else {
            attach!(sys_exit);
        }
        attach!(sched_process_fork);
        attach!(sched_process_exec);
        attach!(sched_process_exit);
        let injection = if !opts.inject {
            Injection::Off
        } else if !net_capable {
            Injection::Failed(
                "CAP_NET_ADMIN (or CAP_SYS_ADMIN) is missing: the kernel loads sockops and sk_msg programs only with it".into(),
            )
        } else if !inject {
            Injection::Failed("the socket hooks (--syscall-hooks socket) are not in use".into())
        } else {
            match attach_injection(&skel) {
                Ok(l) => Injection::On(l),
                Err(e) => Injection::Failed(e),
            }
        };
        Ok(Capture {
            skel,
            _links: links,
            tls_links: Vec::new(),
            tls: opts.tls,
            multi,
            capture_bytes,
            ssl_layouts: 0,
            injection,
        })
    }

    /// Where `traceparent` injection stands.
    pub fn injection(&self) -> &Injection {
        &self.injection
    }

    /// Takes the sockets the sk_msg program gave up on out of its sockhash
    /// (the program cannot), so they send on plain TCP again. Returns how
    /// many; at most 4096 per call.
    pub fn release_given_up(&self) -> usize {
        if !matches!(self.injection, Injection::On(_)) {
            return 0;
        }
        let mut n = 0;
        while n < 4096 {
            match self.skel.maps.inject_gone.lookup_and_delete(&[]) {
                Ok(Some(cookie)) => {
                    // Already gone if it closed meanwhile.
                    let _ = self.skel.maps.inject_socks.delete(&cookie);
                    n += 1;
                }
                _ => break,
            }
        }
        n
    }

    /// Attaches the OpenSSL probes (entry and return of SSL_read,
    /// SSL_write and, when present, their _ex forms) to the library or
    /// executable at `path`. The kernel probes the file's inode: every
    /// process mapping it is covered, now and later, so call this once per
    /// file. Symbols are resolved by libbpf (dynamic symbols included).
    pub fn attach_openssl(&mut self, path: &Path) -> Result<OpensslProbes, TlsAttachError> {
        if !self.tls {
            return Err(TlsAttachError::Disabled);
        }
        let p = &self.skel.progs;
        let multi = self.multi;
        let attach = |prog: &libbpf_rs::ProgramMut<'_>, func: &'static str, retprobe: bool| {
            attach_symbol(prog, path, func, retprobe, 0, multi)
        };
        // All or nothing for the required pair, so a failure leaves no
        // half-probed library behind.
        let mut links = vec![
            attach(&p.ssl_read, "SSL_read", false)?,
            attach(&p.ssl_read_ret, "SSL_read", true)?,
            attach(&p.ssl_write, "SSL_write", false)?,
            attach(&p.ssl_write_ret, "SSL_write", true)?,
        ];
        let ex = (|| -> Result<Vec<Link>, TlsAttachError> {
            Ok(vec![
                attach(&p.ssl_read_ex, "SSL_read_ex", false)?,
                attach(&p.ssl_read_ex_ret, "SSL_read_ex", true)?,
                attach(&p.ssl_write_ex, "SSL_write_ex", false)?,
                attach(&p.ssl_write_ex_ret, "SSL_write_ex", true)?,
            ])
        })();
        let has_ex = match ex {
            Ok(l) => {
                links.extend(l);
                true
            }
            // OpenSSL 1.1.0 has no _ex functions.
            Err(TlsAttachError::NoSymbol(_)) => false,
            Err(e) => return Err(e),
        };
        self.tls_links.extend(links);
        Ok(OpensslProbes { ex: has_ex })
    }

    /// Attaches the connection probe (entry of `SSL_set0_rbio`, which
    /// `SSL_set_fd` and `SSL_set_bio` call) to the OpenSSL library at
    /// `path`, whose struct layout is `layout`: TLS on
    /// its sockets is then decrypted from the secrets (RT_EV_TLS_KEYS)
    /// instead of probing every SSL_read/SSL_write. Once per file, like
    /// `attach_openssl`; at most `RT_MAX_SSL_LAYOUTS` files.
    ///
    /// `executable`: OpenSSL linked into a program, where `SSL_set_bio`
    /// may have `SSL_set0_rbio` inlined: `SSL_set_bio` is probed too (one
    /// more trap per connection where it is not inlined).
    pub fn attach_openssl_handshake(
        &mut self,
        path: &Path,
        layout: &rt_ssl_layout,
        executable: bool,
    ) -> Result<(), TlsAttachError> {
        if !self.tls {
            return Err(TlsAttachError::Disabled);
        }
        let idx = self.ssl_layouts;
        if idx >= rt_limits::RT_MAX_SSL_LAYOUTS as u32 {
            return Err(TlsAttachError::TooManyLayouts);
        }
        let mut value = *layout;
        value.valid = 1;
        // SAFETY: rt_ssl_layout is a plain-old-data struct generated from
        // abi.h (u32 fields only, no padding holes): viewing it as bytes is
        // sound.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&value as *const rt_ssl_layout).cast::<u8>(),
                std::mem::size_of::<rt_ssl_layout>(),
            )
        };
        self.skel
            .maps
            .ssl_layouts
            .update(&idx.to_ne_bytes(), bytes, MapFlags::ANY)
            .map_err(TlsAttachError::Layout)?;
        let progs = &self.skel.progs;
        let multi = self.multi;
        let attach = |prog: &libbpf_rs::ProgramMut<'_>, func: &'static str| {
            attach_symbol(prog, path, func, false, u64::from(idx), multi)
        };
        let mut links = Vec::with_capacity(2);
        if executable {
            links.push(attach(&progs.ssl_set_bio, "SSL_set_bio")?);
            // SSL_set_rfd and SSL_set_wfd call it; optional.
            match attach(&progs.ssl_set0_rbio, "SSL_set0_rbio") {
                Ok(l) => links.push(l),
                Err(TlsAttachError::NoSymbol(_)) => {}
                Err(e) => return Err(e),
            }
        } else {
            links.push(attach(&progs.ssl_set0_rbio, "SSL_set0_rbio")?);
        }
        self.ssl_layouts += 1;
        self.tls_links.extend(links);
        Ok(())
    }

    /// Attaches the Go `crypto/tls` probes to the Go executable at `path`
    /// (entry of `(*tls.Conn).Write`, entry and every RET of
    /// `(*tls.Conn).Read`), at the file offsets `probes` gives. Once per
    /// file, like `attach_openssl`; all or nothing.
    pub fn attach_go_tls(
        &mut self,
        path: &Path,
        probes: &GoTlsProbes,
    ) -> Result<usize, TlsAttachError> {
        if !self.tls {
            return Err(TlsAttachError::Disabled);
        }
        let p = &self.skel.progs;
        let multi = self.multi;
        let cookie = probes.layout_cookie;
        // Every offset of one program in one link when uprobe_multi is
        // used (the RETs of Read: one link, one detach).
        let attach = |prog: &libbpf_rs::ProgramMut<'_>, func: &'static str, offsets: &[u64]| {
            let offsets = offsets
                .iter()
                .map(|&offset| {
                    usize::try_from(offset).map_err(|_| TlsAttachError::Offset { func, offset })
                })
                .collect::<Result<Vec<usize>, _>>()?;
            let one = |offset: usize| {
                prog.attach_uprobe_with_opts(
                    -1,
                    path,
                    offset,
                    UprobeOpts {
                        cookie,
                        ..Default::default()
                    },
                )
                .map_err(|source| TlsAttachError::Attach { func, source })
            };
            if !multi {
                return offsets.into_iter().map(one).collect::<Result<Vec<_>, _>>();
            }
            let opts = UprobeMultiOpts {
                cookies: vec![cookie; offsets.len()],
                offsets,
                ..Default::default()
            };
            prog.attach_uprobe_multi_with_opts(-1, path, "", opts)
                .map(|l| vec![l])
                .map_err(|source| TlsAttachError::Attach { func, source })
        };
        let mut links = attach(
            &p.go_tls_write,
            "crypto/tls.(*Conn).Write",
            &[probes.write_entry],
        )?;
        links.extend(attach(
            &p.go_tls_read,
            "crypto/tls.(*Conn).Read",
            &[probes.read_entry],
        )?);
        if !probes.read_returns.is_empty() {
            links.extend(attach(
                &p.go_tls_read_ret,
                "crypto/tls.(*Conn).Read (RET)",
                &probes.read_returns,
            )?);
        }
        // Uprobes placed (what the caller bounds and reports).
        let n = 2 + probes.read_returns.len();
        self.tls_links.extend(links);
        Ok(n)
    }

    /// The payload prefix size in effect.
    pub fn capture_bytes(&self) -> u32 {
        self.capture_bytes
    }

    /// A handle on the target set, usable from another thread.
    pub fn targets(&self) -> Result<Targets, MapError> {
        Ok(Targets(
            MapHandle::try_from(&self.skel.maps.targets).map_err(MapError::Handle)?,
        ))
    }

    /// A handle on the BPF-side counters, usable from another thread.
    pub fn counters(&self) -> Result<Counters, MapError> {
        Ok(Counters(
            MapHandle::try_from(&self.skel.maps.stats).map_err(MapError::Handle)?,
        ))
    }

    /// A handle on the ring buffer, to be read on one thread.
    pub fn events(&self) -> Result<EventsSource, MapError> {
        Ok(EventsSource(
            MapHandle::try_from(&self.skel.maps.events).map_err(MapError::Handle)?,
        ))
    }
}

/// The set of traced processes (BPF map `targets`).
pub struct Targets(MapHandle);

impl Targets {
    pub fn insert(&self, tgid: u32) -> Result<(), MapError> {
        let v = rt_target::default();
        // SAFETY: rt_target is a plain C struct generated from abi.h.
        let bytes = unsafe { as_bytes(&v) };
        self.0
            .update(&tgid.to_ne_bytes(), bytes, MapFlags::ANY)
            .map_err(|source| MapError::Update { tgid, source })
    }

    pub fn remove(&self, tgid: u32) -> Result<(), MapError> {
        match self.0.delete(&tgid.to_ne_bytes()) {
            Ok(()) => Ok(()),
            // Already gone (the process exited): nothing to do.
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(MapError::Update { tgid, source }),
        }
    }

    /// Every tgid in the set, including children added at fork.
    pub fn list(&self) -> Vec<u32> {
        self.0
            .keys()
            .filter_map(|k| k.try_into().ok().map(u32::from_ne_bytes))
            .collect()
    }

    pub fn contains(&self, tgid: u32) -> bool {
        matches!(
            self.0.lookup(&tgid.to_ne_bytes(), MapFlags::ANY),
            Ok(Some(_))
        )
    }
}

/// Counters kept by the BPF programs, summed over CPUs.
pub struct Counters(MapHandle);

/// A snapshot of the BPF-side counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BpfStats {
    pub events: u64,
    pub ringbuf_full_data: u64,
    pub ringbuf_full_ctrl: u64,
    pub truncated: u64,
    pub read_faults: u64,
    pub targets_full: u64,
    /// Uprobe program runs by probe (`UPROBES` names them).
    pub uprobe_hits: [u64; UPROBES.len()],
    /// TLS plaintext dropped because its socket was not found.
    pub tls_no_socket: u64,
    /// TLS secrets or the socket BIO could not be read from an SSL object.
    pub tls_keys_fault: u64,
    /// Handshakes over a BIO that is not a socket (memory BIOs).
    pub tls_not_socket_bio: u64,
    /// ClientHellos whose SSL object (over a non-socket BIO) was not found.
    pub tls_hello_unmatched: u64,
    /// Socket I/O the socket hooks could not decode (io_uring, mmsg).
    pub undecoded_io: u64,
    /// HTTP/2 frame walk: sockets found speaking h2c, frame headers
    /// walked, chunked records sent, header-frame payload bytes skipped
    /// for lack of record space, socket directions given up.
    pub h2_conns: u64,
    pub h2_frames: u64,
    pub h2_records: u64,
    pub h2_header_lost: u64,
    pub h2_desync: u64,
    /// `traceparent` headers inserted.
    pub injected: u64,
    /// Requests or sockets not injected into, by `INJECT_SKIPS` reason.
    pub inject_skipped: [u64; INJECT_SKIPS.len()],
}

/// Reasons of `BpfStats::inject_skipped`, in order.
pub const INJECT_SKIPS: [&str; 10] = [
    "has_traceparent",
    "pipelined",
    "split_head",
    "not_http",
    "tunnel",
    "chunked",
    "head_too_long",
    "sockhash_full",
    "insert_failed",
    "large_send",
];

/// Names of the uprobe hit counters in `BpfStats::uprobe_hits`, with
/// whether the probe is a function entry (a trap) or a return.
pub const UPROBES: [(&str, bool); 13] = [
    ("SSL_read", true),
    ("SSL_read_ex", true),
    ("SSL_write", true),
    ("SSL_write_ex", true),
    ("SSL_read", false),
    ("SSL_read_ex", false),
    ("SSL_write", false),
    ("SSL_write_ex", false),
    // Go: the RET probes are traps too (no uretprobes on Go).
    ("crypto/tls.(*Conn).Read", true),
    ("crypto/tls.(*Conn).Read", false),
    ("crypto/tls.(*Conn).Write", true),
    ("SSL_set0_rbio", true),
    ("SSL_set_bio", true),
];

impl Counters {
    pub fn read(&self) -> Result<BpfStats, MapError> {
        let get = |idx: rt_stat| -> Result<u64, MapError> {
            let key = (idx as u32).to_ne_bytes();
            let per_cpu = self
                .0
                .lookup_percpu(&key, MapFlags::ANY)
                .map_err(MapError::Read)?
                .unwrap_or_default();
            Ok(per_cpu
                .iter()
                .filter_map(|v| {
                    v.get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_ne_bytes)
                })
                .sum())
        };
        Ok(BpfStats {
            events: get(rt_stat::RT_STAT_EVENTS)?,
            ringbuf_full_data: get(rt_stat::RT_STAT_RINGBUF_FULL_DATA)?,
            ringbuf_full_ctrl: get(rt_stat::RT_STAT_RINGBUF_FULL_CTRL)?,
            truncated: get(rt_stat::RT_STAT_TRUNCATED)?,
            read_faults: get(rt_stat::RT_STAT_READ_FAULTS)?,
            targets_full: get(rt_stat::RT_STAT_TARGETS_FULL)?,
            uprobe_hits: [
                get(rt_stat::RT_STAT_UPROBE_SSL_READ)?,
                get(rt_stat::RT_STAT_UPROBE_SSL_READ_EX)?,
                get(rt_stat::RT_STAT_UPROBE_SSL_WRITE)?,
                get(rt_stat::RT_STAT_UPROBE_SSL_WRITE_EX)?,
                get(rt_stat::RT_STAT_URETPROBE_SSL_READ)?,
                get(rt_stat::RT_STAT_URETPROBE_SSL_READ_EX)?,
                get(rt_stat::RT_STAT_URETPROBE_SSL_WRITE)?,
                get(rt_stat::RT_STAT_URETPROBE_SSL_WRITE_EX)?,
                get(rt_stat::RT_STAT_UPROBE_GO_TLS_READ)?,
                get(rt_stat::RT_STAT_UPROBE_GO_TLS_READ_RET)?,
                get(rt_stat::RT_STAT_UPROBE_GO_TLS_WRITE)?,
                get(rt_stat::RT_STAT_UPROBE_SSL_SET0_RBIO)?,
                get(rt_stat::RT_STAT_UPROBE_SSL_SET_BIO)?,
            ],
            tls_no_socket: get(rt_stat::RT_STAT_TLS_NO_SOCKET)?,
            tls_keys_fault: get(rt_stat::RT_STAT_TLS_KEYS_FAULT)?,
            tls_not_socket_bio: get(rt_stat::RT_STAT_TLS_NOT_SOCKET_BIO)?,
            tls_hello_unmatched: get(rt_stat::RT_STAT_TLS_HELLO_UNMATCHED)?,
            undecoded_io: get(rt_stat::RT_STAT_UNDECODED_IO)?,
            h2_conns: get(rt_stat::RT_STAT_H2_CONNS)?,
            h2_frames: get(rt_stat::RT_STAT_H2_FRAMES)?,
            h2_records: get(rt_stat::RT_STAT_H2_RECORDS)?,
            h2_header_lost: get(rt_stat::RT_STAT_H2_HEADER_LOST)?,
            h2_desync: get(rt_stat::RT_STAT_H2_DESYNC)?,
            injected: get(rt_stat::RT_STAT_INJECTED)?,
            inject_skipped: [
                get(rt_stat::RT_STAT_INJECT_HAS_TRACEPARENT)?,
                get(rt_stat::RT_STAT_INJECT_PIPELINED)?,
                get(rt_stat::RT_STAT_INJECT_SPLIT)?,
                get(rt_stat::RT_STAT_INJECT_NOT_HTTP)?,
                get(rt_stat::RT_STAT_INJECT_TUNNEL)?,
                get(rt_stat::RT_STAT_INJECT_CHUNKED)?,
                get(rt_stat::RT_STAT_INJECT_TOO_LONG)?,
                get(rt_stat::RT_STAT_INJECT_SOCKHASH_FULL)?,
                get(rt_stat::RT_STAT_INJECT_FAILED)?,
                get(rt_stat::RT_STAT_INJECT_LARGE_SEND)?,
            ],
        })
    }
}

/// The sk_msg program on the sockhash, the sockops program at the root of
/// a cgroup2 hierarchy (mounted when none is).
fn attach_injection(skel: &skel::CaptureSkel<'_>) -> Result<InjectLinks, String> {
    use std::os::fd::{AsFd, AsRawFd};
    let map_fd = skel.maps.inject_socks.as_fd().as_raw_fd();
    skel.progs
        .inject_msg
        .attach_sockmap(map_fd)
        .map_err(|e| format!("attaching the sk_msg program failed: {e}"))?;
    let cgroup = cgroup2::Cgroup2::find_or_mount().map_err(|e| {
        format!(
            "no cgroup2 hierarchy is mounted and mounting one on {} failed: {e}",
            cgroup2::OWN_MOUNT
        )
    })?;
    let dir = std::fs::File::open(&cgroup.path)
        .map_err(|e| format!("opening {} failed: {e}", cgroup.path.display()))?;
    let link = skel
        .progs
        .inject_sockops
        .attach_cgroup(dir.as_raw_fd())
        .map_err(|e| {
            format!(
                "attaching the sockops program to {} failed: {e}",
                cgroup.path.display()
            )
        })?;
    Ok(InjectLinks {
        _sockops: link,
        cgroup,
    })
}

/// `prog` on the entry (or return) of the function `func` of the file at
/// `path`, resolved by libbpf (dynamic symbols included), with `cookie`.
/// uprobe_multi links (Linux 6.6): a link's uprobes are detached with one
/// wait for the RCU grace periods, not one each, and not under the global
/// mutex that serialises perf-event uprobes (~100 ms each: 328 of them
/// took 34.5 s to detach).
fn uprobe_multi_supported() -> bool {
    if std::env::var_os("RATATOSK_NO_UPROBE_MULTI").is_some() {
        return false;
    }
    preflight::running_kernel() >= (6, 6)
}

/// File offset of the defined function `name` in the ELF file at `path`
/// (dynamic symbols first, then the symbol table), computed as libbpf
/// does for its uprobes. Resolved here for uprobe_multi because libbpf
/// 1.7's lookup by name fails on a file without `.symtab` (a stripped
/// libssl): the ENOENT of the missing table is returned even when
/// `.dynsym` had the name. Only the parts parsed are read.
fn func_offset(path: &Path, name: &str) -> Option<usize> {
    use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
    let cache = object::read::ReadCache::new(std::fs::File::open(path).ok()?);
    let file = object::File::parse(&cache).ok()?;
    let found = file
        .dynamic_symbols()
        .chain(file.symbols())
        .find(|s| s.kind() == SymbolKind::Text && !s.is_undefined() && s.name() == Ok(name))?;
    let section = file.section_by_index(found.section_index()?).ok()?;
    let (section_offset, _) = section.file_range()?;
    let offset = found
        .address()
        .checked_sub(section.address())?
        .checked_add(section_offset)?;
    usize::try_from(offset).ok()
}

/// Threads that detach uprobe links at once when the capture is dropped:
/// concurrent waiters share grace periods.
const DETACH_THREADS: usize = 64;

impl Drop for Capture {
    fn drop(&mut self) {
        let links = std::mem::take(&mut self.tls_links);
        if links.len() < 2 {
            return;
        }
        let per_thread = links.len().div_ceil(DETACH_THREADS);
        std::thread::scope(|s| {
            let mut links = links.into_iter();
            loop {
                let chunk: Vec<Link> = links.by_ref().take(per_thread).collect();
                if chunk.is_empty() {
                    break;
                }
                // Should no thread start, the chunk is dropped here.
                let _ = std::thread::Builder::new()
                    .name("detach".into())
                    .spawn_scoped(s, move || drop(chunk));
            }
        });
    }
}

fn attach_symbol(
    prog: &libbpf_rs::ProgramMut<'_>,
    path: &Path,
    func: &'static str,
    retprobe: bool,
    cookie: u64,
    multi: bool,
) -> Result<Link, TlsAttachError> {
    let attached = if multi {
        let offset = func_offset(path, func).ok_or(TlsAttachError::NoSymbol(func))?;
        prog.attach_uprobe_multi_with_opts(
            -1,
            path,
            "",
            UprobeMultiOpts {
                offsets: vec![offset],
                cookies: vec![cookie],
                retprobe,
                ..Default::default()
            },
        )
    } else {
        prog.attach_uprobe_with_opts(
            -1,
            path,
            0,
            UprobeOpts {
                retprobe,
                func_name: Some(func.to_string()),
                cookie,
                ..Default::default()
            },
        )
    };
    attached.map_err(|source| {
        if source.kind() == libbpf_rs::ErrorKind::NotFound {
            TlsAttachError::NoSymbol(func)
        } else {
            TlsAttachError::Attach { func, source }
        }
    })
}

/// Receives ring-buffer records on the reading thread.
pub trait RecordSink {
    /// One record, in the order the kernel reserved them across all CPUs.
    fn record(&mut self, data: &[u8]);
    /// Called after each drain of the ring buffer (a natural batch
    /// boundary); returning false ends the reading loop.
    fn drained(&mut self) -> bool;
}

/// The ring buffer of capture records, before a reader is attached.
pub struct EventsSource(MapHandle);

impl EventsSource {
    /// Feeds every record to `sink` on the calling thread until
    /// `sink.drained()` returns false, then drains once more.
    ///
    /// The kernel wakes the reader only once enough bytes wait (batching),
    /// so the loop also drains every `poll_interval`; after drains that
    /// found nothing the interval doubles, up to `idle_interval` (each
    /// wake-up of an idle reader costs CPU), and the first record brings
    /// it back.
    pub fn run(
        self,
        poll_interval: Duration,
        idle_interval: Duration,
        sink: &mut dyn RecordSink,
    ) -> Result<(), MapError> {
        // The callback and the loop both need the sink; they never run at
        // the same time (callbacks only run inside poll/consume).
        let sink = RefCell::new(sink);
        let records = Cell::new(0u64);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&self.0, |data: &[u8]| {
                records.set(records.get() + 1);
                sink.borrow_mut().record(data);
                0
            })
            .map_err(MapError::Poll)?;
        let rb = builder.build().map_err(MapError::Poll)?;
        let mut interval = poll_interval;
        loop {
            rb.poll(interval).map_err(MapError::Poll)?;
            rb.consume().map_err(MapError::Poll)?;
            interval = if records.replace(0) > 0 {
                poll_interval
            } else {
                (interval * 2).min(idle_interval.max(poll_interval))
            };
            if !sink.borrow_mut().drained() {
                break;
            }
        }
        rb.consume().map_err(MapError::Poll)?;
        sink.borrow_mut().drained();
        Ok(())
    }
}

fn libbpf_log(level: libbpf_rs::PrintLevel, msg: String) {
    let msg = msg.trim_end();
    match level {
        libbpf_rs::PrintLevel::Warn => tracing::debug!(target: "libbpf", "{msg}"),
        _ => tracing::trace!(target: "libbpf", "{msg}"),
    }
}

/// # Safety
/// `T` must be plain data without padding that matters to the reader.
unsafe fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: the caller guarantees T is plain old data; the slice covers
    // exactly the value and lives as long as the borrow.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::skel::types;
    use ratatosk_abi as abi;

    /// Same size, and every listed field at the same offset, in the bindgen
    /// type (from abi.h) and the skeleton type (from the object's BTF).
    macro_rules! same_layout {
        ($t:ident: $($f:ident),+) => {{
            assert_eq!(size_of::<abi::$t>(), size_of::<types::$t>(), stringify!($t));
            $(assert_eq!(
                offset_of!(abi::$t, $f),
                offset_of!(types::$t, $f),
                concat!(stringify!($t), ".", stringify!($f))
            );)+
        }};
    }

    // The records the compiled programs actually write must line up with
    // what userspace decodes (the other records are not in the object's
    // BTF: their layout is only ever produced from abi.h itself).
    #[test]
    fn abi_matches_bpf_object() {
        same_layout!(rt_header: kind, tgid, tid, ts_ns);
        same_layout!(rt_tuple: saddr, daddr, sport, dport, family);
        same_layout!(rt_data_event: hdr, sock_id, len, queued_ns, fd, captured, direction, syscall, flags, chunks, ctx, has_parent, tuple, trace_id, span_id, parent_id, data);
        same_layout!(rt_chunk: copied, skipped);
        same_layout!(rt_target: inherited);
    }
}
