//! The protocols the agent detects, and the one rule that picks among
//! them from the first bytes of both directions of a connection.

use crate::parse::Direction;
use crate::parser::{Detection, Protocol, Strength};

/// Every protocol, in the order ties between equal matches are broken
/// when ports do not decide. Adding a protocol: one line here.
pub static PROTOCOLS: &[&dyn Protocol] = &[
    &crate::http1::HTTP1,
    &crate::http2::HTTP2,
    &crate::postgres::POSTGRES,
    &crate::mysql::MYSQL,
    &crate::redis::REDIS,
];

/// What the registry concluded.
#[derive(Clone, Copy)]
pub enum Verdict {
    /// Parse with this protocol; requests travel in `request_dir`.
    Detected {
        protocol: &'static dyn Protocol,
        request_dir: Direction,
    },
    /// Keep the bytes and ask again when either direction says more.
    NeedMore,
    /// No protocol matches what both directions said.
    Unknown,
}

impl std::fmt::Debug for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Detected {
                protocol,
                request_dir,
            } => write!(f, "Detected({}, {request_dir:?})", protocol.name()),
            Verdict::NeedMore => f.write_str("NeedMore"),
            Verdict::Unknown => f.write_str("Unknown"),
        }
    }
}

/// The first bytes each direction carried (empty: it has not spoken),
/// and the connection's ports (tie-breakers only).
#[derive(Debug, Clone, Copy)]
pub struct FirstBytes<'a> {
    pub ingress: &'a [u8],
    pub egress: &'a [u8],
    pub local_port: u16,
    pub remote_port: u16,
}

/// Picks the protocol of a connection from `PROTOCOLS`.
pub fn detect(first: FirstBytes<'_>) -> Verdict {
    detect_among(PROTOCOLS, first)
}

