//! Decryption of real OpenSSL transcripts (fixtures/*.txt, written by
//! fixtures/gen_fixtures.py), split and truncated the ways captures are.

mod common;

use common::*;
use ratatosk_tlsdecrypt::{
    Aead, Direction, DirectionState, GiveUpReason, Limits, Secrets, Version,
};

fn expect_exact(fx: &Fixture, run: &Run, what: &str) {
    assert_eq!(run.gave_up, None, "{}/{what}: {:?}", fx.name, run.stats);
    let j = joined(&run.out);
    assert!(
        j[0] == fx.plain[0],
        "{}/{what}: client to server differs",
        fx.name
    );
    assert!(
        j[1] == fx.plain[1],
        "{}/{what}: server to client differs",
        fx.name
    );
    assert!(
        run.out
            .iter()
            .all(|o| o.authenticated && o.data.len() as u64 == o.len)
    );
    assert_eq!(run.stats.auth_failures, 0, "{}/{what}", fx.name);
    assert_in_event_order(&run.out);
    // close_notify both ways ends both directions.
    assert_eq!(
        run.states,
        [DirectionState::Closed; 2],
        "{}/{what}",
        fx.name
    );
}

#[test]
fn every_suite_decrypts_exactly_with_secrets_after_the_handshake() {
    for name in all() {
        let fx = load(name);
        // The agent reads the secrets when the handshake finishes: after the
        // server's first flight here (chunk 2 or later).
        let run = run(
            &whole_chunks(&fx),
            &fx.secrets(),
            SecretsAt::Before(3),
            Limits::default(),
        );
        expect_exact(&fx, &run, "whole chunks");
        assert!(run.stats.records_decrypted >= 4, "{name}: {:?}", run.stats);
    }
}

#[test]
fn negotiated_version_and_suite_are_reported() {
    let cases = [
        ("tls13_aes128gcm", Version::Tls13, 0x1301, Aead::Aes128Gcm),
        ("tls13_aes256gcm", Version::Tls13, 0x1302, Aead::Aes256Gcm),
        (
            "tls13_chacha20",
            Version::Tls13,
            0x1303,
            Aead::ChaCha20Poly1305,
        ),
        ("tls12_aes128gcm", Version::Tls12, 0xc02f, Aead::Aes128Gcm),
        ("tls12_aes256gcm", Version::Tls12, 0xc030, Aead::Aes256Gcm),
        (
            "tls12_chacha20",
            Version::Tls12,
            0xcca8,
            Aead::ChaCha20Poly1305,
        ),
    ];
    for (name, version, suite, aead) in cases {
        let fx = load(name);
        let mut s: ratatosk_tlsdecrypt::Session<()> = Default::default();
        for (dir, data) in &fx.chunks {
            s.feed(*dir, data, data.len() as u64, (), &mut |_| {});
        }
        let n = s.negotiated().unwrap();
        assert_eq!(
            (n.version, n.cipher_suite, n.aead),
            (version, suite, aead),
            "{name}"
        );
        assert_eq!(s.client_random(), Some(&fx.client_random));
    }
}

#[test]
fn secrets_before_during_and_after_give_the_same_plaintext_in_event_order() {
    for name in all() {
        let fx = load(name);
        let events = whole_chunks(&fx);
        for at in [0, 1, 2, 4, 6, events.len()] {
            let run = run(
                &events,
                &fx.secrets(),
                SecretsAt::Before(at),
                Limits::default(),
            );
            expect_exact(&fx, &run, &format!("secrets before event {at}"));
        }
    }
}

#[test]
fn late_secrets_replay_keeps_each_records_event_tag() {
    let fx = load("tls13_aes128gcm");
    let events = header_body(&fx);
    let early = run(
        &events,
        &fx.secrets(),
        SecretsAt::Before(0),
        Limits::default(),
    );
    let late = run(
        &events,
        &fx.secrets(),
        SecretsAt::Before(events.len()),
        Limits::default(),
    );
    assert!(early.out == late.out);
    // Each plaintext carries the event of its record's body (the last byte).
    for o in &late.out {
        assert_eq!(events[o.tag].dir, o.dir);
        assert!(
            events[o.tag].data.len() > 5,
            "tag {} is a header event",
            o.tag
        );
    }
}

