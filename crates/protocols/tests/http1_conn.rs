//! Request/response pairing over realistic segment sequences.

mod common;

use common::*;
use ratatosk_protocols::http1::{Exchange, Limits, Outcome};
use ratatosk_protocols::parse::Role;

fn only(mut v: Vec<Exchange>) -> Exchange {
    assert_eq!(v.len(), 1, "expected exactly one exchange: {v:#?}");
    v.remove(0)
}

#[test]
fn simple_get_served() {
    let mut w = Wire::new();
    w.read(1_000, CURL_GET);
    assert!(w.take().is_empty());
    w.write(2_000, NGINX_200);
    let x = only(w.take());
    assert_eq!(x.role, Role::Server);
    assert_eq!(x.method, "GET");
    assert_eq!(x.target, "/hello?x=1");
    assert_eq!(x.path(), "/hello");
    assert_eq!(x.query(), Some("x=1"));
    assert_eq!(x.minor_version, 1);
    assert_eq!(x.host.as_deref(), Some("127.0.0.1:18080"));
    assert_eq!(x.traceparent, None);
    assert_eq!(x.status, 200);
    assert_eq!((x.request_start_ns, x.request_end_ns), (1_000, 1_000));
    assert_eq!((x.response_start_ns, x.response_end_ns), (2_000, 2_000));
    assert_eq!((x.request_body_size, x.response_body_size), (0, 13));
    assert_eq!(x.outcome, Outcome::Complete);
    let s = w.stats();
    assert_eq!((s.requests, s.responses, s.exchanges), (1, 1, 1));
    assert_eq!(s.lost_sync_bytes, 0);
    assert_eq!(s.resyncs, 0);
    w.close(3_000);
    assert!(w.take().is_empty());
}

#[test]
fn egress_requests_are_client_role() {
    let mut w = Wire::new();
    w.write(10, CURL_GET).read(20, NGINX_404);
    let x = only(w.take());
    assert_eq!(x.role, Role::Client);
    assert_eq!(x.status, 404);
    assert_eq!(x.response_body_size, 153);
    assert_eq!((x.request_start_ns, x.response_end_ns), (10, 20));
}

