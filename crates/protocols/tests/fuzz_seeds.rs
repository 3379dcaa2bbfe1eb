//! Runs the fuzz target bodies over the committed seed corpus (and cheap
//! deterministic mutations of it), so `cargo test` on stable covers them.
//!
//! Regenerate the seeds after changing fixtures with
//! `RATATOSK_WRITE_SEEDS=1 cargo test -p ratatosk-protocols --test fuzz_seeds`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use ratatosk_protocols::fuzzing::{
    SegmentSpec, encode_conn_input, hpack, http1_conn, http1_head, http2_frames, mysql_conn,
    postgres_conn, redis_conn,
};
use ratatosk_protocols::parse::Direction::{Egress as E, Ingress as I};

fn seed_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

fn head_seeds() -> BTreeMap<String, Vec<u8>> {
    let raw: &[(&str, &[u8])] = &[
        ("curl_get", CURL_GET),
        ("curl_post", CURL_POST_HEAD),
        ("curl_post_expect", CURL_POST_EXPECT_HEAD),
        ("curl_chunked_post", CURL_CHUNKED_POST),
        ("wrk_get", WRK_GET),
        ("curl_head", CURL_HEAD),
        ("ws_upgrade", WS_UPGRADE),
        ("curl_connect", CURL_CONNECT),
        ("go_traced_get", GO_TRACED_GET),
        ("nginx_200", NGINX_200),
        ("nginx_head_200", NGINX_HEAD_200),
        ("nginx_404", NGINX_404),
        ("nginx_500", NGINX_500),
        ("nginx_chunked", NGINX_CHUNKED),
        ("nginx_204", NGINX_204),
        ("nginx_304", NGINX_304),
        ("node_chunked_head", NODE_CHUNKED_HEAD),
        ("chunked_ext_trailer", CHUNKED_EXT_TRAILER),
        ("python_200", PYTHON_200),
        ("python_until_close", PYTHON_UNTIL_CLOSE_HEAD),
        ("continue_100", CONTINUE_100),
        ("early_hints_103", EARLY_HINTS_103),
        ("ws_101", WS_101),
        ("tls_client_hello", TLS_CLIENT_HELLO),
        ("pg_startup", PG_STARTUP),
        ("redis_ping", REDIS_PING),
    ];
    raw.iter()
        .map(|(n, b)| (format!("{n}.bin"), b.to_vec()))
        .collect()
}

