//! Wire fixtures and a small driver shared by the integration tests.
//!
//! Byte sequences follow what the named clients and servers put on the
//! wire (header order, casing, line endings); dates are fixed.
#![allow(dead_code)]

use ratatosk_protocols::http1::{ConnStats, Exchange, Http1Conn, Limits};
use ratatosk_protocols::parse::{Direction, Segment};

// ---------------------------------------------------------------- requests

/// `curl -s http://127.0.0.1:18080/hello?x=1` (curl 7.88.1).
pub const CURL_GET: &[u8] = concat!(
    "GET /hello?x=1 HTTP/1.1\r\n", // request line
    "Host: 127.0.0.1:18080\r\n",   // curl always sends Host first
    "User-Agent: curl/7.88.1\r\n", // then User-Agent
    "Accept: */*\r\n",             // and Accept
    "\r\n",                        // end of head, no body
)
.as_bytes();

/// `curl -d 'name=ratatosk&x=1' http://127.0.0.1:18080/form`: 17-byte body.
pub const CURL_POST_HEAD: &[u8] = concat!(
    "POST /form HTTP/1.1\r\n",
    "Host: 127.0.0.1:18080\r\n",
    "User-Agent: curl/7.88.1\r\n",
    "Accept: */*\r\n",
    "Content-Length: 17\r\n", // -d sets the length
    "Content-Type: application/x-www-form-urlencoded\r\n",
    "\r\n",
)
.as_bytes();
pub const CURL_POST_BODY: &[u8] = b"name=ratatosk&x=1";

/// `curl -H 'Expect: 100-continue' --data-binary @2k.bin .../upload`.
pub const CURL_POST_EXPECT_HEAD: &[u8] = concat!(
    "POST /upload HTTP/1.1\r\n",
    "Host: 127.0.0.1:18080\r\n",
    "User-Agent: curl/7.88.1\r\n",
    "Accept: */*\r\n",
    "Content-Length: 2048\r\n",
    "Content-Type: application/x-www-form-urlencoded\r\n",
    "Expect: 100-continue\r\n", // client waits for 100 before the body
    "\r\n",
)
.as_bytes();

/// `curl -H 'Transfer-Encoding: chunked' -d @- .../ingest`, body framed by
/// a hand-rolled encoder that adds a chunk extension and a trailer.
pub const CURL_CHUNKED_POST: &[u8] = concat!(
    "POST /ingest HTTP/1.1\r\n",
    "Host: 127.0.0.1:18080\r\n",
    "User-Agent: curl/7.88.1\r\n",
    "Accept: */*\r\n",
    "Transfer-Encoding: chunked\r\n", // no Content-Length
    "Content-Type: application/x-www-form-urlencoded\r\n",
    "\r\n",
    "5;name=value\r\n",    // chunk of 5 with an extension
    "hello\r\n",           // data + CRLF
    "6\r\n",               // chunk of 6
    " world\r\n",          //
    "0\r\n",               // last chunk
    "X-Checksum: abc\r\n", // trailer field
    "\r\n",                // end of trailers
)
.as_bytes();

/// `wrk -c1 -t1 http://127.0.0.1:8080/`: wrk sends only Host.
pub const WRK_GET: &[u8] =
    concat!("GET / HTTP/1.1\r\n", "Host: 127.0.0.1:8080\r\n", "\r\n",).as_bytes();

/// `curl -I http://127.0.0.1:18080/index.html`.
pub const CURL_HEAD: &[u8] = concat!(
    "HEAD /index.html HTTP/1.1\r\n",
    "Host: 127.0.0.1:18080\r\n",
    "User-Agent: curl/7.88.1\r\n",
    "Accept: */*\r\n",
    "\r\n",
)
.as_bytes();

/// Browser WebSocket handshake (RFC 6455 §1.2 example).
pub const WS_UPGRADE: &[u8] = concat!(
    "GET /chat HTTP/1.1\r\n",
    "Host: server.example.com\r\n",
    "Upgrade: websocket\r\n",
    "Connection: Upgrade\r\n",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    "Origin: http://example.com\r\n",
    "Sec-WebSocket-Version: 13\r\n",
    "\r\n",
)
.as_bytes();

