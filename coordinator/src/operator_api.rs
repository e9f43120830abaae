//! `flashgate.v1.OperatorService`: the operators' API, the one service that spans flows
//! (catalogue and provisioning), so it lives beside them rather than in either. Every call
//! checks the caller's credential and role ([`crate::rpc::operator_call`]).

use std::sync::Arc;

use flashgate_proto::v1::{self, operator_service_server::OperatorService};
use tonic::{Request, Response, Status};

use crate::audit::Actor;
use crate::coordinator::Coordinator;
use crate::rpc;

/// The gRPC adapter of `OperatorService` over a [`Coordinator`].
#[derive(Clone)]
pub struct OperatorApi(pub Arc<Coordinator>);

impl OperatorApi {
    async fn call<'a, Req, T, Fut>(
        &'a self,
        method: &'static str,
        request: Request<Req>,
        call: impl FnOnce(&'a Coordinator, Actor, Req) -> Fut,
    ) -> Result<Response<T>, Status>
    where
        Fut: std::future::Future<Output = crate::error::Result<T>>,
    {
        let c = &*self.0;
        rpc::operator_call(method, c.access(), request, |caller, req| {
            call(c, caller.actor(), req)
        })
        .await
    }
}

#[tonic::async_trait]
impl OperatorService for OperatorApi {
    async fn create_product(
        &self,
        request: Request<v1::CreateProductRequest>,
    ) -> Result<Response<v1::Product>, Status> {
        self.call("CreateProduct", request, |c, by, req| async move {
            c.catalogue().products.create(&by, req).await
        })
        .await
    }

    async fn rotate_authority_key(
        &self,
        request: Request<v1::RotateAuthorityKeyRequest>,
    ) -> Result<Response<v1::Product>, Status> {
        self.call("RotateAuthorityKey", request, |c, by, req| async move {
            c.catalogue()
                .products
                .rotate_authority(&by, crate::ids::ProductId(req.product_id))
                .await
        })
        .await
    }

    async fn list_products(
        &self,
        request: Request<v1::ListProductsRequest>,
    ) -> Result<Response<v1::ListProductsResponse>, Status> {
        self.call("ListProducts", request, |c, _by, _req| async move {
            Ok(v1::ListProductsResponse {
                products: c.catalogue().products.list().await?,
            })
        })
        .await
    }

    async fn upload_release(
        &self,
        request: Request<v1::UploadReleaseRequest>,
    ) -> Result<Response<v1::Release>, Status> {
        self.call("UploadRelease", request, |c, by, req| async move {
            c.catalogue().releases.upload(&by, &req.image).await
        })
        .await
    }

    async fn list_releases(
        &self,
        request: Request<v1::ListReleasesRequest>,
    ) -> Result<Response<v1::ListReleasesResponse>, Status> {
        self.call("ListReleases", request, |c, _by, req| async move {
            Ok(v1::ListReleasesResponse {
                releases: c.catalogue().releases.list(req.product_id).await?,
            })
        })
        .await
    }

    async fn create_order(
        &self,
        request: Request<v1::CreateOrderRequest>,
    ) -> Result<Response<v1::Order>, Status> {
        self.call("CreateOrder", request, |c, by, req| async move {
            c.provisioning().quota.open_order(&by, req).await
        })
        .await
    }

    async fn get_order_status(
        &self,
        request: Request<v1::GetOrderStatusRequest>,
    ) -> Result<Response<v1::OrderStatus>, Status> {
        self.call("GetOrderStatus", request, |c, _by, req| async move {
            c.provisioning().progress.status(&req.order_id).await
        })
        .await
    }

    async fn list_orders(
        &self,
        request: Request<v1::ListOrdersRequest>,
    ) -> Result<Response<v1::ListOrdersResponse>, Status> {
        self.call("ListOrders", request, |c, _by, _req| async move {
            Ok(v1::ListOrdersResponse {
                orders: c.provisioning().progress.list().await?,
            })
        })
        .await
    }

    async fn list_stations(
        &self,
        request: Request<v1::ListStationsRequest>,
    ) -> Result<Response<v1::ListStationsResponse>, Status> {
        self.call("ListStations", request, |c, _by, req| async move {
            Ok(v1::ListStationsResponse {
                stations: c.provisioning().stations.list(req.state).await?,
            })
        })
        .await
    }

    async fn approve_station(
        &self,
        request: Request<v1::ApproveStationRequest>,
    ) -> Result<Response<v1::Station>, Status> {
        self.call("ApproveStation", request, |c, by, req| async move {
            c.provisioning()
                .stations
                .approve(&by, &req.station_id)
                .await
        })
        .await
    }

    async fn revoke_station(
        &self,
        request: Request<v1::RevokeStationRequest>,
    ) -> Result<Response<v1::Station>, Status> {
        self.call("RevokeStation", request, |c, by, req| async move {
            c.provisioning().stations.revoke(&by, &req.station_id).await
        })
        .await
    }

    async fn get_device(
        &self,
        request: Request<v1::GetDeviceRequest>,
    ) -> Result<Response<v1::Device>, Status> {
        self.call("GetDevice", request, |c, _by, req| async move {
            c.provisioning()
                .registry
                .get_device(req.product_id, &req.serial)
                .await
        })
        .await
    }

    async fn list_devices(
        &self,
        request: Request<v1::ListDevicesRequest>,
    ) -> Result<Response<v1::ListDevicesResponse>, Status> {
        self.call("ListDevices", request, |c, _by, req| async move {
            Ok(v1::ListDevicesResponse {
                devices: c.provisioning().registry.list_devices(&req).await?,
            })
        })
        .await
    }

    async fn list_leases(
        &self,
        request: Request<v1::ListLeasesRequest>,
    ) -> Result<Response<v1::ListLeasesResponse>, Status> {
        self.call("ListLeases", request, |c, _by, req| async move {
            Ok(v1::ListLeasesResponse {
                leases: c
                    .provisioning()
                    .leases
                    .list(&req.order_id, &req.station_id)
                    .await?,
            })
        })
        .await
    }

    async fn get_coordinator_info(
        &self,
        request: Request<v1::GetCoordinatorInfoRequest>,
    ) -> Result<Response<v1::CoordinatorInfo>, Status> {
        let c = &*self.0;
        rpc::operator_call(
            "GetCoordinatorInfo",
            c.access(),
            request,
            |caller, _req| async move {
                Ok(v1::CoordinatorInfo {
                    caller: caller.name.clone(),
                    caller_role: caller.role.to_proto() as i32,
                    ..c.info()
                })
            },
        )
        .await
    }

    async fn cancel_order(
        &self,
        request: Request<v1::CancelOrderRequest>,
    ) -> Result<Response<v1::OrderStatus>, Status> {
        self.call("CancelOrder", request, |c, by, req| async move {
            c.provisioning()
                .quota
                .cancel_order(&by, &req.order_id)
                .await?;
            c.provisioning().progress.status(&req.order_id).await
        })
        .await
    }

    async fn start_device_verification(
        &self,
        request: Request<v1::StartDeviceVerificationRequest>,
    ) -> Result<Response<v1::DeviceVerificationChallenge>, Status> {
        self.call(
            "StartDeviceVerification",
            request,
            |c, by, _req| async move { c.genuineness().start(&by).await },
        )
        .await
    }

    async fn verify_device(
        &self,
        request: Request<v1::VerifyDeviceRequest>,
    ) -> Result<Response<v1::DeviceVerdict>, Status> {
        self.call("VerifyDevice", request, |c, by, req| async move {
            c.genuineness().verify(&by, req).await
        })
        .await
    }
}
