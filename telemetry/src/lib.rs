//! Telemetry shared by the coordinator and the station, **off unless configured**:
//!
//! - traces: `tracing` spans exported over OTLP/gRPC (`--otlp-endpoint URL` or
//!   `OTEL_EXPORTER_OTLP_ENDPOINT`) through `tracing-opentelemetry`; only spans of the
//!   `flashgate_*` crates at INFO and above become OpenTelemetry spans;
//! - context: W3C `traceparent` carried in gRPC metadata ([`inject`], [`extract_headers`]) and in
//!   the station's journal ([`current_traceparent`], [`context_from_traceparent`]), so one
//!   device's provisioning is one trace across processes;
//! - metrics: a Prometheus text endpoint (`--metrics-listen ADDR`, `GET /metrics`) over the
//!   `prometheus` crate's default registry; crates register their metrics only when
//!   [`metrics_enabled`] is true.
//!
//! When neither is configured nothing is started: no runtime, no layer, and the helpers return at
//! once on one relaxed atomic load. Spans and metrics carry ids and serials only, never keys.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::TracerProvider;
use opentelemetry_sdk::Resource;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

#[cfg(feature = "receiver")]
pub mod receiver;

/// Environment variable of the OTLP endpoint (the OpenTelemetry standard name).
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

static TRACING: AtomicBool = AtomicBool::new(false);
static METRICS: AtomicBool = AtomicBool::new(false);

/// True once an OTLP exporter is installed in this process.
#[inline]
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// True once the Prometheus endpoint is serving in this process (or a bench turned metrics on).
#[inline]
pub fn metrics_enabled() -> bool {
    METRICS.load(Ordering::Relaxed)
}

/// Turns metric collection on without serving them (benches, tests that read the registry).
pub fn enable_metrics() {
    METRICS.store(true, Ordering::Relaxed);
}

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct TelemetryOptions {
    /// `service.name` of the exported spans (`flashgate-coordinator`, `flashgate-station`).
    pub service_name: String,
    /// OTLP/gRPC collector endpoint, e.g. `http://127.0.0.1:4317`; `None` = no traces.
    pub otlp_endpoint: Option<String>,
    /// Address of the Prometheus endpoint, e.g. `127.0.0.1:9464`; `None` = no metrics.
    pub metrics_listen: Option<String>,
}

impl TelemetryOptions {
    /// Options for `service_name`; the endpoint falls back to `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn new(
        service_name: &str,
        otlp_endpoint: Option<String>,
        metrics_listen: Option<String>,
    ) -> Self {
        let otlp_endpoint = otlp_endpoint
            .or_else(|| std::env::var(OTLP_ENDPOINT_ENV).ok())
            .filter(|e| !e.trim().is_empty());
        Self {
            service_name: service_name.to_owned(),
            otlp_endpoint,
            metrics_listen: metrics_listen.filter(|a| !a.trim().is_empty()),
        }
    }
}

/// Running telemetry; flushes pending spans and stops its threads when dropped.
pub struct Telemetry {
    runtime: Option<tokio::runtime::Runtime>,
    provider: Option<TracerProvider>,
    metrics_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("tracing", &self.provider.is_some())
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
}

impl Telemetry {
    /// Nothing started.
    pub fn disabled() -> Self {
        Self {
            runtime: None,
            provider: None,
            metrics_addr: None,
        }
    }

    /// Starts what `options` asks for, on a small runtime of its own (one worker thread), so it
    /// works the same under the coordinator's tokio runtime and the station's actix system.
    pub fn start(options: &TelemetryOptions) -> anyhow::Result<Self> {
        if options.otlp_endpoint.is_none() && options.metrics_listen.is_none() {
            return Ok(Self::disabled());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("telemetry")
            .enable_all()
            .build()
            .context("starting the telemetry runtime")?;
        let _enter = runtime.enter();
        let provider = match &options.otlp_endpoint {
            Some(endpoint) => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint.clone())
                    .with_timeout(Duration::from_secs(5))
                    .build()
                    .with_context(|| format!("OTLP exporter for {endpoint}"))?;
                let provider = TracerProvider::builder()
                    .with_batch_exporter(exporter, opentelemetry_sdk::runtime::Tokio)
                    .with_resource(Resource::new(vec![KeyValue::new(
                        "service.name",
                        options.service_name.clone(),
                    )]))
                    .build();
                TRACING.store(true, Ordering::Relaxed);
                Some(provider)
            }
            None => None,
        };
        let metrics_addr = match &options.metrics_listen {
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .with_context(|| format!("metrics endpoint: cannot listen on {addr}"))?;
                listener.set_nonblocking(true)?;
                let local = listener.local_addr()?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                runtime.spawn(serve_metrics(listener));
                METRICS.store(true, Ordering::Relaxed);
                Some(local)
            }
            None => None,
        };
        drop(_enter);
        Ok(Self {
            runtime: Some(runtime),
            provider,
            metrics_addr,
        })
    }

    /// The layer that turns `flashgate_*` spans into OpenTelemetry spans (`None` when traces are
    /// off; an `Option` layer is a no-op layer).
    pub fn layer<S>(&self) -> Option<impl Layer<S> + Send + Sync + 'static>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let provider = self.provider.as_ref()?;
        let tracer = provider.tracer("flashgate");
        let targets = Targets::new()
            .with_target("flashgate_station", LevelFilter::INFO)
            .with_target("flashgate_coordinator", LevelFilter::INFO)
            .with_target("flashgate_telemetry", LevelFilter::INFO);
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_tracked_inactivity(false)
                .with_filter(targets),
        )
    }

    /// Where the Prometheus endpoint listens.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Exports every finished span now (tests call it before looking at the receiver).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            for result in provider.force_flush() {
                if let Err(e) = result {
                    eprintln!("telemetry: flushing spans failed: {e}");
                }
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            TRACING.store(false, Ordering::Relaxed);
            if let Err(e) = provider.shutdown() {
                eprintln!("telemetry: exporting the last spans failed: {e}");
            }
        }
        if self.metrics_addr.take().is_some() {
            METRICS.store(false, Ordering::Relaxed);
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Serves `GET /metrics` (Prometheus text format 0.0.4); anything else is 404.
async fn serve_metrics(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let mut request = Vec::with_capacity(512);
            let mut buf = [0u8; 1024];
            // Read the request head (bounded: 8 KiB, 5 s).
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
            if read != Ok(true) {
                return;
            }
            let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
            let (status, content_type, body) =
                if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET / ") {
                    ("200 OK", prometheus::TEXT_FORMAT, render_metrics())
                } else {
                    ("404 Not Found", "text/plain", "GET /metrics\n".to_owned())
                };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// The default registry in Prometheus text format.
pub fn render_metrics() -> String {
    let families = prometheus::gather();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
}

/// Latency buckets in seconds, 1 ms to 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Puts the current span's context (W3C `traceparent`) into a gRPC request's metadata.
/// Not covered by the station's request signature, and not a secret.
#[inline]
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    if !tracing_enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
}

/// Makes `span` a child of the context carried in HTTP/2 headers (the gRPC server side), if any.
#[inline]
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if !tracing_enabled() || !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    span.set_parent(cx);
}

/// The current span's context as a W3C `traceparent` value (`None` when traces are off).
pub fn current_traceparent() -> Option<String> {
    if !tracing_enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of a context saved by [`current_traceparent`] (e.g. in a journal).
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(value) = traceparent.filter(|_| tracing_enabled()) else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_owned(), value.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        span.set_parent(cx);
    }
}
