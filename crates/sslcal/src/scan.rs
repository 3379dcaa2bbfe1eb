//! Finding field offsets in copies of OpenSSL objects: every observation
//! (one SSL object after one handshake) gives the offsets where a known value
//! sits; a field's offset is the one offset common to all observations.

use std::collections::BTreeSet;

use crate::error::{CalError, Side};
use crate::keylog::Secrets;
use crate::{RandomAt, SslOffsets};

/// What one SSL object looked like after a handshake and a data exchange.
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    pub side: Side,
    /// Negotiated TLS 1.3 (else TLS 1.2).
    pub tls13: bool,
    /// Bytes of the object `SSL *` points to.
    pub ssl: Vec<u8>,
    /// (offset in `ssl`, leading bytes of the object that pointer points to).
    pub pointees: Vec<(u32, Vec<u8>)>,
    /// `SSL_get_client_random()`.
    pub client_random: [u8; 32],
    /// `SSL_version()`.
    pub version: i32,
    /// `SSL_get_rbio()` and the bytes of that BIO.
    pub rbio_addr: usize,
    pub rbio: Vec<u8>,
    /// The descriptor the read BIO was given.
    pub rfd: i32,
    /// `BIO_method_type(rbio)`.
    pub bio_type: i32,
    /// `SSL_get_session()` and the bytes of that session.
    pub session_addr: usize,
    pub session: Vec<u8>,
    pub secrets: Secrets,
}

/// A static BIO_METHOD table: its address, leading bytes, and the type
/// `BIO_method_type` reports for BIOs of it.
#[derive(Debug, Clone)]
pub(crate) struct Method {
    pub addr: usize,
    pub bytes: Vec<u8>,
    pub ty: i32,
}

type Offsets = BTreeSet<u32>;

fn off(i: usize) -> Option<u32> {
    u32::try_from(i).ok()
}

/// Offsets (8-aligned) holding the pointer value `addr`.
pub(crate) fn find_ptr(hay: &[u8], addr: usize) -> Offsets {
    let needle = (addr as u64).to_ne_bytes();
    hay.chunks_exact(8)
        .enumerate()
        .filter(|(_, c)| *c == needle)
        .filter_map(|(i, _)| off(i * 8))
        .collect()
}

/// Offsets (4-aligned) holding the int `v`.
pub(crate) fn find_i32(hay: &[u8], v: i32) -> Offsets {
    let needle = v.to_ne_bytes();
    hay.chunks_exact(4)
        .enumerate()
        .filter(|(_, c)| *c == needle)
        .filter_map(|(i, _)| off(i * 4))
        .collect()
}

/// Offsets (any alignment) where `needle` starts.
pub(crate) fn find_bytes(hay: &[u8], needle: &[u8]) -> Offsets {
    if needle.is_empty() {
        return Offsets::new();
    }
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .filter_map(|(i, _)| off(i))
        .collect()
}

/// The one offset common to every candidate set.
fn unique(field: &'static str, sets: impl IntoIterator<Item = Offsets>) -> Result<u32, CalError> {
    let mut common: Option<Offsets> = None;
    for set in sets {
        common = Some(match common {
            None => set,
            Some(c) => c.intersection(&set).copied().collect(),
        });
    }
    let common = common.unwrap_or_default();
    let mut it = common.iter().copied();
    match (it.next(), it.next()) {
        (None, _) => Err(CalError::NotFound { field }),
        (Some(o), None) => Ok(o),
        (Some(_), Some(_)) => Err(CalError::Ambiguous {
            field,
            candidates: common.into_iter().collect(),
        }),
    }
}

fn secret<'a>(
    o: &'a Observation,
    which: Option<&'a Vec<u8>>,
    label: &str,
) -> Result<&'a [u8], CalError> {
    which.map(Vec::as_slice).ok_or_else(|| CalError::Keylog {
        side: o.side,
        problem: format!("no {label} line"),
    })
}