#[test]
fn any_split_of_the_events_gives_the_same_plaintext() {
    for name in all() {
        let fx = load(name);
        let splits = [
            ("header/body", header_body(&fx)),
            ("merged", merged(&fx)),
            ("random 1", random_splits(&fx, 0x9e3779b97f4a7c15)),
            ("random 2", random_splits(&fx, 12345)),
        ];
        for (what, events) in splits {
            let run = run(
                &events,
                &fx.secrets(),
                SecretsAt::Before(events.len() / 2),
                Limits::default(),
            );
            expect_exact(&fx, &run, what);
        }
    }
}

#[test]
fn one_byte_per_event_gives_the_same_plaintext() {
    for name in ["tls13_chacha20", "tls12_aes256gcm"] {
        let fx = load(name);
        let events = one_byte_each(&fx);
        let run = run(
            &events,
            &fx.secrets(),
            SecretsAt::Before(events.len()),
            Limits::default(),
        );
        expect_exact(&fx, &run, "one byte each");
    }
}

#[test]
fn capture_cut_at_8192_decrypts_prefixes_and_keeps_sync_at_record_ends() {
    for name in OPENSSL {
        let fx = load(name);
        // Header/body events: every hole ends where its record ends.
        let events = capped(&header_body(&fx), 8192);
        let run = run(
            &events,
            &fx.secrets(),
            SecretsAt::Before(events.len()),
            Limits::default(),
        );
        assert_eq!(run.gave_up, None, "{name}");
        let partial = check_prefixes(&fx, &run.out);
        assert_eq!(partial, 1, "{name}: only the full-size record is cut");
        assert_eq!(run.stats.records_unauthenticated, 1, "{name}");
        let cut = run.out.iter().find(|o| !o.authenticated).unwrap();
        assert_eq!(
            cut.len, 16384,
            "{name}: full plaintext length of the cut record"
        );
        // TLS 1.2 GCM spends 8 captured bytes on the explicit nonce.
        let gcm12 = is_tls12(name) && !name.contains("chacha");
        let overhead = if gcm12 { 8 } else { 0 };
        assert_eq!(cut.data.len(), 8192 - overhead, "{name}");
        assert_eq!(run.stats.lost_sync, 0, "{name}");
        assert_eq!(run.states, [DirectionState::Closed; 2], "{name}");
    }
}

#[test]
fn a_hole_over_a_record_header_loses_sync_for_that_direction_only() {
    for name in OPENSSL {
        let fx = load(name);
        // Whole chunks: the big response is one write of two records; cut
        // at 8192 the second record's header is in the hole.
        let events = capped(&whole_chunks(&fx), 8192);
        let run = run(
            &events,
            &fx.secrets(),
            SecretsAt::Before(3),
            Limits::default(),
        );
        assert_eq!(run.gave_up, None, "{name}");
        assert_eq!(run.stats.lost_sync, 1, "{name}");
        assert_eq!(run.states[1], DirectionState::LostSync, "{name}");
        // Both requests still come out.
        let j = joined(&run.out);
        assert_eq!(j[0], fx.plain[0], "{name}");
        // The server's output is the cut record's prefix, then nothing.
        let s2c: Vec<_> = run
            .out
            .iter()
            .filter(|o| o.dir == Direction::ServerToClient)
            .collect();
        assert_eq!(s2c.len(), 1, "{name}");
        assert!(!s2c[0].authenticated);
        assert!(fx.plain[1].starts_with(&s2c[0].data));
    }
}

#[test]
fn small_captures_before_sync_still_find_the_first_application_record() {
    for name in OPENSSL {
        let fx = load(name);
        // Hellos (<= 512 bytes) whole, the certificate record (~790) cut.
        let events = capped(&header_body(&fx), 600);
        let run = run(
            &events,
            &fx.secrets(),
            SecretsAt::Before(events.len()),
            Limits::default(),
        );
        assert_eq!(run.gave_up, None, "{name}: {:?}", run.stats);
        check_prefixes(&fx, &run.out);
        assert_eq!(run.stats.auth_failures, 0, "{name}");
        if name.starts_with("tls13") && !name.contains("resumed") {
            // The certificate record (~800 bytes) is cut before sync.
            assert!(
                run.stats.records_undecidable >= 1,
                "{name}: {:?}",
                run.stats
            );
        }
    }
}