fn conn_seeds() -> BTreeMap<String, Vec<u8>> {
    let d = [0u8, 0u8]; // default limits
    let pipelined = cat(&[CURL_GET, CURL_HEAD, WRK_GET]);
    let pipelined_resp = cat(&[NGINX_200, NGINX_HEAD_200, NGINX_404]);
    let node_resp = cat(&[
        NODE_CHUNKED_HEAD,
        NODE_CHUNK_1,
        NODE_CHUNK_2,
        NODE_LAST_CHUNK,
    ]);
    let garbage_then_get = cat(&[b"\x00\x01tail of body}", CURL_GET]);
    let upgrade_resp = cat(&[WS_101, WS_FRAME]);
    let seeds: Vec<(&str, [u8; 2], Vec<SegmentSpec>)> = vec![
        (
            "simple_get",
            d,
            vec![(I, 1, CURL_GET, 0), (E, 1, NGINX_200, 0)],
        ),
        (
            "keep_alive",
            d,
            vec![
                (I, 1, WRK_GET, 0),
                (E, 1, NGINX_200, 0),
                (I, 5, CURL_HEAD, 0),
                (E, 1, NGINX_HEAD_200, 0),
                (I, 5, WRK_GET, 0),
                (E, 1, NGINX_500, 0),
            ],
        ),
        (
            "pipelined",
            d,
            vec![(I, 1, &pipelined, 0), (E, 1, &pipelined_resp, 0)],
        ),
        (
            "post_split",
            d,
            vec![
                (I, 1, CURL_POST_HEAD, 0),
                (I, 1, &CURL_POST_BODY[..5], 0),
                (I, 1, &CURL_POST_BODY[5..], 0),
                (E, 1, NGINX_204, 0),
            ],
        ),
        (
            "chunked_both",
            d,
            vec![(I, 1, CURL_CHUNKED_POST, 0), (E, 1, CHUNKED_EXT_TRAILER, 0)],
        ),
        (
            "node_chunked",
            d,
            vec![(E, 1, WRK_GET, 0), (I, 1, &node_resp, 0)],
        ),
        (
            "gap_in_chunk_framing",
            d,
            vec![
                (I, 1, CURL_GET, 0),
                (E, 1, NODE_CHUNKED_HEAD, 200),
                (E, 1, b"junk", 0),
                (I, 1, WRK_GET, 0),
                (E, 1, NGINX_200, 0),
            ],
        ),
        (
            "gap_in_length_body",
            d,
            vec![
                (I, 1, CURL_GET, 0),
                (E, 1, &NGINX_404[..200], 0xf1),
                (I, 1, WRK_GET, 0),
            ],
        ),
        (
            "gap_in_head",
            d,
            vec![
                (I, 1, &CURL_GET[..40], 30),
                (E, 1, NGINX_200, 0),
                (I, 1, WRK_GET, 0),
                (E, 1, NGINX_204, 0),
            ],
        ),
        (
            "expect_continue",
            d,
            vec![
                (I, 1, CURL_POST_EXPECT_HEAD, 0),
                (E, 1, CONTINUE_100, 0),
                (I, 1, &[b'a'; 255], 0xe0),
                (I, 1, &[b'b'; 255], 0xe0),
                (E, 1, NGINX_200, 0),
            ],
        ),
        (
            "upgrade",
            d,
            vec![
                (I, 1, WS_UPGRADE, 0),
                (E, 1, &upgrade_resp, 0),
                (I, 1, WS_FRAME, 0),
            ],
        ),
        (
            "connect",
            d,
            vec![
                (E, 1, CURL_CONNECT, 0),
                (I, 1, PROXY_200_ESTABLISHED, 0),
                (E, 1, TLS_CLIENT_HELLO, 0),
            ],
        ),
        (
            "until_close",
            d,
            vec![
                (I, 1, b"GET / HTTP/1.0\r\n\r\n", 0),
                (E, 1, PYTHON_UNTIL_CLOSE_HEAD, 0),
                (E, 1, b"body until close", 0),
            ],
        ),
        (
            "garbage_resync",
            d,
            vec![(I, 1, &garbage_then_get, 0), (E, 1, NGINX_200, 0)],
        ),
        (
            "unpaired_response",
            d,
            vec![
                (E, 1, NGINX_404, 0),
                (I, 1, CURL_GET, 0),
                (E, 1, NGINX_200, 0),
            ],
        ),
        (
            "small_limits",
            [0x80 | 12, 0x80 | 0x40 | 2 | (2 << 3)],
            vec![(I, 1, &pipelined, 0), (E, 1, &pipelined_resp, 0)],
        ),
        (
            "other_protocols",
            d,
            vec![
                (E, 1, TLS_CLIENT_HELLO, 0),
                (I, 1, REDIS_PING, 0),
                (E, 1, PG_STARTUP, 0),
            ],
        ),
    ];
    seeds
        .into_iter()
        .map(|(n, limits, segs)| (format!("{n}.bin"), encode_conn_input(limits, &segs)))
        .collect()
}

/// A PostgreSQL fixture (tests/fixtures/postgres) as (client?, data, gap).
fn pg_records(text: &str) -> Vec<(bool, Vec<u8>, u64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let data: Vec<u8> = (0..f[2].len() / 2)
                .map(|i| u8::from_str_radix(&f[2][2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let len: u64 = f[1].parse().unwrap();
            (f[0] == "C", data.clone(), len - data.len() as u64)
        })
        .collect()
}

/// The MySQL fixtures (client requests egress), whole and through a
/// 1024-byte capture, and one with tight limits.
fn mysql_seeds() -> BTreeMap<String, Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mysql");
    let mut out = BTreeMap::new();
    for name in [
        "pymysql",
        "pymysql_multi",
        "pymysql_big",
        "pymysql_infile",
        "connector_prepared",
        "mariadb_cli",
        "mariadb_cli_compress",
        "garbage_handshake",
        "sysbench_point_select",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.txt"))).unwrap();
        let chunks: Vec<(bool, Vec<u8>)> = text
            .lines()
            .map(|l| {
                let (tag, hex) = l.split_once(' ').unwrap();
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                (tag == "C", bytes)
            })
            .collect();
        let whole: Vec<SegmentSpec> = chunks
            .iter()
            .map(|(c, b)| (if *c { E } else { I }, 1, &b[..], 0))
            .collect();
        out.insert(format!("{name}.bin"), encode_conn_input([0, 0], &whole));
        if name == "pymysql_big" || name == "connector_prepared" {
            let cut: Vec<SegmentSpec> = chunks
                .iter()
                .map(|(c, b)| {
                    let n = b.len().min(200);
                    let gap = u8::try_from(b.len() - n).unwrap_or(0xf0);
                    (if *c { E } else { I }, 1, &b[..n], gap)
                })
                .collect();
            out.insert(format!("{name}_cut.bin"), encode_conn_input([0, 0], &cut));
            out.insert(
                format!("{name}_tight.bin"),
                encode_conn_input([0x80 | 0x40 | 4, 0x80 | 2], &whole),
            );
        }
    }
    out
}

