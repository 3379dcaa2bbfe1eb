//! One MySQL/MariaDB connection: the handshake, then commands paired with
//! their responses in order.

use std::collections::VecDeque;

use compact_str::CompactString;

use super::com;
use super::framer::{Framer, Packet};
use super::wire::{self, cap, status};
use crate::op::{DbDetail, DbSystem, Detail, Operation, Outcome};
use crate::parse::{Direction, Role, Segment};
use crate::parser::{ConnParser, Limits, Output, State};
use crate::sql::{self, Dialect, SqlSummary};

/// Response packets kept per message: enough for a greeting, an OK with
/// session state and an ERR header (the error message, which may quote
/// literals, is never read).
const RESPONSE_KEEP: usize = 512;
/// Longest database name kept (MySQL allows 64 characters).
const MAX_NAMESPACE: usize = 256;
/// `COM_STMT_EXECUTE` id meaning "the statement prepared last" (MariaDB
/// clients pipeline a prepare and its execute this way).
const LAST_PREPARED: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing seen yet: a greeting starts a handshake, a command means
    /// capture began on an open connection.
    Start,
    /// Greeting seen; the client's handshake response is next.
    Handshake,
    /// Authentication exchange (switch requests, more data): until the
    /// server's OK or ERR. Nothing of it is kept.
    Auth,
    Command,
}

/// What a command's response looks like, hence when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `COM_QUERY`: a span.
    Query,
    /// `COM_STMT_EXECUTE` / `COM_STMT_BULK_EXECUTE`: a span.
    Execute,
    /// `COM_STMT_PREPARE`: a span only if it fails.
    Prepare,
    /// `COM_STMT_FETCH`: rows of an open cursor; no span.
    Fetch,
    /// A command answered by one OK or ERR; a span (named so) only if it
    /// fails.
    Simple(&'static str),
    /// A command whose response shape is not followed: it ends at the next
    /// command. No span.
    Opaque,
}

/// Where a response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resp {
    /// Its first packet (or the first of the next result set) is due.
    Start,
    /// Column definitions still due.
    Columns(u64),
    /// The EOF after column definitions is due.
    ColumnsEof,
    /// After the column definitions, a 0xfe packet came while the
    /// connection's CLIENT_DEPRECATE_EOF is unknown (capture began after
    /// the handshake): either an EOF before rows or the end of an empty
    /// result set. What comes next (a row or the next command) tells.
    MaybeEof,
    Rows,
    /// A prepare's parameter definitions, then its column definitions.
    PrepParams {
        left: u64,
        cols: u64,
    },
    PrepParamsEof {
        cols: u64,
    },
    PrepCols(u64),
    PrepColsEof,
    /// LOCAL INFILE: the client uploads a file; the server's OK or ERR
    /// ends the command.
    Infile,
    /// Ends with the next command.
    Opaque,
}

#[derive(Debug)]
struct Pending {
    kind: Kind,
    /// Statement text (query, prepare, execute of a known statement).
    summary: Option<SqlSummary>,
    /// Namespace the command switches to when it succeeds (`COM_INIT_DB`,
    /// `USE db`).
    switch_to: Option<CompactString>,
    namespace: Option<CompactString>,
    request_start_ns: u64,
    request_end_ns: u64,
    /// Sequence id the next response packet must carry.
    next_seq: u8,
    state: Resp,
    response_start_ns: u64,
    response_end_ns: u64,
    rows: u64,
    result_sets: u32,
    error: Option<u16>,
}

/// The [`ConnParser`] of one MySQL/MariaDB connection.
#[derive(Debug)]
pub struct MysqlParser {
    request_dir: Direction,
    role: Role,
    limits: Limits,
    req: Framer,
    resp: Framer,
    scratch: Vec<Packet>,
    phase: Phase,
    system: DbSystem,
    server_caps: Option<u64>,
    client_caps: Option<u64>,
    /// CLIENT_DEPRECATE_EOF of the session; `None` when the handshake was
    /// not seen.
    deprecate_eof: Option<bool>,
    namespace: Option<CompactString>,
    /// Prepared statements, oldest first (bounded by `max_statements`).
    statements: Vec<(u32, SqlSummary)>,
    /// Heap bytes of `statements`' texts, recounted when it changes (rare)
    /// so that `state_bytes` stays O(1) per record.
    statement_bytes: usize,
    /// Text of the last `COM_STMT_PREPARE` sent.
    last_prepared: Option<SqlSummary>,
    pending: VecDeque<Pending>,
    /// Response packets arrived with no command pending (counted once per
    /// stretch).
    unpaired: bool,
    done: Option<&'static str>,
    closed: bool,
}