/// `curl -p -x http://127.0.0.1:3128 https://example.com/`: proxy tunnel.
pub const CURL_CONNECT: &[u8] = concat!(
    "CONNECT example.com:443 HTTP/1.1\r\n", // authority-form target
    "Host: example.com:443\r\n",
    "User-Agent: curl/7.88.1\r\n",
    "Proxy-Connection: Keep-Alive\r\n",
    "\r\n",
)
.as_bytes();

/// Go net/http client through an OpenTelemetry transport.
pub const GO_TRACED_GET: &[u8] = concat!(
    "GET http://api.internal:8080/v1/items/42?verbose=true HTTP/1.1\r\n", // absolute-form (proxy style)
    "Host: api.internal:8080\r\n",
    "User-Agent: Go-http-client/1.1\r\n",
    "Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
    "Accept-Encoding: gzip\r\n",
    "\r\n",
)
.as_bytes();

// --------------------------------------------------------------- responses

/// nginx 1.22 serving a 13-byte static file.
pub const NGINX_200: &[u8] = concat!(
    "HTTP/1.1 200 OK\r\n",
    "Server: nginx/1.22.1\r\n",
    "Date: Tue, 14 May 2024 10:00:00 GMT\r\n",
    "Content-Type: text/plain\r\n",
    "Content-Length: 13\r\n",
    "Last-Modified: Tue, 14 May 2024 09:00:00 GMT\r\n",
    "Connection: keep-alive\r\n",
    "ETag: \"66432a50-d\"\r\n",
    "Accept-Ranges: bytes\r\n",
    "\r\n",
    "Hello, world\n", // 13 bytes
)
.as_bytes();

/// nginx 1.22 answering HEAD for a 615-byte file: length but no body.
pub const NGINX_HEAD_200: &[u8] = concat!(
    "HTTP/1.1 200 OK\r\n",
    "Server: nginx/1.22.1\r\n",
    "Date: Tue, 14 May 2024 10:00:00 GMT\r\n",
    "Content-Type: text/html\r\n",
    "Content-Length: 615\r\n", // describes the GET body; none follows
    "Last-Modified: Tue, 11 Apr 2023 01:45:34 GMT\r\n",
    "Connection: keep-alive\r\n",
    "ETag: \"6434bbbe-267\"\r\n",
    "Accept-Ranges: bytes\r\n",
    "\r\n",
)
.as_bytes();

/// nginx 1.22 default 404 page (153 bytes).
pub const NGINX_404: &[u8] = concat!(
    "HTTP/1.1 404 Not Found\r\n",
    "Server: nginx/1.22.1\r\n",
    "Date: Tue, 14 May 2024 10:00:00 GMT\r\n",
    "Content-Type: text/html\r\n",
    "Content-Length: 153\r\n",
    "Connection: keep-alive\r\n",
    "\r\n",
    "<html>\r\n",
    "<head><title>404 Not Found</title></head>\r\n",
    "<body>\r\n",
    "<center><h1>404 Not Found</h1></center>\r\n",
    "<hr><center>nginx/1.22.1</center>\r\n",
    "</body>\r\n",
    "</html>\r\n",
)
.as_bytes();

/// nginx 1.22 default 500 page (177 bytes).
pub const NGINX_500: &[u8] = concat!(
    "HTTP/1.1 500 Internal Server Error\r\n",
    "Server: nginx/1.22.1\r\n",
    "Date: Tue, 14 May 2024 10:00:00 GMT\r\n",
    "Content-Type: text/html\r\n",
    "Content-Length: 177\r\n",
    "Connection: close\r\n",
    "\r\n",
    "<html>\r\n",
    "<head><title>500 Internal Server Error</title></head>\r\n",
    "<body>\r\n",
    "<center><h1>500 Internal Server Error</h1></center>\r\n",
    "<hr><center>nginx/1.22.1</center>\r\n",
    "</body>\r\n",
    "</html>\r\n",
)
.as_bytes();

