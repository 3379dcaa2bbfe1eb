//! gRPC servers and clients for the HTTP/2 tests: Python `grpcio` and
//! Node `@grpc/grpc-js`, both with the same four methods (generic
//! handlers on raw bytes, so no generated stubs are needed):
//!
//! - `helloworld.Greeter/SayHello`: unary, OK;
//! - `helloworld.Greeter/GetMissing`: unary, NOT_FOUND (a trailers-only
//!   response);
//! - `routeguide.RouteGuide/ListFeatures`: server streaming, 5 messages, OK;
//! - `routeguide.RouteGuide/Broken`: server streaming, aborts with
//!   ABORTED after 2 messages.
//!
//! A client does SayHello ×3, GetMissing, ListFeatures, Broken: six calls.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Proc, lab_dir, tool, wait_for_port};

/// (span name, `rpc.response.status_code`) of the six calls, in order.
pub const CALLS: [(&str, &str); 6] = [
    ("helloworld.Greeter/SayHello", "OK"),
    ("helloworld.Greeter/SayHello", "OK"),
    ("helloworld.Greeter/SayHello", "OK"),
    ("helloworld.Greeter/GetMissing", "NOT_FOUND"),
    ("routeguide.RouteGuide/ListFeatures", "OK"),
    ("routeguide.RouteGuide/Broken", "ABORTED"),
];

const PY_SERVER: &str = r#"
import sys, grpc
from concurrent import futures
port, certs = int(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else None)

def say_hello(req, ctx):
    return b"hello " + req