impl MysqlParser {
    pub fn new(request_dir: Direction, limits: &Limits) -> Self {
        // A command is kept whole up to the statement limit (plus its
        // header); handshake responses are shorter than 1 KB.
        let request_keep = limits.max_query_len.saturating_add(16).max(1024);
        MysqlParser {
            request_dir,
            role: Role::from_request_direction(request_dir),
            limits: *limits,
            req: Framer::new(request_keep),
            resp: Framer::new(RESPONSE_KEEP),
            scratch: Vec::new(),
            phase: Phase::Start,
            system: DbSystem::Mysql,
            server_caps: None,
            client_caps: None,
            deprecate_eof: None,
            namespace: None,
            statements: Vec::new(),
            statement_bytes: 0,
            last_prepared: None,
            pending: VecDeque::new(),
            unpaired: false,
            done: None,
            closed: false,
        }
    }

    /// Capabilities both sides agreed on; 4.1 protocol when unknown.
    fn caps(&self) -> u64 {
        match (self.server_caps, self.client_caps) {
            (Some(s), Some(c)) => s & c,
            _ => cap::PROTOCOL_41,
        }
    }

    fn on_request_data(&mut self, seg: Segment<'_>, out: &mut Output) {
        if self.req.is_lost() {
            // A command starts a write of its own: resume at the first
            // segment that starts like one.
            if !plausible_command(seg.data) {
                return;
            }
            self.req.reset();
        }
        let mut packets = std::mem::take(&mut self.scratch);
        if self.req.feed(seg.ts_ns, seg.data, seg.gap(), &mut packets) {
            out.lose("lost_sync", 1);
        }
        for p in packets.drain(..) {
            if self.done.is_some() {
                break;
            }
            self.on_request(&p, out);
            self.req.recycle(p.data);
        }
        self.scratch = packets;
    }

    fn on_response_data(&mut self, seg: Segment<'_>, out: &mut Output) {
        if self.resp.is_lost() {
            // The rest of a response whose framing a gap hid: it ends when
            // the client sends its next command, or at a segment ending
            // with the packet that ends a result set.
            self.touch_lost_response(seg.ts_ns);
            if seg.gap() == 0
                && ends_with_terminator(seg.data)
                && let Some(p) = self.pending.pop_front()
            {
                self.finish(p, Outcome::ResponseTruncated, out);
            }
            return;
        }
        let mut packets = std::mem::take(&mut self.scratch);
        let lost = self.resp.feed(seg.ts_ns, seg.data, seg.gap(), &mut packets);
        if lost {
            out.lose("lost_sync", 1);
        }
        for p in packets.drain(..) {
            if self.done.is_some() {
                break;
            }
            self.on_response(&p, out);
            self.resp.recycle(p.data);
        }
        if lost {
            // The last packet ran into the gap: its response cannot be
            // followed further.
            self.touch_lost_response(seg.ts_ns);
        }
        self.scratch = packets;
    }

    /// Response bytes of the front command while its framing is lost.
    fn touch_lost_response(&mut self, ts: u64) {
        if let Some(p) = self.pending.front_mut() {
            if p.response_start_ns == 0 {
                p.response_start_ns = ts;
            }
            p.response_end_ns = ts;
            p.state = Resp::Opaque;
            p.rows = 0;
            p.result_sets = 0;
        }
    }

