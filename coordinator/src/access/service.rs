//! `flashgate.v1.AccessService`: credentials, enrolment tokens and the audit log, each call
//! checked by the one RPC wrapper like every other operator call.

use std::sync::Arc;

use flashgate_proto::v1::{self, access_service_server::AccessService};
use tonic::{Request, Response, Status};

use super::Role;
use crate::coordinator::Coordinator;
use crate::error::CoordinatorError as E;
use crate::rpc;

/// The gRPC adapter of `AccessService` over one coordinator.
#[derive(Clone)]
pub struct AccessApi(pub Arc<Coordinator>);

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn create_operator(
        &self,
        request: Request<v1::CreateOperatorRequest>,
    ) -> Result<Response<v1::CreateOperatorResponse>, Status> {
        let c = &*self.0;
        rpc::operator_call(
            "CreateOperator",
            c.access(),
            request,
            |caller, req| async move {
                let role = Role::from_proto(req.role).ok_or_else(|| {
                    E::InvalidArgument(
                        "name a role: admin, orders, release, field or viewer".into(),
                    )
                })?;
                let (operator, token) = c
                    .access()
                    .credentials
                    .create(&caller.actor(), &req.name, role)
                    .await?;
                Ok(v1::CreateOperatorResponse {
                    operator: Some(operator),
                    token: token.to_string(),
                })
            },
        )
        .await
    }

    async fn list_operators(
        &self,
        request: Request<v1::ListOperatorsRequest>,
    ) -> Result<Response<v1::ListOperatorsResponse>, Status> {
        let c = &*self.0;
        rpc::operator_call(
            "ListOperators",
            c.access(),
            request,
            |_caller, _req| async move {
                Ok(v1::ListOperatorsResponse {
                    operators: c.access().credentials.list().await?,
                })
            },
        )
        .await
    }

    async fn revoke_operator(
        &self,
        request: Request<v1::RevokeOperatorRequest>,
    ) -> Result<Response<v1::Operator>, Status> {
        let c = &*self.0;
        rpc::operator_call(
            "RevokeOperator",
            c.access(),
            request,
            |caller, req| async move {
                c.access()
                    .credentials
                    .revoke(&caller.actor(), &req.name)
                    .await
            },
        )
        .await
    }

    async fn create_enrolment_token(
        &self,
        request: Request<v1::CreateEnrolmentTokenRequest>,
    ) -> Result<Response<v1::CreateEnrolmentTokenResponse>, Status> {
        let c = &*self.0;
        rpc::operator_call(
            "CreateEnrolmentToken",
            c.access(),
            request,
            |caller, req| async move {
                let (token, expires_at_ms) = c
                    .access()
                    .enrolment
                    .create(&caller.actor(), req.valid_seconds, &req.note)
                    .await?;
                Ok(v1::CreateEnrolmentTokenResponse {
                    token: token.to_string(),
                    expires_at_ms,
                    lease_signing_public_key: c.lease_verifying_key().to_bytes().to_vec(),
                })
            },
        )
        .await
    }

    async fn list_audit_entries(
        &self,
        request: Request<v1::ListAuditEntriesRequest>,
    ) -> Result<Response<v1::ListAuditEntriesResponse>, Status> {
        let c = &*self.0;
        rpc::operator_call(
            "ListAuditEntries",
            c.access(),
            request,
            |_caller, req| async move {
                Ok(v1::ListAuditEntriesResponse {
                    entries: c
                        .audit()
                        .list(&req.scope, req.limit)
                        .await?
                        .iter()
                        .map(|r| r.to_proto())
                        .collect(),
                })
            },
        )
        .await
    }

    async fn verify_audit(
        &self,
        request: Request<v1::VerifyAuditRequest>,
    ) -> Result<Response<v1::VerifyAuditResponse>, Status> {
        let c = &*self.0;
        rpc::operator_call(
            "VerifyAudit",
            c.access(),
            request,
            |_caller, _req| async move {
                let report = c.verify_audit().await?;
                Ok(v1::VerifyAuditResponse {
                    ok: report.ok(),
                    entries: report.entries,
                    chains: report.chains,
                    problems: report.problems,
                })
            },
        )
        .await
    }
}
