//! Body framing over captured bytes and gaps.

use ratatosk_protocols::http1::{BodyDecoder, BodyState, Framing, ParseError};

/// Feeds `data` in pieces of `step` bytes; returns bytes consumed.
fn feed_in_steps(d: &mut BodyDecoder, data: &[u8], step: usize) -> Result<usize, ParseError> {
    let mut used = 0;
    for piece in data.chunks(step) {
        let n = d.feed(piece).map_err(|e| e.kind)?;
        used += n;
        if n < piece.len() {
            break;
        }
    }
    Ok(used)
}

#[test]
fn length_body_stops_at_its_end() {
    let mut d = BodyDecoder::new(Framing::Length(5));
    assert_eq!(d.feed(b"hel").unwrap(), 3);
    assert_eq!(d.state(), BodyState::Length(2));
    assert_eq!(d.feed(b"loGET /").unwrap(), 2);
    assert!(d.is_complete());
    assert_eq!(d.body_size(), 5);
    assert_eq!(d.feed(b"more").unwrap(), 0);
}

#[test]
fn empty_framings_are_complete() {
    assert!(BodyDecoder::new(Framing::None).is_complete());
    assert!(BodyDecoder::new(Framing::Length(0)).is_complete());
    assert!(!BodyDecoder::new(Framing::UntilClose).is_complete());
}

#[test]
fn gaps_inside_length_bodies() {
    let mut d = BodyDecoder::new(Framing::Length(10_000));
    assert_eq!(d.feed(&[0; 1000]).unwrap(), 1000);
    assert_eq!(d.feed_gap(8_000).unwrap(), 8_000);
    // A gap longer than the rest belongs partly to the next message.
    assert_eq!(d.feed_gap(5_000).unwrap(), 1_000);
    assert!(d.is_complete());
    assert_eq!(d.body_size(), 10_000);
}

#[test]
fn until_close_takes_everything() {
    let mut d = BodyDecoder::new(Framing::UntilClose);
    assert_eq!(d.feed(b"abc").unwrap(), 3);
    assert_eq!(d.feed_gap(97).unwrap(), 97);
    assert_eq!(d.body_size(), 100);
    assert_eq!(d.state(), BodyState::UntilClose);
}

const CHUNKED: &[u8] = concat!(
    "5;name=value\r\n", // size with extension
    "hello\r\n",
    "6 \t; a=\"b;c\"\r\n", // BWS before a quoted extension
    " world\r\n",
    "000\r\n",             // last chunk with leading zeros
    "X-Checksum: abc\r\n", // trailer field
    "X-Other: d\r\n",
    "\r\n",
    "NEXT", // the following message
)
.as_bytes();

#[test]
fn chunked_in_any_segmentation() {
    for step in 1..CHUNKED.len() {
        let mut d = BodyDecoder::new(Framing::Chunked);
        let used = feed_in_steps(&mut d, CHUNKED, step).unwrap();
        assert_eq!(used, CHUNKED.len() - 4, "step {step}");
        assert!(d.is_complete());
        assert_eq!(d.body_size(), 11);
    }
}

#[test]
fn chunked_without_trailers_and_with_bare_lf() {
    let mut d = BodyDecoder::new(Framing::Chunked);
    assert_eq!(d.feed(b"3\nabc\n0\n\n").unwrap(), 9);
    assert!(d.is_complete());
    assert_eq!(d.body_size(), 3);
    let mut d = BodyDecoder::new(Framing::Chunked);
    assert_eq!(d.feed(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap(), 20);
    assert_eq!(d.body_size(), 10);
}

#[test]
fn gap_inside_chunk_data_keeps_sync() {
    let mut d = BodyDecoder::new(Framing::Chunked);
    assert_eq!(d.feed(b"400\r\nabc").unwrap(), 8); // 1024-byte chunk
    assert_eq!(d.feed_gap(1021).unwrap(), 1021);
    assert_eq!(
        d.state(),
        BodyState::Chunked(ratatosk_protocols::http1::ChunkState::DataCr)
    );
    assert_eq!(d.feed(b"\r\n0\r\n\r\n").unwrap(), 7);
    assert!(d.is_complete());
    assert_eq!(d.body_size(), 1024);
}

#[test]
fn gap_over_chunk_framing_loses_sync() {
    let mut d = BodyDecoder::new(Framing::Chunked);
    d.feed(b"10\r\nabcd").unwrap();
    let e = d.feed_gap(20).unwrap_err();
    assert_eq!(e.kind, ParseError::GapInChunkFraming);
    assert_eq!(e.consumed, 12);
    assert_eq!(d.body_size(), 16);
    assert_eq!(d.state(), BodyState::Lost);
    assert_eq!(d.feed(b"xyz").unwrap(), 0);
    // A gap right on a size line.
    let mut d = BodyDecoder::new(Framing::Chunked);
    assert_eq!(d.feed_gap(1).unwrap_err().consumed, 0);
}

#[test]
fn chunk_framing_errors() {
    let cases: &[(&[u8], ParseError, u64)] = &[
        (b"xyz\r\n", ParseError::InvalidChunkSize, 1),
        (b";ext\r\n", ParseError::InvalidChunkSize, 1),
        (b"5\r\nhelloX", ParseError::MissingChunkCrlf, 9),
        (b"5\r\nhello\rX", ParseError::MissingChunkCrlf, 10),
        (b"5 x\r\n", ParseError::InvalidChunkSize, 3),
        (b"5\rX", ParseError::InvalidChunkSize, 3),
        (b"10000000000000000\r\n", ParseError::ChunkSizeOverflow, 17),
        (b"0\r\n\rX", ParseError::InvalidTrailers, 5),
    ];
    for &(input, kind, consumed) in cases {
        let mut d = BodyDecoder::new(Framing::Chunked);
        let e = d.feed(input).unwrap_err();
        assert_eq!(
            (e.kind, e.consumed),
            (kind, consumed),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn chunk_extension_and_trailer_limits() {
    let mut d = BodyDecoder::new(Framing::Chunked);
    let mut line = b"1;".to_vec();
    line.extend(std::iter::repeat_n(b'e', 5000));
    assert_eq!(
        d.feed(&line).unwrap_err().kind,
        ParseError::ChunkExtensionTooLong
    );
    let mut d = BodyDecoder::new(Framing::Chunked);
    let mut trailers = b"0\r\n".to_vec();
    for _ in 0..1000 {
        trailers.extend_from_slice(b"X-Trailer: value\r\n");
    }
    assert_eq!(
        d.feed(&trailers).unwrap_err().kind,
        ParseError::InvalidTrailers
    );
}

#[test]
fn huge_chunk_sizes_are_counted_not_buffered() {
    let mut d = BodyDecoder::new(Framing::Chunked);
    d.feed(b"ffffffffffff\r\n").unwrap();
    assert_eq!(d.feed_gap(0xffff_ffff_fff0).unwrap(), 0xffff_ffff_fff0);
    assert_eq!(d.feed(&[0; 15]).unwrap(), 15);
    assert_eq!(d.body_size(), 0xffff_ffff_ffff);
}
