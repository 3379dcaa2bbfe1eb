//! Event decoding: ring-buffer records (layouts from abi.h) into typed,
//! borrowed values. Safe code only: fields are read at the offsets of the
//! generated ABI types, so a layout change in abi.h follows automatically.

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ratatosk_abi::{
    rt_chunk, rt_close_event, rt_conn_event, rt_ctx_kind, rt_data_event, rt_data_flags,
    rt_direction, rt_event_kind, rt_header, rt_listen_event, rt_proc_event, rt_tls_keys_event,
    rt_tls_memory_bio_event, rt_tuple,
};
use ratatosk_protocols::parse::{Direction, Segment};

use crate::spans::KernelIds;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tgid: u32,
    pub tid: u32,
    /// CLOCK_MONOTONIC ns at syscall exit.
    pub ts_ns: u64,
}

/// A TCP connection's addresses as seen from the traced process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// A data record's tuple as the kernel wrote it (`rt_tuple`), decoded
/// only when it differs from what the connection already knows: building
/// two socket addresses for each of the ~3 records of a request showed in
/// profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTuple([u8; size_of::<rt_tuple>()]);

impl RawTuple {
    pub fn decode(&self) -> Tuple {
        tuple(&self.0, 0)
    }

    pub fn local_port(&self) -> u16 {
        u16_at(&self.0, offset_of!(rt_tuple, sport))
    }

    fn from_record(b: &[u8], base: usize) -> Self {
        let mut raw = [0u8; size_of::<rt_tuple>()];
        if let Some(src) = b.get(base..base + raw.len()) {
            raw.copy_from_slice(src);
        }
        RawTuple(raw)
    }
}

/// Never equal to a tuple the kernel writes (family 0): a connection
/// opened from a decoded tuple takes the first data record's raw one.
impl Default for RawTuple {
    fn default() -> Self {
        RawTuple([0; size_of::<rt_tuple>()])
    }
}

#[cfg(test)]
impl From<Tuple> for RawTuple {
    fn from(t: Tuple) -> Self {
        let mut raw = [0u8; size_of::<rt_tuple>()];
        let mut put = |off: usize, v: &[u8]| raw[off..off + v.len()].copy_from_slice(v);
        let (family, local, remote) = match (t.local.ip(), t.remote.ip()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                let mut a = [0u8; 16];
                let mut b = [0u8; 16];
                a[..4].copy_from_slice(&l.octets());
                b[..4].copy_from_slice(&r.octets());
                (AF_INET, a, b)
            }
            (l, r) => {
                let v6 = |ip: IpAddr| match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                    IpAddr::V6(v6) => v6.octets(),
                };
                (AF_INET6, v6(l), v6(r))
            }
        };
        put(offset_of!(rt_tuple, family), &family.to_ne_bytes());
        put(offset_of!(rt_tuple, saddr), &local);
        put(offset_of!(rt_tuple, daddr), &remote);
        put(offset_of!(rt_tuple, sport), &t.local.port().to_ne_bytes());
        put(offset_of!(rt_tuple, dport), &t.remote.port().to_ne_bytes());
        RawTuple(raw)
    }
}

/// Indexes `reader::ORIGINS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnOrigin {
    Accept = 0,
    Connect = 1,
}

#[derive(Debug)]
pub enum Record<'a> {
    Data(Data<'a>),
    ConnOpen {
        hdr: Header,
        sock_id: u64,
        fd: u32,
        origin: ConnOrigin,
        tuple: Tuple,
    },
    Close {
        hdr: Header,
        fd: u32,
        sock_id: u64,
    },
    Exec {
        hdr: Header,
        comm: &'a str,
        filename: &'a str,
    },
    Exit {
        hdr: Header,
    },
    Listen {
        hdr: Header,
        port: u16,
    },
    /// Traffic secrets of an OpenSSL connection whose ciphertext comes in
    /// `Data` records with `cipher` set.
    TlsKeys(TlsKeys),
    /// A process runs OpenSSL over memory BIOs (its sockets are not known
    /// to the handshake probe).
    TlsMemoryBio {
        hdr: Header,
    },
}

/// Length of each secret buffer (OpenSSL's EVP_MAX_MD_SIZE).
pub const SECRET_LEN: usize = ratatosk_abi::rt_limits::RT_TLS_SECRET_LEN as usize;