/// Connections of the Redis fixtures (tests/fixtures/redis), seen from
/// the client (requests are egress: bit 0x40 of the first limit byte).
fn redis_seeds() -> BTreeMap<String, Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/redis");
    let mut out = BTreeMap::new();
    for (name, conn) in [
        ("basic", "1"),
        ("pipeline10", "1"),
        ("multi", "1"),
        ("pubsub2", "1"),
        ("pubsub3", "1"),
        ("cli3", "1"),
        ("bigvalue", "1"),
        ("inline", "1"),
        ("modes", "1"),
        ("bench16", "2"),
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.txt"))).unwrap();
        let mut recs = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut parts = line.split(' ');
            let tag = parts.next().unwrap();
            if &tag[1..] != conn {
                continue;
            }
            let hex = parts.next().unwrap();
            let data: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let len: u64 = parts
                .next()
                .map_or(data.len() as u64, |n| n.parse().unwrap());
            let gap = len - data.len() as u64;
            // Gaps over 0xef bytes are coded in units of 64 KiB.
            let code = if gap <= 0xef {
                gap as u8
            } else {
                (0xef + (gap >> 16).clamp(1, 16)) as u8
            };
            let dir = if tag.starts_with('C') { E } else { I };
            recs.push((dir, data, code));
        }
        let specs: Vec<SegmentSpec> = recs.iter().map(|(d, b, g)| (*d, 1, &b[..], *g)).collect();
        out.insert(format!("{name}.bin"), encode_conn_input([0x40, 0], &specs));
    }
    out
}

fn postgres_seeds() -> BTreeMap<String, Vec<u8>> {
    macro_rules! fx {
        ($n:literal) => {
            ($n, include_str!(concat!("fixtures/postgres/", $n, ".txt")))
        };
    }
    let fixtures = [
        fx!("psycopg_simple_ddl"),
        fx!("psycopg_execute"),
        fx!("psycopg_prepare"),
        fx!("psycopg_pipeline"),
        fx!("psycopg_fail"),
        fx!("psycopg_pipeline_fail"),
        fx!("psycopg_copy"),
        fx!("psycopg_big_rows"),
        fx!("psql_two_statements"),
        fx!("psql_error_mid_query"),
        fx!("pgbench_setup"),
        fx!("pgbench_select"),
        fx!("psycopg_wrong_password"),
        fx!("psycopg_named_cursor"),
        fx!("psycopg_long_queries"),
    ];
    let mut out = BTreeMap::new();
    for (name, text) in fixtures {
        let recs = pg_records(text);
        for (suffix, limits, server) in [
            ("", [0u8, 0u8], false),
            ("_server", [0, 0], true),
            (
                "_small_limits",
                [0x80 | 2, 0x80 | 0x40 | 1 | (1 << 3)],
                false,
            ),
        ] {
            if !suffix.is_empty()
                && !matches!(
                    name,
                    "psycopg_pipeline" | "psycopg_prepare" | "psql_two_statements"
                )
            {
                continue;
            }
            let segs: Vec<SegmentSpec> = recs
                .iter()
                .map(|(client, data, gap)| {
                    let dir = if *client != server { E } else { I };
                    (dir, 1, data.as_slice(), (*gap).min(0xef) as u8)
                })
                .collect();
            out.insert(
                format!("{name}{suffix}.bin"),
                encode_conn_input(limits, &segs),
            );
        }
    }
    out
}

