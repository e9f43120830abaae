//! `flashgate.v1.StationService`: every call but `GetCoordinatorInfo` is signed by the station
//! ([`super::station_auth`]); each then goes to the part of the flow that owns it.

use std::future::Future;

use flashgate_proto::station_auth::methods;
use flashgate_proto::v1::{self, station_service_server::StationService};
use prost::Message;
use tonic::{Request, Response, Status};

use super::certificates::Certificates;
use super::leases::Leases;
use super::reports::Reports;
use super::station_auth::StationAuth;
use super::stations::StationRecord;
use crate::catalogue::Catalogue;
use crate::error::Result;
use crate::rpc;

/// The station API over the provisioning flow (and the catalogue, for orders and releases).
#[derive(Clone)]
pub struct StationApi {
    auth: StationAuth,
    leases: Leases,
    certificates: Certificates,
    reports: Reports,
    catalogue: Catalogue,
    info: v1::CoordinatorInfo,
}

impl StationApi {
    /// `info` is what `GetCoordinatorInfo` answers (the lease signing key, the version).
    pub fn new(
        auth: StationAuth,
        leases: Leases,
        certificates: Certificates,
        reports: Reports,
        catalogue: Catalogue,
        info: v1::CoordinatorInfo,
    ) -> Self {
        Self {
            auth,
            leases,
            certificates,
            reports,
            catalogue,
            info,
        }
    }

    /// Serves a signed call: authenticated as `signed_as`, then `call` with the approved station.
    async fn signed<Req: Message, T, Fut>(
        &self,
        method: &'static str,
        signed_as: &'static str,
        request: Request<Req>,
        call: impl FnOnce(StationRecord, Req) -> Fut,
    ) -> Result<Response<T>, Status>
    where
        Fut: Future<Output = Result<T>>,
    {
        rpc::handle(method, async move {
            let station = self.auth.authenticate(&request, signed_as).await?;
            tracing::Span::current().record("station", station.station_id.as_str());
            call(station, request.into_inner()).await
        })
        .await
    }
}

#[tonic::async_trait]
impl StationService for StationApi {
    async fn get_coordinator_info(
        &self,
        _request: Request<v1::GetCoordinatorInfoRequest>,
    ) -> Result<Response<v1::CoordinatorInfo>, Status> {
        rpc::handle("Station.GetCoordinatorInfo", async {
            Ok(self.info.clone())
        })
        .await
    }

    async fn enrol(
        &self,
        request: Request<v1::EnrolRequest>,
    ) -> Result<Response<v1::EnrolResponse>, Status> {
        rpc::handle("Enrol", self.auth.enrol(&request, methods::ENROL)).await
    }

    async fn list_assigned_orders(
        &self,
        request: Request<v1::ListAssignedOrdersRequest>,
    ) -> Result<Response<v1::ListAssignedOrdersResponse>, Status> {
        self.signed(
            "ListAssignedOrders",
            methods::LIST_ASSIGNED_ORDERS,
            request,
            |station, _req| async move {
                Ok(v1::ListAssignedOrdersResponse {
                    orders: self
                        .catalogue
                        .orders
                        .assigned_to(&station.station_id, &station.factory)
                        .await?,
                })
            },
        )
        .await
    }

    async fn fetch_release(
        &self,
        request: Request<v1::FetchReleaseRequest>,
    ) -> Result<Response<v1::FetchReleaseResponse>, Status> {
        self.signed(
            "FetchRelease",
            methods::FETCH_RELEASE,
            request,
            |_station, req| async move {
                let (release, image) = self.catalogue.releases.with_image(&req.digest).await?;
                Ok(v1::FetchReleaseResponse {
                    release: Some(release.to_proto()),
                    image,
                })
            },
        )
        .await
    }

    async fn acquire_lease(
        &self,
        request: Request<v1::AcquireLeaseRequest>,
    ) -> Result<Response<v1::AcquireLeaseResponse>, Status> {
        self.signed(
            "AcquireLease",
            methods::ACQUIRE_LEASE,
            request,
            |station, req| async move {
                Ok(v1::AcquireLeaseResponse {
                    lease: Some(self.leases.acquire(&station, &req).await?),
                })
            },
        )
        .await
    }

    async fn issue_device_certificate(
        &self,
        request: Request<v1::IssueDeviceCertificateRequest>,
    ) -> Result<Response<v1::IssueDeviceCertificateResponse>, Status> {
        self.signed(
            "IssueDeviceCertificate",
            methods::ISSUE_DEVICE_CERTIFICATE,
            request,
            |station, req| async move { self.certificates.issue(&station, &req).await },
        )
        .await
    }

    async fn report_install(
        &self,
        request: Request<v1::ReportInstallRequest>,
    ) -> Result<Response<v1::ReportInstallResponse>, Status> {
        let result = self
            .signed(
                "ReportInstall",
                methods::REPORT_INSTALL,
                request,
                |station, req| async move { self.reports.report_install(&station, &req).await },
            )
            .await;
        crate::metrics::report(result.as_ref().map(|r| r.get_ref()));
        result
    }

    async fn return_lease(
        &self,
        request: Request<v1::ReturnLeaseRequest>,
    ) -> Result<Response<v1::ReturnLeaseResponse>, Status> {
        self.signed(
            "ReturnLease",
            methods::RETURN_LEASE,
            request,
            |station, req| async move { self.leases.return_lease(&station, &req.lease_id).await },
        )
        .await
    }
}
