//! What the per-direction assembler needs per message type, and its input.

use super::detect::{self, LineMatch};
use super::error::ParseError;
use super::head::{self, RequestHead, ResponseHead};
use crate::parse::{Parsed, Segment};

/// What the assembler needs to know about one message type.
pub(crate) trait MessageKind {
    type Head;
    fn parse(buf: &[u8], max_target_len: usize) -> Result<Parsed<Self::Head>, ParseError>;
    fn salvage(buf: &[u8], max_target_len: usize) -> Option<Self::Head>;
    fn match_line(buf: &[u8]) -> LineMatch;
    /// `match_line` at a position known to start a message (a direction's
    /// first byte), where requests may use any token method.
    fn match_start(buf: &[u8]) -> LineMatch {
        Self::match_line(buf)
    }
    fn find_boundary(buf: &[u8]) -> Option<usize>;
}

#[derive(Debug)]
pub(crate) struct Requests;
#[derive(Debug)]
pub(crate) struct Responses;

impl MessageKind for Requests {
    type Head = RequestHead;
    fn parse(buf: &[u8], max_target_len: usize) -> Result<Parsed<RequestHead>, ParseError> {
        head::parse_request_head_with(buf, max_target_len)
    }
    fn salvage(buf: &[u8], max_target_len: usize) -> Option<RequestHead> {
        head::salvage_request_head(buf, max_target_len)
    }
    fn match_line(buf: &[u8]) -> LineMatch {
        detect::match_request_line(buf)
    }
    fn match_start(buf: &[u8]) -> LineMatch {
        detect::match_request_start(buf)
    }
    fn find_boundary(buf: &[u8]) -> Option<usize> {
        detect::find_request_boundary(buf)
    }
}

impl MessageKind for Responses {
    type Head = ResponseHead;
    fn parse(buf: &[u8], _: usize) -> Result<Parsed<ResponseHead>, ParseError> {
        head::parse_response_head(buf)
    }
    fn salvage(buf: &[u8], _: usize) -> Option<ResponseHead> {
        head::salvage_response_head(buf)
    }
    fn match_line(buf: &[u8]) -> LineMatch {
        detect::match_status_line(buf)
    }
    fn find_boundary(buf: &[u8]) -> Option<usize> {
        detect::find_response_boundary(buf)
    }
}

/// The unconsumed rest of one segment: captured bytes, then a gap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Input<'a> {
    pub(crate) ts: u64,
    /// Captured bytes not consumed yet.
    pub(crate) data: &'a [u8],
    /// Uncaptured bytes following `data`.
    pub(crate) gap: u64,
}

impl<'a> Input<'a> {
    pub(crate) fn new(seg: Segment<'a>) -> Self {
        Input {
            ts: seg.ts_ns,
            data: seg.data,
            gap: seg.gap(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty() && self.gap == 0
    }
}
