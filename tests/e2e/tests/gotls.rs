//! TLS plaintext capture from Go's crypto/tls end to end: a Go HTTPS
//! server and client built here (with symbols, and stripped), Caddy (a
//! real stripped Go server), and a Go binary without crypto/tls.

use std::process::Command;
use std::time::Duration;

use ratatosk_e2e::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// HTTP/1.1 only on both sides: Go negotiates h2 over ALPN by default.
const GO_TLS_SRC: &str = r#"package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

func main() {
	switch os.Args[1] {
	case "serve":
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Length", "12")
			fmt.Fprint(w, "Hello world\n")
		})
		srv := &http.Server{Addr: "127.0.0.1:" + os.Args[2], Handler: mux,
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
		if err := srv.ListenAndServeTLS(os.Args[3], os.Args[4]); err != nil {
			panic(err)
		}
	case "get":
		n, _ := strconv.Atoi(os.Args[3])
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: false}
		c := &http.Client{Transport: tr}
		for i := 0; i < n; i++ {
			resp, err := c.Get(os.Args[2] + "?i=" + strconv.Itoa(i))
			if err != nil {
				panic(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}
"#;

/// A Go HTTP server without crypto/tls (net/http links it, so plain net).
const GO_PLAIN_SRC: &str = r#"package main

import (
	"net"
	"os"
)

func main() {
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		panic(err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			panic(err)
		}
		go func(c net.Conn) {
			defer c.Close()
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"))
			}
		}(c)
	}
}
"#;

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("tempdir")
}

fn settle_counters() {
    std::thread::sleep(Duration::from_millis(1300));
}

fn hits(agent: &Agent, probe: &str, point: &str) -> f64 {
    agent.metric_sum(
        "ratatosk_uprobe_hits_total",
        &[("probe", probe), ("point", point)],
    )
}

const READ: &str = "crypto/tls.(*Conn).Read";
const WRITE: &str = "crypto/tls.(*Conn).Write";

/// Go server and Go client over TLS, both traced: N requests on one
/// keep-alive connection give N server and N client spans, https, with
/// addresses and no span from the ciphertext. Returns the uprobe hits per
/// request (both processes together).
fn go_server_and_client(ldflags: &str, functions_from: &str, layout_from: &str) {
    let _g = serial();
    let dir = tempdir("ratatosk-gotls");
    let bin = go_build(dir.path(), "gotls", GO_TLS_SRC, ldflags);
    let certs = tls_cert();
    let port = free_port();
    let _server = Proc::spawn(
        "go https server",
        Command::new(&bin)
            .arg("serve")
            .arg(port.to_string())
            .arg(certs.path().join("cert.pem"))
            .arg(certs.path().join("key.pem")),
    );
    wait_for_port(port, WAIT);
    let agent = Agent::start(&["--exe-path", "/gotls$"]);
    let log = agent.stderr_text();
    assert!(
        log.contains("Go crypto/tls probes attached")
            && log.contains(&format!("functions_from=\"{functions_from}\""))
            && log.contains(&format!("layout_from=\"{layout_from}\"")),
        "Go server not probed before ready:\n{log}"
    );

    const N: usize = 40;
    let status = Command::new(&bin)
        .args([
            "get",
            &format!("https://127.0.0.1:{port}/go"),
            &N.to_string(),
        ])
        .status()
        .expect("run go client");
    assert!(status.success());
    let on_port = |s: &Value| attr(s, "server.port") == port.to_string();
    let spans = agent.wait_spans(2 * N, WAIT, on_port);
    let server: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "server").collect();
    let client: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "client").collect();
    assert_eq!((server.len(), client.len()), (N, N), "{spans:#?}");
    for s in &spans {
        assert_eq!(attr(s, "url.scheme"), "https", "{s}");
        assert_eq!(attr(s, "http.request.method"), "GET");
        assert_eq!(attr(s, "url.path"), "/go");
        assert_eq!(attr(s, "http.response.status_code"), "200");
        assert_eq!(attr(s, "http.response.body.size"), "12");
        assert_eq!(attr(s, "network.protocol.version"), "1.1");
    }
    for s in &server {
        assert_eq!(attr(s, "client.address"), "127.0.0.1");
        assert_ne!(attr(s, "client.port"), "0");
    }
    let mut queries: Vec<String> = server.iter().map(|s| attr(s, "url.query")).collect();
    queries.sort();
    queries.dedup();
    assert_eq!(queries.len(), N, "duplicated or lost requests: {queries:?}");
    // Nothing from the ciphertext.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(agent.spans().len(), 2 * N, "{:#?}", agent.spans());

    settle_counters();
    let (re, rr, we) = (
        hits(&agent, READ, "entry"),
        hits(&agent, READ, "return"),
        hits(&agent, WRITE, "entry"),
    );
    let per = |x: f64| x / N as f64;
    eprintln!(
        "Go TLS ({ldflags:?}), server+client: {:.2} uprobe hits per request \
         (Read entries {:.2}, Read RETs {:.2}, Write entries {:.2})",
        per(re + rr + we),
        per(re),
        per(rr),
        per(we)
    );
    assert_eq!(
        agent.metric_sum("ratatosk_tls_unattributed_total", &[]),
        0.0
    );
    assert!(
        agent.metric_sum("ratatosk_unparsed_bytes_total", &[]) < 8192.0,
        "ciphertext reached userspace:\n{}",
        agent.metrics()
    );
    // Every Read that entered returned through a probed RET (the one
    // still blocked at the end excepted, per goroutine reading).
    assert!(re - rr <= 4.0, "Read entries {re}, RETs {rr}");
    assert!(
        per(re + rr + we) <= 8.5,
        "{} hits per request",
        per(re + rr + we)
    );
}