/// Connections of the HTTP/2 fixtures (tests/fixtures/http2) as the
/// server sees them, as the client sees them (0x40), with tight limits
/// (0x20 of the second byte), and with every segment cut to 40 bytes and
/// the rest a gap (framing and header blocks lost).
fn http2_seeds() -> BTreeMap<String, Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http2");
    let mut out = BTreeMap::new();
    for (name, conn) in [
        ("curl", "1"),
        ("curl", "2"),
        ("h2load", "1"),
        ("grpc", "1"),
        ("nghttp", "1"),
        ("goaway", "1"),
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.txt"))).unwrap();
        let mut recs = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (tag, hex) = line.split_once(' ').unwrap();
            if &tag[1..] != conn {
                continue;
            }
            let data: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            recs.push((if tag.starts_with('C') { I } else { E }, data));
        }
        let whole: Vec<SegmentSpec> = recs.iter().map(|(d, b)| (*d, 1, &b[..], 0)).collect();
        let flip: Vec<SegmentSpec> = recs
            .iter()
            .map(|(d, b)| (d.opposite(), 1, &b[..], 0))
            .collect();
        let cut: Vec<SegmentSpec> = recs
            .iter()
            .map(|(d, b)| {
                let keep = b.len().min(40);
                (*d, 1, &b[..keep], (b.len() - keep).min(0xef) as u8)
            })
            .collect();
        out.insert(
            format!("{name}{conn}.bin"),
            encode_conn_input([0, 0], &whole),
        );
        out.insert(
            format!("{name}{conn}_client.bin"),
            encode_conn_input([0x40, 0], &flip),
        );
        out.insert(
            format!("{name}{conn}_tight.bin"),
            encode_conn_input([0xc4, 0xe0], &whole),
        );
        out.insert(
            format!("{name}{conn}_cut.bin"),
            encode_conn_input([0, 0], &cut),
        );
    }
    out
}

/// RFC 7541 appendix C blocks, in their sequences (`hpack` format: a
/// selector byte, then length-prefixed blocks).
fn hpack_seeds() -> BTreeMap<String, Vec<u8>> {
    let seqs: [(&str, u8, &[&str]); 5] = [
        (
            "c2",
            0x0f,
            &[
                "400a637573746f6d2d6b65790d637573746f6d2d686561646572",
                "040c2f73616d706c652f70617468",
                "100870617373776f726406736563726574",
                "82",
            ],
        ),
        (
            "c3",
            0x0f,
            &[
                "828684410f7777772e6578616d706c652e636f6d",
                "828684be58086e6f2d6361636865",
                "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
            ],
        ),
        (
            "c4",
            0x3f,
            &[
                "828684418cf1e3c2e5f23a6ba0ab90f4ff",
                "828684be5886a8eb10649cbf",
                "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
            ],
        ),
        (
            "c6",
            0xf0,
            &[
                "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
                "4883640effc1c0bf",
                "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
            ],
        ),
        ("broken", 0x80, &["be", "82be44032f6162be", "bf"]),
    ];
    let mut out = BTreeMap::new();
    for (name, sel, blocks) in seqs {
        let mut v = vec![sel];
        for b in blocks {
            let b: String = b.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes: Vec<u8> = (0..b.len() / 2 * 2)
                .step_by(2)
                .map(|i| u8::from_str_radix(&b[i..i + 2], 16).unwrap())
                .collect();
            v.push(bytes.len() as u8);
            v.extend_from_slice(&bytes);
        }
        out.insert(format!("{name}.bin"), v);
    }
    out
}

fn committed(target: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(seed_dir(target)).expect("seed dir exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(name, std::fs::read(&path).unwrap());
    }
    out
}

