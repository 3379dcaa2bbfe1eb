#[test]
fn smoke() {
    ratatosk_protocols::fuzzing::http1_head(b"GET / HTTP/1.1\r\n\r\n");
}
