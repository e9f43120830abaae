//! Serving: the operator and station services plus gRPC health and reflection on one port.

use std::future::Future;
use std::sync::Arc;

use flashgate_proto::v1::data_service_server::DataServiceServer;
use flashgate_proto::v1::operator_service_server::OperatorServiceServer;
use flashgate_proto::v1::station_service_server::StationServiceServer;
use flashgate_proto::v1::update_service_server::UpdateServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::coordinator::Coordinator;
use crate::data_stream::{DataApi, DataIngest};
use crate::service::{OperatorApi, StationApi};

/// Largest operator request (release uploads carry whole images).
pub const MAX_OPERATOR_MESSAGE: usize = 32 * 1024 * 1024;
/// Largest station request; every station message is small.
pub const MAX_STATION_MESSAGE: usize = 64 * 1024;
/// Largest data ingest request (a batch of up to `data_stream::MAX_BATCH` records).
pub const MAX_DATA_MESSAGE: usize = 2 * 1024 * 1024;

/// Serves until `shutdown` resolves. Also runs the housekeeping loop (leader-elected lease
/// expiry and nonce sweep).
pub async fn serve(
    coordinator: Arc<Coordinator>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let data = DataIngest::new(coordinator.clone());
    serve_with_data(coordinator, data, listener, shutdown).await
}

/// [`serve`] with a data ingest shared with other listeners (the UDP one,
/// [`crate::data_stream::serve_udp`]).
pub async fn serve_with_data(
    coordinator: Arc<Coordinator>,
    data: Arc<DataIngest>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (mut health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<OperatorServiceServer<OperatorApi>>()
        .await;
    health
        .set_serving::<StationServiceServer<StationApi>>()
        .await;
    health.set_serving::<DataServiceServer<DataApi>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(flashgate_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let housekeeping = tokio::spawn(coordinator.clone().run_housekeeping());
    tracing::info!(
        addr = %listener.local_addr()?,
        store = %coordinator.store().describe(),
        "coordinator serving"
    );
    // Without TCP_NODELAY small unary replies wait for delayed ACKs (~40 ms each).
    let incoming = TcpIncoming::from_listener(listener, true, None)
        .map_err(|e| anyhow::anyhow!("cannot serve on the listener: {e}"))?;
    let result = tonic::transport::Server::builder()
        .trace_fn(|request| {
            // One span per RPC; a W3C `traceparent` in the metadata makes it (and everything the
            // call does, registry writes included) part of the caller's trace.
            let span = tracing::info_span!("grpc", path = %request.uri().path());
            flashgate_telemetry::set_parent_from_headers(&span, request.headers());
            span
        })
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            OperatorServiceServer::new(OperatorApi(coordinator.clone()))
                .max_decoding_message_size(MAX_OPERATOR_MESSAGE),
        )
        .add_service(
            StationServiceServer::new(StationApi(coordinator.clone()))
                .max_decoding_message_size(MAX_STATION_MESSAGE),
        )
        .add_service(
            DataServiceServer::new(DataApi(data)).max_decoding_message_size(MAX_DATA_MESSAGE),
        )
        .add_service(
            UpdateServiceServer::new(crate::update::UpdateApi(coordinator.clone()))
                .max_encoding_message_size(MAX_OPERATOR_MESSAGE),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    housekeeping.abort();
    Ok(result?)
}
