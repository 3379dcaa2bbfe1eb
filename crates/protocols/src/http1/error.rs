use thiserror::Error;

/// Why an HTTP/1 head or body could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("invalid token in the start line (method or request-target)")]
    InvalidToken,
    #[error("invalid or unsupported HTTP version")]
    InvalidVersion,
    #[error("invalid status code")]
    InvalidStatus,
    #[error("invalid header field name")]
    InvalidHeaderName,
    #[error("invalid header field value")]
    InvalidHeaderValue,
    #[error("invalid line ending")]
    InvalidNewLine,
    #[error("more header fields than the parser accepts")]
    TooManyHeaders,
    #[error("head longer than the configured limit")]
    HeadTooLarge,
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("several different Content-Length values")]
    ConflictingContentLength,
    #[error("request Transfer-Encoding does not end with chunked")]
    InvalidTransferEncoding,
    #[error("invalid chunk-size line")]
    InvalidChunkSize,
    #[error("chunk size does not fit in 64 bits")]
    ChunkSizeOverflow,
    #[error("chunk extensions longer than the parser accepts")]
    ChunkExtensionTooLong,
    #[error("chunk data not followed by CRLF")]
    MissingChunkCrlf,
    #[error("trailer section malformed or too long")]
    InvalidTrailers,
    #[error("capture gap covers chunk framing")]
    GapInChunkFraming,
}

impl From<httparse::Error> for ParseError {
    fn from(e: httparse::Error) -> Self {
        match e {
            httparse::Error::HeaderName => ParseError::InvalidHeaderName,
            httparse::Error::HeaderValue => ParseError::InvalidHeaderValue,
            httparse::Error::NewLine => ParseError::InvalidNewLine,
            httparse::Error::Status => ParseError::InvalidStatus,
            httparse::Error::Token => ParseError::InvalidToken,
            httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
            httparse::Error::Version => ParseError::InvalidVersion,
        }
    }
}
