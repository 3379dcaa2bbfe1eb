//! Bodies of the cargo-fuzz targets in `fuzz/`, kept here so that
//! `cargo test` runs them over the committed seeds on stable.
//!
//! They panic (via `assert!`) when an invariant breaks: that is the point.

use crate::http1::{self, Detect, Exchange, Http1Conn, Limits, Outcome, parse_request_head_with};
use crate::parse::{Direction, Parsed, Segment};

/// `http1_head`: head parsers, detection and boundary search on raw bytes.
pub fn http1_head(data: &[u8]) {
    let req = http1::parse_request_head(data);
    if let Ok(Parsed::Complete { frame, consumed }) = &req {
        assert!(*consumed <= data.len());
        assert!(frame.target.len() <= http1::head::DEFAULT_MAX_TARGET_LEN);
        assert!(!(frame.chunked && frame.content_length.is_some()));
    }
    let short = parse_request_head_with(data, 7);
    if let Ok(Parsed::Complete { frame, .. }) = &short {
        assert!(frame.target.len() <= 7);
    }
    assert_eq!(req.is_ok(), short.is_ok());
    let resp = http1::parse_response_head(data);
    if let Ok(Parsed::Complete { frame, consumed }) = &resp {
        assert!(consumed <= &data.len());
        assert!((100..=999).contains(&frame.status));
    }
    let detected = http1::detect(data);
    let req_at = http1::find_request_boundary(data);
    let resp_at = http1::find_response_boundary(data);
    for at in [req_at, resp_at].into_iter().flatten() {
        assert!(at < data.len());
    }
    // Detection at a direction's start takes any token method; the
    // boundary scan only known ones, so it agrees wherever a known one is.
    let start = http1::detect::match_request_start(data);
    let known = http1::detect::match_request_line(data);
    assert!(known == http1::detect::LineMatch::No || known == start);
    match detected {
        Detect::Request => {
            assert!(req_at == Some(0) || (start == http1::detect::LineMatch::Yes && known != start))
        }
        Detect::Response => assert_eq!(resp_at, Some(0)),
        Detect::NeedMore => assert!(
            data.is_empty()
                || req_at == Some(0)
                || resp_at == Some(0)
                || start == http1::detect::LineMatch::Prefix
        ),
        Detect::No => assert!(req_at != Some(0) && resp_at != Some(0)),
    }
    // A recognised request line must also satisfy the full parser's start
    // line grammar (the converse does not hold: the parser takes any token).
    if detected == Detect::Request {
        assert!(!matches!(req, Ok(Parsed::Ignored)));
    }
}

/// One decoded segment of an `http1_conn` input.
#[derive(Debug, Clone, Copy)]
pub struct FuzzSegment<'a> {
    pub dir: Direction,
    pub ts_ns: u64,
    pub data: &'a [u8],
    pub len: u64,
}

/// Every segment cut into one-byte reads at its timestamp, its gap kept
/// after its last byte: a parser must give the same result.
fn one_byte_reads<'a>(segs: &[FuzzSegment<'a>]) -> Vec<FuzzSegment<'a>> {
    let mut split = Vec::new();
    for s in segs {
        let gap = s.len - s.data.len() as u64;
        if s.data.len() <= 1 {
            split.push(*s);
            continue;
        }
        let last = s.data.len() - 1;
        for (i, b) in s.data.chunks(1).enumerate() {
            split.push(FuzzSegment {
                data: b,
                len: 1 + if i == last { gap } else { 0 },
                ..*s
            });
        }
    }
    split
}

