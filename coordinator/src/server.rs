//! Serving: the operator, access, station, update and data services plus gRPC health and
//! reflection on one port, and the housekeeping loop beside them. The port speaks TLS
//! ([`crate::tls`]) unless the operator asked for plain text by name
//! ([`Transport::InsecurePlaintext`], `serve --insecure-plaintext`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flashgate_proto::v1::access_service_server::AccessServiceServer;
use flashgate_proto::v1::data_service_server::DataServiceServer;
use flashgate_proto::v1::device_message_service_server::DeviceMessageServiceServer;
use flashgate_proto::v1::operator_service_server::OperatorServiceServer;
use flashgate_proto::v1::station_service_server::StationServiceServer;
use flashgate_proto::v1::update_service_server::UpdateServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::access::AccessApi;
use crate::coordinator::Coordinator;
use crate::data_stream::{DataApi, DataIngest, DeviceMessageApi};
use crate::operator_api::OperatorApi;
use crate::provisioning::StationApi;
use crate::tls::ServerTls;
use crate::update::UpdateApi;

/// What the port speaks.
#[derive(Clone, Debug)]
pub enum Transport {
    /// TLS 1.3 with this certificate; stations present their identity certificate (mutual TLS).
    Tls(ServerTls),
    /// Plain text (`serve --insecure-plaintext`): every byte readable on the network. The
    /// coordinator must then be built with `CoordinatorConfig::station_mtls` off.
    InsecurePlaintext,
}

/// Largest operator request (release uploads carry whole images).
pub const MAX_OPERATOR_MESSAGE: usize = 32 * 1024 * 1024;
/// Largest station request; every station message is small.
pub const MAX_STATION_MESSAGE: usize = 64 * 1024;
/// Largest data ingest request (a batch of up to `data_stream::MAX_BATCH` records).
pub const MAX_DATA_MESSAGE: usize = 2 * 1024 * 1024;

/// How long a stopping server waits for housekeeping to resign its leadership.
const RESIGN_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves until `shutdown` resolves. Also runs the housekeeping loop (leader-elected lease
/// expiry and nonce sweep).
pub async fn serve(
    coordinator: Arc<Coordinator>,
    listener: TcpListener,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let data = Arc::new(coordinator.data_ingest());
    serve_with_data(coordinator, data, listener, transport, shutdown).await
}

/// [`serve`] with a data ingest shared with other listeners (the UDP one,
/// [`crate::data_stream::serve_udp`]).
pub async fn serve_with_data(
    coordinator: Arc<Coordinator>,
    data: Arc<DataIngest>,
    listener: TcpListener,
    transport: Transport,
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
    health
        .set_serving::<DeviceMessageServiceServer<DeviceMessageApi>>()
        .await;
    health.set_serving::<UpdateServiceServer<UpdateApi>>().await;
    health.set_serving::<AccessServiceServer<AccessApi>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(flashgate_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let (stop_housekeeping, stopped) = tokio::sync::watch::channel(false);
    let housekeeping = tokio::spawn(coordinator.housekeeping().run(stopped));
    let addr = listener.local_addr()?;
    let store = coordinator.store().describe();
    match &transport {
        Transport::Tls(_) => tracing::info!(%addr, %store, "coordinator serving (TLS)"),
        Transport::InsecurePlaintext => tracing::warn!(
            %addr,
            %store,
            "coordinator serving PLAIN TEXT (--insecure-plaintext): releases are still sealed, but tokens and metadata cross the network readable"
        ),
    }
    let access = coordinator.access().clone();
    let provisioning = coordinator.provisioning();
    let stations = StationApi::new(
        provisioning.auth.clone(),
        provisioning.leases.clone(),
        provisioning.factory_packages.clone(),
        provisioning.certificates.clone(),
        provisioning.reports.clone(),
        coordinator.catalogue().clone(),
        coordinator.info(),
    );
    let updates = coordinator.updates();
    let router = tonic::transport::Server::builder()
        .trace_fn(|request| {
            // One span per RPC; a W3C `traceparent` in the metadata makes it (and everything the
            // call does, registry writes included) part of the caller's trace.
            let span = tracing::info_span!("grpc", path = %request.uri().path());
            flashgate_telemetry::set_parent_from_headers(&span, request.headers());
            span
        })
        .add_service(health_service)
        .add_service(reflection)
        .add_service(AccessServiceServer::new(AccessApi(coordinator.clone())))
        .add_service(
            OperatorServiceServer::new(OperatorApi(coordinator.clone()))
                .max_decoding_message_size(MAX_OPERATOR_MESSAGE),
        )
        .add_service(
            StationServiceServer::new(stations).max_decoding_message_size(MAX_STATION_MESSAGE),
        )
        .add_service(
            DataServiceServer::new(DataApi::new(data.clone(), access.clone()))
                .max_decoding_message_size(MAX_DATA_MESSAGE),
        )
        .add_service(DeviceMessageServiceServer::new(DeviceMessageApi::new(
            data,
            access.clone(),
        )))
        .add_service(
            UpdateServiceServer::new(UpdateApi::new(updates.clone(), access))
                .max_encoding_message_size(MAX_OPERATOR_MESSAGE),
        );
    let result = match transport {
        Transport::Tls(tls) => {
            router
                .serve_with_incoming_shutdown(crate::tls::incoming(listener, &tls), shutdown)
                .await
        }
        Transport::InsecurePlaintext => {
            // Without TCP_NODELAY small unary replies wait for delayed ACKs (~40 ms each).
            let incoming = TcpIncoming::from_listener(listener, true, None)
                .map_err(|e| anyhow::anyhow!("cannot serve on the listener: {e}"))?;
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    };
    // Hand leadership over now rather than after its lease expires.
    let _ = stop_housekeeping.send(true);
    if tokio::time::timeout(RESIGN_TIMEOUT, housekeeping)
        .await
        .is_err()
    {
        tracing::warn!("housekeeping did not stop in time; its leadership will expire instead");
    }
    Ok(result?)
}
