//! Head parsing: fields, framing rules and rejections.

mod common;

use common::*;
use ratatosk_protocols::http1::{
    Framing, ParseError, RequestHead, ResponseHead, parse_request_head, parse_request_head_with,
    parse_response_head,
};
use ratatosk_protocols::parse::Parsed;

fn req(buf: &[u8]) -> RequestHead {
    match parse_request_head(buf) {
        Ok(Parsed::Complete { frame, consumed }) => {
            assert!(consumed <= buf.len());
            frame
        }
        other => panic!("expected a request head, got {other:?}"),
    }
}

fn resp(buf: &[u8]) -> ResponseHead {
    match parse_response_head(buf) {
        Ok(Parsed::Complete { frame, .. }) => frame,
        other => panic!("expected a response head, got {other:?}"),
    }
}

fn req_err(buf: &[u8]) -> ParseError {
    match parse_request_head(buf) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn curl_get_fields() {
    let h = req(CURL_GET);
    assert_eq!(h.method, "GET");
    assert_eq!(h.target, "/hello?x=1");
    assert!(!h.target_truncated);
    assert_eq!(h.minor_version, 1);
    assert_eq!(h.content_length, None);
    assert!(!h.chunked);
    assert_eq!(h.host.as_deref(), Some("127.0.0.1:18080"));
    assert!(h.keep_alive());
    assert_eq!(h.framing(), Framing::None);
    let Ok(Parsed::Complete { consumed, .. }) = parse_request_head(CURL_GET) else {
        unreachable!()
    };
    assert_eq!(consumed, CURL_GET.len());
}

#[test]
fn consumed_stops_at_end_of_head() {
    let buf = cat(&[CURL_POST_HEAD, CURL_POST_BODY]);
    let Ok(Parsed::Complete { frame, consumed }) = parse_request_head(&buf) else {
        panic!()
    };
    assert_eq!(consumed, CURL_POST_HEAD.len());
    assert_eq!(frame.framing(), Framing::Length(17));
}

#[test]
fn partial_heads_need_more() {
    for cut in 0..CURL_GET.len() {
        assert_eq!(
            parse_request_head(&CURL_GET[..cut]),
            Ok(Parsed::NeedMore),
            "cut {cut}"
        );
    }
    for cut in 0..NGINX_204.len() {
        assert_eq!(
            parse_response_head(&NGINX_204[..cut]),
            Ok(Parsed::NeedMore),
            "cut {cut}"
        );
    }
}

#[test]
fn wrong_message_type_is_ignored() {
    assert_eq!(parse_request_head(NGINX_200), Ok(Parsed::Ignored));
    assert_eq!(parse_request_head(TLS_CLIENT_HELLO), Ok(Parsed::Ignored));
    assert_eq!(parse_response_head(CURL_GET), Ok(Parsed::Ignored));
    assert_eq!(parse_response_head(REDIS_PING), Ok(Parsed::Ignored));
    assert_eq!(parse_response_head(b"HTTX"), Ok(Parsed::Ignored));
}

#[test]
fn leading_empty_lines_are_skipped() {
    let buf = cat(&[b"\r\n\r\n", CURL_GET]);
    let Ok(Parsed::Complete { consumed, .. }) = parse_request_head(&buf) else {
        panic!()
    };
    assert_eq!(consumed, buf.len());
}

#[test]
fn connection_flags_and_versions() {
    let h = req(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_eq!(h.minor_version, 0);
    assert!(h.connection_keep_alive && h.keep_alive());
    let h = req(b"GET / HTTP/1.0\r\n\r\n");
    assert!(!h.keep_alive());
    let h = req(b"GET / HTTP/1.1\r\nConnection: TE, close\r\n\r\n");
    assert!(h.connection_close && !h.keep_alive());
    let r = resp(PYTHON_200);
    assert_eq!(r.minor_version, 0);
    assert!(!r.keep_alive());
    let r = resp(NODE_CHUNKED_HEAD);
    assert!(r.connection_keep_alive && r.keep_alive() && r.chunked);
    assert!(resp(NGINX_500).connection_close);
}

#[test]
fn upgrade_and_expect_flags() {
    let h = req(WS_UPGRADE);
    assert!(h.upgrade);
    assert!(!h.expect_continue);
    let h = req(CURL_POST_EXPECT_HEAD);
    assert!(h.expect_continue);
    assert_eq!(h.content_length, Some(2048));
}

#[test]
fn content_length_rules() {
    let h = req(b"POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n");
    assert_eq!(h.content_length, Some(42));
    // RFC 9110 §8.6: identical values, in one list or several fields.
    let h = req(b"POST / HTTP/1.1\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n");
    assert_eq!(h.content_length, Some(7));
    assert_eq!(
        req_err(b"POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n"),
        ParseError::ConflictingContentLength
    );
    assert_eq!(
        req_err(b"POST / HTTP/1.1\r\nContent-Length: 7, 9\r\n\r\n"),
        ParseError::ConflictingContentLength
    );
    for bad in ["-1", "+5", "0x10", "1 2", "", "99999999999999999999", "5,"] {
        let buf = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
        assert_eq!(
            req_err(buf.as_bytes()),
            ParseError::InvalidContentLength,
            "{bad:?}"
        );
    }
    assert_eq!(
        parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"),
        Err(ParseError::InvalidContentLength)
    );
}

#[test]
fn chunked_overrides_content_length() {
    // RFC 9112 §6.3 item 3: Transfer-Encoding wins, even over a bad length.
    let h = req(b"POST / HTTP/1.1\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(h.chunked);
    assert_eq!(h.content_length, None);
    assert_eq!(h.framing(), Framing::Chunked);
    let h =
        req(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\nContent-Length: x\r\n\r\n");
    assert!(h.chunked);
    let r = resp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(r.framing(Some("GET")), Framing::Chunked);
}

#[test]
fn transfer_encoding_without_final_chunked() {
    assert_eq!(
        req_err(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        ParseError::InvalidTransferEncoding
    );
    // A response like that is read until close.
    let r = resp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n");
    assert!(!r.chunked);
    assert_eq!(r.framing(Some("GET")), Framing::UntilClose);
    // Several fields form one list: the last coding decides.
    let r =
        resp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(r.chunked);
}

#[test]
fn response_framing_table() {
    let with_len = |status: u16| {
        let buf = format!("HTTP/1.1 {status} X\r\nContent-Length: 9\r\n\r\n");
        resp(buf.as_bytes())
    };
    let cases: &[(u16, Option<&str>, Framing)] = &[
        (200, Some("GET"), Framing::Length(9)),
        (200, None, Framing::Length(9)),
        (200, Some("HEAD"), Framing::None),
        (404, Some("HEAD"), Framing::None),
        (100, Some("GET"), Framing::None),
        (101, Some("GET"), Framing::None),
        (103, Some("GET"), Framing::None),
        (204, Some("GET"), Framing::None),
        (304, Some("GET"), Framing::None),
        (200, Some("CONNECT"), Framing::None),
        (407, Some("CONNECT"), Framing::Length(9)),
        (500, Some("POST"), Framing::Length(9)),
    ];
    for &(status, method, framing) in cases {
        assert_eq!(
            with_len(status).framing(method),
            framing,
            "{status} {method:?}"
        );
    }
    let r = resp(PYTHON_UNTIL_CLOSE_HEAD);
    assert_eq!(r.framing(Some("GET")), Framing::UntilClose);
    assert!(resp(CONTINUE_100).is_interim());
    assert!(resp(EARLY_HINTS_103).is_interim());
    assert!(!resp(WS_101).is_interim());
}

#[test]
fn status_rules() {
    assert_eq!(resp(b"HTTP/1.1 200\r\n\r\n").status, 200); // no reason phrase
    assert_eq!(resp(b"HTTP/1.1 599 Custom Thing\r\n\r\n").status, 599);
    assert_eq!(
        parse_response_head(b"HTTP/1.1 099 Low\r\n\r\n"),
        Err(ParseError::InvalidStatus)
    );
    assert_eq!(
        parse_response_head(b"HTTP/1.1 2x0 OK\r\n\r\n"),
        Err(ParseError::InvalidStatus)
    );
    assert_eq!(
        parse_response_head(b"HTTP/2.0 200 OK\r\n\r\n"),
        Err(ParseError::InvalidVersion)
    );
}

#[test]
fn malformed_requests() {
    assert_eq!(
        req_err(b"GET  / HTTP/1.1\r\n\r\n"),
        ParseError::InvalidToken
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.2\r\n\r\n"),
        ParseError::InvalidVersion
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"),
        ParseError::InvalidHeaderName
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.1\rX\n\r\n"),
        ParseError::InvalidNewLine
    );
    let long_method = format!("{} / HTTP/1.1\r\n\r\n", "M".repeat(33));
    assert_eq!(req_err(long_method.as_bytes()), ParseError::InvalidToken);
}

#[test]
fn too_many_headers() {
    let mut buf = String::from("GET / HTTP/1.1\r\n");
    for i in 0..64 {
        buf.push_str(&format!("X-H{i}: v\r\n"));
    }
    buf.push_str("\r\n");
    assert!(matches!(
        parse_request_head(buf.as_bytes()),
        Ok(Parsed::Complete { .. })
    ));
    let more = buf.replacen("\r\n\r\n", "\r\nX-One-More: v\r\n\r\n", 1);
    assert_eq!(req_err(more.as_bytes()), ParseError::TooManyHeaders);
}

#[test]
fn target_truncation_respects_char_boundaries() {
    let buf = "GET /caf\u{e9}/\u{1f600} HTTP/1.1\r\n\r\n";
    for max in 0..20 {
        let Ok(Parsed::Complete { frame, .. }) = parse_request_head_with(buf.as_bytes(), max)
        else {
            panic!()
        };
        assert!(frame.target.len() <= max);
        assert_eq!(
            frame.target_truncated,
            frame.target.len() < "/caf\u{e9}/\u{1f600}".len()
        );
        assert!("/caf\u{e9}/\u{1f600}".starts_with(frame.target.as_str()));
    }
}

#[test]
fn traceparent_validation() {
    let with = |v: &str| {
        let buf = format!("GET / HTTP/1.1\r\ntraceparent: {v}\r\n\r\n");
        req(buf.as_bytes()).traceparent.map(|t| t.to_string())
    };
    let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(with(good).as_deref(), Some(good));
    assert_eq!(with(&format!(" {good}  ")).as_deref(), Some(good));
    // Future versions may append fields; the known prefix is kept.
    let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
    assert_eq!(with(v1).as_deref(), Some(&v1[..55]));
    for bad in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // invalid version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // v00 is exact
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short id
        "garbage",
    ] {
        assert_eq!(with(bad), None, "{bad}");
    }
}

#[test]
fn host_is_first_and_bounded() {
    let h = req(b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n");
    assert_eq!(h.host.as_deref(), Some("a.example"));
    let long = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", "h".repeat(1000));
    assert!(req(long.as_bytes()).host.unwrap().len() <= 270);
}

#[test]
fn lenient_response_quirks() {
    // Obsolete line folding and double spaces, seen from old servers.
    let r = resp(b"HTTP/1.1  200  OK\r\nX-Long: a\r\n b\r\nContent-Length: 3\r\n\r\n");
    assert_eq!((r.status, r.content_length), (200, Some(3)));
}

#[test]
fn detect_on_first_bytes_of_real_traffic() {
    use ratatosk_protocols::http1::{Detect, detect};
    for req in [
        CURL_GET,
        CURL_POST_HEAD,
        WRK_GET,
        CURL_HEAD,
        WS_UPGRADE,
        CURL_CONNECT,
        GO_TRACED_GET,
    ] {
        assert_eq!(detect(req), Detect::Request);
        assert_eq!(detect(&req[..3]), Detect::NeedMore);
    }
    for resp in [
        NGINX_200,
        NGINX_404,
        NODE_CHUNKED_HEAD,
        PYTHON_200,
        CONTINUE_100,
        WS_101,
    ] {
        assert_eq!(detect(resp), Detect::Response);
    }
    for other in [TLS_CLIENT_HELLO, PG_STARTUP, REDIS_PING, WS_FRAME] {
        assert_eq!(detect(other), Detect::No);
        assert_eq!(detect(&other[..1]), Detect::No, "decided on the first byte");
    }
}