/// Solves every offset from observations of both sides of at least one TLS
/// 1.3 and one TLS 1.2 handshake.
pub(crate) fn solve(
    version: String,
    obs: &[Observation],
    socket: &Method,
    mem: &Method,
) -> Result<SslOffsets, CalError> {
    let tls13: Vec<&Observation> = obs.iter().filter(|o| o.tls13).collect();
    let tls12: Vec<&Observation> = obs.iter().filter(|o| !o.tls13).collect();
    for (set, field) in [
        (&tls13, "TLS 1.3 observations"),
        (&tls12, "TLS 1.2 observations"),
    ] {
        let sides = |s| set.iter().any(|o| o.side == s);
        if !(sides(Side::Client) && sides(Side::Server)) {
            return Err(CalError::NotFound { field });
        }
    }
    if let Some(o) = obs.iter().find(|o| o.bio_type != socket.ty) {
        return Err(CalError::Verification {
            field: "bio_type_socket",
            problem: format!(
                "{} read BIO has type {:#x}, BIO_s_socket BIOs {:#x}",
                o.side, o.bio_type, socket.ty
            ),
        });
    }
    let mut client_app = Vec::new();
    let mut server_app = Vec::new();
    for o in &tls13 {
        client_app.push(find_bytes(
            &o.ssl,
            secret(o, o.secrets.client_app.as_ref(), "CLIENT_TRAFFIC_SECRET_0")?,
        ));
        server_app.push(find_bytes(
            &o.ssl,
            secret(o, o.secrets.server_app.as_ref(), "SERVER_TRAFFIC_SECRET_0")?,
        ));
    }
    let mut master = Vec::new();
    for o in &tls12 {
        master.push(find_bytes(
            &o.session,
            secret(o, o.secrets.master.as_ref(), "CLIENT_RANDOM")?,
        ));
    }
    Ok(SslOffsets {
        version,
        ssl_rbio: unique(
            "ssl_rbio",
            obs.iter().map(|o| find_ptr(&o.ssl, o.rbio_addr)),
        )?,
        bio_method: unique(
            "bio_method",
            obs.iter().map(|o| find_ptr(&o.rbio, socket.addr)),
        )?,
        bio_method_type: unique(
            "bio_method_type",
            [
                find_i32(&socket.bytes, socket.ty),
                find_i32(&mem.bytes, mem.ty),
            ],
        )?,
        bio_num: unique("bio_num", obs.iter().map(|o| find_i32(&o.rbio, o.rfd)))?,
        bio_type_socket: socket.ty,
        ssl_version: unique(
            "ssl_version",
            obs.iter().map(|o| find_i32(&o.ssl, o.version)),
        )?,
        ssl_client_app_secret: unique("ssl_client_app_secret", client_app)?,
        ssl_server_app_secret: unique("ssl_server_app_secret", server_app)?,
        ssl_session: unique(
            "ssl_session",
            obs.iter().map(|o| find_ptr(&o.ssl, o.session_addr)),
        )?,
        session_master_key: unique("session_master_key", master)?,
        ssl_client_random: client_random(obs),
    })
}

