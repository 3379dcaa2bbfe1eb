//! Runs the `tls_session` fuzz body over the committed seeds (and cheap
//! deterministic mutations of them), so `cargo test` on stable covers it.
//!
//! Regenerate the seeds after changing fixtures with
//! `RATATOSK_WRITE_SEEDS=1 cargo test -p ratatosk-tlsdecrypt --test fuzz_seeds`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ratatosk_tlsdecrypt::Direction;
use ratatosk_tlsdecrypt::fuzzing::{
    FIXTURE_NAMES, encode_fixture_input, encode_raw_input, tls_session, transcripts,
};

const TARGET: &str = "tls_session";

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(TARGET)
}

/// A cut of `n` (1..=65536) bytes, all captured.
fn cut(n: usize) -> [u8; 3] {
    let v = (n - 1) as u16;
    [0, (v >> 8) as u8, v as u8]
}

fn seeds() -> BTreeMap<String, Vec<u8>> {
    let names = FIXTURE_NAMES;
    let mut out = BTreeMap::new();
    let secrets_now = [3u8, 0, 0];
    // 8321 bytes moved, 8192 captured (kind 1 | 4: b * 64 captured).
    let capped = [1u8 | 4, 0x20, 0x80];
    for (i, name) in names.iter().enumerate() {
        let i = i as u8;
        // Chunk by chunk, secrets at the end.
        out.insert(format!("{name}_whole.bin"), encode_fixture_input(i, 1, &[]));
        // Header then body (5 bytes, then up to 16 KiB), secrets midway.
        let mut ops = Vec::new();
        for k in 0..12 {
            ops.push(cut(5));
            ops.push(cut(if k % 2 == 0 { 300 } else { 16_406 }));
            if k == 4 {
                ops.push(secrets_now);
            }
        }
        out.insert(
            format!("{name}_header_body.bin"),
            encode_fixture_input(i, 1, &ops),
        );
        // Small cuts, then the capture limit over big writes.
        let ops: Vec<[u8; 3]> = (0..40).map(|k| cut(1 + k * 37 % 200)).collect();
        out.insert(
            format!("{name}_small_cuts.bin"),
            encode_fixture_input(i, 1, &ops),
        );
        let ops = vec![
            cut(600),
            capped,
            capped,
            capped,
            capped,
            capped,
            capped,
            capped,
        ];
        out.insert(
            format!("{name}_capped.bin"),
            encode_fixture_input(i, 1, &ops),
        );
        // A flipped byte in the encrypted part, and wrong secrets.
        let ops = vec![cut(2000), [2, 0x01, 0x00], secrets_now];
        out.insert(format!("{name}_flip.bin"), encode_fixture_input(i, 0, &ops));
        out.insert(
            format!("{name}_wrong.bin"),
            encode_fixture_input(i, 1 | 2, &[]),
        );
        out.insert(
            format!("{name}_tight.bin"),
            encode_fixture_input(i, 1 | 4, &[]),
        );
    }
    // Raw mode: the real hellos and first flights, random secrets.
    for (name, t) in names.iter().zip(transcripts()) {
        let events: Vec<(u8, &[u8], u8)> = t
            .chunks
            .iter()
            .take(4)
            .map(|(dir, data)| {
                let flags = u8::from(*dir == Direction::ServerToClient);
                (flags, &data[..data.len().min(900)], 0)
            })
            .collect();
        let mut with_secrets = events.clone();
        with_secrets.push((2, &[23, 3, 3, 0, 40][..], 40));
        out.insert(
            format!("raw_{name}.bin"),
            encode_raw_input(0x42, &with_secrets),
        );
    }
    out
}

fn committed() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(seed_dir()).expect("fuzz/seeds/tls_session exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(name, std::fs::read(&path).unwrap());
    }
    out
}

#[test]
fn seeds_match_fixtures() {
    let expected = seeds();
    if std::env::var_os("RATATOSK_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(seed_dir()).unwrap();
        for (name, bytes) in &expected {
            std::fs::write(seed_dir().join(name), bytes).unwrap();
        }
    }
    let have = committed();
    for (name, bytes) in &expected {
        assert!(
            have.get(name) == Some(bytes),
            "fuzz/seeds/{TARGET}/{name} is stale; rerun with RATATOSK_WRITE_SEEDS=1"
        );
        assert!(bytes.len() <= 4096, "{name}: over fuzz/smoke.sh's -max_len");
    }
}

#[test]
fn seeds_run_clean() {
    let seeds = committed();
    assert!(seeds.len() >= 60);
    for bytes in seeds.values() {
        tls_session(bytes);
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

/// Flips, inserts and deletes bytes, like a fuzzer's first round.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(3) {
            0 if at < v.len() => v[at] ^= 1 << rng.below(8),
            1 => v.insert(at, rng.next() as u8),
            _ if at < v.len() => {
                v.remove(at);
            }
            _ => {}
        }
    }
    v
}

#[test]
fn mutated_seeds_hold_invariants() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds: Vec<_> = committed().into_values().collect();
    for _ in 0..600 {
        let pick = rng.below(seeds.len());
        let m = mutate(&mut rng, &seeds[pick]);
        if std::env::var_os("DUMP").is_some() {
            std::fs::write("/tmp/last_tls_input.bin", &m).unwrap();
        }
        tls_session(&m);
    }
}
