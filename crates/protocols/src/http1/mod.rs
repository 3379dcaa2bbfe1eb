//! HTTP/1.0 and HTTP/1.1 over captured segments.
//!
//! Layers, bottom up: [`head`] parses heads, [`body`] tracks body framing,
//! [`detect`](mod@detect) finds start lines, `stream` assembles messages per direction,
//! and [`conn`] pairs requests with responses into [`Exchange`]s.

pub mod body;
pub mod conn;
pub mod detect;
mod error;
mod exchange;
pub mod head;
mod message;
mod protocol;
mod stats;
mod stream;
mod traceparent;

pub use body::{BodyDecoder, BodyError, BodyState, ChunkState, Framing};
pub use conn::{ConnStats, Http1Conn, Limits};
pub use detect::{Detect, detect, find_request_boundary, find_response_boundary};
pub use error::ParseError;
pub use exchange::{Exchange, Outcome, target_path, target_query};
pub use head::{
    RequestHead, ResponseHead, parse_request_head, parse_request_head_with, parse_response_head,
};
pub use protocol::{HTTP1, Http1, Http1Parser, operation};
pub use traceparent::{TRACEPARENT_LEN, TraceParent};
