//! Pairs requests with responses on one connection.

use std::collections::VecDeque;

use super::body::Framing;
use super::exchange::{Exchange, Outcome};
use super::head::{RequestHead, ResponseHead};
pub use super::stats::ConnStats;
use super::stream::{Event, Finish, Input, MessageStream, Requests, Responses};
use crate::parse::{Direction, Role, Segment};

pub use crate::parser::Limits;

/// Parsers for one direction. Until the connection's roles are known both
/// interpretations run; the first message found fixes them.
#[derive(Debug)]
struct Side {
    req: Option<MessageStream<Requests>>,
    resp: Option<MessageStream<Responses>>,
}

#[derive(Debug)]
struct PendingRequest {
    id: u64,
    dir: Direction,
    head: RequestHead,
    start_ns: u64,
    end_ns: u64,
    body_size: u64,
}

/// Snapshot of the request stream used to update requests it concerns.
#[derive(Clone, Copy)]
struct Progress {
    /// Request whose body is being read, if the stream is in a body.
    body_req: Option<u64>,
    /// Request whose tail is being skipped after a loss.
    tail_req: Option<u64>,
    last_ns: u64,
    body_size: u64,
    skipped_ns: u64,
}

impl Progress {
    fn apply(&self, r: &mut PendingRequest) {
        if self.body_req == Some(r.id) {
            r.end_ns = r.end_ns.max(self.last_ns);
            r.body_size = self.body_size;
        }
        if self.tail_req == Some(r.id) {
            // Bytes skipped after a loss are most likely the rest of it.
            r.end_ns = r.end_ns.max(self.skipped_ns);
        }
    }
}

/// A final response being received or awaiting its (unknown) end.
#[derive(Debug)]
struct Answer {
    /// None when nothing was pending (counted, never emitted).
    request: Option<PendingRequest>,
    status: u16,
    status_text: Option<compact_str::CompactString>,
    start_ns: u64,
    last_ns: u64,
    body_size: u64,
}

/// HTTP/1 state of one TCP connection.
#[derive(Debug)]
pub struct Http1Conn {
    limits: Limits,
    /// Direction that carries requests, once known.
    request_dir: Option<Direction>,
    ingress: Side,
    egress: Side,
    pending: VecDeque<PendingRequest>,
    /// Final response whose body is being received.
    response: Option<Answer>,
    /// Response whose framing was lost: it ends with the last response byte
    /// before the next message starts or the connection closes.
    truncated: Option<Answer>,
    next_id: u64,
    /// Request whose body the request stream is reading.
    body_req: Option<u64>,
    /// Request whose unknown tail the request stream is skipping.
    tail_req: Option<u64>,
    upgraded: bool,
    /// Bytes (captured, then gap) of the segment that carried the switch,
    /// left after it: the new protocol's first bytes.
    upgrade_rest: Option<(usize, u64)>,
    closed: bool,
    own: ConnStats,
    stats: ConnStats,
}

impl Side {
    fn heap_bytes(&self) -> usize {
        self.req.as_ref().map_or(0, MessageStream::heap_bytes)
            + self.resp.as_ref().map_or(0, MessageStream::heap_bytes)
    }
}

impl Http1Conn {
    /// Heap bytes held: head buffers and pending requests (their target
    /// and fields counted by length).
    pub fn heap_bytes(&self) -> usize {
        let pending: usize = self
            .pending
            .iter()
            .map(|r| {
                r.head.target.len()
                    + r.head.method.len()
                    + r.head.host.as_ref().map_or(0, |h| h.len())
                    + r.head.user_agent.as_ref().map_or(0, |h| h.len())
            })
            .sum();
        self.ingress.heap_bytes()
            + self.egress.heap_bytes()
            + self.pending.capacity() * std::mem::size_of::<PendingRequest>()
            + pending
    }