#[test]
fn wrong_secrets_produce_nothing_and_are_counted() {
    for name in all() {
        let fx = load(name);
        let mut bad = fx.secrets();
        for s in [
            &mut bad.client_traffic_secret_0,
            &mut bad.server_traffic_secret_0,
            &mut bad.master_secret,
        ] {
            s[0] ^= 1;
        }
        let events = whole_chunks(&fx);
        let r = run(&events, &bad, SecretsAt::Before(3), Limits::default());
        assert!(r.out.is_empty(), "{name}");
        if is_tls12(name) {
            // Finished does not open: the keys are wrong.
            assert_eq!(r.gave_up, Some(GiveUpReason::KeyMismatch), "{name}");
        } else {
            assert!(
                r.stats.handshake_records_skipped >= 6,
                "{name}: {:?}",
                r.stats
            );
            let tight = Limits {
                max_handshake_records: 3,
                ..Limits::default()
            };
            let r = run(&events, &bad, SecretsAt::Before(3), tight);
            assert_eq!(r.gave_up, Some(GiveUpReason::KeyMismatch), "{name}");
            assert!(r.out.is_empty());
        }
    }
}

#[test]
fn cbc_suite_is_refused_with_its_reason() {
    let fx = load("tls12_cbc");
    let r = run(
        &whole_chunks(&fx),
        &fx.secrets(),
        SecretsAt::Before(3),
        Limits::default(),
    );
    assert!(r.out.is_empty());
    assert_eq!(r.gave_up, Some(GiveUpReason::UnsupportedCipherSuite));
    assert_eq!(r.gave_up.unwrap().label(), "unsupported_cipher_suite");
    assert_eq!(r.stats.unsupported, 1);
    // Known from the ServerHello alone: no need to wait for secrets.
    let r = run(
        &whole_chunks(&fx)[..2],
        &Secrets::default(),
        SecretsAt::Never,
        Limits::default(),
    );
    assert_eq!(r.gave_up, Some(GiveUpReason::UnsupportedCipherSuite));
}

#[test]
fn key_update_in_both_directions_is_followed() {
    let fx = load("tls13_keyupdate");
    let events = header_body(&fx);
    let r = run(
        &events,
        &fx.secrets(),
        SecretsAt::Before(events.len()),
        Limits::default(),
    );
    expect_exact(&fx, &r, "header/body");
    // The client's update_requested KeyUpdate and the server's answer.
    assert_eq!(r.stats.key_updates, 2);
}

#[test]
fn hello_retry_request_is_passed_over() {
    let fx = load("tls13_hrr");
    let r = run(
        &whole_chunks(&fx),
        &fx.secrets(),
        SecretsAt::Before(5),
        Limits::default(),
    );
    expect_exact(&fx, &r, "hrr");
}

#[test]
fn zero_secret_for_the_negotiated_version_gives_up_as_missing() {
    for (name, keep_tls13) in [("tls13_aes128gcm", false), ("tls12_aes128gcm", true)] {
        let fx = load(name);
        let mut s = fx.secrets();
        if keep_tls13 {
            s.master_secret = [0; 48];
        } else {
            s.server_traffic_secret_0 = [0; 48];
        }
        let r = run(
            &whole_chunks(&fx),
            &s,
            SecretsAt::Before(3),
            Limits::default(),
        );
        assert_eq!(r.gave_up, Some(GiveUpReason::MissingSecret), "{name}");
        assert!(r.out.is_empty());
    }
}

#[test]
fn secrets_that_never_come_overflow_the_bounded_buffer() {
    let fx = load("tls13_aes256gcm");
    let small = Limits {
        max_pending_bytes: 16 * 1024,
        ..Limits::default()
    };
    let r = run(&whole_chunks(&fx), &fx.secrets(), SecretsAt::Never, small);
    assert_eq!(r.gave_up, Some(GiveUpReason::BufferOverflow));
    assert_eq!(r.stats.buffer_overflows, 1);
    // With the default 256 KiB the whole transcript waits and then decrypts.
    let events = whole_chunks(&fx);
    let r = run(
        &events,
        &fx.secrets(),
        SecretsAt::Before(events.len()),
        Limits::default(),
    );
    expect_exact(&fx, &r, "late");
}