#[derive(Clone)]
pub struct TlsKeys {
    pub hdr: Header,
    pub sock_id: u64,
    pub client_secret: [u8; SECRET_LEN],
    pub server_secret: [u8; SECRET_LEN],
    pub master_secret: [u8; SECRET_LEN],
}

/// The secrets never reach a log: only whether each is set.
impl std::fmt::Debug for TlsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &[u8; SECRET_LEN]| {
            if s.iter().any(|b| *b != 0) {
                "<set>"
            } else {
                "<unset>"
            }
        };
        f.debug_struct("TlsKeys")
            .field("hdr", &self.hdr)
            .field("sock_id", &self.sock_id)
            .field("client_secret", &set(&self.client_secret))
            .field("server_secret", &set(&self.server_secret))
            .field("master_secret", &set(&self.master_secret))
            .finish()
    }
}

/// Wiped once handed to the connection (which keeps its own copy only
/// until the keys are derived).
impl Drop for TlsKeys {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.client_secret.zeroize();
        self.server_secret.zeroize();
        self.master_secret.zeroize();
    }
}

#[derive(Debug)]
pub struct Data<'a> {
    pub hdr: Header,
    pub sock_id: u64,
    /// Bytes the syscall moved; `payload` is a prefix of them.
    pub len: u64,
    /// How long the newest received bytes waited in the socket (0: not
    /// measurable).
    pub queued_ns: u64,
    pub fd: u32,
    pub direction: Direction,
    /// TLS plaintext from the TLS library (not the socket's bytes).
    pub tls: bool,
    /// TLS ciphertext to decrypt with the connection's `TlsKeys`.
    pub cipher: bool,
    pub tuple: RawTuple,
    /// Ids the kernel gave the request this record starts (injection).
    pub ids: Option<KernelIds>,
    /// Captured bytes: a prefix of the `len` moved, or, when `chunks` is
    /// not empty, the copied parts of each chunk one after the other.
    pub payload: &'a [u8],
    /// HTTP/2 frame walk (`RT_DATA_CHUNKS`): the record stands for `len`
    /// bytes of the syscall made of these parts, each copied bytes then
    /// skipped ones. Checked at decode: their sums are `payload.len()`
    /// and `len`. Empty for a plain record.
    pub chunks: Chunks<'a>,
}

/// The chunk table of a walked HTTP/2 record: `rt_chunk` entries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chunks<'a>(&'a [u8]);

const CHUNK_SIZE: usize = size_of::<rt_chunk>();
const MAX_CHUNKS: usize = ratatosk_abi::rt_limits::RT_MAX_CHUNKS as usize;
/// Bytes of the table that starts a chunked record's data.
const CHUNK_TABLE: usize = MAX_CHUNKS * CHUNK_SIZE;

impl<'a> Chunks<'a> {
    /// A table in the kernel's layout (`rt_chunk` entries), for tests.
    #[cfg(test)]
    pub(crate) fn from_raw(table: &'a [u8]) -> Self {
        Chunks(table)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (copied, skipped) of each part, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        self.0.chunks_exact(CHUNK_SIZE).map(|c| {
            (
                u32_at(c, offset_of!(rt_chunk, copied)),
                u32_at(c, offset_of!(rt_chunk, skipped)),
            )
        })
    }
}

impl<'a> Data<'a> {
    /// The record as parser input, in stream order: one segment per
    /// chunk (its copied bytes, then a gap of its skipped ones), or the
    /// captured prefix and the gap after it.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'a>> + 'a {
        let ts_ns = self.hdr.ts_ns;
        let payload = self.payload;
        let plain = self.chunks.is_empty().then_some(Segment {
            ts_ns,
            data: payload,
            len: self.len,
        });
        let mut at = 0usize;
        let walked = self.chunks.iter().map(move |(copied, skipped)| {
            let data = payload.get(at..at + copied as usize).unwrap_or(&[]);
            at += copied as usize;
            Segment {
                ts_ns,
                data,
                len: u64::from(copied) + u64::from(skipped),
            }
        });
        plain.into_iter().chain(walked)
    }
}

