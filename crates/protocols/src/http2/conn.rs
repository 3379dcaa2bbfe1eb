//! One HTTP/2 connection: frames of each direction, header blocks through
//! that direction's HPACK context, and streams paired by id.

use compact_str::CompactString;

use super::hpack::{Decoder, Name};
use super::{PREFACE, error_name};
use crate::http1::TraceParent;
use crate::op::{Detail, HttpDetail, Operation, Outcome, RpcDetail};
use crate::parse::{Direction, Role, Segment};
use crate::parser::{ConnParser, Limits, Output, State};

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

const SETTINGS_HEADER_TABLE_SIZE: u16 = 1;

/// Payload bytes kept of control frames (SETTINGS entries, RST_STREAM and
/// GOAWAY codes); the rest (GOAWAY debug data, rare settings) is skipped.
const CONTROL_KEEP: usize = 96;

/// `abort` of streams still open when the connection closed (not an
/// HTTP/2 error code: the transport ended under them).
pub const CONNECTION_CLOSED: &str = "CONNECTION_CLOSED";

/// `abort` of streams above a graceful GOAWAY's last stream id (code
/// NO_ERROR): the server will not process them.
pub const GOAWAY_REFUSED: &str = "GOAWAY";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The side that sent the connection preface (the client).
    Req,
    Resp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Bytes of the client preface matched so far (request side only).
    Preface(usize),
    /// Frame header bytes gathered in `hdr`.
    Header,
    /// Payload bytes of `frame` still to come.
    Payload,
    /// Framing lost: nothing more is parsed.
    Dead,
}

#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    len: u32,
    ty: u8,
    flags: u8,
    stream: u32,
}

/// A header block being gathered (HEADERS or PUSH_PROMISE, then
/// CONTINUATIONs).
#[derive(Debug, Clone, Copy)]
struct BlockMeta {
    stream: u32,
    end_stream: bool,
    push: bool,
    /// When its first frame header was read.
    ts: u64,
    /// Bytes of it were lost (gap, over the size bound).
    lost: bool,
}

#[derive(Debug)]
struct Dir {
    phase: Phase,
    hdr: [u8; 9],
    hdr_len: usize,
    frame: Frame,
    remaining: u32,
    /// Where this frame's payload starts in `block` (header frames).
    frame_start: usize,
    /// Some of this frame's payload was not captured.
    frame_lost: bool,
    /// Control frame payload.
    buf: Vec<u8>,
    block: Vec<u8>,
    meta: Option<BlockMeta>,
    /// First frame of the direction not yet read.
    first_frame: bool,
    /// DATA padding length, once its byte was read.
    pad: Option<u8>,
    hpack: Decoder,
}

impl Dir {
    fn new(side: Side, limits: &Limits) -> Self {
        Dir {
            phase: match side {
                Side::Req => Phase::Preface(0),
                Side::Resp => Phase::Header,
            },
            hdr: [0; 9],
            hdr_len: 0,
            frame: Frame::default(),
            remaining: 0,
            frame_start: 0,
            frame_lost: false,
            buf: Vec::new(),
            block: Vec::new(),
            meta: None,
            first_frame: true,
            pad: None,
            // Complete only once the preface (or the server's first
            // SETTINGS) shows the connection was seen from its start.
            hpack: Decoder::new(
                limits.max_header_table_size,
                limits.max_target_len.max(64),
                false,
            ),
        }
    }
}

/// What a request or response header block said, as far as kept.
#[derive(Debug, Default)]
struct Fields {
    method: Option<CompactString>,
    path: Option<CompactString>,
    authority: Option<CompactString>,
    status: Option<u16>,
    grpc_content: bool,
    user_agent: Option<CompactString>,
    traceparent: Option<TraceParent>,
    grpc_status: Option<u32>,
    unknown: bool,
}

fn text(v: &[u8]) -> CompactString {
    CompactString::from_utf8_lossy(v)
}