/// Decodes an `http1_conn` input: two limit bytes, then records of
/// `[flags][data_len][gap_code][data...]` where flags bit 0 is the direction
/// (1 = egress) and bits 1..8 the timestamp increment.
pub fn decode_conn_input(input: &[u8]) -> (Limits, Vec<FuzzSegment<'_>>) {
    let mut limits = Limits::default();
    let (l0, l1) = (
        input.first().copied().unwrap_or(0),
        input.get(1).copied().unwrap_or(0),
    );
    if l0 & 0x80 != 0 {
        limits.max_head_bytes = 16 + usize::from(l0 & 0x3f) * 16;
    }
    if l1 & 0x80 != 0 {
        limits.max_pending_requests = usize::from(l1 & 0x07);
    }
    if l1 & 0x40 != 0 {
        limits.max_target_len = usize::from((l1 >> 3) & 0x07) * 3;
    }
    let mut rest = input.get(2..).unwrap_or_default();
    let mut ts = 1u64;
    let mut segs = Vec::new();
    while let Some((&[flags, n, gap_code], tail)) = rest.split_first_chunk::<3>() {
        let n = usize::from(n).min(tail.len());
        let (data, after) = tail.split_at(n);
        rest = after;
        ts += u64::from(flags >> 1);
        let gap = match gap_code {
            0..=0xef => u64::from(gap_code),
            _ => u64::from(gap_code - 0xef) << 16,
        };
        segs.push(FuzzSegment {
            dir: if flags & 1 == 0 {
                Direction::Ingress
            } else {
                Direction::Egress
            },
            ts_ns: ts,
            data,
            len: data.len() as u64 + gap,
        });
    }
    (limits, segs)
}

/// One segment to encode: direction, timestamp increment, data, gap code.
pub type SegmentSpec<'a> = (Direction, u8, &'a [u8], u8);