/// nginx 1.22 proxying a chunked upstream (e.g. gzip off, JSON API).
pub const NGINX_CHUNKED: &[u8] = concat!(
    "HTTP/1.1 200 OK\r\n",
    "Server: nginx/1.22.1\r\n",
    "Date: Tue, 14 May 2024 10:00:00 GMT\r\n",
    "Content-Type: application/json\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Connection: keep-alive\r\n",
    "\r\n",
    "1b\r\n",                              // 27 bytes
    "{\"items\":[1,2,3],\"ok\":true}\r\n", // 27 bytes + CRLF
    "0\r\n",
    "\r\n",
)
.as_bytes();

/// nginx 1.22 `return 204;`.
pub const NGINX_204: &[u8] = concat!(
    "HTTP/1.1 204 No Content\r\n",
    "Server: nginx/1.22.1\r\n",
    "Date: Tue, 14 May 2024 10:00:00 GMT\r\n",
    "Connection: keep-alive\r\n",
    "\r\n",
)
.as_bytes();

/// nginx 1.22 conditional GET hit: 304 keeps the validators, no body.
pub const NGINX_304: &[u8] = concat!(
    "HTTP/1.1 304 Not Modified\r\n",
    "Server: nginx/1.22.1\r\n",
    "Date: Tue, 14 May 2024 10:00:00 GMT\r\n",
    "Last-Modified: Tue, 14 May 2024 09:00:00 GMT\r\n",
    "Connection: keep-alive\r\n",
    "ETag: \"66432a50-d\"\r\n",
    "\r\n",
)
.as_bytes();

/// Node.js 20 `http` server: `res.write('hello '); res.end('world\n')`
/// goes out chunked, with keep-alive headers added by Node.
pub const NODE_CHUNKED_HEAD: &[u8] = concat!(
    "HTTP/1.1 200 OK\r\n",
    "Content-Type: text/plain\r\n", // user header first
    "Date: Tue, 14 May 2024 10:00:00 GMT\r\n",
    "Connection: keep-alive\r\n",
    "Keep-Alive: timeout=5\r\n",
    "Transfer-Encoding: chunked\r\n", // Node's default without a length
    "\r\n",
)
.as_bytes();
pub const NODE_CHUNK_1: &[u8] = b"6\r\nhello \r\n";
pub const NODE_CHUNK_2: &[u8] = b"6\r\nworld\n\r\n";
pub const NODE_LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A Go net/http handler declaring a trailer; the chunk extension is added
/// by a hand-rolled encoder (servers rarely send one).
pub const CHUNKED_EXT_TRAILER: &[u8] = concat!(
    "HTTP/1.1 200 OK\r\n",
    "Content-Type: text/plain; charset=utf-8\r\n",
    "Date: Tue, 14 May 2024 10:00:00 GMT\r\n",
    "Trailer: X-Checksum\r\n",
    "Transfer-Encoding: chunked\r\n",
    "\r\n",
    "a;part=1\r\n",             // 10 bytes, extension without quotes
    "0123456789\r\n",           //
    "4 ; q=\"x;y\"\r\n",        // BWS and a quoted extension value
    "abcd\r\n",                 //
    "0\r\n",                    // last chunk
    "X-Checksum: 5d41402a\r\n", // trailer
    "\r\n",
)
.as_bytes();

/// `python3 -m http.server` (3.11) serving a 23-byte file: HTTP/1.0 with
/// Content-Length, connection closed after.
pub const PYTHON_200: &[u8] = concat!(
    "HTTP/1.0 200 OK\r\n",
    "Server: SimpleHTTP/0.6 Python/3.11.2\r\n",
    "Date: Tue, 14 May 2024 10:00:00 GMT\r\n",
    "Content-type: text/plain\r\n", // Python's lower-case 't'
    "Content-Length: 23\r\n",
    "Last-Modified: Tue, 14 May 2024 09:00:00 GMT\r\n",
    "\r\n",
    "served by http.server\r\n", // 23 bytes
)
.as_bytes();