    fn on_request(&mut self, p: &Packet, out: &mut Output) {
        match self.phase {
            Phase::Start if p.seq == 1 || p.seq == 2 => {
                // A handshake response without its greeting: inside TLS,
                // or capture began right after the greeting.
                if wire::handshake_response(&p.data, None).is_some_and(|h| !h.ssl) {
                    self.on_handshake_response(p, out);
                    return;
                }
            }
            Phase::Start | Phase::Command => {}
            Phase::Handshake => {
                self.on_handshake_response(p, out);
                return;
            }
            Phase::Auth => {
                if p.seq != 0 {
                    // Authentication data: skipped unread.
                    return;
                }
                // A command: the end of authentication was not seen.
            }
        }
        self.phase = Phase::Command;
        if p.seq != 0 {
            // File content of LOCAL INFILE (its sequence continues the
            // command's); anything else is out of place.
            match self.pending.front_mut() {
                Some(f) if f.state == Resp::Infile => f.next_seq = p.last_seq.wrapping_add(1),
                _ => out.lose("unexpected_packet", 1),
            }
            return;
        }
        self.settle_before_command(out);
        let Some((&command, body)) = p.data.split_first() else {
            out.lose("invalid_message", 1);
            return;
        };
        let mut pending = Pending {
            kind: Kind::Opaque,
            summary: None,
            switch_to: None,
            namespace: self.namespace.clone(),
            request_start_ns: p.first_ts,
            request_end_ns: p.last_ts,
            next_seq: p.last_seq.wrapping_add(1),
            state: Resp::Start,
            response_start_ns: 0,
            response_end_ns: 0,
            rows: 0,
            result_sets: 0,
            error: None,
        };
        let truncated = !p.complete;
        match command {
            com::QUIT | com::STMT_SEND_LONG_DATA => return,
            com::STMT_CLOSE => {
                if let Some(id) = u32_at(body, 0) {
                    self.statements.retain(|(s, _)| *s != id);
                    self.statement_bytes = text_bytes(&self.statements);
                }
                return;
            }
            com::QUERY => {
                pending.kind = Kind::Query;
                match self.query_text(body) {
                    Some(text) => {
                        pending.switch_to = use_target(text);
                        pending.summary = Some(self.summarize(text, truncated));
                    }
                    None => out.lose("query_attributes", 1),
                }
            }
            com::STMT_PREPARE => {
                pending.kind = Kind::Prepare;
                let s = self.summarize(body, truncated);
                self.last_prepared = Some(s.clone());
                pending.summary = Some(s);
            }
            com::STMT_EXECUTE | com::STMT_BULK_EXECUTE => {
                pending.kind = Kind::Execute;
                pending.summary = match u32_at(body, 0) {
                    Some(LAST_PREPARED) => self.last_prepared.clone(),
                    Some(id) => self
                        .statements
                        .iter()
                        .find(|(s, _)| *s == id)
                        .map(|(_, t)| t.clone()),
                    None => None,
                };
            }
            com::STMT_FETCH => {
                pending.kind = Kind::Fetch;
                pending.state = Resp::Rows;
            }
            com::INIT_DB => {
                pending.kind = Kind::Simple("INIT_DB");
                pending.switch_to = Some(name(body));
            }
            com::PING => pending.kind = Kind::Simple("PING"),
            com::STMT_RESET => pending.kind = Kind::Simple("STMT_RESET"),
            com::SET_OPTION => pending.kind = Kind::Simple("SET_OPTION"),
            com::RESET_CONNECTION => {
                pending.kind = Kind::Simple("RESET_CONNECTION");
                // The server frees the session's statements.
                self.statements.clear();
                self.statement_bytes = 0;
            }
            com::CHANGE_USER => {
                // New credentials and database: an authentication exchange
                // follows, then commands again.
                self.statements.clear();
                self.statement_bytes = 0;
                self.namespace = change_user_database(body, self.caps()).map(|d| name(&d));
                self.phase = Phase::Auth;
                return;
            }
            com::BINLOG_DUMP | com::BINLOG_DUMP_GTID => {
                self.done = Some("replication");
                return;
            }
            com::FIELD_LIST | com::REGISTER_SLAVE => {}
            c if com::known(c) => {}
            _ => {
                out.lose("invalid_message", 1);
                return;
            }
        }
        if self.pending.len() >= self.limits.max_pending_requests.max(1) {
            self.pending.pop_front();
            out.lose("pending_queue_full", 1);
        }
        self.pending.push_back(pending);
    }