fn number(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u32, |n, &b| {
        n.checked_mul(10)?.checked_add(u32::from(b - b'0'))
    })
}

impl Fields {
    fn take(&mut self, name: Name, v: &[u8]) {
        match name {
            Name::Method => self.method = Some(text(v)),
            Name::Path => self.path = Some(text(v)),
            Name::Authority => self.authority = Some(text(v)),
            Name::Status => self.status = number(v).and_then(|n| u16::try_from(n).ok()),
            Name::ContentType => self.grpc_content = v.starts_with(b"application/grpc"),
            Name::UserAgent => self.user_agent = Some(text(v)),
            Name::Traceparent => self.traceparent = TraceParent::parse(v),
            Name::GrpcStatus => self.grpc_status = number(v),
            Name::Other => {}
            Name::Unknown => self.unknown = true,
        }
    }
}

#[derive(Debug)]
struct Stream {
    id: u32,
    start_ns: u64,
    req_end_ns: u64,
    resp_start_ns: u64,
    resp_end_ns: u64,
    /// A final (non-1xx) response header block was seen.
    final_seen: bool,
    method: Option<CompactString>,
    path: Option<CompactString>,
    authority: Option<CompactString>,
    user_agent: Option<CompactString>,
    traceparent: Option<TraceParent>,
    grpc: bool,
    status: u16,
    grpc_status: Option<u32>,
    req_body: u64,
    resp_body: u64,
    partial: bool,
}

/// The HTTP/2 [`ConnParser`].
#[derive(Debug)]
pub struct Http2Parser {
    request_dir: Direction,
    limits: Limits,
    req: Dir,
    resp: Dir,
    /// Open streams, in no order (bounded by `limits.max_streams`).
    streams: Vec<Stream>,
    /// The request side started without the preface: capture began
    /// mid-connection.
    mid_connection: bool,
    state: State,
    closed: bool,
}

impl Http2Parser {
    pub fn new(request_dir: Direction, limits: &Limits) -> Self {
        Http2Parser {
            request_dir,
            limits: *limits,
            req: Dir::new(Side::Req, limits),
            resp: Dir::new(Side::Resp, limits),
            streams: Vec::new(),
            mid_connection: false,
            state: State::Active,
            closed: false,
        }
    }

