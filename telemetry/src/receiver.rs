//! An in-process OTLP/gRPC trace receiver (the collector's `TraceService`) for tests and
//! benches: keeps every span it is sent, flattened.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;

/// One received span.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// `service.name` of the sending process.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex (empty for a root).
    pub parent_span_id: String,
    /// Attributes, values as text.
    pub attributes: Vec<(String, String)>,
    /// Trace ids of the span's links, hex.
    pub links: Vec<String>,
}

impl ReceivedSpan {
    /// An attribute's value.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ReceivedSpan>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .map(text)
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(kv)))
                            .collect(),
                        links: span.links.iter().map(|l| hex(&l.trace_id)).collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Starts on a loopback port, on a thread and runtime of its own.
    pub fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let collector = Collector::default();
        let spans = collector.0.clone();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let incoming =
                        tonic::transport::server::TcpIncoming::from_listener(listener, true, None)
                            .expect("incoming");
                    let _ = tonic::transport::Server::builder()
                        .add_service(TraceServiceServer::new(collector))
                        .serve_with_incoming_shutdown(incoming, async {
                            let _ = stop.await;
                        })
                        .await;
                });
            })?;
        Ok(Self {
            addr,
            spans,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, for `--otlp-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The benches' switch: with `FLASHGATE_BENCH_TELEMETRY=1`, exports every span to an in-process
/// receiver, turns metrics on (served on a loopback port) and installs the subscriber, as a
/// process with `--otlp-endpoint` and `--metrics-listen` would run. Keep the pair alive.
pub fn bench_switch(service_name: &str) -> Option<(crate::Telemetry, OtlpReceiver)> {
    use tracing_subscriber::prelude::*;
    if std::env::var("FLASHGATE_BENCH_TELEMETRY").ok().as_deref() != Some("1") {
        return None;
    }
    let receiver = OtlpReceiver::start().expect("OTLP receiver");
    let telemetry = crate::Telemetry::start(&crate::TelemetryOptions {
        service_name: service_name.to_owned(),
        otlp_endpoint: Some(receiver.endpoint()),
        metrics_listen: Some("127.0.0.1:0".into()),
    })
    .expect("telemetry starts");
    let _ = tracing_subscriber::registry()
        .with(telemetry.layer())
        .try_init();
    // Telemetry first: dropped (flushed) before the receiver stops.
    Some((telemetry, receiver))
}