    /// A new command means the client read every earlier response it
    /// waited for: those still open end here.
    fn settle_before_command(&mut self, out: &mut Output) {
        self.unpaired = false;
        let was_lost = self.resp.is_lost();
        if !self.resp.at_boundary() {
            if !was_lost {
                out.lose("unterminated_response", 1);
            }
            self.resp.reset();
        }
        while let Some(front) = self.pending.front() {
            if front.response_start_ns == 0 {
                break;
            }
            let outcome = match front.state {
                Resp::MaybeEof => {
                    // Nothing followed the 0xfe: it ended an empty result.
                    self.deprecate_eof = Some(true);
                    Outcome::Complete
                }
                Resp::PrepColsEof | Resp::PrepParamsEof { cols: 0 }
                    if self.deprecate_eof.is_none() =>
                {
                    // A prepare's definitions ended without EOF.
                    self.deprecate_eof = Some(true);
                    Outcome::Complete
                }
                Resp::Opaque if !was_lost && front.kind == Kind::Opaque => Outcome::Complete,
                Resp::Opaque => Outcome::ResponseTruncated,
                _ => {
                    if !was_lost {
                        out.lose("unterminated_response", 1);
                    }
                    Outcome::ResponseTruncated
                }
            };
            if let Some(p) = self.pending.pop_front() {
                self.finish(p, outcome, out);
            }
        }
    }

    fn on_handshake_response(&mut self, p: &Packet, out: &mut Output) {
        let server = self.server_caps.unwrap_or(0);
        let parsed = (p.seq == 1 || p.seq == 2)
            .then(|| wire::handshake_response(&p.data, self.server_caps))
            .flatten();
        let Some(h) = parsed else {
            out.lose("invalid_message", 1);
            self.phase = Phase::Auth;
            return;
        };
        if h.ssl {
            self.done = Some("tls");
            return;
        }
        self.client_caps = Some(h.caps);
        if self.server_caps.is_none() {
            // Inside TLS the greeting was not seen: the client asked for
            // what the server offered (deprecated EOF stays unknown).
            self.server_caps = Some(h.caps & !cap::DEPRECATE_EOF);
        }
        let both = self.server_caps.unwrap_or(server) & h.caps;
        if both & (cap::COMPRESS | cap::ZSTD) != 0 {
            out.lose("compressed", 1);
            self.done = Some("compressed");
            return;
        }
        self.deprecate_eof = if server == 0 && h.caps & cap::DEPRECATE_EOF != 0 {
            None
        } else {
            Some(both & cap::DEPRECATE_EOF != 0)
        };
        self.namespace = h.database.as_deref().map(name);
        self.phase = Phase::Auth;
    }