/// Splits a chunked record's data into its table and the copied bytes,
/// checking that they agree with each other and with `len`.
fn chunked(data: &[u8], n: usize, len: u64) -> Option<(Chunks<'_>, &[u8])> {
    if n == 0 || n > MAX_CHUNKS {
        return None;
    }
    let table = data.get(..n * CHUNK_SIZE)?;
    let bytes = data.get(CHUNK_TABLE..)?;
    let chunks = Chunks(table);
    let (copied, moved) = chunks
        .iter()
        .fold((0u64, 0u64), |(c, m), (copied, skipped)| {
            (
                c + u64::from(copied),
                m + u64::from(copied) + u64::from(skipped),
            )
        });
    (copied == bytes.len() as u64 && moved == len).then_some((chunks, bytes))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("record kind {0} is unknown")]
    UnknownKind(u8),
    #[error("record of kind {kind} is {len} bytes, shorter than its layout")]
    Short { kind: u8, len: usize },
    #[error("data record claims {captured} captured bytes but carries {carried}")]
    BadCapture { captured: usize, carried: usize },
    #[error("chunked data record whose chunk table does not match its bytes")]
    BadChunks,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_ne_bytes)
        .unwrap_or(0)
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
        .unwrap_or(0)
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_ne_bytes)
        .unwrap_or(0)
}
fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

fn header(b: &[u8]) -> Header {
    Header {
        tgid: u32_at(b, offset_of!(rt_header, tgid)),
        tid: u32_at(b, offset_of!(rt_header, tid)),
        ts_ns: u64_at(b, offset_of!(rt_header, ts_ns)),
    }
}

/// A NUL-terminated string in a fixed array; invalid UTF-8 yields "".
fn cstr(b: &[u8], off: usize, cap: usize) -> &str {
    let raw = b.get(off..off + cap).unwrap_or(&[]);
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    std::str::from_utf8(raw.get(..end).unwrap_or(&[])).unwrap_or("")
}

fn addr(family: u16, raw: &[u8]) -> IpAddr {
    let mut a = [0u8; 16];
    if let Some(src) = raw.get(..16) {
        a.copy_from_slice(src);
    }
    if family == AF_INET {
        return IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
    }
    let v6 = Ipv6Addr::from(a);
    // Dual-stack sockets show IPv4 peers as ::ffff:a.b.c.d.
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn tuple(b: &[u8], base: usize) -> Tuple {
    let family = u16_at(b, base + offset_of!(rt_tuple, family));
    let family = if family == AF_INET6 {
        AF_INET6
    } else {
        AF_INET
    };
    let s = base + offset_of!(rt_tuple, saddr);
    let d = base + offset_of!(rt_tuple, daddr);
    Tuple {
        local: SocketAddr::new(
            addr(family, b.get(s..s + 16).unwrap_or(&[])),
            u16_at(b, base + offset_of!(rt_tuple, sport)),
        ),
        remote: SocketAddr::new(
            addr(family, b.get(d..d + 16).unwrap_or(&[])),
            u16_at(b, base + offset_of!(rt_tuple, dport)),
        ),
    }
}

fn need(b: &[u8], kind: u8, size: usize) -> Result<(), DecodeError> {
    if b.len() < size {
        Err(DecodeError::Short { kind, len: b.len() })
    } else {
        Ok(())
    }
}

/// The ids a data record carries (`rt_ctx_kind`), if any.
fn kernel_ids(b: &[u8]) -> Option<KernelIds> {
    fn arr<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
        b.get(off..).and_then(|s| s.first_chunk().copied())
    }
    let trace_id: [u8; 16] = arr(b, offset_of!(rt_data_event, trace_id))?;
    let span_id: [u8; 8] = arr(b, offset_of!(rt_data_event, span_id))?;
    let ctx = u8_at(b, offset_of!(rt_data_event, ctx));
    // All-zero ids are invalid in W3C trace context: not used.
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    if ctx == rt_ctx_kind::RT_CTX_SERVER as u8 {
        Some(KernelIds::Server { trace_id, span_id })
    } else if ctx == rt_ctx_kind::RT_CTX_INJECTED as u8 {
        let parent: [u8; 8] = arr(b, offset_of!(rt_data_event, parent_id))?;
        let has = u8_at(b, offset_of!(rt_data_event, has_parent)) != 0 && parent != [0; 8];
        Some(KernelIds::Injected {
            trace_id,
            span_id,
            parent_id: has.then_some(parent),
        })
    } else {
        None
    }
}