/// A `BaseHTTPRequestHandler` that writes its body without a length:
/// HTTP/1.0, delimited by the close.
pub const PYTHON_UNTIL_CLOSE_HEAD: &[u8] = concat!(
    "HTTP/1.0 200 OK\r\n",
    "Server: BaseHTTP/0.6 Python/3.11.2\r\n",
    "Date: Tue, 14 May 2024 10:00:00 GMT\r\n",
    "Content-Type: text/plain\r\n",
    "\r\n",
)
.as_bytes();

pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// 103 Early Hints as sent by h2o/nginx-unit style servers.
pub const EARLY_HINTS_103: &[u8] = concat!(
    "HTTP/1.1 103 Early Hints\r\n",
    "Link: </style.css>; rel=preload; as=style\r\n",
    "\r\n",
)
.as_bytes();

pub const WS_101: &[u8] = concat!(
    "HTTP/1.1 101 Switching Protocols\r\n",
    "Upgrade: websocket\r\n",
    "Connection: Upgrade\r\n",
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
    "\r\n",
)
.as_bytes();

/// A masked WebSocket text frame "Hello" (RFC 6455 §5.7).
pub const WS_FRAME: &[u8] = &[
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];

/// Squid's answer to CONNECT.
pub const PROXY_200_ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// TLS 1.2 ClientHello record header and start of the handshake.
pub const TLS_CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, // record: handshake, TLS 1.0, length 512
    0x01, 0x00, 0x01, 0xfc, // ClientHello, length 508
    0x03, 0x03, // client_version TLS 1.2
    0x5b, 0x90, 0x1c, 0x21, 0x00, 0x00, 0x00, 0x00, // random...
];

/// Postgres StartupMessage: length 31, protocol 3.0, user=app database=app.
pub const PG_STARTUP: &[u8] =
    b"\x00\x00\x00\x1f\x00\x03\x00\x00user\x00app\x00database\x00app\x00\x00";

/// RESP `PING` as redis-cli sends it.
pub const REDIS_PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

// ------------------------------------------------------------------ driver

/// Feeds segments to one connection and collects what it emits.
pub struct Wire {
    pub conn: Http1Conn,
    pub out: Vec<Exchange>,
}

impl Wire {
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        Wire {
            conn: Http1Conn::new(limits),
            out: Vec::new(),
        }
    }

    pub fn read(&mut self, ts: u64, data: &[u8]) -> &mut Self {
        self.conn
            .on_data(Direction::Ingress, Segment::new(ts, data), &mut self.out);
        self
    }

    pub fn write(&mut self, ts: u64, data: &[u8]) -> &mut Self {
        self.conn
            .on_data(Direction::Egress, Segment::new(ts, data), &mut self.out);
        self
    }

    /// A read whose capture kept only `data` of `len` bytes.
    pub fn read_cut(&mut self, ts: u64, data: &[u8], len: u64) -> &mut Self {
        self.conn.on_data(
            Direction::Ingress,
            Segment::truncated(ts, data, len),
            &mut self.out,
        );
        self
    }

    pub fn write_cut(&mut self, ts: u64, data: &[u8], len: u64) -> &mut Self {
        self.conn.on_data(
            Direction::Egress,
            Segment::truncated(ts, data, len),
            &mut self.out,
        );
        self
    }

    pub fn close(&mut self, ts: u64) -> &mut Self {
        self.conn.on_close(ts, &mut self.out);
        self
    }

    /// Emitted exchanges so far, removed from the buffer.
    pub fn take(&mut self) -> Vec<Exchange> {
        std::mem::take(&mut self.out)
    }

    pub fn stats(&self) -> ConnStats {
        *self.conn.stats()
    }
}

/// Concatenates byte slices.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
