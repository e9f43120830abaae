//! The gRPC services: thin adapters from tonic to [`Coordinator`], each call in a `tracing`
//! span with its outcome logged (method, status code, duration; never secrets).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use flashgate_proto::station_auth::methods;
use flashgate_proto::v1::{
    self, operator_service_server::OperatorService, station_service_server::StationService,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::coordinator::Coordinator;
use crate::error::Result;

async fn traced<T>(
    method: &'static str,
    call: impl Future<Output = Result<T>>,
) -> Result<Response<T>, Status> {
    let span = tracing::info_span!("rpc", method, station = tracing::field::Empty);
    async move {
        let started = Instant::now();
        let result = call.await;
        let elapsed = started.elapsed();
        let elapsed_us = elapsed.as_micros() as u64;
        match result {
            Ok(value) => {
                tracing::info!(elapsed_us, code = "OK", "rpc done");
                crate::metrics::rpc(method, tonic::Code::Ok, elapsed.as_secs_f64());
                Ok(Response::new(value))
            }
            Err(error) => {
                let status = Status::from(error);
                tracing::warn!(elapsed_us, code = ?status.code(), message = status.message(), "rpc refused");
                crate::metrics::rpc(method, status.code(), elapsed.as_secs_f64());
                Err(status)
            }
        }
    }
    .instrument(span)
    .await
}

/// `flashgate.v1.OperatorService`.
#[derive(Clone)]
pub struct OperatorApi(pub Arc<Coordinator>);

/// `flashgate.v1.StationService`.
#[derive(Clone)]
pub struct StationApi(pub Arc<Coordinator>);

macro_rules! operator_call {
    ($self:ident, $request:ident, $name:literal, |$c:ident, $req:ident| $body:expr) => {
        traced($name, async {
            $self.0.check_operator(&$request)?;
            let $c = &$self.0;
            let $req = $request.into_inner();
            $body
        })
        .await
    };
}

#[tonic::async_trait]
impl OperatorService for OperatorApi {
    async fn create_product(
        &self,
        request: Request<v1::CreateProductRequest>,
    ) -> Result<Response<v1::Product>, Status> {
        operator_call!(self, request, "CreateProduct", |c, req| c
            .create_product(req)
            .await)
    }
    async fn list_products(
        &self,
        request: Request<v1::ListProductsRequest>,
    ) -> Result<Response<v1::ListProductsResponse>, Status> {
        operator_call!(self, request, "ListProducts", |c, _req| Ok(
            v1::ListProductsResponse {
                products: c.list_products().await?
            }
        ))
    }
    async fn upload_release(
        &self,
        request: Request<v1::UploadReleaseRequest>,
    ) -> Result<Response<v1::Release>, Status> {
        operator_call!(self, request, "UploadRelease", |c, req| c
            .upload_release(&req.image)
            .await)
    }
    async fn list_releases(
        &self,
        request: Request<v1::ListReleasesRequest>,
    ) -> Result<Response<v1::ListReleasesResponse>, Status> {
        operator_call!(self, request, "ListReleases", |c, req| Ok(
            v1::ListReleasesResponse {
                releases: c.list_releases(req.product_id).await?
            }
        ))
    }
    async fn create_order(
        &self,
        request: Request<v1::CreateOrderRequest>,
    ) -> Result<Response<v1::Order>, Status> {
        operator_call!(self, request, "CreateOrder", |c, req| c
            .create_order(req)
            .await)
    }
    async fn get_order_status(
        &self,
        request: Request<v1::GetOrderStatusRequest>,
    ) -> Result<Response<v1::OrderStatus>, Status> {
        operator_call!(self, request, "GetOrderStatus", |c, req| c
            .order_status(&req.order_id)
            .await)
    }
    async fn list_orders(
        &self,
        request: Request<v1::ListOrdersRequest>,
    ) -> Result<Response<v1::ListOrdersResponse>, Status> {
        operator_call!(self, request, "ListOrders", |c, _req| Ok(
            v1::ListOrdersResponse {
                orders: c.list_orders().await?
            }
        ))
    }
    async fn list_stations(
        &self,
        request: Request<v1::ListStationsRequest>,
    ) -> Result<Response<v1::ListStationsResponse>, Status> {
        operator_call!(self, request, "ListStations", |c, req| Ok(
            v1::ListStationsResponse {
                stations: c.list_stations(req.state).await?
            }
        ))
    }
    async fn approve_station(
        &self,
        request: Request<v1::ApproveStationRequest>,
    ) -> Result<Response<v1::Station>, Status> {
        operator_call!(self, request, "ApproveStation", |c, req| c
            .approve_station(&req.station_id)
            .await)
    }
    async fn revoke_station(
        &self,
        request: Request<v1::RevokeStationRequest>,
    ) -> Result<Response<v1::Station>, Status> {
        operator_call!(self, request, "RevokeStation", |c, req| c
            .revoke_station(&req.station_id)
            .await)
    }
    async fn get_device(
        &self,
        request: Request<v1::GetDeviceRequest>,
    ) -> Result<Response<v1::Device>, Status> {
        operator_call!(self, request, "GetDevice", |c, req| c
            .get_device(req.product_id, &req.serial)
            .await)
    }
    async fn list_devices(
        &self,
        request: Request<v1::ListDevicesRequest>,
    ) -> Result<Response<v1::ListDevicesResponse>, Status> {
        operator_call!(self, request, "ListDevices", |c, req| Ok(
            v1::ListDevicesResponse {
                devices: c.list_devices(&req).await?
            }
        ))
    }
    async fn list_leases(
        &self,
        request: Request<v1::ListLeasesRequest>,
    ) -> Result<Response<v1::ListLeasesResponse>, Status> {
        operator_call!(self, request, "ListLeases", |c, req| Ok(
            v1::ListLeasesResponse {
                leases: c.list_leases(&req.order_id, &req.station_id).await?
            }
        ))
    }
    async fn get_coordinator_info(
        &self,
        request: Request<v1::GetCoordinatorInfoRequest>,
    ) -> Result<Response<v1::CoordinatorInfo>, Status> {
        operator_call!(self, request, "GetCoordinatorInfo", |c, _req| Ok(c.info()))
    }
}

macro_rules! station_call {
    ($self:ident, $request:ident, $name:literal, $method:expr, |$c:ident, $station:ident, $req:ident| $body:expr) => {
        traced($name, async {
            let $station = $self.0.authenticate_station(&$request, $method).await?;
            tracing::Span::current().record("station", $station.station_id.as_str());
            let $c = &$self.0;
            let $req = $request.into_inner();
            $body
        })
        .await
    };
}

#[tonic::async_trait]
impl StationService for StationApi {
    async fn get_coordinator_info(
        &self,
        _request: Request<v1::GetCoordinatorInfoRequest>,
    ) -> Result<Response<v1::CoordinatorInfo>, Status> {
        traced("Station.GetCoordinatorInfo", async { Ok(self.0.info()) }).await
    }
    async fn enrol(
        &self,
        request: Request<v1::EnrolRequest>,
    ) -> Result<Response<v1::EnrolResponse>, Status> {
        traced("Enrol", async {
            self.0.enrol(&request, methods::ENROL).await
        })
        .await
    }
    async fn list_assigned_orders(
        &self,
        request: Request<v1::ListAssignedOrdersRequest>,
    ) -> Result<Response<v1::ListAssignedOrdersResponse>, Status> {
        station_call!(
            self,
            request,
            "ListAssignedOrders",
            methods::LIST_ASSIGNED_ORDERS,
            |c, station, _req| Ok(v1::ListAssignedOrdersResponse {
                orders: c.assigned_orders(&station).await?
            })
        )
    }
    async fn fetch_release(
        &self,
        request: Request<v1::FetchReleaseRequest>,
    ) -> Result<Response<v1::FetchReleaseResponse>, Status> {
        station_call!(
            self,
            request,
            "FetchRelease",
            methods::FETCH_RELEASE,
            |c, _station, req| {
                let (release, image) = c.release_image(&req.digest).await?;
                Ok(v1::FetchReleaseResponse {
                    release: Some(release),
                    image,
                })
            }
        )
    }
    async fn acquire_lease(
        &self,
        request: Request<v1::AcquireLeaseRequest>,
    ) -> Result<Response<v1::AcquireLeaseResponse>, Status> {
        station_call!(
            self,
            request,
            "AcquireLease",
            methods::ACQUIRE_LEASE,
            |c, station, req| Ok(v1::AcquireLeaseResponse {
                lease: Some(c.acquire_lease(&station, &req).await?)
            })
        )
    }
    async fn report_install(
        &self,
        request: Request<v1::ReportInstallRequest>,
    ) -> Result<Response<v1::ReportInstallResponse>, Status> {
        let result = station_call!(
            self,
            request,
            "ReportInstall",
            methods::REPORT_INSTALL,
            |c, station, req| c.report_install(&station, &req).await
        );
        crate::metrics::report(result.as_ref().map(|r| r.get_ref()));
        result
    }
    async fn return_lease(
        &self,
        request: Request<v1::ReturnLeaseRequest>,
    ) -> Result<Response<v1::ReturnLeaseResponse>, Status> {
        station_call!(
            self,
            request,
            "ReturnLease",
            methods::RETURN_LEASE,
            |c, station, req| c.return_lease(&station, &req.lease_id).await
        )
    }
}
