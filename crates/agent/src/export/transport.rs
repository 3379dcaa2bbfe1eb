//! Sending OTLP requests: gRPC through tonic's generated clients, or
//! HTTP/protobuf through reqwest; TLS by rustls on ring. One task per
//! signal sends one request at a time, retrying retryable failures within
//! a budget, and counts what the receiver accepted, rejected or never got.

use std::io::Write;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use tonic::GrpcMethod;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_types::StatusExt;
use tracing::{debug, warn};

use super::retry::{self, Backoff, Failure, LogLimiter, Next};
use crate::config::export::{Compression, OtlpProtocol, OtlpSignal};
use crate::selfmon::{SelfMetrics, SignalLabel};

/// One export request of either signal, encoded once: every attempt
/// (and the gRPC or HTTP body) shares the same bytes.
#[derive(Debug, Clone)]
pub struct Request {
    signal: Signal,
    body: Bytes,
    items: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Traces,
    Metrics,
}

impl Request {
    /// An encoded `ExportTraceServiceRequest` holding `spans` spans.
    pub fn traces(body: Bytes, spans: u64) -> Request {
        Request {
            signal: Signal::Traces,
            body,
            items: spans,
        }
    }

    pub fn metrics(r: &ExportMetricsServiceRequest) -> Request {
        Request {
            signal: Signal::Metrics,
            items: super::metrics::data_points(&r.resource_metrics),
            body: Bytes::from(r.encode_to_vec()),
        }
    }

    pub fn signal(&self) -> &'static str {
        match self.signal {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }

    /// Spans or data points in the request.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The protobuf message.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// gRPC codec for messages encoded beforehand: tonic frames (and, when
/// asked, compresses) the bytes as they are; answers are decoded by prost.
struct PreEncoded<R>(PhantomData<fn() -> R>);

impl<R> Default for PreEncoded<R> {
    fn default() -> Self {
        PreEncoded(PhantomData)
    }
}

impl<R: Message + Default + Send + 'static> Codec for PreEncoded<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = BytesEncoder;
    type Decoder = MessageDecoder<R>;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> MessageDecoder<R> {
        MessageDecoder(PhantomData)
    }
}

struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.reserve(item.len());
        dst.put_slice(&item);
        Ok(())
    }
}

struct MessageDecoder<R>(PhantomData<fn() -> R>);

impl<R: Message + Default> Decoder for MessageDecoder<R> {
    type Item = R;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, tonic::Status> {
        R::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("undecodable response: {e}")))
    }
}