/// Encodes segments in the `http1_conn` format; long data is split over
/// several records.
pub fn encode_conn_input(limits: [u8; 2], segs: &[SegmentSpec<'_>]) -> Vec<u8> {
    let mut out = limits.to_vec();
    for &(dir, dt, data, gap) in segs {
        let dir_bit = u8::from(dir == Direction::Egress);
        let mut chunks = data.chunks(255).peekable();
        let mut first = true;
        if data.is_empty() {
            out.extend_from_slice(&[(dt.min(127) << 1) | dir_bit, 0, gap]);
        }
        while let Some(chunk) = chunks.next() {
            let dt = if first { dt.min(127) } else { 0 };
            first = false;
            let g = if chunks.peek().is_none() { gap } else { 0 };
            out.extend_from_slice(&[(dt << 1) | dir_bit, chunk.len() as u8, g]);
            out.extend_from_slice(chunk);
        }
    }
    out
}

/// Runs a connection over the segments, closing it at the end.
pub fn run_conn(limits: Limits, segs: &[FuzzSegment<'_>]) -> (Vec<Exchange>, Http1Conn) {
    let mut conn = Http1Conn::new(limits);
    let mut out = Vec::new();
    for s in segs {
        conn.on_data(s.dir, Segment::truncated(s.ts_ns, s.data, s.len), &mut out);
    }
    let end = segs.last().map_or(1, |s| s.ts_ns + 1);
    conn.on_close(end, &mut out);
    (out, conn)
}

/// `http1_conn`: drives a connection and checks exchange invariants, and
/// that re-segmenting the same bytes changes nothing.
pub fn http1_conn(input: &[u8]) {
    let (limits, segs) = decode_conn_input(input);
    let (out, conn) = run_conn(limits, &segs);
    let max_ts = segs.last().map_or(0, |s| s.ts_ns);
    for x in &out {
        check_exchange(x, &limits, max_ts);
    }
    let stats = conn.stats();
    assert_eq!(stats.exchanges, out.len() as u64);
    assert!(stats.exchanges <= stats.requests);
    let truncated = out
        .iter()
        .filter(|x| x.outcome == Outcome::ResponseTruncated)
        .count() as u64;
    assert_eq!(stats.truncated_responses, truncated);

    // Closed connections stay quiet.
    let mut conn = conn;
    let mut more = Vec::new();
    conn.on_data(
        Direction::Ingress,
        Segment::new(max_ts, b"GET / HTTP/1.1\r\n\r\n"),
        &mut more,
    );
    conn.on_close(max_ts, &mut more);
    assert!(more.is_empty());

    // Splitting every segment into one-byte reads at the same timestamp
    // must give the same exchanges and counters.
    let split = one_byte_reads(&segs);
    let (out_split, conn_split) = run_conn(limits, &split);
    assert_eq!(out, out_split);
    assert_eq!(conn.stats(), conn_split.stats());
}

fn check_exchange(x: &Exchange, limits: &Limits, max_ts: u64) {
    assert!(!x.method.is_empty());
    assert!(x.target.len() <= limits.max_target_len);
    assert!(x.minor_version <= 1);
    assert!(x.request_start_ns >= 1 && x.request_start_ns <= x.request_end_ns);
    assert!(x.request_end_ns <= max_ts);
    match x.outcome {
        Outcome::NoResponse => {
            assert_eq!(x.status, 0);
            assert_eq!((x.response_start_ns, x.response_end_ns), (0, 0));
            assert_eq!(x.response_body_size, 0);
        }
        Outcome::Complete | Outcome::ResponseTruncated => {
            assert!((100..=999).contains(&x.status));
            assert!(x.status == 101 || !(100..200).contains(&x.status));
            assert!(x.response_start_ns >= 1);
            assert!(x.response_start_ns <= x.response_end_ns);
            assert!(x.response_end_ns <= max_ts);
        }
    }
    // path() and query() must be total.
    let _ = (x.path(), x.query());
}

/// Runs a PostgreSQL connection (requests are egress: the client is
/// observed) over the segments, closing it at the end.
pub fn run_postgres(limits: Limits, segs: &[FuzzSegment<'_>]) -> crate::parser::Output {
    use crate::parser::{Output, Protocol};
    let mut p = crate::postgres::POSTGRES.parser(Direction::Egress, &limits);
    let mut out = Output::default();
    for s in segs {
        p.on_data(s.dir, Segment::truncated(s.ts_ns, s.data, s.len), &mut out);
    }
    let end = segs.last().map_or(1, |s| s.ts_ns + 1);
    p.on_close(end, &mut out);
    // Closed connections stay quiet.
    let mut more = Output::default();
    p.on_data(
        Direction::Egress,
        Segment::new(end, b"Q\x00\x00\x00\x0dSELECT 1\x00"),
        &mut more,
    );
    p.on_close(end, &mut more);
    assert!(more.is_empty());
    out
}

/// `postgres_conn`: the `http1_conn` input format (limit bytes also set
/// the statement table and query length), detection of every segment,
/// operation invariants, and, when framing was never lost, the same
/// operations whatever the segmentation.
pub fn postgres_conn(input: &[u8]) {
    use crate::op::{Detail, Outcome};
    use crate::parser::Protocol;
    let (mut limits, segs) = decode_conn_input(input);
    let defaults = Limits::default();
    if limits.max_head_bytes != defaults.max_head_bytes {
        limits.max_query_len = limits.max_head_bytes;
    }
    if limits.max_target_len != defaults.max_target_len {
        limits.max_statements = limits.max_target_len / 3;
    }
    for s in &segs {
        let _ = crate::postgres::POSTGRES.detect(s.dir, s.data);
    }
    let out = run_postgres(limits, &segs);
    let max_ts = segs.last().map_or(0, |s| s.ts_ns);
    for op in &out.ops {
        let Detail::Db(d) = &op.detail else {
            unreachable!("not a database operation");
        };
        assert!(op.request_start_ns >= 1 && op.request_start_ns <= op.request_end_ns);
        assert!(op.request_end_ns <= max_ts);
        match op.outcome {
            Outcome::NoResponse => {
                assert_eq!((op.response_start_ns, op.response_end_ns), (0, 0));
            }
            _ => {
                assert!(op.response_start_ns >= 1);
                assert!(op.response_start_ns <= op.response_end_ns);
                assert!(op.response_end_ns <= max_ts);
            }
        }
        assert!(
            d.operation
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
        );
        let text = d.query_text.as_deref().unwrap_or_default();
        assert!(text.len() <= limits.max_query_len);
        assert!(d.status_code.as_ref().is_none_or(|c| !c.is_empty()));
    }
    let lost = out
        .losses
        .iter()
        .any(|(r, _)| matches!(*r, "lost_sync" | "invalid_message"));
    if lost {
        return;
    }
    let split = one_byte_reads(&segs);
    let again = run_postgres(limits, &split);
    assert_eq!(out.ops, again.ops);
    assert_eq!(out.losses, again.losses);
}

/// `redis_conn`: the Redis parser over the `http1_conn` input format (bit
/// 0x40 of the first limit byte: requests are the egress direction; a
/// short target limit also shortens `max_query_len`). Checks operation
/// invariants, that no argument but the key reaches the text, that a
/// closed parser stays quiet, and that one-byte reads change nothing on
/// input that lost nothing.
pub fn redis_conn(input: &[u8]) {
    use crate::op::Detail;
    use crate::parser::{Limits as ParserLimits, Output, Protocol};

    let (http_limits, segs) = decode_conn_input(input);
    let request_dir = if input.first().is_some_and(|b| b & 0x40 != 0) {
        Direction::Egress
    } else {
        Direction::Ingress
    };
    let mut limits = ParserLimits {
        max_head_bytes: http_limits.max_head_bytes,
        max_pending_requests: http_limits.max_pending_requests,
        ..ParserLimits::default()
    };
    if input.get(1).is_some_and(|b| b & 0x40 != 0) {
        limits.max_query_len = http_limits.max_target_len;
    }
    let run = |segs: &[FuzzSegment<'_>]| {
        let mut p = crate::redis::REDIS.parser(request_dir, &limits);
        let mut out = Output::default();
        for s in segs {
            p.on_data(s.dir, Segment::truncated(s.ts_ns, s.data, s.len), &mut out);
        }
        let end = segs.last().map_or(1, |s| s.ts_ns + 1);
        p.on_close(end, &mut out);
        (out, p, end)
    };
    let (out, mut p, end) = run(&segs);
    for op in &out.ops {
        let Detail::Db(d) = &op.detail else {
            unreachable!("Redis gives database operations")
        };
        assert!(op.request_start_ns >= 1 && op.request_start_ns <= op.request_end_ns);
        assert!(op.request_end_ns <= end);
        match op.outcome {
            Outcome::NoResponse => assert_eq!((op.response_start_ns, op.response_end_ns), (0, 0)),
            Outcome::Complete | Outcome::ResponseTruncated => {
                assert!(op.response_start_ns >= 1);
                assert!(op.response_start_ns <= op.response_end_ns);
                assert!(op.response_end_ns <= end);
            }
        }
        if let Some(text) = &d.query_text {
            assert!(text.len() <= limits.max_query_len.max(d.operation.len()));
            assert!(!d.operation.is_empty());
            // Past the command (one or two words) and the key, only `?`.
            assert!(
                text.split(' ').skip(2).all(|t| t == "?" || t.is_empty()),
                "{text}"
            );
        } else {
            assert!(d.operation.is_empty());
        }
        assert!(d.batch_size >= 1);
        if let Some(code) = &d.status_code {
            assert!(code.len() <= 32);
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            );
        }
    }
    // Closed parsers stay quiet.
    let mut more = Output::default();
    p.on_data(
        request_dir,
        Segment::new(end, b"*1\r\n$4\r\nPING\r\n"),
        &mut more,
    );
    p.on_close(end, &mut more);
    assert!(more.is_empty());

    if out.losses.is_empty() {
        let split = one_byte_reads(&segs);
        let (out_split, _, _) = run(&split);
        assert_eq!(out.ops, out_split.ops);
        assert!(out_split.losses.is_empty());
    }
}

/// `mysql_conn`: drives the MySQL/MariaDB parser over segments in the
/// `http1_conn` format (requests are egress), with both observed roles;
/// checks operation invariants, that sanitized text keeps no quoted
/// literal, that a closed parser stays quiet and, when no segment has a
/// gap, that one-byte reads give the same operations and losses.
pub fn mysql_conn(input: &[u8]) {
    use crate::op::{Detail, Outcome as OpOutcome};
    use crate::parser::{Output, Protocol};

    let (mut limits, segs) = decode_conn_input(input);
    if input.first().is_some_and(|b| b & 0x40 != 0) {
        limits.max_query_len = limits.max_head_bytes / 4;
        limits.max_statements = limits.max_pending_requests;
    }
    let max_ts = segs.last().map_or(0, |s| s.ts_ns);
    let run = |segs: &[FuzzSegment<'_>], request_dir: Direction| {
        let mut p = crate::mysql::MYSQL.parser(request_dir, &limits);
        let mut out = Output::default();
        for s in segs {
            // Requests always travel egress in the input; the observed
            // role flips which direction that is.
            let dir = if request_dir == Direction::Egress {
                s.dir
            } else {
                s.dir.opposite()
            };
            p.on_data(dir, Segment::truncated(s.ts_ns, s.data, s.len), &mut out);
        }
        p.on_close(max_ts + 1, &mut out);
        let mut after = Output::default();
        p.on_data(
            Direction::Egress,
            Segment::new(max_ts, b"\x05\x00\x00\x00\x03SELECT"),
            &mut after,
        );
        p.on_close(max_ts + 2, &mut after);
        assert!(after.is_empty());
        out
    };
    for request_dir in [Direction::Egress, Direction::Ingress] {
        let out = run(&segs, request_dir);
        for op in &out.ops {
            assert!(op.request_start_ns >= 1 && op.request_start_ns <= op.request_end_ns);
            assert!(op.request_end_ns <= max_ts);
            match op.outcome {
                OpOutcome::NoResponse => {
                    assert_eq!((op.response_start_ns, op.response_end_ns), (0, 0));
                }
                OpOutcome::Complete | OpOutcome::ResponseTruncated => {
                    assert!(op.response_start_ns >= 1);
                    assert!(op.response_start_ns <= op.response_end_ns);
                    assert!(op.response_end_ns <= max_ts);
                }
            }
            assert!(matches!(op.detail, Detail::Db(_)), "{op:?}");
            let Detail::Db(d) = &op.detail else {
                continue;
            };
            assert!(!d.operation.is_empty());
            if let Some(t) = &d.query_text {
                assert!(t.len() <= limits.max_query_len + 4, "{t:?}");
                // An identifier left open became `?` with what followed.
                let outside = outside_backquotes(t);
                assert!(outside.is_some(), "open identifier kept: {t:?}");
                if let Some(outside) = outside {
                    assert!(
                        !outside.contains('\'') && !outside.contains('"'),
                        "literal kept: {t:?}"
                    );
                }
            }
            if let Some(c) = &d.status_code {
                assert!(!c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()));
                assert!(d.returned_rows.is_none());
            }
            if op.outcome != OpOutcome::Complete {
                assert!(d.returned_rows.is_none());
            }
        }
        for (reason, n) in &out.losses {
            assert!(*n > 0 && !reason.is_empty());
        }
        if segs.iter().all(|s| s.len == s.data.len() as u64) {
            let mut split = Vec::new();
            for s in &segs {
                for b in s.data.chunks(1) {
                    split.push(FuzzSegment {
                        data: b,
                        len: 1,
                        ..*s
                    });
                }
            }
            let again = run(&split, request_dir);
            assert_eq!(out.ops, again.ops);
            let mut a = out.losses.clone();
            let mut b = again.losses.clone();
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b);
        }
    }
    // Detection is total over any prefix.
    for s in segs.iter().take(2) {
        let _ = crate::mysql::detect(s.dir, s.data);
    }
}

