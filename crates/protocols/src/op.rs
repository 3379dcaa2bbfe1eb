//! What every parser reports: one finished operation (a request and its
//! response) with the common fields every span needs and the attributes of
//! its semantic-convention family (HTTP, database, …).
//!
//! A new protocol reuses a family when OpenTelemetry files it there
//! (memcached and MongoDB are databases like Redis); only a new family
//! (RPC, messaging) adds a [`Detail`] variant and its mapping in the agent.

use compact_str::CompactString;

use crate::http1::TraceParent;
use crate::parse::Role;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Request and final response were both seen to their end.
    Complete,
    /// The connection closed (or the observer gave up) before a response.
    NoResponse,
    /// A response started but its end could not be tracked (framing lost to
    /// a capture gap, or cut by the close); the end time is that of the
    /// last response byte seen.
    ResponseTruncated,
}

/// One request and its response, whatever the protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Server if the request was read by the observed process.
    pub role: Role,
    /// Timestamp of the segment holding the first request byte.
    pub request_start_ns: u64,
    /// Timestamp of the segment holding the last request byte seen.
    pub request_end_ns: u64,
    /// First byte of the response; 0 if none.
    pub response_start_ns: u64,
    /// Last byte of the response seen; 0 if none.
    pub response_end_ns: u64,
    pub outcome: Outcome,
    /// W3C trace context the request carried, when the protocol has a
    /// place for it.
    pub traceparent: Option<TraceParent>,
    /// Some fields could not be decoded (bytes lost to the capture, or the
    /// capture began mid-connection): what is present was decoded, nothing
    /// was guessed, and the absent fields stay empty.
    pub partial: bool,
    /// Why the operation ended without its normal end, when the protocol
    /// said so (an HTTP/2 `RST_STREAM` or `GOAWAY` error code name such as
    /// `CANCEL`): the span's `error.type`.
    pub abort: Option<&'static str>,
    pub detail: Detail,
}

impl Operation {
    /// The end of the operation: its last response byte, else its last
    /// request byte.
    pub fn end_ns(&self) -> u64 {
        let end = if self.response_end_ns > 0 {
            self.response_end_ns
        } else {
            self.request_end_ns
        };
        end.max(self.request_start_ns)
    }
}

/// The protocol family's own fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    Http(HttpDetail),
    Db(DbDetail),
    Rpc(RpcDetail),
}

/// An HTTP request and response: an HTTP/1.x exchange or one HTTP/2 stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpDetail {
    pub method: CompactString,
    /// Raw request-target, possibly cut at the target length limit.
    pub target: CompactString,
    /// `"1.0"`, `"1.1"`, `"2"`.
    pub protocol_version: &'static str,
    pub host: Option<CompactString>,
    pub user_agent: Option<CompactString>,
    /// Final status; 0 when no response was seen.
    pub status: u16,
    /// What the response said of a server error (its reason phrase).
    pub status_text: Option<CompactString>,
    /// Request payload bytes (decoded size for chunked bodies).
    pub request_body_size: u64,
    /// Response payload bytes (decoded size for chunked bodies).
    pub response_body_size: u64,
}

/// The database (or cache) a [`DbDetail`] talked to: OpenTelemetry's
/// `db.system.name` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbSystem {
    Postgresql,
    Mysql,
    Mariadb,
    Redis,
}

impl DbSystem {
    /// The `db.system.name` value.
    pub fn as_str(self) -> &'static str {
        match self {
            DbSystem::Postgresql => "postgresql",
            DbSystem::Mysql => "mysql",
            DbSystem::Mariadb => "mariadb",
            DbSystem::Redis => "redis",
        }
    }
}

/// One database call: a statement, a command.
///
/// Text fields never carry literals: parsers put sanitized text in
/// `query_text` (see [`crate::sql`]), and nothing of a password or an
/// authentication exchange ever reaches an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbDetail {
    pub system: DbSystem,
    /// `SELECT`, `INSERT`, `GET`, `HSET`… (upper case); empty when unknown.
    pub operation: CompactString,
    /// Main table or collection, when known.
    pub collection: Option<CompactString>,
    /// Database name (PostgreSQL, MySQL) or index (Redis), when known.
    pub namespace: Option<CompactString>,
    /// Sanitized statement or command (literals replaced by `?`).
    pub query_text: Option<CompactString>,
    /// The statement was longer than what was captured.
    pub query_truncated: bool,
    /// SQLSTATE, MySQL error number, or the Redis error prefix (`ERR`,
    /// `WRONGTYPE`): set only when the operation failed.
    pub status_code: Option<CompactString>,
    /// Rows a query returned, when the protocol says.
    pub returned_rows: Option<u64>,
    /// Operations this span stands for (a pipelined batch counted once
    /// would say more than 1); 1 for a single call.
    pub batch_size: u32,
}

impl DbDetail {
    /// A call of `system` with nothing known yet.
    pub fn new(system: DbSystem) -> Self {
        DbDetail {
            system,
            operation: CompactString::default(),
            collection: None,
            namespace: None,
            query_text: None,
            query_truncated: false,
            status_code: None,
            returned_rows: None,
            batch_size: 1,
        }
    }

    pub fn is_error(&self) -> bool {
        self.status_code.is_some()
    }
}

/// The RPC framework of an [`RpcDetail`]: OpenTelemetry's `rpc.system.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcSystem {
    Grpc,
}

impl RpcSystem {
    /// The `rpc.system.name` value.
    pub fn as_str(self) -> &'static str {
        match self {
            RpcSystem::Grpc => "grpc",
        }
    }
}

/// One remote procedure call: a gRPC call is one HTTP/2 stream, unary or
/// streaming, from its first HEADERS to the end of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcDetail {
    pub system: RpcSystem,
    /// `package.Service/Method`: the `:path` without its leading `/`, cut at
    /// the target length limit; empty when the header block was lost.
    pub method: CompactString,
    /// gRPC status code (`grpc-status` of the trailers, or of a
    /// trailers-only response); `None` when the call ended without one.
    pub status: Option<u32>,
    /// `:authority` of the request.
    pub authority: Option<CompactString>,
    pub user_agent: Option<CompactString>,
    /// HTTP status of the response headers; 0 when none was seen.
    pub http_status: u16,
    /// DATA payload bytes each way (length-prefixed messages included).
    pub request_body_size: u64,
    pub response_body_size: u64,
}

impl RpcDetail {
    /// A gRPC call with nothing known yet.
    pub fn grpc() -> Self {
        RpcDetail {
            system: RpcSystem::Grpc,
            method: CompactString::default(),
            status: None,
            authority: None,
            user_agent: None,
            http_status: 0,
            request_body_size: 0,
            response_body_size: 0,
        }
    }
}

/// gRPC status code names (`OK`, `NOT_FOUND`…), the values of
/// `rpc.response.status_code`; `None` outside 0..=16.
pub fn grpc_status_name(code: u32) -> Option<&'static str> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(usize::try_from(code).ok()?).copied()
}