/// [`detect`] over a given list (tests use their own).
///
/// A strong match wins over weak ones; among equals, the protocol one of
/// whose ports the connection uses, else the first listed. While any
/// protocol still needs more of a direction that could give it a strong
/// match, a weak match waits for it. A direction that matches nothing
/// decides nothing until the other has spoken too: a server greeting
/// arrives on a connection whose client has said nothing, and a client
/// may speak first on a protocol recognised from the server's answer.
pub fn detect_among(protocols: &[&'static dyn Protocol], first: FirstBytes<'_>) -> Verdict {
    let mut best: Option<(&'static dyn Protocol, Direction, Strength, bool)> = None;
    let mut need_more = false;
    for &p in protocols {
        for (dir, bytes) in [
            (Direction::Ingress, first.ingress),
            (Direction::Egress, first.egress),
        ] {
            if bytes.is_empty() {
                continue;
            }
            match p.detect(dir, bytes) {
                Detection::Match {
                    request_dir,
                    strength,
                } => {
                    let on_port = p
                        .ports()
                        .iter()
                        .any(|&port| port == first.local_port || port == first.remote_port);
                    let better = match best {
                        None => true,
                        Some((_, _, s, port)) => (strength, on_port) > (s, port),
                    };
                    if better {
                        best = Some((p, request_dir, strength, on_port));
                    }
                }
                Detection::NeedMore => need_more = true,
                Detection::No => {}
            }
        }
    }
    match best {
        Some((protocol, request_dir, Strength::Strong, _)) => Verdict::Detected {
            protocol,
            request_dir,
        },
        Some(_) if need_more => Verdict::NeedMore,
        Some((protocol, request_dir, Strength::Weak, _)) => Verdict::Detected {
            protocol,
            request_dir,
        },
        None if need_more => Verdict::NeedMore,
        // One side spoke in no known way: the other may still tell.
        None if first.ingress.is_empty() || first.egress.is_empty() => Verdict::NeedMore,
        None => Verdict::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{ConnParser, Limits};

    /// A protocol recognised by a fixed opening of one direction.
    struct Fake {
        name: &'static str,
        opening: &'static [u8],
        /// Direction whose opening it is, relative to requests: true when
        /// the opening is a request.
        opening_is_request: bool,
        strength: Strength,
        ports: &'static [u16],
    }

    impl Protocol for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn ports(&self) -> &'static [u16] {
            self.ports
        }
        fn detect(&self, dir: Direction, first: &[u8]) -> Detection {
            if first.starts_with(self.opening) {
                Detection::Match {
                    request_dir: if self.opening_is_request {
                        dir
                    } else {
                        dir.opposite()
                    },
                    strength: self.strength,
                }
            } else if self.opening.starts_with(first) {
                Detection::NeedMore
            } else {
                Detection::No
            }
        }
        fn parser(&self, _: Direction, _: &Limits) -> Box<dyn ConnParser> {
            unreachable!("detection only")
        }
    }

    static GREETING: Fake = Fake {
        name: "greeting",
        opening: b"HELLO",
        opening_is_request: false,
        strength: Strength::Strong,
        ports: &[],
    };
    static WEAK_A: Fake = Fake {
        name: "weak_a",
        opening: b"*",
        opening_is_request: true,
        strength: Strength::Weak,
        ports: &[1000],
    };
    static WEAK_B: Fake = Fake {
        name: "weak_b",
        opening: b"*",
        opening_is_request: true,
        strength: Strength::Weak,
        ports: &[2000],
    };
    static STRONG_STAR: Fake = Fake {
        name: "strong_star",
        opening: b"*STRONG",
        opening_is_request: true,
        strength: Strength::Strong,
        ports: &[],
    };

    fn first<'a>(ingress: &'a [u8], egress: &'a [u8], remote_port: u16) -> FirstBytes<'a> {
        FirstBytes {
            ingress,
            egress,
            local_port: 40000,
            remote_port,
        }
    }

    fn name(v: Verdict) -> Option<(&'static str, Direction)> {
        match v {
            Verdict::Detected {
                protocol,
                request_dir,
            } => Some((protocol.name(), request_dir)),
            _ => None,
        }
    }

    #[test]
    fn a_server_greeting_alone_decides_and_gives_the_request_direction() {
        let v = detect_among(&[&GREETING], first(b"HELLO v1", b"", 0));
        assert_eq!(name(v), Some(("greeting", Direction::Egress)));
    }

    #[test]
    fn unknown_bytes_of_one_side_wait_for_the_other() {
        let v = detect_among(&[&GREETING], first(b"", b"client speaks first", 0));
        assert!(matches!(v, Verdict::NeedMore), "{v:?}");
        let v = detect_among(&[&GREETING], first(b"HELLO", b"client speaks first", 0));
        assert_eq!(name(v), Some(("greeting", Direction::Egress)));
        let v = detect_among(&[&GREETING], first(b"nope", b"neither", 0));
        assert!(matches!(v, Verdict::Unknown), "{v:?}");
    }

    #[test]
    fn ports_break_ties_between_weak_matches_and_never_beat_strong() {
        let list: &[&'static dyn Protocol] = &[&WEAK_A, &WEAK_B];
        assert_eq!(
            name(detect_among(list, first(b"", b"*x", 2000))),
            Some(("weak_b", Direction::Egress))
        );
        assert_eq!(
            name(detect_among(list, first(b"", b"*x", 3000))),
            Some(("weak_a", Direction::Egress)),
            "no port: first listed"
        );
        let list: &[&'static dyn Protocol] = &[&WEAK_B, &STRONG_STAR];
        // The strong one could still match: the weak one waits.
        assert!(matches!(
            detect_among(list, first(b"", b"*STR", 2000)),
            Verdict::NeedMore
        ));
        assert_eq!(
            name(detect_among(list, first(b"", b"*STRONG", 2000))),
            Some(("strong_star", Direction::Egress))
        );
        assert_eq!(
            name(detect_among(list, first(b"", b"*other", 2000))),
            Some(("weak_b", Direction::Egress))
        );
    }
}
