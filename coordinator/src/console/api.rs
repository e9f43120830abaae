//! The console is a client of the coordinator's own API: every page and action is one or more
//! calls of the operator services — the same service objects the gRPC port serves, behind the
//! same [`crate::rpc`] wrapper — carrying the logged-in operator's bearer token. So the token
//! check, roles and audit trail and every refusal are the API's.

use std::sync::Arc;

use flashgate_proto::operator_auth::OperatorCredentials;
use flashgate_proto::v1::access_service_server::AccessService;
use flashgate_proto::v1::data_service_server::DataService;
use flashgate_proto::v1::operator_service_server::OperatorService;
use flashgate_proto::v1::update_service_server::UpdateService;
use flashgate_proto::v1::{self};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::access::service::AccessApi;
use crate::coordinator::Coordinator;
use crate::data_stream::{DataApi, DataIngest};
use crate::operator_api::OperatorApi;
use crate::update::UpdateApi;

/// The operator-facing services, called in-process.
#[derive(Clone)]
pub struct ConsoleApi {
    operator: OperatorApi,
    access: AccessApi,
    updates: UpdateApi,
    data: DataApi,
}

/// One call's result, the API's refusal included.
pub type ApiResult<T> = Result<T, Status>;

impl ConsoleApi {
    /// The services of `coordinator`, with `data` the ingest the gRPC and UDP ports share.
    pub fn new(coordinator: Arc<Coordinator>, data: Arc<DataIngest>) -> Self {
        let access = coordinator.access().clone();
        Self {
            updates: UpdateApi::new(coordinator.updates().clone(), access.clone()),
            data: DataApi::new(data, access),
            access: AccessApi(coordinator.clone()),
            operator: OperatorApi(coordinator),
        }
    }
}

/// `message` with the operator's credentials in its metadata, as the CLI's interceptor adds
/// them on the wire.
fn request<T>(credentials: &OperatorCredentials, message: T) -> Result<Request<T>, Box<Status>> {
    let (metadata, extensions, ()) = credentials
        .clone()
        .call(Request::new(()))
        .map_err(Box::new)?
        .into_parts();
    Ok(Request::from_parts(metadata, extensions, message))
}

/// The calls the console makes, each with the caller's credentials.
pub struct Caller<'a> {
    api: &'a ConsoleApi,
    credentials: &'a OperatorCredentials,
}

macro_rules! calls {
    ($($(#[$doc:meta])* $name:ident: $service:ident . $method:ident ($req:ty) -> $resp:ty;)*) => {
        impl Caller<'_> {
            $(
                $(#[$doc])*
                pub async fn $name(&self, message: $req) -> ApiResult<$resp> {
                    let request = request(self.credentials, message).map_err(|e| *e)?;
                    Ok(self.api.$service.$method(request).await?.into_inner())
                }
            )*
        }
    };
}

calls! {
    /// `OperatorService.GetCoordinatorInfo` (the login check).
    info: operator.get_coordinator_info(v1::GetCoordinatorInfoRequest) -> v1::CoordinatorInfo;
    /// `OperatorService.ListOrders`.
    list_orders: operator.list_orders(v1::ListOrdersRequest) -> v1::ListOrdersResponse;
    /// `OperatorService.GetOrderStatus`.
    order_status: operator.get_order_status(v1::GetOrderStatusRequest) -> v1::OrderStatus;
    /// `OperatorService.CreateOrder`.
    create_order: operator.create_order(v1::CreateOrderRequest) -> v1::Order;
    /// `OperatorService.ListProducts`.
    list_products: operator.list_products(v1::ListProductsRequest) -> v1::ListProductsResponse;
    /// `OperatorService.ListReleases`.
    list_releases: operator.list_releases(v1::ListReleasesRequest) -> v1::ListReleasesResponse;
    /// `OperatorService.ListStations`.
    list_stations: operator.list_stations(v1::ListStationsRequest) -> v1::ListStationsResponse;
    /// `OperatorService.ApproveStation`.
    approve_station: operator.approve_station(v1::ApproveStationRequest) -> v1::Station;
    /// `OperatorService.RevokeStation`.
    revoke_station: operator.revoke_station(v1::RevokeStationRequest) -> v1::Station;
    /// `OperatorService.GetDevice`.
    device: operator.get_device(v1::GetDeviceRequest) -> v1::Device;
    /// `OperatorService.ListDevices`.
    list_devices: operator.list_devices(v1::ListDevicesRequest) -> v1::ListDevicesResponse;
    /// `OperatorService.ListLeases`.
    list_leases: operator.list_leases(v1::ListLeasesRequest) -> v1::ListLeasesResponse;
    /// `UpdateService.GetUpdateStatus`.
    update_status: updates.get_update_status(v1::GetUpdateStatusRequest) -> v1::GetUpdateStatusResponse;
    /// `UpdateService.GetDeviceStatus`.
    device_update: updates.get_device_status(v1::GetDeviceStatusRequest) -> v1::DeviceUpdateStatus;
    /// `UpdateService.ListRollouts`.
    list_rollouts: updates.list_rollouts(v1::ListRolloutsRequest) -> v1::ListRolloutsResponse;
    /// `UpdateService.GetRollout`.
    rollout: updates.get_rollout(v1::RolloutRequest) -> v1::RolloutStatus;
    /// `UpdateService.PauseRollout`.
    pause_rollout: updates.pause_rollout(v1::RolloutRequest) -> v1::RolloutStatus;
    /// `UpdateService.ResumeRollout`.
    resume_rollout: updates.resume_rollout(v1::RolloutRequest) -> v1::RolloutStatus;
    /// `DataService.QueryRecords`.
    records: data.query_records(v1::QueryRecordsRequest) -> v1::QueryRecordsResponse;
    /// `AccessService.ListAuditEntries`.
    audit_entries: access.list_audit_entries(v1::ListAuditEntriesRequest) -> v1::ListAuditEntriesResponse;
    /// `AccessService.VerifyAudit`.
    verify_audit: access.verify_audit(v1::VerifyAuditRequest) -> v1::VerifyAuditResponse;
    /// `DataService.GetIngestStats`.
    ingest_stats: data.get_ingest_stats(v1::GetIngestStatsRequest) -> v1::IngestStats;
}

impl ConsoleApi {
    /// Calls made with `credentials`.
    pub fn caller<'a>(&'a self, credentials: &'a OperatorCredentials) -> Caller<'a> {
        Caller {
            api: self,
            credentials,
        }
    }
}
