//! `flashgate.v1.UpdateService` (the operator token on every call).

use flashgate_proto::v1::{self, update_service_server::UpdateService};
use tonic::{Request, Response, Status};

use super::campaigns::Campaigns;
use super::delivery::Delivery;
use crate::rpc::{self, OperatorToken};

/// The gRPC adapter of `UpdateService` over [`Campaigns`] and [`Delivery`].
#[derive(Clone)]
pub struct UpdateApi {
    campaigns: Campaigns,
    delivery: Delivery,
    token: OperatorToken,
}

impl UpdateApi {
    /// The update service; every call must present the operators' `token`.
    pub fn new(campaigns: Campaigns, delivery: Delivery, token: OperatorToken) -> Self {
        Self {
            campaigns,
            delivery,
            token,
        }
    }
}

#[tonic::async_trait]
impl UpdateService for UpdateApi {
    async fn publish_update(
        &self,
        request: Request<v1::PublishUpdateRequest>,
    ) -> Result<Response<v1::PublishUpdateResponse>, Status> {
        rpc::operator_call("PublishUpdate", &self.token, request, |req| {
            self.campaigns.publish(req)
        })
        .await
    }

    async fn get_update_status(
        &self,
        request: Request<v1::GetUpdateStatusRequest>,
    ) -> Result<Response<v1::GetUpdateStatusResponse>, Status> {
        rpc::operator_call("GetUpdateStatus", &self.token, request, |req| async move {
            Ok(v1::GetUpdateStatusResponse {
                devices: self
                    .campaigns
                    .status(req.product_id, &req.campaign_id)
                    .await?,
            })
        })
        .await
    }

    async fn get_update_package(
        &self,
        request: Request<v1::GetUpdatePackageRequest>,
    ) -> Result<Response<v1::UpdatePackage>, Status> {
        rpc::operator_call("GetUpdatePackage", &self.token, request, |req| async move {
            self.delivery.package(req.product_id, &req.serial).await
        })
        .await
    }

    async fn report_update(
        &self,
        request: Request<v1::ReportUpdateRequest>,
    ) -> Result<Response<v1::DeviceUpdateStatus>, Status> {
        rpc::operator_call("ReportUpdate", &self.token, request, |req| {
            self.delivery.report(req)
        })
        .await
    }

    async fn get_device_status(
        &self,
        request: Request<v1::GetDeviceStatusRequest>,
    ) -> Result<Response<v1::DeviceUpdateStatus>, Status> {
        rpc::operator_call("GetDeviceStatus", &self.token, request, |req| async move {
            self.campaigns
                .device_status(req.product_id, &req.serial)
                .await
        })
        .await
    }
}