pub fn decode(b: &[u8]) -> Result<Record<'_>, DecodeError> {
    let kind = *b.first().ok_or(DecodeError::Empty)?;
    let k = |e: rt_event_kind| e as u8 == kind;
    if k(rt_event_kind::RT_EV_DATA) {
        let data_off = offset_of!(rt_data_event, data);
        need(b, kind, data_off)?;
        let captured = u32_at(b, offset_of!(rt_data_event, captured)) as usize;
        let payload = b
            .get(data_off..data_off + captured)
            .ok_or(DecodeError::BadCapture {
                captured,
                carried: b.len() - data_off,
            })?;
        let flags = u8_at(b, offset_of!(rt_data_event, flags));
        let len = u64_at(b, offset_of!(rt_data_event, len));
        let (chunks, payload) = if flags & rt_data_flags::RT_DATA_CHUNKS as u8 != 0 {
            let n = u8_at(b, offset_of!(rt_data_event, chunks)) as usize;
            chunked(payload, n, len).ok_or(DecodeError::BadChunks)?
        } else {
            (Chunks::default(), payload)
        };
        let direction = if u8_at(b, offset_of!(rt_data_event, direction))
            == rt_direction::RT_DIR_EGRESS as u8
        {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        return Ok(Record::Data(Data {
            hdr: header(b),
            sock_id: u64_at(b, offset_of!(rt_data_event, sock_id)),
            len: len.max(payload.len() as u64),
            queued_ns: u64_at(b, offset_of!(rt_data_event, queued_ns)),
            fd: u32_at(b, offset_of!(rt_data_event, fd)),
            direction,
            tls: flags & rt_data_flags::RT_DATA_TLS as u8 != 0,
            cipher: flags & rt_data_flags::RT_DATA_CIPHER as u8 != 0,
            tuple: RawTuple::from_record(b, offset_of!(rt_data_event, tuple)),
            ids: kernel_ids(b),
            payload,
            chunks,
        }));
    }
    if k(rt_event_kind::RT_EV_CONN_OPEN) {
        need(b, kind, size_of::<rt_conn_event>())?;
        let origin = if u8_at(b, offset_of!(rt_conn_event, origin))
            == ratatosk_abi::rt_conn_origin::RT_ORIGIN_ACCEPT as u8
        {
            ConnOrigin::Accept
        } else {
            ConnOrigin::Connect
        };
        return Ok(Record::ConnOpen {
            hdr: header(b),
            sock_id: u64_at(b, offset_of!(rt_conn_event, sock_id)),
            fd: u32_at(b, offset_of!(rt_conn_event, fd)),
            origin,
            tuple: tuple(b, offset_of!(rt_conn_event, tuple)),
        });
    }
    if k(rt_event_kind::RT_EV_CLOSE) {
        need(b, kind, size_of::<rt_close_event>())?;
        return Ok(Record::Close {
            hdr: header(b),
            fd: u32_at(b, offset_of!(rt_close_event, fd)),
            sock_id: u64_at(b, offset_of!(rt_close_event, sock_id)),
        });
    }
    if k(rt_event_kind::RT_EV_EXEC) || k(rt_event_kind::RT_EV_EXIT) {
        need(b, kind, size_of::<rt_proc_event>())?;
        let hdr = header(b);
        if k(rt_event_kind::RT_EV_EXIT) {
            return Ok(Record::Exit { hdr });
        }
        let comm_len = ratatosk_abi::rt_limits::RT_COMM_LEN as usize;
        let path_len = ratatosk_abi::rt_limits::RT_PATH_LEN as usize;
        return Ok(Record::Exec {
            hdr,
            comm: cstr(b, offset_of!(rt_proc_event, comm), comm_len),
            filename: cstr(b, offset_of!(rt_proc_event, filename), path_len),
        });
    }
    if k(rt_event_kind::RT_EV_LISTEN) {
        need(b, kind, size_of::<rt_listen_event>())?;
        return Ok(Record::Listen {
            hdr: header(b),
            port: u16_at(b, offset_of!(rt_listen_event, port)),
        });
    }
    if k(rt_event_kind::RT_EV_TLS_KEYS) {
        need(b, kind, size_of::<rt_tls_keys_event>())?;
        let secret = |off: usize| {
            let mut v = [0u8; SECRET_LEN];
            if let Some(src) = b.get(off..off + SECRET_LEN) {
                v.copy_from_slice(src);
            }
            v
        };
        return Ok(Record::TlsKeys(TlsKeys {
            hdr: header(b),
            sock_id: u64_at(b, offset_of!(rt_tls_keys_event, sock_id)),
            client_secret: secret(offset_of!(rt_tls_keys_event, client_secret)),
            server_secret: secret(offset_of!(rt_tls_keys_event, server_secret)),
            master_secret: secret(offset_of!(rt_tls_keys_event, master_secret)),
        }));
    }
    if k(rt_event_kind::RT_EV_TLS_MEMORY_BIO) {
        need(b, kind, size_of::<rt_tls_memory_bio_event>())?;
        return Ok(Record::TlsMemoryBio { hdr: header(b) });
    }
    Err(DecodeError::UnknownKind(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put<const N: usize>(b: &mut [u8], off: usize, v: [u8; N]) {
        b[off..off + N].copy_from_slice(&v);
    }

    /// A data record as the kernel writes it: header, fields, 5 payload bytes.
    #[test]
    fn decodes_data_record() {
        let off = offset_of!(rt_data_event, data);
        let mut b = vec![0u8; off + 5];
        b[0] = rt_event_kind::RT_EV_DATA as u8;
        put(&mut b, offset_of!(rt_header, tgid), 42u32.to_ne_bytes());
        put(&mut b, offset_of!(rt_header, ts_ns), 7u64.to_ne_bytes());
        put(&mut b, offset_of!(rt_data_event, len), 100u64.to_ne_bytes());
        put(
            &mut b,
            offset_of!(rt_data_event, captured),
            5u32.to_ne_bytes(),
        );
        b[offset_of!(rt_data_event, direction)] = rt_direction::RT_DIR_EGRESS as u8;
        b[offset_of!(rt_data_event, flags)] = rt_data_flags::RT_DATA_TLS as u8;
        let t = offset_of!(rt_data_event, tuple);
        put(
            &mut b,
            t + offset_of!(rt_tuple, family),
            AF_INET.to_ne_bytes(),
        );
        put(&mut b, t + offset_of!(rt_tuple, saddr), [127, 0, 0, 1]);
        put(&mut b, t + offset_of!(rt_tuple, daddr), [10, 0, 0, 2]);
        put(
            &mut b,
            t + offset_of!(rt_tuple, sport),
            8080u16.to_ne_bytes(),
        );
        put(
            &mut b,
            t + offset_of!(rt_tuple, dport),
            50000u16.to_ne_bytes(),
        );
        b[off..].copy_from_slice(b"HTTP/");
        let Record::Data(d) = decode(&b).unwrap() else {
            panic!("not data")
        };
        assert_eq!(d.hdr.tgid, 42);
        assert_eq!(d.len, 100);
        assert_eq!(d.payload, b"HTTP/");
        assert_eq!(d.direction, Direction::Egress);
        assert!(d.tls);
        let t = d.tuple.decode();
        assert_eq!(t.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.remote, "10.0.0.2:50000".parse().unwrap());
        assert_eq!(d.tuple.local_port(), 8080);
        assert_eq!(
            RawTuple::from(t),
            d.tuple,
            "the test encoder matches the kernel's layout"
        );
    }

    /// A keys record decodes, and its Debug form shows no secret byte.
    #[test]
    fn tls_keys_are_not_printed() {
        let mut b = vec![0u8; size_of::<rt_tls_keys_event>()];
        b[0] = rt_event_kind::RT_EV_TLS_KEYS as u8;
        let at = offset_of!(rt_tls_keys_event, client_secret);
        b[at..at + SECRET_LEN].fill(0xab);
        let Record::TlsKeys(k) = decode(&b).unwrap() else {
            panic!("not keys")
        };
        assert_eq!(k.client_secret, [0xab; SECRET_LEN]);
        let shown = format!("{k:?} {:?}", Record::TlsKeys(k.clone()));
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("ab, "),
            "{shown}"
        );
        assert!(shown.contains("client_secret: \"<set>\""), "{shown}");
        assert!(shown.contains("master_secret: \"<unset>\""), "{shown}");
    }

    /// Seeds for the `agent_record` fuzz target (fuzz/seeds/agent_record):
    /// one record of every kind at its exact size with plausible fields,
    /// and a data record with a payload. Written with
    /// `RATATOSK_WRITE_SEEDS=1 cargo test -p ratatosk --lib write_fuzz_seeds`.
    #[test]
    fn write_fuzz_seeds() {
        let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
        for kind in 0u8..32 {
            // The smallest length that is not "short" for this kind.
            let Some(len) = (1..4096).find(|&n| {
                let mut b = vec![0u8; n];
                b[0] = kind;
                !matches!(
                    decode(&b),
                    Err(DecodeError::Short { .. } | DecodeError::UnknownKind(_))
                )
            }) else {
                continue;
            };
            let mut b = vec![0u8; len];
            b[0] = kind;
            put(&mut b, offset_of!(rt_header, tgid), 4242u32.to_ne_bytes());
            put(
                &mut b,
                offset_of!(rt_header, ts_ns),
                1_000_000u64.to_ne_bytes(),
            );
            seeds.push((format!("kind{kind}.bin"), b));
        }
        assert!(seeds.len() >= 6, "{}", seeds.len());
        let off = offset_of!(rt_data_event, data);
        let payload = b"GET /api/v1/users?token=x HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut b = vec![0u8; off + payload.len()];
        b[0] = rt_event_kind::RT_EV_DATA as u8;
        put(
            &mut b,
            offset_of!(rt_data_event, len),
            (payload.len() as u64).to_ne_bytes(),
        );
        put(
            &mut b,
            offset_of!(rt_data_event, captured),
            (payload.len() as u32).to_ne_bytes(),
        );
        let t = offset_of!(rt_data_event, tuple);
        put(
            &mut b,
            t + offset_of!(rt_tuple, family),
            AF_INET.to_ne_bytes(),
        );
        put(&mut b, t + offset_of!(rt_tuple, saddr), [127, 0, 0, 1]);
        b[off..].copy_from_slice(payload);
        seeds.push(("data_http_get.bin".into(), b));
        // A walked HTTP/2 write: HEADERS, then a DATA frame whose payload
        // was skipped.
        let copied = [
            &[0u8, 0, 1, 1, 4, 0, 0, 0, 1, 0x88][..],
            &[0, 0x40, 0, 0, 1, 0, 0, 0, 1],
        ]
        .concat();
        seeds.push((
            "data_h2_chunked.bin".into(),
            chunked_record(&[(19, 16384)], &copied, 19 + 16384),
        ));
        for (_, s) in &seeds {
            let _ = decode(s).unwrap();
        }
        if std::env::var_os("RATATOSK_WRITE_SEEDS").is_some() {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/agent_record");
            std::fs::create_dir_all(dir).unwrap();
            for (name, s) in seeds {
                std::fs::write(format!("{dir}/{name}"), s).unwrap();
            }
        }
    }

    /// A chunked record as the kernel's HTTP/2 walk writes it: the chunk
    /// table, then the copied bytes.
    fn chunked_record(chunks: &[(u32, u32)], copied: &[u8], len: u64) -> Vec<u8> {
        let off = offset_of!(rt_data_event, data);
        let mut b = vec![0u8; off + CHUNK_TABLE + copied.len()];
        b[0] = rt_event_kind::RT_EV_DATA as u8;
        put(&mut b, offset_of!(rt_header, ts_ns), 9u64.to_ne_bytes());
        put(&mut b, offset_of!(rt_data_event, len), len.to_ne_bytes());
        put(
            &mut b,
            offset_of!(rt_data_event, captured),
            ((CHUNK_TABLE + copied.len()) as u32).to_ne_bytes(),
        );
        b[offset_of!(rt_data_event, flags)] = rt_data_flags::RT_DATA_CHUNKS as u8;
        b[offset_of!(rt_data_event, chunks)] = chunks.len() as u8;
        for (i, (c, s)) in chunks.iter().enumerate() {
            let at = off + i * CHUNK_SIZE;
            put(&mut b, at + offset_of!(rt_chunk, copied), c.to_ne_bytes());
            put(&mut b, at + offset_of!(rt_chunk, skipped), s.to_ne_bytes());
        }
        b[off + CHUNK_TABLE..].copy_from_slice(copied);
        b
    }

    /// A write of a HEADERS frame, a DATA frame whose payload the kernel
    /// skipped, then another HEADERS frame: two segments, each copied
    /// bytes then a gap, in stream order and with the syscall's time.
    #[test]
    fn chunked_record_becomes_consecutive_segments() {
        let headers = [0, 0, 3, 1, 4, 0, 0, 0, 1, 0x82, 0x86, 0x84];
        let data_hdr = [0, 0x40, 0, 0, 0, 0, 0, 0, 1];
        let headers3 = [0, 0, 1, 1, 4, 0, 0, 0, 3, 0x88];
        let copied = [&headers[..], &data_hdr, &headers3].concat();
        let b = chunked_record(
            &[(21, 16384), (10, 0)],
            &copied,
            (copied.len() + 16384) as u64,
        );
        let Record::Data(d) = decode(&b).unwrap() else {
            panic!("not data")
        };
        let segs: Vec<_> = d.segments().collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].data, &copied[..21]);
        assert_eq!(segs[0].gap(), 16384);
        assert_eq!(segs[1].data, &headers3);
        assert_eq!(segs[1].gap(), 0);
        assert!(segs.iter().all(|s| s.ts_ns == 9));
        assert_eq!(
            segs.iter().map(|s| s.len).sum::<u64>(),
            d.len,
            "the segments stand for the record's bytes exactly"
        );

        // A plain record is one segment: its prefix and the gap after it.
        let plain = chunked_record(&[], b"", 0);
        let mut plain = plain[..offset_of!(rt_data_event, data)].to_vec();
        plain[offset_of!(rt_data_event, flags)] = 0;
        put(
            &mut plain,
            offset_of!(rt_data_event, captured),
            0u32.to_ne_bytes(),
        );
        put(
            &mut plain,
            offset_of!(rt_data_event, len),
            77u64.to_ne_bytes(),
        );
        let Record::Data(d) = decode(&plain).unwrap() else {
            panic!("not data")
        };
        let segs: Vec<_> = d.segments().collect();
        assert_eq!(segs.len(), 1);
        assert_eq!((segs[0].data.len(), segs[0].len), (0, 77));
    }

    /// A table that does not add up to the record is refused, not
    /// guessed at.
    #[test]
    fn chunk_tables_that_disagree_are_refused() {
        let bytes = [1u8; 10];
        // Copied sum 9 for 10 bytes carried.
        let b = chunked_record(&[(9, 5)], &bytes, 15);
        assert_eq!(decode(&b).unwrap_err(), DecodeError::BadChunks);
        // Moved sum 15 for a record of 16.
        let b = chunked_record(&[(10, 5)], &bytes, 16);
        assert_eq!(decode(&b).unwrap_err(), DecodeError::BadChunks);
        // More chunks than the table holds, or none.
        let mut b = chunked_record(&[(10, 5)], &bytes, 15);
        b[offset_of!(rt_data_event, chunks)] = (MAX_CHUNKS + 1) as u8;
        assert_eq!(decode(&b).unwrap_err(), DecodeError::BadChunks);
        b[offset_of!(rt_data_event, chunks)] = 0;
        assert_eq!(decode(&b).unwrap_err(), DecodeError::BadChunks);
        // Shorter than its table.
        let b = chunked_record(&[(10, 5)], &bytes, 15);
        let short = &b[..offset_of!(rt_data_event, data) + 8];
        let mut short = short.to_vec();
        put(
            &mut short,
            offset_of!(rt_data_event, captured),
            8u32.to_ne_bytes(),
        );
        assert_eq!(decode(&short).unwrap_err(), DecodeError::BadChunks);
        // The good one.
        let b = chunked_record(&[(10, 5)], &bytes, 15);
        assert!(decode(&b).is_ok());
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(decode(&[]).unwrap_err(), DecodeError::Empty);
        assert_eq!(
            decode(&[99, 0, 0]).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
        assert!(matches!(decode(&[1, 0, 0]), Err(DecodeError::Short { .. })));
        // Claims more payload than it carries.
        let off = offset_of!(rt_data_event, data);
        let mut b = vec![0u8; off + 2];
        b[0] = rt_event_kind::RT_EV_DATA as u8;
        put(
            &mut b,
            offset_of!(rt_data_event, captured),
            9u32.to_ne_bytes(),
        );
        assert!(matches!(decode(&b), Err(DecodeError::BadCapture { .. })));
    }

    #[test]
    fn maps_v4_in_v6() {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(addr(AF_INET6, &a), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}