    fn on_response(&mut self, p: &Packet, out: &mut Output) {
        match self.phase {
            Phase::Start => {
                if p.seq == 0
                    && let Ok(g) = wire::greeting(&p.data, p.complete)
                {
                    self.system = if g.mariadb {
                        DbSystem::Mariadb
                    } else {
                        DbSystem::Mysql
                    };
                    self.server_caps = Some(g.caps);
                    self.phase = Phase::Handshake;
                    return;
                }
                // Capture began mid-connection: responses before the first
                // command seen pair with nothing.
                self.phase = Phase::Command;
            }
            Phase::Handshake => return,
            Phase::Auth => {
                match p.data.first() {
                    Some(0x00) => {
                        if let Some(ok) = wire::ok_packet(&p.data, self.caps())
                            && let Some(s) = ok.schema
                        {
                            self.namespace = Some(name(&s));
                        }
                        self.phase = Phase::Command;
                    }
                    // Refused: the server closes.
                    Some(0xff) => self.phase = Phase::Command,
                    _ => {}
                }
                return;
            }
            Phase::Command => {}
        }
        let caps = self.caps();
        let unknown_caps = self.client_caps.is_none();
        let deprecate_eof = self.deprecate_eof;
        let Some(front) = self.pending.front_mut() else {
            if !self.unpaired {
                self.unpaired = true;
                out.lose("unpaired_response", 1);
            }
            return;
        };
        if front.state != Resp::Opaque && p.seq != front.next_seq {
            // Framing or pairing went wrong: this response cannot be
            // trusted; the next command resynchronises.
            // Framing still holds: the packets are skipped up to the next
            // command.
            out.lose("bad_sequence", 1);
            if front.response_start_ns == 0 {
                front.response_start_ns = p.first_ts;
            }
            front.response_end_ns = p.last_ts;
            front.state = Resp::Opaque;
            front.rows = 0;
            front.result_sets = 0;
            return;
        }
        front.next_seq = p.last_seq.wrapping_add(1);
        if front.response_start_ns == 0 {
            front.response_start_ns = p.first_ts;
        }
        front.response_end_ns = p.last_ts;
        let first = p.data.first().copied();
        // 0xfe with a payload under 16 MB ends rows (an EOF, or an OK when
        // EOF is deprecated); a text row starting with 0xfe is >= 16 MB.
        let terminator = first == Some(0xfe) && p.len < 0xff_ffff;
        let eof = first == Some(0xfe) && p.len < 9;
        let mut ended = false;
        let mut schema = None;
        if first == Some(0xff) {
            match wire::err_code(&p.data) {
                Some(code) => {
                    front.error = Some(code);
                    ended = true;
                }
                None if p.data.get(1..3) == Some(&[0xff, 0xff][..]) => {} // progress report
                None => {
                    out.lose("invalid_message", 1);
                    ended = true;
                }
            }
        } else {
            match front.state {
                Resp::Opaque => {}
                Resp::Start => match first {
                    Some(0x00) if front.kind == Kind::Prepare => {
                        let id = u32_at(&p.data, 1);
                        let cols = u16_at(&p.data, 5).map_or(0, u64::from);
                        let params = u16_at(&p.data, 7).map_or(0, u64::from);
                        if let (Some(id), Some(s)) = (id, front.summary.clone()) {
                            remember(&mut self.statements, id, s, self.limits, out);
                            self.statement_bytes = text_bytes(&self.statements);
                        }
                        front.state = if params > 0 {
                            Resp::PrepParams { left: params, cols }
                        } else if cols > 0 {
                            Resp::PrepCols(cols)
                        } else {
                            ended = true;
                            Resp::Start
                        };
                    }
                    Some(0x00) => match wire::ok_packet(&p.data, caps) {
                        Some(ok) => {
                            schema = ok.schema;
                            ended = ok.status & status::MORE_RESULTS_EXISTS == 0;
                        }
                        None => {
                            out.lose("invalid_message", 1);
                            ended = true;
                        }
                    },
                    Some(0xfb) => {
                        out.lose("local_infile", 1);
                        front.state = Resp::Infile;
                    }
                    _ if matches!(front.kind, Kind::Query | Kind::Execute) => {
                        match wire::lenenc(&p.data) {
                            Some((n, used)) if n > 0 => {
                                // MariaDB's "metadata follows" byte: one
                                // byte after the count, which nothing else
                                // puts there (told by the capabilities, or
                                // by the shape when they are unknown).
                                let flag = p.data.get(used).copied();
                                let shaped =
                                    p.len == used as u64 + 1 && matches!(flag, Some(0 | 1));
                                let skip_meta = flag == Some(0)
                                    && (caps & cap::MARIADB_CACHE_METADATA != 0
                                        || unknown_caps && shaped);
                                front.result_sets += 1;
                                front.state = if skip_meta {
                                    after_columns(deprecate_eof)
                                } else {
                                    Resp::Columns(n)
                                };
                            }
                            _ => {
                                out.lose("invalid_message", 1);
                                ended = true;
                            }
                        }
                    }
                    // Other commands' answers are not followed: they end
                    // with the next command.
                    _ => front.state = Resp::Opaque,
                },
                Resp::Columns(n) => {
                    front.state = if n > 1 {
                        Resp::Columns(n - 1)
                    } else {
                        after_columns(deprecate_eof)
                    };
                }
                Resp::ColumnsEof | Resp::MaybeEof if eof => {
                    if front.state == Resp::MaybeEof {
                        // A second 0xfe right after the first: the first was
                        // the EOF before (no) rows.
                        self.deprecate_eof = Some(false);
                        front.state = Resp::Rows;
                        let st = wire::eof_status(&p.data).unwrap_or(0);
                        ended = st & status::MORE_RESULTS_EXISTS == 0;
                        if !ended {
                            front.state = Resp::Start;
                        }
                    } else {
                        let st = wire::eof_status(&p.data).unwrap_or(0);
                        if st & status::CURSOR_EXISTS != 0 {
                            // Rows come with COM_STMT_FETCH.
                            front.result_sets = front.result_sets.saturating_sub(1);
                            ended = true;
                        } else if deprecate_eof.is_none() {
                            front.state = Resp::MaybeEof;
                        } else {
                            front.state = Resp::Rows;
                        }
                    }
                }
                Resp::ColumnsEof => {
                    // Rows right after the columns: EOF is deprecated (seen
                    // mid-stream), or the server broke the format.
                    if deprecate_eof.is_none() {
                        self.deprecate_eof = Some(true);
                    } else {
                        out.lose("invalid_message", 1);
                    }
                    front.state = Resp::Rows;
                    match rows_packet(p, terminator, eof, caps) {
                        Some(true) => front.state = Resp::Start,
                        Some(false) => ended = true,
                        None => front.rows += 1,
                    }
                }
                Resp::MaybeEof => {
                    // A row: the 0xfe was the EOF before rows.
                    self.deprecate_eof = Some(false);
                    front.state = Resp::Rows;
                    front.rows += 1;
                }
                Resp::Rows => match rows_packet(p, terminator, eof, caps) {
                    Some(true) => front.state = Resp::Start,
                    Some(false) => ended = true,
                    None => front.rows += 1,
                },
                Resp::PrepParams { left, cols } => {
                    front.state = if left > 1 {
                        Resp::PrepParams {
                            left: left - 1,
                            cols,
                        }
                    } else if deprecate_eof == Some(true) {
                        if cols > 0 {
                            Resp::PrepCols(cols)
                        } else {
                            ended = true;
                            Resp::Start
                        }
                    } else {
                        Resp::PrepParamsEof { cols }
                    };
                }
                Resp::PrepParamsEof { cols } => {
                    if eof && cols > 0 {
                        front.state = Resp::PrepCols(cols);
                    } else if !eof && cols > 0 && deprecate_eof.is_none() {
                        // A column definition where an EOF could have
                        // been: EOF is deprecated (seen mid-stream).
                        self.deprecate_eof = Some(true);
                        if cols > 1 {
                            front.state = Resp::PrepCols(cols - 1);
                        } else {
                            ended = true;
                        }
                    } else {
                        ended = true;
                    }
                }
                Resp::PrepCols(n) => {
                    if n > 1 {
                        front.state = Resp::PrepCols(n - 1);
                    } else if deprecate_eof == Some(true) {
                        ended = true;
                    } else {
                        front.state = Resp::PrepColsEof;
                    }
                }
                Resp::PrepColsEof => ended = true,
                Resp::Infile => match wire::ok_packet(&p.data, caps) {
                    Some(ok) if first == Some(0x00) => {
                        ended = ok.status & status::MORE_RESULTS_EXISTS == 0;
                        if !ended {
                            front.state = Resp::Start;
                        }
                    }
                    _ => ended = true,
                },
            }
        }
        if let Some(s) = schema {
            self.namespace = Some(name(&s));
        }
        if ended && let Some(p) = self.pending.pop_front() {
            self.finish(p, Outcome::Complete, out);
        }
    }