def get_missing(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
def list_features(req, ctx):
    for i in range(5):
        yield b"feature-%d" % i
def broken(req, ctx):
    yield b"one"
    yield b"two"
    ctx.abort(grpc.StatusCode.ABORTED, "gave up midway")

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((
    grpc.method_handlers_generic_handler("helloworld.Greeter", {
        "SayHello": grpc.unary_unary_rpc_method_handler(say_hello),
        "GetMissing": grpc.unary_unary_rpc_method_handler(get_missing),
    }),
    grpc.method_handlers_generic_handler("routeguide.RouteGuide", {
        "ListFeatures": grpc.unary_stream_rpc_method_handler(list_features),
        "Broken": grpc.unary_stream_rpc_method_handler(broken),
    }),
))
if certs:
    key = open(certs + "/key.pem", "rb").read()
    cert = open(certs + "/cert.pem", "rb").read()
    server.add_secure_port(f"127.0.0.1:{port}", grpc.ssl_server_credentials([(key, cert)]))
else:
    server.add_insecure_port(f"127.0.0.1:{port}")
server.start()
server.wait_for_termination()
"#;

const PY_CLIENT: &str = r#"
import sys, grpc
port, certs = int(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else None)
sys.stdin.readline()
target = f"localhost:{port}"
if certs:
    creds = grpc.ssl_channel_credentials(open(certs + "/cert.pem", "rb").read())
    ch = grpc.secure_channel(target, creds)
else:
    ch = grpc.insecure_channel(target)
hello = ch.unary_unary("/helloworld.Greeter/SayHello")
for i in range(3):
    assert hello(b"world") == b"hello world"
try:
    ch.unary_unary("/helloworld.Greeter/GetMissing")(b"x")
    raise SystemExit("GetMissing succeeded")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.NOT_FOUND, e
assert len(list(ch.unary_stream("/routeguide.RouteGuide/ListFeatures")(b"area"))) == 5
got = []
try:
    for m in ch.unary_stream("/routeguide.RouteGuide/Broken")(b"x"):
        got.append(m)
    raise SystemExit("Broken succeeded")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.ABORTED, e
assert len(got) == 2, got
ch.close()
print("done", flush=True)
"#;

/// A Python client that makes 3 SayHello calls, says `warm`, waits for a
/// line, then makes 3 more and a GetMissing on the same connection.
const PY_CLIENT_ACROSS: &str = r#"
import sys, grpc
port = int(sys.argv[1])
ch = grpc.insecure_channel(f"localhost:{port}")
hello = ch.unary_unary("/helloworld.Greeter/SayHello")
for i in range(3):
    assert hello(b"world") == b"hello world"
print("warm", flush=True)
sys.stdin.readline()
for i in range(3):
    assert hello(b"world") == b"hello world"
try:
    ch.unary_unary("/helloworld.Greeter/GetMissing")(b"x")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.NOT_FOUND, e
ch.close()
print("done", flush=True)
"#;

/// The service definitions both Node scripts share (raw-bytes codecs).
const NODE_DEFS: &str = r#"
const grpc = require('@grpc/grpc-js');
const id = (x) => x;
const def = (path, responseStream) => ({
  path, requestStream: false, responseStream,
  requestSerialize: id, requestDeserialize: id,
  responseSerialize: id, responseDeserialize: id,
});
const greeter = {
  SayHello: def('/helloworld.Greeter/SayHello', false),
  GetMissing: def('/helloworld.Greeter/GetMissing', false),
};
const guide = {
  ListFeatures: def('/routeguide.RouteGuide/ListFeatures', true),
  Broken: def('/routeguide.RouteGuide/Broken', true),
};
const [port, certs] = [Number(process.argv[1]), process.argv[2]];
const fs = require('fs');
"#;

const NODE_SERVER: &str = r#"
const server = new grpc.Server();
server.addService(greeter, {
  SayHello: (call, cb) => cb(null, Buffer.concat([Buffer.from('hello '), call.request])),
  GetMissing: (call, cb) => cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' }),
});
server.addService(guide, {
  ListFeatures: (call) => {
    for (let i = 0; i < 5; i++) call.write(Buffer.from('feature-' + i));
    call.end();
  },
  Broken: (call) => {
    call.write(Buffer.from('one'));
    call.write(Buffer.from('two'));
    call.emit('error', { code: grpc.status.ABORTED, details: 'gave up midway' });
  },
});
const creds = certs
  ? grpc.ServerCredentials.createSsl(null, [{
      private_key: fs.readFileSync(certs + '/key.pem'),
      cert_chain: fs.readFileSync(certs + '/cert.pem'),
    }])
  : grpc.ServerCredentials.createInsecure();
server.bindAsync('127.0.0.1:' + port, creds, (err) => { if (err) throw err; });
"#;

const NODE_CLIENT: &str = r#"
const Client = grpc.makeGenericClientConstructor({ ...greeter, ...guide }, 'Both');
const creds = certs
  ? grpc.credentials.createSsl(fs.readFileSync(certs + '/cert.pem'))
  : grpc.credentials.createInsecure();
const unary = (c, m, arg) => new Promise((ok, fail) => c[m](arg, (e, r) => e ? fail(e) : ok(r)));
const stream = (c, m, arg) => new Promise((ok, fail) => {
  const got = [];
  c[m](arg).on('data', (d) => got.push(d)).on('error', (e) => fail({ e, got })).on('end', () => ok(got));
});
process.stdin.once('data', async () => {
  const c = new Client('localhost:' + port, creds);
  for (let i = 0; i < 3; i++) {
    const r = await unary(c, 'SayHello', Buffer.from('world'));
    if (r.toString() !== 'hello world') throw new Error('bad reply ' + r);
  }
  try { await unary(c, 'GetMissing', Buffer.from('x')); throw new Error('GetMissing succeeded'); }
  catch (e) { if (e.code !== grpc.status.NOT_FOUND) throw e; }
  const f = await stream(c, 'ListFeatures', Buffer.from('area'));
  if (f.length !== 5) throw new Error('features ' + f.length);
  try { await stream(c, 'Broken', Buffer.from('x')); throw new Error('Broken succeeded'); }
  catch (x) { if (!x.e || x.e.code !== grpc.status.ABORTED) throw x; }
  c.close();
  console.log('done');
  process.exit(0);
});
"#;

/// Which implementation.
#[derive(Debug, Clone, Copy)]
pub enum Lang {
    Python,
    Node,
}

fn lab_python() -> PathBuf {
    let p = lab_dir().join("bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/lab.sh (grpcio)",
        p.display()
    );
    p
}

fn node_path() -> PathBuf {
    let p = lab_dir().join("node/node_modules");
    assert!(
        p.join("@grpc/grpc-js").is_dir(),
        "{} has no @grpc/grpc-js: run scripts/lab.sh",
        p.display()
    );
    p
}

fn command(lang: Lang, script: &str, port: u16, certs: Option<&Path>) -> Command {
    let mut c = match lang {
        Lang::Python => {
            let mut c = Command::new(lab_python());
            c.args(["-c", script]);
            c
        }
        Lang::Node => {
            let mut c = Command::new(tool("node"));
            c.env("NODE_PATH", node_path()).args(["-e", script]);
            c
        }
    };
    c.arg(port.to_string());
    if let Some(d) = certs {
        c.arg(d);
    }
    c
}

/// A gRPC server on `port` (over TLS with `certs`, see `tls_cert`).
pub fn server(lang: Lang, port: u16, certs: Option<&Path>) -> Proc {
    let script = match lang {
        Lang::Python => PY_SERVER.to_string(),
        Lang::Node => format!("{NODE_DEFS}{NODE_SERVER}"),
    };
    let p = Proc::spawn(
        "grpc server",
        command(lang, &script, port, certs)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    wait_for_port(port, Duration::from_secs(30));
    p
}

/// A client, started and waiting: [`Client::run`] makes its six calls.
pub struct Client {
    pub proc: Proc,
}

impl Client {
    pub fn start(lang: Lang, port: u16, certs: Option<&Path>) -> Client {
        let script = match lang {
            Lang::Python => PY_CLIENT.to_string(),
            Lang::Node => format!("{NODE_DEFS}{NODE_CLIENT}"),
        };
        let proc = Proc::spawn(
            "grpc client",
            command(lang, &script, port, certs)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        Client { proc }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Makes the six calls and waits for the client to end well.
    pub fn run(mut self) {
        let mut stdin = self.proc.child.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("start the client");
        drop(stdin);
        let out = self.proc.child.stdout.take().expect("stdout");
        let line = BufReader::new(out)
            .lines()
            .next()
            .and_then(Result::ok)
            .unwrap_or_default();
        assert_eq!(line, "done", "the gRPC client failed");
        let status = self.proc.stop();
        assert!(
            status.is_none_or(|s| s.success() || s.code().is_none()),
            "{status:?}"
        );
    }
}

/// A Python client whose one connection outlives a phase: it connects
/// and calls before [`AcrossClient::go`], then calls again on the same
/// connection (for a capture begun mid-connection).
pub struct AcrossClient {
    proc: Proc,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl AcrossClient {
    /// Starts the client and waits until its first calls are done.
    pub fn start_warm(port: u16) -> AcrossClient {
        let mut proc = Proc::spawn(
            "grpc client across",
            command(Lang::Python, PY_CLIENT_ACROSS, port, None)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let out = proc.child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(out).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(first, "warm", "the gRPC client failed before the agent");
        AcrossClient { proc, lines }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The second phase: 3 SayHello and a GetMissing.
    pub fn go(mut self) {
        let mut stdin = self.proc.child.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("resume the client");
        drop(stdin);
        let line = self.lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(line, "done", "the gRPC client failed");
        self.proc.stop();
    }
}
