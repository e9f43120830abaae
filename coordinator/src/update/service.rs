//! `flashgate.v1.UpdateService` (an operator credential on every call: release role to publish,
//! field role for packages and receipts (OS and app), any role to read).

use flashgate_proto::v1::{self, update_service_server::UpdateService};
use tonic::{Request, Response, Status};

use super::Updates;
use crate::access::Access;
use crate::rpc;

/// The gRPC adapter of `UpdateService` over the [`Updates`] flow.
#[derive(Clone)]
pub struct UpdateApi {
    updates: Updates,
    access: Access,
}

impl UpdateApi {
    /// The update service; every call is checked by `access` (role per method).
    pub fn new(updates: Updates, access: Access) -> Self {
        Self { updates, access }
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
            |caller, req| async move { self.updates.campaigns.publish(&caller.actor(), req).await },
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
                        .updates
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
            |_caller, req| async move {
                self.updates
                    .delivery
                    .package(req.product_id, &req.serial)
                    .await
            },
        )
        .await
    }

    async fn report_update(
        &self,
        request: Request<v1::ReportUpdateRequest>,
    ) -> Result<Response<v1::DeviceUpdateStatus>, Status> {
        rpc::operator_call(
            "ReportUpdate",
            &self.access,
            request,
            |_caller, req| async move { self.updates.report(req).await },
        )
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
                self.updates
                    .campaigns
                    .device_status(req.product_id, &req.serial)
                    .await
            },
        )
        .await
    }

    async fn get_app_package(
        &self,
        request: Request<v1::GetUpdatePackageRequest>,
    ) -> Result<Response<v1::UpdatePackage>, Status> {
        rpc::operator_call(
            "GetAppPackage",
            &self.access,
            request,
            |_caller, req| async move { self.updates.apps.package(req.product_id, &req.serial).await },
        )
        .await
    }

    async fn report_app_install(
        &self,
        request: Request<v1::ReportUpdateRequest>,
    ) -> Result<Response<v1::DeviceUpdateStatus>, Status> {
        rpc::operator_call(
            "ReportAppInstall",
            &self.access,
            request,
            |_caller, req| async move {
                let (product_id, serial) = (req.product_id, req.serial.clone());
                self.updates.apps.report(req).await?;
                self.updates
                    .campaigns
                    .device_status(product_id, &serial)
                    .await
            },
        )
        .await
    }

    async fn start_rollout(
        &self,
        request: Request<v1::StartRolloutRequest>,
    ) -> Result<Response<v1::RolloutStatus>, Status> {
        rpc::operator_call(
            "StartRollout",
            &self.access,
            request,
            |caller, req| async move { self.updates.rollouts.start(&caller.actor(), req).await },
        )
        .await
    }

    async fn pause_rollout(
        &self,
        request: Request<v1::RolloutRequest>,
    ) -> Result<Response<v1::RolloutStatus>, Status> {
        rpc::operator_call(
            "PauseRollout",
            &self.access,
            request,
            |caller, req| async move {
                self.updates
                    .rollouts
                    .pause(&caller.actor(), &req.rollout_id)
                    .await
            },
        )
        .await
    }

    async fn resume_rollout(
        &self,
        request: Request<v1::RolloutRequest>,
    ) -> Result<Response<v1::RolloutStatus>, Status> {
        rpc::operator_call(
            "ResumeRollout",
            &self.access,
            request,
            |caller, req| async move {
                self.updates
                    .rollouts
                    .resume(&caller.actor(), &req.rollout_id)
                    .await
            },
        )
        .await
    }

    async fn get_rollout(
        &self,
        request: Request<v1::RolloutRequest>,
    ) -> Result<Response<v1::RolloutStatus>, Status> {
        rpc::operator_call(
            "GetRollout",
            &self.access,
            request,
            |_caller, req| async move { self.updates.rollouts.status(&req.rollout_id).await },
        )
        .await
    }

    async fn list_rollouts(
        &self,
        request: Request<v1::ListRolloutsRequest>,
    ) -> Result<Response<v1::ListRolloutsResponse>, Status> {
        rpc::operator_call(
            "ListRollouts",
            &self.access,
            request,
            |_caller, req| async move {
                let (rollouts, truncated) = self
                    .updates
                    .rollouts
                    .list(req.product_id, req.limit)
                    .await?;
                Ok(v1::ListRolloutsResponse {
                    rollouts,
                    truncated,
                })
            },
        )
        .await
    }
}