    /// Ends a command: its namespace switch takes effect on success, and
    /// those that are operations become one.
    fn finish(&mut self, p: Pending, outcome: Outcome, out: &mut Output) {
        let failed = p.error.is_some();
        if outcome == Outcome::Complete
            && !failed
            && let Some(ns) = p.switch_to.clone()
        {
            self.namespace = Some(ns);
        }
        let (operation, summary) = match p.kind {
            Kind::Query | Kind::Execute => {
                let fallback = if p.kind == Kind::Query {
                    "QUERY"
                } else {
                    "EXECUTE"
                };
                match p.summary {
                    Some(s) if !s.operation.is_empty() => (s.operation.clone(), Some(s)),
                    s => (CompactString::const_new(fallback), s),
                }
            }
            Kind::Prepare if failed => match p.summary {
                Some(s) if !s.operation.is_empty() => (s.operation.clone(), Some(s)),
                s => (CompactString::const_new("PREPARE"), s),
            },
            Kind::Simple(name) if failed => (CompactString::const_new(name), None),
            _ => return,
        };
        let mut d = DbDetail::new(self.system);
        d.operation = operation;
        d.namespace = p.namespace;
        if let Some(s) = summary {
            d.collection = s.collection;
            d.query_truncated = s.truncated;
            d.query_text = Some(s.text);
        }
        d.status_code = p.error.map(|c| CompactString::from(c.to_string()));
        if outcome == Outcome::Complete && p.result_sets > 0 && !failed {
            d.returned_rows = Some(p.rows);
        }
        let outcome = if outcome == Outcome::Complete || p.response_start_ns > 0 {
            outcome
        } else {
            Outcome::NoResponse
        };
        out.ops.push(Operation {
            role: self.role,
            request_start_ns: p.request_start_ns,
            request_end_ns: p.request_end_ns,
            response_start_ns: p.response_start_ns,
            response_end_ns: p.response_end_ns,
            outcome,
            traceparent: None,
            partial: false,
            abort: None,
            detail: Detail::Db(d),
        });
    }