/// `text` without its backquoted identifiers (kept verbatim by the
/// sanitizer, so they may hold quote characters); `None` when a backquote
/// is left open (the sanitizer replaces such an identifier and what
/// follows it by `?`, so that never reaches an operation).
fn outside_backquotes(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (inside, c) {
            (false, '`') => inside = true,
            (true, '`') if chars.peek() == Some(&'`') => {
                chars.next();
            }
            (true, '`') => inside = false,
            (false, c) => out.push(c),
            (true, _) => {}
        }
    }
    (!inside).then_some(out)
}

/// `http2_frames`: the HTTP/2 parser over segments in the `http1_conn`
/// format (bit 0x40 of the first limit byte: requests are egress; a short
/// target limit also caps kept values; bit 0x20 of the second: at most 2
/// open streams). Checks operation invariants, that a closed parser stays
/// quiet and, when nothing was lost, that one-byte reads change nothing.
pub fn http2_frames(input: &[u8]) {
    use crate::op::{Detail, Outcome};
    use crate::parser::{Limits as ParserLimits, Output, Protocol};

    let (http_limits, segs) = decode_conn_input(input);
    let request_dir = if input.first().is_some_and(|b| b & 0x40 != 0) {
        Direction::Egress
    } else {
        Direction::Ingress
    };
    let mut limits = ParserLimits {
        max_head_bytes: http_limits.max_head_bytes,
        max_target_len: http_limits.max_target_len,
        ..ParserLimits::default()
    };
    if input.get(1).is_some_and(|b| b & 0x20 != 0) {
        limits.max_streams = 2;
        limits.max_header_table_size = 100;
    }
    let run = |segs: &[FuzzSegment<'_>]| {
        let mut p = crate::http2::HTTP2.parser(request_dir, &limits);
        let mut out = Output::default();
        for s in segs {
            p.on_data(s.dir, Segment::truncated(s.ts_ns, s.data, s.len), &mut out);
        }
        let end = segs.last().map_or(1, |s| s.ts_ns + 1);
        p.on_close(end, &mut out);
        (out, p, end)
    };
    let (out, mut p, end) = run(&segs);
    for op in &out.ops {
        assert!(op.request_start_ns >= 1 && op.request_start_ns <= op.request_end_ns);
        assert!(op.request_end_ns <= end);
        match op.outcome {
            Outcome::NoResponse => assert_eq!((op.response_start_ns, op.response_end_ns), (0, 0)),
            Outcome::Complete | Outcome::ResponseTruncated => {
                assert!(op.response_start_ns <= op.response_end_ns);
                assert!(op.response_end_ns <= end);
            }
        }
        match &op.detail {
            Detail::Http(d) => {
                assert!(d.target.len() <= limits.max_target_len);
                assert_eq!(d.protocol_version, "2");
            }
            Detail::Rpc(d) => assert!(d.method.len() <= limits.max_target_len),
            Detail::Db(_) => unreachable!("HTTP/2 gives HTTP or RPC operations"),
        }
    }
    let mut more = Output::default();
    p.on_data(
        request_dir,
        Segment::new(end, crate::http2::PREFACE),
        &mut more,
    );
    p.on_close(end, &mut more);
    assert!(more.is_empty());

    if out.losses.is_empty() {
        let split = one_byte_reads(&segs);
        let (out_split, _, _) = run(&split);
        assert_eq!(out.ops, out_split.ops);
        assert!(out_split.losses.is_empty());
    }
}

