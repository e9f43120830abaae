//! `flashgate.v1.StationService`: every call but `GetCoordinatorInfo` is signed by the station
//! ([`super::station_auth`]); each then goes to the part of the flow that owns it.

use std::future::Future;

use flashgate_proto::station_auth::methods;
use flashgate_proto::v1::{self, station_service_server::StationService};
use prost::Message;
use tonic::{Request, Response, Status};

use super::certificates::Certificates;
use super::factory_packages::FactoryPackages;
use super::leases::Leases;
use super::reports::Reports;
use super::signed_call::SignedCall;
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
    factory_packages: FactoryPackages,
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
        factory_packages: FactoryPackages,
        certificates: Certificates,
        reports: Reports,
        catalogue: Catalogue,
        info: v1::CoordinatorInfo,
    ) -> Self {
        Self {
            auth,
            leases,
            factory_packages,
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

impl StationApi {
    /// Serves a signed call on the hot path: authenticated by
    /// [`StationAuth::verify_signed`], its nonce and station guarded in the one transaction
    /// `call` commits; refused before that, its nonce is consumed on the way out.
    async fn signed_in_txn<Req: Message, T, Fut>(
        &self,
        method: &'static str,
        signed_as: &'static str,
        request: Request<Req>,
        call: impl FnOnce(SignedCall, Req) -> Fut,
    ) -> Result<Response<T>, Status>
    where
        Fut: Future<Output = Result<T>>,
    {
        rpc::handle(method, async move {
            let signed = self.auth.verify_signed(&request, signed_as).await?;
            tracing::Span::current().record("station", signed.record().station_id.as_str());
            let nonce = signed.nonce.clone();
            match call(signed, request.into_inner()).await {
                Ok(answer) => Ok(answer),
                Err(refusal) => Err(self.auth.refused(&nonce, refusal).await),
            }
        })
        .await
    }
}

impl StationApi {
    /// A bootloader or test application of an order assigned to `station`, sealed to the
    /// station's X25519 key and bound to release, station and order. Anything else — an order
    /// not assigned to it, a release that is not that order's, an OS or app image — is refused
    /// (PERMISSION_DENIED) before the image is even read.
    async fn sealed_release(
        &self,
        station: &StationRecord,
        req: &v1::FetchReleaseRequest,
    ) -> Result<v1::FetchReleaseResponse> {
        use crate::catalogue::ReleaseKind;
        use crate::error::CoordinatorError as E;
        if req.order_id.is_empty() {
            return Err(E::InvalidArgument(
                "FetchRelease names the order the release is for (order_id)".into(),
            ));
        }
        let order = self.catalogue.orders.get(&req.order_id).await?;
        if !order.admits(&station.station_id, &station.factory) {
            return Err(E::PermissionDenied(format!(
                "station {} is not assigned to order {}: it gets no release of it",
                station.station_id, order.order_id
            )));
        }
        let digest = crate::ids::Digest::parse(&req.digest)?;
        let release = self.catalogue.releases.get(&digest).await?;
        if !matches!(release.kind, ReleaseKind::Bootloader | ReleaseKind::TestApp) {
            return Err(E::PermissionDenied(format!(
                "release {digest} is a {:?} image: OS and app bodies never go to stations (they travel as per-device packages)",
                release.kind
            )));
        }
        if order.bootloader_digest != digest && order.test_app_digest != Some(digest) {
            return Err(E::PermissionDenied(format!(
                "release {digest} is neither the bootloader nor the test app of order {}",
                order.order_id
            )));
        }
        let (release, image) = self.catalogue.releases.with_image(&req.digest).await?;
        let aad = flashgate_proto::sealed_release::aad(
            &digest.0,
            station.station_id.as_str(),
            order.order_id.as_str(),
        );
        let sealed = flashgate_proto::sealed_release::seal(
            &station.x25519_public_key,
            &aad,
            &image,
            &mut rand_core::OsRng,
        )
        .ok_or_else(|| {
            E::FailedPrecondition(format!(
                "station {} enrolled an X25519 key nothing can be sealed to; revoke it and enrol a new identity",
                station.station_id
            ))
        })?;
        tracing::info!(release = %digest, order = %order.order_id, station = %station.station_id, "release sealed to station");
        Ok(v1::FetchReleaseResponse {
            release: Some(release.to_proto()),
            sealed_image: sealed,
        })
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
            |station, req| async move { self.sealed_release(&station, &req).await },
        )
        .await
    }

    async fn acquire_lease(
        &self,
        request: Request<v1::AcquireLeaseRequest>,
    ) -> Result<Response<v1::AcquireLeaseResponse>, Status> {
        self.signed_in_txn(
            "AcquireLease",
            methods::ACQUIRE_LEASE,
            request,
            |call, req| async move {
                Ok(v1::AcquireLeaseResponse {
                    lease: Some(self.leases.acquire(call, &req).await?),
                })
            },
        )
        .await
    }

    async fn issue_device_certificate(
        &self,
        request: Request<v1::IssueDeviceCertificateRequest>,
    ) -> Result<Response<v1::IssueDeviceCertificateResponse>, Status> {
        self.signed_in_txn(
            "IssueDeviceCertificate",
            methods::ISSUE_DEVICE_CERTIFICATE,
            request,
            |call, req| async move { self.certificates.issue(call, &req).await },
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

    async fn get_factory_package(
        &self,
        request: Request<v1::GetFactoryPackageRequest>,
    ) -> Result<Response<v1::UpdatePackage>, Status> {
        self.signed(
            "GetFactoryPackage",
            methods::GET_FACTORY_PACKAGE,
            request,
            |station, req| async move { self.factory_packages.package(&station, &req).await },
        )
        .await
    }
}