    /// A `COM_QUERY` body's SQL, past the query attributes MySQL 8 sends
    /// when both sides agreed on them (`None`: attributes with values,
    /// which this parser does not walk).
    fn query_text<'a>(&self, body: &'a [u8]) -> Option<&'a [u8]> {
        let negotiated = self.caps() & cap::QUERY_ATTRIBUTES != 0;
        let unknown = self.client_caps.is_none();
        match body {
            [0, 1, rest @ ..] if negotiated || unknown => Some(rest),
            _ if negotiated => None,
            _ => Some(body),
        }
    }

    fn summarize(&self, text: &[u8], truncated: bool) -> SqlSummary {
        sql::summarize_as(
            text,
            Dialect::Mysql,
            truncated,
            self.limits.max_query_len,
            self.limits.raw_sql,
        )
    }
}

impl ConnParser for MysqlParser {
    fn on_data(&mut self, dir: Direction, seg: Segment<'_>, out: &mut Output) {
        if self.closed || self.done.is_some() {
            return;
        }
        if dir == self.request_dir {
            self.on_request_data(seg, out);
        } else {
            self.on_response_data(seg, out);
        }
    }

    fn on_close(&mut self, ts_ns: u64, out: &mut Output) {
        if self.closed {
            return;
        }
        self.closed = true;
        let _ = ts_ns;
        while let Some(p) = self.pending.pop_front() {
            let outcome = match p.state {
                _ if p.response_start_ns == 0 => Outcome::NoResponse,
                // Nothing followed the 0xfe before the close: it ended an
                // empty result set.
                Resp::MaybeEof => Outcome::Complete,
                _ => Outcome::ResponseTruncated,
            };
            self.finish(p, outcome, out);
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of_val(self)
            + self.req.heap_bytes()
            + self.resp.heap_bytes()
            + self.statements.capacity() * std::mem::size_of::<(u32, SqlSummary)>()
            + self.statement_bytes
            + self.pending.capacity() * std::mem::size_of::<Pending>()
    }

    fn state(&self) -> State {
        match self.done {
            Some(reason) => State::Done(reason),
            None => State::Active,
        }
    }
}

/// A packet among rows: `None` for a row, else the end of the result
/// set, `Some(true)` when another result follows.
fn rows_packet(p: &Packet, terminator: bool, eof: bool, caps: u64) -> Option<bool> {
    if !terminator {
        return None;
    }
    let st = if eof {
        wire::eof_status(&p.data)
    } else {
        wire::ok_packet(&p.data, caps).map(|ok| ok.status)
    }
    .unwrap_or(0);
    Some(st & status::MORE_RESULTS_EXISTS != 0)
}

/// The state after a result set's column definitions.
fn after_columns(deprecate_eof: Option<bool>) -> Resp {
    match deprecate_eof {
        Some(true) => Resp::Rows,
        // Unknown: an EOF may come; ColumnsEof turns into MaybeEof then.
        _ => Resp::ColumnsEof,
    }
}

fn text_bytes(table: &[(u32, SqlSummary)]) -> usize {
    table.iter().map(|(_, s)| s.heap_bytes()).sum()
}

/// Adds a prepared statement, forgetting the oldest when the table is full.
fn remember(
    table: &mut Vec<(u32, SqlSummary)>,
    id: u32,
    s: SqlSummary,
    limits: Limits,
    out: &mut Output,
) {
    table.retain(|(i, _)| *i != id);
    if limits.max_statements == 0 {
        out.lose("statement_table_full", 1);
        return;
    }
    if table.len() >= limits.max_statements {
        table.remove(0);
        out.lose("statement_table_full", 1);
    }
    table.push((id, s));
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(*b.get(at..)?.first_chunk::<2>()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*b.get(at..)?.first_chunk::<4>()?))
}

