//! `flashgate.v1.UpdateService` (an operator credential on every call: release role to publish,
//! field role for packages and receipts, any role to read).

use flashgate_proto::v1::{self, update_service_server::UpdateService};
use tonic::{Request, Response, Status};

use super::campaigns::Campaigns;
use super::delivery::Delivery;
use crate::access::Access;
use crate::rpc;

/// The gRPC adapter of `UpdateService` over [`Campaigns`] and [`Delivery`].
#[derive(Clone)]
pub struct UpdateApi {
    campaigns: Campaigns,
    delivery: Delivery,
    access: Access,
}

impl UpdateApi {
    /// The update service; every call is checked by `access` (role per method).
    pub fn new(campaigns: Campaigns, delivery: Delivery, access: Access) -> Self {
        Self {
            campaigns,
            delivery,
            access,
        }
    }
}

#[tonic::async_trait]
impl UpdateService for UpdateApi {
    async fn publish_update(
        &self,
        request: Request<v1::PublishUpdateRequest>,
    ) -> Result<Response<v1::PublishUpdateResponse>, Status> {
        rpc::operator_call(
            "PublishUpdate",
            &self.access,
            request,
            |caller, req| async move { self.campaigns.publish(&caller.actor(), req).await },
        )
        .await
    }

    async fn get_update_status(
        &self,
        request: Request<v1::GetUpdateStatusRequest>,
    ) -> Result<Response<v1::GetUpdateStatusResponse>, Status> {
        rpc::operator_call(
            "GetUpdateStatus",
            &self.access,
            request,
            |_caller, req| async move {
                Ok(v1::GetUpdateStatusResponse {
                    devices: self
                        .campaigns
                        .status(req.product_id, &req.campaign_id)
                        .await?,
                })
            },
        )
        .await
    }

    async fn get_update_package(
        &self,
        request: Request<v1::GetUpdatePackageRequest>,
    ) -> Result<Response<v1::UpdatePackage>, Status> {
        rpc::operator_call(
            "GetUpdatePackage",
            &self.access,
            request,
            |_caller, req| async move { self.delivery.package(req.product_id, &req.serial).await },
        )
        .await
    }

    async fn report_update(
        &self,
        request: Request<v1::ReportUpdateRequest>,
    ) -> Result<Response<v1::DeviceUpdateStatus>, Status> {
        rpc::operator_call("ReportUpdate", &self.access, request, |_caller, req| {
            self.delivery.report(req)
        })
        .await
    }

    async fn get_device_status(
        &self,
        request: Request<v1::GetDeviceStatusRequest>,
    ) -> Result<Response<v1::DeviceUpdateStatus>, Status> {
        rpc::operator_call(
            "GetDeviceStatus",
            &self.access,
            request,
            |_caller, req| async move {
                self.campaigns
                    .device_status(req.product_id, &req.serial)
                    .await
            },
        )
        .await
    }
}