#[test]
fn go_https_server_and_client_with_symbols() {
    go_server_and_client("", "symtab", "dwarf");
}

#[test]
fn go_https_server_and_client_stripped() {
    go_server_and_client("-s -w", "gopclntab", "version table");
}

#[test]
fn caddy_stripped_serves_a_static_file_over_tls() {
    let _g = serial();
    let caddy = lab_dir().join("bin/caddy");
    assert!(
        caddy.is_file(),
        "{} is missing: run scripts/lab.sh",
        caddy.display()
    );
    let www = www_dir();
    let certs = tls_cert();
    let dir = tempdir("ratatosk-caddy");
    let port = free_port();
    let conf = format!(
        "{{\n\tadmin off\n\tauto_https disable_redirects\n\tservers {{\n\t\tprotocols h1\n\t}}\n}}\n\
         https://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n\ttls {cert} {key}\n\troot * {www}\n\tfile_server\n}}\n",
        cert = certs.path().join("cert.pem").display(),
        key = certs.path().join("key.pem").display(),
        www = www.path().display(),
    );
    let caddyfile = dir.path().join("Caddyfile");
    std::fs::write(&caddyfile, conf).expect("write Caddyfile");
    let _server = Proc::spawn(
        "caddy",
        Command::new(&caddy)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    wait_for_port(port, WAIT);
    let agent = Agent::start(&["--open-port", &port.to_string()]);
    let log = agent.stderr_text();
    assert!(
        log.contains("Go crypto/tls probes attached")
            && log.contains("functions_from=\"gopclntab\""),
        "caddy not probed before ready:\n{log}"
    );
    const N: usize = 30;
    let statuses = curl_tls_keepalive(&format!("https://127.0.0.1:{port}/hello"), N, &[]);
    assert_eq!(statuses, vec![200; N]);
    let spans = agent.wait_spans(N, WAIT, |s| {
        s["kind"] == "server" && attr(s, "server.port") == port.to_string()
    });
    assert_eq!(spans.len(), N, "{spans:#?}");
    for s in &spans {
        assert_eq!(attr(s, "url.scheme"), "https", "{s}");
        assert_eq!(attr(s, "url.path"), "/hello");
        assert_eq!(attr(s, "http.response.status_code"), "200");
        assert_eq!(attr(s, "http.response.body.size"), "12");
        assert_eq!(attr(s, "client.address"), "127.0.0.1");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(agent.spans().len(), N, "{:#?}", agent.spans());
    settle_counters();
    let (re, rr, we) = (
        hits(&agent, READ, "entry"),
        hits(&agent, READ, "return"),
        hits(&agent, WRITE, "entry"),
    );
    eprintln!(
        "caddy over TLS: {:.2} uprobe hits per request (Read entries {:.2}, Read RETs {:.2}, Write entries {:.2})",
        (re + rr + we) / N as f64,
        re / N as f64,
        rr / N as f64,
        we / N as f64
    );
    assert_eq!(
        agent.metric_sum("ratatosk_tls_unattributed_total", &[]),
        0.0
    );
}

#[test]
fn a_go_binary_without_crypto_tls_is_named_once_and_plaintext_continues() {
    let _g = serial();
    let dir = tempdir("ratatosk-goplain");
    let bin = go_build(dir.path(), "goplain", GO_PLAIN_SRC, "-s -w");
    let port = free_port();
    let _server = Proc::spawn("go plain server", Command::new(&bin).arg(port.to_string()));
    wait_for_port(port, WAIT);
    let agent = Agent::start(&["--open-port", &port.to_string()]);
    const N: usize = 3;
    for _ in 0..N {
        assert_eq!(curl(&format!("http://127.0.0.1:{port}/plain")), 200);
    }
    let spans = agent.wait_spans(N, WAIT, |s| {
        s["kind"] == "server" && attr(s, "server.port") == port.to_string()
    });
    assert_eq!(spans.len(), N, "{spans:#?}");
    assert!(spans.iter().all(|s| attr(s, "url.scheme") == "http"));
    std::thread::sleep(Duration::from_millis(1200));
    let warnings = agent.log_lines_with("cannot probe this Go binary");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("goplain") && warnings[0].contains("no crypto/tls"),
        "{}",
        warnings[0]
    );
}
