//! HTTP/1 behind the protocol interface: detection from either
//! direction's start line, and [`Http1Conn`]'s exchanges as operations.

use super::conn::{ConnStats, Http1Conn};
use super::detect::{Detect, detect};
use super::exchange::Exchange;
use crate::http2::Http2Parser;
use crate::op::{Detail, HttpDetail, Operation};
use crate::parse::{Direction, Role, Segment};
use crate::parser::{ConnParser, Detection, Limits, Output, Protocol, State, Strength};

/// The HTTP/1.x entry of the registry.
pub struct Http1;

pub static HTTP1: Http1 = Http1;

impl Protocol for Http1 {
    fn name(&self) -> &'static str {
        "http1"
    }

    fn ports(&self) -> &'static [u16] {
        &[80, 8080]
    }

    fn detect(&self, dir: Direction, first: &[u8]) -> Detection {
        match detect(first) {
            Detect::Request => Detection::Match {
                request_dir: dir,
                strength: Strength::Strong,
            },
            Detect::Response => Detection::Match {
                request_dir: dir.opposite(),
                strength: Strength::Strong,
            },
            Detect::NeedMore => Detection::NeedMore,
            Detect::No => Detection::No,
        }
    }

    fn parser(&self, _request_dir: Direction, limits: &Limits) -> Box<dyn ConnParser> {
        // Http1Conn finds the request direction itself from the first
        // message (both interpretations run until one matches).
        Box::new(Http1Parser {
            conn: Http1Conn::new(*limits),
            scratch: Vec::new(),
            seen: ConnStats::default(),
            limits: *limits,
            h2: None,
        })
    }
}

/// [`Http1Conn`] as a [`ConnParser`].
#[derive(Debug)]
pub struct Http1Parser {
    conn: Http1Conn,
    scratch: Vec<Exchange>,
    /// Counters already reported as losses.
    seen: ConnStats,
    limits: Limits,
    /// After `Upgrade: h2c` and its 101: the connection in HTTP/2.
    h2: Option<Box<Http2Parser>>,
}

impl Http1Parser {
    fn collect(&mut self, out: &mut Output) {
        out.ops.extend(self.scratch.drain(..).map(operation));
        let now = *self.conn.stats();
        if now != self.seen {
            let was = self.seen;
            let d = |f: fn(&ConnStats) -> u64| f(&now).saturating_sub(f(&was));
            out.lose("invalid_message", d(|s| s.invalid_messages));
            out.lose("resync", d(|s| s.resyncs));
            out.lose("unpaired_response", d(|s| s.unpaired_responses));
            out.lose("pending_queue_full", d(|s| s.dropped_pending));
            // One loss per stretch of lost sync, not one per byte.
            out.lose("lost_sync", d(|s| s.lost_sync_bytes).min(1));
            self.seen = now;
        }
    }
}

impl Http1Parser {
    /// The connection just switched protocols in `seg`: if to HTTP/2
    /// (`Upgrade: h2c` answered by 101), an HTTP/2 parser takes over, its
    /// stream 1 being the upgraded request, and gets the bytes of `seg`
    /// that followed the 101's head.
    fn hand_over(&mut self, dir: Direction, seg: Segment<'_>, out: &mut Output) {
        let Some(at) = self
            .scratch
            .iter()
            .rposition(|ex| ex.status == 101 && ex.upgrade_h2c)
        else {
            return;
        };
        let ex = self.scratch.remove(at);
        let request_dir = match ex.role {
            Role::Server => Direction::Ingress,
            Role::Client => Direction::Egress,
        };
        // What the HTTP/1 side swallowed after the 101 is HTTP/2's, not a
        // loss.
        out.ops.extend(self.scratch.drain(..).map(operation));
        self.seen = *self.conn.stats();
        let mut h2 = Box::new(Http2Parser::upgraded(
            request_dir,
            &self.limits,
            operation(ex),
        ));
        if let Some((n, gap)) = self.conn.take_upgrade_rest()
            && n as u64 + gap > 0
        {
            let rest = seg
                .data
                .get(seg.data.len().saturating_sub(n)..)
                .unwrap_or_default();
            h2.on_data(
                dir,
                Segment::truncated(seg.ts_ns, rest, rest.len() as u64 + gap),
                out,
            );
        }
        self.h2 = Some(h2);
    }
}

impl ConnParser for Http1Parser {
    fn on_data(&mut self, dir: Direction, seg: Segment<'_>, out: &mut Output) {
        if let Some(h2) = self.h2.as_mut() {
            h2.on_data(dir, seg, out);
            return;
        }
        let was = self.conn.is_upgraded();
        self.conn.on_data(dir, seg, &mut self.scratch);
        if !was && self.conn.is_upgraded() {
            self.hand_over(dir, seg, out);
        }
        self.collect(out);
    }

    fn on_close(&mut self, ts_ns: u64, out: &mut Output) {
        if let Some(h2) = self.h2.as_mut() {
            h2.on_close(ts_ns, out);
            return;
        }
        self.conn.on_close(ts_ns, &mut self.scratch);
        self.collect(out);
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of_val(self)
            + self.conn.heap_bytes()
            + self.scratch.capacity() * std::mem::size_of::<Exchange>()
            + self.h2.as_ref().map_or(0, |h2| h2.state_bytes())
    }

    fn state(&self) -> State {
        if let Some(h2) = &self.h2 {
            return h2.state();
        }
        if self.conn.is_upgraded() {
            State::Done("upgraded")
        } else {
            State::Active
        }
    }
}

/// An exchange as a protocol-neutral operation.
pub fn operation(ex: Exchange) -> Operation {
    Operation {
        role: ex.role,
        request_start_ns: ex.request_start_ns,
        request_end_ns: ex.request_end_ns,
        response_start_ns: ex.response_start_ns,
        response_end_ns: ex.response_end_ns,
        outcome: ex.outcome,
        traceparent: ex.traceparent,
        partial: false,
        abort: None,
        detail: Detail::Http(HttpDetail {
            method: ex.method,
            target: ex.target,
            protocol_version: if ex.minor_version == 0 { "1.0" } else { "1.1" },
            host: ex.host,
            user_agent: ex.user_agent,
            status: ex.status,
            status_text: ex.status_text,
            request_body_size: ex.request_body_size,
            response_body_size: ex.response_body_size,
        }),
    }
}
