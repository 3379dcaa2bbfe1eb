//! HTTP/1 behind the protocol interface: detection from either
//! direction's start line, and [`Http1Conn`]'s exchanges as operations.

use super::conn::{ConnStats, Http1Conn};
use super::detect::{Detect, detect};
use super::exchange::Exchange;
use crate::op::{Detail, HttpDetail, Operation};
use crate::parse::{Direction, Segment};
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

impl ConnParser for Http1Parser {
    fn on_data(&mut self, dir: Direction, seg: Segment<'_>, out: &mut Output) {
        self.conn.on_data(dir, seg, &mut self.scratch);
        self.collect(out);
    }

    fn on_close(&mut self, ts_ns: u64, out: &mut Output) {
        self.conn.on_close(ts_ns, &mut self.scratch);
        self.collect(out);
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of_val(self)
            + self.conn.heap_bytes()
            + self.scratch.capacity() * std::mem::size_of::<Exchange>()
    }

    fn state(&self) -> State {
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