/// gRPC service and method of each signal's export.
const TRACE_SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const TRACE_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const METRICS_SERVICE: &str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// One unary export call with a pre-encoded message.
async fn grpc_export<R: Message + Default + Send + 'static>(
    channel: &Channel,
    gzip: bool,
    (service, path): (&'static str, &'static str),
    request: tonic::Request<Bytes>,
) -> Result<R, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if gzip {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    let mut request = request;
    request
        .extensions_mut()
        .insert(GrpcMethod::new(service, "Export"));
    grpc.unary(
        request,
        PathAndQuery::from_static(path),
        PreEncoded::<R>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// What a receiver said about a request it took.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    pub rejected: i64,
    pub message: String,
}

fn partial_traces(r: ExportTraceServiceResponse) -> Accepted {
    r.partial_success
        .map(|p| Accepted {
            rejected: p.rejected_spans,
            message: p.error_message,
        })
        .unwrap_or_default()
}

fn partial_metrics(r: ExportMetricsServiceResponse) -> Accepted {
    r.partial_success
        .map(|p| Accepted {
            rejected: p.rejected_data_points,
            message: p.error_message,
        })
        .unwrap_or_default()
}

#[derive(Clone)]
pub enum Transport {
    Grpc {
        channel: Channel,
        metadata: MetadataMap,
        gzip: bool,
        timeout: Duration,
    },
    Http {
        client: reqwest::Client,
        url: String,
        headers: HeaderMap,
        gzip: bool,
        timeout: Duration,
    },
}

/// rustls needs one process-wide crypto provider; ring builds without a
/// C toolchain beyond cc. Installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Transport {
    /// Builds the client; connects lazily (a receiver that is down at
    /// start is retried like any other outage).
    pub fn new(s: &OtlpSignal) -> anyhow::Result<Transport> {
        install_crypto_provider();
        let gzip = s.compression == Compression::Gzip;
        match s.protocol {
            OtlpProtocol::Grpc => {
                let mut ep = Endpoint::from_shared(s.endpoint.clone())
                    .with_context(|| format!("invalid OTLP gRPC endpoint {}", s.endpoint))?
                    .connect_timeout(s.timeout)
                    .timeout(s.timeout);
                if s.endpoint.starts_with("https://") {
                    ep = ep
                        .tls_config(ClientTlsConfig::new().with_enabled_roots())
                        .context("configuring TLS for the OTLP gRPC endpoint")?;
                }
                let mut metadata = MetadataMap::new();
                for (k, v) in &s.headers {
                    let key = MetadataKey::from_str(&k.to_ascii_lowercase())
                        .with_context(|| format!("invalid OTLP header name {k:?}"))?;
                    let value = MetadataValue::try_from(v.as_str())
                        .with_context(|| format!("invalid value for OTLP header {k:?}"))?;
                    metadata.insert(key, value);
                }
                Ok(Transport::Grpc {
                    channel: ep.connect_lazy(),
                    metadata,
                    gzip,
                    timeout: s.timeout,
                })
            }
            OtlpProtocol::HttpProtobuf => {
                if !(s.endpoint.starts_with("http://") || s.endpoint.starts_with("https://")) {
                    bail!(
                        "invalid OTLP HTTP endpoint {}: not an http(s) URL",
                        s.endpoint
                    );
                }
                let mut headers = HeaderMap::new();
                for (k, v) in &s.headers {
                    headers.insert(
                        HeaderName::from_str(k)
                            .with_context(|| format!("invalid OTLP header name {k:?}"))?,
                        HeaderValue::from_str(v)
                            .with_context(|| format!("invalid value for OTLP header {k:?}"))?,
                    );
                }
                let client = reqwest::Client::builder()
                    .user_agent(concat!("ratatosk/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .context("building the OTLP HTTP client")?;
                Ok(Transport::Http {
                    client,
                    url: s.endpoint.clone(),
                    headers,
                    gzip,
                    timeout: s.timeout,
                })
            }
        }
    }

    pub fn timeout(&self) -> Duration {
        match self {
            Transport::Grpc { timeout, .. } | Transport::Http { timeout, .. } => *timeout,
        }
    }

    /// The bytes every attempt at `req` sends: gzipped here, once, for
    /// HTTP when asked (tonic compresses each gRPC message itself).
    pub fn wire_body(&self, req: &Request) -> Result<Bytes, Failure> {
        match self {
            Transport::Http { gzip: true, .. } => {
                gzip_bytes(&req.body)
                    .map(Bytes::from)
                    .map_err(|e| Failure::Permanent {
                        kind: "gzip".into(),
                        detail: e.to_string(),
                    })
            }
            _ => Ok(req.body.clone()),
        }
    }

    /// One attempt, sending `body` (from `wire_body`).
    pub async fn send(&self, req: &Request, body: &Bytes) -> Result<Accepted, Failure> {
        match self {
            Transport::Grpc {
                channel,
                metadata,
                gzip,
                timeout,
            } => {
                let call = async {
                    let msg = grpc_request(body.clone(), metadata, *timeout);
                    match req.signal {
                        Signal::Traces => {
                            grpc_export(channel, *gzip, (TRACE_SERVICE, TRACE_EXPORT), msg)
                                .await
                                .map(partial_traces)
                        }
                        Signal::Metrics => {
                            grpc_export(channel, *gzip, (METRICS_SERVICE, METRICS_EXPORT), msg)
                                .await
                                .map(partial_metrics)
                        }
                    }
                };
                match tokio::time::timeout(*timeout, call).await {
                    Ok(Ok(a)) => Ok(a),
                    Ok(Err(status)) => Err(grpc_failure(&status)),
                    Err(_) => Err(Failure::Retryable {
                        kind: "deadline_exceeded".into(),
                        after: None,
                        detail: format!("no answer within {timeout:?}"),
                    }),
                }
            }
            Transport::Http {
                client,
                url,
                headers,
                gzip,
                timeout,
            } => {
                let mut rb = client
                    .post(url)
                    .headers(headers.clone())
                    .header(CONTENT_TYPE, "application/x-protobuf")
                    .timeout(*timeout);
                if *gzip {
                    rb = rb.header(CONTENT_ENCODING, "gzip");
                }
                let resp = rb.body(body.clone()).send().await.map_err(http_error)?;
                let status = resp.status();
                let after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
                if status.is_success() {
                    // An empty body is a full success; one that does not
                    // decode, or cannot be read, is too (the data was
                    // taken: sending it again would duplicate it).
                    let bytes = body_prefix(resp).await;
                    return Ok(match req.signal {
                        Signal::Traces => ExportTraceServiceResponse::decode(bytes.as_slice())
                            .map(partial_traces)
                            .unwrap_or_default(),
                        Signal::Metrics => ExportMetricsServiceResponse::decode(bytes.as_slice())
                            .map(partial_metrics)
                            .unwrap_or_default(),
                    });
                }
                let bytes = body_prefix(resp).await;
                let detail =
                    String::from_utf8_lossy(bytes.get(..200).unwrap_or(&bytes)).into_owned();
                let kind = format!("http_{}", status.as_u16());
                if retry::http_retryable(status.as_u16()) {
                    Err(Failure::Retryable {
                        kind,
                        after,
                        detail,
                    })
                } else {
                    Err(Failure::Permanent { kind, detail })
                }
            }
        }
    }
}

/// A receiver's answer is small (a partial-success message, an error
/// text); a broken one must not make the agent buffer without end.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// The response body, up to MAX_RESPONSE_BODY bytes; a read error ends it.
async fn body_prefix(mut resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_RESPONSE_BODY - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_RESPONSE_BODY {
            break;
        }
    }
    out
}

fn grpc_request<T>(msg: T, metadata: &MetadataMap, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    *r.metadata_mut() = metadata.clone();
    r.set_timeout(timeout);
    r
}

/// An error and its sources, `a: b: c`: the reason a connection failed
/// (refused, TLS, DNS) is in the sources, not in the outer message.
fn with_sources(e: &dyn std::error::Error) -> String {
    chain(e.to_string(), e.source())
}

/// `first`, then each source's text that it does not already hold.
fn chain(first: String, mut cur: Option<&dyn std::error::Error>) -> String {
    let mut out = first;
    // Bounded: a cycle or a very deep chain says nothing more.
    for _ in 0..8 {
        let Some(s) = cur else { break };
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

fn grpc_failure(status: &tonic::Status) -> Failure {
    let retry_info = status.get_details_retry_info();
    let after = retry_info.as_ref().and_then(|r| r.retry_delay);
    let kind = format!("grpc_{:?}", status.code()).to_ascii_lowercase();
    // The status's own Display dumps its internals: its message and the
    // transport error's sources say it plainly.
    let detail = chain(
        status.message().to_string(),
        std::error::Error::source(status),
    );
    if retry::grpc_retryable(status.code(), retry_info.is_some()) {
        Failure::Retryable {
            kind,
            after,
            detail,
        }
    } else {
        Failure::Permanent { kind, detail }
    }
}

fn http_error(e: reqwest::Error) -> Failure {
    // Connection refused/reset, timeouts, broken bodies: the network's
    // fault, so worth retrying; a request we could not even build is not.
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_builder() {
        return Failure::Permanent {
            kind: "request".into(),
            detail: e.to_string(),
        };
    } else {
        "transport"
    };
    Failure::Retryable {
        kind: kind.into(),
        after: None,
        detail: with_sources(&e),
    }
}

fn gzip_bytes(b: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc =
        flate2::write::GzEncoder::new(Vec::with_capacity(b.len() / 4), flate2::Compression::fast());
    enc.write_all(b)?;
    enc.finish()
}

/// The sending side of one signal, on tokio: sends one request at a time.
/// Cloned per concurrent export; the log limiter is shared so a failure
/// is still logged once per interval, not once per export slot.
#[derive(Clone)]
pub struct Sender {
    pub transport: Transport,
    /// The receiver's URL, named in warnings.
    pub endpoint: Arc<str>,
    pub metrics: SelfMetrics,
    pub logs: Arc<Mutex<LogLimiter>>,
}

impl Sender {
    fn log_allowed(&self, kind: &str) -> Option<u64> {
        self.logs.lock().ok()?.allow(kind)
    }

    /// Sends with retries; every item ends up counted as exported,
    /// partially rejected or dropped.
    pub async fn export(&self, req: &Request) {
        let signal = req.signal();
        let items = req.items();
        let budget = retry::retry_budget(self.transport.timeout());
        let started = Instant::now();
        let mut backoff = Backoff::default();
        let body = self.transport.wire_body(req);
        loop {
            let sent = match &body {
                Ok(b) => self.transport.send(req, b).await,
                Err(f) => Err(f.clone()),
            };
            match sent {
                Ok(a) => {
                    let rejected = u64::try_from(a.rejected).unwrap_or(0).min(items);
                    self.metrics
                        .otlp_exported
                        .get_or_create(&SignalLabel { signal })
                        .inc_by(items - rejected);
                    if rejected > 0 || !a.message.is_empty() {
                        self.metrics
                            .otlp_partial_rejected
                            .get_or_create(&SignalLabel { signal })
                            .inc_by(rejected);
                        // Lost too: every loss is in the dropped total.
                        self.metrics
                            .otlp_dropped(signal, "partial_rejected", rejected);
                        if let Some(suppressed) = self.log_allowed("partial_success") {
                            warn!(signal, rejected, message = %a.message, suppressed,
                                "OTLP receiver rejected part of an export");
                        }
                    }
                    return;
                }
                Err(f) => match retry::decide(&f, &mut backoff, started.elapsed(), budget) {
                    Next::RetryAfter(wait) => {
                        debug!(
                            signal,
                            kind = f.kind(),
                            ?wait,
                            "OTLP export failed; retrying"
                        );
                        // Said at the first failure (within one export
                        // timeout), not only when the retries run out.
                        let key = format!("retrying_{}", f.kind());
                        if let Some(suppressed) = self.log_allowed(&key) {
                            let (Failure::Retryable { kind, detail, .. }
                            | Failure::Permanent { kind, detail }) = &f;
                            warn!(signal, endpoint = %self.endpoint, %kind, %detail, suppressed,
                                retrying_for = ?budget.saturating_sub(started.elapsed()),
                                "OTLP export failed, retrying (data is dropped and counted if the receiver stays unreachable)");
                        }
                        self.metrics
                            .otlp_retries
                            .get_or_create(&SignalLabel { signal })
                            .inc();
                        tokio::time::sleep(wait).await;
                    }
                    Next::GiveUp => {
                        let reason = match f {
                            Failure::Retryable { .. } => "retries_exhausted",
                            Failure::Permanent { .. } => "rejected",
                        };
                        self.metrics.otlp_dropped(signal, reason, items);
                        if let Some(suppressed) = self.log_allowed(f.kind()) {
                            let (Failure::Retryable { kind, detail, .. }
                            | Failure::Permanent { kind, detail }) = &f;
                            warn!(signal, endpoint = %self.endpoint, %kind, %detail, reason, items, suppressed,
                                "OTLP export failed; data dropped (counted in ratatosk_otlp_dropped_total)");
                        }
                        return;
                    }
                },
            }
        }
    }
}