/// `hpack`: header blocks through one decoder (first byte: table cap and
/// value limit; then blocks, each prefixed by its length byte). The table
/// never exceeds its maximum, a decoder that keeps everything agrees with
/// the lean one on every kept field, and a failed block leaves a usable
/// decoder.
pub fn hpack(input: &[u8]) {
    use crate::http2::hpack::{Decoder, Name};

    let sel = input.first().copied().unwrap_or(0);
    let cap = 64 + usize::from(sel & 0x0f) * 512;
    let keep = 1 + usize::from(sel >> 4) * 8;
    let complete = sel & 0x80 == 0;
    let mut lean = Decoder::new(cap, keep, complete);
    let mut full = Decoder::new(cap, keep, complete);
    full.keep_all();
    let mut rest = input.get(1..).unwrap_or_default();
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        let (block, after) = tail.split_at(n);
        rest = after;
        let mut a: Vec<(Name, Vec<u8>)> = Vec::new();
        let mut b: Vec<(Name, Vec<u8>)> = Vec::new();
        let ra = lean.decode(block, |name, _, v| {
            // Static-table values (at most 13 bytes) come whole.
            assert!(name == Name::Other || name == Name::Unknown || v.len() <= keep.max(13));
            a.push((name, v.to_vec()));
        });
        let rb = full.decode(block, |name, raw, v| {
            if name == Name::Unknown {
                assert!(raw.is_empty() && v.is_empty());
            }
            b.push((name, v.to_vec()));
        });
        // The lean decoder skips values it neither keeps nor indexes
        // without decoding them, so only the full one may find their
        // Huffman codes invalid (the lean one may fail later on, or at
        // the same kind of error further on).
        if ra.is_err() || rb.is_err() {
            assert!(rb.is_err(), "{ra:?} {rb:?}");
            lean.lose_context();
            full.lose_context();
            continue;
        }
        assert_eq!(a.len(), b.len());
        for ((na, va), (nb, vb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            if !matches!(na, Name::Other | Name::Unknown) {
                assert!(vb.starts_with(va));
            }
        }
        for d in [&lean, &full] {
            assert!(d.table_size() <= d.max_table_size());
            assert!(d.max_table_size() <= cap);
        }
        assert_eq!(lean.table_len(), full.table_len());
        assert_eq!(lean.table_size(), full.table_size());
    }
}