    pub fn new(limits: Limits) -> Self {
        let side = || Side {
            req: Some(MessageStream::new(
                limits.max_head_bytes,
                limits.max_target_len,
            )),
            resp: Some(MessageStream::new(
                limits.max_head_bytes,
                limits.max_target_len,
            )),
        };
        Http1Conn {
            limits,
            request_dir: None,
            ingress: side(),
            egress: side(),
            pending: VecDeque::new(),
            response: None,
            truncated: None,
            next_id: 0,
            body_req: None,
            tail_req: None,
            upgraded: false,
            upgrade_rest: None,
            closed: false,
            own: ConnStats::default(),
            stats: ConnStats::default(),
        }
    }

    /// Feeds one captured segment; finished exchanges are appended to `out`.
    pub fn on_data(&mut self, dir: Direction, seg: Segment<'_>, out: &mut Vec<Exchange>) {
        if self.upgraded || self.closed {
            return;
        }
        let mut input = Input::new(seg);
        let decided = self.request_dir.is_some() || self.probe(dir, &mut input, out);
        if decided && !self.upgraded {
            if self.request_dir == Some(dir) {
                self.drive_requests(dir, &mut input, out);
            } else {
                self.drive_responses(&mut input, out);
            }
            if self.upgraded {
                self.upgrade_rest = Some((input.data.len(), input.gap));
            }
        }
        self.refresh_stats();
    }