#[test]
fn capture_starting_mid_connection_gives_up_without_a_handshake() {
    let fx = load("tls13_aes128gcm");
    let events = whole_chunks(&fx);
    // From the first request on: no hellos.
    let r = run(
        &events[4..],
        &fx.secrets(),
        SecretsAt::Before(0),
        Limits::default(),
    );
    assert_eq!(r.gave_up, Some(GiveUpReason::NoHandshake));
    assert!(r.out.is_empty());
}

#[test]
fn swapped_directions_give_up_without_a_handshake() {
    let fx = load("tls12_chacha20");
    let events: Vec<Event> = whole_chunks(&fx)
        .into_iter()
        .map(|mut e| {
            e.dir = match e.dir {
                Direction::ClientToServer => Direction::ServerToClient,
                Direction::ServerToClient => Direction::ClientToServer,
            };
            e
        })
        .collect();
    let r = run(
        &events,
        &fx.secrets(),
        SecretsAt::Before(3),
        Limits::default(),
    );
    assert_eq!(r.gave_up, Some(GiveUpReason::NoHandshake));
}

#[test]
fn plaintext_http_is_not_tls() {
    let mut s: ratatosk_tlsdecrypt::Session<()> = Default::default();
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    s.feed(
        Direction::ClientToServer,
        req,
        req.len() as u64,
        (),
        &mut |_| panic!(),
    );
    assert_eq!(
        s.direction_state(Direction::ClientToServer),
        DirectionState::NotTls
    );
    assert_eq!(s.stats().bad_records, 1);
    assert!(!s.is_finished());
}

#[test]
fn partly_captured_tickets_and_key_updates_are_not_data() {
    let fx = load("tls13_keyupdate");
    let mut events = header_body(&fx);
    let (mut tickets, mut updates) = (0, 0);
    for e in events.iter_mut() {
        // KeyUpdate: 4-byte header + 1 + type + tag = 22; tickets: 234.
        let cap = match e.data.len() {
            22 => 6,
            234 => 100,
            _ => continue,
        };
        if cap == 6 {
            updates += 1;
        } else {
            tickets += 1;
        }
        e.data.truncate(cap);
    }
    assert_eq!((tickets, updates), (2, 2));
    let r = run(
        &events,
        &fx.secrets(),
        SecretsAt::Before(events.len()),
        Limits::default(),
    );
    // The tickets come before the server's first application record: they
    // cannot be told from data, and the next record is tried at seq 0..=2.
    assert_eq!(r.stats.records_undecidable, 2);
    // Both KeyUpdates are recognised from their 4 known header bytes.
    assert_eq!(r.stats.key_updates, 2);
    assert_eq!(r.stats.records_unauthenticated, 2);
    expect_exact(&fx, &r, "cut tickets and key updates");
}

#[test]
fn resumed_sessions_skip_only_their_short_encrypted_handshake() {
    let fx = load("tls13_resumed");
    let r = run(
        &whole_chunks(&fx),
        &fx.secrets(),
        SecretsAt::Before(3),
        Limits::default(),
    );
    expect_exact(&fx, &r, "tls13 resumed");
    // EncryptedExtensions and Finished from the server, Finished from the client.
    assert_eq!(r.stats.handshake_records_skipped, 3);
    let fx = load("tls12_resumed");
    let r = run(
        &whole_chunks(&fx),
        &fx.secrets(),
        SecretsAt::Before(3),
        Limits::default(),
    );
    expect_exact(&fx, &r, "tls12 resumed");
}

#[test]
fn go_dynamic_record_sizes_cut_by_the_capture_limit_keep_sync() {
    for name in GO {
        let fx = load(name);
        // One record per write, 1.2 to 5.7 KB: every hole ends a record.
        // (4096 keeps the server's first flight, ~2.4 KB with its
        // post-quantum key share, whole.)
        let events = capped(&whole_chunks(&fx), 4096);
        let r = run(
            &events,
            &fx.secrets(),
            SecretsAt::Before(events.len()),
            Limits::default(),
        );
        assert_eq!(r.gave_up, None, "{name}: {:?}", r.stats);
        assert_eq!(r.stats.lost_sync, 0, "{name}");
        let partial = check_prefixes(&fx, &r.out);
        assert_eq!(partial, 2, "{name}: the growing response records over 4096");
        assert_eq!(r.states, [DirectionState::Closed; 2], "{name}");
    }
}

#[test]
fn a_session_moves_between_threads() {
    fn send<T: Send>() {}
    send::<ratatosk_tlsdecrypt::Session<u64>>();
}