/// Where every observation's client random is: in the SSL object itself,
/// else behind one of its pointers. None when neither gives one place.
fn client_random(obs: &[Observation]) -> Option<RandomAt> {
    let inline = obs.iter().map(|o| find_bytes(&o.ssl, &o.client_random));
    if let Ok(at) = unique("ssl_client_random", inline) {
        return Some(RandomAt { via: None, at });
    }
    let mut common: Option<BTreeSet<(u32, u32)>> = None;
    for o in obs {
        let here: BTreeSet<(u32, u32)> = o
            .pointees
            .iter()
            .flat_map(|(via, bytes)| {
                find_bytes(bytes, &o.client_random)
                    .into_iter()
                    .map(move |at| (*via, at))
            })
            .collect();
        common = Some(match common {
            None => here,
            Some(c) => c.intersection(&here).copied().collect(),
        });
    }
    let common = common.unwrap_or_default();
    match (common.first(), common.len()) {
        (Some(&(via, at)), 1) => Some(RandomAt { via: Some(via), at }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A synthetic SSL/BIO/session layout, with decoys that only a single
    /// observation could confuse.
    fn observation(side: Side, tls13: bool, n: u8) -> Observation {
        let version: i32 = if tls13 { 0x304 } else { 0x303 };
        let rbio_addr = 0x5000_0000 + n as usize * 0x100;
        let session_addr = 0x6000_0000 + n as usize * 0x100;
        let rfd = 700 + n as i32;
        let mut ssl = vec![0u8; 512];
        put(&mut ssl, 0, &version.to_ne_bytes());
        put(&mut ssl, 16, &(rbio_addr as u64).to_ne_bytes());
        put(&mut ssl, 40, &(session_addr as u64).to_ne_bytes());
        // Decoy: a version bound that equals the version on TLS 1.2 clients.
        if !tls13 && side == Side::Client {
            put(&mut ssl, 60, &version.to_ne_bytes());
        }
        let client_random = [0x30 + n; 32];
        put(&mut ssl, 300, &client_random);
        let mut secrets = Secrets::default();
        if tls13 {
            let c = vec![0xc0 + n; 48];
            let s = vec![0x50 + n; 48];
            put(&mut ssl, 100, &c);
            put(&mut ssl, 164, &s);
            secrets.client_app = Some(c);
            secrets.server_app = Some(s);
        }
        let mut rbio = vec![0u8; 128];
        put(&mut rbio, 8, &0x7000_1000u64.to_ne_bytes());
        put(&mut rbio, 56, &rfd.to_ne_bytes());
        // Decoy: a byte counter that happens to equal the fd once.
        if n == 0 {
            put(&mut rbio, 88, &rfd.to_ne_bytes());
        }
        let mut session = vec![0u8; 256];
        if !tls13 {
            let m = vec![0x90 + n; 48];
            put(&mut session, 80, &m);
            secrets.master = Some(m);
        }
        Observation {
            side,
            tls13,
            ssl,
            pointees: Vec::new(),
            client_random,
            version,
            rbio_addr,
            rbio,
            rfd,
            bio_type: 0x505,
            session_addr,
            session,
            secrets,
        }
    }

    fn methods() -> (Method, Method) {
        let mut socket = vec![0u8; 64];
        put(&mut socket, 0, &0x505i32.to_ne_bytes());
        put(&mut socket, 24, &0x505i32.to_ne_bytes()); // decoy
        let mut mem = vec![0u8; 64];
        put(&mut mem, 0, &0x401i32.to_ne_bytes());
        (
            Method {
                addr: 0x7000_1000,
                bytes: socket,
                ty: 0x505,
            },
            Method {
                addr: 0x7000_2000,
                bytes: mem,
                ty: 0x401,
            },
        )
    }

    fn all() -> Vec<Observation> {
        vec![
            observation(Side::Client, true, 0),
            observation(Side::Server, true, 1),
            observation(Side::Client, false, 2),
            observation(Side::Server, false, 3),
        ]
    }

    #[test]
    fn solves_a_synthetic_layout_despite_decoys() {
        let (socket, mem) = methods();
        let o = solve("test".into(), &all(), &socket, &mem).unwrap();
        assert_eq!(
            (
                o.ssl_version,
                o.ssl_rbio,
                o.ssl_session,
                o.ssl_client_app_secret,
                o.ssl_server_app_secret
            ),
            (0, 16, 40, 100, 164)
        );
        assert_eq!(
            (
                o.bio_method,
                o.bio_num,
                o.bio_method_type,
                o.bio_type_socket
            ),
            (8, 56, 0, 0x505)
        );
        assert_eq!(o.session_master_key, 80);
        assert_eq!(o.ssl_client_random, Some(RandomAt { via: None, at: 300 }));
    }

    #[test]
    fn finds_the_client_random_behind_a_pointer_or_reports_none() {
        let mut obs = all();
        for (n, o) in obs.iter_mut().enumerate() {
            // 1.1.1: the random lives in the object `s3` points to.
            put(&mut o.ssl, 300, &[0; 32]);
            let mut s3 = vec![0u8; 256];
            put(&mut s3, 184, &o.client_random);
            o.pointees.push((48, s3));
            // Decoy: another pointee holding the random once.
            if n == 0 {
                let mut other = vec![0u8; 64];
                put(&mut other, 8, &o.client_random);
                o.pointees.push((56, other));
            }
        }
        assert_eq!(
            client_random(&obs),
            Some(RandomAt {
                via: Some(48),
                at: 184
            })
        );
        obs[3].pointees.clear();
        assert_eq!(client_random(&obs), None);
    }

    #[test]
    fn one_observation_alone_is_ambiguous() {
        let (socket, mem) = methods();
        let mut obs = all();
        // Without the TLS 1.3 client, the version bound decoy survives.
        obs.retain(|o| !(o.tls13 && o.side == Side::Client));
        assert!(matches!(
            solve("test".into(), &obs, &socket, &mem),
            Err(CalError::NotFound {
                field: "TLS 1.3 observations"
            })
        ));
        let only = observation(Side::Client, false, 2);
        assert!(matches!(
            unique("ssl_version", [find_i32(&only.ssl, only.version)]),
            Err(CalError::Ambiguous { field: "ssl_version", ref candidates }) if candidates == &[0, 60]
        ));
    }

    #[test]
    fn missing_values_and_secrets_are_reported() {
        let (socket, mem) = methods();
        let mut obs = all();
        obs[1].secrets.server_app = None;
        assert!(matches!(
            solve("test".into(), &obs, &socket, &mem),
            Err(CalError::Keylog {
                side: Side::Server,
                ..
            })
        ));
        let mut obs = all();
        obs[2].rfd = 1234;
        assert!(matches!(
            solve("test".into(), &obs, &socket, &mem),
            Err(CalError::NotFound { field: "bio_num" })
        ));
        let mut obs = all();
        obs[0].bio_type = 0x401;
        assert!(matches!(
            solve("test".into(), &obs, &socket, &mem),
            Err(CalError::Verification {
                field: "bio_type_socket",
                ..
            })
        ));
    }

    #[test]
    fn finders_respect_alignment() {
        let mut hay = vec![0u8; 32];
        put(&mut hay, 5, &7i32.to_ne_bytes());
        put(&mut hay, 8, &7i32.to_ne_bytes());
        assert_eq!(find_i32(&hay, 7).into_iter().collect::<Vec<_>>(), [8]);
        put(&mut hay, 12, &0x1122_3344_5566_7788u64.to_ne_bytes());
        assert!(find_ptr(&hay, 0x1122_3344_5566_7788).is_empty());
        assert_eq!(
            find_bytes(&hay, &[0x88, 0x77])
                .into_iter()
                .collect::<Vec<_>>(),
            [12]
        );
        assert!(find_bytes(&hay, &[]).is_empty());
    }
}