    /// The connection closed: emits what is still open (close-delimited
    /// responses, truncated ones, unanswered requests). Later input is
    /// ignored.
    pub fn on_close(&mut self, ts_ns: u64, out: &mut Vec<Exchange>) {
        // Exchanges carry only byte timestamps; the close time is accepted
        // so callers need not change when close-relative timing is added.
        let _ = ts_ns;
        if self.closed {
            return;
        }
        self.closed = true;
        if !self.upgraded {
            self.update_request_progress();
            let finish = self.resp_stream().map_or(Finish::Idle, |s| s.finish());
            self.end_truncated(out);
            if let Some(mut ans) = self.response.take() {
                let outcome = match finish {
                    Finish::UntilClose { end_ns, body_size } => {
                        ans.last_ns = end_ns;
                        ans.body_size = body_size;
                        Outcome::Complete
                    }
                    Finish::Incomplete { last_ns, body_size } => {
                        ans.last_ns = last_ns;
                        ans.body_size = body_size;
                        Outcome::ResponseTruncated
                    }
                    Finish::Idle => Outcome::ResponseTruncated,
                };
                self.emit(ans, outcome, out);
            }
            while let Some(req) = self.pending.pop_front() {
                self.emit_unanswered(req, out);
            }
        }
        self.stop_all();
        self.refresh_stats();
    }

    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }

    /// The connection switched protocols (101, or a 2xx to CONNECT); no
    /// further bytes are parsed.
    pub fn is_upgraded(&self) -> bool {
        self.upgraded
    }

    /// After the segment that switched protocols: how many of its bytes
    /// (captured, then gap) followed the switch.
    pub fn take_upgrade_rest(&mut self) -> Option<(usize, u64)> {
        self.upgrade_rest.take()
    }

    fn side_mut(&mut self, dir: Direction) -> &mut Side {
        match dir {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
        }
    }

    fn side(&self, dir: Direction) -> &Side {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    fn req_stream(&mut self) -> Option<&mut MessageStream<Requests>> {
        let dir = self.request_dir?;
        self.side_mut(dir).req.as_mut()
    }

    fn resp_stream(&mut self) -> Option<&mut MessageStream<Responses>> {
        let dir = self.request_dir?.opposite();
        self.side_mut(dir).resp.as_mut()
    }

    /// Runs both interpretations of `dir` until one finds a message; that
    /// fixes which direction carries requests. Returns whether it did, in
    /// which case `input` holds the rest after the winning event.
    fn probe(&mut self, dir: Direction, input: &mut Input<'_>, out: &mut Vec<Exchange>) -> bool {
        let side = self.side_mut(dir);
        let (mut as_req, mut as_resp) = (*input, *input);
        let req_ev = side.req.as_mut().and_then(|s| s.poll(&mut as_req));
        let resp_ev = side.resp.as_mut().and_then(|s| s.poll(&mut as_resp));
        let request_first = match (&req_ev, &resp_ev) {
            (None, None) => return false,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a.start_offset() <= b.start_offset(),
        };
        let request_dir = if request_first { dir } else { dir.opposite() };
        self.request_dir = Some(request_dir);
        self.side_mut(request_dir).resp = None;
        self.side_mut(request_dir.opposite()).req = None;
        if request_first {
            *input = as_req;
            if let Some(ev) = req_ev {
                self.on_request_event(dir, ev, out);
            }
        } else {
            *input = as_resp;
            if let Some(ev) = resp_ev {
                self.on_response_event(ev, out);
            }
        }
        true
    }

    fn drive_requests(&mut self, dir: Direction, input: &mut Input<'_>, out: &mut Vec<Exchange>) {
        while !self.upgraded {
            let Some(ev) = self.req_stream().and_then(|s| s.poll(input)) else {
                break;
            };
            self.on_request_event(dir, ev, out);
        }
        self.update_request_progress();
    }

    fn drive_responses(&mut self, input: &mut Input<'_>, out: &mut Vec<Exchange>) {
        while !self.upgraded {
            let Some(ev) = self.resp_stream().and_then(|s| s.poll(input)) else {
                break;
            };
            self.on_response_event(ev, out);
        }
    }

    fn on_request_event(
        &mut self,
        dir: Direction,
        ev: Event<RequestHead>,
        out: &mut Vec<Exchange>,
    ) {
        match ev {
            Event::Head {
                head,
                start_ns,
                end_ns,
                ..
            } => {
                self.new_request_started(out);
                let framing = head.framing();
                self.body_req = self.enqueue(dir, head, start_ns, end_ns);
                let done = self.req_stream().and_then(|s| s.set_framing(framing));
                if let Some(Event::Complete { end_ns, body_size }) = done {
                    self.request_done(end_ns, body_size);
                }
            }
            Event::Salvaged {
                head,
                start_ns,
                last_ns,
                ..
            } => {
                self.new_request_started(out);
                self.body_req = None;
                self.tail_req = self.enqueue(dir, head, start_ns, last_ns);
            }
            Event::Complete { end_ns, body_size } => self.request_done(end_ns, body_size),
            Event::BodyLost { last_ns, body_size } => {
                let id = self.body_req;
                self.request_done(last_ns, body_size);
                self.tail_req = id;
            }
        }
    }

    /// A new request ends whatever response could not be delimited.
    fn new_request_started(&mut self, out: &mut Vec<Exchange>) {
        self.update_request_progress();
        self.tail_req = None;
        self.end_truncated(out);
        let until_close = self.resp_stream().is_some_and(|s| s.is_until_close());
        if until_close {
            // The server kept the connection for another request, so the
            // body was not really close-delimited: we misjudged the framing.
            if let Some(mut ans) = self.response.take()
                && let Some(s) = self.resp_stream()
            {
                ans.last_ns = s.last_ns();
                ans.body_size = s.body_size();
                s.resync();
                self.emit(ans, Outcome::ResponseTruncated, out);
            }
        }
    }

    fn enqueue(
        &mut self,
        dir: Direction,
        head: RequestHead,
        start_ns: u64,
        end_ns: u64,
    ) -> Option<u64> {
        self.own.requests += 1;
        if self.limits.max_pending_requests == 0 {
            self.own.dropped_pending += 1;
            return None;
        }
        if self.pending.len() >= self.limits.max_pending_requests {
            // Keep the newest: with the response direction missing, old
            // entries would never be answered anyway.
            self.pending.pop_front();
            self.own.dropped_pending += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push_back(PendingRequest {
            id,
            dir,
            head,
            start_ns,
            end_ns,
            body_size: 0,
        });
        Some(id)
    }

    fn request_done(&mut self, end_ns: u64, body_size: u64) {
        if let Some(id) = self.body_req.take()
            && let Some(r) = self.request_mut(id)
        {
            r.end_ns = end_ns;
            r.body_size = body_size;
        }
    }

    fn request_mut(&mut self, id: u64) -> Option<&mut PendingRequest> {
        if let Some(r) = self.pending.iter_mut().rev().find(|r| r.id == id) {
            return Some(r);
        }
        [self.response.as_mut(), self.truncated.as_mut()]
            .into_iter()
            .flatten()
            .filter_map(|a| a.request.as_mut())
            .find(|r| r.id == id)
    }

    /// Where the request stream stands, for requests still receiving bytes.
    fn progress(&self) -> Option<Progress> {
        let s = self.side(self.request_dir?).req.as_ref()?;
        Some(Progress {
            body_req: self.body_req.filter(|_| s.in_body()),
            tail_req: self.tail_req,
            last_ns: s.last_ns(),
            body_size: s.body_size(),
            skipped_ns: s.skipped_last_ns(),
        })
    }

    /// Copies the request stream's progress into the requests it concerns.
    fn update_request_progress(&mut self) {
        let Some(p) = self.progress() else {
            return;
        };
        for id in [p.body_req, p.tail_req].into_iter().flatten() {
            if let Some(r) = self.request_mut(id) {
                p.apply(r);
            }
        }
    }

    fn on_response_event(&mut self, ev: Event<ResponseHead>, out: &mut Vec<Exchange>) {
        match ev {
            Event::Head {
                head,
                start_ns,
                end_ns,
                ..
            } => {
                if head.is_interim() {
                    self.own.interim_responses += 1;
                    let _ = self
                        .resp_stream()
                        .and_then(|s| s.set_framing(Framing::None));
                    return;
                }
                self.end_truncated(out);
                let ans = self.answer(&head, start_ns, end_ns);
                let method = ans.request.as_ref().map(|r| r.head.method.as_str());
                let framing = head.framing(method);
                if is_tunnel(&head, method) {
                    self.emit(ans, Outcome::Complete, out);
                    self.upgrade();
                    return;
                }
                self.response = Some(ans);
                let done = self.resp_stream().and_then(|s| s.set_framing(framing));
                if let Some(Event::Complete { end_ns, body_size }) = done {
                    self.response_done(end_ns, body_size, Outcome::Complete, out);
                }
            }
            Event::Salvaged {
                head,
                start_ns,
                last_ns,
                ..
            } => {
                if head.is_interim() {
                    self.own.interim_responses += 1;
                    return;
                }
                self.end_truncated(out);
                let ans = self.answer(&head, start_ns, last_ns);
                let method = ans.request.as_ref().map(|r| r.head.method.as_str());
                if is_tunnel(&head, method) {
                    self.emit(ans, Outcome::Complete, out);
                    self.upgrade();
                    return;
                }
                self.truncated = Some(ans);
            }
            Event::Complete { end_ns, body_size } => {
                self.response_done(end_ns, body_size, Outcome::Complete, out);
            }
            Event::BodyLost { last_ns, body_size } => {
                self.end_truncated(out);
                if let Some(mut ans) = self.response.take() {
                    ans.last_ns = last_ns;
                    ans.body_size = body_size;
                    self.truncated = Some(ans);
                }
            }
        }
    }

    /// Pairs a final response head with the oldest pending request.
    fn answer(&mut self, head: &ResponseHead, start_ns: u64, last_ns: u64) -> Answer {
        self.own.responses += 1;
        let request = self.pending.pop_front();
        if request.is_none() {
            self.own.unpaired_responses += 1;
        }
        Answer {
            request,
            status: head.status,
            status_text: head.reason.clone(),
            start_ns,
            last_ns,
            body_size: 0,
        }
    }

    fn response_done(
        &mut self,
        end_ns: u64,
        body_size: u64,
        outcome: Outcome,
        out: &mut Vec<Exchange>,
    ) {
        if let Some(mut ans) = self.response.take() {
            ans.last_ns = end_ns;
            ans.body_size = body_size;
            self.emit(ans, outcome, out);
        }
    }

    /// Emits the response whose end was unknown, ending it at the last
    /// response byte seen so far.
    fn end_truncated(&mut self, out: &mut Vec<Exchange>) {
        if let Some(mut ans) = self.truncated.take() {
            if let Some(s) = self.resp_stream() {
                ans.last_ns = ans.last_ns.max(s.skipped_last_ns());
            }
            self.emit(ans, Outcome::ResponseTruncated, out);
        }
    }

    fn upgrade(&mut self) {
        self.upgraded = true;
        // Requests pipelined behind the upgrade are never answered in HTTP.
        self.own.dropped_pending += self.pending.len() as u64;
        self.pending.clear();
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for side in [&mut self.ingress, &mut self.egress] {
            if let Some(s) = side.req.as_mut() {
                s.stop();
            }
            if let Some(s) = side.resp.as_mut() {
                s.stop();
            }
        }
    }

    fn emit(&mut self, ans: Answer, outcome: Outcome, out: &mut Vec<Exchange>) {
        let Some(mut req) = ans.request else {
            return;
        };
        // The request body may still be arriving (early response).
        if let Some(p) = self.progress() {
            p.apply(&mut req);
        }
        if outcome == Outcome::ResponseTruncated {
            self.own.truncated_responses += 1;
        }
        self.own.exchanges += 1;
        let mut ex = exchange(
            req,
            ans.status,
            ans.start_ns,
            ans.last_ns,
            ans.body_size,
            outcome,
        );
        ex.status_text = ans.status_text;
        out.push(ex);
    }

    fn emit_unanswered(&mut self, mut req: PendingRequest, out: &mut Vec<Exchange>) {
        if let Some(p) = self.progress() {
            p.apply(&mut req);
        }
        self.own.exchanges += 1;
        out.push(exchange(req, 0, 0, 0, 0, Outcome::NoResponse));
    }

    fn refresh_stats(&mut self) {
        let mut stats = self.own;
        for side in [&self.ingress, &self.egress] {
            // While both readings of a direction still run, one of them is
            // wrong and skips the other's bytes as unsynchronised: count
            // only the reading that stays, once the direction is known.
            if side.req.is_some() && side.resp.is_some() {
                continue;
            }
            if let Some(s) = side.req.as_ref() {
                stats.add(s.counters());
            }
            if let Some(s) = side.resp.as_ref() {
                stats.add(s.counters());
            }
        }
        self.stats = stats;
    }
}

fn is_tunnel(head: &ResponseHead, request_method: Option<&str>) -> bool {
    head.status == 101 || (request_method == Some("CONNECT") && (200..300).contains(&head.status))
}

fn exchange(
    req: PendingRequest,
    status: u16,
    response_start_ns: u64,
    response_end_ns: u64,
    response_body_size: u64,
    outcome: Outcome,
) -> Exchange {
    let RequestHead {
        method,
        target,
        minor_version,
        host,
        user_agent,
        traceparent,
        upgrade_h2c,
        ..
    } = req.head;
    Exchange {
        role: Role::from_request_direction(req.dir),
        method,
        target,
        minor_version,
        host,
        user_agent,
        traceparent,
        status,
        status_text: None,
        request_start_ns: req.start_ns,
        request_end_ns: req.end_ns,
        response_start_ns,
        response_end_ns,
        request_body_size: req.body_size,
        response_body_size,
        outcome,
        upgrade_h2c,
    }
}