    /// Keeps every header in the HPACK tables (tests and fuzzing check
    /// them).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn keep_all_headers(&mut self) {
        self.req.hpack.keep_all();
        self.resp.hpack.keep_all();
    }

    /// A parser for a connection upgraded from HTTP/1.1 (`Upgrade: h2c`,
    /// RFC 7540 §3.2): `request` (the HTTP/1.1 request as parsed, without
    /// its response) is stream 1, answered in HTTP/2; the client still
    /// sends the preface, the server starts with its SETTINGS.
    pub fn upgraded(request_dir: Direction, limits: &Limits, request: Operation) -> Self {
        let mut p = Http2Parser::new(request_dir, limits);
        let (method, path, host, user_agent, req_body) = match request.detail {
            Detail::Http(d) => (
                Some(d.method),
                Some(d.target),
                d.host,
                d.user_agent,
                d.request_body_size,
            ),
            _ => (None, None, None, None, 0),
        };
        p.streams.push(Stream {
            id: 1,
            start_ns: request.request_start_ns,
            req_end_ns: request.request_end_ns,
            resp_start_ns: 0,
            resp_end_ns: 0,
            final_seen: false,
            method,
            path,
            authority: host,
            user_agent,
            traceparent: request.traceparent,
            grpc: false,
            status: 0,
            grpc_status: None,
            req_body,
            resp_body: 0,
            partial: false,
        });
        p
    }

    fn dir(&mut self, side: Side) -> &mut Dir {
        match side {
            Side::Req => &mut self.req,
            Side::Resp => &mut self.resp,
        }
    }

    /// Bytes of one direction.
    fn feed(&mut self, side: Side, mut data: &[u8], ts: u64, out: &mut Output) {
        while !data.is_empty() {
            let d = self.dir(side);
            match d.phase {
                Phase::Dead => return,
                Phase::Preface(m) => {
                    let want = PREFACE.get(m..).unwrap_or_default();
                    let n = want.len().min(data.len());
                    let (head, rest) = data.split_at(n);
                    let same = head.iter().zip(want).take_while(|(a, b)| a == b).count();
                    if same == n {
                        data = rest;
                        d.phase = if m + n == PREFACE.len() {
                            d.hpack.set_complete();
                            Phase::Header
                        } else {
                            Phase::Preface(m + n)
                        };
                    } else if m == 0 && same == 0 {
                        // No preface: the capture began mid-connection.
                        d.phase = Phase::Header;
                        self.mid_connection = true;
                        self.resp.hpack.lose_context();
                    } else {
                        out.lose("invalid_frame", 1);
                        self.lose_framing(out);
                        return;
                    }
                }
                Phase::Header => {
                    let n = (9 - d.hdr_len).min(data.len());
                    let (head, rest) = data.split_at(n);
                    if let Some(dst) = d.hdr.get_mut(d.hdr_len..d.hdr_len + n) {
                        dst.copy_from_slice(head);
                    }
                    d.hdr_len += n;
                    data = rest;
                    if d.hdr_len == 9 {
                        d.hdr_len = 0;
                        self.frame_start(side, ts, out);
                    }
                }
                Phase::Payload => {
                    let n = (d.remaining as usize).min(data.len());
                    let (chunk, rest) = data.split_at(n);
                    data = rest;
                    self.payload(side, chunk, out);
                    let d = self.dir(side);
                    d.remaining -= n as u32;
                    if d.remaining == 0 {
                        self.frame_end(side, ts, out);
                    }
                }
            }
        }
    }

    /// A gap of `n` bytes in one direction.
    fn gap(&mut self, side: Side, n: u64, ts: u64, out: &mut Output) {
        let d = self.dir(side);
        match d.phase {
            Phase::Dead => {}
            Phase::Preface(_) | Phase::Header => self.lose_framing(out),
            Phase::Payload if n > u64::from(d.remaining) => self.lose_framing(out),
            Phase::Payload => {
                d.remaining -= n as u32;
                match d.frame.ty {
                    // DATA payloads are skipped by design: no loss.
                    DATA => {}
                    HEADERS | PUSH_PROMISE | CONTINUATION => {
                        if let Some(m) = d.meta.as_mut() {
                            m.lost = true;
                        }
                    }
                    _ => d.frame_lost = true,
                }
                if d.remaining == 0 {
                    self.frame_end(side, ts, out);
                }
            }
        }
    }

    fn frame_start(&mut self, side: Side, ts: u64, out: &mut Output) {
        let mid = self.mid_connection;
        let d = self.dir(side);
        let h = d.hdr;
        let f = Frame {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            ty: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        };
        d.frame = f;
        d.remaining = f.len;
        d.frame_lost = false;
        d.buf.clear();
        d.pad = None;
        if d.first_frame {
            d.first_frame = false;
            // A server's connection preface is its SETTINGS frame.
            if side == Side::Resp && f.ty == SETTINGS && f.flags & ACK == 0 && !mid {
                d.hpack.set_complete();
            }
        }
        let in_block = d.meta.is_some();
        match f.ty {
            CONTINUATION if in_block => {
                d.frame_start = d.block.len();
                if f.stream != d.meta.map_or(0, |m| m.stream) {
                    out.lose("invalid_frame", 1);
                    if let Some(m) = d.meta.as_mut() {
                        m.lost = true;
                    }
                }
            }
            _ if in_block => {
                // A block interrupted: the peer broke the protocol, or we
                // misread; its fields are lost, and so is the context.
                out.lose("invalid_frame", 1);
                d.meta = None;
                d.hpack.lose_context();
                return self.frame_start(side, ts, out);
            }
            HEADERS | PUSH_PROMISE => {
                d.block.clear();
                d.frame_start = 0;
                d.meta = Some(BlockMeta {
                    stream: f.stream,
                    end_stream: f.ty == HEADERS && f.flags & END_STREAM != 0,
                    push: f.ty == PUSH_PROMISE,
                    ts,
                    lost: false,
                });
            }
            CONTINUATION => {
                // Its HEADERS was never seen (mid-connection): skipped.
                d.hpack.lose_context();
            }
            DATA => {
                let body = u64::from(f.len);
                let padded = f.flags & PADDED != 0;
                self.stream_data(side, f.stream, if padded { 0 } else { body });
            }
            _ => {}
        }
        let d = self.dir(side);
        if d.remaining == 0 {
            self.frame_end(side, ts, out);
        } else {
            d.phase = Phase::Payload;
        }
    }

    fn payload(&mut self, side: Side, chunk: &[u8], out: &mut Output) {
        let cap = self.limits.max_head_bytes.saturating_mul(4);
        let d = self.dir(side);
        match d.frame.ty {
            DATA => {
                if d.frame.flags & PADDED != 0 && d.pad.is_none() && d.remaining == d.frame.len {
                    d.pad = chunk.first().copied();
                }
            }
            HEADERS | PUSH_PROMISE | CONTINUATION if d.meta.is_some() => {
                let lost = d.meta.is_some_and(|m| m.lost);
                if !lost && d.block.len() + chunk.len() <= cap {
                    d.block.extend_from_slice(chunk);
                } else if !lost {
                    out.lose("header_block_too_large", 1);
                    d.block.clear();
                    if let Some(m) = d.meta.as_mut() {
                        m.lost = true;
                    }
                }
            }
            _ => {
                let room = CONTROL_KEEP.saturating_sub(d.buf.len()).min(chunk.len());
                d.buf
                    .extend_from_slice(chunk.get(..room).unwrap_or_default());
            }
        }
    }

    fn frame_end(&mut self, side: Side, ts: u64, out: &mut Output) {
        let d = self.dir(side);
        d.phase = Phase::Header;
        let f = d.frame;
        match f.ty {
            DATA => {
                // The declared length, less padding when its length byte
                // was captured (else only the length byte).
                let body = if f.flags & PADDED != 0 {
                    u64::from(f.len).saturating_sub(1 + u64::from(d.pad.unwrap_or(0)))
                } else {
                    0
                };
                self.stream_data(side, f.stream, body);
                self.stream_frame(side, f.stream, ts, f.flags & END_STREAM != 0, out);
            }
            HEADERS | PUSH_PROMISE | CONTINUATION => {
                if d.meta.is_none() {
                    return;
                }
                if f.ty != CONTINUATION && !strip(d, f) {
                    out.lose("invalid_frame", 1);
                    if let Some(m) = d.meta.as_mut() {
                        m.lost = true;
                    }
                }
                if f.flags & END_HEADERS != 0 {
                    self.block_done(side, ts, out);
                }
            }
            RST_STREAM => {
                if let (false, Some(&[a, b, c, e])) = (d.frame_lost, d.buf.get(..4)) {
                    let code = u32::from_be_bytes([a, b, c, e]);
                    self.abort(f.stream, error_name(code), ts, out);
                } else {
                    out.lose("frame_lost", 1);
                }
            }
            SETTINGS => {
                if f.flags & ACK != 0 {
                    return;
                }
                if d.frame_lost {
                    out.lose("frame_lost", 1);
                }
                let mut table = None;
                for s in d.buf.chunks_exact(6) {
                    if let &[a, b, c, e, g, h] = s
                        && u16::from_be_bytes([a, b]) == SETTINGS_HEADER_TABLE_SIZE
                    {
                        table = Some(u32::from_be_bytes([c, e, g, h]));
                    }
                }
                // The sender decodes what the other side encodes.
                if let Some(n) = table {
                    let other = match side {
                        Side::Req => Side::Resp,
                        Side::Resp => Side::Req,
                    };
                    self.dir(other).hpack.set_limit(n);
                }
            }
            GOAWAY => {
                let last = match (d.frame_lost, d.buf.get(..8)) {
                    (_, Some(&[a, b, c, e, g, h, i, j])) => Some((
                        u32::from_be_bytes([a, b, c, e]) & 0x7fff_ffff,
                        u32::from_be_bytes([g, h, i, j]),
                    )),
                    _ => None,
                };
                match last {
                    // A server's GOAWAY: client streams above `last` were
                    // not and will not be processed.
                    Some((last, code)) if side == Side::Resp => {
                        let name = if code == 0 {
                            GOAWAY_REFUSED
                        } else {
                            error_name(code)
                        };
                        let mut ids: Vec<u32> = self
                            .streams
                            .iter()
                            .filter(|s| s.id > last)
                            .map(|s| s.id)
                            .collect();
                        ids.sort_unstable();
                        for id in ids {
                            self.abort(id, name, ts, out);
                        }
                    }
                    Some(_) => {}
                    None => out.lose("frame_lost", 1),
                }
            }
            _ => {}
        }
    }

    /// A request or response frame on `stream` ended at `ts`.
    fn stream_frame(&mut self, side: Side, id: u32, ts: u64, end: bool, out: &mut Output) {
        let Some(at) = self.streams.iter().position(|s| s.id == id) else {
            return;
        };
        let done = match (side, self.streams.get_mut(at)) {
            (Side::Req, Some(s)) => {
                s.req_end_ns = ts;
                false
            }
            (Side::Resp, Some(s)) => {
                if s.resp_start_ns == 0 {
                    s.resp_start_ns = ts;
                }
                s.resp_end_ns = ts;
                end
            }
            _ => false,
        };
        if done {
            let s = self.streams.swap_remove(at);
            let outcome = if s.final_seen {
                Outcome::Complete
            } else {
                Outcome::ResponseTruncated
            };
            out.ops.push(self.operation(s, outcome, None));
        }
    }

    fn stream_data(&mut self, side: Side, id: u32, n: u64) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.id == id) {
            match side {
                Side::Req => s.req_body += n,
                Side::Resp => s.resp_body += n,
            }
        }
    }

    /// A whole header block arrived (or its end, with bytes lost).
    fn block_done(&mut self, side: Side, ts: u64, out: &mut Output) {
        let d = self.dir(side);
        let Some(meta) = d.meta.take() else {
            return;
        };
        let mut fields = Fields::default();
        let mut partial = meta.lost;
        if meta.lost {
            out.lose("header_block_lost", 1);
            d.hpack.lose_context();
        } else {
            let res = d.hpack.decode(&d.block, |n, _, v| fields.take(n, v));
            if res.is_err() {
                out.lose("hpack_error", 1);
                d.hpack.lose_context();
                partial = true;
            }
            partial |= fields.unknown;
        }
        d.block.clear();
        if meta.push || meta.stream == 0 {
            return;
        }
        match side {
            Side::Req => self.request_headers(meta, fields, partial, ts, out),
            Side::Resp => self.response_headers(meta, fields, partial, ts, out),
        }
    }

    fn request_headers(
        &mut self,
        meta: BlockMeta,
        f: Fields,
        partial: bool,
        ts: u64,
        out: &mut Output,
    ) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.id == meta.stream) {
            // Request trailers.
            s.partial |= partial;
            s.req_end_ns = ts;
            return;
        }
        if self.streams.len() >= self.limits.max_streams.max(1) && !self.streams.is_empty() {
            out.lose("stream_table_full", 1);
            // The oldest goes (the table is unordered: removal swaps).
            let oldest = self
                .streams
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| (s.start_ns, s.id))
                .map_or(0, |(i, _)| i);
            let mut s = self.streams.swap_remove(oldest);
            s.partial = true;
            let outcome = if s.final_seen || s.resp_start_ns > 0 {
                Outcome::ResponseTruncated
            } else {
                Outcome::NoResponse
            };
            out.ops.push(self.operation(s, outcome, None));
        }
        self.streams.push(Stream {
            id: meta.stream,
            start_ns: meta.ts,
            req_end_ns: ts,
            resp_start_ns: 0,
            resp_end_ns: 0,
            final_seen: false,
            method: f.method,
            path: f.path,
            authority: f.authority,
            user_agent: f.user_agent,
            traceparent: f.traceparent,
            grpc: f.grpc_content,
            status: 0,
            grpc_status: None,
            req_body: 0,
            resp_body: 0,
            partial,
        });
    }

    fn response_headers(
        &mut self,
        meta: BlockMeta,
        f: Fields,
        partial: bool,
        ts: u64,
        out: &mut Output,
    ) {
        let Some(s) = self.streams.iter_mut().find(|s| s.id == meta.stream) else {
            // A response to a request not seen (capture began after it);
            // pushed streams (even ids) answer no request of ours.
            if meta.stream % 2 == 1 {
                out.lose("unpaired_response", 1);
            }
            return;
        };
        s.partial |= partial;
        if !s.final_seen {
            match f.status {
                // Interim (1xx) responses do not start the response, as
                // in HTTP/1.
                Some(100..=199) => {}
                Some(st) => {
                    s.final_seen = true;
                    s.status = st;
                }
                // The block was lost or said no status: a final one
                // unless it says otherwise.
                None => s.final_seen = true,
            }
            if s.final_seen && s.resp_start_ns == 0 {
                s.resp_start_ns = meta.ts;
            }
            s.grpc |= f.grpc_content;
        }
        s.resp_end_ns = ts;
        if f.grpc_status.is_some() {
            s.grpc = true;
            s.grpc_status = f.grpc_status;
        }
        if meta.end_stream {
            self.stream_frame(Side::Resp, meta.stream, ts, true, out);
        }
    }

    /// Stream `id` was reset or refused.
    fn abort(&mut self, id: u32, why: &'static str, ts: u64, out: &mut Output) {
        let Some(at) = self.streams.iter().position(|s| s.id == id) else {
            return;
        };
        let mut s = self.streams.swap_remove(at);
        if s.resp_start_ns > 0 {
            s.resp_end_ns = s.resp_end_ns.max(ts);
        } else {
            s.req_end_ns = s.req_end_ns.max(ts).max(s.start_ns);
        }
        let outcome = if s.resp_start_ns > 0 {
            Outcome::ResponseTruncated
        } else {
            Outcome::NoResponse
        };
        out.ops.push(self.operation(s, outcome, Some(why)));
    }

    /// Framing of a direction is lost: every open stream ends partial,
    /// and the connection is no longer parsed.
    fn lose_framing(&mut self, out: &mut Output) {
        out.lose("lost_sync", 1);
        self.req.phase = Phase::Dead;
        self.resp.phase = Phase::Dead;
        self.flush(None, true, out);
        self.state = State::Done("lost_sync");
    }

    fn flush(&mut self, why: Option<&'static str>, partial: bool, out: &mut Output) {
        let mut all = std::mem::take(&mut self.streams);
        all.sort_unstable_by_key(|s| s.id);
        for mut s in all {
            s.partial |= partial;
            let outcome = if s.resp_start_ns > 0 {
                Outcome::ResponseTruncated
            } else {
                Outcome::NoResponse
            };
            out.ops.push(self.operation(s, outcome, why));
        }
    }

    fn operation(&self, s: Stream, outcome: Outcome, abort: Option<&'static str>) -> Operation {
        let keep = self.limits.max_target_len;
        let cut = |mut t: CompactString| {
            if t.len() > keep {
                let mut at = keep;
                while !t.is_char_boundary(at) {
                    at -= 1;
                }
                t.truncate(at);
            }
            t
        };
        let (resp_start, resp_end) = match outcome {
            Outcome::NoResponse => (0, 0),
            _ => (s.resp_start_ns, s.resp_end_ns.max(s.resp_start_ns)),
        };
        let partial = s.partial || s.method.is_none() || s.path.is_none();
        let detail = if s.grpc {
            let mut d = RpcDetail::grpc();
            d.method = s
                .path
                .map(|p| cut(p.strip_prefix('/').unwrap_or(&p).into()))
                .unwrap_or_default();
            d.status = s.grpc_status;
            d.authority = s.authority;
            d.user_agent = s.user_agent;
            d.http_status = s.status;
            d.request_body_size = s.req_body;
            d.response_body_size = s.resp_body;
            Detail::Rpc(d)
        } else {
            Detail::Http(HttpDetail {
                method: s.method.unwrap_or_default(),
                target: s.path.map(cut).unwrap_or_default(),
                protocol_version: "2",
                host: s.authority,
                user_agent: s.user_agent,
                status: s.status,
                status_text: None,
                request_body_size: s.req_body,
                response_body_size: s.resp_body,
            })
        };
        Operation {
            role: Role::from_request_direction(self.request_dir),
            request_start_ns: s.start_ns,
            request_end_ns: s.req_end_ns.max(s.start_ns),
            response_start_ns: resp_start,
            response_end_ns: resp_end,
            outcome,
            traceparent: s.traceparent,
            partial,
            abort,
            detail,
        }
    }
}