/// A database name as an attribute (an identifier, not a literal; cut at
/// a bound, invalid UTF-8 replaced).
fn name(b: &[u8]) -> CompactString {
    let b = b.get(..MAX_NAMESPACE).unwrap_or(b);
    CompactString::from(String::from_utf8_lossy(b).trim())
}

/// The database of `USE db` (backquotes removed).
fn use_target(sql: &[u8]) -> Option<CompactString> {
    let s = std::str::from_utf8(sql.get(..MAX_NAMESPACE + 8).unwrap_or(sql)).ok()?;
    let s = s.trim_start();
    let kw = s.get(..3)?;
    if !kw.eq_ignore_ascii_case("use") {
        return None;
    }
    let rest = s.get(3..)?;
    if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let db = rest.trim().trim_end_matches(';').trim();
    let db = db
        .strip_prefix('`')
        .and_then(|d| d.strip_suffix('`'))
        .unwrap_or(db);
    let ok = !db.is_empty()
        && db
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '-');
    ok.then(|| CompactString::from(db))
}

/// The database a `COM_CHANGE_USER` asks for (user, auth data skipped).
fn change_user_database(body: &[u8], caps: u64) -> Option<Vec<u8>> {
    let user_end = body.iter().position(|&c| c == 0)?;
    let mut at = user_end + 1;
    if caps & cap::SECURE_CONNECTION != 0 {
        at += 1 + usize::from(*body.get(at)?);
    } else {
        at += body.get(at..)?.iter().position(|&c| c == 0)? + 1;
    }
    let tail = body.get(at..)?;
    let end = tail.iter().position(|&c| c == 0)?;
    tail.get(..end)
        .filter(|d| !d.is_empty())
        .map(<[u8]>::to_vec)
}

/// Whether a segment starts like a command: `[len][seq 0][command]`.
fn plausible_command(data: &[u8]) -> bool {
    match data {
        [a, b, c, 0, command, ..] => {
            let len = u32::from_le_bytes([*a, *b, *c, 0]);
            len >= 1 && com::known(*command)
        }
        _ => false,
    }
}

/// Whether a segment ends with the packet that ends a result set: an EOF
/// (`05 00 00 seq fe warnings status`) or an OK with 0xfe header
/// (`07 00 00 seq fe 00 00 status warnings`), with no more results
/// announced.
fn ends_with_terminator(data: &[u8]) -> bool {
    let more = |st: u16| st & status::MORE_RESULTS_EXISTS != 0;
    if let Some([5, 0, 0, _, 0xfe, _, _, s0, s1]) = data.last_chunk::<9>() {
        return !more(u16::from_le_bytes([*s0, *s1]));
    }
    if let Some([7, 0, 0, _, 0xfe, 0, 0, s0, s1, _, _]) = data.last_chunk::<11>() {
        return !more(u16::from_le_bytes([*s0, *s1]));
    }
    false
}
