//! The plaintext hellos: client_random from the ClientHello; server_random,
//! version and cipher suite from the ServerHello (HelloRetryRequest skipped).

/// Handshake message types used here.
pub(crate) const CLIENT_HELLO: u8 = 1;
pub(crate) const SERVER_HELLO: u8 = 2;
#[cfg(test)]
pub(crate) const NEW_SESSION_TICKET: u8 = 4;
pub(crate) const KEY_UPDATE: u8 = 24;

/// Largest hello accepted (a ClientHello with post-quantum key shares is
/// ~2 KiB; 2^14 is a full plaintext record).
const MAX_HELLO: usize = 1 << 14;

/// RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest.
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

const EXT_SUPPORTED_VERSIONS: u16 = 43;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelloError {
    /// The first handshake message of the direction is not the expected hello.
    NotAHello,
    /// Truncated or inconsistent fields, too large, or not captured.
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerHello {
    pub(crate) random: [u8; 32],
    pub(crate) cipher_suite: u16,
    /// supported_versions if present (TLS 1.3), else legacy_version.
    pub(crate) version: u16,
    pub(crate) retry_request: bool,
}

/// What one direction's plaintext handshake bytes yielded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hello {
    Client { random: [u8; 32] },
    Server(ServerHello),
}

/// Reassembles the plaintext handshake messages of one direction until its
/// hello is read, then ignores the rest (certificates, key exchange, ...).
#[derive(Default)]
pub(crate) struct HelloReader {
    buf: Vec<u8>,
    pub(crate) done: bool,
}

impl HelloReader {
    /// Heap bytes held (the hello being read).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }
}

impl HelloReader {
    /// Adds one record's bytes; `on_hello` sees each hello parsed. A server
    /// direction stays open after a HelloRetryRequest for the real
    /// ServerHello.
    pub(crate) fn push(
        &mut self,
        client: bool,
        data: &[u8],
        on_hello: &mut dyn FnMut(Hello),
    ) -> Result<(), HelloError> {
        if self.done {
            return Ok(());
        }
        if self.buf.len() + data.len() > MAX_HELLO + 4 {
            return Err(HelloError::Malformed);
        }
        self.buf.extend_from_slice(data);
        while !self.done {
            let Some((&[ty, l0, l1, l2], rest)) = self.buf.split_first_chunk::<4>() else {
                break;
            };
            let len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
            let want = if client { CLIENT_HELLO } else { SERVER_HELLO };
            if ty != want {
                return Err(HelloError::NotAHello);
            }
            if len > MAX_HELLO {
                return Err(HelloError::Malformed);
            }
            let Some(body) = rest.get(..len) else { break };
            let hello = if client {
                Hello::Client {
                    random: parse_client_hello(body)?,
                }
            } else {
                Hello::Server(parse_server_hello(body)?)
            };
            self.done = !matches!(
                hello,
                Hello::Server(ServerHello {
                    retry_request: true,
                    ..
                })
            );
            on_hello(hello);
            self.buf.drain(..4 + len);
        }
        if self.done {
            self.buf = Vec::new();
        }
        Ok(())
    }
}

/// A cursor over handshake fields that fails instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(HelloError::Malformed)?;
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, HelloError> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }
    fn u16(&mut self) -> Result<u16, HelloError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }
    fn random(&mut self) -> Result<[u8; 32], HelloError> {
        self.take(32)?.try_into().map_err(|_| HelloError::Malformed)
    }
}

fn parse_client_hello(body: &[u8]) -> Result<[u8; 32], HelloError> {
    let mut r = Reader(body);
    r.u16()?; // legacy_version
    r.random()
}

fn parse_server_hello(body: &[u8]) -> Result<ServerHello, HelloError> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    let random = r.random()?;
    let sid_len = r.u8()?;
    r.take(usize::from(sid_len))?;
    let cipher_suite = r.u16()?;
    r.u8()?; // compression
    let mut version = legacy_version;
    // Extensions are optional before TLS 1.3.
    if !r.0.is_empty() {
        let ext_len = r.u16()?;
        let mut exts = Reader(r.take(usize::from(ext_len))?);
        while !exts.0.is_empty() {
            let ty = exts.u16()?;
            let len = exts.u16()?;
            let mut data = Reader(exts.take(usize::from(len))?);
            if ty == EXT_SUPPORTED_VERSIONS {
                version = data.u16()?;
            }
        }
    }
    Ok(ServerHello {
        random,
        cipher_suite,
        version,
        retry_request: random == HRR_RANDOM,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_hello(random: [u8; 32], suite: u16, exts: &[u8]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&random);
        body.push(0); // no session id
        body.extend_from_slice(&suite.to_be_bytes());
        body.push(0);
        if !exts.is_empty() {
            body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
            body.extend_from_slice(exts);
        }
        let mut msg = vec![SERVER_HELLO, 0, 0, body.len() as u8];
        msg.extend_from_slice(&body);
        msg
    }

    fn read(client: bool, chunks: &[&[u8]]) -> (Vec<Hello>, Result<(), HelloError>) {
        let mut r = HelloReader::default();
        let mut got = Vec::new();
        for c in chunks {
            if let Err(e) = r.push(client, c, &mut |h| got.push(h)) {
                return (got, Err(e));
            }
        }
        (got, Ok(()))
    }

    #[test]
    fn tls12_server_hello_without_extensions_split_in_two() {
        let msg = server_hello([5; 32], 0xc02f, &[]);
        let (got, res) = read(false, &[&msg[..10], &msg[10..]]);
        res.unwrap();
        assert_eq!(
            got,
            vec![Hello::Server(ServerHello {
                random: [5; 32],
                cipher_suite: 0xc02f,
                version: 0x0303,
                retry_request: false
            })]
        );
    }

    #[test]
    fn retry_request_then_real_server_hello() {
        let sv = [0, 43, 0, 2, 3, 4];
        let hrr = server_hello(HRR_RANDOM, 0x1302, &sv);
        let real = server_hello([1; 32], 0x1302, &sv);
        let (got, res) = read(false, &[&hrr, &real]);
        res.unwrap();
        assert_eq!(got.len(), 2);
        assert!(matches!(
            got[0],
            Hello::Server(ServerHello {
                retry_request: true,
                ..
            })
        ));
        assert!(matches!(
            got[1],
            Hello::Server(ServerHello {
                retry_request: false,
                version: 0x0304,
                ..
            })
        ));
    }

    #[test]
    fn wrong_first_message_and_truncation_are_errors() {
        let msg = server_hello([5; 32], 0xc02f, &[]);
        assert_eq!(read(true, &[&msg]).1, Err(HelloError::NotAHello));
        let mut short = msg.clone();
        short[3] = 10; // claims 10 bytes: random cut
        assert_eq!(read(false, &[&short[..14]]).1, Err(HelloError::Malformed));
    }
}
