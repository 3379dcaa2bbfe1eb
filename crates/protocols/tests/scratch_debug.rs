use ratatosk_protocols::fuzzing::*;
use ratatosk_protocols::http1::Http1Conn;
use ratatosk_protocols::parse::Segment;
#[test]
fn dbg_input() {
    let input = std::fs::read("/tmp/last_conn_input.bin").unwrap();
    let (limits, segs) = decode_conn_input(&input);
    let mut b = Http1Conn::new(limits);
    let mut ob = Vec::new();
    for s in &segs {
        let gap = s.len - s.data.len() as u64;
        if s.data.len() <= 1 {
            b.on_data(s.dir, Segment::truncated(s.ts_ns, s.data, s.len), &mut ob);
        } else {
            let last = s.data.len() - 1;
            for (i, p) in s.data.chunks(1).enumerate() {
                let extra = if i == last { gap } else { 0 };
                let before = b.stats().invalid_messages;
                b.on_data(s.dir, Segment::truncated(s.ts_ns, p, 1 + extra), &mut ob);
                if b.stats().invalid_messages != before {
                    eprintln!(
                        "invalid at ts {} byte {} {:?} extra {}",
                        s.ts_ns,
                        i,
                        String::from_utf8_lossy(&s.data[..=i]),
                        extra
                    );
                }
            }
        }
    }
}