#[test]
fn seeds_match_fixtures() {
    for (target, expected) in [
        ("http1_head", head_seeds()),
        ("http1_conn", conn_seeds()),
        ("redis_conn", redis_seeds()),
        ("mysql_conn", mysql_seeds()),
        ("postgres_conn", postgres_seeds()),
        ("http2_frames", http2_seeds()),
        ("hpack", hpack_seeds()),
    ] {
        if std::env::var_os("RATATOSK_WRITE_SEEDS").is_some() {
            let dir = seed_dir(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &expected {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
        let have = committed(target);
        for (name, bytes) in &expected {
            assert_eq!(
                have.get(name),
                Some(bytes),
                "fuzz/seeds/{target}/{name} is stale; rerun with RATATOSK_WRITE_SEEDS=1"
            );
        }
    }
}

#[test]
fn seeds_run_clean() {
    let heads = committed("http1_head");
    assert!(heads.len() >= 20);
    for bytes in heads.values() {
        http1_head(bytes);
    }
    let conns = committed("http1_conn");
    assert!(conns.len() >= 15);
    for bytes in conns.values() {
        http1_conn(bytes);
    }
    let mysql = committed("mysql_conn");
    assert!(mysql.len() >= 7);
    for bytes in mysql.values() {
        mysql_conn(bytes);
    }
    let redis = committed("redis_conn");
    assert!(redis.len() >= 10);
    for bytes in redis.values() {
        redis_conn(bytes);
    }
    let pg = committed("postgres_conn");
    assert!(pg.len() >= 12);
    for bytes in pg.values() {
        postgres_conn(bytes);
    }
    let h2 = committed("http2_frames");
    assert!(h2.len() >= 16);
    for bytes in h2.values() {
        http2_frames(bytes);
    }
    let hp = committed("hpack");
    assert!(hp.len() >= 5);
    for bytes in hp.values() {
        hpack(bytes);
    }
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Flips, inserts, deletes and splices bytes, like a fuzzer's first round.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if at < v.len() => v[at] ^= 1 << rng.below(8),
            1 => v.insert(at, rng.next() as u8),
            2 if at < v.len() => {
                v.remove(at);
            }
            3 => {
                let from = rng.below(other.len());
                let len = rng.below(64).min(other.len() - from.min(other.len()));
                v.splice(at..at, other[from..from + len].iter().copied());
            }
            _ => {
                let special = [b'\r', b'\n', b' ', b'0', b':', 0xff, 0x00];
                v.insert(at, special[rng.below(special.len())]);
            }
        }
    }
    v
}

#[test]
fn mutated_seeds_hold_invariants() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let heads: Vec<_> = committed("http1_head").into_values().collect();
    let conns: Vec<_> = committed("http1_conn").into_values().collect();
    for _ in 0..3000 {
        let a = &heads[rng.below(heads.len())];
        let b = &heads[rng.below(heads.len())];
        http1_head(&mutate(&mut rng, a, b));
    }
    for _ in 0..1500 {
        let a = &conns[rng.below(conns.len())];
        let b = &conns[rng.below(conns.len())];
        let m = mutate(&mut rng, a, b);
        if std::env::var_os("DUMP").is_some() {
            std::fs::write("/tmp/last_conn_input.bin", &m).unwrap();
        }
        http1_conn(&m);
    }
    let mysql: Vec<_> = committed("mysql_conn").into_values().collect();
    for _ in 0..1500 {
        let a = &mysql[rng.below(mysql.len())];
        let b = &mysql[rng.below(mysql.len())];
        mysql_conn(&mutate(&mut rng, a, b));
    }
    let redis: Vec<_> = committed("redis_conn").into_values().collect();
    for _ in 0..1500 {
        let a = &redis[rng.below(redis.len())];
        let b = &redis[rng.below(redis.len())];
        redis_conn(&mutate(&mut rng, a, b));
    }
    let pg: Vec<_> = committed("postgres_conn").into_values().collect();
    for _ in 0..1500 {
        let a = &pg[rng.below(pg.len())];
        let b = &pg[rng.below(pg.len())];
        postgres_conn(&mutate(&mut rng, a, b));
    }
    let h2: Vec<_> = committed("http2_frames").into_values().collect();
    for _ in 0..1500 {
        let a = &h2[rng.below(h2.len())];
        let b = &h2[rng.below(h2.len())];
        http2_frames(&mutate(&mut rng, a, b));
    }
    let hp: Vec<_> = committed("hpack").into_values().collect();
    for _ in 0..3000 {
        let a = &hp[rng.below(hp.len())];
        let b = &hp[rng.below(hp.len())];
        hpack(&mutate(&mut rng, a, b));
    }
}