/// Removes the padding and priority (HEADERS) or promised id
/// (PUSH_PROMISE) around the fragment of the frame that started the block;
/// false when they do not fit.
fn strip(d: &mut Dir, f: Frame) -> bool {
    if d.meta.is_some_and(|m| m.lost) {
        return true;
    }
    let payload_len = d.block.len().saturating_sub(d.frame_start);
    let mut head = 0usize;
    let mut pad = 0usize;
    if f.flags & PADDED != 0 {
        let Some(&p) = d.block.get(d.frame_start) else {
            return false;
        };
        pad = usize::from(p);
        head = 1;
    }
    if f.ty == HEADERS && f.flags & PRIORITY != 0 {
        head += 5;
    }
    if f.ty == PUSH_PROMISE {
        head += 4;
    }
    if head + pad > payload_len {
        return false;
    }
    d.block.truncate(d.block.len() - pad);
    d.block.drain(d.frame_start..d.frame_start + head);
    true
}

impl ConnParser for Http2Parser {
    fn state_bytes(&self) -> usize {
        let dir = |d: &Dir| d.buf.capacity() + d.block.capacity() + d.hpack.heap_bytes();
        std::mem::size_of_val(self)
            + dir(&self.req)
            + dir(&self.resp)
            + self.streams.capacity() * std::mem::size_of::<Stream>()
    }

    fn on_data(&mut self, dir: Direction, seg: Segment<'_>, out: &mut Output) {
        if self.closed || self.state != State::Active {
            return;
        }
        let side = if dir == self.request_dir {
            Side::Req
        } else {
            Side::Resp
        };
        self.feed(side, seg.data, seg.ts_ns, out);
        let gap = seg.gap();
        if gap > 0 && self.state == State::Active {
            self.gap(side, gap, seg.ts_ns, out);
        }
    }

    fn on_close(&mut self, _ts_ns: u64, out: &mut Output) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.flush(Some(CONNECTION_CLOSED), false, out);
        // Nothing more will be decoded: free the tables and buffers now
        // rather than when the parser is dropped.
        for d in [&mut self.req, &mut self.resp] {
            d.hpack.lose_context();
            d.block = Vec::new();
            d.buf = Vec::new();
        }
        self.streams = Vec::new();
    }

    fn state(&self) -> State {
        self.state
    }
}