#[test]
fn keep_alive_sequence() {
    let mut w = Wire::new();
    w.read(100, WRK_GET).write(110, NGINX_200);
    w.read(200, CURL_HEAD).write(210, NGINX_HEAD_200);
    w.read(300, WRK_GET).write(310, NGINX_404);
    w.read(400, WRK_GET).write(410, NGINX_500);
    let xs = w.take();
    let got: Vec<_> = xs
        .iter()
        .map(|x| {
            (
                x.method.as_str(),
                x.status,
                x.response_body_size,
                x.response_end_ns,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("GET", 200, 13, 110),
            ("HEAD", 200, 0, 210),
            ("GET", 404, 153, 310),
            ("GET", 500, 177, 410),
        ]
    );
    assert!(xs.iter().all(|x| x.outcome == Outcome::Complete));
    assert_eq!(w.stats().lost_sync_bytes, 0);
}

#[test]
fn pipelined_requests_in_one_segment_responses_in_one() {
    let mut w = Wire::new();
    w.read(1, &cat(&[CURL_GET, CURL_HEAD, WRK_GET]));
    w.write(2, &cat(&[NGINX_200, NGINX_HEAD_200, NGINX_404]));
    let xs = w.take();
    let got: Vec<_> = xs
        .iter()
        .map(|x| (x.target.as_str(), x.status, x.response_body_size))
        .collect();
    assert_eq!(
        got,
        [
            ("/hello?x=1", 200, 13),
            ("/index.html", 200, 0),
            ("/", 404, 153)
        ]
    );
}

#[test]
fn pipelined_responses_split_anywhere() {
    let responses = cat(&[NGINX_200, NGINX_HEAD_200, NGINX_CHUNKED]);
    for cut1 in (0..responses.len()).step_by(7) {
        for cut2 in [cut1 + 1, cut1 + 50, responses.len()] {
            let cut2 = cut2.min(responses.len());
            let mut w = Wire::new();
            w.read(1, &cat(&[CURL_GET, CURL_HEAD, WRK_GET]));
            w.write(2, &responses[..cut1]);
            w.write(3, &responses[cut1..cut2]);
            w.write(4, &responses[cut2..]);
            let xs = w.take();
            let got: Vec<_> = xs
                .iter()
                .map(|x| (x.status, x.response_body_size))
                .collect();
            assert_eq!(got, [(200, 13), (200, 0), (200, 27)], "cuts {cut1} {cut2}");
            assert_eq!(w.stats().lost_sync_bytes, 0);
        }
    }
}

#[test]
fn request_split_at_every_position() {
    for cut in 1..CURL_GET.len() {
        let mut w = Wire::new();
        w.read(1, &CURL_GET[..cut]).read(2, &CURL_GET[cut..]);
        w.write(3, NGINX_200);
        let x = only(w.take());
        assert_eq!((x.target.as_str(), x.status), ("/hello?x=1", 200));
        assert_eq!((x.request_start_ns, x.request_end_ns), (1, 2), "cut {cut}");
    }
}

#[test]
fn request_and_response_one_byte_per_read() {
    let mut w = Wire::new();
    let mut ts = 0;
    for b in CURL_POST_HEAD.iter().chain(CURL_POST_BODY) {
        ts += 1;
        w.read(ts, std::slice::from_ref(b));
    }
    let req_end = ts;
    for b in NODE_CHUNKED_HEAD
        .iter()
        .chain(NODE_CHUNK_1)
        .chain(NODE_CHUNK_2)
        .chain(NODE_LAST_CHUNK)
    {
        ts += 1;
        w.write(ts, std::slice::from_ref(b));
    }
    let x = only(w.take());
    assert_eq!((x.method.as_str(), x.status), ("POST", 200));
    assert_eq!((x.request_start_ns, x.request_end_ns), (1, req_end));
    assert_eq!((x.response_start_ns, x.response_end_ns), (req_end + 1, ts));
    assert_eq!((x.request_body_size, x.response_body_size), (17, 12));
}

#[test]
fn post_body_split_across_reads() {
    let mut w = Wire::new();
    w.read(10, CURL_POST_HEAD)
        .read(20, &CURL_POST_BODY[..5])
        .read(30, &CURL_POST_BODY[5..12])
        .read(40, &CURL_POST_BODY[12..]);
    w.write(50, NGINX_200);
    let x = only(w.take());
    assert_eq!((x.request_start_ns, x.request_end_ns), (10, 40));
    assert_eq!(x.request_body_size, 17);
    assert_eq!(x.response_start_ns, 50);
}

#[test]
fn head_and_body_in_one_read_then_next_request() {
    let mut w = Wire::new();
    w.read(1, &cat(&[CURL_POST_HEAD, CURL_POST_BODY, CURL_GET]));
    w.write(2, &cat(&[NGINX_204, NGINX_200]));
    let xs = w.take();
    assert_eq!(xs.len(), 2);
    assert_eq!((xs[0].request_body_size, xs[0].status), (17, 204));
    assert_eq!((xs[1].method.as_str(), xs[1].status), ("GET", 200));
}

#[test]
fn chunked_request_with_extensions_and_trailers() {
    let mut w = Wire::new();
    // Head in one read, chunks dribbling in.
    let split = CURL_CHUNKED_POST
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap()
        + 4;
    w.read(1, &CURL_CHUNKED_POST[..split]);
    for (i, piece) in CURL_CHUNKED_POST[split..].chunks(3).enumerate() {
        w.read(2 + i as u64, piece);
    }
    let last = 1 + CURL_CHUNKED_POST[split..].chunks(3).count() as u64;
    w.write(100, NGINX_204);
    let x = only(w.take());
    assert_eq!(x.request_body_size, 11); // "hello" + " world"
    assert_eq!(x.request_end_ns, last);
    assert_eq!(x.status, 204);
}

#[test]
fn node_chunked_response_in_separate_writes() {
    let mut w = Wire::new();
    w.read(1, CURL_GET);
    w.write(2, &cat(&[NODE_CHUNKED_HEAD, NODE_CHUNK_1]))
        .write(3, NODE_CHUNK_2)
        .write(4, NODE_LAST_CHUNK);
    let x = only(w.take());
    assert_eq!(x.response_body_size, 12);
    assert_eq!((x.response_start_ns, x.response_end_ns), (2, 4));
    assert_eq!(x.outcome, Outcome::Complete);
}

#[test]
fn chunked_response_with_extensions_and_trailers() {
    let mut w = Wire::new();
    w.read(1, CURL_GET).write(2, CHUNKED_EXT_TRAILER);
    w.read(3, WRK_GET).write(4, NGINX_200);
    let xs = w.take();
    assert_eq!(xs.len(), 2);
    assert_eq!(xs[0].response_body_size, 14);
    assert_eq!(xs[1].response_body_size, 13);
    assert_eq!(w.stats().lost_sync_bytes, 0);
}

#[test]
fn capture_gap_inside_content_length_body() {
    // A 100 KiB response of which the capture kept the first 1 KiB.
    let head = concat!(
        "HTTP/1.1 200 OK\r\n",
        "Server: nginx/1.22.1\r\n",
        "Content-Type: application/octet-stream\r\n",
        "Content-Length: 102400\r\n",
        "Connection: keep-alive\r\n",
        "\r\n",
    )
    .as_bytes();
    let body = vec![b'x'; 102_400];
    let wire = cat(&[head, &body]);
    let mut w = Wire::new();
    w.read(1, WRK_GET);
    // The server writes it in two syscalls, each captured up to 1 KiB.
    let first = 65_536;
    w.write_cut(2, &wire[..1024], first as u64);
    w.write_cut(3, &wire[first..first + 1024], (wire.len() - first) as u64);
    w.read(4, CURL_GET).write(5, NGINX_200);
    let xs = w.take();
    assert_eq!(xs.len(), 2);
    assert_eq!(xs[0].response_body_size, 102_400);
    assert_eq!((xs[0].response_start_ns, xs[0].response_end_ns), (2, 3));
    assert_eq!(xs[0].outcome, Outcome::Complete);
    assert_eq!((xs[1].status, xs[1].response_body_size), (200, 13));
    assert_eq!(w.stats().lost_sync_bytes, 0);
}

#[test]
fn capture_gap_inside_request_body_keeps_exact_size() {
    let head = concat!(
        "PUT /blob HTTP/1.1\r\n",
        "Host: store:9000\r\n",
        "Content-Length: 5000\r\n",
        "\r\n",
    )
    .as_bytes();
    let wire = cat(&[head, &[0u8; 5000]]);
    let mut w = Wire::new();
    w.read_cut(1, &wire[..1024], wire.len() as u64);
    w.write(2, NGINX_204).read(3, WRK_GET).write(4, NGINX_200);
    let xs = w.take();
    assert_eq!(xs.len(), 2);
    assert_eq!((xs[0].request_body_size, xs[0].status), (5000, 204));
    assert_eq!(xs[1].status, 200);
}

#[test]
fn capture_gap_inside_chunk_data_is_harmless() {
    let mut chunk = b"800\r\n".to_vec(); // 2048-byte chunk
    chunk.extend(std::iter::repeat_n(b'y', 2048));
    chunk.extend_from_slice(b"\r\n0\r\n\r\n");
    let wire = cat(&[NODE_CHUNKED_HEAD, &chunk]);
    let mut w = Wire::new();
    w.read(1, CURL_GET);
    // One write of the whole response; capture ends inside the chunk data.
    let cut = NODE_CHUNKED_HEAD.len() + 500;
    w.write_cut(2, &wire[..cut], (cut + 1000) as u64);
    w.write(3, &wire[cut + 1000..]);
    let x = only(w.take());
    assert_eq!(x.response_body_size, 2048);
    assert_eq!(x.outcome, Outcome::Complete);
    assert_eq!(x.response_end_ns, 3);
}

#[test]
fn capture_gap_over_chunk_framing_truncates_response() {
    let mut body = Vec::new();
    for _ in 0..40 {
        body.extend_from_slice(b"40\r\n"); // 64-byte chunks
        body.extend_from_slice(&[b'z'; 64]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let wire = cat(&[NODE_CHUNKED_HEAD, &body]);
    let mut w = Wire::new();
    w.read(10, CURL_GET);
    // Capture keeps 600 bytes; the gap swallows several chunk-size lines.
    w.write_cut(20, &wire[..600], wire.len() as u64);
    assert!(w.take().is_empty());
    // Next request on the connection ends the lost response.
    w.read(30, WRK_GET);
    let x = only(w.take());
    assert_eq!(x.outcome, Outcome::ResponseTruncated);
    assert_eq!(x.status, 200);
    assert_eq!((x.response_start_ns, x.response_end_ns), (20, 20));
    assert!(x.response_body_size > 0 && x.response_body_size < 40 * 64);
    // The following exchange is parsed normally again.
    w.write(40, NGINX_200);
    let x = only(w.take());
    assert_eq!(
        (x.target.as_str(), x.status, x.outcome),
        ("/", 200, Outcome::Complete)
    );
    let s = w.stats();
    assert_eq!((s.lost_bodies, s.truncated_responses), (1, 1));
    assert!(s.lost_sync_bytes > 0);
}

#[test]
fn truncated_response_tail_counts_toward_its_end() {
    let mut w = Wire::new();
    w.read(1, CURL_GET);
    w.write_cut(2, &NODE_CHUNKED_HEAD[..NODE_CHUNKED_HEAD.len()], 10_000);
    // Head complete, then the gap hits the first chunk-size line.
    w.write(3, b"more bytes of the lost body");
    w.write(4, b"and more");
    w.close(9);
    let x = only(w.take());
    assert_eq!(x.outcome, Outcome::ResponseTruncated);
    assert_eq!(x.response_end_ns, 4);
}

#[test]
fn invalid_chunk_line_truncates_response() {
    let mut w = Wire::new();
    w.read(1, CURL_GET);
    w.write(2, &cat(&[NODE_CHUNKED_HEAD, b"zz\r\nnot hex\r\n"]));
    w.read(3, WRK_GET);
    let x = only(w.take());
    assert_eq!((x.status, x.outcome), (200, Outcome::ResponseTruncated));
    w.write(4, NGINX_404);
    assert_eq!(only(w.take()).status, 404);
}

#[test]
fn head_request_response_has_no_body() {
    let mut w = Wire::new();
    // HEAD answered with a Content-Length, and the next response follows
    // immediately in the same write.
    w.read(1, &cat(&[CURL_HEAD, CURL_GET]));
    w.write(2, &cat(&[NGINX_HEAD_200, NGINX_200]));
    let xs = w.take();
    assert_eq!(xs.len(), 2);
    assert_eq!(
        (xs[0].method.as_str(), xs[0].response_body_size),
        ("HEAD", 0)
    );
    assert_eq!(xs[1].response_body_size, 13);
}

#[test]
fn expect_100_continue_then_final_response() {
    let mut w = Wire::new();
    w.read(1, CURL_POST_EXPECT_HEAD);
    w.write(2, CONTINUE_100);
    assert!(w.take().is_empty());
    w.read(3, &[b'a'; 1024]).read(4, &[b'b'; 1024]);
    w.write(5, NGINX_200);
    let x = only(w.take());
    assert_eq!(x.status, 200);
    assert_eq!(x.request_body_size, 2048);
    assert_eq!((x.request_start_ns, x.request_end_ns), (1, 4));
    // The final response's first byte, not the interim one.
    assert_eq!((x.response_start_ns, x.response_end_ns), (5, 5));
    assert_eq!(w.stats().interim_responses, 1);
}

#[test]
fn early_hints_are_skipped() {
    let mut w = Wire::new();
    w.read(1, CURL_GET);
    w.write(2, &cat(&[EARLY_HINTS_103, EARLY_HINTS_103]));
    w.write(3, NGINX_200);
    let x = only(w.take());
    assert_eq!((x.status, x.response_start_ns), (200, 3));
}

#[test]
fn websocket_upgrade_stops_parsing() {
    let mut w = Wire::new();
    w.read(1, WS_UPGRADE);
    // 101 and the first server frame in one write.
    w.write(2, &cat(&[WS_101, WS_FRAME]));
    let x = only(w.take());
    assert_eq!((x.status, x.path()), (101, "/chat"));
    assert_eq!(x.response_end_ns, 2);
    assert!(w.conn.is_upgraded());
    // Frames that happen to look like HTTP are not parsed any more.
    w.read(3, WS_FRAME).read(4, CURL_GET).write(5, NGINX_200);
    w.close(6);
    assert!(w.take().is_empty());
    assert_eq!(w.stats().invalid_messages, 0);
}

#[test]
fn requests_pipelined_behind_an_upgrade_are_counted_as_dropped() {
    let mut w = Wire::new();
    // A client that sent a GET right behind its Upgrade request: the 101
    // ends HTTP on the connection, the GET is never answered.
    w.read(1, &cat(&[WS_UPGRADE, CURL_GET]));
    w.write(2, WS_101);
    assert_eq!(only(w.take()).status, 101);
    assert!(w.conn.is_upgraded());
    assert_eq!(w.stats().dropped_pending, 1);
}

#[test]
fn connect_2xx_opens_a_tunnel() {
    let mut w = Wire::new();
    w.write(1, CURL_CONNECT).read(2, PROXY_200_ESTABLISHED);
    let x = only(w.take());
    assert_eq!(
        (x.method.as_str(), x.status, x.role),
        ("CONNECT", 200, Role::Client)
    );
    assert_eq!(x.target, "example.com:443");
    assert!(w.conn.is_upgraded());
    w.write(3, TLS_CLIENT_HELLO).close(4);
    assert!(w.take().is_empty());
}

#[test]
fn connect_refused_keeps_http() {
    let mut w = Wire::new();
    let refused = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n";
    w.write(1, CURL_CONNECT).read(2, refused);
    assert_eq!(only(w.take()).status, 407);
    assert!(!w.conn.is_upgraded());
}

#[test]
fn no_body_statuses_204_304() {
    let mut w = Wire::new();
    w.read(1, &cat(&[WRK_GET, WRK_GET, WRK_GET]));
    w.write(2, &cat(&[NGINX_204, NGINX_304, NGINX_200]));
    let got: Vec<_> = w
        .take()
        .iter()
        .map(|x| (x.status, x.response_body_size))
        .collect();
    assert_eq!(got, [(204, 0), (304, 0), (200, 13)]);
}

#[test]
fn python_http10_with_length() {
    let mut w = Wire::new();
    let req = b"GET /notes.txt HTTP/1.0\r\nHost: localhost:8000\r\n\r\n";
    w.write(5, req).read(6, PYTHON_200);
    let x = only(w.take());
    assert_eq!(
        (x.minor_version, x.status, x.response_body_size),
        (0, 200, 23)
    );
    assert_eq!(x.outcome, Outcome::Complete);
}

#[test]
fn until_close_response_emitted_at_close() {
    let mut w = Wire::new();
    w.read(1, b"GET /stream HTTP/1.0\r\n\r\n");
    w.write(2, PYTHON_UNTIL_CLOSE_HEAD)
        .write(3, b"line one\n")
        .write(4, b"line two\n");
    assert!(w.take().is_empty());
    w.close(10);
    let x = only(w.take());
    assert_eq!((x.status, x.outcome), (200, Outcome::Complete));
    assert_eq!(x.response_body_size, 18);
    // End is the last byte seen, not the close.
    assert_eq!((x.response_start_ns, x.response_end_ns), (2, 4));
}

#[test]
fn until_close_response_cut_short_by_new_request() {
    let mut w = Wire::new();
    w.read(1, WRK_GET);
    w.write(
        2,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b",
    );
    // A further request proves the connection was not close-delimited.
    w.read(3, CURL_GET);
    let x = only(w.take());
    assert_eq!(
        (x.status, x.outcome, x.response_end_ns),
        (200, Outcome::ResponseTruncated, 2)
    );
    w.write(4, NGINX_200);
    assert_eq!(only(w.take()).target, "/hello?x=1");
}

#[test]
fn close_emits_pending_without_response() {
    let mut w = Wire::new();
    w.read(1, &cat(&[CURL_GET, WRK_GET]));
    w.write(2, NGINX_200);
    assert_eq!(w.take().len(), 1);
    w.close(3);
    let x = only(w.take());
    assert_eq!(
        (x.target.as_str(), x.status, x.outcome),
        ("/", 0, Outcome::NoResponse)
    );
    assert_eq!((x.response_start_ns, x.response_end_ns), (0, 0));
}

#[test]
fn close_mid_length_body_truncates() {
    let mut w = Wire::new();
    w.read(1, CURL_GET)
        .write(2, &NGINX_404[..NGINX_404.len() - 40]);
    w.close(3);
    let x = only(w.take());
    assert_eq!((x.status, x.outcome), (404, Outcome::ResponseTruncated));
    assert_eq!(x.response_body_size, 153 - 40);
}

#[test]
fn close_mid_response_head_means_no_response() {
    let mut w = Wire::new();
    w.read(1, CURL_GET).write(2, &NGINX_200[..20]).close(3);
    let x = only(w.take());
    assert_eq!(x.outcome, Outcome::NoResponse);
}

#[test]
fn garbage_before_request_is_skipped() {
    let mut w = Wire::new();
    // Joining mid-connection: tail of a previous body, then a request.
    w.read(1, &cat(&[b"ue&page=2\",\"tail\":true}", CURL_GET]));
    w.write(2, NGINX_200);
    let x = only(w.take());
    assert_eq!(x.target, "/hello?x=1");
    let s = w.stats();
    assert_eq!(s.resyncs, 1);
    assert_eq!(s.lost_sync_bytes, 23);
    assert_eq!(s.invalid_messages, 0);
}

#[test]
fn joining_mid_response_drops_it() {
    let mut w = Wire::new();
    // We start observing while a response body is flowing, then a whole
    // response for which we never saw the request.
    w.write(1, b"</html>\r\n");
    w.write(2, NGINX_404);
    assert!(w.take().is_empty());
    let s = w.stats();
    assert_eq!((s.unpaired_responses, s.responses), (1, 1));
    // Then normal traffic pairs correctly.
    w.read(3, CURL_GET).write(4, NGINX_200);
    assert_eq!(only(w.take()).status, 200);
}

#[test]
fn response_without_request_is_counted_not_emitted() {
    let mut w = Wire::new();
    w.read(1, CURL_GET).write(2, NGINX_200);
    w.write(3, NGINX_404); // duplicate, no request pending
    w.close(4);
    assert_eq!(w.take().len(), 1);
    assert_eq!(w.stats().unpaired_responses, 1);
}

#[test]
fn garbage_between_messages_resyncs() {
    let mut w = Wire::new();
    w.read(1, CURL_GET).write(2, NGINX_200);
    // A misbehaving client sends junk, then a proper request.
    w.read(3, b"\x00\x01\x02junk junk\r\n\r\n");
    w.read(4, WRK_GET).write(5, NGINX_204);
    let xs = w.take();
    assert_eq!(xs.len(), 2);
    assert_eq!(xs[1].status, 204);
    let s = w.stats();
    assert_eq!(s.resyncs, 1);
    assert!(s.lost_sync_bytes >= 9);
}

#[test]
fn invalid_head_is_counted_and_skipped() {
    let mut w = Wire::new();
    let bad = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello";
    w.read(1, CURL_GET).write(2, NGINX_200);
    w.read(3, bad).read(4, WRK_GET).write(5, NGINX_204);
    let xs = w.take();
    assert_eq!(xs.len(), 2);
    assert_eq!((xs[1].target.as_str(), xs[1].status), ("/", 204));
    assert_eq!(w.stats().invalid_messages, 1);
}

#[test]
fn pending_queue_overflow_drops_oldest() {
    let limits = Limits {
        max_pending_requests: 2,
        ..Limits::default()
    };
    let mut w = Wire::with_limits(limits);
    w.read(1, &cat(&[CURL_GET, CURL_HEAD, WRK_GET]));
    assert_eq!(w.stats().dropped_pending, 1);
    w.write(2, &cat(&[NGINX_HEAD_200, NGINX_200]));
    let got: Vec<_> = w.take().iter().map(|x| x.method.clone()).collect();
    assert_eq!(got, ["HEAD", "GET"]);
}

#[test]
fn head_over_cap_is_invalid() {
    let limits = Limits {
        max_head_bytes: 256,
        ..Limits::default()
    };
    let mut w = Wire::with_limits(limits);
    let big = format!(
        "GET /big HTTP/1.1\r\nHost: a\r\nCookie: {}\r\n\r\n",
        "c".repeat(1000)
    );
    w.read(1, big.as_bytes());
    w.read(2, WRK_GET).write(3, NGINX_200);
    let x = only(w.take());
    assert_eq!(x.target, "/");
    let s = w.stats();
    assert_eq!(s.invalid_messages, 1);
    assert!(s.lost_sync_bytes >= big.len() as u64 - 1);
}

#[test]
fn head_at_cap_is_fine_one_more_byte_is_not() {
    let limits = Limits {
        max_head_bytes: CURL_GET.len(),
        ..Limits::default()
    };
    let mut w = Wire::with_limits(limits);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    w.read(1, CURL_GET).write(2, ok);
    assert_eq!(only(w.take()).status, 200);
    let one_over = String::from_utf8_lossy(CURL_GET).replace("x=1 ", "x=12 ");
    w.read(3, one_over.as_bytes());
    assert_eq!(w.stats().invalid_messages, 1);
    w.read(4, WRK_GET).write(5, ok);
    assert_eq!(only(w.take()).target, "/");
}

#[test]
fn long_target_is_truncated_not_rejected() {
    let limits = Limits {
        max_target_len: 16,
        ..Limits::default()
    };
    let mut w = Wire::with_limits(limits);
    let req = format!(
        "GET /search?q={} HTTP/1.1\r\nHost: a\r\n\r\n",
        "é".repeat(30)
    );
    w.read(1, req.as_bytes()).write(2, NGINX_200);
    let x = only(w.take());
    assert!(x.target.len() <= 16);
    assert!(x.target.starts_with("/search?q=é"));
    assert_eq!(x.path(), "/search");
}

#[test]
fn traceparent_host_and_absolute_target() {
    let mut w = Wire::new();
    w.write(1, GO_TRACED_GET).read(2, NGINX_200);
    let x = only(w.take());
    assert_eq!(
        x.traceparent.map(|t| t.to_string()).as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(x.host.as_deref(), Some("api.internal:8080"));
    assert_eq!(x.path(), "/v1/items/42");
    assert_eq!(x.query(), Some("verbose=true"));
}

#[test]
fn gap_inside_request_head_salvages_start_line() {
    // A browser-sized head whose capture stops inside the Cookie field.
    let head = format!(
        "GET /account?tab=2 HTTP/1.1\r\nHost: shop.example\r\nCookie: {}\r\nAccept: */*\r\n\r\n",
        "s".repeat(3000)
    );
    let mut w = Wire::new();
    w.read_cut(1, &head.as_bytes()[..1024], head.len() as u64);
    w.write(2, NGINX_200);
    let x = only(w.take());
    assert_eq!(
        (x.method.as_str(), x.path(), x.status),
        ("GET", "/account", 200)
    );
    assert_eq!(x.host.as_deref(), Some("shop.example"));
    assert_eq!(x.outcome, Outcome::Complete);
    // The connection carries on in sync.
    w.read(3, WRK_GET).write(4, NGINX_404);
    assert_eq!(only(w.take()).status, 404);
    let s = w.stats();
    assert_eq!(s.lost_heads, 1);
}

#[test]
fn gap_inside_response_head_keeps_pairing() {
    let head = format!(
        "HTTP/1.1 302 Found\r\nLocation: /login\r\nSet-Cookie: {}\r\nContent-Length: 0\r\n\r\n",
        "t".repeat(3000)
    );
    let mut w = Wire::new();
    w.read(1, CURL_GET);
    w.write_cut(2, &head.as_bytes()[..1024], head.len() as u64);
    w.read(3, WRK_GET);
    let x = only(w.take());
    assert_eq!((x.status, x.outcome), (302, Outcome::ResponseTruncated));
    assert_eq!(x.response_end_ns, 2);
    w.write(4, NGINX_200);
    let x = only(w.take());
    assert_eq!((x.target.as_str(), x.status), ("/", 200));
}

#[test]
fn gap_before_status_line_complete_loses_response() {
    let mut w = Wire::new();
    w.read(1, CURL_GET);
    w.write_cut(2, b"HTTP/1.1 2", 500);
    w.read(3, WRK_GET).write(4, NGINX_204);
    let xs = w.take();
    // The first response is lost entirely, so the 204 pairs with the first
    // request: the documented cost of losing a whole head.
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0].status, 204);
    assert_eq!(w.stats().lost_heads, 1);
}

#[test]
fn early_response_before_request_body_finishes() {
    let head = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n";
    let too_large =
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let mut w = Wire::new();
    w.read(1, head).read(2, &[0u8; 1000]);
    w.write(3, too_large);
    let x = only(w.take());
    assert_eq!(x.status, 413);
    assert_eq!((x.request_end_ns, x.request_body_size), (2, 1000));
}

#[test]
fn bare_lf_line_endings() {
    let mut w = Wire::new();
    w.read(1, b"GET /lf HTTP/1.1\nHost: a\n\n");
    w.write(2, b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok");
    let x = only(w.take());
    assert_eq!((x.target.as_str(), x.response_body_size), ("/lf", 2));
}

#[test]
fn crlf_between_requests_is_ignored() {
    let mut w = Wire::new();
    // Old clients append CRLF after a POST body.
    w.read(1, &cat(&[CURL_POST_HEAD, CURL_POST_BODY, b"\r\n"]));
    w.read(2, CURL_GET);
    w.write(3, &cat(&[NGINX_204, NGINX_200]));
    let xs = w.take();
    assert_eq!(xs.len(), 2);
    assert_eq!(xs[1].request_start_ns, 2);
    assert_eq!(w.stats().lost_sync_bytes, 0);
}

#[test]
fn other_protocols_produce_nothing() {
    for (client, server) in [
        (TLS_CLIENT_HELLO, &[0x16u8, 0x03, 0x03, 0x00, 0x5a][..]),
        (PG_STARTUP, b"R\x00\x00\x00\x08\x00\x00\x00\x00"),
        (REDIS_PING, b"+PONG\r\n"),
    ] {
        let mut w = Wire::new();
        w.write(1, client).read(2, server).close(3);
        assert!(w.take().is_empty());
        let s = w.stats();
        assert_eq!((s.requests, s.responses), (0, 0));
    }
}

#[test]
fn stats_survive_close_and_later_input_is_ignored() {
    let mut w = Wire::new();
    w.read(1, CURL_GET).close(2);
    assert_eq!(only(w.take()).outcome, Outcome::NoResponse);
    w.write(3, NGINX_200).read(4, CURL_GET).close(5);
    assert!(w.take().is_empty());
    assert_eq!(w.stats().requests, 1);
}

#[test]
fn fixtures_are_self_consistent() {
    use ratatosk_protocols::http1::{Framing, parse_response_head};
    use ratatosk_protocols::parse::Parsed;
    for r in [NGINX_200, NGINX_404, NGINX_500, PYTHON_200] {
        let Ok(Parsed::Complete { frame, consumed }) = parse_response_head(r) else {
            panic!("fixture does not parse");
        };
        assert_eq!(
            frame.framing(Some("GET")),
            Framing::Length((r.len() - consumed) as u64)
        );
    }
}

/// A custom method at a connection's start is a request like any other,
/// and so is one on the same keep-alive connection later; split in
/// segments too. After lost bytes only known methods are looked for.
#[test]
fn custom_methods_from_the_first_byte() {
    let mut w = Wire::new();
    w.read(100, b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n")
        .write(110, NGINX_200);
    w.read(200, b"FOO /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .write(210, NGINX_404);
    let got: Vec<_> = w
        .take()
        .iter()
        .map(|x| (x.method.to_string(), x.path().to_string(), x.status))
        .collect();
    assert_eq!(
        got,
        [
            ("BREW".to_string(), "/pot".to_string(), 200),
            ("FOO".to_string(), "/x".to_string(), 404)
        ]
    );
    assert_eq!(w.stats().lost_sync_bytes, 0);

    let mut w = Wire::new();
    w.read(100, b"BR")
        .read(101, b"EW /pot HT")
        .read(102, b"TP/1.1\r\n\r\n");
    w.write(110, NGINX_200);
    assert_eq!(only(w.take()).method, "BREW");

    // Not at the start: skipped as garbage until a known method.
    let mut w = Wire::new();
    w.read(
        100,
        b"junk\r\nBREW /pot HTTP/1.1\r\n\r\nGET /a HTTP/1.1\r\n\r\n",
    )
    .write(110, NGINX_200);
    let x = only(w.take());
    assert_eq!((x.method.as_str(), x.path()), ("GET", "/a"));
}
